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
        },
    )
    .expect("a Graph client")
}

/// A Graph fake that blocks or unblocks everyone it is asked to, as Meta
/// does for persons who wrote within 24 hours.
async fn graph_that_accepts() -> MockServer {
    let graph = MockServer::start().await;
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
        .mount(&graph)
        .await;
    graph
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
    let records = audit_records(stack).await;
    let new = records[*seen..].to_vec();
    *seen = records.len();
    platform_block::handle(app, json!({ "Records": new })).await
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
    let stack = TestStack::new().await;
    let graph = graph_that_accepts().await;
    let app = app(&stack, &graph);
    turn_on(&stack, LINE).await;
    stack.chat_with(LINE, NUMBER).await;
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
    let again =
        platform_block::handle(&app, json!({ "Records": audit_records(&stack).await })).await;
    assert_eq!(failures(&again), 0);
    assert_eq!(requests(&graph).await.len(), 1, "idempotent");

    let unblocked = Api::on(&stack)
        .call(
            "DELETE",
            &format!("/v1/blocks/{NUMBER}?scope=all"),
            Some(json!({"reason": "sorted out"})),
        )
        .await;
    assert_eq!(unblocked.status, 200);
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

#[tokio::test]
async fn b15_a_person_silent_for_a_day_is_mirrored_at_their_next_message() {
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

#[tokio::test]
async fn b15_b13_expiry_removes_the_platform_block() {
    let stack = TestStack::new().await;
    let graph = graph_that_accepts().await;
    let mut app = app(&stack, &graph);
    turn_on(&stack, LINE).await;
    stack.chat_with(LINE, NUMBER).await;
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
    let records = audit_records(&stack).await;
    let answer = platform_block::handle(&app, json!({ "Records": records.clone() })).await;
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
    let retried = platform_block::handle(&app, json!({ "Records": records })).await;
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
