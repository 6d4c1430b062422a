//! Statistics (B9): day counters under `STATS#<nn>` / `D#<yyyy-mm-dd>` and
//! the count of blocked subjects under `STATS#<nn>` / `C`.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::batch::all_pages;
use super::keys::{SHARDS, day_of};
use super::{Item, Store, StoreError, build, key, n, s};
use crate::model::{DayStats, Stats};

/// Partition of one shard of the statistics counters (B9); its sort keys
/// are `D#<yyyy-mm-dd>` (day counters) and [`BLOCKED_COUNT`].
pub(super) fn stats_pk(shard: u32) -> String {
    format!("STATS#{shard:02}")
}

/// Sort key of a shard's day counters.
pub(super) fn stats_day_sk(day: &str) -> String {
    format!("D#{day}")
}

/// Sort key of a shard's count of blocked subjects.
pub(super) const BLOCKED_COUNT: &str = "C";

impl Store {
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

    /// Adds `by` to one day counter (B9), in the shard of the number.
    pub(super) fn counter_update(
        &self,
        at: DateTime<Utc>,
        shard: u32,
        attribute: &str,
        by: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        self.counters_update(at, shard, &[(attribute, by)])
    }

    /// Adds to several counters of one day shard in one update.
    pub(super) fn counters_update(
        &self,
        at: DateTime<Utc>,
        shard: u32,
        counts: &[(&str, u64)],
    ) -> Result<TransactWriteItem, StoreError> {
        let day = day_of(at);
        let adds: Vec<String> = (0..counts.len()).map(|i| format!("#c{i} :b{i}")).collect();
        let mut update = Update::builder()
            .table_name(&self.tables.blocklist)
            .key("pk", s(stats_pk(shard)))
            .key("sk", s(stats_day_sk(&day)))
            .update_expression(format!("SET #date = :date ADD {}", adds.join(", ")))
            .expression_attribute_names("#date", "date")
            .expression_attribute_values(":date", s(day));
        for (i, (attribute, by)) in counts.iter().enumerate() {
            update = update
                .expression_attribute_names(format!("#c{i}"), *attribute)
                .expression_attribute_values(format!(":b{i}"), n(by));
        }
        Ok(TransactWriteItem::builder()
            .update(build(update.build())?)
            .build())
    }
}

/// The shard of a counter update of a transaction: an unconditional
/// update of a `STATS#<nn>` item; `None` for any other action.
pub(super) fn counter_shard(action: &TransactWriteItem) -> Option<u32> {
    let update = action.update.as_ref()?;
    if update.condition_expression.is_some() {
        return None;
    }
    update
        .key
        .get("pk")?
        .as_s()
        .ok()?
        .strip_prefix("STATS#")?
        .parse()
        .ok()
}

/// Moves a counter update of a transaction ([`counter_shard`]) to another
/// shard; any other action stays as it is.
///
/// A counter is one item that every transaction of its shard adds to, and
/// DynamoDB cancels a transaction that meets another one on an item
/// (`TransactionConflict`). Its shards are interchangeable: a figure is
/// their sum, whatever shard each addition went to. So a transaction
/// cancelled on counters alone is sent again with them elsewhere, instead
/// of waiting for the same item. The new shard is drawn at random, so the
/// transactions one busy item turned away do not all meet again on the
/// next one; but a transaction sent under a `ClientRequestToken` (`token`,
/// the move's own) always moves the same way, so that one token always
/// names the same writes, whichever attempt of the caller sends it.
pub(super) fn move_counter(action: &mut TransactWriteItem, token: Option<&str>) {
    use std::hash::BuildHasher;
    let (Some(shard), Some(update)) = (counter_shard(action), action.update.as_mut()) else {
        return;
    };
    let draw = match token {
        Some(token) => u64::from(super::keys::shard_of(&format!("{token}#{shard}"))),
        None => std::collections::hash_map::RandomState::new().hash_one(shard),
    };
    let other = (shard + 1 + (draw % u64::from(SHARDS - 1)) as u32) % SHARDS;
    update.key.insert("pk".to_owned(), s(stats_pk(other)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(pk: &str, condition: Option<&str>) -> TransactWriteItem {
        let update = Update::builder()
            .table_name("Blocklist")
            .key("pk", s(pk))
            .key("sk", s("D#2026-12-04"))
            .update_expression("ADD inbound_suppressed :b")
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .expect("an update");
        TransactWriteItem::builder().update(update).build()
    }

    fn pk(action: &TransactWriteItem) -> String {
        action.update.as_ref().unwrap().key["pk"]
            .as_s()
            .unwrap()
            .clone()
    }

    /// S1: a counter moves to another of the 16 shards, drawn at random;
    /// every other action (a guarded update, any other item) stays put.
    #[test]
    fn s1_a_counter_moves_to_another_shard_and_nothing_else_moves() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let mut counter = update("STATS#07", None);
            move_counter(&mut counter, None);
            let moved = pk(&counter);
            let shard: u32 = moved.strip_prefix("STATS#").unwrap().parse().unwrap();
            assert!(shard < SHARDS && shard != 7, "{moved}");
            assert_eq!(moved, stats_pk(shard));
            seen.insert(shard);
        }
        assert_eq!(seen.len() as u32, SHARDS - 1, "{seen:?}");

        for (pk_before, condition) in [
            ("STATS#07", Some("attribute_exists(pk)")),
            ("N#+16505551234", None),
            ("W#wamid.1", None),
        ] {
            let mut other = update(pk_before, condition);
            assert_eq!(counter_shard(&other), None);
            move_counter(&mut other, None);
            assert_eq!(pk(&other), pk_before);
        }
        assert_eq!(counter_shard(&update("STATS#15", None)), Some(15));

        // Under a token, a move always goes the same way.
        let moved = |token: &str| {
            let mut counter = update("STATS#07", None);
            move_counter(&mut counter, Some(token));
            pk(&counter)
        };
        assert_eq!(moved("01KB-1"), moved("01KB-1"));
        assert_ne!(moved("01KB-1"), "STATS#07");
    }
}
