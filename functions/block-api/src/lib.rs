//! The block API (SPEC B1–B12): routing, auth, and one handler per route.
//!
//! Every handler follows the same shape: parse and validate the request into
//! domain values, read what the decision needs, decide in `blocklist::policy`
//! (through `blocklist::service`), write, answer. Errors of every layer
//! become B50 responses in [`handle`], the one place that maps them.

mod blocks;
mod consents;
pub mod console;
mod export;
pub mod imports;
mod records;
mod rules;
mod wire;

use blocklist::http::auth::{Authenticator, Caller};
use blocklist::http::request::{Query, segments};
use blocklist::http::{ApiError, json};
use blocklist::store::Store;
use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, Response};

/// The `Function` dimension of this crate's metrics outside Lambda.
pub(crate) const FUNCTION: &str = env!("CARGO_PKG_NAME");

/// What every request needs; built once at init.
pub struct App {
    pub store: Store,
    pub auth: Authenticator,
    /// The clock, replaceable in tests.
    pub now: fn() -> DateTime<Utc>,
    /// The console's OAuth login, when configured (B90).
    pub console_login: Option<console::ConsoleLogin>,
}

impl App {
    pub fn new(store: Store, auth: Authenticator) -> Self {
        App {
            store,
            auth,
            now: Utc::now,
            console_login: None,
        }
    }

    /// The same app, whose console logs in with `login`.
    pub fn with_console_login(self, login: Option<console::ConsoleLogin>) -> Self {
        App {
            console_login: login,
            ..self
        }
    }
}

/// Handles one API Gateway (HTTP API) request. Never fails: every error is
/// an HTTP response.
pub async fn handle(app: &App, request: Request) -> Response<Body> {
    let method = request.method().as_str().to_owned();
    let path = segments(&request);
    let route = route_name(&method, &path);
    let response = match dispatch(app, &request, &method, &path).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    tracing::info!(method = %method, route = %route, status = response.status().as_u16(), "request");
    response
}

/// The route template, for logs (never the raw path: it holds numbers;
/// the segments kept are masked too, should a caller put a number there).
fn route_name(method: &str, path: &[String]) -> String {
    let shape: Vec<&str> = path
        .iter()
        .enumerate()
        .map(|(i, s)| match (i, path.first().map(String::as_str)) {
            (0, _) => s.as_str(),
            (1, Some("v1")) => s.as_str(),
            _ => "{param}",
        })
        .collect();
    blocklist::redact::numbers(&format!("{method} /{}", shape.join("/")))
}

async fn dispatch(
    app: &App,
    request: &Request,
    method: &str,
    path: &[String],
) -> Result<Response<Body>, ApiError> {
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    if parts.first() == Some(&"console") && parts.len() <= 2 {
        if method != "GET" {
            return Err(ApiError::method_not_allowed(method, "GET"));
        }
        return console::answer(&parts, app.console_login.as_ref())
            .ok_or_else(|| ApiError::not_found("not_found", "no such route"));
    }
    let Some(("v1", rest)) = parts.split_first().map(|(a, b)| (*a, b)) else {
        return Err(ApiError::not_found("not_found", "no such route"));
    };
    // Each route: the allowed methods, then the handler per method.
    match (rest, method) {
        (["blocks"], "GET") => blocks::list(app, &caller(app, request)?, request).await,
        (["blocks:batch"], "POST") => blocks::batch(app, &caller(app, request)?, request).await,
        (["blocks", number], "PUT") => {
            blocks::block(app, &caller(app, request)?, request, number).await
        }
        (["blocks", number], "GET") => {
            blocks::get(app, &caller(app, request)?, request, number).await
        }
        (["blocks", number], "DELETE") => {
            blocks::unblock(app, &caller(app, request)?, request, number).await
        }
        (["blocks", number, "review"], "POST") => {
            blocks::review(app, &caller(app, request)?, request, number).await
        }
        (["numbers", number, "history"], "GET") => {
            records::history(app, &caller(app, request)?, request, number).await
        }
        (["audit"], "GET") => records::audit(app, &caller(app, request)?, request).await,
        (["stats"], "GET") => records::stats(app, &caller(app, request)?, request).await,
        (["contacts", number], "PUT") => {
            records::put_contact(app, &caller(app, request)?, request, number).await
        }
        (["contacts", number], "GET") => {
            records::get_contact(app, &caller(app, request)?, request, number).await
        }
        (["chats"], "GET") => records::list_chats(app, &caller(app, request)?, request).await,
        (["chats", business, number], "GET") => {
            records::get_chat(app, &caller(app, request)?, request, business, number).await
        }
        (["consents", subject], "GET") => {
            consents::get(app, &caller(app, request)?, request, subject).await
        }
        (["consents", subject], "PUT") => {
            consents::put(app, &caller(app, request)?, request, subject).await
        }
        (["imports"], "POST") => imports::create(app, &caller(app, request)?, request).await,
        (["imports", id], "GET") => imports::get(app, &caller(app, request)?, request, id).await,
        (["imports", id, "results"], "GET") => {
            imports::results(app, &caller(app, request)?, request, id).await
        }
        (["rules"], "GET") => rules::list(app, &caller(app, request)?, request).await,
        (["rules", id], "PUT") => rules::put(app, &caller(app, request)?, request, id).await,
        (["rules", id], "GET") => rules::get(app, &caller(app, request)?, request, id).await,
        (["rules", id], "DELETE") => rules::delete(app, &caller(app, request)?, request, id).await,
        (["settings", target], "GET") => {
            records::get_settings(app, &caller(app, request)?, request, target).await
        }
        (["settings", target], "PUT") => {
            records::put_settings(app, &caller(app, request)?, request, target).await
        }
        (route, _) => match allowed_methods(route) {
            Some(allow) => Err(ApiError::method_not_allowed(method, allow)),
            None => Err(ApiError::not_found("not_found", "no such route")),
        },
    }
}

/// The methods of each route of [`dispatch`], for a 405's `Allow` header;
/// `None` for no such route.
fn allowed_methods(route: &[&str]) -> Option<&'static str> {
    Some(match route {
        ["blocks" | "audit" | "stats" | "chats" | "rules"]
        | ["numbers", _, "history"]
        | ["chats", _, _] => "GET",
        ["blocks:batch"] | ["blocks", _, "review"] | ["imports"] => "POST",
        ["imports", _] | ["imports", _, "results"] => "GET",
        ["blocks", _] | ["rules", _] => "GET, PUT, DELETE",
        ["contacts", _] | ["settings", _] | ["consents", _] => "GET, PUT",
        _ => return None,
    })
}

fn caller(app: &App, request: &Request) -> Result<Caller, ApiError> {
    app.auth.authenticate(request)
}

fn ok<T: serde::Serialize>(value: &T) -> Result<Response<Body>, ApiError> {
    Ok(json(200, value))
}

/// A listing's answer: `{"items":[…],"next_cursor":…}` (SPEC section 4).
/// `next_cursor` is bound to the filters of `query`, so it resumes only the
/// listing it came from.
fn page<T: serde::Serialize>(
    page: blocklist::store::Page<T>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    ok(&page_body(page, query))
}

/// A page with one more top-level field beside `items` and `next_cursor`.
fn page_with<T: serde::Serialize>(
    page: blocklist::store::Page<T>,
    query: &Query,
    field: &str,
    value: serde_json::Value,
) -> Result<Response<Body>, ApiError> {
    let mut body = page_body(page, query);
    body[field] = value;
    ok(&body)
}

fn page_body<T: serde::Serialize>(
    page: blocklist::store::Page<T>,
    query: &Query,
) -> serde_json::Value {
    let filters = query.filters();
    let next_cursor = page.next.map(|cursor| cursor.bound_to(&filters).encode());
    serde_json::json!({ "items": page.items, "next_cursor": next_cursor })
}
