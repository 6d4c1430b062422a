//! B20–B27 end to end through the real handler.

use std::time::Duration;

use blocklist::Subject;
use blocklist::meta::signature;
use blocklist::model::{ChatStatus, PhoneNumberId};
use chrono::Utc;
use integration_tests::{ApiRequest, dynamodb_client};
use serde_json::json;

use super::{APP_SECRET, CRM_SECRET, Ingress, VERIFY_TOKEN, app_for, fixture};
use crate::block_api::Api;

const LINE_A: &str = "106540352242922";
const LINE_B: &str = "106540352242923";

async fn block(ingress: &Ingress, number: &str, scope: &str) {
    let api = Api::on(&ingress.stack);
    let response = api
        .block(number, json!({"reason": "spam", "scope": scope}))
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
}

async fn history_actions(ingress: &Ingress, number: &str) -> Vec<serde_json::Value> {
    Api::on(&ingress.stack).history(number).await
}

#[tokio::test]
async fn b20_handshake_echoes_the_challenge_only_for_the_right_token() {
    let ingress = Ingress::new(200).await;
    let good = format!(
        "/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    );
    let response =
        webhook_ingress::handle(&ingress.app, ApiRequest::new("GET", &good).to_lambda()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().as_ref(), b"1158201444");

    for bad in [
        "/webhook?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        "/webhook?hub.mode=unsubscribe&hub.verify_token=test-verify-token&hub.challenge=1",
        "/webhook?hub.mode=subscribe&hub.challenge=1",
        "/webhook",
    ] {
        let response = ingress.send(ApiRequest::new("GET", bad)).await;
        assert_eq!(response.status, 403, "{bad}");
    }
}

#[tokio::test]
async fn b21_missing_malformed_or_wrong_signature_is_401_and_records_nothing() {
    let ingress = Ingress::new(200).await;
    let body = fixture("inbound-text.json");
    let unsigned = ApiRequest::new("POST", "/webhook").raw_body(&body);
    let cases = [
        unsigned.clone(),
        unsigned.clone().header("x-hub-signature-256", "sha256=abc"),
        unsigned.clone().header("x-hub-signature-256", "md5=0000"),
        unsigned.clone().header(
            "x-hub-signature-256",
            &signature::sign(b"not-the-secret", body.as_bytes()),
        ),
        // Signed over other bytes.
        unsigned.clone().header(
            "x-hub-signature-256",
            &signature::sign(APP_SECRET.as_bytes(), b"{}"),
        ),
    ];
    for request in cases {
        let response = ingress.send(request).await;
        assert_eq!(response.status, 401, "{:?}", response.body);
        assert_eq!(response.body["error"]["code"], "unauthorized");
    }
    assert!(ingress.crm_bodies().await.is_empty(), "nothing forwarded");
    let chat = ingress
        .stack
        .store
        .get_chat(
            &PhoneNumberId::parse(LINE_A).unwrap(),
            &Subject::parse("+16505551234").unwrap(),
        )
        .await
        .unwrap();
    assert!(chat.is_none(), "no chat recorded");
    // Nothing was claimed either: the properly signed delivery goes through.
    let response = ingress.deliver(&body).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(ingress.forwarded_message_ids().await.len(), 1);
}

#[tokio::test]
async fn b21_unicode_body_verifies_and_b24_forward_is_signed_with_the_crm_secret() {
    let ingress = Ingress::new(200).await;
    let body = fixture("inbound-unicode.json");
    let response = ingress.deliver(&body).await;
    assert_eq!(response.status, 200, "{:?}", response.body);

    let requests = ingress.crm.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let header = requests[0]
        .headers
        .get("x-hub-signature-256")
        .expect("signed")
        .to_str()
        .unwrap();
    assert_eq!(
        signature::verify(CRM_SECRET.as_bytes(), &requests[0].body, Some(header)),
        Ok(())
    );
    let forwarded: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    let original: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        forwarded, original,
        "nothing suppressed: Meta's payload unchanged"
    );
    assert_eq!(
        forwarded["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"],
        "¿Dónde está mi pedido? 📦 Grüße"
    );
}

#[tokio::test]
async fn b23_blocked_sender_is_suppressed_while_others_in_the_delivery_are_forwarded() {
    let ingress = Ingress::new(200).await;
    block(&ingress, "+16505551234", "all").await;
    let response = ingress.deliver(&fixture("inbound-batch.json")).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["suppressed"], 2);

    assert_eq!(
        ingress.forwarded_message_ids().await,
        vec!["wamid.BATCH0002"]
    );
    let body = &ingress.crm_bodies().await[0];
    let entries = body["entry"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        1,
        "the second entry only had the blocked sender"
    );
    let contacts = entries[0]["changes"][0]["value"]["contacts"]
        .as_array()
        .unwrap();
    assert_eq!(
        contacts.len(),
        1,
        "the blocked sender's profile is not forwarded"
    );
    assert_eq!(contacts[0]["wa_id"], "447700900123");

    let events = history_actions(&ingress, "+16505551234").await;
    let suppressed: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "inbound_suppressed")
        .collect();
    assert_eq!(suppressed.len(), 2);
    // Both were recorded in the same millisecond: find the first by id.
    let details = &suppressed
        .iter()
        .find(|e| e["details"]["message_id"] == "wamid.BATCH0001")
        .expect("event of wamid.BATCH0001")["details"];
    assert_eq!(details["message_type"], "text");
    assert_eq!(details["message_timestamp"], "2025-06-08T20:59:43.000Z");
    let text = suppressed.iter().map(|e| e.to_string()).collect::<String>();
    assert!(
        !text.contains("first") && !text.contains("to the second line"),
        "no content in audit"
    );

    let stats = Api::on(&ingress.stack).call("GET", "/v1/stats", None).await;
    let today = stats.body["days"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(today["inbound_suppressed"], 2);
}

#[tokio::test]
async fn b23_block_on_one_business_number_does_not_suppress_on_another() {
    let ingress = Ingress::new(200).await;
    block(&ingress, "+16505551234", LINE_A).await;
    let response = ingress.deliver(&fixture("inbound-batch.json")).await;
    assert_eq!(response.status, 200);
    let mut ids = ingress.forwarded_message_ids().await;
    ids.sort();
    assert_eq!(ids, vec!["wamid.BATCH0002", "wamid.BATCH0003"]);
    let number = Subject::parse("+16505551234").unwrap();
    let on_b = ingress
        .stack
        .store
        .get_chat(&PhoneNumberId::parse(LINE_B).unwrap(), &number)
        .await
        .unwrap();
    assert_eq!(on_b.expect("chat on line B").status, ChatStatus::Active);
    let on_a = ingress
        .stack
        .store
        .get_chat(&PhoneNumberId::parse(LINE_A).unwrap(), &number)
        .await
        .unwrap();
    assert!(on_a.is_none(), "a suppressed message opens no chat");
}

#[tokio::test]
async fn b23_chat_of_a_blocked_number_stays_blocked() {
    let ingress = Ingress::new(200).await;
    let number = Subject::parse("+16505551234").unwrap();
    let line = PhoneNumberId::parse(LINE_A).unwrap();
    ingress
        .stack
        .store
        .record_inbound(&line, &number, Utc::now(), ChatStatus::Active, false)
        .await
        .unwrap();
    block(&ingress, "+16505551234", "all").await;
    ingress.deliver(&fixture("inbound-text.json")).await;
    let chat = ingress
        .stack
        .store
        .get_chat(&line, &number)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chat.status, ChatStatus::Blocked);
    assert!(ingress.crm_bodies().await.is_empty());
}

#[tokio::test]
async fn b22_same_delivery_five_times_is_forwarded_and_counted_once() {
    let ingress = Ingress::new(200).await;
    block(&ingress, "+447700900123", "all").await;
    let body = fixture("inbound-batch.json");
    for _ in 0..5 {
        let response = ingress.deliver(&body).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
    }
    let mut ids = ingress.forwarded_message_ids().await;
    ids.sort();
    assert_eq!(ids, vec!["wamid.BATCH0001", "wamid.BATCH0003"]);
    let suppressed = history_actions(&ingress, "+447700900123")
        .await
        .into_iter()
        .filter(|e| e["action"] == "inbound_suppressed")
        .count();
    assert_eq!(suppressed, 1);
    let stats = Api::on(&ingress.stack).call("GET", "/v1/stats", None).await;
    assert_eq!(
        stats.body["days"].as_array().unwrap().last().unwrap()["inbound_suppressed"],
        1
    );
}

#[tokio::test]
async fn b22_concurrent_duplicate_deliveries_forward_once() {
    let ingress = Ingress::new(200).await;
    let body = fixture("inbound-text.json");
    let responses = futures::future::join_all((0..5).map(|_| ingress.deliver(&body))).await;
    for response in &responses {
        assert!(
            response.status == 200 || response.status == 503,
            "{:?}",
            response.body
        );
    }
    assert_eq!(ingress.forwarded_message_ids().await.len(), 1);
    // Meta's retries of the refused ones find the message done.
    let retry = ingress.deliver(&body).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body["duplicates"], 1);
    assert_eq!(ingress.forwarded_message_ids().await.len(), 1);
}

#[tokio::test]
async fn b26_crm_failure_is_5xx_and_the_retry_forwards_without_duplicates() {
    let ingress = Ingress::new(500).await;
    block(&ingress, "+447700900123", "all").await;
    let body = fixture("inbound-batch.json");
    let failed = ingress.deliver(&body).await;
    assert_eq!(failed.status, 502, "{:?}", failed.body);
    assert_eq!(failed.body["error"]["code"], "crm_unavailable");

    ingress.crm_answers(200).await;
    let retried = ingress.deliver(&body).await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    let mut ids = ingress.forwarded_message_ids().await;
    ids.sort();
    assert_eq!(ids, vec!["wamid.BATCH0001", "wamid.BATCH0003"]);
    // The suppression recorded on the first attempt is not recorded again.
    let suppressed = history_actions(&ingress, "+447700900123")
        .await
        .into_iter()
        .filter(|e| e["action"] == "inbound_suppressed")
        .count();
    assert_eq!(suppressed, 1);
    assert_eq!(retried.body["suppressed"], 0);
    assert_eq!(retried.body["duplicates"], 1);
}

#[tokio::test]
async fn b26_unreachable_dynamodb_is_5xx_and_forwards_nothing() {
    let ingress = Ingress::new(200).await;
    // Nothing listens on port 9 of loopback.
    let store = blocklist::store::Store::new(
        dynamodb_client("http://127.0.0.1:9"),
        ingress.stack.tables.clone(),
    );
    let app = app_for(store, Some(format!("{}/crm", ingress.crm.uri())));
    let body = fixture("inbound-text.json");
    let request = ApiRequest::new("POST", "/webhook")
        .header(
            "x-hub-signature-256",
            &signature::sign(APP_SECRET.as_bytes(), body.as_bytes()),
        )
        .raw_body(&body);
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        webhook_ingress::handle(&app, request.to_lambda()),
    )
    .await
    .expect("answers in time");
    assert_eq!(response.status().as_u16(), 503);
    assert!(ingress.crm_bodies().await.is_empty());
}

#[tokio::test]
async fn b27_unusable_bodies_are_4xx_or_acknowledged_never_5xx() {
    let ingress = Ingress::new(200).await;
    let malformed = ingress.deliver("{\"object\": ").await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.body["error"]["code"], "malformed_json");

    let other = ingress
        .deliver(r#"{"object":"page","entry":[{"id":"1"}]}"#)
        .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body["status"], "skipped");

    let odd = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "1", "changes": [{"field": "messages", "value": {
            "metadata": {"phone_number_id": LINE_A},
            "messages": [
                {"from_user_id": "US.13491208655302741918", "id": "wamid.USERID", "type": "text", "text": {"body": "hi"}},
                {"from": "16505551234", "id": "wamid.NEWTYPE", "type": "hologram", "hologram": {"x": 1}, "future": true},
                {"type": "text"}
            ]}}]},
        {"id": "2", "changes": [{"field": "account_update", "value": {"event": "VERIFIED"}}]}
    ]});
    let response = ingress.deliver(&odd.to_string()).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let mut ids = ingress.forwarded_message_ids().await;
    ids.sort();
    assert_eq!(ids, vec!["wamid.NEWTYPE", "wamid.USERID"]);
    let body = &ingress.crm_bodies().await[0];
    assert_eq!(
        body["entry"][1]["changes"][0]["field"], "account_update",
        "other fields pass through"
    );
}

#[tokio::test]
async fn b24_forwarded_message_updates_the_chat() {
    let ingress = Ingress::new(200).await;
    let api = Api::on(&ingress.stack);
    api.call(
        "PUT",
        "/v1/contacts/+16505551234",
        Some(json!({"name": "Sheena Nelson"})),
    )
    .await;
    ingress.deliver(&fixture("inbound-text.json")).await;
    let chat = ingress
        .stack
        .store
        .get_chat(
            &PhoneNumberId::parse(LINE_A).unwrap(),
            &Subject::parse("+16505551234").unwrap(),
        )
        .await
        .unwrap()
        .expect("chat created");
    assert_eq!(chat.status, ChatStatus::Active);
    assert_eq!(serde_json::to_value(chat.session_status).unwrap(), "open");
    assert_eq!(chat.last_inbound_at.unwrap().timestamp(), 1749416383);
    assert!(chat.known_contact);
}

#[tokio::test]
async fn b25_statuses_are_forwarded_and_failures_recorded() {
    let ingress = Ingress::new(200).await;
    let response = ingress.deliver(&fixture("status-failed-131026.json")).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    ingress.deliver(&fixture("status-delivered.json")).await;
    let bodies = ingress.crm_bodies().await;
    assert_eq!(bodies.len(), 2);
    assert_eq!(
        bodies[0]["entry"][0]["changes"][0]["value"]["statuses"][0]["status"],
        "failed"
    );

    let number = Subject::parse("+16505551234").unwrap();
    let since = chrono::DateTime::from_timestamp(0, 0).unwrap();
    let failures = ingress
        .stack
        .store
        .failures_since(&number, since)
        .await
        .unwrap();
    assert_eq!(failures.len(), 1, "only the failed status is a failure");
    let failure = &failures[0];
    assert_eq!(failure.code, Some(131026));
    assert_eq!(failure.title.as_deref(), Some("Message undeliverable"));
    assert_eq!(failure.phone_number_id.as_ref().unwrap().as_str(), LINE_A);
    assert_eq!(
        failure.message_id,
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA"
    );
    assert_eq!(failure.at.timestamp(), 1751142888);

    // Redelivered: forwarded and recorded once.
    ingress.deliver(&fixture("status-failed-131026.json")).await;
    assert_eq!(ingress.crm_bodies().await.len(), 2);
    assert_eq!(
        ingress
            .stack
            .store
            .failures_since(&number, since)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn b24_without_crm_url_updates_are_recorded_only() {
    let ingress = Ingress::new(200).await;
    let app = app_for(ingress.stack.store.clone(), None);
    let body = fixture("inbound-text.json");
    let request = ApiRequest::new("POST", "/webhook")
        .header(
            "x-hub-signature-256",
            &signature::sign(APP_SECRET.as_bytes(), body.as_bytes()),
        )
        .raw_body(&body);
    let response = webhook_ingress::handle(&app, request.to_lambda()).await;
    assert_eq!(response.status().as_u16(), 200);
    let chat = ingress
        .stack
        .store
        .get_chat(
            &PhoneNumberId::parse(LINE_A).unwrap(),
            &Subject::parse("+16505551234").unwrap(),
        )
        .await
        .unwrap();
    assert!(chat.is_some());
}

#[tokio::test]
async fn b26_a_crm_redirect_is_a_failure_not_a_delivery() {
    let ingress = Ingress::new(200).await;
    ingress.crm.reset().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(
            wiremock::ResponseTemplate::new(302)
                .insert_header("location", format!("{}/elsewhere", ingress.crm.uri())),
        )
        .mount(&ingress.crm)
        .await;
    let body = fixture("inbound-text.json");
    let response = ingress.deliver(&body).await;
    assert_eq!(response.status, 502, "{:?}", response.body);
    // Nothing followed the redirect, and the retry is not taken for a duplicate.
    let requests = ingress.crm.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method.as_str(), "POST");
    ingress.crm_answers(200).await;
    let retried = ingress.deliver(&body).await;
    assert_eq!(retried.status, 200);
    assert_eq!(retried.body["duplicates"], 0);
    assert_eq!(ingress.forwarded_message_ids().await.len(), 1);
}
