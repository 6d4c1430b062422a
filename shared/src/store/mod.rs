//! DynamoDB adapter.
//!
//! # Key design
//!
//! Three tables, as declared in `template.yaml` (tests create their tables
//! from that file, so code and template cannot drift). Every table has a
//! string partition key `pk`, a string sort key `sk` and one global secondary
//! index `gsi1` (`gsi1pk`, `gsi1sk`, all attributes projected).
//!
//! A subject (B60) is a number or a BSUID; `<subject pk>` below is
//! `N#<number>` or `U#<bsuid>`, and both kinds have the same items.
//!
//! | table     | entity            | pk                 | sk                      | gsi1pk         | gsi1sk                          |
//! |-----------|-------------------|--------------------|-------------------------|----------------|---------------------------------|
//! | Blocklist | subject state     | `<subject pk>`     | `STATE`                 |                |                                 |
//! | Blocklist | block             | `<subject pk>`     | `B#<scope>`             | `BLOCKS`       | `<blocked_at>#<subject>#<scope>` |
//! | Blocklist | contact           | `<subject pk>`     | `CONTACT`               |                |                                 |
//! | Blocklist | settings          | `SETTINGS`         | `<phone_number_id>`/`default` |          |                                 |
//! | Blocklist | day stats shard   | `STATS`            | `D#<yyyy-mm-dd>#<shard>`|                |                                 |
//! | Blocklist | blocked-count shard | `STATS`          | `C#<shard>`             |                |                                 |
//! | Blocklist | idempotency claim | `W#<update key>`   | `W`                     |                |                                 |
//! | Blocklist | delivery failure  | `F#<subject>`      | `<at>#<status id>`      |                |                                 |
//! | Blocklist | sent message      | `O#<message id>`   | `SENT`                  |                |                                 |
//! | Audit     | event of a subject | `<subject pk>`    | `<event_id>` (ULID)     | `D#<yyyy-mm-dd>` | `<event_id>`                  |
//! | Audit     | settings event    | `S#<settings id>`  | `<event_id>`            | `D#<yyyy-mm-dd>` | `<event_id>`                  |
//! | Chats     | chat              | `<subject pk>`     | `<phone_number_id>`     | `CHATS`        | `<status>#<phone_number_id>#<subject>` |
//!
//! The `STATE` item is the version guard of every change of a subject and
//! holds a copy of its blocks, its links to the other identities of the
//! person (B61) and a mirror of their blocks. Every writer of a `STATE`
//! reads it first and writes it under `version = <read>`, so a block and a
//! link learned at the same time cannot both commit on stale facts. Sent
//! messages (`O#`, B64) and failures expire by `ttl` (30 and 400 days).
//!
//! Items are not migrated: `STATE` items written before they kept a copy of
//! their blocks are read as "blocks unknown" and their blocks are loaded
//! before being mirrored; blocks stored under a number form this release
//! folds differently (Argentina `+54` + 10 digits, Viet Nam's old mobile
//! codes, Benin's 8 digits, Gabon's old prefixes) keep their old key and
//! must be blocked again under the canonical form (see DEPLOY.md).
//!
//! Access patterns:
//! - Everything a change needs about a subject is one strongly consistent
//!   `Query` on its partition in Blocklist (state, blocks, contact) and one
//!   in Chats (its chats), run concurrently (B4), then the states and chats
//!   of its linked identities.
//! - Every change to a number writes the `STATE` item with a condition on its
//!   `version` (optimistic concurrency): two concurrent changes cannot both
//!   commit on the same facts; the loser re-reads and decides again.
//! - Block list (B7): `gsi1` partition `BLOCKS`, newest first, `since`/`until`
//!   as a key range; other filters are filter expressions on block items, which
//!   carry the contact's searchable fields (`search`, `category`, `groups`)
//!   copied in the same transaction that changes the contact.
//! - History (B8): `Query` `N#<number>` on Audit, newest first (ULIDs sort by
//!   time). Global feed: `gsi1` one partition per day, walked newest first.
//! - Stats (B9): counters are sharded 16 ways by number so that concurrent
//!   changes of different numbers do not contend on one item; a read sums the
//!   shards of a date range with one `Query`.
//! - Chats by status (B11): `gsi1` partition `CHATS`, sort key prefix
//!   `<status>#<phone_number_id>#`.
//!
//! - Webhook deliveries (B22–B25): one consistent `BatchGetItem` for the
//!   blocks (`B#all`, `B#<business number>`), contacts and states (with the
//!   mirrored blocks of linked identities, B61) of every identity of every
//!   sender, the states of identities only links name, and the `O#` records
//!   of failed statuses that name no recipient (B64),
//!   together with one conditional put per update claiming its idempotency
//!   key `W#…` (expired by the `ttl` attribute). Delivery failures for
//!   `wa-blocked` live under `F#<number>`, sorted by time.
//!
//! No request path uses `Scan`. Audit items are only ever `Put` with
//! `attribute_not_exists(pk)`: nothing updates or deletes them (B53).

mod cursor;
mod inbound;
mod items;
mod lists;
mod number;
mod outbound;
mod settings;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

pub use cursor::{Cursor, CursorError, filters_fingerprint};
pub use items::{FailureItem, subject_pk as subject_partition};
pub use lists::{AuditQuery, BlockQuery, ChatQuery, Page};
pub use settings::StoredSettings;

/// Table names (SPEC section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub blocklist: String,
    pub audit: String,
    pub chats: String,
}

/// Errors of the store. Callers map them to HTTP in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The facts a decision was taken on changed before it was written.
    #[error("concurrent change, try again")]
    Conflict,
    /// DynamoDB could not be reached or refused the call.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// An item in the table does not have the shape this code writes.
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
}

impl<E, R> From<aws_sdk_dynamodb::error::SdkError<E, R>> for StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    fn from(error: aws_sdk_dynamodb::error::SdkError<E, R>) -> Self {
        // Messages only: the SDK's `Debug` (and so `DisplayErrorContext`)
        // carries the raw response, which can hold item values (B52).
        StoreError::Unavailable(crate::redact::error(&error))
    }
}

impl From<serde_dynamo::Error> for StoreError {
    fn from(error: serde_dynamo::Error) -> Self {
        // serde messages quote the offending value.
        StoreError::Corrupt(crate::redact::error(&error))
    }
}

/// Number of shards of each statistics counter.
pub const STAT_SHARDS: u32 = 16;

/// The DynamoDB store. Cheap to clone; build once at init.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    tables: Tables,
}

impl Store {
    pub fn new(client: Client, tables: Tables) -> Self {
        Store { client, tables }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Stable shard of a number's counters (FNV-1a, so it never changes between
/// processes or releases).
fn shard_of(key: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % STAT_SHARDS
}
