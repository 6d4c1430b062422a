//! Errors in the Graph API's shape (B31, B50), so a CRM that handles Graph
//! errors handles ours:
//! `{"error":{"message","type","code","error_data":{…}}}`.

use blocklist::http::ApiError;
use blocklist::identity::Subject;
use blocklist::outbound::Refusal;
use lambda_http::{Body, Response};
use serde_json::json;

/// B31: a refused recipient, HTTP 403.
pub fn refusal(recipient: &Subject, refusal: &Refusal) -> Response<Body> {
    let message = match refusal {
        Refusal::Blocked {
            scope,
            rule: Some(rule),
        } => format!(
            "Recipient {recipient} is blocked by prefix rule {rule} (scope {scope}); nothing was sent"
        ),
        Refusal::Blocked { scope, rule: None } => {
            format!("Recipient {recipient} is blocked (scope {scope}); nothing was sent")
        }
        Refusal::Unknown => {
            format!("Recipient {recipient} is not a known contact; nothing was sent")
        }
        Refusal::OptedOut { scope } => format!(
            "Recipient {recipient} opted out of these messages (scope {scope}); nothing was sent"
        ),
    };
    let mut error_data = json!({ "reason": refusal.reason(), "recipient": recipient.as_str() });
    if let Some(scope) = refusal.scope() {
        error_data["scope"] = json!(scope.as_str());
    }
    if let Some(rule) = refusal.rule() {
        error_data["rule"] = json!(rule);
    }
    respond(
        403,
        json!({ "message": message, "type": "BlocklistRefusal", "code": 403, "error_data": error_data }),
    )
}

/// Any other error, in the same envelope: `error_data.reason` carries the
/// machine-readable code.
pub fn graph_error(error: ApiError) -> Response<Body> {
    let kind = match error.status {
        401 | 403 => "OAuthException",
        500.. => "BlocklistProxyError",
        _ => "InvalidRequest",
    };
    let mut error_data = json!({ "reason": error.code });
    if let Some(field) = &error.field {
        error_data["field"] = json!(field);
    }
    let mut response = respond(
        error.status,
        json!({ "message": error.message, "type": kind, "code": error.status, "error_data": error_data }),
    );
    if let Some(allow) = error.allow {
        response.headers_mut().insert(
            lambda_http::http::header::ALLOW,
            lambda_http::http::HeaderValue::from_static(allow),
        );
    }
    response
}

fn respond(status: u16, error: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(json!({ "error": error }).to_string()))
        .unwrap_or_default()
}
