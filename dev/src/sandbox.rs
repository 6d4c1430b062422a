//! A Graph API stand-in for the local stack, used when `GRAPH_API_BASE_URL`
//! is not set. It accepts sends like Graph (message ids,
//! `contacts[].wa_id`), keeps what it received for inspection, and can be
//! told to fail a recipient: a send to it is accepted, then a `failed`
//! status webhook with the chosen error code is delivered to the ingress,
//! signed with the app secret, as Meta would.
//!
//! - `POST /sandbox/graph/{version}/{phone_number_id}/messages`: the send.
//! - `GET /sandbox/messages`, `DELETE /sandbox/messages`: what was sent.
//! - `POST /sandbox/failures` `{"number","code"?,"title"?}`: fail a recipient,
//!   a number or a BSUID (default 131026 "Message undeliverable"); `DELETE
//!   /sandbox/failures/{number}` stops failing it. A failed send to a BSUID
//!   gets a status with `recipient_user_id` and no `recipient_id`, as Meta's.
//!
//! Sends addressed by `recipient` (a BSUID) are accepted like Graph's, and
//! mark-as-read bodies (`"status":"read"`) answer `{"success":true}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use blocklist::identity::Subject;
use blocklist::meta::signature;
use serde_json::{Value, json};

use crate::apigw::HttpRequest;
use crate::server::Stack;

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

#[derive(Debug, Clone)]
struct Failure {
    code: i64,
    title: String,
}

pub struct Sandbox {
    access_token: String,
    app_secret: String,
    sent: Mutex<Vec<Value>>,
    failing: Mutex<HashMap<Subject, Failure>>,
}

impl Sandbox {
    pub fn new(access_token: String, app_secret: String) -> Self {
        Sandbox {
            access_token,
            app_secret,
            sent: Mutex::new(Vec::new()),
            failing: Mutex::new(HashMap::new()),
        }
    }

    pub async fn answer(&self, stack: &Arc<Stack>, request: &HttpRequest) -> Answer {
        let path = request.uri.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (request.method.as_str(), parts.as_slice()) {
            ("POST", ["sandbox", "graph", _version, business, "messages"]) => {
                self.send(stack, request, business)
            }
            ("GET", ["sandbox", "messages"]) => {
                let sent = lock(&self.sent).clone();
                json_answer(200, &json!({ "messages": sent }))
            }
            ("DELETE", ["sandbox", "messages"]) => {
                lock(&self.sent).clear();
                (204, vec![], vec![])
            }
            ("POST", ["sandbox", "failures"]) => self.fail_recipient(request),
            ("DELETE", ["sandbox", "failures", number]) => {
                let decoded = percent_encoding::percent_decode_str(number).decode_utf8_lossy();
                match Subject::parse(&decoded) {
                    Ok(number) => {
                        lock(&self.failing).remove(&number);
                        (204, vec![], vec![])
                    }
                    Err(e) => graph_error(400, 100, &format!("invalid number: {e}")),
                }
            }
            _ => graph_error(404, 100, "Unknown path components"),
        }
    }

    fn send(&self, stack: &Arc<Stack>, request: &HttpRequest, business: &str) -> Answer {
        let authorized = request.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("authorization")
                && v.strip_prefix("Bearer ") == Some(self.access_token.as_str())
        });
        if !authorized {
            return graph_error(401, 190, "Invalid OAuth access token.");
        }
        let Ok(body) = serde_json::from_slice::<Value>(request.body.as_deref().unwrap_or_default())
        else {
            return graph_error(400, 100, "Invalid parameter");
        };
        if body.get("status").and_then(Value::as_str) == Some("read") {
            return json_answer(200, &json!({ "success": true }));
        }
        // Meta uses `to` when both are given.
        let Some(to) = ["to", "recipient"]
            .iter()
            .find_map(|k| body.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
        else {
            return graph_error(400, 100, "(#100) The parameter to is required.");
        };
        let Ok(number) = Subject::parse(&to) else {
            return graph_error(400, 131009, "(#131009) Parameter value is not valid");
        };
        // Unique across restarts, like Graph's: the ingress de-duplicates
        // statuses by message id.
        let message_id = format!(
            "wamid.SANDBOX.{}",
            blocklist::model::AuditEvent::new_id(chrono::Utc::now())
        );
        lock(&self.sent).push(json!({
            "phone_number_id": business,
            "message_id": message_id,
            "to": number,
            "body": body,
        }));
        if let Some(failure) = lock(&self.failing).get(&number).cloned() {
            // Meta reports the failure after accepting the send.
            let webhook = self.failed_status(business, &number, &message_id, &failure);
            let stack = stack.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let (status, _, body) = stack
                    .answer(HttpRequest {
                        method: "POST".into(),
                        uri: "/webhook".into(),
                        headers: vec![
                            ("content-type".into(), "application/json".into()),
                            ("x-hub-signature-256".into(), webhook.1),
                        ],
                        body: Some(webhook.0),
                        jwt_claims: None,
                    })
                    .await;
                tracing::info!(status, body = %String::from_utf8_lossy(&body), "sandbox delivered a failed status");
            });
        }
        let contact = match &number {
            Subject::Number(n) => json!({ "input": to, "wa_id": n.digits() }),
            Subject::User(id) => json!({ "input": to, "user_id": id }),
        };
        json_answer(
            200,
            &json!({
                "messaging_product": "whatsapp",
                "contacts": [contact],
                "messages": [{ "id": message_id }],
            }),
        )
    }

    /// The signed `failed` status webhook for a send.
    fn failed_status(
        &self,
        business: &str,
        number: &Subject,
        message_id: &str,
        failure: &Failure,
    ) -> (Vec<u8>, String) {
        let mut status = json!({
            "id": message_id,
            "status": "failed",
            "timestamp": chrono::Utc::now().timestamp().to_string(),
            "errors": [{
                "code": failure.code,
                "title": failure.title,
                "message": failure.title,
                "error_data": { "details": failure.title },
            }],
        });
        match number {
            Subject::Number(n) => status["recipient_id"] = json!(n.digits()),
            Subject::User(id) => status["recipient_user_id"] = json!(id),
        }
        let payload = json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": "sandbox",
                "changes": [{
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": { "display_phone_number": "15550000000", "phone_number_id": business },
                        "statuses": [status],
                    },
                }],
            }],
        });
        let bytes = payload.to_string().into_bytes();
        let signature = signature::sign(self.app_secret.as_bytes(), &bytes);
        (bytes, signature)
    }

    fn fail_recipient(&self, request: &HttpRequest) -> Answer {
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap_or_default())
            .unwrap_or(Value::Null);
        let Some(raw) = body.get("number").and_then(Value::as_str) else {
            return graph_error(400, 100, "number is required");
        };
        let number = match Subject::parse(raw) {
            Ok(number) => number,
            Err(e) => return graph_error(400, 100, &format!("invalid number: {e}")),
        };
        let failure = Failure {
            code: body.get("code").and_then(Value::as_i64).unwrap_or(131026),
            title: body
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("Message undeliverable")
                .to_owned(),
        };
        let answer = json!({ "number": number, "code": failure.code, "title": failure.title });
        lock(&self.failing).insert(number, failure);
        json_answer(201, &answer)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn json_answer(status: u16, value: &Value) -> Answer {
    (
        status,
        vec![("content-type".into(), "application/json".into())],
        value.to_string().into_bytes(),
    )
}

/// Graph's error envelope.
fn graph_error(status: u16, code: i64, message: &str) -> Answer {
    json_answer(
        status,
        &json!({ "error": { "message": message, "type": "OAuthException", "code": code, "fbtrace_id": "sandbox" } }),
    )
}
