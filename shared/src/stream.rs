//! The Audit table's stream, as Lambda delivers it to its readers
//! (`change-events`, `platform-block`): the new audit events of a batch,
//! and the `batchItemFailures` answer that makes Lambda retry from a
//! record.

use aws_lambda_events::event::dynamodb::EventRecord;
use serde_json::{Value, json};

use crate::model::AuditEvent;
use crate::redact;
use crate::store::audit_event_of_image;

/// The readable new audit events of one batch, in stream order.
#[derive(Debug, Default)]
pub struct AuditBatch {
    /// Each event with its record's sequence number.
    pub events: Vec<(String, AuditEvent)>,
    /// The first record that could not be read (it may be a release
    /// ahead): reading stopped there, so that it is retried, then parked.
    pub unreadable: Option<String>,
}

impl AuditBatch {
    /// Reads a stream batch (`{"Records":[…]}`). Records other than
    /// INSERTs are skipped: audit items are never changed.
    pub fn of(event: &Value) -> AuditBatch {
        let mut batch = AuditBatch::default();
        let records = event
            .get("Records")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for raw in records {
            let sequence = sequence_of(raw);
            match audit_event(raw) {
                Ok(Some(event)) => batch.events.push((sequence, event)),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(sequence = %sequence, error = %error, "unreadable audit record");
                    batch.unreadable = Some(sequence);
                    break;
                }
            }
        }
        batch
    }

    /// The sequence number of the first readable event.
    pub fn first_sequence(&self) -> Option<String> {
        self.events.first().map(|(sequence, _)| sequence.clone())
    }
}

/// The sequence number of a stream record (empty if it has none).
pub fn sequence_of(record: &Value) -> String {
    record
        .pointer("/dynamodb/SequenceNumber")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The answer naming the first record not handled (Lambda retries from
/// there), or none.
pub fn failed_from(sequence: Option<String>) -> Value {
    let failures: Vec<Value> = sequence
        .into_iter()
        .map(|s| json!({ "itemIdentifier": s }))
        .collect();
    json!({ "batchItemFailures": failures })
}

fn audit_event(raw: &Value) -> Result<Option<AuditEvent>, String> {
    let record: EventRecord = serde_json::from_value(raw.clone()).map_err(|e| redact::error(&e))?;
    if record.event_name != "INSERT" {
        return Ok(None);
    }
    audit_event_of_image(record.change.new_image)
        .map(Some)
        .map_err(|e| redact::error(&e))
}

/// Runs `attempt` until it succeeds, its error is not `retryable`, or
/// `pauses` are used up (one attempt more than pauses), pausing between
/// attempts: how a stream reader rides out a short outage within one
/// invocation before Lambda's own retry of the batch.
pub async fn with_pauses<T, E, F, Fut>(
    pauses: &[std::time::Duration],
    retryable: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut pauses = pauses.iter();
    loop {
        let error = match attempt().await {
            Ok(done) => return Ok(done),
            Err(error) => error,
        };
        let Some(pause) = pauses.next().filter(|_| retryable(&error)) else {
            return Err(error);
        };
        tracing::warn!(error = %error, "failed; retrying");
        tokio::time::sleep(*pause).await;
    }
}
