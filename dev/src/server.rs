//! One HTTP server for the whole stack. Each request becomes the event the
//! Lambda would get and goes to the very handler function the Lambda runs.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine;
use blocklist::config::{self, Env};
use blocklist::http::auth::Authenticator;
use blocklist::store::Store;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::apigw::{self, HttpRequest};
use crate::sandbox::Sandbox;
use crate::tables;

/// The functions, built once like their Lambdas, on one store, and the
/// Graph sandbox.
pub struct Stack {
    pub addr: String,
    pub store: Store,
    pub block_api: block_api::App,
    pub webhook_ingress: webhook_ingress::App,
    pub send_proxy: send_proxy::App,
    pub wa_blocked: wa_blocked::App,
    pub block_expiry: block_expiry::App,
    pub change_events: change_events::App,
    pub platform_block: platform_block::App,
    pub sandbox: Arc<Sandbox>,
    pub jwt_secret: String,
}

/// The local defaults of SPEC section 5; every variable overrides its own.
fn local_default(key: &str) -> Option<&'static str> {
    Some(match key {
        "WHATSAPP_APP_SECRET" => "local-app-secret",
        "WHATSAPP_VERIFY_TOKEN" => "local-verify-token",
        "WHATSAPP_ACCESS_TOKEN" => "local-access-token",
        "WHATSAPP_BUSINESS_ACCOUNT_ID" => "102290129340398",
        "GRAPH_API_VERSION" => "v25.0",
        "LOCAL_JWT_SECRET" => "local-jwt-secret",
        _ => return None,
    })
}

impl Stack {
    /// Builds the stack for `addr`: creates missing tables, and points the
    /// send proxy at the sandbox unless `GRAPH_API_BASE_URL` is set.
    pub async fn build(env: &Env<'_>, addr: &str) -> Result<Stack, String> {
        let sandbox_url = format!("http://{addr}/sandbox/graph");
        let lookup = |key: &str| {
            env.optional(key).or_else(|| match key {
                "GRAPH_API_BASE_URL" => Some(sandbox_url.clone()),
                _ => local_default(key).map(str::to_owned),
            })
        };
        let env = Env(&lookup);
        let client = config::dynamodb_client().await;
        let table_names = config::tables(&env);
        tables::create_tables(&client, &tables::template_text(), &table_names).await?;
        let store = Store::new(client, table_names);
        let jwt_secret = env.or("LOCAL_JWT_SECRET", "local-jwt-secret");
        let auth = Authenticator::local_hs256(jwt_secret.as_bytes());
        let ingress_config = webhook_ingress::Config::from_env(&env).map_err(|e| e.to_string())?;
        let proxy_config = send_proxy::Config::from_env(&env).map_err(|e| e.to_string())?;
        let block_list_cap = match env.optional("SANDBOX_BLOCK_LIST_CAP") {
            None => crate::sandbox::BLOCK_LIST_CAP,
            Some(raw) => raw
                .parse()
                .map_err(|_| format!("SANDBOX_BLOCK_LIST_CAP is not a number: {raw}"))?,
        };
        let sandbox = Arc::new(Sandbox::with_block_list_cap(
            env.or("WHATSAPP_ACCESS_TOKEN", "local-access-token"),
            ingress_config.app_secret.clone(),
            block_list_cap,
        ));
        Ok(Stack {
            addr: addr.to_owned(),
            block_api: block_api::App::new(store.clone(), auth.clone())
                .with_console_login(block_api::console::ConsoleLogin::from_env(&env)),
            webhook_ingress: webhook_ingress::App::new(store.clone(), ingress_config)
                .map_err(|e| e.to_string())?,
            send_proxy: send_proxy::App::new(store.clone(), auth, proxy_config)
                .map_err(|e| e.to_string())?,
            wa_blocked: wa_blocked::App::new(store.clone()),
            block_expiry: block_expiry::App::new(store.clone()),
            change_events: change_events::App::new(
                change_events::Config::from_env(&env).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?,
            platform_block: platform_block::App::new(
                store.clone(),
                platform_block::Config::from_env(&env).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?,
            store,
            sandbox,
            jwt_secret,
        })
    }

    /// Answers one request: a route of `template.yaml`, the Lambda Invoke
    /// API, or the Graph sandbox.
    pub async fn answer(
        self: &Arc<Self>,
        request: HttpRequest,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let path = request.uri.split('?').next().unwrap_or_default().to_owned();
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match parts.as_slice() {
            ["2015-03-31", "functions", name, "invocations"] if request.method == "POST" => {
                self.invoke(name, request.body.as_deref().unwrap_or_default())
                    .await
            }
            ["sandbox", ..] => self.sandbox.answer(self, &request).await,
            _ => {
                let lambda = match apigw::to_lambda(&request) {
                    Ok(lambda) => lambda,
                    Err(e) => return error(400, &format!("not a valid request: {e}")),
                };
                let span = invocation_span(&apigw::request_id_of(&lambda));
                let response = async {
                    match parts.as_slice() {
                        ["webhook"] => {
                            // What Meta knows about who wrote, for the
                            // 24-hour rule of its Block Users API.
                            if request.method == "POST" {
                                let signature = request
                                    .headers
                                    .iter()
                                    .find(|(k, _)| k.eq_ignore_ascii_case("x-hub-signature-256"))
                                    .map(|(_, v)| v.as_str());
                                self.sandbox.saw_webhook(
                                    signature,
                                    request.body.as_deref().unwrap_or_default(),
                                );
                            }
                            webhook_ingress::handle(&self.webhook_ingress, lambda).await
                        }
                        // As API Gateway matches `/v1/{phone_number_id}/messages`:
                        // any id, unless a block-api route of the same shape
                        // names that segment literally.
                        ["v1", first, "messages" | "recipients:check"]
                            if !matches!(*first, "blocks" | "contacts" | "settings") =>
                        {
                            send_proxy::handle(&self.send_proxy, lambda).await
                        }
                        _ => block_api::handle(&self.block_api, lambda).await,
                    }
                }
                .instrument(span)
                .await;
                from_lambda(response)
            }
        }
    }

    /// `POST /2015-03-31/functions/{name}/invocations`, as Lambda answers
    /// it: the function's result as the body, and `X-Amz-Function-Error`
    /// when it failed.
    async fn invoke(
        self: &Arc<Self>,
        name: &str,
        payload: &[u8],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        self.invoke_function(name, payload)
            .instrument(invocation_span(&apigw::new_request_id()))
            .await
    }

    async fn invoke_function(
        self: &Arc<Self>,
        name: &str,
        payload: &[u8],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let event: Value = match serde_json::from_slice(payload) {
            Ok(event) => event,
            Err(e) => {
                return lambda_error(
                    "InvalidRequestContentException",
                    &format!("payload is not JSON: {e}"),
                    400,
                );
            }
        };
        let http_event =
            || lambda_http::request::from_str(&event.to_string()).map_err(|e| e.to_string());
        let result: Value = match name {
            "wa-blocked" => match wa_blocked::handle(&self.wa_blocked, event.clone()).await {
                Ok(value) => value,
                Err(error) => return function_error(&error.to_string()),
            },
            "change-events" => change_events::handle(&self.change_events, event.clone()).await,
            "block-import" => block_import::handle(&self.block_api, event.clone()).await,
            "platform-block" => {
                match platform_block::handle(&self.platform_block, event.clone()).await {
                    Ok(value) => value,
                    Err(error) => return function_error(&error.to_string()),
                }
            }
            "block-expiry" => match block_expiry::handle(&self.block_expiry, event.clone()).await {
                Ok(value) => value,
                Err(error) => return function_error(&error.to_string()),
            },
            "block-api" | "webhook-ingress" | "send-proxy" => match http_event() {
                Ok(request) => {
                    let response = match name {
                        "block-api" => block_api::handle(&self.block_api, request).await,
                        "webhook-ingress" => {
                            webhook_ingress::handle(&self.webhook_ingress, request).await
                        }
                        _ => send_proxy::handle(&self.send_proxy, request).await,
                    };
                    api_gateway_response(response)
                }
                Err(e) => return function_error(&format!("not an API Gateway event: {e}")),
            },
            _ => {
                return lambda_error(
                    "ResourceNotFoundException",
                    &format!(
                        "Function not found: {name} (block-api, webhook-ingress, send-proxy, wa-blocked, block-expiry, change-events, platform-block, block-import)"
                    ),
                    404,
                );
            }
        };
        let body = serde_json::to_vec(&result).unwrap_or_default();
        (
            200,
            vec![("content-type".into(), "application/json".into())],
            body,
        )
    }
}

/// The span Lambda's runtime opens around each invocation, so that local
/// logs carry a request id as they do in AWS.
pub fn invocation_span(request_id: &str) -> tracing::Span {
    tracing::info_span!("Lambda runtime invoke", requestId = request_id)
}

/// Serves `stack` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    stack: Arc<Stack>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let stack = stack.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let stack = stack.clone();
                        async move { Ok::<_, Infallible>(respond(&stack, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

async fn respond(
    stack: &Arc<Stack>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let method = request.method().as_str().to_owned();
    let uri = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    // No size limit here: on AWS the HTTP API takes 10 MB and Lambda 6 MB,
    // so what a caller meets are the handlers' own limits, which answer 413
    // above 1 MiB on `/v1/` (B50) and above 6 MiB on `/webhook` (B28).
    // The event built from the body has no limit either.
    let (status, headers, body) = match request.into_body().collect().await {
        Ok(collected) => {
            let body = collected.to_bytes().to_vec();
            let http = HttpRequest {
                method,
                uri,
                headers,
                body: (!body.is_empty()).then_some(body),
                jwt_claims: None,
            };
            stack.answer(http).await
        }
        Err(_) => error(400, "could not read the request body"),
    };
    let mut builder = hyper::Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn from_lambda(
    response: lambda_http::Response<lambda_http::Body>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let (parts, body) = response.into_parts();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    (parts.status.as_u16(), headers, body_bytes(body))
}

fn body_bytes(body: lambda_http::Body) -> Vec<u8> {
    match body {
        lambda_http::Body::Text(text) => text.into_bytes(),
        lambda_http::Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    }
}

/// A response as API Gateway (payload 2.0) reads it from a function.
fn api_gateway_response(response: lambda_http::Response<lambda_http::Body>) -> Value {
    let (status, headers, body) = from_lambda(response);
    let headers: serde_json::Map<String, Value> = headers
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let (body, encoded) = match String::from_utf8(body) {
        Ok(text) => (text, false),
        Err(e) => (
            base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            true,
        ),
    };
    json!({ "statusCode": status, "headers": headers, "body": body, "isBase64Encoded": encoded })
}

pub fn error(status: u16, message: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let body = json!({ "error": { "code": "bad_request", "message": message } });
    (
        status,
        vec![("content-type".into(), "application/json".into())],
        body.to_string().into_bytes(),
    )
}

fn lambda_error(kind: &str, message: &str, status: u16) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let body = json!({ "Type": "User", "message": message, "__type": kind });
    (
        status,
        vec![("content-type".into(), "application/json".into())],
        body.to_string().into_bytes(),
    )
}

/// A function that returned an error: 200 with `X-Amz-Function-Error`, as
/// Lambda's Invoke API reports it.
fn function_error(message: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let body = json!({ "errorType": "FunctionError", "errorMessage": message });
    (
        200,
        vec![
            ("content-type".into(), "application/json".into()),
            ("x-amz-function-error".into(), "Unhandled".into()),
        ],
        body.to_string().into_bytes(),
    )
}
