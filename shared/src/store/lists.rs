//! Paginated listings (B7, B8, B9, B11). All are `Query`s; none scans.

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::de::DeserializeOwned;

use super::cursor::Cursor;
use super::items::*;
use super::{Item, Store, StoreError, s};
use crate::identity::Subject;
use crate::model::{
    Action, AuditEvent, Block, Chat, ChatStatus, DayStats, PhoneNumberId, Scope, Source, Stats,
    format_time,
};

/// One page of a listing. `next` is where the next page starts; the caller
/// binds it to the listing's filters before handing it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// How many DynamoDB pages one request may read while filling a filtered
/// page. A page that runs out of budget comes back short, with a cursor.
const MAX_QUERY_PAGES: usize = 8;
/// Items evaluated per DynamoDB page when a filter may drop most of them.
const FILTERED_PAGE_SIZE: i32 = 500;
/// Days of the global audit feed one request walks at most.
const MAX_FEED_DAYS: i64 = 31;

const GSI_KEY: [&str; 4] = ["pk", "sk", "gsi1pk", "gsi1sk"];
const TABLE_KEY: [&str; 2] = ["pk", "sk"];

/// Filters of `GET /v1/blocks` (B7).
#[derive(Debug, Clone, Default)]
pub struct BlockQuery {
    pub scope: Option<Scope>,
    pub source: Option<Source>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub category: Option<String>,
    pub group: Option<String>,
    /// Matched against subject (in any number form, B65), contact name and
    /// email, case-insensitively.
    pub q: Option<String>,
    /// Blocks that expired before this are left out.
    pub now: DateTime<Utc>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
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
    /// B7: blocks, newest first.
    pub async fn list_blocks(&self, query: BlockQuery) -> Result<Page<Block>, StoreError> {
        // '~' sorts after every character used in the sort key.
        let upper = query
            .until
            .map(|t| format!("{}~", format_time(t)))
            .unwrap_or_else(|| "~".into());
        let mut request = self
            .client
            .query()
            .table_name(&self.tables.blocklist)
            .index_name("gsi1")
            .expression_attribute_values(":p", s(BLOCKS_PARTITION))
            .expression_attribute_values(":hi", s(upper))
            .scan_index_forward(false);
        // DynamoDB refuses an empty string as a key value, so no `since`
        // means no lower bound rather than an empty one.
        request = match query.since {
            Some(since) => request
                .key_condition_expression("gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":lo", s(format_time(since))),
            None => request.key_condition_expression("gsi1pk = :p AND gsi1sk <= :hi"),
        };
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
        if let Some(q) = &query.q {
            let terms = crate::model::contact_search_terms(q);
            let alternatives: Vec<String> = (0..terms.len())
                .map(|i| format!("contains(#search, :q{i})"))
                .collect();
            search = format!("({})", alternatives.join(" OR "));
            request = request.expression_attribute_names("#search", "search");
            for (i, term) in terms.into_iter().enumerate() {
                request = request.expression_attribute_values(format!(":q{i}"), s(term));
            }
        }
        if !search.is_empty() {
            filters.push(&search);
        }
        request = request.filter_expression(filters.join(" AND "));
        let start = query.cursor.as_ref().map(Cursor::to_key);
        let (items, next) = self
            .collect_page::<BlockItem>(request, start, query.limit, true, &GSI_KEY)
            .await?;
        Ok(Page {
            items: items.into_iter().map(|i| i.block).collect(),
            next: next.map(|key| Cursor::from_key("blocks", None, &key)),
        })
    }

    /// B11: chats by status and business number.
    pub async fn list_chats(&self, query: ChatQuery) -> Result<Page<Chat>, StoreError> {
        let prefix = match (&query.status, &query.phone_number_id) {
            (Some(status), Some(id)) => format!("{}#{}#", status.as_str(), id),
            (Some(status), None) => format!("{}#", status.as_str()),
            (None, _) => String::new(),
        };
        let mut request = self
            .client
            .query()
            .table_name(&self.tables.chats)
            .index_name("gsi1")
            .expression_attribute_values(":p", s(CHATS_PARTITION));
        request = if prefix.is_empty() {
            request.key_condition_expression("gsi1pk = :p")
        } else {
            request
                .key_condition_expression("gsi1pk = :p AND begins_with(gsi1sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix))
        };
        let filtered = query.status.is_none() && query.phone_number_id.is_some();
        if let (None, Some(id)) = (&query.status, &query.phone_number_id) {
            request = request
                .filter_expression("phone_number_id = :pnid")
                .expression_attribute_values(":pnid", s(id.as_str()));
        }
        let start = query.cursor.as_ref().map(Cursor::to_key);
        let (items, next) = self
            .collect_page::<ChatItem>(request, start, query.limit, filtered, &GSI_KEY)
            .await?;
        Ok(Page {
            items: items.into_iter().map(|i| i.chat).collect(),
            next: next.map(|key| Cursor::from_key("chats", None, &key)),
        })
    }

    /// B8: the audit events of one number, newest first.
    pub async fn history(
        &self,
        subject: &Subject,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.tables.audit)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(subject_pk(subject)))
            .scan_index_forward(false);
        let start = cursor.map(Cursor::to_key);
        let (items, next) = self
            .collect_page::<AuditItem>(request, start, limit, false, &TABLE_KEY)
            .await?;
        Ok(Page {
            items: items.into_iter().map(|i| i.event).collect(),
            next: next.map(|key| Cursor::from_key("history", None, &key)),
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
                let key = cursor.to_key();
                (day, (!key.is_empty()).then_some(key))
            }
            None => (query.until.date_naive(), None),
        };
        let mut events = Vec::new();
        let mut walked = 0;
        while day >= first_day {
            let day_name = day.format("%Y-%m-%d").to_string();
            let mut request = self
                .client
                .query()
                .table_name(&self.tables.audit)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":p", s(day_pk(&day_name)))
                .expression_attribute_values(":lo", s(&lower))
                .expression_attribute_values(":hi", s(&upper))
                .scan_index_forward(false);
            if let Some(action) = query.action {
                request = request
                    .filter_expression("#action = :action")
                    .expression_attribute_names("#action", "action")
                    .expression_attribute_values(":action", s(action.as_str()));
            }
            let want = query.limit - events.len();
            let (items, next) = self
                .collect_page::<AuditItem>(
                    request,
                    start.take(),
                    want,
                    query.action.is_some(),
                    &GSI_KEY,
                )
                .await?;
            events.extend(items.into_iter().map(|i| i.event));
            if let Some(key) = next {
                let cursor = Cursor::from_key("audit", Some(day_name), &key);
                return Ok(Page {
                    items: events,
                    next: Some(cursor),
                });
            }
            day -= Duration::days(1);
            walked += 1;
            if events.len() == query.limit || walked == MAX_FEED_DAYS {
                // Continue at the start of the previous day.
                let more = day >= first_day;
                let cursor = more.then(|| Cursor {
                    kind: "audit".into(),
                    day: Some(day.format("%Y-%m-%d").to_string()),
                    key: Default::default(),
                    filters: String::new(),
                });
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
        let lower = format!("D#{}", from.format("%Y-%m-%d"));
        let upper = format!("D#{}#~", to.format("%Y-%m-%d"));
        let days_request = self
            .client
            .query()
            .table_name(&self.tables.blocklist)
            .key_condition_expression("pk = :p AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":p", s(STATS_PARTITION))
            .expression_attribute_values(":lo", s(lower))
            .expression_attribute_values(":hi", s(upper));
        let current_request = self
            .client
            .query()
            .table_name(&self.tables.blocklist)
            .key_condition_expression("pk = :p AND begins_with(sk, :c)")
            .expression_attribute_values(":p", s(STATS_PARTITION))
            .expression_attribute_values(":c", s("C#"));
        let (shards, current) =
            futures::try_join!(all_pages(days_request), all_pages(current_request))?;

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

    /// Reads pages until `limit` matching items are found, the query is
    /// exhausted, or the page budget is spent. Returns the items and the key
    /// to continue from, if anything may be left.
    async fn collect_page<T: DeserializeOwned>(
        &self,
        request: QueryFluentBuilder,
        mut start: Option<Item>,
        limit: usize,
        filtered: bool,
        key_attributes: &[&str],
    ) -> Result<(Vec<T>, Option<Item>), StoreError> {
        let mut out = Vec::with_capacity(limit);
        let mut last_key: Option<Item> = None;
        // Without a filter, one item more than asked tells whether a next
        // page exists, so the last page never ends with a useless cursor.
        let page_size = if filtered {
            FILTERED_PAGE_SIZE
        } else {
            limit as i32 + 1
        };
        for _ in 0..MAX_QUERY_PAGES {
            let page = request
                .clone()
                .set_exclusive_start_key(start.take())
                .limit(page_size)
                .send()
                .await?;
            for item in page.items.unwrap_or_default() {
                if out.len() == limit {
                    return Ok((out, last_key));
                }
                last_key = Some(
                    key_attributes
                        .iter()
                        .filter_map(|a| item.get(*a).map(|v| ((*a).to_owned(), v.clone())))
                        .collect(),
                );
                out.push(serde_dynamo::from_item(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok((out, None)),
            }
        }
        // Budget spent: continue after the last returned item when the page
        // is full, else after the last evaluated key.
        let resume = if out.len() == limit { last_key } else { start };
        Ok((out, resume))
    }
}

async fn all_pages(request: QueryFluentBuilder) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = request
            .clone()
            .set_exclusive_start_key(start)
            .send()
            .await?;
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(items),
        }
    }
}

fn ulid_bound(at: DateTime<Utc>, upper: bool) -> String {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let random = if upper { (1u128 << 80) - 1 } else { 0 };
    ulid::Ulid::from_parts(ms, random).to_string()
}
