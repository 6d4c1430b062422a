//! B34: the blocklist or Graph failing. Fail closed, answer clearly, never
//! retry a send.

use std::time::Duration;

use integration_tests::{ApiRequest, dynamodb_client};
use wiremock::ResponseTemplate;

use super::{
    LINE_A, Proxy, RECIPIENT, RawResponse, app_for, assert_graph_error, config, fixture_text, raw,
};

async fn send_text(proxy: &Proxy) -> RawResponse {
    proxy
        .send_message(LINE_A, &fixture_text("graph-send-text.request.json"))
        .await
}

#[tokio::test]
async fn b34_graph_slower_than_the_timeout_is_504_and_not_retried() {
    let proxy = Proxy::with_timeout(Duration::from_millis(300)).await;
    proxy
        .graph_answers(
            ResponseTemplate::new(200)
                .set_body_raw(
                    super::fixture("graph-send.response.json"),
                    "application/json",
                )
                .set_delay(Duration::from_secs(3)),
        )
        .await;
    let started = std::time::Instant::now();
    let response = send_text(&proxy).await;
    let took = started.elapsed();
    assert_graph_error(&response, 504, "graph_timeout");
    assert!(
        took < Duration::from_secs(3),
        "answered at the timeout, not after Graph: {took:?}"
    );
    assert_eq!(proxy.graph_requests().await.len(), 1, "no retry");
}

#[tokio::test]
async fn b34_graph_503_with_a_body_is_502_carrying_that_body() {
    let proxy = Proxy::new().await;
    let graph_body = br#"{"error":{"message":"Service temporarily unavailable","type":"OAuthException","code":2,"fbtrace_id":"AbCdEf"}}"#;
    proxy
        .graph_answers(
            ResponseTemplate::new(503).set_body_raw(graph_body.to_vec(), "application/json"),
        )
        .await;
    let response = send_text(&proxy).await;
    assert_eq!(response.status, 502);
    assert_eq!(
        response.bytes,
        graph_body.to_vec(),
        "Graph's body, unchanged"
    );
    assert_eq!(response.content_type.as_deref(), Some("application/json"));
    assert_eq!(proxy.graph_requests().await.len(), 1, "no retry");
    let chat = proxy.chat(LINE_A, RECIPIENT).await;
    assert!(chat.is_none_or(|c| c.last_outbound_at.is_none()));
}

#[tokio::test]
async fn b34_graph_500_is_not_retried() {
    let proxy = Proxy::new().await;
    proxy.graph_answers(ResponseTemplate::new(500)).await;
    let response = send_text(&proxy).await;
    // No body from Graph: our own Graph-shaped 502.
    assert_graph_error(&response, 502, "graph_error");
    // Give a background retry, if there were one, the time to land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(proxy.graph_requests().await.len(), 1, "exactly one request");
}

#[tokio::test]
async fn b34_graph_unreachable_is_502() {
    let proxy = Proxy::new().await;
    // Nothing listens on port 9 of loopback.
    let app = app_for(
        proxy.stack.store.clone(),
        config("http://127.0.0.1:9", Duration::from_secs(5)),
    );
    let request = ApiRequest::new("POST", &format!("/v1/{LINE_A}/messages"))
        .bearer(&proxy.token)
        .header("content-type", "application/json")
        .raw_body(&fixture_text("graph-send-text.request.json"));
    let response = raw(send_proxy::handle(&app, request.to_lambda()).await);
    assert_graph_error(&response, 502, "graph_unreachable");
    let chat = proxy.chat(LINE_A, RECIPIENT).await;
    assert!(chat.is_none_or(|c| c.last_outbound_at.is_none()));
}

#[tokio::test]
async fn b34_unreadable_blocklist_refuses_the_send_with_503_and_sends_nothing() {
    let proxy = Proxy::new().await;
    let store = blocklist::store::Store::new(
        dynamodb_client("http://127.0.0.1:9"),
        proxy.stack.tables.clone(),
    );
    let app = app_for(store, config(&proxy.graph.uri(), Duration::from_secs(5)));
    let send = ApiRequest::new("POST", &format!("/v1/{LINE_A}/messages"))
        .bearer(&proxy.token)
        .header("content-type", "application/json")
        .raw_body(&fixture_text("graph-send-text.request.json"));
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        send_proxy::handle(&app, send.to_lambda()),
    )
    .await
    .expect("answers in time");
    assert_graph_error(&raw(response), 503, "blocklist_unavailable");

    let check = ApiRequest::new("POST", &format!("/v1/{LINE_A}/recipients:check"))
        .bearer(&proxy.token)
        .json(serde_json::json!({"numbers": [RECIPIENT]}));
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        send_proxy::handle(&app, check.to_lambda()),
    )
    .await
    .expect("answers in time");
    assert_graph_error(&raw(response), 503, "blocklist_unavailable");

    assert!(
        proxy.graph_requests().await.is_empty(),
        "never sent unchecked"
    );
}

/// A proxy on the test's tables whose `TransactWriteItems` go to a table
/// that does not exist the first `failing` times (all of them for
/// `usize::MAX`); the count of refused writes.
fn with_failing_transactions(
    proxy: &Proxy,
    relay: &integration_tests::DynamoRelay,
    failing: usize,
) -> (
    send_proxy::App,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let refused = relay.fail_first(failing, |operation, _| operation == "TransactWriteItems");
    let mut app = app_for(
        proxy.stack.store_via(relay),
        config(&proxy.graph.uri(), Duration::from_secs(5)),
    );
    app.record_refusal_within = Duration::from_secs(1);
    (app, refused)
}

async fn refused_events(proxy: &Proxy) -> usize {
    proxy
        .api()
        .history(RECIPIENT)
        .await
        .iter()
        .filter(|e| e["action"] == "outbound_refused")
        .count()
}

/// B31, S3: a refusal's audit event is retried until written. A store that
/// fails for a moment still gives the 403 with its one event; one that
/// keeps failing gives 503 (the send is not made, and not answered as a
/// recorded refusal). Before, the 403 went out with no event.
#[tokio::test]
async fn b31_s3_refusal_is_answered_only_once_its_audit_event_is_written() {
    let proxy = Proxy::new().await;
    proxy.block(RECIPIENT, "all").await;
    let relay = integration_tests::DynamoRelay::start(&integration_tests::endpoint());
    let request = || {
        ApiRequest::new("POST", &format!("/v1/{LINE_A}/messages"))
            .bearer(&proxy.token)
            .header("content-type", "application/json")
            .raw_body(&fixture_text("graph-send-text.request.json"))
    };

    let (app, refused) = with_failing_transactions(&proxy, &relay, 2);
    let response = raw(send_proxy::handle(&app, request().to_lambda()).await);
    assert_graph_error(&response, 403, "recipient_blocked");
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(
        refused_events(&proxy).await,
        1,
        "written once, on the third try"
    );

    let (app, refused) = with_failing_transactions(&proxy, &relay, usize::MAX);
    let response = raw(send_proxy::handle(&app, request().to_lambda()).await);
    assert_graph_error(&response, 503, "refusal_not_recorded");
    assert!(
        refused.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "retried"
    );
    assert_eq!(refused_events(&proxy).await, 1, "nothing more written");
    assert!(proxy.graph_requests().await.is_empty(), "nothing sent");
}
