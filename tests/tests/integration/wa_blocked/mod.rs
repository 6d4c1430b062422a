//! wa-blocked (B40–B43) against DynamoDB Local, fed the way Lambda's event
//! source mapping feeds it: DynamoDB Stream records of the failure items
//! that webhook-ingress wrote.

use blocklist::Subject;
use blocklist::inbound::DeliveryFailure;
use blocklist::model::PhoneNumberId;
use chrono::{DateTime, Duration, Utc};
use integration_tests::TestStack;
use serde_json::{Value, json};

use crate::block_api::Api;

const LINE: &str = "106540352242922";
const NUMBER: &str = "+16505551234";

pub(crate) fn failure(code: i64, at: DateTime<Utc>, message_id: &str) -> DeliveryFailure {
    DeliveryFailure {
        subject: Subject::parse(NUMBER).unwrap(),
        phone_number_id: PhoneNumberId::parse(LINE).ok(),
        code: Some(code),
        title: Some("Message undeliverable".into()),
        message_id: message_id.into(),
        at,
    }
}

/// Stores `failure` as webhook-ingress does and returns the stream record
/// DynamoDB Streams would deliver for that write.
pub(crate) async fn stored(stack: &TestStack, failure: &DeliveryFailure, sequence: &str) -> Value {
    stack
        .store
        .record_failures(std::slice::from_ref(failure))
        .await
        .unwrap();
    let out = stack
        .client
        .query()
        .table_name(&stack.tables.failures)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("F#{}", failure.subject)),
        )
        .send()
        .await
        .unwrap();
    let item = out
        .items
        .unwrap_or_default()
        .into_iter()
        .find(|i| i.get("message_id").and_then(|v| v.as_s().ok()) == Some(&failure.message_id))
        .expect("failure item stored");
    stream_record(item, sequence)
}

pub(crate) fn stream_record(
    item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    sequence: &str,
) -> Value {
    let keys: std::collections::HashMap<_, _> = item
        .iter()
        .filter(|(k, _)| *k == "pk" || *k == "sk")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let image = serde_json::to_value(serde_dynamo::Item::from(item)).unwrap();
    let keys = serde_json::to_value(serde_dynamo::Item::from(keys)).unwrap();
    json!({
        "eventID": format!("event-{sequence}"),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795000000,
            "Keys": keys,
            "NewImage": image,
            "SequenceNumber": sequence,
            "SizeBytes": 256,
            "StreamViewType": "NEW_IMAGE"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/Blocklist/stream/2026-11-23T00:00:00.000"
    })
}

async fn deliver(stack: &TestStack, records: Vec<Value>) -> Value {
    let app = wa_blocked::App::new(stack.store.clone());
    wa_blocked::handle(&app, json!({ "Records": records }))
        .await
        .expect("stream batches always answer")
}

/// Delivers `records` and checks that every one of them was handled: no
/// item is reported failed (B43).
pub(crate) async fn deliver_ok(stack: &TestStack, records: Vec<Value>) {
    let answer = deliver(stack, records).await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
}

async fn set_threshold(api: &Api, threshold: u32) {
    let admin = integration_tests::token(
        "ops",
        &["blocklist:read", "blocklist:write", "blocklist:admin"],
    );
    let response = api
        .send(
            integration_tests::ApiRequest::new("PUT", &format!("/v1/settings/{LINE}"))
                .bearer(&admin)
                .json(json!({"auto_block": {"threshold": threshold}})),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
}

async fn blocks(api: &Api) -> Vec<Value> {
    let view = api.call("GET", &format!("/v1/blocks/{NUMBER}"), None).await;
    view.body["blocks"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn b40_first_131026_with_threshold_one_auto_blocks() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    let record = stored(&stack, &failure(131026, Utc::now(), "wamid.F1"), "100").await;
    let answer = deliver(&stack, vec![record]).await;
    assert_eq!(answer, json!({"batchItemFailures": []}));

    let blocks = blocks(&api).await;
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0]["source"], "auto");
    assert_eq!(blocks[0]["scope"], LINE);
    assert_eq!(blocks[0]["reason_code"], "131026");
    let reason = blocks[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("131026") && reason.contains("Message undeliverable"),
        "{reason}"
    );
    assert_eq!(blocks[0]["actor"], "wa-blocked");

    let history = api.history(NUMBER).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["action"], "auto_blocked");
    assert_eq!(history[0]["details"]["message_id"], "wamid.F1");
    let stats = api.call("GET", "/v1/stats", None).await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(
        integration_tests::stats_total(&stats.body, "auto_blocked"),
        1
    );
}

#[tokio::test]
async fn b40_threshold_three_blocks_on_the_third_failure_inside_the_window() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    set_threshold(&api, 3).await;
    let now = Utc::now();
    // Two failures long ago, outside the 30-day window: they do not count.
    for (i, days) in [45, 40].into_iter().enumerate() {
        let record = stored(
            &stack,
            &failure(131026, now - Duration::days(days), &format!("wamid.OLD{i}")),
            "1",
        )
        .await;
        deliver_ok(&stack, vec![record]).await;
    }
    let first = stored(
        &stack,
        &failure(131026, now - Duration::days(2), "wamid.N1"),
        "10",
    )
    .await;
    deliver_ok(&stack, vec![first]).await;
    let second = stored(
        &stack,
        &failure(131026, now - Duration::days(1), "wamid.N2"),
        "11",
    )
    .await;
    deliver_ok(&stack, vec![second]).await;
    assert!(
        blocks(&api).await.is_empty(),
        "two failures in the window: not yet"
    );

    let third = stored(&stack, &failure(131026, now, "wamid.N3"), "12").await;
    deliver_ok(&stack, vec![third]).await;
    let blocks = blocks(&api).await;
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0]["source"], "auto");
    let history = api.history(NUMBER).await;
    assert_eq!(history[0]["details"]["message_id"], "wamid.N3");
    assert_eq!(history[0]["details"]["failures"], 3);
}

#[tokio::test]
async fn b40_other_error_codes_are_recorded_but_never_block() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    let mut records = Vec::new();
    for i in 0..3 {
        records.push(
            stored(
                &stack,
                &failure(131049, Utc::now(), &format!("wamid.X{i}")),
                &format!("{}", 20 + i),
            )
            .await,
        );
    }
    let answer = deliver(&stack, records).await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert!(blocks(&api).await.is_empty());
    let since = Utc::now() - Duration::days(1);
    let recorded = stack
        .store
        .failures_since(&Subject::parse(NUMBER).unwrap(), since)
        .await
        .unwrap();
    assert_eq!(recorded.len(), 3, "the failures stay recorded");
}

#[tokio::test]
async fn b42_existing_manual_block_is_untouched() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    for scope in ["all", LINE] {
        let response = api
            .block(NUMBER, json!({"reason": "manual decision", "scope": scope}))
            .await;
        assert_eq!(response.status, 201);
    }
    let record = stored(&stack, &failure(131026, Utc::now(), "wamid.M1"), "30").await;
    deliver_ok(&stack, vec![record]).await;
    let blocks = blocks(&api).await;
    assert_eq!(blocks.len(), 2);
    assert!(
        blocks
            .iter()
            .all(|b| b["source"] == "manual" && b["reason"] == "manual decision")
    );
    let history = api.history(NUMBER).await;
    assert!(
        history.iter().all(|e| e["action"] != "auto_blocked"),
        "{history:?}"
    );
}

#[tokio::test]
async fn b42_manual_block_for_all_keeps_auto_block_away() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    api.block(NUMBER, json!({"reason": "manual decision", "scope": "all"}))
        .await;
    let record = stored(&stack, &failure(131026, Utc::now(), "wamid.M2"), "31").await;
    deliver_ok(&stack, vec![record]).await;
    let blocks = blocks(&api).await;
    assert_eq!(
        blocks.len(),
        1,
        "no auto block stacked under the manual one"
    );
    assert_eq!(blocks[0]["source"], "manual");
}

#[tokio::test]
async fn b43_the_same_record_twice_counts_once() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    set_threshold(&api, 2).await;
    let record = stored(&stack, &failure(131026, Utc::now(), "wamid.D1"), "40").await;
    deliver_ok(&stack, vec![record.clone()]).await;
    deliver_ok(&stack, vec![record.clone(), record]).await;
    assert!(
        blocks(&api).await.is_empty(),
        "one failure, delivered three times"
    );
}

#[tokio::test]
async fn b43_one_corrupt_record_fails_alone() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    let good = stored(&stack, &failure(131026, Utc::now(), "wamid.G1"), "51").await;
    let mut corrupt = good.clone();
    corrupt["dynamodb"]["SequenceNumber"] = json!("50");
    corrupt["dynamodb"]["NewImage"]["number"] = json!({"S": "not a number"});
    let mut garbage =
        json!({"eventName": "INSERT", "dynamodb": {"SequenceNumber": "52", "NewImage": 7}});
    garbage["awsRegion"] = json!("us-east-1");

    // One bad record before a good one: exactly the bad one is reported.
    let answer = deliver(&stack, vec![corrupt.clone(), good.clone()]).await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "50"}]})
    );
    assert_eq!(blocks(&api).await.len(), 1, "the good record was handled");
    // One after a good one (redelivered, already handled): the same.
    let answer = deliver(&stack, vec![good.clone(), garbage.clone()]).await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "52"}]})
    );
    // Two among three: both, in the batch's order, the good one not.
    let answer = deliver(&stack, vec![corrupt, good, garbage]).await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "50"}, {"itemIdentifier": "52"}]})
    );
    assert_eq!(blocks(&api).await.len(), 1, "still one block");
    assert_eq!(api.history(NUMBER).await.len(), 1, "one auto_blocked event");
}

/// B40, B43: a store that fails for a moment while a record is handled
/// (DynamoDB restarting, throttling) delays the automatic block but does
/// not lose it: the record is retried within the invocation, not handed
/// back to the stream's few retries and then to the dead-letter queue.
#[tokio::test]
async fn b40_b43_a_store_blip_does_not_lose_the_automatic_block() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    set_threshold(&api, 1).await;
    let record = stored(&stack, &failure(131026, Utc::now(), "wamid.BLIP"), "60").await;
    let relay = integration_tests::DynamoRelay::start(&integration_tests::endpoint());
    // The first four reads of the person's failures are refused.
    let failures = relay.fail_first(4, |operation, body| {
        operation == "Query"
            && body["ExpressionAttributeValues"][":pk"]["S"]
                .as_str()
                .is_some_and(|pk| pk.starts_with("F#"))
    });
    let app = wa_blocked::App::new(stack.store_via(&relay));
    let answer = wa_blocked::handle(&app, json!({ "Records": [record] }))
        .await
        .expect("stream batches always answer");
    assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let blocks = blocks(&api).await;
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["source"], "auto");
}

#[tokio::test]
async fn b41_wa_blocked_event_auto_blocks() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    let path = format!(
        "{}/fixtures/meta/wa-blocked-event.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let app = wa_blocked::App::new(stack.store.clone());
    let answer = wa_blocked::handle(&app, event.clone()).await.unwrap();
    assert_eq!(answer["status"], "auto_blocked");
    let view = api.call("GET", "/v1/blocks/+16505550100", None).await;
    let block = &view.body["blocks"][0];
    assert_eq!(block["source"], "auto");
    assert_eq!(block["reason_code"], "302");
    assert_eq!(block["scope"], LINE);
    assert_eq!(block["actor"], "wa-blocked");
    assert!(block["reason"].as_str().unwrap().contains("Invalid number"));

    // The audit event: who, what, and the event's own facts.
    let history = api.history("+16505550100").await;
    assert_eq!(history.len(), 1, "{history:?}");
    let audit = &history[0];
    assert_eq!(audit["action"], "auto_blocked", "{audit}");
    assert_eq!(audit["actor"], "wa-blocked", "{audit}");
    assert_eq!(audit["client"], Value::Null, "{audit}");
    assert_eq!(audit["source"], "auto", "{audit}");
    assert_eq!(audit["scope"], LINE, "{audit}");
    assert_eq!(audit["subject"], "+16505550100", "{audit}");
    assert_eq!(audit["reason"], block["reason"], "{audit}");
    let details = &audit["details"];
    assert_eq!(details["after"]["reason_code"], "302", "{audit}");
    assert_eq!(details["after"]["source"], "auto", "{audit}");
    assert_eq!(details["after"]["scope"], LINE, "{audit}");
    assert_eq!(details["event_timestamp"], event["timestamp"], "{audit}");
    assert_eq!(details["sender"], event["sender"], "{audit}");
    // Delivered again: nothing new.
    assert_eq!(
        wa_blocked::handle(&app, event).await.unwrap()["status"],
        "already_blocked"
    );
    assert_eq!(api.history("+16505550100").await.len(), 1);
    // An invalid event is an error, not a block.
    let bad = json!({"type": "wa_blocked", "phone": "nope"});
    assert!(wa_blocked::handle(&app, bad).await.is_err());
}

#[tokio::test]
async fn b40_end_to_end_a_failed_delivery_blocks_inbound_and_outbound() {
    use crate::send_proxy::{GRAPH_PATH, app_for, config};
    use crate::webhook_ingress::{Ingress, fixture};

    // Meta reports error 131026 for a message to the customer.
    let ingress = Ingress::new(200).await;
    let stack = &ingress.stack;
    // (Now: the fixture's 2025 timestamp is outside the 30-day window.)
    let failed = fixture("status-failed-131026.json")
        .replace("1751142888", &Utc::now().timestamp().to_string());
    let response = ingress.deliver(&failed).await;
    assert_eq!(response.status, 200, "{:?}", response.body);

    // The stream hands wa-blocked the failure item ingress wrote.
    let out = stack
        .client
        .query()
        .table_name(&stack.tables.failures)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("F#{NUMBER}")),
        )
        .send()
        .await
        .unwrap();
    let items = out.items.unwrap_or_default();
    assert_eq!(items.len(), 1, "one failure recorded by webhook-ingress");
    let record = stream_record(items.into_iter().next().unwrap(), "900");
    assert_eq!(
        deliver(stack, vec![record]).await,
        json!({"batchItemFailures": []})
    );

    // Inbound from that number on that business number is now suppressed...
    let inbound = ingress.deliver(&fixture("inbound-text.json")).await;
    assert_eq!(inbound.status, 200);
    assert_eq!(inbound.body["suppressed"], 1);
    assert!(ingress.forwarded_message_ids().await.is_empty());

    // ...and a send to it is refused without reaching Graph.
    let graph = wiremock::MockServer::start().await;
    let proxy = app_for(
        stack.store.clone(),
        config(&graph.uri(), std::time::Duration::from_secs(5)),
    );
    let body = json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "text", "text": {"body": "hi"}});
    let request = integration_tests::ApiRequest::new("POST", &format!("/v1/{LINE}/messages"))
        .bearer(&integration_tests::token("crm", &["messages:send"]))
        .json(body);
    let response = send_proxy::handle(&proxy, request.to_lambda()).await;
    assert_eq!(response.status().as_u16(), 403);
    let refused: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    assert_eq!(
        refused["error"]["error_data"]["reason"],
        "recipient_blocked"
    );
    assert!(
        graph.received_requests().await.unwrap().is_empty(),
        "nothing sent to {GRAPH_PATH}"
    );

    let history = Api::on(stack).history(NUMBER).await;
    let actions: Vec<&str> = history
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"auto_blocked")
            && actions.contains(&"inbound_suppressed")
            && actions.contains(&"outbound_refused"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn b42_auto_block_still_applies_under_a_temporary_block_for_all() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    let until = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let response = api
        .block(
            NUMBER,
            json!({"reason": "cool off", "scope": "all", "expires_at": until}),
        )
        .await;
    assert_eq!(response.status, 201);
    let record = stored(&stack, &failure(131026, Utc::now(), "wamid.T1"), "60").await;
    deliver_ok(&stack, vec![record]).await;
    let blocks = blocks(&api).await;
    assert_eq!(
        blocks.len(),
        2,
        "the automatic block outlasts the temporary one: {blocks:?}"
    );
    assert!(
        blocks
            .iter()
            .any(|b| b["source"] == "auto" && b["scope"] == LINE)
    );
    assert!(
        blocks
            .iter()
            .any(|b| b["source"] == "manual" && b["scope"] == "all")
    );
}

#[tokio::test]
async fn b40_failures_before_a_manual_unblock_no_longer_count() {
    let stack = TestStack::new().await;
    let api = Api::on(&stack);
    set_threshold(&api, 2).await;
    let first = stored(
        &stack,
        &failure(131026, Utc::now() - Duration::minutes(5), "wamid.U1"),
        "70",
    )
    .await;
    deliver_ok(&stack, vec![first.clone()]).await;
    // An operator blocks and then unblocks the number: a fresh start.
    api.block(NUMBER, json!({"reason": "check", "scope": LINE}))
        .await;
    let unblocked = api
        .call(
            "DELETE",
            &format!("/v1/blocks/{NUMBER}?scope={LINE}"),
            Some(json!({"reason": "fine"})),
        )
        .await;
    assert_eq!(unblocked.status, 200);
    let second = stored(
        &stack,
        &failure(131026, Utc::now() + Duration::seconds(1), "wamid.U2"),
        "71",
    )
    .await;
    deliver_ok(&stack, vec![second]).await;
    assert!(
        blocks(&api).await.is_empty(),
        "one failure since the unblock, threshold 2"
    );
    // The old record redelivered does not re-block either.
    deliver_ok(&stack, vec![first]).await;
    assert!(blocks(&api).await.is_empty());
    let third = stored(
        &stack,
        &failure(131026, Utc::now() + Duration::seconds(2), "wamid.U3"),
        "72",
    )
    .await;
    deliver_ok(&stack, vec![third]).await;
    assert_eq!(
        blocks(&api).await.len(),
        1,
        "two failures since the unblock"
    );
}
