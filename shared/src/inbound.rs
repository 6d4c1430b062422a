//! The pure decision for a webhook delivery (B22–B25): which updates are
//! forwarded, which are suppressed, which were seen before, and what is
//! recorded. No I/O: the facts come in, the plan goes out.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::meta::webhook::{Delivery, InboundMessage, Position, Sender};
use crate::model::{Block, PhoneNumberId};
use crate::number::Number;
use crate::policy::blocking_block;

/// What the store knows about one sender, read consistently (B4).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderFacts {
    /// Blocks in scope `all` and in the scopes of the delivery's business
    /// numbers.
    pub blocks: Vec<Block>,
    pub known_contact: bool,
}

/// The state of an update's idempotency claim (B22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This invocation owns the update now.
    Claimed,
    /// Handled before: not forwarded or counted again.
    Done,
    /// Another invocation is handling it right now (a concurrent duplicate):
    /// answer 5xx so Meta retries later, when it is done or released.
    InFlight,
}

/// The idempotency key of a message.
pub fn message_key(id: &str) -> String {
    format!("M#{id}")
}

/// The idempotency key of a status: the same message goes through several
/// statuses, each delivered (and retried) on its own.
pub fn status_key(id: &str, status: &str) -> String {
    format!("S#{id}#{status}")
}

/// A message from a blocked number (B23).
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub key: String,
    pub number: Number,
    pub message: InboundMessage,
    pub block: Block,
}

/// Inbound traffic on a chat (B24).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTouch {
    pub phone_number_id: PhoneNumberId,
    pub number: Number,
    pub at: DateTime<Utc>,
    pub known_contact: bool,
}

/// A `failed` status, for `wa-blocked` (B25).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    pub number: Number,
    pub phone_number_id: Option<PhoneNumberId>,
    pub code: Option<i64>,
    pub title: Option<String>,
    pub message_id: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboundPlan {
    /// Updates to forward to the CRM.
    pub forward: HashSet<Position>,
    /// Claim keys of the forwarded updates: completed after a successful
    /// forward, released when the CRM fails.
    pub forward_keys: Vec<String>,
    pub suppressed: Vec<Suppression>,
    pub chats: Vec<ChatTouch>,
    pub failures: Vec<DeliveryFailure>,
    pub duplicates: usize,
    pub in_flight: usize,
}

/// Every claim key of a delivery, in order.
pub fn claim_keys(delivery: &Delivery) -> Vec<String> {
    let mut keys: Vec<String> = delivery
        .messages
        .iter()
        .map(|m| message_key(&m.id))
        .chain(
            delivery
                .statuses
                .iter()
                .map(|s| status_key(&s.id, &s.status)),
        )
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Every (number, business numbers) whose blocks the decision needs.
pub fn senders(delivery: &Delivery) -> HashMap<Number, HashSet<PhoneNumberId>> {
    let mut senders: HashMap<Number, HashSet<PhoneNumberId>> = HashMap::new();
    for message in &delivery.messages {
        if let Sender::Number(number) = &message.sender {
            let scopes = senders.entry(number.clone()).or_default();
            scopes.extend(message.phone_number_id.clone());
        }
    }
    senders
}

/// Decides a delivery. `claims` has an entry for every key of
/// [`claim_keys`]; a missing one counts as in flight (fail safe: retried).
pub fn plan_inbound(
    delivery: &Delivery,
    senders: &HashMap<Number, SenderFacts>,
    claims: &HashMap<String, Claim>,
    now: DateTime<Utc>,
) -> InboundPlan {
    let mut plan = InboundPlan::default();
    // The same id twice in one delivery is a duplicate too.
    let mut seen: HashSet<String> = HashSet::new();
    let mut chats: HashMap<(PhoneNumberId, Number), ChatTouch> = HashMap::new();

    for message in &delivery.messages {
        let key = message_key(&message.id);
        match claims.get(&key).copied().unwrap_or(Claim::InFlight) {
            Claim::Done => {
                plan.duplicates += 1;
                continue;
            }
            Claim::InFlight => {
                plan.in_flight += 1;
                continue;
            }
            Claim::Claimed if !seen.insert(key.clone()) => {
                plan.duplicates += 1;
                continue;
            }
            Claim::Claimed => {}
        }
        let Sender::Number(number) = &message.sender else {
            // No number to check (a username-only sender): it cannot be on
            // a blocklist of numbers, so it is delivered.
            plan.forward.insert(message.position);
            plan.forward_keys.push(key);
            continue;
        };
        let facts = senders.get(number);
        let blocks = facts.map(|f| f.blocks.as_slice()).unwrap_or(&[]);
        let blocking = match &message.phone_number_id {
            Some(business) => blocking_block(blocks, business, now),
            // Without a business number only a block everywhere applies.
            None => blocks
                .iter()
                .find(|b| b.is_active(now) && b.scope == crate::model::Scope::All),
        };
        if let Some(block) = blocking {
            plan.suppressed.push(Suppression {
                key,
                number: number.clone(),
                message: message.clone(),
                block: block.clone(),
            });
            continue;
        }
        plan.forward.insert(message.position);
        plan.forward_keys.push(key);
        if let Some(business) = &message.phone_number_id {
            let at = message.timestamp.unwrap_or(now);
            let touch = ChatTouch {
                phone_number_id: business.clone(),
                number: number.clone(),
                at,
                known_contact: facts.is_some_and(|f| f.known_contact),
            };
            chats
                .entry((business.clone(), number.clone()))
                .and_modify(|t| t.at = t.at.max(at))
                .or_insert(touch);
        }
    }

    for status in &delivery.statuses {
        let key = status_key(&status.id, &status.status);
        match claims.get(&key).copied().unwrap_or(Claim::InFlight) {
            Claim::Done => {
                plan.duplicates += 1;
                continue;
            }
            Claim::InFlight => {
                plan.in_flight += 1;
                continue;
            }
            Claim::Claimed if !seen.insert(key.clone()) => {
                plan.duplicates += 1;
                continue;
            }
            Claim::Claimed => {}
        }
        plan.forward.insert(status.position);
        plan.forward_keys.push(key);
        if status.status == "failed"
            && let Some(number) = &status.recipient
        {
            let first = status.errors.first();
            plan.failures.push(DeliveryFailure {
                number: number.clone(),
                phone_number_id: status.phone_number_id.clone(),
                code: first.and_then(|e| e.code),
                title: first.and_then(|e| e.title.clone()),
                message_id: status.id.clone(),
                at: status.timestamp.unwrap_or(now),
            });
        }
    }
    let mut chats: Vec<ChatTouch> = chats.into_values().collect();
    chats.sort_by(|a, b| (&a.phone_number_id, &a.number).cmp(&(&b.phone_number_id, &b.number)));
    plan.chats = chats;
    plan
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::model::{Reason, Scope, Source};

    const BATCH: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/meta/inbound-batch.json"
    ));
    const FAILED: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/meta/status-failed-131026.json"
    ));

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn block(number: &str, scope: &str) -> Block {
        Block {
            number: Number::parse(number).unwrap(),
            scope: Scope::parse(scope).unwrap(),
            reason: Reason::parse("spam").unwrap(),
            source: Source::Manual,
            reason_code: None,
            actor: "a".into(),
            client: None,
            blocked_at: now(),
            expires_at: None,
            version: 1,
        }
    }

    fn all_claimed(delivery: &Delivery) -> HashMap<String, Claim> {
        claim_keys(delivery)
            .into_iter()
            .map(|k| (k, Claim::Claimed))
            .collect()
    }

    #[test]
    fn b23_blocked_sender_is_suppressed_only_where_the_block_applies() {
        let delivery = Delivery::parse(BATCH).unwrap();
        let us = Number::parse("+16505551234").unwrap();
        // Blocked on the first business number only.
        let facts: HashMap<Number, SenderFacts> = [(
            us.clone(),
            SenderFacts {
                blocks: vec![block("+16505551234", "106540352242922")],
                known_contact: true,
            },
        )]
        .into_iter()
        .collect();
        let plan = plan_inbound(&delivery, &facts, &all_claimed(&delivery), now());
        assert_eq!(plan.suppressed.len(), 1);
        assert_eq!(plan.suppressed[0].message.id, "wamid.BATCH0001");
        assert_eq!(
            plan.forward.len(),
            2,
            "UK sender, and the US sender on the second line"
        );
        assert_eq!(plan.chats.len(), 2);
        assert!(plan.chats.iter().any(|c| c.number == us && c.known_contact));
    }

    #[test]
    fn b23_block_for_all_suppresses_on_every_business_number() {
        let delivery = Delivery::parse(BATCH).unwrap();
        let facts: HashMap<Number, SenderFacts> = [(
            Number::parse("+16505551234").unwrap(),
            SenderFacts {
                blocks: vec![block("+16505551234", "all")],
                known_contact: false,
            },
        )]
        .into_iter()
        .collect();
        let plan = plan_inbound(&delivery, &facts, &all_claimed(&delivery), now());
        let ids: Vec<&str> = plan
            .suppressed
            .iter()
            .map(|s| s.message.id.as_str())
            .collect();
        assert_eq!(ids, ["wamid.BATCH0001", "wamid.BATCH0003"]);
        assert_eq!(plan.forward.len(), 1);
    }

    #[test]
    fn b22_done_claims_are_duplicates_and_in_flight_ones_are_retried() {
        let delivery = Delivery::parse(BATCH).unwrap();
        let mut claims = all_claimed(&delivery);
        claims.insert(message_key("wamid.BATCH0001"), Claim::Done);
        claims.insert(message_key("wamid.BATCH0002"), Claim::InFlight);
        let plan = plan_inbound(&delivery, &HashMap::new(), &claims, now());
        assert_eq!(
            (plan.duplicates, plan.in_flight, plan.forward.len()),
            (1, 1, 1)
        );
        assert_eq!(plan.forward_keys, vec![message_key("wamid.BATCH0003")]);
    }

    #[test]
    fn b22_same_message_twice_in_one_delivery_is_forwarded_once() {
        let message =
            json!({"from": "16505551234", "id": "wamid.TWICE", "timestamp": "1", "type": "text"});
        let body = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
            "metadata": {"phone_number_id": "1"}, "messages": [message, message]}}]}]});
        let delivery = Delivery::parse(body.to_string().as_bytes()).unwrap();
        let plan = plan_inbound(&delivery, &HashMap::new(), &all_claimed(&delivery), now());
        assert_eq!((plan.forward.len(), plan.duplicates), (1, 1));
    }

    #[test]
    fn b25_failed_status_is_forwarded_and_recorded() {
        let delivery = Delivery::parse(FAILED).unwrap();
        let plan = plan_inbound(&delivery, &HashMap::new(), &all_claimed(&delivery), now());
        assert_eq!(plan.forward.len(), 1);
        assert_eq!(plan.failures.len(), 1);
        let failure = &plan.failures[0];
        assert_eq!(failure.code, Some(131026));
        assert_eq!(failure.number.as_str(), "+16505551234");
        assert_eq!(failure.at.timestamp(), 1751142888);
    }

    #[test]
    fn user_id_only_sender_is_forwarded() {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
            "metadata": {"phone_number_id": "1"},
            "messages": [{"from_user_id": "US.13491208655302741918", "id": "wamid.U", "type": "text"}]}}]}]});
        let delivery = Delivery::parse(body.to_string().as_bytes()).unwrap();
        let plan = plan_inbound(&delivery, &HashMap::new(), &all_claimed(&delivery), now());
        assert_eq!(plan.forward.len(), 1);
        assert!(plan.chats.is_empty());
    }
}
