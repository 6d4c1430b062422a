//! Paginated listings (B7, B8, B9, B11). All are `Query`s; none scans.

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use chrono::{DateTime, Utc};

use super::cursor::Cursor;
use super::items::*;
use super::keys::{SHARDS, TABLE_KEY};
use super::sharded::{KeyRange, Order, ShardedQuery};
use super::{Item, Page, Store, StoreError, s};
use crate::model::search::{self, TextSearch};
use crate::model::{Block, Chat, ChatStatus, PhoneNumberId, Scope, Source, format_time};

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

/// Filters of `GET /v1/chats` (B11).
#[derive(Debug, Clone, Default)]
pub struct ChatQuery {
    pub status: Option<ChatStatus>,
    pub phone_number_id: Option<PhoneNumberId>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Store {
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

    /// B11: chats by status and business number. The index holds keys only
    /// (so a message, which changes no listed attribute, never rewrites
    /// it); the page's chats are then read from the table, in batches.
    pub async fn list_chats(&self, query: ChatQuery) -> Result<Page<Chat>, StoreError> {
        // Index sort keys are `<status>#<phone_number_id>#<subject>`: a
        // status, and a business number under it, are key prefixes. One
        // business number's chats of any status are one range per status,
        // in the order statuses sort.
        let prefixes: Vec<String> = match (&query.status, &query.phone_number_id) {
            (Some(status), Some(id)) => vec![format!("{}#{}#", status.as_str(), id)],
            (Some(status), None) => vec![format!("{}#", status.as_str())],
            (None, Some(id)) => {
                let mut statuses = ChatStatus::ALL.map(ChatStatus::as_str);
                statuses.sort_unstable();
                statuses
                    .iter()
                    .map(|status| format!("{status}#{id}#"))
                    .collect()
            }
            (None, None) => vec![],
        };
        let ranges = if prefixes.is_empty() {
            vec![KeyRange::default()]
        } else {
            prefixes
                .into_iter()
                .map(|p| KeyRange::new(Some(p.clone()), Some(format!("{p}~"))))
                .collect()
        };
        let page = self
            .sharded_page(ShardedQuery {
                table: &self.tables.chats,
                index: Some("gsi1"),
                partitions: (0..SHARDS).map(chats_index_pk).collect(),
                ranges,
                order: Order::Ascending,
                filter: None,
                sparse: false,
                after: query.cursor.as_ref().and_then(Cursor::position),
                limit: query.limit,
            })
            .await?;
        let keys: Vec<Item> = page
            .items
            .iter()
            .map(|item| {
                TABLE_KEY
                    .iter()
                    .filter_map(|a| item.get(*a).map(|v| ((*a).to_owned(), v.clone())))
                    .collect()
            })
            .collect();
        let mut found: std::collections::HashMap<(String, String), Chat> = self
            .batch_get_all(&self.tables.chats, keys.clone())
            .await?
            .into_iter()
            .map(|item| {
                let chat: ChatItem = serde_dynamo::from_item(item)?;
                Ok(((chat.pk, chat.sk), chat.chat))
            })
            .collect::<Result<_, StoreError>>()?;
        let chats = keys
            .iter()
            .filter_map(|key| {
                let pk = key.get("pk")?.as_s().ok()?.clone();
                let sk = key.get("sk")?.as_s().ok()?.clone();
                found.remove(&(pk, sk))
            })
            // The index trails the table by a moment: a chat whose status
            // changed meanwhile is listed under its new status only.
            .filter(|chat| query.status.is_none_or(|status| chat.status == status))
            .collect();
        Ok(Page {
            items: chats,
            next: page.next.map(|at| Cursor::at("chats", None, at)),
        })
    }
}
