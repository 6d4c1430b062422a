//! `send-proxy` Lambda: wiring only. Config and clients are built once at
//! init; every request goes to [`send_proxy::handle`].

use blocklist::config::{self, Env};
use lambda_http::{Error, run, service_fn};
use send_proxy::{App, Config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    config::init_tracing();
    let env = Env::process();
    let config = Config::from_env(&env)?;
    let store = blocklist::store::Store::new(config::dynamodb_client().await, config::tables(&env));
    let app = App::new(store, config::authenticator(&env), config)?;
    let app = &app;
    run(service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(send_proxy::handle(app, request).await)
    }))
    .await
}
