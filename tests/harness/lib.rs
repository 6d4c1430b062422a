//! Test harness: a fresh set of tables in DynamoDB Local per test, created
//! from `template.yaml`, and calls into the real handlers with the event
//! shapes API Gateway sends.
//!
//! `scripts/test` starts DynamoDB Local and sets `AWS_ENDPOINT_URL_DYNAMODB`.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use blocklist::http::auth::Authenticator;
use blocklist::store::{Store, Tables};
use serde_json::{Value, json};

pub const JWT_SECRET: &[u8] = b"test-jwt-secret";

/// A handler's tables, made for one test.
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

    /// The block API wired to these tables, authenticating local HS256
    /// tokens signed with [`JWT_SECRET`].
    pub fn block_api(&self) -> block_api::App {
        block_api::App::new(self.store.clone(), Authenticator::local_hs256(JWT_SECRET))
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

/// The `AWS::DynamoDB::Table` resources of `template.yaml`, by logical id.
pub fn template_tables() -> Vec<(String, serde_yaml::Value)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).expect("read template.yaml");
    let template: serde_yaml::Value = serde_yaml::from_str(&text).expect("parse template.yaml");
    let resources = template["Resources"]
        .as_mapping()
        .expect("Resources")
        .clone();
    resources
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::DynamoDB::Table"))
        .map(|(id, r)| {
            (
                id.as_str().unwrap_or_default().to_owned(),
                r["Properties"].clone(),
            )
        })
        .collect()
}

/// Creates every table of the template as `<prefix>-<LogicalId>`.
pub async fn create_tables_from_template(client: &Client, prefix: &str) -> Tables {
    let mut names = std::collections::HashMap::new();
    for (logical_id, properties) in template_tables() {
        let name = format!("{prefix}-{logical_id}");
        let mut request = client
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(&properties["KeySchema"])));
        for attribute in properties["AttributeDefinitions"]
            .as_sequence()
            .expect("attributes")
        {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute["AttributeName"].as_str().expect("name"))
                    .attribute_type(ScalarAttributeType::from(
                        attribute["AttributeType"].as_str().expect("type"),
                    ))
                    .build()
                    .expect("attribute definition"),
            );
        }
        if let Some(indexes) = properties["GlobalSecondaryIndexes"].as_sequence() {
            for index in indexes {
                request = request.global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(index["IndexName"].as_str().expect("index name"))
                        .set_key_schema(Some(key_schema(&index["KeySchema"])))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .expect("index"),
                );
            }
        }
        request.send().await.unwrap_or_else(|e| {
            panic!(
                "create table {name}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        });
        names.insert(logical_id, name);
    }
    let take = |id: &str| {
        names
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("template lacks {id}"))
    };
    Tables {
        blocklist: take("BlocklistTable"),
        audit: take("AuditTable"),
        chats: take("ChatsTable"),
    }
}

fn key_schema(value: &serde_yaml::Value) -> Vec<KeySchemaElement> {
    value
        .as_sequence()
        .expect("KeySchema")
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(k["AttributeName"].as_str().expect("name"))
                .key_type(KeyType::from(k["KeyType"].as_str().expect("key type")))
                .build()
                .expect("key schema")
        })
        .collect()
}

/// An HS256 token for the local API, valid for an hour.
pub fn token(subject: &str, scopes: &[&str]) -> String {
    token_with(subject, scopes, 3600, JWT_SECRET)
}

/// A token expiring `expires_in` seconds from now (negative: expired),
/// signed with `secret`.
pub fn token_with(subject: &str, scopes: &[&str], expires_in: i64, secret: &[u8]) -> String {
    let exp = chrono::Utc::now().timestamp() + expires_in;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": subject, "scope": scopes.join(" "), "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign token")
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
        let (path, query) = self.uri.split_once('?').unwrap_or((&self.uri, ""));
        let mut parameters = serde_json::Map::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let (k, v) = (decode(k), decode(v));
            // API Gateway joins repeated parameters with commas.
            let joined = match parameters.get(&k).and_then(Value::as_str) {
                Some(previous) => format!("{previous},{v}"),
                None => v,
            };
            parameters.insert(k, Value::String(joined));
        }
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_lowercase(), Value::String(v.clone())))
            .collect();
        let mut context = json!({
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": self.method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "integration-tests"
            },
            "requestId": "test-request",
            "routeKey": "$default",
            "stage": "$default",
            "time": "23/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795000000000u64
        });
        if let Some(claims) = &self.jwt_claims {
            context["authorizer"] = json!({ "jwt": { "claims": claims, "scopes": null } });
        }
        let mut event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers,
            "requestContext": context,
            "isBase64Encoded": false
        });
        if !parameters.is_empty() {
            event["queryStringParameters"] = Value::Object(parameters);
        }
        if let Some(body) = &self.body {
            event["body"] = Value::String(body.clone());
        }
        event
    }

    pub fn to_lambda(&self) -> lambda_http::Request {
        lambda_http::request::from_str(&self.event().to_string()).expect("valid API Gateway event")
    }
}

/// A handler's answer: status and JSON body (`Value::Null` when empty).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

pub fn read_response(response: lambda_http::Response<lambda_http::Body>) -> ApiResponse {
    let status = response.status().as_u16();
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
    ApiResponse { status, body }
}

/// Sends `request` to the block API.
pub async fn call_block_api(app: &block_api::App, request: ApiRequest) -> ApiResponse {
    read_response(block_api::handle(app, request.to_lambda()).await)
}
