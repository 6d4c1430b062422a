//! The webhook's reads and writes (B22–B25): one batched read of every
//! sender, idempotency claims, and the effects of a delivery.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::builders::{PutBuilder, UpdateBuilder};
use aws_sdk_dynamodb::types::{
    Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::batch::{BATCH_FROM, run_all, run_in_turn};
use super::items::{
    BlockItem, CONTACT, FailureItem, SENT, STATE, SentItem, block_sk, failure_pk, sent_pk,
};
use super::keys::{shard_of, subject_of_pk, subject_pk};
use super::number::state_from_item;
use super::transaction::{MAX_TRANSACTION_ACTIONS, Outcome};
use super::{Item, Store, StoreError, build, key, n, s};
use crate::identity::Subject;
use crate::inbound::{Claim, DeliveryFailure, SenderFacts, Suppression};
use crate::model::{Action, AuditEvent, ChatStatus, PhoneNumberId, StatCounter};

/// Suppressed messages per transaction: 2 actions each, plus the counters.
const SUPPRESSIONS_PER_TRANSACTION: usize = 40;
/// How long a claim keeps other invocations off an update: longer than the
/// function's timeout, so a live invocation never loses its claim.
pub const CLAIM_LEASE_SECONDS: i64 = 60;
/// Done claims outlive Meta's 7 days of retries.
const DONE_CLAIM_DAYS: i64 = 8;
/// Failures outlive the longest auto-block window (365 days).
const FAILURE_DAYS: i64 = 400;

/// A claim's terms: whose, read at what time, held until when.
struct Lease<'a> {
    owner: &'a str,
    now: DateTime<Utc>,
    /// Milliseconds since the epoch.
    until: i64,
    ttl: i64,
}

/// What a claim that could not be taken says: handled, or being handled.
fn held_claim(item: Option<&Item>) -> Claim {
    let state = item
        .and_then(|i| i.get("state"))
        .and_then(|v| v.as_s().ok());
    if state.map(String::as_str) == Some("done") {
        Claim::Done
    } else {
        Claim::InFlight
    }
}

impl Store {
    /// Everything enforcement needs about every identity of a delivery or a
    /// send, in one strongly consistent batched read (B4, B22, B61): blocks
    /// in `all` and in the given business numbers, contact presence, and
    /// the `STATE` item, which carries the blocks of every linked identity.
    /// A person whose message shows only their BSUID is thus stopped by a
    /// block of their number in the same round trip.
    ///
    /// `state_only` identities (named only by links) get their `STATE`
    /// read, nothing else.
    pub async fn sender_facts(
        &self,
        senders: &HashMap<Subject, HashSet<PhoneNumberId>>,
        state_only: &[Subject],
    ) -> Result<HashMap<Subject, SenderFacts>, StoreError> {
        let mut keys: Vec<Item> = Vec::new();
        for subject in state_only.iter().filter(|s| !senders.contains_key(*s)) {
            keys.push(key(subject_pk(subject), STATE));
        }
        for (subject, businesses) in senders {
            let pk = subject_pk(subject);
            let sort_keys = ["B#all".to_owned(), CONTACT.to_owned(), STATE.to_owned()]
                .into_iter()
                .chain(businesses.iter().map(|b| block_sk(b.as_str())));
            for sk in sort_keys {
                keys.push(
                    [("pk".to_owned(), s(&pk)), ("sk".to_owned(), s(sk))]
                        .into_iter()
                        .collect(),
                );
            }
        }
        let items = self.batch_get_blocklist(keys).await?;
        let mut facts: HashMap<Subject, SenderFacts> = senders
            .keys()
            .chain(state_only)
            .map(|n| (n.clone(), SenderFacts::default()))
            .collect();
        for item in items {
            let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
            let sk = text("sk").unwrap_or_default();
            let Some(subject) = text("pk").and_then(|pk| subject_of_pk(&pk)) else {
                continue;
            };
            let Some(f) = facts.get_mut(&subject) else {
                continue;
            };
            if sk == CONTACT {
                f.known_contact = true;
            } else if sk == STATE {
                let state = state_from_item(&subject, item)?;
                f.blocks.extend(state.linked_blocks.iter().cloned());
                f.state = Some(state);
            } else {
                let block: BlockItem = serde_dynamo::from_item(item)?;
                f.blocks.push(block.block);
            }
        }
        Ok(facts)
    }

    /// B64: who the send proxy sent each of these message ids to (records
    /// kept 30 days), in batched reads.
    pub async fn sent_subjects(
        &self,
        message_ids: &[String],
    ) -> Result<HashMap<String, Subject>, StoreError> {
        let keys: Vec<Item> = message_ids
            .iter()
            .map(|id| key(sent_pk(id), SENT))
            .collect();
        let items = self.batch_get_blocklist(keys).await?;
        let mut sent = HashMap::new();
        for item in items {
            let record: SentItem = serde_dynamo::from_item(item)?;
            sent.insert(record.message_id, record.subject);
        }
        Ok(sent)
    }

    /// Claims each update key for `owner` (B22). A key is claimable when it
    /// was never seen, or when a previous claim's lease ran out without
    /// being completed (its invocation died).
    ///
    /// A large delivery claims by transactions of 100 (B29): a transaction
    /// cancelled by keys claimed before names them (with their state), and
    /// is written again without them. Two deliveries racing on the same
    /// keys fall back to one conditional put per key, which settles exactly
    /// whose each key is.
    pub async fn claim(
        &self,
        keys: &[String],
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, Claim>, StoreError> {
        let lease = Lease {
            owner,
            now,
            until: (now + Duration::seconds(CLAIM_LEASE_SECONDS)).timestamp_millis(),
            ttl: (now + Duration::days(1)).timestamp(),
        };
        // A transaction may name an item once.
        let keys: Vec<&String> = keys.iter().collect::<HashSet<_>>().into_iter().collect();
        let results = if keys.len() < BATCH_FROM {
            run_all(keys.iter().map(|key| self.claim_one(key, &lease)).collect()).await?
        } else {
            run_in_turn(
                keys.chunks(MAX_TRANSACTION_ACTIONS)
                    .map(|chunk| self.claim_batch(chunk, &lease))
                    .collect(),
            )
            .await?
            .into_iter()
            .flatten()
            .collect()
        };
        Ok(results.into_iter().collect())
    }

    async fn claim_batch(
        &self,
        keys: &[&String],
        lease: &Lease<'_>,
    ) -> Result<Vec<(String, Claim)>, StoreError> {
        self.keyed_transaction(
            keys,
            |key| {
                Ok(TransactWriteItem::builder()
                    .put(build(self.claim_put(key, lease).build())?)
                    .build())
            },
            Claim::Claimed,
            held_claim,
            |key| self.claim_one(key, lease),
        )
        .await
    }

    /// The conditional put of one claim.
    fn claim_put(&self, key: &str, lease: &Lease<'_>) -> PutBuilder {
        Put::builder()
            .table_name(&self.tables.blocklist)
            .item("pk", s(format!("W#{key}")))
            .item("sk", s("W"))
            .item("state", s("pending"))
            .item("owner", s(lease.owner))
            .item("lease_until", n(lease.until))
            .item("ttl", n(lease.ttl))
            .condition_expression(
                "attribute_not_exists(pk) OR (#state = :pending AND lease_until < :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":now", n(lease.now.timestamp_millis()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    async fn claim_one(&self, key: &str, lease: &Lease<'_>) -> Result<(String, Claim), StoreError> {
        let put = build(self.claim_put(key, lease).build())?;
        let result = self
            .client
            .put_item()
            .set_table_name(Some(put.table_name))
            .set_item(Some(put.item))
            .set_condition_expression(put.condition_expression)
            .set_expression_attribute_names(put.expression_attribute_names)
            .set_expression_attribute_values(put.expression_attribute_values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let claim = match result {
            Ok(_) => Claim::Claimed,
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    held_claim(failed.item())
                }
                _ => return Err(StoreError::from(error)),
            },
        };
        Ok((key.to_owned(), claim))
    }

    /// Marks claims done, so Meta's retries are recognised for 8 days; by
    /// transactions of 100 for a large delivery (B29). A claim taken over
    /// meanwhile is left to its new owner.
    pub async fn complete_claims(
        &self,
        keys: &[String],
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ttl = (now + Duration::days(DONE_CLAIM_DAYS)).timestamp();
        let keys: Vec<&String> = keys.iter().collect::<HashSet<_>>().into_iter().collect();
        if keys.len() < BATCH_FROM {
            run_all(
                keys.iter()
                    .map(|key| self.complete_claim(key, owner, ttl))
                    .collect(),
            )
            .await?;
            return Ok(());
        }
        run_in_turn(
            keys.chunks(MAX_TRANSACTION_ACTIONS)
                .map(|chunk| self.complete_batch(chunk, owner, ttl))
                .collect(),
        )
        .await?;
        Ok(())
    }

    async fn complete_batch(
        &self,
        keys: &[&String],
        owner: &str,
        ttl: i64,
    ) -> Result<(), StoreError> {
        // A claim taken over meanwhile is its new owner's: nothing to do.
        self.keyed_transaction(
            keys,
            |key| {
                Ok(TransactWriteItem::builder()
                    .update(build(self.completion(key, owner, ttl).build())?)
                    .build())
            },
            (),
            |_| (),
            |key| async move {
                self.complete_claim(key, owner, ttl).await?;
                Ok((key.clone(), ()))
            },
        )
        .await?;
        Ok(())
    }

    /// Marks one claim of `owner` done.
    fn completion(&self, key: &str, owner: &str, ttl: i64) -> UpdateBuilder {
        Update::builder()
            .table_name(&self.tables.blocklist)
            .key("pk", s(format!("W#{key}")))
            .key("sk", s("W"))
            .update_expression("SET #state = :done, #ttl = :ttl")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":ttl", n(ttl))
            .expression_attribute_values(":owner", s(owner))
    }

    async fn complete_claim(&self, key: &str, owner: &str, ttl: i64) -> Result<(), StoreError> {
        let update = build(self.completion(key, owner, ttl).build())?;
        let result = self.update_request(update).send().await;
        lost_claim_is_fine(result, |e| e.is_conditional_check_failed_exception())
    }

    /// Gives claims back after a failed forward, so Meta's retry handles the
    /// updates again at once instead of after the lease.
    pub async fn release_claims(&self, keys: &[String], owner: &str) -> Result<(), StoreError> {
        run_all(
            keys.iter()
                .map(|key| self.release_claim(key, owner))
                .collect(),
        )
        .await?;
        Ok(())
    }

    async fn release_claim(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.tables.blocklist)
            .key("pk", s(format!("W#{key}")))
            .key("sk", s("W"))
            .condition_expression("#owner = :owner AND #state = :pending")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":pending", s("pending"))
            .send()
            .await;
        lost_claim_is_fine(delete, |e| e.is_conditional_check_failed_exception())
    }

    /// B23: for each suppressed message, in one transaction per group: its
    /// claim marked done, an `inbound_suppressed` audit event (message id,
    /// type and time; never the content) and the day's counter. A retry
    /// finds the claim done, so nothing is recorded or counted twice.
    ///
    /// Returns how many suppressions this call recorded (a group whose
    /// claims were completed or taken over meanwhile records nothing).
    pub async fn record_suppressed(
        &self,
        suppressed: &[Suppression],
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let done_ttl = (now + Duration::days(DONE_CLAIM_DAYS)).timestamp();
        let recorded = run_all(
            suppressed
                .chunks(SUPPRESSIONS_PER_TRANSACTION)
                .map(|group| self.record_suppressed_group(group, owner, now, done_ttl))
                .collect(),
        )
        .await?;
        Ok(recorded.into_iter().sum())
    }

    async fn record_suppressed_group(
        &self,
        group: &[Suppression],
        owner: &str,
        now: DateTime<Utc>,
        done_ttl: i64,
    ) -> Result<usize, StoreError> {
        let mut actions = Vec::with_capacity(group.len() * 2 + 16);
        let mut counts: HashMap<u32, u64> = HashMap::new();
        for suppression in group {
            let claim = Update::builder()
                .table_name(&self.tables.blocklist)
                .key("pk", s(format!("W#{}", suppression.key)))
                .key("sk", s("W"))
                .update_expression("SET #state = :done, #ttl = :ttl")
                .condition_expression("#owner = :owner AND #state = :pending")
                .expression_attribute_names("#state", "state")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":done", s("done"))
                .expression_attribute_values(":pending", s("pending"))
                .expression_attribute_values(":ttl", n(done_ttl))
                .expression_attribute_values(":owner", s(owner))
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            actions.push(TransactWriteItem::builder().update(claim).build());
            actions.push(self.audit_put(
                subject_pk(&suppression.subject),
                &suppression_event(suppression, now),
            )?);
            *counts
                .entry(shard_of(suppression.subject.as_str()))
                .or_default() += 1;
        }
        for (shard, count) in counts {
            actions.push(self.counter_update(
                now,
                shard,
                StatCounter::InboundSuppressed.attribute(),
                count,
            )?);
        }
        if self.transact_with_conflict_retries(actions).await? {
            return Ok(group.len());
        }
        if group.len() == 1 {
            // Its claim was completed or taken over: recorded elsewhere.
            return Ok(0);
        }
        // One claim of the group was lost; the others are still ours and
        // must not go unrecorded with it.
        let mut recorded = 0;
        for one in group.chunks(1) {
            recorded += Box::pin(self.record_suppressed_group(one, owner, now, done_ttl)).await?;
        }
        Ok(recorded)
    }

    /// B24: chats of forwarded messages; by transactions of 100 for a
    /// large delivery (B29). Each touch is idempotent (times are set, not
    /// added), so a retry of the whole may rewrite what already landed.
    pub async fn record_chats(
        &self,
        chats: &[crate::inbound::ChatTouch],
    ) -> Result<(), StoreError> {
        // A transaction may name a chat once: the latest touch of each.
        let mut latest: HashMap<(&PhoneNumberId, &Subject), &crate::inbound::ChatTouch> =
            HashMap::new();
        for chat in chats {
            let entry = latest
                .entry((&chat.phone_number_id, &chat.subject))
                .or_insert(chat);
            if chat.at > entry.at {
                *entry = chat;
            }
        }
        let updates = latest
            .into_values()
            .map(|chat| {
                self.inbound_chat_update(
                    &chat.phone_number_id,
                    &chat.subject,
                    chat.at,
                    ChatStatus::Active,
                    chat.known_contact,
                )
            })
            .collect::<Result<Vec<Update>, StoreError>>()?;
        if updates.len() < BATCH_FROM {
            run_all(updates.into_iter().map(|u| self.update_alone(u)).collect()).await?;
            return Ok(());
        }
        run_in_turn(
            updates
                .chunks(MAX_TRANSACTION_ACTIONS)
                .map(|chunk| self.updates_together(chunk.to_vec()))
                .collect(),
        )
        .await?;
        Ok(())
    }

    /// Unconditional updates of distinct items in one transaction; one
    /// call each should another transaction hold some of them.
    async fn updates_together(&self, updates: Vec<Update>) -> Result<(), StoreError> {
        let actions = updates
            .iter()
            .map(|u| TransactWriteItem::builder().update(u.clone()).build())
            .collect();
        match self.transact(actions, None).await? {
            Outcome::Committed => Ok(()),
            Outcome::ConditionFailed { .. } => Err(StoreError::Corrupt(
                "an unconditional update failed a condition".into(),
            )),
            Outcome::Conflict => {
                run_all(updates.into_iter().map(|u| self.update_alone(u)).collect()).await?;
                Ok(())
            }
        }
    }

    /// B25: delivery failures for `wa-blocked`. Keyed by time and status id,
    /// so a redelivered status writes the same item again.
    pub async fn record_failures(&self, failures: &[DeliveryFailure]) -> Result<(), StoreError> {
        run_all(
            failures
                .iter()
                .map(|failure| self.record_failure(failure))
                .collect(),
        )
        .await?;
        Ok(())
    }

    async fn record_failure(&self, failure: &DeliveryFailure) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.failures)
            .set_item(Some(serde_dynamo::to_item(FailureItem::new(
                failure,
                FAILURE_DAYS,
            ))?))
            .send()
            .await?;
        Ok(())
    }

    /// The delivery failures of a subject since `since`, oldest first.
    pub async fn failures_since(
        &self,
        subject: &Subject,
        since: DateTime<Utc>,
    ) -> Result<Vec<DeliveryFailure>, StoreError> {
        let mut failures = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.failures)
                .key_condition_expression("pk = :pk AND sk >= :since")
                .expression_attribute_values(":pk", s(failure_pk(subject)))
                .expression_attribute_values(":since", s(crate::model::format_time(since)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await?;
            for item in out.items.unwrap_or_default() {
                let item: FailureItem = serde_dynamo::from_item(item)?;
                failures.push(item.failure()?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(failures),
            }
        }
    }
}

/// A claim update whose condition failed lost its lease to another
/// invocation, which now owns the update: nothing left to do here.
fn lost_claim_is_fine<O, E, R>(
    result: Result<O, aws_sdk_dynamodb::error::SdkError<E, R>>,
    condition_failed: impl Fn(&E) -> bool,
) -> Result<(), StoreError>
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(error) if error.as_service_error().is_some_and(condition_failed) => Ok(()),
        Err(error) => Err(StoreError::from(error)),
    }
}

fn suppression_event(suppression: &Suppression, now: DateTime<Utc>) -> AuditEvent {
    let message = &suppression.message;
    AuditEvent {
        event_id: AuditEvent::new_id(now),
        subject: Some(suppression.subject.clone()),
        scope: Some(suppression.block.scope.to_string()),
        action: Action::InboundSuppressed,
        actor: "webhook-ingress".to_owned(),
        client: None,
        reason: None,
        source: None,
        at: now,
        details: json!({
            "message_id": message.id,
            "message_type": message.message_type,
            "message_timestamp": message.timestamp.map(crate::model::format_time),
            "phone_number_id": message.phone_number_id,
        }),
    }
}
