//! B91: `GET /v1/blocks` and `GET /v1/audit` answer CSV with
//! `Accept: text/csv`: the same filters, every page, and no cell a
//! spreadsheet would run as a formula.

use integration_tests::ApiRequest;
use serde_json::json;

use super::Api;

/// The CSV answer of `uri`: its rows (header first) and the
/// `X-Next-Cursor` header.
pub(super) async fn csv_of(api: &Api, uri: &str) -> (Vec<Vec<String>>, Option<String>) {
    let request = ApiRequest::new("GET", uri)
        .bearer(&api.token)
        .header("accept", "text/csv");
    let response = block_api::handle(&api.app, request.to_lambda()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let next = response
        .headers()
        .get("x-next-cursor")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = match response.into_body() {
        lambda_http::Body::Text(text) => text,
        other => panic!("a text body, got {other:?}"),
    };
    let rows = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (rows, next)
}

#[tokio::test]
async fn b91_blocks_export_every_page_as_csv_with_formulas_neutralised() {
    let api = Api::new().await;
    let numbers: Vec<String> = (0..250).map(|i| format!("+1650555{i:04}")).collect();
    let batch = api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({"action": "block", "numbers": numbers, "reason": "spam wave"})),
        )
        .await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    let formula = "=HYPERLINK(\"http://evil.example\",\"click\")";
    let made = api
        .block(
            "+447700900123",
            json!({"reason": formula, "scope": "106540352242922"}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);

    let (rows, next) = csv_of(&api, "/v1/blocks").await;
    assert_eq!(next, None, "everything fits one answer");
    assert_eq!(rows[0][..3], ["number", "subject", "scope"]);
    assert_eq!(
        rows.len(),
        1 + 251,
        "a header and every block, past the first page"
    );
    let mut exported: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    exported.sort_unstable();
    exported.dedup();
    assert_eq!(exported.len(), 251, "each block once");
    assert!(
        exported.contains(&"+16505550249"),
        "numbers are data, kept as they are"
    );
    let uk = rows.iter().find(|r| r[0] == "+447700900123").unwrap();
    assert_eq!(uk[3], format!("'{formula}"), "a formula is neutralised");

    // The same filters as the JSON listing.
    let (rows, _) = csv_of(&api, "/v1/blocks?scope=106540352242922").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    // Without the header, JSON as before.
    let json = api.call("GET", "/v1/blocks?limit=2", None).await;
    assert_eq!(json.body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn b91_the_audit_feed_exports_as_csv() {
    let api = Api::new().await;
    for number in ["+16505550001", "+16505550002", "+16505550003"] {
        api.block(number, json!({"reason": "spam"})).await;
    }
    api.call(
        "DELETE",
        "/v1/blocks/+16505550002",
        Some(json!({"reason": "@cmd resolved"})),
    )
    .await;
    let (rows, next) = csv_of(&api, "/v1/audit").await;
    assert_eq!(next, None);
    assert_eq!(rows[0][..3], ["event_id", "at", "action"]);
    assert_eq!(rows.len(), 1 + 4, "{rows:?}");
    let unblocked = rows.iter().find(|r| r[2] == "unblocked").unwrap();
    assert_eq!(unblocked[3], "+16505550002");
    assert_eq!(unblocked[8], "'@cmd resolved");
    let details: serde_json::Value = serde_json::from_str(&unblocked[10]).unwrap();
    assert_eq!(details["before"]["number"], "+16505550002");
    let (rows, _) = csv_of(&api, "/v1/audit?action=blocked").await;
    assert_eq!(rows.len(), 1 + 3);
}
