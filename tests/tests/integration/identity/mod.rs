//! Identity (B60–B65) and the send proxy's drop-in bodies (B35), end to end:
//! the block API, webhook-ingress, send-proxy and wa-blocked on one set of
//! tables in DynamoDB Local, with a CRM fake and a Graph fake served by
//! wiremock on real sockets.

mod changes;
mod failures;
mod forms;
mod links;
mod round_trips;
mod search;
mod sending;
mod subjects;

use std::time::Duration;

use integration_tests::{ApiRequest, ApiResponse, TestStack, token};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::block_api::Api;
use crate::send_proxy::{RawResponse, app_for, config, raw};
use crate::webhook_ingress::Ingress;

/// The business number of the fixtures.
pub const LINE_A: &str = "106540352242922";
/// Another business number of the same business.
pub const LINE_B: &str = "106540352242923";
/// The person of the BSUID fixtures: their number…
pub const NUMBER: &str = "+16505551234";
/// …and their business-scoped user id.
pub const BSUID: &str = "US.13491208655302741918";
/// Another person.
pub const OTHER_NUMBER: &str = "+16505557777";
pub const OTHER_BSUID: &str = "US.77711112222333344445";
/// Scopes of a token that may change settings.
pub const ADMIN: &[&str] = &["blocklist:read", "blocklist:write", "blocklist:admin"];

pub fn fixture(name: &str) -> String {
    crate::webhook_ingress::fixture(name)
}

/// A Graph send answer naming `message_id`, with `contacts` as given.
pub fn graph_answer(contacts: Value, message_id: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "contacts": contacts,
        "messages": [{"id": message_id}]
    })
}

/// A webhook delivery of one change on `LINE_A`.
pub fn delivery(contacts: Vec<Value>, messages: Vec<Value>, statuses: Vec<Value>) -> String {
    delivery_on(LINE_A, contacts, messages, statuses)
}

pub fn delivery_on(
    line: &str,
    contacts: Vec<Value>,
    messages: Vec<Value>,
    statuses: Vec<Value>,
) -> String {
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": line},
    });
    if !contacts.is_empty() {
        value["contacts"] = json!(contacts);
    }
    if !messages.is_empty() {
        value["messages"] = json!(messages);
    }
    if !statuses.is_empty() {
        value["statuses"] = json!(statuses);
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]
    })
    .to_string()
}

/// An inbound text message. `from` is a WhatsApp id (digits), `user_id` a
/// BSUID; either may be left out.
pub fn text_message(from: Option<&str>, user_id: Option<&str>, id: &str) -> Value {
    let mut message = json!({
        "id": id,
        "timestamp": chrono::Utc::now().timestamp().to_string(),
        "type": "text",
        "text": {"body": "hello"}
    });
    if let Some(from) = from {
        message["from"] = json!(from);
    }
    if let Some(user_id) = user_id {
        message["from_user_id"] = json!(user_id);
    }
    message
}

/// One delivery of two changes: on LINE_A a text `shown` from NUMBER with
/// its BSUID, on LINE_B a text `hidden` from the BSUID alone (the number
/// hidden there).
pub fn shown_then_hidden(shown: &str, hidden: &str) -> String {
    let mut body: Value = serde_json::from_str(&delivery_on(
        LINE_B,
        vec![contact(None, Some(BSUID))],
        vec![text_message(None, Some(BSUID), hidden)],
        vec![],
    ))
    .expect("a delivery is JSON");
    let first: Value = serde_json::from_str(&delivery_on(
        LINE_A,
        vec![contact(Some("16505551234"), Some(BSUID))],
        vec![text_message(Some("16505551234"), Some(BSUID), shown)],
        vec![],
    ))
    .expect("a delivery is JSON");
    body["entry"][0]["changes"]
        .as_array_mut()
        .expect("changes")
        .insert(0, first["entry"][0]["changes"][0].clone());
    body.to_string()
}

/// A `contacts[]` entry.
pub fn contact(wa_id: Option<&str>, user_id: Option<&str>) -> Value {
    let mut contact = json!({"profile": {"name": "Someone"}});
    if let Some(wa_id) = wa_id {
        contact["wa_id"] = json!(wa_id);
    }
    if let Some(user_id) = user_id {
        contact["user_id"] = json!(user_id);
    }
    contact
}

/// A `failed` status with error 131026, now.
pub fn failed_status(
    id: &str,
    recipient_id: Option<&str>,
    recipient_user_id: Option<&str>,
) -> Value {
    let mut status = json!({
        "id": id,
        "status": "failed",
        "timestamp": chrono::Utc::now().timestamp().to_string(),
        "errors": [{"code": 131026, "title": "Message undeliverable"}]
    });
    if let Some(r) = recipient_id {
        status["recipient_id"] = json!(r);
    }
    if let Some(r) = recipient_user_id {
        status["recipient_user_id"] = json!(r);
    }
    status
}

/// Every function on one set of tables: the block API, the webhook (with a
/// CRM fake) and the send proxy (with a Graph fake).
pub struct World {
    pub ingress: Ingress,
    pub proxy: send_proxy::App,
    pub graph: MockServer,
    pub api: Api,
    /// A send-proxy token with `messages:send`.
    pub send_token: String,
}

impl World {
    /// With a CRM that accepts every delivery and a Graph that answers
    /// every send with the success fixture.
    pub async fn new() -> World {
        let ingress = Ingress::new(200).await;
        let graph = MockServer::start().await;
        let proxy = app_for(
            ingress.stack.store.clone(),
            config(&graph.uri(), Duration::from_secs(5)),
        );
        let api = Api::on(&ingress.stack);
        let world = World {
            ingress,
            proxy,
            graph,
            api,
            send_token: token("crm", &["messages:send"]),
        };
        world
            .graph_answers(ResponseTemplate::new(200).set_body_raw(
                crate::send_proxy::fixture("graph-send.response.json"),
                "application/json",
            ))
            .await;
        world
    }

    pub fn stack(&self) -> &TestStack {
        &self.ingress.stack
    }

    /// Replaces Graph's answer (and forgets the requests it received).
    pub async fn graph_answers(&self, answer: ResponseTemplate) {
        self.graph.reset().await;
        Mock::given(method("POST"))
            .respond_with(answer)
            .mount(&self.graph)
            .await;
    }

    /// Graph answers every send with `body` (HTTP 200).
    pub async fn graph_answers_json(&self, body: Value) {
        self.graph_answers(
            ResponseTemplate::new(200)
                .set_body_raw(body.to_string().into_bytes(), "application/json"),
        )
        .await;
    }

    pub async fn graph_requests(&self) -> Vec<wiremock::Request> {
        self.graph
            .received_requests()
            .await
            .expect("request recording is on")
    }

    /// A webhook delivery, signed.
    pub async fn deliver(&self, body: &str) -> ApiResponse {
        let response = self.ingress.deliver(body).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        response
    }

    pub async fn forwarded_message_ids(&self) -> Vec<String> {
        self.ingress.forwarded_message_ids().await
    }

    /// `POST /v1/{LINE_A}/messages` with `body` as is, by the CRM.
    pub async fn send(&self, body: &str) -> RawResponse {
        self.send_on(LINE_A, body).await
    }

    /// `POST /v1/{LINE_A}/recipients:check` with `body` as is.
    pub async fn check(&self, body: &str) -> RawResponse {
        let request = ApiRequest::new("POST", &format!("/v1/{LINE_A}/recipients:check"))
            .bearer(&self.send_token)
            .header("content-type", "application/json")
            .raw_body(body);
        raw(send_proxy::handle(&self.proxy, request.to_lambda()).await)
    }

    pub async fn send_on(&self, line: &str, body: &str) -> RawResponse {
        let request = ApiRequest::new("POST", &format!("/v1/{line}/messages"))
            .bearer(&self.send_token)
            .header("content-type", "application/json")
            .raw_body(body);
        raw(send_proxy::handle(&self.proxy, request.to_lambda()).await)
    }

    /// Blocks `subject` in `scope` through the block API (201 expected).
    pub async fn block(&self, subject: &str, scope: &str) -> Value {
        let response = self
            .api
            .block(subject, json!({"reason": "spam", "scope": scope}))
            .await;
        assert_eq!(
            response.status, 201,
            "blocking {subject}: {:?}",
            response.body
        );
        response.body
    }

    pub async fn unblock(&self, subject: &str, scope: &str) -> ApiResponse {
        self.api
            .call(
                "DELETE",
                &format!("/v1/blocks/{subject}?scope={scope}"),
                Some(json!({"reason": "resolved"})),
            )
            .await
    }

    /// `GET /v1/blocks/{subject}`, 200 expected.
    pub async fn view(&self, subject: &str) -> Value {
        let response = self
            .api
            .call("GET", &format!("/v1/blocks/{subject}"), None)
            .await;
        assert_eq!(response.status, 200, "GET {subject}: {:?}", response.body);
        response.body
    }

    pub async fn history(&self, subject: &str) -> Vec<Value> {
        self.api.history(subject).await
    }

    /// The events of `subject`'s history with `action`.
    pub async fn events(&self, subject: &str, action: &str) -> Vec<Value> {
        self.history(subject)
            .await
            .into_iter()
            .filter(|e| e["action"] == action)
            .collect()
    }

    /// Sets fields of the settings of `target` through the block API.
    pub async fn settings(&self, target: &str, body: Value) -> Value {
        let request = ApiRequest::new("PUT", &format!("/v1/settings/{target}"))
            .bearer(&token("operator", ADMIN))
            .json(body);
        let response = self.api.send(request).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        response.body
    }
}

/// The `user_id`s of the links `GET /v1/blocks/{subject}` shows.
pub fn linked_user_ids(view: &Value) -> Vec<String> {
    view["links"]
        .as_array()
        .unwrap_or_else(|| panic!("links expected: {view}"))
        .iter()
        .filter_map(|l| l["user_id"].as_str().map(str::to_owned))
        .collect()
}

/// The `number`s of the links `GET /v1/blocks/{subject}` shows.
pub fn linked_numbers(view: &Value) -> Vec<String> {
    view["links"]
        .as_array()
        .unwrap_or_else(|| panic!("links expected: {view}"))
        .iter()
        .filter_map(|l| l["number"].as_str().map(str::to_owned))
        .collect()
}

/// A send-proxy refusal: 403 `recipient_blocked`; returns `error_data`.
pub fn assert_blocked(response: &RawResponse) -> Value {
    crate::send_proxy::assert_graph_error(response, 403, "recipient_blocked")
}

/// Today's value of the day counter `field` in `GET /v1/stats`.
pub async fn today(world: &World, field: &str) -> u64 {
    let today = chrono::Utc::now().date_naive();
    let stats = world
        .api
        .call("GET", &format!("/v1/stats?from={today}&to={today}"), None)
        .await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    stats.body["days"]
        .as_array()
        .expect("days")
        .iter()
        .find(|d| d["date"] == today.to_string())
        .map_or(0, |d| d[field].as_u64().unwrap_or(0))
}

/// The `inbound-bsuid-only.json` message again, under another message id.
pub fn bsuid_only(id: &str) -> String {
    fixture("inbound-bsuid-only.json").replace("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRCSUQyAA==", id)
}
