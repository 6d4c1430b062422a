//! `wa-cli` end to end: the built binary against the local stack served
//! in-process on DynamoDB Local (`AWS_ENDPOINT_URL_DYNAMODB`), each test on
//! its own tables.

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use blocklist::Subject;
use blocklist::config::Env;
use serde_json::Value;
use wa_dev::server::{self, Stack};

// Not the local defaults, so a CLI that ignored --secret/--app-secret would
// fail against this stack.
const JWT_SECRET: &str = "cli-test-jwt-secret";
const APP_SECRET: &str = "cli-test-app-secret";

/// A local stack on a free port, served until dropped.
struct Local {
    base_url: String,
    stack: Arc<Stack>,
    // Dropping the runtime stops the server task.
    runtime: tokio::runtime::Runtime,
}

impl Local {
    fn start() -> Local {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "cli{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (addr, stack) = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("local addr").to_string();
            let lookup = move |key: &str| match key {
                "BLOCKLIST_TABLE" => Some(format!("{prefix}-Blocklist")),
                "AUDIT_TABLE" => Some(format!("{prefix}-Audit")),
                "CHATS_TABLE" => Some(format!("{prefix}-Chats")),
                "FAILURES_TABLE" => Some(format!("{prefix}-Failures")),
                "IMPORTS_TABLE" => Some(format!("{prefix}-Imports")),
                "MESSAGES_TABLE" => Some(format!("{prefix}-Messages")),
                "LOCAL_JWT_SECRET" => Some(JWT_SECRET.to_owned()),
                "WHATSAPP_APP_SECRET" => Some(APP_SECRET.to_owned()),
                _ => None,
            };
            let stack = Stack::build(&Env(&lookup), &addr)
                .await
                .unwrap_or_else(|e| {
                    panic!("stack: {e} (is DynamoDB Local at AWS_ENDPOINT_URL_DYNAMODB?)")
                });
            let stack = Arc::new(stack);
            tokio::spawn(server::serve(
                listener,
                stack.clone(),
                std::future::pending(),
            ));
            (addr, stack)
        });
        Local {
            base_url: format!("http://{addr}"),
            stack,
            runtime,
        }
    }

    /// A token for this stack, minted by `wa-cli token`.
    fn token(&self, scopes: &[&str]) -> String {
        let mut args = vec!["token", "--sub", "cli-test", "--secret", JWT_SECRET];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let out = cli(&args, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    }

    /// Runs `wa-cli` against this stack with `token` in WA_TOKEN.
    fn run(&self, token: &str, args: &[&str]) -> Output {
        cli(
            args,
            &[("WA_BASE_URL", &self.base_url), ("WA_TOKEN", token)],
        )
    }

    /// Runs an API command that must succeed and returns its JSON.
    fn json(&self, token: &str, args: &[&str]) -> Value {
        let out = self.run(token, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "wa-cli {args:?}: {}",
            stderr(&out)
        );
        serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("wa-cli {args:?}: not JSON ({e}): {}", stdout(&out)))
    }
}

/// Runs the binary with a clean slate of the variables it reads, so the
/// developer's own shell settings cannot leak in.
fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wa-cli"));
    for key in [
        "WA_BASE_URL",
        "WA_TOKEN",
        "LOCAL_JWT_SECRET",
        "WHATSAPP_APP_SECRET",
    ] {
        command.env_remove(key);
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run wa-cli")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `HTTP <status>` then the JSON body, as `inbound`, `status` and `send`
/// print them.
fn exchange(out: &Output) -> (String, Value) {
    let text = stdout(out);
    let (status, body) = text.split_once('\n').unwrap_or((&text, ""));
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("body not JSON ({e}): {text}"));
    (status.to_owned(), body)
}

fn decode(token: &str, secret: &str) -> Result<Value, jsonwebtoken::errors::Error> {
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .map(|data| data.claims)
}

#[test]
fn token_is_an_hs256_jwt_with_the_requested_claims() {
    let out = cli(
        &[
            "token",
            "--sub",
            "ops-alice",
            "--scope",
            "blocklist:read",
            "--ttl",
            "600",
            "--secret",
            "s3cret",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    // Only the token, so that `export TOKEN=$(wa-cli token)` works.
    assert_eq!(text.lines().count(), 1, "{text}");
    let token = text.trim();
    let claims = decode(token, "s3cret").expect("verifies with the secret");
    assert_eq!(claims["sub"], "ops-alice");
    assert_eq!(claims["scope"], "blocklist:read");
    let expires_in = claims["exp"].as_i64().unwrap() - chrono::Utc::now().timestamp();
    assert!((590..=600).contains(&expires_in), "exp {expires_in}s away");
    assert!(decode(token, "another-secret").is_err());
}

#[test]
fn token_scopes_default_to_read_write_and_all_expands_to_five() {
    let default = cli(&["token"], &[("LOCAL_JWT_SECRET", "from-env")]);
    assert_eq!(default.status.code(), Some(0), "{}", stderr(&default));
    let claims_default =
        decode(stdout(&default).trim(), "from-env").expect("secret taken from LOCAL_JWT_SECRET");
    assert_eq!(claims_default["scope"], "blocklist:read blocklist:write");

    let all = cli(
        &["token", "--scope", "all", "--scope", "blocklist:read"],
        &[],
    );
    let claims_all = decode(stdout(&all).trim(), "local-jwt-secret").expect("default secret");
    assert_eq!(
        claims_all["scope"],
        "blocklist:read blocklist:write blocklist:admin blocklist:delegate messages:send"
    );
}

#[test]
fn block_get_history_list_and_unblock_round_trip() {
    let local = Local::start();
    let token = local.token(&["all"]);

    let block = local.json(
        &token,
        &["block", "+16505550101", "--reason", "abusive messages"],
    );
    assert_eq!(block["number"], "+16505550101");
    assert_eq!(block["scope"], "all");
    assert_eq!(block["reason"], "abusive messages");
    assert_eq!(block["actor"], "cli-test");

    let view = local.json(&token, &["get", "+16505550101"]);
    let blocks = view["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 1, "{view}");
    assert_eq!(blocks[0]["reason"], "abusive messages");

    // The API takes the number without `+` as well (SPEC section 4).
    let history = local.json(&token, &["history", "16505550101"]);
    let events = history["items"].as_array().expect("items");
    assert_eq!(events.len(), 1, "{history}");
    assert_eq!(events[0]["action"], "blocked");
    assert_eq!(events[0]["reason"], "abusive messages");

    let list = local.json(&token, &["list", "--scope", "all"]);
    assert_eq!(list["items"][0]["number"], "+16505550101", "{list}");

    let removed = local.json(
        &token,
        &["unblock", "+16505550101", "--reason", "verified by phone"],
    );
    assert_eq!(removed["number"], "+16505550101");
    let view = local.json(&token, &["get", "+16505550101"]);
    assert_eq!(view["blocks"], Value::Array(vec![]), "{view}");
    let history = local.json(&token, &["history", "+16505550101"]);
    assert_eq!(history["items"][0]["action"], "unblocked", "{history}");

    // Nothing left to remove: the API's 404 becomes exit code 1, its
    // message on stderr and nothing on stdout.
    let again = local.run(&token, &["unblock", "+16505550101", "--reason", "twice"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("not_blocked"), "{}", stderr(&again));
    assert!(stdout(&again).is_empty(), "{}", stdout(&again));
}

#[test]
fn list_all_follows_next_cursor_to_the_end() {
    let local = Local::start();
    let token = local.token(&["all"]);
    for number in ["+16505550201", "+16505550202", "+16505550203"] {
        local.json(&token, &["block", number, "--reason", "spam"]);
    }

    let first = local.json(&token, &["list", "--limit", "1"]);
    assert_eq!(first["items"].as_array().map(Vec::len), Some(1));
    assert!(first["next_cursor"].is_string(), "{first}");

    let all = local.json(&token, &["list", "--limit", "1", "--all"]);
    let mut numbers: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["number"].as_str().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, ["+16505550201", "+16505550202", "+16505550203"]);
    assert_eq!(all["next_cursor"], Value::Null);
}

#[test]
fn inbound_from_a_blocked_number_is_suppressed_and_others_are_not() {
    let local = Local::start();
    let token = local.token(&["all"]);
    local.json(&token, &["block", "+16505550301", "--reason", "spam"]);
    let inbound = |from: &str| {
        local.run(
            "",
            &[
                "inbound",
                "--from",
                from,
                "--text",
                "hi",
                "--app-secret",
                APP_SECRET,
            ],
        )
    };

    let out = inbound("16505550301");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (status, body) = exchange(&out);
    assert_eq!(status, "HTTP 200 OK");
    assert_eq!(body["suppressed"], 1, "{body}");
    assert_eq!(body["forwarded"], 0, "{body}");

    let out = inbound("+16505550399");
    let (_, body) = exchange(&out);
    assert_eq!(body["suppressed"], 0, "{body}");
    assert_eq!(body["forwarded"], 1, "{body}");

    let history = local.json(&token, &["history", "+16505550301"]);
    assert_eq!(
        history["items"][0]["action"], "inbound_suppressed",
        "{history}"
    );
}

#[test]
fn redelivered_inbound_id_is_a_duplicate() {
    let local = Local::start();
    let args = [
        "inbound",
        "--from",
        "+16505550401",
        "--id",
        "wamid.CLITEST1",
        "--app-secret",
        APP_SECRET,
    ];
    let (_, first) = exchange(&local.run("", &args));
    let (_, second) = exchange(&local.run("", &args));
    assert_eq!(first["forwarded"], 1, "{first}");
    assert_eq!(second["duplicates"], 1, "{second}");
    assert_eq!(second["forwarded"], 0, "{second}");
}

#[test]
fn status_updates_are_accepted_and_bad_signatures_refused() {
    let local = Local::start();

    let failures = || {
        let number = Subject::parse("+16505550501").unwrap();
        let since = chrono::Utc::now() - chrono::Duration::hours(1);
        local
            .runtime
            .block_on(local.stack.store.failures_since(&number, since))
            .expect("read delivery failures")
    };

    let out = local.run(
        "",
        &[
            "status",
            "--to",
            "+16505550501",
            "--status",
            "failed",
            "--id",
            "wamid.CLIFAILED1",
            "--app-secret",
            APP_SECRET,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (status, body) = exchange(&out);
    assert_eq!(status, "HTTP 200 OK");
    assert_eq!(body["status"], "ok", "{body}");
    // The defaults of errors[] reached the ingress as a delivery failure.
    let recorded = failures();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].code, Some(131_026));
    assert_eq!(recorded[0].title.as_deref(), Some("Message undeliverable"));
    assert_eq!(recorded[0].message_id, "wamid.CLIFAILED1");
    assert_eq!(
        recorded[0].phone_number_id.as_ref().map(|p| p.as_str()),
        Some("106540352242922")
    );

    let out = local.run(
        "",
        &[
            "status",
            "--to",
            "16505550501",
            "--status",
            "delivered",
            "--app-secret",
            APP_SECRET,
        ],
    );
    assert_eq!(exchange(&out).0, "HTTP 200 OK");
    // Only `failed` carries errors[] and counts as a failure.
    assert_eq!(failures().len(), 1);

    // Signed with the local default secret, which this stack does not use.
    let out = local.run("", &["status", "--to", "+16505550501", "--status", "read"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(exchange(&out).0.starts_with("HTTP 401"), "{}", stdout(&out));

    let out = local.run(
        "",
        &[
            "status",
            "--to",
            "+16505550501",
            "--status",
            "delivered",
            "--code",
            "131026",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn send_goes_through_unless_the_recipient_is_blocked() {
    let local = Local::start();
    let token = local.token(&["all"]);

    let out = local.run(
        &token,
        &["send", "+16505550601", "--text", "Your order has shipped"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    let (status, body) = exchange(&out);
    assert_eq!(status, "HTTP 200 OK");
    assert!(body["messages"][0]["id"].is_string(), "{body}");

    local.json(&token, &["block", "+16505550601", "--reason", "opted out"]);
    let out = local.run(&token, &["send", "+16505550601", "--text", "again"]);
    assert_eq!(out.status.code(), Some(1));
    let (status, body) = exchange(&out);
    assert!(status.starts_with("HTTP 403"), "{status}");
    assert_eq!(
        body["error"]["error_data"]["reason"], "recipient_blocked",
        "{body}"
    );
}

#[test]
fn api_errors_exit_1_and_a_missing_token_exits_2() {
    let local = Local::start();

    let out = local.run("", &["get", "+16505550701"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("WA_TOKEN"), "{}", stderr(&out));

    // A read-only token may not block: 403 from the API.
    let reader = local.token(&["blocklist:read"]);
    let out = local.run(&reader, &["block", "+16505550701", "--reason", "spam"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));

    let out = local.run(&reader, &["get", "not-a-number"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HTTP 422"), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid_number"), "{}", stderr(&out));

    // An expired token is refused too: the API is really checking.
    let expired = cli(&["token", "--ttl", "-60", "--secret", JWT_SECRET], &[]);
    let out = local.run(stdout(&expired).trim(), &["get", "+16505550701"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
}

#[test]
fn bsuids_are_taken_wherever_a_number_is() {
    let local = Local::start();
    let token = local.token(&["all"]);
    let user = "US.16505550801";
    let webhook = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--app-secret", APP_SECRET]);
        let out = local.run("", &all);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        exchange(&out).1
    };
    let inbound = |args: &[&str]| {
        let mut all = vec!["inbound"];
        all.extend_from_slice(args);
        webhook(&all)
    };

    // Meta shows the number and the BSUID together: linked, forwarded.
    let shown = inbound(&["--from", "+16505550801", "--user-id", user]);
    assert_eq!(shown["forwarded"], 1, "{shown}");
    local.json(&token, &["block", "+16505550801", "--reason", "abusive"]);
    // The number hidden: the BSUID alone is suppressed all the same.
    let hidden = inbound(&["--user-id", user, "--text", "number hidden"]);
    assert_eq!(hidden["suppressed"], 1, "{hidden}");

    let view = local.json(&token, &["get", user]);
    assert_eq!(view["subject"], user, "{view}");
    assert_eq!(view["number"], Value::Null, "{view}");
    assert_eq!(view["links"][0]["number"], "+16505550801", "{view}");
    assert_eq!(
        view["linked_blocks"][0]["subject"], "+16505550801",
        "{view}"
    );
    let history = local.json(&token, &["history", user]);
    assert_eq!(
        history["items"][0]["action"], "inbound_suppressed",
        "{history}"
    );

    // A BSUID argument is sent as `recipient`, and refused for the person.
    let out = local.run(&token, &["send", user, "--text", "hi"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let (status, body) = exchange(&out);
    assert!(status.starts_with("HTTP 403"), "{status}");
    assert_eq!(body["error"]["error_data"]["recipient"], user, "{body}");
    let out = local.run(
        &token,
        &[
            "send",
            "+16505550802",
            "--recipient",
            "US.16505550802",
            "--text",
            "hi",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // A BSUID blocked and unblocked directly; a malformed one refused.
    let block = local.json(&token, &["block", "US.ENT.16505550899", "--reason", "spam"]);
    assert_eq!(block["subject"], "US.ENT.16505550899", "{block}");
    assert_eq!(block["number"], Value::Null, "{block}");
    let removed = local.json(
        &token,
        &["unblock", "US.ENT.16505550899", "--reason", "resolved"],
    );
    assert_eq!(removed["subject"], "US.ENT.16505550899", "{removed}");
    let out = local.run(&token, &["get", "US.1650-555"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid_user_id"), "{}", stderr(&out));

    // A failed status naming only the BSUID is accepted.
    let status = webhook(&["status", "--user-id", user, "--status", "failed"]);
    assert_eq!(status["status"], "ok", "{status}");
}

#[test]
fn consent_shows_and_sets_a_subjects_opt_outs() {
    let local = Local::start();
    let token = local.token(&["all"]);
    let set = local.json(
        &token,
        &["consent", "+16505550701", "--marketing", "opted_out"],
    );
    assert_eq!(set["marketing"], "opted_out", "{set}");
    assert_eq!(set["all"], "opted_in", "{set}");
    assert_eq!(set["source"], "api", "{set}");
    let shown = local.json(&token, &["consent", "+16505550701"]);
    assert_eq!(shown["consents"][0]["marketing"], "opted_out", "{shown}");
    let bad = local.run(&token, &["consent", "+16505550701", "--all", "maybe"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "clap refuses a value outside the enum"
    );
}

#[test]
fn rules_are_made_listed_shown_and_removed() {
    let local = Local::start();
    let token = local.token(&["all"]);
    let made = local.json(
        &token,
        &[
            "rule",
            "put",
            "wave",
            "--prefix",
            "+1650555",
            "--reason",
            "spam wave",
        ],
    );
    assert_eq!(made["prefix"], "+1650555", "{made}");
    assert_eq!(made["actor"], "cli-test");
    let list = local.json(&token, &["rule", "list"]);
    assert_eq!(list["items"][0]["id"], "wave", "{list}");
    assert_eq!(local.json(&token, &["rule", "get", "wave"]), made);
    let view = local.json(&token, &["get", "+16505550801"]);
    assert_eq!(view["rules"][0]["id"], "wave", "{view}");
    let out = local.run(&token, &["send", "+16505550801", "--text", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let (_, body) = exchange(&out);
    assert_eq!(body["error"]["error_data"]["rule"], "wave", "{body}");
    let removed = local.json(&token, &["rule", "delete", "wave", "--reason", "over"]);
    assert_eq!(removed["id"], "wave");
    let again = local.run(&token, &["rule", "get", "wave"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("rule_not_found"),
        "{}",
        stderr(&again)
    );
    let reader = local.token(&["blocklist:read", "blocklist:write"]);
    let refused = local.run(
        &reader,
        &["rule", "put", "x", "--prefix", "+1", "--reason", "r"],
    );
    assert_eq!(refused.status.code(), Some(1), "needs blocklist:admin");
}

#[test]
fn review_keeps_a_block_and_list_shows_what_is_due() {
    let local = Local::start();
    let token = local.token(&["all"]);
    local.json(&token, &["block", "+16505550901", "--reason", "spam"]);
    let due = local.json(&token, &["list", "--review-due"]);
    assert_eq!(due["items"], Value::Array(vec![]), "due in 90 days: {due}");
    let kept = local.json(
        &token,
        &[
            "review",
            "+16505550901",
            "--decision",
            "keep",
            "--reason",
            "still spam",
        ],
    );
    assert_eq!(kept["decision"], "keep", "{kept}");
    assert!(kept["block"]["review_due_at"].is_string(), "{kept}");
    let removed = local.json(
        &token,
        &[
            "review",
            "+16505550901",
            "--decision",
            "unblock",
            "--reason",
            "quiet now",
        ],
    );
    assert_eq!(removed["decision"], "unblock", "{removed}");
    let view = local.json(&token, &["get", "+16505550901"]);
    assert_eq!(view["blocks"], Value::Array(vec![]), "{view}");
}
