//! Block, unblock and contact changes: read, decide, write, and on a
//! concurrent change read and decide again. Used by `block-api` and by
//! `wa-blocked`, so a manual and an automatic block take the same path.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{Actor, Block, Contact, Reason, Scope};
use crate::number::Number;
use crate::policy::{self, BlockCommand, BlockDecision, NumberChange, NumberRecord};
use crate::store::{Store, StoreError};

/// How often a change is decided again after losing a race.
const MAX_ATTEMPTS: u32 = 12;

#[derive(Debug, Clone, PartialEq)]
pub enum BlockOutcome {
    Created(Block),
    AlreadyBlocked(Block),
}

#[derive(Debug, Clone, PartialEq)]
pub enum UnblockOutcome {
    Unblocked(Block),
    NotBlocked,
}

pub async fn block(
    store: &Store,
    number: &Number,
    command: BlockCommand,
    actor: &Actor,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<BlockOutcome, StoreError> {
    with_retries(store, number, |record| {
        match policy::decide_block(record, command.clone(), actor, now()) {
            BlockDecision::Create { block, change } => (BlockOutcome::Created(block), Some(change)),
            BlockDecision::AlreadyBlocked { existing, change } => {
                (BlockOutcome::AlreadyBlocked(existing), change)
            }
        }
    })
    .await
}

pub async fn unblock(
    store: &Store,
    number: &Number,
    scope: &Scope,
    reason: &Reason,
    actor: &Actor,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<UnblockOutcome, StoreError> {
    with_retries(store, number, |record| {
        match policy::decide_unblock(record, scope, reason, actor, now()) {
            Some((removed, change)) => (UnblockOutcome::Unblocked(removed), Some(change)),
            None => (UnblockOutcome::NotBlocked, None),
        }
    })
    .await
}

/// B10: create or replace a contact; returns it as stored.
pub async fn put_contact(
    store: &Store,
    contact: Contact,
    actor: &Actor,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<Contact, StoreError> {
    let number = contact.number.clone();
    with_retries(store, &number, |record| {
        (
            contact.clone(),
            policy::decide_contact(record, contact.clone(), actor, now()),
        )
    })
    .await
}

async fn with_retries<T>(
    store: &Store,
    number: &Number,
    mut decide: impl FnMut(&NumberRecord) -> (T, Option<NumberChange>),
) -> Result<T, StoreError> {
    let mut attempt = 0;
    loop {
        let record = store.load_number(number).await?;
        let (outcome, change) = decide(&record);
        let Some(change) = change else {
            return Ok(outcome);
        };
        match store.apply_change(&change).await {
            Ok(()) => return Ok(outcome),
            Err(StoreError::Conflict) if attempt + 1 < MAX_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt, number)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Exponential backoff with jitter, so that racing writers spread out.
fn backoff(attempt: u32, number: &Number) -> Duration {
    use std::hash::BuildHasher;
    let jitter = std::collections::hash_map::RandomState::new().hash_one((attempt, number));
    let base = 5u64 << attempt.min(6);
    Duration::from_millis(base / 2 + jitter % base)
}
