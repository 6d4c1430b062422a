//! B51: authentication, scopes, delegation, and API Gateway's JWT authorizer.

use blocklist::http::auth::Authenticator;
use integration_tests::{ApiRequest, JWT_SECRET, call_block_api, token, token_with};
use serde_json::{Value, json};

use super::bad_input::{assert_error, assert_nothing_written, stored_items};
use super::{Api, WRITER};

const NUMBER: &str = "+16505551234";

/// One request per `/v1/` route, each of which would change or read state.
fn every_route() -> Vec<ApiRequest> {
    let block = json!({"reason": "spam", "scope": "all"});
    vec![
        ApiRequest::new("PUT", &format!("/v1/blocks/{NUMBER}")).json(block.clone()),
        ApiRequest::new("DELETE", &format!("/v1/blocks/{NUMBER}?scope=all"))
            .json(json!({"reason": "ok"})),
        ApiRequest::new("POST", "/v1/blocks:batch")
            .json(json!({"action": "block", "numbers": [NUMBER], "reason": "spam"})),
        ApiRequest::new("GET", &format!("/v1/blocks/{NUMBER}")),
        ApiRequest::new("GET", "/v1/blocks"),
        ApiRequest::new("GET", &format!("/v1/numbers/{NUMBER}/history")),
        ApiRequest::new("GET", "/v1/audit"),
        ApiRequest::new("GET", "/v1/stats"),
        ApiRequest::new("PUT", &format!("/v1/contacts/{NUMBER}")).json(json!({"name": "Ravi"})),
        ApiRequest::new("GET", &format!("/v1/contacts/{NUMBER}")),
        ApiRequest::new("GET", "/v1/chats?status=blocked"),
        ApiRequest::new("GET", &format!("/v1/chats/106540352242922/{NUMBER}")),
        ApiRequest::new("GET", "/v1/settings/default"),
        ApiRequest::new("PUT", "/v1/settings/default")
            .json(json!({"allow_unknown_numbers": false})),
    ]
}

/// Base64url without padding, as JWT segments are encoded.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

fn is_write(request: &ApiRequest) -> bool {
    request.method != "GET"
}

#[tokio::test]
async fn b51_missing_token_is_401_on_every_route() {
    let api = Api::new().await;
    for request in every_route() {
        let label = format!("{} {}", request.method, request.uri);
        let response = api.send(request).await;
        assert_eq!(response.status, 401, "{label}: {:?}", response.body);
        assert_error(&response, 401, "unauthorized");
    }
    assert_nothing_written(&api, &[NUMBER]).await;
}

#[tokio::test]
async fn b51_expired_or_wrongly_signed_tokens_are_401() {
    let api = Api::new().await;
    let expired = token_with("agent-1", WRITER, -3600, JWT_SECRET);
    let other_secret = token_with("agent-1", WRITER, 3600, b"some-other-secret");
    // An unsigned token ("alg": "none") with otherwise valid claims; the
    // encoder agrees with the one the API uses for its own cursors (which
    // end in a 16-character checksum).
    let probe = blocklist::store::Cursor {
        kind: "blocks".into(),
        day: None,
        key: [("pk".to_owned(), "N#+16505551234".to_owned())].into(),
        filters: String::new(),
    };
    let encoded = probe.encode();
    assert_eq!(
        base64url(&serde_json::to_vec(&probe).expect("json")),
        encoded[..encoded.len() - 16]
    );
    let exp = chrono::Utc::now().timestamp() + 3600;
    let unsigned = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(
            json!({"sub": "agent-1", "scope": WRITER.join(" "), "exp": exp})
                .to_string()
                .as_bytes()
        )
    );
    // The signature of a valid token on another token's claims.
    let valid = token("agent-1", WRITER);
    let admin = token("agent-1", &["blocklist:admin"]);
    let spliced = {
        let (_, signature) = valid.rsplit_once('.').expect("jwt");
        let (admin_claims, _) = admin.rsplit_once('.').expect("jwt");
        format!("{admin_claims}.{signature}")
    };
    for bad in [
        expired,
        other_secret,
        unsigned,
        spliced,
        "not.a.jwt".to_owned(),
        "garbage".to_owned(),
    ] {
        for request in every_route() {
            let label = format!("{} {}", request.method, request.uri);
            let response = api.send(request.bearer(&bad)).await;
            assert_eq!(
                response.status, 401,
                "{label} with {bad}: {:?}",
                response.body
            );
            assert_error(&response, 401, "unauthorized");
        }
    }
    assert_nothing_written(&api, &[NUMBER]).await;

    // The same request with a good token goes through.
    let ok = api
        .send(
            ApiRequest::new("PUT", &format!("/v1/blocks/{NUMBER}"))
                .bearer(&valid)
                .json(json!({"reason": "spam"})),
        )
        .await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
}

#[tokio::test]
async fn b51_only_the_bearer_scheme_is_accepted() {
    let api = Api::new().await;
    let valid = api.token.clone();
    for header in [
        "Basic xyz".to_owned(),
        "Basic YWdlbnQtMTpwYXNzd29yZA==".to_owned(),
        format!("Token {valid}"),
        valid.clone(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer    ".to_owned(),
        format!("Bearer{valid}"),
    ] {
        let response = api
            .send(
                ApiRequest::new("PUT", &format!("/v1/blocks/{NUMBER}"))
                    .header("authorization", &header)
                    .json(json!({"reason": "spam"})),
            )
            .await;
        assert_error(&response, 401, "unauthorized");
    }
    assert_nothing_written(&api, &[NUMBER]).await;

    // The scheme is case-insensitive (RFC 7235).
    let response = api
        .send(
            ApiRequest::new("PUT", &format!("/v1/blocks/{NUMBER}"))
                .header("authorization", &format!("bearer {valid}"))
                .json(json!({"reason": "spam"})),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
}

#[tokio::test]
async fn b51_read_only_token_cannot_write_and_writes_nothing() {
    let api = Api::new().await;
    let reader = token("viewer", &["blocklist:read"]);
    for request in every_route() {
        let write = is_write(&request);
        let label = format!("{} {}", request.method, request.uri);
        let response = api.send(request.bearer(&reader)).await;
        if write {
            assert_error(&response, 403, "forbidden");
        } else {
            assert!(
                [200, 404].contains(&response.status),
                "{label}: {:?}",
                response.body
            );
        }
    }
    assert_nothing_written(&api, &[NUMBER]).await;

    // A token with no blocklist scope may not even read.
    let nobody = token("nobody", &["messages:send"]);
    for request in every_route() {
        let response = api.send(request.bearer(&nobody)).await;
        assert_error(&response, 403, "forbidden");
    }
    assert_nothing_written(&api, &[NUMBER]).await;
}

#[tokio::test]
async fn b51_settings_need_the_admin_scope() {
    let api = Api::new().await;
    let put = |token: &str| {
        ApiRequest::new("PUT", "/v1/settings/default")
            .bearer(token)
            .json(json!({"allow_unknown_numbers": false}))
    };
    let refused = api.send(put(&api.token)).await;
    assert_error(&refused, 403, "forbidden");
    let read = api.call("GET", "/v1/settings/default", None).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.body["allow_unknown_numbers"], true, "unchanged");
    assert!(stored_items(&api).await.is_empty(), "nothing written");

    let admin = token("ops-lead", &["blocklist:admin"]);
    let accepted = api.send(put(&admin)).await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.body);
    assert_eq!(accepted.body["allow_unknown_numbers"], false);
    let read = api.call("GET", "/v1/settings/default", None).await;
    assert_eq!(read.body["allow_unknown_numbers"], false);

    // Admin implies write and read.
    let block = api
        .send(
            ApiRequest::new("PUT", &format!("/v1/blocks/{NUMBER}"))
                .bearer(&admin)
                .json(json!({"reason": "spam"})),
        )
        .await;
    assert_eq!(block.status, 201, "{:?}", block.body);
    assert_eq!(block.body["actor"], "ops-lead");
    let view = api
        .send(ApiRequest::new("GET", &format!("/v1/blocks/{NUMBER}")).bearer(&admin))
        .await;
    assert_eq!(view.status, 200, "{:?}", view.body);
}

#[tokio::test]
async fn b51_delegation_records_the_person_as_actor_and_the_token_as_client() {
    let api = Api::new().await;
    let crm = token(
        "crm-prod",
        &["blocklist:read", "blocklist:write", "blocklist:delegate"],
    );
    let block = api
        .send(
            ApiRequest::new("PUT", &format!("/v1/blocks/{NUMBER}"))
                .bearer(&crm)
                .header("X-On-Behalf-Of", "jane@crm")
                .json(json!({"reason": "abusive"})),
        )
        .await;
    assert_eq!(block.status, 201, "{:?}", block.body);
    assert_eq!(block.body["actor"], "jane@crm");
    assert_eq!(block.body["client"], "crm-prod");
    let view = api.call("GET", &format!("/v1/blocks/{NUMBER}"), None).await;
    assert_eq!(view.body["blocks"][0]["actor"], "jane@crm");
    assert_eq!(view.body["blocks"][0]["client"], "crm-prod");

    let unblock = api
        .send(
            ApiRequest::new("DELETE", &format!("/v1/blocks/{NUMBER}"))
                .bearer(&crm)
                .header("X-On-Behalf-Of", "  omar@crm  ")
                .json(json!({"reason": "apologised"})),
        )
        .await;
    assert_eq!(unblock.status, 200, "{:?}", unblock.body);

    let history = api.history(NUMBER).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1]["action"], "blocked");
    assert_eq!(history[1]["actor"], "jane@crm");
    assert_eq!(history[1]["client"], "crm-prod");
    assert_eq!(history[0]["action"], "unblocked");
    assert_eq!(history[0]["actor"], "omar@crm");
    assert_eq!(history[0]["client"], "crm-prod");
    let audit = api.call("GET", "/v1/audit", None).await;
    let actors: Vec<(&Value, &Value)> = audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| (&e["actor"], &e["client"]))
        .collect();
    assert_eq!(
        actors,
        [
            (&json!("omar@crm"), &json!("crm-prod")),
            (&json!("jane@crm"), &json!("crm-prod"))
        ]
    );

    // Without the header, the token's subject acts for itself.
    let own = api
        .send(
            ApiRequest::new("PUT", &format!("/v1/blocks/{NUMBER}"))
                .bearer(&crm)
                .json(json!({"reason": "again"})),
        )
        .await;
    assert_eq!(own.status, 201, "{:?}", own.body);
    assert_eq!(own.body["actor"], "crm-prod");
    assert_eq!(own.body["client"], Value::Null);
}

#[tokio::test]
async fn b51_on_behalf_of_without_the_delegate_scope_is_403_and_writes_nothing() {
    let api = Api::new().await;
    let requests = [
        ApiRequest::new("PUT", &format!("/v1/blocks/{NUMBER}")).json(json!({"reason": "spam"})),
        ApiRequest::new("POST", "/v1/blocks:batch")
            .json(json!({"action": "block", "numbers": [NUMBER], "reason": "spam"})),
        ApiRequest::new("PUT", &format!("/v1/contacts/{NUMBER}")).json(json!({"name": "Ravi"})),
    ];
    for request in requests {
        let response = api
            .send(
                request
                    .bearer(&api.token)
                    .header("X-On-Behalf-Of", "jane@crm"),
            )
            .await;
        assert_error(&response, 403, "forbidden");
    }
    assert_nothing_written(&api, &[NUMBER]).await;

    // A delegating token may not name an absurdly long actor either.
    let crm = token(
        "crm-prod",
        &["blocklist:read", "blocklist:write", "blocklist:delegate"],
    );
    let response = api
        .send(
            ApiRequest::new("PUT", &format!("/v1/blocks/{NUMBER}"))
                .bearer(&crm)
                .header("X-On-Behalf-Of", &"j".repeat(201))
                .json(json!({"reason": "spam"})),
        )
        .await;
    assert_error(&response, 400, "invalid_header");
    assert_nothing_written(&api, &[NUMBER]).await;
}

#[tokio::test]
async fn b51_api_gateway_mode_enforces_scopes_from_the_authorizer_claims() {
    let api = Api::new().await;
    let gateway = block_api::App::new(api.stack.store.clone(), Authenticator::api_gateway());
    let with_claims = |request: ApiRequest, claims: Option<Value>| {
        let mut request = request;
        request.jwt_claims = claims;
        request
    };
    let put = |number: &str| {
        ApiRequest::new("PUT", &format!("/v1/blocks/{number}")).json(json!({"reason": "spam"}))
    };

    // No authorizer context: 401, even with a token the local mode would
    // accept (the handler never validates tokens itself on AWS).
    let response = call_block_api(&gateway, put(NUMBER)).await;
    assert_error(&response, 401, "unauthorized");
    let response = call_block_api(&gateway, put(NUMBER).bearer(&api.token)).await;
    assert_error(&response, 401, "unauthorized");
    // Claims without the write scope: 403.
    for scope in ["blocklist:read", "", "blocklist:writer blocklist:read"] {
        let claims = json!({"sub": "crm-prod", "scope": scope});
        let response = call_block_api(&gateway, with_claims(put(NUMBER), Some(claims))).await;
        assert_error(&response, 403, "forbidden");
    }
    assert_nothing_written(&api, &[NUMBER]).await;

    let claims = json!({"sub": "crm-prod", "scope": "blocklist:read blocklist:write"});
    let response = call_block_api(&gateway, with_claims(put(NUMBER), Some(claims.clone()))).await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(response.body["actor"], "crm-prod");
    assert_eq!(response.body["client"], Value::Null);
    let history = api.history(NUMBER).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["actor"], "crm-prod");
    let read = call_block_api(
        &gateway,
        with_claims(
            ApiRequest::new("GET", &format!("/v1/blocks/{NUMBER}")),
            Some(claims),
        ),
    )
    .await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.body["blocks"][0]["actor"], "crm-prod");

    // Array claims arrive flattened by API Gateway as "[a b]".
    let flattened = json!({"sub": "crm-2", "scope": "[blocklist:read blocklist:write]"});
    let other = "+447700900123";
    let response = call_block_api(&gateway, with_claims(put(other), Some(flattened))).await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(response.body["actor"], "crm-2");
}

/// B90: the console's Cognito login yields resource-server scopes named
/// `blocklist/write`; they are the API's `blocklist:write`, and a look-alike
/// of another resource server is not.
#[tokio::test]
async fn b90_cognito_resource_server_scopes_are_the_api_scopes() {
    let api = Api::new().await;
    let gateway = block_api::App::new(api.stack.store.clone(), Authenticator::api_gateway());
    let put = |number: &str, scope: &str| {
        let mut request =
            ApiRequest::new("PUT", &format!("/v1/blocks/{number}")).json(json!({"reason": "spam"}));
        request.jwt_claims = Some(json!({"sub": "operator-1", "scope": scope}));
        request
    };
    for scope in [
        "other/blocklist:write",
        "blocklist/write/extra",
        "crm/write",
    ] {
        let response = call_block_api(&gateway, put(NUMBER, scope)).await;
        assert_error(&response, 403, "forbidden");
    }
    assert_nothing_written(&api, &[NUMBER]).await;
    let response = call_block_api(&gateway, put(NUMBER, "openid blocklist/write")).await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(response.body["actor"], "operator-1");
}
