//! `openapi.yaml` kept true: its routes are the routes of `template.yaml`,
//! and every operation it documents answers, over real HTTP from the local
//! stack, with a status it lists and a body its schema for that status
//! accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use blocklist::config::Env;
use blocklist::http::request::MAX_WEBHOOK_BODY_BYTES;
use blocklist::meta::signature;
use integration_tests::{JWT_SECRET, token};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];
/// A business number.
const LINE: &str = "106540352242922";
const READ: &[&str] = &["blocklist:read"];
const WRITE: &[&str] = &["blocklist:read", "blocklist:write"];
const ADMIN: &[&str] = &["blocklist:read", "blocklist:write", "blocklist:admin"];
const DELEGATE: &[&str] = &["blocklist:write", "blocklist:delegate"];
const SEND: &[&str] = &["messages:send"];
/// The local stack's defaults for the webhook secrets.
const APP_SECRET: &[u8] = b"local-app-secret";
const VERIFY_TOKEN: &str = "local-verify-token";

fn workspace_file(name: &str) -> String {
    let path = format!("{}/../{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `openapi.yaml` as JSON.
pub(crate) fn document() -> Value {
    serde_yaml::from_str(&workspace_file("openapi.yaml"))
        .unwrap_or_else(|e| panic!("openapi.yaml is not valid YAML of JSON values: {e}"))
}

/// `/v1/chats/{phone_number_id}/{number}` → `/v1/chats/{}/{}`.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "{}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every documented operation: (path as documented, method in lower case).
fn operations(doc: &Value) -> Vec<(String, String)> {
    let paths = doc["paths"].as_object().expect("openapi.yaml has paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        for method in HTTP_METHODS {
            if item.get(method).is_some() {
                out.push((path.clone(), method.to_owned()));
            }
        }
    }
    out
}

/// How a route is guarded: by the JWT authorizer or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Guard {
    Jwt,
    None,
}

/// The `HttpApi` events of the template's functions: (METHOD, shape) → guard.
fn template_routes() -> BTreeMap<(String, String), Guard> {
    let template: serde_yaml::Value =
        serde_yaml::from_str(&workspace_file("template.yaml")).expect("template.yaml is YAML");
    let resources = template["Resources"]
        .as_mapping()
        .expect("template.yaml has Resources");
    let mut routes = BTreeMap::new();
    for (_, resource) in resources {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let properties = &event["Properties"];
            let method = properties["Method"].as_str().expect("HttpApi Method");
            let path = properties["Path"].as_str().expect("HttpApi Path");
            let guard = match properties["Auth"]["Authorizer"].as_str() {
                Some("NONE") => Guard::None,
                _ => Guard::Jwt,
            };
            routes.insert((method.to_uppercase(), shape(path)), guard);
        }
    }
    routes
}

/// The documented operations the same way: (METHOD, shape) → guard, where
/// a guarded operation must name the bearer scheme with a scope in every
/// alternative.
fn documented_routes(doc: &Value) -> (BTreeMap<(String, String), Guard>, Vec<String>) {
    let mut routes = BTreeMap::new();
    let mut problems = Vec::new();
    for (path, method) in operations(doc) {
        let operation = &doc["paths"][&path][&method];
        let security = operation.get("security").unwrap_or(&doc["security"]);
        let alternatives = security.as_array().cloned().unwrap_or_default();
        let guard = if alternatives.is_empty() {
            Guard::None
        } else {
            for alternative in &alternatives {
                let scopes = alternative["bearerJwt"].as_array();
                if scopes.is_none_or(|s| s.is_empty()) {
                    problems.push(format!(
                        "{} {path}: security {alternative} names no bearerJwt scope",
                        method.to_uppercase()
                    ));
                }
            }
            Guard::Jwt
        };
        routes.insert((method.to_uppercase(), shape(&path)), guard);
    }
    (routes, problems)
}

#[test]
fn openapi_documents_every_route_of_the_template_and_nothing_else() {
    let doc = document();
    let deployed = template_routes();
    let (documented, mut problems) = documented_routes(&doc);
    assert!(!deployed.is_empty(), "template.yaml has no HttpApi events");
    for (route, guard) in &deployed {
        match documented.get(route) {
            None => problems.push(format!(
                "{} {} is deployed but not documented",
                route.0, route.1
            )),
            Some(documented) if documented != guard => problems.push(format!(
                "{} {}: the template guards it with {guard:?}, the document with {documented:?}",
                route.0, route.1
            )),
            Some(_) => {}
        }
    }
    for route in documented.keys() {
        if !deployed.contains_key(route) {
            problems.push(format!(
                "{} {} is documented but not deployed",
                route.0, route.1
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "openapi.yaml and template.yaml disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// The document, for looking up operations, responses and schemas.
pub(crate) struct Contract {
    pub(crate) doc: Value,
}

impl Contract {
    /// Follows `$ref`s inside the document.
    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(pointer) = value.get("$ref").and_then(Value::as_str) {
            let pointer = pointer
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local $refs are supported: {pointer}"));
            value = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("unresolved $ref #{pointer}"));
        }
        value
    }

    /// The documented path a concrete request path belongs to: the one its
    /// segments match with the most literal segments.
    fn path_of(&self, concrete: &str) -> Option<String> {
        let given: Vec<&str> = concrete.split('/').collect();
        let paths = self.doc["paths"].as_object()?;
        paths
            .keys()
            .filter_map(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != given.len() {
                    return None;
                }
                let mut literal = 0;
                for (t, g) in parts.iter().zip(&given) {
                    if t.starts_with('{') && t.ends_with('}') {
                        if g.is_empty() {
                            return None;
                        }
                    } else if t == g {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, template.clone()))
            })
            .max()
            .map(|(_, template)| template)
    }

    fn operation(&self, path: &str, method: &str) -> Option<&Value> {
        self.doc["paths"][path].get(method)
    }

    /// The response an operation documents for `status`: the exact code,
    /// else its range (`4XX`).
    fn response<'a>(&'a self, operation: &'a Value, status: u16) -> Option<&'a Value> {
        let responses = &operation["responses"];
        let range = format!("{}XX", status / 100);
        responses
            .get(status.to_string())
            .or_else(|| responses.get(&range))
            .map(|r| self.resolve(r))
    }

    /// Validates `instance` against `schema`, whose `$ref`s point into the
    /// document's components.
    pub(crate) fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let mut root = schema.clone();
        match &mut root {
            Value::Object(map) => {
                map.insert("components".to_owned(), self.doc["components"].clone());
            }
            _ => return Err(format!("schema is not an object: {schema}")),
        }
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("schema does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{e} (at '{}')", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// One request of the test.
struct Req {
    method: &'static str,
    uri: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    json: Option<Value>,
}

fn req(method: &'static str, uri: impl Into<String>) -> Req {
    Req {
        method,
        uri: uri.into(),
        headers: Vec::new(),
        body: None,
        json: None,
    }
}

impl Req {
    fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn json(mut self, body: Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self.json = Some(body);
        self.header("content-type", "application/json")
    }

    fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self.header("content-type", "application/json")
    }

    fn csv(mut self, body: &str) -> Self {
        self.body = Some(body.as_bytes().to_vec());
        self.header("content-type", "text/csv")
    }

    /// A webhook delivery signed as Meta signs it.
    fn signed(self, body: &[u8]) -> Self {
        let signature = signature::sign(APP_SECRET, body);
        self.raw(body.to_vec())
            .header("x-hub-signature-256", &signature)
    }
}

/// What the document says about answers seen for one operation.
#[derive(Default)]
struct Seen {
    successes: BTreeSet<u16>,
    errors: BTreeSet<u16>,
}

/// Sends requests to the running API and holds every answer against the
/// document.
struct Probe {
    contract: Contract,
    base: String,
    http: reqwest::Client,
    seen: BTreeMap<(String, String), Seen>,
    problems: Vec<String>,
}

impl Probe {
    async fn send(&self, request: &Req) -> (u16, Option<String>, Vec<u8>) {
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("method");
        let mut builder = self
            .http
            .request(method, format!("{}{}", self.base, request.uri));
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} {}: {e}", request.method, request.uri));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
        let bytes = response.bytes().await.expect("response body").to_vec();
        (status, content_type, bytes)
    }

    /// Sends `request`, expects `status`, and checks the answer against the
    /// documented operation. Returns the JSON body (`Null` if there is none).
    async fn expect(&mut self, request: Req, status: u16) -> Value {
        let (got, content_type, bytes) = self.send(&request).await;
        let label = format!("{} {}", request.method, request.uri);
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if got != status {
            self.problems.push(format!(
                "{label}: expected {status}, got {got}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        let path = request.uri.split('?').next().unwrap_or_default();
        let method = request.method.to_lowercase();
        let Some(documented) = self.contract.path_of(path) else {
            self.problems
                .push(format!("{label}: no documented path matches"));
            return body;
        };
        let Some(operation) = self.contract.operation(&documented, &method) else {
            self.problems.push(format!(
                "{label}: {documented} documents no {method} operation"
            ));
            return body;
        };
        let mut problems = Vec::new();
        match self.contract.response(operation, got) {
            None => problems.push(format!(
                "{label}: status {got} is not documented for {} {documented}",
                request.method
            )),
            Some(response) => {
                problems.extend(self.check_body(&label, response, content_type, &bytes));
            }
        }
        if (200..300).contains(&got)
            && let Some(sent) = &request.json
        {
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            if schema.is_null() {
                problems.push(format!(
                    "{label}: a JSON body was accepted but none is documented"
                ));
            } else if let Err(e) = self.contract.validate(schema, sent) {
                problems.push(format!(
                    "{label}: the accepted request body breaks its documented schema: {e}"
                ));
            }
        }
        self.problems.extend(problems);
        let seen = self
            .seen
            .entry((request.method.to_owned(), documented))
            .or_default();
        if got < 400 {
            seen.successes.insert(got);
        } else {
            seen.errors.insert(got);
        }
        body
    }

    /// The body against the documented media types of `response`.
    fn check_body(
        &self,
        label: &str,
        response: &Value,
        content_type: Option<String>,
        bytes: &[u8],
    ) -> Vec<String> {
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return if bytes.is_empty() {
                vec![]
            } else {
                vec![format!("{label}: a body came back but none is documented")]
            };
        };
        let Some(content_type) = content_type else {
            return vec![format!("{label}: no content-type")];
        };
        let Some(media) = content.get(&content_type) else {
            return vec![format!(
                "{label}: content-type {content_type} is not documented ({:?})",
                content.keys().collect::<Vec<_>>()
            )];
        };
        let instance = if content_type == "application/json" {
            match serde_json::from_slice::<Value>(bytes) {
                Ok(value) => value,
                Err(e) => return vec![format!("{label}: body is not JSON: {e}")],
            }
        } else {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        };
        match self.contract.validate(&media["schema"], &instance) {
            Ok(()) => vec![],
            Err(e) => vec![format!(
                "{label}: the body breaks its documented schema: {e}\n    body: {instance}"
            )],
        }
    }

    /// A method a documented path does not have: every operation of that
    /// path must document the 405 it gets, with its body.
    async fn expect_method_not_allowed(&mut self, path: &str, concrete: &str) {
        let item = &self.contract.doc["paths"][path];
        let Some(method) = ["PATCH", "PUT", "POST", "DELETE", "GET"]
            .into_iter()
            .find(|m| item.get(m.to_lowercase()).is_none())
        else {
            return;
        };
        let request = req(method, concrete);
        let label = format!("{} {concrete}", request.method);
        let (got, content_type, bytes) = self.send(&request).await;
        if got != 405 {
            self.problems.push(format!(
                "{label}: expected 405, got {got}: {}",
                String::from_utf8_lossy(&bytes)
            ));
            return;
        }
        let mut problems = Vec::new();
        for documented in HTTP_METHODS {
            let Some(operation) = item.get(documented) else {
                continue;
            };
            match self.contract.response(operation, 405) {
                None => problems.push(format!(
                    "{label}: {} {path} does not document 405",
                    documented.to_uppercase()
                )),
                Some(response) => {
                    problems.extend(self.check_body(&label, response, content_type.clone(), &bytes))
                }
            }
        }
        self.problems.extend(problems);
    }

    /// Every documented operation must have been called with a success and
    /// with an error.
    fn uncovered(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for (path, method) in operations(&self.contract.doc) {
            let key = (method.to_uppercase(), path.clone());
            let seen = self.seen.get(&key);
            if seen.is_none_or(|s| s.successes.is_empty()) {
                missing.push(format!("{} {path}: no successful request", key.0));
            }
            // The console's page has no error to give: it holds no data,
            // and any query (the OAuth callback's `code` and `state`) is
            // the page's to read.
            let errorless = key.0 == "GET" && path == "/console";
            if !errorless && seen.is_none_or(|s| s.errors.is_empty()) {
                missing.push(format!("{} {path}: no error request", key.0));
            }
        }
        missing
    }
}

/// The local stack on a free port, on its own tables.
pub(crate) struct Server {
    pub(crate) base: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub(crate) async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address").to_string();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let prefix = format!("openapi{}-{nanos}", std::process::id());
        let vars: BTreeMap<&str, String> = BTreeMap::from([
            ("BLOCKLIST_TABLE", format!("{prefix}-Blocklist")),
            ("AUDIT_TABLE", format!("{prefix}-Audit")),
            ("CHATS_TABLE", format!("{prefix}-Chats")),
            ("FAILURES_TABLE", format!("{prefix}-Failures")),
            ("IMPORTS_TABLE", format!("{prefix}-Imports")),
            ("MESSAGES_TABLE", format!("{prefix}-Messages")),
            (
                "LOCAL_JWT_SECRET",
                String::from_utf8(JWT_SECRET.to_vec()).expect("secret is UTF-8"),
            ),
        ]);
        let lookup = move |key: &str| vars.get(key).cloned();
        let stack = wa_dev::server::Stack::build(&Env(&lookup), &addr)
            .await
            .unwrap_or_else(|e| panic!("local stack: {e}"));
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(wa_dev::server::serve(
            listener,
            Arc::new(stack),
            async move {
                let _ = stop.await;
            },
        ));
        Server {
            base: format!("http://{addr}"),
            shutdown: Some(shutdown),
            task,
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn inbound(message_id: &str, from: &str) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "1",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "15550000000", "phone_number_id": LINE },
                    "contacts": [{ "profile": { "name": "Ana" }, "wa_id": from }],
                    "messages": [{
                        "from": from,
                        "id": message_id,
                        "timestamp": chrono::Utc::now().timestamp().to_string(),
                        "type": "text",
                        "text": { "body": "olá 👋" }
                    }]
                }
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

/// A text message from a person Meta names by BSUID, and by number when
/// `from` is visible (the shapes of `inbound-bsuid-linked.json` and
/// `inbound-bsuid-only.json`).
fn inbound_as(message_id: &str, from: Option<&str>, user_id: &str) -> Vec<u8> {
    let mut contact = json!({ "profile": { "name": "Sheena" }, "user_id": user_id });
    let mut message = json!({
        "from_user_id": user_id,
        "id": message_id,
        "timestamp": chrono::Utc::now().timestamp().to_string(),
        "type": "text",
        "text": { "body": "Hi, it's me" }
    });
    if let Some(from) = from {
        contact["wa_id"] = json!(from);
        message["from"] = json!(from);
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "1",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "15550000000", "phone_number_id": LINE },
                    "contacts": [contact],
                    "messages": [message]
                }
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

fn text_to(to: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": { "preview_url": false, "body": "Hello" }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let server = Server::start().await;
    let mut api = Probe {
        contract: Contract { doc: document() },
        base: server.base.clone(),
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("HTTP client"),
        seen: BTreeMap::new(),
        problems: Vec::new(),
    };
    let reader = token("auditor-1", READ);
    let writer = token("agent-1", WRITE);
    let admin = token("admin-1", ADMIN);
    let delegate = token("crm-1", DELEGATE);
    let sender = token("campaigns-1", SEND);
    let expired = integration_tests::token_with("agent-1", WRITE, -3600, JWT_SECRET);

    // B1: block, idempotently, with a contact; delegated with every field.
    let blocked = "+16505551234";
    let block_body = json!({
        "reason": "abusive messages",
        "scope": "all",
        "contact": {
            "name": "Ana Souza",
            "email": "ana@example.com",
            "category": "vip",
            "groups": ["retail"]
        }
    });
    let uri = format!("/v1/blocks/{blocked}");
    api.expect(
        req("PUT", &uri).bearer(&writer).json(block_body.clone()),
        201,
    )
    .await;
    api.expect(
        req("PUT", &uri).bearer(&writer).json(block_body.clone()),
        200,
    )
    .await;
    let expires_at = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    api.expect(
        req("PUT", "/v1/blocks/%2B16505551235")
            .bearer(&delegate)
            .header("x-on-behalf-of", "agent-7")
            .json(json!({
                "reason": "asked to stop",
                "scope": LINE,
                "source": "notification",
                "reason_code": "131026",
                "expires_at": expires_at
            })),
        201,
    )
    .await;
    api.expect(req("PUT", &uri).json(block_body.clone()), 401)
        .await;
    api.expect(
        req("PUT", &uri).bearer(&expired).json(block_body.clone()),
        401,
    )
    .await;
    api.expect(
        req("PUT", &uri).bearer(&reader).json(block_body.clone()),
        403,
    )
    .await;
    api.expect(
        req("PUT", &uri)
            .bearer(&writer)
            .header("x-on-behalf-of", "agent-7")
            .json(block_body.clone()),
        403,
    )
    .await;
    api.expect(req("PUT", &uri).bearer(&writer).raw("{\"reason\": "), 400)
        .await;
    api.expect(req("PUT", &uri).bearer(&writer), 400).await;
    api.expect(
        req("PUT", "/v1/blocks/not-a-number")
            .bearer(&writer)
            .json(json!({ "reason": "spam" })),
        422,
    )
    .await;
    api.expect(
        req("PUT", &uri)
            .bearer(&writer)
            .json(json!({ "reason": "spam", "source": "auto" })),
        422,
    )
    .await;
    api.expect(
        req("PUT", &uri)
            .bearer(&writer)
            .json(json!({ "reason": "spam", "colour": "red" })),
        422,
    )
    .await;
    let too_large = json!({ "reason": "x".repeat(1024 * 1024 + 1) });
    api.expect(
        req("PUT", &uri).bearer(&writer).json(too_large.clone()),
        413,
    )
    .await;

    // B6: a number's blocks, contact and chats.
    api.expect(req("GET", &uri).bearer(&reader), 200).await;
    api.expect(req("GET", "/v1/blocks/16505559999").bearer(&reader), 200)
        .await;
    api.expect(req("GET", "/v1/blocks/abc").bearer(&reader), 422)
        .await;
    api.expect(req("GET", format!("{uri}?scope=all")).bearer(&reader), 400)
        .await;
    api.expect(req("GET", &uri), 401).await;

    // B5: batch.
    api.expect(
        req("POST", "/v1/blocks:batch").bearer(&writer).json(json!({
            "action": "block",
            "numbers": ["+16505551236", "not a number", "16505551236", blocked],
            "reason": "spam campaign"
        })),
        200,
    )
    .await;
    api.expect(
        req("POST", "/v1/blocks:batch").bearer(&writer).json(json!({
            "action": "unblock",
            "numbers": ["+16505551236", "+16505551299"],
            "reason": "campaign reviewed",
            "scope": "all"
        })),
        200,
    )
    .await;
    api.expect(
        req("POST", "/v1/blocks:batch")
            .bearer(&writer)
            .json(json!({ "action": "block", "numbers": [], "reason": "x" })),
        422,
    )
    .await;
    api.expect(
        req("POST", "/v1/blocks:batch")
            .bearer(&reader)
            .json(json!({ "action": "block", "numbers": [blocked], "reason": "x" })),
        403,
    )
    .await;
    api.expect(
        req("POST", "/v1/blocks:batch").bearer(&writer).raw("[1,"),
        400,
    )
    .await;
    api.expect(
        req("POST", "/v1/blocks:batch")
            .bearer(&writer)
            .json(too_large.clone()),
        413,
    )
    .await;

    // B10: contacts.
    let contact = "+16505551237";
    let contact_uri = format!("/v1/contacts/{contact}");
    let contact_body = json!({
        "number": contact,
        "name": "Bruno Lima",
        "email": "bruno@example.com",
        "groups": ["wholesale"],
        "secondary_numbers": ["+16505551238"]
    });
    api.expect(
        req("PUT", &contact_uri)
            .bearer(&writer)
            .json(contact_body.clone()),
        201,
    )
    .await;
    api.expect(
        req("PUT", &contact_uri)
            .bearer(&writer)
            .json(json!({ "name": "Bruno" })),
        200,
    )
    .await;
    api.expect(
        req("PUT", &contact_uri)
            .bearer(&writer)
            .json(json!({ "email": "nope" })),
        422,
    )
    .await;
    api.expect(
        req("PUT", &contact_uri).bearer(&reader).json(contact_body),
        403,
    )
    .await;
    api.expect(req("GET", &contact_uri).bearer(&reader), 200)
        .await;
    api.expect(req("GET", "/v1/contacts/+16505551239").bearer(&reader), 404)
        .await;
    api.expect(req("GET", "/v1/contacts/123").bearer(&reader), 422)
        .await;

    // B80: consents.
    let consent_uri = format!("/v1/consents/{contact}");
    api.expect(
        req("PUT", &consent_uri)
            .bearer(&writer)
            .json(json!({ "phone_number_id": LINE, "marketing": "opted_out" })),
        200,
    )
    .await;
    api.expect(
        req("PUT", &consent_uri)
            .bearer(&writer)
            .json(json!({ "all": "maybe" })),
        422,
    )
    .await;
    api.expect(req("GET", &consent_uri).bearer(&reader), 200)
        .await;
    api.expect(req("GET", "/v1/consents/123").bearer(&reader), 422)
        .await;

    // B16: review.
    api.expect(req("GET", "/v1/blocks?review=due").bearer(&reader), 200)
        .await;
    api.expect(req("GET", "/v1/blocks?review=soon").bearer(&reader), 400)
        .await;
    api.expect(
        req("POST", format!("/v1/blocks/{blocked}/review"))
            .bearer(&writer)
            .json(json!({ "decision": "keep", "reason": "still spamming" })),
        200,
    )
    .await;
    api.expect(
        req("POST", format!("/v1/blocks/{blocked}/review"))
            .bearer(&writer)
            .json(json!({ "decision": "forget", "reason": "x" })),
        422,
    )
    .await;
    api.expect(
        req("POST", "/v1/blocks/+16505550999/review")
            .bearer(&writer)
            .json(json!({ "decision": "keep", "reason": "x" })),
        404,
    )
    .await;

    // B84: prefix rules.
    api.expect(
        req("PUT", "/v1/rules/wave")
            .bearer(&admin)
            .json(json!({ "prefix": "+234", "reason": "spam wave" })),
        201,
    )
    .await;
    api.expect(
        req("PUT", "/v1/rules/wave")
            .bearer(&admin)
            .json(json!({ "prefix": "+2348", "reason": "narrower", "scope": LINE })),
        200,
    )
    .await;
    api.expect(
        req("PUT", "/v1/rules/wave2")
            .bearer(&admin)
            .json(json!({ "prefix": "+2348", "reason": "twin", "scope": LINE })),
        409,
    )
    .await;
    api.expect(
        req("PUT", "/v1/rules/wave")
            .bearer(&admin)
            .json(json!({ "prefix": "+", "reason": "everything" })),
        422,
    )
    .await;
    api.expect(req("PUT", "/v1/rules/wave").bearer(&admin).raw("nope"), 400)
        .await;
    api.expect(
        req("PUT", "/v1/rules/wave")
            .bearer(&writer)
            .json(json!({ "prefix": "+1", "reason": "r" })),
        403,
    )
    .await;
    api.expect(req("GET", "/v1/rules").bearer(&reader), 200)
        .await;
    api.expect(req("GET", "/v1/rules?limit=0").bearer(&reader), 400)
        .await;
    api.expect(req("GET", "/v1/rules/wave").bearer(&reader), 200)
        .await;
    api.expect(req("GET", "/v1/rules/nope").bearer(&reader), 404)
        .await;
    api.expect(req("DELETE", "/v1/rules/wave").bearer(&admin), 200)
        .await;
    api.expect(req("DELETE", "/v1/rules/wave").bearer(&admin), 404)
        .await;

    // B91: a CSV import, its progress and its results.
    let file = "number,reason\n+16505557001,spam\nnot a number,spam\n";
    let created = api
        .expect(req("POST", "/v1/imports").bearer(&writer).csv(file), 202)
        .await;
    let import = created["id"].as_str().unwrap_or_default().to_owned();
    api.expect(
        req("POST", "/v1/imports").bearer(&writer).csv("phone\n1\n"),
        422,
    )
    .await;
    api.expect(req("POST", "/v1/imports").bearer(&reader).csv(file), 403)
        .await;
    api.expect(
        req("GET", format!("/v1/imports/{import}")).bearer(&reader),
        200,
    )
    .await;
    api.expect(
        req("GET", "/v1/imports/01M8YBG0DZM7WJ14R2JNXERH27").bearer(&reader),
        404,
    )
    .await;
    let results = format!("/v1/imports/{import}/results");
    api.expect(req("GET", &results).bearer(&reader), 200).await;
    api.expect(
        req("GET", format!("{results}?status=failed"))
            .bearer(&reader)
            .header("accept", "text/csv"),
        200,
    )
    .await;
    api.expect(
        req("GET", format!("{results}?status=x")).bearer(&reader),
        400,
    )
    .await;

    // B90: the console, without a token.
    api.expect(req("GET", "/console?code=abc&state=def"), 200)
        .await;
    for file in ["console.js", "console.css", "config.json"] {
        api.expect(req("GET", format!("/console/{file}")), 200)
            .await;
    }
    api.expect(req("GET", "/console/other.js"), 404).await;

    // B30–B33: the send proxy, through the local Graph sandbox.
    let messages = format!("/v1/{LINE}/messages");
    api.expect(
        req("POST", &messages)
            .bearer(&sender)
            .json(text_to(contact)),
        200,
    )
    .await;
    let refused = api
        .expect(
            req("POST", &messages)
                .bearer(&sender)
                .json(text_to(blocked)),
            403,
        )
        .await;
    assert_eq!(refused["error"]["type"], "BlocklistRefusal", "{refused}");
    api.expect(
        req("POST", &messages)
            .bearer(&sender)
            .json(json!({ "type": "text", "text": { "body": "hi" } })),
        422,
    )
    .await;
    api.expect(req("POST", &messages).bearer(&sender).raw(""), 400)
        .await;
    api.expect(req("POST", &messages).json(text_to(contact)), 401)
        .await;
    api.expect(
        req("POST", &messages)
            .bearer(&writer)
            .json(text_to(contact)),
        403,
    )
    .await;
    api.expect(
        req("POST", &messages)
            .bearer(&sender)
            .json(too_large.clone()),
        413,
    )
    .await;
    let check = format!("/v1/{LINE}/recipients:check");
    api.expect(
        req("POST", &check)
            .bearer(&sender)
            .json(json!({ "numbers": [contact, blocked, "nope"] })),
        200,
    )
    .await;
    api.expect(req("POST", &check).bearer(&sender).json(json!({})), 422)
        .await;
    api.expect(req("POST", &check).bearer(&sender).raw("{"), 400)
        .await;
    api.expect(req("POST", &check).json(json!({ "numbers": [] })), 401)
        .await;
    api.expect(
        req("POST", &check)
            .bearer(&reader)
            .json(json!({ "numbers": [] })),
        403,
    )
    .await;

    // B20–B28: the webhook.
    api.expect(
        req(
            "GET",
            format!(
                "/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
            ),
        ),
        200,
    )
    .await;
    api.expect(
        req(
            "GET",
            "/webhook?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1158201444",
        ),
        403,
    )
    .await;
    api.expect(
        req("POST", "/webhook").signed(&inbound("wamid.OPENAPI1", "16505551234")),
        200,
    )
    .await;
    api.expect(
        req("POST", "/webhook").signed(&inbound("wamid.OPENAPI2", "16505551240")),
        200,
    )
    .await;
    api.expect(
        req("POST", "/webhook").signed(br#"{"object":"page","entry":[]}"#),
        200,
    )
    .await;
    api.expect(
        req("POST", "/webhook").raw(inbound("wamid.OPENAPI3", "16505551240")),
        401,
    )
    .await;
    api.expect(req("POST", "/webhook").signed(b"not json"), 400)
        .await;
    api.expect(
        req("POST", "/webhook").raw(vec![b' '; MAX_WEBHOOK_BODY_BYTES + 1]),
        413,
    )
    .await;

    // B60–B62, B35: subjects. A delivery shows a number and its BSUID
    // together (B61); the number is blocked; a message carrying only the
    // BSUID is suppressed, and the BSUID's view shows the link and the
    // number's block. Then BSUIDs on the other routes and in sends.
    let linked_number = "+16505551250";
    let linked_user = "US.13491208655302741918";
    api.expect(
        req("POST", "/webhook").signed(&inbound_as(
            "wamid.OPENAPIBSUID1",
            Some("16505551250"),
            linked_user,
        )),
        200,
    )
    .await;
    api.expect(
        req("PUT", format!("/v1/blocks/{linked_number}"))
            .bearer(&writer)
            .json(json!({ "reason": "abusive messages" })),
        201,
    )
    .await;
    let ack = api
        .expect(
            req("POST", "/webhook").signed(&inbound_as("wamid.OPENAPIBSUID2", None, linked_user)),
            200,
        )
        .await;
    assert_eq!(ack["suppressed"], 1, "{ack}");
    let view = api
        .expect(
            req("GET", format!("/v1/blocks/{linked_user}")).bearer(&reader),
            200,
        )
        .await;
    assert_eq!(view["number"], Value::Null, "{view}");
    assert_eq!(view["linked_blocks"][0]["subject"], linked_number, "{view}");
    assert_eq!(view["links"][0]["user_id"], linked_user, "{view}");
    api.expect(
        req("GET", format!("/v1/blocks/{linked_number}")).bearer(&reader),
        200,
    )
    .await;
    api.expect(
        req("GET", format!("/v1/numbers/{linked_user}/history")).bearer(&reader),
        200,
    )
    .await;
    let bad_user = api
        .expect(req("GET", "/v1/blocks/US.13-49").bearer(&reader), 422)
        .await;
    assert_eq!(bad_user["error"]["code"], "invalid_user_id", "{bad_user}");

    let blocked_user = "US.ENT.11815799212886844830";
    let block = api
        .expect(
            req("PUT", format!("/v1/blocks/{blocked_user}"))
                .bearer(&writer)
                .json(json!({ "reason": "spam", "scope": LINE })),
            201,
        )
        .await;
    assert_eq!(block["subject"], blocked_user, "{block}");
    api.expect(
        req("PUT", format!("/v1/contacts/{blocked_user}"))
            .bearer(&writer)
            .json(json!({ "subject": blocked_user, "name": "Sheena Nelson" })),
        201,
    )
    .await;
    api.expect(
        req("POST", "/v1/blocks:batch").bearer(&writer).json(json!({
            "action": "block",
            "numbers": ["BR.abcDEF123", "US.13 49", "+16505551251"],
            "reason": "spam campaign"
        })),
        200,
    )
    .await;

    // B35: `recipient` sends, checked like `to`; mark-as-read forwarded.
    let recipient_to = |recipient: &str| {
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "recipient": recipient,
            "type": "text",
            "text": { "body": "Your order has shipped" }
        })
    };
    api.expect(
        req("POST", &messages)
            .bearer(&sender)
            .json(recipient_to("US.16505551252")),
        200,
    )
    .await;
    let refused = api
        .expect(
            req("POST", &messages)
                .bearer(&sender)
                .json(recipient_to(linked_user)),
            403,
        )
        .await;
    assert_eq!(
        refused["error"]["error_data"]["recipient"], linked_user,
        "{refused}"
    );
    api.expect(
        req("POST", &messages)
            .bearer(&sender)
            .json(recipient_to(blocked_user)),
        403,
    )
    .await;
    let mismatch = api
        .expect(
            req("POST", &messages).bearer(&sender).json(json!({
                "messaging_product": "whatsapp",
                "to": linked_number,
                "recipient": "US.99999999",
                "type": "text",
                "text": { "body": "Hello" }
            })),
            422,
        )
        .await;
    assert_eq!(
        mismatch["error"]["error_data"]["reason"], "recipient_mismatch",
        "{mismatch}"
    );
    api.expect(
        req("POST", &messages)
            .bearer(&sender)
            .json(recipient_to("US.bad-id")),
        422,
    )
    .await;
    let read = api
        .expect(
            req("POST", &messages).bearer(&sender).json(json!({
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": "wamid.OPENAPIBSUID1",
                "typing_indicator": { "type": "text" }
            })),
            200,
        )
        .await;
    assert_eq!(read["success"], true, "{read}");
    api.expect(
        req("POST", &check).bearer(&sender).json(json!({
            "numbers": [linked_user, blocked_user, "US.16505551252", "US.13-49"]
        })),
        200,
    )
    .await;

    // B62: carry_blocks_on_change, read and changed.
    let carry = api
        .expect(
            req("PUT", "/v1/settings/default")
                .bearer(&admin)
                .json(json!({ "carry_blocks_on_change": false })),
            200,
        )
        .await;
    assert_eq!(carry["carry_blocks_on_change"], false, "{carry}");
    api.expect(
        req("PUT", "/v1/settings/default")
            .bearer(&admin)
            .json(json!({ "carry_blocks_on_change": "no" })),
        422,
    )
    .await;

    // B11: chats (made by the send and the webhook above).
    api.expect(req("GET", "/v1/chats").bearer(&reader), 200)
        .await;
    api.expect(
        req(
            "GET",
            format!("/v1/chats?status=blocked&phone_number_id={LINE}&limit=1"),
        )
        .bearer(&reader),
        200,
    )
    .await;
    api.expect(req("GET", "/v1/chats?status=bogus").bearer(&reader), 400)
        .await;
    api.expect(req("GET", "/v1/chats").bearer(&sender), 403)
        .await;
    api.expect(
        req("GET", format!("/v1/chats/{LINE}/{contact}")).bearer(&reader),
        200,
    )
    .await;
    api.expect(
        req("GET", format!("/v1/chats/{LINE}/16505551240")).bearer(&reader),
        200,
    )
    .await;
    api.expect(
        req("GET", format!("/v1/chats/{LINE}/+16505551241")).bearer(&reader),
        404,
    )
    .await;
    api.expect(
        req("GET", format!("/v1/chats/abc/{contact}")).bearer(&reader),
        422,
    )
    .await;

    // B12: settings; then B32, an unknown recipient refused.
    let settings = format!("/v1/settings/{LINE}");
    api.expect(req("GET", "/v1/settings/default").bearer(&reader), 200)
        .await;
    api.expect(req("GET", &settings).bearer(&reader), 200).await;
    api.expect(req("GET", "/v1/settings/abc").bearer(&reader), 422)
        .await;
    api.expect(req("GET", &settings), 401).await;
    api.expect(
        req("PUT", &settings).bearer(&admin).json(json!({
            "phone_number_id": LINE,
            "allow_unknown_numbers": false,
            "auto_block": { "threshold": 2, "error_codes": [131026, 131049] }
        })),
        200,
    )
    .await;
    api.expect(
        req("PUT", &settings)
            .bearer(&writer)
            .json(json!({ "allow_unknown_numbers": true })),
        403,
    )
    .await;
    api.expect(
        req("PUT", &settings)
            .bearer(&admin)
            .json(json!({ "auto_block": { "threshold": 0 } })),
        422,
    )
    .await;
    api.expect(req("PUT", &settings).bearer(&admin).raw("nope"), 400)
        .await;
    let unknown = api
        .expect(
            req("POST", &messages)
                .bearer(&sender)
                .json(text_to("+16505551242")),
            403,
        )
        .await;
    assert_eq!(
        unknown["error"]["error_data"]["reason"], "recipient_unknown",
        "{unknown}"
    );
    api.expect(
        req("POST", &check)
            .bearer(&sender)
            .json(json!({ "numbers": ["+16505551242", contact] })),
        200,
    )
    .await;

    // B7: listing, with every filter and a cursor.
    let page = api
        .expect(req("GET", "/v1/blocks?limit=1").bearer(&reader), 200)
        .await;
    if let Some(cursor) = page["next_cursor"].as_str() {
        api.expect(
            req("GET", format!("/v1/blocks?limit=1&cursor={cursor}")).bearer(&reader),
            200,
        )
        .await;
    } else {
        api.problems
            .push("GET /v1/blocks?limit=1 gave no next_cursor with two blocks".into());
    }
    api.expect(
        req(
            "GET",
            "/v1/blocks?scope=all&source=manual&since=2020-01-01&until=2100-01-01T00:00:00Z&category=vip&group=retail&q=ana&limit=10",
        )
        .bearer(&reader),
        200,
    )
    .await;
    api.expect(req("GET", "/v1/blocks?limit=0").bearer(&reader), 400)
        .await;
    api.expect(req("GET", "/v1/blocks?cursor=garbage").bearer(&reader), 400)
        .await;
    api.expect(req("GET", "/v1/blocks").bearer(&sender), 403)
        .await;

    // B2: unblock.
    api.expect(
        req("DELETE", format!("{uri}?scope=all"))
            .bearer(&writer)
            .json(json!({ "reason": "resolved with the customer" })),
        200,
    )
    .await;
    api.expect(
        req("DELETE", &uri)
            .bearer(&writer)
            .json(json!({ "reason": "again" })),
        404,
    )
    .await;
    api.expect(req("DELETE", &uri).bearer(&writer), 400).await;
    api.expect(
        req("DELETE", "/v1/blocks/%2B16505551235?scope=all")
            .bearer(&writer)
            .json(json!({ "reason": "x", "scope": LINE })),
        422,
    )
    .await;
    api.expect(
        req("DELETE", &uri)
            .bearer(&reader)
            .json(json!({ "reason": "x" })),
        403,
    )
    .await;
    api.expect(req("DELETE", &uri).bearer(&writer).json(too_large), 413)
        .await;

    // B8: history and the audit feed, after every kind of event above.
    let history = format!("/v1/numbers/{blocked}/history");
    let page = api
        .expect(
            req("GET", format!("{history}?limit=1")).bearer(&reader),
            200,
        )
        .await;
    if let Some(cursor) = page["next_cursor"].as_str() {
        api.expect(
            req("GET", format!("{history}?limit=200&cursor={cursor}")).bearer(&reader),
            200,
        )
        .await;
    } else {
        api.problems
            .push(format!("GET {history}?limit=1 gave no next_cursor"));
    }
    api.expect(req("GET", "/v1/numbers/abc/history").bearer(&reader), 422)
        .await;
    api.expect(
        req("GET", format!("{history}?cursor=bad")).bearer(&reader),
        400,
    )
    .await;
    let feed = api
        .expect(req("GET", "/v1/audit?limit=200").bearer(&reader), 200)
        .await;
    let actions: BTreeSet<&str> = feed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "blocked",
        "unblocked",
        "contact_updated",
        "inbound_suppressed",
        "outbound_refused",
        "settings_changed",
        "identity_linked",
    ] {
        if !actions.contains(action) {
            api.problems.push(format!(
                "GET /v1/audit has no {action} event to validate (has {actions:?})"
            ));
        }
    }
    let page = api
        .expect(req("GET", "/v1/audit?limit=1").bearer(&reader), 200)
        .await;
    if let Some(cursor) = page["next_cursor"].as_str() {
        api.expect(
            req("GET", format!("/v1/audit?limit=1&cursor={cursor}")).bearer(&reader),
            200,
        )
        .await;
    }
    api.expect(
        req("GET", "/v1/audit?action=blocked&since=2020-01-01").bearer(&reader),
        200,
    )
    .await;
    api.expect(req("GET", "/v1/audit?action=bogus").bearer(&reader), 400)
        .await;
    api.expect(req("GET", "/v1/audit"), 401).await;

    // B9: stats.
    api.expect(req("GET", "/v1/stats").bearer(&reader), 200)
        .await;
    api.expect(
        req("GET", "/v1/stats?from=2026-01-01&to=2026-01-03").bearer(&reader),
        200,
    )
    .await;
    api.expect(
        req("GET", "/v1/stats?from=2026-01-10&to=2026-01-01").bearer(&reader),
        400,
    )
    .await;
    api.expect(req("GET", "/v1/stats").bearer(&sender), 403)
        .await;

    // 405: a method each documented path does not have.
    let paths: Vec<String> = api.contract.doc["paths"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for path in paths {
        let concrete = path
            .replace("{subject}", "+16505551234")
            .replace("{phone_number_id}", LINE);
        api.expect_method_not_allowed(&path, &concrete).await;
    }

    let mut problems = std::mem::take(&mut api.problems);
    problems.extend(api.uncovered());
    server.stop().await;
    assert!(
        problems.is_empty(),
        "the API and openapi.yaml disagree ({} problems):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}
