//! B1, B2, B3, B9 under concurrency: racing changes never lose or invent an
//! audit event, and state, audit trail and statistics stay in step.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use futures::future::join_all;
use integration_tests::{ApiRequest, ApiResponse, stats_total};
use serde_json::{Value, json};

use super::Api;
use super::bad_input::assert_error;

const NUMBER: &str = "+16505551234";
const CALLS: usize = 50;

/// The `blocked` and `unblocked` counts of `GET /v1/stats` over every day
/// from `start` to now (UTC), and `currently_blocked`: the whole count of
/// the test, even when it runs across midnight.
async fn stats_since(api: &Api, start: NaiveDate) -> (u64, u64, u64) {
    let end = Utc::now().date_naive();
    let stats = api
        .call("GET", &format!("/v1/stats?from={start}&to={end}"), None)
        .await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    let current = stats.body["currently_blocked"]
        .as_u64()
        .expect("currently_blocked");
    (
        stats_total(&stats.body, "blocked"),
        stats_total(&stats.body, "unblocked"),
        current,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn b3_concurrent_blocks_and_unblocks_of_one_number_stay_consistent() {
    let start = Utc::now().date_naive();
    let api = Arc::new(Api::new().await);
    // Alternating block and unblock calls, all in flight together; each
    // carries a unique reason so its effect can be traced in the audit. The
    // starts are spread (in a scrambled order) over about as long as one
    // call takes under this load, so that calls race not only with calls
    // that read the same first state but with calls that changed it since.
    let calls = (0..CALLS).map(|i| {
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((i as u64 * 37) % 50 * 10)).await;
            let is_block = i % 2 == 0;
            let request = if is_block {
                ApiRequest::new("PUT", &format!("/v1/blocks/{NUMBER}"))
                    .bearer(&api.token)
                    .json(json!({"reason": format!("block {i}"), "scope": "all"}))
            } else {
                ApiRequest::new("DELETE", &format!("/v1/blocks/{NUMBER}?scope=all"))
                    .bearer(&api.token)
                    .json(json!({"reason": format!("unblock {i}")}))
            };
            (i, is_block, api.send(request).await)
        })
    });
    let responses: Vec<(usize, bool, ApiResponse)> = join_all(calls)
        .await
        .into_iter()
        .map(|joined| joined.expect("no call panics"))
        .collect();
    let api = &*api;

    let mut created = Vec::new(); // reasons of blocks that were created
    let mut removed = Vec::new(); // reasons of unblocks that removed a block
    for (i, is_block, response) in &responses {
        match (is_block, response.status) {
            (true, 201) => {
                assert_eq!(response.body["reason"], format!("block {i}"));
                created.push(format!("block {i}"));
            }
            // Already blocked: the existing record, made by another call.
            (true, 200) => assert_ne!(response.body["reason"], format!("block {i}")),
            (false, 200) => {
                assert!(
                    response.body["reason"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("block ")),
                    "{:?}",
                    response.body
                );
                removed.push(format!("unblock {i}"));
            }
            (false, 404) => {
                assert_error(response, 404, "not_blocked");
            }
            (_, 409) => {
                assert_error(response, 409, "conflict");
            }
            (_, status) => panic!(
                "call {i} ({}) answered {status}: {:?}",
                if *is_block { "block" } else { "unblock" },
                response.body
            ),
        }
    }
    assert!(!created.is_empty(), "some block must win: {responses:?}");

    // Oldest first. History sorts by event id (a ULID: time, then random).
    let mut events = api.history(NUMBER).await;
    events.reverse();
    assert_eq!(
        events.len(),
        created.len() + removed.len(),
        "one audit event per successful change, no more, no less: {events:#?}"
    );
    let blocked_reasons: Vec<&str> = events
        .iter()
        .filter(|e| e["action"] == "blocked")
        .map(|e| e["reason"].as_str().expect("reason"))
        .collect();
    let unblocked_reasons: Vec<&str> = events
        .iter()
        .filter(|e| e["action"] == "unblocked")
        .map(|e| e["reason"].as_str().expect("reason"))
        .collect();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(blocked_reasons.iter().map(|r| r.to_string()).collect()),
        sorted(created.clone()),
        "the blocked events are exactly the 201 answers"
    );
    assert_eq!(
        sorted(unblocked_reasons.iter().map(|r| r.to_string()).collect()),
        sorted(removed.clone()),
        "the unblocked events are exactly the 200 answers to DELETE"
    );

    // Strict alternation, starting from "not blocked"; each unblock removes
    // the block the event before it created.
    let mut previous: Option<&Value> = None;
    for (n, event) in events.iter().enumerate() {
        let expected = if n % 2 == 0 { "blocked" } else { "unblocked" };
        assert_eq!(
            event["action"], expected,
            "event {n} out of order: {events:#?}"
        );
        if let Some(previous) = previous {
            assert!(
                event["at"].as_str() >= previous["at"].as_str(),
                "event {n} is older than the one before: {events:#?}"
            );
            if expected == "unblocked" {
                assert_eq!(
                    event["details"]["before"]["reason"], previous["reason"],
                    "event {n} removed another block than the one before"
                );
            }
        }
        previous = Some(event);
    }

    // The final state matches the last event.
    let view = api.call("GET", &format!("/v1/blocks/{NUMBER}"), None).await;
    assert_eq!(view.status, 200, "{:?}", view.body);
    let blocks = view.body["blocks"].as_array().expect("blocks");
    let last = events.last().expect("at least one event");
    let blocked = last["action"] == "blocked";
    assert_eq!(
        blocks.len(),
        usize::from(blocked),
        "blocked iff the last event is 'blocked': {view:?} after {last:?}"
    );
    if blocked {
        assert_eq!(blocks[0]["reason"], last["reason"]);
    }
    let listed = api.call("GET", "/v1/blocks", None).await;
    assert_eq!(
        listed.body["items"].as_array().map(Vec::len),
        Some(usize::from(blocked))
    );

    let (blocks, unblocks, currently_blocked) = stats_since(api, start).await;
    assert_eq!(currently_blocked, u64::from(blocked));
    assert_eq!(blocks, created.len() as u64);
    assert_eq!(unblocks, removed.len() as u64);
}

#[tokio::test]
async fn b3_b9_concurrent_blocks_of_different_numbers_all_succeed_and_count() {
    let start = Utc::now().date_naive();
    let api = Api::new().await;
    let api = &api;
    let numbers: Vec<String> = (0..CALLS)
        .map(|i| format!("+1650555{:04}", 1200 + i))
        .collect();
    let calls = numbers.iter().map(|number| async move {
        api.block(number, json!({"reason": "spam wave", "scope": "all"}))
            .await
    });
    let responses = join_all(calls).await;
    for (number, response) in numbers.iter().zip(&responses) {
        assert_eq!(response.status, 201, "{number}: {:?}", response.body);
        assert_eq!(response.body["number"], number.as_str());
    }

    let (blocks, unblocks, currently_blocked) = stats_since(api, start).await;
    assert_eq!(blocks, CALLS as u64);
    assert_eq!(unblocks, 0);
    assert_eq!(currently_blocked, CALLS as u64);

    let listed = api.call("GET", "/v1/blocks?limit=200", None).await;
    let mut listed: Vec<String> = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|b| b["number"].as_str().expect("number").to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, numbers);
    let audit = api.call("GET", "/v1/audit?limit=200", None).await;
    assert_eq!(audit.body["items"].as_array().map(Vec::len), Some(CALLS));
    for number in &numbers {
        let history = api.history(number).await;
        assert_eq!(history.len(), 1, "{number}: {history:?}");
        assert_eq!(history[0]["action"], "blocked");
    }
}
