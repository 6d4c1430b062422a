//! Listings over an index spread across [`SHARDS`] partition keys (S1).
//!
//! A listing's items are spread over one index partition per shard, each
//! sorted by its sort key (`gsi1sk` of an index, `sk` of token items),
//! which is unique across the shards (it ends with the subject, or is an
//! event id). A page is a k-way merge: every shard is
//! queried concurrently for a few items, the head that comes first is taken
//! once no shard could still hold an item before it, and a shard is read
//! again only when its buffer runs dry while it may hold what comes next.
//! So a page reads about `limit` items plus a few per shard, not `limit`
//! per shard (S2), in two or three rounds.
//!
//! The position between pages is the sort key of the last item returned:
//! the next page asks every shard for the items after it, so a cursor stays
//! small and carries no partition key a client could point elsewhere.

use std::collections::VecDeque;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;

use super::keys::SHARDS;
use super::{Item, Store, StoreError, s};

/// Listing order of the sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    /// Newest first (blocks, audit events).
    Descending,
    /// Alphabetical (chats by status and business number).
    Ascending,
}

impl Order {
    /// Whether `a` comes before `b` in this order.
    fn before(self, a: &str, b: &str) -> bool {
        match self {
            Order::Descending => a > b,
            Order::Ascending => a < b,
        }
    }
}

/// DynamoDB pages one listing request may read across all shards. A page
/// that runs out of budget (a filter dropping nearly everything) comes back
/// short, with a cursor.
const PAGE_BUDGET: usize = 4 * SHARDS as usize;
/// Items a shard evaluates per DynamoDB page when a filter may drop most.
const FILTERED_PAGE_SIZE: i32 = 100;

/// One sharded listing request.
pub(super) struct ShardedQuery<'a> {
    pub table: &'a str,
    /// `Some("gsi1")` to read that index, `None` for the table's own keys.
    pub index: Option<&'a str>,
    /// The index partition of every shard. A listing may read several
    /// sets of shards at once (a search with two tokens); an item found in
    /// more than one is listed once.
    pub partitions: Vec<String>,
    /// The sort key ranges read in every partition, in listing order and
    /// apart (a listing of one business number's chats of any status
    /// reads one range per status).
    pub ranges: Vec<KeyRange>,
    pub order: Order,
    /// Adds a filter expression and its attributes, if any; its
    /// placeholders must not be `:p`, `:lo` or `:hi`.
    pub filter: Option<&'a (dyn Fn(QueryFluentBuilder) -> QueryFluentBuilder + Sync)>,
    /// Whether the filter may drop most of what the key range holds, so
    /// that each shard is asked to evaluate a larger page at once.
    pub sparse: bool,
    /// Continue strictly after this sort key (from a cursor).
    pub after: Option<String>,
    pub limit: usize,
}

/// Inclusive bounds of the sort key; none is the whole partition.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyRange {
    pub lower: Option<String>,
    pub upper: Option<String>,
}

impl KeyRange {
    pub fn new(lower: Option<String>, upper: Option<String>) -> Self {
        KeyRange { lower, upper }
    }

    /// The part of this range strictly after `after` in `order` (the
    /// bound itself is skipped when read), `None` if nothing is left.
    fn after(&self, after: Option<&String>, order: Order) -> Option<KeyRange> {
        let (lower, upper) = match (order, after.cloned()) {
            (Order::Descending, Some(after)) => {
                (self.lower.clone(), Some(min_of(self.upper.clone(), after)))
            }
            (Order::Ascending, Some(after)) => {
                (Some(max_of(self.lower.clone(), after)), self.upper.clone())
            }
            (_, None) => (self.lower.clone(), self.upper.clone()),
        };
        match (&lower, &upper) {
            // A range DynamoDB would refuse holds nothing.
            (Some(lo), Some(hi)) if lo > hi => None,
            _ => Some(KeyRange { lower, upper }),
        }
    }
}

/// A merged page: items in listing order and where the next page starts.
pub(super) struct ShardedPage {
    pub items: Vec<Item>,
    pub next: Option<String>,
}

struct Shard {
    /// The query of one partition over one range.
    request: QueryFluentBuilder,
    buffer: VecDeque<(String, Item)>,
    start: Option<Item>,
    /// Sort key of the last key evaluated, once read.
    evaluated: Option<String>,
    done: bool,
}

impl Shard {
    /// Whether this shard might still hold an item that comes before
    /// `head`: it has read nothing yet, or read only up to a point before
    /// `head` and has more.
    fn blocks(&self, head: Option<&str>, order: Order) -> bool {
        if self.done || !self.buffer.is_empty() {
            return false;
        }
        match (&self.evaluated, head) {
            (None, _) | (_, None) => true,
            (Some(evaluated), Some(head)) => order.before(evaluated, head),
        }
    }
}

impl Store {
    pub(super) async fn sharded_page(
        &self,
        query: ShardedQuery<'_>,
    ) -> Result<ShardedPage, StoreError> {
        // An index's keys are named after it (`gsi1pk`, `gsi1sk`).
        let (pk, sk) = match query.index {
            Some(index) => (format!("{index}pk"), format!("{index}sk")),
            None => ("pk".to_owned(), "sk".to_owned()),
        };
        let (pk, sk) = (pk.as_str(), sk.as_str());
        let ranges: Vec<KeyRange> = query
            .ranges
            .iter()
            .filter_map(|range| range.after(query.after.as_ref(), query.order))
            .collect();
        // One more than asked tells whether a next page exists.
        let wanted = query.limit + 1;
        let streams = query.partitions.len() * ranges.len();
        let page_size = if query.sparse {
            FILTERED_PAGE_SIZE
        } else {
            i32::try_from(wanted / streams.max(1) + 2).unwrap_or(i32::MAX)
        };
        let mut base = self
            .client
            .query()
            .table_name(query.table)
            .set_index_name(query.index.map(str::to_owned))
            .scan_index_forward(query.order == Order::Ascending)
            .limit(page_size);
        if let Some(filter) = query.filter {
            base = filter(base);
        }
        let mut shards: Vec<Shard> = Vec::with_capacity(streams);
        for range in &ranges {
            let key_condition = match (&range.lower, &range.upper) {
                (Some(_), Some(_)) => format!("{pk} = :p AND {sk} BETWEEN :lo AND :hi"),
                (Some(_), None) => format!("{pk} = :p AND {sk} >= :lo"),
                (None, Some(_)) => format!("{pk} = :p AND {sk} <= :hi"),
                (None, None) => format!("{pk} = :p"),
            };
            let mut ranged = base.clone().key_condition_expression(key_condition);
            if let Some(lo) = &range.lower {
                ranged = ranged.expression_attribute_values(":lo", s(lo));
            }
            if let Some(hi) = &range.upper {
                ranged = ranged.expression_attribute_values(":hi", s(hi));
            }
            for partition in &query.partitions {
                shards.push(Shard {
                    request: ranged
                        .clone()
                        .expression_attribute_values(":p", s(partition)),
                    buffer: VecDeque::new(),
                    start: None,
                    evaluated: None,
                    done: false,
                });
            }
        }

        let mut out: Vec<(String, Item)> = Vec::with_capacity(wanted);
        let mut pages_read = 0;
        let mut budget_spent = false;
        while out.len() < wanted {
            let head = best_head(&shards, query.order).map(|i| shards[i].buffer[0].0.clone());
            let blocking: Vec<usize> = (0..shards.len())
                .filter(|&i| shards[i].blocks(head.as_deref(), query.order))
                .collect();
            if !blocking.is_empty() {
                if pages_read >= PAGE_BUDGET {
                    budget_spent = true;
                    break;
                }
                pages_read += blocking.len();
                let reads = blocking.iter().map(|&i| {
                    shards[i]
                        .request
                        .clone()
                        .set_exclusive_start_key(shards[i].start.clone())
                        .send()
                });
                let pages = futures::future::try_join_all(reads).await?;
                for (i, page) in blocking.into_iter().zip(pages) {
                    let shard = &mut shards[i];
                    for item in page.items.unwrap_or_default() {
                        let Some(sort_key) = string(&item, sk) else {
                            return Err(StoreError::Corrupt("index item without sort key".into()));
                        };
                        if query.after.as_deref() != Some(sort_key.as_str()) {
                            shard.buffer.push_back((sort_key, item));
                        }
                    }
                    match page.last_evaluated_key {
                        Some(key) if !key.is_empty() => {
                            shard.evaluated = string(&key, sk);
                            shard.start = Some(key);
                        }
                        _ => shard.done = true,
                    }
                }
                continue;
            }
            let Some(i) = best_head(&shards, query.order) else {
                break;
            };
            if let Some(next) = shards[i].buffer.pop_front()
                && out.last().is_none_or(|(last, _)| *last != next.0)
            {
                out.push(next);
            }
        }

        let next = if out.len() == wanted {
            out.pop();
            out.last().map(|(sort_key, _)| sort_key.clone())
        } else if budget_spent {
            // Everything up to the least advanced blocking shard is read:
            // continue from there.
            shards
                .iter()
                .filter(|shard| !shard.done && shard.buffer.is_empty())
                .filter_map(|shard| shard.evaluated.clone())
                .reduce(|a, b| if query.order.before(&a, &b) { a } else { b })
                .or_else(|| out.last().map(|(sort_key, _)| sort_key.clone()))
                .or(query.after)
        } else {
            None
        };
        Ok(ShardedPage {
            items: out.into_iter().map(|(_, item)| item).collect(),
            next,
        })
    }
}

/// The shard whose buffered head comes first.
fn best_head(shards: &[Shard], order: Order) -> Option<usize> {
    (0..shards.len())
        .filter(|&i| !shards[i].buffer.is_empty())
        .reduce(|a, b| {
            if order.before(&shards[b].buffer[0].0, &shards[a].buffer[0].0) {
                b
            } else {
                a
            }
        })
}

fn string(item: &Item, attribute: &str) -> Option<String> {
    item.get(attribute).and_then(|v| v.as_s().ok()).cloned()
}

fn min_of(bound: Option<String>, other: String) -> String {
    match bound {
        Some(bound) if bound < other => bound,
        _ => other,
    }
}

fn max_of(bound: Option<String>, other: String) -> String {
    match bound {
        Some(bound) if bound > other => bound,
        _ => other,
    }
}
