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
use std::time::Duration;

use blocklist::config::{ConfigError, Env};
use blocklist::http::ApiError;
use blocklist::http::auth::{Authenticator, Caller, SEND};
use blocklist::http::request::{body_bytes, field_number, parse_json, segments};
use blocklist::inbound::SenderFacts;
use blocklist::metrics::{self, Counter};
use blocklist::model::{Actor, PhoneNumberId, SettingsTarget};
use blocklist::number::Number;
use blocklist::outbound::{self, Refusal};
use blocklist::redact;
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
        })
    }
}

/// What every request needs; built once at init.
pub struct App {
    pub store: Store,
    pub auth: Authenticator,
    pub config: Config,
    http: reqwest::Client,
    /// The clock, replaceable in tests.
    pub now: fn() -> DateTime<Utc>,
}

impl App {
    pub fn new(store: Store, auth: Authenticator, config: Config) -> Result<App, reqwest::Error> {
        // No redirects: a send goes to Graph's endpoint or nowhere.
        let http = reqwest::Client::builder()
            .timeout(config.graph_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(App {
            store,
            auth,
            config,
            http,
            now: Utc::now,
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
        (["v1", _, "messages" | "recipients:check"], _) => Err(ApiError::new(
            405,
            "method_not_allowed",
            format!("{method} is not allowed here"),
        )),
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
        .settings(&SettingsTarget::Business(business.clone()))
        .await?;
    Ok(settings.effective.allow_unknown_numbers)
}

/// What the decision needs about `numbers` as recipients from `business`,
/// in one round trip: their blocks and contacts (one batched, strongly
/// consistent read, B4) and the business number's settings. Fails closed
/// (B34): an unreadable blocklist is a 503, and nothing is sent.
async fn recipient_facts(
    app: &App,
    business: &PhoneNumberId,
    numbers: impl IntoIterator<Item = Number>,
) -> Result<(HashMap<Number, SenderFacts>, bool), ApiError> {
    let senders: HashMap<Number, HashSet<PhoneNumberId>> = numbers
        .into_iter()
        .map(|n| (n, HashSet::from([business.clone()])))
        .collect();
    let (facts, allow) = tokio::join!(
        app.store.sender_facts(&senders),
        allow_unknown(app, business)
    );
    match (facts, allow) {
        (Ok(facts), Ok(allow)) => Ok((facts, allow)),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(error = %error, "blocklist unreadable; refused");
            Err(ApiError::new(
                503,
                "blocklist_unavailable",
                "the blocklist cannot be read; nothing was sent",
            ))
        }
    }
}

/// B30–B32, B34: `POST /v1/{phone_number_id}/messages`.
async fn send(app: &App, request: &Request, business: &str) -> Result<Response<Body>, ApiError> {
    let (_, actor) = authorize(app, request)?;
    let business = business_number(business)?;
    let body = body_bytes(request)?;
    let recipient = recipient_of(body)?;

    let (facts, allow_unknown) = recipient_facts(app, &business, [recipient.clone()]).await?;
    let now = (app.now)();
    let recipient_facts = facts.get(&recipient).cloned().unwrap_or_default();
    if let Err(refusal) = outbound::decide_send(&recipient_facts, &business, allow_unknown, now) {
        return refuse(app, &recipient, &business, &refusal, &actor, now).await;
    }

    let url = format!(
        "{}/{}/{}/messages",
        app.config.graph_base_url, app.config.graph_version, business
    );
    let result = app
        .http
        .post(&url)
        .bearer_auth(&app.config.access_token)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await;
    let response = match result {
        Ok(response) => response,
        Err(error) if error.is_timeout() => {
            tracing::error!("Graph API timed out; the send may or may not have gone out");
            return Err(ApiError::new(
                504,
                "graph_timeout",
                "the Graph API did not answer in time; the send was not retried",
            ));
        }
        Err(error) => {
            // reqwest's message names the URL: left out, as in the ingress.
            let error = redact::error(&error.without_url());
            tracing::error!(error = %error, "Graph API unreachable");
            return Err(ApiError::new(
                502,
                "graph_unreachable",
                "the Graph API could not be reached; nothing was sent",
            ));
        }
    };
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").cloned();
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes.to_vec(),
        Err(error) if error.is_timeout() => {
            return Err(ApiError::new(
                504,
                "graph_timeout",
                "the Graph API did not answer in time; the send was not retried",
            ));
        }
        Err(_) => Vec::new(),
    };
    if (200..300).contains(&status)
        && let Err(error) = app
            .store
            .record_outbound(&business, &recipient, now, recipient_facts.known_contact)
            .await
    {
        // The message is out: never make the caller send it again over a
        // bookkeeping failure.
        tracing::error!(error = %error, "last_outbound_at not recorded");
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

/// The recipient of a send body. Only `to` is read; the body goes to Graph
/// as it came. A body naming `to` twice is refused: which of the two Graph
/// would use is not ours to guess, and a blocked number must not slip
/// through behind an allowed one.
fn recipient_of(body: &[u8]) -> Result<Number, ApiError> {
    #[derive(Deserialize)]
    struct SendBody {
        // serde's derived visitor fails on a repeated field.
        to: Option<Value>,
    }
    let value: Value = parse_json(body)?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            "invalid_field",
            "body",
            "the send body must be a JSON object",
        ));
    }
    let send: SendBody =
        parse_json(body).map_err(|error| match error.message.contains("duplicate field") {
            true => ApiError::invalid("invalid_number", "to", "'to' appears more than once"),
            false => error,
        })?;
    let to = send
        .to
        .ok_or_else(|| ApiError::invalid("missing_recipient", "to", "the send body has no 'to'"))?;
    let to = to
        .as_str()
        .ok_or_else(|| ApiError::invalid("invalid_number", "to", "'to' must be a string"))?;
    field_number(to, "to")
}

/// B31, B32: refused; recorded; nothing sent.
async fn refuse(
    app: &App,
    recipient: &Number,
    business: &PhoneNumberId,
    refusal: &Refusal,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Response<Body>, ApiError> {
    tracing::info!(number = %recipient.masked(), reason = refusal.reason(), "outbound_refused");
    metrics::count(FUNCTION, Counter::OutboundRefused, 1);
    if let Err(error) = app
        .store
        .record_outbound_refused(recipient, business, refusal, actor, now)
        .await
    {
        // Still refused: an unrecorded refusal is better than a sent message.
        tracing::error!(error = %error, "outbound_refused not recorded");
    }
    Ok(errors::refusal(recipient, refusal))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    numbers: Vec<String>,
}

/// B33: `POST /v1/{phone_number_id}/recipients:check`.
async fn check(app: &App, request: &Request, business: &str) -> Result<Response<Body>, ApiError> {
    authorize(app, request)?;
    let business = business_number(business)?;
    let body: CheckBody = parse_json(body_bytes(request)?)?;
    if body.numbers.len() > MAX_CHECK {
        return Err(ApiError::invalid(
            "too_many_numbers",
            "numbers",
            format!("at most {MAX_CHECK} numbers"),
        ));
    }
    let parsed: Vec<(String, Option<Number>)> = body
        .numbers
        .into_iter()
        .map(|given| {
            let number = Number::parse(&given).ok();
            (given, number)
        })
        .collect();
    let numbers = parsed.iter().filter_map(|(_, n)| n.clone());
    let (facts, allow_unknown) = recipient_facts(app, &business, numbers).await?;
    let now = (app.now)();
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    for (given, number) in parsed {
        let Some(number) = number else {
            refused.push(json!({ "number": given, "reason": "invalid_number" }));
            continue;
        };
        let recipient = facts.get(&number).cloned().unwrap_or_default();
        match outbound::decide_send(&recipient, &business, allow_unknown, now) {
            Ok(()) => allowed.push(Value::String(given)),
            Err(refusal) => refused.push(json!({ "number": given, "reason": refusal.reason() })),
        }
    }
    Ok(blocklist::http::json(
        200,
        &json!({ "allowed": allowed, "refused": refused }),
    ))
}
