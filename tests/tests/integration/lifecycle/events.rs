//! B14: every audit event reaches the CRM's events webhook, signed, in
//! order per subject, retried, and parked rather than lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use blocklist::config::Env;
use blocklist::meta::signature;
use chrono::Utc;
use integration_tests::TestStack;
use serde_json::{Value, json};
use wiremock::matchers::{header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::block_api::Api;
use crate::wa_blocked::{deliver_ok, failure, stored, stream_record};

const SECRET: &str = "test-events-secret";
const NUMBER: &str = "+16505551234";

fn app(url: Option<String>, timeout: Duration) -> change_events::App {
    change_events::App::new(change_events::Config {
        endpoint: url.map(|url| change_events::Endpoint {
            url,
            secret: SECRET.into(),
        }),
        timeout,
        retry_pauses: vec![Duration::from_millis(10), Duration::from_millis(20)],
    })
    .expect("an HTTP client")
}

/// The stream records DynamoDB Streams would deliver for every audit item
/// of `stack`, in the order they were written (event ids follow time).
pub(crate) async fn audit_records(stack: &TestStack) -> Vec<Value> {
    let out = stack
        .client
        .scan()
        .table_name(&stack.tables.audit)
        .send()
        .await
        .expect("a scan of the test's own audit table");
    let mut items = out.items.unwrap_or_default();
    let sk = |i: &std::collections::HashMap<String, AttributeValue>| {
        i.get("sk")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    items.sort_by_key(sk);
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| stream_record(item, &format!("{:05}", i + 1)))
        .collect()
}

async fn crm(status: u16) -> MockServer {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&crm)
        .await;
    crm
}

fn failures(answer: &Value) -> Vec<&str> {
    answer["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().expect("an item identifier"))
        .collect()
}

/// A block, an unblock, and then an automatic block of the number.
async fn three_changes(stack: &TestStack) {
    let api = Api::on(stack);
    let blocked = api
        .block(NUMBER, json!({"reason": "abusive messages"}))
        .await;
    assert_eq!(blocked.status, 201);
    let unblocked = api
        .call(
            "DELETE",
            &format!("/v1/blocks/{NUMBER}?scope=all"),
            Some(json!({"reason": "sorted out"})),
        )
        .await;
    assert_eq!(unblocked.status, 200);
    let record = stored(stack, &failure(131026, Utc::now(), "wamid.E1"), "1").await;
    deliver_ok(stack, vec![record]).await;
}

#[tokio::test]
async fn b14_a_batch_reaches_the_crm_as_one_signed_post_in_order() {
    let stack = TestStack::new().await;
    three_changes(&stack).await;
    let records = audit_records(&stack).await;
    let crm = crm(200).await;
    let answer = change_events::handle(
        &app(
            Some(format!("{}/events", crm.uri())),
            Duration::from_secs(5),
        ),
        json!({ "Records": records }),
    )
    .await;
    assert_eq!(failures(&answer), Vec::<&str>::new());

    let requests = crm.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one POST for the batch");
    let request = &requests[0];
    assert_eq!(request.url.path(), "/events");
    assert_eq!(
        request.headers["x-hub-signature-256"].to_str().unwrap(),
        signature::sign(SECRET.as_bytes(), &request.body),
        "signed with EVENTS_WEBHOOK_SECRET over the exact body"
    );
    assert_eq!(request.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["object"], "wa_blocklist");
    let contract = crate::openapi::Contract {
        doc: crate::openapi::document(),
    };
    let webhook = &contract.doc["webhooks"]["changeEvents"]["post"];
    contract
        .validate(
            &webhook["requestBody"]["content"]["application/json"]["schema"],
            &body,
        )
        .unwrap_or_else(|e| panic!("the body as openapi.yaml documents it: {e}\n{body}"));
    contract
        .validate(
            &webhook["parameters"][0]["schema"],
            &json!(request.headers["x-hub-signature-256"].to_str().unwrap()),
        )
        .expect("the signature header as documented");
    let events = body["events"].as_array().unwrap();
    let of_number: Vec<&str> = events
        .iter()
        .filter(|e| e["number"] == NUMBER)
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        of_number,
        ["blocked", "unblocked", "auto_blocked"],
        "{body}"
    );
    // Each change carries its link of the subject's chain (B53), so the CRM
    // holds hashes that a rewritten history could not match.
    let chained: Vec<&Value> = events.iter().filter(|e| e["number"] == NUMBER).collect();
    for pair in chained.windows(2) {
        assert!(pair[0]["hash"].is_string(), "{}", pair[0]);
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    let auto = events
        .iter()
        .find(|e| e["action"] == "auto_blocked")
        .unwrap();
    assert_eq!(auto["source"], "auto");
    assert_eq!(auto["actor"], "wa-blocked");
    // The events are the audit events as the API shows them.
    let history = Api::on(&stack).history(NUMBER).await;
    let mut newest_first: Vec<&Value> = events.iter().filter(|e| e["number"] == NUMBER).collect();
    newest_first.reverse();
    assert_eq!(
        newest_first,
        history.iter().collect::<Vec<_>>(),
        "the same events as the number's history"
    );
}

#[tokio::test]
async fn b14_a_failing_endpoint_is_retried_with_backoff_then_the_batch_is_reported_from_its_first_record()
 {
    let stack = TestStack::new().await;
    three_changes(&stack).await;
    let records = audit_records(&stack).await;
    let first = records[0]["dynamodb"]["SequenceNumber"]
        .as_str()
        .unwrap()
        .to_owned();

    // 500, then fine: retried inside the invocation, delivered once.
    let flaky = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&flaky)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&flaky)
        .await;
    let answer = change_events::handle(
        &app(Some(flaky.uri()), Duration::from_secs(5)),
        json!({ "Records": records.clone() }),
    )
    .await;
    assert_eq!(failures(&answer), Vec::<&str>::new());
    let sent = flaky.received_requests().await.unwrap();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body, sent[1].body, "the same batch again");

    // Always 500, a timeout, a redirect: every attempt made (3), then the
    // batch is reported from its first record, for Lambda to retry and
    // then park in the dead-letter queue.
    let broken = crm(500).await;
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&slow)
        .await;
    let elsewhere = crm(200).await;
    let redirecting = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("location", format!("{}/x", elsewhere.uri())),
        )
        .mount(&redirecting)
        .await;
    for (what, server) in [
        ("500", &broken),
        ("timeout", &slow),
        ("redirect", &redirecting),
    ] {
        let answer = change_events::handle(
            &app(Some(server.uri()), Duration::from_millis(300)),
            json!({ "Records": records.clone() }),
        )
        .await;
        assert_eq!(failures(&answer), [first.as_str()], "{what}");
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            3,
            "{what}: one attempt and two retries"
        );
    }
    assert!(
        elsewhere.received_requests().await.unwrap().is_empty(),
        "a redirect is never followed"
    );
}

#[tokio::test]
async fn b14_without_an_endpoint_or_events_a_batch_is_acknowledged_and_nothing_sent() {
    let stack = TestStack::new().await;
    three_changes(&stack).await;
    let records = audit_records(&stack).await;
    let answer = change_events::handle(
        &app(None, Duration::from_secs(1)),
        json!({ "Records": records }),
    )
    .await;
    assert_eq!(failures(&answer), Vec::<&str>::new());

    let crm = crm(200).await;
    let answer = change_events::handle(
        &app(Some(crm.uri()), Duration::from_secs(1)),
        json!({ "Records": [] }),
    )
    .await;
    assert_eq!(failures(&answer), Vec::<&str>::new());
    assert!(crm.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn b14_an_unreadable_record_is_reported_after_the_events_before_it_are_delivered() {
    let stack = TestStack::new().await;
    three_changes(&stack).await;
    let mut records = audit_records(&stack).await;
    records[1]["dynamodb"]["NewImage"]["action"] = json!({"S": "no_such_action"});
    let second = records[1]["dynamodb"]["SequenceNumber"]
        .as_str()
        .unwrap()
        .to_owned();
    let crm = crm(200).await;
    let answer = change_events::handle(
        &app(Some(crm.uri()), Duration::from_secs(5)),
        json!({ "Records": records }),
    )
    .await;
    assert_eq!(failures(&answer), [second.as_str()]);
    let requests = crm.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        body["events"].as_array().unwrap().len(),
        1,
        "only what comes before it, so nothing overtakes it"
    );
}

/// The whole path over DynamoDB Local's streams, as in AWS: a customer
/// writes, a `failed` status webhook is recorded, the Failures stream feeds
/// `wa-blocked`, the automatic block's event lands in the Audit stream,
/// `change-events` delivers it to the CRM, signed, and `platform-block`
/// blocks the customer at Meta (the business number has `platform_block`
/// on and the customer wrote within 24 hours).
#[tokio::test]
async fn b14_b15_b40_end_to_end_an_automatic_block_reaches_the_crm_and_meta() {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/events"))
        .and(header_exists("x-hub-signature-256"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&crm)
        .await;
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v25.0/106540352242922/block_users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "block_users": {"added_users": [{"input": NUMBER, "wa_id": "16505551234"}]},
        })))
        .mount(&graph)
        .await;
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let prefix = format!("events{}-{nanos}", std::process::id());
    let vars: BTreeMap<&str, String> = BTreeMap::from([
        ("BLOCKLIST_TABLE", format!("{prefix}-Blocklist")),
        ("AUDIT_TABLE", format!("{prefix}-Audit")),
        ("CHATS_TABLE", format!("{prefix}-Chats")),
        ("FAILURES_TABLE", format!("{prefix}-Failures")),
        ("IMPORTS_TABLE", format!("{prefix}-Imports")),
        ("MESSAGES_TABLE", format!("{prefix}-Messages")),
        ("EVENTS_WEBHOOK_URL", format!("{}/events", crm.uri())),
        ("EVENTS_WEBHOOK_SECRET", SECRET.to_owned()),
        ("GRAPH_API_BASE_URL", graph.uri()),
        (
            "LOCAL_JWT_SECRET",
            String::from_utf8_lossy(integration_tests::JWT_SECRET).into_owned(),
        ),
    ]);
    let lookup = move |key: &str| vars.get(key).cloned();
    let stack = Arc::new(
        wa_dev::server::Stack::build(&Env(&lookup), "127.0.0.1:9")
            .await
            .unwrap_or_else(|e| panic!("local stack: {e}")),
    );
    let feeds = [
        wa_dev::poller::Feed::DeliveryFailures,
        wa_dev::poller::Feed::AuditEvents,
        wa_dev::poller::Feed::PlatformBlocks,
    ]
    .map(|feed| tokio::spawn(wa_dev::poller::run(stack.clone(), feed)));
    let settings = integration_tests::call_block_api(
        &stack.block_api,
        integration_tests::ApiRequest::new("PUT", "/v1/settings/106540352242922")
            .bearer(&integration_tests::token("ops", &["blocklist:admin"]))
            .json(json!({"platform_block": true})),
    )
    .await;
    assert_eq!(settings.status, 200, "{}", settings.body);
    let webhook = |body: String| crate::webhook_ingress::signed_webhook(&body, b"local-app-secret");
    // The customer writes (forwarded: the CRM of this stack is unset).
    let wrote = crate::webhook_ingress::fixture("inbound-text.json").replace(
        "\"timestamp\":\"1749416383\"",
        &format!("\"timestamp\":\"{}\"", Utc::now().timestamp()),
    );
    let answer = integration_tests::read_response(
        webhook_ingress::handle(&stack.webhook_ingress, webhook(wrote).to_lambda()).await,
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);

    // Failed just now: a failure counts within the policy's window.
    let body = crate::webhook_ingress::fixture("status-failed-131026.json").replace(
        "\"timestamp\":\"1751142888\"",
        &format!("\"timestamp\":\"{}\"", Utc::now().timestamp()),
    );
    let answer = integration_tests::read_response(
        webhook_ingress::handle(&stack.webhook_ingress, webhook(body).to_lambda()).await,
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let event = loop {
        let requests = crm.received_requests().await.unwrap();
        let found = requests.iter().find_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            let event = body["events"]
                .as_array()?
                .iter()
                .find(|e| e["action"] == "auto_blocked")?
                .clone();
            let signed = r.headers["x-hub-signature-256"].to_str().ok()?
                == signature::sign(SECRET.as_bytes(), &r.body);
            Some((event, signed))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no auto_blocked change event reached the CRM in 30 s; got {} requests",
            requests.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let blocked_at_meta = loop {
        let requests = graph.received_requests().await.unwrap();
        if let Some(request) = requests.first() {
            break serde_json::from_slice::<Value>(&request.body).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no block_users request reached Graph in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for feed in feeds {
        feed.abort();
    }
    let (event, signed) = event;
    assert!(signed, "signed with EVENTS_WEBHOOK_SECRET");
    assert_eq!(event["number"], NUMBER);
    assert_eq!(event["scope"], "106540352242922");
    assert_eq!(event["source"], "auto");
    assert_eq!(
        blocked_at_meta,
        json!({"messaging_product": "whatsapp", "block_users": [{"user": NUMBER}]})
    );
}
