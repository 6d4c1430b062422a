//! `wa-blocked` (SPEC B40–B43): auto-blocks numbers WhatsApp cannot deliver
//! to. One handler takes both inputs:
//!
//! - a DynamoDB Stream batch of the delivery failures `webhook-ingress`
//!   records (`F#<number>` items of the Blocklist table); each failure whose
//!   code the business number's policy names counts towards its threshold
//!   within its window (B40). The answer lists the records that failed
//!   (`batchItemFailures`), so one bad record is retried alone (B43);
//! - a `wa_blocked` event from another system (B41), which blocks at once.
//!
//! Blocks go through the same transactional path as a manual block
//! (`blocklist::service::block`) with `source=auto`; an automatic block
//! never replaces or weakens a manual one (B42). Redelivery is harmless:
//! failures are stored once per status, and blocking an already blocked
//! number changes nothing.
//!
//! Scope: an auto-block applies to the business number the failure (or
//! event) names, whose policy decided it; without one, to `all`.

use aws_lambda_events::event::dynamodb::EventRecord;
use blocklist::autoblock::{self, AutoBlock};
use blocklist::identity::Subject;
use blocklist::inbound::DeliveryFailure;
use blocklist::metrics::{self, Counter};
use blocklist::model::{Actor, PhoneNumberId, Reason, Scope, SettingsTarget, Source};
use blocklist::policy::BlockCommand;
use blocklist::redact;
use blocklist::service::{self, BlockOutcome};
use blocklist::store::{FailureItem, StoreError};
use chrono::Duration;
use serde::Deserialize;
use serde_json::{Value, json};

/// The actor recorded for automatic blocks.
pub const ACTOR: &str = "wa-blocked";

/// The `Function` dimension of this crate's metrics outside Lambda.
const FUNCTION: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("event is neither a DynamoDB Stream batch nor a wa_blocked event")]
    UnknownEvent,
    #[error("invalid wa_blocked event: {0}")]
    InvalidEvent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What every invocation needs; built once at init.
pub use blocklist::service::StoreApp as App;

/// Handles one invocation. A stream batch always answers (with the failed
/// records); a `wa_blocked` event answers its outcome, or fails so that the
/// caller (or Lambda's async retries) can try again.
pub async fn handle(app: &App, event: Value) -> Result<Value, Error> {
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        return Ok(handle_stream(app, records).await);
    }
    if event.get("type").and_then(Value::as_str) == Some("wa_blocked") {
        return handle_wa_blocked(app, event).await;
    }
    tracing::error!("unknown event shape");
    Err(Error::UnknownEvent)
}

/// How long one stream batch may retry store calls that failed, inside the
/// function's 60 s timeout. A record that cannot be handled in that time is
/// reported and comes back with Lambda's retries (`MaximumRetryAttempts`),
/// so a store outage of a few minutes loses no automatic block, while an
/// unreadable record fails at once and reaches the dead-letter queue.
const STREAM_BUDGET: std::time::Duration = std::time::Duration::from_secs(50);

/// B40, B43: every record on its own; the ones that failed are reported.
async fn handle_stream(app: &App, records: &[Value]) -> Value {
    let deadline = tokio::time::Instant::now() + STREAM_BUDGET;
    let mut failures = Vec::new();
    for raw in records {
        let sequence = blocklist::stream::sequence_of(raw);
        match handle_record(app, raw, deadline).await {
            Ok(outcome) => tracing::info!(sequence = %sequence, outcome, "record handled"),
            Err(error) => {
                tracing::error!(sequence = %sequence, error = %error, "record failed");
                failures.push(json!({ "itemIdentifier": sequence }));
            }
        }
    }
    json!({ "batchItemFailures": failures })
}

#[derive(Debug, thiserror::Error)]
enum RecordError {
    /// Can never succeed: logged and reported, so that Lambda's bounded
    /// retries hand it to the on-failure destination. The detail is
    /// redacted: serde messages quote the offending value.
    #[error("unreadable record: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn handle_record(
    app: &App,
    raw: &Value,
    deadline: tokio::time::Instant,
) -> Result<&'static str, RecordError> {
    let record: EventRecord = serde_json::from_value(raw.clone())
        .map_err(|e| RecordError::Unreadable(redact::error(&e)))?;
    if record.event_name != "INSERT" && record.event_name != "MODIFY" {
        return Ok("ignored: not a new failure");
    }
    let kind = record
        .change
        .new_image
        .get("kind")
        .and_then(|v| match v {
            serde_dynamo::AttributeValue::S(s) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or_default();
    if kind != FailureItem::KIND {
        return Ok("ignored: not a delivery failure");
    }
    // The item as `webhook-ingress` writes it (by number or BSUID, B64).
    let image: FailureItem = serde_dynamo::from_item(record.change.new_image)
        .map_err(|e| RecordError::Unreadable(redact::error(&e)))?;
    let failure = image
        .failure()
        .map_err(|e| RecordError::Unreadable(e.to_string()))?;
    // Counting and blocking are idempotent (B43), so a store error is
    // retried here rather than left to the stream's few retries.
    Ok(service::retry_until(deadline, || consider_failure(app, &failure)).await?)
}

/// B40: counts the failure against the policy of its business number.
async fn consider_failure(
    app: &App,
    failure: &DeliveryFailure,
) -> Result<&'static str, StoreError> {
    let target = match &failure.phone_number_id {
        Some(id) => SettingsTarget::Business(id.clone()),
        None => SettingsTarget::Default,
    };
    let policy = app
        .store
        .recent_settings(&target)
        .await?
        .effective
        .auto_block;
    let now = (app.now)();
    if !policy.enabled {
        return Ok("ignored: auto-block disabled");
    }
    let since = now - Duration::days(i64::from(policy.window_days));
    let (recent, unblocked_at) = tokio::try_join!(
        app.store.failures_since(&failure.subject, since),
        app.store.last_unblocked_at(&failure.subject),
    )?;
    let Some(decision) = autoblock::decide_auto_block(failure, &recent, &policy, unblocked_at, now)
    else {
        return Ok("counted: below threshold or code not in policy");
    };
    let AutoBlock {
        reason,
        reason_code,
        failures,
    } = decision;
    let scope = failure
        .phone_number_id
        .clone()
        .map_or(Scope::All, Scope::Business);
    let details = json!({
        "message_id": failure.message_id,
        "failures": failures,
        "window_days": policy.window_days,
        "phone_number_id": failure.phone_number_id,
    });
    auto_block(
        app,
        &failure.subject,
        scope,
        reason,
        Some(reason_code),
        details,
    )
    .await
}

async fn auto_block(
    app: &App,
    number: &Subject,
    scope: Scope,
    reason: Reason,
    reason_code: Option<String>,
    details: Value,
) -> Result<&'static str, StoreError> {
    let review_after_days = app.store.review_after_days(&scope).await?;
    let command = BlockCommand {
        scope,
        reason,
        source: Source::Auto,
        reason_code,
        expires_at: None,
        review_after_days,
        contact: None,
        details,
    };
    match service::block(&app.store, number, command, &Actor::system(ACTOR), app.now).await? {
        BlockOutcome::Created(_) => {
            tracing::info!(number = %number.masked(), "auto_blocked");
            metrics::count(FUNCTION, Counter::AutoBlocked, 1);
            Ok("auto_blocked")
        }
        BlockOutcome::AlreadyBlocked(_) => Ok("already_blocked"),
    }
}

/// The `wa_blocked` event of B41.
#[derive(Deserialize)]
struct WaBlockedEvent {
    phone: String,
    phone_number_id: Option<String>,
    reason_code: Option<Value>,
    reason: Option<String>,
    timestamp: Option<String>,
    #[serde(default)]
    sender: Value,
}

/// B41: another system says WhatsApp cannot deliver to a number.
async fn handle_wa_blocked(app: &App, event: Value) -> Result<Value, Error> {
    let event: WaBlockedEvent =
        serde_json::from_value(event).map_err(|e| Error::InvalidEvent(redact::error(&e)))?;
    // A number, or the BSUID of a person whose number is hidden (B60).
    let number =
        Subject::parse(&event.phone).map_err(|e| Error::InvalidEvent(format!("phone: {e}")))?;
    let business = event
        .phone_number_id
        .as_deref()
        .map(|id| {
            PhoneNumberId::parse(id)
                .map_err(|e| Error::InvalidEvent(format!("phone_number_id: {e}")))
        })
        .transpose()?;
    let target = business
        .clone()
        .map_or(SettingsTarget::Default, SettingsTarget::Business);
    if !app
        .store
        .recent_settings(&target)
        .await?
        .effective
        .auto_block
        .enabled
    {
        return Ok(json!({ "status": "ignored", "reason": "auto-block disabled" }));
    }
    let reason_code = event.reason_code.map(|code| match code {
        Value::String(s) => s,
        other => other.to_string(),
    });
    let system = event
        .sender
        .get("system")
        .and_then(Value::as_str)
        .unwrap_or("another system");
    let text = format!(
        "{} (code {}, reported by {system})",
        event
            .reason
            .as_deref()
            .unwrap_or("WhatsApp cannot deliver to this number"),
        reason_code.as_deref().unwrap_or("none"),
    );
    let reason = Reason::parse(&text.chars().take(Reason::MAX_CHARS).collect::<String>())
        .map_err(|e| Error::InvalidEvent(e.to_string()))?;
    let details = json!({ "event_timestamp": event.timestamp, "sender": event.sender });
    let scope = business.map_or(Scope::All, Scope::Business);
    let status = auto_block(app, &number, scope, reason, reason_code, details).await?;
    Ok(json!({ "status": status, "number": number }))
}
