//! B5, B6, B7, B8: batch changes, one number's view, the block list, history
//! and the audit feed.

use std::collections::BTreeSet;

use blocklist::Subject;
use blocklist::model::{ChatStatus, PhoneNumberId};
use chrono::{DateTime, TimeZone, Utc};
use integration_tests::{ApiRequest, ApiResponse, DynamoRelay, endpoint, token};
use serde_json::{Value, json};

use super::{Api, error_code};

const LINE_A: &str = "106540352242922";
const LINE_B: &str = "106540352242923";

/// Scopes of an operator who may also change settings.
pub const ADMIN: &[&str] = &["blocklist:read", "blocklist:write", "blocklist:admin"];

/// Follows `next_cursor` from `uri` until it is null; every page's items.
pub async fn pages(api: &Api, uri: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let separator = if uri.contains('?') { '&' } else { '?' };
        let full = match &cursor {
            Some(cursor) => format!("{uri}{separator}cursor={cursor}"),
            None => uri.to_owned(),
        };
        let response = api.call("GET", &full, None).await;
        assert_eq!(response.status, 200, "{full}: {:?}", response.body);
        pages.push(response.body["items"].as_array().expect("items").clone());
        match &response.body["next_cursor"] {
            Value::Null => return pages,
            Value::String(next) if !next.is_empty() => cursor = Some(next.clone()),
            other => panic!("next_cursor must be a non-empty string or null: {other:?}"),
        }
        assert!(pages.len() <= 100, "pagination of {uri} never ends");
    }
}

/// The items of a one-page listing (asserting there is no next page).
pub async fn items(api: &Api, uri: &str) -> Vec<Value> {
    let response = api.call("GET", uri, None).await;
    assert_eq!(response.status, 200, "{uri}: {:?}", response.body);
    assert_eq!(
        response.body["next_cursor"],
        Value::Null,
        "{uri}: one page expected"
    );
    response.body["items"].as_array().expect("items").clone()
}

/// `number#scope` of each block, in order.
fn block_keys(blocks: &[Value]) -> Vec<String> {
    blocks
        .iter()
        .map(|b| {
            format!(
                "{}#{}",
                b["number"].as_str().expect("number"),
                b["scope"].as_str().expect("scope")
            )
        })
        .collect()
}

/// The same keys, as a set (for filters, where order is checked elsewhere).
fn key_set(blocks: &[Value]) -> BTreeSet<String> {
    block_keys(blocks).into_iter().collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

/// Asserts the `number#scope` keys `GET /v1/blocks?{query}` lists, in order.
async fn assert_listed(api: &Api, query: &str, expected: &[&String]) {
    let listed = items(api, &format!("/v1/blocks?{query}")).await;
    let expected: Vec<String> = expected.iter().map(|k| (*k).clone()).collect();
    assert_eq!(block_keys(&listed), expected, "?{query}");
}

async fn put_contact(api: &Api, number: &str, body: Value) -> ApiResponse {
    let response = api
        .call("PUT", &format!("/v1/contacts/{number}"), Some(body))
        .await;
    assert!(
        response.status == 200 || response.status == 201,
        "{:?}",
        response.body
    );
    response
}

async fn block_ok(api: &Api, number: &str, body: Value) -> Value {
    let response = api.block(number, body).await;
    assert_eq!(response.status, 201, "{number}: {:?}", response.body);
    response.body
}

async fn unblock_ok(api: &Api, number: &str, scope: &str, reason: &str) -> Value {
    let response = api
        .call(
            "DELETE",
            &format!("/v1/blocks/{number}?scope={scope}"),
            Some(json!({ "reason": reason })),
        )
        .await;
    assert_eq!(response.status, 200, "{number}: {:?}", response.body);
    response.body
}

// ---------------------------------------------------------------- B5

#[tokio::test]
async fn b5_batch_blocks_and_unblocks_with_one_result_per_number() {
    let api = Api::new().await;
    block_ok(
        &api,
        "+16505550003",
        json!({"reason": "blocked earlier", "scope": "all"}),
    )
    .await;

    let given = [
        "+16505550001",
        "1 (650) 555-0002",
        "not a number",
        "16505550001",  // the first number again, in another form
        "+16505550003", // blocked before the batch
        "+1",
        "001 650 555 0001", // and again
    ];
    let response = api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({
                "action": "block",
                "numbers": given,
                "reason": "campaign opt-out",
                "scope": "all"
            })),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let results = response.body["results"].as_array().expect("results");
    let seen: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r["number"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("+16505550001", "blocked"),
            ("1 (650) 555-0002", "blocked"),
            ("not a number", "invalid_number"),
            ("16505550001", "already_blocked"),
            ("+16505550003", "already_blocked"),
            ("+1", "invalid_number"),
            ("001 650 555 0001", "already_blocked"),
        ],
        "{results:?}"
    );
    for result in results {
        if result["status"] == "invalid_number" {
            assert_eq!(result["error"]["code"], "invalid_number", "{result:?}");
            assert!(result["error"]["message"].is_string(), "{result:?}");
        } else {
            assert!(
                result.get("error").is_none(),
                "no error on success: {result:?}"
            );
        }
    }

    // The batch blocks are listed, with the batch's reason and source `bulk`;
    // the earlier block is left as it was.
    let listed = items(&api, "/v1/blocks").await;
    assert_eq!(
        key_set(&listed),
        set(&["+16505550001#all", "+16505550002#all", "+16505550003#all"])
    );
    for block in &listed {
        if block["number"] == "+16505550003" {
            assert_eq!(block["source"], "manual");
            assert_eq!(block["reason"], "blocked earlier");
        } else {
            assert_eq!(block["source"], "bulk", "{block:?}");
            assert_eq!(block["reason"], "campaign opt-out");
            assert_eq!(block["actor"], "agent-1");
        }
    }
    let history = api.history("+16505550001").await;
    assert_eq!(history.len(), 1, "one event for a number given twice");
    assert_eq!(history[0]["action"], "blocked");
    assert_eq!(history[0]["source"], "bulk");

    let response = api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({
                "action": "unblock",
                "numbers": ["+16505550001", "16505550002", "+16505559999", "++1", "1-650-555-0002"],
                "reason": "opted back in",
                "scope": "all"
            })),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let results = response.body["results"].as_array().expect("results");
    let seen: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r["number"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("+16505550001", "unblocked"),
            ("16505550002", "unblocked"),
            ("+16505559999", "not_blocked"),
            ("++1", "invalid_number"),
            ("1-650-555-0002", "not_blocked"),
        ]
    );
    assert_eq!(results[3]["error"]["code"], "invalid_number");
    let listed = items(&api, "/v1/blocks").await;
    assert_eq!(key_set(&listed), set(&["+16505550003#all"]));
    let history = api.history("+16505550002").await;
    assert_eq!(history[0]["action"], "unblocked");
    assert_eq!(history[0]["reason"], "opted back in");
}

#[tokio::test]
async fn b5_batch_in_one_business_scope_with_explicit_source() {
    let api = Api::new().await;
    let response = api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({
                "action": "block",
                "numbers": ["+16505550001", "+447700900123"],
                "reason": "imported list",
                "scope": LINE_A,
                "source": "import"
            })),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let statuses: Vec<&str> = response.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["blocked", "blocked"]);
    let listed = items(&api, &format!("/v1/blocks?scope={LINE_A}&source=import")).await;
    assert_eq!(
        key_set(&listed),
        set(&[
            &format!("+16505550001#{LINE_A}"),
            &format!("+447700900123#{LINE_A}")
        ])
    );
    // Unblocking in another scope finds nothing to remove.
    let response = api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({
                "action": "unblock",
                "numbers": ["+16505550001"],
                "reason": "wrong scope",
                "scope": "all"
            })),
        )
        .await;
    assert_eq!(response.body["results"][0]["status"], "not_blocked");
}

// ---------------------------------------------------------------- B6

#[tokio::test]
async fn b6_get_number_shows_every_block_its_contact_and_chats() {
    let api = Api::new().await;
    let number = Subject::parse("+16505551234").unwrap();
    let line_a = PhoneNumberId::parse(LINE_A).unwrap();
    let line_b = PhoneNumberId::parse(LINE_B).unwrap();
    for line in [&line_a, &line_b] {
        api.stack
            .store
            .record_inbound(line, &number, Utc::now(), ChatStatus::Active, true)
            .await
            .unwrap();
    }
    block_ok(
        &api,
        "+16505551234",
        json!({
            "reason": "spam everywhere",
            "scope": "all",
            "contact": {"name": "Sheena Nelson", "email": "sheena@example.com", "category": "vip", "groups": ["uk"]}
        }),
    )
    .await;
    block_ok(
        &api,
        "16505551234",
        json!({"reason": "abuse on line A", "scope": LINE_A, "source": "notification", "reason_code": "131026"}),
    )
    .await;

    let mut views = Vec::new();
    for form in ["+16505551234", "%2B16505551234", "16505551234"] {
        let view = api.call("GET", &format!("/v1/blocks/{form}"), None).await;
        assert_eq!(view.status, 200, "{form}: {:?}", view.body);
        views.push(view.body);
    }
    assert_eq!(views[0], views[1], "%2B form");
    assert_eq!(views[0], views[2], "bare digits form");
    let view = &views[0];
    assert_eq!(view["number"], "+16505551234");

    let mut blocks = view["blocks"].as_array().expect("blocks").clone();
    blocks.sort_by_key(|b| b["scope"].as_str().unwrap().to_owned());
    assert_eq!(
        block_keys(&blocks),
        [
            format!("+16505551234#{LINE_A}"),
            "+16505551234#all".to_owned()
        ]
    );
    let line_block = &blocks[0];
    assert_eq!(line_block["reason"], "abuse on line A");
    assert_eq!(line_block["source"], "notification");
    assert_eq!(line_block["reason_code"], "131026");
    let all_block = &blocks[1];
    assert_eq!(all_block["reason"], "spam everywhere");
    assert_eq!(all_block["source"], "manual");
    assert_eq!(all_block["reason_code"], Value::Null);
    assert_eq!(all_block["expires_at"], Value::Null);
    assert_eq!(all_block["actor"], "agent-1");
    assert_eq!(all_block["version"], 1);
    let wire_keys: BTreeSet<&str> = all_block
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        wire_keys,
        [
            "actor",
            "blocked_at",
            "client",
            "expires_at",
            "number",
            "platform",
            "reason",
            "reason_code",
            "review_due_at",
            "scope",
            "source",
            "subject",
            "version"
        ]
        .into_iter()
        .collect()
    );
    // B15: no business number mirrors blocks to Meta here.
    assert_eq!(all_block["platform"]["state"], "off");

    assert_eq!(
        view["contact"],
        json!({
            "subject": "+16505551234",
            "number": "+16505551234",
            "name": "Sheena Nelson",
            "email": "sheena@example.com",
            "category": "vip",
            "groups": ["uk"],
            "secondary_numbers": []
        })
    );

    let mut chats = view["chats"].as_array().expect("chats").clone();
    chats.sort_by_key(|c| c["phone_number_id"].as_str().unwrap().to_owned());
    assert_eq!(chats.len(), 2, "{chats:?}");
    for (chat, line) in chats.iter().zip([LINE_A, LINE_B]) {
        assert_eq!(chat["phone_number_id"], line);
        assert_eq!(chat["number"], "+16505551234");
        assert_eq!(chat["status"], "blocked", "the `all` block covers {line}");
        assert_eq!(chat["session_status"], "cancelled");
        assert_eq!(chat["known_contact"], true);
        assert!(chat["last_inbound_at"].is_string());
    }
}

#[tokio::test]
async fn b6_get_never_blocked_number_is_200_with_no_blocks() {
    let api = Api::new().await;
    for form in ["+447700900123", "%2B447700900123", "447700900123"] {
        let view = api.call("GET", &format!("/v1/blocks/{form}"), None).await;
        assert_eq!(view.status, 200, "{form}: {:?}", view.body);
        assert_eq!(
            view.body,
            json!({"subject": "+447700900123", "number": "+447700900123", "blocks": [],
                   "linked_blocks": [], "links": [], "contact": null, "chats": [],
                   "consents": [], "rules": []}),
            "{form}"
        );
    }
    // Unblocked again: back to no blocks, the contact stays.
    block_ok(
        &api,
        "+447700900123",
        json!({"reason": "spam", "contact": {"name": "Ravi"}}),
    )
    .await;
    unblock_ok(&api, "+447700900123", "all", "resolved").await;
    let view = api.call("GET", "/v1/blocks/447700900123", None).await;
    assert_eq!(view.status, 200);
    assert_eq!(view.body["blocks"], json!([]));
    assert_eq!(view.body["contact"]["name"], "Ravi");
}

// ---------------------------------------------------------------- B7

#[tokio::test]
async fn b7_list_is_newest_first_and_pages_walk_every_block_once() {
    let api = Api::new().await;
    let numbers: Vec<String> = (0..7).map(|i| format!("+1650555{:04}", 1200 + i)).collect();
    for (i, number) in numbers.iter().enumerate() {
        block_ok(
            &api,
            number,
            json!({"reason": format!("spam {i}"), "scope": "all"}),
        )
        .await;
    }
    let newest_first: Vec<String> = numbers.iter().rev().map(|n| format!("{n}#all")).collect();

    let all = items(&api, "/v1/blocks").await;
    assert_eq!(block_keys(&all), newest_first);
    let times: Vec<&str> = all
        .iter()
        .map(|b| b["blocked_at"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    let walked = pages(&api, "/v1/blocks?limit=3").await;
    let sizes: Vec<usize> = walked.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, 1], "null cursor on the last page");
    let flat: Vec<Value> = walked.into_iter().flatten().collect();
    assert_eq!(block_keys(&flat), newest_first, "each block exactly once");

    // A page size that divides the total: no trailing empty page.
    let sizes: Vec<usize> = pages(&api, "/v1/blocks?limit=7")
        .await
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [7]);

    // Filtered pages walk every match once too: one filter's index, and
    // one index checked against a second filter (S2).
    for filters in ["scope=all", "scope=all&source=manual"] {
        let walked = pages(&api, &format!("/v1/blocks?{filters}&limit=2")).await;
        let flat: Vec<Value> = walked.into_iter().flatten().collect();
        assert_eq!(block_keys(&flat), newest_first, "?{filters}");
    }
}

#[tokio::test]
async fn b7_list_filters_by_scope_source_and_q() {
    let api = Api::new().await;
    let sheena = "+16505550101";
    let ravi = "+447700900123";
    let bare = "+16505550303";
    block_ok(
        &api,
        sheena,
        json!({
            "reason": "spam",
            "scope": "all",
            "contact": {"name": "Sheena Nelson", "email": "sheena@example.com", "category": "vip", "groups": ["uk", "north"]}
        }),
    )
    .await;
    block_ok(
        &api,
        ravi,
        json!({
            "reason": "abuse",
            "scope": LINE_A,
            "source": "notification",
            "contact": {"name": "Ravi Patel", "email": "Ravi.Patel@Example.ORG", "category": "lead", "groups": ["uk"]}
        }),
    )
    .await;
    block_ok(
        &api,
        bare,
        json!({"reason": "import", "scope": "all", "source": "import"}),
    )
    .await;
    block_ok(&api, ravi, json!({"reason": "everywhere", "scope": "all"})).await;

    let s = |k: &str| format!("{sheena}#{k}");
    let r = |k: &str| format!("{ravi}#{k}");
    let b = |k: &str| format!("{bare}#{k}");
    let cases: Vec<(String, Vec<String>)> = vec![
        ("scope=all".into(), vec![r("all"), b("all"), s("all")]),
        (format!("scope={LINE_A}"), vec![r(LINE_A)]),
        (format!("scope={LINE_B}"), vec![]),
        ("source=notification".into(), vec![r(LINE_A)]),
        ("source=import".into(), vec![b("all")]),
        ("source=manual".into(), vec![r("all"), s("all")]),
        ("source=bulk".into(), vec![]),
        // q: contact name, case-insensitive
        ("q=SHEENA".into(), vec![s("all")]),
        ("q=nelson".into(), vec![s("all")]),
        ("q=ravi%20patel".into(), vec![r("all"), r(LINE_A)]),
        // q: email, stored in mixed case
        ("q=example.org".into(), vec![r("all"), r(LINE_A)]),
        ("q=SHEENA%40EXAMPLE.COM".into(), vec![s("all")]),
        // q: a number's last digits, or the whole number in any form
        ("q=5550303".into(), vec![b("all")]),
        ("q=%2B1%20650%20555%200101".into(), vec![s("all")]),
        ("q=900123".into(), vec![r("all"), r(LINE_A)]),
        // ... but not its first digits alone (B65 asks for the end)
        ("q=447700".into(), vec![]),
        ("q=nobody".into(), vec![]),
        // filters combine
        ("scope=all&source=manual&q=RAVI".into(), vec![r("all")]),
        (format!("scope={LINE_A}&q=sheena"), vec![]),
    ];
    for (query, expected) in cases {
        let listed = items(&api, &format!("/v1/blocks?{query}")).await;
        assert_eq!(block_keys(&listed), expected, "?{query}");
    }

    let bad = api.call("GET", "/v1/blocks?source=robot", None).await;
    assert_eq!(bad.status, 400);
    assert_eq!(error_code(&bad), "invalid_parameter");
}

#[tokio::test]
async fn b7_list_filters_by_category_and_group_following_contact_updates() {
    let api = Api::new().await;
    let sheena = "+16505550101";
    let ravi = "+447700900123";
    let bare = "+16505550303";
    // A contact synced before the block, one given with the block, none.
    put_contact(
        &api,
        ravi,
        json!({"name": "Ravi Patel", "category": "lead", "groups": ["uk"]}),
    )
    .await;
    block_ok(&api, ravi, json!({"reason": "abuse", "scope": LINE_A})).await;
    block_ok(
        &api,
        sheena,
        json!({
            "reason": "spam",
            "contact": {"name": "Sheena Nelson", "category": "vip", "groups": ["uk", "north"]}
        }),
    )
    .await;
    block_ok(&api, bare, json!({"reason": "spam"})).await;

    let s = format!("{sheena}#all");
    let r = format!("{ravi}#{LINE_A}");
    let b = format!("{bare}#all");
    assert_listed(&api, "category=vip", &[&s]).await;
    assert_listed(&api, "category=lead", &[&r]).await;
    assert_listed(&api, "category=VIP", &[]).await;
    assert_listed(&api, "group=uk", &[&s, &r]).await;
    assert_listed(&api, "group=north", &[&s]).await;
    assert_listed(&api, "group=u", &[]).await;
    assert_listed(&api, "group=uk&category=lead", &[&r]).await;
    assert_listed(&api, "q=quinn", &[]).await;

    // Contact updates after blocking are reflected at once.
    put_contact(
        &api,
        bare,
        json!({"name": "Zed Quinn", "email": "zed@quinn.example", "category": "vip", "groups": ["north"]}),
    )
    .await;
    put_contact(
        &api,
        sheena,
        json!({"name": "Sheena Ortiz", "category": "churned", "groups": []}),
    )
    .await;
    assert_listed(&api, "q=quinn", &[&b]).await;
    assert_listed(&api, "q=ZED%40", &[&b]).await;
    assert_listed(&api, "q=nelson", &[]).await;
    assert_listed(&api, "q=ortiz", &[&s]).await;
    assert_listed(&api, "category=vip", &[&b]).await;
    assert_listed(&api, "category=churned", &[&s]).await;
    assert_listed(&api, "group=north", &[&b]).await;
    assert_listed(&api, "group=uk", &[&r]).await;

    // Unblocking and blocking again keeps the contact's fields searchable.
    unblock_ok(&api, ravi, LINE_A, "resolved").await;
    assert_listed(&api, "category=lead", &[]).await;
    block_ok(&api, ravi, json!({"reason": "again", "scope": "all"})).await;
    let again = format!("{ravi}#all");
    assert_listed(&api, "category=lead", &[&again]).await;
    assert_listed(&api, "q=RAVI", &[&again]).await;
}

fn jan_05() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()
}

fn jan_10() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 10, 9, 30, 0).unwrap()
}

fn jan_15() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 23, 59, 0).unwrap()
}

#[tokio::test]
async fn b7_list_filters_by_blocking_date_and_time() {
    let mut api = Api::new().await;
    api.app.now = jan_05;
    block_ok(&api, "+16505550005", json!({"reason": "first"})).await;
    api.app.now = jan_10;
    block_ok(&api, "+16505550010", json!({"reason": "second"})).await;
    api.app.now = jan_15;
    block_ok(&api, "+16505550015", json!({"reason": "third"})).await;

    let cases = [
        ("", vec!["+16505550015", "+16505550010", "+16505550005"]),
        ("since=2026-01-06&until=2026-01-14", vec!["+16505550010"]),
        ("since=2026-01-10", vec!["+16505550015", "+16505550010"]),
        // `until` as a date covers that whole day.
        ("until=2026-01-10", vec!["+16505550010", "+16505550005"]),
        (
            "until=2026-01-15",
            vec!["+16505550015", "+16505550010", "+16505550005"],
        ),
        ("since=2026-01-05&until=2026-01-05", vec!["+16505550005"]),
        ("since=2026-01-16", vec![]),
        // RFC 3339, in UTC and with an offset.
        (
            "since=2026-01-10T09:29:00Z&until=2026-01-10T09:31:00Z",
            vec!["+16505550010"],
        ),
        (
            "since=2026-01-10T10:29:00%2B01:00&until=2026-01-10T10:31:00%2B01:00",
            vec!["+16505550010"],
        ),
        ("since=2026-01-10T09:30:00.001Z", vec!["+16505550015"]),
        ("until=2026-01-10T09:29:59Z", vec!["+16505550005"]),
    ];
    for (query, expected) in cases {
        let listed = items(&api, &format!("/v1/blocks?{query}")).await;
        let numbers: Vec<&str> = listed
            .iter()
            .map(|b| b["number"].as_str().unwrap())
            .collect();
        assert_eq!(numbers, expected, "?{query}");
    }
    let listed = items(&api, "/v1/blocks?since=2026-01-10&until=2026-01-10").await;
    assert_eq!(listed[0]["blocked_at"], "2026-01-10T09:30:00.000Z");

    for query in [
        "since=2026-01-11&until=2026-01-10",
        "since=yesterday",
        "until=2026-13-01",
    ] {
        let bad = api.call("GET", &format!("/v1/blocks?{query}"), None).await;
        assert_eq!(bad.status, 400, "?{query}: {:?}", bad.body);
        assert_eq!(error_code(&bad), "invalid_parameter", "?{query}");
    }
}

// ---------------------------------------------------------------- B8

/// Asserts the fields every audit event carries.
pub fn assert_event_shape(event: &Value) {
    for field in ["event_id", "action", "actor", "at"] {
        assert!(
            event[field].is_string() && !event[field].as_str().unwrap().is_empty(),
            "{field} in {event:?}"
        );
    }
    assert!(
        DateTime::parse_from_rfc3339(event["at"].as_str().unwrap()).is_ok(),
        "{event:?}"
    );
    assert!(event["details"].is_object(), "{event:?}");
    if event["action"] == "blocked" || event["action"] == "unblocked" {
        assert!(event["reason"].is_string(), "reason in {event:?}");
        assert!(event["scope"].is_string(), "scope in {event:?}");
        assert!(event["number"].is_string(), "number in {event:?}");
    }
}

#[tokio::test]
async fn b8_history_is_newest_first_and_paginated() {
    let api = Api::new().await;
    let number = "+16505551234";
    block_ok(&api, number, json!({"reason": "r1", "scope": "all"})).await;
    unblock_ok(&api, number, "all", "r2").await;
    block_ok(&api, number, json!({"reason": "r3", "scope": LINE_A})).await;
    unblock_ok(&api, number, LINE_A, "r4").await;
    block_ok(&api, number, json!({"reason": "r5", "scope": "all"})).await;
    // Another number's events never show in this history.
    block_ok(&api, "+16505550000", json!({"reason": "other"})).await;

    let walked = pages(&api, "/v1/numbers/%2B16505551234/history?limit=2").await;
    let sizes: Vec<usize> = walked.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1]);
    let events: Vec<Value> = walked.into_iter().flatten().collect();
    let summary: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
                e["scope"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("blocked", "r5", "all"),
            ("unblocked", "r4", LINE_A),
            ("blocked", "r3", LINE_A),
            ("unblocked", "r2", "all"),
            ("blocked", "r1", "all"),
        ]
    );
    let ids: BTreeSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "no duplicates");
    for event in &events {
        assert_event_shape(event);
        assert_eq!(event["number"], number);
        assert_eq!(event["actor"], "agent-1");
    }
    let times: Vec<&str> = events.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // Every accepted form of the number reads the same history.
    assert_eq!(api.history("16505551234").await, events);
    assert_eq!(api.history("+16505551234").await, events);

    // A cursor of another number's history is refused.
    let first = api
        .call("GET", "/v1/numbers/+16505551234/history?limit=1", None)
        .await;
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let other = api
        .call(
            "GET",
            &format!("/v1/numbers/+16505550000/history?cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(other.status, 400);
    assert_eq!(error_code(&other), "invalid_cursor");
}

fn feb_01() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 1, 10, 0, 0).unwrap()
}

fn feb_01_later() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 1, 10, 5, 0).unwrap()
}

fn feb_02() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 2, 11, 0, 0).unwrap()
}

fn feb_03() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 3, 12, 0, 0).unwrap()
}

#[tokio::test]
async fn b8_audit_feed_filters_by_time_and_action_and_paginates() {
    let mut api = Api::new().await;
    api.app.now = feb_01;
    block_ok(&api, "+16505550001", json!({"reason": "spam 1"})).await;
    api.app.now = feb_01_later;
    block_ok(
        &api,
        "+16505550002",
        json!({"reason": "spam 2", "scope": LINE_A}),
    )
    .await;
    api.app.now = feb_02;
    unblock_ok(&api, "+16505550001", "all", "resolved 1").await;
    api.app.now = feb_03;
    let settings = api
        .send(
            ApiRequest::new("PUT", "/v1/settings/default")
                .bearer(&token("ops", ADMIN))
                .json(json!({"allow_unknown_numbers": false})),
        )
        .await;
    assert_eq!(settings.status, 200, "{:?}", settings.body);

    let feed = "/v1/audit?since=2026-02-01&until=2026-02-03";
    let all = items(&api, feed).await;
    let summary: Vec<(&str, &str)> = all
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["reason"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("settings_changed", "-"),
            ("unblocked", "resolved 1"),
            ("blocked", "spam 2"),
            ("blocked", "spam 1"),
        ],
        "newest first"
    );
    for event in &all {
        assert_event_shape(event);
    }
    assert_eq!(all[0]["actor"], "ops");
    assert_eq!(all[0]["scope"], "default");
    assert_eq!(all[0]["details"]["after"]["allow_unknown_numbers"], false);
    assert_eq!(all[0]["details"]["before"]["allow_unknown_numbers"], true);
    assert_eq!(all[1]["scope"], "all");
    assert_eq!(all[1]["number"], "+16505550001");
    assert_eq!(all[2]["scope"], LINE_A);
    assert_eq!(all[2]["actor"], "agent-1");

    // Action filter.
    let unblocked = items(&api, &format!("{feed}&action=unblocked")).await;
    assert_eq!(unblocked.len(), 1, "{unblocked:?}");
    assert_eq!(unblocked[0]["action"], "unblocked");
    assert_eq!(unblocked[0]["reason"], "resolved 1");
    let blocked = items(&api, &format!("{feed}&action=blocked")).await;
    assert_eq!(blocked.len(), 2);
    assert!(blocked.iter().all(|e| e["action"] == "blocked"));
    let changed = items(&api, &format!("{feed}&action=settings_changed")).await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["event_id"], all[0]["event_id"]);

    // Time filters: dates and RFC 3339.
    let day2 = items(&api, "/v1/audit?since=2026-02-02&until=2026-02-02").await;
    assert_eq!(day2.len(), 1);
    assert_eq!(day2[0]["action"], "unblocked");
    let before_day3 = items(&api, "/v1/audit?since=2026-02-01&until=2026-02-02").await;
    assert_eq!(before_day3.len(), 3);
    let hour = items(
        &api,
        "/v1/audit?since=2026-02-01T09:00:00Z&until=2026-02-01T11:00:00Z",
    )
    .await;
    assert_eq!(hour.len(), 2);
    assert!(hour.iter().all(|e| e["action"] == "blocked"));
    let nothing = items(
        &api,
        "/v1/audit?since=2026-02-01T10:05:00.001Z&until=2026-02-02T10:59:59Z",
    )
    .await;
    assert_eq!(nothing, Vec::<Value>::new());

    // Pagination walks every event exactly once, in the same order.
    for limit in [1, 2, 3] {
        let walked = pages(&api, &format!("{feed}&limit={limit}")).await;
        let flat: Vec<Value> = walked.iter().flatten().cloned().collect();
        assert_eq!(flat, all, "limit={limit}: {walked:?}");
        assert!(walked.iter().all(|p| p.len() <= limit));
    }
    let walked = pages(&api, &format!("{feed}&action=blocked&limit=1")).await;
    let flat: Vec<Value> = walked.into_iter().flatten().collect();
    assert_eq!(flat, blocked);

    let bad = api.call("GET", "/v1/audit?action=deleted", None).await;
    assert_eq!(bad.status, 400);
    assert_eq!(error_code(&bad), "invalid_parameter");
    let bad = api
        .call("GET", "/v1/audit?since=2026-02-03&until=2026-02-01", None)
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn b8_audit_feed_defaults_to_recent_events() {
    let api = Api::new().await;
    block_ok(&api, "+16505550001", json!({"reason": "spam"})).await;
    unblock_ok(&api, "+16505550001", "all", "ok").await;
    let recent = items(&api, "/v1/audit").await;
    let actions: Vec<&str> = recent
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["unblocked", "blocked"]);
    let unblocked = items(&api, "/v1/audit?action=unblocked").await;
    assert_eq!(unblocked.len(), 1);
    assert_eq!(unblocked[0]["reason"], "ok");
    assert_eq!(unblocked[0]["scope"], "all");
}

/// S2: a search or a filter reads about as many items as it returns, not
/// every block. 120 blocks from a bulk import share nothing with the three
/// the queries look for; each query's `Query` answers report how many items
/// DynamoDB read (`ScannedCount`), through a relay.
#[tokio::test]
async fn s2_search_and_filters_read_in_proportion_to_the_answer() {
    let api = Api::new().await;
    let bulk: Vec<String> = (0..120).map(|i| format!("+1650555{i:04}")).collect();
    let batch = api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(
                json!({"action": "block", "numbers": bulk, "reason": "import", "source": "import"}),
            ),
        )
        .await;
    assert_eq!(batch.status, 200, "{:?}", batch.body);
    let found = ["+447700900101", "+447700900202", "+447700900303"];
    for (i, number) in found.iter().enumerate() {
        let scope = if i == 0 { LINE_A } else { "all" };
        block_ok(
            &api,
            number,
            json!({
                "reason": "abuse",
                "scope": scope,
                "source": if i == 2 { "notification" } else { "manual" },
                "contact": {"name": format!("Wilhelmina Quast {i}"), "email": format!("w{i}@quast.example"), "category": "vip", "groups": ["north"]}
            }),
        )
        .await;
    }

    let relay = DynamoRelay::start(&endpoint());
    let watched = api.via(&relay);
    let all = |k: &str| format!("{k}#all");
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "q=wilhelmina".into(),
            vec![
                all(found[2]),
                all(found[1]),
                format!("{}#{LINE_A}", found[0]),
            ],
        ),
        ("q=QUAST%202".into(), vec![all(found[2])]),
        (
            "q=quast.example".into(),
            vec![
                all(found[2]),
                all(found[1]),
                format!("{}#{LINE_A}", found[0]),
            ],
        ),
        ("q=900202".into(), vec![all(found[1])]),
        ("q=%2B44%207700%20900303".into(), vec![all(found[2])]),
        ("q=5550103".into(), vec![all("+16505550103")]),
        (
            "category=vip&scope=all".into(),
            vec![all(found[2]), all(found[1])],
        ),
        (
            "group=north&source=notification".into(),
            vec![all(found[2])],
        ),
        (
            format!("scope={LINE_A}"),
            vec![format!("{}#{LINE_A}", found[0])],
        ),
        ("source=notification".into(), vec![all(found[2])]),
        ("q=nobody".into(), vec![]),
    ];
    for (query, expected) in cases {
        relay.reset();
        let listed = items(&watched, &format!("/v1/blocks?{query}")).await;
        assert_eq!(block_keys(&listed), expected, "?{query}");
        let read = relay.items_read();
        let queries = relay
            .calls()
            .iter()
            .filter(|c| c.operation == "Query")
            .count();
        assert!(queries > 0, "?{query}: answered without reading");
        assert!(
            read >= expected.len() as u64,
            "?{query}: the relay saw {read} items read for {} listed",
            expected.len()
        );
        assert!(
            read <= 2 * expected.len() as u64 + 4,
            "?{query}: {read} items read for {} listed",
            expected.len()
        );
    }

    // The unfiltered list reads a page, not the 123 blocks either.
    relay.reset();
    let page = watched.call("GET", "/v1/blocks?limit=20", None).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["items"].as_array().unwrap().len(), 20);
    let read = relay.items_read();
    assert!(
        (20..=2 * 20 + 16 * 3).contains(&read),
        "{read} items read for a page of 20"
    );
}

/// S2: a `q` that no index token can answer is refused, not walked.
#[tokio::test]
async fn s2_a_search_too_short_to_index_is_refused() {
    let api = Api::new().await;
    for q in ["a", "123", "%40", "%2B1"] {
        let response = api.call("GET", &format!("/v1/blocks?q={q}"), None).await;
        assert_eq!(response.status, 400, "q={q}: {:?}", response.body);
        assert_eq!(error_code(&response), "invalid_parameter", "q={q}");
        assert_eq!(response.body["error"]["field"], "q", "q={q}");
    }
}

/// S2: a block that replaces an expired one in the same scope takes its
/// place in the index too: the old block's index items go, the new one's
/// are found.
#[tokio::test]
async fn s2_a_block_replacing_an_expired_one_replaces_its_index_items() {
    let api = Api::new().await;
    let number = "+447700900555";
    let expires = (Utc::now() + chrono::Duration::milliseconds(1200))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let first = block_ok(
        &api,
        number,
        json!({"reason": "cool off", "expires_at": expires, "contact": {"name": "Tem Porary"}}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let second = block_ok(&api, number, json!({"reason": "again"})).await;
    assert_ne!(first["blocked_at"], second["blocked_at"]);

    let index_items: Vec<(String, String)> = api.stack.raw_items().await["Blocklist"]
        .iter()
        .filter_map(|item| {
            let pk = item["pk"]["S"].as_str()?;
            let sk = item["sk"]["S"].as_str()?;
            pk.starts_with("I#").then(|| (pk.to_owned(), sk.to_owned()))
        })
        .collect();
    let old = first["blocked_at"].as_str().unwrap();
    let new = second["blocked_at"].as_str().unwrap();
    assert!(!index_items.is_empty());
    assert!(
        index_items.iter().all(|(_, sk)| sk.starts_with(new)),
        "only the new block is indexed (old {old}): {index_items:?}"
    );
    assert_listed(&api, "q=temporary", &[]).await;
    assert_listed(&api, "q=TEM", &[&format!("{number}#all")]).await;
    assert_listed(&api, "q=900555", &[&format!("{number}#all")]).await;
}
