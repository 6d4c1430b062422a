//! HTTP request → API Gateway HTTP API (payload 2.0) event, as Lambda
//! receives it behind API Gateway.

use base64::Engine;
use serde_json::{Map, Value, json};

/// One HTTP request, as received.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query string, as on the wire (`/v1/blocks?limit=2`).
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Claims a JWT authorizer would have put in the request context.
    pub jwt_claims: Option<Value>,
}

/// The event API Gateway sends for `request`.
pub fn event(request: &HttpRequest) -> Value {
    let (path, query) = request.uri.split_once('?').unwrap_or((&request.uri, ""));
    let mut parameters = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode_component(k), decode_component(v));
        // API Gateway joins repeated parameters with commas.
        let joined = match parameters.get(&k).and_then(Value::as_str) {
            Some(previous) => format!("{previous},{v}"),
            None => v,
        };
        parameters.insert(k, Value::String(joined));
    }
    let mut headers = Map::new();
    for (k, v) in &request.headers {
        let k = k.to_lowercase();
        let joined = match headers.get(&k).and_then(Value::as_str) {
            Some(previous) => format!("{previous},{v}"),
            None => v.clone(),
        };
        headers.insert(k, Value::String(joined));
    }
    let now = chrono::Utc::now();
    let mut context = json!({
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "localhost",
        "domainPrefix": "localhost",
        "http": {
            "method": request.method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": headers.get("user-agent").cloned().unwrap_or(Value::String(String::new()))
        },
        "requestId": new_request_id(),
        "routeKey": "$default",
        "stage": "$default",
        "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
        "timeEpoch": now.timestamp_millis()
    });
    if let Some(claims) = &request.jwt_claims {
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
    if let Some(body) = &request.body {
        // Text bodies pass as text; anything else base64, as API Gateway does.
        match std::str::from_utf8(body) {
            Ok(text) => event["body"] = Value::String(text.to_owned()),
            Err(_) => {
                event["body"] =
                    Value::String(base64::engine::general_purpose::STANDARD.encode(body));
                event["isBase64Encoded"] = Value::Bool(true);
            }
        }
    }
    event
}

/// The request as `lambda_http` hands it to a handler.
pub fn to_lambda(request: &HttpRequest) -> Result<lambda_http::Request, String> {
    lambda_http::request::from_str(&event(request).to_string()).map_err(|e| e.to_string())
}

fn decode_component(raw: &str) -> String {
    percent_encoding::percent_decode_str(&raw.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// A fresh request id, as API Gateway and Lambda give each request.
pub fn new_request_id() -> String {
    format!(
        "local-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

/// The API Gateway request id of a request made by [`to_lambda`].
pub fn request_id_of(request: &lambda_http::Request) -> String {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        _ => None,
    }
    .unwrap_or_else(new_request_id)
}
