//! B53: the audit trail is tamper-evident. A subject's change events form
//! a chain (each carries the hash of the one before it, and the newest is
//! recorded with the subject's blocks), and its history says whether the
//! chain holds, so an event overwritten or removed by anyone who can write
//! the table (the functions hold PutItem on it) does not go unnoticed.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};

use super::Api;

const NUMBER: &str = "+16505551234";

/// Four changes: a block, a contact, an unblock, a block again.
async fn four_changes(api: &Api) {
    for (method, uri, body, status) in [
        (
            "PUT",
            "/v1/blocks/+16505551234",
            json!({"reason": "spam"}),
            201,
        ),
        (
            "PUT",
            "/v1/contacts/+16505551234",
            json!({"name": "Sheena Nelson"}),
            201,
        ),
        (
            "DELETE",
            "/v1/blocks/+16505551234?scope=all",
            json!({"reason": "ok"}),
            200,
        ),
        (
            "PUT",
            "/v1/blocks/+16505551234",
            json!({"reason": "spam again"}),
            201,
        ),
    ] {
        let response = api.call(method, uri, Some(body)).await;
        assert_eq!(
            response.status, status,
            "{method} {uri}: {:?}",
            response.body
        );
    }
}

async fn history(api: &Api, query: &str) -> Value {
    let response = api
        .call("GET", &format!("/v1/numbers/{NUMBER}/history{query}"), None)
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.body
}

/// The audit item of `event_id`, as stored.
async fn audit_item(
    api: &Api,
    event_id: &str,
) -> std::collections::HashMap<String, AttributeValue> {
    api.stack
        .client
        .get_item()
        .table_name(&api.stack.tables.audit)
        .key("pk", AttributeValue::S(format!("N#{NUMBER}")))
        .key("sk", AttributeValue::S(event_id.to_owned()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the audit item")
}

#[tokio::test]
async fn b53_a_subjects_changes_form_a_chain_that_its_history_verifies() {
    let api = Api::new().await;
    four_changes(&api).await;
    let page = history(&api, "").await;
    assert_eq!(
        page["chain"],
        json!({"verified": true, "broken_at": null, "checked": 4}),
        "{page}"
    );
    let events = page["items"].as_array().unwrap();
    for pair in events.windows(2) {
        assert_eq!(
            pair[0]["prev_hash"], pair[1]["hash"],
            "newest first, linked"
        );
        assert_eq!(pair[0]["prev_event_id"], pair[1]["event_id"]);
    }
    assert_eq!(events[3]["prev_hash"], Value::Null, "the first link");
    assert!(
        events
            .iter()
            .all(|e| e["hash"].as_str().is_some_and(|h| h.len() == 64))
    );

    // Page by page: each page links to the one before it.
    let first = history(&api, "?limit=2").await;
    assert_eq!(first["chain"]["verified"], true, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = history(&api, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(second["chain"]["verified"], true, "{second}");
    assert_eq!(second["chain"]["checked"], 2);
}

#[tokio::test]
async fn b53_an_overwritten_or_removed_event_breaks_the_chain() {
    let api = Api::new().await;
    four_changes(&api).await;
    let events = history(&api, "").await["items"].as_array().unwrap().clone();
    let unblock = events[1]["event_id"].as_str().unwrap().to_owned();
    assert_eq!(events[1]["action"], "unblocked");

    // Overwritten with a put (as any holder of PutItem could): its reason
    // changed, everything else kept.
    let mut item = audit_item(&api, &unblock).await;
    item.insert(
        "reason".into(),
        AttributeValue::S("an operator's whim".into()),
    );
    api.stack
        .client
        .put_item()
        .table_name(&api.stack.tables.audit)
        .set_item(Some(item.clone()))
        .send()
        .await
        .unwrap();
    let page = history(&api, "").await;
    assert_eq!(
        page["chain"],
        json!({"verified": false, "broken_at": unblock, "checked": 4}),
        "{page}"
    );
    // ...also when the page starts after the newest event.
    let tail = history(
        &api,
        &format!("?limit=1&cursor={}", {
            let first = history(&api, "?limit=1").await;
            first["next_cursor"].as_str().unwrap().to_owned()
        }),
    )
    .await;
    assert_eq!(tail["chain"]["verified"], false, "{tail}");

    // Removed altogether: the event after it no longer links.
    api.stack
        .client
        .delete_item()
        .table_name(&api.stack.tables.audit)
        .key("pk", AttributeValue::S(format!("N#{NUMBER}")))
        .key("sk", AttributeValue::S(unblock.clone()))
        .send()
        .await
        .unwrap();
    let page = history(&api, "").await;
    assert_eq!(page["chain"]["verified"], false, "{page}");
    assert_eq!(page["chain"]["broken_at"], events[0]["event_id"]);
}

#[tokio::test]
async fn b53_removing_the_newest_events_breaks_the_chain_at_its_recorded_head() {
    let api = Api::new().await;
    four_changes(&api).await;
    let events = history(&api, "").await["items"].as_array().unwrap().clone();
    api.stack
        .client
        .delete_item()
        .table_name(&api.stack.tables.audit)
        .key("pk", AttributeValue::S(format!("N#{NUMBER}")))
        .key(
            "sk",
            AttributeValue::S(events[0]["event_id"].as_str().unwrap().to_owned()),
        )
        .send()
        .await
        .unwrap();
    let page = history(&api, "").await;
    assert_eq!(page["chain"]["verified"], false, "{page}");
    assert_eq!(page["chain"]["broken_at"], events[1]["event_id"]);
}

#[tokio::test]
async fn b53_the_chain_holds_through_expiry_automatic_blocks_and_links() {
    let api = Api::new().await;
    // A link to a BSUID (its event is not a link of the chain), a
    // temporary block that expires, and an automatic block whose details
    // carry a caller's whole float, which DynamoDB gives back as an integer.
    let ingress = crate::webhook_ingress::app_for(api.stack.store.clone(), None);
    let body = crate::webhook_ingress::fixture("inbound-bsuid-linked.json");
    let linked = crate::webhook_ingress::deliver_to(&ingress, &body).await;
    assert_eq!(linked.status, 200, "{:?}", linked.body);
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let temporary = api
        .block(NUMBER, json!({"reason": "cool off", "expires_at": until}))
        .await;
    assert_eq!(temporary.status, 201);
    let mut sweeper = block_expiry::App::new(api.stack.store.clone());
    sweeper.now = || chrono::Utc::now() + chrono::Duration::hours(2);
    assert_eq!(block_expiry::sweep(&sweeper).await.unwrap().expired, 1);
    let event = json!({
        "type": "wa_blocked",
        "phone": NUMBER,
        "reason_code": 131026,
        "sender": {"system": "crm", "version": 2.0, "weight": 1e17}
    });
    let auto = wa_blocked::handle(&wa_blocked::App::new(api.stack.store.clone()), event)
        .await
        .expect("the event is handled");
    assert_eq!(auto["status"], "auto_blocked", "{auto}");

    let page = history(&api, "").await;
    let actions: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // The sweep ran with a clock two hours ahead: its event sorts first,
    // though the automatic block came after it. The chain follows the
    // order of the changes, not of the clocks.
    assert_eq!(
        actions,
        ["expired", "auto_blocked", "blocked", "identity_linked"],
        "{page}"
    );
    assert_eq!(
        page["chain"],
        json!({"verified": true, "broken_at": null, "checked": 3}),
        "{page}"
    );
}
