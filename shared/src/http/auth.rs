//! Who is calling, and what they may do (B51).
//!
//! On AWS, API Gateway's JWT authorizer has already validated the token; the
//! handler reads the claims from the request context and enforces scopes.
//! Locally (`LOCAL_JWT_SECRET` set), the handler validates HS256 tokens
//! itself.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde::Deserialize;

use super::ApiError;
use crate::model::Actor;

pub const READ: &str = "blocklist:read";
pub const WRITE: &str = "blocklist:write";
pub const ADMIN: &str = "blocklist:admin";
pub const DELEGATE: &str = "blocklist:delegate";
pub const SEND: &str = "messages:send";

#[derive(Clone)]
pub struct Authenticator {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    ApiGateway,
    // Boxed: the key and rules are large, and built once at init.
    LocalHs256 {
        key: Box<DecodingKey>,
        validation: Box<Validation>,
    },
}

impl std::fmt::Debug for Authenticator {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::ApiGateway => "api_gateway",
            Mode::LocalHs256 { .. } => "local_hs256",
        };
        f.debug_struct("Authenticator")
            .field("mode", &mode)
            .finish()
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub scopes: Vec<String>,
    /// `X-On-Behalf-Of`, honoured only with `blocklist:delegate`.
    pub on_behalf_of: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LocalClaims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
}

impl Authenticator {
    pub fn api_gateway() -> Self {
        Authenticator {
            mode: Mode::ApiGateway,
        }
    }

    pub fn local_hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_aud = false;
        validation.leeway = 5;
        Authenticator {
            mode: Mode::LocalHs256 {
                key: Box::new(DecodingKey::from_secret(secret)),
                validation: Box::new(validation),
            },
        }
    }

    pub fn authenticate(&self, request: &Request) -> Result<Caller, ApiError> {
        let (subject, scopes) = match &self.mode {
            Mode::ApiGateway => from_authorizer(request)?,
            Mode::LocalHs256 { key, validation } => {
                let token = bearer_token(request)?;
                let data = jsonwebtoken::decode::<LocalClaims>(token, key, validation)
                    .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))?;
                let claims = data.claims;
                let scopes = match (claims.scope, claims.scp) {
                    (Some(scope), _) => split_scopes(&scope),
                    (None, Some(list)) => list,
                    (None, None) => vec![],
                };
                (claims.sub, scopes)
            }
        };
        let on_behalf_of = request
            .headers()
            .get("x-on-behalf-of")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        Ok(Caller {
            subject,
            scopes: scopes.iter().map(|s| canonical_scope(s)).collect(),
            on_behalf_of,
        })
    }
}

impl Caller {
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// 403 unless the token holds `scope`. `blocklist:admin` implies write
    /// and read, and write implies read.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        let implied = match scope {
            READ => self.has(WRITE) || self.has(ADMIN),
            WRITE => self.has(ADMIN),
            _ => false,
        };
        if self.has(scope) || implied {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token lacks the {scope} scope"
            )))
        }
    }

    /// The actor for audit events: `X-On-Behalf-Of` when the token may
    /// delegate (then the token's subject is the client), else the subject.
    /// A delegation header without the scope is refused, not ignored, so
    /// that an audit trail never silently names the wrong person.
    pub fn actor(&self) -> Result<Actor, ApiError> {
        match &self.on_behalf_of {
            Some(person) if self.has(DELEGATE) => {
                if person.chars().count() > 200 {
                    return Err(ApiError::bad_request(
                        "invalid_header",
                        "X-On-Behalf-Of is too long",
                    ));
                }
                Ok(Actor {
                    actor: person.clone(),
                    client: Some(self.subject.clone()),
                })
            }
            Some(_) => Err(ApiError::forbidden(format!(
                "X-On-Behalf-Of needs the {DELEGATE} scope"
            ))),
            None => Ok(Actor {
                actor: self.subject.clone(),
                client: None,
            }),
        }
    }
}

fn bearer_token(request: &Request) -> Result<&str, ApiError> {
    let header = request
        .headers()
        .get("authorization")
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthorized(
            "Authorization must be 'Bearer <token>'",
        )),
    }
}

fn from_authorizer(request: &Request) -> Result<(String, Vec<String>), ApiError> {
    let jwt = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => {
            context.authorizer.as_ref().and_then(|a| a.jwt.as_ref())
        }
        _ => None,
    };
    let Some(jwt) = jwt else {
        return Err(ApiError::unauthorized(
            "missing Authorization: Bearer token",
        ));
    };
    let subject = jwt
        .claims
        .get("sub")
        .cloned()
        .ok_or_else(|| ApiError::unauthorized("token has no sub claim"))?;
    let mut scopes = jwt.scopes.clone().unwrap_or_default();
    for claim in ["scope", "scp"] {
        if let Some(value) = jwt.claims.get(claim) {
            // API Gateway flattens array claims to "[a b]".
            scopes.extend(split_scopes(
                value.trim_start_matches('[').trim_end_matches(']'),
            ));
        }
    }
    Ok((subject, scopes))
}

/// A scope as the API names it. Amazon Cognito names a resource server's
/// scope `<identifier>/<name>` and cannot use `:` between them, so a token
/// from the console's Cognito login carries `blocklist/read`: that is
/// `blocklist:read`.
fn canonical_scope(scope: &str) -> String {
    match scope.split_once('/') {
        Some((server @ ("blocklist" | "messages"), name)) if !name.contains([':', '/']) => {
            format!("{server}:{name}")
        }
        _ => scope.to_owned(),
    }
}

fn split_scopes(value: &str) -> Vec<String> {
    value
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
