//! B28: webhook bodies up to Lambda's 6 MiB, base64 bodies verified over
//! their decoded bytes, and the 1 MiB limit of B50 kept for `/v1/`.

use base64::Engine;
use blocklist::http::request::{MAX_BODY_BYTES, MAX_WEBHOOK_BODY_BYTES};
use blocklist::meta::signature;
use integration_tests::{ApiRequest, ApiResponse, read_response, token};
use serde_json::{Value, json};

use super::{APP_SECRET, Ingress, fixture};
use crate::openapi::Server;

/// The app secret the local stack runs with by default (dev/src/server.rs).
const LOCAL_APP_SECRET: &[u8] = b"local-app-secret";

/// A delivery of `count` text messages from `senders` senders, in the shape
/// of `inbound-text.json`: one entry per sender, message ids
/// `wamid.B28.<n>`, each text `text_len` characters. Returns the body and
/// the message ids.
fn text_delivery(count: usize, senders: usize, text_len: usize) -> (String, Vec<String>) {
    let template: Value = serde_json::from_str(&fixture("inbound-text.json")).unwrap();
    let entry_template = &template["entry"][0];
    let message_template = &entry_template["changes"][0]["value"]["messages"][0];
    // Non-ASCII on purpose: the signature is over the raw UTF-8 bytes.
    let filler = "Olá! Is the order 👋 ready? ".repeat(text_len / 20 + 1);
    let mut ids = Vec::new();
    let entries: Vec<Value> = (0..senders)
        .map(|sender| {
            let wa_id = format!("1650555{:04}", 1000 + sender);
            let messages: Vec<Value> = (0..count)
                .filter(|n| n % senders == sender)
                .map(|n| {
                    let id = format!("wamid.B28.{n:05}");
                    ids.push(id.clone());
                    let mut message = message_template.clone();
                    message["id"] = json!(id);
                    message["from"] = json!(wa_id);
                    message["timestamp"] = json!((1_749_416_383 + n).to_string());
                    let text: String = format!("#{n} {filler}").chars().take(text_len).collect();
                    message["text"]["body"] = json!(text);
                    message
                })
                .collect();
            let mut entry = entry_template.clone();
            let value = &mut entry["changes"][0]["value"];
            value["contacts"] =
                json!([{ "profile": { "name": format!("Sender {sender}") }, "wa_id": wa_id }]);
            value["messages"] = json!(messages);
            entry
        })
        .collect();
    let mut delivery = template.clone();
    delivery["entry"] = json!(entries);
    ids.sort();
    (delivery.to_string(), ids)
}

/// `body` followed by spaces up to exactly `size` bytes: still the same
/// JSON, since JSON allows trailing whitespace.
fn padded(body: &str, size: usize) -> String {
    assert!(
        body.len() <= size,
        "{} bytes do not fit in {size}",
        body.len()
    );
    format!("{body}{}", " ".repeat(size - body.len()))
}

/// The message ids in `body`.
fn message_ids(body: &str) -> Vec<String> {
    let delivery: Value = serde_json::from_str(body).unwrap();
    let mut ids: Vec<String> = delivery["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entry| entry["changes"].as_array().into_iter().flatten())
        .flat_map(|change| change["value"]["messages"].as_array().into_iter().flatten())
        .map(|message| message["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Every idempotency claim (`W#…`) in the test's Messages table. A Scan is
/// fine here: the table is this test's own.
async fn claims(ingress: &Ingress) -> Vec<String> {
    let scan = ingress
        .stack
        .client
        .scan()
        .table_name(&ingress.stack.tables.messages)
        .filter_expression("begins_with(pk, :claim)")
        .expression_attribute_values(
            ":claim",
            aws_sdk_dynamodb::types::AttributeValue::S("W#".into()),
        )
        .send()
        .await
        .expect("scan Messages");
    scan.items()
        .iter()
        .filter_map(|item| item.get("pk")?.as_s().ok().cloned())
        .collect()
}

async fn assert_nothing_recorded(ingress: &Ingress) {
    assert!(ingress.crm_bodies().await.is_empty(), "nothing forwarded");
    assert_eq!(
        claims(ingress).await,
        Vec::<String>::new(),
        "nothing claimed"
    );
}

/// Delivers `body` as API Gateway does with `isBase64Encoded: true`,
/// with `signature` as `X-Hub-Signature-256`.
async fn deliver_base64(ingress: &Ingress, body: &[u8], signature: &str) -> ApiResponse {
    let mut event = ApiRequest::new("POST", "/webhook")
        .header("x-hub-signature-256", signature)
        .header("content-type", "application/json")
        .event();
    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
    event["isBase64Encoded"] = json!(true);
    let request = lambda_http::request::from_str(&event.to_string()).expect("API Gateway event");
    read_response(webhook_ingress::handle(&ingress.app, request).await)
}

fn assert_too_large(response: &ApiResponse) {
    assert_eq!(response.status, 413, "{:?}", response.body);
    assert_eq!(response.body["error"]["code"], "payload_too_large");
    assert!(response.body["error"]["message"].is_string());
}

#[tokio::test]
async fn b28_delivery_of_1100_messages_of_1_7_mb_is_forwarded_once() {
    let ingress = Ingress::new(200).await;
    let (body, ids) = text_delivery(1100, 7, 1260);
    assert!(
        (1_650_000..1_750_000).contains(&body.len()),
        "about 1.7 MB, over the 1 MiB /v1/ limit: {} bytes",
        body.len()
    );
    assert_eq!(ids.len(), 1100);

    let response = ingress.deliver(&body).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["forwarded"], 1100);
    let mut forwarded = ingress.forwarded_message_ids().await;
    forwarded.sort();
    assert_eq!(forwarded, ids, "every message reached the CRM exactly once");
}

#[tokio::test]
async fn b28_body_one_byte_over_6_mib_is_413_and_records_nothing() {
    let ingress = Ingress::new(200).await;
    let (body, _) = text_delivery(1100, 7, 1260);
    let over = padded(&body, MAX_WEBHOOK_BODY_BYTES + 1);
    assert_eq!(over.len(), 6 * 1024 * 1024 + 1);

    let response = ingress.deliver(&over).await;
    assert_too_large(&response);
    assert_nothing_recorded(&ingress).await;
}

#[tokio::test]
async fn b28_body_of_exactly_6_mib_is_not_refused_for_its_size() {
    let ingress = Ingress::new(200).await;
    let delivery = padded(&fixture("inbound-text.json"), MAX_WEBHOOK_BODY_BYTES);
    let response = ingress.deliver(&delivery).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(
        ingress.forwarded_message_ids().await,
        message_ids(&delivery)
    );

    // Refused for what it is, not for its size.
    let not_json = "x".repeat(MAX_WEBHOOK_BODY_BYTES);
    let response = ingress.deliver(&not_json).await;
    assert_eq!(response.status, 400, "{:?}", response.body);
    assert_eq!(response.body["error"]["code"], "malformed_json");
}

#[tokio::test]
async fn b28_base64_body_is_verified_over_its_decoded_bytes() {
    let ingress = Ingress::new(200).await;
    let body = fixture("inbound-unicode.json");
    let encoded = base64::engine::general_purpose::STANDARD.encode(&body);

    // Signed over the base64 text instead of the bytes Meta sent.
    let over_encoded = signature::sign(APP_SECRET.as_bytes(), encoded.as_bytes());
    let response = deliver_base64(&ingress, body.as_bytes(), &over_encoded).await;
    assert_eq!(response.status, 401, "{:?}", response.body);
    assert_eq!(response.body["error"]["code"], "unauthorized");
    assert_nothing_recorded(&ingress).await;

    let over_decoded = signature::sign(APP_SECRET.as_bytes(), body.as_bytes());
    let response = deliver_base64(&ingress, body.as_bytes(), &over_decoded).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["duplicates"], 0, "the 401 claimed nothing");
    assert_eq!(ingress.forwarded_message_ids().await, message_ids(&body));
    let forwarded = &ingress.crm_bodies().await[0];
    assert_eq!(forwarded, &serde_json::from_str::<Value>(&body).unwrap());
}

#[tokio::test]
async fn b28_base64_body_is_limited_by_its_decoded_size() {
    let ingress = Ingress::new(200).await;
    // 6 MiB decoded is 8 MiB of base64 text: accepted.
    let at_limit = padded(&fixture("inbound-text.json"), MAX_WEBHOOK_BODY_BYTES);
    let signed = signature::sign(APP_SECRET.as_bytes(), at_limit.as_bytes());
    let response = deliver_base64(&ingress, at_limit.as_bytes(), &signed).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(ingress.forwarded_message_ids().await.len(), 1);

    let ingress = Ingress::new(200).await;
    let over = padded(&fixture("inbound-text.json"), MAX_WEBHOOK_BODY_BYTES + 1);
    let signed = signature::sign(APP_SECRET.as_bytes(), over.as_bytes());
    let response = deliver_base64(&ingress, over.as_bytes(), &signed).await;
    assert_too_large(&response);
    assert_nothing_recorded(&ingress).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b28_local_stack_takes_6_mib_webhooks_and_keeps_1_mib_for_v1() {
    let server = Server::start().await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client");
    let webhook = |body: String| {
        http.post(format!("{}/webhook", server.base))
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                signature::sign(LOCAL_APP_SECRET, body.as_bytes()),
            )
            .body(body)
            .send()
    };
    let status_and_body = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("JSON answer"))
    };

    let at_limit = padded(&fixture("inbound-text.json"), MAX_WEBHOOK_BODY_BYTES);
    let (status, body) = status_and_body(webhook(at_limit).await.expect("POST")).await;
    assert_eq!(status, 200, "{body}");

    let over = padded(&fixture("inbound-unicode.json"), MAX_WEBHOOK_BODY_BYTES + 1);
    let (status, body) = status_and_body(webhook(over).await.expect("POST")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("payload_too_large")),
        "{body}"
    );

    let reason = "x".repeat(MAX_BODY_BYTES);
    let response = http
        .put(format!("{}/v1/blocks/+16505551234", server.base))
        .bearer_auth(token("agent-1", &["blocklist:read", "blocklist:write"]))
        .json(&json!({ "reason": reason }))
        .send()
        .await
        .expect("PUT");
    let (status, body) = status_and_body(response).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("payload_too_large")),
        "{body}"
    );
    server.stop().await;
}
