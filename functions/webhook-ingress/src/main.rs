//! `webhook-ingress` Lambda: wiring only. Config and clients are built once
//! at init; every request goes to [`webhook_ingress::handle`].

use blocklist::config::{self, Env};
use lambda_http::{Error, run, service_fn};
use webhook_ingress::{App, Config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    config::init_tracing();
    let env = Env::process();
    let config = Config::from_env(&env)?;
    let store = blocklist::store::Store::new(config::dynamodb_client().await, config::tables(&env));
    let app = App::new(store, config)?;
    let app = &app;
    run(service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(webhook_ingress::handle(app, request).await)
    }))
    .await
}
