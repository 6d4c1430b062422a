//! HTTP plumbing shared by the API functions: authentication (B51), the one
//! error → response mapping (B50), and request parsing at the edge.

pub mod auth;
pub mod error;
pub mod request;

pub use error::ApiError;

use lambda_http::{Body, Response};
use serde::Serialize;

/// A JSON response. Serialising our own types cannot fail; if it ever did,
/// the caller gets a 500 with the B50 body rather than a panic.
pub fn json<T: Serialize>(status: u16, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::Binary(bytes))
            .unwrap_or_default(),
        Err(_) => ApiError::internal().into_response(),
    }
}
