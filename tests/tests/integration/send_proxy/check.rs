//! B33: `POST /v1/{phone_number_id}/recipients:check`.

use serde_json::{Value, json};

use super::{LINE_A, LINE_B, Proxy, assert_graph_error};

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[tokio::test]
async fn b33_check_sorts_blocked_unknown_invalid_and_allowed_in_one_call() {
    let proxy = Proxy::new().await;
    proxy.allow_unknown(LINE_A, false).await;
    proxy.block("+16505551234", "all").await;
    proxy.block("+447700900123", LINE_A).await;
    // Blocked elsewhere only, and known: allowed here.
    proxy.block("+16505559999", LINE_B).await;
    proxy.contact("+16505559999").await;
    proxy.contact("+33612345678").await;
    proxy.contact("+5511987654321").await;
    // Known but blocked: blocked wins.
    proxy.contact("+447700900123").await;

    let numbers = strings(&[
        "+16505551234",
        "+33612345678",
        "1 (650) 555-1234",
        "00447700900123",
        "+16505550000",
        "not-a-number",
        "551187654321",
        "+1 650",
        "+16505559999",
        "",
    ]);
    let response = proxy.check(LINE_A, &numbers).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(
        response.json(),
        json!({
            "allowed": ["+33612345678", "551187654321", "+16505559999"],
            "refused": [
                {"number": "+16505551234", "reason": "recipient_blocked"},
                {"number": "1 (650) 555-1234", "reason": "recipient_blocked"},
                {"number": "00447700900123", "reason": "recipient_blocked"},
                {"number": "+16505550000", "reason": "recipient_unknown"},
                {"number": "not-a-number", "reason": "invalid_number"},
                {"number": "+1 650", "reason": "invalid_number"},
                {"number": "", "reason": "invalid_number"},
            ]
        })
    );
    assert!(
        proxy.graph_requests().await.is_empty(),
        "a check sends nothing"
    );

    // The same numbers from another line, where unknown numbers are allowed
    // and only `all` blocks apply.
    let response = proxy.check(LINE_B, &numbers).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(
        response.json(),
        json!({
            "allowed": ["+33612345678", "00447700900123", "+16505550000", "551187654321"],
            "refused": [
                {"number": "+16505551234", "reason": "recipient_blocked"},
                {"number": "1 (650) 555-1234", "reason": "recipient_blocked"},
                {"number": "not-a-number", "reason": "invalid_number"},
                {"number": "+1 650", "reason": "invalid_number"},
                {"number": "+16505559999", "reason": "recipient_blocked"},
                {"number": "", "reason": "invalid_number"},
            ]
        })
    );
}

#[tokio::test]
async fn b33_check_of_2000_numbers_reads_every_batch() {
    let proxy = Proxy::new().await;
    let numbers: Vec<String> = (0..2000).map(|i| format!("+1650555{i:04}")).collect();
    let response = proxy.check(LINE_A, &numbers).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    let body = response.json();
    let allowed: Vec<String> = serde_json::from_value(body["allowed"].clone()).unwrap();
    assert_eq!(allowed, numbers, "every number allowed, as given, in order");
    assert_eq!(body["refused"], json!([]));

    // Blocks in the first, a middle and the last batch are all seen.
    for i in [0, 1000, 1999] {
        proxy.block(&numbers[i], "all").await;
    }
    let response = proxy.check(LINE_A, &numbers).await;
    assert_eq!(response.status, 200);
    let body = response.json();
    let refused: Vec<Value> = body["refused"].as_array().unwrap().clone();
    assert_eq!(
        refused,
        vec![
            json!({"number": "+16505550000", "reason": "recipient_blocked"}),
            json!({"number": "+16505551000", "reason": "recipient_blocked"}),
            json!({"number": "+16505551999", "reason": "recipient_blocked"}),
        ]
    );
    assert_eq!(body["allowed"].as_array().unwrap().len(), 1997);
    assert!(proxy.graph_requests().await.is_empty());
}

#[tokio::test]
async fn b33_check_of_more_than_10000_numbers_is_422() {
    let proxy = Proxy::new().await;
    let numbers: Vec<String> = (0..10_001).map(|i| format!("+1650{:07}", i)).collect();
    let response = proxy.check(LINE_A, &numbers).await;
    let error_data = assert_graph_error(&response, 422, "too_many_numbers");
    assert_eq!(error_data["field"], "numbers");
}

#[tokio::test]
async fn b33_check_bodies_of_the_wrong_shape_are_4xx() {
    let proxy = Proxy::new().await;
    let cases = [
        ("{\"numbers\": ", 400, "malformed_json"),
        ("{}", 422, "invalid_field"),
        ("{\"numbers\": \"+16505551234\"}", 422, "invalid_field"),
        ("{\"numbers\": [16505551234]}", 422, "invalid_field"),
        ("{\"numbers\": [], \"extra\": 1}", 422, "invalid_field"),
    ];
    for (body, status, reason) in cases {
        let response = proxy
            .send(
                integration_tests::ApiRequest::new(
                    "POST",
                    &format!("/v1/{LINE_A}/recipients:check"),
                )
                .bearer(&proxy.token)
                .header("content-type", "application/json")
                .raw_body(body),
            )
            .await;
        assert_graph_error(&response, status, reason);
    }
    let empty = proxy.check(LINE_A, &[]).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json(), json!({"allowed": [], "refused": []}));
}
