//! Test harness: a fresh set of tables in DynamoDB Local per test, created
//! from `template.yaml`, and calls into the real handlers with the event
//! shapes API Gateway sends.
//!
//! `scripts/test` starts DynamoDB Local and sets `AWS_ENDPOINT_URL_DYNAMODB`.

mod relay;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use blocklist::http::auth::Authenticator;
use blocklist::store::{Store, Tables};
use chrono::{DateTime, Utc};
use serde_json::Value;

pub use relay::{DynamoCall, DynamoRelay, Rewrite, TableAccess};

pub const JWT_SECRET: &[u8] = b"test-jwt-secret";

/// A handler's tables, made for one test.
#[derive(Clone)]
pub struct TestStack {
    pub client: Client,
    pub tables: Tables,
    pub store: Store,
}

impl TestStack {
    /// New, empty tables with a unique prefix, so tests run in parallel.
    pub async fn new() -> TestStack {
        let client = dynamodb_client(&endpoint());
        let prefix = unique_prefix();
        let tables = create_tables_from_template(&client, &prefix).await;
        let store = Store::new(client.clone(), tables.clone());
        TestStack {
            client,
            tables,
            store,
        }
    }

    /// A chat of `subject` on business number `line`, as a first inbound
    /// message leaves it: active, session open, not a known contact.
    pub async fn chat_with(&self, line: &str, subject: &str) {
        self.store
            .record_inbound(
                &blocklist::model::PhoneNumberId::parse(line).expect("a business number id"),
                &blocklist::Subject::parse(subject).expect("a number or BSUID"),
                chrono::Utc::now(),
                blocklist::model::ChatStatus::Active,
                false,
            )
            .await
            .expect("the chat is recorded");
    }

    /// The block API wired to these tables, authenticating local HS256
    /// tokens signed with [`JWT_SECRET`].
    pub fn block_api(&self) -> block_api::App {
        block_api::App::new(self.store.clone(), Authenticator::local_hs256(JWT_SECRET))
    }

    /// A store on these tables whose calls go through `relay`.
    pub fn store_via(&self, relay: &DynamoRelay) -> Store {
        Store::new(dynamodb_client(relay.url()), self.tables.clone())
    }

    /// Every item of every table, by table (`Blocklist`, `Audit`,
    /// `Chats`, …), each item as DynamoDB JSON, sorted: a full `Scan`, fine
    /// for a test's own tables. Two snapshots are equal when no table
    /// changed in between.
    pub async fn raw_items(&self) -> BTreeMap<&'static str, Vec<Value>> {
        let mut out = BTreeMap::new();
        for (name, table) in [
            ("Blocklist", &self.tables.blocklist),
            ("Audit", &self.tables.audit),
            ("Chats", &self.tables.chats),
            ("Failures", &self.tables.failures),
            ("Imports", &self.tables.imports),
            ("Messages", &self.tables.messages),
        ] {
            let mut items = Vec::new();
            let mut start = None;
            loop {
                let page = self
                    .client
                    .scan()
                    .table_name(table)
                    .consistent_read(true)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("scan {table}: {e:?}"));
                for item in page.items.unwrap_or_default() {
                    items.push(
                        serde_json::to_value(serde_dynamo::Item::from(item)).expect("item JSON"),
                    );
                }
                match page.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
            items.sort_by_key(Value::to_string);
            out.insert(name, items);
        }
        out
    }
}

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect(
        "AWS_ENDPOINT_URL_DYNAMODB is not set: run the tests with scripts/test, \
         which starts DynamoDB Local",
    )
}

pub fn dynamodb_client(endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// Creates every table of the template as `<prefix>-<LogicalId>`.
pub async fn create_tables_from_template(client: &Client, prefix: &str) -> Tables {
    let tables = wa_dev::tables::table_names(Some(prefix));
    wa_dev::tables::create_tables(client, &wa_dev::tables::template_text(), &tables)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tables
}

/// An HS256 token for the local API, valid for an hour.
pub fn token(subject: &str, scopes: &[&str]) -> String {
    token_with(subject, scopes, 3600, JWT_SECRET)
}

/// A token expiring `expires_in` seconds from now (negative: expired),
/// signed with `secret`.
pub fn token_with(subject: &str, scopes: &[&str], expires_in: i64, secret: &[u8]) -> String {
    wa_dev::tokens::mint(subject, scopes, expires_in, secret)
}

/// An HTTP request to a handler, as API Gateway (HTTP API, payload 2.0)
/// delivers it.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    /// Path and query string, e.g. `/v1/blocks?limit=2`.
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// JWT authorizer claims, as API Gateway puts them in the context.
    pub jwt_claims: Option<Value>,
}

impl ApiRequest {
    pub fn new(method: &str, uri: &str) -> Self {
        ApiRequest {
            method: method.to_owned(),
            uri: uri.to_owned(),
            ..Default::default()
        }
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body.to_string());
        self.header("content-type", "application/json")
    }

    pub fn raw_body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }

    /// The API Gateway v2 event JSON for this request.
    pub fn event(&self) -> Value {
        wa_dev::apigw::event(&self.http())
    }

    pub fn to_lambda(&self) -> lambda_http::Request {
        wa_dev::apigw::to_lambda(&self.http()).expect("valid API Gateway event")
    }

    fn http(&self) -> wa_dev::apigw::HttpRequest {
        wa_dev::apigw::HttpRequest {
            method: self.method.clone(),
            uri: self.uri.clone(),
            headers: self.headers.clone(),
            body: self.body.clone().map(String::into_bytes),
            jwt_claims: self.jwt_claims.clone(),
        }
    }
}

/// A handler's answer: status, headers and JSON body (`Value::Null` when
/// empty).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub body: Value,
}

impl ApiResponse {
    /// The header `name`, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn read_response(response: lambda_http::Response<lambda_http::Body>) -> ApiResponse {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes: Vec<u8> = match response.into_body() {
        lambda_http::Body::Text(text) => text.into_bytes(),
        lambda_http::Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    ApiResponse {
        status,
        headers,
        body,
    }
}

/// Sends `request` to the block API.
pub async fn call_block_api(app: &block_api::App, request: ApiRequest) -> ApiResponse {
    read_response(block_api::handle(app, request.to_lambda()).await)
}

/// Offsets of the [`TestClock`]s, in milliseconds.
static CLOCK_OFFSETS: [AtomicI64; 8] = [const { AtomicI64::new(0) }; 8];

/// A clock for the apps' `now: fn() -> DateTime<Utc>` field that a test
/// moves instead of sleeping: `TestClock::<SLOT>::now` is a plain fn that
/// reads the wall clock plus its slot's offset. Tests run in parallel in
/// one process, so each test that moves a clock takes a slot of its own
/// (in use: 0 `block_api::records`, 1 `send_proxy::sending`).
pub struct TestClock<const SLOT: usize>;

impl<const SLOT: usize> TestClock<SLOT> {
    /// For `app.now`.
    pub fn now() -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(CLOCK_OFFSETS[SLOT].load(Ordering::SeqCst))
    }

    /// The clock reads `at` now, and runs on from there.
    pub fn set(at: DateTime<Utc>) {
        let offset = (at - Utc::now()).num_milliseconds();
        CLOCK_OFFSETS[SLOT].store(offset, Ordering::SeqCst);
    }

    /// Moves the clock on by `by`.
    pub fn advance(by: chrono::Duration) {
        CLOCK_OFFSETS[SLOT].fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

/// The sum of `counter` over every day of a `GET /v1/stats` answer: the
/// count of a test's own tables whatever day (UTC) its events fell on.
pub fn stats_total(stats: &Value, counter: &str) -> u64 {
    let days = stats["days"]
        .as_array()
        .unwrap_or_else(|| panic!("a stats answer expected, got {stats}"));
    days.iter()
        .map(|day| {
            day[counter]
                .as_u64()
                .unwrap_or_else(|| panic!("no {counter} count in {day}"))
        })
        .sum()
}
