//! B9, B10, B11, B12: statistics, contacts, chats and settings.

use std::collections::BTreeSet;

use blocklist::Subject;
use blocklist::model::{ChatStatus, PhoneNumberId};
use chrono::{DateTime, TimeZone, Utc};
use integration_tests::{ApiRequest, ApiResponse, TestClock, token};
use serde_json::{Value, json};

use super::listing::{ADMIN, assert_event_shape, items, pages};
use super::{Api, error_code};

const LINE_A: &str = "106540352242922";
const LINE_B: &str = "106540352242923";

async fn block_ok(api: &Api, number: &str, scope: &str, reason: &str) {
    let response = api
        .block(number, json!({"reason": reason, "scope": scope}))
        .await;
    assert_eq!(response.status, 201, "{number}: {:?}", response.body);
}

async fn unblock_ok(api: &Api, number: &str, scope: &str) {
    let response = api
        .call(
            "DELETE",
            &format!("/v1/blocks/{number}?scope={scope}"),
            Some(json!({"reason": "resolved"})),
        )
        .await;
    assert_eq!(response.status, 200, "{number}: {:?}", response.body);
}

// ---------------------------------------------------------------- B9

fn day(date: &str, blocked: u64, unblocked: u64) -> Value {
    json!({
        "date": date,
        "blocked": blocked,
        "unblocked": unblocked,
        "auto_blocked": 0,
        "expired": 0,
        "inbound_suppressed": 0,
        "outbound_refused": 0,
        "opted_out": 0,
        "opted_in": 0,
        "reviewed": 0
    })
}

fn mar_10() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 1).unwrap()
}

fn mar_12() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 12, 23, 59, 59).unwrap()
}

#[tokio::test]
async fn b9_stats_count_per_day_and_currently_blocked_numbers() {
    let mut api = Api::new().await;
    api.app.now = mar_10;
    block_ok(&api, "+16505550001", "all", "spam").await;
    block_ok(&api, "+16505550001", LINE_A, "spam on A").await;
    block_ok(&api, "+16505550002", "all", "spam").await;
    api.app.now = mar_12;
    unblock_ok(&api, "+16505550002", "all").await;
    unblock_ok(&api, "+16505550001", LINE_A).await;

    let stats = api
        .call("GET", "/v1/stats?from=2026-03-09&to=2026-03-13", None)
        .await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(
        stats.body,
        json!({
            "days": [
                day("2026-03-09", 0, 0),
                day("2026-03-10", 3, 0),
                day("2026-03-11", 0, 0),
                day("2026-03-12", 0, 2),
                day("2026-03-13", 0, 0),
            ],
            // +16505550001 is still blocked in `all`; +16505550002 is not.
            "currently_blocked": 1
        })
    );
    let one_day = api
        .call("GET", "/v1/stats?from=2026-03-10&to=2026-03-10", None)
        .await;
    assert_eq!(one_day.status, 200);
    assert_eq!(
        one_day.body,
        json!({"days": [day("2026-03-10", 3, 0)], "currently_blocked": 1})
    );
}

#[tokio::test]
async fn b9_stats_for_today_count_numbers_not_blocks() {
    // Noon of today on the API's clock: every change of the test falls on
    // the day the stats are asked for, even at midnight.
    type Clock = TestClock<0>;
    let noon = Utc::now()
        .date_naive()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc();
    Clock::set(noon);
    let mut api = Api::new().await;
    api.app.now = Clock::now;
    let today = noon.format("%Y-%m-%d").to_string();
    let uri = format!("/v1/stats?from={today}&to={today}");
    let stats = api.call("GET", &uri, None).await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(
        stats.body,
        json!({"days": [day(&today, 0, 0)], "currently_blocked": 0})
    );

    block_ok(&api, "+16505550001", "all", "spam").await;
    block_ok(&api, "+16505550001", LINE_A, "spam on A").await;
    let stats = api.call("GET", &uri, None).await;
    assert_eq!(
        stats.body,
        json!({"days": [day(&today, 2, 0)], "currently_blocked": 1}),
        "one number blocked in two scopes counts once"
    );
    unblock_ok(&api, "+16505550001", "all").await;
    let stats = api.call("GET", &uri, None).await;
    assert_eq!(
        stats.body,
        json!({"days": [day(&today, 2, 1)], "currently_blocked": 1}),
        "still blocked on line A"
    );
    unblock_ok(&api, "+16505550001", LINE_A).await;
    let stats = api.call("GET", &uri, None).await;
    assert_eq!(
        stats.body,
        json!({"days": [day(&today, 2, 2)], "currently_blocked": 0})
    );
}

#[tokio::test]
async fn b9_stats_refuse_bad_ranges_and_dates() {
    let api = Api::new().await;
    for query in [
        "from=2026-03-12&to=2026-03-10",           // from after to
        "from=2025-01-01&to=2026-01-02",           // 367 days
        "from=2020-01-01&to=2026-01-01",           // years
        "from=2026-13-01&to=2026-12-31",           // no such month
        "from=2026-02-30&to=2026-03-01",           // no such day
        "from=yesterday&to=2026-03-01",            // not a date
        "from=2026-03-01T00:00:00Z&to=2026-03-02", // a time, not a date
    ] {
        let response = api.call("GET", &format!("/v1/stats?{query}"), None).await;
        assert_eq!(response.status, 400, "?{query}: {:?}", response.body);
        assert_eq!(error_code(&response), "invalid_parameter", "?{query}");
    }
    // 366 days is the longest range.
    let longest = api
        .call("GET", "/v1/stats?from=2025-01-01&to=2026-01-01", None)
        .await;
    assert_eq!(longest.status, 200, "{:?}", longest.body);
    let days = longest.body["days"].as_array().unwrap();
    assert_eq!(days.len(), 366);
    assert_eq!(days[0], day("2025-01-01", 0, 0));
    assert_eq!(days[365], day("2026-01-01", 0, 0));
}

// ---------------------------------------------------------------- B10

#[tokio::test]
async fn b10_contact_put_creates_then_updates_and_get_reads_it() {
    let api = Api::new().await;
    let missing = api.call("GET", "/v1/contacts/+16505551234", None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(error_code(&missing), "contact_not_found");

    let created = api
        .call(
            "PUT",
            "/v1/contacts/+16505551234",
            Some(json!({
                "number": "+1 650-555-1234",
                "name": "Sheena Nelson",
                "email": "sheena@example.com",
                "category": "vip",
                "groups": ["uk", "north"],
                "secondary_numbers": ["0044 7700 900123", "55 11 8765 4321"]
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let expected = json!({
        "subject": "+16505551234",
        "number": "+16505551234",
        "name": "Sheena Nelson",
        "email": "sheena@example.com",
        "category": "vip",
        "groups": ["uk", "north"],
        // Canonical, with Brazil's ninth digit restored.
        "secondary_numbers": ["+447700900123", "+5511987654321"]
    });
    assert_eq!(created.body, expected);
    for form in ["+16505551234", "%2B16505551234", "16505551234"] {
        let read = api.call("GET", &format!("/v1/contacts/{form}"), None).await;
        assert_eq!(read.status, 200, "{form}");
        assert_eq!(read.body, expected, "{form}");
    }

    let updated = api
        .call(
            "PUT",
            "/v1/contacts/16505551234",
            Some(json!({"name": "Sheena Ortiz", "category": "lead", "groups": ["south"]})),
        )
        .await;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    let expected = json!({
        "subject": "+16505551234",
        "number": "+16505551234",
        "name": "Sheena Ortiz",
        "email": null,
        "category": "lead",
        "groups": ["south"],
        "secondary_numbers": []
    });
    assert_eq!(updated.body, expected);
    let read = api.call("GET", "/v1/contacts/+16505551234", None).await;
    assert_eq!(read.body, expected);

    // Each change wrote a contact_updated event, with before and after.
    let history = api.history("+16505551234").await;
    assert_eq!(history.len(), 2, "{history:?}");
    for event in &history {
        assert_event_shape(event);
        assert_eq!(event["action"], "contact_updated");
        assert_eq!(event["actor"], "agent-1");
        assert_eq!(event["number"], "+16505551234");
    }
    assert_eq!(history[0]["details"]["after"]["name"], "Sheena Ortiz");
    assert_eq!(history[0]["details"]["before"]["name"], "Sheena Nelson");
    assert_eq!(history[1]["details"]["after"]["name"], "Sheena Nelson");
    let feed = items(&api, "/v1/audit?action=contact_updated").await;
    assert_eq!(feed.len(), 2);

    // A body naming another number is refused, and changes nothing.
    let other = api
        .call(
            "PUT",
            "/v1/contacts/+16505551234",
            Some(json!({"number": "+16505550000", "name": "Someone else"})),
        )
        .await;
    assert_eq!(other.status, 422, "{:?}", other.body);
    assert_eq!(error_code(&other), "invalid_contact");
    let bad_secondary = api
        .call(
            "PUT",
            "/v1/contacts/+16505551234",
            Some(json!({"name": "X", "secondary_numbers": ["not a number"]})),
        )
        .await;
    assert_eq!(bad_secondary.status, 422, "{:?}", bad_secondary.body);
    assert_eq!(error_code(&bad_secondary), "invalid_number");
    let read = api.call("GET", "/v1/contacts/+16505551234", None).await;
    assert_eq!(read.body, expected);
    assert_eq!(api.history("+16505551234").await.len(), 2);
    let never = api.call("GET", "/v1/contacts/+16505550000", None).await;
    assert_eq!(never.status, 404);
    assert_eq!(error_code(&never), "contact_not_found");
}

#[tokio::test]
async fn b10_blocking_and_unblocking_never_change_the_contact() {
    let api = Api::new().await;
    let contact = json!({
        "number": "+447700900123",
        "name": "Ravi Patel",
        "email": "ravi@example.com",
        "category": "lead",
        "groups": ["uk", "vip"],
        "secondary_numbers": ["+16505551234"]
    });
    let created = api
        .call("PUT", "/v1/contacts/+447700900123", Some(contact.clone()))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let mut stored = contact.clone();
    stored["subject"] = stored["number"].clone();
    assert_eq!(created.body, stored);

    let contact = stored;
    let unchanged = |step: &'static str| {
        let api = &api;
        let contact = contact.clone();
        async move {
            let read = api.call("GET", "/v1/contacts/+447700900123", None).await;
            assert_eq!(read.status, 200, "{step}");
            assert_eq!(read.body, contact, "after {step}");
        }
    };
    block_ok(&api, "+447700900123", "all", "spam").await;
    unchanged("block in all").await;
    block_ok(&api, "447700900123", LINE_A, "spam on A").await;
    unchanged("block in a business scope").await;
    unblock_ok(&api, "+447700900123", "all").await;
    unchanged("unblock in all").await;
    unblock_ok(&api, "+447700900123", LINE_A).await;
    unchanged("unblock in a business scope").await;
    for action in ["block", "unblock"] {
        let batch = api
            .call(
                "POST",
                "/v1/blocks:batch",
                Some(json!({"action": action, "numbers": ["+447700900123"], "reason": "bulk"})),
            )
            .await;
        assert_eq!(batch.status, 200, "{:?}", batch.body);
        assert_eq!(batch.body["results"][0]["status"], format!("{action}ed"));
        unchanged("batch").await;
    }
    let view = api.call("GET", "/v1/blocks/+447700900123", None).await;
    assert_eq!(view.body["contact"], contact);
    let actions: Vec<String> = api
        .history("+447700900123")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "contact_updated").count(),
        1,
        "only the PUT changed the contact: {actions:?}"
    );
}

// ---------------------------------------------------------------- B11

/// `phone_number_id/number/status` of each chat, as a set.
fn chat_set(chats: &[Value]) -> BTreeSet<String> {
    chats
        .iter()
        .map(|c| {
            format!(
                "{}/{}/{}",
                c["phone_number_id"].as_str().unwrap(),
                c["number"].as_str().unwrap(),
                c["status"].as_str().unwrap()
            )
        })
        .collect()
}

fn chats(keys: &[&String]) -> BTreeSet<String> {
    keys.iter().map(|k| (*k).clone()).collect()
}

/// Chats on two business numbers; +16505550001 blocked on line A only,
/// +16505550003 blocked everywhere.
async fn seeded_chats() -> Api {
    let api = Api::new().await;
    let seed = [
        (LINE_A, "+16505550001"),
        (LINE_B, "+16505550001"),
        (LINE_A, "+16505550002"),
        (LINE_B, "+16505550003"),
    ];
    for (line, number) in seed {
        api.stack.chat_with(line, number).await;
    }
    block_ok(&api, "+16505550001", LINE_A, "spam on A").await;
    block_ok(&api, "+16505550003", "all", "spam").await;
    api
}

#[tokio::test]
async fn b11_chats_filter_by_status_and_business_number() {
    let api = seeded_chats().await;
    let a1 = format!("{LINE_A}/+16505550001/blocked");
    let b1 = format!("{LINE_B}/+16505550001/active");
    let a2 = format!("{LINE_A}/+16505550002/active");
    let b3 = format!("{LINE_B}/+16505550003/blocked");
    let cases: Vec<(String, BTreeSet<String>)> = vec![
        ("status=blocked".into(), chats(&[&a1, &b3])),
        (
            format!("status=blocked&phone_number_id={LINE_A}"),
            chats(&[&a1]),
        ),
        (
            format!("status=blocked&phone_number_id={LINE_B}"),
            chats(&[&b3]),
        ),
        ("status=active".into(), chats(&[&b1, &a2])),
        (
            format!("status=active&phone_number_id={LINE_A}"),
            chats(&[&a2]),
        ),
        (format!("phone_number_id={LINE_A}"), chats(&[&a1, &a2])),
        (format!("phone_number_id={LINE_B}"), chats(&[&b1, &b3])),
        ("phone_number_id=999".into(), chats(&[])),
        (String::new(), chats(&[&a1, &b1, &a2, &b3])),
    ];
    for (query, expected) in cases {
        let listed = items(&api, &format!("/v1/chats?{query}")).await;
        assert_eq!(listed.len(), expected.len(), "?{query}: {listed:?}");
        assert_eq!(chat_set(&listed), expected, "?{query}");
    }

    // Pagination: every chat exactly once.
    for (query, expected) in [
        ("status=blocked&limit=1".to_owned(), 2),
        (
            format!("status=blocked&phone_number_id={LINE_A}&limit=1"),
            1,
        ),
        (format!("phone_number_id={LINE_B}&limit=1"), 2),
        ("limit=1".to_owned(), 4),
        ("limit=3".to_owned(), 4),
    ] {
        let walked = pages(&api, &format!("/v1/chats?{query}")).await;
        assert!(walked.iter().all(|p| p.len() <= 1 || query == "limit=3"));
        let flat: Vec<Value> = walked.iter().flatten().cloned().collect();
        assert_eq!(flat.len(), expected, "?{query}: {walked:?}");
        assert_eq!(chat_set(&flat).len(), expected, "no duplicates: ?{query}");
    }
    let sizes: Vec<usize> = pages(&api, "/v1/chats?status=blocked&limit=1")
        .await
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [1, 1]);
    let sizes: Vec<usize> = pages(&api, "/v1/chats?limit=3")
        .await
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [3, 1]);

    let bad = api.call("GET", "/v1/chats?status=closed", None).await;
    assert_eq!(bad.status, 400);
    assert_eq!(error_code(&bad), "invalid_parameter");
}

/// B7, B8, B11: a cursor resumes only the listing it came from, filters
/// included. Resumed under other filters, DynamoDB refuses its start key
/// (a 503 before): now a 400 `invalid_cursor`, while the same filters, in
/// any order and with another page size, still resume.
#[tokio::test]
async fn b7_b8_b11_cursor_reused_with_other_filters_is_400_invalid_cursor() {
    let api = seeded_chats().await;
    let first_of = |page: &ApiResponse| {
        assert_eq!(page.status, 200, "{:?}", page.body);
        page.body["next_cursor"]
            .as_str()
            .expect("a next_cursor with limit=1")
            .to_owned()
    };
    let chats = first_of(
        &api.call("GET", "/v1/chats?status=blocked&limit=1", None)
            .await,
    );
    let blocks = first_of(
        &api.call("GET", "/v1/blocks?since=2020-01-01T00:00:00Z&limit=1", None)
            .await,
    );
    let until = (Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let since =
        (Utc::now() - chrono::Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let audit_query = format!("since={since}&until={until}");
    let audit = first_of(
        &api.call("GET", &format!("/v1/audit?{audit_query}&limit=1"), None)
            .await,
    );

    let refused = [
        format!("/v1/chats?status=active&cursor={chats}"),
        format!("/v1/chats?cursor={chats}"),
        format!("/v1/chats?status=blocked&phone_number_id={LINE_A}&cursor={chats}"),
        format!("/v1/blocks?since=2030-01-01T00:00:00Z&cursor={blocks}"),
        format!("/v1/blocks?cursor={blocks}"),
        format!("/v1/blocks?since=2020-01-01T00:00:00Z&scope=all&cursor={blocks}"),
        format!("/v1/audit?since={since}&cursor={audit}"),
        format!("/v1/audit?since={since}&until=2030-01-01T00:00:00Z&cursor={audit}"),
        format!("/v1/audit?{audit_query}&action=blocked&cursor={audit}"),
    ];
    for uri in &refused {
        let response = api.call("GET", uri, None).await;
        assert_eq!(
            (response.status, error_code(&response).as_str()),
            (400, "invalid_cursor"),
            "{uri}: {:?}",
            response.body
        );
    }
    for uri in [
        format!("/v1/chats?limit=5&status=blocked&cursor={chats}"),
        format!("/v1/blocks?limit=2&cursor={blocks}&since=2020-01-01T00:00:00Z"),
        format!("/v1/audit?until={until}&since={since}&limit=3&cursor={audit}"),
    ] {
        let response = api.call("GET", &uri, None).await;
        assert_eq!(response.status, 200, "{uri}: {:?}", response.body);
        assert!(
            !response.body["items"].as_array().expect("items").is_empty(),
            "{uri} resumes the listing"
        );
    }
}

#[tokio::test]
async fn b11_get_one_chat_and_blocked_chats_stay_readable() {
    let api = seeded_chats().await;
    for form in ["+16505550001", "%2B16505550001", "16505550001"] {
        let chat = api
            .call("GET", &format!("/v1/chats/{LINE_A}/{form}"), None)
            .await;
        assert_eq!(chat.status, 200, "{form}: {:?}", chat.body);
        assert_eq!(chat.body["phone_number_id"], LINE_A);
        assert_eq!(chat.body["number"], "+16505550001");
        assert_eq!(chat.body["status"], "blocked");
        assert_eq!(chat.body["session_status"], "cancelled", "it was open");
        assert_eq!(chat.body["known_contact"], false);
        assert!(chat.body["last_inbound_at"].is_string());
        assert_eq!(chat.body["last_outbound_at"], Value::Null);
    }
    let other_line = api
        .call("GET", &format!("/v1/chats/{LINE_B}/+16505550001"), None)
        .await;
    assert_eq!(other_line.status, 200);
    assert_eq!(other_line.body["status"], "active");
    assert_eq!(other_line.body["session_status"], "open");

    let missing = api
        .call("GET", &format!("/v1/chats/{LINE_B}/+16505550002"), None)
        .await;
    assert_eq!(missing.status, 404, "{:?}", missing.body);
    assert_eq!(error_code(&missing), "chat_not_found");
    let missing = api.call("GET", "/v1/chats/999/+16505550001", None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(error_code(&missing), "chat_not_found");

    // After unblocking, the chat is still there, active again, and its
    // history keeps the block.
    unblock_ok(&api, "+16505550001", LINE_A).await;
    let chat = api
        .call("GET", &format!("/v1/chats/{LINE_A}/+16505550001"), None)
        .await;
    assert_eq!(chat.status, 200);
    assert_eq!(chat.body["status"], "active");
    let blocked = items(&api, "/v1/chats?status=blocked").await;
    assert_eq!(
        chat_set(&blocked),
        chats(&[&format!("{LINE_B}/+16505550003/blocked")])
    );
    let active = items(
        &api,
        &format!("/v1/chats?status=active&phone_number_id={LINE_A}"),
    )
    .await;
    assert_eq!(
        chat_set(&active),
        chats(&[
            &format!("{LINE_A}/+16505550001/active"),
            &format!("{LINE_A}/+16505550002/active")
        ])
    );
    let actions: Vec<String> = api
        .history("+16505550001")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["unblocked", "blocked"]);
}

// ---------------------------------------------------------------- B12

fn admin() -> String {
    token("ops", ADMIN)
}

async fn put_settings(api: &Api, target: &str, body: Value) -> ApiResponse {
    api.send(
        ApiRequest::new("PUT", &format!("/v1/settings/{target}"))
            .bearer(&admin())
            .json(body),
    )
    .await
}

async fn get_settings(api: &Api, target: &str) -> Value {
    let response = api
        .call("GET", &format!("/v1/settings/{target}"), None)
        .await;
    assert_eq!(response.status, 200, "{target}: {:?}", response.body);
    response.body
}

fn settings(
    id: &str,
    allow: bool,
    enabled: bool,
    codes: &[u32],
    threshold: u32,
    days: u32,
) -> Value {
    json!({
        "phone_number_id": id,
        "allow_unknown_numbers": allow,
        "auto_block": {"enabled": enabled, "error_codes": codes, "threshold": threshold, "window_days": days},
        "carry_blocks_on_change": true,
        "platform_block": false,
        "opt_out_keywords": ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"],
        "opt_in_keywords": ["START", "UNSTOP", "YES"],
        "opt_out_reply": "",
        "opt_in_reply": "",
        "review_after_days": 90
    })
}

#[tokio::test]
async fn b12_settings_defaults_partial_updates_and_inheritance_field_by_field() {
    let api = Api::new().await;
    assert_eq!(
        get_settings(&api, "default").await,
        json!({
            "phone_number_id": "default",
            "allow_unknown_numbers": true,
            "auto_block": {"enabled": true, "error_codes": [131026], "threshold": 1, "window_days": 30},
            "carry_blocks_on_change": true,
            "platform_block": false,
            "opt_out_keywords": ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"],
            "opt_in_keywords": ["START", "UNSTOP", "YES"],
            "opt_out_reply": "",
            "opt_in_reply": "",
            "review_after_days": 90
        })
    );
    assert_eq!(
        get_settings(&api, LINE_A).await,
        settings(LINE_A, true, true, &[131026], 1, 30),
        "built-in defaults before anything is stored"
    );

    // A partial update of `default` changes only the given fields.
    let changed = put_settings(&api, "default", json!({"allow_unknown_numbers": false})).await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(
        changed.body,
        settings("default", false, true, &[131026], 1, 30)
    );
    let changed = put_settings(
        &api,
        "default",
        json!({"auto_block": {"error_codes": [131026, 131049], "window_days": 7}}),
    )
    .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    let stored_default = settings("default", false, true, &[131026, 131049], 1, 7);
    assert_eq!(changed.body, stored_default);
    assert_eq!(get_settings(&api, "default").await, stored_default);

    // A business number without an entry of its own gets the stored default.
    assert_eq!(
        get_settings(&api, LINE_A).await,
        settings(LINE_A, false, true, &[131026, 131049], 1, 7)
    );

    // Its own entry overrides the default, for it only.
    let own = put_settings(
        &api,
        LINE_A,
        json!({"phone_number_id": LINE_A, "allow_unknown_numbers": true, "auto_block": {"threshold": 3}}),
    )
    .await;
    assert_eq!(own.status, 200, "{:?}", own.body);
    let line_a = settings(LINE_A, true, true, &[131026, 131049], 3, 7);
    assert_eq!(own.body, line_a);
    assert_eq!(get_settings(&api, LINE_A).await, line_a);
    assert_eq!(
        get_settings(&api, LINE_B).await,
        settings(LINE_B, false, true, &[131026, 131049], 1, 7)
    );
    assert_eq!(get_settings(&api, "default").await, stored_default);

    // Changing the default later reaches every field a business number
    // does not set itself, field by field: also on a number with an entry
    // of its own, which keeps what it set (section 4).
    let changed = put_settings(&api, "default", json!({"auto_block": {"enabled": false}})).await;
    assert_eq!(changed.status, 200);
    assert_eq!(
        get_settings(&api, LINE_B).await,
        settings(LINE_B, false, false, &[131026, 131049], 1, 7)
    );
    let line_a_now = settings(LINE_A, true, false, &[131026, 131049], 3, 7);
    assert_eq!(get_settings(&api, LINE_A).await, line_a_now);
    let changed = put_settings(
        &api,
        "default",
        json!({"allow_unknown_numbers": true, "auto_block": {"threshold": 5}}),
    )
    .await;
    assert_eq!(changed.status, 200);
    assert_eq!(
        get_settings(&api, LINE_A).await,
        line_a_now,
        "what the number set itself stays"
    );
    let changed = put_settings(&api, "default", json!({"allow_unknown_numbers": false})).await;
    assert_eq!(changed.status, 200);

    // Every change is a settings_changed event in the audit feed.
    let events = items(&api, "/v1/audit?action=settings_changed").await;
    let scopes: Vec<&str> = events
        .iter()
        .map(|e| e["scope"].as_str().unwrap())
        .collect();
    assert_eq!(
        scopes,
        [
            "default", "default", "default", LINE_A, "default", "default"
        ],
        "newest first"
    );
    for event in &events {
        assert_event_shape(event);
        assert_eq!(event["action"], "settings_changed");
        assert_eq!(event["actor"], "ops");
    }
    assert_eq!(
        events[2]["details"]["before"]["auto_block"]["enabled"],
        true
    );
    assert_eq!(
        events[2]["details"]["after"]["auto_block"]["enabled"],
        false
    );
    assert_eq!(events[3]["details"]["after"], line_a);
    assert_eq!(
        events[3]["details"]["set"],
        json!({"allow_unknown_numbers": true, "auto_block": {"threshold": 3}}),
        "the event names what the entry sets itself"
    );
    let feed = items(&api, "/v1/audit").await;
    assert_eq!(feed.len(), 6);
    assert!(feed.iter().all(|e| e["action"] == "settings_changed"));
}

#[tokio::test]
async fn b12_null_clears_a_field_so_the_entry_inherits_it_again() {
    let api = Api::new().await;
    for (target, body) in [
        (
            "default",
            json!({"allow_unknown_numbers": false, "auto_block": {"threshold": 2}}),
        ),
        (
            LINE_A,
            json!({"allow_unknown_numbers": true, "auto_block": {"threshold": 5, "window_days": 9}}),
        ),
    ] {
        let response = put_settings(&api, target, body).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
    }
    assert_eq!(
        get_settings(&api, LINE_A).await,
        settings(LINE_A, true, true, &[131026], 5, 9)
    );
    let cleared = put_settings(
        &api,
        LINE_A,
        json!({"allow_unknown_numbers": null, "auto_block": {"threshold": null}}),
    )
    .await;
    assert_eq!(cleared.status, 200, "{:?}", cleared.body);
    let inherited = settings(LINE_A, false, true, &[131026], 2, 9);
    assert_eq!(
        cleared.body, inherited,
        "default's values, its own window kept"
    );
    assert_eq!(get_settings(&api, LINE_A).await, inherited);
    // ...and it follows default from now on.
    let response = put_settings(&api, "default", json!({"auto_block": {"threshold": 3}})).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        get_settings(&api, LINE_A).await,
        settings(LINE_A, false, true, &[131026], 3, 9)
    );
    // A whole `auto_block` cleared; on `default`, null is the built-in value.
    let response = put_settings(&api, LINE_A, json!({"auto_block": null})).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        get_settings(&api, LINE_A).await,
        settings(LINE_A, false, true, &[131026], 3, 30)
    );
    let response = put_settings(&api, "default", json!({"auto_block": {"threshold": null}})).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        get_settings(&api, "default").await,
        settings("default", false, true, &[131026], 1, 30)
    );
}

#[tokio::test]
async fn b12_invalid_settings_are_refused_and_change_nothing() {
    let api = Api::new().await;
    for body in [
        json!({"auto_block": {"threshold": 0}}),
        json!({"auto_block": {"window_days": 0}}),
        json!({"auto_block": {"window_days": 366}}),
        json!({"allow_unknown_numbers": "no"}),
        json!({"colour": "red"}),
        json!({"colour": null}),
        json!({"auto_block": {"colour": null}}),
        json!({"phone_number_id": LINE_B}),
        // Found by the fuzz run: serde reads a struct from a list.
        json!({"auto_block": [null, null]}),
        json!({"auto_block": [true]}),
        json!([null, null]),
    ] {
        let response = put_settings(&api, LINE_A, body.clone()).await;
        assert_eq!(response.status, 422, "{body}: {:?}", response.body);
        error_code(&response);
    }
    let response = put_settings(&api, "default", json!({"auto_block": {"threshold": 0}})).await;
    assert_eq!(response.status, 422);
    assert_eq!(error_code(&response), "invalid_settings");
    assert_eq!(response.body["error"]["field"], "auto_block.threshold");

    assert_eq!(
        get_settings(&api, LINE_A).await,
        settings(LINE_A, true, true, &[131026], 1, 30)
    );
    assert_eq!(
        get_settings(&api, "default").await,
        settings("default", true, true, &[131026], 1, 30)
    );
    assert_eq!(items(&api, "/v1/audit").await, Vec::<Value>::new());

    // Writing settings needs blocklist:admin.
    let response = api
        .call(
            "PUT",
            "/v1/settings/default",
            Some(json!({"allow_unknown_numbers": false})),
        )
        .await;
    assert_eq!(response.status, 403, "{:?}", response.body);
}

#[tokio::test]
async fn b10_a_new_contact_marks_the_numbers_chats_known_in_the_same_change() {
    let api = Api::new().await;
    let number = Subject::parse("+16505551234").unwrap();
    let line = PhoneNumberId::parse("106540352242922").unwrap();
    api.stack
        .store
        .record_inbound(&line, &number, Utc::now(), ChatStatus::Active, false)
        .await
        .unwrap();
    let response = api
        .call(
            "PUT",
            "/v1/contacts/+16505551234",
            Some(json!({"name": "Sheena"})),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    let chat = api
        .stack
        .store
        .get_chat(&line, &number)
        .await
        .unwrap()
        .unwrap();
    assert!(chat.known_contact);
    assert_eq!(
        chat.status,
        ChatStatus::Active,
        "the contact changes nothing else"
    );
    assert_eq!(serde_json::to_value(chat.session_status).unwrap(), "open");
}

#[tokio::test]
async fn b50_dates_outside_1970_to_9999_are_400_not_a_crash() {
    let api = Api::new().await;
    for uri in [
        "/v1/stats?to=0001-01-01",
        "/v1/stats?from=9999-12-31&to=%2B262142-12-31",
        "/v1/audit?until=-262143-01-01",
        "/v1/audit?since=1969-12-31T23:59:59Z",
        "/v1/blocks?since=0100-01-01",
    ] {
        let response = api.call("GET", uri, None).await;
        assert_eq!(response.status, 400, "{uri}: {:?}", response.body);
        assert_eq!(error_code(&response), "invalid_parameter", "{uri}");
    }
}

#[tokio::test]
async fn b13_expired_blocks_are_not_listed_and_a_new_block_is_not_counted_twice() {
    let mut api = Api::new().await;
    let start = Utc::now();
    fn later() -> DateTime<Utc> {
        Utc::now() + chrono::Duration::hours(2)
    }
    let soon = (start + chrono::Duration::hours(1)).to_rfc3339();
    let response = api
        .block(
            "+16505551234",
            json!({"reason": "cool off", "expires_at": soon}),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    let listed = api.call("GET", "/v1/blocks", None).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);

    // Two hours on: the block has expired.
    api.app.now = later;
    let listed = api.call("GET", "/v1/blocks", None).await;
    assert_eq!(
        listed.body["items"],
        json!([]),
        "an expired block blocks nothing and is not listed"
    );
    // Blocking again replaces it: still one blocked number.
    let again = api.block("+16505551234", json!({"reason": "again"})).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    let stats = api.call("GET", "/v1/stats", None).await;
    assert_eq!(stats.body["currently_blocked"], 1);
    let removed = api
        .call(
            "DELETE",
            "/v1/blocks/+16505551234",
            Some(json!({"reason": "done"})),
        )
        .await;
    assert_eq!(removed.status, 200);
    let stats = api.call("GET", "/v1/stats", None).await;
    assert_eq!(stats.body["currently_blocked"], 0);
}
