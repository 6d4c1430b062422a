//! The operator console (SPEC B90): three static files embedded in the
//! binary, served without a token (the page holds no data; every screen
//! calls `/v1/` with the operator's bearer token), and the login settings
//! the page reads from `config.json`.

use blocklist::config::Env;
use lambda_http::{Body, Response};
use serde::Serialize;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// OAuth 2.0 authorization code + PKCE settings of the console's login
/// (`CONSOLE_OAUTH_*`). Without them the console takes a pasted token or
/// the `#token=` link `scripts/dev` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleLogin {
    pub authorize_url: String,
    pub token_url: String,
    pub client_id: String,
    /// Space separated, as the authorization request sends them.
    pub scopes: String,
    /// The provider's logout endpoint, which Log out opens; `None`: Log
    /// out forgets the token only.
    pub logout_url: Option<String>,
}

/// The scopes asked for when `CONSOLE_OAUTH_SCOPES` is not set: what an
/// operator needs to block and unblock (settings and rules need
/// `blocklist/admin` as well), as Amazon Cognito names them.
pub const DEFAULT_SCOPES: &str = "openid blocklist/read blocklist/write";

impl ConsoleLogin {
    /// `None` unless the authorize URL, token URL and client id are all set.
    pub fn from_env(env: &Env<'_>) -> Option<ConsoleLogin> {
        let authorize_url = env.optional("CONSOLE_OAUTH_AUTHORIZE_URL")?;
        let token_url = env.optional("CONSOLE_OAUTH_TOKEN_URL")?;
        let client_id = env.optional("CONSOLE_OAUTH_CLIENT_ID")?;
        let scopes = env.or("CONSOLE_OAUTH_SCOPES", DEFAULT_SCOPES);
        Some(ConsoleLogin {
            authorize_url,
            token_url,
            client_id,
            scopes,
            logout_url: env.optional("CONSOLE_OAUTH_LOGOUT_URL"),
        })
    }
}

/// Answers `GET /console` and its files; `None` for any other path.
pub fn answer(path: &[&str], login: Option<&ConsoleLogin>) -> Option<Response<Body>> {
    let (body, content_type) = match path {
        ["console"] => (INDEX.to_owned(), "text/html; charset=utf-8"),
        ["console", "console.js"] => (SCRIPT.to_owned(), "text/javascript; charset=utf-8"),
        ["console", "console.css"] => (STYLE.to_owned(), "text/css; charset=utf-8"),
        ["console", "config.json"] => (
            serde_json::json!({ "oauth": login }).to_string(),
            "application/json",
        ),
        _ => return None,
    };
    Some(
        Response::builder()
            .status(200)
            .header("content-type", content_type)
            .header("content-security-policy", content_security_policy(login))
            .header("x-content-type-options", "nosniff")
            .header("referrer-policy", "no-referrer")
            // No other window keeps a handle on the console's (which could
            // otherwise navigate it to a `#token=` of its choosing).
            .header("cross-origin-opener-policy", "same-origin")
            // The files change with each release; the browser asks again.
            .header("cache-control", "no-cache")
            .body(Body::Text(body))
            .unwrap_or_default(),
    )
}

/// Only this origin's script and style run; the page talks to this API and,
/// with OAuth, to the issuer's token endpoint; no framing, no plugins.
fn content_security_policy(login: Option<&ConsoleLogin>) -> String {
    let token_origin = login
        .and_then(|l| origin(&l.token_url))
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         connect-src 'self'{token_origin}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// `scheme://host[:port]` of an absolute URL.
fn origin(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = url.len() - rest.len() + rest.find('/').unwrap_or(rest.len());
    Some(&url[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_scheme_host_and_port() {
        assert_eq!(
            origin("https://auth.example.com/oauth2/token"),
            Some("https://auth.example.com")
        );
        assert_eq!(
            origin("http://127.0.0.1:9000"),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(origin("not a url"), None);
    }

    #[test]
    fn the_token_endpoint_is_the_only_other_origin_the_page_may_call() {
        let login = ConsoleLogin {
            authorize_url: "https://auth.example.com/oauth2/authorize".into(),
            token_url: "https://auth.example.com/oauth2/token".into(),
            client_id: "abc".into(),
            scopes: DEFAULT_SCOPES.into(),
            logout_url: None,
        };
        let policy = content_security_policy(Some(&login));
        assert!(
            policy.contains("connect-src 'self' https://auth.example.com;"),
            "{policy}"
        );
        assert!(content_security_policy(None).contains("connect-src 'self';"));
    }

    #[test]
    fn only_the_console_files_are_served() {
        assert!(answer(&["console"], None).is_some());
        assert!(answer(&["console", "console.js"], None).is_some());
        assert!(answer(&["console", "other.js"], None).is_none());
        assert!(answer(&["v1", "blocks"], None).is_none());
    }
}
