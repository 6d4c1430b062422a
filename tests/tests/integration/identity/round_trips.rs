//! B61 with B29: learning the links of a delivery costs DynamoDB calls by
//! batches, not one call per link. The webhook's store talks to DynamoDB
//! Local through the recording relay, which notes every request.

use std::collections::{BTreeMap, BTreeSet};

use blocklist::meta::signature;
use blocklist::store::Store;
use integration_tests::{ApiRequest, DynamoRelay, dynamodb_client, endpoint, read_response, token};
use serde_json::{Value, json};

use super::{ADMIN, World, delivery, text_message};
use crate::webhook_ingress::{APP_SECRET, app_for};

/// Calls per operation through `relay` since its last reset. A request the
/// SDK sent again after a transient error (same operation, same body) is
/// one call of the code, so it counts once.
fn counts(relay: &DynamoRelay) -> BTreeMap<String, usize> {
    let distinct: BTreeSet<(String, String)> = relay
        .calls()
        .into_iter()
        .map(|call| (call.operation, call.body.to_string()))
        .collect();
    let mut counts = BTreeMap::new();
    for (operation, _) in distinct {
        *counts.entry(operation).or_insert(0) += 1;
    }
    counts
}

/// One delivery of `count` texts, each from its own sender
/// (+1 650 555 4000 on), with ids `<ids>0`, `<ids>1`, ….
fn texts_from_many(count: usize, ids: &str) -> String {
    delivery(
        vec![],
        (0..count)
            .map(|i| {
                text_message(
                    Some(&format!("1650555{:04}", 4000 + i)),
                    None,
                    &format!("{ids}{i}"),
                )
            })
            .collect(),
        vec![],
    )
}

/// The counter items (`STATS#…`) each suppression transaction through
/// `relay` adds to, in call order.
fn suppression_counters(relay: &DynamoRelay) -> Vec<BTreeSet<String>> {
    relay
        .calls()
        .into_iter()
        .filter(|call| call.operation == "TransactWriteItems")
        .filter(|call| call.body.to_string().contains("inbound_suppressed"))
        .map(|call| call.counter_partitions().into_iter().collect())
        .collect()
}

fn total(relay: &DynamoRelay) -> usize {
    counts(relay).values().sum()
}

/// Delivers `body` to a webhook whose store goes through `relay`.
async fn deliver_counted(world: &World, relay: &DynamoRelay, body: &str) -> Value {
    let store = Store::new(dynamodb_client(relay.url()), world.stack().tables.clone());
    let app = app_for(store, Some(format!("{}/crm", world.ingress.crm.uri())));
    let request = ApiRequest::new("POST", "/webhook")
        .header(
            "x-hub-signature-256",
            &signature::sign(APP_SECRET.as_bytes(), body.as_bytes()),
        )
        .header("content-type", "application/json")
        .raw_body(body);
    let response = read_response(webhook_ingress::handle(&app, request.to_lambda()).await);
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.body
}

#[tokio::test]
async fn b29_b61_links_of_a_delivery_are_written_by_batches_not_one_call_each() {
    const PEOPLE: usize = 60;
    let world = World::new().await;
    let relay = DynamoRelay::start(&endpoint());

    // Baseline: PEOPLE messages showing a number only (no link to learn).
    let plain = delivery(
        vec![],
        (0..PEOPLE)
            .map(|i| {
                text_message(
                    Some(&format!("1650555{:04}", 2000 + i)),
                    None,
                    &format!("wamid.B29PLAIN{i}"),
                )
            })
            .collect(),
        vec![],
    );
    relay.reset();
    let answer = deliver_counted(&world, &relay, &plain).await;
    assert_eq!(answer["forwarded"], PEOPLE, "{answer}");
    let baseline = total(&relay);
    let baseline_counts = counts(&relay);

    // The same with a number and a BSUID each: PEOPLE new links.
    let linked = delivery(
        vec![],
        (0..PEOPLE)
            .map(|i| {
                text_message(
                    Some(&format!("1650555{:04}", 3000 + i)),
                    Some(&format!("US.{}", 10_000_000_000u64 + i as u64)),
                    &format!("wamid.B29LINKED{i}"),
                )
            })
            .collect(),
        vec![],
    );
    relay.reset();
    let answer = deliver_counted(&world, &relay, &linked).await;
    assert_eq!(answer["forwarded"], PEOPLE, "{answer}");
    let with_links = total(&relay);
    let linked_counts = counts(&relay);

    // Every link was learned.
    let view = world.view("+16505553000").await;
    assert_eq!(view["links"][0]["user_id"], "US.10000000000", "{view}");
    let view = world
        .view(&format!("+1650555{:04}", 3000 + PEOPLE - 1))
        .await;
    assert_eq!(view["links"].as_array().map(Vec::len), Some(1), "{view}");

    // Twice the identities to read (one more batch or so) and PEOPLE links
    // to write, at up to 25 links (100 actions) per transaction.
    let allowed = PEOPLE.div_ceil(25) + 4;
    assert!(
        with_links.saturating_sub(baseline) <= allowed,
        "{PEOPLE} links cost {} DynamoDB calls more than no links (at most {allowed} expected); \
         without links: {baseline_counts:?}, with links: {linked_counts:?}",
        with_links.saturating_sub(baseline)
    );
}

/// B29: a large delivery costs DynamoDB calls by batches. 300 messages from
/// 300 people are claimed, completed and stamped on their chats by
/// transactions of 100, read by batches of 100, so the whole delivery is a
/// few dozen calls, not several per message. Its redelivery claims nothing
/// and forwards nothing (B22).
#[tokio::test]
async fn b29_a_large_delivery_costs_calls_by_batches_not_per_message() {
    const MESSAGES: usize = 300;
    let world = World::new().await;
    let relay = DynamoRelay::start(&endpoint());
    let body = texts_from_many(MESSAGES, "wamid.B29BATCH");
    relay.reset();
    let answer = deliver_counted(&world, &relay, &body).await;
    assert_eq!(answer["forwarded"], MESSAGES, "{answer}");
    let calls = counts(&relay);
    // Per 100 messages: 4 batched reads (the blocks in `all` and on the
    // line, contact and state of each sender) and 3 transactions (claims,
    // completions, chats); a few calls more for settings and the like.
    let most = 7 * MESSAGES.div_ceil(100) + 4;
    assert!(
        total(&relay) <= most,
        "{MESSAGES} messages cost {} DynamoDB calls (at most {most} expected): {calls:?}",
        total(&relay)
    );
    assert_eq!(
        world.forwarded_message_ids().await.len(),
        MESSAGES,
        "each forwarded once"
    );
    let chat = world
        .api
        .call(
            "GET",
            &format!("/v1/chats/{}/+16505554299", super::LINE_A),
            None,
        )
        .await;
    assert_eq!(chat.status, 200, "the last sender's chat: {:?}", chat.body);

    let again = deliver_counted(&world, &relay, &body).await;
    assert_eq!(again["duplicates"], MESSAGES, "{again}");
    assert_eq!(world.forwarded_message_ids().await.len(), MESSAGES);
}

/// B23, B29, S1: a flood from blocked senders is recorded by transactions
/// of a few dozen suppressions, each adding to one day counter only, so
/// that the transactions of one delivery, which run side by side, never
/// name the same counter item (DynamoDB cancels transactions that meet on
/// an item) and are not cancelled by one another.
#[tokio::test]
async fn b23_b29_s1_a_blocked_flood_counts_each_transaction_on_one_counter() {
    const MESSAGES: usize = 300;
    let world = World::new().await;
    let rule = world
        .api
        .send(
            ApiRequest::new("PUT", "/v1/rules/flood")
                .bearer(&token("operator", ADMIN))
                .json(json!({"prefix": "+1650555", "reason": "spam wave"})),
        )
        .await;
    assert_eq!(rule.status, 201, "{:?}", rule.body);
    let relay = DynamoRelay::start(&endpoint());
    let body = texts_from_many(MESSAGES, "wamid.B29FLOOD");
    relay.reset();
    let answer = deliver_counted(&world, &relay, &body).await;
    assert_eq!(answer["suppressed"], MESSAGES, "{answer}");
    let recorded = suppression_counters(&relay);
    assert!(
        recorded.len() <= MESSAGES.div_ceil(40) + 16,
        "{} transactions",
        recorded.len()
    );
    for counters in &recorded {
        assert_eq!(counters.len(), 1, "{counters:?}");
    }
    assert!(world.forwarded_message_ids().await.is_empty());
    assert_eq!(
        super::today(&world, "inbound_suppressed").await,
        MESSAGES as u64
    );

    // One sender's flood: its groups take counters of their own, so they
    // go side by side, not one after another on the sender's shard.
    let one_sender = delivery(
        vec![],
        (0..MESSAGES)
            .map(|i| text_message(Some("16505554000"), None, &format!("wamid.B29ONE{i}")))
            .collect(),
        vec![],
    );
    relay.reset();
    let answer = deliver_counted(&world, &relay, &one_sender).await;
    assert_eq!(answer["suppressed"], MESSAGES, "{answer}");
    let counters = suppression_counters(&relay);
    assert_eq!(counters.len(), MESSAGES.div_ceil(40), "{counters:?}");
    let distinct: BTreeSet<&String> = counters.iter().flatten().collect();
    assert_eq!(distinct.len(), counters.len(), "{counters:?}");
    assert_eq!(
        super::today(&world, "inbound_suppressed").await,
        2 * MESSAGES as u64
    );
}
