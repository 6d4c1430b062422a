//! `block-expiry` Lambda: wiring only. Config and clients are built once at
//! init; every invocation goes to [`block_expiry::handle`].

use block_expiry::App;
use blocklist::config::{self, Env};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    config::init_tracing();
    let app = App::new(config::store(&Env::process()).await);
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        block_expiry::handle(app, event.payload)
            .await
            .map_err(Error::from)
    }))
    .await
}
