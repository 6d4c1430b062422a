//! B1, B2, B3, B4: blocking and unblocking.

use blocklist::Subject;
use blocklist::http::auth::Authenticator;
use blocklist::model::{ChatStatus, PhoneNumberId};
use blocklist::store::Tables;
use chrono::Utc;
use futures::future::join_all;
use integration_tests::{ApiRequest, DynamoRelay, JWT_SECRET, call_block_api, endpoint};
use serde_json::{Value, json};

use super::{Api, error_code};

const NUMBER: &str = "+16505551234";
const LINE_A: &str = "106540352242922";

#[tokio::test]
async fn b1_block_creates_then_is_idempotent() {
    let api = Api::new().await;
    let first = api
        .block("+16505551234", json!({"reason": "spam", "scope": "all"}))
        .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.body["number"], "+16505551234");
    assert_eq!(first.body["scope"], "all");
    assert_eq!(first.body["reason"], "spam");
    assert_eq!(first.body["source"], "manual");
    assert_eq!(first.body["actor"], "agent-1");
    assert_eq!(first.body["client"], json!(null));
    assert_eq!(first.body["version"], 1);

    // Another form of the same number, same scope: the existing record.
    let again = api
        .block("16505551234", json!({"reason": "again", "scope": "all"}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["reason"], "spam");
    assert_eq!(again.body["blocked_at"], first.body["blocked_at"]);

    let history = api.history("%2B16505551234").await;
    assert_eq!(history.len(), 1, "no second audit event: {history:?}");
    assert_eq!(history[0]["action"], "blocked");
    assert_eq!(history[0]["actor"], "agent-1");
}

#[tokio::test]
async fn b1_block_with_contact_creates_the_contact_in_the_same_call() {
    let api = Api::new().await;
    let response = api
        .block(
            "+447700900123",
            json!({
                "reason": "abusive",
                "scope": "106540352242922",
                "source": "notification",
                "contact": {"name": "Ravi", "email": "ravi@example.com", "category": "lead", "groups": ["uk"]}
            }),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    let contact = api.call("GET", "/v1/contacts/+447700900123", None).await;
    assert_eq!(contact.status, 200);
    assert_eq!(contact.body["name"], "Ravi");
    assert_eq!(contact.body["groups"], json!(["uk"]));
    let actions: Vec<String> = api
        .history("+447700900123")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        actions.contains(&"blocked".to_owned()) && actions.contains(&"contact_updated".to_owned())
    );
}

#[tokio::test]
async fn b2_unblock_returns_removed_record_then_404() {
    let api = Api::new().await;
    api.block("+16505551234", json!({"reason": "spam", "scope": "all"}))
        .await;
    let removed = api
        .call(
            "DELETE",
            "/v1/blocks/+16505551234?scope=all",
            Some(json!({"reason": "resolved"})),
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(removed.body["reason"], "spam");
    let view = api.call("GET", "/v1/blocks/+16505551234", None).await;
    assert_eq!(view.body["blocks"], json!([]));

    let again = api
        .call(
            "DELETE",
            "/v1/blocks/+16505551234?scope=all",
            Some(json!({"reason": "resolved"})),
        )
        .await;
    assert_eq!(again.status, 404);
    assert_eq!(error_code(&again), "not_blocked");
    let history = api.history("+16505551234").await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["action"], "unblocked", "newest first");
    assert_eq!(history[0]["reason"], "resolved");
}

#[tokio::test]
async fn b3_block_audit_and_chats_commit_together() {
    let api = Api::new().await;
    let number = Subject::parse("+16505551234").unwrap();
    let line_a = PhoneNumberId::parse("106540352242922").unwrap();
    let line_b = PhoneNumberId::parse("106540352242923").unwrap();
    for line in [&line_a, &line_b] {
        api.stack
            .store
            .record_inbound(line, &number, Utc::now(), ChatStatus::Active, false)
            .await
            .unwrap();
    }

    let response = api
        .block(
            "+16505551234",
            json!({"reason": "spam", "scope": "106540352242922"}),
        )
        .await;
    assert_eq!(response.status, 201);
    let chat_a = api
        .stack
        .store
        .get_chat(&line_a, &number)
        .await
        .unwrap()
        .unwrap();
    let chat_b = api
        .stack
        .store
        .get_chat(&line_b, &number)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chat_a.status, ChatStatus::Blocked);
    assert_eq!(
        serde_json::to_value(chat_a.session_status).unwrap(),
        "cancelled"
    );
    assert_eq!(
        chat_b.status,
        ChatStatus::Active,
        "other business number untouched"
    );
    assert_eq!(serde_json::to_value(chat_b.session_status).unwrap(), "open");
    assert_eq!(api.history("+16505551234").await.len(), 1);

    api.call(
        "DELETE",
        "/v1/blocks/+16505551234?scope=106540352242922",
        Some(json!({"reason": "ok"})),
    )
    .await;
    let chat_a = api
        .stack
        .store
        .get_chat(&line_a, &number)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chat_a.status, ChatStatus::Active);
}

#[tokio::test]
async fn b3_a_failed_transaction_writes_nothing() {
    // The read path never touches the audit table, so pointing only that at
    // a missing table makes the transaction itself fail on its audit put,
    // after the block, stats and state actions were already part of it.
    let api = Api::new().await;
    let before = api.stack.raw_items().await;
    let mut tables = api.stack.tables.clone();
    tables.audit = format!("{}-missing", tables.audit);
    let broken = blocklist::store::Store::new(api.stack.client.clone(), tables);
    let app = block_api::App::new(broken, Authenticator::local_hs256(JWT_SECRET));
    let response = call_block_api(
        &app,
        ApiRequest::new("PUT", "/v1/blocks/+16505551234")
            .bearer(&api.token)
            .json(json!({"reason": "spam"})),
    )
    .await;
    assert_eq!(response.status, 503, "{:?}", response.body);
    assert_eq!(error_code(&response), "store_unavailable");
    assert_eq!(
        api.stack.raw_items().await,
        before,
        "no item of any table changed"
    );
    let view = api.call("GET", "/v1/blocks/+16505551234", None).await;
    assert_eq!(
        view.body["blocks"],
        json!([]),
        "no block without its audit event"
    );
    assert!(api.history("+16505551234").await.is_empty());
    let stats = api.call("GET", "/v1/stats", None).await;
    assert_eq!(stats.body["currently_blocked"], 0);
}

/// The writes of a block or unblock transaction, by what they write (B3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Write {
    /// The subject's `STATE` put, guarded by its version.
    State,
    /// The block item's put.
    BlockPut,
    /// The block item's delete (an unblock).
    BlockDelete,
    /// The contact put of a block with a contact.
    Contact,
    /// An audit event's put.
    Audit,
    /// The day counters' update (`blocked`, `unblocked`, …).
    DayCounters,
    /// The currently-blocked count's update.
    BlockedCount,
    /// A chat's status update.
    Chat,
}

/// What one action of a `TransactWriteItems` body writes.
fn write_of(action: &Value, tables: &Tables) -> Option<Write> {
    let (kind, body) = action.as_object()?.iter().next()?;
    let table = body["TableName"].as_str()?;
    let sk = body["Item"]["sk"]["S"]
        .as_str()
        .or_else(|| body["Key"]["sk"]["S"].as_str())
        .unwrap_or_default();
    let blocklist = table == tables.blocklist;
    Some(match kind.as_str() {
        "Put" if blocklist && sk == "STATE" => Write::State,
        "Put" if blocklist && sk.starts_with("B#") => Write::BlockPut,
        "Put" if blocklist && sk == "CONTACT" => Write::Contact,
        "Delete" if blocklist && sk.starts_with("B#") => Write::BlockDelete,
        "Update" if blocklist && sk.starts_with("D#") => Write::DayCounters,
        "Update" if blocklist && sk == "C" => Write::BlockedCount,
        "Put" if table == tables.audit => Write::Audit,
        "Update" if table == tables.chats => Write::Chat,
        _ => return None,
    })
}

/// Gives the first action of a transaction that writes `target` a
/// condition no item meets, so that DynamoDB cancels the transaction on
/// that action. Returns whether there was one.
fn fail_first(body: &mut Value, tables: &Tables, target: Write) -> bool {
    let Some(actions) = body["TransactItems"].as_array_mut() else {
        return false;
    };
    let Some(action) = actions
        .iter_mut()
        .find(|a| write_of(a, tables) == Some(target))
    else {
        return false;
    };
    let Some((_, action)) = action.as_object_mut().and_then(|a| a.iter_mut().next()) else {
        return false;
    };
    let never = "attribute_exists(pk) AND attribute_not_exists(pk)";
    let condition = match action["ConditionExpression"].as_str() {
        Some(existing) => format!("({existing}) AND {never}"),
        None => never.to_owned(),
    };
    action["ConditionExpression"] = json!(condition);
    true
}

/// Runs `request` with the transaction's write `target` failing in
/// DynamoDB on every attempt, and checks that the call fails, that the
/// failing transaction held all of `writes`, and that no item of any table
/// changed; then runs it again without the failure and returns its answer.
async fn fail_each_attempt_on(
    api: &Api,
    target: Write,
    writes: &[Write],
    request: ApiRequest,
) -> integration_tests::ApiResponse {
    let before = api.stack.raw_items().await;
    let relay = DynamoRelay::start(&endpoint());
    let tables = api.stack.tables.clone();
    relay.rewrite(move |operation, body| {
        operation == "TransactWriteItems" && fail_first(body, &tables, target)
    });
    let app = block_api::App::new(
        api.stack.store_via(&relay),
        Authenticator::local_hs256(JWT_SECRET),
    );
    let response = call_block_api(&app, request.clone()).await;
    assert_eq!(response.status, 409, "{target:?}: {:?}", response.body);
    assert_eq!(error_code(&response), "conflict", "{target:?}");

    let transactions: Vec<_> = relay
        .calls()
        .into_iter()
        .filter(|c| c.operation == "TransactWriteItems")
        .collect();
    assert!(
        !transactions.is_empty(),
        "{target:?}: the change wrote no transaction"
    );
    for transaction in &transactions {
        assert!(
            transaction.rewritten,
            "{target:?}: a transaction without that write: {:?}",
            transaction.body
        );
        let mut held: Vec<Write> = transaction.body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| write_of(a, &api.stack.tables))
            .collect();
        held.sort();
        held.dedup();
        assert_eq!(
            held, writes,
            "{target:?}: every write of the change in the one transaction"
        );
    }
    assert_eq!(
        api.stack.raw_items().await,
        before,
        "{target:?} failed: no item of any table changed"
    );

    // Without the failure the same call goes through: it was the only
    // obstacle.
    relay.stop_rewriting();
    let response = call_block_api(&app, request).await;
    assert_ne!(
        api.stack.raw_items().await,
        before,
        "{target:?}: the call without the failure writes"
    );
    response
}

/// A number with a chat on line A and none blocked yet, on fresh tables.
async fn number_with_a_chat() -> Api {
    let api = Api::new().await;
    api.stack.chat_with(LINE_A, NUMBER).await;
    api
}

#[tokio::test]
async fn b3_any_write_of_a_block_failing_writes_nothing_in_any_table() {
    const WRITES: [Write; 7] = [
        Write::State,
        Write::BlockPut,
        Write::Contact,
        Write::Audit,
        Write::DayCounters,
        Write::BlockedCount,
        Write::Chat,
    ];
    // Each write failing in turn, each on its own tables, concurrently.
    join_all(WRITES.map(|target| async move {
        let api = number_with_a_chat().await;
        let request = ApiRequest::new("PUT", &format!("/v1/blocks/{NUMBER}"))
            .bearer(&api.token)
            .json(json!({
                "reason": "spam",
                "scope": LINE_A,
                "contact": {"name": "Sheena Nelson"}
            }));
        let response = fail_each_attempt_on(&api, target, &WRITES, request).await;
        assert_eq!(response.status, 201, "{target:?}: {:?}", response.body);
        let actions: Vec<Value> = api
            .history(NUMBER)
            .await
            .iter()
            .map(|e| e["action"].clone())
            .collect();
        assert_eq!(actions.len(), 2, "{target:?}: {actions:?}");
        assert!(
            actions.contains(&json!("blocked")) && actions.contains(&json!("contact_updated")),
            "{target:?}: {actions:?}"
        );
    }))
    .await;
}

#[tokio::test]
async fn b3_any_write_of_an_unblock_failing_writes_nothing_in_any_table() {
    const WRITES: [Write; 6] = [
        Write::State,
        Write::BlockDelete,
        Write::Audit,
        Write::DayCounters,
        Write::BlockedCount,
        Write::Chat,
    ];
    join_all(WRITES.map(|target| async move {
        let api = number_with_a_chat().await;
        let blocked = api
            .block(NUMBER, json!({"reason": "spam", "scope": LINE_A}))
            .await;
        assert_eq!(blocked.status, 201, "{:?}", blocked.body);
        let request = ApiRequest::new("DELETE", &format!("/v1/blocks/{NUMBER}?scope={LINE_A}"))
            .bearer(&api.token)
            .json(json!({"reason": "resolved"}));
        let response = fail_each_attempt_on(&api, target, &WRITES, request).await;
        assert_eq!(response.status, 200, "{target:?}: {:?}", response.body);
        let history = api.history(NUMBER).await;
        assert_eq!(history.len(), 2, "{target:?}: {history:?}");
        assert_eq!(history[0]["action"], "unblocked", "{target:?}");
    }))
    .await;
}

#[tokio::test]
async fn b4_block_is_visible_to_the_next_read_at_once() {
    let api = Api::new().await;
    api.block("+16505551234", json!({"reason": "spam", "scope": "all"}))
        .await;
    let record = api
        .stack
        .store
        .load_subject(&Subject::parse("+16505551234").unwrap())
        .await
        .unwrap();
    assert_eq!(record.blocks.len(), 1);
    api.call(
        "DELETE",
        "/v1/blocks/+16505551234",
        Some(json!({"reason": "ok"})),
    )
    .await;
    let record = api
        .stack
        .store
        .load_subject(&Subject::parse("+16505551234").unwrap())
        .await
        .unwrap();
    assert!(record.blocks.is_empty());
}

/// Blocks `number` on `count` business numbers from `first` on, one at a
/// time: blocks of one number are changes of one version.
async fn block_on_lines(api: &Api, number: &str, first: u64, count: u64) {
    for scope in first..first + count {
        let put = api
            .block(
                number,
                json!({"reason": "spam", "scope": scope.to_string()}),
            )
            .await;
        assert_eq!(put.status, 201, "{:?}", put.body);
    }
}

/// A block API on `api`'s tables whose store goes through a relay that
/// makes every overflow transaction of a change (the one whose first action
/// checks the subject's `STATE` version) find another version, as when a
/// newer change committed in between; with the relay (kept alive by the
/// caller) and the count of guards it changed.
fn superseding_app(
    api: &Api,
) -> (
    block_api::App,
    DynamoRelay,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let relay = DynamoRelay::start(&endpoint());
    let guards = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = guards.clone();
    relay.rewrite(move |operation, body| {
        let Some(first) = body["TransactItems"].get_mut(0) else {
            return false;
        };
        if operation != "TransactWriteItems" || first.get("ConditionCheck").is_none() {
            return false;
        }
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        first["ConditionCheck"]["ExpressionAttributeValues"][":version"] = json!({"N": "999"});
        true
    });
    let app = block_api::App::new(
        api.stack.store_via(&relay),
        Authenticator::local_hs256(JWT_SECRET),
    );
    (app, relay, guards)
}

/// `method path` with `body` on `app`, as an operator with read and write.
async fn ops_call(
    app: &block_api::App,
    method: &str,
    path: &str,
    body: Value,
) -> integration_tests::ApiResponse {
    call_block_api(
        app,
        ApiRequest::new(method, path)
            .bearer(&integration_tests::token(
                "ops",
                &["blocklist:read", "blocklist:write"],
            ))
            .json(body),
    )
    .await
}

/// Chats of `number` on `count` business numbers, all active.
async fn chats_on_many_lines(api: &Api, number: &str, count: u64) -> Vec<PhoneNumberId> {
    let lines: Vec<PhoneNumberId> = (0..count)
        .map(|i| PhoneNumberId::parse(&format!("{}", 106_540_352_240_000 + i)).unwrap())
        .collect();
    let subject = Subject::parse(number).unwrap();
    join_all(lines.iter().map(|line| {
        api.stack
            .store
            .record_inbound(line, &subject, Utc::now(), ChatStatus::Active, false)
    }))
    .await
    .into_iter()
    .for_each(|r| r.unwrap());
    lines
}

async fn chat_statuses(api: &Api, number: &str, lines: &[PhoneNumberId]) -> Vec<ChatStatus> {
    let subject = Subject::parse(number).unwrap();
    let mut statuses = Vec::new();
    for line in lines {
        let chat = api.stack.store.get_chat(line, &subject).await.unwrap();
        statuses.push(chat.expect("chat").status);
    }
    statuses
}

/// B3, S3: a number with more chats than one transaction holds (150 here)
/// has every chat follow its block and unblock; the chat updates beyond the
/// transaction are written under the version the change wrote, and are
/// dropped (the newer change's own updates count) when that guard fails.
#[tokio::test]
async fn b3_s3_chats_beyond_one_transaction_follow_the_change_under_its_version() {
    let api = Api::new().await;
    let number = "+16505551234";
    let lines = chats_on_many_lines(&api, number, 150).await;
    block_and_expect_every_chat_blocked(&api, number, &lines).await;

    // The unblock's overflow transaction finds another version: its chat
    // updates are not written.
    let (app, _relay, guards) = superseding_app(&api);
    let unblock = ops_call(
        &app,
        "DELETE",
        &format!("/v1/blocks/{number}"),
        json!({"reason": "resolved"}),
    )
    .await;
    assert_eq!(unblock.status, 200, "{:?}", unblock.body);
    assert_eq!(
        guards.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one overflow batch"
    );
    let statuses = chat_statuses(&api, number, &lines).await;
    let active = statuses
        .iter()
        .filter(|s| **s == ChatStatus::Active)
        .count();
    // The transaction also holds the unblock's own writes and the removal
    // of its index items (S2), which come before chat status.
    assert!(
        (75..100).contains(&active),
        "the transaction's chats follow, the guarded rest does not: {active} of 150"
    );

    // Without the interference, the rest follows too (the unblocked chats
    // included).
    block_and_expect_every_chat_blocked(&api, number, &lines).await;
}

async fn block_and_expect_every_chat_blocked(api: &Api, number: &str, lines: &[PhoneNumberId]) {
    let put = api.block(number, json!({"reason": "spam"})).await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    let statuses = chat_statuses(api, number, lines).await;
    assert!(
        statuses.iter().all(|s| *s == ChatStatus::Blocked),
        "{statuses:?}"
    );
}

/// S3 (#12): a contact change of a number blocked on more business numbers
/// than one transaction holds (each block's search fields are rewritten
/// with it) commits, and the search fields of every block follow.
#[tokio::test]
async fn b10_s3_contact_change_of_a_number_blocked_on_100_lines_is_written_whole() {
    const LINES: u64 = 100;
    let api = Api::new().await;
    let number = "+16505551299";
    block_on_lines(&api, number, 106_540_352_250_000, LINES).await;
    let contact = api
        .call(
            "PUT",
            &format!("/v1/contacts/{number}"),
            Some(json!({"name": "Wilhelmina Overflow", "category": "wholesale"})),
        )
        .await;
    assert!(
        [200, 201].contains(&contact.status),
        "{} blocks, one contact change: {:?}",
        LINES,
        contact.body
    );
    let mut found = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut uri = "/v1/blocks?q=wilhelmina&category=wholesale&limit=200".to_owned();
        if let Some(cursor) = &cursor {
            uri.push_str(&format!("&cursor={cursor}"));
        }
        let page = api.call("GET", &uri, None).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        found += page.body["items"].as_array().map_or(0, Vec::len);
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(found as u64, LINES, "every block carries the new contact");
    let history = api
        .call(
            "GET",
            &format!("/v1/numbers/{number}/history?limit=1"),
            None,
        )
        .await;
    assert_eq!(
        history.body["items"][0]["action"], "contact_updated",
        "{:?}",
        history.body
    );
}

/// S2, S3: a contact change too large for one transaction whose rest is
/// superseded (its guard finds a newer version) still removes the index
/// items of the old name: a search for it finds nothing, rather than
/// blocks whose contact no longer matches.
#[tokio::test]
async fn s2_s3_a_superseded_contact_change_leaves_no_index_item_of_the_old_name() {
    const LINES: u64 = 24;
    let api = Api::new().await;
    let number = "+16505551288";
    let contact = api
        .call(
            "PUT",
            &format!("/v1/contacts/{number}"),
            Some(json!({"name": "Wilhelmina Quast"})),
        )
        .await;
    assert!([200, 201].contains(&contact.status), "{:?}", contact.body);
    block_on_lines(&api, number, 106_540_352_260_000, LINES).await;
    let found = |body: &serde_json::Value| body["items"].as_array().map_or(0, Vec::len);
    let before = api
        .call("GET", "/v1/blocks?q=wilhelmina&limit=100", None)
        .await;
    assert_eq!(found(&before.body), LINES as usize, "{:?}", before.body);

    // Every overflow transaction of the rename finds another version, as
    // when a newer change committed in between.
    let (app, _relay, guards) = superseding_app(&api);
    let rename = ops_call(
        &app,
        "PUT",
        &format!("/v1/contacts/{number}"),
        json!({"name": "Zed Zulu"}),
    )
    .await;
    assert!([200, 201].contains(&rename.status), "{:?}", rename.body);
    assert!(
        guards.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the rename overflowed its transaction"
    );
    let after = api
        .call("GET", "/v1/blocks?q=wilhelmina&limit=100", None)
        .await;
    assert_eq!(after.status, 200, "{:?}", after.body);
    assert_eq!(
        found(&after.body),
        0,
        "no block is found by a name it no longer has: {:?}",
        after.body
    );
}
