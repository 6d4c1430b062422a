//! B15: blocks of business numbers with `platform_block` on are mirrored
//! to Meta's Block Users API (a Graph fake on a real socket), fed by the
//! Audit stream records the changes wrote to DynamoDB Local.

use std::time::Duration;

use blocklist::Subject;
use blocklist::model::{ChatStatus, PhoneNumberId, PlatformStatus};
use chrono::Utc;
use integration_tests::TestStack;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::events::audit_records;
use crate::block_api::Api;
use crate::webhook_ingress::{app_for, deliver_to, fixture};

const LINE: &str = "106540352242922";
const OTHER_LINE: &str = "106540352242923";
const NUMBER: &str = "+16505551234";
const BSUID: &str = "US.13491208655302741918";
const TOKEN: &str = "test-access-token";
const BLOCK_USERS: &str = "/v25.0/106540352242922/block_users";

fn app(stack: &TestStack, graph: &MockServer) -> platform_block::App {
    platform_block::App::new(
        stack.store.clone(),
        platform_block::Config {
            graph_base_url: graph.uri(),
            graph_version: "v25.0".into(),
            access_token: TOKEN.into(),
            timeout: Duration::from_secs(5),
            retry_pauses: vec![Duration::from_millis(10), Duration::from_millis(20)],
            deadline: Duration::from_secs(60),
        },
    )
    .expect("a Graph client")
}

/// A Graph fake that blocks or unblocks everyone it is asked to, as Meta
/// does for persons who wrote within 24 hours.
async fn graph_that_accepts() -> MockServer {
    let graph = MockServer::start().await;
    accept_everyone(&graph).await;
    graph
}

async fn accept_everyone(graph: &MockServer) {
    Mock::given(path(BLOCK_USERS))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let done: Vec<Value> = body["block_users"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| json!({ "input": u["user"].as_str().or(u["user_id"].as_str()) }))
                .collect();
            let list = if request.method.as_str() == "POST" {
                "added_users"
            } else {
                "removed_users"
            };
            ResponseTemplate::new(200).set_body_json(
                json!({ "messaging_product": "whatsapp", "block_users": { list: done } }),
            )
        })
        .mount(graph)
        .await;
}

async fn graph_answering(status: u16, body: Value) -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(path(BLOCK_USERS))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&graph)
        .await;
    graph
}

/// The Block Users requests the fake got: method and body.
async fn requests(graph: &MockServer) -> Vec<(String, Value)> {
    graph
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// `PUT /v1/settings/{target}` as an admin.
async fn put_settings(
    stack: &TestStack,
    target: &str,
    body: Value,
) -> integration_tests::ApiResponse {
    Api::on(stack)
        .send(
            integration_tests::ApiRequest::new("PUT", &format!("/v1/settings/{target}"))
                .bearer(&integration_tests::token("ops", &["blocklist:admin"]))
                .json(body),
        )
        .await
}

async fn turn_on(stack: &TestStack, line: &str) {
    let answer = put_settings(stack, line, json!({"platform_block": true})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// Feeds every audit record written since `seen` to the function, as the
/// stream would; returns its answer.
async fn feed(stack: &TestStack, app: &platform_block::App, seen: &mut usize) -> Value {
    let records = platform_records(stack).await;
    let new = records[*seen..].to_vec();
    *seen = records.len();
    run(app, new).await
}

/// The stream records of every audit item, as the template's filter
/// passes them to the function.
async fn platform_records(stack: &TestStack) -> Vec<Value> {
    audit_records(stack)
        .await
        .into_iter()
        .filter(|r| {
            let action = r["dynamodb"]["NewImage"]["action"]["S"].as_str();
            platform_block::STREAM_ACTIONS
                .iter()
                .any(|a| Some(a.as_str()) == action)
        })
        .collect()
}

async fn run(app: &platform_block::App, records: Vec<Value>) -> Value {
    platform_block::handle(app, json!({ "Records": records }))
        .await
        .expect("a stream batch always answers")
}

fn failures(answer: &Value) -> usize {
    answer["batchItemFailures"].as_array().map_or(0, Vec::len)
}

async fn platform_of(stack: &TestStack, subject: &str) -> Value {
    let answer = Api::on(stack)
        .call("GET", &format!("/v1/blocks/{subject}"), None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["blocks"][0]["platform"].clone()
}

/// What the store holds for the subject on `line`.
async fn recorded(stack: &TestStack, subject: &str, line: &str) -> Option<PlatformStatus> {
    let record = stack
        .store
        .load_subject(&Subject::parse(subject).unwrap())
        .await
        .unwrap();
    record
        .platform
        .iter()
        .find(|m| m.phone_number_id.as_str() == line)
        .map(|m| m.state.state)
}

/// NUMBER unblocked everywhere, through the block API.
async fn unblock_everywhere(stack: &TestStack) {
    let unblocked = Api::on(stack)
        .call(
            "DELETE",
            &format!("/v1/blocks/{NUMBER}?scope=all"),
            Some(json!({"reason": "sorted out"})),
        )
        .await;
    assert_eq!(unblocked.status, 200, "{}", unblocked.body);
}

/// Fresh tables where LINE has `platform_block` on and NUMBER wrote to it
/// just now; the function talks to `graph`.
async fn wrote_today(graph: &MockServer) -> (TestStack, platform_block::App) {
    let stack = TestStack::new().await;
    let app = app(&stack, graph);
    turn_on(&stack, LINE).await;
    stack.chat_with(LINE, NUMBER).await;
    (stack, app)
}

async fn wrote_at(stack: &TestStack, line: &str, subject: &str, hours_ago: i64) {
    stack
        .store
        .record_inbound(
            &PhoneNumberId::parse(line).unwrap(),
            &Subject::parse(subject).unwrap(),
            Utc::now() - chrono::Duration::hours(hours_ago),
            ChatStatus::Active,
            false,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn b15_a_block_of_a_person_who_wrote_today_is_mirrored_then_removed_on_unblock() {
    let graph = graph_that_accepts().await;
    let (stack, app) = wrote_today(&graph).await;
    stack.chat_with(OTHER_LINE, NUMBER).await;
    let mut seen = 0;
    let blocked = Api::on(&stack)
        .block(NUMBER, json!({"reason": "abusive messages"}))
        .await;
    assert_eq!(blocked.status, 201);
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);

    assert_eq!(
        requests(&graph).await,
        vec![(
            "POST".to_owned(),
            json!({"messaging_product": "whatsapp", "block_users": [{"user": NUMBER}]})
        )],
        "one request, for the business number with the setting on only"
    );
    let platform = platform_of(&stack, NUMBER).await;
    assert_eq!(platform["state"], "blocked", "{platform}");
    assert_eq!(platform["numbers"][LINE]["state"], "blocked");
    assert_eq!(platform["numbers"][OTHER_LINE]["state"], "off");

    // The same records again (Lambda's retry): nothing asked twice.
    let again = run(&app, platform_records(&stack).await).await;
    assert_eq!(failures(&again), 0);
    assert_eq!(requests(&graph).await.len(), 1, "idempotent");

    unblock_everywhere(&stack).await;
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);
    let sent = requests(&graph).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].0, "DELETE");
    assert_eq!(sent[1].1["block_users"], json!([{"user": NUMBER}]));
    assert_eq!(
        recorded(&stack, NUMBER, LINE).await,
        Some(PlatformStatus::Off)
    );
}

/// NUMBER, who last wrote to LINE 30 hours ago, blocked there with
/// `platform_block` on, and the block's event fed to platform-block: the
/// stack, the Graph fake, the app and the records fed so far.
async fn blocked_a_day_after_writing() -> (TestStack, MockServer, platform_block::App, usize) {
    let stack = TestStack::new().await;
    let graph = graph_that_accepts().await;
    let app = app(&stack, &graph);
    turn_on(&stack, LINE).await;
    wrote_at(&stack, LINE, NUMBER, 30).await;
    let mut seen = 0;
    let blocked = Api::on(&stack)
        .block(NUMBER, json!({"reason": "spam", "scope": LINE}))
        .await;
    assert_eq!(blocked.status, 201);
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);
    (stack, graph, app, seen)
}

#[tokio::test]
async fn b15_a_person_silent_for_a_day_is_mirrored_at_their_next_message() {
    let (stack, graph, app, mut seen) = blocked_a_day_after_writing().await;
    assert!(
        requests(&graph).await.is_empty(),
        "Meta would refuse: not asked"
    );
    let platform = platform_of(&stack, NUMBER).await;
    assert_eq!(platform["state"], "pending", "{platform}");
    assert!(
        platform.get("numbers").is_none(),
        "one business number: {platform}"
    );

    // The person writes again: the message is suppressed as usual, and its
    // event makes them eligible.
    writes(&stack, "wamid.AGAIN").await;
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);
    let sent = requests(&graph).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, "POST");
    assert_eq!(platform_of(&stack, NUMBER).await["state"], "blocked");
}

/// B15 with calls: Meta blocks only people who wrote within 24 hours. A
/// call is not a written message, so a blocked person's suppressed call
/// leaves the platform block pending; their next message makes it. Before,
/// the call's `inbound_suppressed` event asked Meta at once, and a refusal
/// that stands would not have been asked again at the next message.
#[tokio::test]
async fn b15_a_suppressed_call_does_not_make_the_person_eligible() {
    let (stack, graph, app, mut seen) = blocked_a_day_after_writing().await;

    let crm = MockServer::start().await;
    let ingress = app_for(stack.store.clone(), Some(format!("{}/crm", crm.uri())));
    let call = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "calls", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": LINE},
            "calls": [{"from": NUMBER.trim_start_matches('+'), "id": "wacid.B15", "to": "15550783881",
                       "event": "connect", "timestamp": Utc::now().timestamp().to_string(),
                       "direction": "USER_INITIATED"}]
        }}]}]
    });
    let answer = deliver_to(&ingress, &call.to_string()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["suppressed"], 1, "{}", answer.body);
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);
    assert!(requests(&graph).await.is_empty(), "a call is not a message");
    assert_eq!(platform_of(&stack, NUMBER).await["state"], "pending");

    writes(&stack, "wamid.AFTERCALL").await;
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);
    assert_eq!(requests(&graph).await.len(), 1);
    assert_eq!(platform_of(&stack, NUMBER).await["state"], "blocked");
}

#[tokio::test]
async fn b15_b13_expiry_removes_the_platform_block() {
    let graph = graph_that_accepts().await;
    let (stack, mut app) = wrote_today(&graph).await;
    let mut seen = 0;
    let until = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let blocked = Api::on(&stack)
        .block(NUMBER, json!({"reason": "cool off", "expires_at": until}))
        .await;
    assert_eq!(blocked.status, 201);
    feed(&stack, &app, &mut seen).await;
    assert_eq!(
        recorded(&stack, NUMBER, LINE).await,
        Some(PlatformStatus::Blocked)
    );

    fn later() -> chrono::DateTime<Utc> {
        Utc::now() + chrono::Duration::hours(2)
    }
    let mut sweeper = block_expiry::App::new(stack.store.clone());
    sweeper.now = later;
    let summary = block_expiry::sweep(&sweeper).await.expect("a sweep");
    assert_eq!(summary.expired, 1);
    app.now = later;
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);
    let sent = requests(&graph).await;
    assert_eq!(
        sent.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
        ["POST", "DELETE"]
    );
    assert_eq!(
        recorded(&stack, NUMBER, LINE).await,
        Some(PlatformStatus::Off)
    );
}

#[tokio::test]
async fn b15_meta_139100_mixed_results_are_kept_per_user_in_one_request() {
    let stack = TestStack::new().await;
    let reference: Value =
        serde_json::from_str(&fixture("graph-block-users.response.json")).unwrap();
    let graph = graph_answering(400, reference).await;
    let app = app(&stack, &graph);
    turn_on(&stack, LINE).await;
    stack.chat_with(LINE, NUMBER).await;
    stack.chat_with(LINE, BSUID).await;
    let mut seen = 0;
    for subject in [NUMBER, BSUID] {
        let blocked = Api::on(&stack)
            .block(subject, json!({"reason": "spam", "scope": LINE}))
            .await;
        assert_eq!(blocked.status, 201);
    }
    assert_eq!(
        failures(&feed(&stack, &app, &mut seen).await),
        0,
        "a standing answer"
    );
    let sent = requests(&graph).await;
    assert_eq!(sent.len(), 1, "both users in one request");
    let mut users: Vec<Value> = sent[0].1["block_users"].as_array().unwrap().clone();
    users.sort_by_key(|u| u.to_string());
    assert_eq!(
        users,
        vec![json!({"user": NUMBER}), json!({"user_id": BSUID})]
    );

    assert_eq!(platform_of(&stack, NUMBER).await["state"], "blocked");
    let refused = platform_of(&stack, BSUID).await;
    assert_eq!(
        refused["state"], "pending",
        "131047: waits for a message: {refused}"
    );
    assert_eq!(refused["error"]["code"], 131047, "Meta's error is kept");
}

#[tokio::test]
async fn b15_a_full_list_139101_is_kept_and_not_asked_again_while_the_person_writes() {
    let stack = TestStack::new().await;
    let graph = graph_answering(
        400,
        json!({"error": {"message": "(#139101) Block list limit reached", "type": "OAuthException", "code": 139101}}),
    )
    .await;
    let app = app(&stack, &graph);
    turn_on(&stack, LINE).await;
    stack.chat_with(LINE, NUMBER).await;
    let mut seen = 0;
    Api::on(&stack)
        .block(NUMBER, json!({"reason": "spam"}))
        .await;
    assert_eq!(
        failures(&feed(&stack, &app, &mut seen).await),
        0,
        "not retried"
    );
    let platform = platform_of(&stack, NUMBER).await;
    assert_eq!(platform["state"], "failed", "{platform}");
    assert_eq!(platform["error"]["code"], 139101);
    assert_eq!(
        requests(&graph).await.len(),
        1,
        "no retry of a standing refusal"
    );

    // A flood of suppressed messages asks nothing more of Meta.
    for id in ["wamid.F1", "wamid.F2", "wamid.F3"] {
        writes(&stack, id).await;
    }
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);
    assert_eq!(requests(&graph).await.len(), 1);
}

/// NUMBER writes to LINE now (message `id`), through webhook-ingress; the
/// message must be suppressed (NUMBER is blocked).
async fn writes(stack: &TestStack, id: &str) {
    let crm = MockServer::start().await;
    let ingress = app_for(stack.store.clone(), Some(format!("{}/crm", crm.uri())));
    let body = fixture("inbound-text.json")
        .replace(
            "\"timestamp\":\"1749416383\"",
            &format!("\"timestamp\":\"{}\"", Utc::now().timestamp()),
        )
        .replace(
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
            id,
        );
    let answer = deliver_to(&ingress, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        crm.received_requests().await.unwrap().is_empty(),
        "suppressed"
    );
}

#[tokio::test]
async fn b15_rate_limits_and_5xx_are_retried_then_the_batch_is_reported_and_redone() {
    let stack = TestStack::new().await;
    let graph = graph_answering(
        400,
        json!({"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429}}),
    )
    .await;
    let app = app(&stack, &graph);
    turn_on(&stack, LINE).await;
    stack.chat_with(LINE, NUMBER).await;
    Api::on(&stack)
        .block(NUMBER, json!({"reason": "spam"}))
        .await;
    let records = platform_records(&stack).await;
    let answer = run(&app, records.clone()).await;
    assert_eq!(
        answer["batchItemFailures"][0]["itemIdentifier"], records[0]["dynamodb"]["SequenceNumber"],
        "reported from the first record: {answer}"
    );
    assert_eq!(
        requests(&graph).await.len(),
        3,
        "tried 3 times in the invocation"
    );
    let platform = platform_of(&stack, NUMBER).await;
    assert_eq!(platform["state"], "failed");
    assert_eq!(platform["error"]["code"], 130429);

    // Meta answers 503 once, then accepts: Lambda's retry of the batch
    // blocks the person, and the 503 was ridden out within it.
    graph.reset().await;
    Mock::given(method("POST"))
        .and(path(BLOCK_USERS))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path(BLOCK_USERS))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"block_users": {"added_users": [{"input": NUMBER, "wa_id": "16505551234"}]}}),
        ))
        .mount(&graph)
        .await;
    let retried = run(&app, records).await;
    assert_eq!(failures(&retried), 0, "{retried}");
    assert_eq!(requests(&graph).await.len(), 2, "503, then accepted");
    assert_eq!(platform_of(&stack, NUMBER).await["state"], "blocked");
}

#[tokio::test]
async fn b15_nothing_is_mirrored_where_the_setting_is_off() {
    let stack = TestStack::new().await;
    let graph = graph_that_accepts().await;
    let app = app(&stack, &graph);
    stack.chat_with(LINE, NUMBER).await;
    let mut seen = 0;
    Api::on(&stack)
        .block(NUMBER, json!({"reason": "spam", "scope": LINE}))
        .await;
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);
    assert!(requests(&graph).await.is_empty());
    assert_eq!(platform_of(&stack, NUMBER).await["state"], "off");
}

#[tokio::test]
async fn b15_platform_block_is_a_per_number_setting_refused_on_default() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    let refused = put_settings(&stack, "default", json!({"platform_block": true})).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(
        refused.body["error"]["field"], "platform_block",
        "{}",
        refused.body
    );
    let default = api.call("GET", "/v1/settings/default", None).await;
    assert_eq!(default.body["platform_block"], false, "nothing stored");
    let round_trip = put_settings(&stack, "default", default.body.clone()).await;
    assert_eq!(
        round_trip.status, 200,
        "what GET shows can be sent back: {}",
        round_trip.body
    );

    turn_on(&stack, LINE).await;
    let on = api.call("GET", &format!("/v1/settings/{LINE}"), None).await;
    assert_eq!(on.body["platform_block"], true);
    let cleared = put_settings(&stack, LINE, json!({"platform_block": null})).await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(
        cleared.body["platform_block"], false,
        "null: back to the default"
    );
}

/// Meta refuses an unblock (503) through every retry of the invocation:
/// the person is still held at Meta, so the state stays `blocked` with the
/// error, and the retry sweep asks again later until Meta unblocks them.
#[tokio::test]
async fn b15_a_failed_unblock_is_asked_again_by_the_retry_sweep_until_it_succeeds() {
    let graph = graph_that_accepts().await;
    let (stack, mut app) = wrote_today(&graph).await;
    let mut seen = 0;
    Api::on(&stack)
        .block(NUMBER, json!({"reason": "spam"}))
        .await;
    feed(&stack, &app, &mut seen).await;
    assert_eq!(
        recorded(&stack, NUMBER, LINE).await,
        Some(PlatformStatus::Blocked)
    );

    graph.reset().await;
    Mock::given(method("DELETE"))
        .and(path(BLOCK_USERS))
        .respond_with(ResponseTemplate::new(503))
        .mount(&graph)
        .await;
    unblock_everywhere(&stack).await;
    let answer = feed(&stack, &app, &mut seen).await;
    assert_eq!(
        failures(&answer),
        1,
        "reported for Lambda's retry: {answer}"
    );
    assert_eq!(requests(&graph).await.len(), 3);
    assert_eq!(
        recorded(&stack, NUMBER, LINE).await,
        Some(PlatformStatus::Blocked),
        "Meta still holds the person"
    );

    // Within 5 minutes the sweep leaves it; after, it asks again.
    let swept = platform_block::sweep(&app).await.expect("a sweep");
    assert_eq!(swept, 0, "asked again only 5 minutes later");
    graph.reset().await;
    accept_everyone(&graph).await;
    fn later() -> chrono::DateTime<Utc> {
        Utc::now() + chrono::Duration::minutes(10)
    }
    app.now = later;
    let swept = platform_block::sweep(&app).await.expect("a sweep");
    assert_eq!(swept, 1);
    let sent = requests(&graph).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "DELETE");
    assert_eq!(
        recorded(&stack, NUMBER, LINE).await,
        Some(PlatformStatus::Off)
    );
    assert_eq!(
        platform_block::sweep(&app).await.expect("a sweep"),
        0,
        "nothing is left to ask again"
    );
}

/// A 200 that still lists failed users, for an unblock Meta has nothing
/// to undo (the user is not on its list): recorded `off` with the error,
/// not asked again.
#[tokio::test]
async fn b15_a_200_with_failed_users_is_read_per_user_and_a_not_held_unblock_is_off() {
    let stack = TestStack::new().await;
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(BLOCK_USERS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "block_users": {"added_users": [{"input": NUMBER, "wa_id": "16505551234"}], "failed_users": []},
        })))
        .mount(&graph)
        .await;
    Mock::given(method("DELETE"))
        .and(path(BLOCK_USERS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "block_users": {"removed_users": [], "failed_users": [
                {"input": NUMBER, "errors": [{"code": 100, "message": "(#100) the user is not blocked"}]}
            ]},
        })))
        .mount(&graph)
        .await;
    let mut app = app(&stack, &graph);
    turn_on(&stack, LINE).await;
    stack.chat_with(LINE, NUMBER).await;
    let mut seen = 0;
    Api::on(&stack)
        .block(NUMBER, json!({"reason": "spam"}))
        .await;
    feed(&stack, &app, &mut seen).await;
    unblock_everywhere(&stack).await;
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);
    assert_eq!(
        recorded(&stack, NUMBER, LINE).await,
        Some(PlatformStatus::Off)
    );
    fn later() -> chrono::DateTime<Utc> {
        Utc::now() + chrono::Duration::minutes(10)
    }
    app.now = later;
    assert_eq!(platform_block::sweep(&app).await.expect("a sweep"), 0);
    assert_eq!(requests(&graph).await.len(), 2, "one block, one unblock");
}

/// B61: the block is on the person's BSUID; they write with their number
/// visible. The suppressed message is recorded under the number, and it is
/// the BSUID's block that is mirrored.
#[tokio::test]
async fn b15_b61_a_message_under_a_linked_identity_mirrors_the_blocked_identity() {
    let stack = TestStack::new().await;
    let graph = graph_that_accepts().await;
    let app = app(&stack, &graph);
    turn_on(&stack, LINE).await;
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&crm)
        .await;
    let ingress = app_for(stack.store.clone(), Some(format!("{}/crm", crm.uri())));
    let linked = deliver_to(&ingress, &fixture("inbound-bsuid-linked.json")).await;
    assert_eq!(linked.status, 200, "{}", linked.body);
    let mut seen = platform_records(&stack).await.len();
    let blocked = Api::on(&stack)
        .block(BSUID, json!({"reason": "spam", "scope": LINE}))
        .await;
    assert_eq!(blocked.status, 201);
    // The link's message is old (the fixture's time): not eligible yet.
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);
    assert!(
        requests(&graph).await.is_empty(),
        "{:?}",
        requests(&graph).await
    );
    writes(&stack, "wamid.LINKED").await;
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 0);
    let sent = requests(&graph).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1["block_users"], json!([{"user_id": BSUID}]));
    assert_eq!(
        recorded(&stack, BSUID, LINE).await,
        Some(PlatformStatus::Blocked)
    );
}

/// Past the invocation's deadline no request starts: the batch is
/// reported for Lambda's retry, and nothing is recorded as done.
#[tokio::test]
async fn b15_past_the_deadline_requests_are_left_for_the_retry() {
    let stack = TestStack::new().await;
    let graph = graph_that_accepts().await;
    let mut app = app(&stack, &graph);
    app.config.deadline = Duration::ZERO;
    turn_on(&stack, LINE).await;
    stack.chat_with(LINE, NUMBER).await;
    let mut seen = 0;
    Api::on(&stack)
        .block(NUMBER, json!({"reason": "spam"}))
        .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(failures(&feed(&stack, &app, &mut seen).await), 1);
    assert!(requests(&graph).await.is_empty());
    assert_eq!(recorded(&stack, NUMBER, LINE).await, None);
}
