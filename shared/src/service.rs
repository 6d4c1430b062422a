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

/// What a function that needs only the store has, built once at init
/// (`wa-blocked`, `block-expiry`): the store, and the clock, which tests
/// replace.
pub struct StoreApp {
    pub store: Store,
    pub now: fn() -> DateTime<Utc>,
}

impl StoreApp {
    pub fn new(store: Store) -> Self {
        StoreApp {
            store,
            now: Utc::now,
        }
    }
}

/// How often a change is decided again after losing a race.
const MAX_ATTEMPTS: u32 = 12;

#[derive(Debug, Clone, PartialEq)]
pub enum BlockOutcome {
    Created(Block),
    AlreadyBlocked(Block),
}

#[derive(Debug, Clone, PartialEq)]
pub enum UnblockOutcome {
    Unblocked(Box<Block>),
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
            Some((removed, change)) => (UnblockOutcome::Unblocked(Box::new(removed)), Some(change)),
            None => (UnblockOutcome::NotBlocked, None),
        }
    })
    .await
}

/// B16: reviews `subject`'s active block in `scope` (see
/// [`policy::decide_review`]): the block as kept, or as removed; `None`
/// when nothing active is blocked there.
pub async fn review(
    store: &Store,
    subject: &Subject,
    scope: &Scope,
    decision: policy::ReviewDecision,
    reason: &Reason,
    actor: &Actor,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<Option<Block>, StoreError> {
    let review_after_days = store.review_after_days(scope).await?;
    with_retries(store, subject, |record| {
        match policy::decide_review(
            record,
            scope,
            decision,
            reason,
            review_after_days,
            actor,
            now(),
        ) {
            Some((block, change)) => (Some(block), Some(change)),
            None => (None, None),
        }
    })
    .await
}

/// B13: removes `subject`'s block in `scope` if its time has run out, in
/// one transaction like an unblock. `None` when there is nothing to remove
/// (already removed, or replaced by a block that has not expired).
pub async fn expire(
    store: &Store,
    subject: &Subject,
    scope: &Scope,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<Option<Block>, StoreError> {
    with_retries(store, subject, |record| {
        match policy::decide_expiry(record, scope, now()) {
            Some((removed, change)) => (Some(removed), Some(change)),
            None => (None, None),
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

/// DynamoDB's limit of actions in one transaction.
const MAX_TRANSACTION_ACTIONS: usize = 100;
/// Links per transaction at most: a larger transaction conflicts with more
/// concurrent writers and, cancelled, redoes more work.
const MAX_LINKS_PER_TRANSACTION: usize = 20;

/// B61: stores the links among `observed` that are new. `known` holds the
/// states the caller already read (a webhook's enforcement read), so the
/// common case writes without reading again: all new links in as few
/// transactions as fit 100 actions, written at once. A new link of a person
/// who already has other identities needs their states too, and a state
/// written before states kept a copy of their blocks needs its blocks:
/// those are read first (once per person and per old state). A conflict
/// with a concurrent change re-reads and decides again. `attempts` bounds
/// the tries. Returns the links written and the identities left unlinked as
/// ambiguous.
pub async fn learn_links(
    store: &Store,
    observed: &[Link],
    known: HashMap<Subject, SubjectState>,
    actor: &str,
    attempts: u32,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<(usize, Vec<Subject>), StoreError> {
    let mut states = known;
    let mut attempt = 0;
    loop {
        complete_states(store, observed, &mut states).await?;
        let decision = policy::decide_links(observed, &states, actor, now());
        let mut groups: Vec<&[policy::LinkChange]> = Vec::new();
        let mut start = 0;
        let mut actions = 0;
        for (i, change) in decision.changes.iter().enumerate() {
            if actions + change.actions() > MAX_TRANSACTION_ACTIONS
                || i - start == MAX_LINKS_PER_TRANSACTION
            {
                groups.push(&decision.changes[start..i]);
                start = i;
                actions = 0;
            }
            actions += change.actions();
        }
        if start < decision.changes.len() {
            groups.push(&decision.changes[start..]);
        }
        let results = futures::future::join_all(groups.iter().map(|g| store.apply_links(g))).await;
        let mut conflicted = false;
        let mut written = 0;
        for (result, group) in results.into_iter().zip(&groups) {
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
        if attempt >= attempts {
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

/// Reads what [`policy::decide_links`] needs beyond `states`: the states
/// of every identity of the persons the links join, and the blocks of
/// states that do not hold a copy of them.
async fn complete_states(
    store: &Store,
    observed: &[Link],
    states: &mut HashMap<Subject, SubjectState>,
) -> Result<(), StoreError> {
    // A person's identities all hold all of its links, so one more read
    // reaches every identity; a second pass only follows links learned
    // concurrently.
    for _ in 0..3 {
        let missing: Vec<Subject> = policy::link_persons(observed, states)
            .into_iter()
            .flatten()
            .filter(|s| !states.contains_key(s))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            break;
        }
        let mut read = store.subject_states(&missing).await?;
        for subject in missing {
            let state = read
                .remove(&subject)
                .unwrap_or_else(|| SubjectState::empty(subject.clone()));
            states.insert(subject, state);
        }
    }
    let involved: std::collections::BTreeSet<Subject> = policy::link_persons(observed, states)
        .into_iter()
        .flatten()
        .collect();
    for subject in involved {
        if states.get(&subject).is_some_and(|s| s.blocks_unknown) {
            let record = Box::pin(store.load_subject(&subject)).await?;
            if let Some(state) = states.get_mut(&subject) {
                state.blocks = record.blocks;
                state.blocks_unknown = false;
            }
        }
    }
    Ok(())
}

async fn with_retries<T>(
    store: &Store,
    subject: &Subject,
    decide: impl FnMut(&SubjectRecord) -> (T, Option<SubjectChange>),
) -> Result<T, StoreError> {
    // Each attempt's future borrows `decide`; a mutex makes the shared
    // borrow usable across threads (never contended: attempts run one at a
    // time).
    let decide = std::sync::Mutex::new(decide);
    retry_on_conflict(MAX_ATTEMPTS, subject, || {
        let record = store.load_subject(subject);
        let decide = &decide;
        // Boxed: the read and the write are large futures, and an attempt
        // lives inside every request handler's.
        Box::pin(async move {
            let record = record.await?;
            let (outcome, change) = match decide.lock() {
                Ok(mut decide) => decide(&record),
                Err(_) => return Err(StoreError::Corrupt("a decision panicked".into())),
            };
            if let Some(change) = change {
                store.apply_change(&change).await?;
            }
            Ok(outcome)
        })
    })
    .await
}

/// Runs `attempt` until it ends in anything but [`StoreError::Conflict`]
/// (facts moved under it, or another transaction raced it), at most
/// `attempts` times, backing off with jitter keyed on `key` so that racing
/// writers spread out. Every read-decide-write loop goes through here.
pub async fn retry_on_conflict<T, F, Fut>(
    attempts: u32,
    key: &impl std::hash::Hash,
    mut attempt: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut tried = 0;
    loop {
        match attempt().await {
            Err(StoreError::Conflict) if tried + 1 < attempts => {
                tried += 1;
                tokio::time::sleep(backoff(tried, key)).await;
            }
            other => return other,
        }
    }
}

/// Runs `write` until it succeeds, backing off between attempts, and
/// starts no new attempt after `deadline`: the last error then. An attempt
/// under way is never cut off (a slow store still answers). For writes that
/// must not be left undone once an effect outside the store has happened (a
/// forward the CRM acknowledged): giving up there turns a store blip into a
/// duplicate on Meta's retry. `write` must be idempotent.
pub async fn retry_until<T, F, Fut>(
    deadline: tokio::time::Instant,
    mut write: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 0;
    loop {
        let error = match write().await {
            Ok(written) => return Ok(written),
            Err(error) => error,
        };
        attempt += 1;
        let pause = backoff(attempt, &deadline);
        if tokio::time::Instant::now() + pause >= deadline {
            return Err(error);
        }
        tracing::warn!(attempt, %error, "write failed; retrying");
        tokio::time::sleep(pause).await;
    }
}

/// Exponential backoff with jitter, so that racing writers spread out.
fn backoff(attempt: u32, key: &impl std::hash::Hash) -> Duration {
    use std::hash::BuildHasher;
    let jitter = std::collections::hash_map::RandomState::new().hash_one((attempt, key));
    let base = 5u64 << attempt.min(6);
    Duration::from_millis(base / 2 + jitter % base)
}
