//! B84: prefix rules, `PUT`/`GET`/`DELETE /v1/rules/{id}` and
//! `GET /v1/rules`. Changing them needs `blocklist:admin`, reading them
//! `blocklist:read`.

use blocklist::http::auth::{ADMIN, Caller, READ};
use blocklist::http::request::{Query, body_bytes, json_body, parse_json};
use blocklist::http::{ApiError, json};
use blocklist::model::{
    Prefix, Rule, RuleAction, RuleError, RuleId, RulePut, RuleRefusal, decide_rule_put,
};
use blocklist::service;
use blocklist::store::{RuleChange, StoreError};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use crate::blocks::cursor_param;
use crate::{App, wire};

/// The body of `PUT /v1/rules/{id}`: the rule's shape less what the
/// product fills in (`actor`, `created_at`); `id`, if given, is the path's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

/// The body of `DELETE /v1/rules/{id}`, which may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveBody {
    #[serde(default)]
    reason: Option<String>,
}

fn rule_id(raw: &str) -> Result<RuleId, ApiError> {
    let raw = blocklist::http::request::decoded_segment(raw);
    RuleId::parse(&raw).map_err(|e| ApiError::invalid("invalid_rule_id", "id", e.to_string()))
}

fn prefix(raw: Option<&str>) -> Result<Prefix, ApiError> {
    let raw = raw.ok_or_else(|| {
        ApiError::invalid(
            "missing_field",
            "prefix",
            "prefix is required ('+' and 1 to 14 digits)",
        )
    })?;
    Prefix::parse_new(raw).map_err(|e| {
        let code = match e {
            RuleError::Everything => "prefix_too_broad",
            _ => "invalid_prefix",
        };
        ApiError::invalid(code, "prefix", e.to_string())
    })
}

/// Tries of a rule change. Every change of any rule is guarded by the one
/// version of the rule set, so a script making many rules at once takes
/// turns; each try re-reads and decides again.
const CHANGE_ATTEMPTS: u32 = 12;

/// A change that lost to concurrent ones every time says so about rules.
fn conflict_of_rules(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict => ApiError::new(
            409,
            "conflict",
            "the rules were changed concurrently too many times; try again",
        ),
        other => other.into(),
    }
}

fn not_found(id: &RuleId) -> ApiError {
    ApiError::not_found("rule_not_found", format!("no rule {id}"))
}

/// What one attempt of a put ended in, short of a store error.
enum Put {
    Done { created: bool, rule: Rule },
    Refused(RuleRefusal),
}

/// `PUT /v1/rules/{id}`: makes or replaces the rule; 201 when made, 200
/// when changed or already so (nothing is audited then).
pub async fn put(
    app: &App,
    caller: &Caller,
    request: &Request,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(ADMIN)?;
    let actor = caller.actor()?;
    let id = rule_id(id)?;
    Query::parse(request, &[])?;
    let body: RuleBody = json_body(request)?;
    if body.id.as_deref().is_some_and(|given| given != id.as_str()) {
        return Err(ApiError::invalid(
            "invalid_rule_id",
            "id",
            "id must match the path",
        ));
    }
    let prefix = prefix(body.prefix.as_deref())?;
    let scope = wire::scope(body.scope.as_deref())?;
    let reason = wire::reason(
        body.reason
            .as_deref()
            .ok_or_else(|| ApiError::invalid("missing_field", "reason", "reason is required"))?,
    )?;
    let action = match body.action.as_deref() {
        None => RuleAction::Block,
        Some(raw) => RuleAction::parse(raw)
            .map_err(|e| ApiError::invalid("invalid_action", "action", e.to_string()))?,
    };
    let outcome = service::retry_on_conflict(CHANGE_ATTEMPTS, &id.as_str(), || async {
        // The set first: a change committed after it makes the write's
        // version check fail, so `before` is never older than the set.
        let current = app.store.rules().await?;
        let before = app.store.rule(&id).await?;
        let now = (app.now)();
        let rule = Rule {
            id: id.clone(),
            prefix: prefix.clone(),
            scope: scope.clone(),
            reason: reason.clone(),
            action,
            actor: before
                .as_ref()
                .map_or_else(|| actor.actor.clone(), |b| b.actor.clone()),
            created_at: before.as_ref().map_or(now, |b| b.created_at),
        };
        match decide_rule_put(&current.set, before.as_ref(), &rule) {
            Err(refusal) => return Ok(Put::Refused(refusal)),
            Ok(RulePut::Unchanged) => {
                return Ok(Put::Done {
                    created: false,
                    rule,
                });
            }
            Ok(RulePut::Write) => {}
        }
        let change = RuleChange {
            current: &current,
            id: &id,
            before: before.as_ref(),
            after: Some(&rule),
            reason: None,
        };
        app.store.change_rule(&change, &actor, now).await?;
        Ok::<_, StoreError>(Put::Done {
            created: before.is_none(),
            rule,
        })
    })
    .await
    .map_err(conflict_of_rules)?;
    match outcome {
        Put::Done { created, rule } => Ok(json(if created { 201 } else { 200 }, &rule)),
        Put::Refused(refusal @ RuleRefusal::Duplicate(_)) => {
            Err(ApiError::new(409, "duplicate_rule", refusal.to_string()).with_field("prefix"))
        }
        Put::Refused(refusal @ RuleRefusal::Full) => Err(ApiError::invalid(
            "too_many_rules",
            "id",
            refusal.to_string(),
        )),
    }
}

/// `GET /v1/rules/{id}`.
pub async fn get(
    app: &App,
    caller: &Caller,
    request: &Request,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let id = rule_id(id)?;
    Query::parse(request, &[])?;
    match app.store.rule(&id).await? {
        Some(rule) => Ok(json(200, &rule)),
        None => Err(not_found(&id)),
    }
}

/// `DELETE /v1/rules/{id}`, with an optional `{"reason"}`: answers the
/// rule removed; the numbers it matched are free at once.
pub async fn delete(
    app: &App,
    caller: &Caller,
    request: &Request,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(ADMIN)?;
    let actor = caller.actor()?;
    let id = rule_id(id)?;
    Query::parse(request, &[])?;
    let bytes = body_bytes(request)?;
    let body: RemoveBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        RemoveBody::default()
    } else {
        parse_json(bytes)?
    };
    let reason = body.reason.as_deref().map(wire::reason).transpose()?;
    let removed = service::retry_on_conflict(CHANGE_ATTEMPTS, &id.as_str(), || async {
        let current = app.store.rules().await?;
        let Some(before) = app.store.rule(&id).await? else {
            return Ok(None);
        };
        let change = RuleChange {
            current: &current,
            id: &id,
            before: Some(&before),
            after: None,
            reason: reason.as_ref().map(|r| r.as_str()),
        };
        app.store.change_rule(&change, &actor, (app.now)()).await?;
        Ok::<_, StoreError>(Some(before))
    })
    .await
    .map_err(conflict_of_rules)?;
    match removed {
        Some(rule) => Ok(json(200, &rule)),
        None => Err(not_found(&id)),
    }
}

/// `GET /v1/rules`: every rule, by id, paginated.
pub async fn list(
    app: &App,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let query = Query::parse(request, &["limit", "cursor"])?;
    let limit = query.limit()?;
    let cursor = cursor_param(&query, "rules")?;
    let page = app.store.list_rules(limit, cursor.as_ref()).await?;
    crate::page(page, &query)
}
