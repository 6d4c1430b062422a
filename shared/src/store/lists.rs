//! Paginated listings (B7, B8, B9, B11). All are `Query`s; none scans.

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::batch::all_pages;
use super::cursor::Cursor;
use super::items::*;
use super::keys::{SHARDS, TABLE_KEY, subject_pk};
use super::sharded::{KeyRange, Order, ShardedQuery};
use super::{Item, Page, Store, StoreError, key, s};
use crate::identity::Subject;
use crate::model::search::{self, TextSearch};
use crate::model::{
    Action, AuditEvent, Block, Chat, ChatStatus, DayStats, PhoneNumberId, Scope, Source, Stats,
    format_time,
};

/// Days of the global audit feed one request walks at most.
const MAX_FEED_DAYS: i64 = 31;

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

/// Filters of `GET /v1/audit` (B8).
#[derive(Debug, Clone)]
pub struct AuditQuery {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub action: Option<Action>,
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

    /// B8: the audit events of one number, newest first.
    pub async fn history(
        &self,
        subject: &Subject,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page<AuditEvent>, StoreError> {
        // Event ids are ULIDs, unique in the partition: the last one shown
        // is where the next page starts.
        let mut request = self
            .client
            .query()
            .table_name(&self.tables.audit)
            .expression_attribute_values(":pk", s(subject_pk(subject)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        request = match cursor.and_then(Cursor::position) {
            Some(after) => request
                .key_condition_expression("pk = :pk AND sk < :after")
                .expression_attribute_values(":after", s(after)),
            None => request.key_condition_expression("pk = :pk"),
        };
        let mut events = request
            .send()
            .await?
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| Ok(serde_dynamo::from_item::<_, AuditItem>(item)?.event))
            .collect::<Result<Vec<AuditEvent>, StoreError>>()?;
        let next = (events.len() > limit).then(|| {
            events.truncate(limit);
            Cursor::at("history", None, events[limit - 1].event_id.clone())
        });
        Ok(Page {
            items: events,
            next,
        })
    }

    /// B8: the global audit feed, newest first, one day partition at a time.
    pub async fn audit_feed(&self, query: AuditQuery) -> Result<Page<AuditEvent>, StoreError> {
        // ULIDs start with the millisecond timestamp in Crockford base32, so
        // a time range is a sort key range.
        let lower = ulid_bound(query.since, false);
        let upper = ulid_bound(query.until, true);
        let first_day = query.since.date_naive();
        let (mut day, mut start) = match &query.cursor {
            Some(cursor) => {
                let day = cursor
                    .day
                    .as_deref()
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                    .unwrap_or(first_day);
                (day, cursor.position())
            }
            None => (query.until.date_naive(), None),
        };
        // An action's events are all in its class; the feed of every action
        // merges both.
        let classes: Vec<AuditClass> = match query.action {
            Some(action) => vec![AuditClass::of(action)],
            None => AuditClass::ALL.to_vec(),
        };
        let mut events = Vec::new();
        let mut walked = 0;
        while day >= first_day {
            let day_name = day.format("%Y-%m-%d").to_string();
            let by_action = |request: QueryFluentBuilder| match query.action {
                Some(action) => request
                    .filter_expression("#action = :action")
                    .expression_attribute_names("#action", "action")
                    .expression_attribute_values(":action", s(action.as_str())),
                None => request,
            };
            let page = self
                .sharded_page(ShardedQuery {
                    table: &self.tables.audit,
                    index: Some("gsi1"),
                    partitions: classes
                        .iter()
                        .flat_map(|class| (0..SHARDS).map(|i| audit_index_pk(&day_name, *class, i)))
                        .collect(),
                    ranges: vec![KeyRange::new(Some(lower.clone()), Some(upper.clone()))],
                    order: Order::Descending,
                    filter: query.action.is_some().then_some(&by_action as _),
                    sparse: query.action.is_some(),
                    after: start.take(),
                    limit: query.limit - events.len(),
                })
                .await?;
            for item in page.items {
                events.push(serde_dynamo::from_item::<_, AuditItem>(item)?.event);
            }
            if let Some(at) = page.next {
                return Ok(Page {
                    items: events,
                    next: Some(Cursor::at("audit", Some(day_name), at)),
                });
            }
            day -= Duration::days(1);
            walked += 1;
            if events.len() == query.limit || walked == MAX_FEED_DAYS {
                // Continue at the start of the previous day.
                let more = day >= first_day;
                let cursor =
                    more.then(|| Cursor::start_of_day("audit", day.format("%Y-%m-%d").to_string()));
                return Ok(Page {
                    items: events,
                    next: cursor,
                });
            }
        }
        Ok(Page {
            items: events,
            next: None,
        })
    }

    /// B9: per-day counters over a date range, and the blocked-number count.
    pub async fn stats(&self, from: NaiveDate, to: NaiveDate) -> Result<Stats, StoreError> {
        let lower = stats_day_sk(&from.format("%Y-%m-%d").to_string());
        let upper = stats_day_sk(&to.format("%Y-%m-%d").to_string());
        // Each shard is its own partition (S1): one query per shard for the
        // days, one batched read for the blocked counts.
        let day_queries = (0..SHARDS).map(|shard| {
            all_pages(
                self.client
                    .query()
                    .table_name(&self.tables.blocklist)
                    .key_condition_expression("pk = :p AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":p", s(stats_pk(shard)))
                    .expression_attribute_values(":lo", s(&lower))
                    .expression_attribute_values(":hi", s(&upper)),
            )
        });
        let count_keys: Vec<Item> = (0..SHARDS)
            .map(|shard| key(stats_pk(shard), BLOCKED_COUNT))
            .collect();
        let (shards, current) = futures::try_join!(
            futures::future::try_join_all(day_queries),
            self.batch_get(&self.tables.blocklist, count_keys),
        )?;
        let shards = shards.into_iter().flatten();

        let mut days = Vec::new();
        let mut date = from;
        while date <= to {
            days.push(DayStats {
                date: date.format("%Y-%m-%d").to_string(),
                ..Default::default()
            });
            date += Duration::days(1);
        }
        for item in shards {
            let shard: DayStats = serde_dynamo::from_item(item)?;
            if let Some(day) = days.iter_mut().find(|d| d.date == shard.date) {
                day.add(&shard);
            }
        }
        let mut currently_blocked: i64 = 0;
        for item in current {
            if let Some(value) = item.get("blocked_numbers").and_then(|v| v.as_n().ok()) {
                currently_blocked += value
                    .parse::<i64>()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            }
        }
        Ok(Stats {
            days,
            currently_blocked: currently_blocked.max(0) as u64,
        })
    }
}

fn ulid_bound(at: DateTime<Utc>, upper: bool) -> String {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let random = if upper { (1u128 << 80) - 1 } else { 0 };
    ulid::Ulid::from_parts(ms, random).to_string()
}
