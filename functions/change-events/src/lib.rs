//! `change-events` (SPEC B14): tells the CRM about every change. Fed by
//! the Audit table's stream, it delivers each batch of new audit events as
//! one signed POST to `EVENTS_WEBHOOK_URL`:
//!
//! ```text
//! POST <EVENTS_WEBHOOK_URL>
//! X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body under EVENTS_WEBHOOK_SECRET>
//! {"object":"wa_blocklist","events":[AuditEvent, …]}
//! ```
//!
//! - At least once, never for a change that did not commit: an event is in
//!   the stream only once the transaction that made the change wrote it.
//! - In order per subject: a subject's events share a partition key, so
//!   the stream keeps them in one shard in order, and a batch is delivered
//!   whole or reported failed from its first record, which Lambda then
//!   retries from (`ReportBatchItemFailures`): nothing after a failed event
//!   is delivered before it.
//! - A delivery that fails (an answer other than 2xx, a redirect, which is
//!   never followed, a timeout, no connection) is retried here with backoff
//!   within the invocation, then reported; Lambda retries the batch a
//!   bounded number of times (the template's `MaximumRetryAttempts`) and
//!   then describes it in the dead-letter queue. The events themselves stay
//!   in the Audit table (`GET /v1/audit`), so nothing is lost.
//! - Without `EVENTS_WEBHOOK_URL` batches are acknowledged and nothing is
//!   sent (the template then leaves the mapping disabled).

use std::time::Duration;

use blocklist::config::{ConfigError, Env};
use blocklist::meta::signature;
use blocklist::model::AuditEvent;
use blocklist::redact;
use blocklist::stream::{AuditBatch, failed_from, with_pauses};
use serde_json::{Value, json};

/// Where events go and how they are signed.
#[derive(Clone)]
pub struct Endpoint {
    pub url: String,
    pub secret: String,
}

#[derive(Clone)]
pub struct Config {
    /// `None`: nothing is sent.
    pub endpoint: Option<Endpoint>,
    /// How long one POST may take (`EVENTS_TIMEOUT_MS`, default 5000).
    pub timeout: Duration,
    /// Pauses between the attempts of one invocation: one attempt more
    /// than pauses.
    pub retry_pauses: Vec<Duration>,
}

impl std::fmt::Debug for Config {
    // The secret never reaches logs (B52), nor the URL's path or query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.endpoint.as_ref().map(|e| redact::url(&e.url)))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Within the function's 60 s timeout: 4 attempts of at most 5 s each and
/// 7 s of pauses.
const RETRY_PAUSES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

impl Config {
    /// `EVENTS_WEBHOOK_URL` is optional (unset: nothing is sent) and then
    /// needs `EVENTS_WEBHOOK_SECRET`.
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let endpoint = match env.optional("EVENTS_WEBHOOK_URL") {
            None => None,
            Some(url) => Some(Endpoint {
                url,
                secret: env.required("EVENTS_WEBHOOK_SECRET")?,
            }),
        };
        Ok(Config {
            endpoint,
            timeout: env.millis("EVENTS_TIMEOUT_MS", Duration::from_secs(5))?,
            retry_pauses: RETRY_PAUSES.to_vec(),
        })
    }
}

/// What every batch needs; built once at init.
pub struct App {
    pub config: Config,
    http: reqwest::Client,
}

impl App {
    pub fn new(config: Config) -> Result<App, reqwest::Error> {
        let http = blocklist::config::https_post_client(config.timeout)?;
        Ok(App { config, http })
    }
}

/// The webhook body of B14.
pub fn webhook_body(events: &[AuditEvent]) -> Value {
    json!({ "object": "wa_blocklist", "events": events })
}

/// Why a delivery failed, for the log.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("the endpoint answered {0}")]
    Refused(u16),
    #[error("the endpoint could not be reached (timeout: {timeout}): {message}")]
    Unreachable { timeout: bool, message: String },
}

/// One stream batch: the events of its new audit items, delivered in one
/// POST. Always answers: `batchItemFailures` names the first record not
/// delivered, and Lambda retries from there.
pub async fn handle(app: &App, event: Value) -> Value {
    let batch = AuditBatch::of(&event);
    let events: Vec<AuditEvent> = batch.events.iter().map(|(_, e)| e.clone()).collect();
    if let (Some(endpoint), false) = (&app.config.endpoint, events.is_empty()) {
        if let Err(error) = deliver(app, endpoint, &events).await {
            tracing::error!(events = events.len(), error = %error, "change events not delivered");
            return failed_from(batch.first_sequence().or(batch.unreadable));
        }
        tracing::info!(events = events.len(), "change events delivered");
    }
    failed_from(batch.unreadable)
}

async fn deliver(
    app: &App,
    endpoint: &Endpoint,
    events: &[AuditEvent],
) -> Result<(), DeliveryError> {
    let body = serde_json::to_vec(&webhook_body(events)).unwrap_or_default();
    let signature = signature::sign(endpoint.secret.as_bytes(), &body);
    with_pauses(
        &app.config.retry_pauses,
        |_| true,
        || post(app, endpoint, &body, &signature),
    )
    .await
}

async fn post(
    app: &App,
    endpoint: &Endpoint,
    body: &[u8],
    signature: &str,
) -> Result<(), DeliveryError> {
    let result = app
        .http
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body.to_vec())
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(DeliveryError::Refused(response.status().as_u16())),
        // reqwest's message names the URL, which can carry a secret.
        Err(error) => Err(DeliveryError::Unreachable {
            timeout: error.is_timeout(),
            message: redact::error(&error.without_url()),
        }),
    }
}
