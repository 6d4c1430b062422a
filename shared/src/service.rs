//! Block, unblock and contact changes: read, decide, write, and on a
//! concurrent change read and decide again. Used by `block-api` and by
//! `wa-blocked`, so a manual and an automatic block take the same path.

use std::time::Duration;

use chrono::{DateTime, Utc};

use std::collections::HashMap;

use crate::identity::{Link, Subject};
use crate::model::{Actor, Block, Contact, Reason, Scope};
use crate::policy::{
    self, BlockCommand, BlockDecision, SubjectChange, SubjectRecord, SubjectState,
};
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
    subject: &Subject,
    command: BlockCommand,
    actor: &Actor,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<BlockOutcome, StoreError> {
    with_retries(store, subject, |record| {
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
    subject: &Subject,
    scope: &Scope,
    reason: &Reason,
    actor: &Actor,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<UnblockOutcome, StoreError> {
    with_retries(store, subject, |record| {
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
    let subject = contact.subject.clone();
    with_retries(store, &subject, |record| {
        (
            contact.clone(),
            policy::decide_contact(record, contact.clone(), actor, now()),
        )
    })
    .await
}

/// B62: carries a blocked person's `blocks` to their new identity `to`.
/// Returns whether anything was carried (false when `to` was already
/// blocked in every scope).
pub async fn carry_blocks(
    store: &Store,
    from: &Subject,
    to: &Subject,
    blocks: &[Block],
    message_id: &str,
    actor: &Actor,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<bool, StoreError> {
    with_retries(store, to, |record| {
        let change = policy::decide_carry(record, from, blocks, message_id, actor, now());
        (change.is_some(), change)
    })
    .await
}

/// Link changes per transaction: each writes at most four items (three
/// states and an event), well inside DynamoDB's 100 actions.
const LINKS_PER_TRANSACTION: usize = 20;

/// B61: stores the links among `observed` that are new. `known` holds the
/// states the caller already read (a webhook's enforcement read), so the
/// common case writes without reading again, in one transaction per 20
/// links, all at once. A link that replaces another needs the state of the
/// identity it leaves behind: that is read first (only on a re-issue). A
/// conflict with a concurrent change re-reads and decides again. Returns
/// the links written and the identities left unlinked as ambiguous.
pub async fn learn_links(
    store: &Store,
    observed: &[Link],
    known: HashMap<Subject, SubjectState>,
    actor: &str,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<(usize, Vec<Subject>), StoreError> {
    let mut states = known;
    let mut attempt = 0;
    loop {
        let mut decision = policy::decide_links(observed, &states, actor, now());
        let missing: Vec<Subject> = decision
            .changes
            .iter()
            .flat_map(|c| policy::partners_left(&c.link, &c.replaced))
            .filter(|s| !states.contains_key(s))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            let mut read = store.subject_states(&missing).await?;
            for subject in missing {
                let state = read
                    .remove(&subject)
                    .unwrap_or_else(|| SubjectState::empty(subject.clone()));
                states.insert(subject, state);
            }
            decision = policy::decide_links(observed, &states, actor, now());
        }
        let writes = decision
            .changes
            .chunks(LINKS_PER_TRANSACTION)
            .map(|group| store.apply_links(group));
        let results = futures::future::join_all(writes).await;
        let mut conflicted = false;
        let mut written = 0;
        for (result, group) in results
            .into_iter()
            .zip(decision.changes.chunks(LINKS_PER_TRANSACTION))
        {
            match result {
                Ok(()) => written += group.len(),
                Err(StoreError::Conflict) => conflicted = true,
                Err(error) => return Err(error),
            }
        }
        if !conflicted {
            return Ok((written, decision.ambiguous));
        }
        attempt += 1;
        if attempt >= MAX_ATTEMPTS {
            return Err(StoreError::Conflict);
        }
        let subjects: Vec<Subject> = observed
            .iter()
            .flat_map(Link::subjects)
            .chain(states.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        tokio::time::sleep(backoff(attempt, &subjects[0])).await;
        // Decide again on fresh states; links already written are now known
        // and skipped.
        states = store.subject_states(&subjects).await?;
    }
}

async fn with_retries<T>(
    store: &Store,
    subject: &Subject,
    mut decide: impl FnMut(&SubjectRecord) -> (T, Option<SubjectChange>),
) -> Result<T, StoreError> {
    let mut attempt = 0;
    loop {
        let record = store.load_subject(subject).await?;
        let (outcome, change) = decide(&record);
        let Some(change) = change else {
            return Ok(outcome);
        };
        match store.apply_change(&change).await {
            Ok(()) => return Ok(outcome),
            Err(StoreError::Conflict) if attempt + 1 < MAX_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt, subject)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Exponential backoff with jitter, so that racing writers spread out.
fn backoff(attempt: u32, subject: &Subject) -> Duration {
    use std::hash::BuildHasher;
    let jitter = std::collections::hash_map::RandomState::new().hash_one((attempt, subject));
    let base = 5u64 << attempt.min(6);
    Duration::from_millis(base / 2 + jitter % base)
}
