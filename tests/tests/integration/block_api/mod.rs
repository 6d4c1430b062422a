//! block-api (B1–B12, B50, B51).

mod auth;
mod bad_input;
mod blocking;
mod concurrency;
mod export;
pub(crate) mod imports;
mod integrity;
mod listing;
mod records;

use integration_tests::{ApiRequest, ApiResponse, TestStack, call_block_api, token};
use serde_json::Value;

pub const WRITER: &[&str] = &["blocklist:read", "blocklist:write"];

/// A test's API: fresh tables and a caller with read and write scopes.
pub struct Api {
    pub stack: TestStack,
    pub app: block_api::App,
    pub token: String,
}

impl Api {
    pub async fn new() -> Api {
        let stack = TestStack::new().await;
        let app = stack.block_api();
        Api {
            stack,
            app,
            token: token("agent-1", WRITER),
        }
    }

    /// The block API on another test's tables.
    pub fn on(stack: &TestStack) -> Api {
        Api {
            stack: stack.clone(),
            app: stack.block_api(),
            token: token("agent-1", WRITER),
        }
    }

    /// The same API and caller, talking to DynamoDB through `relay`.
    pub fn via(&self, relay: &integration_tests::DynamoRelay) -> Api {
        Api {
            stack: self.stack.clone(),
            app: block_api::App::new(
                self.stack.store_via(relay),
                blocklist::http::auth::Authenticator::local_hs256(integration_tests::JWT_SECRET),
            ),
            token: self.token.clone(),
        }
    }

    pub async fn send(&self, request: ApiRequest) -> ApiResponse {
        call_block_api(&self.app, request).await
    }

    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> ApiResponse {
        let mut request = ApiRequest::new(method, uri).bearer(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    pub async fn block(&self, number: &str, body: Value) -> ApiResponse {
        self.call("PUT", &format!("/v1/blocks/{number}"), Some(body))
            .await
    }

    pub async fn history(&self, number: &str) -> Vec<Value> {
        let response = self
            .call(
                "GET",
                &format!("/v1/numbers/{number}/history?limit=200"),
                None,
            )
            .await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        response.body["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Asserts the B50 error shape and returns the error code.
pub fn error_code(response: &ApiResponse) -> String {
    let error = &response.body["error"];
    assert!(
        error["message"].is_string(),
        "B50 error body expected, got {:?}",
        response.body
    );
    error["code"].as_str().expect("error.code").to_owned()
}
