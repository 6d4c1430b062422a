//! Audit events (B8, B53), append-only in the Audit table: `<subject pk>`
//! or `S#<settings id>` / `<event_id>`, indexed by
//! `D#<yyyy-mm-dd>#<t|c>#<nn>` / `<event_id>`.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::batch::{run_all, run_in_turn};
use super::claim::DONE_CLAIM_DAYS;
use super::cursor::Cursor;
use super::keys::{SHARDS, day_of, shard_of, subject_pk};
use super::sharded::{KeyRange, Order, ShardedQuery};
use super::subject::{STATE, state_from_item};
use super::transaction::Outcome;
use super::{Page, Store, StoreError, build, n, s};
use crate::identity::Subject;
use crate::inbound::Suppression;
use crate::model::{
    Action, Actor, AuditEvent, ChainCheck, ChainHead, PhoneNumberId, StatCounter, verify_chain,
};
use crate::outbound::Refusal;

/// Days of the global audit feed one request walks at most.
const MAX_FEED_DAYS: i64 = 31;
/// Suppressed messages per transaction: 2 actions each, plus the counters.
const SUPPRESSIONS_PER_TRANSACTION: usize = 40;

/// The two kinds of audit events the feed keeps apart (S2): traffic
/// refused (`inbound_suppressed`, `outbound_refused`), which a spam flood
/// multiplies, and changes (every other action), so that a feed of changes
/// never reads through a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuditClass {
    Traffic,
    Change,
}

impl AuditClass {
    pub const ALL: [AuditClass; 2] = [AuditClass::Traffic, AuditClass::Change];

    pub fn of(action: Action) -> Self {
        match action {
            Action::InboundSuppressed | Action::OutboundRefused => AuditClass::Traffic,
            _ => AuditClass::Change,
        }
    }

    fn code(self) -> &'static str {
        match self {
            AuditClass::Traffic => "t",
            AuditClass::Change => "c",
        }
    }
}

/// Index partition of one shard of one class of a day of the global audit
/// feed (B8).
pub(super) fn audit_index_pk(day: &str, class: AuditClass, shard: u32) -> String {
    format!("D#{day}#{}#{shard:02}", class.code())
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AuditItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl AuditItem {
    /// `partition` is a subject's (`N#…`, `U#…`) or `S#<settings id>`.
    pub fn new(partition: String, event: &AuditEvent) -> Self {
        AuditItem {
            pk: partition,
            sk: event.event_id.clone(),
            // Spread by event, not subject: one noisy sender's events still
            // land on every shard of the day.
            gsi1pk: audit_index_pk(
                &day_of(event.at),
                AuditClass::of(event.action),
                shard_of(&event.event_id),
            ),
            gsi1sk: event.event_id.clone(),
            event: event.clone(),
        }
    }
}

/// The event an Audit item holds, from its image in the table's stream
/// (B14).
pub fn audit_event_of_image(image: serde_dynamo::Item) -> Result<AuditEvent, StoreError> {
    Ok(serde_dynamo::from_item::<_, AuditItem>(image)?.event)
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
    /// An append-only audit write (B53): never overwrites an event.
    pub(super) fn audit_put(
        &self,
        partition: String,
        event: &crate::model::AuditEvent,
    ) -> Result<TransactWriteItem, StoreError> {
        let item = serde_dynamo::to_item(AuditItem::new(partition, event))?;
        let put = Put::builder()
            .table_name(&self.tables.audit)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)");
        Ok(TransactWriteItem::builder()
            .put(build(put.build())?)
            .build())
    }

    /// B23: for each suppressed message, in one transaction per group: its
    /// claim marked done, an `inbound_suppressed` audit event (message id,
    /// type and time; never the content) and the day's counter. A retry
    /// finds the claim done, so nothing is recorded or counted twice.
    ///
    /// Returns how many suppressions this call recorded (a group whose
    /// claims were completed or taken over meanwhile records nothing).
    ///
    /// The transactions of one delivery never name the same counter:
    /// DynamoDB cancels transactions that meet on an item. Suppressions are
    /// grouped by the counter shard of their sender (so counts spread as
    /// senders do, S1), 40 to a group; each group adds to one shard, its
    /// own unless an earlier group took it, else a free one, so that up to
    /// 16 groups (640 suppressions, however few senders) go side by side in
    /// one round (B29). Past 16, the groups of a shard run in turn.
    pub async fn record_suppressed(
        &self,
        suppressed: &[Suppression],
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let done_ttl = (now + Duration::days(DONE_CLAIM_DAYS)).timestamp();
        let mut by_shard: BTreeMap<u32, Vec<&Suppression>> = BTreeMap::new();
        for suppression in suppressed {
            by_shard
                .entry(shard_of(suppression.subject.as_str()))
                .or_default()
                .push(suppression);
        }
        let mut lanes: BTreeMap<u32, Vec<&[&Suppression]>> = BTreeMap::new();
        let mut overflow: Vec<&[&Suppression]> = Vec::new();
        for (shard, of_shard) in &by_shard {
            for group in of_shard.chunks(SUPPRESSIONS_PER_TRANSACTION) {
                if lanes.contains_key(shard) {
                    overflow.push(group);
                } else {
                    lanes.insert(*shard, vec![group]);
                }
            }
        }
        let free: Vec<u32> = (0..SHARDS).filter(|s| !lanes.contains_key(s)).collect();
        for (i, group) in overflow.into_iter().enumerate() {
            let shard = free.get(i).copied().unwrap_or(i as u32 % SHARDS);
            lanes.entry(shard).or_default().push(group);
        }
        let lanes = lanes
            .into_iter()
            .map(|(shard, groups)| async move {
                let recorded = run_in_turn(
                    groups
                        .into_iter()
                        .map(|group| {
                            self.record_suppressed_group(group, shard, owner, now, done_ttl)
                        })
                        .collect(),
                )
                .await?;
                Ok::<usize, StoreError>(recorded.into_iter().sum())
            })
            .collect();
        Ok(run_all(lanes).await?.into_iter().sum())
    }

    async fn record_suppressed_group(
        &self,
        group: &[&Suppression],
        shard: u32,
        owner: &str,
        now: DateTime<Utc>,
        done_ttl: i64,
    ) -> Result<usize, StoreError> {
        let mut actions = Vec::with_capacity(group.len() * 2 + 1);
        for suppression in group {
            let claim = Update::builder()
                .table_name(&self.tables.messages)
                .key("pk", s(format!("W#{}", suppression.key)))
                .key("sk", s("W"))
                .update_expression("SET #state = :done, #ttl = :ttl")
                .condition_expression("#owner = :owner AND #state = :pending")
                .expression_attribute_names("#state", "state")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":done", s("done"))
                .expression_attribute_values(":pending", s("pending"))
                .expression_attribute_values(":ttl", n(done_ttl))
                .expression_attribute_values(":owner", s(owner))
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            actions.push(TransactWriteItem::builder().update(claim).build());
            actions.push(self.audit_put(
                subject_pk(&suppression.subject),
                &suppression_event(suppression, now),
            )?);
        }
        actions.push(self.counter_update(
            now,
            shard,
            StatCounter::InboundSuppressed.attribute(),
            group.len() as u64,
        )?);
        if self.transact_with_conflict_retries(actions).await? {
            return Ok(group.len());
        }
        if group.len() == 1 {
            // Its claim was completed or taken over: recorded elsewhere.
            return Ok(0);
        }
        // One claim of the group was lost; the others are still ours and
        // must not go unrecorded with it.
        let mut recorded = 0;
        for one in group.chunks(1) {
            recorded +=
                Box::pin(self.record_suppressed_group(one, shard, owner, now, done_ttl)).await?;
        }
        Ok(recorded)
    }

    /// B31: an `outbound_refused` audit event (`event_id`, made once per
    /// refusal) and the day's counter, in one transaction.
    pub async fn record_outbound_refused(
        &self,
        event_id: &str,
        subject: &Subject,
        business: &PhoneNumberId,
        refusal: &Refusal,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let event = AuditEvent {
            event_id: event_id.to_owned(),
            subject: Some(subject.clone()),
            scope: refusal.scope().map(ToString::to_string),
            action: Action::OutboundRefused,
            actor: actor.actor.clone(),
            client: actor.client.clone(),
            reason: Some(refusal.reason().to_owned()),
            source: None,
            at: now,
            details: refusal_details(business, refusal),
            prev_event_id: None,
            prev_hash: None,
            hash: None,
        };
        let audit = self.audit_put(subject_pk(subject), &event)?;
        let counter = self.counter_update(
            now,
            shard_of(subject.as_str()),
            StatCounter::OutboundRefused.attribute(),
            1,
        )?;
        // The token is the same on every attempt of one refusal: a retry of
        // a write that landed without its answer is not written (or
        // counted) twice. One that landed under a moved counter's token is
        // another request, and finds its event written: recorded.
        match self.transact(vec![audit, counter], Some(event_id)).await? {
            Outcome::Committed => Ok(()),
            outcome if outcome.guard_failed() => Ok(()),
            _ => Err(StoreError::Conflict),
        }
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
            // Consistent: a page read just after a change shows it (and
            // holds the chain head read before it, B53).
            .consistent_read(true)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        request = match cursor.and_then(Cursor::position) {
            Some(after) => request
                .key_condition_expression("pk = :pk AND sk < :after")
                .expression_attribute_values(":after", s(after)),
            None => request.key_condition_expression("pk = :pk"),
        };
        let events: Vec<AuditEvent> = super::batch::one_page::<AuditItem>(request)
            .await?
            .into_iter()
            .map(|item| item.event)
            .collect();
        Ok(Page::of_one_more(events, limit, |last| {
            Cursor::at("history", None, last.event_id.clone())
        }))
    }

    /// B53: the head of `subject`'s chain as its `STATE` records it (strongly
    /// consistent). Read before the history page it checks, so that the
    /// page holds the head or newer events.
    pub async fn audit_head(&self, subject: &Subject) -> Result<Option<ChainHead>, StoreError> {
        let state = self
            .get_one(&self.tables.blocklist, subject_pk(subject), STATE)
            .await?;
        match state {
            Some(item) => Ok(state_from_item(subject, item)?.audit_head),
            None => Ok(None),
        }
    }

    /// B53: whether a page of `subject`'s history (newest first) holds as
    /// a chain: its own links, the link to the change event just before
    /// the page (one read, by the id the page's oldest link names), and,
    /// for the first page, `head` as read before the page
    /// ([`Store::audit_head`]).
    pub async fn history_chain(
        &self,
        subject: &Subject,
        page: &[AuditEvent],
        head: Option<Option<ChainHead>>,
    ) -> Result<ChainCheck, StoreError> {
        // The link that names an event beyond the page (the chain's oldest
        // on it, whatever the page's order).
        let before_page = page
            .iter()
            .filter(|e| e.is_chained())
            .filter_map(|e| e.prev_event_id.clone())
            .find(|id| !page.iter().any(|e| &e.event_id == id));
        let older = match &before_page {
            // Gone, it cannot be linked to: the check says so.
            Some(id) => match self
                .get_one(&self.tables.audit, subject_pk(subject), id)
                .await?
            {
                Some(item) => Some(serde_dynamo::from_item::<_, AuditItem>(item)?.event),
                None => None,
            },
            None => None,
        };
        Ok(verify_chain(
            page,
            older.as_ref(),
            head.as_ref().map(Option::as_ref),
        ))
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
}

fn ulid_bound(at: DateTime<Utc>, upper: bool) -> String {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let random = if upper { (1u128 << 80) - 1 } else { 0 };
    ulid::Ulid::from_parts(ms, random).to_string()
}

/// What an `outbound_refused` event records beyond its fields.
fn refusal_details(business: &PhoneNumberId, refusal: &Refusal) -> serde_json::Value {
    let mut details = json!({ "phone_number_id": business, "reason": refusal.reason() });
    if let Some(rule) = refusal.rule() {
        details["rule"] = json!(rule);
    }
    details
}

fn suppression_event(suppression: &Suppression, now: DateTime<Utc>) -> AuditEvent {
    let message = &suppression.message;
    let mut details = json!({
        "message_id": message.id,
        "message_type": message.message_type,
        "message_timestamp": message.timestamp.map(crate::model::format_time),
        "phone_number_id": message.phone_number_id,
    });
    if let Some(rule) = &suppression.block.rule {
        details["rule"] = json!(rule);
    }
    AuditEvent {
        event_id: AuditEvent::new_id(now),
        subject: Some(suppression.subject.clone()),
        scope: Some(suppression.block.scope.to_string()),
        action: Action::InboundSuppressed,
        actor: "webhook-ingress".to_owned(),
        client: None,
        reason: None,
        source: None,
        at: now,
        details,
        prev_event_id: None,
        prev_hash: None,
        hash: None,
    }
}
