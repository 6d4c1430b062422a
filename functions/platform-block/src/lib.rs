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
//!   recorded with Meta's error and not asked again until a newer block;
//!   a rate limit, a 5xx, a token or permission error or no answer is
//!   retried within the invocation, then the batch is reported failed from
//!   its first record, so Lambda retries it a bounded number of times
//!   before the dead-letter queue.
//! - What no event will bring back is asked again by the retry sweep (the
//!   same function on a schedule, every 5 minutes): above all a failed
//!   unblock, since a person Meta holds cannot write, and must not stay
//!   blocked there after their unblock here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use blocklist::config::{ConfigError, Env};
use blocklist::identity::{Link, Subject};
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
use serde_json::{Value, json};

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
    /// No request starts later than this after the invocation began (the
    /// function's timeout is 120 s; one request takes 47 s at worst); the
    /// rest are left for Lambda's retry of the batch.
    pub deadline: Duration,
}

/// 4 attempts of at most 10 s and 7 s of pauses per request, requests of
/// one batch running 4 at a time; none starts after [`Config::deadline`].
const RETRY_PAUSES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// See [`Config::deadline`].
const DEADLINE: Duration = Duration::from_secs(70);

/// The retry sweep asks again what was last decided this long ago.
pub const RETRY_AFTER: chrono::Duration = chrono::Duration::minutes(5);

/// Persons of one sweep, per shard of the retry index.
const RETRIES_PER_SHARD: i32 = 100;

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
            deadline: DEADLINE,
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
#[derive(Debug, Default, Clone)]
struct Trigger {
    /// An event changed their blocks (or the retry sweep asks again).
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

/// One invocation: a stream batch (`{"Records":[…]}`) or, from the
/// schedule, the retry sweep. Always answers; for a stream batch,
/// `batchItemFailures` names the first record when Meta or DynamoDB could
/// not be reached, and Lambda retries the batch from there.
///
/// A sweep that fails is an error of the invocation (the function's Errors
/// alarm sees it); the next sweep finds the same persons.
pub async fn handle(app: &App, event: Value) -> Result<Value, Retry> {
    if event.get("Records").is_none() {
        let asked = sweep(app).await?;
        return Ok(json!({ "asked_again": asked }));
    }
    Ok(handle_batch(app, &event).await)
}

async fn handle_batch(app: &App, event: &Value) -> Value {
    let batch = AuditBatch::of(event);
    let triggers = triggers(batch.events.iter().map(|(_, e)| e));
    if triggers.is_empty() {
        return failed_from(batch.unreadable);
    }
    // Boxed: the batch's nested futures would make the handler's type
    // deeper than the compiler lays out by default.
    match Box::pin(mirror(app, triggers)).await {
        Ok(()) => failed_from(batch.unreadable),
        Err(error) => {
            tracing::error!(error = %error, "platform blocks not brought up to date; the batch is retried");
            failed_from(batch.first_sequence().or(batch.unreadable))
        }
    }
}

/// The retry sweep: every person whose platform state must be asked again
/// and was last decided [`RETRY_AFTER`] ago or more. Returns how many.
pub async fn sweep(app: &App) -> Result<usize, Retry> {
    let before = (app.now)() - RETRY_AFTER;
    let due = app
        .store
        .platform_retries_due(before, RETRIES_PER_SHARD)
        .await?;
    let count = due.len();
    let triggers = due
        .into_iter()
        .map(|subject| {
            let trigger = Trigger {
                blocks_changed: true,
                ..Trigger::default()
            };
            (subject, trigger)
        })
        .collect();
    Box::pin(mirror(app, triggers)).await?;
    Ok(count)
}

fn triggers<'a>(events: impl Iterator<Item = &'a AuditEvent>) -> BTreeMap<Subject, Trigger> {
    let mut triggers: BTreeMap<Subject, Trigger> = BTreeMap::new();
    for event in events {
        let Some(subject) = &event.subject else {
            continue;
        };
        if changes_blocks(event.action) {
            triggers.entry(subject.clone()).or_default().blocks_changed = true;
        } else if event.action == Action::InboundSuppressed
            // Meta blocks people who wrote within 24 hours: a call is not
            // a written message.
            && event.details["message_type"] != "call"
        {
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
            note_wrote(triggers.entry(subject.clone()).or_default(), business, at);
        }
    }
    triggers
}

fn note_wrote(trigger: &mut Trigger, business: PhoneNumberId, at: DateTime<Utc>) {
    let latest = trigger.wrote.entry(business).or_insert(at);
    *latest = (*latest).max(at);
}

/// Why a batch is retried.
#[derive(Debug)]
pub enum Retry {
    Store(StoreError),
    /// Meta refused for a reason that may pass (rate limit, 5xx, token, no
    /// answer) after the retries of this invocation, or the deadline left
    /// requests unsent.
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

impl std::error::Error for Retry {}

impl From<StoreError> for Retry {
    fn from(error: StoreError) -> Self {
        Retry::Store(error)
    }
}

/// One person, read, with what the events say about them.
struct Person {
    record: SubjectRecord,
    trigger: Trigger,
}

/// Reads `triggers`' persons. A suppressed message that names only the
/// business numbers without the setting changes nothing and is not read.
/// The message of a person linked to other identities (B61) is the
/// message of all of them: the block that suppressed it may be another
/// identity's, and Meta's 24-hour rule is the person's.
async fn gather(
    app: &App,
    mut triggers: BTreeMap<Subject, Trigger>,
) -> Result<(Vec<Person>, BTreeMap<PhoneNumberId, bool>), Retry> {
    let wrote_to: BTreeSet<PhoneNumberId> = triggers
        .values()
        .flat_map(|t| t.wrote.keys().cloned())
        .collect();
    let mut enabled = app.store.platform_block_enabled(wrote_to).await?;
    for trigger in triggers.values_mut() {
        trigger
            .wrote
            .retain(|number, _| enabled.get(number).copied().unwrap_or(false));
    }
    triggers.retain(|_, t| t.blocks_changed || !t.wrote.is_empty());

    let mut people = load(app, triggers).await?;
    let mut linked: BTreeMap<Subject, Trigger> = BTreeMap::new();
    let known: BTreeSet<Subject> = people.iter().map(|p| p.record.subject.clone()).collect();
    for person in &people {
        if person.trigger.wrote.is_empty() {
            continue;
        }
        for other in person.record.links.iter().flat_map(Link::subjects) {
            if known.contains(&other) {
                continue;
            }
            let trigger = linked.entry(other).or_default();
            for (number, at) in &person.trigger.wrote {
                note_wrote(trigger, number.clone(), *at);
            }
        }
    }
    people.extend(load(app, linked).await?);

    let numbers: BTreeSet<PhoneNumberId> = people
        .iter()
        .flat_map(|p| numbers_of(&p.record, &p.trigger))
        .filter(|n| !enabled.contains_key(n))
        .collect();
    enabled.extend(app.store.platform_block_enabled(numbers).await?);
    Ok((people, enabled))
}

async fn load(app: &App, triggers: BTreeMap<Subject, Trigger>) -> Result<Vec<Person>, StoreError> {
    futures::stream::iter(triggers)
        .map(|(subject, trigger)| async move {
            let record = app.store.load_subject(&subject).await?;
            Ok::<_, StoreError>(Person { record, trigger })
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await
}

/// The calls a batch makes: per business number and direction (`true`:
/// block), the persons, with when each last wrote there.
type Calls = BTreeMap<(PhoneNumberId, bool), Vec<(Subject, Option<DateTime<Utc>>)>>;

async fn mirror(app: &App, triggers: BTreeMap<Subject, Trigger>) -> Result<(), Retry> {
    let started = tokio::time::Instant::now();
    let now = (app.now)();
    let (people, enabled) = gather(app, triggers).await?;

    let mut calls: Calls = BTreeMap::new();
    let mut recorded: Vec<PlatformMirror> = Vec::new();
    for Person { record, trigger } in &people {
        for number in numbers_of(record, trigger) {
            let current = record.platform.iter().find(|m| m.phone_number_id == number);
            let last_inbound_at = last_inbound_at(record, trigger, &number, current);
            let facts = MirrorFacts {
                enabled: enabled.get(&number).copied().unwrap_or(false),
                covered_since: covered_since(record, &number, now),
                current: current.map(|m| &m.state),
                last_inbound_at,
            };
            let subject = record.subject.clone();
            match platform::decide(&facts, now) {
                MirrorStep::Block => calls
                    .entry((number, true))
                    .or_default()
                    .push((subject, last_inbound_at)),
                MirrorStep::Unblock => calls
                    .entry((number, false))
                    .or_default()
                    .push((subject, last_inbound_at)),
                MirrorStep::Record(state) => recorded.push(PlatformMirror {
                    subject,
                    phone_number_id: number,
                    state,
                    wrote_at: last_inbound_at,
                }),
                MirrorStep::Nothing => {}
            }
        }
    }
    app.store.record_platform_states(&recorded).await?;

    let mut requests = Vec::new();
    for ((number, block), people) in calls {
        let wrote: BTreeMap<Subject, Option<DateTime<Utc>>> = people.iter().cloned().collect();
        let subjects: Vec<Subject> = people.into_iter().map(|(s, _)| s).collect();
        for (users, body) in platform::requests(&subjects) {
            let wrote: Vec<Option<DateTime<Utc>>> = users.iter().map(|u| wrote[u]).collect();
            requests.push((number.clone(), block, users, wrote, body));
        }
    }
    let outcomes: Vec<Result<Tally, Retry>> = futures::stream::iter(requests)
        .map(|(number, block, users, wrote, body)| async move {
            if started.elapsed() > app.config.deadline {
                return Err(Retry::Meta(format!(
                    "out of time before asking about {} users",
                    users.len()
                )));
            }
            let answer = call(app, &number, block, &body).await;
            let mut tally = Tally::default();
            let mirrors: Vec<PlatformMirror> = users
                .iter()
                .zip(wrote)
                .map(|(subject, wrote_at)| {
                    let outcome = platform::outcome_of(&answer, subject);
                    match &outcome {
                        Ok(()) if block => tally.blocked += 1,
                        Ok(()) => tally.unblocked += 1,
                        Err(error) => {
                            tally.refused += 1;
                            log_refusal(&number, block, error);
                        }
                    }
                    PlatformMirror {
                        subject: subject.clone(),
                        phone_number_id: number.clone(),
                        state: platform::state_after(block, outcome.as_ref().map(|_| ()), now),
                        wrote_at,
                    }
                })
                .collect();
            // Recorded as each answer comes: a timeout later loses nothing.
            app.store.record_platform_states(&mirrors).await?;
            tracing::info!(phone_number_id = %number, block, users = users.len(), "Block Users request answered");
            if let BlockUsersAnswer::Refused { error, transient: true } = &answer {
                return Err(Retry::Meta(error.to_string()));
            }
            Ok(tally)
        })
        .buffer_unordered(GRAPH_CONCURRENCY)
        .collect()
        .await;

    let mut total = Tally::default();
    let mut retry = None;
    for outcome in outcomes {
        match outcome {
            Ok(tally) => total.add(&tally),
            Err(error) => retry = Some(error),
        }
    }
    metrics::count(FUNCTION, Counter::PlatformBlocked, total.blocked);
    metrics::count(FUNCTION, Counter::PlatformUnblocked, total.unblocked);
    metrics::count(FUNCTION, Counter::PlatformRefused, total.refused);
    match retry {
        Some(retry) => Err(retry),
        None => Ok(()),
    }
}

#[derive(Debug, Default)]
struct Tally {
    blocked: u64,
    unblocked: u64,
    refused: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.blocked += other.blocked;
        self.unblocked += other.unblocked;
        self.refused += other.refused;
    }
}

/// The business numbers to decide for a person: those their blocks name,
/// those they have chats with when a block covers every number, those Meta
/// was asked about, and those they just wrote to.
fn numbers_of(record: &SubjectRecord, trigger: &Trigger) -> BTreeSet<PhoneNumberId> {
    let chats_with = platform::chats_with(&record.chats);
    let mut numbers: BTreeSet<PhoneNumberId> = BTreeSet::new();
    for block in &record.blocks {
        match &block.scope {
            Scope::All => numbers.extend(chats_with.iter().cloned()),
            Scope::Business(id) => {
                numbers.insert(id.clone());
            }
        }
    }
    numbers.extend(record.platform.iter().map(|m| m.phone_number_id.clone()));
    numbers.extend(trigger.wrote.keys().cloned());
    numbers
}

/// When the newest active block of the person itself that covers `number`
/// was made. (A block of a linked identity is that identity's to mirror.)
fn covered_since(
    record: &SubjectRecord,
    number: &PhoneNumberId,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    record
        .blocks
        .iter()
        .filter(|b| b.is_active(now) && b.scope.covers(number))
        .map(|b| b.blocked_at)
        .max()
}

/// When the person (by any identity linked to it) last wrote to `number`:
/// their chats, a suppressed message at hand, or what was recorded.
fn last_inbound_at(
    record: &SubjectRecord,
    trigger: &Trigger,
    number: &PhoneNumberId,
    current: Option<&PlatformMirror>,
) -> Option<DateTime<Utc>> {
    record
        .chats
        .iter()
        .filter(|c| &c.phone_number_id == number)
        .filter_map(|c| c.last_inbound_at)
        .chain(trigger.wrote.get(number).copied())
        .chain(current.and_then(|m| m.wrote_at))
        .max()
}

/// One Block Users request, retried within the invocation while Meta's
/// answer is transient.
async fn call(app: &App, number: &PhoneNumberId, block: bool, body: &Value) -> BlockUsersAnswer {
    let attempt = || async {
        let answer = match app.graph.block_users(number, block, body).await {
            Ok(answer) => BlockUsersAnswer::parse(answer.status, &answer.body),
            Err(error) => BlockUsersAnswer::Refused {
                error: json!({ "message": error.to_string() }),
                transient: true,
            },
        };
        if answer.is_transient() {
            Err(Transient(answer))
        } else {
            Ok(answer)
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
    } else if !block {
        tracing::error!(phone_number_id = %number, code, "Meta refused an unblock; asked again by the retry sweep while the refusal may pass");
    } else {
        tracing::warn!(phone_number_id = %number, code, "Meta refused a user");
    }
}
