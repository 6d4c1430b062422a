//! `wa-dev`: the local stack behind one HTTP server (what `scripts/dev`
//! runs). Each request becomes the API Gateway event the Lambda would get,
//! and goes to the very handler function the Lambda runs.

use std::convert::Infallible;
use std::sync::Arc;

use blocklist::config::{self, Env};
use blocklist::http::auth::Authenticator;
use blocklist::store::Store;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use wa_dev::apigw::{self, HttpRequest};
use wa_dev::{tables, tokens};

struct Stack {
    block_api: block_api::App,
    webhook_ingress: webhook_ingress::App,
}

#[tokio::main]
async fn main() {
    if let Err(message) = run().await {
        eprintln!("wa-dev: {message}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    config::init_tracing();
    let env = Env::process();
    let addr = env.or("LOCAL_API_ADDR", "127.0.0.1:3000");
    let secret = env.or("LOCAL_JWT_SECRET", "local-jwt-secret");
    let client = config::dynamodb_client().await;
    let table_names = config::tables(&env);
    tables::create_tables(&client, &tables::template_text(), &table_names).await?;

    let store = Store::new(client, table_names);
    // SPEC section 5: every variable overrides its local default.
    let local = |key: &str, default: &str| env.optional(key).or_else(|| Some(default.to_owned()));
    let ingress_env = Env(&|key| match key {
        "WHATSAPP_APP_SECRET" => local(key, "local-app-secret"),
        "WHATSAPP_VERIFY_TOKEN" => local(key, "local-verify-token"),
        _ => env.optional(key),
    });
    let ingress_config =
        webhook_ingress::Config::from_env(&ingress_env).map_err(|e| e.to_string())?;
    let stack = Arc::new(Stack {
        block_api: block_api::App::new(
            store.clone(),
            Authenticator::local_hs256(secret.as_bytes()),
        ),
        webhook_ingress: webhook_ingress::App::new(store, ingress_config)
            .map_err(|e| e.to_string())?,
    });
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("listen on {addr}: {e}"))?;
    print_welcome(&addr, secret.as_bytes());

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                eprintln!("wa-dev: stopping");
                return Ok(());
            }
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let stack = stack.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let stack = stack.clone();
                        async move { Ok::<_, Infallible>(stack.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

impl Stack {
    async fn handle(&self, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
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
        let body = match request.into_body().collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(_) => return plain(400, "could not read the request body"),
        };
        let http = HttpRequest {
            method,
            uri,
            headers,
            body: (!body.is_empty()).then_some(body),
            jwt_claims: None,
        };
        let lambda_request = match apigw::to_lambda(&http) {
            Ok(request) => request,
            Err(e) => return plain(400, &format!("not a valid request: {e}")),
        };
        // The routes of template.yaml, each to its function's handler.
        let path = http.uri.split('?').next().unwrap_or_default();
        let response = if path == "/webhook" {
            webhook_ingress::handle(&self.webhook_ingress, lambda_request).await
        } else {
            block_api::handle(&self.block_api, lambda_request).await
        };
        let (parts, body) = response.into_parts();
        let bytes = match body {
            lambda_http::Body::Text(text) => Bytes::from(text),
            lambda_http::Body::Binary(bytes) => Bytes::from(bytes),
            _ => Bytes::new(),
        };
        hyper::Response::from_parts(parts, Full::new(bytes))
    }
}

fn plain(status: u16, message: &str) -> hyper::Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": { "code": "bad_request", "message": message } });
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

fn print_welcome(addr: &str, secret: &[u8]) {
    let day = 24 * 3600;
    let read = tokens::mint("local-reader", &["blocklist:read"], day, secret);
    let write = tokens::mint(
        "local-agent",
        &["blocklist:read", "blocklist:write"],
        day,
        secret,
    );
    let admin = tokens::mint(
        "local-admin",
        &[
            "blocklist:read",
            "blocklist:write",
            "blocklist:admin",
            "blocklist:delegate",
        ],
        day,
        secret,
    );
    let send = tokens::mint("local-sender", &["messages:send"], day, secret);
    println!(
        "\nwa-blocklist local API on http://{addr}  (Ctrl-C stops it)\n\n\
         Tokens (valid 24 h):\n\
         \x20 READ_TOKEN={read}\n\
         \x20 WRITE_TOKEN={write}\n\
         \x20 ADMIN_TOKEN={admin}\n\
         \x20 SEND_TOKEN={send}\n\n\
         Try:\n\
         \x20 curl -X PUT http://{addr}/v1/blocks/+16505551234 -H \"Authorization: Bearer $WRITE_TOKEN\" \\\n\
         \x20      -H 'content-type: application/json' -d '{{\"reason\":\"abusive messages\",\"scope\":\"all\"}}'\n\
         \x20 curl http://{addr}/v1/blocks/+16505551234 -H \"Authorization: Bearer $READ_TOKEN\"\n\
         \x20 curl http://{addr}/v1/numbers/+16505551234/history -H \"Authorization: Bearer $READ_TOKEN\"\n"
    );
}

async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
