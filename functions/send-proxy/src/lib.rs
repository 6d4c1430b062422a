//! `send-proxy` (SPEC B30–B34): the Graph API send endpoint, guarded.
//!
//! A CRM switches by changing its Graph base URL and token: the body goes
//! to Graph unchanged, and Graph's status and body come back unchanged,
//! unless the recipient is blocked (or unknown, by setting), in which case
//! nothing is sent and the caller gets a Graph-shaped 403.
//!
//! It fails closed (B34): when the blocklist cannot be read, nothing is
//! sent. A send is never retried.

mod errors;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use blocklist::config::{ConfigError, Env};
use blocklist::http::ApiError;
use blocklist::http::auth::{Authenticator, Caller, SEND};
use blocklist::http::request::{body_bytes, field_subject_as_seen, parse_json, segments};
use blocklist::identity::{Link, Subject, UserId};
use blocklist::inbound::{self, SenderFacts};
use blocklist::meta::graph::{GraphAnswer, GraphClient, GraphError};
use blocklist::metrics::{self, Counter};
use blocklist::model::{
    Actor, AuditEvent, Consent, PhoneNumberId, Purpose, SettingsTarget, refusing_consent,
};
use blocklist::number::Number;
use blocklist::outbound::{self, Refusal};
use blocklist::policy::SubjectState;
use blocklist::redact;
use blocklist::service;
use blocklist::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

pub use errors::graph_error;

/// Most numbers in one `recipients:check` (B33).
pub const MAX_CHECK: usize = 10_000;

/// The `Function` dimension of this crate's metrics outside Lambda.
const FUNCTION: &str = env!("CARGO_PKG_NAME");

/// Settings of the function, read once at init.
#[derive(Clone)]
pub struct Config {
    pub access_token: String,
    /// `GRAPH_API_BASE_URL`, without a trailing slash.
    pub graph_base_url: String,
    pub graph_version: String,
    pub graph_timeout: Duration,
    /// `WHATSAPP_BUSINESS_ACCOUNT_ID`: where template categories are
    /// looked up (B83). Unset: a template send's purpose is unknown, and it
    /// is refused to anyone who opted out of anything (fails closed).
    pub business_account_id: Option<String>,
}

impl std::fmt::Debug for Config {
    // The access token never reaches logs (B52).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("graph_base_url", &redact::url(&self.graph_base_url))
            .field("graph_version", &self.graph_version)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// `WHATSAPP_ACCESS_TOKEN` and `GRAPH_API_BASE_URL` are required;
    /// `GRAPH_API_VERSION` defaults to `v25.0`, `GRAPH_TIMEOUT_MS` to 8000
    /// (under the function's 10 s timeout, so that the caller gets a clear
    /// 504 rather than a dropped connection).
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let timeout = match env.optional("GRAPH_TIMEOUT_MS") {
            None => 8000,
            Some(raw) => raw.parse::<u64>().map_err(|_| {
                ConfigError::Invalid("GRAPH_TIMEOUT_MS", "not a number of milliseconds".into())
            })?,
        };
        Ok(Config {
            access_token: env.required("WHATSAPP_ACCESS_TOKEN")?,
            graph_base_url: env
                .required("GRAPH_API_BASE_URL")?
                .trim_end_matches('/')
                .to_owned(),
            graph_version: env.or("GRAPH_API_VERSION", "v25.0"),
            graph_timeout: Duration::from_millis(timeout),
            business_account_id: env.optional("WHATSAPP_BUSINESS_ACCOUNT_ID"),
        })
    }
}

/// What every request needs; built once at init.
pub struct App {
    pub store: Store,
    pub auth: Authenticator,
    pub config: Config,
    graph: GraphClient,
    /// The clock, replaceable in tests.
    pub now: fn() -> DateTime<Utc>,
    /// How long a refusal's audit event may take to write, retries
    /// included, before the send fails 503 instead (S3).
    pub record_refusal_within: Duration,
    /// Template categories looked up, by name and language, with when.
    categories: Mutex<HashMap<TemplateKey, (Instant, Option<String>)>>,
}

/// A message template: its name and language.
type TemplateKey = (String, String);

/// How long a looked-up template category is used: Meta can recategorise
/// a template, and the change then reaches sends within this time.
pub const CATEGORY_CACHE_FOR: Duration = Duration::from_secs(600);

/// See [`App::record_refusal_within`]: well inside the 29 s timeout.
const RECORD_REFUSAL_WITHIN: Duration = Duration::from_secs(10);

impl App {
    pub fn new(store: Store, auth: Authenticator, config: Config) -> Result<App, reqwest::Error> {
        let graph = GraphClient::new(
            &config.graph_base_url,
            &config.graph_version,
            &config.access_token,
            config.graph_timeout,
        )?;
        Ok(App {
            store,
            auth,
            config,
            graph,
            now: Utc::now,
            record_refusal_within: RECORD_REFUSAL_WITHIN,
            categories: Mutex::new(HashMap::new()),
        })
    }
}

/// Handles one API Gateway request. Never fails: every error is a
/// Graph-shaped HTTP response (B50).
pub async fn handle(app: &App, request: Request) -> Response<Body> {
    let method = request.method().as_str().to_owned();
    let path = segments(&request);
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    let result = match (parts.as_slice(), method.as_str()) {
        (["v1", business, "messages"], "POST") => send(app, &request, business).await,
        (["v1", business, "recipients:check"], "POST") => check(app, &request, business).await,
        (["v1", _, "messages" | "recipients:check"], _) => {
            Err(ApiError::method_not_allowed(&method, "POST"))
        }
        _ => Err(ApiError::not_found("not_found", "no such route")),
    };
    let response = result.unwrap_or_else(graph_error);
    let route = match parts.as_slice() {
        [_, _, last] => redact::numbers(&format!("{method} /v1/{{phone_number_id}}/{last}")),
        _ => format!("{method} (unknown)"),
    };
    tracing::info!(route = %route, status = response.status().as_u16(), "request");
    response
}

fn authorize(app: &App, request: &Request) -> Result<(Caller, Actor), ApiError> {
    let caller = app.auth.authenticate(request)?;
    caller.require(SEND)?;
    let actor = caller.actor()?;
    Ok((caller, actor))
}

fn business_number(raw: &str) -> Result<PhoneNumberId, ApiError> {
    PhoneNumberId::parse(raw).map_err(|_| {
        ApiError::bad_request(
            "invalid_phone_number_id",
            "phone_number_id in the path must be digits",
        )
        .with_field("phone_number_id")
    })
}

/// Whether unknown recipients may be messaged from `business` (B32).
async fn allow_unknown(app: &App, business: &PhoneNumberId) -> Result<bool, StoreError> {
    let settings = app
        .store
        .recent_settings(&SettingsTarget::Business(business.clone()))
        .await?;
    Ok(settings.effective.allow_unknown_numbers)
}

/// What the decision needs about `subjects` as recipients from
/// `business`, in one round trip: their blocks (with those of every linked
/// identity), contacts and states in one batched, strongly consistent read
/// (B4, B61), their consent records (B83, read alongside), and the
/// business number's settings. Fails closed (B34): an unreadable blocklist
/// is a 503, and nothing is sent.
async fn recipient_facts(
    app: &App,
    business: &PhoneNumberId,
    subjects: impl IntoIterator<Item = Subject>,
) -> Result<(HashMap<Subject, SenderFacts>, Vec<Consent>, bool), ApiError> {
    let senders: HashMap<Subject, HashSet<PhoneNumberId>> = subjects
        .into_iter()
        .map(|n| (n, HashSet::from([business.clone()])))
        .collect();
    let subjects: Vec<Subject> = senders.keys().cloned().collect();
    let (facts, consents, allow) = tokio::join!(
        app.store.sender_facts(&senders, &[], &[]),
        app.store.consents_for(&subjects, business),
        allow_unknown(app, business)
    );
    let unreadable = |error: StoreError| {
        tracing::error!(error = %error, "blocklist unreadable; refused");
        ApiError::new(
            503,
            "blocklist_unavailable",
            "the blocklist cannot be read; nothing was sent",
        )
    };
    let (facts, mut consents, allow) = match (facts, consents, allow) {
        (Ok(facts), Ok(consents), Ok(allow)) => (facts, consents, allow),
        (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
            return Err(unreadable(error));
        }
    };
    // B80, B61: a person's say holds under every identity. A link learned
    // after the opt-out is only on the states just read, so the consents
    // of the identities it names are read now: one more read, and only for
    // a recipient with links.
    let linked: Vec<Subject> = facts
        .values()
        .filter_map(|f| f.state.as_ref())
        .flat_map(|s| s.linked_subjects())
        .filter(|s| !subjects.contains(s))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !linked.is_empty() {
        let more = app
            .store
            .consents_for(&linked, business)
            .await
            .map_err(unreadable)?;
        consents.extend(more);
    }
    Ok((facts, consents, allow))
}

/// B30–B32, B34, B35: `POST /v1/{phone_number_id}/messages`.
async fn send(app: &App, request: &Request, business: &str) -> Result<Response<Body>, ApiError> {
    let (_, actor) = authorize(app, request)?;
    let business = business_number(business)?;
    let body = body_bytes(request)?;
    let addressee = addressee_of(body)?;

    let mut checked: Option<(Subject, SenderFacts, HashMap<Subject, SenderFacts>)> = None;
    if let Addressee::Person(identities) = &addressee {
        let (facts, consents, allow_unknown) =
            recipient_facts(app, &business, identities.iter().cloned()).await?;
        check_same_person(identities, &facts)?;
        let now = (app.now)();
        let person = inbound::person_facts(identities, &facts);
        let primary = identities[0].clone();
        // B83: only a marketing-only opt-out makes the template's category
        // matter; only then is it looked up.
        let purpose = if refusing_consent(&consents, &business, Purpose::Utility).is_none()
            && refusing_consent(&consents, &business, Purpose::Marketing).is_some()
        {
            purpose_of(app, body).await
        } else {
            Purpose::Utility
        };
        if let Err(refusal) =
            outbound::decide_send(&person, &consents, &business, purpose, allow_unknown, now)
        {
            // Name the identity the block or opt-out was found under, so
            // the caller and the audit trail see which one it is.
            let refused = match &refusal {
                Refusal::OptedOut { .. } => refusing_consent(&consents, &business, purpose)
                    .map(|c| &c.subject)
                    .and_then(|s| identities.iter().find(|i| *i == s)),
                _ => refusal.scope().and_then(|scope| {
                    identities.iter().find(|i| {
                        facts.get(*i).is_some_and(|f| {
                            f.blocks
                                .iter()
                                .any(|b| b.is_active(now) && &b.scope == scope)
                        })
                    })
                }),
            }
            .unwrap_or(&primary);
            return refuse(app, refused, &business, &refusal, &actor, now).await;
        }
        checked = Some((primary, person, facts));
    }

    let answer = match app.graph.send_message(&business, body.to_vec()).await {
        Ok(answer) => answer,
        Err(GraphError::Timeout) => {
            tracing::error!("Graph API timed out; the send may or may not have gone out");
            return Err(ApiError::new(
                504,
                "graph_timeout",
                "the Graph API did not answer in time; the send was not retried",
            ));
        }
        Err(error) => {
            tracing::error!(error = %error, "Graph API unreachable");
            return Err(ApiError::new(
                502,
                "graph_unreachable",
                "the Graph API could not be reached; nothing was sent",
            ));
        }
    };
    let GraphAnswer {
        status,
        content_type,
        body: bytes,
    } = answer;
    if (200..300).contains(&status)
        && let Some((recipient, person, facts)) = checked
    {
        record_sent(app, &business, &recipient, &person, facts, &bytes).await;
    }
    // B34: Graph's 5xx is a 502 to the caller, with Graph's body when there
    // is one; anything else passes through unchanged (B30).
    let status = if status >= 500 { 502 } else { status };
    if status == 502 && bytes.is_empty() {
        return Err(ApiError::new(
            502,
            "graph_error",
            "the Graph API failed; the send was not retried",
        ));
    }
    let mut builder = Response::builder().status(status);
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    Ok(builder.body(Body::Binary(bytes)).unwrap_or_default())
}

/// What a message went out on, once Graph took it: the chat's
/// `last_outbound_at`, the message id → recipient record that attributes
/// its statuses (B64), and the identities Graph's answer shows together
/// (B61). Bookkeeping only: a failure is logged, never reported, so the
/// caller never sends the message again.
async fn record_sent(
    app: &App,
    business: &PhoneNumberId,
    recipient: &Subject,
    person: &SenderFacts,
    facts: HashMap<Subject, SenderFacts>,
    graph_body: &[u8],
) {
    let now = (app.now)();
    let answer: Value = serde_json::from_slice(graph_body).unwrap_or(Value::Null);
    let message_ids: Vec<&str> = answer
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .collect();
    let links: Vec<Link> = answer
        .get("contacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|contact| graph_contact_link(contact, recipient, now))
        .collect();
    let known: HashMap<Subject, SubjectState> = facts
        .into_iter()
        // Read and absent is known too: an identity without a state has
        // none to read again.
        .map(|(subject, f)| {
            let state = f
                .state
                .unwrap_or_else(|| SubjectState::empty(subject.clone()));
            (subject, state)
        })
        .collect();
    let sent = futures::future::try_join_all(
        message_ids
            .iter()
            .map(|id| app.store.record_sent(id, recipient, business, now)),
    );
    let (chat, sent, linked) = tokio::join!(
        app.store
            .record_outbound(business, recipient, now, person.known_contact),
        sent,
        // One try: the message is out, and the caller must get its answer
        // well inside the function's time (links are learned again from the
        // next webhook).
        service::learn_links(&app.store, &links, known, FUNCTION, 1, app.now),
    );
    if let Err(error) = chat {
        tracing::error!(error = %error, "last_outbound_at not recorded");
    }
    if let Err(error) = sent {
        tracing::error!(error = %error, "message id not recorded; its failures go unattributed");
    }
    if let Err(error) = linked {
        tracing::error!(error = %error, "identities from Graph's answer not linked");
    }
}

/// A Graph send answer's `contacts[]` entry (`input`, `wa_id`, and for
/// BSUID sends `user_id`) as a link.
fn graph_contact_link(contact: &Value, recipient: &Subject, now: DateTime<Utc>) -> Link {
    let text = |key| contact.get(key).and_then(Value::as_str);
    let number = text("wa_id").and_then(|w| Number::from_whatsapp_id(w).ok());
    let user_id = text("user_id")
        .and_then(|u| UserId::parse(u).ok())
        .or_else(|| recipient.user_id().filter(|_| number.is_some()).cloned());
    Link {
        number,
        user_id,
        parent_user_id: text("parent_user_id").and_then(|u| UserId::parse(u).ok()),
        seen_at: now,
    }
}

/// Who a send body addresses (B35).
#[derive(Debug)]
enum Addressee {
    /// Every identity the body names (`to`, `recipient`), deduplicated.
    Person(Vec<Subject>),
    /// Mark-as-read and typing indicators name a message, not a person;
    /// group sends name a group, which is not a subject: forwarded as they
    /// are.
    Nobody,
}

/// Reads `to` and `recipient` (and `recipient_type`, `status`). The body
/// goes to Graph as it came. A body naming either field twice is refused:
/// which of the two Graph would use is not ours to guess, and a blocked
/// person must not slip through behind an allowed one.
fn addressee_of(body: &[u8]) -> Result<Addressee, ApiError> {
    #[derive(Deserialize)]
    struct SendBody {
        // serde's derived visitor fails on a repeated field.
        to: Option<Value>,
        recipient: Option<Value>,
        recipient_type: Option<Value>,
        status: Option<Value>,
    }
    let value: Value = parse_json(body)?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            "invalid_field",
            "body",
            "the send body must be a JSON object",
        ));
    }
    let send: SendBody = parse_json(body).map_err(|error| {
        if !error.message.contains("duplicate field") {
            return error;
        }
        let field = if error.message.contains("`recipient`") {
            "recipient"
        } else {
            "to"
        };
        ApiError::invalid(
            "invalid_number",
            field,
            format!("'{field}' appears more than once"),
        )
    })?;
    if send.recipient_type.as_ref().and_then(Value::as_str) == Some("group") {
        return Ok(Addressee::Nobody);
    }
    let field = |value: Option<Value>, name: &'static str| -> Result<Option<Subject>, ApiError> {
        let Some(value) = value else { return Ok(None) };
        let raw = value.as_str().ok_or_else(|| {
            ApiError::invalid("invalid_number", name, format!("'{name}' must be a string"))
        })?;
        field_subject_as_seen(raw, name).map(Some)
    };
    let to = field(send.to, "to")?;
    let recipient = field(send.recipient, "recipient")?;
    let mut identities: Vec<Subject> = to.into_iter().chain(recipient).collect();
    identities.dedup();
    if identities.is_empty() {
        // Mark-as-read, with or without a typing indicator: Graph's only
        // messages body that names a message instead of a person.
        if send.status.as_ref().and_then(Value::as_str) == Some("read") {
            return Ok(Addressee::Nobody);
        }
        return Err(ApiError::invalid(
            "missing_recipient",
            "to",
            "the send body names no recipient ('to' or 'recipient')",
        ));
    }
    Ok(Addressee::Person(identities))
}

/// A body whose `to` and `recipient` are known to be two different people
/// is refused: Meta would deliver to `to`, while the caller may have meant
/// `recipient`. When no link says so, both are checked as one person.
fn check_same_person(
    identities: &[Subject],
    facts: &HashMap<Subject, SenderFacts>,
) -> Result<(), ApiError> {
    let [to, recipient] = identities else {
        return Ok(());
    };
    let partners_of = |subject: &Subject| -> Vec<Subject> {
        facts
            .get(subject)
            .and_then(|f| f.state.as_ref())
            .map(|s| s.linked_subjects())
            .unwrap_or_default()
    };
    let differs = |a: &Subject, b: &Subject| {
        let partners = partners_of(a);
        let same_kind: Vec<&Subject> = partners
            .iter()
            .filter(|p| std::mem::discriminant(*p) == std::mem::discriminant(b))
            .filter(|p| p.user_id().is_none_or(|u| !u.is_parent()))
            .collect();
        !same_kind.is_empty() && !same_kind.contains(&b)
    };
    if differs(to, recipient) || differs(recipient, to) {
        return Err(ApiError::invalid(
            "recipient_mismatch",
            "recipient",
            "'to' and 'recipient' name two different people",
        ));
    }
    Ok(())
}

/// B31, B32: refused; recorded; nothing sent. The audit event is retried
/// until written (S3); if it cannot be, the send fails 503, still unsent,
/// and the caller's retry is refused and recorded again.
async fn refuse(
    app: &App,
    recipient: &Subject,
    business: &PhoneNumberId,
    refusal: &Refusal,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Response<Body>, ApiError> {
    tracing::info!(recipient = %recipient.masked(), reason = refusal.reason(), "outbound_refused");
    let event_id = AuditEvent::new_id(now);
    let deadline = tokio::time::Instant::now() + app.record_refusal_within;
    let recorded = service::retry_until(deadline, || {
        app.store
            .record_outbound_refused(&event_id, recipient, business, refusal, actor, now)
    })
    .await;
    if let Err(error) = recorded {
        tracing::error!(error = %error, "outbound_refused not recorded; nothing was sent");
        return Err(ApiError::new(
            503,
            "refusal_not_recorded",
            "the recipient is refused, but the refusal could not be recorded; nothing was sent",
        ));
    }
    metrics::count(FUNCTION, Counter::OutboundRefused, 1);
    Ok(errors::refusal(recipient, refusal))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    numbers: Vec<String>,
    /// B83: `marketing`, `utility` or `any` (the default: refused to
    /// anyone who opted out of anything).
    #[serde(default)]
    purpose: Option<String>,
}

/// B83: what a send is for. A template's category says it (looked up from
/// Graph, cached for [`CATEGORY_CACHE_FOR`]); any other message is a reply
/// in a conversation the customer opened. A template whose category cannot
/// be known (no business account configured, none of that name and
/// language, or a lookup that failed) counts as any purpose: it is refused
/// to a customer who stopped marketing (fails closed), and goes to everyone
/// else, since it is asked only about such a customer.
async fn purpose_of(app: &App, body: &[u8]) -> Purpose {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if parsed["type"] != "template" {
        return Purpose::Utility;
    }
    let (Some(name), Some(account)) = (
        parsed.pointer("/template/name").and_then(Value::as_str),
        app.config.business_account_id.as_deref(),
    ) else {
        return Purpose::Any;
    };
    let language = parsed
        .pointer("/template/language/code")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = (name.to_owned(), language.to_owned());
    let cached = app
        .categories
        .lock()
        .ok()
        .and_then(|c| c.get(&key).cloned())
        .filter(|(at, _)| at.elapsed() < CATEGORY_CACHE_FOR);
    let category = match cached {
        Some((_, category)) => category,
        None => match app.graph.template_category(account, name, language).await {
            Ok(category) => {
                if category.is_none() {
                    tracing::warn!(
                        "template not found in the business account; treated as marketing"
                    );
                }
                if let Ok(mut cache) = app.categories.lock() {
                    cache.retain(|_, (at, _)| at.elapsed() < CATEGORY_CACHE_FOR);
                    if cache.len() < MAX_CACHED_TEMPLATES {
                        cache.insert(key, (Instant::now(), category.clone()));
                    }
                }
                category
            }
            Err(error) => {
                tracing::error!(error = %error, "template category lookup failed; treated as marketing");
                None
            }
        },
    };
    match category.as_deref() {
        Some("MARKETING") => Purpose::Marketing,
        Some(_) => Purpose::Utility,
        None => Purpose::Any,
    }
}

/// Templates whose category one warm function keeps at most.
const MAX_CACHED_TEMPLATES: usize = 1000;

/// B33: `POST /v1/{phone_number_id}/recipients:check`.
async fn check(app: &App, request: &Request, business: &str) -> Result<Response<Body>, ApiError> {
    authorize(app, request)?;
    let business = business_number(business)?;
    let body: CheckBody = parse_json(body_bytes(request)?)?;
    let purpose = match body.purpose.as_deref() {
        None => Purpose::Any,
        Some(raw) => Purpose::parse(raw).ok_or_else(|| {
            ApiError::invalid(
                "invalid_purpose",
                "purpose",
                "purpose is marketing, utility or any",
            )
        })?,
    };
    if body.numbers.len() > MAX_CHECK {
        return Err(ApiError::invalid(
            "too_many_numbers",
            "numbers",
            format!("at most {MAX_CHECK} numbers"),
        ));
    }
    let parsed: Vec<(String, Option<Subject>)> = body
        .numbers
        .into_iter()
        .map(|given| {
            let subject = field_subject_as_seen(&given, "numbers").ok();
            (given, subject)
        })
        .collect();
    let numbers = parsed.iter().filter_map(|(_, n)| n.clone());
    let (facts, consents, allow_unknown) = recipient_facts(app, &business, numbers).await?;
    let mut consents_of: HashMap<Subject, Vec<Consent>> = HashMap::new();
    for consent in consents {
        consents_of
            .entry(consent.subject.clone())
            .or_default()
            .push(consent);
    }
    let now = (app.now)();
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    for (given, number) in parsed {
        let Some(number) = number else {
            // The same codes as the API's: a malformed BSUID or a number.
            let reason = match field_subject_as_seen(&given, "numbers") {
                Err(error) => error.code,
                Ok(_) => "invalid_number",
            };
            refused.push(json!({ "number": given, "reason": reason }));
            continue;
        };
        let recipient = inbound::person_facts(std::slice::from_ref(&number), &facts);
        let linked = facts
            .get(&number)
            .and_then(|f| f.state.as_ref())
            .map(|s| s.linked_subjects())
            .unwrap_or_default();
        let person: Vec<Consent> = std::iter::once(&number)
            .chain(&linked)
            .filter_map(|s| consents_of.get(s))
            .flatten()
            .cloned()
            .collect();
        match outbound::decide_send(&recipient, &person, &business, purpose, allow_unknown, now) {
            Ok(()) => allowed.push(Value::String(given)),
            Err(refusal) => {
                let mut entry = json!({ "number": given, "reason": refusal.reason() });
                if let Some(rule) = refusal.rule() {
                    entry["rule"] = json!(rule);
                }
                refused.push(entry);
            }
        }
    }
    Ok(blocklist::http::json(
        200,
        &json!({ "allowed": allowed, "refused": refused }),
    ))
}
