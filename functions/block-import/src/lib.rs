//! `block-import` (SPEC B91): blocks the rows of CSV imports. `block-api`
//! stores an uploaded file as chunks of up to 500 rows in the Imports
//! table; each new chunk reaches this function from the table's stream,
//! and its rows are blocked as `PUT /v1/blocks` blocks them
//! ([`block_api::imports::work_chunk`]), then its results and the import's
//! counts are recorded in one transaction.
//!
//! The answer lists the first record that failed (`batchItemFailures`), so
//! Lambda retries from it; a chunk already recorded is skipped, and the
//! rows a failed attempt did are kept with the chunk and reported by the
//! retry as they were done.

use block_api::imports::{ChunkOutcome, work_chunk};
use serde_json::{Value, json};

/// What every invocation needs; built once at init: the block API's
/// store and clock.
pub use block_api::App;

/// Handles one stream batch (`{"Records":[…]}`); always answers.
pub async fn handle(app: &App, event: Value) -> Value {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for record in records {
        let sequence = blocklist::stream::sequence_of(record);
        let key = |name: &str| {
            record
                .pointer(&format!("/dynamodb/Keys/{name}/S"))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let Some((id, index)) = blocklist::store::chunk_of_key(key("pk"), key("sk")) else {
            tracing::info!(sequence = %sequence, "record skipped: not an import chunk");
            continue;
        };
        match work_chunk(app, &id, index).await {
            Ok(outcome) => {
                let outcome = match outcome {
                    ChunkOutcome::Done => "done",
                    ChunkOutcome::AlreadyDone => "already done",
                    ChunkOutcome::Missing => "missing (expired)",
                    ChunkOutcome::Aborted => "skipped: its upload failed",
                };
                tracing::info!(sequence = %sequence, import = %id, chunk = index, outcome, "chunk handled");
            }
            Err(error) => {
                tracing::error!(sequence = %sequence, import = %id, chunk = index, error = %error, "chunk failed");
                // Lambda retries from this record: the ones after it too.
                return json!({ "batchItemFailures": [{ "itemIdentifier": sequence }] });
            }
        }
    }
    json!({ "batchItemFailures": [] })
}
