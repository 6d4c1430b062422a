//! B8–B12: history, audit feed, stats, contacts, chats, settings.

use blocklist::http::auth::{ADMIN, Caller, READ, WRITE};
use blocklist::http::request::{Query, json_body, parse_json, path_phone_number_id};
use blocklist::http::{ApiError, json};
use blocklist::model::{Action, ChatStatus, SettingsPatch, SettingsTarget};
use blocklist::service;
use blocklist::store::{AuditQuery, ChatQuery, Cursor, POSITION};
use chrono::Duration;
use lambda_http::{Body, Request, Response};

use crate::blocks::{cursor_param, invalid_cursor};
use crate::wire::{self, ContactBody};
use crate::{App, ok};

/// Longest range of `GET /v1/stats`.
const MAX_STATS_DAYS: i64 = 366;

/// B8: `GET /v1/numbers/{number}/history`.
pub async fn history(
    app: &App,
    caller: &Caller,
    request: &Request,
    number: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let number = crate::blocks::seen_subject(app, number, "number").await?;
    let query =
        Query::parse(request, &["limit", "cursor"])?.with_path_parameter("number", number.as_str());
    let limit = query.limit()?;
    let cursor = cursor_param(&query, "history")?;
    // B53: the chain's recorded head, read before the first page it checks.
    let head = match cursor {
        None => Some(app.store.audit_head(&number).await?),
        Some(_) => None,
    };
    let page = app.store.history(&number, limit, cursor.as_ref()).await?;
    let chain = app.store.history_chain(&number, &page.items, head).await?;
    crate::page_with(
        page,
        &query,
        "chain",
        serde_json::to_value(chain).unwrap_or_default(),
    )
}

/// B8: `GET /v1/audit?since=&until=&action=`, the compliance feed.
pub async fn audit(
    app: &App,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let query = Query::parse(request, &["since", "until", "action", "limit", "cursor"])?;
    let until = match query.get("until") {
        Some(raw) => wire::time_param(raw, "until", true)?,
        None => (app.now)(),
    };
    let since = match query.get("since") {
        Some(raw) => wire::time_param(raw, "since", false)?,
        None => until - Duration::days(30),
    };
    if since > until {
        return Err(
            ApiError::bad_request("invalid_parameter", "since must not be after until")
                .with_field("since"),
        );
    }
    let action = query
        .get("action")
        .map(|raw| {
            Action::parse(raw).ok_or_else(|| {
                ApiError::bad_request("invalid_parameter", format!("unknown action '{raw}'"))
                    .with_field("action")
            })
        })
        .transpose()?;
    let cursor = query
        .get("cursor")
        .map(|raw| {
            // A cursor resumes inside a day (full key) or at the start of
            // one (empty key); either way it names a valid day.
            let filters = query.filters();
            Cursor::decode(raw, "audit", &filters, &[POSITION])
                .or_else(|_| Cursor::decode(raw, "audit", &filters, &[]))
                .ok()
                .filter(|c| {
                    c.day
                        .as_deref()
                        .is_some_and(|day| wire::date_param(day, "cursor").is_ok())
                })
                .ok_or_else(invalid_cursor)
        })
        .transpose()?;
    if crate::export::wants_csv(request) {
        // B91: every page of the feed, as CSV.
        return crate::export::export(&query, cursor, |cursor| {
            app.store.audit_feed(AuditQuery {
                since,
                until,
                action,
                limit: crate::export::EXPORT_EVENTS_PAGE,
                cursor,
            })
        })
        .await;
    }
    let page = app
        .store
        .audit_feed(AuditQuery {
            since,
            until,
            action,
            limit: query.limit()?,
            cursor,
        })
        .await?;
    crate::page(page, &query)
}

/// B9: `GET /v1/stats?from=&to=`.
pub async fn stats(
    app: &App,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let query = Query::parse(request, &["from", "to"])?;
    let to = match query.get("to") {
        Some(raw) => wire::date_param(raw, "to")?,
        None => (app.now)().date_naive(),
    };
    let from = match query.get("from") {
        Some(raw) => wire::date_param(raw, "from")?,
        None => to - Duration::days(29),
    };
    if from > to || (to - from).num_days() >= MAX_STATS_DAYS {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("from must not be after to, and the range at most {MAX_STATS_DAYS} days"),
        )
        .with_field("from"));
    }
    ok(&app.store.stats(from, to).await?)
}

/// B10: `PUT /v1/contacts/{number}`.
pub async fn put_contact(
    app: &App,
    caller: &Caller,
    request: &Request,
    number: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(WRITE)?;
    let actor = caller.actor()?;
    let number = crate::blocks::seen_subject(app, number, "number").await?;
    Query::parse(request, &[])?;
    let body: ContactBody = json_body(request)?;
    let contact = wire::contact(body, &number)?;
    let existed = app.store.get_contact(&number).await?.is_some();
    let stored = service::put_contact(&app.store, contact, &actor, app.now).await?;
    Ok(json(if existed { 200 } else { 201 }, &stored))
}

/// B10: `GET /v1/contacts/{number}`.
pub async fn get_contact(
    app: &App,
    caller: &Caller,
    request: &Request,
    number: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let number = crate::blocks::seen_subject(app, number, "number").await?;
    Query::parse(request, &[])?;
    match app.store.get_contact(&number).await? {
        Some(contact) => ok(&contact),
        None => Err(ApiError::not_found(
            "contact_not_found",
            format!("no contact for {number}"),
        )),
    }
}

/// B11: `GET /v1/chats?status=&phone_number_id=`.
pub async fn list_chats(
    app: &App,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let query = Query::parse(request, &["status", "phone_number_id", "limit", "cursor"])?;
    let status = query
        .get("status")
        .map(|raw| {
            ChatStatus::parse(raw).ok_or_else(|| {
                ApiError::bad_request("invalid_parameter", "status must be active or blocked")
                    .with_field("status")
            })
        })
        .transpose()?;
    let phone_number_id = query
        .get("phone_number_id")
        .map(|raw| {
            path_phone_number_id(raw).map_err(|e| {
                ApiError::bad_request("invalid_parameter", e.message).with_field("phone_number_id")
            })
        })
        .transpose()?;
    let cursor = cursor_param(&query, "chats")?;
    let page = app
        .store
        .list_chats(ChatQuery {
            status,
            phone_number_id,
            limit: query.limit()?,
            cursor,
        })
        .await?;
    crate::page(page, &query)
}

/// B11: `GET /v1/chats/{phone_number_id}/{number}`.
pub async fn get_chat(
    app: &App,
    caller: &Caller,
    request: &Request,
    business: &str,
    number: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let business = path_phone_number_id(business)?;
    let number = crate::blocks::seen_subject(app, number, "number").await?;
    Query::parse(request, &[])?;
    match app.store.get_chat(&business, &number).await? {
        Some(chat) => ok(&chat),
        None => Err(ApiError::not_found(
            "chat_not_found",
            "no chat between these numbers",
        )),
    }
}

fn settings_target(raw: &str) -> Result<SettingsTarget, ApiError> {
    SettingsTarget::parse(raw).ok_or_else(|| {
        ApiError::invalid(
            "invalid_phone_number_id",
            "phone_number_id",
            "must be a phone_number_id (digits) or 'default'",
        )
    })
}

/// B12: `GET /v1/settings/{phone_number_id|default}`.
pub async fn get_settings(
    app: &App,
    caller: &Caller,
    request: &Request,
    target: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let target = settings_target(target)?;
    Query::parse(request, &[])?;
    ok(&app.store.settings(&target).await?.effective)
}

/// B12: `PUT /v1/settings/{phone_number_id|default}`; omitted fields keep
/// their value, `null` ones are inherited again. Needs `blocklist:admin`.
pub async fn put_settings(
    app: &App,
    caller: &Caller,
    request: &Request,
    target: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(ADMIN)?;
    let actor = caller.actor()?;
    let target = settings_target(target)?;
    Query::parse(request, &[])?;
    // `null` clears a field: the entry inherits it again (from `default`,
    // or for `default` itself, the built-in value).
    let mut body: serde_json::Value = json_body(request)?;
    // serde would read the entry's fields from a list too.
    if !body.is_object() {
        return Err(ApiError::invalid(
            "invalid_field",
            "body",
            "the body is a JSON object",
        ));
    }
    let cleared = SettingsPatch::take_nulls(&mut body);
    let patch: SettingsPatch = parse_json(&serde_json::to_vec(&body).unwrap_or_default())?;
    if patch
        .phone_number_id
        .as_deref()
        .is_some_and(|id| id != target.as_str())
    {
        return Err(ApiError::invalid(
            "invalid_phone_number_id",
            "phone_number_id",
            "phone_number_id must match the path",
        ));
    }
    patch
        .validate(&target)
        .map_err(|(field, message)| ApiError::invalid("invalid_settings", field, message))?;
    // What the entry would resolve to, with what it inherits (checked
    // again by nothing later: a race with another change of the lists is
    // settled by the last writer, as for every field).
    let next = app.store.settings(&target).await?.effective.patched(&patch);
    if let Some((field, message)) = next.keyword_conflict() {
        return Err(ApiError::invalid("invalid_settings", field, message));
    }
    let settings = service::retry_on_conflict(5, &target.as_str(), || async {
        let current = app.store.settings(&target).await?;
        app.store
            .put_settings(&target, &current, &patch, &cleared, &actor, (app.now)())
            .await
    })
    .await?;
    ok(&settings)
}
