//! B16: blocks come due for review, are listed from their own index, and
//! are kept or unblocked with a `reviewed` event, against DynamoDB Local.

use chrono::{DateTime, Duration, Utc};
use integration_tests::{ApiRequest, ApiResponse, TestStack, token};
use serde_json::{Value, json};

use crate::block_api::Api;

const NUMBER: &str = "+16505551234";
const OTHER: &str = "+16505557777";
const LINE: &str = "106540352242922";

fn in_two_days() -> DateTime<Utc> {
    Utc::now() + Duration::days(2)
}

/// The block API on `stack`, with a clock two days ahead.
fn two_days_later(stack: &TestStack) -> Api {
    let mut api = Api::on(stack);
    api.app.now = in_two_days;
    api
}

async fn settings(api: &Api, target: &str, body: Value) -> ApiResponse {
    api.send(
        ApiRequest::new("PUT", &format!("/v1/settings/{target}"))
            .bearer(&token("ops", &["blocklist:admin"]))
            .json(body),
    )
    .await
}

async fn due(api: &Api) -> Vec<String> {
    let answer = api.call("GET", "/v1/blocks?review=due", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{} {}",
                b["number"].as_str().unwrap(),
                b["scope"].as_str().unwrap()
            )
        })
        .collect()
}

async fn review(api: &Api, number: &str, body: Value) -> ApiResponse {
    api.call("POST", &format!("/v1/blocks/{number}/review"), Some(body))
        .await
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("a time: {value}")))
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn b16_a_block_comes_due_and_a_review_keeps_or_unblocks_it() {
    let api = Api::new().await;
    assert_eq!(
        settings(&api, "default", json!({"review_after_days": 1}))
            .await
            .status,
        200
    );
    let made = api.block(NUMBER, json!({"reason": "spam"})).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let due_at = time(&made.body["review_due_at"]);
    let expected = time(&made.body["blocked_at"]) + Duration::days(1);
    assert_eq!(due_at, expected, "made + review_after_days");
    api.block(OTHER, json!({"reason": "spam"})).await;
    assert!(due(&api).await.is_empty(), "nothing due yet");

    // A temporary block past its end is the sweep's, not a reviewer's.
    let temporary = api
        .block(
            "+16505550000",
            json!({"reason": "cool off", "expires_at": (Utc::now() + Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!(temporary.status, 201, "{}", temporary.body);
    let later = two_days_later(&api.stack);
    assert_eq!(
        due(&later).await,
        [format!("{NUMBER} all"), format!("{OTHER} all")]
    );
    // The same list as CSV.
    let request = ApiRequest::new("GET", "/v1/blocks?review=due")
        .bearer(&later.token)
        .header("accept", "text/csv");
    let csv = block_api::handle(&later.app, request.to_lambda()).await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let lambda_http::Body::Text(text) = csv.into_body() else {
        panic!("a text body")
    };
    assert_eq!(text.lines().count(), 3, "a header and two rows: {text}");
    assert!(text.lines().nth(1).unwrap().starts_with(NUMBER), "{text}");
    let page = later
        .call("GET", "/v1/blocks?review=due&limit=1", None)
        .await;
    let cursor = page.body["next_cursor"].as_str().expect("a second page");
    let next = later
        .call(
            "GET",
            &format!("/v1/blocks?review=due&limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(next.body["items"][0]["number"], OTHER, "{}", next.body);

    // Keep: due again a period after the review, no longer due now.
    let kept = review(
        &later,
        NUMBER,
        json!({"decision": "keep", "reason": "still sending spam"}),
    )
    .await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert_eq!(kept.body["decision"], "keep");
    assert!(time(&kept.body["block"]["review_due_at"]) > in_two_days() + Duration::hours(23));
    assert_eq!(due(&later).await, [format!("{OTHER} all")]);
    let view = later
        .call("GET", &format!("/v1/blocks/{NUMBER}"), None)
        .await;
    assert_eq!(
        view.body["blocks"].as_array().unwrap().len(),
        1,
        "still blocked"
    );

    // Unblock: the block goes, with both events.
    let removed = review(
        &later,
        OTHER,
        json!({"decision": "unblock", "reason": "no complaints since", "scope": "all"}),
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let view = later
        .call("GET", &format!("/v1/blocks/{OTHER}"), None)
        .await;
    assert_eq!(view.body["blocks"], json!([]));
    assert!(due(&later).await.is_empty());
    let history = later.history(OTHER).await;
    let event = |action: &str| -> Value {
        history
            .iter()
            .find(|e| e["action"] == action)
            .cloned()
            .unwrap_or_else(|| panic!("no {action} event: {history:?}"))
    };
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(event("reviewed")["details"]["decision"], "unblock");
    // Written in the same millisecond, the two are ordered by their chain:
    // the review, then the unblock.
    assert_eq!(
        event("unblocked")["prev_event_id"],
        event("reviewed")["event_id"]
    );
    let reviewed = later.history(NUMBER).await;
    assert_eq!(reviewed[0]["action"], "reviewed");
    assert_eq!(reviewed[0]["reason"], "still sending spam");
    assert_eq!(reviewed[0]["details"]["decision"], "keep");
    let chain = later
        .call("GET", &format!("/v1/numbers/{OTHER}/history"), None)
        .await;
    assert_eq!(chain.body["chain"]["verified"], true, "{}", chain.body);

    let day = in_two_days().date_naive();
    let stats = later
        .call("GET", &format!("/v1/stats?from={day}&to={day}"), None)
        .await;
    assert_eq!(stats.body["days"][0]["reviewed"], 2, "{}", stats.body);
    assert_eq!(stats.body["days"][0]["unblocked"], 1, "{}", stats.body);
}

#[tokio::test]
async fn b16_bad_reviews_are_refused_and_change_nothing() {
    let api = Api::new().await;
    api.block(NUMBER, json!({"reason": "spam"})).await;
    for (body, status) in [
        (json!({"decision": "forget", "reason": "x"}), 422),
        (json!({"decision": "keep"}), 422),
        (json!({"decision": "keep", "reason": ""}), 422),
        (
            json!({"decision": "keep", "reason": "x", "scope": "line-a"}),
            422,
        ),
        (
            json!({"decision": "keep", "reason": "x", "colour": "red"}),
            422,
        ),
    ] {
        let answer = review(&api, NUMBER, body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        assert!(answer.body["error"]["code"].is_string());
    }
    let not_blocked = review(&api, OTHER, json!({"decision": "keep", "reason": "x"})).await;
    assert_eq!(not_blocked.status, 404);
    assert_eq!(not_blocked.body["error"]["code"], "not_blocked");
    let elsewhere = review(
        &api,
        NUMBER,
        json!({"decision": "unblock", "reason": "x", "scope": LINE}),
    )
    .await;
    assert_eq!(elsewhere.status, 404, "no block in that scope");
    let reader = api
        .send(
            ApiRequest::new("POST", &format!("/v1/blocks/{NUMBER}/review"))
                .bearer(&token("auditor", &["blocklist:read"]))
                .json(json!({"decision": "unblock", "reason": "x"})),
        )
        .await;
    assert_eq!(reader.status, 403, "reviewing needs blocklist:write");
    for uri in ["/v1/blocks?review=soon", "/v1/blocks?review=due&scope=all"] {
        let answer = api.call("GET", uri, None).await;
        assert_eq!(answer.status, 400, "{uri}: {}", answer.body);
    }
    let history = api.history(NUMBER).await;
    assert_eq!(history.len(), 1, "only the block: {history:?}");
}

#[tokio::test]
async fn b16_review_is_on_by_default_and_off_with_null() {
    let api = Api::new().await;
    let made = api.block(NUMBER, json!({"reason": "spam"})).await;
    assert_eq!(
        time(&made.body["review_due_at"]),
        time(&made.body["blocked_at"]) + Duration::days(90),
        "SPEC default: 90 days"
    );
    let off = settings(&api, LINE, json!({"review_after_days": null})).await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.body["review_after_days"], Value::Null);
    let read = api.call("GET", &format!("/v1/settings/{LINE}"), None).await;
    assert_eq!(read.body["review_after_days"], Value::Null, "kept off");
    let there = api
        .block(OTHER, json!({"reason": "spam", "scope": LINE}))
        .await;
    assert_eq!(there.body["review_due_at"], Value::Null, "{}", there.body);
    let mut much_later = Api::on(&api.stack);
    much_later.app.now = || Utc::now() + Duration::days(365);
    assert_eq!(due(&much_later).await, [format!("{NUMBER} all")]);
    for bad in [
        json!({"review_after_days": 0}),
        json!({"review_after_days": 3651}),
    ] {
        let refused = settings(&api, LINE, bad.clone()).await;
        assert_eq!(refused.status, 422, "{bad}: {}", refused.body);
        assert_eq!(refused.body["error"]["field"], "review_after_days");
    }
    let on = settings(&api, LINE, json!({"review_after_days": 30})).await;
    assert_eq!(on.body["review_after_days"], 30);
}
