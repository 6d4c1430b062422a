//! Feeds functions from DynamoDB Local's streams, as Lambda's event source
//! mappings do in AWS ([`Feed`]): `wa-blocked` from the Failures stream,
//! `change-events` and `platform-block` from the Audit stream, `block-import`
//! from the Imports stream. Each with its mapping's filter,
//! batches of up to 100 records in Lambda's DynamoDB event shape, and
//! `batchItemFailures` honoured (the failed record and those after it are
//! retried, as many times as the template's mapping, then dropped with an
//! error in the log where AWS would use the DLQ).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::server::Stack;

const POLL_EVERY: Duration = Duration::from_millis(500);
const BATCH_SIZE: usize = 100;

/// One event source mapping of the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// `WaBlockedDeliveryFailures`: new `F#` items to `wa-blocked`.
    DeliveryFailures,
    /// `ChangeEventsFromAudit`: new audit events to `change-events`.
    AuditEvents,
    /// `PlatformBlockFromAudit`: block changes and suppressed messages to
    /// `platform-block`.
    PlatformBlocks,
    /// `BlockImportChunks`: new import chunks to `block-import`.
    ImportChunks,
}

impl Feed {
    /// The mapping's `MaximumRetryAttempts`.
    const fn max_retries(self) -> u32 {
        match self {
            Feed::DeliveryFailures => 5,
            Feed::AuditEvents | Feed::PlatformBlocks | Feed::ImportChunks => 10,
        }
    }

    fn table(self, stack: &Stack) -> String {
        let tables = stack.store.tables();
        match self {
            Feed::DeliveryFailures => tables.failures.clone(),
            Feed::AuditEvents | Feed::PlatformBlocks => tables.audit.clone(),
            Feed::ImportChunks => tables.imports.clone(),
        }
    }

    /// Where the positions in the stream are kept, in `DEV_DATA_DIR`.
    fn checkpoint(self) -> &'static str {
        match self {
            Feed::DeliveryFailures => "stream-positions.json",
            Feed::AuditEvents => "audit-stream-positions.json",
            Feed::PlatformBlocks => "platform-stream-positions.json",
            Feed::ImportChunks => "imports-stream-positions.json",
        }
    }

    /// The mapping's `FilterCriteria`.
    fn matches(self, record: &Record) -> bool {
        let inserted = record.event_name.as_ref().map(|n| n.as_str()) == Some("INSERT");
        match self {
            Feed::AuditEvents => inserted,
            Feed::PlatformBlocks => {
                let action = record
                    .dynamodb
                    .as_ref()
                    .and_then(|d| d.new_image.as_ref())
                    .and_then(|image| image.get("action"))
                    .and_then(|action| action.as_s().ok());
                inserted
                    && action.is_some_and(|a| {
                        platform_block::STREAM_ACTIONS
                            .iter()
                            .any(|known| known.as_str() == a)
                    })
            }
            Feed::DeliveryFailures => {
                let failure = record
                    .dynamodb
                    .as_ref()
                    .and_then(|d| d.keys.as_ref())
                    .and_then(|k| k.get("pk"))
                    .and_then(|pk| pk.as_s().ok())
                    .is_some_and(|pk| pk.starts_with("F#"));
                inserted && failure
            }
            Feed::ImportChunks => {
                let chunk = record
                    .dynamodb
                    .as_ref()
                    .and_then(|d| d.keys.as_ref())
                    .and_then(|k| k.get("sk"))
                    .and_then(|sk| sk.as_s().ok())
                    .is_some_and(|sk| sk == "CHUNK");
                inserted && chunk
            }
        }
    }

    fn function(self) -> &'static str {
        match self {
            Feed::DeliveryFailures => "wa-blocked",
            Feed::AuditEvents => "change-events",
            Feed::PlatformBlocks => "platform-block",
            Feed::ImportChunks => "block-import",
        }
    }

    /// One invocation with `records`: the function's answer, or its error.
    async fn invoke(self, stack: &Stack, records: &[Value]) -> Result<Value, String> {
        let event = json!({ "Records": records });
        match self {
            Feed::DeliveryFailures => wa_blocked::handle(&stack.wa_blocked, event)
                .await
                .map_err(|e| e.to_string()),
            Feed::AuditEvents => Ok(change_events::handle(&stack.change_events, event).await),
            Feed::PlatformBlocks => platform_block::handle(&stack.platform_block, event)
                .await
                .map_err(|e| e.to_string()),
            // The same app as the API's: block-import is its worker.
            Feed::ImportChunks => Ok(block_import::handle(&stack.block_api, event).await),
        }
    }
}

/// Runs `feed` until the task is dropped.
pub async fn run(stack: Arc<Stack>, feed: Feed) {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut config = aws_sdk_dynamodbstreams::config::Builder::from(&sdk);
    // DynamoDB Local serves its streams on its own endpoint.
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL_DYNAMODB") {
        config = config.endpoint_url(endpoint);
    }
    let streams = aws_sdk_dynamodbstreams::Client::from_conf(config.build());
    let table = feed.table(&stack);
    let arn = match stack
        .store
        .client()
        .describe_table()
        .table_name(&table)
        .send()
        .await
    {
        Ok(out) => out.table.and_then(|t| t.latest_stream_arn),
        Err(e) => {
            tracing::error!(error = %blocklist::redact::error(&e), "stream poller: no table");
            return;
        }
    };
    let Some(arn) = arn else {
        tracing::error!(table = %table, "stream poller: the table has no stream");
        return;
    };
    // Like the event source mapping, the poller keeps its position in each
    // shard (in DEV_DATA_DIR, so a restart resumes where it stopped). A shard
    // without a position is read from its start, skipping what was written
    // before this start; DynamoDB Local rounds creation times down to the
    // minute, hence the floor.
    let checkpoint = std::env::var("DEV_DATA_DIR")
        .ok()
        .map(|d| std::path::Path::new(&d).join(feed.checkpoint()));
    let now = chrono::Utc::now().timestamp();
    let started = aws_smithy_types::DateTime::from_secs(now - now % 60);
    let mut shards: HashMap<String, ShardState> = load_positions(checkpoint.as_deref());
    loop {
        if let Err(error) = poll(&streams, &arn, &mut shards, started, &stack, feed).await {
            tracing::warn!(error = %error, function = feed.function(), "stream poller");
        }
        save_positions(checkpoint.as_deref(), &shards);
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn load_positions(path: Option<&std::path::Path>) -> HashMap<String, ShardState> {
    let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return HashMap::new();
    };
    let positions: HashMap<String, String> = serde_json::from_str(&text).unwrap_or_default();
    positions
        .into_iter()
        .map(|(shard, sequence)| {
            (
                shard,
                ShardState {
                    last_sequence: Some(sequence),
                    ..ShardState::default()
                },
            )
        })
        .collect()
}

fn save_positions(path: Option<&std::path::Path>, shards: &HashMap<String, ShardState>) {
    let Some(path) = path else { return };
    let positions: HashMap<&String, &String> = shards
        .iter()
        .filter_map(|(id, s)| s.last_sequence.as_ref().map(|seq| (id, seq)))
        .collect();
    if let Ok(text) = serde_json::to_string(&positions) {
        let _ = std::fs::write(path, text);
    }
}

#[derive(Default)]
struct ShardState {
    iterator: Option<String>,
    /// The last record handed to the function, to resume after it.
    last_sequence: Option<String>,
    /// The shard is closed and read to its end.
    done: bool,
    /// Read from its start in this run: records made before the run are
    /// skipped.
    from_start: bool,
}

/// Messages only: the SDK's `Debug` dumps whole responses (B52).
fn describe(error: impl std::error::Error + 'static) -> String {
    blocklist::redact::error(&error)
}

async fn poll(
    streams: &aws_sdk_dynamodbstreams::Client,
    arn: &str,
    shards: &mut HashMap<String, ShardState>,
    started: aws_smithy_types::DateTime,
    stack: &Arc<Stack>,
    feed: Feed,
) -> Result<(), String> {
    let description = streams
        .describe_stream()
        .stream_arn(arn)
        .send()
        .await
        .map_err(describe)?;
    let ids: Vec<String> = description
        .stream_description
        .and_then(|d| d.shards)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| s.shard_id)
        .collect();
    for id in ids {
        let state = shards.entry(id.clone()).or_default();
        if state.done {
            continue;
        }
        if state.iterator.is_none() {
            let request = streams.get_shard_iterator().stream_arn(arn).shard_id(&id);
            let request = match &state.last_sequence {
                Some(sequence) => request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(sequence),
                None => {
                    state.from_start = true;
                    request.shard_iterator_type(ShardIteratorType::TrimHorizon)
                }
            };
            state.iterator = request
                .send()
                .await
                .map_err(|e| format!("shard {id}: get_shard_iterator: {}", describe(e)))?
                .shard_iterator;
        }
        let Some(iterator) = state.iterator.take() else {
            continue;
        };
        // On an error the iterator stays dropped and is taken again, after
        // the last record handled, on the next poll.
        let out = streams
            .get_records()
            .shard_iterator(iterator)
            .send()
            .await
            .map_err(|e| format!("shard {id}: get_records: {}", describe(e)))?;
        let records = out.records.unwrap_or_default();
        if let Some(last) = records
            .last()
            .and_then(|r| r.dynamodb.as_ref())
            .and_then(|d| d.sequence_number.clone())
        {
            state.last_sequence = Some(last);
        }
        match out.next_shard_iterator {
            Some(next) => state.iterator = Some(next),
            None => state.done = true,
        }
        let from_start = state.from_start;
        let fresh = |r: &&Record| {
            !from_start
                || r.dynamodb
                    .as_ref()
                    .and_then(|d| d.approximate_creation_date_time)
                    .is_none_or(|t| t >= started)
        };
        let batch: Vec<Value> = records
            .iter()
            .filter(fresh)
            .filter(|r| feed.matches(r))
            .map(lambda_record)
            .collect();
        for chunk in batch.chunks(BATCH_SIZE) {
            deliver(stack, feed, chunk.to_vec()).await;
        }
    }
    Ok(())
}

/// A record in the shape Lambda hands to a function.
fn lambda_record(record: &Record) -> Value {
    let stream = record.dynamodb.as_ref();
    let image = |map: Option<&HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
        map.cloned()
            .map(|m| serde_json::to_value(serde_dynamo::Item::from(m)).unwrap_or(Value::Null))
            .unwrap_or_else(|| json!({}))
    };
    json!({
        "eventID": record.event_id,
        "eventName": record.event_name.as_ref().map(|n| n.as_str()),
        "eventVersion": record.event_version,
        "eventSource": "aws:dynamodb",
        "awsRegion": record.aws_region.clone().unwrap_or_else(|| "us-east-1".into()),
        "dynamodb": {
            "ApproximateCreationDateTime": stream.and_then(|s| s.approximate_creation_date_time).map(|t| t.secs()).unwrap_or(0),
            "Keys": image(stream.and_then(|s| s.keys.as_ref())),
            "NewImage": image(stream.and_then(|s| s.new_image.as_ref())),
            "SequenceNumber": stream.and_then(|s| s.sequence_number.clone()),
            "SizeBytes": stream.and_then(|s| s.size_bytes).unwrap_or(0),
            "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": "arn:aws:dynamodb:local:000000000000:table/Blocklist/stream/local",
    })
}

/// Invokes the feed's function; on reported failures, invokes it again
/// with the first failed record and everything after it, as Lambda does.
async fn deliver(stack: &Arc<Stack>, feed: Feed, mut batch: Vec<Value>) {
    let retries = feed.max_retries();
    for attempt in 0..=retries {
        let answer = feed
            .invoke(stack, &batch)
            .instrument(crate::server::invocation_span(
                &crate::apigw::new_request_id(),
            ))
            .await;
        let failed: Vec<String> = match &answer {
            Ok(value) => value["batchItemFailures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                .collect(),
            Err(error) => {
                tracing::error!(error = %error, function = feed.function(), "the function failed the whole batch");
                batch
                    .iter()
                    .filter_map(|r| r["dynamodb"]["SequenceNumber"].as_str().map(str::to_owned))
                    .collect()
            }
        };
        let Some(first) = batch.iter().position(|r| {
            r["dynamodb"]["SequenceNumber"]
                .as_str()
                .is_some_and(|s| failed.iter().any(|f| f == s))
        }) else {
            return;
        };
        batch.drain(..first);
        if attempt < retries {
            tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
        }
    }
    tracing::error!(
        records = batch.len(),
        function = feed.function(),
        "stream records failed after retries; dropped (AWS: on-failure destination)"
    );
}

#[cfg(test)]
mod tests {
    use super::Feed;

    /// The local stack retries failed records as often as the deployed
    /// mappings do.
    #[test]
    fn retries_as_often_as_the_template_mappings() {
        let template = include_str!("../../template.yaml");
        for (mapping, feed) in [
            ("WaBlockedDeliveryFailures", Feed::DeliveryFailures),
            ("ChangeEventsFromAudit", Feed::AuditEvents),
            ("PlatformBlockFromAudit", Feed::PlatformBlocks),
        ] {
            let text = template
                .split(&format!("\n  {mapping}:"))
                .nth(1)
                .unwrap_or_else(|| panic!("the {mapping} mapping"));
            let retries: u32 = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("MaximumRetryAttempts:"))
                .expect("MaximumRetryAttempts")
                .trim()
                .parse()
                .expect("a number");
            assert_eq!(feed.max_retries(), retries, "{mapping}");
        }
    }
}
