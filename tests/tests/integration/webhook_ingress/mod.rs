//! webhook-ingress (B20–B28) against DynamoDB Local and a CRM fake served
//! by wiremock on a real socket.

mod body_size;
mod calls;
mod delivery;

use std::time::Duration;

use blocklist::meta::signature;
use blocklist::store::Store;
use integration_tests::{ApiRequest, ApiResponse, TestStack, read_response};
use webhook_ingress::{App, Config, CrmConfig};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const APP_SECRET: &str = "test-app-secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const CRM_SECRET: &str = "test-crm-secret";

pub fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/meta/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A test's ingress: fresh tables and a CRM fake.
pub struct Ingress {
    pub stack: TestStack,
    pub app: App,
    pub crm: MockServer,
}

impl Ingress {
    /// With a CRM that answers `crm_status` to every delivery.
    pub async fn new(crm_status: u16) -> Ingress {
        let stack = TestStack::new().await;
        let crm = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/crm"))
            .respond_with(ResponseTemplate::new(crm_status))
            .mount(&crm)
            .await;
        let app = app_for(stack.store.clone(), Some(format!("{}/crm", crm.uri())));
        Ingress { stack, app, crm }
    }

    /// The same ingress, sending keyword confirmations (B81) to a Graph
    /// at `graph_url`.
    pub fn with_graph(mut self, graph_url: &str) -> Ingress {
        let mut config = self.app.config.clone();
        config.graph = Some(webhook_ingress::GraphConfig {
            base_url: graph_url.to_owned(),
            version: "v25.0".to_owned(),
            access_token: "test-access-token".to_owned(),
            timeout: Duration::from_secs(5),
        });
        self.app = App::new(self.stack.store.clone(), config).expect("http client");
        self
    }

    /// POSTs `body` signed with the app secret.
    pub async fn deliver(&self, body: &str) -> ApiResponse {
        deliver_to(&self.app, body).await
    }

    pub async fn send(&self, request: ApiRequest) -> ApiResponse {
        read_response(webhook_ingress::handle(&self.app, request.to_lambda()).await)
    }

    /// The bodies the CRM received, parsed.
    pub async fn crm_bodies(&self) -> Vec<serde_json::Value> {
        self.crm
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("CRM got JSON"))
            .collect()
    }

    /// Ids of every message the CRM received, in order.
    pub async fn forwarded_message_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for body in self.crm_bodies().await {
            for entry in body["entry"].as_array().into_iter().flatten() {
                for change in entry["changes"].as_array().into_iter().flatten() {
                    for message in change["value"]["messages"].as_array().into_iter().flatten() {
                        ids.push(message["id"].as_str().unwrap_or_default().to_owned());
                    }
                }
            }
        }
        ids
    }

    /// Replaces the CRM's answer for the following deliveries.
    pub async fn crm_answers(&self, status: u16) {
        self.crm.reset().await;
        Mock::given(method("POST"))
            .and(path("/crm"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&self.crm)
            .await;
    }
}

/// `POST /webhook` with `body`, signed with `secret` as Meta signs.
pub fn signed_webhook(body: &str, secret: &[u8]) -> ApiRequest {
    ApiRequest::new("POST", "/webhook")
        .header(
            "x-hub-signature-256",
            &signature::sign(secret, body.as_bytes()),
        )
        .header("content-type", "application/json")
        .raw_body(body)
}

/// Delivers `body`, signed with [`APP_SECRET`], to the ingress `app`.
pub async fn deliver_to(app: &App, body: &str) -> ApiResponse {
    read_response(
        webhook_ingress::handle(app, signed_webhook(body, APP_SECRET.as_bytes()).to_lambda()).await,
    )
}

pub fn app_for(store: Store, crm_url: Option<String>) -> App {
    let config = Config {
        app_secret: APP_SECRET.into(),
        verify_token: VERIFY_TOKEN.into(),
        crm: crm_url.map(|url| CrmConfig {
            url,
            secret: CRM_SECRET.into(),
            timeout: Duration::from_secs(5),
        }),
        graph: None,
    };
    App::new(store, config).expect("http client")
}
