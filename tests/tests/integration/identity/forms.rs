//! B63: one subscriber is one subject whatever form the number comes in,
//! and numbers the metadata does not know yet are still enforced.

use serde_json::json;

use super::{LINE_A, World, assert_blocked, delivery, text_message};
use crate::block_api::error_code;
use crate::send_proxy::text_send_to;

/// A WhatsApp id under a country code nobody has (999): the number
/// metadata refuses it, WhatsApp may still show it.
const UNKNOWN_TO_METADATA: &str = "9991234567";
const UNKNOWN_SUBJECT: &str = "+9991234567";

fn from(wa_id: &str, id: &str) -> String {
    delivery(vec![], vec![text_message(Some(wa_id), None, id)], vec![])
}

#[tokio::test]
async fn b63_argentina_forms_are_one_subject() {
    let world = World::new().await;
    // As a CRM stores it: +54, area code, the national mobile prefix 15.
    let created = world.block("%2B54%2011%2015%202345%206789", "all").await;
    assert_eq!(created["subject"], "+5491123456789", "{created}");

    // WhatsApp's id of that mobile: 549 + area code + number.
    let response = world.deliver(&from("5491123456789", "wamid.B63AR1")).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    // Without the 9, as a wa_id never is but a CRM may write it.
    let response = world.deliver(&from("541123456789", "wamid.B63AR2")).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert!(world.ingress.crm_bodies().await.is_empty());
    assert_eq!(
        world
            .events("+5491123456789", "inbound_suppressed")
            .await
            .len(),
        2
    );

    for to in [
        "+549 11 2345 6789",
        "+54 11 2345 6789",
        "+54 11 15 2345 6789",
        "+54 011 15 2345 6789",
        "0054 9 11 2345-6789",
        "5491123456789",
    ] {
        let response = world.send(&text_send_to(to)).await;
        let error_data = assert_blocked(&response);
        assert_eq!(error_data["recipient"], "+5491123456789", "sent to {to}");
    }
    assert!(world.graph_requests().await.is_empty(), "nothing sent");

    // Every form reads the same record.
    for form in [
        "5491123456789",
        "%2B541123456789",
        "%2B54%209%2011%202345%206789",
    ] {
        let view = world.view(form).await;
        assert_eq!(view["subject"], "+5491123456789", "{form}");
        assert_eq!(view["blocks"].as_array().unwrap().len(), 1, "{form}");
    }
    // Blocking another form again is the same block.
    let again = world
        .api
        .block("5491123456789", json!({"reason": "again", "scope": "all"}))
        .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
}

#[tokio::test]
async fn b63_brazil_and_mexico_webhook_ids_are_stopped_by_the_e164_block() {
    let world = World::new().await;
    world.block("+5511987654321", "all").await;
    world.block("+525512345678", "all").await;
    let body = delivery(
        vec![],
        vec![
            // Brazil's old 12-digit id, without the ninth digit.
            text_message(Some("551187654321"), None, "wamid.B63BR"),
            // Mexico's 521 id.
            text_message(Some("5215512345678"), None, "wamid.B63MX"),
        ],
        vec![],
    );
    let response = world.deliver(&body).await;
    assert_eq!(response.body["suppressed"], 2, "{:?}", response.body);
    assert!(world.ingress.crm_bodies().await.is_empty());
}

#[tokio::test]
async fn b63_number_unknown_to_metadata_is_checked_and_blockable_once_seen() {
    let world = World::new().await;
    // Never seen: an invalid number, as before.
    let before = world
        .api
        .block(UNKNOWN_SUBJECT, json!({"reason": "spam", "scope": "all"}))
        .await;
    assert_eq!(before.status, 422, "{:?}", before.body);
    assert_eq!(error_code(&before), "invalid_number");

    // It writes to the business: forwarded, and its chat recorded.
    let response = world
        .deliver(&from(UNKNOWN_TO_METADATA, "wamid.B63NEW1"))
        .await;
    assert_eq!(response.body["forwarded"], 1, "{:?}", response.body);
    let chat = world
        .stack()
        .store
        .get_chat(
            &blocklist::model::PhoneNumberId::parse(LINE_A).unwrap(),
            &blocklist::Subject::Number(
                blocklist::Number::from_whatsapp_id(UNKNOWN_TO_METADATA).unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(chat.is_some(), "chat kept under +{UNKNOWN_TO_METADATA}");

    // Now it can be blocked, in any of the forms WhatsApp shows it.
    let created = world
        .api
        .block(
            UNKNOWN_TO_METADATA,
            json!({"reason": "spam", "scope": "all"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["subject"], UNKNOWN_SUBJECT);
    assert_eq!(created.body["number"], UNKNOWN_SUBJECT);

    // …and its next message is suppressed.
    let response = world
        .deliver(&from(UNKNOWN_TO_METADATA, "wamid.B63NEW2"))
        .await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert_eq!(world.forwarded_message_ids().await, vec!["wamid.B63NEW1"]);
    let stats = world.api.call("GET", "/v1/stats", None).await;
    assert_eq!(stats.body["currently_blocked"], 1, "{:?}", stats.body);

    // A number of the same shape that never wrote stays invalid.
    let other = world
        .api
        .block("+9997654321", json!({"reason": "spam", "scope": "all"}))
        .await;
    assert_eq!(other.status, 422, "{:?}", other.body);
    assert_eq!(error_code(&other), "invalid_number");
}

#[tokio::test]
async fn b63_number_blocked_once_seen_can_be_read_audited_and_unblocked() {
    let world = World::new().await;
    world
        .deliver(&from(UNKNOWN_TO_METADATA, "wamid.B63SEEN"))
        .await;
    world.block(UNKNOWN_SUBJECT, LINE_A).await;

    // Whatever the API accepted for blocking, it can read and unblock.
    let view = world
        .api
        .call("GET", &format!("/v1/blocks/{UNKNOWN_SUBJECT}"), None)
        .await;
    let history = world
        .api
        .call(
            "GET",
            &format!("/v1/numbers/{UNKNOWN_SUBJECT}/history"),
            None,
        )
        .await;
    let unblocked = world.unblock(UNKNOWN_SUBJECT, LINE_A).await;
    assert_eq!(
        [view.status, history.status, unblocked.status],
        [200, 200, 200],
        "GET: {:?}; history: {:?}; DELETE: {:?}",
        view.body,
        history.body,
        unblocked.body
    );
    assert_eq!(view.body["blocks"][0]["scope"], LINE_A);
    assert_eq!(history.body["items"][0]["action"], "blocked");
    let response = world
        .deliver(&from(UNKNOWN_TO_METADATA, "wamid.B63AFTER"))
        .await;
    assert_eq!(response.body["forwarded"], 1, "{:?}", response.body);
}

#[tokio::test]
async fn b63_reply_to_a_number_unknown_to_metadata_is_checked_and_sent() {
    let world = World::new().await;
    world
        .deliver(&from(UNKNOWN_TO_METADATA, "wamid.B63WROTE"))
        .await;
    // The CRM answers the person who wrote, in the form WhatsApp showed.
    let response = world.send(&text_send_to(UNKNOWN_TO_METADATA)).await;
    assert_eq!(
        response.status,
        200,
        "a reply to someone who wrote in: {}",
        String::from_utf8_lossy(&response.bytes)
    );
    assert_eq!(world.graph_requests().await.len(), 1);

    world.block(UNKNOWN_SUBJECT, "all").await;
    let refused = world.send(&text_send_to(UNKNOWN_SUBJECT)).await;
    let error_data = assert_blocked(&refused);
    assert_eq!(error_data["recipient"], UNKNOWN_SUBJECT);
    assert_eq!(world.graph_requests().await.len(), 1, "nothing more sent");
}

#[tokio::test]
async fn b63_a_block_kept_under_a_form_now_folded_is_listed_and_removed_by_that_form() {
    use blocklist::model::{Actor, Reason, Scope, Source};
    use blocklist::policy::BlockCommand;
    let world = World::new().await;
    // A block an earlier release stored under Argentina's 12-digit form,
    // which this release folds into `+549…`.
    let old_key = blocklist::Subject::Number(blocklist::Number::stored("+541123456789").unwrap());
    let command = BlockCommand {
        scope: Scope::All,
        reason: Reason::parse("spam").unwrap(),
        source: Source::Manual,
        reason_code: None,
        expires_at: None,
        review_after_days: None,
        contact: None,
        details: json!({}),
    };
    blocklist::service::block(
        &world.ingress.stack.store,
        &old_key,
        command,
        &Actor::system("earlier-release"),
        chrono::Utc::now,
    )
    .await
    .unwrap();
    let listed = world.api.call("GET", "/v1/blocks?q=1123456789", None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let subjects: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["+541123456789"], "listed under its stored key");
    let removed = world
        .api
        .call(
            "DELETE",
            "/v1/blocks/+541123456789?scope=all",
            Some(json!({"reason": "re-blocked under the current form"})),
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(removed.body["subject"], "+541123456789");
    let listed = world.api.call("GET", "/v1/blocks?q=1123456789", None).await;
    assert_eq!(listed.body["items"], json!([]));
}
