//! The DynamoDB calls each function's code makes, recorded rather than
//! listed by hand: every function's handler runs through representative
//! paths against DynamoDB Local with its store behind a recording relay,
//! and each call is noted as the IAM action it needs on which table or
//! index. Setup (the other functions' writes a path needs) goes straight
//! to DynamoDB Local and is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use blocklist::Subject;
use blocklist::http::auth::Authenticator;
use blocklist::meta::signature;
use blocklist::model::PhoneNumberId;
use chrono::Utc;
use integration_tests::{
    ApiRequest, ApiResponse, DynamoRelay, JWT_SECRET, TableAccess, TestStack, call_block_api,
    endpoint, read_response, token,
};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::block_api::Api;
use crate::webhook_ingress::{APP_SECRET, fixture};

const LINE_A: &str = "106540352242922";
const LINE_B: &str = "106540352242923";
const NUMBER: &str = "+16505551234";
const BSUID: &str = "US.13491208655302741918";
const OTHER: &str = "+16505557777";
const ALL_SCOPES: &[&str] = &[
    "blocklist:read",
    "blocklist:write",
    "blocklist:admin",
    "messages:send",
];

/// What a function needs granted: resource (as the template's grants name
/// it, e.g. `BlocklistTable.Arn/index/gsi1`) → IAM actions, lower case
/// with their `dynamodb:` prefix.
pub type Needs = BTreeMap<String, BTreeSet<String>>;

/// Binary → what its recorded calls need. Recorded once per test process.
pub fn recorded() -> &'static BTreeMap<String, Needs> {
    static RECORDED: OnceLock<BTreeMap<String, Needs>> = OnceLock::new();
    RECORDED.get_or_init(|| {
        // Its own runtime on its own thread: callers are plain #[test]s.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(record_all())
        })
        .join()
        .unwrap_or_else(|_| panic!("a recorded path failed (see its panic above)"))
    })
}

async fn record_all() -> BTreeMap<String, Needs> {
    // Boxed: the recorded paths' futures are large, and joined they would
    // not fit the runtime thread's stack.
    let (
        block_api,
        block_import,
        webhook_ingress,
        send_proxy,
        wa_blocked,
        block_expiry,
        platform_block,
    ) = tokio::join!(
        Box::pin(record_block_api()),
        Box::pin(record_block_import()),
        Box::pin(record_webhook_ingress()),
        Box::pin(record_send_proxy()),
        Box::pin(record_wa_blocked()),
        Box::pin(record_block_expiry()),
        Box::pin(record_platform_block()),
    );
    [
        ("block-api", block_api),
        ("block-import", block_import),
        ("webhook-ingress", webhook_ingress),
        ("send-proxy", send_proxy),
        ("wa-blocked", wa_blocked),
        ("block-expiry", block_expiry),
        ("platform-block", platform_block),
        // It calls no table: it reads the Audit stream (through its
        // mapping) and posts to the CRM.
        ("change-events", Vec::new()),
    ]
    .into_iter()
    .map(|(binary, accesses)| (binary.to_owned(), needs(&accesses)))
    .collect()
}

/// The grants `accesses` need. Test tables are named
/// `<prefix>-<LogicalId>` (see the harness).
fn needs(accesses: &[TableAccess]) -> Needs {
    let mut out = Needs::new();
    for access in accesses {
        let logical = access
            .table
            .rsplit('-')
            .next()
            .unwrap_or(&access.table)
            .to_owned();
        let resource = match &access.index {
            Some(index) => format!("{logical}.Arn/index/{index}"),
            None => format!("{logical}.Arn"),
        };
        out.entry(resource)
            .or_default()
            .insert(format!("dynamodb:{}", access.action.to_lowercase()));
    }
    out
}

fn expect(what: &str, response: &ApiResponse, status: u16) {
    assert_eq!(response.status, status, "{what}: {:?}", response.body);
}

/// Blocks `subject` through the block API on the test's own (unrecorded)
/// store.
async fn setup_block(stack: &TestStack, subject: &str, scope: &str) {
    let response = Api::on(stack)
        .block(subject, json!({"reason": "setup", "scope": scope}))
        .await;
    expect("setup block", &response, 201);
}

/// A webhook delivery through `app`, signed as Meta signs it.
async fn deliver(app: &webhook_ingress::App, body: &str) -> ApiResponse {
    let request = ApiRequest::new("POST", "/webhook")
        .header(
            "x-hub-signature-256",
            &signature::sign(APP_SECRET.as_bytes(), body.as_bytes()),
        )
        .header("content-type", "application/json")
        .raw_body(body);
    read_response(webhook_ingress::handle(app, request.to_lambda()).await)
}

async fn crm() -> MockServer {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&crm)
        .await;
    crm
}

/// `inbound-text.json` from `from` with message id `id`.
fn text_from(from: &str, id: &str) -> String {
    let mut body: Value = serde_json::from_str(&fixture("inbound-text.json")).unwrap();
    let value = &mut body["entry"][0]["changes"][0]["value"];
    value["contacts"][0]["wa_id"] = json!(from);
    value["messages"][0]["from"] = json!(from);
    value["messages"][0]["id"] = json!(id);
    body.to_string()
}

/// Links `NUMBER` and `BSUID` as a webhook delivery showing both does.
async fn setup_link(stack: &TestStack, crm: &MockServer) {
    let app = crate::webhook_ingress::app_for(stack.store.clone(), Some(crm.uri()));
    let response = deliver(&app, &fixture("inbound-bsuid-linked.json")).await;
    expect("setup link", &response, 200);
}

/// block-api: every route, on a person with a chat, a contact and a
/// linked BSUID.
async fn record_block_api() -> Vec<TableAccess> {
    let stack = TestStack::new().await;
    let crm = crm().await;
    setup_link(&stack, &crm).await;
    stack.chat_with(LINE_B, NUMBER).await;
    let relay = DynamoRelay::start(&endpoint());
    let app = block_api::App::new(
        stack.store_via(&relay),
        Authenticator::local_hs256(JWT_SECRET),
    );
    let bearer = token("operator", ALL_SCOPES);
    let call = |method: &str, uri: &str, body: Option<Value>| {
        let mut request = ApiRequest::new(method, uri).bearer(&bearer);
        if let Some(body) = body {
            request = request.json(body);
        }
        call_block_api(&app, request)
    };
    let steps: Vec<(&str, &str, String, Option<Value>, u16)> = vec![
        (
            "block with a contact",
            "PUT",
            format!("/v1/blocks/{NUMBER}"),
            Some(json!({"reason": "spam", "scope": LINE_B, "contact": {"name": "Sheena Nelson"}})),
            201,
        ),
        (
            "block again",
            "PUT",
            format!("/v1/blocks/{NUMBER}"),
            Some(json!({"reason": "spam", "scope": LINE_B})),
            200,
        ),
        (
            "block the BSUID",
            "PUT",
            format!("/v1/blocks/{BSUID}"),
            Some(json!({"reason": "spam"})),
            201,
        ),
        (
            "a temporary block",
            "PUT",
            format!("/v1/blocks/{OTHER}"),
            Some(json!({
                "reason": "cool off",
                "expires_at": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            })),
            201,
        ),
        ("view", "GET", format!("/v1/blocks/{NUMBER}"), None, 200),
        (
            "view a BSUID",
            "GET",
            format!("/v1/blocks/{BSUID}"),
            None,
            200,
        ),
        ("list", "GET", "/v1/blocks".into(), None, 200),
        (
            "due for review",
            "GET",
            "/v1/blocks?review=due".into(),
            None,
            200,
        ),
        (
            "review",
            "POST",
            format!("/v1/blocks/{NUMBER}/review"),
            Some(json!({"decision": "keep", "reason": "still spamming", "scope": LINE_B})),
            200,
        ),
        (
            "rule",
            "PUT",
            "/v1/rules/wave".into(),
            Some(json!({"prefix": "+23480", "reason": "spam wave"})),
            201,
        ),
        ("rules", "GET", "/v1/rules".into(), None, 200),
        ("rule removed", "DELETE", "/v1/rules/wave".into(), None, 200),
        (
            "list filtered",
            "GET",
            "/v1/blocks?scope=all&source=manual&q=1234&limit=5".into(),
            None,
            200,
        ),
        (
            "history",
            "GET",
            format!("/v1/numbers/{NUMBER}/history"),
            None,
            200,
        ),
        (
            // The chain check reads the change event just before the page.
            "history, a page of one",
            "GET",
            format!("/v1/numbers/{NUMBER}/history?limit=1"),
            None,
            200,
        ),
        ("audit feed", "GET", "/v1/audit".into(), None, 200),
        (
            "audit feed by action",
            "GET",
            "/v1/audit?action=blocked&limit=2".into(),
            None,
            200,
        ),
        ("stats", "GET", "/v1/stats".into(), None, 200),
        (
            "new contact",
            "PUT",
            "/v1/contacts/+447700900123".into(),
            Some(json!({"name": "Ravi"})),
            201,
        ),
        (
            "contact of a blocked number",
            "PUT",
            format!("/v1/contacts/{NUMBER}"),
            Some(json!({"name": "Sheena N.", "category": "vip"})),
            200,
        ),
        (
            "contact",
            "GET",
            format!("/v1/contacts/{NUMBER}"),
            None,
            200,
        ),
        ("chats", "GET", "/v1/chats".into(), None, 200),
        (
            "chats by status",
            "GET",
            format!("/v1/chats?status=blocked&phone_number_id={LINE_B}"),
            None,
            200,
        ),
        (
            "one chat",
            "GET",
            format!("/v1/chats/{LINE_B}/{NUMBER}"),
            None,
            200,
        ),
        (
            "settings",
            "GET",
            format!("/v1/settings/{LINE_A}"),
            None,
            200,
        ),
        (
            "settings change",
            "PUT",
            format!("/v1/settings/{LINE_A}"),
            Some(json!({"auto_block": {"threshold": 2}})),
            200,
        ),
        (
            "settings change again",
            "PUT",
            format!("/v1/settings/{LINE_A}"),
            Some(json!({"allow_unknown_numbers": false})),
            200,
        ),
        (
            "batch block",
            "POST",
            "/v1/blocks:batch".into(),
            Some(
                json!({"action": "block", "numbers": ["+447700900124", "+447700900125"], "reason": "bulk"}),
            ),
            200,
        ),
        (
            "batch unblock",
            "POST",
            "/v1/blocks:batch".into(),
            Some(json!({"action": "unblock", "numbers": ["+447700900124"], "reason": "bulk"})),
            200,
        ),
        (
            "unblock",
            "DELETE",
            format!("/v1/blocks/{NUMBER}?scope={LINE_B}"),
            Some(json!({"reason": "resolved"})),
            200,
        ),
        (
            "unblock the BSUID",
            "DELETE",
            format!("/v1/blocks/{BSUID}"),
            Some(json!({"reason": "resolved"})),
            200,
        ),
    ];
    for (what, method, uri, body, status) in steps {
        expect(what, &call(method, &uri, body).await, status);
    }
    // Later, once the temporary block has expired: blocked again.
    let mut later = block_api::App::new(
        stack.store_via(&relay),
        Authenticator::local_hs256(JWT_SECRET),
    );
    later.now = || Utc::now() + chrono::Duration::hours(2);
    let again = call_block_api(
        &later,
        ApiRequest::new("PUT", &format!("/v1/blocks/{OTHER}"))
            .bearer(&bearer)
            .json(json!({"reason": "again"})),
    )
    .await;
    expect("block after expiry", &again, 201);
    // A contact change of a number blocked on 100 business numbers: more
    // than one transaction holds, and the rest follows under a guard on the
    // version the change committed (a ConditionCheck).
    const WIDE: &str = "+16505559999";
    for line in 0..100u64 {
        setup_block(&stack, WIDE, &(106_540_352_200_000 + line).to_string()).await;
    }
    let wide = call(
        "PUT",
        &format!("/v1/contacts/{WIDE}"),
        Some(json!({"name": "Wide Blocked", "email": "wide@example.com"})),
    )
    .await;
    expect("contact change of a widely blocked number", &wide, 201);
    // B91: an upload, its progress and its results.
    let api = Api {
        stack: stack.clone(),
        app: block_api::App::new(
            stack.store_via(&relay),
            Authenticator::local_hs256(JWT_SECRET),
        ),
        token: bearer.clone(),
    };
    let created = crate::block_api::imports::upload(
        &api,
        &format!("number,reason\n{NUMBER},spam\n{OTHER},spam\n"),
    )
    .await;
    expect("upload an import", &created, 202);
    let id = created.body["id"].as_str().unwrap_or_default();
    let progress = call("GET", &format!("/v1/imports/{id}"), None).await;
    expect("import progress", &progress, 200);
    let results = call("GET", &format!("/v1/imports/{id}/results"), None).await;
    expect("import results", &results, 200);
    relay.accesses()
}

/// block-import: a chunk whose rows block (one replacing an expired
/// temporary block), find a block, and fail (one a digit short, which
/// the number metadata refuses and which is then looked up as a number
/// seen before); then the same chunk handed over again.
async fn record_block_import() -> Vec<TableAccess> {
    let stack = TestStack::new().await;
    let crm = crm().await;
    setup_link(&stack, &crm).await;
    stack.chat_with(LINE_B, NUMBER).await;
    setup_block(&stack, OTHER, "all").await;
    let api = Api::on(&stack);
    let expires = (Utc::now() + chrono::Duration::milliseconds(1500))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let temporary = api
        .block(
            "+16505550100",
            json!({"reason": "setup", "expires_at": expires}),
        )
        .await;
    expect("setup temporary block", &temporary, 201);
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let created = crate::block_api::imports::upload(
        &api,
        &format!(
            "number,reason,scope,name,groups\n{NUMBER},spam,{LINE_B},Sheena Nelson,vip\n{OTHER},spam,all,,\n+16505550100,again,all,,\n+1,spam,all,,\n+1650555123,a digit short,all,,\n"
        ),
    )
    .await;
    expect("setup import", &created, 202);
    let records = crate::block_api::imports::chunk_records(&api).await;
    let relay = DynamoRelay::start(&endpoint());
    let app = block_api::App::new(
        stack.store_via(&relay),
        Authenticator::local_hs256(JWT_SECRET),
    );
    for _ in 0..2 {
        let answer = block_import::handle(&app, json!({ "Records": records.clone() })).await;
        assert_eq!(answer, json!({"batchItemFailures": []}));
    }
    relay.accesses()
}

/// webhook-ingress: forwards, duplicates, links, suppressions, identity
/// changes, statuses, and a CRM failure.
async fn record_webhook_ingress() -> Vec<TableAccess> {
    let stack = TestStack::new().await;
    let crm = crm().await;
    let relay = DynamoRelay::start(&endpoint());
    let app = crate::webhook_ingress::app_for(stack.store_via(&relay), Some(crm.uri()));
    let ok = |what: &'static str, body: String| {
        let app = &app;
        async move { expect(what, &deliver(app, &body).await, 200) }
    };
    ok("a message", fixture("inbound-text.json")).await;
    ok("the same again", fixture("inbound-text.json")).await;
    ok("a link", fixture("inbound-bsuid-linked.json")).await;
    ok("a BSUID only", fixture("inbound-bsuid-only.json")).await;
    setup_block(&stack, NUMBER, "all").await;
    ok("a blocked sender", text_from("16505551234", "wamid.CALLS1")).await;
    ok(
        "an identity change of a blocked person",
        fixture("system-user-changed-number.json"),
    )
    .await;
    ok("a delivered status", fixture("status-delivered.json")).await;
    ok("a failed status", fixture("status-failed-131026.json")).await;
    ok(
        "a failed status by BSUID",
        fixture("status-failed-bsuid.json"),
    )
    .await;
    // A failed status naming no recipient: attributed by the send record.
    stack
        .store
        .record_sent(
            "wamid.CALLS.SENT",
            &Subject::parse(OTHER).unwrap(),
            &PhoneNumberId::parse(LINE_A).unwrap(),
            Utc::now(),
        )
        .await
        .unwrap();
    let mut unattributed: Value =
        serde_json::from_str(&fixture("status-failed-131026.json")).unwrap();
    let status = &mut unattributed["entry"][0]["changes"][0]["value"]["statuses"][0];
    status["id"] = json!("wamid.CALLS.SENT");
    status.as_object_mut().unwrap().remove("recipient_id");
    ok(
        "a failed status without recipient",
        unattributed.to_string(),
    )
    .await;
    // The CRM fails: the claims are released for Meta's retry.
    crm.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&crm)
        .await;
    let failed = deliver(&app, &text_from("447700900123", "wamid.CALLS2")).await;
    expect("the CRM failing", &failed, 502);
    relay.accesses()
}

/// send-proxy: sends that go out (learning a link from Graph's answer),
/// refusals, a send by BSUID, a mark-as-read and a recipients check.
async fn record_send_proxy() -> Vec<TableAccess> {
    use crate::send_proxy::{app_for, config, fixture_text, raw, text_send_to};
    let stack = TestStack::new().await;
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": NUMBER, "wa_id": "16505551234", "user_id": BSUID}],
            "messages": [{"id": "wamid.CALLS.OUT"}]
        })))
        .mount(&graph)
        .await;
    setup_block(&stack, OTHER, "all").await;
    let admin = Api::on(&stack);
    let settings = admin
        .send(
            ApiRequest::new("PUT", &format!("/v1/settings/{LINE_B}"))
                .bearer(&token("operator", ALL_SCOPES))
                .json(json!({"allow_unknown_numbers": false})),
        )
        .await;
    expect("setup settings", &settings, 200);
    let relay = DynamoRelay::start(&endpoint());
    let app = app_for(
        stack.store_via(&relay),
        config(&graph.uri(), std::time::Duration::from_secs(5)),
    );
    let bearer = token("crm", &["messages:send"]);
    let post = |line: &str, path: &str, body: String| {
        let request = ApiRequest::new("POST", &format!("/v1/{line}/{path}"))
            .bearer(&bearer)
            .header("content-type", "application/json")
            .raw_body(&body);
        let app = &app;
        async move { raw(send_proxy::handle(app, request.to_lambda()).await) }
    };
    let steps = [
        ("a send", LINE_A, "messages", text_send_to(NUMBER), 200),
        (
            "a send by BSUID",
            LINE_A,
            "messages",
            fixture_text("graph-send-bsuid.request.json"),
            200,
        ),
        (
            "a mark-as-read",
            LINE_A,
            "messages",
            fixture_text("graph-mark-read.request.json"),
            200,
        ),
        (
            "a blocked recipient",
            LINE_A,
            "messages",
            text_send_to(OTHER),
            403,
        ),
        (
            "an unknown recipient",
            LINE_B,
            "messages",
            text_send_to("+447700900123"),
            403,
        ),
        (
            "a recipients check",
            LINE_A,
            "recipients:check",
            json!({"numbers": [NUMBER, OTHER, BSUID, "+447700900123"]}).to_string(),
            200,
        ),
    ];
    for (what, line, path, body, status) in steps {
        let response = post(line, path, body).await;
        assert_eq!(
            response.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&response.bytes)
        );
    }
    relay.accesses()
}

/// wa-blocked: a stream batch (below and at the threshold, a person with a
/// linked BSUID, a number unblocked before) and `wa_blocked` events.
async fn record_wa_blocked() -> Vec<TableAccess> {
    use crate::wa_blocked::{failure, stored};
    let stack = TestStack::new().await;
    let crm = crm().await;
    setup_link(&stack, &crm).await;
    // Blocked and unblocked once: failures before that no longer count.
    setup_block(&stack, NUMBER, "all").await;
    let unblocked = Api::on(&stack)
        .call(
            "DELETE",
            &format!("/v1/blocks/{NUMBER}"),
            Some(json!({"reason": "ok"})),
        )
        .await;
    expect("setup unblock", &unblocked, 200);
    // A temporary block, expired by the time the event auto-blocks the same
    // number in the same scope: the new block replaces it, and its index
    // items (S2) go.
    let expires = (Utc::now() + chrono::Duration::milliseconds(1500))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let temporary = Api::on(&stack)
        .block(
            "+16505550100",
            json!({"reason": "setup", "scope": "106540352242922", "expires_at": expires}),
        )
        .await;
    expect("setup temporary block", &temporary, 201);
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let other_code = stored(&stack, &failure(131049, Utc::now(), "wamid.CALLS.F1"), "1").await;
    let blocking = stored(&stack, &failure(131026, Utc::now(), "wamid.CALLS.F2"), "2").await;
    let relay = DynamoRelay::start(&endpoint());
    let app = wa_blocked::App::new(stack.store_via(&relay));
    let answer = wa_blocked::handle(&app, json!({"Records": [other_code, blocking.clone()]}))
        .await
        .expect("a stream batch answers");
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let again = wa_blocked::handle(&app, json!({"Records": [blocking]}))
        .await
        .expect("a stream batch answers");
    assert_eq!(again, json!({"batchItemFailures": []}));
    let event: Value = serde_json::from_str(&fixture("wa-blocked-event.json")).unwrap();
    for status in ["auto_blocked", "already_blocked"] {
        let answer = wa_blocked::handle(&app, event.clone())
            .await
            .expect("the event is handled");
        assert_eq!(answer["status"], status, "{answer}");
    }
    relay.accesses()
}

/// block-expiry: a backfill of the expiry index, and a sweep that removes
/// the temporary blocks of a person
/// with chats, a contact and a linked BSUID (one with a permanent block
/// beside it, so one chat goes back to active and one stays blocked), and
/// a sweep that finds nothing.
async fn record_block_expiry() -> Vec<TableAccess> {
    let stack = TestStack::new().await;
    let crm = crm().await;
    setup_link(&stack, &crm).await;
    stack.chat_with(LINE_B, NUMBER).await;
    let until = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    for (subject, body) in [
        (
            NUMBER,
            json!({"reason": "cool off", "scope": "all", "expires_at": until,
                   "contact": {"name": "Sheena Nelson"}}),
        ),
        (NUMBER, json!({"reason": "abuse", "scope": LINE_A})),
        (
            BSUID,
            json!({"reason": "cool off", "scope": LINE_B, "expires_at": until}),
        ),
    ] {
        let response = Api::on(&stack).block(subject, body).await;
        expect("setup temporary block", &response, 201);
    }
    // One as releases before the expiry index stored it, for the backfill.
    crate::lifecycle::expiry::strip_expiry_keys(&stack, &format!("U#{BSUID}"), LINE_B).await;
    let relay = DynamoRelay::start(&endpoint());
    let mut app = block_expiry::App::new(stack.store_via(&relay));
    let backfill = block_expiry::handle(&app, json!({"backfill": {}}))
        .await
        .expect("a backfill run");
    assert_eq!(backfill["indexed"], 1, "{backfill}");
    fn later() -> chrono::DateTime<Utc> {
        Utc::now() + chrono::Duration::hours(2)
    }
    app.now = later;
    for expired in [2, 0] {
        let summary = block_expiry::sweep(&app).await.expect("a sweep succeeds");
        assert_eq!(summary.expired, expired, "{summary:?}");
    }
    relay.accesses()
}

/// A person linked to a BSUID is blocked where the setting is on: the
/// function reads them and mirrors the block to a Graph fake (an unblock
/// reads and writes the same items); then the retry sweep runs.
async fn record_platform_block() -> Vec<TableAccess> {
    let stack = TestStack::new().await;
    let crm = crm().await;
    setup_link(&stack, &crm).await;
    stack.chat_with(LINE_A, NUMBER).await;
    let admin = ApiRequest::new("PUT", &format!("/v1/settings/{LINE_A}"))
        .bearer(&token("ops", &["blocklist:admin"]))
        .json(json!({"platform_block": true}));
    expect("setup setting", &Api::on(&stack).send(admin).await, 200);
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"block_users": {"added_users": [{"input": NUMBER, "wa_id": "16505551234"}]}}),
        ))
        .mount(&graph)
        .await;
    let blocked = Api::on(&stack)
        .block(NUMBER, json!({"reason": "spam"}))
        .await;
    expect("setup block", &blocked, 201);
    let records = crate::lifecycle::audit_records(&stack).await;
    let relay = DynamoRelay::start(&endpoint());
    let app = platform_block::App::new(
        stack.store_via(&relay),
        platform_block::Config {
            graph_base_url: graph.uri(),
            graph_version: "v25.0".into(),
            access_token: "token".into(),
            timeout: std::time::Duration::from_secs(5),
            retry_pauses: vec![],
            deadline: std::time::Duration::from_secs(60),
        },
    )
    .expect("a Graph client");
    let answer = platform_block::handle(&app, json!({ "Records": records }))
        .await
        .expect("a batch answers");
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    assert_eq!(graph.received_requests().await.unwrap().len(), 1);
    let swept = platform_block::handle(&app, json!({}))
        .await
        .expect("a sweep");
    assert_eq!(swept["asked_again"], 0, "{swept}");
    relay.accesses()
}
