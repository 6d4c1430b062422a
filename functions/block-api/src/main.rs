//! `block-api` Lambda: wiring only. Config and clients are built once at
//! init; every request goes to [`block_api::handle`].

use block_api::App;
use blocklist::config::{self, Env};
use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    config::init_tracing();
    let env = Env::process();
    let app = App::new(
        blocklist::store::Store::new(config::dynamodb_client().await, config::tables(&env)),
        config::authenticator(&env),
    )
    .with_console_login(block_api::console::ConsoleLogin::from_env(&env));
    let app = &app;
    run(service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(block_api::handle(app, request).await)
    }))
    .await
}
