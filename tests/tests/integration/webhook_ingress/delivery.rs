//! B20–B27 end to end through the real handler.

use std::time::Duration;

use blocklist::Subject;
use blocklist::meta::signature;
use blocklist::model::{ChatStatus, PhoneNumberId};
use chrono::Utc;
use integration_tests::{ApiRequest, DynamoRelay, dynamodb_client, endpoint, stats_total};
use serde_json::json;

use super::{APP_SECRET, CRM_SECRET, Ingress, VERIFY_TOKEN, app_for, deliver_to, fixture};
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
    // Only the handshake and deliveries: other methods are 405 with Allow.
    for method in ["PUT", "DELETE", "PATCH"] {
        let response = ingress.send(ApiRequest::new(method, "/webhook")).await;
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.body["error"]["code"], "method_not_allowed");
        assert_eq!(response.header("allow"), Some("GET, POST"), "{method}");
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

/// RFC 4231, test case 2: HMAC-SHA256 of "what do ya want for nothing?"
/// under the key "Jefe".
const RFC_4231_CASE_2: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

/// HMAC-SHA256 of the raw bytes of `inbound-unicode.json` under
/// [`APP_SECRET`], computed apart from this code with
/// `openssl dgst -sha256 -hmac test-app-secret tests/fixtures/meta/inbound-unicode.json`.
const INBOUND_UNICODE_SIGNATURE: &str =
    "0be203ca79e6719a423d3f1f49d5ab6a95c8cec0a22853268bff840c31d90aa3";

#[test]
fn b21_rfc_4231_test_case_2_verifies_and_nothing_else_does() {
    let key = b"Jefe";
    let data = b"what do ya want for nothing?";
    let header = format!("sha256={RFC_4231_CASE_2}");
    assert_eq!(signature::verify(key, data, Some(&header)), Ok(()));
    assert_eq!(
        signature::verify(
            key,
            data,
            Some(&header.to_uppercase().replace("SHA256=", "sha256="))
        ),
        Ok(()),
        "hex digits in either case"
    );
    assert_eq!(signature::sign(key, data), header);
    let one_digit_off = format!("sha256={}4", &RFC_4231_CASE_2[..63]);
    for (key, data, header) in [
        (&key[..], &data[..], one_digit_off.as_str()),
        (b"jefe", data, header.as_str()),
        (key, b"what do ya want for nothing!", header.as_str()),
    ] {
        assert_eq!(
            signature::verify(key, data, Some(header)),
            Err(signature::SignatureError::Mismatch),
            "{header} over {:?}",
            String::from_utf8_lossy(data)
        );
    }
}

#[tokio::test]
async fn b21_a_real_meta_body_with_an_independent_signature_is_taken_and_one_changed_byte_is_401() {
    let ingress = Ingress::new(200).await;
    let path = format!(
        "{}/fixtures/meta/inbound-unicode.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap();
    let header = format!("sha256={INBOUND_UNICODE_SIGNATURE}");
    let signed = |body: &[u8], header: &str| {
        ApiRequest::new("POST", "/webhook")
            .header("x-hub-signature-256", header)
            .header("content-type", "application/json")
            .raw_body(std::str::from_utf8(body).expect("UTF-8"))
    };

    // One byte of the body changed ("pedido" → "pedida"), still valid JSON.
    let at = bytes
        .windows(6)
        .position(|w| w == b"pedido")
        .expect("the fixture's text")
        + 5;
    let mut changed = bytes.clone();
    changed[at] = b'a';
    // One hex digit of the signature changed.
    let last = INBOUND_UNICODE_SIGNATURE.len() - 1;
    let off_by_one_digit = format!("sha256={}4", &INBOUND_UNICODE_SIGNATURE[..last]);
    for request in [signed(&changed, &header), signed(&bytes, &off_by_one_digit)] {
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
            &Subject::parse("+4915112345678").unwrap(),
        )
        .await
        .unwrap();
    assert!(chat.is_none(), "nothing recorded");

    let response = ingress.send(signed(&bytes, &header)).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["forwarded"], 1, "{:?}", response.body);
    assert_eq!(
        ingress.forwarded_message_ids().await,
        vec!["wamid.UNICODE0001"]
    );
}

#[tokio::test]
async fn b2_after_an_unblock_the_next_inbound_is_forwarded_and_the_next_send_goes_out() {
    use crate::send_proxy::{GRAPH_PATH, app_for as proxy_for, config, raw, text_send_to};
    let ingress = Ingress::new(200).await;
    let graph = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(
            crate::send_proxy::fixture("graph-send.response.json"),
            "application/json",
        ))
        .mount(&graph)
        .await;
    let proxy = proxy_for(
        ingress.stack.store.clone(),
        config(&graph.uri(), Duration::from_secs(5)),
    );
    let send = || {
        let request = ApiRequest::new("POST", &format!("/v1/{LINE_A}/messages"))
            .bearer(&integration_tests::token("crm", &["messages:send"]))
            .header("content-type", "application/json")
            .raw_body(&text_send_to("+16505551234"));
        let proxy = &proxy;
        async move { raw(send_proxy::handle(proxy, request.to_lambda()).await) }
    };
    let message = |id: &str| {
        fixture("inbound-text.json").replace(
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
            id,
        )
    };

    // Blocked: inbound suppressed, the send refused.
    block(&ingress, "+16505551234", "all").await;
    let suppressed = ingress.deliver(&message("wamid.B2.BEFORE")).await;
    assert_eq!(suppressed.status, 200, "{:?}", suppressed.body);
    assert_eq!(suppressed.body["suppressed"], 1, "{:?}", suppressed.body);
    assert!(ingress.forwarded_message_ids().await.is_empty());
    assert_eq!(send().await.status, 403);
    assert!(graph.received_requests().await.unwrap().is_empty());

    let unblocked = Api::on(&ingress.stack)
        .call(
            "DELETE",
            "/v1/blocks/+16505551234?scope=all",
            Some(json!({"reason": "resolved with the customer"})),
        )
        .await;
    assert_eq!(unblocked.status, 200, "{:?}", unblocked.body);

    // The very next message and send, without waiting: through.
    let forwarded = ingress.deliver(&message("wamid.B2.AFTER")).await;
    assert_eq!(forwarded.status, 200, "{:?}", forwarded.body);
    assert_eq!(forwarded.body["forwarded"], 1, "{:?}", forwarded.body);
    assert_eq!(forwarded.body["suppressed"], 0, "{:?}", forwarded.body);
    assert_eq!(
        ingress.forwarded_message_ids().await,
        vec!["wamid.B2.AFTER"]
    );
    let body = &ingress.crm_bodies().await[0];
    let original: serde_json::Value = serde_json::from_str(&message("wamid.B2.AFTER")).unwrap();
    assert_eq!(body, &original, "Meta's payload, unchanged");

    let sent = send().await;
    assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.bytes));
    let requests = graph.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "the send reached Graph");
    assert_eq!(requests[0].url.path(), GRAPH_PATH);

    let mut actions: Vec<String> = history_actions(&ingress, "+16505551234")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        vec![
            "blocked",
            "inbound_suppressed",
            "outbound_refused",
            "unblocked"
        ],
        "one suppression and one refusal, both before the unblock"
    );
}

#[tokio::test]
async fn b3_b24_a_message_after_an_unblock_opens_the_session_the_block_cancelled() {
    let ingress = Ingress::new(200).await;
    let api = Api::on(&ingress.stack);
    let message = |id: &str| {
        fixture("inbound-text.json").replace(
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
            id,
        )
    };
    let chat = || async {
        let response = api
            .call("GET", &format!("/v1/chats/{LINE_A}/+16505551234"), None)
            .await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        (
            response.body["status"].as_str().unwrap().to_owned(),
            response.body["session_status"].as_str().unwrap().to_owned(),
        )
    };
    let first = ingress.deliver(&message("wamid.S.1")).await;
    assert_eq!(first.body["forwarded"], 1, "{:?}", first.body);
    assert_eq!(chat().await, ("active".into(), "open".into()));

    block(&ingress, "+16505551234", "all").await;
    assert_eq!(chat().await, ("blocked".into(), "cancelled".into()));
    // A message while blocked leaves the session cancelled.
    let suppressed = ingress.deliver(&message("wamid.S.2")).await;
    assert_eq!(suppressed.body["suppressed"], 1, "{:?}", suppressed.body);
    assert_eq!(chat().await, ("blocked".into(), "cancelled".into()));

    let unblocked = api
        .call(
            "DELETE",
            "/v1/blocks/+16505551234?scope=all",
            Some(json!({"reason": "resolved"})),
        )
        .await;
    assert_eq!(unblocked.status, 200);
    assert_eq!(
        chat().await,
        ("active".into(), "cancelled".into()),
        "an unblock opens no session by itself"
    );
    let again = ingress.deliver(&message("wamid.S.3")).await;
    assert_eq!(again.body["forwarded"], 1, "{:?}", again.body);
    assert_eq!(
        chat().await,
        ("active".into(), "open".into()),
        "the customer wrote again: a session is open"
    );
}

/// A message let through just before a block commits is stamped on its
/// chat after the block: the stamp must not reopen the session the block
/// cancelled. One chat alone, and eight at once (one transaction).
#[tokio::test]
async fn b3_b24_a_late_stamp_does_not_reopen_the_session_a_block_cancelled() {
    let ingress = Ingress::new(200).await;
    let api = Api::on(&ingress.stack);
    let senders: Vec<String> = (0..8).map(|i| format!("+1650555010{i}")).collect();
    for sender in &senders {
        ingress.stack.chat_with(LINE_A, sender).await;
    }
    block(&ingress, &senders[0], "all").await;
    let late = Utc::now();
    for touched in [&senders[..1], &senders[..]] {
        let touches: Vec<blocklist::inbound::ChatTouch> = touched
            .iter()
            .map(|sender| blocklist::inbound::ChatTouch {
                phone_number_id: PhoneNumberId::parse(LINE_A).unwrap(),
                subject: Subject::parse(sender).unwrap(),
                at: late,
                known_contact: false,
            })
            .collect();
        ingress.stack.store.record_chats(&touches).await.unwrap();
        for sender in touched {
            let chat = api
                .call("GET", &format!("/v1/chats/{LINE_A}/{sender}"), None)
                .await;
            let expected = if sender == &senders[0] {
                ("blocked", "cancelled")
            } else {
                ("active", "open")
            };
            assert_eq!(
                (
                    chat.body["status"].as_str().unwrap(),
                    chat.body["session_status"].as_str().unwrap()
                ),
                expected,
                "{sender} of {}: {:?}",
                touched.len(),
                chat.body
            );
            assert_eq!(
                chat.body["last_inbound_at"],
                blocklist::model::format_time(late),
                "the message is still stamped"
            );
        }
    }
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

    // The last 30 days: whatever day (UTC) the suppressions fell on.
    let stats = Api::on(&ingress.stack).call("GET", "/v1/stats", None).await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(stats_total(&stats.body, "inbound_suppressed"), 2);
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
    let response = ingress.deliver(&fixture("inbound-text.json")).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert_eq!(response.body["forwarded"], 0, "{:?}", response.body);
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
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(stats_total(&stats.body, "inbound_suppressed"), 1);
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

/// The ingress app on a store whose first `times` DynamoDB calls that
/// `matches` are refused, with the count of those refused and the relay
/// (which stops when dropped).
fn app_failing_first(
    ingress: &Ingress,
    times: usize,
    matches: impl Fn(&str, &serde_json::Value) -> bool + Send + 'static,
) -> (
    webhook_ingress::App,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    DynamoRelay,
) {
    let relay = DynamoRelay::start(&endpoint());
    let refused = relay.fail_first(times, matches);
    let app = app_for(
        ingress.stack.store_via(&relay),
        Some(format!("{}/crm", ingress.crm.uri())),
    );
    (app, refused, relay)
}

/// B22, B26: the store fails right after the CRM acknowledged a forward.
/// Answering 503 then left the claim pending, and Meta's retry forwarded
/// the message again once its lease ran out. Now the claim's completion is
/// retried until written: the delivery is answered 200, and a redelivery
/// is a duplicate the CRM never sees.
#[tokio::test]
async fn b22_b26_store_failing_after_the_crm_ack_does_not_forward_twice() {
    let ingress = Ingress::new(200).await;
    // The first three attempts to mark a claim done are refused.
    let (flaky, failures, _relay) = app_failing_first(&ingress, 3, |operation, body| {
        operation == "UpdateItem"
            && body["Key"]["pk"]["S"]
                .as_str()
                .is_some_and(|pk| pk.starts_with("W#"))
            && body["ExpressionAttributeValues"][":done"]["S"] == "done"
    });
    let body = fixture("inbound-text.json");
    let first = deliver_to(&flaky, &body).await;
    assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(ingress.forwarded_message_ids().await.len(), 1);

    let retry = ingress.deliver(&body).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    assert_eq!(retry.body["duplicates"], 1, "{:?}", retry.body);
    assert_eq!(
        ingress.forwarded_message_ids().await.len(),
        1,
        "forwarded once"
    );
}

/// B22, B24: a change of another field (here `user_preferences`) has no
/// id, and is claimed by a digest of what Meta sent: forwarded once, also
/// when Meta redelivers it, and again after a CRM failure gave it back.
#[tokio::test]
async fn b22_a_change_without_ids_is_forwarded_once() {
    let ingress = Ingress::new(200).await;
    let body = fixture("user-preferences-stop.json");
    let first = ingress.deliver(&body).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["forwarded"], 1, "{:?}", first.body);
    let again = ingress.deliver(&body).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["duplicates"], 1, "{:?}", again.body);
    let bodies = ingress.crm_bodies().await;
    assert_eq!(bodies.len(), 1, "forwarded once: {bodies:?}");
    assert_eq!(
        bodies[0]["entry"][0]["changes"][0]["field"],
        "user_preferences"
    );
    // The same change at another time is another change.
    let mut other: serde_json::Value = serde_json::from_str(&body).expect("the fixture is JSON");
    other["entry"][0]["time"] = json!(1_900_000_000);
    let answer = ingress.deliver(&other.to_string()).await;
    assert_eq!(answer.body["forwarded"], 1, "{:?}", answer.body);
    assert_eq!(ingress.crm_bodies().await.len(), 2);

    // A change that does not say when it happened cannot be told from a
    // later, identical one: it is forwarded each time.
    let errors_only =
        json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": LINE_A},
        "errors": [{"code": 131000, "title": "Something went wrong"}]}}]}]})
        .to_string();
    ingress.deliver(&errors_only).await;
    ingress.deliver(&errors_only).await;
    assert_eq!(ingress.crm_bodies().await.len(), 4);

    // Given back after a CRM failure, and forwarded on Meta's retry.
    let failing = Ingress::new(500).await;
    assert_eq!(failing.deliver(&body).await.status, 502);
    let crm_ok = app_for(
        failing.stack.store.clone(),
        Some(format!("{}/crm", ingress.crm.uri())),
    );
    let retry = deliver_to(&crm_ok, &body).await;
    assert_eq!(retry.body["forwarded"], 1, "{:?}", retry.body);
}

/// S3, B24: a chat stamp that cannot be written before the answer is due,
/// after the CRM has the message and its claim is done, is logged and
/// counted, and the delivery answered 200: Meta's retry would find the
/// message done and could not redo the stamp, so a 5xx would only keep
/// Meta retrying.
#[tokio::test]
async fn s3_b24_a_chat_stamp_lost_past_the_deadline_does_not_fail_the_delivery() {
    let ingress = Ingress::new(200).await;
    let chats_table = ingress.stack.tables.chats.clone();
    let (flaky, failures, _relay) =
        app_failing_first(&ingress, usize::MAX, move |operation, body| {
            operation == "UpdateItem" && body["TableName"] == chats_table.as_str()
        });
    let body = fixture("inbound-text.json");
    let answer = deliver_to(&flaky, &body).await;
    assert!(failures.load(std::sync::atomic::Ordering::SeqCst) > 2);
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["forwarded"], 1, "{:?}", answer.body);
    assert_eq!(ingress.forwarded_message_ids().await.len(), 1);
    let retry = ingress.deliver(&body).await;
    assert_eq!(retry.body["duplicates"], 1, "{:?}", retry.body);
    assert_eq!(ingress.forwarded_message_ids().await.len(), 1);
}

/// B22, B26: when the enforcement read fails after the claims were
/// taken, the delivery is answered 503 and its claims are given back, so
/// Meta's retry handles the messages at once instead of finding them in
/// flight until the lease runs out.
#[tokio::test]
async fn b22_b26_a_failed_enforcement_read_gives_its_claims_back() {
    let ingress = Ingress::new(200).await;
    let (flaky, refused, _relay) =
        app_failing_first(&ingress, 1, |operation, _| operation == "BatchGetItem");
    let body = fixture("inbound-text.json");
    let first = deliver_to(&flaky, &body).await;
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(first.status, 503, "{:?}", first.body);
    assert!(ingress.crm_bodies().await.is_empty());

    let retry = ingress.deliver(&body).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    assert_eq!(retry.body["forwarded"], 1, "{:?}", retry.body);
    assert_eq!(ingress.forwarded_message_ids().await.len(), 1);
}

/// B22: a claim put that landed but whose answer was lost is sent again
/// by the SDK and finds the claim there: the invocation's own (same
/// owner, pending) is still its own, not another's in flight, which would
/// leave the update unhandled and answer 503 until the lease ran out. By
/// single puts and by transactions alike.
#[tokio::test]
async fn b22_an_invocations_own_pending_claim_found_again_is_its_own() {
    let stack = integration_tests::TestStack::new().await;
    let now = Utc::now();
    for count in [1, 12] {
        let keys: Vec<String> = (0..count)
            .map(|i| format!("M#wamid.OWN{count}.{i}"))
            .collect();
        let first = stack.store.claim(&keys, "request-1", now).await.unwrap();
        assert!(
            first
                .values()
                .all(|c| *c == blocklist::inbound::Claim::Claimed)
        );
        let again = stack.store.claim(&keys, "request-1", now).await.unwrap();
        assert_eq!(again.len(), count);
        assert!(
            again
                .values()
                .all(|c| *c == blocklist::inbound::Claim::Claimed),
            "{count}: {again:?}"
        );
        // Another invocation finds it in flight.
        let other = stack.store.claim(&keys, "request-2", now).await.unwrap();
        assert!(
            other
                .values()
                .all(|c| *c == blocklist::inbound::Claim::InFlight),
            "{count}: {other:?}"
        );
    }
}

/// B22, B25, S3: a failed status's failure record that fails once after
/// the CRM has the status is retried, not answered 5xx: Meta's retry
/// would find the claim pending and, once its lease ran out, forward the
/// status to the CRM a second time.
#[tokio::test]
async fn b22_b25_failure_record_failing_after_the_forward_is_retried_not_forwarded_twice() {
    let ingress = Ingress::new(200).await;
    let failures_table = ingress.stack.tables.failures.clone();
    let (flaky, refused, _relay) = app_failing_first(&ingress, 2, move |operation, body| {
        operation == "PutItem" && body["TableName"] == failures_table.as_str()
    });
    let body = fixture("status-failed-131026.json");
    let first = deliver_to(&flaky, &body).await;
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(first.status, 200, "{:?}", first.body);
    let number = Subject::parse("+16505551234").unwrap();
    let since = chrono::DateTime::from_timestamp(0, 0).unwrap();
    let recorded = ingress
        .stack
        .store
        .failures_since(&number, since)
        .await
        .unwrap();
    assert_eq!(recorded.len(), 1, "the failure is recorded");

    let retry = ingress.deliver(&body).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    assert_eq!(retry.body["duplicates"], 1, "{:?}", retry.body);
    assert_eq!(ingress.crm_bodies().await.len(), 1, "forwarded once");
}

/// B24, S3: a chat update that fails after the messages were forwarded
/// would be lost for good (Meta's retry finds the messages done and skips
/// them), so it is retried until written.
#[tokio::test]
async fn b24_s3_chat_update_failing_after_the_forward_is_retried_not_lost() {
    let ingress = Ingress::new(200).await;
    let chats_table = ingress.stack.tables.chats.clone();
    let (flaky, failures, _relay) = app_failing_first(&ingress, 2, move |operation, body| {
        operation == "UpdateItem" && body["TableName"] == chats_table.as_str()
    });
    let body = fixture("inbound-text.json");
    let answer = deliver_to(&flaky, &body).await;
    assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let chat = ingress
        .stack
        .store
        .get_chat(
            &PhoneNumberId::parse(LINE_A).unwrap(),
            &Subject::parse("+16505551234").unwrap(),
        )
        .await
        .unwrap()
        .expect("the chat was written");
    assert!(chat.last_inbound_at.is_some());
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

/// The DynamoDB calls of `body` delivered through `relay`, as
/// `(operation, table without the test's prefix)`, sorted.
async fn calls_of_a_delivery(ingress: &Ingress, body: &str) -> Vec<(String, String)> {
    let relay = DynamoRelay::start(&endpoint());
    let app = app_for(
        ingress.stack.store_via(&relay),
        Some(format!("{}/crm", ingress.crm.uri())),
    );
    let request = ApiRequest::new("POST", "/webhook")
        .header(
            "x-hub-signature-256",
            &signature::sign(APP_SECRET.as_bytes(), body.as_bytes()),
        )
        .raw_body(body);
    let answer =
        integration_tests::read_response(webhook_ingress::handle(&app, request.to_lambda()).await);
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let tables = &ingress.stack.tables;
    let name = |table: &str| {
        [
            (&tables.blocklist, "Blocklist"),
            (&tables.messages, "Messages"),
            (&tables.audit, "Audit"),
            (&tables.chats, "Chats"),
            (&tables.failures, "Failures"),
        ]
        .into_iter()
        .find(|(t, _)| t.as_str() == table)
        .map_or_else(|| table.to_owned(), |(_, n)| n.to_owned())
    };
    let mut calls: Vec<(String, String)> = relay
        .calls()
        .into_iter()
        .map(|call| {
            let mut tables: Vec<String> = call.accesses().iter().map(|a| name(&a.table)).collect();
            tables.sort();
            tables.dedup();
            (call.operation, tables.join("+"))
        })
        .collect();
    calls.sort();
    calls
}

/// S5, B22–B24: what one message costs. Forwarded: one batched read of the
/// sender's facts and the claim (round 1), the claim's completion and the
/// chat's stamp (round 2): 1 read, 3 writes. Suppressed: the read and the
/// claim, then one transaction (claim done, audit event, counter). Nothing
/// on the Failures table, whose stream wakes wa-blocked.
#[tokio::test]
async fn s5_a_single_message_costs_one_read_and_its_writes_in_two_rounds() {
    let ingress = Ingress::new(200).await;
    let call = |operation: &str, table: &str| (operation.to_owned(), table.to_owned());

    let forwarded = calls_of_a_delivery(&ingress, &fixture("inbound-text.json")).await;
    assert_eq!(
        forwarded,
        vec![
            call("BatchGetItem", "Blocklist"),
            call("PutItem", "Messages"),
            call("UpdateItem", "Chats"),
            call("UpdateItem", "Messages"),
        ],
        "a forwarded message"
    );

    block(&ingress, "+16505551234", "all").await;
    let suppressed = calls_of_a_delivery(
        &ingress,
        &fixture("inbound-text.json").replace("wamid.", "wamid.AGAIN"),
    )
    .await;
    assert_eq!(
        suppressed,
        vec![
            call("BatchGetItem", "Blocklist"),
            call("PutItem", "Messages"),
            call("TransactWriteItems", "Audit+Blocklist+Messages"),
        ],
        "a suppressed message"
    );
}

/// When `number` last wrote to LINE_A, as its chat says.
async fn last_inbound(ingress: &Ingress, number: &str) -> i64 {
    ingress
        .stack
        .store
        .get_chat(
            &PhoneNumberId::parse(crate::identity::LINE_A).unwrap(),
            &Subject::parse(number).unwrap(),
        )
        .await
        .unwrap()
        .and_then(|chat| chat.last_inbound_at)
        .expect("a chat with a last inbound time")
        .timestamp()
}

/// B24 under Meta's redeliveries: an older message that arrives after a
/// newer one (Meta retrying a delivery answered 5xx while the next went
/// through) does not move the chat's `last_inbound_at` back, alone or in a
/// large delivery (stamped by transactions, B29). Before, the stamp was
/// set, not kept at its latest, so the 24-hour window of the platform
/// block (B15) closed early.
#[tokio::test]
async fn b24_an_older_message_arriving_late_leaves_the_last_inbound_time() {
    use crate::identity::{delivery, text_message};
    let ingress = Ingress::new(200).await;
    let now = Utc::now().timestamp();
    let at = |id: &str, from: &str, timestamp: i64| {
        let mut message = text_message(Some(from), None, id);
        message["timestamp"] = json!(timestamp.to_string());
        message
    };
    let newer = ingress
        .deliver(&delivery(
            vec![],
            vec![at("wamid.LATE2", "16505550180", now)],
            vec![],
        ))
        .await;
    assert_eq!(newer.status, 200, "{:?}", newer.body);
    let older = ingress
        .deliver(&delivery(
            vec![],
            vec![at("wamid.LATE1", "16505550180", now - 3600)],
            vec![],
        ))
        .await;
    assert_eq!(older.status, 200, "{:?}", older.body);
    assert_eq!(older.body["forwarded"], 1, "{:?}", older.body);
    assert_eq!(last_inbound(&ingress, "+16505550180").await, now);

    // A chat a send made has no inbound time yet: the first message sets it.
    ingress
        .stack
        .store
        .record_outbound(
            &PhoneNumberId::parse(crate::identity::LINE_A).unwrap(),
            &Subject::parse("+16505550182").unwrap(),
            Utc::now(),
            false,
        )
        .await
        .unwrap();
    let first = ingress
        .deliver(&delivery(
            vec![],
            vec![at("wamid.LATE6", "16505550182", now - 30)],
            vec![],
        ))
        .await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(last_inbound(&ingress, "+16505550182").await, now - 30);

    // Stamped together: one older message among newer chats.
    let newer = ingress
        .deliver(&delivery(
            vec![],
            vec![at("wamid.LATE3", "16505550181", now)],
            vec![],
        ))
        .await;
    assert_eq!(newer.status, 200, "{:?}", newer.body);
    let mut messages = vec![at("wamid.LATE4", "16505550181", now - 600)];
    messages.extend((0..10).map(|i| {
        at(
            &format!("wamid.LATE5{i}"),
            &format!("165055502{i:02}"),
            now - 60,
        )
    }));
    let large = ingress.deliver(&delivery(vec![], messages, vec![])).await;
    assert_eq!(large.status, 200, "{:?}", large.body);
    assert_eq!(large.body["forwarded"], 11, "{:?}", large.body);
    assert_eq!(last_inbound(&ingress, "+16505550181").await, now);
    for i in 0..10 {
        assert_eq!(
            last_inbound(&ingress, &format!("+165055502{i:02}")).await,
            now - 60
        );
    }
}
