//! send-proxy (B30–B34, B50, B51) against DynamoDB Local and a Graph API
//! fake served by wiremock on a real socket.

mod bad_input;
mod check;
mod failures;
mod sending;

use std::time::Duration;

use blocklist::Subject;
use blocklist::http::auth::Authenticator;
use blocklist::model::PhoneNumberId;
use blocklist::store::Store;
use integration_tests::{ApiRequest, JWT_SECRET, TestStack, token};
use send_proxy::{App, Config};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::block_api::Api;

pub const ACCESS_TOKEN: &str = "test-graph-access-token";
pub const GRAPH_VERSION: &str = "v25.0";
/// The business number of the fixtures.
pub const LINE_A: &str = "106540352242922";
/// Another business number of the same business.
pub const LINE_B: &str = "106540352242923";
/// The recipient of the send fixtures.
pub const RECIPIENT: &str = "+16505551234";
/// Where Graph receives sends from `LINE_A`.
pub const GRAPH_PATH: &str = "/v25.0/106540352242922/messages";
/// Scopes of a token that may change settings (B12).
pub const ADMIN: &[&str] = &["blocklist:read", "blocklist:write", "blocklist:admin"];

/// A fixture's exact bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/meta/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("fixture is UTF-8")
}

/// The text send fixture with `to` replaced.
pub fn text_send_to(to: &str) -> String {
    let mut body: Value = serde_json::from_slice(&fixture("graph-send-text.request.json")).unwrap();
    body["to"] = json!(to);
    body.to_string()
}

/// A handler's answer with its body as bytes, for byte-exact comparisons.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub content_type: Option<String>,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
    pub bytes: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }
}

pub fn raw(response: lambda_http::Response<lambda_http::Body>) -> RawResponse {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let allow = response
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match response.into_body() {
        lambda_http::Body::Text(text) => text.into_bytes(),
        lambda_http::Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    RawResponse {
        status,
        content_type,
        allow,
        bytes,
    }
}

/// Asserts the Graph-shaped error of B31/B50 with `status` and
/// `error_data.reason` = `reason`, and returns `error_data`.
pub fn assert_graph_error(response: &RawResponse, status: u16, reason: &str) -> Value {
    let body = response.json();
    assert_eq!(response.status, status, "{body}");
    assert_eq!(
        response.content_type.as_deref(),
        Some("application/json"),
        "{body}"
    );
    let error = body["error"].as_object().unwrap_or_else(|| {
        panic!("Graph-shaped error expected, got {body}");
    });
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec!["code", "error_data", "message", "type"],
        "{body}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        error["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(error["code"], json!(status), "{body}");
    assert_eq!(error["error_data"]["reason"], reason, "{body}");
    Value::Object(error["error_data"].as_object().unwrap().clone())
}

pub fn config(graph_base_url: &str, graph_timeout: Duration) -> Config {
    Config {
        access_token: ACCESS_TOKEN.into(),
        graph_base_url: graph_base_url.into(),
        graph_version: GRAPH_VERSION.into(),
        graph_timeout,
        business_account_id: Some(BUSINESS_ACCOUNT.into()),
    }
}

/// The WhatsApp Business Account whose templates the fake Graph lists.
pub const BUSINESS_ACCOUNT: &str = "102290129340398";

/// Graph's template lookup (B83): `spring_sale` is a MARKETING template,
/// every other name a UTILITY one, in `en_US`.
pub async fn list_templates(graph: &MockServer) {
    Mock::given(method("GET"))
        .and(wiremock::matchers::path(format!(
            "/{GRAPH_VERSION}/{BUSINESS_ACCOUNT}/message_templates"
        )))
        .respond_with(|request: &wiremock::Request| {
            let name = request
                .url
                .query_pairs()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let category = if name == "spring_sale" {
                "MARKETING"
            } else {
                "UTILITY"
            };
            ResponseTemplate::new(200).set_body_json(json!({"data": [
                {"name": name, "language": "en_US", "category": category, "status": "APPROVED"}
            ]}))
        })
        .mount(graph)
        .await;
}

pub fn app_for(store: Store, config: Config) -> App {
    App::new(store, Authenticator::local_hs256(JWT_SECRET), config).expect("http client")
}

/// A test's proxy: fresh tables and a Graph fake that answers every send
/// with the success fixture.
pub struct Proxy {
    pub stack: TestStack,
    pub app: App,
    pub graph: MockServer,
    /// A token with `messages:send`.
    pub token: String,
    /// The day (UTC) the proxy was made: its counts run from there.
    pub since: chrono::NaiveDate,
}

impl Proxy {
    pub async fn new() -> Proxy {
        Proxy::with_timeout(Duration::from_secs(5)).await
    }

    pub async fn with_timeout(graph_timeout: Duration) -> Proxy {
        let since = chrono::Utc::now().date_naive();
        let stack = TestStack::new().await;
        let graph = MockServer::start().await;
        let app = app_for(stack.store.clone(), config(&graph.uri(), graph_timeout));
        let proxy = Proxy {
            stack,
            app,
            graph,
            token: token("crm", &["messages:send"]),
            since,
        };
        proxy
            .graph_answers(
                ResponseTemplate::new(200)
                    .set_body_raw(fixture("graph-send.response.json"), "application/json"),
            )
            .await;
        proxy
    }

    /// Replaces Graph's answer (and forgets the requests it received).
    pub async fn graph_answers(&self, answer: ResponseTemplate) {
        self.graph.reset().await;
        Mock::given(method("POST"))
            .respond_with(answer)
            .mount(&self.graph)
            .await;
        list_templates(&self.graph).await;
    }

    /// The block API on the same tables.
    pub fn api(&self) -> Api {
        Api::on(&self.stack)
    }

    pub async fn send(&self, request: ApiRequest) -> RawResponse {
        raw(send_proxy::handle(&self.app, request.to_lambda()).await)
    }

    /// `POST /v1/{business}/messages` with `body` as is, by the CRM.
    pub async fn send_message(&self, business: &str, body: &str) -> RawResponse {
        self.send(
            ApiRequest::new("POST", &format!("/v1/{business}/messages"))
                .bearer(&self.token)
                .header("content-type", "application/json")
                .raw_body(body),
        )
        .await
    }

    /// `POST /v1/{business}/recipients:check`.
    pub async fn check(&self, business: &str, numbers: &[String]) -> RawResponse {
        self.check_body(business, json!({ "numbers": numbers }))
            .await
    }

    /// `POST /v1/{business}/recipients:check` with `body` as is.
    pub async fn check_body(&self, business: &str, body: Value) -> RawResponse {
        self.send(
            ApiRequest::new("POST", &format!("/v1/{business}/recipients:check"))
                .bearer(&self.token)
                .json(body),
        )
        .await
    }

    /// Every request Graph received but the template lookups (B83).
    pub async fn graph_requests(&self) -> Vec<wiremock::Request> {
        let (_, sends) = self.graph_requests_split().await;
        sends
    }

    /// How many template lookups Graph answered.
    pub async fn template_lookups(&self) -> usize {
        let (lookups, _) = self.graph_requests_split().await;
        lookups.len()
    }

    async fn graph_requests_split(&self) -> (Vec<wiremock::Request>, Vec<wiremock::Request>) {
        self.graph
            .received_requests()
            .await
            .expect("request recording is on")
            .into_iter()
            .partition(|r| r.url.path().ends_with("/message_templates"))
    }

    /// Blocks `number` in `scope` through the block API.
    pub async fn block(&self, number: &str, scope: &str) {
        let response = self
            .api()
            .block(number, json!({"reason": "spam", "scope": scope}))
            .await;
        assert_eq!(response.status, 201, "{:?}", response.body);
    }

    /// Sets `allow_unknown_numbers` of `target` through the block API.
    pub async fn allow_unknown(&self, target: &str, allow: bool) {
        let request = ApiRequest::new("PUT", &format!("/v1/settings/{target}"))
            .bearer(&token("operator", ADMIN))
            .json(json!({ "allow_unknown_numbers": allow }));
        let response = self.api().send(request).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(response.body["allow_unknown_numbers"], allow);
    }

    /// Creates a contact through the block API.
    pub async fn contact(&self, number: &str) {
        let response = self
            .api()
            .call(
                "PUT",
                &format!("/v1/contacts/{number}"),
                Some(json!({"name": "Sheena Nelson"})),
            )
            .await;
        assert!(
            response.status == 200 || response.status == 201,
            "{:?}",
            response.body
        );
    }

    /// The `outbound_refused` events in `number`'s history.
    pub async fn refusals(&self, number: &str) -> Vec<Value> {
        self.api()
            .history(number)
            .await
            .into_iter()
            .filter(|e| e["action"] == "outbound_refused")
            .collect()
    }

    /// The `outbound_refused` count of `GET /v1/stats` since the proxy was
    /// made: every refusal of the test, even across midnight (UTC).
    pub async fn refused_so_far(&self) -> u64 {
        let today = chrono::Utc::now().date_naive();
        let stats = self
            .api()
            .call(
                "GET",
                &format!("/v1/stats?from={}&to={today}", self.since),
                None,
            )
            .await;
        assert_eq!(stats.status, 200, "{:?}", stats.body);
        integration_tests::stats_total(&stats.body, "outbound_refused")
    }

    /// The chat of `number` on `business`, if any.
    pub async fn chat(&self, business: &str, number: &str) -> Option<blocklist::model::Chat> {
        self.stack
            .store
            .get_chat(
                &PhoneNumberId::parse(business).unwrap(),
                &Subject::parse(number).unwrap(),
            )
            .await
            .expect("chat readable")
    }
}
