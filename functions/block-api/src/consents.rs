//! B80: `GET`/`PUT /v1/consents/{subject}`: the customer's opt-outs, kept
//! apart from blocks.

use blocklist::http::auth::{Caller, READ, WRITE};
use blocklist::http::request::{Query, json_body};
use blocklist::http::{ApiError, json};
use blocklist::model::{
    Consent, ConsentCategory, ConsentChange, ConsentSource, ConsentValue, Scope,
};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use crate::App;

/// The body of `PUT /v1/consents/{subject}`: the scope (`all`, the
/// default, or a business number) and the values to set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentBody {
    #[serde(default)]
    phone_number_id: Option<String>,
    #[serde(default)]
    marketing: Option<ConsentValue>,
    #[serde(default)]
    all: Option<ConsentValue>,
}

/// `GET /v1/consents/{subject}`: every stored record of the subject (a
/// scope without one is `opted_in` for both values).
pub async fn get(
    app: &App,
    caller: &Caller,
    request: &Request,
    subject: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let subject = crate::blocks::seen_subject(app, subject, "number").await?;
    Query::parse(request, &[])?;
    let record = app.store.load_subject(&subject).await?;
    Ok(json(
        200,
        &serde_json::json!({ "subject": subject, "consents": record.consents }),
    ))
}

/// `PUT /v1/consents/{subject}`: sets `marketing` and/or `all` in one
/// scope, source `api`; each change of a value is audited
/// (`opted_out` / `opted_in`) and counted. Answers the record.
pub async fn put(
    app: &App,
    caller: &Caller,
    request: &Request,
    subject: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(WRITE)?;
    let actor = caller.actor()?;
    let subject = crate::blocks::seen_subject(app, subject, "number").await?;
    Query::parse(request, &[])?;
    let body: ConsentBody = json_body(request)?;
    let scope = Scope::parse(body.phone_number_id.as_deref().unwrap_or("all")).map_err(|_| {
        ApiError::invalid(
            "invalid_scope",
            "phone_number_id",
            "phone_number_id is 'all' or a phone_number_id (digits)",
        )
    })?;
    let values: Vec<(ConsentCategory, ConsentValue)> = [
        (ConsentCategory::Marketing, body.marketing),
        (ConsentCategory::All, body.all),
    ]
    .into_iter()
    .filter_map(|(category, value)| value.map(|v| (category, v)))
    .collect();
    if values.is_empty() {
        return Err(ApiError::invalid(
            "missing_field",
            "all",
            "set marketing, all, or both (opted_in or opted_out)",
        ));
    }
    let now = (app.now)();
    // The person's say holds for every identity they are known by (B61).
    let linked = app.store.load_subject(&subject).await?.links;
    let mut identities = vec![subject.clone()];
    for other in linked.iter().flat_map(blocklist::identity::Link::subjects) {
        if !identities.contains(&other) {
            identities.push(other);
        }
    }
    for (category, value) in values {
        let changes: Vec<ConsentChange> = identities
            .iter()
            .map(|identity| ConsentChange {
                subject: identity.clone(),
                scope: scope.clone(),
                category,
                value,
                source: ConsentSource::Api,
                at: now,
                message_id: None,
            })
            .collect();
        app.store.record_consents(&changes, &actor, now).await?;
    }
    let record = stored_of(app, &subject, &scope)
        .await?
        .unwrap_or_else(|| Consent::unset(subject.clone(), scope.clone()));
    Ok(json(200, &record))
}

/// The stored record of `subject` in `scope`, if it has one.
async fn stored_of(
    app: &App,
    subject: &blocklist::identity::Subject,
    scope: &Scope,
) -> Result<Option<Consent>, ApiError> {
    let record = app.store.load_subject(subject).await?;
    Ok(record
        .consents
        .into_iter()
        .find(|c| &c.phone_number_id == scope))
}
