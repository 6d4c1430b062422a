//! Idempotency claims of webhook updates (B22): `W#<update key>` / `W`,
//! pending while an invocation holds its lease, then done.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::builders::{PutBuilder, UpdateBuilder};
use aws_sdk_dynamodb::types::{
    Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Duration, Utc};

use super::batch::{BATCH_FROM, run_all, run_in_turn};
use super::transaction::{MAX_TRANSACTION_ACTIONS, condition_failure_is_fine};
use super::{Item, Store, StoreError, build, n, s};
use crate::inbound::Claim;

/// How long a claim keeps other invocations off an update: longer than the
/// function's timeout, so a live invocation never loses its claim.
pub const CLAIM_LEASE_SECONDS: i64 = 60;
/// Done claims outlive Meta's 7 days of retries.
pub(super) const DONE_CLAIM_DAYS: i64 = 8;

/// A claim's terms: whose, read at what time, held until when.
struct Lease<'a> {
    owner: &'a str,
    now: DateTime<Utc>,
    /// Milliseconds since the epoch.
    until: i64,
    ttl: i64,
}

/// What a claim that could not be taken says: handled, being handled, or
/// `owner`'s own: a put that landed but whose answer was lost is sent
/// again by the SDK and finds the claim it made (an owner is one
/// invocation, which claims each key once).
fn held_claim(item: Option<&Item>, owner: &str) -> Claim {
    let text = |name: &str| {
        item.and_then(|i| i.get(name))
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    match (text("state"), text("owner")) {
        (Some("done"), _) => Claim::Done,
        (Some("pending"), Some(holder)) if holder == owner => Claim::Claimed,
        _ => Claim::InFlight,
    }
}

impl Store {
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
            |item| held_claim(item, lease.owner),
            |key| self.claim_one(key, lease),
        )
        .await
    }

    /// The conditional put of one claim.
    fn claim_put(&self, key: &str, lease: &Lease<'_>) -> PutBuilder {
        Put::builder()
            .table_name(&self.tables.messages)
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
                    held_claim(failed.item(), lease.owner)
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
            .table_name(&self.tables.messages)
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
        // A claim whose condition failed lost its lease to another
        // invocation, which now owns the update: nothing left to do here.
        condition_failure_is_fine(result, |e| e.is_conditional_check_failed_exception())
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
            .table_name(&self.tables.messages)
            .key("pk", s(format!("W#{key}")))
            .key("sk", s("W"))
            .condition_expression("#owner = :owner AND #state = :pending")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":pending", s("pending"))
            .send()
            .await;
        condition_failure_is_fine(delete, |e| e.is_conditional_check_failed_exception())
    }
}
