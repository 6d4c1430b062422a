//! Environment → typed configuration, read and validated once at init.

use crate::http::auth::Authenticator;
use crate::store::Tables;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {0} is invalid: {1}")]
    Invalid(&'static str, String),
}

/// Reads a variable through `lookup` (the process environment in
/// production, a map in tests).
pub struct Env<'a>(pub &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    pub fn process() -> Env<'static> {
        Env(&|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
    }

    pub fn required(&self, key: &'static str) -> Result<String, ConfigError> {
        (self.0)(key).ok_or(ConfigError::Missing(key))
    }

    pub fn optional(&self, key: &str) -> Option<String> {
        (self.0)(key)
    }

    pub fn or(&self, key: &str, default: &str) -> String {
        (self.0)(key).unwrap_or_else(|| default.to_owned())
    }
}

/// Table names; defaults are the names `template.yaml` gives locally.
pub fn tables(env: &Env) -> Tables {
    Tables {
        blocklist: env.or("BLOCKLIST_TABLE", "Blocklist"),
        audit: env.or("AUDIT_TABLE", "Audit"),
        chats: env.or("CHATS_TABLE", "Chats"),
    }
}

/// How `/v1/` callers are authenticated (B51): HS256 tokens when
/// `LOCAL_JWT_SECRET` is set (local stack and tests), otherwise the claims
/// that API Gateway's JWT authorizer put in the request context.
pub fn authenticator(env: &Env) -> Authenticator {
    match env.optional("LOCAL_JWT_SECRET") {
        Some(secret) => Authenticator::local_hs256(secret.as_bytes()),
        None => Authenticator::api_gateway(),
    }
}

/// The DynamoDB client, built once. `AWS_ENDPOINT_URL_DYNAMODB` (standard
/// SDK variable) points it at DynamoDB Local.
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_dynamodb::Client::new(&sdk)
}

/// JSON logs for Lambda (B52); numbers are masked where they are logged.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variable_is_named() {
        let env = Env(&|_| None);
        assert_eq!(
            env.required("CRM_WEBHOOK_URL"),
            Err(ConfigError::Missing("CRM_WEBHOOK_URL"))
        );
        assert_eq!(tables(&env).blocklist, "Blocklist");
        let env = Env(&|k| (k == "AUDIT_TABLE").then(|| "prod-audit".to_owned()));
        assert_eq!(tables(&env).audit, "prod-audit");
    }
}
