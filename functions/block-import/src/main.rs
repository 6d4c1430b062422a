//! `block-import` Lambda: wiring only. Config and clients are built once at
//! init; every stream batch goes to [`block_import::handle`].

use block_import::App;
use blocklist::config::{self, Env};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    config::init_tracing();
    let env = Env::process();
    // The block API's handlers are not served here: the authenticator is
    // the one the API uses, never called.
    let app = App::new(config::store(&env).await, config::authenticator(&env));
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(block_import::handle(app, event.payload).await)
    }))
    .await
}
