//! `wa-cli`: drive a wa-blocklist API (the local stack of `scripts/dev` by
//! default) from the shell: mint local tokens, simulate Meta webhooks, and
//! call the block API and send proxy. Run `wa-cli --help`.

use std::process::ExitCode;
use std::time::Duration;

use blocklist::identity::{Subject, SubjectError};
use blocklist::meta::signature;
use clap::{Args, Parser, Subcommand, ValueEnum};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Everything but RFC 3986 unreserved characters, so that a `+` in a number
/// reaches the API as `%2B` instead of being read as a space.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const ALL_SCOPES: [&str; 5] = [
    "blocklist:read",
    "blocklist:write",
    "blocklist:admin",
    "blocklist:delegate",
    "messages:send",
];
const DEFAULT_PHONE_NUMBER_ID: &str = "106540352242922";
/// The business account and display number of the Meta fixtures, so that
/// simulated deliveries look like the recorded ones.
const WABA_ID: &str = "102290129340398";
const DISPLAY_PHONE_NUMBER: &str = "15550783881";

const MAIN_HELP: &str = "\
Exit codes:
  0  success
  1  the request failed: HTTP 4xx/5xx (the API's error goes to stderr) or the server is unreachable
  2  usage error (bad arguments, missing token)

Examples:
  export WA_TOKEN=$(wa-cli token --scope all)
  wa-cli block +16505551234 --reason 'abusive messages'
  wa-cli get +16505551234
  wa-cli block US.13491208655302741918 --reason 'abusive messages'
  wa-cli inbound --from +16505551234 --text 'hello?'
  wa-cli inbound --user-id US.13491208655302741918 --text 'number hidden'
  wa-cli list --source manual --all | jq '.items | length'
  wa-cli consent +16505551234 --marketing opted_out
  wa-cli rule put ng-wave --prefix +234 --reason 'spam wave'
  wa-cli --base-url http://127.0.0.1:3001 history +16505551234";

#[derive(Parser)]
#[command(name = "wa-cli", version, after_long_help = MAIN_HELP)]
/// Command-line client for wa-blocklist: local tokens, simulated Meta
/// webhooks, and the block API.
///
/// Talks to the local stack started by `scripts/dev` unless --base-url (or
/// WA_BASE_URL) points elsewhere. API commands need a bearer token: pass
/// --token, or set WA_TOKEN, e.g. with `export WA_TOKEN=$(wa-cli token)`.
struct Cli {
    /// Base URL of the API (local stack, or an API Gateway stage URL).
    #[arg(
        long,
        global = true,
        env = "WA_BASE_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    base_url: String,

    /// Bearer token for /v1/ routes (see `wa-cli token`).
    #[arg(long, global = true, env = "WA_TOKEN", hide_env_values = true)]
    token: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Token(TokenArgs),
    Inbound(InboundArgs),
    Status(StatusArgs),
    Block(BlockArgs),
    Unblock(UnblockArgs),
    Get(GetArgs),
    List(ListArgs),
    History(HistoryArgs),
    Send(SendArgs),
    Consent(ConsentArgs),
    Rule(RuleArgs),
    Review(ReviewArgs),
}

#[derive(Args)]
#[command(after_long_help = "\
Examples:
  export WA_TOKEN=$(wa-cli token)
  export WA_TOKEN=$(wa-cli token --scope all --sub ops-alice)
  wa-cli token --scope blocklist:read --ttl 300
  wa-cli token --ttl -60            # already expired: the API answers 401")]
/// Print an HS256 token accepted by the local API.
///
/// Only the token is printed, so `export WA_TOKEN=$(wa-cli token)` works.
/// The local stack accepts tokens signed with LOCAL_JWT_SECRET; on AWS,
/// tokens come from the real identity provider instead.
struct TokenArgs {
    /// The token's `sub`: the actor recorded in audit events.
    #[arg(long, default_value = "wa-cli")]
    sub: String,

    /// A scope to grant; repeat for several. `all` grants all five.
    /// [default: blocklist:read blocklist:write]
    #[arg(long = "scope", value_name = "SCOPE", value_parser = clap::builder::PossibleValuesParser::new(
        ["all", "blocklist:read", "blocklist:write", "blocklist:admin", "blocklist:delegate", "messages:send"]
    ))]
    scopes: Vec<String>,

    /// Lifetime in seconds; negative gives an already expired token.
    #[arg(long, default_value_t = 86_400, allow_negative_numbers = true)]
    ttl: i64,

    /// HS256 secret; must match the stack's LOCAL_JWT_SECRET.
    #[arg(
        long,
        env = "LOCAL_JWT_SECRET",
        default_value = "local-jwt-secret",
        hide_env_values = true
    )]
    secret: String,
}

#[derive(Args)]
struct Webhook {
    /// The business number the update is for (metadata.phone_number_id).
    #[arg(long, default_value = DEFAULT_PHONE_NUMBER_ID)]
    phone_number_id: String,

    /// Message id (wamid); a fresh `wamid.CLI…` by default. Reuse one to
    /// simulate Meta redelivering the same update.
    #[arg(long, value_name = "WAMID")]
    id: Option<String>,

    /// Meta app secret the body is signed with; must match the stack's
    /// WHATSAPP_APP_SECRET.
    #[arg(
        long,
        env = "WHATSAPP_APP_SECRET",
        default_value = "local-app-secret",
        hide_env_values = true
    )]
    app_secret: String,
}

#[derive(Args)]
#[command(after_long_help = "\
Prints the HTTP status, then the response body, e.g.
  HTTP 200 OK
  {\"status\": \"ok\", \"forwarded\": 0, \"suppressed\": 1, \"duplicates\": 0}
(`suppressed` counts messages from blocked numbers that were not forwarded.)

Examples:
  wa-cli inbound --from +16505551234
  wa-cli inbound --from 16505551234 --text 'Does it come in another color?'
  wa-cli inbound --from +16505551234 --id wamid.SAME   # twice: the second is a duplicate
  wa-cli inbound --from +16505551234 --user-id US.13491208655302741918   # links the two
  wa-cli inbound --user-id US.13491208655302741918                       # number hidden")]
/// Simulate Meta delivering an inbound text message to POST /webhook.
///
/// Builds a webhook delivery shaped like Meta's (one entry, one change, one
/// text message), signs it with X-Hub-Signature-256 under the app secret,
/// and posts it to {base-url}/webhook. No token is needed. A sender given
/// by number and business-scoped user id (BSUID) shows both, as
/// `from`/`wa_id` and `from_user_id`/`user_id`; one given by BSUID only
/// has its number hidden, as with a WhatsApp username.
struct InboundArgs {
    /// Sender's number; `+` and separators are dropped, as Meta writes it.
    #[arg(long, value_name = "NUMBER", required_unless_present = "user_id")]
    from: Option<String>,

    /// Sender's BSUID, e.g. US.13491208655302741918; without --from the
    /// number is hidden.
    #[arg(long, value_name = "BSUID")]
    user_id: Option<String>,

    /// Message text.
    #[arg(long, default_value = "Hello from wa-cli")]
    text: String,

    #[command(flatten)]
    webhook: Webhook,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DeliveryStatus {
    Failed,
    Delivered,
    Read,
    Sent,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Sent => "sent",
        }
    }
}

#[derive(Args)]
#[command(after_long_help = "\
A `failed` status is recorded as a delivery failure; with the default
auto-block policy (code 131026, threshold 1) the stack's stream poller then
auto-blocks the recipient.

Examples:
  wa-cli status --to +16505551234 --status delivered
  wa-cli status --to +16505551234 --status failed
  wa-cli status --to +16505551234 --status failed --code 131049 --title 'Meta chose not to deliver'
  wa-cli status --user-id US.13491208655302741918 --status failed")]
/// Simulate Meta delivering a message status update to POST /webhook.
///
/// Same signing and posting as `inbound`, with one entry in `statuses[]`
/// instead of `messages[]`; `errors[]` is present only for `failed`.
struct StatusArgs {
    /// Recipient's number (recipient_id).
    #[arg(long, value_name = "NUMBER", required_unless_present = "user_id")]
    to: Option<String>,

    /// Recipient's BSUID (recipient_user_id), as for a send addressed by
    /// `recipient`; without --to the status names no number.
    #[arg(long, value_name = "BSUID")]
    user_id: Option<String>,

    /// The delivery status.
    #[arg(long, value_enum)]
    status: DeliveryStatus,

    /// Error code of a failed delivery. [default: 131026]
    #[arg(long)]
    code: Option<i64>,

    /// Error title of a failed delivery. [default: "Message undeliverable"]
    #[arg(long)]
    title: Option<String>,

    #[command(flatten)]
    webhook: Webhook,
}

#[derive(Args)]
#[command(after_long_help = "\
Prints the block record (201 when created, 200 when it already existed).

Examples:
  wa-cli block +16505551234 --reason 'abusive messages'
  wa-cli block +16505551234 --reason 'spam on this line' --scope 106540352242922
  wa-cli block 16505551234 --reason 'asked to stop' --expires-at 2030-01-01T00:00:00Z
  wa-cli block US.13491208655302741918 --reason 'abusive messages'")]
/// Block a number or BSUID: PUT /v1/blocks/{subject}.
///
/// Needs the blocklist:write scope. Blocking in a scope that already holds
/// a block of that subject changes nothing and records no second audit
/// event. The block also stops the identities linked to it.
struct BlockArgs {
    /// The number or business-scoped user id, e.g. +16505551234 or
    /// US.13491208655302741918.
    #[arg(value_name = "SUBJECT")]
    number: String,

    /// Why the number is blocked (kept in the audit trail).
    #[arg(long)]
    reason: String,

    /// `all` for every business number, or one phone_number_id.
    #[arg(long, default_value = "all")]
    scope: String,

    /// Origin of the block, e.g. manual or crm (the API's default: manual).
    #[arg(long)]
    source: Option<String>,

    /// Machine-readable reason, e.g. an error code.
    #[arg(long)]
    reason_code: Option<String>,

    /// RFC 3339 time after which the block lapses.
    #[arg(long, value_name = "TIME")]
    expires_at: Option<String>,
}

#[derive(Args)]
#[command(after_long_help = "\
Prints the removed block; a number not blocked in that scope exits with 1
(404 not_blocked).

Examples:
  wa-cli unblock +16505551234 --reason 'customer called, verified'
  wa-cli unblock +16505551234 --reason 'resolved' --scope 106540352242922
  wa-cli unblock US.13491208655302741918 --reason 'resolved'")]
/// Unblock a number or BSUID: DELETE /v1/blocks/{subject}?scope=…
///
/// Needs the blocklist:write scope. Inbound and outbound traffic are
/// restored at once, unless a block of a linked identity still stops the
/// person (see `linked_blocks` of `wa-cli get`).
struct UnblockArgs {
    /// The number or business-scoped user id, e.g. +16505551234 or
    /// US.13491208655302741918.
    #[arg(value_name = "SUBJECT")]
    number: String,

    /// Why the number is unblocked (kept in the audit trail).
    #[arg(long)]
    reason: String,

    /// The scope the block was made in.
    #[arg(long, default_value = "all")]
    scope: String,
}

#[derive(Args)]
#[command(after_long_help = "\
Examples:
  wa-cli get +16505551234
  wa-cli get +16505551234 | jq '.blocks[].scope'
  wa-cli get US.13491208655302741918 | jq '.links, .linked_blocks'")]
/// Show a number's or BSUID's blocks, links, contact and chats:
/// GET /v1/blocks/{subject}.
///
/// Needs the blocklist:read scope. A subject that is not blocked gives
/// `"blocks": []`, not an error; `linked_blocks` lists the blocks of
/// linked identities that stop the person too.
struct GetArgs {
    /// The number or business-scoped user id, e.g. +16505551234 or
    /// US.13491208655302741918.
    #[arg(value_name = "SUBJECT")]
    number: String,
}

#[derive(Args)]
struct Paging {
    /// Page size (the API allows 1–200; its default is 50).
    #[arg(long)]
    limit: Option<u32>,

    /// Start from this `next_cursor` of an earlier page.
    #[arg(long)]
    cursor: Option<String>,

    /// Follow `next_cursor` to the last page and print every item as one
    /// list.
    #[arg(long)]
    all: bool,
}

#[derive(Args)]
#[command(after_long_help = "\
Prints {\"items\": [...], \"next_cursor\": ...}; with --all, every page's items
and \"next_cursor\": null.

Examples:
  wa-cli list
  wa-cli list --scope all --source auto --limit 20
  wa-cli list --q acme --all
  wa-cli list --since 2025-06-01 --all | jq -r '.items[].number'")]
/// List blocks, newest first: GET /v1/blocks.
///
/// Needs the blocklist:read scope.
struct ListArgs {
    /// Only blocks in this scope (`all` or a phone_number_id).
    #[arg(long)]
    scope: Option<String>,

    /// Only blocks from this source (manual, auto, …).
    #[arg(long)]
    source: Option<String>,

    /// Text matched against the number (any form, or its last digits) or
    /// BSUID, contact name or email.
    #[arg(long)]
    q: Option<String>,

    /// Only blocks made on or after this date (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    since: Option<String>,

    /// Only blocks made before this date (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    until: Option<String>,

    /// Only numbers whose contact has this category.
    #[arg(long)]
    category: Option<String>,

    /// Only numbers whose contact is in this group.
    #[arg(long)]
    group: Option<String>,

    /// List the blocks due for review instead, oldest due first (B16);
    /// takes no other filter.
    #[arg(long, conflicts_with_all = ["scope", "source", "q", "since", "until", "category", "group"])]
    review_due: bool,

    #[command(flatten)]
    paging: Paging,
}

#[derive(Args)]
#[command(after_long_help = "\
Examples:
  wa-cli history +16505551234
  wa-cli history US.13491208655302741918
  wa-cli history +16505551234 --all | jq -r '.items[] | \"\\(.at) \\(.action) \\(.actor)\"'")]
/// Show a number's or BSUID's audit events, newest first:
/// GET /v1/numbers/{subject}/history.
///
/// Needs the blocklist:read scope.
struct HistoryArgs {
    /// The number or business-scoped user id, e.g. +16505551234 or
    /// US.13491208655302741918.
    #[arg(value_name = "SUBJECT")]
    number: String,

    #[command(flatten)]
    paging: Paging,
}

#[derive(Args)]
#[command(after_long_help = "\
Prints the HTTP status, then Graph's answer (or the proxy's refusal: 403
with error_data.reason recipient_blocked or recipient_unknown, exit code 1).

Examples:
  export WA_TOKEN=$(wa-cli token --scope messages:send)
  wa-cli send +16505551234 --text 'Your order has shipped'
  wa-cli send +16505551234 --text hi --phone-number-id 106540352242922
  wa-cli send US.13491208655302741918 --text hi          # as \"recipient\"
  wa-cli send +16505551234 --recipient US.13491208655302741918 --text hi")]
/// Send a text message through the send proxy:
/// POST /v1/{phone_number_id}/messages.
///
/// Needs the messages:send scope. The body is the Graph API's text message,
/// addressed by `to` (a number) and/or `recipient` (a BSUID); a blocked
/// recipient is refused and nothing is sent.
struct SendArgs {
    /// Recipient: a number (sent as `to`), e.g. +16505551234, or a
    /// business-scoped user id (sent as `recipient`).
    #[arg(value_name = "RECIPIENT", required_unless_present = "recipient")]
    number: Option<String>,

    /// A BSUID to address as `recipient`, alone or beside a number.
    #[arg(long, value_name = "BSUID")]
    recipient: Option<String>,

    /// Message text.
    #[arg(long)]
    text: String,

    /// The business number sending it.
    #[arg(long, default_value = DEFAULT_PHONE_NUMBER_ID)]
    phone_number_id: String,
}

#[derive(Args)]
#[command(after_long_help = "\
Without --marketing or --all, prints the subject's consent records; with
them, sets those values in the scope and prints the record.

Examples:
  wa-cli consent +16505551234
  wa-cli consent +16505551234 --marketing opted_out
  wa-cli consent +16505551234 --all opted_in --phone-number-id 106540352242922")]
/// Show or set a number's or BSUID's consent: GET/PUT /v1/consents/{subject}.
///
/// Reading needs the blocklist:read scope, setting blocklist:write. Consent
/// is the customer's say, apart from blocks: an unblock keeps an opt-out.
struct ConsentArgs {
    /// The number or business-scoped user id.
    #[arg(value_name = "SUBJECT")]
    subject: String,

    /// Set the marketing value.
    #[arg(long, value_parser = ["opted_in", "opted_out"])]
    marketing: Option<String>,

    /// Set the value for every message.
    #[arg(long, value_parser = ["opted_in", "opted_out"])]
    all: Option<String>,

    /// The scope to set: `all` or one phone_number_id.
    #[arg(long, default_value = "all")]
    phone_number_id: String,
}

#[derive(Args)]
#[command(after_long_help = "\
Prints {\"decision\", \"block\"}: the block as kept (with its next
review_due_at) or as removed.

Examples:
  wa-cli list --review-due
  wa-cli review +16505551234 --decision keep --reason 'still sending spam'
  wa-cli review +16505551234 --decision unblock --reason 'no complaints since'")]
/// Review a block that came due (B16): POST /v1/blocks/{subject}/review.
///
/// Needs the blocklist:write scope. `keep` makes the block due again after
/// the scope's review_after_days; `unblock` removes it.
struct ReviewArgs {
    /// The number or business-scoped user id.
    #[arg(value_name = "SUBJECT")]
    subject: String,

    #[arg(long, value_parser = ["keep", "unblock"])]
    decision: String,

    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: String,

    /// The scope of the block reviewed.
    #[arg(long, default_value = "all")]
    scope: String,
}

#[derive(Args)]
#[command(after_long_help = "\
Examples:
  wa-cli rule put ng-wave --prefix +234 --reason 'spam wave from one range'
  wa-cli rule put line-b --prefix +1650555 --reason 'wave on B' --scope 106540352242923
  wa-cli rule list
  wa-cli rule get ng-wave
  wa-cli rule delete ng-wave --reason 'wave over'")]
/// Prefix rules: block every number starting with a prefix (/v1/rules).
///
/// Changing rules needs the blocklist:admin scope, reading them
/// blocklist:read. A rule holds on every path at once, with no block per
/// number, and `wa-cli get` shows the rules matching a number.
struct RuleArgs {
    #[command(subcommand)]
    command: RuleCommand,
}

#[derive(Subcommand)]
enum RuleCommand {
    /// Make or replace a rule: PUT /v1/rules/{id}.
    Put {
        /// The rule's id: 1 to 32 letters, digits, '.', '_' or '-'.
        id: String,
        /// `+` and 1 to 14 digits, e.g. +234.
        #[arg(long)]
        prefix: String,
        /// Why (kept with the rule and in the audit trail).
        #[arg(long)]
        reason: String,
        /// `all` for every business number, or one phone_number_id.
        #[arg(long, default_value = "all")]
        scope: String,
    },
    /// Show a rule: GET /v1/rules/{id}.
    Get { id: String },
    /// Remove a rule: DELETE /v1/rules/{id}.
    Delete {
        id: String,
        /// Why, for the audit trail (else the rule's own reason).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List rules by id: GET /v1/rules.
    List {
        #[command(flatten)]
        paging: Paging,
    },
}

/// Why the command failed; the message, if any, still has to be printed.
enum Failure {
    /// Bad arguments or missing configuration: exit code 2, as clap uses.
    Usage(String),
    /// The request could not be made or the server said no: exit code 1.
    Request(String),
    /// Already reported (the response was printed): exit code 1.
    Reported,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("wa-cli: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Request(message)) => {
            eprintln!("wa-cli: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Reported) => ExitCode::from(1),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let api = Api::new(&cli.base_url, cli.token)?;
    match cli.command {
        Command::Token(args) => {
            println!("{}", token(&args));
            Ok(())
        }
        Command::Inbound(args) => {
            let from = args
                .from
                .as_deref()
                .map(|from| wa_digits(from, "--from"))
                .transpose()?;
            let id = args.webhook.id.clone().unwrap_or_else(fresh_wamid);
            let payload = inbound_payload(
                &args.webhook.phone_number_id,
                Sender {
                    number: from.as_deref(),
                    user_id: args.user_id.as_deref(),
                },
                &id,
                &args.text,
                &now(),
            );
            api.webhook(&args.webhook.app_secret, &payload).await
        }
        Command::Status(args) => {
            let to = args
                .to
                .as_deref()
                .map(|to| wa_digits(to, "--to"))
                .transpose()?;
            if args.status != DeliveryStatus::Failed
                && (args.code.is_some() || args.title.is_some())
            {
                return Err(Failure::Usage(
                    "--code and --title apply only to --status failed".into(),
                ));
            }
            let error = (args.status == DeliveryStatus::Failed).then(|| {
                (
                    args.code.unwrap_or(131_026),
                    args.title
                        .clone()
                        .unwrap_or_else(|| "Message undeliverable".into()),
                )
            });
            let id = args.webhook.id.clone().unwrap_or_else(fresh_wamid);
            let payload = status_payload(
                &args.webhook.phone_number_id,
                Sender {
                    number: to.as_deref(),
                    user_id: args.user_id.as_deref(),
                },
                &id,
                args.status,
                error,
                &now(),
            );
            api.webhook(&args.webhook.app_secret, &payload).await
        }
        Command::Block(args) => {
            let mut body = json!({ "reason": args.reason, "scope": args.scope });
            for (field, value) in [
                ("source", args.source),
                ("reason_code", args.reason_code),
                ("expires_at", args.expires_at),
            ] {
                if let Some(value) = value {
                    body[field] = Value::String(value);
                }
            }
            let path = format!("/v1/blocks/{}", encode(&args.number));
            print_json(&api.call(Method::PUT, &path, Some(&body)).await?);
            Ok(())
        }
        Command::Unblock(args) => {
            let path = format!(
                "/v1/blocks/{}?scope={}",
                encode(&args.number),
                encode(&args.scope)
            );
            let body = json!({ "reason": args.reason });
            print_json(&api.call(Method::DELETE, &path, Some(&body)).await?);
            Ok(())
        }
        Command::Get(args) => {
            let path = format!("/v1/blocks/{}", encode(&args.number));
            print_json(&api.call(Method::GET, &path, None).await?);
            Ok(())
        }
        Command::List(args) => {
            let filters = [
                ("scope", args.scope),
                ("source", args.source),
                ("q", args.q),
                ("since", args.since),
                ("until", args.until),
                ("category", args.category),
                ("group", args.group),
                ("review", args.review_due.then(|| "due".to_owned())),
            ];
            print_json(
                &api.pages("/v1/blocks", filters.into_iter().collect(), &args.paging)
                    .await?,
            );
            Ok(())
        }
        Command::History(args) => {
            let path = format!("/v1/numbers/{}/history", encode(&args.number));
            print_json(&api.pages(&path, Vec::new(), &args.paging).await?);
            Ok(())
        }
        Command::Send(args) => {
            let mut body = json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "type": "text",
                "text": { "preview_url": false, "body": args.text },
            });
            let mut recipient = args.recipient;
            if let Some(given) = args.number {
                if !is_user_id_shaped(&given) {
                    body["to"] = Value::String(given);
                } else if recipient.is_none() {
                    recipient = Some(given);
                } else {
                    return Err(Failure::Usage(
                        "give the BSUID either as the recipient argument or with --recipient, \
                         and a number beside it"
                            .into(),
                    ));
                }
            }
            if let Some(recipient) = recipient {
                body["recipient"] = Value::String(recipient);
            }
            let path = format!("/v1/{}/messages", encode(&args.phone_number_id));
            let token = api.token()?;
            let request = api
                .request(Method::POST, &path)
                .bearer_auth(token)
                .json(&body);
            let (status, body) = api.send(request).await?;
            print_exchange(status, &body)
        }
        Command::Consent(args) => {
            let path = format!("/v1/consents/{}", encode(&args.subject));
            if args.marketing.is_none() && args.all.is_none() {
                print_json(&api.call(Method::GET, &path, None).await?);
                return Ok(());
            }
            let mut body = json!({ "phone_number_id": args.phone_number_id });
            for (field, value) in [("marketing", args.marketing), ("all", args.all)] {
                if let Some(value) = value {
                    body[field] = Value::String(value);
                }
            }
            print_json(&api.call(Method::PUT, &path, Some(&body)).await?);
            Ok(())
        }
        Command::Review(args) => {
            let path = format!("/v1/blocks/{}/review", encode(&args.subject));
            let body =
                json!({ "decision": args.decision, "reason": args.reason, "scope": args.scope });
            print_json(&api.call(Method::POST, &path, Some(&body)).await?);
            Ok(())
        }
        Command::Rule(args) => {
            let path = |id: &str| format!("/v1/rules/{}", encode(id));
            let answer = match args.command {
                RuleCommand::Put {
                    id,
                    prefix,
                    reason,
                    scope,
                } => {
                    let body = json!({ "prefix": prefix, "reason": reason, "scope": scope });
                    api.call(Method::PUT, &path(&id), Some(&body)).await?
                }
                RuleCommand::Get { id } => api.call(Method::GET, &path(&id), None).await?,
                RuleCommand::Delete { id, reason } => {
                    let body = reason.map(|reason| json!({ "reason": reason }));
                    api.call(Method::DELETE, &path(&id), body.as_ref()).await?
                }
                RuleCommand::List { paging } => api.pages("/v1/rules", Vec::new(), &paging).await?,
            };
            print_json(&answer);
            Ok(())
        }
    }
}

fn token(args: &TokenArgs) -> String {
    let mut scopes: Vec<&str> = Vec::new();
    let requested: Vec<&str> = if args.scopes.is_empty() {
        vec!["blocklist:read", "blocklist:write"]
    } else {
        args.scopes.iter().map(String::as_str).collect()
    };
    for scope in requested {
        let expanded: &[&str] = if scope == "all" {
            &ALL_SCOPES
        } else {
            &[scope]
        };
        for scope in expanded {
            if !scopes.contains(scope) {
                scopes.push(scope);
            }
        }
    }
    wa_dev::tokens::mint(&args.sub, &scopes, args.ttl, args.secret.as_bytes())
}

struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    fn new(base_url: &str, token: Option<String>) -> Result<Api, Failure> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::Request(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Api {
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.trim().is_empty()),
            http,
        })
    }

    fn token(&self) -> Result<&str, Failure> {
        self.token.as_deref().ok_or_else(|| {
            Failure::Usage(
                "this command needs a bearer token: pass --token or set WA_TOKEN \
                 (for the local stack: export WA_TOKEN=$(wa-cli token --scope all))"
                    .into(),
            )
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), Failure> {
        let unreachable = |e: reqwest::Error| {
            // reqwest's own message hides the cause ("connection refused"
            // and the like) in its source chain.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            if e.is_connect() {
                message.push_str(
                    " (nothing listening there? the local stack starts with scripts/dev)",
                );
            }
            Failure::Request(message)
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        Ok((status, body.to_vec()))
    }

    /// A block API call: the JSON answer, or the API's error on stderr.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let token = self.token()?;
        let mut request = self.request(method.clone(), path).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let (status, bytes) = self.send(request).await?;
        let parsed = serde_json::from_slice::<Value>(&bytes);
        if status.is_client_error() || status.is_server_error() {
            return Err(Failure::Request(format!(
                "{method} {path}: HTTP {status}: {}",
                error_message(&bytes)
            )));
        }
        parsed.map_err(|e| {
            Failure::Request(format!(
                "{method} {path}: HTTP {status} but the body is not JSON: {e}"
            ))
        })
    }

    /// A list endpoint: one page, or with `--all` every page merged.
    async fn pages(
        &self,
        path: &str,
        filters: Vec<(&str, Option<String>)>,
        paging: &Paging,
    ) -> Result<Value, Failure> {
        let mut cursor = paging.cursor.clone();
        let mut items = Vec::new();
        loop {
            let mut query: Vec<(&str, String)> = filters
                .iter()
                .filter_map(|(k, v)| Some((*k, v.clone()?)))
                .collect();
            if let Some(limit) = paging.limit {
                query.push(("limit", limit.to_string()));
            }
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor.clone()));
            }
            let page = self
                .call(Method::GET, &with_query(path, &query), None)
                .await?;
            if !paging.all {
                return Ok(page);
            }
            match page["items"].as_array() {
                Some(page_items) => items.extend(page_items.iter().cloned()),
                None => {
                    return Err(Failure::Request(format!(
                        "GET {path}: the answer has no items list"
                    )));
                }
            }
            let next = page["next_cursor"].as_str().map(str::to_owned);
            // A server that hands back the cursor it was given would keep
            // --all looping forever.
            if next.is_some() && next == cursor {
                return Err(Failure::Request(format!(
                    "GET {path}: next_cursor did not advance"
                )));
            }
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(json!({ "items": items, "next_cursor": null })),
            }
        }
    }

    async fn webhook(&self, app_secret: &str, payload: &Value) -> Result<(), Failure> {
        // Signed over the exact bytes sent: re-serialising could reorder or
        // re-escape and break the signature.
        let body = serde_json::to_vec(payload).map_err(|e| Failure::Request(e.to_string()))?;
        let request = self
            .request(Method::POST, "/webhook")
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                signature::sign(app_secret.as_bytes(), &body),
            )
            .body(body);
        let (status, body) = self.send(request).await?;
        print_exchange(status, &body)
    }
}

/// The API's `error.message` (with its code), the Graph form's, or the raw
/// body when it is not JSON.
fn error_message(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        return if text.trim().is_empty() {
            "(empty body)".into()
        } else {
            text.trim().to_owned()
        };
    };
    let error = &value["error"];
    let message = error["message"].as_str().unwrap_or_default();
    let code = match &error["code"] {
        Value::String(code) => Some(code.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    let mut text = match (code, message.is_empty()) {
        (Some(code), false) => format!("{code}: {message}"),
        (Some(code), true) => code,
        (None, false) => message.to_owned(),
        (None, true) => value.to_string(),
    };
    if let Some(field) = error["field"].as_str() {
        text.push_str(&format!(" (field: {field})"));
    }
    text
}

/// Status line, then the body (pretty when JSON); exit 1 on 4xx/5xx so
/// scripts can tell a refusal from a success.
fn print_exchange(status: StatusCode, body: &[u8]) -> Result<(), Failure> {
    println!("HTTP {status}");
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => print_json(&value),
        Err(_) if body.is_empty() => {}
        Err(_) => println!("{}", String::from_utf8_lossy(body)),
    }
    if status.is_client_error() || status.is_server_error() {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn encode(component: &str) -> String {
    utf8_percent_encode(component, COMPONENT).to_string()
}

fn with_query(path: &str, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// A number as Meta writes `from`/`recipient_id`: digits only. Other
/// normalisation is left to the service, so its handling of odd forms can
/// be exercised from here.
fn wa_digits(number: &str, flag: &str) -> Result<String, Failure> {
    let digits: String = number
        .chars()
        .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
        .collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::Usage(format!(
            "{flag} {number:?} is not a phone number"
        )));
    }
    Ok(digits)
}

/// Whether `given` is meant as a BSUID (two letters and a dot, as the API
/// tells them apart), valid or not: the API judges it, so that its
/// `invalid_user_id` can be seen from here.
fn is_user_id_shaped(given: &str) -> bool {
    matches!(
        Subject::parse(given),
        Ok(Subject::User(_)) | Err(SubjectError::UserId)
    )
}

fn fresh_wamid() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("wamid.CLI{nanos:X}{:X}", std::process::id())
}

/// Meta sends unix seconds as a string.
fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

fn envelope(phone_number_id: &str, value: Value) -> Value {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({
        "display_phone_number": DISPLAY_PHONE_NUMBER,
        "phone_number_id": phone_number_id,
    });
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": WABA_ID, "changes": [{ "field": "messages", "value": value }] }],
    })
}

/// The identities Meta shows for a person: the number (digits, as Meta
/// writes it) when visible, and the BSUID.
#[derive(Clone, Copy)]
struct Sender<'a> {
    number: Option<&'a str>,
    user_id: Option<&'a str>,
}

fn inbound_payload(
    phone_number_id: &str,
    sender: Sender<'_>,
    id: &str,
    text: &str,
    timestamp: &str,
) -> Value {
    let mut contact = json!({ "profile": { "name": "wa-cli" } });
    let mut message = json!({
        "id": id,
        "timestamp": timestamp,
        "type": "text",
        "text": { "body": text },
    });
    if let Some(number) = sender.number {
        contact["wa_id"] = json!(number);
        message["from"] = json!(number);
    }
    if let Some(user_id) = sender.user_id {
        contact["user_id"] = json!(user_id);
        message["from_user_id"] = json!(user_id);
    }
    envelope(
        phone_number_id,
        json!({ "contacts": [contact], "messages": [message] }),
    )
}

fn status_payload(
    phone_number_id: &str,
    recipient: Sender<'_>,
    id: &str,
    status: DeliveryStatus,
    error: Option<(i64, String)>,
    timestamp: &str,
) -> Value {
    let mut update = json!({
        "id": id,
        "status": status.as_str(),
        "timestamp": timestamp,
    });
    if let Some(number) = recipient.number {
        update["recipient_id"] = json!(number);
    }
    if let Some(user_id) = recipient.user_id {
        update["recipient_user_id"] = json!(user_id);
    }
    if let Some((code, title)) = error {
        update["errors"] = json!([{
            "code": code,
            "title": title,
            "message": title,
            "error_data": { "details": title },
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
        }]);
    }
    envelope(phone_number_id, json!({ "statuses": [update] }))
}
