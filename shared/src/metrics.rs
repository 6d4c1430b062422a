//! Counters as CloudWatch Embedded Metric Format (EMF) lines on stdout.
//!
//! Each count is one JSON object on its own line, which CloudWatch Logs
//! turns into a metric of namespace [`NAMESPACE`] with the dimension
//! `Function`:
//!
//! ```json
//! {"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"WaBlocklist",
//!   "Dimensions":[["Function"]],"Metrics":[{"Name":"blocked","Unit":"Count"}]}]},
//!  "Function":"block-api","blocked":1}
//! ```
//!
//! Writing a metric never fails a request and never panics: a line that
//! cannot be written is dropped.

use std::io::Write;
use std::sync::OnceLock;

use serde_json::json;

/// The CloudWatch namespace of every counter.
pub const NAMESPACE: &str = "WaBlocklist";
/// The one dimension of every counter.
pub const DIMENSION: &str = "Function";

/// The counters the functions emit (ARCHITECTURE "Logging and metrics").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// A block was created through block-api (single or batch).
    Blocked,
    /// An unblock removed a block.
    Unblocked,
    /// wa-blocked created an automatic block.
    AutoBlocked,
    /// block-expiry removed a temporary block at its end.
    Expired,
    /// An inbound message from a blocked sender was not forwarded.
    InboundSuppressed,
    /// The send proxy refused a send.
    OutboundRefused,
    /// A webhook delivery was rejected (bad signature).
    WebhookRejected,
    /// Meta's Block Users API blocked a person on a business number (B15).
    PlatformBlocked,
    /// Meta unblocked a person on a business number (B15).
    PlatformUnblocked,
    /// Meta refused to block or unblock a person (B15).
    PlatformRefused,
    /// Chats of forwarded messages that could not be stamped before the
    /// webhook's answer was due (B24, S3).
    ChatStampsLost,
}

impl Counter {
    pub const ALL: [Counter; 11] = [
        Counter::Blocked,
        Counter::Unblocked,
        Counter::AutoBlocked,
        Counter::Expired,
        Counter::InboundSuppressed,
        Counter::OutboundRefused,
        Counter::WebhookRejected,
        Counter::PlatformBlocked,
        Counter::PlatformUnblocked,
        Counter::PlatformRefused,
        Counter::ChatStampsLost,
    ];

    /// The metric name.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Blocked => "blocked",
            Counter::Unblocked => "unblocked",
            Counter::AutoBlocked => "auto_blocked",
            Counter::Expired => "expired",
            Counter::InboundSuppressed => "inbound_suppressed",
            Counter::OutboundRefused => "outbound_refused",
            Counter::WebhookRejected => "webhook_rejected",
            Counter::PlatformBlocked => "platform_blocked",
            Counter::PlatformUnblocked => "platform_unblocked",
            Counter::PlatformRefused => "platform_refused",
            Counter::ChatStampsLost => "chat_stamps_lost",
        }
    }
}

/// Counts `count` events of `counter`: one EMF line on stdout, nothing when
/// `count` is 0. The `Function` dimension is `AWS_LAMBDA_FUNCTION_NAME` when
/// set (in Lambda), else `crate_name` (pass `env!("CARGO_PKG_NAME")`).
pub fn count(crate_name: &str, counter: Counter, count: u64) {
    if count == 0 {
        return;
    }
    let function = lambda_function_name().unwrap_or(crate_name);
    let timestamp = chrono::Utc::now().timestamp_millis();
    // One `write_all` of the whole line, so it never interleaves with a
    // log line; errors (closed stdout) are dropped.
    let _ = write_count(
        &mut std::io::stdout().lock(),
        function,
        counter,
        count,
        timestamp,
    );
}

/// Writes the EMF line of [`count`] to `out`; nothing when `count` is 0.
pub fn write_count(
    out: &mut dyn Write,
    function: &str,
    counter: Counter,
    count: u64,
    timestamp_ms: i64,
) -> std::io::Result<()> {
    let Some(line) = emf_line(function, counter, count, timestamp_ms) else {
        return Ok(());
    };
    out.write_all(line.as_bytes())?;
    out.flush()
}

/// The EMF line (with its trailing newline), or `None` when `count` is 0.
pub fn emf_line(function: &str, counter: Counter, count: u64, timestamp_ms: i64) -> Option<String> {
    if count == 0 {
        return None;
    }
    let name = counter.name();
    let mut document = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": [{ "Name": name, "Unit": "Count" }],
            }],
        },
        DIMENSION: function,
    });
    document[name] = json!(count);
    let mut line = document.to_string();
    line.push('\n');
    Some(line)
}

fn lambda_function_name() -> Option<&'static str> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .ok()
            .filter(|name| !name.is_empty())
    })
    .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(line: &str) -> Value {
        assert!(line.ends_with('\n'), "one line: {line:?}");
        assert_eq!(line.matches('\n').count(), 1, "exactly one line: {line:?}");
        serde_json::from_str(line.trim_end()).expect("the line is JSON")
    }

    #[test]
    fn emf_line_has_every_field_of_the_spec() {
        let line = emf_line("block-api", Counter::Blocked, 1, 1_700_000_000_123).unwrap();
        let value = parse(&line);
        let object = value.as_object().unwrap();
        // Exactly the metadata, the dimension and the metric value.
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["Function", "_aws", "blocked"]);

        let aws = object["_aws"].as_object().unwrap();
        let mut aws_keys: Vec<&str> = aws.keys().map(String::as_str).collect();
        aws_keys.sort_unstable();
        assert_eq!(aws_keys, ["CloudWatchMetrics", "Timestamp"]);
        assert_eq!(aws["Timestamp"], json!(1_700_000_000_123_i64));
        assert!(aws["Timestamp"].is_i64(), "Timestamp is an integer of ms");

        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let directive = directives[0].as_object().unwrap();
        let mut directive_keys: Vec<&str> = directive.keys().map(String::as_str).collect();
        directive_keys.sort_unstable();
        assert_eq!(directive_keys, ["Dimensions", "Metrics", "Namespace"]);
        assert_eq!(directive["Namespace"], json!("WaBlocklist"));
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{ "Name": "blocked", "Unit": "Count" }])
        );

        assert_eq!(object["Function"], json!("block-api"));
        assert_eq!(object["blocked"], json!(1));
        assert!(object["blocked"].is_u64(), "the value is a number");
    }

    #[test]
    fn emf_line_matches_the_documented_example() {
        let line = emf_line("block-api", Counter::Blocked, 1, 1_700_000_000_000).unwrap();
        let expected = json!({
            "_aws": {
                "Timestamp": 1_700_000_000_000_i64,
                "CloudWatchMetrics": [{
                    "Namespace": "WaBlocklist",
                    "Dimensions": [["Function"]],
                    "Metrics": [{ "Name": "blocked", "Unit": "Count" }],
                }],
            },
            "Function": "block-api",
            "blocked": 1,
        });
        assert_eq!(parse(&line), expected);
        assert!(line.starts_with('{'));
    }

    #[test]
    fn every_counter_names_its_value_member() {
        for counter in Counter::ALL {
            let line = emf_line("webhook-ingress", counter, 3, 1).unwrap();
            let value = parse(&line);
            let name = counter.name();
            assert_eq!(
                value["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
                json!(name)
            );
            assert_eq!(value[name], json!(3), "{name}");
            assert_eq!(value["Function"], json!("webhook-ingress"));
        }
        let names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "blocked",
                "unblocked",
                "auto_blocked",
                "expired",
                "inbound_suppressed",
                "outbound_refused",
                "webhook_rejected",
                "platform_blocked",
                "platform_unblocked",
                "platform_refused",
                "chat_stamps_lost",
            ]
        );
    }

    #[test]
    fn function_names_are_escaped() {
        let line = emf_line("odd \"name\"\n", Counter::Unblocked, 2, 5).unwrap();
        assert_eq!(parse(&line)["Function"], json!("odd \"name\"\n"));
    }

    #[test]
    fn a_zero_count_writes_nothing() {
        assert_eq!(emf_line("block-api", Counter::Blocked, 0, 1), None);
        let mut out = Vec::new();
        write_count(&mut out, "block-api", Counter::InboundSuppressed, 0, 1).unwrap();
        assert!(out.is_empty());
        // and `count` returns at once
        count("block-api", Counter::InboundSuppressed, 0);
    }

    #[test]
    fn write_count_writes_one_line() {
        let mut out = Vec::new();
        write_count(&mut out, "send-proxy", Counter::OutboundRefused, 1, 42).unwrap();
        let text = String::from_utf8(out).unwrap();
        let value = parse(&text);
        assert_eq!(value["outbound_refused"], json!(1));
        assert_eq!(value["_aws"]["Timestamp"], json!(42));
    }

    #[test]
    fn a_failing_writer_is_an_error_not_a_panic() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "closed",
                ))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "closed",
                ))
            }
        }
        assert!(write_count(&mut Broken, "block-api", Counter::Blocked, 1, 1).is_err());
    }
}
