//! Blocks (B7) in Blocklist: `<subject pk>` / `B#<scope>`, listed through
//! `gsi1` under `BLOCKS#<nn>`, temporary ones found by their end through
//! `gsi2` under `EXPIRES#<nn>` (B13), and their index token items
//! `I#<token>#<nn>` / `<blocked_at>#<subject>#<scope>` (S2).

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::run_all;
use super::cursor::Cursor;
use super::keys::{SHARDS, shard_of, subject_of_pk, subject_pk};
use super::sharded::{KeyRange, Order, ShardedQuery};
use super::{Page, Store, StoreError, s};
use crate::identity::Subject;
use crate::model::search::{self, TextSearch};
use crate::model::{Block, Contact, Scope, Source, format_time};

pub(super) fn block_sk(scope: &str) -> String {
    format!("B#{scope}")
}

/// Index partition of the block listing (B7) holding `subject`'s blocks.
pub(super) fn blocks_index_pk(shard: u32) -> String {
    format!("BLOCKS#{shard:02}")
}

/// Expiry index partition (B13) holding `subject`'s temporary blocks.
fn expiry_index_pk(shard: u32) -> String {
    format!("EXPIRES#{shard:02}")
}

/// The expiry index: sparse (only temporary blocks carry its keys), keys
/// only (the sweep needs the block's subject and scope, which its table
/// keys name).
const EXPIRY_INDEX: &str = "gsi2";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct BlockItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    /// `EXPIRES#<nn>` for a temporary block; absent (not null: an index key
    /// must be a string or missing) for a permanent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2pk: Option<String>,
    /// `<expires_at>#<subject>#<scope>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2sk: Option<String>,
    /// `REVIEW#<nn>` for a block with a review due (B16), else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi3pk: Option<String>,
    /// `<review_due_at>#<subject>#<scope>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi3sk: Option<String>,
    #[serde(flatten)]
    pub block: Block,
}

fn review_index_pk(shard: u32) -> String {
    format!("REVIEW#{shard:02}")
}

/// The review index (B16): sparse, whole blocks, by when they come due.
const REVIEW_INDEX: &str = "gsi3";

/// Where a block sorts in every listing: newest first, then by subject and
/// scope, which makes it unique.
pub(super) fn block_listing_sk(block: &Block) -> String {
    format!(
        "{}#{}#{}",
        format_time(block.blocked_at),
        block.subject,
        block.scope
    )
}

impl BlockItem {
    pub fn new(block: &Block) -> Self {
        let shard = shard_of(block.subject.as_str());
        BlockItem {
            pk: subject_pk(&block.subject),
            sk: block_sk(block.scope.as_str()),
            gsi1pk: blocks_index_pk(shard),
            gsi1sk: block_listing_sk(block),
            gsi2pk: block.expires_at.map(|_| expiry_index_pk(shard)),
            gsi2sk: block
                .expires_at
                .map(|at| format!("{}#{}#{}", format_time(at), block.subject, block.scope)),
            gsi3pk: block.review_due_at.map(|_| review_index_pk(shard)),
            gsi3sk: block
                .review_due_at
                .map(|at| format!("{}#{}#{}", format_time(at), block.subject, block.scope)),
            block: block.clone(),
        }
    }
}

/// Partition of one shard of one index token's items (S2, see
/// `model::search`).
pub(super) fn token_pk(token: &str, shard: u32) -> String {
    format!("{TOKEN_PK_PREFIX}{token}#{shard:02}")
}

/// A block under one of its index tokens: a copy of the block with the
/// contact fields the filters check, so that a filtered listing reads
/// nothing else.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TokenItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub block: Block,
    /// Lower-cased number, contact name and email, for `q` (B7).
    pub search: String,
    pub category: Option<String>,
    pub groups: Vec<String>,
    /// The `STATE` version of the change that wrote it (0 for items written
    /// before token items carried one): what tells a stale item from a
    /// newer change's when a change's overflow is superseded.
    #[serde(default)]
    pub state_version: u64,
}

/// What every token item's partition key starts with.
pub(super) const TOKEN_PK_PREFIX: &str = "I#";

/// Attribute name of [`TokenItem::state_version`].
pub(super) const TOKEN_STATE_VERSION: &str = "state_version";

impl TokenItem {
    /// Every index item of `block` while the contact is `contact`, as the
    /// change committing `state_version` writes it.
    pub fn all_of(block: &Block, contact: Option<&Contact>, state_version: u64) -> Vec<TokenItem> {
        let shard = shard_of(block.subject.as_str());
        let sk = block_listing_sk(block);
        let search = crate::model::search::search_text(&block.subject, contact);
        crate::model::search::index_tokens(block, contact)
            .into_iter()
            .map(|token| TokenItem {
                pk: token_pk(&token, shard),
                sk: sk.clone(),
                block: block.clone(),
                search: search.clone(),
                category: contact.and_then(|c| c.category.clone()),
                groups: contact.map(|c| c.groups.clone()).unwrap_or_default(),
                state_version,
            })
            .collect()
    }
}

/// Filters of `GET /v1/blocks` (B7).
#[derive(Debug, Clone, Default)]
pub struct BlockQuery {
    pub scope: Option<Scope>,
    pub source: Option<Source>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub category: Option<String>,
    pub group: Option<String>,
    /// `q`, planned: matched against subject (in any number form, B65),
    /// contact name and email, case-insensitively.
    pub search: Option<TextSearch>,
    /// Blocks that expired before this are left out.
    pub now: DateTime<Utc>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl BlockQuery {
    /// The index tokens to read: those of the search, or else of the filter
    /// likely to hold the fewest blocks. `None` when no filter is named.
    fn tokens(&self) -> Option<Vec<String>> {
        if let Some(search) = &self.search {
            return Some(search.tokens.clone());
        }
        let single = self
            .category
            .as_deref()
            .map(search::category_token)
            .or_else(|| self.group.as_deref().map(search::group_token))
            .or_else(|| self.scope.as_ref().map(|s| search::scope_token(s.as_str())))
            .or_else(|| self.source.map(|s| search::source_token(s.as_str())))?;
        Some(vec![single])
    }

    /// How many of the token filters (not the date range) are named.
    fn filters_named(&self) -> usize {
        usize::from(self.search.is_some())
            + usize::from(self.category.is_some())
            + usize::from(self.group.is_some())
            + usize::from(self.scope.is_some())
            + usize::from(self.source.is_some())
    }
}

/// A temporary block whose end has passed, as the expiry index names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredBlock {
    pub subject: Subject,
    pub scope: Scope,
}

/// Where a backfill of the expiry index stands: a shard of the block
/// listing, and the last listing key read in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackfillPosition {
    pub shard: u32,
    pub after: Option<String>,
}

/// What one backfill run did, and where the next one starts (`None`:
/// every shard was read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    pub indexed: usize,
    pub next: Option<BackfillPosition>,
}

impl Store {
    /// B13: gives the expiry index keys to temporary blocks stored before
    /// the index existed, so that the sweep removes them too. A one-off
    /// after an upgrade, run by an operator: it reads the block listing
    /// (`gsi1`, every block, shard by shard; no Scan) from `from`, and
    /// stops starting pages at `deadline`, answering where to go on.
    pub async fn index_expiring_blocks(
        &self,
        from: BackfillPosition,
        deadline: tokio::time::Instant,
    ) -> Result<Backfill, StoreError> {
        let mut position = from;
        let mut indexed = 0;
        while position.shard < SHARDS {
            if tokio::time::Instant::now() >= deadline {
                return Ok(Backfill {
                    indexed,
                    next: Some(position),
                });
            }
            let mut request = self
                .client
                .query()
                .table_name(&self.tables.blocklist)
                .index_name("gsi1")
                .expression_attribute_values(":p", s(blocks_index_pk(position.shard)))
                .filter_expression(
                    "attribute_type(expires_at, :string) AND attribute_not_exists(gsi2pk)",
                )
                .expression_attribute_values(":string", s("S"))
                .limit(200);
            request = match &position.after {
                Some(after) => request
                    .key_condition_expression("gsi1pk = :p AND gsi1sk > :after")
                    .expression_attribute_values(":after", s(after)),
                None => request.key_condition_expression("gsi1pk = :p"),
            };
            let page = request.send().await?;
            let updates = page
                .items
                .unwrap_or_default()
                .into_iter()
                .map(|item| {
                    let item: BlockItem = serde_dynamo::from_item(item)?;
                    let keyed = BlockItem::new(&item.block);
                    let (Some(gsi2pk), Some(gsi2sk), Some(expires_at)) =
                        (keyed.gsi2pk, keyed.gsi2sk, item.block.expires_at)
                    else {
                        return Ok(None);
                    };
                    let request = self
                        .client
                        .update_item()
                        .table_name(&self.tables.blocklist)
                        .key("pk", s(item.pk))
                        .key("sk", s(item.sk))
                        .update_expression("SET gsi2pk = :p, gsi2sk = :k")
                        // The same block still, and not indexed meanwhile.
                        .condition_expression("expires_at = :e AND attribute_not_exists(gsi2pk)")
                        .expression_attribute_values(":p", s(gsi2pk))
                        .expression_attribute_values(":k", s(gsi2sk))
                        .expression_attribute_values(":e", s(format_time(expires_at)));
                    Ok(Some(async move {
                        match request.send().await {
                            Ok(_) => Ok(true),
                            // Changed or indexed meanwhile: nothing to do.
                            Err(error)
                                if error
                                    .as_service_error()
                                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                            {
                                Ok(false)
                            }
                            Err(error) => Err(StoreError::from(error)),
                        }
                    }))
                })
                .collect::<Result<Vec<_>, StoreError>>()?
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
            indexed += run_all(updates)
                .await?
                .into_iter()
                .filter(|updated| *updated)
                .count();
            let last = page
                .last_evaluated_key
                .and_then(|key| key.get("gsi1sk").and_then(|v| v.as_s().ok()).cloned());
            position = match last {
                Some(after) => BackfillPosition {
                    shard: position.shard,
                    after: Some(after),
                },
                None => BackfillPosition {
                    shard: position.shard + 1,
                    after: None,
                },
            };
        }
        Ok(Backfill {
            indexed,
            next: None,
        })
    }

    /// B13: temporary blocks whose `expires_at` is at or before `now`,
    /// oldest end first within each shard, at most `per_shard` of each of
    /// the 16 shards, and whether a shard had more (a sweep that finds a
    /// full shard reads again). The index is eventually consistent: what
    /// it names is decided again on a consistent read of the subject.
    pub async fn expired_blocks(
        &self,
        now: DateTime<Utc>,
        per_shard: i32,
    ) -> Result<(Vec<ExpiredBlock>, bool), StoreError> {
        // '~' sorts after '#': a block ending at `now` exactly is included.
        let upper = format!("{}~", format_time(now));
        let pages = self
            .index_up_to(EXPIRY_INDEX, expiry_index_pk, &upper, per_shard)
            .await?;
        let mut expired = Vec::new();
        let mut more = false;
        for page in pages {
            more |= page.last_evaluated_key.is_some();
            for item in page.items.unwrap_or_default() {
                let key = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
                let subject = key("pk").and_then(|pk| subject_of_pk(pk));
                let scope = key("sk")
                    .and_then(|sk| sk.strip_prefix("B#"))
                    .and_then(|raw| Scope::parse(raw).ok());
                match (subject, scope) {
                    (Some(subject), Some(scope)) => expired.push(ExpiredBlock { subject, scope }),
                    _ => {
                        return Err(StoreError::Corrupt(
                            "an expiry index item names no block".into(),
                        ));
                    }
                }
            }
        }
        Ok((expired, more))
    }

    /// The first `per_shard` items of each of the 16 shards of `index`
    /// (partitions `pk_of(shard)`) whose sort key is at most `upper`:
    /// what the expiry and retry sweeps read.
    pub(super) async fn index_up_to(
        &self,
        index: &str,
        pk_of: fn(u32) -> String,
        upper: &str,
        per_shard: i32,
    ) -> Result<Vec<aws_sdk_dynamodb::operation::query::QueryOutput>, StoreError> {
        run_all(
            (0..SHARDS)
                .map(|shard| {
                    let request = self
                        .client
                        .query()
                        .table_name(&self.tables.blocklist)
                        .index_name(index)
                        .key_condition_expression("gsi2pk = :p AND gsi2sk <= :hi")
                        .expression_attribute_values(":p", s(pk_of(shard)))
                        .expression_attribute_values(":hi", s(upper))
                        .limit(per_shard);
                    async move { request.send().await.map_err(StoreError::from) }
                })
                .collect(),
        )
        .await
    }

    /// B7: blocks, newest first. Unfiltered, the 16 shards of the block
    /// index, merged; filtered, the shards of the most selective index
    /// token the filters name (S2, see `model::search`), with the other
    /// filters checked on its items.
    pub async fn list_blocks(&self, query: BlockQuery) -> Result<Page<Block>, StoreError> {
        // '~' sorts after every character used in the sort key.
        let upper = query.until.map(|t| format!("{}~", format_time(t)));
        let lower = query.since.map(format_time);
        let terms = query.search.as_ref().map(|plan| plan.terms.as_slice());
        let filter = |mut request: QueryFluentBuilder| {
            // Expired blocks block nothing (B13): not listed.
            let mut filters = vec!["(attribute_type(expires_at, :null_type) OR expires_at > :now)"];
            request = request
                .expression_attribute_values(":null_type", s("NULL"))
                .expression_attribute_values(":now", s(format_time(query.now)));
            if let Some(scope) = &query.scope {
                filters.push("#scope = :scope");
                request = request
                    .expression_attribute_names("#scope", "scope")
                    .expression_attribute_values(":scope", s(scope.as_str()));
            }
            if let Some(source) = query.source {
                filters.push("#source = :source");
                request = request
                    .expression_attribute_names("#source", "source")
                    .expression_attribute_values(":source", s(source.as_str()));
            }
            if let Some(category) = &query.category {
                filters.push("category = :category");
                request = request.expression_attribute_values(":category", s(category));
            }
            if let Some(group) = &query.group {
                filters.push("contains(#groups, :group)");
                request = request
                    .expression_attribute_names("#groups", "groups")
                    .expression_attribute_values(":group", s(group));
            }
            let mut search = String::new();
            if let Some(terms) = terms {
                let alternatives: Vec<String> = (0..terms.len())
                    .map(|i| format!("contains(#search, :q{i})"))
                    .collect();
                search = format!("({})", alternatives.join(" OR "));
                request = request.expression_attribute_names("#search", "search");
                for (i, term) in terms.iter().enumerate() {
                    request = request.expression_attribute_values(format!(":q{i}"), s(term));
                }
            }
            if !search.is_empty() {
                filters.push(&search);
            }
            request.filter_expression(filters.join(" AND "))
        };
        let tokens = query.tokens();
        let (index, partitions) = match &tokens {
            Some(tokens) => (
                None,
                tokens
                    .iter()
                    .flat_map(|token| (0..SHARDS).map(move |i| token_pk(token, i)))
                    .collect(),
            ),
            None => (Some("gsi1"), (0..SHARDS).map(blocks_index_pk).collect()),
        };
        let page = self
            .sharded_page(ShardedQuery {
                table: &self.tables.blocklist,
                index,
                partitions,
                ranges: vec![KeyRange::new(lower, upper)],
                order: Order::Descending,
                filter: Some(&filter),
                // A token holds what one filter names; anything more (a
                // search's whole terms, a second filter) may drop most of it.
                sparse: query.search.is_some() || query.filters_named() > 1,
                after: query.cursor.as_ref().and_then(Cursor::position),
                limit: query.limit,
            })
            .await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|item| match index {
                    Some(_) => Ok(serde_dynamo::from_item::<_, BlockItem>(item)?.block),
                    None => Ok(serde_dynamo::from_item::<_, TokenItem>(item)?.block),
                })
                .collect::<Result<_, StoreError>>()?,
            next: page.next.map(|at| Cursor::at("blocks", None, at)),
        })
    }

    /// B16: the blocks due for review at `now`, oldest due first: the 16
    /// shards of the review index up to `now`, merged, so a page reads
    /// about what it shows (S2) whatever the number of blocks not due.
    pub async fn blocks_due_for_review(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page<Block>, StoreError> {
        // A temporary block past its end is the expiry sweep's, not a
        // reviewer's (B13).
        let filter = |request: QueryFluentBuilder| {
            request
                .filter_expression("attribute_type(expires_at, :null_type) OR expires_at > :now")
                .expression_attribute_values(":null_type", s("NULL"))
                .expression_attribute_values(":now", s(format_time(now)))
        };
        let page = self
            .sharded_page(ShardedQuery {
                table: &self.tables.blocklist,
                index: Some(REVIEW_INDEX),
                partitions: (0..SHARDS).map(review_index_pk).collect(),
                ranges: vec![KeyRange::new(None, Some(format!("{}~", format_time(now))))],
                order: Order::Ascending,
                filter: Some(&filter),
                sparse: false,
                after: cursor.and_then(Cursor::position),
                limit,
            })
            .await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|item| Ok(serde_dynamo::from_item::<_, BlockItem>(item)?.block))
                .collect::<Result<_, StoreError>>()?,
            next: page.next.map(|at| Cursor::at("review", None, at)),
        })
    }
}
