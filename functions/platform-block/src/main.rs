//! `platform-block` Lambda: wiring only. Config and clients are built once
//! at init; every stream batch goes to [`platform_block::handle`].

use blocklist::config::{self, Env};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use platform_block::{App, Config};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    config::init_tracing();
    let env = Env::process();
    let app = App::new(config::store(&env).await, Config::from_env(&env)?)?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        platform_block::handle(app, event.payload)
            .await
            .map_err(Error::from)
    }))
    .await
}
