//! B1, B2, B5, B6, B7: blocking, unblocking, reading and listing blocks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use blocklist::http::auth::{Caller, READ, WRITE};
use blocklist::http::request::{Query, field_subject, json_body, path_subject};
use blocklist::http::{ApiError, json};
use blocklist::identity::{Link, Subject};
use blocklist::metrics::{self, Counter};
use blocklist::model::search::plan_search;
use blocklist::model::{
    Block, Chat, Consent, Contact, PhoneNumberId, PlatformState, PlatformView, Rule, Scope, Source,
};
use blocklist::platform::PlatformMirror;
use blocklist::policy::BlockCommand;
use blocklist::service::{self, BlockOutcome, UnblockOutcome};
use blocklist::store::{BlockQuery, Cursor, POSITION};
use futures::StreamExt;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::json;

use crate::wire::{self, BatchAction, BatchBody, BlockBody, UnblockBody};
use crate::{App, FUNCTION, ok};

/// Most numbers in one batch call (B5).
pub const MAX_BATCH: usize = 1000;
/// Numbers of a batch processed at once.
const BATCH_CONCURRENCY: usize = 16;

/// The subject a path or batch entry names: a valid number or BSUID, or
/// (B63) a number the metadata does not know yet but the product has
/// already seen (a webhook made a chat for it, it holds a block, or a prefix
/// rule matches it):
/// anything that can write to the business can be blocked, read and
/// unblocked. A lenient number never seen stays `invalid_number`.
pub async fn seen_subject(app: &App, raw: &str, field: &str) -> Result<Subject, ApiError> {
    let strict = match field {
        "number" => path_subject(raw),
        _ => field_subject(raw, field),
    };
    let error = match strict {
        Ok(subject) => return Ok(subject),
        Err(error) if error.code == "invalid_number" => error,
        Err(error) => return Err(error),
    };
    let decoded = blocklist::http::request::decoded_segment(raw);
    let Ok(number) = blocklist::Number::from_whatsapp_id(&decoded) else {
        return Err(error);
    };
    let subject = Subject::Number(number.clone());
    // Boxed: the read is rare here, and its future is large.
    let seen = Box::pin(app.store.load_subject(&subject)).await?;
    // A rule's number holds no block and opens no chat, but writes.
    let seen = seen.chats.iter().any(|c| c.subject == subject) || !seen.blocks.is_empty();
    let seen = seen
        || !Box::pin(app.store.rules_matching(&[&number]))
            .await?
            .is_empty();
    if seen { Ok(subject) } else { Err(error) }
}

/// B1: `PUT /v1/blocks/{subject}`.
pub async fn block(
    app: &App,
    caller: &Caller,
    request: &Request,
    number: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(WRITE)?;
    let actor = caller.actor()?;
    let number = seen_subject(app, number, "number").await?;
    // No query parameter here: `?scope=` must not silently block in `all`.
    Query::parse(request, &[])?;
    let body: BlockBody = json_body(request)?;
    let mut command = BlockCommand {
        scope: wire::scope(body.scope.as_deref())?,
        reason: wire::reason(&body.reason)?,
        source: wire::source(body.source.as_deref(), Source::Manual)?,
        reason_code: wire::reason_code(body.reason_code)?,
        expires_at: wire::expires_at(body.expires_at.as_deref(), (app.now)())?,
        review_after_days: None,
        contact: body
            .contact
            .map(|c| wire::contact(c, &number))
            .transpose()?,
        details: json!({}),
    };
    // Read once the request is known to be valid: a store error must not
    // stand in for a 422.
    command.review_after_days = app.store.review_after_days(&command.scope).await?;
    match service::block(&app.store, &number, command, &actor, app.now).await? {
        BlockOutcome::Created(block) => {
            metrics::count(FUNCTION, Counter::Blocked, 1);
            Ok(json(201, &block))
        }
        BlockOutcome::AlreadyBlocked(block) => Ok(json(200, &block)),
    }
}

/// B2: `DELETE /v1/blocks/{number}?scope=…` with `{"reason": "…"}`.
pub async fn unblock(
    app: &App,
    caller: &Caller,
    request: &Request,
    number: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(WRITE)?;
    let actor = caller.actor()?;
    let given = blocklist::http::request::decoded_segment(number);
    let number = seen_subject(app, number, "number").await?;
    let query = Query::parse(request, &["scope"])?;
    let body: UnblockBody = json_body(request)?;
    let scope = match (query.get("scope"), body.scope.as_deref()) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                "invalid_scope",
                "scope",
                "scope in query and body differ",
            ));
        }
        (a, b) => wire::scope(a.or(b))?,
    };
    let reason = wire::reason(&body.reason)?;
    let mut outcome =
        service::unblock(&app.store, &number, &scope, &reason, &actor, app.now).await?;
    // A block an earlier release stored under a form now folded into
    // another key (see DEPLOY.md) is removed by the form it is listed as.
    if outcome == UnblockOutcome::NotBlocked
        && let Some(as_stored) = blocklist::Number::stored(given.trim()).map(Subject::Number)
        && as_stored != number
    {
        outcome =
            service::unblock(&app.store, &as_stored, &scope, &reason, &actor, app.now).await?;
    }
    match outcome {
        UnblockOutcome::Unblocked(removed) => {
            metrics::count(FUNCTION, Counter::Unblocked, 1);
            ok(&removed)
        }
        UnblockOutcome::NotBlocked => Err(ApiError::not_found(
            "not_blocked",
            format!("{number} is not blocked in scope {scope}"),
        )),
    }
}

#[derive(Serialize)]
struct SubjectView {
    subject: String,
    /// The number, or null for a BSUID.
    number: Option<String>,
    blocks: Vec<BlockView>,
    /// Active blocks of linked identities, which stop this person too (B61).
    linked_blocks: Vec<Block>,
    links: Vec<Link>,
    contact: Option<Contact>,
    chats: Vec<Chat>,
    /// The subject's consent records (B80): kept apart from its blocks.
    consents: Vec<Consent>,
    /// Prefix rules matching its number or a linked one (B84): they block
    /// it in their scopes as a block would.
    rules: Vec<Rule>,
}

/// A block with its platform state at Meta (B15).
#[derive(Serialize)]
struct BlockView {
    #[serde(flatten)]
    block: Block,
    platform: PlatformView,
}

/// The platform view of each of `blocks`, from the subject's chats and
/// recorded platform states and the `platform_block` setting of each
/// business number they cover (read through the settings cache).
async fn with_platform(
    app: &App,
    blocks: Vec<Block>,
    chats: &[Chat],
    mirrors: &[PlatformMirror],
) -> Result<Vec<BlockView>, ApiError> {
    let chats_with = blocklist::platform::chats_with(chats);
    // Every number a view may name (see `PlatformView::of`).
    let mut numbers: BTreeSet<PhoneNumberId> = chats_with.iter().cloned().collect();
    numbers.extend(mirrors.iter().map(|m| m.phone_number_id.clone()));
    for block in &blocks {
        if let Scope::Business(id) = &block.scope {
            numbers.insert(id.clone());
        }
    }
    let enabled = app.store.platform_block_enabled(numbers).await?;
    let held: BTreeMap<PhoneNumberId, PlatformState> = mirrors
        .iter()
        .map(|m| (m.phone_number_id.clone(), m.state.clone()))
        .collect();
    Ok(blocks
        .into_iter()
        .map(|block| {
            let platform = PlatformView::of(
                &block,
                &chats_with,
                |n| enabled.get(n).copied().unwrap_or(false),
                &held,
            );
            BlockView { block, platform }
        })
        .collect())
}

/// B6, B61: `GET /v1/blocks/{subject}`: its blocks, the identities linked
/// to it and their blocks, its contact and chats.
pub async fn get(
    app: &App,
    caller: &Caller,
    request: &Request,
    number: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let subject = seen_subject(app, number, "number").await?;
    Query::parse(request, &[])?;
    let record = app.store.load_subject(&subject).await?;
    let now = (app.now)();
    let active: Vec<Block> = record
        .blocks
        .into_iter()
        .filter(|b| b.is_active(now))
        .collect();
    let blocks = with_platform(app, active, &record.chats, &record.platform).await?;
    let identities: Vec<Subject> = std::iter::once(subject.clone())
        .chain(record.links.iter().flat_map(Link::subjects))
        .collect();
    let numbers: Vec<&blocklist::Number> = identities.iter().filter_map(Subject::number).collect();
    let rules = app.store.rules_matching(&numbers).await?;
    ok(&SubjectView {
        subject: subject.to_string(),
        number: subject.number().map(ToString::to_string),
        blocks,
        linked_blocks: record
            .linked_blocks
            .into_iter()
            .filter(|b| b.is_active(now))
            .collect(),
        links: record.links,
        contact: record.contact,
        chats: record.chats,
        consents: record.consents,
        rules,
    })
}

/// B16: `GET /v1/blocks?review=due`: the blocks due for review, oldest due
/// first, from their own index; it takes no other filter.
async fn due_for_review(
    app: &App,
    request: &Request,
    query: &Query,
    review: &str,
) -> Result<Response<Body>, ApiError> {
    if review != "due" {
        return Err(
            ApiError::bad_request("invalid_parameter", "review takes one value: due")
                .with_field("review"),
        );
    }
    if let Some(other) = query
        .names()
        .find(|n| !["review", "limit", "cursor"].contains(n))
    {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("review=due takes no other filter ({other})"),
        )
        .with_field(other));
    }
    let cursor = cursor_param(query, "review")?;
    let now = (app.now)();
    if crate::export::wants_csv(request) {
        return crate::export::export(query, cursor, |cursor| async move {
            app.store
                .blocks_due_for_review(now, crate::export::EXPORT_PAGE, cursor.as_ref())
                .await
        })
        .await;
    }
    let page = app
        .store
        .blocks_due_for_review(now, query.limit()?, cursor.as_ref())
        .await?;
    crate::page(page, query)
}

/// The body of `POST /v1/blocks/{subject}/review`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    #[serde(default)]
    scope: Option<String>,
    decision: blocklist::policy::ReviewDecision,
    reason: String,
}

/// B16: `POST /v1/blocks/{subject}/review` `{"scope","decision","reason"}`:
/// keeps the block until its next review, or unblocks it; answers the block
/// as kept or removed.
pub async fn review(
    app: &App,
    caller: &Caller,
    request: &Request,
    number: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(WRITE)?;
    let actor = caller.actor()?;
    let subject = seen_subject(app, number, "number").await?;
    Query::parse(request, &[])?;
    let body: ReviewBody = json_body(request)?;
    let scope = wire::scope(body.scope.as_deref())?;
    let reason = wire::reason(&body.reason)?;
    let reviewed = service::review(
        &app.store,
        &subject,
        &scope,
        body.decision,
        &reason,
        &actor,
        app.now,
    )
    .await?;
    match reviewed {
        Some(block) => {
            if body.decision == blocklist::policy::ReviewDecision::Unblock {
                metrics::count(FUNCTION, Counter::Unblocked, 1);
            }
            ok(&json!({ "decision": body.decision, "block": block }))
        }
        None => Err(ApiError::not_found(
            "not_blocked",
            format!("{subject} is not blocked in scope {scope}"),
        )),
    }
}

/// B7: `GET /v1/blocks`, newest first, filtered, paginated.
pub async fn list(
    app: &App,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let query = Query::parse(
        request,
        &[
            "scope", "source", "since", "until", "category", "group", "q", "limit", "cursor",
            "review",
        ],
    )?;
    let param_error = |field: &str, message: String| {
        ApiError::bad_request("invalid_parameter", message).with_field(field)
    };
    if let Some(review) = query.get("review") {
        return due_for_review(app, request, &query, review).await;
    }
    let scope = query
        .get("scope")
        .map(Scope::parse)
        .transpose()
        .map_err(|e| param_error("scope", e.to_string()))?;
    let source = query
        .get("source")
        .map(Source::parse)
        .transpose()
        .map_err(|e| param_error("source", e.to_string()))?;
    let since = query
        .get("since")
        .map(|v| wire::time_param(v, "since", false))
        .transpose()?;
    let until = query
        .get("until")
        .map(|v| wire::time_param(v, "until", true))
        .transpose()?;
    if let (Some(since), Some(until)) = (since, until)
        && since > until
    {
        return Err(param_error("since", "since must not be after until".into()));
    }
    let bounded = |field: &str| -> Result<Option<String>, ApiError> {
        match query.get(field) {
            Some(v) if v.is_empty() || v.chars().count() > 100 => Err(param_error(
                field,
                format!("{field} must be 1 to 100 characters"),
            )),
            other => Ok(other.map(str::to_owned)),
        }
    };
    let search = bounded("q")?
        .map(|q| plan_search(&q))
        .transpose()
        .map_err(|e| param_error("q", e.to_string()))?;
    let cursor = cursor_param(&query, "blocks")?;
    let listing = BlockQuery {
        scope,
        source,
        since,
        until,
        category: bounded("category")?,
        group: bounded("group")?,
        search,
        now: (app.now)(),
        limit: query.limit()?,
        cursor: None,
    };
    if crate::export::wants_csv(request) {
        // B91: every page, as CSV.
        return crate::export::export(&query, cursor, |cursor| {
            app.store.list_blocks(BlockQuery {
                limit: crate::export::EXPORT_PAGE,
                cursor,
                ..listing.clone()
            })
        })
        .await;
    }
    let page = app
        .store
        .list_blocks(BlockQuery { cursor, ..listing })
        .await?;
    crate::page(page, &query)
}

/// The `cursor` parameter of a listing: one of `kind`, issued under the same
/// filters, carrying a position.
pub fn cursor_param(query: &Query, kind: &str) -> Result<Option<Cursor>, ApiError> {
    let Some(raw) = query.get("cursor") else {
        return Ok(None);
    };
    let cursor =
        Cursor::decode(raw, kind, &query.filters(), &[POSITION]).map_err(|_| invalid_cursor())?;
    Ok(Some(cursor))
}

pub fn invalid_cursor() -> ApiError {
    ApiError::bad_request("invalid_cursor", "cursor is not valid for this listing")
        .with_field("cursor")
}

#[derive(Serialize)]
struct BatchResult {
    number: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<serde_json::Value>,
}

/// B5: `POST /v1/blocks:batch`, up to 1,000 numbers, one result each. A bad
/// number fails only itself.
pub async fn batch(
    app: &App,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    caller.require(WRITE)?;
    let actor = caller.actor()?;
    Query::parse(request, &[])?;
    let body: BatchBody = json_body(request)?;
    if body.numbers.is_empty() || body.numbers.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "invalid_batch",
            "numbers",
            format!("numbers must hold 1 to {MAX_BATCH} entries"),
        ));
    }
    let reason = wire::reason(&body.reason)?;
    let scope = wire::scope(body.scope.as_deref())?;
    let source = wire::source(body.source.as_deref(), Source::Bulk)?;
    let action = body.action;

    // Every occurrence of one number (in whatever form it was given) is
    // handled by one task, in request order, so that the first occurrence is
    // the one that blocks (or unblocks) and later ones report
    // `already_blocked` (`not_blocked`), however the tasks interleave.
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(body.numbers.len());
    let mut groups: Vec<(Subject, Vec<(usize, String)>)> = Vec::new();
    let mut group_of: HashMap<Subject, usize> = HashMap::new();
    for (i, given) in body.numbers.into_iter().enumerate() {
        // Only an entry the metadata refuses costs a read here.
        match seen_subject(app, &given, "numbers").await {
            Ok(number) => {
                let group = *group_of.entry(number.clone()).or_insert_with(|| {
                    groups.push((number, Vec::new()));
                    groups.len() - 1
                });
                groups[group].1.push((i, given));
                results.push(None);
            }
            // The store failing is not this entry's fault: the call fails.
            Err(error) if error.status >= 500 => return Err(error),
            Err(error) => results.push(Some(BatchResult {
                number: given,
                status: "invalid_number",
                error: Some(json!({ "code": error.code, "message": error.message })),
            })),
        }
    }

    let change = BatchChange {
        action,
        scope: &scope,
        reason: &reason,
        source,
        actor: &actor,
        review_after_days: app.store.review_after_days(&scope).await?,
    };
    let done: Vec<Vec<(usize, BatchResult)>> = futures::stream::iter(groups)
        .map(|(number, occurrences)| {
            let change = &change;
            async move {
                let mut out = Vec::with_capacity(occurrences.len());
                for (i, given) in occurrences {
                    out.push((i, change.apply(app, &number, given).await));
                }
                out
            }
        })
        .buffer_unordered(BATCH_CONCURRENCY)
        .collect()
        .await;
    for (i, result) in done.into_iter().flatten() {
        results[i] = Some(result);
    }
    // Each index was filled exactly once: invalid numbers above, the others
    // by their number's task.
    let results: Vec<BatchResult> = results.into_iter().flatten().collect();
    // One metric line per batch, counting the changes it made.
    let changed = |status: &str| results.iter().filter(|r| r.status == status).count() as u64;
    metrics::count(FUNCTION, Counter::Blocked, changed("blocked"));
    metrics::count(FUNCTION, Counter::Unblocked, changed("unblocked"));
    ok(&json!({ "results": results }))
}

/// The one change a batch applies to each of its numbers.
struct BatchChange<'a> {
    action: BatchAction,
    scope: &'a Scope,
    reason: &'a blocklist::model::Reason,
    source: Source,
    actor: &'a blocklist::model::Actor,
    review_after_days: Option<u32>,
}

impl BatchChange<'_> {
    async fn apply(&self, app: &App, number: &Subject, given: String) -> BatchResult {
        let outcome = match self.action {
            BatchAction::Block => {
                let command = BlockCommand {
                    scope: self.scope.clone(),
                    reason: self.reason.clone(),
                    source: self.source,
                    reason_code: None,
                    expires_at: None,
                    review_after_days: self.review_after_days,
                    contact: None,
                    details: json!({ "batch": true }),
                };
                service::block(&app.store, number, command, self.actor, app.now)
                    .await
                    .map(|o| match o {
                        BlockOutcome::Created(_) => "blocked",
                        BlockOutcome::AlreadyBlocked(_) => "already_blocked",
                    })
            }
            BatchAction::Unblock => service::unblock(
                &app.store,
                number,
                self.scope,
                self.reason,
                self.actor,
                app.now,
            )
            .await
            .map(|o| match o {
                UnblockOutcome::Unblocked(_) => "unblocked",
                UnblockOutcome::NotBlocked => "not_blocked",
            }),
        };
        match outcome {
            Ok(status) => BatchResult {
                number: given,
                status,
                error: None,
            },
            Err(error) => {
                let error = ApiError::from(error);
                BatchResult {
                    number: given,
                    status: "error",
                    error: Some(json!({ "code": error.code, "message": error.message })),
                }
            }
        }
    }
}
