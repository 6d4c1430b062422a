//! `change-events` Lambda: wiring only. Config and the HTTP client are
//! built once at init; every stream batch goes to [`change_events::handle`].

use blocklist::config::{self, Env};
use change_events::{App, Config};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    config::init_tracing();
    let app = App::new(Config::from_env(&Env::process())?)?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(change_events::handle(app, event.payload).await)
    }))
    .await
}
