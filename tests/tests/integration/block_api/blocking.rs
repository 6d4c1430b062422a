//! B1, B2, B3, B4: blocking and unblocking.

use blocklist::Subject;
use blocklist::model::{ChatStatus, PhoneNumberId};
use chrono::Utc;
use serde_json::json;

use super::{Api, error_code};

#[tokio::test]
async fn b1_block_creates_then_is_idempotent() {
    let api = Api::new().await;
    let first = api
        .block("+16505551234", json!({"reason": "spam", "scope": "all"}))
        .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.body["number"], "+16505551234");
    assert_eq!(first.body["scope"], "all");
    assert_eq!(first.body["reason"], "spam");
    assert_eq!(first.body["source"], "manual");
    assert_eq!(first.body["actor"], "agent-1");
    assert_eq!(first.body["client"], json!(null));
    assert_eq!(first.body["version"], 1);

    // Another form of the same number, same scope: the existing record.
    let again = api
        .block("16505551234", json!({"reason": "again", "scope": "all"}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["reason"], "spam");
    assert_eq!(again.body["blocked_at"], first.body["blocked_at"]);

    let history = api.history("%2B16505551234").await;
    assert_eq!(history.len(), 1, "no second audit event: {history:?}");
    assert_eq!(history[0]["action"], "blocked");
    assert_eq!(history[0]["actor"], "agent-1");
}

#[tokio::test]
async fn b1_block_with_contact_creates_the_contact_in_the_same_call() {
    let api = Api::new().await;
    let response = api
        .block(
            "+447700900123",
            json!({
                "reason": "abusive",
                "scope": "106540352242922",
                "source": "notification",
                "contact": {"name": "Ravi", "email": "ravi@example.com", "category": "lead", "groups": ["uk"]}
            }),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    let contact = api.call("GET", "/v1/contacts/+447700900123", None).await;
    assert_eq!(contact.status, 200);
    assert_eq!(contact.body["name"], "Ravi");
    assert_eq!(contact.body["groups"], json!(["uk"]));
    let actions: Vec<String> = api
        .history("+447700900123")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        actions.contains(&"blocked".to_owned()) && actions.contains(&"contact_updated".to_owned())
    );
}

#[tokio::test]
async fn b2_unblock_returns_removed_record_then_404() {
    let api = Api::new().await;
    api.block("+16505551234", json!({"reason": "spam", "scope": "all"}))
        .await;
    let removed = api
        .call(
            "DELETE",
            "/v1/blocks/+16505551234?scope=all",
            Some(json!({"reason": "resolved"})),
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(removed.body["reason"], "spam");
    let view = api.call("GET", "/v1/blocks/+16505551234", None).await;
    assert_eq!(view.body["blocks"], json!([]));

    let again = api
        .call(
            "DELETE",
            "/v1/blocks/+16505551234?scope=all",
            Some(json!({"reason": "resolved"})),
        )
        .await;
    assert_eq!(again.status, 404);
    assert_eq!(error_code(&again), "not_blocked");
    let history = api.history("+16505551234").await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["action"], "unblocked", "newest first");
    assert_eq!(history[0]["reason"], "resolved");
}

#[tokio::test]
async fn b3_block_audit_and_chats_commit_together() {
    let api = Api::new().await;
    let number = Subject::parse("+16505551234").unwrap();
    let line_a = PhoneNumberId::parse("106540352242922").unwrap();
    let line_b = PhoneNumberId::parse("106540352242923").unwrap();
    for line in [&line_a, &line_b] {
        api.stack
            .store
            .record_inbound(line, &number, Utc::now(), ChatStatus::Active, false)
            .await
            .unwrap();
    }

    let response = api
        .block(
            "+16505551234",
            json!({"reason": "spam", "scope": "106540352242922"}),
        )
        .await;
    assert_eq!(response.status, 201);
    let chat_a = api
        .stack
        .store
        .get_chat(&line_a, &number)
        .await
        .unwrap()
        .unwrap();
    let chat_b = api
        .stack
        .store
        .get_chat(&line_b, &number)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chat_a.status, ChatStatus::Blocked);
    assert_eq!(
        serde_json::to_value(chat_a.session_status).unwrap(),
        "cancelled"
    );
    assert_eq!(
        chat_b.status,
        ChatStatus::Active,
        "other business number untouched"
    );
    assert_eq!(serde_json::to_value(chat_b.session_status).unwrap(), "open");
    assert_eq!(api.history("+16505551234").await.len(), 1);

    api.call(
        "DELETE",
        "/v1/blocks/+16505551234?scope=106540352242922",
        Some(json!({"reason": "ok"})),
    )
    .await;
    let chat_a = api
        .stack
        .store
        .get_chat(&line_a, &number)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chat_a.status, ChatStatus::Active);
}

#[tokio::test]
async fn b3_a_failed_transaction_writes_nothing() {
    // The read path never touches the audit table, so pointing only that at
    // a missing table makes the transaction itself fail on its audit put,
    // after the block, stats and state actions were already part of it.
    let api = Api::new().await;
    let mut tables = api.stack.tables.clone();
    tables.audit = format!("{}-missing", tables.audit);
    let broken = blocklist::store::Store::new(api.stack.client.clone(), tables);
    let app = block_api::App::new(
        broken,
        blocklist::http::auth::Authenticator::local_hs256(integration_tests::JWT_SECRET),
    );
    let response = integration_tests::call_block_api(
        &app,
        integration_tests::ApiRequest::new("PUT", "/v1/blocks/+16505551234")
            .bearer(&api.token)
            .json(json!({"reason": "spam"})),
    )
    .await;
    assert_eq!(response.status, 503, "{:?}", response.body);
    assert_eq!(error_code(&response), "store_unavailable");
    let view = api.call("GET", "/v1/blocks/+16505551234", None).await;
    assert_eq!(
        view.body["blocks"],
        json!([]),
        "no block without its audit event"
    );
    assert!(api.history("+16505551234").await.is_empty());
    let stats = api.call("GET", "/v1/stats", None).await;
    assert_eq!(stats.body["currently_blocked"], 0);
}

#[tokio::test]
async fn b4_block_is_visible_to_the_next_read_at_once() {
    let api = Api::new().await;
    api.block("+16505551234", json!({"reason": "spam", "scope": "all"}))
        .await;
    let record = api
        .stack
        .store
        .load_subject(&Subject::parse("+16505551234").unwrap())
        .await
        .unwrap();
    assert_eq!(record.blocks.len(), 1);
    api.call(
        "DELETE",
        "/v1/blocks/+16505551234",
        Some(json!({"reason": "ok"})),
    )
    .await;
    let record = api
        .stack
        .store
        .load_subject(&Subject::parse("+16505551234").unwrap())
        .await
        .unwrap();
    assert!(record.blocks.is_empty());
}
