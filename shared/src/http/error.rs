//! Every API error, and its one mapping to HTTP (B50):
//! `{"error":{"code":"...","message":"...","field":"..."?}}`.

use lambda_http::{Body, Response};
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// The methods the resource has, for the `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            allow: None,
        }
    }

    /// 405 for `method` on a resource that has the `allow` methods
    /// (`"GET, PUT"`), which the answer's `Allow` header lists (RFC 9110).
    pub fn method_not_allowed(method: &str, allow: &'static str) -> Self {
        ApiError {
            allow: Some(allow),
            ..Self::new(
                405,
                "method_not_allowed",
                format!("{method} is not allowed here; allowed: {allow}"),
            )
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Syntactically broken input: not JSON, bad query parameter, bad cursor.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// Well-formed input that breaks a rule: invalid number, reason length,
    /// unknown field, wrong type.
    pub fn invalid(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Self::new(422, code, message).with_field(field)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }

    /// A body over the `/v1/` limit (B50).
    pub fn too_large() -> Self {
        Self::too_large_for("1 MiB")
    }

    /// A body over `limit`, as people read it ("1 MiB").
    pub fn too_large_for(limit: &str) -> Self {
        Self::new(
            413,
            "payload_too_large",
            format!("request body is larger than {limit}"),
        )
    }

    pub fn internal() -> Self {
        Self::new(500, "internal_error", "internal error")
    }

    pub fn into_response(self) -> Response<Body> {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        let mut response = Response::builder()
            .status(self.status)
            .header("content-type", "application/json");
        if let Some(allow) = self.allow {
            response = response.header("allow", allow);
        }
        response
            .body(Body::Text(json!({ "error": error }).to_string()))
            .unwrap_or_default()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict => ApiError::new(
                409,
                "conflict",
                "the number was changed concurrently too many times; try again",
            ),
            StoreError::Unavailable(detail) => {
                tracing::error!(error = %crate::redact::detail(&detail), "store unavailable");
                ApiError::new(
                    503,
                    "store_unavailable",
                    "the blocklist store is unavailable; try again",
                )
            }
            StoreError::Corrupt(detail) => {
                tracing::error!(error = %crate::redact::detail(&detail), "corrupt item");
                ApiError::internal()
            }
        }
    }
}
