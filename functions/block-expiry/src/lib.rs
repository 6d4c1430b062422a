//! `block-expiry` (SPEC B13, B44): removes temporary blocks whose
//! `expires_at` has passed. Run every minute by a schedule (and by the
//! local stack's timer), so a block is gone from listings, chats and
//! counters within two minutes of its end; enforcement never waits for
//! it, since every path already treats an expired block as no block.
//!
//! A sweep reads the expiry index (`gsi2`, 16 shards, only temporary blocks
//! and only those due: never a Scan), and removes each block through the
//! same transactional path as an unblock (`blocklist::service::expire`):
//! the `expired` audit event, the chats back to `active` where nothing else
//! blocks them, the counters, in one transaction. Each block is decided
//! again on a consistent read, so a block extended or replaced since the
//! index was read stays, and a sweep that overlaps another (a slow run, a
//! retried invocation) removes nothing twice.
//!
//! Invoked with `{"backfill": {}}` (and then with the `next` it answers,
//! until that is null), it instead gives the index keys to temporary
//! blocks stored before the index existed (see DEPLOY.md).

use blocklist::metrics::{self, Counter};
use blocklist::service;
use blocklist::store::{BackfillPosition, ExpiredBlock, StoreError};
use futures::StreamExt;
use serde_json::{Value, json};

/// The `Function` dimension of this crate's metrics outside Lambda.
const FUNCTION: &str = env!("CARGO_PKG_NAME");

/// Due blocks read per shard and round: 16 × 100 per round.
const PER_SHARD: i32 = 100;
/// Blocks removed at once (each a read and a transaction).
const CONCURRENCY: usize = 8;
/// How long one sweep keeps starting rounds, inside the function's 60 s
/// timeout; what is left is found by the next minute's sweep.
const BUDGET: std::time::Duration = std::time::Duration::from_secs(40);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid backfill event: {0}")]
    InvalidEvent(String),
    /// Some blocks could not be removed this time; the next sweep finds
    /// them again. Failing the invocation is what the alarm on the
    /// function's errors watches.
    #[error("{failed} expired blocks could not be removed: {first}")]
    Incomplete { failed: usize, first: StoreError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What every invocation needs; built once at init.
pub use blocklist::service::StoreApp as App;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Blocks removed with an `expired` event.
    pub expired: usize,
    /// Due in the index but not removed: already gone, or replaced or
    /// extended since.
    pub skipped: usize,
    /// Whether due blocks were left for the next sweep (budget spent).
    pub more: bool,
}

impl Summary {
    pub fn to_json(&self) -> Value {
        json!({ "expired": self.expired, "skipped": self.skipped, "more": self.more })
    }
}

/// One invocation: a sweep (the schedule's event, or any other), or a
/// backfill run for `{"backfill": {"shard"?, "after"?}}`.
pub async fn handle(app: &App, event: Value) -> Result<Value, Error> {
    let Some(backfill) = event.get("backfill") else {
        return Ok(sweep(app).await?.to_json());
    };
    let from: BackfillPosition = serde_json::from_value(backfill.clone())
        .map_err(|e| Error::InvalidEvent(blocklist::redact::error(&e)))?;
    let done = app
        .store
        .index_expiring_blocks(from, tokio::time::Instant::now() + BUDGET)
        .await?;
    tracing::info!(
        indexed = done.indexed,
        more = done.next.is_some(),
        "backfill run done"
    );
    Ok(json!({ "indexed": done.indexed, "next": done.next }))
}

/// One sweep: rounds of due blocks until none is left or the budget is
/// spent.
pub async fn sweep(app: &App) -> Result<Summary, Error> {
    let started = tokio::time::Instant::now();
    let mut summary = Summary::default();
    let mut failures: Vec<StoreError> = Vec::new();
    loop {
        let (due, more) = app.store.expired_blocks((app.now)(), PER_SHARD).await?;
        let results: Vec<Result<bool, StoreError>> = futures::stream::iter(due)
            .map(|block| expire(app, block))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut removed = 0;
        for result in results {
            match result {
                Ok(true) => removed += 1,
                Ok(false) => summary.skipped += 1,
                Err(error) => failures.push(error),
            }
        }
        summary.expired += removed;
        // Read again only while a shard had more and this round removed
        // something: a round that removed nothing would find the same
        // items again (the index lags the table); the next sweep takes them.
        if !more || removed == 0 || !failures.is_empty() {
            break;
        }
        if started.elapsed() >= BUDGET {
            summary.more = true;
            break;
        }
    }
    metrics::count(FUNCTION, Counter::Expired, summary.expired as u64);
    tracing::info!(
        expired = summary.expired,
        skipped = summary.skipped,
        failed = failures.len(),
        more = summary.more,
        "sweep done"
    );
    match failures.len() {
        0 => Ok(summary),
        failed => Err(Error::Incomplete {
            failed,
            first: failures.swap_remove(0),
        }),
    }
}

async fn expire(app: &App, block: ExpiredBlock) -> Result<bool, StoreError> {
    let removed = service::expire(&app.store, &block.subject, &block.scope, app.now).await?;
    if removed.is_some() {
        tracing::info!(subject = %block.subject.masked(), scope = %block.scope, "expired");
    }
    Ok(removed.is_some())
}
