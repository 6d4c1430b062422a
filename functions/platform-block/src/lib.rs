//! `platform-block` (SPEC B15): mirrors blocks to Meta's Block Users API
//! for business numbers whose `platform_block` setting is on, so a blocked
//! person cannot even reach WhatsApp's servers, and removes the mirror on
//! unblock and expiry.
//!
//! Fed by the Audit table's stream (the second of its two readers, with
//! `change-events`), filtered to the events that change a person's blocks
//! and to `inbound_suppressed`: a suppressed message shows that a person
//! waiting for the mirror (Meta only blocks persons who wrote in the last 24
//! hours) is now eligible.
//!
//! For each person in a batch: gather (their blocks, chats and recorded
//! platform states, from one read of their partitions; each business
//! number's settings), decide per business number ([`blocklist::platform`]),
//! then call Meta once per business number and direction with up to 1,000
//! users, and record Meta's answer per person.
//!
//! - Idempotent: the decision compares what should be with what Meta was
//!   recorded to hold, so a batch retried by Lambda redoes only what is
//!   missing.
//! - A refusal that stands (list full at 64,000, a user Meta rejects) is
//!   recorded with Meta's error and not asked again until the person's
//!   blocks change; a rate limit, a 5xx or no answer is retried within the
//!   invocation, then the batch is reported failed from its first record,
//!   so Lambda retries it a bounded number of times before the dead-letter
//!   queue.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use blocklist::config::{ConfigError, Env};
use blocklist::identity::Subject;
use blocklist::meta::graph::GraphClient;
use blocklist::metrics::{self, Counter};
use blocklist::model::{Action, AuditEvent, PhoneNumberId, Scope};
use blocklist::platform::{
    self, BlockUsersAnswer, MirrorFacts, MirrorStep, PlatformMirror, is_list_full,
};
use blocklist::policy::SubjectRecord;
use blocklist::store::{Store, StoreError};
use blocklist::stream::{AuditBatch, failed_from, with_pauses};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

/// The `Function` dimension of this function's metrics outside Lambda.
const FUNCTION: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Clone)]
pub struct Config {
    pub graph_base_url: String,
    pub graph_version: String,
    pub access_token: String,
    /// One Graph request (`GRAPH_TIMEOUT_MS`, default 10000).
    pub timeout: Duration,
    /// Pauses between the attempts of one request within an invocation.
    pub retry_pauses: Vec<Duration>,
}

/// Within the function's 120 s timeout: 4 attempts of at most 10 s and 7 s
/// of pauses per request, requests of one batch running concurrently.
const RETRY_PAUSES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// Persons of one batch read concurrently.
const READ_CONCURRENCY: usize = 16;
/// Graph requests of one batch in flight at once.
const GRAPH_CONCURRENCY: usize = 4;

impl Config {
    /// `WHATSAPP_ACCESS_TOKEN` and `GRAPH_API_BASE_URL` are required, as
    /// for the send proxy; `GRAPH_API_VERSION` defaults to `v25.0`.
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        Ok(Config {
            graph_base_url: env.required("GRAPH_API_BASE_URL")?,
            graph_version: env.or("GRAPH_API_VERSION", "v25.0"),
            access_token: env.required("WHATSAPP_ACCESS_TOKEN")?,
            timeout: env.millis("GRAPH_TIMEOUT_MS", Duration::from_secs(10))?,
            retry_pauses: RETRY_PAUSES.to_vec(),
        })
    }
}

/// What every batch needs; built once at init.
pub struct App {
    pub store: Store,
    pub config: Config,
    graph: GraphClient,
    /// The clock, replaceable in tests.
    pub now: fn() -> DateTime<Utc>,
}

impl App {
    pub fn new(store: Store, config: Config) -> Result<App, reqwest::Error> {
        let graph = GraphClient::new(
            &config.graph_base_url,
            &config.graph_version,
            &config.access_token,
            config.timeout,
        )?;
        Ok(App {
            store,
            config,
            graph,
            now: Utc::now,
        })
    }
}

/// What a batch says about one person.
#[derive(Debug, Default)]
struct Trigger {
    /// Their blocks changed.
    blocks_changed: bool,
    /// Business numbers they wrote to, and when (suppressed messages).
    wrote: BTreeMap<PhoneNumberId, DateTime<Utc>>,
}

/// The actions of the events this function reads: those that change a
/// person's blocks, then `inbound_suppressed`. The template's mapping
/// filters to these, as does the local stack's poller.
pub const STREAM_ACTIONS: [Action; 8] = [
    Action::Blocked,
    Action::AutoBlocked,
    Action::Unblocked,
    Action::Expired,
    Action::Edited,
    Action::IdentityChanged,
    Action::IdentityLinked,
    Action::InboundSuppressed,
];

fn changes_blocks(action: Action) -> bool {
    action != Action::InboundSuppressed && STREAM_ACTIONS.contains(&action)
}

/// One stream batch. Always answers: `batchItemFailures` names the first
/// record when Meta or DynamoDB could not be reached, and Lambda retries
/// the batch from there.
pub async fn handle(app: &App, event: Value) -> Value {
    let batch = AuditBatch::of(&event);
    let triggers = triggers(batch.events.iter().map(|(_, e)| e));
    if triggers.is_empty() {
        return failed_from(batch.unreadable);
    }
    match mirror(app, triggers).await {
        Ok(()) => failed_from(batch.unreadable),
        Err(error) => {
            tracing::error!(error = %error, "platform blocks not brought up to date; the batch is retried");
            failed_from(batch.first_sequence().or(batch.unreadable))
        }
    }
}

fn triggers<'a>(events: impl Iterator<Item = &'a AuditEvent>) -> BTreeMap<Subject, Trigger> {
    let mut triggers: BTreeMap<Subject, Trigger> = BTreeMap::new();
    for event in events {
        let Some(subject) = &event.subject else {
            continue;
        };
        if changes_blocks(event.action) {
            triggers.entry(subject.clone()).or_default().blocks_changed = true;
        } else if event.action == Action::InboundSuppressed {
            let Some(business) = event.details["phone_number_id"]
                .as_str()
                .and_then(|id| PhoneNumberId::parse(id).ok())
            else {
                continue;
            };
            // When Meta says the person wrote; the event's own time if not.
            let at = event.details["message_timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or(event.at, |t| t.with_timezone(&Utc));
            let wrote = triggers.entry(subject.clone()).or_default();
            let latest = wrote.wrote.entry(business).or_insert(at);
            *latest = (*latest).max(at);
        }
    }
    triggers
}

/// Why a batch is retried.
#[derive(Debug)]
enum Retry {
    Store(StoreError),
    /// Meta refused for a reason that may pass (rate limit, 5xx, no
    /// answer), after the retries of this invocation.
    Meta(String),
}

impl std::fmt::Display for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retry::Store(error) => write!(f, "DynamoDB: {error}"),
            Retry::Meta(message) => write!(f, "Meta: {message}"),
        }
    }
}

impl From<StoreError> for Retry {
    fn from(error: StoreError) -> Self {
        Retry::Store(error)
    }
}

/// The calls a batch makes: per business number and direction (`true`:
/// block), the persons.
type Calls = BTreeMap<(PhoneNumberId, bool), Vec<Subject>>;

async fn mirror(app: &App, triggers: BTreeMap<Subject, Trigger>) -> Result<(), Retry> {
    let now = (app.now)();
    let records: Vec<(SubjectRecord, Trigger)> = futures::stream::iter(triggers)
        .map(|(subject, trigger)| async move {
            let record = app.store.load_subject(&subject).await?;
            Ok::<_, StoreError>((record, trigger))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    let numbers: BTreeSet<PhoneNumberId> =
        records.iter().flat_map(|(r, t)| numbers_of(r, t)).collect();
    let enabled = app.store.platform_block_enabled(numbers).await?;

    let mut calls: Calls = BTreeMap::new();
    let mut recorded: Vec<PlatformMirror> = Vec::new();
    for (record, trigger) in &records {
        for number in numbers_of(record, trigger) {
            let current = record
                .platform
                .iter()
                .find(|m| m.phone_number_id == number)
                .map(|m| &m.state);
            let facts = MirrorFacts {
                enabled: enabled.get(&number).copied().unwrap_or(false),
                covered: covers(record, &number, now),
                current,
                last_inbound_at: last_inbound_at(record, trigger, &number),
                blocks_changed: trigger.blocks_changed,
            };
            match platform::decide(&facts, now) {
                MirrorStep::Block => calls
                    .entry((number, true))
                    .or_default()
                    .push(record.subject.clone()),
                MirrorStep::Unblock => calls
                    .entry((number, false))
                    .or_default()
                    .push(record.subject.clone()),
                MirrorStep::Record(state) => recorded.push(PlatformMirror {
                    subject: record.subject.clone(),
                    phone_number_id: number,
                    state,
                }),
                MirrorStep::Nothing => {}
            }
        }
    }

    let requests: Vec<(PhoneNumberId, bool, Vec<Subject>)> = calls
        .into_iter()
        .flat_map(|((number, block), subjects)| {
            subjects
                .chunks(platform::MAX_USERS_PER_REQUEST)
                .map(|chunk| (number.clone(), block, chunk.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
    let answers: Vec<(PhoneNumberId, bool, Vec<Subject>, BlockUsersAnswer)> =
        futures::stream::iter(requests)
            .map(|(number, block, subjects)| async move {
                let answer = call(app, &number, block, &subjects).await;
                (number, block, subjects, answer)
            })
            .buffer_unordered(GRAPH_CONCURRENCY)
            .collect()
            .await;

    let mut retry = None;
    let (mut done, mut refused) = ([0u64; 2], 0u64);
    for (number, block, subjects, answer) in &answers {
        if let BlockUsersAnswer::Refused {
            error,
            transient: true,
        } = answer
        {
            retry = Some(Retry::Meta(error.to_string()));
        }
        for subject in subjects {
            let outcome = platform::outcome_of(answer, subject);
            match &outcome {
                Ok(()) => done[usize::from(*block)] += 1,
                Err(error) => {
                    refused += 1;
                    log_refusal(number, *block, error);
                }
            }
            recorded.push(PlatformMirror {
                subject: subject.clone(),
                phone_number_id: number.clone(),
                state: platform::state_after(*block, outcome.as_ref().map(|_| ()), now),
            });
        }
        tracing::info!(
            phone_number_id = %number,
            block = *block,
            users = subjects.len(),
            "Block Users request answered"
        );
    }
    app.store.record_platform_states(&recorded).await?;
    metrics::count(FUNCTION, Counter::PlatformBlocked, done[1]);
    metrics::count(FUNCTION, Counter::PlatformUnblocked, done[0]);
    metrics::count(FUNCTION, Counter::PlatformRefused, refused);
    match retry {
        Some(retry) => Err(retry),
        None => Ok(()),
    }
}

/// The business numbers to decide for a person: those their blocks name,
/// those they have chats with when a block covers every number, those Meta
/// holds them on, and those they just wrote to.
fn numbers_of(record: &SubjectRecord, trigger: &Trigger) -> BTreeSet<PhoneNumberId> {
    let chats_with: Vec<PhoneNumberId> = record
        .chats
        .iter()
        .map(|c| c.phone_number_id.clone())
        .collect();
    let mut numbers: BTreeSet<PhoneNumberId> = record
        .blocks
        .iter()
        .flat_map(|b| platform::covered_numbers(&b.scope, &chats_with))
        .collect();
    numbers.extend(record.platform.iter().map(|m| m.phone_number_id.clone()));
    numbers.extend(trigger.wrote.keys().cloned());
    numbers
}

/// Whether an active block of the person itself covers `number`. (A block
/// of a linked identity is that identity's to mirror.)
fn covers(record: &SubjectRecord, number: &PhoneNumberId, now: DateTime<Utc>) -> bool {
    record
        .blocks
        .iter()
        .filter(|b| b.is_active(now))
        .any(|b| match &b.scope {
            Scope::All => true,
            Scope::Business(id) => id == number,
        })
}

/// When the person (by any identity linked to it) last wrote to `number`.
fn last_inbound_at(
    record: &SubjectRecord,
    trigger: &Trigger,
    number: &PhoneNumberId,
) -> Option<DateTime<Utc>> {
    record
        .chats
        .iter()
        .filter(|c| &c.phone_number_id == number)
        .filter_map(|c| c.last_inbound_at)
        .chain(trigger.wrote.get(number).copied())
        .max()
}

/// One Block Users request, retried within the invocation while Meta's
/// answer is transient.
async fn call(
    app: &App,
    number: &PhoneNumberId,
    block: bool,
    subjects: &[Subject],
) -> BlockUsersAnswer {
    let body = platform::request_bodies(subjects)
        .into_iter()
        .next()
        .unwrap_or_default();
    let attempt = || async {
        let answer = match app.graph.block_users(number, block, &body).await {
            Ok(answer) => BlockUsersAnswer::parse(answer.status, &answer.body),
            Err(error) => BlockUsersAnswer::Refused {
                error: serde_json::json!({ "message": error.to_string() }),
                transient: true,
            },
        };
        match answer {
            BlockUsersAnswer::Refused {
                transient: true, ..
            } => Err(Transient(answer)),
            answer => Ok(answer),
        }
    };
    match with_pauses(&app.config.retry_pauses, |_| true, attempt).await {
        Ok(answer) | Err(Transient(answer)) => answer,
    }
}

/// A transient answer, retried.
struct Transient(BlockUsersAnswer);

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            BlockUsersAnswer::Refused { error, .. } => write!(f, "Meta refused: {error}"),
            BlockUsersAnswer::PerUser { .. } => write!(f, "Meta answered"),
        }
    }
}

fn log_refusal(number: &PhoneNumberId, block: bool, error: &Value) {
    let code = error.get("code").and_then(Value::as_i64);
    if is_list_full(error) {
        tracing::error!(
            phone_number_id = %number,
            "Meta's block list of this business number is full (64,000 users): blocks here go on without the platform block"
        );
    } else {
        tracing::warn!(phone_number_id = %number, block, code, "Meta refused a user");
    }
}
