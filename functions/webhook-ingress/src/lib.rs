//! `webhook-ingress` (SPEC B20–B27): Meta's webhook in, the CRM's webhook
//! out, blocked senders dropped in between.
//!
//! `POST /webhook`, in order:
//! 1. verify `X-Hub-Signature-256` over the raw bytes, before parsing (B21);
//! 2. parse every entry, change, message and status (B22, B27);
//! 3. gather facts in one round trip: one consistent batched read of every
//!    sender's blocks and contact, and a claim per update for idempotency;
//! 4. decide ([`blocklist::inbound::plan_inbound`], pure);
//! 5. forward what is left to the CRM, re-signed (B24);
//! 6. record in one more round trip: suppressions with their audit events
//!    and counters (B23), completed claims, chats (B24), delivery failures
//!    (B25).
//!
//! Any failure of the store or the CRM answers 5xx so that Meta retries
//! (B26); claims make the retry skip what already succeeded. Once the CRM
//! acknowledged a forward, marking its claims done is retried until written
//! (within [`ANSWER_WITHIN`]), so a store blip does not become a duplicate.

use std::collections::HashMap;
use std::time::Duration;

use blocklist::config::{ConfigError, Env};
use blocklist::http::request::{Query, webhook_body_bytes};
use blocklist::http::{ApiError, json};
use blocklist::identity::Subject;
use blocklist::inbound::{self, InboundPlan};
use blocklist::meta::graph::GraphClient;
use blocklist::meta::signature;
use blocklist::meta::webhook::{Delivery, WebhookError};
use blocklist::metrics::{self, Counter};
use blocklist::model::{Actor, SettingsTarget};
use blocklist::policy::SubjectState;
use blocklist::redact;
use blocklist::service;
use blocklist::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, Response};
use serde_json::json;

/// The `Function` dimension of this crate's metrics outside Lambda.
const FUNCTION: &str = env!("CARGO_PKG_NAME");

/// The actor of what the webhook changes on its own (B62).
pub const ACTOR: &str = "webhook-ingress";

/// A delivery is answered within this, inside the function's 29 s timeout
/// and the HTTP API's 30 s: the time the writes that must follow a
/// forward the CRM acknowledged may take, retries included.
const ANSWER_WITHIN: Duration = Duration::from_secs(25);

/// Settings of the function, read once at init.
#[derive(Clone)]
pub struct Config {
    pub app_secret: String,
    pub verify_token: String,
    pub crm: Option<CrmConfig>,
    /// Where keyword confirmations go (B81); without it none is sent.
    pub graph: Option<GraphConfig>,
}

/// The Graph API that sends keyword confirmations (B81).
#[derive(Clone)]
pub struct GraphConfig {
    pub base_url: String,
    pub version: String,
    pub access_token: String,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct CrmConfig {
    pub url: String,
    pub secret: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for Config {
    // Secrets never reach logs (B52): not the secrets, and of the CRM URL,
    // which can carry a token in its path or query, only the origin.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("crm_url", &self.crm.as_ref().map(|c| redact::url(&c.url)))
            .finish_non_exhaustive()
    }
}

impl Config {
    /// `WHATSAPP_APP_SECRET` and `WHATSAPP_VERIFY_TOKEN` are required;
    /// `CRM_WEBHOOK_URL` is optional (unset: record only) and then needs
    /// `CRM_WEBHOOK_SECRET`; `CRM_TIMEOUT_MS` defaults to 5000.
    /// `GRAPH_API_BASE_URL` is optional (unset: no keyword confirmations,
    /// B81) and then needs `WHATSAPP_ACCESS_TOKEN`; `GRAPH_API_VERSION`
    /// defaults to `v25.0`, `GRAPH_TIMEOUT_MS` to 5000.
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let graph = match env.optional("GRAPH_API_BASE_URL") {
            None => None,
            Some(base_url) => Some(GraphConfig {
                base_url,
                version: env.or("GRAPH_API_VERSION", "v25.0"),
                access_token: env.required("WHATSAPP_ACCESS_TOKEN")?,
                timeout: env.millis("GRAPH_TIMEOUT_MS", Duration::from_secs(5))?,
            }),
        };
        let crm = match env.optional("CRM_WEBHOOK_URL") {
            None => None,
            Some(url) => Some(CrmConfig {
                url,
                secret: env.required("CRM_WEBHOOK_SECRET")?,
                timeout: env.millis("CRM_TIMEOUT_MS", Duration::from_secs(5))?,
            }),
        };
        Ok(Config {
            app_secret: env.required("WHATSAPP_APP_SECRET")?,
            verify_token: env.required("WHATSAPP_VERIFY_TOKEN")?,
            crm,
            graph,
        })
    }
}

/// What every request needs; built once at init.
pub struct App {
    pub store: Store,
    pub config: Config,
    http: reqwest::Client,
    graph: Option<GraphClient>,
    /// The clock, replaceable in tests.
    pub now: fn() -> DateTime<Utc>,
}

impl App {
    pub fn new(store: Store, config: Config) -> Result<App, reqwest::Error> {
        let timeout = config
            .crm
            .as_ref()
            .map_or(Duration::from_secs(5), |c| c.timeout);
        let http = blocklist::config::https_post_client(timeout)?;
        let graph = match &config.graph {
            None => None,
            Some(g) => Some(GraphClient::new(
                &g.base_url,
                &g.version,
                &g.access_token,
                g.timeout,
            )?),
        };
        Ok(App {
            store,
            config,
            http,
            graph,
            now: Utc::now,
        })
    }
}

/// Handles one API Gateway request to `/webhook`. Never fails: every error
/// is an HTTP response.
pub async fn handle(app: &App, request: Request) -> Response<Body> {
    let method = request.method().as_str().to_owned();
    let response = match method.as_str() {
        "GET" => verify_subscription(app, &request),
        "POST" => receive(app, &request).await,
        _ => Err(ApiError::method_not_allowed(&method, "GET, POST")),
    };
    let response = response.unwrap_or_else(ApiError::into_response);
    tracing::info!(method = %method, route = "/webhook", status = response.status().as_u16(), "request");
    response
}

/// B20: the subscription handshake.
fn verify_subscription(app: &App, request: &Request) -> Result<Response<Body>, ApiError> {
    use subtle::ConstantTimeEq;
    let query = Query::parse(request, &["hub.mode", "hub.verify_token", "hub.challenge"])
        .map_err(|_| ApiError::forbidden("verification failed"))?;
    let token_matches = query
        .get("hub.verify_token")
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(app.config.verify_token.as_bytes())));
    match (query.get("hub.mode"), query.get("hub.challenge")) {
        (Some("subscribe"), Some(challenge)) if token_matches => Ok(Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(Body::Text(challenge.to_owned()))
            .unwrap_or_default()),
        _ => {
            tracing::warn!("webhook verification refused");
            Err(ApiError::forbidden("verification failed"))
        }
    }
}

fn consent_actor() -> blocklist::model::Actor {
    blocklist::model::Actor {
        actor: ACTOR.to_owned(),
        client: None,
    }
}

/// B21–B27: one delivery.
async fn receive(app: &App, request: &Request) -> Result<Response<Body>, ApiError> {
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    let body = webhook_body_bytes(request)?;
    let header = request
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(error) = signature::verify(app.config.app_secret.as_bytes(), body, header) {
        tracing::warn!(error = %error, "webhook rejected");
        metrics::count(FUNCTION, Counter::WebhookRejected, 1);
        return Err(ApiError::unauthorized(error.to_string()));
    }
    let delivery = match Delivery::parse(body) {
        Ok(delivery) => delivery,
        Err(WebhookError::Malformed(detail)) => {
            tracing::warn!(error = %redact::detail(&detail), "signed webhook body is not JSON");
            return Err(ApiError::bad_request(
                "malformed_json",
                "body is not valid JSON",
            ));
        }
        Err(WebhookError::WrongObject(object)) => {
            // Acknowledged so that Meta does not retry what will never parse.
            tracing::warn!(object = %redact::detail(&object), "webhook for another object skipped");
            return Ok(json(
                200,
                &json!({ "status": "skipped", "reason": "unsupported object" }),
            ));
        }
    };
    if delivery.unusable > 0 {
        tracing::warn!(count = delivery.unusable, "updates without id skipped");
    }

    let now = (app.now)();
    let owner = request_id(request);
    let keys = inbound::claim_keys(&delivery);
    let senders = inbound::senders(&delivery);
    let link_only = inbound::link_identities(&delivery);
    let unattributed = inbound::unattributed_status_ids(&delivery);
    // B61, B84: identities the delivery shows together, for the prefix
    // rules of numbers shown only beside a BSUID and for the plan.
    let (shown, _) = blocklist::policy::merge_links(&delivery.links);
    // Round trip 1: the batched read of every identity (with the blocks of
    // their linked identities), the claims, and the records of sends whose
    // failed statuses name no recipient, concurrently.
    // The settings of business numbers that got a possible keyword (B81)
    // come from the settings cache, in the same round.
    let (facts, claims, sent, keyword_settings) = tokio::join!(
        app.store.sender_facts(&senders, &link_only, &shown),
        app.store.claim(&keys, &owner, now),
        app.store.sent_subjects(&unattributed),
        app.store
            .settings_of::<HashMap<_, _>>(inbound::settings_numbers(&delivery)),
    );
    let claims = claims.map_err(dependency_error)?;
    let (facts, sent, keyword_settings) =
        match facts.and_then(|facts| Ok((facts, sent?, keyword_settings?))) {
            Ok(reads) => reads,
            Err(error) => {
                // B22: the claims taken go back, so that Meta's retry
                // handles the updates at once, not after the lease.
                release_taken(app, &claims, &owner).await;
                return Err(dependency_error(error));
            }
        };
    let plan = inbound::plan_inbound(
        &delivery,
        &facts,
        &claims,
        &sent,
        &keyword_settings,
        &shown,
        now,
    );
    let consents = inbound::consent_changes(&delivery, &facts, &keyword_settings, now);
    let known_states: HashMap<Subject, SubjectState> = facts
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

    let forwarded = forward(app, &delivery, &plan).await;
    // Round trip 2: record what happened.
    let completed: &[String] = if forwarded.is_ok() {
        &plan.forward_keys
    } else {
        &[]
    };
    let released: &[String] = if forwarded.is_ok() {
        &[]
    } else {
        &plan.forward_keys
    };
    let chats: &[inbound::ChatTouch] = if forwarded.is_ok() { &plan.chats } else { &[] };
    let failures: &[inbound::DeliveryFailure] = if forwarded.is_ok() {
        &plan.failures
    } else {
        &[]
    };
    // A failed status's claim is completed only once its failure is stored:
    // if that write fails, Meta's retry must find the status unhandled, or
    // wa-blocked would never see the failure. Other claims complete
    // alongside, keeping the common case at two round trips.
    let failure_keys: Vec<String> = failures
        .iter()
        .map(|f| inbound::status_key(&f.message_id, "failed"))
        .collect();
    let completed: Vec<String> = completed
        .iter()
        .filter(|k| !failure_keys.contains(k))
        .cloned()
        .collect();
    let identities = async {
        // B61 and B62 are decided on every delivery, retries included, so
        // a retry after a failure here redoes them.
        let links = async {
            let (linked, ambiguous) = service::learn_links(
                &app.store,
                &delivery.links,
                known_states,
                ACTOR,
                12,
                app.now,
            )
            .await?;
            if linked > 0 || !ambiguous.is_empty() {
                tracing::info!(
                    linked,
                    ambiguous = ambiguous.len(),
                    "identities linked; ambiguous ones left unlinked"
                );
            }
            carry_blocks(app, &plan.carries).await?;
            carry_consents(app, &inbound::identity_moves(&delivery), now).await
        };
        // B81, B82: decided on every delivery, so Meta's retry after a
        // failed write writes again; each change applies once.
        let consented = async {
            let changed = app
                .store
                .record_each_consent(&consents, &consent_actor(), now)
                .await?;
            let count = changed.iter().filter(|c| **c).count();
            if count > 0 {
                tracing::info!(changed = count, "consent changed");
            }
            let replies =
                inbound::keyword_replies(&delivery, &plan, &consents, &changed, &keyword_settings);
            confirm_keywords(app, &replies).await;
            Ok::<(), StoreError>(())
        };
        tokio::try_join!(links, consented).map(|_| ())
    };
    let (recorded, identities) = tokio::join!(
        futures_join4(
            async {
                // Counted once recorded: a retry finds these claims done.
                let recorded = app
                    .store
                    .record_suppressed(&plan.suppressed, &owner, now)
                    .await?;
                metrics::count(FUNCTION, Counter::InboundSuppressed, recorded as u64);
                Ok(())
            },
            async {
                // B22: once the CRM has the messages, their claims must be
                // marked done, or Meta's retry of a 503 forwards them again
                // when the lease runs out. A store blip (a restart, a few
                // seconds of throttling) is waited out, not answered.
                service::retry_until(deadline, || {
                    app.store.complete_claims(&completed, &owner, now)
                })
                .await?;
                app.store.release_claims(released, &owner).await
            },
            // S3: a retry would find the messages done and not touch their
            // chats again, so the chats are written now or never; never is
            // logged and counted, not answered 5xx (the retry could not
            // redo it).
            async {
                if let Err(error) =
                    service::retry_until(deadline, || app.store.record_chats(chats)).await
                {
                    tracing::error!(%error, chats = chats.len(), "chat stamps lost");
                    metrics::count(FUNCTION, Counter::ChatStampsLost, chats.len() as u64);
                }
                Ok(())
            },
            // B22: the CRM has these statuses too, so a blip is waited
            // out here as well; each write is idempotent, and only a store
            // down past the deadline leaves the claims for Meta's retry.
            service::retry_until(deadline, || async {
                app.store.record_failures(failures).await?;
                // B82: 131050 stops marketing; before the claim completes,
                // so that a failed write is redone by Meta's retry.
                app.store
                    .record_consents(&inbound::marketing_stops(failures), &consent_actor(), now)
                    .await?;
                app.store.complete_claims(&failure_keys, &owner, now).await
            }),
        ),
        identities
    );
    log_plan(&plan);
    recorded.map_err(dependency_error)?;
    identities.map_err(dependency_error)?;
    forwarded?;
    if plan.in_flight > 0 {
        // A concurrent duplicate is being handled elsewhere: Meta retries,
        // and the retry finds it done (or released).
        return Err(ApiError::new(
            503,
            "in_progress",
            "some updates are being processed; retry",
        ));
    }
    Ok(json(
        200,
        &json!({
            "status": "ok",
            "forwarded": plan.forward.len(),
            "suppressed": plan.suppressed.len(),
            "duplicates": plan.duplicates,
        }),
    ))
}

/// Gives back the claims this invocation took, after a failure before any
/// forward; one that fails to go back is left to its lease.
async fn release_taken(app: &App, claims: &HashMap<String, inbound::Claim>, owner: &str) {
    let taken: Vec<String> = claims
        .iter()
        .filter(|(_, claim)| **claim == inbound::Claim::Claimed)
        .map(|(key, _)| key.clone())
        .collect();
    if let Err(error) = app.store.release_claims(&taken, owner).await {
        tracing::warn!(%error, "claims not given back; they wait for their lease");
    }
}

/// Keyword confirmations in flight at once.
const CONFIRMATIONS_AT_ONCE: usize = 8;

/// B81: sends each keyword confirmation through Graph, once: the consent
/// it confirms is already written, so Meta's retry of this delivery finds
/// nothing changed and sends nothing. A confirmation that fails is logged,
/// never a reason to have Meta retry.
async fn confirm_keywords(app: &App, replies: &[inbound::KeywordReply]) {
    let Some(graph) = &app.graph else {
        if !replies.is_empty() {
            tracing::warn!(
                replies = replies.len(),
                "keyword confirmations set, but GRAPH_API_BASE_URL is not: none sent"
            );
        }
        return;
    };
    // A few at a time: a delivery of many keywords must not open a
    // connection per message.
    for chunk in replies.chunks(CONFIRMATIONS_AT_ONCE) {
        futures::future::join_all(chunk.iter().map(|reply| confirm_one(graph, reply))).await;
    }
}

async fn confirm_one(graph: &GraphClient, reply: &inbound::KeywordReply) {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "type": "text",
        "text": { "preview_url": false, "body": reply.text },
    });
    match &reply.to {
        Subject::Number(number) => body["to"] = json!(number.as_str()),
        Subject::User(user) => body["recipient"] = json!(user.as_str()),
    }
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    match graph.send_message(&reply.phone_number_id, bytes).await {
        Ok(answer) if (200..300).contains(&answer.status) => {
            tracing::info!("keyword confirmed");
        }
        Ok(answer) => {
            tracing::warn!(
                status = answer.status,
                "keyword confirmation refused by Graph"
            );
        }
        Err(error) => tracing::warn!(error = %error, "keyword confirmation not sent"),
    }
}

/// B24: forwards the filtered payload to the CRM, signed with its secret.
async fn forward(app: &App, delivery: &Delivery, plan: &InboundPlan) -> Result<(), ApiError> {
    let Some(crm) = &app.config.crm else {
        return Ok(());
    };
    let Some(body) = delivery.filtered(&plan.forward) else {
        return Ok(());
    };
    let bytes = serde_json::to_vec(&body).map_err(|_| ApiError::internal())?;
    let signature = signature::sign(crm.secret.as_bytes(), &bytes);
    let result = app
        .http
        .post(&crm.url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(bytes)
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            tracing::error!(
                status = response.status().as_u16(),
                "CRM refused the webhook"
            );
            Err(ApiError::new(
                502,
                "crm_unavailable",
                "the CRM did not accept the delivery; retry",
            ))
        }
        Err(error) => {
            // reqwest's message names the URL, which can carry a secret.
            let timeout = error.is_timeout();
            let error = redact::error(&error.without_url());
            tracing::error!(error = %error, timeout, "CRM unreachable");
            Err(ApiError::new(
                502,
                "crm_unavailable",
                "the CRM could not be reached; retry",
            ))
        }
    }
}

/// B62: carries the blocks of people who changed identity, unless the
/// business number's settings say not to.
async fn carry_blocks(app: &App, carries: &[inbound::Carry]) -> Result<(), StoreError> {
    for carry in carries {
        let target = carry
            .phone_number_id
            .clone()
            .map_or(SettingsTarget::Default, SettingsTarget::Business);
        if !app
            .store
            .recent_settings(&target)
            .await?
            .effective
            .carry_blocks_on_change
        {
            tracing::info!("identity change seen; carrying blocks is off for this business number");
            continue;
        }
        let carried = service::carry_blocks(
            &app.store,
            &carry.from,
            &carry.to,
            &carry.blocks,
            &carry.message_id,
            &Actor::system(ACTOR),
            app.now,
        )
        .await?;
        if carried {
            tracing::info!(
                from = %carry.from.masked(),
                to = %carry.to.masked(),
                "identity_changed: blocks carried"
            );
        }
    }
    Ok(())
}

/// B62, B80: a person's opt-outs follow them to a new number or user id,
/// blocked or not, whatever `carry_blocks_on_change` says (it is about the
/// business's blocks; this is the customer's say). Done on every delivery
/// that reports the change, so Meta's retry redoes a failed write, and
/// applied by time, so a newer say of the new identity is kept.
async fn carry_consents(
    app: &App,
    moves: &[(Subject, Subject, String)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (from, to, message_id) in moves {
        let records = app.store.consent_records(from).await?;
        let changes = blocklist::model::carried_consents(&records, to, message_id);
        let changed = app
            .store
            .record_consents(&changes, &consent_actor(), now)
            .await?;
        if changed > 0 {
            tracing::info!(changed, to = %to.masked(), "consent carried to a changed identity");
        }
    }
    Ok(())
}

fn log_plan(plan: &InboundPlan) {
    // Not the message id: a wamid is the sender's number in base64 (B52).
    // The audit event of the suppression keeps it.
    for suppression in &plan.suppressed {
        tracing::info!(
            subject = %suppression.subject.masked(),
            scope = %suppression.block.scope,
            "inbound_suppressed"
        );
    }
    tracing::info!(
        forwarded = plan.forward.len(),
        suppressed = plan.suppressed.len(),
        duplicates = plan.duplicates,
        in_flight = plan.in_flight,
        failures = plan.failures.len(),
        unattributed_failures = plan.unattributed_failures,
        carries = plan.carries.len(),
        "delivery handled"
    );
}

fn dependency_error(error: StoreError) -> ApiError {
    // B26: a dependency failed; 5xx so that Meta retries.
    match error {
        StoreError::Conflict => ApiError::new(503, "conflict", "concurrent update; retry"),
        other => ApiError::from(other),
    }
}

/// Owner of this invocation's claims: the API Gateway request id, unique
/// per delivery attempt.
fn request_id(request: &Request) -> String {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let id = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        _ => None,
    };
    id.unwrap_or_else(|| blocklist::model::AuditEvent::new_id(Utc::now()))
}

async fn futures_join4<E>(
    a: impl Future<Output = Result<(), E>>,
    b: impl Future<Output = Result<(), E>>,
    c: impl Future<Output = Result<(), E>>,
    d: impl Future<Output = Result<(), E>>,
) -> Result<(), E> {
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    a.and(b).and(c).and(d)
}
