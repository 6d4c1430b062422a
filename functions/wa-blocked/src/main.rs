//! `wa-blocked` Lambda: wiring only. Config and clients are built once at
//! init; every event goes to [`wa_blocked::handle`].

// The handler's future nests the block transaction's futures deeply enough
// to pass rustc's default query depth when its layout is computed.
#![recursion_limit = "256"]

use blocklist::config::{self, Env};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use wa_blocked::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    config::init_tracing();
    let app = App::new(config::store(&Env::process()).await);
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        wa_blocked::handle(app, event.payload)
            .await
            .map_err(Error::from)
    }))
    .await
}
