//! B30–B32, B2/B4: sends that go through, and sends that are refused.

use blocklist::model::ChatStatus;
use chrono::Utc;
use integration_tests::{ApiRequest, TestClock};
use serde_json::json;
use wiremock::ResponseTemplate;

use super::{
    ACCESS_TOKEN, GRAPH_PATH, LINE_A, LINE_B, Proxy, RECIPIENT, assert_graph_error, fixture,
    fixture_text, text_send_to,
};

/// Sends a fixture body and checks B30: Graph got it byte for byte at the
/// right path with the configured token, and the caller got Graph's answer
/// byte for byte; then the chat records the send.
async fn assert_forwarded_unchanged(request_fixture: &str) {
    let proxy = Proxy::new().await;
    let body = fixture_text(request_fixture);
    let before = Utc::now();
    let response = proxy.send_message(LINE_A, &body).await;
    let after = Utc::now();

    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.bytes)
    );
    assert_eq!(
        response.bytes,
        fixture("graph-send.response.json"),
        "Graph's body, unchanged"
    );
    assert_eq!(response.content_type.as_deref(), Some("application/json"));

    let requests = proxy.graph_requests().await;
    assert_eq!(requests.len(), 1, "one request to Graph");
    let sent = &requests[0];
    assert_eq!(sent.method.as_str(), "POST");
    assert_eq!(sent.url.path(), GRAPH_PATH);
    assert_eq!(sent.url.query(), None);
    assert_eq!(
        sent.body,
        fixture(request_fixture),
        "the body reaches Graph byte for byte"
    );
    assert_eq!(
        sent.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );
    assert_eq!(
        sent.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );

    let chat = proxy.chat(LINE_A, RECIPIENT).await.expect("chat recorded");
    let at = chat.last_outbound_at.expect("last_outbound_at set");
    assert!(
        before - chrono::Duration::seconds(1) <= at && at <= after,
        "{at} not within the call"
    );
    assert_eq!(chat.status, ChatStatus::Active);
    assert_eq!(chat.phone_number_id.as_str(), LINE_A);
    assert_eq!(chat.subject.as_str(), RECIPIENT);
    assert!(proxy.refusals(RECIPIENT).await.is_empty());
}

#[tokio::test]
async fn b30_allowed_text_send_reaches_graph_unchanged() {
    assert_forwarded_unchanged("graph-send-text.request.json").await;
}

#[tokio::test]
async fn b30_allowed_template_send_reaches_graph_unchanged() {
    assert_forwarded_unchanged("graph-send-template.request.json").await;
}

#[tokio::test]
async fn b30_graph_400_error_is_passed_through_unchanged() {
    let proxy = Proxy::new().await;
    proxy
        .graph_answers(
            ResponseTemplate::new(400)
                .set_body_raw(fixture("graph-error.response.json"), "application/json"),
        )
        .await;
    let response = proxy
        .send_message(LINE_A, &fixture_text("graph-send-text.request.json"))
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.bytes, fixture("graph-error.response.json"));
    assert_eq!(response.content_type.as_deref(), Some("application/json"));
    assert_eq!(proxy.graph_requests().await.len(), 1);
    let chat = proxy.chat(LINE_A, RECIPIENT).await;
    assert!(
        chat.is_none_or(|c| c.last_outbound_at.is_none()),
        "a send Graph refused is not an outbound message"
    );
}

/// B31 for one block scope: refused with the exact shape, nothing sent,
/// audited and counted.
async fn assert_blocked_refused(scope: &str) {
    let proxy = Proxy::new().await;
    proxy.block(RECIPIENT, scope).await;
    let refused_before = proxy.refused_so_far().await;

    let response = proxy
        .send_message(LINE_A, &fixture_text("graph-send-text.request.json"))
        .await;
    let error_data = assert_graph_error(&response, 403, "recipient_blocked");
    let body = response.json();
    assert_eq!(body["error"]["type"], "BlocklistRefusal");
    assert_eq!(
        error_data,
        json!({"reason": "recipient_blocked", "recipient": RECIPIENT, "scope": scope})
    );
    assert!(proxy.graph_requests().await.is_empty(), "nothing sent");

    let refusals = proxy.refusals(RECIPIENT).await;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    let event = &refusals[0];
    assert_eq!(event["number"], RECIPIENT);
    assert_eq!(event["scope"], scope);
    assert_eq!(event["actor"], "crm");
    assert_eq!(event["reason"], "recipient_blocked");
    assert_eq!(event["details"]["phone_number_id"], LINE_A);
    assert_eq!(proxy.refused_so_far().await, refused_before + 1);

    let chat = proxy.chat(LINE_A, RECIPIENT).await;
    assert!(
        chat.is_none_or(|c| c.last_outbound_at.is_none()),
        "no outbound recorded for a refused send"
    );
}

#[tokio::test]
async fn b31_recipient_blocked_in_all_is_refused_audited_and_counted() {
    assert_blocked_refused("all").await;
}

#[tokio::test]
async fn b31_recipient_blocked_on_this_business_number_is_refused_audited_and_counted() {
    assert_blocked_refused(LINE_A).await;
}

#[tokio::test]
async fn b31_recipient_in_another_form_of_a_blocked_number_is_refused() {
    let proxy = Proxy::new().await;
    // (blocked as, sent to, canonical)
    let cases = [
        ("+16505551234", "1 (650) 555-1234", "+16505551234"),
        ("+16505551234", "16505551234", "+16505551234"),
        ("+16505551234", "0016505551234", "+16505551234"),
        // Brazil: the 13-digit form blocked, the old 12-digit wa_id sent to.
        ("+5511987654321", "551187654321", "+5511987654321"),
        // …and the other way round.
        ("551187654322", "+55 11 98765-4322", "+5511987654322"),
        // Mexico: 52 + 10 digits blocked, WhatsApp's 521… sent to.
        ("+525512345678", "5215512345678", "+525512345678"),
        // …and the other way round.
        ("+5215512345679", "+52 55 1234 5679", "+525512345679"),
    ];
    let mut blocked = std::collections::HashSet::new();
    for (block_as, _, canonical) in cases {
        if blocked.insert(canonical) {
            proxy.block(block_as, "all").await;
        }
    }
    let refused_before = proxy.refused_so_far().await;
    for (block_as, to, canonical) in cases {
        let response = proxy.send_message(LINE_A, &text_send_to(to)).await;
        let error_data = assert_graph_error(&response, 403, "recipient_blocked");
        assert_eq!(
            error_data,
            json!({"reason": "recipient_blocked", "recipient": canonical, "scope": "all"}),
            "blocked as {block_as}, sent to {to}"
        );
    }
    assert!(proxy.graph_requests().await.is_empty(), "nothing sent");
    assert_eq!(
        proxy.refused_so_far().await,
        refused_before + cases.len() as u64
    );
    assert_eq!(proxy.refusals("+16505551234").await.len(), 3);
    assert_eq!(proxy.refusals("+5511987654321").await.len(), 1);
    assert_eq!(proxy.refusals("+525512345678").await.len(), 1);
}

#[tokio::test]
async fn b31_block_on_another_business_number_only_does_not_refuse() {
    let proxy = Proxy::new().await;
    proxy.block(RECIPIENT, LINE_B).await;
    let body = fixture_text("graph-send-text.request.json");
    let response = proxy.send_message(LINE_A, &body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(response.bytes, fixture("graph-send.response.json"));
    let requests = proxy.graph_requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.path(), GRAPH_PATH);

    // The same recipient from the line it is blocked on is refused.
    let refused = proxy.send_message(LINE_B, &body).await;
    let error_data = assert_graph_error(&refused, 403, "recipient_blocked");
    assert_eq!(error_data["scope"], LINE_B);
    assert_eq!(proxy.graph_requests().await.len(), 1, "still one send");
}

#[tokio::test]
async fn b32_unknown_recipient_is_refused_when_unknown_numbers_are_not_allowed() {
    let proxy = Proxy::new().await;
    proxy.allow_unknown(LINE_A, false).await;
    let body = fixture_text("graph-send-text.request.json");
    let refused_before = proxy.refused_so_far().await;

    let response = proxy.send_message(LINE_A, &body).await;
    let error_data = assert_graph_error(&response, 403, "recipient_unknown");
    assert_eq!(response.json()["error"]["type"], "BlocklistRefusal");
    assert_eq!(
        error_data,
        json!({"reason": "recipient_unknown", "recipient": RECIPIENT})
    );
    assert!(proxy.graph_requests().await.is_empty(), "nothing sent");
    let refusals = proxy.refusals(RECIPIENT).await;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0]["reason"], "recipient_unknown");
    assert_eq!(refusals[0]["details"]["phone_number_id"], LINE_A);
    assert_eq!(proxy.refused_so_far().await, refused_before + 1);

    // Another line keeps the default (allowed).
    let other = proxy.send_message(LINE_B, &body).await;
    assert_eq!(other.status, 200, "{:?}", other.json());
    assert_eq!(proxy.graph_requests().await.len(), 1);

    // Once the CRM syncs the contact, the send goes through.
    proxy.contact(RECIPIENT).await;
    let response = proxy.send_message(LINE_A, &body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(response.bytes, fixture("graph-send.response.json"));
    let requests = proxy.graph_requests().await;
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].url.path(), GRAPH_PATH);
    assert_eq!(requests[1].body, fixture("graph-send-text.request.json"));
}

#[tokio::test]
async fn b32_contact_in_another_form_counts_as_known() {
    let proxy = Proxy::new().await;
    proxy.allow_unknown(LINE_A, false).await;
    proxy.contact("+5511987654321").await;
    let response = proxy
        .send_message(LINE_A, &text_send_to("551187654321"))
        .await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(proxy.graph_requests().await.len(), 1);
}

#[tokio::test]
async fn b32_unknown_recipient_is_sent_by_default() {
    let proxy = Proxy::new().await;
    let response = proxy
        .send_message(LINE_A, &fixture_text("graph-send-text.request.json"))
        .await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(proxy.graph_requests().await.len(), 1);

    // Explicitly allowed again after being disallowed.
    proxy.allow_unknown(LINE_A, false).await;
    let refused = proxy
        .send_message(LINE_A, &fixture_text("graph-send-text.request.json"))
        .await;
    assert_graph_error(&refused, 403, "recipient_unknown");
    proxy.allow_unknown(LINE_A, true).await;
    let response = proxy
        .send_message(LINE_A, &fixture_text("graph-send-text.request.json"))
        .await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(proxy.graph_requests().await.len(), 2);
}

#[tokio::test]
async fn b32_default_settings_apply_to_business_numbers_without_their_own() {
    let proxy = Proxy::new().await;
    proxy.allow_unknown("default", false).await;
    let response = proxy
        .send_message(LINE_A, &fixture_text("graph-send-text.request.json"))
        .await;
    assert_graph_error(&response, 403, "recipient_unknown");
    // A business number's own setting wins over the default.
    proxy.allow_unknown(LINE_B, true).await;
    let response = proxy
        .send_message(LINE_B, &fixture_text("graph-send-text.request.json"))
        .await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(proxy.graph_requests().await.len(), 1);
}

#[tokio::test]
async fn b31_blocked_wins_over_known_contact_and_allowed_unknown() {
    let proxy = Proxy::new().await;
    proxy.contact(RECIPIENT).await;
    proxy.block(RECIPIENT, "all").await;
    let response = proxy
        .send_message(LINE_A, &fixture_text("graph-send-text.request.json"))
        .await;
    assert_graph_error(&response, 403, "recipient_blocked");
    assert!(proxy.graph_requests().await.is_empty());
}

#[tokio::test]
async fn b2_b4_unblock_lets_the_next_send_through() {
    let proxy = Proxy::new().await;
    proxy.block(RECIPIENT, "all").await;
    let body = fixture_text("graph-send-text.request.json");
    let refused = proxy.send_message(LINE_A, &body).await;
    assert_graph_error(&refused, 403, "recipient_blocked");
    assert!(proxy.graph_requests().await.is_empty());

    let unblock = proxy
        .api()
        .send(
            ApiRequest::new("DELETE", &format!("/v1/blocks/{RECIPIENT}?scope=all"))
                .bearer(&proxy.api().token)
                .json(json!({"reason": "customer asked again"})),
        )
        .await;
    assert_eq!(unblock.status, 200, "{:?}", unblock.body);

    let response = proxy.send_message(LINE_A, &body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(response.bytes, fixture("graph-send.response.json"));
    let requests = proxy.graph_requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body, fixture("graph-send-text.request.json"));
    let chat = proxy.chat(LINE_A, RECIPIENT).await.expect("chat");
    assert!(chat.last_outbound_at.is_some());
    assert_eq!(chat.status, ChatStatus::Active);

    // Blocked again: refused again at once.
    proxy.block(RECIPIENT, LINE_A).await;
    let refused = proxy.send_message(LINE_A, &body).await;
    assert_graph_error(&refused, 403, "recipient_blocked");
    assert_eq!(proxy.graph_requests().await.len(), 1);
}

#[tokio::test]
async fn b13_expired_temporary_block_no_longer_refuses_the_send() {
    // The proxy's clock is moved past the expiry instead of waiting for it.
    type Clock = TestClock<1>;
    Clock::set(Utc::now());
    let mut proxy = Proxy::new().await;
    proxy.app.now = Clock::now;
    let expires_at = Utc::now() + chrono::Duration::hours(1);
    let response = proxy
        .api()
        .block(
            RECIPIENT,
            json!({
                "reason": "cooling off",
                "scope": "all",
                "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    // A permanent block on the other line outlives the temporary one.
    proxy.block(RECIPIENT, LINE_B).await;
    let body = fixture_text("graph-send-text.request.json");

    let refused = proxy.send_message(LINE_A, &body).await;
    let error_data = assert_graph_error(&refused, 403, "recipient_blocked");
    assert_eq!(error_data["scope"], "all");
    // A minute before the expiry: still refused.
    Clock::set(expires_at - chrono::Duration::minutes(1));
    let refused = proxy.send_message(LINE_A, &body).await;
    let error_data = assert_graph_error(&refused, 403, "recipient_blocked");
    assert_eq!(error_data["scope"], "all");
    assert!(proxy.graph_requests().await.is_empty());

    // A second after it: the send goes out.
    Clock::set(expires_at + chrono::Duration::seconds(1));
    let response = proxy.send_message(LINE_A, &body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(proxy.graph_requests().await.len(), 1);
    let refused = proxy.send_message(LINE_B, &body).await;
    let error_data = assert_graph_error(&refused, 403, "recipient_blocked");
    assert_eq!(
        error_data["scope"], LINE_B,
        "the expired block is not the reason"
    );
    assert_eq!(proxy.graph_requests().await.len(), 1);
}

#[tokio::test]
async fn b30_send_to_a_known_contact_marks_the_chat_known() {
    let proxy = Proxy::new().await;
    proxy.contact(RECIPIENT).await;
    let response = proxy.send_message(LINE_A, &text_send_to(RECIPIENT)).await;
    assert_eq!(response.status, 200);
    let chat = proxy
        .chat(LINE_A, RECIPIENT)
        .await
        .expect("chat created by the send");
    assert!(chat.known_contact);
    assert_eq!(chat.status, ChatStatus::Active);
}

/// S4: the settings a send needs (B32) are read once per few seconds in a
/// warm function, not on every send, while blocks are read on every send.
#[tokio::test]
async fn s4_settings_are_reused_for_a_few_seconds_and_blocks_never() {
    use blocklist::store::SETTINGS_CACHE_FOR;
    use integration_tests::{DynamoRelay, endpoint};

    let proxy = Proxy::new().await;
    let relay = DynamoRelay::start(&endpoint());
    let app = super::app_for(
        proxy.stack.store_via(&relay),
        super::config(&proxy.graph.uri(), std::time::Duration::from_secs(5)),
    );
    let send = || async {
        let request = ApiRequest::new("POST", &format!("/v1/{LINE_A}/messages"))
            .bearer(&proxy.token)
            .header("content-type", "application/json")
            .raw_body(&text_send_to(RECIPIENT));
        super::raw(send_proxy::handle(&app, request.to_lambda()).await)
    };
    let settings_reads = || {
        relay
            .calls()
            .iter()
            .filter(|call| {
                call.operation == "BatchGetItem" && call.body.to_string().contains("SETTINGS#")
            })
            .count()
    };
    for _ in 0..3 {
        let sent = send().await;
        assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.bytes));
    }
    assert_eq!(settings_reads(), 1, "three sends, one read of the settings");

    // A block made elsewhere counts at once.
    proxy.block(RECIPIENT, "all").await;
    assert_graph_error(&send().await, 403, "recipient_blocked");

    // Past the cache's age, the settings are read again.
    tokio::time::sleep(SETTINGS_CACHE_FOR + std::time::Duration::from_millis(200)).await;
    let before = settings_reads();
    send().await;
    assert_eq!(
        settings_reads(),
        before + 1,
        "settings read again once stale"
    );
}
