//! Parsing requests at the edge: bodies, query parameters and path numbers
//! become validated values or a B50 error, never a panic.

use lambda_http::{Body, Request, RequestExt};
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::identity::{Subject, SubjectError};
use crate::model::PhoneNumberId;
use crate::number::Number;

/// `/v1/` bodies larger than this get 413 (B50).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Webhook bodies larger than this get 413 (B28). Meta documents deliveries
/// of up to 3 MB, and a delivery we refuse is retried for 7 days and then
/// lost, so the limit is not Meta's figure but the largest body that can
/// reach the function at all: Lambda's 6 MB synchronous invocation payload
/// (the HTTP API's own 10 MB is looser). The limit applies to the decoded
/// body. The event that carries a body is larger than the body (JSON
/// escaping, base64, headers), so on AWS Lambda refuses such an event a
/// little before this limit; the check here holds where nothing in front
/// does, as in the local stack.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 6 * 1024 * 1024;

/// The body of a `/v1/` request, at most [`MAX_BODY_BYTES`].
pub fn body_bytes(request: &Request) -> Result<&[u8], ApiError> {
    let bytes = body_of(request);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large());
    }
    Ok(bytes)
}

/// The body of a webhook delivery (B21, B28), at most
/// [`MAX_WEBHOOK_BODY_BYTES`]: the bytes Meta signed.
///
/// API Gateway hands the function some bodies base64-encoded
/// (`isBase64Encoded: true`); `lambda_http` decodes those while building the
/// request (`Body::from_maybe_encoded`), so the body here is already the
/// decoded bytes, and both the signature and the limit apply to them. The
/// flag itself does not survive into the request, so decoding again here
/// would corrupt bodies that merely look like base64. (`lambda_http` panics
/// on a flagged body that is not base64; API Gateway never sends one.)
pub fn webhook_body_bytes(request: &Request) -> Result<&[u8], ApiError> {
    let bytes = body_of(request);
    if bytes.len() > MAX_WEBHOOK_BODY_BYTES {
        return Err(ApiError::too_large_for("6 MiB"));
    }
    Ok(bytes)
}

/// The body of a CSV import (B91), at most
/// [`crate::import::MAX_FILE_BYTES`].
pub fn import_body_bytes(request: &Request) -> Result<&[u8], ApiError> {
    let bytes = body_of(request);
    if bytes.len() > crate::import::MAX_FILE_BYTES {
        return Err(ApiError::new(
            413,
            "payload_too_large",
            format!(
                "the file is larger than 4 MiB; split it into files of at most 4 MiB and {} rows",
                crate::import::MAX_ROWS
            ),
        ));
    }
    Ok(bytes)
}

fn body_of(request: &Request) -> &[u8] {
    match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// Parses a JSON body into `T`. Broken JSON is 400 `malformed_json`; JSON of
/// the wrong shape (unknown field, wrong type, missing field) is 422
/// `invalid_field` naming the field where serde can tell.
pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(request)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "missing_body",
            "a JSON body is required",
        ));
    }
    parse_json(bytes)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |error: serde_json::Error| {
        ApiError::bad_request("malformed_json", format!("body is not valid JSON: {error}"))
    };
    // Syntax first: a typed parse stops at the first missing field, before it
    // sees trailing junk, and broken JSON must be 400 whatever `T` expects.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(malformed)?;
    // Typed from the bytes, not from a parsed value: a repeated key (a
    // blocked `to` behind an allowed one) must stay an error.
    serde_json::from_slice(bytes).map_err(|error| {
        use serde_json::error::Category;
        // serde_json calls some type mismatches syntax errors (`true` where
        // a string enum is expected); the checks the skim above does not
        // make (UTF-8 in strings, surrogates, nesting depth) fail a full
        // parse too, and stay 400.
        let mismatch = error.classify() == Category::Data
            || serde_json::from_slice::<serde_json::Value>(bytes).is_ok();
        if !mismatch {
            return malformed(error);
        }
        let message = error.to_string();
        let field = field_of(&message);
        let mut api = ApiError::new(422, "invalid_field", strip_position(&message));
        api.field = field;
        api
    })
}

/// serde's messages name fields as "unknown field `x`" / "missing field `x`".
fn field_of(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    let name = &message[start..end];
    (message.starts_with("unknown field") || message.starts_with("missing field"))
        .then(|| name.to_owned())
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// Query parameters, refusing any not in `allowed` (a typo in a filter must
/// not silently widen a listing) and repeated ones.
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(request: &Request, allowed: &[&str]) -> Result<Query, ApiError> {
        let map = request.query_string_parameters();
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (key, value) in map.iter() {
            if !allowed.contains(&key) {
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!("unknown query parameter '{key}'"),
                )
                .with_field(key));
            }
            if pairs.iter().any(|(k, _)| k == key) {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("query parameter '{key}' is repeated"),
                )
                .with_field(key));
            }
            pairs.push((key.to_owned(), value.to_owned()));
        }
        Ok(Query { pairs })
    }

    /// Counts a path parameter among the listing's filters, so that a
    /// cursor of one number's listing is refused on another's.
    pub fn with_path_parameter(mut self, key: &str, value: &str) -> Query {
        self.pairs.push((format!("path:{key}"), value.to_owned()));
        self
    }

    /// The fingerprint of this listing's filters, which its cursors carry.
    pub fn filters(&self) -> String {
        crate::store::filters_fingerprint(self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The names of the parameters given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `limit`: 1–200, default 50 (B7).
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(50),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=200).contains(l))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_parameter",
                        "limit must be an integer from 1 to 200",
                    )
                    .with_field("limit")
                }),
        }
    }
}

/// A `{number}` path segment: `+1650…`, `%2B1650…` or `1650…`.
pub fn path_number(segment: &str) -> Result<Number, ApiError> {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    Number::parse(&decoded)
        .map_err(|e| ApiError::invalid("invalid_number", "number", format!("invalid number: {e}")))
}

/// A path segment, percent-decoded.
pub fn decoded_segment(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// A `{subject}` path segment: a number in any of the forms of
/// [`path_number`], or a BSUID (B60).
pub fn path_subject(segment: &str) -> Result<Subject, ApiError> {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    Subject::parse(&decoded).map_err(|e| subject_error(e, "number"))
}

/// A subject in a body field, a lenient WhatsApp number included (B63): a
/// reply to anyone who wrote in must be checked, not refused as invalid.
pub fn field_subject_as_seen(raw: &str, field: &str) -> Result<Subject, ApiError> {
    let strict = Subject::parse(raw);
    match strict {
        Err(SubjectError::Number(_)) => match Number::from_whatsapp_id(raw.trim()) {
            Ok(number) => Ok(Subject::Number(number)),
            Err(_) => strict.map_err(|e| subject_error(e, field)),
        },
        other => other.map_err(|e| subject_error(e, field)),
    }
}

/// A subject in a body field.
pub fn field_subject(raw: &str, field: &str) -> Result<Subject, ApiError> {
    Subject::parse(raw).map_err(|e| subject_error(e, field))
}

fn subject_error(error: SubjectError, field: &str) -> ApiError {
    match error {
        SubjectError::Number(e) => {
            ApiError::invalid("invalid_number", field, format!("invalid number: {e}"))
        }
        SubjectError::UserId => ApiError::invalid("invalid_user_id", field, error.to_string()),
    }
}

/// A number in a body field.
pub fn field_number(raw: &str, field: &str) -> Result<Number, ApiError> {
    Number::parse(raw)
        .map_err(|e| ApiError::invalid("invalid_number", field, format!("invalid number: {e}")))
}

pub fn path_phone_number_id(segment: &str) -> Result<PhoneNumberId, ApiError> {
    PhoneNumberId::parse(segment)
        .map_err(|e| ApiError::invalid("invalid_phone_number_id", "phone_number_id", e.to_string()))
}

/// The path split into decoded-later segments, without the empty ones.
pub fn segments(request: &Request) -> Vec<String> {
    request
        .raw_http_path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Typed {
        #[allow(dead_code)]
        mode: Mode,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        On,
    }

    #[test]
    fn b50_a_sound_body_of_the_wrong_type_is_422_and_broken_json_400() {
        let status = |body: &[u8]| parse_json::<Typed>(body).unwrap_err().status;
        assert_eq!(status(br#"{"mode": true}"#), 422, "a bool where an enum is");
        assert_eq!(status(br#"{"mode": "off"}"#), 422);
        assert_eq!(
            status(br#"{"mode": "on", "mode": "on"}"#),
            422,
            "a repeated key"
        );
        assert_eq!(status(br#"{"mode": "on""#), 400);
        assert_eq!(status(b"{\"mode\": \"\xff\"}"), 400, "not UTF-8");
        assert_eq!(status(br#"{"mode": "\ud800"}"#), 400, "a lone surrogate");
        assert!(parse_json::<Typed>(br#"{"mode": "on"}"#).is_ok());
    }

    /// A POST as API Gateway (HTTP API, payload 2.0) delivers it.
    fn api_gateway_post(path: &str, body: &str, is_base64_encoded: bool) -> Request {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "api",
                "domainName": "localhost",
                "domainPrefix": "localhost",
                "http": {
                    "method": "POST",
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": ""
                },
                "requestId": "request-1",
                "routeKey": "$default",
                "stage": "$default",
                "time": "01/Jan/2026:00:00:00 +0000",
                "timeEpoch": 0
            },
            "body": body,
            "isBase64Encoded": is_base64_encoded
        });
        lambda_http::request::from_str(&event.to_string()).expect("API Gateway event")
    }

    fn with_body(bytes: Vec<u8>) -> Request {
        // `Body` in this module is the test's own struct.
        Request::new(lambda_http::Body::Binary(bytes))
    }

    #[test]
    fn b28_base64_webhook_bodies_arrive_decoded() {
        use base64::Engine;
        let raw = "{\"object\":\"whatsapp_business_account\",\"text\":\"olá 👋\"}";
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        let request = api_gateway_post("/webhook", &encoded, true);
        assert_eq!(webhook_body_bytes(&request).unwrap(), raw.as_bytes());
        let plain = api_gateway_post("/webhook", raw, false);
        assert_eq!(webhook_body_bytes(&plain).unwrap(), raw.as_bytes());
        // Text that happens to be valid base64 is not decoded twice.
        let looks_encoded = api_gateway_post("/webhook", "e30=", false);
        assert_eq!(webhook_body_bytes(&looks_encoded).unwrap(), b"e30=");
    }

    #[test]
    fn b28_webhook_limit_is_6_mib_of_decoded_bytes() {
        use base64::Engine;
        let at_limit = with_body(vec![b' '; MAX_WEBHOOK_BODY_BYTES]);
        assert_eq!(
            webhook_body_bytes(&at_limit).unwrap().len(),
            MAX_WEBHOOK_BODY_BYTES
        );
        let over = with_body(vec![b' '; MAX_WEBHOOK_BODY_BYTES + 1]);
        let over = webhook_body_bytes(&over).unwrap_err();
        assert_eq!((over.status, over.code), (413, "payload_too_large"));
        // Its base64 text is a third larger than the limit; the decoded
        // bytes are what counts.
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(vec![b' '; MAX_WEBHOOK_BODY_BYTES]);
        assert!(encoded.len() > MAX_WEBHOOK_BODY_BYTES);
        let request = api_gateway_post("/webhook", &encoded, true);
        assert_eq!(
            webhook_body_bytes(&request).unwrap().len(),
            MAX_WEBHOOK_BODY_BYTES
        );
    }

    #[test]
    fn b50_api_limit_stays_1_mib() {
        assert!(body_bytes(&with_body(vec![b' '; MAX_BODY_BYTES])).is_ok());
        let over = body_bytes(&with_body(vec![b' '; MAX_BODY_BYTES + 1])).unwrap_err();
        assert_eq!((over.status, over.code), (413, "payload_too_large"));
        assert!(over.message.contains("1 MiB"), "{}", over.message);
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        reason: String,
    }

    #[test]
    fn json_errors_are_classified() {
        let broken = parse_json::<Body>(b"{\"reason\": ").unwrap_err();
        assert_eq!((broken.status, broken.code), (400, "malformed_json"));
        let unknown = parse_json::<Body>(b"{\"reason\":\"x\",\"colour\":1}").unwrap_err();
        assert_eq!(
            (unknown.status, unknown.field.as_deref()),
            (422, Some("colour"))
        );
        let wrong_type = parse_json::<Body>(b"{\"reason\":5}").unwrap_err();
        assert_eq!(wrong_type.status, 422);
        let missing = parse_json::<Body>(b"{}").unwrap_err();
        assert_eq!(missing.field.as_deref(), Some("reason"));
        let trailing = parse_json::<Body>(b"{} junk").unwrap_err();
        assert_eq!((trailing.status, trailing.code), (400, "malformed_json"));
    }
}
