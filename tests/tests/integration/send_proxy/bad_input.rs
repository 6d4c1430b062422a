//! B50, B51 on the send proxy: bad input and bad credentials get
//! Graph-shaped 4xx errors, and nothing reaches Graph.

use integration_tests::{ApiRequest, JWT_SECRET, token, token_with};
use serde_json::json;

use super::{LINE_A, Proxy, RECIPIENT, assert_graph_error, fixture_text, text_send_to};

fn send_request(business: &str, body: &str) -> ApiRequest {
    ApiRequest::new("POST", &format!("/v1/{business}/messages"))
        .header("content-type", "application/json")
        .raw_body(body)
}

#[tokio::test]
async fn b50_bad_send_bodies_are_graph_shaped_4xx_and_nothing_is_sent() {
    let proxy = Proxy::new().await;
    // Blocked, so that a refusal would show in the audit trail.
    proxy.block(RECIPIENT, "all").await;
    let oversized = json!({
        "messaging_product": "whatsapp",
        "to": RECIPIENT,
        "type": "text",
        "text": {"body": "x".repeat(1024 * 1024)}
    })
    .to_string();
    assert!(oversized.len() > 1024 * 1024);
    let cases: Vec<(String, String, u16, &str, Option<&str>)> = vec![
        (
            LINE_A.into(),
            json!({"messaging_product": "whatsapp", "type": "text", "text": {"body": "hi"}})
                .to_string(),
            422,
            "missing_recipient",
            Some("to"),
        ),
        (
            // A blocked recipient must not hide behind an allowed one.
            LINE_A.into(),
            format!(r#"{{"to": "+447700900123", "type": "text", "to": "{RECIPIENT}"}}"#),
            422,
            "invalid_number",
            Some("to"),
        ),
        (
            LINE_A.into(),
            format!(r#"[{{"to": "{RECIPIENT}"}}]"#),
            422,
            "invalid_field",
            Some("body"),
        ),
        (
            LINE_A.into(),
            json!({"to": 16505551234u64, "type": "text"}).to_string(),
            422,
            "invalid_number",
            Some("to"),
        ),
        (
            LINE_A.into(),
            text_send_to("+1 650"),
            422,
            "invalid_number",
            Some("to"),
        ),
        (
            LINE_A.into(),
            text_send_to("+1650555123x"),
            422,
            "invalid_number",
            Some("to"),
        ),
        (
            LINE_A.into(),
            "{\"to\": \"+16505551234\", ".into(),
            400,
            "malformed_json",
            None,
        ),
        (
            LINE_A.into(),
            "to=+16505551234&text=hi".into(),
            400,
            "malformed_json",
            None,
        ),
        (LINE_A.into(), String::new(), 400, "malformed_json", None),
        (LINE_A.into(), oversized, 413, "payload_too_large", None),
        (
            "abc".into(),
            fixture_text("graph-send-text.request.json"),
            400,
            "invalid_phone_number_id",
            Some("phone_number_id"),
        ),
    ];
    for (business, body, status, reason, field) in cases {
        let label = format!("{status} {reason}");
        let response = proxy
            .send(send_request(&business, &body).bearer(&proxy.token))
            .await;
        let error_data = assert_graph_error(&response, status, reason);
        assert_eq!(
            error_data.get("field").and_then(|f| f.as_str()),
            field,
            "{label}"
        );
        assert_eq!(
            response.json()["error"]["type"],
            "InvalidRequest",
            "{label}"
        );
    }
    assert!(proxy.graph_requests().await.is_empty(), "nothing sent");
    assert!(
        proxy.refusals(RECIPIENT).await.is_empty(),
        "bad input is not a refusal"
    );
}

#[tokio::test]
async fn b51_missing_or_bad_token_is_401_and_nothing_is_sent() {
    let proxy = Proxy::new().await;
    let body = fixture_text("graph-send-text.request.json");
    let check = json!({"numbers": [RECIPIENT]});
    let bad_tokens = [
        None,
        Some(token_with("crm", &["messages:send"], -3600, JWT_SECRET)),
        Some(token_with(
            "crm",
            &["messages:send"],
            3600,
            b"not-the-secret",
        )),
        Some("not-a-jwt".to_owned()),
    ];
    for token in &bad_tokens {
        let mut send = send_request(LINE_A, &body);
        let mut checking =
            ApiRequest::new("POST", &format!("/v1/{LINE_A}/recipients:check")).json(check.clone());
        if let Some(token) = token {
            send = send.bearer(token);
            checking = checking.bearer(token);
        }
        for request in [send, checking] {
            let label = format!("{} {:?}", request.uri, token);
            let response = proxy.send(request).await;
            assert_graph_error(&response, 401, "unauthorized");
            assert_eq!(
                response.json()["error"]["type"],
                "OAuthException",
                "{label}"
            );
        }
    }
    // A token in the wrong header form.
    let basic = send_request(LINE_A, &body).header("authorization", "Basic Y3JtOnNlY3JldA==");
    assert_graph_error(&proxy.send(basic).await, 401, "unauthorized");
    assert!(proxy.graph_requests().await.is_empty(), "nothing sent");
}

#[tokio::test]
async fn b51_token_without_messages_send_is_403_and_nothing_is_sent() {
    let proxy = Proxy::new().await;
    proxy.block(RECIPIENT, "all").await;
    let body = fixture_text("graph-send-text.request.json");
    for scopes in [
        &["blocklist:write"][..],
        &["blocklist:read", "blocklist:write", "blocklist:admin"][..],
        &[][..],
    ] {
        let token = token("crm", scopes);
        let response = proxy.send(send_request(LINE_A, &body).bearer(&token)).await;
        assert_graph_error(&response, 403, "forbidden");
        assert_eq!(response.json()["error"]["type"], "OAuthException");
        let response = proxy
            .send(
                ApiRequest::new("POST", &format!("/v1/{LINE_A}/recipients:check"))
                    .bearer(&token)
                    .json(json!({"numbers": [RECIPIENT]})),
            )
            .await;
        assert_graph_error(&response, 403, "forbidden");
    }
    // Unblocked, a forbidden caller still cannot send.
    let allowed = token("crm", &["blocklist:write"]);
    let response = proxy
        .send(send_request(LINE_A, &text_send_to("+16505550000")).bearer(&allowed))
        .await;
    assert_graph_error(&response, 403, "forbidden");
    assert!(proxy.graph_requests().await.is_empty(), "nothing sent");
    assert!(
        proxy.refusals(RECIPIENT).await.is_empty(),
        "an unauthorised call is not a recorded refusal"
    );
}

#[tokio::test]
async fn b51_delegated_refusal_names_the_agent_and_the_client() {
    let proxy = Proxy::new().await;
    proxy.block(RECIPIENT, "all").await;
    let body = fixture_text("graph-send-text.request.json");
    let delegating = token("crm", &["messages:send", "blocklist:delegate"]);
    let response = proxy
        .send(
            send_request(LINE_A, &body)
                .bearer(&delegating)
                .header("x-on-behalf-of", "agent-7"),
        )
        .await;
    assert_graph_error(&response, 403, "recipient_blocked");
    let refusals = proxy.refusals(RECIPIENT).await;
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["actor"], "agent-7");
    assert_eq!(refusals[0]["client"], "crm");

    // Without the delegate scope the header is refused, not ignored.
    let response = proxy
        .send(
            send_request(LINE_A, &body)
                .bearer(&proxy.token)
                .header("x-on-behalf-of", "agent-7"),
        )
        .await;
    assert_graph_error(&response, 403, "forbidden");
    assert_eq!(proxy.refusals(RECIPIENT).await.len(), 1);
    assert!(proxy.graph_requests().await.is_empty());
}

#[tokio::test]
async fn b50_wrong_method_or_route_is_graph_shaped_4xx() {
    let proxy = Proxy::new().await;
    let get = proxy
        .send(ApiRequest::new("GET", &format!("/v1/{LINE_A}/messages")).bearer(&proxy.token))
        .await;
    assert_graph_error(&get, 405, "method_not_allowed");
    assert_eq!(get.allow.as_deref(), Some("POST"));
    let other = proxy
        .send(
            ApiRequest::new("POST", &format!("/v1/{LINE_A}/media"))
                .bearer(&proxy.token)
                .raw_body("{}"),
        )
        .await;
    assert_graph_error(&other, 404, "not_found");
    assert!(proxy.graph_requests().await.is_empty());
}

#[tokio::test]
async fn b50_body_of_exactly_1_mib_is_sent_and_one_byte_more_is_413() {
    let proxy = Proxy::new().await;
    let limit = 1024 * 1024;
    let padded = |length: usize| {
        let empty = json!({"messaging_product": "whatsapp", "to": RECIPIENT, "type": "text", "text": {"body": ""}})
            .to_string();
        let body = json!({
            "messaging_product": "whatsapp",
            "to": RECIPIENT,
            "type": "text",
            "text": {"body": "x".repeat(length - empty.len())}
        })
        .to_string();
        assert_eq!(body.len(), length);
        body
    };
    let at_limit = padded(limit);
    let response = proxy
        .send(send_request(LINE_A, &at_limit).bearer(&proxy.token))
        .await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    let requests = proxy.graph_requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body, at_limit.as_bytes());

    let over = padded(limit + 1);
    let response = proxy
        .send(send_request(LINE_A, &over).bearer(&proxy.token))
        .await;
    assert_graph_error(&response, 413, "payload_too_large");
    assert_eq!(proxy.graph_requests().await.len(), 1, "nothing more sent");
}
