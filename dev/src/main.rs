//! `wa-dev`: the local stack behind one HTTP server (what `scripts/dev`
//! runs). See the crate docs.

use std::sync::Arc;

use blocklist::config::{self, Env};
use tokio::net::TcpListener;
use wa_dev::server::{self, Stack};
use wa_dev::{poller, schedule, tokens};

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
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("listen on {addr}: {e}"))?;
    let stack = Arc::new(Stack::build(&env, &addr).await?);
    let poller = tokio::spawn(poller::run(stack.clone(), poller::Feed::DeliveryFailures));
    // As the template's mapping, enabled only with somewhere to send to.
    let events = stack
        .change_events
        .config
        .endpoint
        .is_some()
        .then(|| tokio::spawn(poller::run(stack.clone(), poller::Feed::AuditEvents)));
    let platform = tokio::spawn(poller::run(stack.clone(), poller::Feed::PlatformBlocks));
    let imports = tokio::spawn(poller::run(stack.clone(), poller::Feed::ImportChunks));
    let sweeps = tokio::spawn(schedule::run(stack.clone(), schedule::every(&env)?));
    print_welcome(&addr, stack.jwt_secret.as_bytes());
    server::serve(listener, stack, shutdown_signal()).await;
    poller.abort();
    if let Some(events) = events {
        events.abort();
    }
    platform.abort();
    imports.abort();
    sweeps.abort();
    eprintln!("wa-dev: stopped");
    Ok(())
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
        "\nwa-blocklist local stack on http://{addr}  (Ctrl-C stops it)\n\n\
         Console (admin, 24 h): http://{addr}/console#token={admin}\n\n\
         Tokens (valid 24 h):\n\
         \x20 export READ_TOKEN={read}\n\
         \x20 export WRITE_TOKEN={write}\n\
         \x20 export ADMIN_TOKEN={admin}\n\
         \x20 export SEND_TOKEN={send}\n\n\
         Try:\n\
         \x20 curl -X PUT http://{addr}/v1/blocks/+16505551234 -H \"Authorization: Bearer $WRITE_TOKEN\" \\\n\
         \x20      -H 'content-type: application/json' -d '{{\"reason\":\"abusive messages\",\"scope\":\"all\"}}'\n\
         \x20 curl http://{addr}/v1/blocks/+16505551234 -H \"Authorization: Bearer $READ_TOKEN\"\n\
         \x20 curl http://{addr}/v1/numbers/+16505551234/history -H \"Authorization: Bearer $READ_TOKEN\"\n\
         \x20 curl -X POST http://{addr}/v1/106540352242922/messages -H \"Authorization: Bearer $SEND_TOKEN\" \\\n\
         \x20      -H 'content-type: application/json' -d '{{\"messaging_product\":\"whatsapp\",\"to\":\"+16505551234\",\"type\":\"text\",\"text\":{{\"body\":\"hi\"}}}}'\n\
         \x20 curl http://{addr}/sandbox/messages\n"
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
