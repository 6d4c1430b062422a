//! B13, B44: `block-expiry`'s sweep removes temporary blocks at their end
//! as an unblock does, and an automatic block outlasts a temporary one.

use chrono::{DateTime, Duration, Utc};
use integration_tests::TestStack;
use serde_json::{Value, json};

use crate::block_api::Api;
use crate::wa_blocked::{deliver_ok, failure, stored};

const LINE: &str = "106540352242922";
const OTHER_LINE: &str = "106540352242923";
const NUMBER: &str = "+16505551234";

/// Two hours from now: past the hour-long temporary blocks below.
fn later() -> DateTime<Utc> {
    Utc::now() + Duration::hours(2)
}

fn in_an_hour() -> String {
    (Utc::now() + Duration::hours(1)).to_rfc3339()
}

async fn sweep(stack: &TestStack, now: fn() -> DateTime<Utc>) -> block_expiry::Summary {
    let mut app = block_expiry::App::new(stack.store.clone());
    app.now = now;
    block_expiry::sweep(&app).await.expect("a sweep succeeds")
}

async fn chat_on(api: &Api, line: &str) {
    api.stack.chat_with(line, NUMBER).await;
}

async fn get(api: &Api, uri: &str) -> Value {
    let response = api.call("GET", uri, None).await;
    assert_eq!(response.status, 200, "{uri}: {:?}", response.body);
    response.body
}

fn today(stats: &Value) -> &Value {
    stats["days"]
        .as_array()
        .and_then(|days| days.last())
        .expect("a day of stats")
}

#[tokio::test]
async fn b13_the_sweep_removes_an_expired_block_with_its_event_chats_and_counters() {
    let mut api = Api::new().await;
    chat_on(&api, LINE).await;
    chat_on(&api, OTHER_LINE).await;
    let temporary = api
        .block(
            NUMBER,
            json!({"reason": "cool off", "scope": "all", "expires_at": in_an_hour()}),
        )
        .await;
    assert_eq!(temporary.status, 201, "{:?}", temporary.body);
    let blocked = get(&api, "/v1/chats?status=blocked").await;
    assert_eq!(blocked["items"].as_array().unwrap().len(), 2, "{blocked}");
    assert_eq!(get(&api, "/v1/stats").await["currently_blocked"], 1);

    // Before its end the sweep leaves it alone.
    assert_eq!(
        sweep(&api.stack, Utc::now).await,
        block_expiry::Summary::default()
    );
    assert_eq!(
        get(&api, &format!("/v1/blocks/{NUMBER}")).await["blocks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Two hours on, the sweep removes it as an unblock would.
    let swept = sweep(&api.stack, later).await;
    assert_eq!((swept.expired, swept.skipped, swept.more), (1, 0, false));
    api.app.now = later;
    let view = get(&api, &format!("/v1/blocks/{NUMBER}")).await;
    assert_eq!(view["blocks"], json!([]), "{view}");
    let statuses: Vec<&Value> = view["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["status"])
        .collect();
    assert_eq!(statuses, [&json!("active"), &json!("active")], "{view}");
    let blocked = get(&api, "/v1/chats?status=blocked").await;
    assert_eq!(blocked["items"], json!([]), "{blocked}");
    let active = get(&api, "/v1/chats?status=active").await;
    assert_eq!(active["items"].as_array().unwrap().len(), 2, "{active}");
    let stats = get(&api, "/v1/stats").await;
    assert_eq!(stats["currently_blocked"], 0, "{stats}");
    assert_eq!(today(&stats)["expired"], 1, "{stats}");
    assert_eq!(today(&stats)["unblocked"], 0, "an expiry is not an unblock");

    let history = api.history(NUMBER).await;
    let expired: Vec<&Value> = history
        .iter()
        .filter(|e| e["action"] == "expired")
        .collect();
    assert_eq!(expired.len(), 1, "{history:?}");
    assert_eq!(expired[0]["actor"], "expiry");
    assert_eq!(expired[0]["scope"], "all");
    assert_eq!(expired[0]["details"]["before"]["reason"], "cool off");
    let feed = get(&api, "/v1/audit?action=expired").await;
    assert_eq!(feed["items"].as_array().unwrap().len(), 1, "{feed}");

    // Nothing is left in the expiry index: another sweep finds nothing.
    assert_eq!(
        sweep(&api.stack, later).await,
        block_expiry::Summary::default()
    );
    assert_eq!(api.history(NUMBER).await.len(), history.len());
}

#[tokio::test]
async fn b13_only_due_temporary_blocks_go_and_a_chat_another_block_covers_stays_blocked() {
    let mut api = Api::new().await;
    chat_on(&api, LINE).await;
    chat_on(&api, OTHER_LINE).await;
    // Permanent on one line, temporary everywhere; another number's block
    // ends in three hours.
    for body in [
        json!({"reason": "abuse", "scope": LINE}),
        json!({"reason": "cool off", "scope": "all", "expires_at": in_an_hour()}),
    ] {
        let response = api.block(NUMBER, body).await;
        assert_eq!(response.status, 201, "{:?}", response.body);
    }
    let three_hours = (Utc::now() + Duration::hours(3)).to_rfc3339();
    let response = api
        .block(
            "+16505550000",
            json!({"reason": "cool off", "expires_at": three_hours}),
        )
        .await;
    assert_eq!(response.status, 201);

    let swept = sweep(&api.stack, later).await;
    assert_eq!(swept.expired, 1, "{swept:?}");
    api.app.now = later;
    let view = get(&api, &format!("/v1/blocks/{NUMBER}")).await;
    let scopes: Vec<&Value> = view["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["scope"])
        .collect();
    assert_eq!(scopes, [&json!(LINE)], "the permanent block stays: {view}");
    for chat in view["chats"].as_array().unwrap() {
        let expected = if chat["phone_number_id"] == LINE {
            "blocked"
        } else {
            "active"
        };
        assert_eq!(chat["status"], expected, "{chat}");
    }
    let stats = get(&api, "/v1/stats").await;
    assert_eq!(stats["currently_blocked"], 2, "{stats}");
    let other = get(&api, "/v1/blocks/+16505550000").await;
    assert_eq!(other["blocks"].as_array().unwrap().len(), 1, "not due yet");
}

#[tokio::test]
async fn b13_an_unblocked_or_replaced_temporary_block_is_not_swept() {
    let api = Api::new().await;
    for number in ["+16505550001", "+16505550002"] {
        let response = api
            .block(
                number,
                json!({"reason": "cool off", "expires_at": in_an_hour()}),
            )
            .await;
        assert_eq!(response.status, 201);
    }
    let unblocked = api
        .call(
            "DELETE",
            "/v1/blocks/+16505550001",
            Some(json!({"reason": "sorted out"})),
        )
        .await;
    assert_eq!(unblocked.status, 200);
    // Made permanent: unblocked and blocked again without an end.
    api.call(
        "DELETE",
        "/v1/blocks/+16505550002",
        Some(json!({"reason": "made permanent"})),
    )
    .await;
    let permanent = api
        .block("+16505550002", json!({"reason": "for good"}))
        .await;
    assert_eq!(permanent.status, 201);

    assert_eq!(
        sweep(&api.stack, later).await,
        block_expiry::Summary::default()
    );
    let view = get(&api, "/v1/blocks/+16505550002").await;
    assert_eq!(view["blocks"][0]["reason"], "for good");
    for number in ["+16505550001", "+16505550002"] {
        let history = api.history(number).await;
        assert!(
            history.iter().all(|e| e["action"] != "expired"),
            "{history:?}"
        );
    }
}

#[tokio::test]
async fn b44_an_automatic_block_outlasts_a_temporary_manual_block_in_its_scope() {
    let stack = TestStack::new().await;
    let mut api = Api::on(&stack);
    let temporary = api
        .block(
            NUMBER,
            json!({"reason": "cool off", "scope": LINE, "expires_at": in_an_hour()}),
        )
        .await;
    assert_eq!(temporary.status, 201);
    // WhatsApp cannot deliver to the number: wa-blocked blocks it.
    let record = stored(&stack, &failure(131026, Utc::now(), "wamid.B44"), "44").await;
    deliver_ok(&stack, vec![record]).await;

    let view = get(&api, &format!("/v1/blocks/{NUMBER}")).await;
    let blocks = view["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{view}");
    assert_eq!(blocks[0]["source"], "auto");
    assert_eq!(blocks[0]["expires_at"], Value::Null, "permanent: {view}");
    let history = api.history(NUMBER).await;
    let auto = history
        .iter()
        .find(|e| e["action"] == "auto_blocked")
        .expect("an auto_blocked event");
    assert_eq!(
        auto["details"]["before"]["reason"], "cool off",
        "the event names the temporary block it outlasts: {auto}"
    );

    // When the manual block would have ended, the number is still blocked.
    assert_eq!(sweep(&stack, later).await, block_expiry::Summary::default());
    api.app.now = later;
    let listed = get(&api, "/v1/blocks").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["items"][0]["source"], "auto");
    assert_eq!(get(&api, "/v1/stats").await["currently_blocked"], 1);
}

/// A temporary block as releases before the expiry index stored it: no
/// index keys.
pub(crate) async fn strip_expiry_keys(stack: &TestStack, subject_pk: &str, scope: &str) {
    stack
        .client
        .update_item()
        .table_name(&stack.tables.blocklist)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(subject_pk.into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("B#{scope}")),
        )
        .update_expression("REMOVE gsi2pk, gsi2sk")
        .send()
        .await
        .expect("the block item");
}

#[tokio::test]
async fn b13_a_backfill_indexes_temporary_blocks_stored_before_the_index() {
    let api = Api::new().await;
    for (number, body) in [
        (
            NUMBER,
            json!({"reason": "cool off", "expires_at": in_an_hour()}),
        ),
        ("+16505550000", json!({"reason": "for good"})),
    ] {
        let response = api.block(number, body).await;
        assert_eq!(response.status, 201);
    }
    strip_expiry_keys(&api.stack, &format!("N#{NUMBER}"), "all").await;
    assert_eq!(
        sweep(&api.stack, later).await,
        block_expiry::Summary::default(),
        "not in the index: not swept"
    );

    let app = block_expiry::App::new(api.stack.store.clone());
    let run = block_expiry::handle(&app, json!({"backfill": {}}))
        .await
        .expect("a backfill run");
    assert_eq!(
        run,
        json!({"indexed": 1, "next": null}),
        "only the temporary block"
    );
    let again = block_expiry::handle(&app, json!({"backfill": {"shard": 0}}))
        .await
        .expect("a backfill run");
    assert_eq!(again["indexed"], 0, "indexed once");

    let swept = sweep(&api.stack, later).await;
    assert_eq!(swept.expired, 1, "{swept:?}");
    let bad = block_expiry::handle(&app, json!({"backfill": {"shard": "x"}})).await;
    assert!(
        matches!(bad, Err(block_expiry::Error::InvalidEvent(_))),
        "{bad:?}"
    );
}
