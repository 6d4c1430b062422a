//! B50 (with B1, B2, B5, B7, B8, B11): bad input gets a 4xx JSON error and
//! writes nothing.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use blocklist::store::Cursor;
use integration_tests::{ApiRequest, ApiResponse};
use serde_json::{Value, json};

use super::{Api, error_code};

const NUMBER: &str = "+16505551234";
const OTHER: &str = "+447700900123";
/// `MAX_BODY_BYTES` of the shared HTTP plumbing: 1 MiB.
const ONE_MIB: usize = 1024 * 1024;

/// Asserts the exact B50 error shape (`{"error":{"code","message","field"?}}`
/// and nothing else), the status and the code; returns `field`.
pub(super) fn assert_error(response: &ApiResponse, status: u16, code: &str) -> Option<String> {
    assert_eq!(
        (response.status, error_code(response).as_str()),
        (status, code),
        "{:?}",
        response.body
    );
    let body = response.body.as_object().expect("error body is an object");
    assert_eq!(
        body.keys().collect::<Vec<_>>(),
        ["error"],
        "{:?}",
        response.body
    );
    let error = body["error"].as_object().expect("error is an object");
    assert!(
        error
            .keys()
            .all(|k| ["code", "message", "field"].contains(&k.as_str())),
        "unexpected keys in {:?}",
        response.body
    );
    error.get("field").map(|field| {
        field
            .as_str()
            .unwrap_or_else(|| panic!("field must be a string: {:?}", response.body))
            .to_owned()
    })
}

/// Every item of the test's three tables, in a stable order, read straight
/// from DynamoDB (not through the API under test).
pub(super) async fn stored_items(api: &Api) -> Vec<String> {
    let tables = &api.stack.tables;
    let mut all = Vec::new();
    for table in [
        &tables.blocklist,
        &tables.audit,
        &tables.chats,
        &tables.failures,
    ] {
        let mut start = None;
        loop {
            let page = api
                .stack
                .client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            for item in page.items() {
                let sorted: BTreeMap<&String, String> =
                    item.iter().map(|(k, v)| (k, canonical(v))).collect();
                all.push(format!("{table}: {sorted:?}"));
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
    }
    all.sort();
    all
}

/// An attribute value as text, with maps and sets in a stable order.
fn canonical(value: &AttributeValue) -> String {
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    match value {
        AttributeValue::M(map) => {
            let map: BTreeMap<&String, String> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            format!("M{map:?}")
        }
        AttributeValue::L(list) => {
            format!("L{:?}", list.iter().map(canonical).collect::<Vec<_>>())
        }
        AttributeValue::Ss(set) => format!("SS{:?}", sorted(set.clone())),
        AttributeValue::Ns(set) => format!("NS{:?}", sorted(set.clone())),
        other => format!("{other:?}"),
    }
}

/// Nothing at all was written: no block, contact or history for `numbers`,
/// an empty block listing and audit feed, and empty tables.
pub(super) async fn assert_nothing_written(api: &Api, numbers: &[&str]) {
    for number in numbers {
        let view = api.call("GET", &format!("/v1/blocks/{number}"), None).await;
        assert_eq!(view.status, 200, "{:?}", view.body);
        assert_eq!(view.body["blocks"], json!([]), "{number}");
        assert_eq!(view.body["contact"], Value::Null, "{number}");
        assert!(api.history(number).await.is_empty(), "{number}");
    }
    let list = api.call("GET", "/v1/blocks?limit=200", None).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert_eq!(list.body["items"], json!([]));
    let audit = api.call("GET", "/v1/audit?limit=200", None).await;
    assert_eq!(audit.status, 200, "{:?}", audit.body);
    assert_eq!(audit.body["items"], json!([]));
    let items = stored_items(api).await;
    assert!(items.is_empty(), "nothing may be written: {items:#?}");
}

fn raw_request(api: &Api, method: &str, uri: &str, body: &str) -> ApiRequest {
    ApiRequest::new(method, uri)
        .bearer(&api.token)
        .header("content-type", "application/json")
        .raw_body(body)
}

#[tokio::test]
async fn b50_invalid_numbers_are_422_and_write_nothing() {
    let api = Api::new().await;
    let invalid = [
        // letters
        "abc",
        "+1650555ABCD",
        "1-800-FLOWERS",
        // too short
        "+1650",
        "+44",
        "%2B",
        // too long (for the country, and past E.164's 15 digits)
        "+16505551234567",
        "+1650555123456789",
        // no country code: a national number
        "07700900123",
        "07700%20900123",
        "0%20(7700)%20900-123",
    ];
    for number in invalid {
        let put = api.block(number, json!({"reason": "spam"})).await;
        assert_eq!(
            assert_error(&put, 422, "invalid_number").as_deref(),
            Some("number"),
            "PUT {number}"
        );
        let delete = api
            .call(
                "DELETE",
                &format!("/v1/blocks/{number}"),
                Some(json!({"reason": "ok"})),
            )
            .await;
        assert_error(&delete, 422, "invalid_number");
        let get = api.call("GET", &format!("/v1/blocks/{number}"), None).await;
        assert_error(&get, 422, "invalid_number");
        let history = api
            .call("GET", &format!("/v1/numbers/{number}/history"), None)
            .await;
        assert_error(&history, 422, "invalid_number");
        let contact = api
            .call(
                "PUT",
                &format!("/v1/contacts/{number}"),
                Some(json!({"name": "Ravi"})),
            )
            .await;
        assert_error(&contact, 422, "invalid_number");
    }
    assert_nothing_written(&api, &[NUMBER, OTHER]).await;
}

#[tokio::test]
async fn b5_invalid_numbers_in_a_batch_fail_only_themselves() {
    let api = Api::new().await;
    let given = [
        NUMBER,
        "abc",
        "+1650",
        "07700 900123",
        OTHER,
        "+1650555123456789",
        "",
    ];
    let response = api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({"action": "block", "numbers": given, "reason": "spam wave"})),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let results = response.body["results"].as_array().expect("results");
    assert_eq!(results.len(), given.len(), "{results:?}");
    for (result, given) in results.iter().zip(given) {
        assert_eq!(result["number"], given, "results keep the input order");
        if given == NUMBER || given == OTHER {
            assert_eq!(result["status"], "blocked", "{result:?}");
            assert!(result.get("error").is_none(), "{result:?}");
        } else {
            assert_eq!(result["status"], "invalid_number", "{result:?}");
            assert_eq!(result["error"]["code"], "invalid_number", "{result:?}");
            assert!(result["error"]["message"].is_string(), "{result:?}");
        }
    }

    // Exactly the two valid numbers were written, each with one event.
    let list = api.call("GET", "/v1/blocks?limit=200", None).await;
    let mut listed: Vec<&str> = list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|b| b["number"].as_str().expect("number"))
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, [NUMBER, OTHER]);
    for number in [NUMBER, OTHER] {
        let history = api.history(number).await;
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0]["action"], "blocked");
        assert_eq!(history[0]["source"], "bulk");
    }
    let audit = api.call("GET", "/v1/audit?limit=200", None).await;
    assert_eq!(audit.body["items"].as_array().map(Vec::len), Some(2));

    // Unblocking in a batch: the bad number again fails only itself.
    let response = api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({"action": "unblock", "numbers": ["nope", NUMBER], "reason": "ok"})),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["results"][0]["status"], "invalid_number");
    assert_eq!(response.body["results"][1]["status"], "unblocked");
    let audit = api.call("GET", "/v1/audit?limit=200", None).await;
    assert_eq!(audit.body["items"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn b50_reason_must_be_1_to_500_characters() {
    let api = Api::new().await;
    for reason in [String::new(), "   ".into(), "\t\n".into(), "x".repeat(501)] {
        let put = api
            .block(NUMBER, json!({"reason": reason, "scope": "all"}))
            .await;
        assert_eq!(
            assert_error(&put, 422, "invalid_reason").as_deref(),
            Some("reason"),
            "{reason:?}"
        );
        let batch = api
            .call(
                "POST",
                "/v1/blocks:batch",
                Some(json!({"action": "block", "numbers": [NUMBER], "reason": reason})),
            )
            .await;
        assert_error(&batch, 422, "invalid_reason");
    }
    assert_nothing_written(&api, &[NUMBER]).await;

    // The bounds themselves are accepted, counted in characters.
    let at_limit = "x".repeat(500);
    let put = api.block(NUMBER, json!({"reason": at_limit})).await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    assert_eq!(put.body["reason"], at_limit);
    let accented = "é".repeat(500);
    let put = api.block(OTHER, json!({"reason": accented})).await;
    assert_eq!(put.status, 201, "{:?}", put.body);

    // An unblock needs a valid reason too, and keeps the block without one.
    for reason in [String::new(), " ".into(), "y".repeat(501)] {
        let delete = api
            .call(
                "DELETE",
                &format!("/v1/blocks/{NUMBER}?scope=all"),
                Some(json!({"reason": reason})),
            )
            .await;
        assert_error(&delete, 422, "invalid_reason");
    }
    let view = api.call("GET", &format!("/v1/blocks/{NUMBER}"), None).await;
    assert_eq!(view.body["blocks"].as_array().map(Vec::len), Some(1));
    assert_eq!(api.history(NUMBER).await.len(), 1);
}

#[tokio::test]
async fn b50_unknown_scope_shapes_are_422_and_write_nothing() {
    let api = Api::new().await;
    let too_long = "1".repeat(33);
    for scope in ["ALL", "every", "12a", "", "1 2", "-1", too_long.as_str()] {
        let put = api
            .block(NUMBER, json!({"reason": "spam", "scope": scope}))
            .await;
        assert_eq!(
            assert_error(&put, 422, "invalid_scope").as_deref(),
            Some("scope"),
            "{scope:?}"
        );
        let batch = api
            .call(
                "POST",
                "/v1/blocks:batch",
                Some(json!({"action": "block", "numbers": [NUMBER], "reason": "spam", "scope": scope})),
            )
            .await;
        assert_error(&batch, 422, "invalid_scope");
        let delete = api
            .call(
                "DELETE",
                &format!("/v1/blocks/{NUMBER}"),
                Some(json!({"reason": "ok", "scope": scope})),
            )
            .await;
        assert_error(&delete, 422, "invalid_scope");
    }
    for scope in ["ALL", "every", "12a"] {
        let delete = api
            .call(
                "DELETE",
                &format!("/v1/blocks/{NUMBER}?scope={scope}"),
                Some(json!({"reason": "ok"})),
            )
            .await;
        assert_error(&delete, 422, "invalid_scope");
    }
    // Query and body naming different scopes is ambiguous, not a guess.
    let delete = api
        .call(
            "DELETE",
            &format!("/v1/blocks/{NUMBER}?scope=all"),
            Some(json!({"reason": "ok", "scope": "106540352242922"})),
        )
        .await;
    assert_error(&delete, 422, "invalid_scope");
    assert_nothing_written(&api, &[NUMBER]).await;
}

#[tokio::test]
async fn b50_unknown_and_reserved_sources_are_422_and_write_nothing() {
    let api = Api::new().await;
    for source in ["robot", "auto", "Manual", ""] {
        let put = api
            .block(NUMBER, json!({"reason": "spam", "source": source}))
            .await;
        assert_eq!(
            assert_error(&put, 422, "invalid_source").as_deref(),
            Some("source"),
            "{source:?}"
        );
        let batch = api
            .call(
                "POST",
                "/v1/blocks:batch",
                Some(json!({"action": "block", "numbers": [NUMBER], "reason": "spam", "source": source})),
            )
            .await;
        assert_error(&batch, 422, "invalid_source");
    }
    assert_nothing_written(&api, &[NUMBER]).await;
}

#[tokio::test]
async fn b50_malformed_json_is_400_and_a_missing_body_is_400() {
    let api = Api::new().await;
    let routes = [
        ("PUT", format!("/v1/blocks/{NUMBER}")),
        ("DELETE", format!("/v1/blocks/{NUMBER}?scope=all")),
        ("POST", "/v1/blocks:batch".to_owned()),
        ("PUT", format!("/v1/contacts/{NUMBER}")),
    ];
    for (method, uri) in &routes {
        for broken in [
            "{\"reason\": ",
            "not json",
            "{\"reason\": \"spam\",}",
            "{'reason': 'spam'}",
            "{\"reason\": \"spam\"} trailing",
            "\u{feff}{\"reason\": \"spam\"}",
        ] {
            let response = api.send(raw_request(&api, method, uri, broken)).await;
            assert_error(&response, 400, "malformed_json");
        }
        for empty in ["", "   ", "\n"] {
            let response = api.send(raw_request(&api, method, uri, empty)).await;
            assert_error(&response, 400, "missing_body");
        }
        let no_body = api
            .send(ApiRequest::new(method, uri).bearer(&api.token))
            .await;
        assert_error(&no_body, 400, "missing_body");
    }
    assert_nothing_written(&api, &[NUMBER]).await;
}

#[tokio::test]
async fn b50_wrong_types_and_missing_fields_are_422_invalid_field() {
    let api = Api::new().await;
    let bodies = [
        json!({"reason": 5}),
        json!({"reason": null}),
        json!({"reason": ["spam"]}),
        json!({"reason": "spam", "scope": 106540352242922u64}),
        json!({"reason": "spam", "contact": "Ravi"}),
        json!({"reason": "spam", "contact": {"groups": "uk"}}),
        json!({"reason": "spam", "expires_at": 1_800_000_000}),
        json!(["spam"]),
        json!("spam"),
    ];
    for body in bodies {
        let put = api.block(NUMBER, body.clone()).await;
        assert_error(&put, 422, "invalid_field");
    }
    let missing = api.block(NUMBER, json!({"scope": "all"})).await;
    assert_eq!(
        assert_error(&missing, 422, "invalid_field").as_deref(),
        Some("reason")
    );
    for body in [
        json!({"action": "explode", "numbers": [NUMBER], "reason": "spam"}),
        json!({"action": "block", "numbers": NUMBER, "reason": "spam"}),
        json!({"action": "block", "numbers": [16505551234u64], "reason": "spam"}),
        json!({"numbers": [NUMBER], "reason": "spam"}),
    ] {
        let batch = api.call("POST", "/v1/blocks:batch", Some(body)).await;
        assert_error(&batch, 422, "invalid_field");
    }
    let delete = api
        .call(
            "DELETE",
            &format!("/v1/blocks/{NUMBER}"),
            Some(json!({"reason": false})),
        )
        .await;
    assert_error(&delete, 422, "invalid_field");
    assert_nothing_written(&api, &[NUMBER]).await;
}

#[tokio::test]
async fn b50_unknown_fields_are_422_naming_the_field() {
    let api = Api::new().await;
    let put = api
        .block(NUMBER, json!({"reason": "spam", "colour": "red"}))
        .await;
    assert_eq!(
        assert_error(&put, 422, "invalid_field").as_deref(),
        Some("colour")
    );
    // A misspelt field must not be silently ignored.
    let put = api
        .block(NUMBER, json!({"reason": "spam", "scopes": "all"}))
        .await;
    assert_eq!(
        assert_error(&put, 422, "invalid_field").as_deref(),
        Some("scopes")
    );
    let put = api
        .block(
            NUMBER,
            json!({"reason": "spam", "contact": {"name": "Ravi", "nickname": "R"}}),
        )
        .await;
    let field = assert_error(&put, 422, "invalid_field");
    assert!(
        field.as_deref().is_some_and(|f| f.ends_with("nickname")),
        "field names the unknown contact field: {field:?}"
    );
    let delete = api
        .call(
            "DELETE",
            &format!("/v1/blocks/{NUMBER}"),
            Some(json!({"reason": "ok", "force": true})),
        )
        .await;
    assert_eq!(
        assert_error(&delete, 422, "invalid_field").as_deref(),
        Some("force")
    );
    let batch = api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(
                json!({"action": "block", "numbers": [NUMBER], "reason": "spam", "dry_run": true}),
            ),
        )
        .await;
    assert_eq!(
        assert_error(&batch, 422, "invalid_field").as_deref(),
        Some("dry_run")
    );
    let contact = api
        .call(
            "PUT",
            &format!("/v1/contacts/{NUMBER}"),
            Some(json!({"name": "Ravi", "phone": NUMBER})),
        )
        .await;
    assert_eq!(
        assert_error(&contact, 422, "invalid_field").as_deref(),
        Some("phone")
    );
    assert_nothing_written(&api, &[NUMBER]).await;
}

#[tokio::test]
async fn b50_invalid_contacts_are_422_and_block_nothing() {
    let api = Api::new().await;
    let contacts = [
        (json!({"email": "no-at-sign"}), "invalid_contact"),
        (json!({"number": OTHER}), "invalid_contact"),
        (json!({"groups": [""]}), "invalid_contact"),
        (json!({"name": "x".repeat(201)}), "invalid_contact"),
        (json!({"secondary_numbers": ["abc"]}), "invalid_number"),
        (json!({"number": "abc"}), "invalid_number"),
    ];
    for (contact, code) in contacts {
        let put = api
            .block(NUMBER, json!({"reason": "spam", "contact": contact}))
            .await;
        let field = assert_error(&put, 422, code);
        assert!(
            field.as_deref().is_some_and(|f| f.starts_with("contact.")),
            "{field:?} for {contact}"
        );
        let put = api
            .call("PUT", &format!("/v1/contacts/{NUMBER}"), Some(contact))
            .await;
        assert_error(&put, 422, code);
    }
    // serde alone would read the contact from a list.
    let listed = api
        .block(
            NUMBER,
            json!({"reason": "spam", "contact": [null, null, "Ana"]}),
        )
        .await;
    assert_eq!(listed.status, 422, "{}", listed.body);
    assert_nothing_written(&api, &[NUMBER, OTHER]).await;
}

#[tokio::test]
async fn b7_b8_b11_limit_out_of_range_is_400_on_every_listing() {
    let api = Api::new().await;
    let listings = [
        "/v1/blocks".to_owned(),
        format!("/v1/numbers/{NUMBER}/history"),
        "/v1/chats".to_owned(),
        "/v1/audit".to_owned(),
    ];
    for listing in &listings {
        for limit in [
            "0",
            "201",
            "abc",
            "-1",
            "1.5",
            "",
            "99999999999999999999999",
        ] {
            let response = api
                .call("GET", &format!("{listing}?limit={limit}"), None)
                .await;
            assert_eq!(
                assert_error(&response, 400, "invalid_parameter").as_deref(),
                Some("limit"),
                "{listing}?limit={limit}"
            );
        }
        for limit in ["1", "200"] {
            let response = api
                .call("GET", &format!("{listing}?limit={limit}"), None)
                .await;
            assert_eq!(response.status, 200, "{listing}: {:?}", response.body);
            assert_eq!(response.body["items"], json!([]));
        }
    }
    assert_nothing_written(&api, &[NUMBER]).await;
}

#[tokio::test]
async fn b50_unknown_query_parameters_are_400() {
    let api = Api::new().await;
    let requests = [
        ("/v1/blocks?colour=red", "colour"),
        ("/v1/blocks?scope=all&sourse=manual", "sourse"),
        ("/v1/blocks?Limit=5", "Limit"),
        ("/v1/numbers/+16505551234/history?scope=all", "scope"),
        ("/v1/chats?stat=blocked", "stat"),
        ("/v1/audit?actions=blocked", "actions"),
        ("/v1/stats?day=2026-01-01", "day"),
        ("/v1/blocks/+16505551234?verbose=1", "verbose"),
    ];
    for (uri, field) in requests {
        let response = api.call("GET", uri, None).await;
        assert_eq!(
            assert_error(&response, 400, "unknown_parameter").as_deref(),
            Some(field),
            "{uri}"
        );
    }
    let delete = api
        .call(
            "DELETE",
            &format!("/v1/blocks/{NUMBER}?scope=all&force=true"),
            Some(json!({"reason": "ok"})),
        )
        .await;
    assert_eq!(
        assert_error(&delete, 400, "unknown_parameter").as_deref(),
        Some("force")
    );
    let put = api
        .block(&format!("{NUMBER}?notify=false"), json!({"reason": "spam"}))
        .await;
    assert_eq!(
        assert_error(&put, 400, "unknown_parameter").as_deref(),
        Some("notify")
    );
    assert_nothing_written(&api, &[NUMBER]).await;
}

#[tokio::test]
async fn b50_bad_filter_values_are_400_invalid_parameter() {
    let api = Api::new().await;
    let requests = [
        ("/v1/blocks?scope=ALL", "scope"),
        ("/v1/blocks?source=robot", "source"),
        ("/v1/blocks?since=yesterday", "since"),
        ("/v1/blocks?until=2026-02-30", "until"),
        ("/v1/blocks?since=2026-02-02&until=2026-02-01", "since"),
        ("/v1/blocks?q=", "q"),
        ("/v1/chats?status=closed", "status"),
        ("/v1/chats?phone_number_id=abc", "phone_number_id"),
        ("/v1/audit?action=exploded", "action"),
        ("/v1/audit?since=last-week", "since"),
        ("/v1/stats?from=2026-13-01", "from"),
        ("/v1/stats?from=2026-03-01&to=2026-02-01", "from"),
        ("/v1/stats?from=2020-01-01&to=2026-01-01", "from"),
    ];
    for (uri, field) in requests {
        let response = api.call("GET", uri, None).await;
        assert_eq!(
            assert_error(&response, 400, "invalid_parameter").as_deref(),
            Some(field),
            "{uri}"
        );
    }
    assert_nothing_written(&api, &[NUMBER]).await;
}

#[tokio::test]
async fn b7_b8_tampered_or_foreign_cursors_are_400_invalid_cursor() {
    let api = Api::new().await;
    for number in [NUMBER, OTHER, "+16505550000"] {
        let put = api.block(number, json!({"reason": "spam"})).await;
        assert_eq!(put.status, 201, "{:?}", put.body);
    }
    let unblock = api
        .call(
            "DELETE",
            &format!("/v1/blocks/{NUMBER}"),
            Some(json!({"reason": "ok"})),
        )
        .await;
    assert_eq!(unblock.status, 200, "{:?}", unblock.body);
    let put = api.block(NUMBER, json!({"reason": "again"})).await;
    assert_eq!(put.status, 201, "{:?}", put.body);

    let first = api.call("GET", "/v1/blocks?limit=1", None).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("a next_cursor after 3 blocks with limit=1")
        .to_owned();
    // The real cursor works, and continues the listing.
    let second = api
        .call("GET", &format!("/v1/blocks?limit=1&cursor={cursor}"), None)
        .await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert_ne!(second.body["items"][0], first.body["items"][0]);

    let before = stored_items(&api).await;
    let filters = blocklist::store::filters_fingerprint([]);
    let decoded = Cursor::decode(&cursor, "blocks", &filters, &[blocklist::store::POSITION])
        .expect("the API's own cursor decodes");
    let forged = |edit: &dyn Fn(&mut Cursor)| {
        let mut cursor = decoded.clone();
        edit(&mut cursor);
        cursor.encode()
    };
    // The first character encodes the opening `{`: any other is not JSON.
    let flipped_first = {
        let replacement = if cursor.starts_with('A') { 'B' } else { 'A' };
        format!("{replacement}{}", &cursor[1..])
    };
    let tampered = [
        flipped_first,
        cursor[..cursor.len() / 2].to_owned(),
        format!("{cursor}!!"),
        format!("{cursor}A"),
        cursor.replace(|c: char| c.is_ascii_lowercase(), "z"),
        "x".repeat(3000),
        "not-a-cursor".to_owned(),
        forged(&|c| c.kind = "chats".into()),
        forged(&|c| {
            c.key.insert("gsi1pk".into(), "CHATS#00".into());
        }),
        forged(&|c| {
            c.key.insert("extra".into(), "1".into());
        }),
        forged(&|c| {
            c.key.remove(blocklist::store::POSITION);
        }),
        forged(&|c| {
            c.key
                .insert(blocklist::store::POSITION.into(), String::new());
        }),
    ];
    for bad in &tampered {
        let response = api
            .call("GET", &format!("/v1/blocks?limit=1&cursor={bad}"), None)
            .await;
        assert_eq!(
            assert_error(&response, 400, "invalid_cursor").as_deref(),
            Some("cursor"),
            "{bad}"
        );
    }

    // A cursor of one listing is refused by every other listing.
    for listing in [
        format!("/v1/numbers/{NUMBER}/history"),
        "/v1/chats".to_owned(),
        "/v1/audit".to_owned(),
    ] {
        let response = api
            .call("GET", &format!("{listing}?limit=1&cursor={cursor}"), None)
            .await;
        assert_error(&response, 400, "invalid_cursor");
    }

    // A history cursor is bound to its number.
    let history = api
        .call(
            "GET",
            &format!("/v1/numbers/{NUMBER}/history?limit=1"),
            None,
        )
        .await;
    let history_cursor = history.body["next_cursor"]
        .as_str()
        .expect("3 events with limit=1 leave a cursor")
        .to_owned();
    let same = api
        .call(
            "GET",
            &format!("/v1/numbers/{NUMBER}/history?limit=1&cursor={history_cursor}"),
            None,
        )
        .await;
    assert_eq!(same.status, 200, "{:?}", same.body);
    assert_eq!(same.body["items"][0]["action"], "unblocked");
    let foreign = api
        .call(
            "GET",
            &format!("/v1/numbers/{OTHER}/history?limit=1&cursor={history_cursor}"),
            None,
        )
        .await;
    assert_error(&foreign, 400, "invalid_cursor");
    let on_blocks = api
        .call(
            "GET",
            &format!("/v1/blocks?limit=1&cursor={history_cursor}"),
            None,
        )
        .await;
    assert_error(&on_blocks, 400, "invalid_cursor");

    assert_eq!(stored_items(&api).await, before, "a GET writes nothing");
}

#[tokio::test]
async fn b5_batch_of_more_than_1000_or_no_numbers_is_422_and_writes_nothing() {
    let api = Api::new().await;
    let numbers: Vec<String> = (0..=1000).map(|i| format!("+1650555{i:04}")).collect();
    assert_eq!(numbers.len(), 1001);
    for action in ["block", "unblock"] {
        let response = api
            .call(
                "POST",
                "/v1/blocks:batch",
                Some(json!({"action": action, "numbers": numbers, "reason": "spam"})),
            )
            .await;
        assert_eq!(
            assert_error(&response, 422, "invalid_batch").as_deref(),
            Some("numbers")
        );
        let empty = api
            .call(
                "POST",
                "/v1/blocks:batch",
                Some(json!({"action": action, "numbers": [], "reason": "spam"})),
            )
            .await;
        assert_eq!(
            assert_error(&empty, 422, "invalid_batch").as_deref(),
            Some("numbers")
        );
    }
    assert_nothing_written(&api, &[numbers[0].as_str(), numbers[1000].as_str()]).await;

    // 1,000 is the limit itself: answered number by number.
    let response = api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({"action": "unblock", "numbers": numbers[..1000], "reason": "ok"})),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let results = response.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 1000);
    assert!(results.iter().all(|r| r["status"] == "not_blocked"));
}

#[tokio::test]
async fn b50_body_over_1_mib_is_413_and_writes_nothing() {
    let api = Api::new().await;
    // `{"reason":"` + padding + `"}`, exactly `size` bytes.
    let body_of = |size: usize| format!("{{\"reason\":\"{}\"}}", "x".repeat(size - 13));
    assert_eq!(body_of(ONE_MIB).len(), ONE_MIB);

    let over = api
        .send(raw_request(
            &api,
            "PUT",
            &format!("/v1/blocks/{NUMBER}"),
            &body_of(ONE_MIB + 1),
        ))
        .await;
    assert_error(&over, 413, "payload_too_large");
    let far_over = api
        .send(raw_request(
            &api,
            "PUT",
            &format!("/v1/blocks/{NUMBER}"),
            &body_of(3 * ONE_MIB),
        ))
        .await;
    assert_error(&far_over, 413, "payload_too_large");
    // Exactly 1 MiB is read, and refused for what it says.
    let at_limit = api
        .send(raw_request(
            &api,
            "PUT",
            &format!("/v1/blocks/{NUMBER}"),
            &body_of(ONE_MIB),
        ))
        .await;
    assert_error(&at_limit, 422, "invalid_reason");

    // A batch of valid numbers, over 1 MiB in all.
    let numbers: Vec<String> = (0..1000)
        .map(|i| format!("+1650555{i:04}{}", " ".repeat(1100)))
        .collect();
    let batch = api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({"action": "block", "numbers": numbers, "reason": "spam"})),
        )
        .await;
    assert_error(&batch, 413, "payload_too_large");
    let contact = api
        .call(
            "PUT",
            &format!("/v1/contacts/{NUMBER}"),
            Some(json!({"name": "x".repeat(ONE_MIB)})),
        )
        .await;
    assert_error(&contact, 413, "payload_too_large");
    assert_nothing_written(&api, &[NUMBER, "+16505550000"]).await;
}

#[tokio::test]
async fn b13_b50_expires_at_in_the_past_beyond_10_years_or_not_rfc3339_is_422() {
    let api = Api::new().await;
    let a_minute_ago = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let past_10_years = (chrono::Utc::now() + chrono::Duration::days(3654)).to_rfc3339();
    for expires_at in [
        "2020-01-01T00:00:00Z",
        a_minute_ago.as_str(),
        past_10_years.as_str(),
        "9999-12-31T23:59:59Z",
        "tomorrow",
        "2030-01-01",
        "2030-01-01T00:00:00",
        "1893456000",
        "2030-13-01T00:00:00Z",
        "",
    ] {
        let put = api
            .block(NUMBER, json!({"reason": "spam", "expires_at": expires_at}))
            .await;
        assert_eq!(
            assert_error(&put, 422, "invalid_expires_at").as_deref(),
            Some("expires_at"),
            "{expires_at:?}"
        );
    }
    assert_nothing_written(&api, &[NUMBER]).await;

    let put = api
        .block(
            NUMBER,
            json!({"reason": "spam", "expires_at": "2030-01-01T00:00:00+02:00"}),
        )
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    assert_eq!(put.body["expires_at"], "2029-12-31T22:00:00.000Z");
}

#[tokio::test]
async fn b50_unknown_route_is_404_and_wrong_method_is_405() {
    let api = Api::new().await;
    for uri in [
        "/",
        "/v1",
        "/v2/blocks",
        "/v1/nothing",
        "/v1/blocks/+16505551234/extra",
        "/v1/numbers/+16505551234",
        "/v1/settings",
    ] {
        let response = api.call("GET", uri, None).await;
        assert_error(&response, 404, "not_found");
    }
    // Every 405 names the methods the resource has (RFC 9110 `Allow`).
    for (method, uri, allow) in [
        ("PATCH", format!("/v1/blocks/{NUMBER}"), "GET, PUT, DELETE"),
        ("POST", format!("/v1/blocks/{NUMBER}"), "GET, PUT, DELETE"),
        ("POST", "/v1/blocks".to_owned(), "GET"),
        ("DELETE", "/v1/blocks".to_owned(), "GET"),
        ("GET", "/v1/blocks:batch".to_owned(), "POST"),
        ("DELETE", format!("/v1/numbers/{NUMBER}/history"), "GET"),
        ("DELETE", "/v1/audit".to_owned(), "GET"),
        ("PUT", "/v1/stats".to_owned(), "GET"),
        ("DELETE", "/v1/settings/default".to_owned(), "GET, PUT"),
        ("POST", format!("/v1/contacts/{NUMBER}"), "GET, PUT"),
        ("POST", "/v1/chats".to_owned(), "GET"),
        ("PUT", format!("/v1/chats/106540352242922/{NUMBER}"), "GET"),
    ] {
        let response = api
            .call(method, &uri, Some(json!({"reason": "spam"})))
            .await;
        assert_error(&response, 405, "method_not_allowed");
        assert_eq!(response.header("allow"), Some(allow), "{method} {uri}");
    }
    assert_nothing_written(&api, &[NUMBER]).await;
}
