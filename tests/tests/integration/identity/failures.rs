//! B64: failed statuses of sends addressed to a BSUID are counted for the
//! right person, by `recipient_user_id` or by the message id the send
//! proxy recorded, and wa-blocked auto-blocks that person.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use blocklist::Subject;
use chrono::Utc;
use serde_json::{Value, json};

use super::{
    BSUID, LINE_A, NUMBER, World, assert_blocked, bsuid_only, delivery, failed_status, fixture,
    graph_answer,
};
use crate::send_proxy::text_send_to;

type Item = HashMap<String, AttributeValue>;

/// The items of partition `pk`: of the Failures table for `F#…`, of the
/// Messages table for `O#…`, else of the Blocklist table.
async fn partition(world: &World, pk: &str) -> Vec<Item> {
    let stack = world.stack();
    let table = if pk.starts_with("F#") {
        &stack.tables.failures
    } else if pk.starts_with("O#") {
        &stack.tables.messages
    } else {
        &stack.tables.blocklist
    };
    stack
        .client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
}

fn text(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

/// The DynamoDB Stream record of the insert of `item`, as Lambda's event
/// source mapping hands it to wa-blocked.
fn stream_record(item: Item, sequence: &str) -> Value {
    let keys: Item = item
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

/// Hands wa-blocked the failure items of `subject`, as the stream would.
async fn stream_failures_of(world: &World, subject: &str, sequence: &str) -> Value {
    let items = partition(world, &format!("F#{subject}")).await;
    assert!(!items.is_empty(), "no failure recorded under F#{subject}");
    let records: Vec<Value> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| stream_record(item, &format!("{sequence}{i}")))
        .collect();
    let app = wa_blocked::App::new(world.stack().store.clone());
    wa_blocked::handle(&app, json!({ "Records": records }))
        .await
        .expect("stream batches always answer")
}

#[tokio::test]
async fn b64_failure_by_message_id_auto_blocks_the_bsuid_end_to_end() {
    let world = World::new().await;
    // Graph takes a send addressed to a BSUID and names the message.
    let message_id = "wamid.B64SENTTOBSUID1";
    world
        .graph_answers_json(graph_answer(
            json!([{"input": BSUID, "user_id": BSUID}]),
            message_id,
        ))
        .await;
    let response = world.send(&fixture("graph-send-bsuid.request.json")).await;
    assert_eq!(response.status, 200, "{:?}", response.json());

    // The proxy remembers who the message went to, for 30 days.
    let sent = partition(&world, &format!("O#{message_id}")).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(text(&sent[0], "subject").as_deref(), Some(BSUID));
    let ttl: i64 = sent[0]["ttl"].as_n().unwrap().parse().unwrap();
    let in_30_days = (Utc::now() + chrono::Duration::days(30)).timestamp();
    assert!(
        (in_30_days - 120..=in_30_days + 120).contains(&ttl),
        "ttl {ttl} is not 30 days from now ({in_30_days})"
    );

    // Meta reports the failure naming neither recipient id.
    let status = failed_status(message_id, None, None);
    let response = world.deliver(&delivery(vec![], vec![], vec![status])).await;
    assert_eq!(response.body["forwarded"], 1, "{:?}", response.body);
    let forwarded = world.ingress.crm_bodies().await;
    assert_eq!(
        forwarded[0]["entry"][0]["changes"][0]["value"]["statuses"][0]["id"], message_id,
        "the status reaches the CRM"
    );

    let bsuid = Subject::parse(BSUID).unwrap();
    let since = Utc::now() - chrono::Duration::days(1);
    let failures = world
        .stack()
        .store
        .failures_since(&bsuid, since)
        .await
        .unwrap();
    assert_eq!(failures.len(), 1, "counted for the BSUID: {failures:?}");
    assert_eq!(failures[0].message_id, message_id);
    assert_eq!(failures[0].code, Some(131026));
    assert_eq!(
        failures[0].phone_number_id.as_ref().unwrap().as_str(),
        LINE_A
    );

    // wa-blocked reads the failure from the stream and blocks the BSUID.
    let answer = stream_failures_of(&world, BSUID, "500").await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let view = world.view(BSUID).await;
    let blocks = view["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{view}");
    assert_eq!(blocks[0]["subject"], BSUID);
    assert_eq!(blocks[0]["source"], "auto");
    assert_eq!(blocks[0]["scope"], LINE_A);
    assert_eq!(blocks[0]["reason_code"], "131026");
    let auto = world.events(BSUID, "auto_blocked").await;
    assert_eq!(auto.len(), 1, "{auto:?}");
    assert_eq!(auto[0]["details"]["message_id"], message_id);

    // The next send to the BSUID is refused, and its messages suppressed.
    assert_blocked(&world.send(&fixture("graph-send-bsuid.request.json")).await);
    assert_eq!(world.graph_requests().await.len(), 1);
    let inbound = world.deliver(&bsuid_only("wamid.B64INBOUND")).await;
    assert_eq!(inbound.body["suppressed"], 1, "{:?}", inbound.body);
}

#[tokio::test]
async fn b64_failed_status_with_only_recipient_user_id_is_attributed_to_the_bsuid() {
    let world = World::new().await;
    let body = fixture("status-failed-bsuid.json")
        .replace("1749417100", &Utc::now().timestamp().to_string());
    let response = world.deliver(&body).await;
    assert_eq!(response.body["forwarded"], 1, "{:?}", response.body);

    let items = partition(&world, &format!("F#{BSUID}")).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(text(&items[0], "subject").as_deref(), Some(BSUID));
    assert_eq!(
        text(&items[0], "message_id").as_deref(),
        Some("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCU1VJRFNFTlQxAA==")
    );
    assert!(partition(&world, &format!("F#{NUMBER}")).await.is_empty());

    let answer = stream_failures_of(&world, BSUID, "600").await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let view = world.view(BSUID).await;
    assert_eq!(view["blocks"][0]["source"], "auto", "{view}");
    assert_eq!(view["blocks"][0]["scope"], LINE_A);
}

#[tokio::test]
async fn b64_failure_of_a_send_to_a_number_is_attributed_by_message_id() {
    let world = World::new().await;
    // The default answer names wa_id 16505551234 and this message id.
    let message_id = "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA";
    let response = world.send(&text_send_to(NUMBER)).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    let status = failed_status(message_id, None, None);
    world.deliver(&delivery(vec![], vec![], vec![status])).await;
    let items = partition(&world, &format!("F#{NUMBER}")).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(text(&items[0], "message_id").as_deref(), Some(message_id));
    stream_failures_of(&world, NUMBER, "700").await;
    assert_eq!(world.view(NUMBER).await["blocks"][0]["source"], "auto");
}

#[tokio::test]
async fn b64_failed_status_of_an_unknown_message_is_forwarded_and_not_counted() {
    let world = World::new().await;
    let status = failed_status("wamid.B64NOTOURS", None, None);
    let body = delivery(vec![], vec![], vec![status]);
    let response = world.deliver(&body).await;
    assert_eq!(response.body["forwarded"], 1, "{:?}", response.body);
    assert_eq!(world.ingress.crm_bodies().await.len(), 1);
    for subject in [BSUID, NUMBER] {
        assert!(partition(&world, &format!("F#{subject}")).await.is_empty());
    }
    // Handled: Meta's redelivery is a duplicate.
    let again = world.deliver(&body).await;
    assert_eq!(again.body["duplicates"], 1, "{:?}", again.body);
    assert_eq!(world.ingress.crm_bodies().await.len(), 1);
}
