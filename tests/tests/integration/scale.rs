//! S1: no hot key. A mixed workload (a bulk block, deliveries from allowed
//! and blocked senders, sends to allowed and blocked recipients) runs
//! through the real handlers; then the tables show how its writes spread
//! over partition keys. A counter's value is how many writes its item took,
//! and a listing item is one write to its index partition, so both measure
//! the per-key write share straight from DynamoDB Local.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::{Value, json};

use crate::identity::{LINE_A, World, contact, delivery, text_message};

/// People in the workload: blocked in bulk, then half of them write in, and
/// as many others who are not blocked.
const BLOCKED: usize = 96;

fn number(i: usize) -> String {
    format!("+1650555{i:04}")
}

/// The largest share of `counts` that one key holds.
fn largest_share(counts: &BTreeMap<String, u64>) -> f64 {
    let total: u64 = counts.values().sum();
    let largest = counts.values().copied().max().unwrap_or(0);
    largest as f64 / total.max(1) as f64
}

fn s<'a>(item: &'a Value, attribute: &str) -> Option<&'a str> {
    item[attribute]["S"].as_str()
}

fn count(item: &Value, attribute: &str) -> u64 {
    item[attribute]["N"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Asserts that `counts` is spread: many keys, none with more than a
/// quarter of the writes (16 shards give about a sixteenth each).
fn assert_spread(what: &str, counts: &BTreeMap<String, u64>) {
    assert!(
        counts.len() >= 8,
        "{what}: all writes on {} partition key(s): {counts:?}",
        counts.len()
    );
    let share = largest_share(counts);
    assert!(
        share <= 0.25,
        "{what}: one partition key takes {:.0} % of the writes: {counts:?}",
        share * 100.0
    );
}

#[tokio::test]
async fn s1_no_partition_key_takes_the_writes_of_every_change_or_message() {
    let world = World::new().await;
    let blocked: Vec<String> = (0..BLOCKED).map(number).collect();
    let batch = world
        .api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({"action": "block", "numbers": blocked, "reason": "spam"})),
        )
        .await;
    assert_eq!(batch.status, 200, "{:?}", batch.body);

    // Messages from half of the blocked people (suppressed, audited and
    // counted) and from as many allowed people (forwarded, chats created).
    let now = Utc::now().timestamp();
    for round in 0..4 {
        let mut contacts = Vec::new();
        let mut messages = Vec::new();
        for i in (round * 24)..((round + 1) * 24) {
            for person in [i / 2, BLOCKED + i] {
                let wa_id = number(person).trim_start_matches('+').to_owned();
                contacts.push(contact(Some(&wa_id), None));
                let mut message =
                    text_message(Some(&wa_id), None, &format!("wamid.S1{round}{person:05}"));
                message["timestamp"] = json!(now.to_string());
                messages.push(message);
            }
        }
        world.deliver(&delivery(contacts, messages, vec![])).await;
    }
    // Sends to blocked people (refused, audited, counted) and allowed ones.
    for i in 0..32 {
        let to = number(if i % 2 == 0 { i } else { BLOCKED + i });
        let body = json!({
            "messaging_product": "whatsapp",
            "to": to,
            "type": "text",
            "text": {"body": "hi"}
        });
        let sent = world.send(&body.to_string()).await;
        assert!(
            [200, 403].contains(&sent.status),
            "send to {to}: {} {}",
            sent.status,
            String::from_utf8_lossy(&sent.bytes)
        );
    }

    let items = world.stack().raw_items().await;
    let mut blocks_index = BTreeMap::new();
    let mut chats_index = BTreeMap::new();
    let mut audit_index = BTreeMap::new();
    let mut counters: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for item in &items["Blocklist"] {
        let (Some(pk), Some(sk)) = (s(item, "pk"), s(item, "sk")) else {
            continue;
        };
        if sk.starts_with("B#") {
            *blocks_index
                .entry(s(item, "gsi1pk").unwrap_or("(none)").to_owned())
                .or_default() += 1;
        }
        for counter in ["blocked", "inbound_suppressed", "outbound_refused"] {
            let by = count(item, counter);
            if by > 0 {
                *counters
                    .entry(counter)
                    .or_default()
                    .entry(pk.to_owned())
                    .or_default() += by;
            }
        }
        let by = count(item, "blocked_numbers");
        if by > 0 {
            *counters
                .entry("blocked_numbers")
                .or_default()
                .entry(pk.to_owned())
                .or_default() += by;
        }
    }
    for item in &items["Chats"] {
        *chats_index
            .entry(s(item, "gsi1pk").unwrap_or("(none)").to_owned())
            .or_default() += 1;
    }
    for item in &items["Audit"] {
        *audit_index
            .entry(s(item, "gsi1pk").unwrap_or("(none)").to_owned())
            .or_default() += 1;
    }

    assert_eq!(blocks_index.values().sum::<u64>(), BLOCKED as u64);
    assert!(
        chats_index.values().sum::<u64>() >= 96,
        "chats of the forwarded senders: {chats_index:?}"
    );
    assert!(
        audit_index.values().sum::<u64>() >= (BLOCKED + 48 + 16) as u64,
        "blocks, suppressions and refusals are audited: {audit_index:?}"
    );
    assert_spread("block listing index (B7)", &blocks_index);
    assert_spread("chat listing index (B11)", &chats_index);
    assert_spread("audit feed index of the day (B8)", &audit_index);
    for counter in [
        "blocked",
        "inbound_suppressed",
        "outbound_refused",
        "blocked_numbers",
    ] {
        let by_key = counters.get(counter).cloned().unwrap_or_default();
        assert!(!by_key.is_empty(), "{counter} was never counted");
        assert_spread(&format!("counter {counter} (B9)"), &by_key);
    }
    // The counts still add up across the shards.
    assert_eq!(
        counters["blocked"].values().sum::<u64>(),
        BLOCKED as u64,
        "{counters:?}"
    );
    assert_eq!(
        counters["inbound_suppressed"].values().sum::<u64>(),
        48,
        "{counters:?}"
    );
    assert_eq!(
        counters["outbound_refused"].values().sum::<u64>(),
        16,
        "{counters:?}"
    );
}

/// The attributes the template projects into the Chats index: what a
/// write must leave alone for the index not to be rewritten.
fn chats_index_projection() -> Option<Vec<String>> {
    let template: serde_yaml::Value =
        serde_yaml::from_str(&wa_dev::tables::template_text()).expect("template.yaml");
    let index = &template["Resources"]["ChatsTable"]["Properties"]["GlobalSecondaryIndexes"][0];
    let keys = ["pk", "sk", "gsi1pk", "gsi1sk"].map(str::to_owned).to_vec();
    match index["Projection"]["ProjectionType"].as_str() {
        Some("KEYS_ONLY") => Some(keys),
        Some("INCLUDE") => Some(
            keys.into_iter()
                .chain(
                    index["Projection"]["NonKeyAttributes"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(str::to_owned)),
                )
                .collect(),
        ),
        _ => None,
    }
}

#[tokio::test]
async fn s1_a_message_on_a_chat_leaves_the_chats_index_alone() {
    let world = World::new().await;
    let wa_id = "16505559001";
    let chat_item = || async {
        let items = world.stack().raw_items().await;
        items["Chats"]
            .iter()
            .find(|item| s(item, "sk") == Some(LINE_A))
            .cloned()
            .expect("the chat exists")
    };
    let message = |id: &str, at: i64| {
        let mut message = text_message(Some(wa_id), None, id);
        message["timestamp"] = json!(at.to_string());
        delivery(vec![contact(Some(wa_id), None)], vec![message], vec![])
    };
    let now = Utc::now().timestamp();
    world.deliver(&message("wamid.S1CHAT1", now - 60)).await;
    let before = chat_item().await;
    world.deliver(&message("wamid.S1CHAT2", now)).await;
    let after = chat_item().await;
    assert_ne!(
        before["last_inbound_at"], after["last_inbound_at"],
        "the second message is recorded on the chat"
    );

    let projected = chats_index_projection()
        .expect("the Chats index projects only what listings need, not ALL (S1)");
    for attribute in &projected {
        assert_eq!(
            before[attribute.as_str()],
            after[attribute.as_str()],
            "a message rewrote the indexed attribute {attribute} of its chat"
        );
    }
    assert!(
        !projected.iter().any(|a| a == "last_inbound_at"),
        "the index holds a time every message changes: {projected:?}"
    );
}

/// S2: the chats of one business number, and the changes in the audit
/// feed, read about what they return, also when the same day holds a
/// flood: messages from 64 blocked people on one line (64 suppression
/// events) and from 64 allowed people on another (64 active chats).
#[tokio::test]
async fn s2_a_business_numbers_chats_and_the_changes_of_a_flood_day_read_what_they_return() {
    use integration_tests::{DynamoRelay, endpoint};

    const FLOOD: usize = 64;
    let world = World::new().await;
    let spammers: Vec<String> = (0..FLOOD).map(number).collect();
    let batch = world
        .api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({"action": "block", "numbers": spammers, "reason": "spam"})),
        )
        .await;
    assert_eq!(batch.status, 200, "{:?}", batch.body);
    for (line, first, prefix) in [(LINE_A, 0, "F"), (crate::identity::LINE_B, 1000, "A")] {
        let mut contacts = Vec::new();
        let mut messages = Vec::new();
        for person in first..first + FLOOD {
            let wa_id = number(person).trim_start_matches('+').to_owned();
            contacts.push(contact(Some(&wa_id), None));
            messages.push(text_message(
                Some(&wa_id),
                None,
                &format!("wamid.{prefix}{person:05}"),
            ));
        }
        world
            .deliver(&crate::identity::delivery_on(
                line,
                contacts,
                messages,
                vec![],
            ))
            .await;
    }
    // Two more changes among the flood's events.
    let changed = ["+447700900101", "+447700900202"];
    for subject in changed {
        world.block(subject, "all").await;
    }

    let relay = DynamoRelay::start(&endpoint());
    let api = world.api.via(&relay);
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let line_b = crate::identity::LINE_B;
    // (listing, items it lists, most items it may read). A first round
    // reads at most 2 items of each of the 32 index streams of a line's
    // chats (16 shards, 2 statuses); the changes of the day are one class
    // of audit events, read whole in one round.
    let cases = [
        (
            format!("/v1/chats?phone_number_id={line_b}&limit=5"),
            5,
            5 + 32,
        ),
        (
            format!("/v1/audit?since={today}&action=blocked&limit=200"),
            FLOOD + 2,
            FLOOD + 2 + 16,
        ),
        (
            format!("/v1/audit?since={today}&action=inbound_suppressed&limit=200"),
            FLOOD,
            FLOOD + 16,
        ),
    ];
    for (uri, listed, most) in cases {
        relay.reset();
        let response = api.call("GET", &uri, None).await;
        assert_eq!(response.status, 200, "{uri}: {:?}", response.body);
        let items = response.body["items"].as_array().unwrap();
        assert_eq!(items.len(), listed, "{uri}");
        let read = relay.items_read();
        assert!(read >= listed as u64, "{uri}: {read} items read");
        assert!(
            read <= most as u64,
            "{uri}: {read} items read for {listed} listed (at most {most})"
        );
        if uri.contains("action=blocked") {
            let subjects: Vec<&str> = items.iter().filter_map(|e| e["subject"].as_str()).collect();
            for subject in changed {
                assert!(subjects.contains(&subject), "{subject} in the feed");
            }
        }
    }
}

/// A relay in front of DynamoDB Local on which the first counter item a
/// transaction names (`STATS#…`) stays held by other transactions: every
/// transaction that names an item of its partition is cancelled with
/// `TransactionConflict`, as DynamoDB cancels one that meets another
/// transaction on an item. Returns the relay, that partition (once seen)
/// and the count of transactions cancelled.
fn relay_with_a_held_counter() -> (
    integration_tests::DynamoRelay,
    Arc<Mutex<Option<String>>>,
    Arc<AtomicUsize>,
) {
    let relay = integration_tests::DynamoRelay::start(&integration_tests::endpoint());
    let held: Arc<Mutex<Option<String>>> = Arc::default();
    let first = held.clone();
    let cancelled = relay.conflict_on(move |action| {
        let Some(pk) = action["Update"]["Key"]["pk"]["S"].as_str() else {
            return false;
        };
        if !pk.starts_with("STATS#") {
            return false;
        }
        let mut held = first.lock().unwrap();
        held.get_or_insert_with(|| pk.to_owned()) == pk
    });
    (relay, held, cancelled)
}

/// Asserts that the held counter of [`relay_with_a_held_counter`] was met
/// and that each of `expected` counters of the transaction DynamoDB Local
/// committed (not the ones the relay cancelled) went to another shard.
fn assert_moved_off_the_held_counter(
    (relay, held, cancelled): &(
        integration_tests::DynamoRelay,
        Arc<Mutex<Option<String>>>,
        Arc<AtomicUsize>,
    ),
    expected: usize,
) {
    assert!(
        cancelled.load(Ordering::SeqCst) >= 1,
        "the held shard was never met"
    );
    let held = held.lock().unwrap().clone().expect("a counter was named");
    let landed: Vec<String> = relay
        .calls()
        .into_iter()
        .filter(|call| call.operation == "TransactWriteItems")
        .map(|call| call.counter_partitions())
        .filter(|pks| !pks.contains(&held))
        .flatten()
        .collect();
    assert_eq!(landed.len(), expected, "{landed:?} beside {held}");
}

/// Today's count of `field` in `GET /v1/stats`, and the blocked count.
async fn today_and_blocked(world: &World, field: &str) -> (u64, u64) {
    let today = Utc::now().date_naive();
    let stats = world
        .api
        .call("GET", &format!("/v1/stats?from={today}&to={today}"), None)
        .await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    let day = stats.body["days"][0][field].as_u64().unwrap_or(0);
    (day, stats.body["currently_blocked"].as_u64().unwrap_or(0))
}

/// S1 with B23, B31 and B4: a day counter is one item that concurrent
/// transactions all add to, and DynamoDB cancels a transaction that meets
/// another one on an item (`TransactionConflict`): in a flood, every
/// delivery's suppressions meet the others' on the 16 counter shards. The
/// shards are interchangeable (a figure is their sum), so a transaction
/// cancelled on counters alone is written again at once with them on
/// another shard. Here one shard stays held all along: a suppression, a
/// refusal and a block on it were retried on that shard until they gave up
/// (503, and a 5xx for the block); each now lands elsewhere, counted once.
#[tokio::test]
async fn s1_a_counter_shard_other_transactions_hold_is_left_for_another() {
    let world = World::new().await;
    let spammer = "+16505550170";
    world.block(spammer, "all").await;
    let (suppressed_before, blocked_before) = today_and_blocked(&world, "inbound_suppressed").await;

    // A suppressed message.
    let held = relay_with_a_held_counter();
    let ingress = crate::webhook_ingress::app_for(
        world.stack().store_via(&held.0),
        Some(format!("{}/crm", world.ingress.crm.uri())),
    );
    let body = delivery(
        vec![],
        vec![text_message(Some("16505550170"), None, "wamid.S1HELD1")],
        vec![],
    );
    let request = integration_tests::ApiRequest::new("POST", "/webhook")
        .header(
            "x-hub-signature-256",
            &blocklist::meta::signature::sign(
                crate::webhook_ingress::APP_SECRET.as_bytes(),
                body.as_bytes(),
            ),
        )
        .raw_body(&body);
    let answer = integration_tests::read_response(
        webhook_ingress::handle(&ingress, request.to_lambda()).await,
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["suppressed"], 1, "{:?}", answer.body);
    assert_moved_off_the_held_counter(&held, 1);
    assert_eq!(world.events(spammer, "inbound_suppressed").await.len(), 1);
    assert_eq!(
        today_and_blocked(&world, "inbound_suppressed").await.0,
        suppressed_before + 1
    );
    assert!(world.forwarded_message_ids().await.is_empty());

    // A refused send.
    let held = relay_with_a_held_counter();
    let mut proxy = crate::send_proxy::app_for(
        world.stack().store_via(&held.0),
        crate::send_proxy::config(&world.graph.uri(), std::time::Duration::from_secs(5)),
    );
    proxy.record_refusal_within = std::time::Duration::from_secs(2);
    let refused_before = today_and_blocked(&world, "outbound_refused").await.0;
    let send = json!({"messaging_product": "whatsapp", "to": spammer, "type": "text", "text": {"body": "hi"}});
    let request = integration_tests::ApiRequest::new("POST", &format!("/v1/{LINE_A}/messages"))
        .bearer(&world.send_token)
        .header("content-type", "application/json")
        .raw_body(&send.to_string());
    let sent = crate::send_proxy::raw(send_proxy::handle(&proxy, request.to_lambda()).await);
    assert_eq!(sent.status, 403, "{}", String::from_utf8_lossy(&sent.bytes));
    assert_moved_off_the_held_counter(&held, 1);
    assert_eq!(world.events(spammer, "outbound_refused").await.len(), 1);
    assert_eq!(
        today_and_blocked(&world, "outbound_refused").await.0,
        refused_before + 1
    );
    assert!(world.graph_requests().await.is_empty(), "nothing is sent");

    // A block: its day counter and the blocked count share a shard.
    let held = relay_with_a_held_counter();
    let blocked_day_before = today_and_blocked(&world, "blocked").await.0;
    let answer = world
        .api
        .via(&held.0)
        .block("+16505550171", json!({"reason": "spam"}))
        .await;
    assert!(
        [200, 201].contains(&answer.status),
        "{} {:?}",
        answer.status,
        answer.body
    );
    assert_moved_off_the_held_counter(&held, 2);
    assert_eq!(
        today_and_blocked(&world, "blocked").await,
        (blocked_day_before + 1, blocked_before + 1)
    );
}

/// S3, B31: a refusal whose write landed under a moved counter's token
/// but whose answer was lost is retried by the send proxy with the same
/// event id. The retry sends the same moves under the same tokens (one
/// token always names the same writes), and one that reaches DynamoDB as
/// another request finds its event written: recorded, once. Before, the
/// move was drawn again (another write under a used token), and a retry
/// that found the event written answered 503, so the caller's own retry
/// recorded and counted a second refusal.
#[tokio::test]
async fn s3_b31_a_refusal_written_after_a_move_is_recorded_once_whatever_the_retries() {
    use blocklist::model::{Actor, AuditEvent, PhoneNumberId, Scope};
    use blocklist::outbound::Refusal;
    let world = World::new().await;
    let refused_before = today_and_blocked(&world, "outbound_refused").await.0;
    let held = relay_with_a_held_counter();
    let moving = world.stack().store_via(&held.0);
    let now = Utc::now();
    let event_id = AuditEvent::new_id(now);
    let subject = blocklist::Subject::parse("+16505550172").unwrap();
    let business = PhoneNumberId::parse(LINE_A).unwrap();
    let refusal = Refusal::Blocked {
        scope: Scope::All,
        rule: None,
    };
    let actor = Actor::system("send-proxy");
    let record = |store: &blocklist::store::Store| {
        let store = store.clone();
        let (event_id, subject, business, refusal, actor) = (
            event_id.clone(),
            subject.clone(),
            business.clone(),
            refusal.clone(),
            actor.clone(),
        );
        async move {
            store
                .record_outbound_refused(&event_id, &subject, &business, &refusal, &actor, now)
                .await
        }
    };
    record(&moving).await.expect("recorded on another shard");
    assert_moved_off_the_held_counter(&held, 1);
    // The answer counts as lost: the same refusal again, the counter still
    // held (the same moves), then with nothing held (its first token).
    record(&moving)
        .await
        .expect("a retry under the moved token");
    record(&world.stack().store)
        .await
        .expect("a retry under the first token");
    assert_eq!(
        world.events("+16505550172", "outbound_refused").await.len(),
        1
    );
    assert_eq!(
        today_and_blocked(&world, "outbound_refused").await.0,
        refused_before + 1
    );
}
