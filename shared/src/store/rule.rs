//! Prefix rules (B84) in Blocklist.
//!
//! | item          | pk          | sk          | holds |
//! |---------------|-------------|-------------|-------|
//! | rule          | `RULES`     | `R#<id>`    | the whole rule, for the API |
//! | rule set copy | `RULES#<nn>`| `RULES`     | `version` and every rule as `<prefix> <scope> <created_at> <id>` |
//!
//! Enforcement must see every rule on every delivery and send, with no
//! cache (a rule applies to the next message once `PUT` answers). So the
//! set is one small item, read by key in the same consistent
//! `BatchGetItem` as the senders' blocks: no extra round trip, and the
//! single-message path keeps its one read (S5). It is copied to 32
//! partition keys and each read picks one at random, so no key takes a
//! flood's whole read rate (S1).
//!
//! # Capacity
//!
//! An entry is about 30 bytes (`+234 all 1767225600 ng-wave`) and at most
//! 95 (a 14-digit prefix, a 32-digit scope, a 32-character id), so 1,000
//! rules ([`MAX_RULES`]) are 30–95 KB: 8–24 RCU per consistent read, 1
//! RCU with a few rules or none (a missing item is read too). Deliveries
//! and sends both read a copy: at 1,000 deliveries/s and 1,000 sends/s,
//! each of the [`RULE_COPIES`] copies serves 63 reads/s, 500–1,500 RCU/s:
//! typically a sixth of the 3,000 a key serves, half at the worst case. A
//! change rewrites every copy, the rule and its audit event in one
//! transaction (34 items; at most 32 × 95 KB ≈ 3 MB of the 4 MB a
//! transaction takes, S3) under the version of copy `00`, so concurrent
//! changes cannot lose one another: 2 WCU per KB per copy, for a change an
//! operator makes. Listing reads `RULES` by id, a page at a time (S2).

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::cursor::Cursor;
use super::{Item, Page, Store, StoreError, build, key, n, s};
use crate::model::{Action, Actor, AuditEvent, Rule, RuleEntry, RuleId, RuleSet};
use crate::number::Number;

const RULES: &str = "RULES";

/// Copies of the rule set. Its own number, not the listings' shard count:
/// reads pick any copy below it, and every change writes them all, so it
/// may only change together with a rule change that writes the new ones.
pub const RULE_COPIES: u32 = 32;
const RULE_PREFIX: &str = "R#";
pub(super) const RULE_SET_PREFIX: &str = "RULES#";

fn rule_sk(id: &RuleId) -> String {
    format!("{RULE_PREFIX}{id}")
}

fn copy_pk(shard: u32) -> String {
    format!("{RULE_SET_PREFIX}{shard:02}")
}

/// The copy a read uses: the next of this instance's turns, from a start
/// that differs between instances, so that a flood's many instances spread
/// their reads over every copy.
pub(super) fn rule_set_key() -> Item {
    static TURN: AtomicU32 = AtomicU32::new(0);
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let turn = TURN.fetch_add(1, Ordering::Relaxed);
    key(copy_pk(start.wrapping_add(turn) % RULE_COPIES), RULES)
}

#[derive(Debug, Serialize, Deserialize)]
struct RuleItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    rule: Rule,
}

#[derive(Debug, Serialize, Deserialize)]
struct RuleSetItem {
    pk: String,
    sk: String,
    version: u64,
    rules: Vec<String>,
}

/// The rule set with the version that guards its next change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredRules {
    pub set: RuleSet,
    pub version: u64,
}

/// A rule set copy as enforcement reads it. An entry that does not decode
/// is an error, never a rule dropped: enforcement fails closed.
pub(super) fn rule_set_of(item: Item) -> Result<StoredRules, StoreError> {
    let item: RuleSetItem = serde_dynamo::from_item(item)?;
    let entries = item
        .rules
        .iter()
        .map(|raw| {
            RuleEntry::decode(raw).ok_or_else(|| StoreError::Corrupt("a rule entry".to_owned()))
        })
        .collect::<Result<_, _>>()?;
    Ok(StoredRules {
        set: RuleSet { entries },
        version: item.version,
    })
}

/// Whether `pk` is a rule set copy's.
pub(super) fn is_rule_set(pk: &str) -> bool {
    pk.starts_with(RULE_SET_PREFIX)
}

/// A change of one rule: what it was and what it becomes (`None`: removed).
#[derive(Debug, Clone)]
pub struct RuleChange<'a> {
    pub current: &'a StoredRules,
    pub id: &'a RuleId,
    pub before: Option<&'a Rule>,
    pub after: Option<&'a Rule>,
    /// Why, for a removal (a rule holds its own reason).
    pub reason: Option<&'a str>,
}

impl Store {
    /// The rule set, strongly consistent, with its version.
    pub async fn rules(&self) -> Result<StoredRules, StoreError> {
        match self
            .get_one(&self.tables.blocklist, copy_pk(0), RULES)
            .await?
        {
            Some(item) => rule_set_of(item),
            None => Ok(StoredRules::default()),
        }
    }

    pub async fn rule(&self, id: &RuleId) -> Result<Option<Rule>, StoreError> {
        self.get_one(&self.tables.blocklist, RULES.to_owned(), &rule_sk(id))
            .await?
            .map(|item| Ok(serde_dynamo::from_item::<_, RuleItem>(item)?.rule))
            .transpose()
    }

    /// B84: the rules matching any of `numbers`, whole, by id.
    pub async fn rules_matching(&self, numbers: &[&Number]) -> Result<Vec<Rule>, StoreError> {
        let set = self.rules().await?.set;
        let keys: Vec<Item> = set
            .matching(numbers)
            .map(|entry| key(RULES, rule_sk(&entry.id)))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut rules = self
            .batch_get_blocklist(keys)
            .await?
            .into_iter()
            .map(|item| Ok(serde_dynamo::from_item::<_, RuleItem>(item)?.rule))
            .collect::<Result<Vec<Rule>, StoreError>>()?;
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(rules)
    }

    /// B84: the rules in id order, a page at a time.
    pub async fn list_rules(
        &self,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page<Rule>, StoreError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.tables.blocklist)
            .expression_attribute_values(":pk", s(RULES))
            .consistent_read(true)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        request = match cursor.and_then(Cursor::position) {
            Some(after) => request
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":after", s(after)),
            None => request
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(RULE_PREFIX)),
        };
        let rules: Vec<Rule> = super::batch::one_page::<RuleItem>(request)
            .await?
            .into_iter()
            .map(|item| item.rule)
            .collect();
        Ok(Page::of_one_more(rules, limit, |last| {
            Cursor::at("rules", None, rule_sk(&last.id))
        }))
    }

    /// Writes a rule change with its audit event (`rule_added`,
    /// `rule_changed`, `rule_removed`) and every copy of the new set, in
    /// one transaction. `Conflict` when the set changed since `current`
    /// was read.
    pub async fn change_rule(
        &self,
        change: &RuleChange<'_>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // Removing a rule that is not there changes nothing.
        let Some(rule) = change.after.or(change.before) else {
            return Ok(());
        };
        let next = change.current.set.with(change.id, change.after);
        let version = change.current.version + 1;
        let rules: Vec<String> = next.entries.iter().map(RuleEntry::encode).collect();
        let mut actions = Vec::with_capacity(RULE_COPIES as usize + 2);
        for shard in 0..RULE_COPIES {
            let item = serde_dynamo::to_item(RuleSetItem {
                pk: copy_pk(shard),
                sk: RULES.to_owned(),
                version,
                rules: rules.clone(),
            })?;
            let mut put = Put::builder()
                .table_name(&self.tables.blocklist)
                .set_item(Some(item));
            if shard == 0 {
                put = if change.current.version == 0 {
                    put.condition_expression("attribute_not_exists(pk)")
                } else {
                    put.condition_expression("version = :v")
                        .expression_attribute_values(":v", n(change.current.version))
                };
            }
            actions.push(
                TransactWriteItem::builder()
                    .put(build(put.build())?)
                    .build(),
            );
        }
        actions.push(match change.after {
            Some(rule) => {
                let item = serde_dynamo::to_item(RuleItem {
                    pk: RULES.to_owned(),
                    sk: rule_sk(&rule.id),
                    rule: rule.clone(),
                })?;
                let put = Put::builder()
                    .table_name(&self.tables.blocklist)
                    .set_item(Some(item));
                TransactWriteItem::builder()
                    .put(build(put.build())?)
                    .build()
            }
            None => {
                let delete = Delete::builder()
                    .table_name(&self.tables.blocklist)
                    .set_key(Some(key(RULES, rule_sk(change.id))));
                TransactWriteItem::builder()
                    .delete(build(delete.build())?)
                    .build()
            }
        });
        let event = rule_event(change, rule, actor, now);
        actions.push(self.audit_put(format!("{RULE_PREFIX}{}", change.id), &event)?);
        // A retry of this very request (an answer lost on the way, retried
        // by the SDK) is the same request: it does not fail on its own
        // commit. Another attempt has another event id, so another token.
        let token = change_token(change, &rules, &event.event_id);
        self.transact(actions, Some(&token))
            .await?
            .committed_or_conflict()
    }

    /// Every copy of the rule set as stored, by copy: for checking that
    /// they agree.
    pub async fn rule_set_copies(&self) -> Result<Vec<Option<StoredRules>>, StoreError> {
        let mut copies = Vec::with_capacity(RULE_COPIES as usize);
        for copy in 0..RULE_COPIES {
            copies.push(
                self.get_one(&self.tables.blocklist, copy_pk(copy), RULES)
                    .await?
                    .map(rule_set_of)
                    .transpose()?,
            );
        }
        Ok(copies)
    }
}

/// A client request token for one attempt of a change: its audit event's
/// id, the version it is made on and what it writes.
fn change_token(change: &RuleChange<'_>, rules: &[String], event_id: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(event_id);
    hash.update(change.current.version.to_le_bytes());
    hash.update(change.id.as_str());
    hash.update(serde_json::to_vec(&change.after).unwrap_or_default());
    hash.update(change.reason.unwrap_or_default());
    for rule in rules {
        hash.update(rule);
        hash.update(b"\n");
    }
    let digest = hash.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The audit event of a rule change, of `rule` (the rule after, or the
/// one removed): the rule before and after.
fn rule_event(
    change: &RuleChange<'_>,
    rule: &Rule,
    actor: &Actor,
    now: DateTime<Utc>,
) -> AuditEvent {
    let action = match (change.before, change.after) {
        (None, _) => Action::RuleAdded,
        (Some(_), Some(_)) => Action::RuleChanged,
        (Some(_), None) => Action::RuleRemoved,
    };
    let mut details = json!({ "rule": change.id, "prefix": rule.prefix });
    if let Some(before) = change.before {
        details["before"] = json!(before);
    }
    if let Some(after) = change.after {
        details["after"] = json!(after);
    }
    AuditEvent {
        event_id: AuditEvent::new_id(now),
        subject: None,
        scope: Some(rule.scope.to_string()),
        action,
        actor: actor.actor.clone(),
        client: actor.client.clone(),
        reason: Some(
            change
                .reason
                .map_or_else(|| rule.reason.as_str().to_owned(), str::to_owned),
        ),
        source: None,
        at: now,
        details,
        prev_event_id: None,
        prev_hash: None,
        hash: None,
    }
}
