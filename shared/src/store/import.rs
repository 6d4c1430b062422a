//! CSV imports (B91): the Imports table.
//!
//! | entity | pk                        | sk      |
//! |--------|---------------------------|---------|
//! | import | `IMPORT#<id>`             | `JOB`   |
//! | chunk  | `IMPORT#<id>#<index:05>`  | `CHUNK` |
//!
//! Capacity (S1): every chunk is its own partition, so an upload of 100,000
//! rows writes 200 partitions of at most ~130 KB each (BatchWriteItem, 25 at
//! a time), never 30,000 WCU into one key. The import item takes one update
//! per chunk worked through (200 over the import, a few per second). The
//! table's stream carries the chunk inserts to `block-import` (the mapping
//! filters on `sk = CHUNK`); every item expires after [`KEEP_DAYS`].
//!
//! Reads (S2): progress is one `GetItem`; results read the chunks a page
//! shows, and the failed rows only the chunks that hold one (the import
//! lists them).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::{back_off, run_all};
use super::transaction::Outcome;
use super::{Item, Store, StoreError, build, key, n, s};
use crate::import::{ImportCounts, ImportRow, ImportStatus, RowResult};
use crate::model::{Actor, format_time};

/// Imports and their results are kept 30 days.
pub const KEEP_DAYS: i64 = 30;

/// DynamoDB's limit of items in one `BatchWriteItem`.
const BATCH_WRITE_ITEMS: usize = 25;

fn import_pk(id: &str) -> String {
    format!("IMPORT#{id}")
}

fn chunk_pk(id: &str, index: u32) -> String {
    format!("IMPORT#{id}#{index:05}")
}

/// An import as its API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Import {
    pub id: String,
    pub status: ImportStatus,
    pub rows: u64,
    pub rows_done: u64,
    pub counts: ImportCounts,
    pub chunks: u32,
    pub chunks_done: u32,
    pub actor: String,
    pub client: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The chunks holding a failed or invalid row, in order.
    #[serde(skip)]
    pub failed_chunks: Vec<u32>,
}

#[derive(Debug, Deserialize)]
struct ImportItem {
    id: String,
    /// `uploading` until every chunk is stored, then `ready`; `aborted`
    /// when the upload failed (its chunks are then skipped).
    #[serde(default)]
    state: String,
    #[serde(default)]
    rows: u64,
    #[serde(default)]
    chunks: u32,
    #[serde(default)]
    chunks_done: u32,
    #[serde(default)]
    blocked: u64,
    #[serde(default)]
    already_blocked: u64,
    #[serde(default)]
    invalid: u64,
    #[serde(default)]
    failed: u64,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    created_at: String,
    #[serde(default)]
    updated_at: String,
    #[serde(default)]
    failed_chunks: Vec<u32>,
}

/// Where an upload stands (the import item's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    /// Since its import item was written.
    Uploading {
        since: DateTime<Utc>,
    },
    Ready,
    Aborted,
}

/// A chunk of an import, as the worker takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportChunk {
    pub import_id: String,
    pub index: u32,
    pub actor: Actor,
    pub rows: Vec<ImportRow>,
    /// `Some` once worked through.
    pub results: Option<Vec<RowResult>>,
    /// The rows an attempt did before it failed.
    pub partial: Vec<RowResult>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChunkItem {
    pk: String,
    sk: String,
    import_id: String,
    index: u32,
    actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    /// JSON of the rows: one attribute, read whole.
    rows: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    results: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partial: Option<String>,
    ttl: i64,
}

impl ChunkItem {
    fn chunk(self) -> Result<ImportChunk, StoreError> {
        let json = |e: serde_json::Error| StoreError::Corrupt(format!("import chunk: {e}"));
        Ok(ImportChunk {
            import_id: self.import_id,
            index: self.index,
            actor: Actor {
                actor: self.actor,
                client: self.client,
            },
            rows: serde_json::from_str(&self.rows).map_err(json)?,
            results: self
                .results
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(json)?,
            partial: self
                .partial
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(json)?
                .unwrap_or_default(),
        })
    }
}

/// The key of a chunk, as a stream record names it: `(import id, index)`.
pub fn chunk_of_key(pk: &str, sk: &str) -> Option<(String, u32)> {
    if sk != "CHUNK" {
        return None;
    }
    let (id, index) = pk.strip_prefix("IMPORT#")?.rsplit_once('#')?;
    Some((id.to_owned(), index.parse().ok()?))
}

impl Store {
    /// Stores a new import: the import item (`uploading`), its chunks, then
    /// `ready`, which lets the worker start. A failed upload is marked
    /// `aborted` (as far as the store still answers), so that none of its
    /// chunks is worked through: the caller got an error and no import.
    pub async fn create_import(
        &self,
        id: &str,
        actor: &Actor,
        chunks: Vec<Vec<ImportRow>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ttl = (now + chrono::Duration::days(KEEP_DAYS)).timestamp();
        let at = format_time(now);
        let rows: usize = chunks.iter().map(Vec::len).sum();
        let mut job = Item::from([
            ("pk".to_owned(), s(import_pk(id))),
            ("sk".to_owned(), s("JOB")),
            ("id".to_owned(), s(id)),
            ("state".to_owned(), s("uploading")),
            ("rows".to_owned(), n(rows)),
            ("chunks".to_owned(), n(chunks.len())),
            ("actor".to_owned(), s(&actor.actor)),
            ("created_at".to_owned(), s(&at)),
            ("updated_at".to_owned(), s(&at)),
            ("ttl".to_owned(), n(ttl)),
        ]);
        if let Some(client) = &actor.client {
            job.insert("client".to_owned(), s(client));
        }
        self.client
            .put_item()
            .table_name(&self.tables.imports)
            .set_item(Some(job))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await?;
        let stored = self.store_chunks(id, actor, chunks, ttl).await;
        let state = if stored.is_ok() { "ready" } else { "aborted" };
        // Only from `uploading`: the worker gives an upload up after a
        // while (and then skips its chunks), and that must stay so.
        let marked = self
            .client
            .update_item()
            .table_name(&self.tables.imports)
            .set_key(Some(key(import_pk(id), "JOB")))
            .update_expression("SET #state = :state")
            .condition_expression("#state = :uploading")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state))
            .expression_attribute_values(":uploading", s("uploading"))
            .send()
            .await;
        stored?;
        marked?;
        Ok(())
    }

    async fn store_chunks(
        &self,
        id: &str,
        actor: &Actor,
        chunks: Vec<Vec<ImportRow>>,
        ttl: i64,
    ) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(chunks.len());
        for (index, rows) in chunks.into_iter().enumerate() {
            let item = ChunkItem {
                pk: chunk_pk(id, index as u32),
                sk: "CHUNK".into(),
                import_id: id.to_owned(),
                index: index as u32,
                actor: actor.actor.clone(),
                client: actor.client.clone(),
                rows: serde_json::to_string(&rows)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                results: None,
                partial: None,
                ttl,
            };
            items.push(serde_dynamo::to_item(item)?);
        }
        let batches: Vec<Vec<Item>> = items
            .chunks(BATCH_WRITE_ITEMS)
            .map(<[Item]>::to_vec)
            .collect();
        run_all(batches.into_iter().map(|b| self.write_all(b)).collect()).await?;
        Ok(())
    }

    /// A `BatchWriteItem` of up to 25 puts; unprocessed (throttled) items
    /// are retried with backoff, a bounded number of times.
    async fn write_all(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let requests = items
            .into_iter()
            .map(|item| {
                Ok(WriteRequest::builder()
                    .put_request(build(PutRequest::builder().set_item(Some(item)).build())?)
                    .build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut pending = Some(HashMap::from([(self.tables.imports.clone(), requests)]));
        let mut attempt = 0u32;
        while let Some(requests) = pending.take() {
            let out = self
                .client
                .batch_write_item()
                .set_request_items(Some(requests))
                .send()
                .await?;
            pending = out.unprocessed_items.filter(|u| !u.is_empty());
            if pending.is_some() {
                back_off(&mut attempt, "batch write throttled").await?;
            }
        }
        Ok(())
    }

    /// An import as of `now`, or `None` when there is none of that id (or
    /// it expired, or its upload did not finish).
    pub async fn import(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Import>, StoreError> {
        let Some(item) = self
            .get_one(&self.tables.imports, import_pk(id), "JOB")
            .await?
        else {
            return Ok(None);
        };
        let item: ImportItem = serde_dynamo::from_item(item)?;
        // An upload under way or failed is no import (yet).
        if item.state != "ready" {
            return Ok(None);
        }
        let counts = ImportCounts {
            blocked: item.blocked,
            already_blocked: item.already_blocked,
            invalid: item.invalid,
            failed: item.failed,
        };
        let mut failed_chunks = item.failed_chunks;
        failed_chunks.sort_unstable();
        let since_progress = DateTime::parse_from_rfc3339(&item.updated_at)
            .map(|at| now - at.with_timezone(&Utc))
            .unwrap_or_default();
        Ok(Some(Import {
            id: item.id,
            status: ImportStatus::of(item.chunks, item.chunks_done, since_progress),
            rows: item.rows,
            rows_done: counts.rows(),
            counts,
            chunks: item.chunks,
            chunks_done: item.chunks_done,
            actor: item.actor,
            client: item.client,
            created_at: item.created_at,
            updated_at: item.updated_at,
            failed_chunks,
        }))
    }

    /// Where the upload of import `id` stands; `None` without one.
    pub async fn upload_state(&self, id: &str) -> Result<Option<UploadState>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.imports)
            .set_key(Some(key(import_pk(id), "JOB")))
            .projection_expression("#state, created_at")
            .expression_attribute_names("#state", "state")
            .consistent_read(true)
            .send()
            .await?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let text = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
        };
        Ok(Some(match text("state") {
            Some("ready") => UploadState::Ready,
            Some("uploading") => UploadState::Uploading {
                since: text("created_at")
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .ok_or_else(|| StoreError::Corrupt("import: created_at".into()))?,
            },
            _ => UploadState::Aborted,
        }))
    }

    /// The results of chunk `index`, its rows `pending` while it is not
    /// worked through; `None` when the chunk is gone (expired). Strongly
    /// consistent: the results are read right after the import is done.
    pub async fn import_results(
        &self,
        id: &str,
        index: u32,
    ) -> Result<Option<Vec<RowResult>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.imports)
            .set_key(Some(key(chunk_pk(id, index), "CHUNK")))
            .projection_expression("results, #rows")
            .expression_attribute_names("#rows", "rows")
            .consistent_read(true)
            .send()
            .await?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let json = |e: serde_json::Error| StoreError::Corrupt(format!("import chunk: {e}"));
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
        if let Some(results) = text("results") {
            return Ok(Some(serde_json::from_str(results).map_err(json)?));
        }
        let rows: Vec<ImportRow> = text("rows")
            .map(|r| serde_json::from_str(r))
            .transpose()
            .map_err(json)?
            .unwrap_or_default();
        Ok(Some(
            rows.into_iter()
                .map(|row| RowResult {
                    row: row.row,
                    line: row.line,
                    number: row.number,
                    status: crate::import::RowStatus::Pending,
                    error: None,
                })
                .collect(),
        ))
    }

    /// Keeps the results of the rows an attempt at `chunk` did before it
    /// failed (with those an earlier attempt kept: `done` holds them too).
    pub async fn keep_partial_results(
        &self,
        chunk: &ImportChunk,
        done: &[RowResult],
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(done).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client
            .update_item()
            .table_name(&self.tables.imports)
            .set_key(Some(key(chunk_pk(&chunk.import_id, chunk.index), "CHUNK")))
            .update_expression("SET #partial = :done")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(results)")
            .expression_attribute_names("#partial", "partial")
            .expression_attribute_values(":done", s(json))
            .send()
            .await?;
        Ok(())
    }

    /// One chunk, read strongly consistent.
    pub async fn import_chunk(
        &self,
        id: &str,
        index: u32,
    ) -> Result<Option<ImportChunk>, StoreError> {
        self.get_one(&self.tables.imports, chunk_pk(id, index), "CHUNK")
            .await?
            .map(|item| serde_dynamo::from_item::<_, ChunkItem>(item)?.chunk())
            .transpose()
    }

    /// Records a chunk's results and adds them to its import's counts, in
    /// one transaction: a chunk counts once, however often its stream
    /// record is handed over. `false` when it was already recorded (or its
    /// import expired).
    pub async fn finish_chunk(
        &self,
        chunk: &ImportChunk,
        results: &[RowResult],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let counts = ImportCounts::of(results);
        let json =
            serde_json::to_string(results).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let chunk_update = build(
            Update::builder()
                .table_name(&self.tables.imports)
                .set_key(Some(key(chunk_pk(&chunk.import_id, chunk.index), "CHUNK")))
                .update_expression("SET results = :results")
                .condition_expression("attribute_exists(pk) AND attribute_not_exists(results)")
                .expression_attribute_values(":results", s(json))
                .build(),
        )?;
        let mut expression = String::from(
            "ADD chunks_done :one, blocked :blocked, already_blocked :already, invalid :invalid, failed :failed",
        );
        let mut values: HashMap<String, AttributeValue> = HashMap::from([
            (":one".into(), n(1)),
            (":blocked".into(), n(counts.blocked)),
            (":already".into(), n(counts.already_blocked)),
            (":invalid".into(), n(counts.invalid)),
            (":failed".into(), n(counts.failed)),
            (":at".into(), s(format_time(now))),
        ]);
        if counts.invalid + counts.failed > 0 {
            expression.push_str(", failed_chunks :chunk");
            values.insert(
                ":chunk".into(),
                AttributeValue::Ns(vec![chunk.index.to_string()]),
            );
        }
        expression.push_str(" SET updated_at = :at");
        let import_update = build(
            Update::builder()
                .table_name(&self.tables.imports)
                .set_key(Some(key(import_pk(&chunk.import_id), "JOB")))
                // Never recreates an import that expired meanwhile.
                .condition_expression("attribute_exists(pk)")
                .update_expression(expression)
                .set_expression_attribute_values(Some(values))
                .build(),
        )?;
        let actions = vec![
            TransactWriteItem::builder().update(chunk_update).build(),
            TransactWriteItem::builder().update(import_update).build(),
        ];
        // Chunks worked through at once update the one import item: their
        // transactions may conflict, and are tried again, each chunk after
        // pauses of its own (jittered by its index).
        crate::service::retry_on_conflict(8, &(&chunk.import_id, chunk.index), || async {
            match self.transact(actions.clone(), None).await? {
                Outcome::Committed => Ok(true),
                Outcome::ConditionFailed { .. } => Ok(false),
                Outcome::Conflict => Err(StoreError::Conflict),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_key_reads_back() {
        assert_eq!(
            chunk_of_key(&chunk_pk("abc", 7), "CHUNK"),
            Some(("abc".into(), 7))
        );
        assert_eq!(chunk_of_key(&import_pk("abc"), "JOB"), None);
        assert_eq!(chunk_of_key("IMPORT#abc#x", "CHUNK"), None);
    }
}
