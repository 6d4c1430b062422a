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
