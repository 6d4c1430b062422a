//! DynamoDB adapter.
//!
//! # Key design
//!
//! Five tables, as declared in `template.yaml` (tests create their tables
//! from that file, so code and template cannot drift). Every table has a
//! string partition key `pk` and a string sort key `sk`; all but Failures
//! and Imports have one global secondary index `gsi1` (`gsi1pk`, `gsi1sk`). Blocklist
//! and Audit project all attributes into it; Chats projects keys only.
//! Blocklist has a second, sparse, keys-only index `gsi2` (`gsi2pk`,
//! `gsi2sk`): temporary blocks by their end, for the expiry sweep (B13),
//! and a third, sparse, `gsi3` (`gsi3pk`, `gsi3sk`, all attributes):
//! blocks by when they come due for review (B16).
//! Failures (read by `wa-blocked`), Audit (`change-events`,
//! `platform-block`) and Imports (`block-import`, see `import.rs`) have
//! streams; Blocklist has none: a stream copies every write, and Blocklist
//! takes a flood's claims, counters and index items, which nothing needs
//! to read twice.
//!
//! A subject (B60) is a number or a BSUID; `<subject pk>` below is
//! `N#<number>` or `U#<bsuid>`, and both kinds have the same items. `<nn>`
//! is a shard, `00`–`15`: FNV-1a of the subject (of the event id for audit
//! events), so it never changes between releases.
//!
//! | table     | entity              | pk                 | sk                      | gsi1pk              | gsi1sk                          |
//! |-----------|---------------------|--------------------|-------------------------|---------------------|---------------------------------|
//! | Blocklist | subject state       | `<subject pk>`     | `STATE`                 |                     |                                 |
//! | Blocklist | block               | `<subject pk>`     | `B#<scope>`             | `BLOCKS#<nn>`       | `<blocked_at>#<subject>#<scope>` |
//! | Blocklist | temporary block (gsi2) | `<subject pk>`  | `B#<scope>`             | gsi2pk `EXPIRES#<nn>` | gsi2sk `<expires_at>#<subject>#<scope>` |
//! | Blocklist | block due for review (gsi3) | `<subject pk>` | `B#<scope>`          | gsi3pk `REVIEW#<nn>` | gsi3sk `<review_due_at>#<subject>#<scope>` |
//! | Blocklist | index token of a block | `I#<token>#<nn>` | `<blocked_at>#<subject>#<scope>` |      |                                 |
//! | Blocklist | contact             | `<subject pk>`     | `CONTACT`               |                     |                                 |
//! | Blocklist | consent (B80)       | `<subject pk>`     | `CONSENT#<all or phone_number_id>` |          |                                 |
//! | Blocklist | platform state (B15) | `<subject pk>`    | `P#<phone_number_id>`   |                     |                                 |
//! | Blocklist | prefix rule (B84)   | `RULES`            | `R#<id>`                |                     |                                 |
//! | Blocklist | rule set copy (B84) | `RULES#<00–31>`    | `RULES`                 |                     |                                 |
//! | Blocklist | settings            | `SETTINGS#<phone_number_id>`/`SETTINGS#default` | `SETTINGS` |     |                                 |
//! | Blocklist | day counters        | `STATS#<nn>`       | `D#<yyyy-mm-dd>`        |                     |                                 |
//! | Blocklist | blocked count       | `STATS#<nn>`       | `C`                     |                     |                                 |
//! | Messages  | idempotency claim   | `W#<update key>`   | `W`                     |                     |                                 |
//! | Messages  | sent message        | `O#<message id>`   | `SENT`                  |                     |                                 |
//! | Failures  | delivery failure    | `F#<subject>`      | `<at>#<status id>`      |                     |                                 |
//! | Imports   | CSV import (B91)    | `IMPORT#<id>`      | `JOB`                   |                     |                                 |
//! | Imports   | chunk of ≤ 500 rows | `IMPORT#<id>#<index>` | `CHUNK`              |                     |                                 |
//! | Audit     | event of a subject  | `<subject pk>`     | `<event_id>` (ULID)     | `D#<yyyy-mm-dd>#<t\|c>#<nn>` | `<event_id>`            |
//! | Audit     | rule event (B84)    | `R#<rule id>`      | `<event_id>`            | `D#<yyyy-mm-dd>#c#<nn>` | `<event_id>`                  |
//! | Audit     | settings event      | `S#<settings id>`  | `<event_id>`            | `D#<yyyy-mm-dd>#c#<nn>` | `<event_id>`                  |
//! | Chats     | chat                | `<subject pk>`     | `<phone_number_id>`     | `CHATS#<nn>`        | `<status>#<phone_number_id>#<subject>` |
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
//! must be blocked again under the canonical form (see DEPLOY.md). Items
//! written under the unsharded keys of earlier releases (`BLOCKS`, `CHATS`,
//! `STATS`, `SETTINGS`, one audit index key per day) are not moved either:
//! they stay enforceable (enforcement reads subject partitions, which did
//! not change) but no longer appear in listings and stats, and settings
//! must be saved again (see DEPLOY.md).
//!
//! # Capacity (S1)
//!
//! DynamoDB serves at most 1,000 WCU/s and 3,000 RCU/s per partition key
//! (and per item); a transactional write costs 2 WCU per KB. Every listing
//! index and counter is spread over 16 partition keys, so a path's write
//! rate per key is its total rate / 16. At **1,000 webhook deliveries/s**
//! (one message each, every sender new: the worst case of a spam flood) and
//! at a **100,000-number import** at 1,000 numbers/s (100 s):
//!
//! | key (table or index)              | written by                              | 1,000 deliveries/s | import, 1,000/s |
//! |-----------------------------------|-----------------------------------------|-------------------:|----------------:|
//! | `W#<update key>` (Messages)       | claim, completion (one per message)     | 4 WCU (own key, in transactions) | — |
//! | `O#<message id>` (Messages)       | a send's record (one per send)          | 1 WCU (own key)    | —               |
//! | `<subject pk>` (Blocklist)        | a change of that subject; Meta's answer to its platform block (`P#`, once per block change or first message after one) | ≤ 1 WCU per business number, once | 2×~3 WCU, once (+1 per number with `platform_block`) |
//! | `<subject pk>` (Audit)            | its events; one sender's messages       | ≤ sender's rate ×2 | 2 WCU, once     |
//! | `<subject pk>` (Chats)            | a message stamps the chat               | ≤ sender's rate    | —               |
//! | `STATS#<nn>`                      | day counters (+ `C` on a block)         | ≤ 63 tx = 125 WCU  | 2×63 tx = 250 WCU |
//! | `BLOCKS#<nn>` (Blocklist gsi1)    | a block put or deleted                  | —                  | 63 WCU          |
//! | `REVIEW#<nn>` (Blocklist gsi3)    | a block put or deleted, a review (whole blocks: the due list reads nothing else) | — | ≤ 63 WCU |
//! | `EXPIRES#<nn>` (Blocklist gsi2)   | a temporary block put or deleted        | —                  | ≤ 63 WCU (an import of temporary blocks) |
//! | `I#<token>#<nn>`                  | a block put or deleted, a contact change of a blocked subject | — | ≤ 2×63 tx = 125 WCU (`s:all`, `o:import`, a shared 4-digit window) |
//! | `D#<day>#<class>#<nn>` (Audit gsi1) | every audit event (suppression, block)  | ≤ 63 WCU           | 63 WCU          |
//! | `CHATS#<nn>` (Chats gsi1)         | a new chat or a status change only      | ≤ 63 WCU           | ≤ 63 WCU        |
//! | `RULES#<00–31>` (read)            | every delivery and send reads one of 32 copies of the rule set (see `rule.rs`) | 63 reads/s × 1–24 RCU (with sends) | — |
//! | `SETTINGS#<id>`                   | read by sends, cached 5 s per function (S4) | ≤ warm functions / 5 s | —       |
//! | `IMPORT#<id>#<index>` (Imports)   | a chunk: its upload (≤ 130 KB), its results | —                  | once each, own key |
//! | `IMPORT#<id>` (Imports)           | the import's counts, one update per chunk | —                  | ≤ 10 chunks in flight: ~20 WCU |
//!
//! DynamoDB also cancels a transaction that meets another one on an item
//! (`TransactionConflict`), so a delivery's own transactions never share
//! a counter: each transaction of its suppressions adds to a counter shard
//! of its own, one transaction per shard at a time (see `audit.rs`).
//! Other deliveries' and changes' transactions still meet on the 16 shards
//! in a flood or an import. A counter's shards are interchangeable (a
//! figure is their sum), so a transaction cancelled on counters alone is
//! sent again at once with them on shards drawn at random
//! (`stats::move_counter`): a busy counter turns additions away to idle
//! ones instead of making them wait for it.
//!
//! Every figure stays under a quarter of the per-key limit, but for the
//! rule set's reads with 1,000 rules of the longest ids (half of it). A message on an
//! existing chat changes only attributes the Chats index does not project
//! (it is keys only), so it writes no index item at all. One person's own
//! partitions take only that person's traffic, which WhatsApp itself limits
//! far below 500 messages/s. Reads follow the answer: listings merge the
//! 16 shards a few items each (see `sharded.rs`), stats read 16 day ranges
//! and one batch of 16 counts.
//!
//! Access patterns:
//! - Everything a change needs about a subject is one strongly consistent
//!   `Query` on its partition in Blocklist (state, blocks, contact) and one
//!   in Chats (its chats), run concurrently (B4), then the states and chats
//!   of its linked identities.
//! - Every change to a number writes the `STATE` item with a condition on its
//!   `version` (optimistic concurrency): two concurrent changes cannot both
//!   commit on the same facts; the loser re-reads and decides again.
//! - Block list (B7): unfiltered, the 16 `BLOCKS#<nn>` partitions of
//!   `gsi1`, merged newest first, `since`/`until` as a key range. Filtered
//!   (S2), the 16 `I#<token>#<nn>` partitions of the most selective token
//!   the filters name (a `q` term's digits or word, else category, group,
//!   scope, source; see `model::search`), merged the same way, the other
//!   filters being filter expressions on the token items. A token item is
//!   a copy of the block with the contact's searchable fields (`search`,
//!   `category`, `groups`); a block has one per token (its scope, source,
//!   category, groups, 2–5 letter prefixes of its words, 4-digit windows of
//!   its digits: about 10 for a number without contact, 20–40 with one),
//!   written with the block and rewritten by a contact change. Tokens with
//!   many blocks (`s:all`, `o:import`, a country code's window) stay under
//!   the per-key limit because they are sharded like every listing; a
//!   token's read follows what it holds, and the filter expression only
//!   drops what the first term alone could not tell apart.
//! - History (B8): `Query` `N#<number>` on Audit, newest first (ULIDs sort by
//!   time). Global feed: `gsi1`, the shards of one day at a time, merged
//!   newest first. A day is split by class (S2): `t` holds refused traffic
//!   (`inbound_suppressed`, `outbound_refused`), `c` every change, so an
//!   `action` filter reads its class only and a feed of changes never reads
//!   through a flood's suppressions.
//! - Expiry (B13): every minute, one `Query` per `EXPIRES#<nn>` shard of
//!   `gsi2` for sort keys up to now: only due temporary blocks are read
//!   (S2), keys only, and each is decided again on the subject's
//!   consistent read before its removal's transaction.
//! - Stats (B9): one `Query` per counter shard over the date range and one
//!   `BatchGetItem` of the 16 blocked counts, summed.
//! - Chats by status (B11): the 16 `CHATS#<nn>` partitions of `gsi1`, sort
//!   key prefix `<status>#<phone_number_id>#` (a business number alone: one
//!   such prefix per status), merged; the page's chats are then read from
//!   the table in one batch.
//!
//! - Webhook deliveries (B22–B25): one consistent `BatchGetItem` for the
//!   blocks (`B#all`, `B#<business number>`), contacts and states (with the
//!   mirrored blocks of linked identities, B61) of every identity of every
//!   sender, the states of identities only links name, and the `O#` records
//!   of failed statuses that name no recipient (B64, Messages table),
//!   together with the claims of the updates' idempotency keys `W#…`
//!   (Messages table, expired by the `ttl` attribute): conditional puts, by transactions of
//!   100 from 8 updates on (B29), as are their completions and the chat
//!   stamps of the forwarded messages. Delivery failures for `wa-blocked`
//!   live under `F#<number>`, sorted by time.
//!
//! No request path uses `Scan`. Audit items are only ever `Put` with
//! `attribute_not_exists(pk)`: nothing updates or deletes them (B53).

mod audit;
mod batch;
mod block;
mod chat;
mod claim;
mod consent;
mod contact;
mod cursor;
mod failure;
mod import;
mod keys;
mod platform;
mod rule;
mod sent;
mod settings;
mod sharded;
mod stats;
mod subject;
mod transaction;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

pub use audit::{AuditQuery, audit_event_of_image};
pub use block::{Backfill, BackfillPosition, BlockQuery, ExpiredBlock};
pub use chat::ChatQuery;
pub use cursor::{Cursor, CursorError, POSITION, filters_fingerprint};
pub use failure::FailureItem;
pub use import::{Import, ImportChunk, KEEP_DAYS as IMPORT_KEEP_DAYS, UploadState, chunk_of_key};
pub use keys::{SHARDS, subject_pk as subject_partition};
pub use rule::{RULE_COPIES, RuleChange, StoredRules};
pub use settings::{SETTINGS_CACHE_FOR, SettingsCache, StoredSettings};

/// Table names (SPEC section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub blocklist: String,
    pub audit: String,
    pub chats: String,
    /// Delivery failures (B25) alone: its stream is what `wa-blocked`
    /// reads, so nothing else written at a flood's rate passes through it.
    pub failures: String,
    /// CSV imports (B91): its stream carries new chunks to `block-import`.
    pub imports: String,
    /// What each message leaves behind for a while: claims of webhook
    /// updates (`W#`, B22) and records of sends (`O#`, B64), all expiring.
    /// One item per message, at a flood's rate, kept off the Blocklist
    /// table: that table's indexes, backups and restores are about blocks.
    pub messages: String,
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

/// The DynamoDB store. Cheap to clone; build once at init.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    tables: Tables,
    settings_cache: SettingsCache,
}

impl Store {
    pub fn new(client: Client, tables: Tables) -> Self {
        Store {
            client,
            tables,
            settings_cache: SettingsCache::default(),
        }
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

/// The key of one item.
fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Builder errors only happen when a required field is missing, which is a
/// bug in this module; report it as corrupt rather than panic.
fn build<T>(built: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    built.map_err(|e| StoreError::Corrupt(format!("request builder: {e}")))
}

/// One page of a listing. `next` is where the next page starts; the caller
/// binds it to the listing's filters before handing it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// A page of at most `limit` from `items`, read in listing order with
    /// one more than the page asks for: that one only tells that there is
    /// more, and the next page starts after the last item kept (`at` makes
    /// its cursor).
    fn of_one_more(mut items: Vec<T>, limit: usize, at: impl Fn(&T) -> Cursor) -> Page<T> {
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            at(&items[limit - 1])
        });
        Page { items, next }
    }
}
