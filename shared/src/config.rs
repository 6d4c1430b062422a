//! Environment → typed configuration, read and validated once at init.

use crate::http::auth::Authenticator;
use crate::store::Tables;

#[derive(thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {0} is invalid: {1}")]
    Invalid(&'static str, String),
}

// A function that fails at init prints its error with `Debug` (what `main`
// returning `Err` shows in the Lambda log): make that the clear sentence.
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Reads a variable through `lookup` (the process environment in
/// production, a map in tests).
pub struct Env<'a>(pub &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    pub fn process() -> Env<'static> {
        Env(&|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
    }

    pub fn required(&self, key: &'static str) -> Result<String, ConfigError> {
        (self.0)(key).ok_or(ConfigError::Missing(key))
    }

    pub fn optional(&self, key: &str) -> Option<String> {
        (self.0)(key)
    }

    pub fn or(&self, key: &str, default: &str) -> String {
        (self.0)(key).unwrap_or_else(|| default.to_owned())
    }

    /// A duration given in milliseconds (`CRM_TIMEOUT_MS`, …), `default`
    /// when unset.
    pub fn millis(
        &self,
        key: &'static str,
        default: std::time::Duration,
    ) -> Result<std::time::Duration, ConfigError> {
        match (self.0)(key) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<u64>()
                .map(std::time::Duration::from_millis)
                .map_err(|_| ConfigError::Invalid(key, "not a number of milliseconds".into())),
        }
    }
}

/// Table names; defaults are the names `template.yaml` gives locally.
pub fn tables(env: &Env) -> Tables {
    Tables {
        blocklist: env.or("BLOCKLIST_TABLE", "Blocklist"),
        audit: env.or("AUDIT_TABLE", "Audit"),
        chats: env.or("CHATS_TABLE", "Chats"),
        failures: env.or("FAILURES_TABLE", "Failures"),
        imports: env.or("IMPORTS_TABLE", "Imports"),
        messages: env.or("MESSAGES_TABLE", "Messages"),
    }
}

/// The store on the tables `env` names, through [`dynamodb_client`].
pub async fn store(env: &Env<'_>) -> crate::store::Store {
    crate::store::Store::new(dynamodb_client().await, tables(env))
}

/// How `/v1/` callers are authenticated (B51): HS256 tokens when
/// `LOCAL_JWT_SECRET` is set (local stack and tests), otherwise the claims
/// that API Gateway's JWT authorizer put in the request context.
pub fn authenticator(env: &Env) -> Authenticator {
    match env.optional("LOCAL_JWT_SECRET") {
        Some(secret) => Authenticator::local_hs256(secret.as_bytes()),
        None => Authenticator::api_gateway(),
    }
}

/// The DynamoDB client, built once. `AWS_ENDPOINT_URL_DYNAMODB` (standard
/// SDK variable) points it at DynamoDB Local.
///
/// Lambda hands a function its role's credentials in the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
/// When they are there, they are used directly: building the SDK's default
/// chain (profile files, SSO, web identity, ECS, IMDS, each with its own
/// HTTPS client) is most of the init time of a function and finds the same
/// credentials. Elsewhere (a developer's shell) the default chain applies.
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some()
    {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    if let Some(region) = std::env::var_os("AWS_REGION").and_then(|r| r.into_string().ok()) {
        loader = loader.region(aws_config::Region::new(region));
    }
    // An endpoint of one's own (DynamoDB Local, LocalStack, a proxy; set
    // for DynamoDB or for every service) may have any certificate: the
    // SDK's default client, with the system's roots.
    if std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_none()
        && std::env::var_os("AWS_ENDPOINT_URL").is_none()
    {
        loader = loader.http_client(aws_https_client());
    }
    aws_sdk_dynamodb::Client::new(&loader.load().await)
}

/// The CAs every AWS endpoint's certificate chains to (Amazon Trust
/// Services: Amazon Root CA 1–4, and the Starfield Services root that
/// cross-signs them), as PEM.
const AWS_ROOTS: &[u8] = include_bytes!("aws_roots.pem");

/// The SDK's HTTPS client (rustls with aws-lc, as the SDK's default), but
/// trusting only [`AWS_ROOTS`]. The default reads the system's store, every
/// file of `/etc/ssl/certs` where there is one, which was most of a
/// function's init time; AWS endpoints need none of it.
fn aws_https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let trust = tls::TrustStore::empty().with_pem_certificate(AWS_ROOTS);
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("the compiled-in AWS roots are valid PEM");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https()
}

/// A builder of the HTTPS client for Graph and the CRM: rustls, trusting
/// the Mozilla root programme's CAs compiled into the binary
/// (`webpki-roots`). reqwest's default reads and parses the system store
/// when the client is built, which cost a function about as much init
/// time as everything else together; Graph and any CRM on the public
/// internet present certificates of those CAs.
fn https_client_builder() -> reqwest::ClientBuilder {
    let roots = web_roots();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(tls) => reqwest::Client::builder()
            .tls_backend_preconfigured(tls.with_root_certificates(roots).with_no_client_auth()),
        // The provider supports the default versions; should that ever
        // change, reqwest's own configuration still verifies certificates.
        Err(_) => reqwest::Client::builder(),
    }
}

/// The HTTPS client of an outbound POST (a Graph send, a CRM forward):
/// rustls with the compiled-in roots (see `https_client_builder`),
/// `timeout` over the whole exchange, and no redirects. A 3xx would turn
/// the POST into a body-less GET elsewhere, whose 2xx would pass for a
/// delivered message or a sent one.
pub fn https_post_client(timeout: std::time::Duration) -> Result<reqwest::Client, reqwest::Error> {
    https_client_builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

fn web_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

/// JSON logs for Lambda (B52) on stdout, at `RUST_LOG` (default `info`);
/// numbers are masked where they are logged. See [`json_logs`].
pub fn init_tracing() {
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = json_logs(std::io::stdout, filter).try_init();
}

/// The log format: one JSON object per line, the event's fields at the top
/// level (`level`, `message`, then its own fields), and the fields of the
/// span it happened in under `span`. `lambda_runtime` runs each invocation
/// in a span carrying `requestId` (and `xrayTraceId`), so every line of an
/// invocation names its request:
///
/// ```json
/// {"level":"INFO","message":"request","route":"PUT /v1/blocks/{param}","status":201,
///  "span":{"requestId":"8476a536-…","name":"Lambda runtime invoke"}}
/// ```
///
/// Whatever `filter` allows, the libraries in [`QUIET_TARGETS`] log at most
/// `info`: their `debug` and `trace` output holds whole requests and
/// responses (headers with credentials, event payloads with numbers and
/// message content).
pub fn json_logs<W>(writer: W, filter: tracing_subscriber::EnvFilter) -> impl tracing::Subscriber
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_writer(writer)
        .finish()
        .with(tracing_subscriber::filter::filter_fn(within_dependency_cap))
}

/// Target prefixes of the libraries kept at `info` or quieter.
pub const QUIET_TARGETS: &[&str] = &[
    "aws_",
    "hyper",
    "h2",
    "reqwest",
    "rustls",
    "tower",
    "lambda_runtime",
    "lambda_http",
];

fn within_dependency_cap(metadata: &tracing::Metadata<'_>) -> bool {
    *metadata.level() <= tracing::Level::INFO
        || !QUIET_TARGETS
            .iter()
            .any(|prefix| metadata.target().starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The roots the DynamoDB client trusts are the five Amazon Trust
    /// Services ones, all valid certificates, and the client builds.
    #[test]
    fn aws_roots_are_the_amazon_trust_services_cas() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certificates: Vec<_> = CertificateDer::pem_slice_iter(AWS_ROOTS)
            .collect::<Result<_, _>>()
            .expect("PEM");
        assert_eq!(certificates.len(), 5);
        let mut store = rustls::RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(certificates);
        assert_eq!((added, ignored), (5, 0));
        let _client = aws_https_client();
    }

    /// The compiled-in store holds the roots that Graph's and the usual
    /// public CAs' chains end in; an empty or foreign store would refuse
    /// every send.
    #[test]
    fn https_roots_include_the_public_cas_graph_chains_to() {
        let roots = web_roots();
        assert!(roots.len() > 100, "{} roots", roots.len());
        let has = |name: &[u8]| {
            roots
                .roots
                .iter()
                .any(|anchor| anchor.subject.windows(name.len()).any(|w| w == name))
        };
        // Meta's chain ends in DigiCert Global Root G2; Let's Encrypt's in
        // ISRG Root X1.
        for name in [&b"DigiCert Global Root G2"[..], b"ISRG Root X1"] {
            assert!(has(name), "{}", String::from_utf8_lossy(name));
        }
        assert!(https_client_builder().build().is_ok());
        assert!(https_post_client(std::time::Duration::from_secs(1)).is_ok());
    }

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    fn lines(captured: &Captured) -> Vec<serde_json::Value> {
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn b52_every_line_of_an_invocation_carries_its_request_id() {
        use lambda_http::lambda_runtime::{Context, layers::trace::request_span};
        let captured = Captured::default();
        let subscriber = json_logs(captured.clone(), tracing_subscriber::EnvFilter::new("info"));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any invocation");
            // The span lambda_runtime opens around each invocation.
            let mut context = Context::default();
            context.request_id = "8476a536-e9f4-11e8-9739-2dfe598c3fcd".to_owned();
            let span = request_span(&context);
            let _entered = span.enter();
            tracing::info!(
                status = 201_u16,
                route = "PUT /v1/blocks/{param}",
                "request"
            );
            tracing::warn!(count = 2_u64, "updates without id skipped");
        });
        let lines = lines(&captured);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["message"], "outside any invocation");
        assert!(lines[0].get("span").is_none());
        for line in &lines[1..] {
            assert_eq!(
                line["span"]["requestId"], "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
                "{line}"
            );
            assert!(
                line.get("fields").is_none(),
                "event fields are flattened: {line}"
            );
            assert!(line.get("spans").is_none(), "no span list: {line}");
        }
        assert_eq!(lines[1]["level"], "INFO");
        assert_eq!(lines[1]["message"], "request");
        assert_eq!(lines[1]["status"], 201);
        assert_eq!(lines[1]["route"], "PUT /v1/blocks/{param}");
        assert_eq!(lines[2]["level"], "WARN");
        assert_eq!(lines[2]["count"], 2);
    }

    #[test]
    fn b52_library_debug_output_stays_off_even_at_trace() {
        let captured = Captured::default();
        let subscriber = json_logs(
            captured.clone(),
            tracing_subscriber::EnvFilter::new("trace"),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "aws_smithy_runtime::client", "request with headers");
            tracing::debug!(target: "lambda_runtime::layers::api_response", "raw event");
            tracing::debug!(target: "hyper_util::client", "connection");
            tracing::info!(target: "lambda_runtime::layers::trace", "kept");
            tracing::debug!(target: "block_api", "ours");
        });
        let messages: Vec<String> = lines(&captured)
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(messages, ["kept", "ours"]);
    }

    #[test]
    fn missing_variable_is_named() {
        let env = Env(&|_| None);
        assert_eq!(
            env.required("CRM_WEBHOOK_URL"),
            Err(ConfigError::Missing("CRM_WEBHOOK_URL"))
        );
        // What a function that fails at init prints (`main` returns Err).
        assert_eq!(
            format!("{:?}", ConfigError::Missing("CRM_WEBHOOK_URL")),
            "environment variable CRM_WEBHOOK_URL is required but not set"
        );
        assert_eq!(tables(&env).blocklist, "Blocklist");
        let env = Env(&|k| (k == "AUDIT_TABLE").then(|| "prod-audit".to_owned()));
        assert_eq!(tables(&env).audit, "prod-audit");
    }
}
