//! Listings over an index spread across [`SHARDS`] partition keys (S1).
//!
//! A listing's items are spread over one index partition per shard, each
//! sorted by `gsi1sk`, which is unique across the shards (it ends with the
//! subject, or is an event id). A page is a k-way merge: every shard is
//! queried concurrently for a few items, the head that comes first is taken
//! once no shard could still hold an item before it, and a shard is read
//! again only when its buffer runs dry while it may hold what comes next.
//! So a page reads about `limit` items plus a few per shard, not `limit`
//! per shard (S2), in two or three rounds.
//!
//! The position between pages is the `gsi1sk` of the last item returned:
//! the next page asks every shard for the items after it, so a cursor stays
//! small and carries no partition key a client could point elsewhere.

use std::collections::VecDeque;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;

use super::items::SHARDS;
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
    /// The index partition of every shard.
    pub partitions: Vec<String>,
    /// Inclusive bounds of `gsi1sk`, when the listing has them.
    pub lower: Option<String>,
    pub upper: Option<String>,
    pub order: Order,
    /// Adds a filter expression and its attributes, if any; its
    /// placeholders must not be `:p`, `:lo` or `:hi`.
    pub filter: Option<&'a (dyn Fn(QueryFluentBuilder) -> QueryFluentBuilder + Sync)>,
    /// Continue strictly after this `gsi1sk` (from a cursor).
    pub after: Option<String>,
    pub limit: usize,
}

/// A merged page: items in listing order and where the next page starts.
pub(super) struct ShardedPage {
    pub items: Vec<Item>,
    pub next: Option<String>,
}

struct Shard {
    partition: String,
    buffer: VecDeque<(String, Item)>,
    start: Option<Item>,
    /// `gsi1sk` of the last key evaluated, once read.
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
        let (lower, upper) = match (query.order, query.after.clone()) {
            (Order::Descending, Some(after)) => (
                query.lower.clone(),
                Some(min_of(query.upper.clone(), after)),
            ),
            (Order::Ascending, Some(after)) => (
                Some(max_of(query.lower.clone(), after)),
                query.upper.clone(),
            ),
            (_, None) => (query.lower.clone(), query.upper.clone()),
        };
        if let (Some(lo), Some(hi)) = (&lower, &upper)
            && lo > hi
        {
            // A range DynamoDB would refuse holds nothing.
            return Ok(ShardedPage {
                items: Vec::new(),
                next: None,
            });
        }
        let key_condition = match (&lower, &upper) {
            (Some(_), Some(_)) => "gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi",
            (Some(_), None) => "gsi1pk = :p AND gsi1sk >= :lo",
            (None, Some(_)) => "gsi1pk = :p AND gsi1sk <= :hi",
            (None, None) => "gsi1pk = :p",
        };
        let filtered = query.filter.is_some();
        // One more than asked tells whether a next page exists.
        let wanted = query.limit + 1;
        let page_size = if filtered {
            FILTERED_PAGE_SIZE
        } else {
            i32::try_from(wanted / query.partitions.len().max(1) + 2).unwrap_or(i32::MAX)
        };
        let mut base = self
            .client
            .query()
            .table_name(query.table)
            .index_name("gsi1")
            .key_condition_expression(key_condition)
            .scan_index_forward(query.order == Order::Ascending)
            .limit(page_size);
        if let Some(lo) = &lower {
            base = base.expression_attribute_values(":lo", s(lo));
        }
        if let Some(hi) = &upper {
            base = base.expression_attribute_values(":hi", s(hi));
        }
        if let Some(filter) = query.filter {
            base = filter(base);
        }
        let mut shards: Vec<Shard> = query
            .partitions
            .into_iter()
            .map(|partition| Shard {
                partition,
                buffer: VecDeque::new(),
                start: None,
                evaluated: None,
                done: false,
            })
            .collect();

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
                    base.clone()
                        .expression_attribute_values(":p", s(&shards[i].partition))
                        .set_exclusive_start_key(shards[i].start.clone())
                        .send()
                });
                let pages = futures::future::try_join_all(reads).await?;
                for (i, page) in blocking.into_iter().zip(pages) {
                    let shard = &mut shards[i];
                    for item in page.items.unwrap_or_default() {
                        let Some(sort_key) = gsi1sk(&item) else {
                            return Err(StoreError::Corrupt("index item without gsi1sk".into()));
                        };
                        if query.after.as_deref() != Some(sort_key.as_str()) {
                            shard.buffer.push_back((sort_key, item));
                        }
                    }
                    match page.last_evaluated_key {
                        Some(key) if !key.is_empty() => {
                            shard.evaluated = gsi1sk(&key);
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
            if let Some(next) = shards[i].buffer.pop_front() {
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

fn gsi1sk(item: &Item) -> Option<String> {
    item.get("gsi1sk").and_then(|v| v.as_s().ok()).cloned()
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
