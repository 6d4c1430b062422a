//! Reads of many items at once (batched gets, every page of a query) and
//! how many requests of one call run at once.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::KeysAndAttributes;
use futures::{StreamExt, TryStreamExt};

use super::{Item, Store, StoreError};

/// DynamoDB's limit of keys in one `BatchGetItem`.
const BATCH_GET_KEYS: usize = 100;
/// Requests in flight at once for one delivery.
const CONCURRENCY: usize = 32;
/// From this many updates on, a delivery claims and completes them by
/// transactions; fewer are one call each, all at once (the same single
/// round, at half the write cost of a transaction).
pub(super) const BATCH_FROM: usize = 8;

impl Store {
    /// Any number of Blocklist keys, strongly consistent, in concurrent
    /// batches of 100.
    pub(super) async fn batch_get_blocklist(
        &self,
        keys: Vec<Item>,
    ) -> Result<Vec<Item>, StoreError> {
        self.batch_get_all(&self.tables.blocklist, keys).await
    }

    /// Any number of keys of `table`, strongly consistent, in concurrent
    /// batches of 100.
    pub(super) async fn batch_get_all(
        &self,
        table: &str,
        keys: Vec<Item>,
    ) -> Result<Vec<Item>, StoreError> {
        let chunks: Vec<Vec<Item>> = keys.chunks(BATCH_GET_KEYS).map(<[Item]>::to_vec).collect();
        let items = run_all(
            chunks
                .into_iter()
                .map(|c| self.batch_get(table, c))
                .collect(),
        )
        .await?;
        Ok(items.into_iter().flatten().collect())
    }

    /// A strongly consistent `BatchGetItem` of up to 100 keys; unprocessed
    /// (throttled) keys are retried with backoff, a bounded number of times.
    pub(super) async fn batch_get(
        &self,
        table: &str,
        keys: Vec<Item>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut pending = Some(HashMap::from([(table.to_owned(), request)]));
        let mut attempt = 0u32;
        while let Some(items) = pending.take() {
            let out = self
                .client
                .batch_get_item()
                .set_request_items(Some(items))
                .send()
                .await?;
            found.extend(
                out.responses
                    .and_then(|mut r| r.remove(table))
                    .unwrap_or_default(),
            );
            pending = out.unprocessed_keys.filter(|k| !k.is_empty());
            if pending.is_some() {
                // Throttled keys come back unprocessed: back off and retry.
                back_off(&mut attempt, "batch read throttled").await?;
            }
        }
        Ok(found)
    }
}

/// The pause before retrying what a batch call left unprocessed (it was
/// throttled): growing, a bounded number of times, then `Unavailable`.
pub(super) async fn back_off(attempt: &mut u32, what: &str) -> Result<(), StoreError> {
    *attempt += 1;
    if *attempt > 8 {
        return Err(StoreError::Unavailable(what.to_owned()));
    }
    tokio::time::sleep(std::time::Duration::from_millis(10 << (*attempt).min(6))).await;
    Ok(())
}

impl Store {
    /// One item of `table` by its key, strongly consistent (B4).
    pub(super) async fn get_one(
        &self,
        table: &str,
        pk: String,
        sk: &str,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(super::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item)
    }
}

/// Runs transactions of one delivery one after the other: they name
/// distinct items, but DynamoDB Local serialises transactions on a table
/// and times out those left waiting (DynamoDB itself runs them at once).
/// A delivery has at most a few dozen, one per 100 updates.
pub(super) async fn run_in_turn<T, F>(futures: Vec<F>) -> Result<Vec<T>, StoreError>
where
    F: std::future::Future<Output = Result<T, StoreError>>,
{
    futures::stream::iter(futures)
        .buffered(1)
        .try_collect()
        .await
}

/// Runs `futures` with at most [`CONCURRENCY`] in flight; the first error
/// wins. (Futures are built before the stream so that no borrowing closure
/// ends up inside it: that keeps the handler future `Send`.)
pub(super) async fn run_all<T, F>(futures: Vec<F>) -> Result<Vec<T>, StoreError>
where
    F: std::future::Future<Output = Result<T, StoreError>>,
{
    futures::stream::iter(futures)
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// The items of one page of `request`, read as `I`.
pub(super) async fn one_page<I: serde::de::DeserializeOwned>(
    request: QueryFluentBuilder,
) -> Result<Vec<I>, StoreError> {
    request
        .send()
        .await?
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|item| Ok(serde_dynamo::from_item(item)?))
        .collect()
}

pub(super) async fn all_pages(request: QueryFluentBuilder) -> Result<Vec<Item>, StoreError> {
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
