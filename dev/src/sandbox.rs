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
//!
//! - `POST`, `DELETE`, `GET /sandbox/graph/{version}/{phone_number_id}/block_users`:
//!   Meta's Block Users API (B15), with its rules: a user is only blocked
//!   if they wrote to the business number in the last 24 hours (as seen in
//!   the webhooks the stack received; otherwise 131047), at most 1,000 users
//!   per request, at most `SANDBOX_BLOCK_LIST_CAP` (default 64,000) per
//!   business number (then 139101), partial failures as HTTP 400 with code
//!   139100 and both lists, and `GET` paged with `limit` and `after`.
//! - `GET /sandbox/graph/{version}/{account}/message_templates?name=`: the
//!   template lookup (B83), answering from the sandbox's templates:
//!   `order_update` (UTILITY) and `spring_sale` (MARKETING) in `en_US`, and
//!   any added with `POST /sandbox/templates {"name","language","category"}`.

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
    /// Per business number, who last wrote when (Unix seconds, Meta's
    /// message timestamps).
    wrote: Mutex<HashMap<String, HashMap<Subject, i64>>>,
    /// Per business number, its block list in the order users were added.
    blocked: Mutex<HashMap<String, Vec<Subject>>>,
    block_list_cap: usize,
    /// Message templates: name, language, category.
    templates: Mutex<Vec<(String, String, String)>>,
}

/// Meta's limit of one business number's block list.
pub const BLOCK_LIST_CAP: usize = 64_000;

impl Sandbox {
    pub fn new(access_token: String, app_secret: String) -> Self {
        Sandbox::with_block_list_cap(access_token, app_secret, BLOCK_LIST_CAP)
    }

    pub fn with_block_list_cap(access_token: String, app_secret: String, cap: usize) -> Self {
        Sandbox {
            access_token,
            app_secret,
            sent: Mutex::new(Vec::new()),
            failing: Mutex::new(HashMap::new()),
            wrote: Mutex::new(HashMap::new()),
            blocked: Mutex::new(HashMap::new()),
            block_list_cap: cap,
            templates: Mutex::new(
                [
                    ("order_update", "en_US", "UTILITY"),
                    ("spring_sale", "en_US", "MARKETING"),
                ]
                .iter()
                .map(|(n, l, c)| ((*n).to_owned(), (*l).to_owned(), (*c).to_owned()))
                .collect(),
            ),
        }
    }

    /// `GET …/{account}/message_templates?name=`: Graph's list, filtered.
    fn message_templates(&self, request: &HttpRequest) -> Answer {
        if !self.authorized(request) {
            return graph_error(401, 190, "Invalid OAuth access token.");
        }
        let query = request
            .uri
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default();
        let name = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "name")
            .map(|(_, v)| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            });
        let data: Vec<Value> = lock(&self.templates)
            .iter()
            .filter(|(n, _, _)| name.as_ref().is_none_or(|wanted| wanted == n))
            .map(|(n, l, c)| json!({ "name": n, "language": l, "category": c, "status": "APPROVED" }))
            .collect();
        json_answer(200, &json!({ "data": data }))
    }

    /// `POST /sandbox/templates {"name","language","category"}`.
    fn add_template(&self, request: &HttpRequest) -> Answer {
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap_or_default())
            .unwrap_or(Value::Null);
        let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(name), Some(category)) = (field("name"), field("category")) else {
            return graph_error(400, 100, "name and category are required");
        };
        let language = field("language").unwrap_or_else(|| "en_US".to_owned());
        let entry = (name, language, category.to_uppercase());
        let answer = json!({ "name": entry.0, "language": entry.1, "category": entry.2 });
        lock(&self.templates).push(entry);
        json_answer(201, &answer)
    }

    /// Notes who wrote to which business number in a webhook the stack
    /// received signed with the app secret (as Meta sends them), as Meta
    /// knows it, for the 24-hour rule.
    pub fn saw_webhook(&self, signature: Option<&str>, body: &[u8]) {
        if signature::verify(self.app_secret.as_bytes(), body, signature).is_err() {
            return;
        }
        let Ok(payload) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let mut wrote = lock(&self.wrote);
        for entry in payload["entry"].as_array().into_iter().flatten() {
            for change in entry["changes"].as_array().into_iter().flatten() {
                let value = &change["value"];
                let Some(business) = value["metadata"]["phone_number_id"].as_str() else {
                    continue;
                };
                for message in value["messages"].as_array().into_iter().flatten() {
                    let at = message["timestamp"]
                        .as_str()
                        .and_then(|t| t.parse::<i64>().ok())
                        .unwrap_or_else(|| chrono::Utc::now().timestamp());
                    let senders = ["from", "from_user_id"]
                        .iter()
                        .filter_map(|k| message[*k].as_str())
                        .filter_map(|raw| Subject::parse(raw).ok());
                    let seen = wrote.entry(business.to_owned()).or_default();
                    for sender in senders {
                        let last = seen.entry(sender).or_insert(at);
                        *last = (*last).max(at);
                    }
                }
            }
        }
    }

    /// `POST`/`DELETE`/`GET …/{business}/block_users`, as Meta answers.
    pub fn block_users(&self, request: &HttpRequest, version: &str, business: &str) -> Answer {
        if !self.authorized(request) {
            return graph_error(401, 190, "Invalid OAuth access token.");
        }
        if request.method == "GET" {
            return self.list_blocked(request, version, business);
        }
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap_or_default())
            .unwrap_or(Value::Null);
        let Some(users) = body["block_users"].as_array() else {
            return graph_error(400, 100, "(#100) The parameter block_users is required.");
        };
        if users.is_empty() || users.len() > 1000 {
            return graph_error(400, 100, "(#100) block_users takes 1 to 1000 users.");
        }
        let block = request.method == "POST";
        let now = chrono::Utc::now().timestamp();
        let wrote = lock(&self.wrote).get(business).cloned().unwrap_or_default();
        let mut blocked = lock(&self.blocked);
        let list = blocked.entry(business.to_owned()).or_default();
        if block {
            // The whole request fails, and adds no one, when the list
            // cannot take everyone in it who is not on it yet.
            let new = users
                .iter()
                .filter_map(|u| u["user"].as_str().or_else(|| u["user_id"].as_str()))
                .filter_map(|raw| Subject::parse(raw).ok())
                .filter(|u| !list.contains(u))
                .filter(|u| wrote.get(u).is_some_and(|at| now - at <= 24 * 3600))
                .count();
            if new > 0 && list.len() + new > self.block_list_cap {
                return graph_error(400, 139101, "(#139101) Block list limit reached");
            }
        }
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for entry in users {
            let input = entry["user"]
                .as_str()
                .or_else(|| entry["user_id"].as_str())
                .unwrap_or_default()
                .to_owned();
            let Ok(user) = Subject::parse(&input) else {
                failed.push(failed_user(&input, 100, "Invalid parameter", "not a user"));
                continue;
            };
            if !block {
                if let Some(at) = list.iter().position(|u| u == &user) {
                    list.remove(at);
                    done.push(json!({ "input": input }));
                } else {
                    failed.push(failed_user(
                        &input,
                        100,
                        "Invalid parameter",
                        "the user is not blocked",
                    ));
                }
                continue;
            }
            if list.contains(&user) {
                done.push(added(&input, &user));
            } else if wrote.get(&user).is_none_or(|at| now - at > 24 * 3600) {
                failed.push(failed_user(
                    &input,
                    131047,
                    "Re-engagement message",
                    "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
                ));
            } else {
                list.push(user.clone());
                done.push(added(&input, &user));
            }
        }
        let lists = if block {
            json!({ "added_users": done, "failed_users": failed })
        } else {
            json!({ "removed_users": done, "failed_users": failed })
        };
        if failed.is_empty() {
            return json_answer(
                200,
                &json!({ "messaging_product": "whatsapp", "block_users": lists }),
            );
        }
        let verb = if block { "block" } else { "unblock" };
        json_answer(
            400,
            &json!({
                "messaging_product": "whatsapp",
                "block_users": lists,
                "error": {
                    "message": "(#139100) Failed to block/unblock users",
                    "type": "OAuthException",
                    "code": 139100,
                    "error_data": { "details": format!("Failed to {verb} some users, see the block_users response list for details.") },
                    "fbtrace_id": "sandbox",
                },
            }),
        )
    }

    /// `GET …/block_users?limit=&after=`: the block list, oldest first, in
    /// pages with Graph's cursors (the position, base64).
    fn list_blocked(&self, request: &HttpRequest, version: &str, business: &str) -> Answer {
        use base64::Engine;
        let codec = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let query = request
            .uri
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default();
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        };
        let limit = param("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(100)
            .clamp(1, 10_000);
        let start = match param("after") {
            None => 0,
            Some(cursor) => match codec
                .decode(cursor)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<usize>().ok())
            {
                Some(at) => at,
                None => return graph_error(400, 100, "(#100) Invalid cursor"),
            },
        };
        let blocked = lock(&self.blocked);
        let list = blocked.get(business).map(Vec::as_slice).unwrap_or_default();
        let page: Vec<Value> = list
            .iter()
            .skip(start)
            .take(limit)
            .map(|user| {
                let mut entry = added(user.as_str(), user);
                entry["messaging_product"] = json!("whatsapp");
                entry.as_object_mut().map(|o| o.remove("input"));
                entry
            })
            .collect();
        let end = start + page.len();
        let mut cursors = json!({ "before": codec.encode(start.to_string()) });
        let mut paging = json!({});
        if end < list.len() {
            cursors["after"] = json!(codec.encode(end.to_string()));
            paging["next"] = json!(format!(
                "/sandbox/graph/{version}/{business}/block_users?limit={limit}&after={}",
                codec.encode(end.to_string())
            ));
        }
        paging["cursors"] = cursors;
        json_answer(200, &json!({ "data": page, "paging": paging }))
    }

    fn authorized(&self, request: &HttpRequest) -> bool {
        request.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("authorization")
                && v.strip_prefix("Bearer ") == Some(self.access_token.as_str())
        })
    }

    pub async fn answer(&self, stack: &Arc<Stack>, request: &HttpRequest) -> Answer {
        let path = request.uri.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (request.method.as_str(), parts.as_slice()) {
            ("POST", ["sandbox", "graph", _version, business, "messages"]) => {
                self.send(stack, request, business)
            }
            ("POST" | "DELETE" | "GET", ["sandbox", "graph", version, business, "block_users"]) => {
                self.block_users(request, version, business)
            }
            ("GET", ["sandbox", "graph", _version, _account, "message_templates"]) => {
                self.message_templates(request)
            }
            ("POST", ["sandbox", "templates"]) => self.add_template(request),
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
        if !self.authorized(request) {
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

/// An entry of `added_users` (and of the `GET` list).
fn added(input: &str, user: &Subject) -> Value {
    match user {
        Subject::Number(n) => json!({ "input": input, "wa_id": n.digits() }),
        Subject::User(id) => json!({ "input": input, "user_id": id }),
    }
}

/// An entry of `failed_users`.
fn failed_user(input: &str, code: i64, message: &str, details: &str) -> Value {
    json!({
        "input": input,
        "errors": [{ "message": message, "code": code, "error_data": { "details": details } }],
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "106540352242922";

    fn sandbox(cap: usize) -> Sandbox {
        Sandbox::with_block_list_cap("token".into(), "secret".into(), cap)
    }

    fn request(method: &str, uri: &str, body: Option<Value>) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            uri: uri.into(),
            headers: vec![("authorization".into(), "Bearer token".into())],
            body: body.map(|b| b.to_string().into_bytes()),
            jwt_claims: None,
        }
    }

    fn users(method: &str, users: &[&str]) -> HttpRequest {
        let entries: Vec<Value> = users
            .iter()
            .map(|u| {
                if u.starts_with('+') {
                    json!({ "user": u })
                } else {
                    json!({ "user_id": u })
                }
            })
            .collect();
        request(
            method,
            &format!("/sandbox/graph/v25.0/{LINE}/block_users"),
            Some(json!({ "messaging_product": "whatsapp", "block_users": entries })),
        )
    }

    fn wrote(sandbox: &Sandbox, from: &str, at: i64) {
        let body = json!({"entry": [{"changes": [{"value": {
            "metadata": {"phone_number_id": LINE},
            "messages": [{"from": from.trim_start_matches('+'), "timestamp": at.to_string()}],
        }}]}]})
        .to_string();
        let signed = signature::sign(b"secret", body.as_bytes());
        sandbox.saw_webhook(Some(&signed), body.as_bytes());
    }

    fn answer_json(answer: &Answer) -> Value {
        serde_json::from_slice(&answer.2).expect("JSON")
    }

    #[test]
    fn b15_only_users_who_wrote_in_24_hours_are_blocked_with_a_partial_failure() {
        let sandbox = sandbox(BLOCK_LIST_CAP);
        let now = chrono::Utc::now().timestamp();
        wrote(&sandbox, "+16505551234", now - 60);
        wrote(&sandbox, "+16505557777", now - 25 * 3600);
        let answer = sandbox.block_users(
            &users("POST", &["+16505551234", "+16505557777"]),
            "v25.0",
            LINE,
        );
        assert_eq!(answer.0, 400);
        let body = answer_json(&answer);
        assert_eq!(body["error"]["code"], 139100);
        assert_eq!(
            body["block_users"]["added_users"][0]["input"],
            "+16505551234"
        );
        assert_eq!(
            body["block_users"]["failed_users"][0]["input"],
            "+16505557777"
        );
        assert_eq!(
            body["block_users"]["failed_users"][0]["errors"][0]["code"],
            131047
        );
        let all = sandbox.block_users(&users("POST", &["+16505551234"]), "v25.0", LINE);
        assert_eq!(all.0, 200, "blocking again succeeds");
        let removed = sandbox.block_users(&users("DELETE", &["+16505551234"]), "v25.0", LINE);
        assert_eq!(removed.0, 200);
        assert_eq!(
            answer_json(&removed)["block_users"]["removed_users"][0]["input"],
            "+16505551234"
        );
    }

    #[test]
    fn b15_a_full_list_refuses_with_139101_and_requests_hold_at_most_1000() {
        let sandbox = sandbox(1);
        let now = chrono::Utc::now().timestamp();
        wrote(&sandbox, "+16505551234", now);
        wrote(&sandbox, "+16505557777", now);
        assert_eq!(
            sandbox
                .block_users(&users("POST", &["+16505551234"]), "v25.0", LINE)
                .0,
            200
        );
        let full = sandbox.block_users(&users("POST", &["+16505557777"]), "v25.0", LINE);
        assert_eq!(full.0, 400);
        assert_eq!(answer_json(&full)["error"]["code"], 139101);
        let many: Vec<String> = (0..1001).map(|i| format!("+1650555{i:04}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            sandbox.block_users(&users("POST", &many), "v25.0", LINE).0,
            400
        );
        // A webhook not signed with the app secret is not Meta's.
        let forged = json!({"entry": [{"changes": [{"value": {
            "metadata": {"phone_number_id": LINE},
            "messages": [{"from": "16505550000", "timestamp": now.to_string()}],
        }}]}]})
        .to_string();
        let other = super::tests::sandbox(BLOCK_LIST_CAP);
        other.saw_webhook(Some("sha256=00"), forged.as_bytes());
        other.saw_webhook(None, forged.as_bytes());
        let refused = other.block_users(&users("POST", &["+16505550000"]), "v25.0", LINE);
        assert_eq!(
            answer_json(&refused)["block_users"]["failed_users"][0]["errors"][0]["code"],
            131047
        );
        let mut unauthorized = users("POST", &["+16505551234"]);
        unauthorized.headers.clear();
        assert_eq!(sandbox.block_users(&unauthorized, "v25.0", LINE).0, 401);
    }

    #[test]
    fn b15_the_block_list_pages_with_cursors() {
        let sandbox = sandbox(BLOCK_LIST_CAP);
        let now = chrono::Utc::now().timestamp();
        let numbers: Vec<String> = (0..5).map(|i| format!("+1650555000{i}")).collect();
        for number in &numbers {
            wrote(&sandbox, number, now);
        }
        let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
        assert_eq!(
            sandbox.block_users(&users("POST", &refs), "v25.0", LINE).0,
            200
        );
        let mut seen = Vec::new();
        let mut uri = format!("/sandbox/graph/v25.0/{LINE}/block_users?limit=2");
        loop {
            let page =
                answer_json(&sandbox.block_users(&request("GET", &uri, None), "v25.0", LINE));
            for entry in page["data"].as_array().unwrap() {
                seen.push(format!("+{}", entry["wa_id"].as_str().unwrap()));
            }
            match page["paging"]["cursors"]["after"].as_str() {
                Some(after) => {
                    uri = format!("/sandbox/graph/v25.0/{LINE}/block_users?limit=2&after={after}")
                }
                None => break,
            }
        }
        assert_eq!(seen, numbers);
    }

    #[test]
    fn b83_templates_are_listed_by_name_and_can_be_added() {
        let sandbox = sandbox(BLOCK_LIST_CAP);
        let list = |name: &str| {
            let uri = format!("/sandbox/graph/v25.0/102290129340398/message_templates?name={name}");
            answer_json(&sandbox.message_templates(&request("GET", &uri, None)))
        };
        assert_eq!(list("spring_sale")["data"][0]["category"], "MARKETING");
        assert_eq!(list("order_update")["data"][0]["category"], "UTILITY");
        assert_eq!(list("welcome")["data"], json!([]));
        let added = sandbox.add_template(&request(
            "POST",
            "/sandbox/templates",
            Some(json!({"name": "welcome", "category": "marketing"})),
        ));
        assert_eq!(added.0, 201);
        assert_eq!(list("welcome")["data"][0]["category"], "MARKETING");
    }
}
