//! Property tests of the shared crate's pure rules:
//!
//! - the webhook parser and its filter on mutated Meta payloads (B22–B24,
//!   B27, B61): no panic, every sender attributed to its own message's
//!   identities, no blocked identity forwarded;
//! - number forms of every country the quirks cover (B63);
//! - pagination cursors (B7);
//! - policy decisions do not depend on the order of blocks (B1, B2, B23,
//!   B31).
//!
//! Every property runs a bounded number of cases so that the whole file
//! stays fast on a small machine.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use blocklist::identity::{Subject, UserId};
use blocklist::inbound::{Claim, SenderFacts, claim_keys, message_key, plan_inbound, senders};
use blocklist::meta::webhook::{Delivery, Position, UpdateKind};
use blocklist::model::{Actor, Block, PhoneNumberId, Purpose, Reason, Scope, Source};
use blocklist::number::Number;
use blocklist::outbound::decide_send;
use blocklist::policy::{
    BlockCommand, BlockDecision, SubjectRecord, blocking_block, decide_block, decide_unblock,
};
use blocklist::store::Cursor;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

/// `cases` per property, or `PROPTEST_CASES` when set (to search deeper
/// than the bounded default).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Failures are pinned as plain tests below instead of files.
        failure_persistence: None,
        max_shrink_iters: 4096,
        max_global_rejects: 65_536,
        ..ProptestConfig::default()
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

// ---------------------------------------------------------------------------
// Mutated Meta payloads (B22–B24, B27, B61)
// ---------------------------------------------------------------------------

/// Every webhook fixture: `inbound-*`, `status-*`, `system-*` and
/// `user-preferences-*` under `tests/fixtures/meta`.
static FIXTURES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/meta");
    let mut named: Vec<(String, Value)> = std::fs::read_dir(dir)
        .expect("fixture directory")
        .map(|entry| entry.expect("fixture entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            let webhook = ["inbound-", "status-", "system-", "user-preferences-"]
                .iter()
                .any(|prefix| name.starts_with(prefix));
            (webhook && name.ends_with(".json")).then_some((name, path))
        })
        .map(|(name, path)| {
            let bytes = std::fs::read(&path).expect("fixture");
            let value = serde_json::from_slice(&bytes).expect("fixture is JSON");
            (name, value)
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(named.len() >= 10, "webhook fixtures: {}", named.len());
    named.into_iter().map(|(_, value)| value).collect()
});

/// Ids WhatsApp may write in `from`, `wa_id` and `recipient_id`: several
/// forms of the same subscribers (so that identities collide across
/// messages and contacts), an id the metadata does not know yet, and ids
/// that are no number at all.
const NUMBER_IDS: &[&str] = &[
    "16505551234",
    "+16505551234",
    "16505559876",
    "447700900123",
    "551181234567",
    "5511981234567",
    "5215512345678",
    "525512345678",
    "5491123456789",
    "541123456789",
    "841622345678",
    "84322345678",
    "22997123456",
    "24106111111",
    "22545123456",
    "999123456789",
];
const BAD_NUMBER_IDS: &[&str] = &[
    "",
    "+",
    "0123456789",
    "12",
    "not a number",
    "1650555123456789",
    "\u{661}\u{666}\u{665}\u{660}\u{665}\u{665}\u{665}\u{661}\u{662}\u{663}\u{664}",
    "16505551234\u{0}",
];
const USER_IDS: &[&str] = &["US.13491208655302741918", "US.42", "BR.abcDEF123", "GB.7"];
const PARENT_IDS: &[&str] = &["US.ENT.11815799212886844830", "US.ENT.9"];
const BAD_USER_IDS: &[&str] = &["us.1349", "US.", "US.13-49", "USA.1", "US.\u{f1}1"];
const PHONE_NUMBER_IDS: &[&str] = &["106540352242922", "106540352242923", "", "x1"];
const FIELDS: &[&str] = &[
    "from",
    "from_user_id",
    "wa_id",
    "user_id",
    "parent_user_id",
    "recipient_id",
    "recipient_user_id",
    "id",
    "type",
    "timestamp",
    "phone_number_id",
    "object",
    "entry",
    "changes",
    "value",
    "metadata",
    "messages",
    "contacts",
    "statuses",
    "errors",
    "code",
    "system",
    "status",
];

fn identity_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(NUMBER_IDS),
        1 => select(BAD_NUMBER_IDS),
        3 => select(USER_IDS),
        2 => select(PARENT_IDS),
        1 => select(BAD_USER_IDS),
    ]
    .prop_map(str::to_owned)
}

/// A number id, most often one of three (two forms of one subscriber and
/// another), so that generated people meet in several messages and
/// contacts.
fn common_number_id() -> impl Strategy<Value = &'static str> {
    prop_oneof![3 => select(&NUMBER_IDS[..3]), 1 => select(NUMBER_IDS)]
}

fn garbage() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        2 => Just(Value::Null),
        2 => any::<bool>().prop_map(Value::Bool),
        2 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        3 => "\\PC{0,24}".prop_map(Value::String),
        // Huge strings (Meta's deliveries reach 3 MB).
        1 => (any::<char>(), 0usize..50_000)
            .prop_map(|(c, n)| Value::String(c.to_string().repeat(n))),
        4 => identity_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(field_name(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(FIELDS).prop_map(str::to_owned),
        1 => "\\PC{0,6}",
    ]
}

fn contact() -> impl Strategy<Value = Value> {
    (
        option::of(common_number_id()),
        option::of(select(USER_IDS)),
        option::of(select(PARENT_IDS)),
    )
        .prop_map(|(wa_id, user_id, parent)| {
            let mut contact = json!({"profile": {"name": "Sheena Nelson"}});
            let fields = [
                ("wa_id", wa_id),
                ("user_id", user_id),
                ("parent_user_id", parent),
            ];
            for (key, id) in fields {
                if let Some(id) = id {
                    contact[key] = json!(id);
                }
            }
            contact
        })
}

fn message() -> impl Strategy<Value = Value> {
    (
        0u8..6,
        option::of(common_number_id()),
        option::of(select(USER_IDS)),
        select(&["text", "image", "system", "reaction"][..]),
        option::of(prop_oneof![
            select(NUMBER_IDS).prop_map(|w| json!({"type": "user_changed_number", "wa_id": w})),
            select(USER_IDS).prop_map(|u| json!({"type": "user_changed_user_id", "user_id": u})),
        ]),
    )
        .prop_map(|(id, from, from_user_id, kind, system)| {
            let mut message = json!({
                "id": format!("wamid.S{id}"),
                "timestamp": "1749416383",
                "type": kind,
                "text": {"body": "hi"},
            });
            if let Some(from) = from {
                message["from"] = json!(from);
            }
            if let Some(user) = from_user_id {
                message["from_user_id"] = json!(user);
            }
            if let Some(system) = system {
                message["system"] = system;
            }
            message
        })
}

fn status() -> impl Strategy<Value = Value> {
    (
        0u8..4,
        select(&["sent", "delivered", "read", "failed"][..]),
        option::of(common_number_id()),
        option::of(select(USER_IDS)),
    )
        .prop_map(|(id, status, recipient, recipient_user)| {
            let mut status = json!({
                "id": format!("wamid.T{id}"),
                "status": status,
                "timestamp": "1751142888",
                "errors": [{"code": 131026, "title": "Message undeliverable"}],
            });
            if let Some(r) = recipient {
                status["recipient_id"] = json!(r);
            }
            if let Some(u) = recipient_user {
                status["recipient_user_id"] = json!(u);
            }
            status
        })
}

/// A delivery made of the identity pools: people who show up in several
/// messages and contacts, under several forms, on two business numbers.
fn synthetic() -> impl Strategy<Value = Value> {
    let change = (
        select(PHONE_NUMBER_IDS),
        vec(contact(), 0..4),
        vec(message(), 0..6),
        vec(status(), 0..3),
    )
        .prop_map(|(pnid, contacts, messages, statuses)| {
            json!({"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": pnid},
                "contacts": contacts,
                "messages": messages,
                "statuses": statuses,
            }})
        });
    vec(vec(change, 1..3), 1..3).prop_map(|entries| {
        let entries: Vec<Value> = entries
            .into_iter()
            .map(|changes| json!({"id": "102290129340398", "changes": changes}))
            .collect();
        json!({"object": "whatsapp_business_account", "entry": entries})
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// One change to a JSON document; `at` picks a node (modulo the number of
/// candidate nodes, so any `at` is valid for any document).
#[derive(Debug, Clone)]
enum Mutation {
    Remove(usize),
    Replace(usize, Value),
    /// string <-> number <-> array <-> null <-> object <-> bool.
    SwapType(usize, u8),
    SetField(usize, String, Value),
    Push(usize, Value),
    /// Grows an array to this many items by repeating its own.
    Duplicate(usize, usize),
    /// Grows a `messages`, `statuses` or `contacts` array to this many
    /// items, with fresh message ids or the same ones.
    Flood(usize, usize, bool),
    Nest(usize, u8),
}

#[derive(Debug, Clone)]
enum ByteMutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, u8),
}

#[derive(Debug, Clone)]
struct Payload {
    base: Value,
    mutations: Vec<Mutation>,
    bytes: Option<ByteMutation>,
}

impl Payload {
    fn bytes(&self) -> Vec<u8> {
        let mut value = self.base.clone();
        for mutation in &self.mutations {
            apply(&mut value, mutation);
        }
        let mut bytes = serde_json::to_vec(&value).expect("serialisable");
        match self.bytes {
            None => {}
            Some(ByteMutation::Truncate(at)) => bytes.truncate(at % (bytes.len() + 1)),
            Some(ByteMutation::Flip(at, mask)) => {
                let len = bytes.len();
                bytes[at % len] ^= mask.max(1);
            }
            Some(ByteMutation::Insert(at, byte)) => {
                let at = at % (bytes.len() + 1);
                bytes.insert(at, byte);
            }
        }
        bytes
    }
}

fn big_count() -> impl Strategy<Value = usize> {
    prop_oneof![24 => 0usize..20, 1 => 0usize..=1_000]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>;
    prop_oneof![
        2 => at().prop_map(Mutation::Remove),
        2 => (at(), garbage()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        2 => (at(), 0u8..7).prop_map(|(at, to)| Mutation::SwapType(at, to)),
        6 => (at(), field_name(), prop_oneof![
                4 => identity_text().prop_map(Value::String),
                1 => garbage(),
            ])
            .prop_map(|(at, key, v)| Mutation::SetField(at, key, v)),
        2 => (at(), prop_oneof![message(), contact(), status(), garbage()])
            .prop_map(|(at, v)| Mutation::Push(at, v)),
        1 => (at(), big_count()).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
        1 => (at(), big_count(), any::<bool>()).prop_map(|(at, n, fresh)| Mutation::Flood(at, n, fresh)),
        1 => (at(), 1u8..6).prop_map(|(at, depth)| Mutation::Nest(at, depth)),
    ]
}

fn payload() -> impl Strategy<Value = Payload> {
    let base = prop_oneof![
        (0..FIXTURES.len()).prop_map(|i| FIXTURES[i].clone()),
        synthetic(),
    ];
    let bytes = prop_oneof![
        8 => Just(None),
        1 => any::<usize>().prop_map(|at| Some(ByteMutation::Truncate(at))),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, m)| Some(ByteMutation::Flip(at, m))),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Some(ByteMutation::Insert(at, b))),
    ];
    (base, vec(mutation(), 0..6), bytes).prop_map(|(base, mutations, bytes)| Payload {
        base,
        mutations,
        bytes,
    })
}

/// Every node's path, the root's (empty) first.
fn paths(value: &Value) -> Vec<Vec<Seg>> {
    let mut out = Vec::new();
    let mut stack = vec![(Vec::new(), value)];
    while let Some((path, node)) = stack.pop() {
        match node {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    let mut p = path.clone();
                    p.push(Seg::Index(i));
                    stack.push((p, item));
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter().rev() {
                    let mut p = path.clone();
                    p.push(Seg::Key(key.clone()));
                    stack.push((p, item));
                }
            }
            _ => {}
        }
        out.push(path);
    }
    out
}

fn node<'a>(value: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, seg| match seg {
        Seg::Key(k) => v.get(k.as_str()),
        Seg::Index(i) => v.get(*i),
    })
}

fn node_mut<'a>(value: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, seg| match seg {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Index(i) => v.get_mut(*i),
    })
}

/// The paths of nodes that pass `keep`, one of them picked by `at`.
fn pick(value: &Value, at: usize, keep: impl Fn(&[Seg], &Value) -> bool) -> Option<Vec<Seg>> {
    let candidates: Vec<Vec<Seg>> = paths(value)
        .into_iter()
        .filter(|p| node(value, p).is_some_and(|n| keep(p, n)))
        .collect();
    (!candidates.is_empty()).then(|| candidates[at % candidates.len()].clone())
}

fn swap_type(value: Value, to: u8) -> Value {
    match to {
        0 => match value {
            Value::String(s) => Value::String(s),
            Value::Number(n) => Value::String(n.to_string()),
            other => Value::String(other.to_string()),
        },
        1 => match value {
            Value::String(s) => s
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(s.len())),
            Value::Number(n) => Value::Number(n),
            Value::Bool(b) => Value::from(u8::from(b)),
            _ => Value::from(0),
        },
        2 => Value::Array(vec![value]),
        3 => Value::Null,
        4 => json!({ "value": value }),
        5 => Value::Bool(!value.is_null()),
        _ => match value {
            Value::Array(items) => items.into_iter().next().unwrap_or(Value::Null),
            Value::Object(map) => map.into_iter().next().map_or(Value::Null, |(_, v)| v),
            other => other,
        },
    }
}

/// At most `count` items, and no more than Meta's 3 MB of them.
fn capped(items: &[Value], count: usize) -> usize {
    let size: usize = items
        .iter()
        .map(|i| serde_json::to_vec(i).map_or(0, |b| b.len()) + 1)
        .sum();
    let per_item = size / items.len().max(1) + 1;
    count.min(3_000_000 / per_item)
}

fn apply(value: &mut Value, mutation: &Mutation) {
    match mutation {
        Mutation::Remove(at) => {
            let Some(path) = pick(value, *at, |p, _| !p.is_empty()) else {
                return;
            };
            let (last, parent) = path.split_last().expect("not the root");
            match (node_mut(value, parent), last) {
                (Some(Value::Object(map)), Seg::Key(k)) => {
                    map.remove(k);
                }
                (Some(Value::Array(items)), Seg::Index(i)) => {
                    items.remove(*i);
                }
                _ => {}
            }
        }
        Mutation::Replace(at, with) => {
            if let Some(path) = pick(value, *at, |_, _| true)
                && let Some(n) = node_mut(value, &path)
            {
                *n = with.clone();
            }
        }
        Mutation::SwapType(at, to) => {
            if let Some(path) = pick(value, *at, |_, _| true)
                && let Some(n) = node_mut(value, &path)
            {
                *n = swap_type(n.take(), *to);
            }
        }
        Mutation::SetField(at, key, with) => {
            if let Some(path) = pick(value, *at, |_, n| n.is_object())
                && let Some(Value::Object(map)) = node_mut(value, &path)
            {
                map.insert(key.clone(), with.clone());
            }
        }
        Mutation::Push(at, with) => {
            if let Some(path) = pick(value, *at, |_, n| n.is_array())
                && let Some(Value::Array(items)) = node_mut(value, &path)
            {
                items.push(with.clone());
            }
        }
        Mutation::Duplicate(at, count) => {
            if let Some(path) = pick(value, *at, |_, n| {
                n.as_array().is_some_and(|a| !a.is_empty())
            }) && let Some(Value::Array(items)) = node_mut(value, &path)
            {
                let original = items.clone();
                let count = capped(&original, *count);
                while items.len() < count {
                    let next = original[items.len() % original.len()].clone();
                    items.push(next);
                }
            }
        }
        Mutation::Flood(at, count, fresh_ids) => {
            let updates = |p: &[Seg], n: &Value| {
                matches!(p.last(), Some(Seg::Key(k)) if ["messages", "statuses", "contacts"].contains(&k.as_str()))
                    && n.as_array().is_some_and(|a| !a.is_empty())
            };
            if let Some(path) = pick(value, *at, updates)
                && let Some(Value::Array(items)) = node_mut(value, &path)
            {
                let original = items.clone();
                let count = capped(&original, *count);
                while items.len() < count {
                    let i = items.len();
                    let mut next = original[i % original.len()].clone();
                    if *fresh_ids && let Some(id) = next.get("id").and_then(Value::as_str) {
                        next["id"] = json!(format!("{id}~{i}"));
                    }
                    items.push(next);
                }
            }
        }
        Mutation::Nest(at, depth) => {
            if let Some(path) = pick(value, *at, |_, _| true)
                && let Some(n) = node_mut(value, &path)
            {
                let mut inner = n.take();
                for level in 0..*depth {
                    inner = if level % 2 == 0 {
                        json!([inner])
                    } else {
                        json!({ "x": inner })
                    };
                }
                *n = inner;
            }
        }
    }
}

/// The raw JSON of a change's `value` and of one update in it.
fn raw_value<'a>(body: &'a Value, p: &Position) -> Option<&'a Value> {
    body.get("entry")?
        .get(p.entry)?
        .get("changes")?
        .get(p.change)?
        .get("value")
}

fn raw_update<'a>(body: &'a Value, p: &Position) -> Option<&'a Value> {
    let key = match p.kind {
        UpdateKind::Message => "messages",
        UpdateKind::Status => "statuses",
        UpdateKind::Call => "calls",
        UpdateKind::Change => return raw_value(body, p),
    };
    raw_value(body, p)?.get(key)?.get(p.index)
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// What a message's own fields say about its sender.
struct OwnIdentities {
    from: Option<String>,
    number: Option<Number>,
    user_id: Option<UserId>,
}

fn own_identities(raw: &Value) -> OwnIdentities {
    let from = text(raw, "from").map(str::to_owned);
    OwnIdentities {
        number: from
            .as_deref()
            .and_then(|f| Number::from_whatsapp_id(f).ok()),
        user_id: text(raw, "from_user_id").and_then(|u| UserId::parse(u).ok()),
        from,
    }
}

impl OwnIdentities {
    fn subjects(&self) -> Vec<Subject> {
        let mut subjects = Vec::new();
        subjects.extend(self.number.clone().map(Subject::Number));
        subjects.extend(self.user_id.clone().map(Subject::User));
        subjects
    }
}

/// A `contacts[]` entry's identities, read independently of the parser.
#[derive(Debug)]
struct RawContact {
    number: Option<Number>,
    user_id: Option<UserId>,
    parent: Option<UserId>,
}

fn raw_contacts(value: &Value) -> Vec<RawContact> {
    value
        .get("contacts")
        .and_then(Value::as_array)
        .map(|contacts| {
            contacts
                .iter()
                .map(|c| RawContact {
                    number: text(c, "wa_id").and_then(|w| Number::from_whatsapp_id(w).ok()),
                    user_id: text(c, "user_id").and_then(|u| UserId::parse(u).ok()),
                    parent: text(c, "parent_user_id").and_then(|u| UserId::parse(u).ok()),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn number_str(n: &Option<Number>) -> Option<&str> {
    n.as_ref().map(Number::as_str)
}

fn user_str(u: &Option<UserId>) -> Option<&str> {
    u.as_ref().map(UserId::as_str)
}

const CHANGE_MARK: &str = "x_change";

/// Writes into every change's `value` object where the change sits.
fn mark_changes(body: &mut Value) {
    let Some(entries) = body.get_mut("entry").and_then(Value::as_array_mut) else {
        return;
    };
    for (e, entry) in entries.iter_mut().enumerate() {
        let Some(changes) = entry.get_mut("changes").and_then(Value::as_array_mut) else {
            continue;
        };
        for (c, change) in changes.iter_mut().enumerate() {
            if let Some(value) = change.get_mut("value").and_then(Value::as_object_mut) {
                value.insert(CHANGE_MARK.into(), json!(format!("{e}/{c}")));
            }
        }
    }
}

/// Every `id` of the updates of `kind` that a CRM reading Meta's shape
/// finds in `body`.
fn forwarded_ids(body: &Value, key: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let entries = body.get("entry").and_then(Value::as_array);
    for entry in entries.into_iter().flatten() {
        let changes = entry.get("changes").and_then(Value::as_array);
        for change in changes.into_iter().flatten() {
            let items = change
                .get("value")
                .and_then(|v| v.get(key))
                .and_then(Value::as_array);
            for item in items.into_iter().flatten() {
                if let Some(id) = text(item, "id") {
                    ids.push(id.to_owned());
                }
            }
        }
    }
    ids.sort();
    ids
}

fn block(subject: &Subject, scope: Scope, source: Source, expiry: u8) -> Block {
    let expires_at = match expiry % 4 {
        0 => None,
        1 => Some(now() - Duration::hours(1)),
        2 => Some(now() + Duration::hours(1)),
        // Expires exactly now: no longer active.
        _ => Some(now()),
    };
    Block {
        subject: subject.clone(),
        scope,
        reason: Reason::parse("spam").unwrap(),
        source,
        reason_code: None,
        actor: "ops@example.com".into(),
        client: None,
        blocked_at: now() - Duration::days(1),
        expires_at,
        version: 1,
        review_due_at: None,
        rule: None,
    }
}

fn blocks_for(facts: &HashMap<Subject, SenderFacts>, subject: &Subject) -> Vec<Block> {
    facts
        .get(subject)
        .map(|f| f.blocks.clone())
        .unwrap_or_default()
}

fn applies(block: &Block, business: Option<&PhoneNumberId>) -> bool {
    block.is_active(now())
        && match business {
            Some(business) => block.scope.covers(business),
            None => block.scope == Scope::All,
        }
}

proptest! {
    #![proptest_config(config(128))]

    /// B22, B27: whatever the payload, parsing and filtering answer without
    /// panicking, and every parsed update sits where its position says.
    #[test]
    fn b22_parser_never_panics_on_mutated_payloads(
        payload in payload(),
        keep_bits in vec(any::<bool>(), 0..64),
        extra in vec((0usize..4, 0usize..4, any::<bool>(), 0usize..1_200), 0..4),
    ) {
        let bytes = payload.bytes();
        let Ok(delivery) = Delivery::parse(&bytes) else {
            return Ok(());
        };
        let body: Value = serde_json::from_slice(&bytes).expect("parsed, so JSON");
        for message in &delivery.messages {
            let raw = raw_update(&body, &message.position);
            prop_assert_eq!(raw.and_then(|r| text(r, "id")), Some(message.id.as_str()));
        }
        for status in &delivery.statuses {
            let raw = raw_update(&body, &status.position);
            prop_assert_eq!(raw.and_then(|r| text(r, "id")), Some(status.id.as_str()));
        }
        // Random keep sets, including positions that name nothing.
        let positions: Vec<Position> = delivery
            .messages
            .iter()
            .map(|m| m.position)
            .chain(delivery.statuses.iter().map(|s| s.position))
            .collect();
        let mut keep: HashSet<Position> = positions
            .iter()
            .enumerate()
            .filter(|(i, _)| keep_bits.get(i % keep_bits.len().max(1)).copied().unwrap_or(true))
            .map(|(_, p)| *p)
            .collect();
        for (entry, change, message, index) in extra {
            let kind = if message { UpdateKind::Message } else { UpdateKind::Status };
            keep.insert(Position { entry, change, kind, index });
        }
        let _ = delivery.filtered(&keep);
        let _ = delivery.filtered(&HashSet::new());
        let _ = delivery.filtered(&positions.iter().copied().collect());
        let _ = senders(&delivery);
        let _ = claim_keys(&delivery);
    }

    /// B24: the CRM gets exactly the kept updates, and no profile of a
    /// sender whose messages were all dropped.
    #[test]
    fn b24_filtered_forwards_exactly_the_kept_updates(
        payload in payload(),
        keep_bits in vec(any::<bool>(), 1..64),
    ) {
        let Ok(mut body) = serde_json::from_slice::<Value>(&payload.bytes()) else {
            return Ok(());
        };
        // Each change says where it was, so that it can be told after
        // filtering renumbers them (unknown fields pass through, B27).
        mark_changes(&mut body);
        let bytes = serde_json::to_vec(&body).expect("serialisable");
        let Ok(delivery) = Delivery::parse(&bytes) else {
            return Ok(());
        };
        let keeps = |i: usize| keep_bits[i % keep_bits.len()];
        let mut keep = HashSet::new();
        let mut kept_messages = Vec::new();
        // Per change: the sender ids of kept and of dropped messages.
        let mut kept_senders: HashMap<String, HashSet<String>> = HashMap::new();
        let mut dropped_senders: HashMap<String, HashSet<String>> = HashMap::new();
        for (i, m) in delivery.messages.iter().enumerate() {
            let raw = raw_update(&body, &m.position).expect("position of a parsed message");
            let ids = ["from", "from_user_id"]
                .iter()
                .filter_map(|k| text(raw, k).map(str::to_owned));
            let change = format!("{}/{}", m.position.entry, m.position.change);
            if keeps(i) {
                keep.insert(m.position);
                kept_messages.push(m.id.clone());
                kept_senders.entry(change).or_default().extend(ids);
            } else {
                dropped_senders.entry(change).or_default().extend(ids);
            }
        }
        let mut kept_statuses = Vec::new();
        for (i, s) in delivery.statuses.iter().enumerate() {
            if keeps(i + delivery.messages.len()) {
                keep.insert(s.position);
                kept_statuses.push(s.id.clone());
            }
        }
        kept_messages.sort();
        kept_statuses.sort();
        match delivery.filtered(&keep) {
            None => {
                prop_assert!(kept_messages.is_empty() && kept_statuses.is_empty());
            }
            Some(out) => {
                prop_assert_eq!(forwarded_ids(&out, "messages"), kept_messages);
                prop_assert_eq!(forwarded_ids(&out, "statuses"), kept_statuses);
                // No contact left that names only dropped senders.
                let entries = out.get("entry").and_then(Value::as_array);
                for entry in entries.into_iter().flatten() {
                    let changes = entry.get("changes").and_then(Value::as_array);
                    for value in changes.into_iter().flatten().filter_map(|c| c.get("value")) {
                        let Some(change) = text(value, CHANGE_MARK) else {
                            continue;
                        };
                        let contacts = value.get("contacts").and_then(Value::as_array);
                        for contact in contacts.into_iter().flatten() {
                            let ids: Vec<&str> = ["wa_id", "user_id"]
                                .iter()
                                .filter_map(|k| text(contact, k))
                                .collect();
                            let named = |senders: &HashMap<String, HashSet<String>>| {
                                senders
                                    .get(change)
                                    .is_some_and(|set| ids.iter().any(|id| set.contains(*id)))
                            };
                            prop_assert!(
                                named(&kept_senders) || !named(&dropped_senders),
                                "contact {:?} of a dropped sender forwarded", ids
                            );
                        }
                    }
                }
            }
        }
    }

    /// B61: a parsed message's number is its own `from` (or, when `from`
    /// gives no number, the `wa_id` of a contact of the same change whose
    /// `user_id` is the message's own `from_user_id`), and its BSUID is its
    /// own `from_user_id` (or, when there is none, that of a contact of the
    /// same change with the message's own number): never another
    /// message's identity.
    #[test]
    fn b61_sender_is_attributed_only_to_its_own_message_identities(payload in payload()) {
        let bytes = payload.bytes();
        let Ok(delivery) = Delivery::parse(&bytes) else {
            return Ok(());
        };
        let body: Value = serde_json::from_slice(&bytes).expect("parsed, so JSON");
        for message in &delivery.messages {
            let raw = raw_update(&body, &message.position).expect("position of a parsed message");
            let value = raw_value(&body, &message.position).expect("change of a parsed message");
            let own = own_identities(raw);
            let contacts = raw_contacts(value);
            let sender = &message.sender;
            match &own.number {
                Some(number) => {
                    prop_assert_eq!(
                        number_str(&sender.number), Some(number.as_str()),
                        "message {} from {:?}", message.id, own.from
                    );
                }
                None => {
                    let from = &own.from;
                    if let Some(number) = &sender.number {
                        prop_assert!(
                            own.user_id.is_some() && contacts.iter().any(|c| {
                                c.user_id == own.user_id && c.number.as_ref() == Some(number)
                            }),
                            "message {} (from {:?}, from_user_id {:?}) got number {} from no contact of its own",
                            message.id, from, user_str(&own.user_id), number.as_str()
                        );
                    }
                    if let Some(from) = from {
                        prop_assert_eq!(sender.unreadable.as_deref(), Some(from.as_str()));
                    }
                }
            }
            match &own.user_id {
                Some(user) => {
                    prop_assert_eq!(
                        user_str(&sender.user_id), Some(user.as_str()),
                        "message {}", message.id
                    );
                }
                None => {
                    if let Some(user) = &sender.user_id {
                        prop_assert!(
                            own.number.is_some() && contacts.iter().any(|c| {
                                c.number == own.number && c.user_id.as_ref() == Some(user)
                            }),
                            "message {} (from {:?}) got BSUID {} from no contact of its own",
                            message.id, own.from, user.as_str()
                        );
                    }
                }
            }
        }
    }

    /// B61: a parent BSUID comes only from a contact of the same change
    /// that is the message's own BSUID, or has the message's own number
    /// and no other BSUID (a contact with the same number but another
    /// BSUID is another person's profile).
    #[test]
    fn b61_parent_user_id_comes_only_from_a_contact_that_agrees(payload in payload()) {
        let bytes = payload.bytes();
        let Ok(delivery) = Delivery::parse(&bytes) else {
            return Ok(());
        };
        let body: Value = serde_json::from_slice(&bytes).expect("parsed, so JSON");
        for message in &delivery.messages {
            let Some(parent) = &message.sender.parent_user_id else {
                continue;
            };
            let raw = raw_update(&body, &message.position).expect("position of a parsed message");
            let value = raw_value(&body, &message.position).expect("change of a parsed message");
            let own = own_identities(raw);
            let contacts = raw_contacts(value);
            let agrees = |c: &RawContact| {
                // The contact is the message's BSUID, or has the message's
                // number and names no other BSUID than the message's.
                let same_user = own.user_id.is_some() && c.user_id == own.user_id;
                let same_number = own.number.is_some()
                    && c.number == own.number
                    && (c.user_id.is_none() || own.user_id.is_none() || c.user_id == own.user_id);
                c.parent.as_ref() == Some(parent) && (same_user || same_number)
            };
            prop_assert!(
                contacts.iter().any(agrees),
                "message {} (from {:?}, from_user_id {:?}) got parent {} from contacts {:?}",
                message.id, own.from, user_str(&own.user_id), parent.as_str(),
                contacts.iter().map(|c| (number_str(&c.number), user_str(&c.user_id), user_str(&c.parent))).collect::<Vec<_>>()
            );
        }
    }

    /// B23, B61: whatever the payload and whichever identities are blocked,
    /// no message of a blocked identity (its own `from`, `from_user_id`, or
    /// any identity the parser gave its sender) is forwarded on a business
    /// number the block covers.
    #[test]
    fn b23_plan_never_forwards_a_message_of_a_blocked_identity(
        payload in payload(),
        blocks in vec((any::<usize>(), 0u8..3, any::<usize>(), 0u8..4), 0..6),
        claims_bits in vec(0u8..8, 1..16),
    ) {
        let bytes = payload.bytes();
        let Ok(delivery) = Delivery::parse(&bytes) else {
            return Ok(());
        };
        let body: Value = serde_json::from_slice(&bytes).expect("parsed, so JSON");
        let mut candidates: Vec<Subject> = senders(&delivery).into_keys().collect();
        for m in &delivery.messages {
            let raw = raw_update(&body, &m.position).expect("position of a parsed message");
            candidates.extend(own_identities(raw).subjects());
        }
        candidates.sort();
        candidates.dedup();
        let mut businesses: Vec<PhoneNumberId> = delivery
            .messages
            .iter()
            .filter_map(|m| m.phone_number_id.clone())
            .collect();
        businesses.sort();
        businesses.dedup();
        let mut facts: HashMap<Subject, SenderFacts> = HashMap::new();
        if !candidates.is_empty() {
            for (who, scope, which, expiry) in blocks {
                let subject = &candidates[who % candidates.len()];
                let scope = match scope {
                    0 => Scope::All,
                    1 if !businesses.is_empty() => {
                        Scope::Business(businesses[which % businesses.len()].clone())
                    }
                    _ => Scope::Business(PhoneNumberId::parse("999").unwrap()),
                };
                facts
                    .entry(subject.clone())
                    .or_default()
                    .blocks
                    .push(block(subject, scope, Source::Manual, expiry));
            }
        }
        let claims: HashMap<String, Claim> = claim_keys(&delivery)
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let claim = match claims_bits[i % claims_bits.len()] {
                    0 => Claim::Done,
                    1 => Claim::InFlight,
                    _ => Claim::Claimed,
                };
                (key, claim)
            })
            .collect();
        let (shown, _) = blocklist::policy::merge_links(&delivery.links);
        let plan = plan_inbound(&delivery, &facts, &claims, &HashMap::new(), &HashMap::new(), &shown, now());
        let mut first_claimed: HashSet<&str> = HashSet::new();
        for m in &delivery.messages {
            let raw = raw_update(&body, &m.position).expect("position of a parsed message");
            let value = raw_value(&body, &m.position).expect("change of a parsed message");
            let business = value
                .pointer("/metadata/phone_number_id")
                .and_then(Value::as_str)
                .and_then(|id| PhoneNumberId::parse(id).ok());
            prop_assert_eq!(&m.phone_number_id, &business, "message {}", m.id);
            let mut identities = own_identities(raw).subjects();
            identities.extend(m.sender.identities());
            let blocked = identities.iter().any(|s| {
                blocks_for(&facts, s).iter().any(|b| applies(b, business.as_ref()))
            });
            let forwarded = plan.forward.contains(&m.position);
            let suppressed = plan.suppressed.iter().any(|s| s.message.position == m.position);
            prop_assert!(!(forwarded && suppressed), "message {} both forwarded and suppressed", m.id);
            if blocked {
                prop_assert!(!forwarded, "message {} of a blocked identity forwarded", m.id);
            }
            let claimed = claims.get(&message_key(&m.id)) == Some(&Claim::Claimed);
            if claimed && first_claimed.insert(m.id.as_str()) {
                prop_assert!(
                    forwarded || suppressed,
                    "claimed message {} neither forwarded nor suppressed", m.id
                );
                if blocked {
                    prop_assert!(suppressed, "message {} of a blocked identity not suppressed", m.id);
                }
            }
        }
        // What reaches the CRM holds no message of a blocked identity
        // (unless a message with the same id was forwarded).
        if let Some(out) = delivery.filtered(&plan.forward) {
            let forwarded: HashSet<String> = forwarded_ids(&out, "messages").into_iter().collect();
            let forwarded_positions: HashSet<&str> = delivery
                .messages
                .iter()
                .filter(|m| plan.forward.contains(&m.position))
                .map(|m| m.id.as_str())
                .collect();
            for s in &plan.suppressed {
                if !forwarded_positions.contains(s.message.id.as_str()) {
                    prop_assert!(
                        !forwarded.contains(&s.message.id),
                        "suppressed {} forwarded", s.message.id
                    );
                }
            }
        }
    }
}

/// B61 finding, pinned: a contact with the message's number but another
/// BSUID lends the message its parent BSUID.
#[test]
fn b61_parent_user_id_is_not_taken_from_a_contact_of_another_person() {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
        "metadata": {"phone_number_id": "1"},
        "contacts": [{"wa_id": "16505551234", "user_id": "US.42", "parent_user_id": "US.ENT.9"}],
        "messages": [{"id": "wamid.A", "from": "16505551234",
                      "from_user_id": "US.13491208655302741918", "type": "text"}]}}]}]});
    let delivery = Delivery::parse(body.to_string().as_bytes()).unwrap();
    let sender = &delivery.messages[0].sender;
    assert_eq!(user_str(&sender.user_id), Some("US.13491208655302741918"));
    assert_eq!(
        user_str(&sender.parent_user_id),
        None,
        "the parent of US.42 is attributed to US.13491208655302741918"
    );
}

// ---------------------------------------------------------------------------
// Number forms (B63)
// ---------------------------------------------------------------------------

/// One subscriber: the canonical form the module docs promise, and the
/// forms it may be written in, as chunks (country code first).
#[derive(Debug, Clone)]
struct Subscriber {
    country: &'static str,
    canonical: String,
    forms: Vec<Vec<String>>,
}

/// How a form is written: `+`, `00` or nothing before the country code,
/// separators between chunks, parentheses around one chunk, padding.
#[derive(Debug, Clone)]
struct Style {
    prefix: u8,
    separators: Vec<u8>,
    parenthesised: Option<u8>,
    padded: bool,
}

const SEPARATORS: &[&str] = &[" ", "-", ".", "", "\u{a0}", " - ", "  "];

fn style() -> impl Strategy<Value = Style> {
    (
        0u8..3,
        vec(any::<u8>(), 6),
        option::of(any::<u8>()),
        any::<bool>(),
    )
        .prop_map(|(prefix, separators, parenthesised, padded)| Style {
            prefix,
            separators,
            parenthesised,
            padded,
        })
}

fn write(chunks: &[String], style: &Style) -> String {
    let mut out = String::new();
    if style.padded {
        out.push(' ');
    }
    out.push_str(["+", "00", ""][usize::from(style.prefix % 3)]);
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            let s = style.separators[i % style.separators.len()];
            out.push_str(SEPARATORS[usize::from(s) % SEPARATORS.len()]);
        }
        let wrapped = i > 0
            && style
                .parenthesised
                .is_some_and(|p| usize::from(p) % chunks.len() == i);
        if wrapped {
            out.push('(');
            out.push_str(chunk);
            out.push(')');
        } else {
            out.push_str(chunk);
        }
    }
    if style.padded {
        out.push(' ');
    }
    out
}

fn digits(count: usize) -> impl Strategy<Value = String> {
    vec(0u8..10, count).prop_map(|ds| ds.into_iter().map(|d| char::from(b'0' + d)).collect())
}

fn chunks(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

/// Whether libphonenumber's data lists the number as valid: generated
/// subscribers are real numbers, not just possible ones.
fn valid(e164: &str) -> bool {
    phonenumber::parse(None, e164).is_ok_and(|n| phonenumber::is_valid(&n))
}

/// Brazil's area codes (ANATEL), as in libphonenumber's BR data.
const BRAZIL_AREAS: &[&str] = &[
    "11", "12", "13", "14", "15", "16", "17", "18", "19", "21", "22", "24", "27", "28", "31", "32",
    "33", "34", "35", "37", "38", "41", "42", "43", "44", "45", "46", "47", "48", "49", "51", "53",
    "54", "55", "61", "62", "63", "64", "65", "66", "67", "68", "69", "71", "73", "74", "75", "77",
    "79", "81", "82", "83", "84", "85", "86", "87", "88", "89", "91", "92", "93", "94", "95", "96",
    "97", "98", "99",
];

fn brazil() -> impl Strategy<Value = Subscriber> {
    (select(BRAZIL_AREAS), 6u8..10, digits(7)).prop_map(|(area, first, rest)| {
        let x = format!("{first}{rest}");
        let (a, b) = x.split_at(4);
        Subscriber {
            country: "BR",
            canonical: format!("+55{area}9{x}"),
            forms: vec![
                chunks(&["55", area, &format!("9{a}"), b]),
                chunks(&["55", area, "9", a, b]),
                // The 12-digit form of older WhatsApp ids.
                chunks(&["55", area, a, b]),
            ],
        }
    })
}

fn mexico() -> impl Strategy<Value = Subscriber> {
    (2u8..10, digits(9))
        .prop_map(|(first, rest)| {
            let n = format!("{first}{rest}");
            let split = if ["33", "55", "56", "81"].contains(&&n[..2]) {
                2
            } else {
                3
            };
            let (area, local) = n.split_at(split);
            let (a, b) = local.split_at(local.len() - 4);
            Subscriber {
                country: "MX",
                canonical: format!("+52{n}"),
                forms: vec![
                    chunks(&["52", area, a, b]),
                    chunks(&["52", "1", area, a, b]),
                    chunks(&["521", area, a, b]),
                    chunks(&["52", &format!("1{area}"), a, b]),
                ],
            }
        })
        .prop_filter("a valid Mexican number", |s| valid(&s.canonical))
}

/// Area codes of Argentina that libphonenumber's AR
/// `nationalPrefixForParsing` lists, of 2, 3 and 4 digits, including the
/// 3-digit codes that start a 4-digit one (220 and 2202, 264 and 2646, …).
const ARGENTINA_AREAS: &[&str] = &[
    "11", "220", "221", "223", "230", "236", "237", "249", "260", "261", "263", "264", "266",
    "280", "291", "294", "297", "298", "299", "336", "341", "342", "343", "345", "348", "351",
    "353", "358", "362", "364", "370", "376", "379", "380", "381", "383", "385", "387", "388",
    "2202", "2221", "2254", "2266", "2291", "2302", "2317", "2320", "2344", "2358", "2392", "2473",
    "2477", "2622", "2646", "2657", "2901", "2920", "2940", "2946", "2954", "2966", "2983", "3327",
    "3385", "3404", "3435", "3456", "3476", "3489", "3496", "3522", "3541", "3543", "3564", "3585",
    "3711", "3725", "3743", "3755", "3777", "3786", "3825", "3838", "3846", "3858", "3868", "3878",
    "3885", "3894",
];

fn argentina() -> impl Strategy<Value = Subscriber> {
    (select(ARGENTINA_AREAS), 2u8..10, digits(7))
        .prop_map(|(area, first, rest)| {
            let sub = format!("{first}{}", &rest[..9 - area.len()]);
            let (a, b) = sub.split_at(sub.len() - 4);
            let trunk = format!("0{area}");
            Subscriber {
                country: "AR",
                canonical: format!("+549{area}{sub}"),
                forms: vec![
                    chunks(&["54", "9", area, a, b]),
                    chunks(&["549", area, &sub]),
                    chunks(&["54", area, "15", a, b]),
                    chunks(&["54", area, a, b]),
                    chunks(&["54", &trunk, "15", a, b]),
                    chunks(&["54", &trunk, a, b]),
                    chunks(&["54", "9", area, "15", a, b]),
                    chunks(&["54", "9", &trunk, a, b]),
                    // `9`, `0` and `15` all together: pinned below.
                ],
            }
        })
        .prop_filter("a valid Argentine mobile", |s| valid(&s.canonical))
}

/// Viet Nam's 2018 conversion table (Decision 798/QĐ-BTTTT).
const VIETNAM_CODES: &[(&str, &str)] = &[
    ("120", "70"),
    ("121", "79"),
    ("122", "77"),
    ("126", "76"),
    ("128", "78"),
    ("123", "83"),
    ("124", "84"),
    ("125", "85"),
    ("127", "81"),
    ("129", "82"),
    ("162", "32"),
    ("163", "33"),
    ("164", "34"),
    ("165", "35"),
    ("166", "36"),
    ("167", "37"),
    ("168", "38"),
    ("169", "39"),
    ("186", "56"),
    ("188", "58"),
    ("199", "59"),
];

fn vietnam() -> impl Strategy<Value = Subscriber> {
    (select(VIETNAM_CODES), digits(7))
        .prop_map(|((old, new), s)| {
            let (a, b) = s.split_at(3);
            Subscriber {
                country: "VN",
                canonical: format!("+84{new}{s}"),
                forms: vec![
                    chunks(&["84", old, a, b]),
                    chunks(&["84", new, a, b]),
                    chunks(&["84", &format!("{old}{s}")]),
                ],
            }
        })
        .prop_filter("a valid Vietnamese mobile", |s| valid(&s.canonical))
}

fn benin() -> impl Strategy<Value = Subscriber> {
    (select(&["2", "4", "5", "6", "9"][..]), digits(7))
        .prop_map(|(first, rest)| {
            let old = format!("{first}{rest}");
            let pairs: Vec<&str> = (0..4).map(|i| &old[2 * i..2 * i + 2]).collect();
            Subscriber {
                country: "BJ",
                canonical: format!("+22901{old}"),
                forms: vec![
                    chunks(&["229", pairs[0], pairs[1], pairs[2], pairs[3]]),
                    chunks(&["229", "01", pairs[0], pairs[1], pairs[2], pairs[3]]),
                    chunks(&["229", &format!("01{old}")]),
                ],
            }
        })
        .prop_filter("renumbered in 2024", |s| {
            !valid(&format!("+229{}", &s.canonical[6..])) && valid(&s.canonical)
        })
}

fn gabon() -> impl Strategy<Value = Subscriber> {
    (select(&["1", "2", "4", "5", "6", "7"][..]), digits(6))
        .prop_map(|(first, rest)| {
            let old = format!("{first}{rest}");
            let operator = match first {
                "2" | "5" | "6" => "6",
                "4" | "7" => "7",
                _ => "1",
            };
            let new = format!("{operator}{old}");
            let (a, b) = rest.split_at(2);
            let (b, c) = b.split_at(2);
            let mut forms = vec![
                chunks(&["241", &format!("0{first}"), a, b, c]),
                chunks(&["241", &new[..2], a, b, c]),
                chunks(&["241", &format!("0{}", &new[..2]), a, b, c]),
            ];
            if first != "1" {
                // Mobiles were also written without their `0`.
                forms.push(chunks(&["241", first, a, b, c]));
            }
            Subscriber {
                country: "GA",
                canonical: format!("+241{new}"),
                forms,
            }
        })
        .prop_filter("a valid Gabonese number", |s| valid(&s.canonical))
}

fn quirk_subscriber() -> impl Strategy<Value = Subscriber> {
    prop_oneof![brazil(), mexico(), argentina(), vietnam(), benin(), gabon()]
}

/// Digits shaped like the ids of the quirk countries (and a few others),
/// 7 to 15 of them, not starting with `0`.
fn whatsapp_id_digits() -> impl Strategy<Value = String> {
    let prefixes = &[
        "55", "52", "521", "54", "549", "84", "841", "229", "22901", "241", "1", "44", "225",
        "999", "",
    ][..];
    // A trunk `0` after the country code, which the metadata strips.
    let trunk = &["550", "5490", "540", "2410", "840"][..];
    let prefix = prop_oneof![3 => select(prefixes), 1 => select(trunk)];
    // Most often the lengths the folds look at.
    let length = prop_oneof![3 => 11usize..=13, 1 => 7usize..=15];
    (prefix, 1u8..10, digits(14), length).prop_map(|(prefix, first, rest, len)| {
        let mut id = if prefix.is_empty() {
            first.to_string()
        } else {
            prefix.to_owned()
        };
        id.push_str(&rest);
        id.truncate(len.max(prefix.len()));
        id
    })
}

fn parsed(input: &str) -> Result<String, String> {
    Number::parse(input)
        .map(|n| n.as_str().to_owned())
        .map_err(|e| e.to_string())
}

fn from_id(input: &str) -> Result<String, String> {
    Number::from_whatsapp_id(input)
        .map(|n| n.as_str().to_owned())
        .map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(config(128))]

    /// B63: every written form of a subscriber of a quirk country (Brazil's
    /// 9th digit, Mexico's `521`, Argentina's `9`, `15` and `0`, Viet
    /// Nam's old network codes, Benin's 8 digits, Gabon's old `0`) parses
    /// to the same canonical number, which is a fixed point of both
    /// `parse` and `from_whatsapp_id`.
    #[test]
    fn b63_every_form_of_a_quirk_country_subscriber_is_one_number(
        subscriber in quirk_subscriber(),
        styles in vec(style(), 2),
    ) {
        let canonical = subscriber.canonical.as_str();
        let country = subscriber.country;
        prop_assert_eq!(parsed(canonical), Ok(canonical.to_owned()), "{}", country);
        let number = Number::parse(canonical).unwrap();
        prop_assert_eq!(from_id(number.digits()), Ok(canonical.to_owned()), "{}", country);
        prop_assert_eq!(from_id(number.as_str()), Ok(canonical.to_owned()), "{}", country);
        prop_assert!(number.is_known_to_metadata());
        for form in &subscriber.forms {
            // As WhatsApp writes an id: the digits alone.
            let bare = form.concat();
            prop_assert_eq!(parsed(&bare), Ok(canonical.to_owned()), "{} id {:?}", country, bare);
            prop_assert_eq!(from_id(&bare), Ok(canonical.to_owned()), "{} id {:?}", country, bare);
            for style in &styles {
                let input = write(form, style);
                let got = parsed(&input);
                prop_assert_eq!(&got, &Ok(canonical.to_owned()), "{} form {:?}", country, input);
                if let Ok(got) = &got {
                    prop_assert_eq!(parsed(got), Ok(got.clone()), "{} form {:?}", country, input);
                }
                prop_assert_eq!(from_id(&input), Ok(canonical.to_owned()), "{} form {:?}", country, input);
                prop_assert_eq!(
                    Subject::parse(&input).ok(),
                    Some(Subject::Number(number.clone())),
                    "{} form {:?}", country, input
                );
            }
        }
    }

}

proptest! {
    // Cheap cases: enough of them to meet the rarer id shapes.
    #![proptest_config(config(512))]

    /// B63: whatever the digits, a canonical number parses to itself, the
    /// number a WhatsApp id gives reads back as itself (from its `+` form,
    /// its digits, and as stored), and `+`, `00` and bare digits agree.
    #[test]
    fn b63_canonical_numbers_and_whatsapp_ids_are_fixed_points(
        id in whatsapp_id_digits(),
        style in style(),
    ) {
        let strict = parsed(&id);
        prop_assert_eq!(parsed(&format!("+{id}")), strict.clone(), "id {}", id);
        prop_assert_eq!(parsed(&format!("00{id}")), strict.clone(), "id {}", id);
        let groups: Vec<String> = id
            .as_bytes()
            .chunks(3)
            .map(|g| String::from_utf8(g.to_vec()).expect("digits"))
            .collect();
        prop_assert_eq!(parsed(&write(&groups, &style)), strict.clone(), "id {}", id);
        if let Ok(canonical) = &strict {
            prop_assert_eq!(parsed(canonical), Ok(canonical.clone()), "id {}", id);
            prop_assert_eq!(from_id(&id), Ok(canonical.clone()), "id {}", id);
        }
        if let Ok(number) = Number::from_whatsapp_id(&id) {
            let kept = number.as_str().to_owned();
            prop_assert_eq!(from_id(&kept), Ok(kept.clone()), "id {}", id);
            prop_assert_eq!(from_id(number.digits()), Ok(kept.clone()), "id {}", id);
            if number.is_known_to_metadata() {
                prop_assert_eq!(parsed(&kept), Ok(kept.clone()), "id {}", id);
            }
            let stored: Result<Number, _> = serde_json::from_value(json!(kept));
            prop_assert_eq!(stored.map(|n| n.as_str().to_owned()).ok(), Some(kept.clone()), "id {}", id);
            let subject: Result<Subject, _> = serde_json::from_value(json!(kept));
            prop_assert_eq!(subject.ok(), Some(Subject::Number(number.clone())), "id {}", id);
        }
    }
}

/// B63 finding, pinned: a Brazilian mobile in its 12-digit form written
/// with the trunk `0` before the area code (`+55 (011) 8123-4567`) keeps
/// the 12-digit form, which is not canonical: parsing it again adds the
/// ninth digit.
#[test]
fn b63_brazil_trunk_zero_form_is_canonical_and_one_number() {
    for input in ["+55 (011) 8123-4567", "5501181234567", "0055 011 8123 4567"] {
        let once = parsed(input);
        assert_eq!(
            once.as_ref().ok().map(|n| parsed(n)),
            Some(once.clone()),
            "parse of {input:?} is not a fixed point"
        );
        assert_eq!(once, Ok("+5511981234567".to_owned()), "input {input:?}");
    }
}

/// B63 finding, pinned: Argentina's mobile `9`, trunk `0` and mobile `15`
/// written together give 16 digits, which are refused as too long before
/// the Argentine folding (written for up to 13 digits after `549`) sees
/// them.
#[test]
fn b63_argentina_nine_trunk_zero_and_fifteen_together_are_one_number() {
    for input in [
        "+54 9 011 15 2345 6789",
        "5490111523456789",
        "0054 9 0351 15 412-3456",
    ] {
        let expected = if input.contains("351") {
            "+5493514123456"
        } else {
            "+5491123456789"
        };
        assert_eq!(parsed(input), Ok(expected.to_owned()), "input {input:?}");
    }
}

// ---------------------------------------------------------------------------
// Cursors (B7)
// ---------------------------------------------------------------------------

/// The key every cursor carries: the sort key of the last item shown.
const POSITION_KEY: &[&str] = &["after"];

/// The filters fingerprint the generated cursors are bound to.
const FILTERS: &str = "5f2b8c1d9e0a7364";

/// A cursor as the store writes it for one of the listings the block API
/// reads back (`blocks`, `chats`, `history`, `audit`), with the key
/// attributes the API decodes it with.
fn listing_cursor() -> impl Strategy<Value = (Cursor, &'static [&'static str])> {
    let time = "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]\\.[0-9]{3}Z";
    let ulid = "[0-9A-HJKMNP-TV-Z]{26}";
    let day = "20[0-9]{2}-[01][0-9]-[0-3][0-9]";
    let subject = prop_oneof![
        "\\+[1-9][0-9]{6,14}",
        "[A-Z]{2}\\.(ENT\\.)?[A-Za-z0-9]{1,24}",
    ];
    let at = |kind: &str, day: Option<String>, position: String| {
        Cursor::at(kind, day, position).bound_to(FILTERS)
    };
    prop_oneof![
        (subject.clone(), "all|[1-9][0-9]{0,15}", time).prop_map(move |(subject, scope, t)| {
            (
                at("blocks", None, format!("{t}#{subject}#{scope}")),
                POSITION_KEY,
            )
        }),
        (subject, "active|blocked", "[1-9][0-9]{0,15}").prop_map(move |(subject, status, pnid)| {
            (
                at("chats", None, format!("{status}#{pnid}#{subject}")),
                POSITION_KEY,
            )
        }),
        ulid.prop_map(move |id| (at("history", None, id), POSITION_KEY)),
        (ulid, day).prop_map(move |(id, day)| (at("audit", Some(day), id), POSITION_KEY)),
        day.prop_map(|day| {
            let cursor = Cursor::start_of_day("audit", day).bound_to(FILTERS);
            (cursor, &[][..])
        }),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    /// Replaces a character with one of the cursor alphabet (or not).
    Replace(usize, char),
    Insert(usize, char),
    Delete(usize),
    SwapAdjacent(usize),
    FlipBit(usize, u8),
    Truncate(usize),
}

fn cursor_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                .chars()
                .collect::<Vec<_>>()
        ),
        1 => select(vec!['=', '+', '/', '!', ' ', '%', '\u{e9}']),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), cursor_char()).prop_map(|(at, c)| Edit::Replace(at, c)),
        1 => (any::<usize>(), cursor_char()).prop_map(|(at, c)| Edit::Insert(at, c)),
        1 => any::<usize>().prop_map(Edit::Delete),
        1 => any::<usize>().prop_map(Edit::SwapAdjacent),
        2 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::FlipBit(at, bit)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// Applies the edits to an encoded cursor; `None` when the bytes are no
/// longer text (a query parameter is always text).
fn edited(encoded: &str, edits: &[Edit]) -> Option<String> {
    let mut bytes = encoded.as_bytes().to_vec();
    for e in edits {
        let len = bytes.len();
        match *e {
            Edit::Replace(at, c) if len > 0 => {
                let mut buf = [0; 4];
                bytes.splice(at % len..at % len + 1, c.encode_utf8(&mut buf).bytes());
            }
            Edit::Insert(at, c) => {
                let mut buf = [0; 4];
                let at = at % (len + 1);
                bytes.splice(at..at, c.encode_utf8(&mut buf).bytes());
            }
            Edit::Delete(at) if len > 0 => {
                bytes.remove(at % len);
            }
            Edit::SwapAdjacent(at) if len > 1 => bytes.swap(at % (len - 1), at % (len - 1) + 1),
            Edit::FlipBit(at, bit) if len > 0 => bytes[at % len] ^= 1 << bit,
            Edit::Truncate(at) => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
    String::from_utf8(bytes).ok()
}

proptest! {
    #![proptest_config(config(256))]

    /// B7: a cursor decodes back to itself for its own listing only.
    #[test]
    fn b7_cursor_round_trips((cursor, attributes) in listing_cursor()) {
        let encoded = cursor.encode();
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(Cursor::decode(&encoded, &cursor.kind, FILTERS, attributes), Ok(cursor.clone()));
        for other in ["blocks", "chats", "history", "audit"].iter().filter(|k| **k != cursor.kind) {
            prop_assert!(Cursor::decode(&encoded, other, FILTERS, attributes).is_err());
        }
        // Bound to its filters: another listing's filters refuse it.
        prop_assert!(Cursor::decode(&encoded, &cursor.kind, "0123456789abcdef", attributes).is_err());
    }

    /// B7: a cursor that was tampered with is refused; decoding never
    /// yields a different cursor with other key values.
    #[test]
    fn b7_cursor_decode_rejects_every_mutation(
        (cursor, attributes) in listing_cursor(),
        edits in vec(edit(), 1..4),
    ) {
        let encoded = cursor.encode();
        let Some(tampered) = edited(&encoded, &edits) else {
            return Ok(());
        };
        prop_assume!(tampered != encoded);
        if let Ok(decoded) = Cursor::decode(&tampered, &cursor.kind, FILTERS, attributes) {
            prop_assert_eq!(
                &decoded, &cursor,
                "tampered cursor {:?} (from {:?}) accepted", tampered, encoded
            );
        }
    }

    /// B7: whatever the text, decoding never panics, and what it accepts
    /// is of the listing asked for, with exactly its key attributes, none
    /// empty.
    #[test]
    fn b7_cursor_decode_accepts_only_its_listing_shape(
        (cursor, attributes) in listing_cursor(),
        edits in vec(edit(), 0..4),
        noise in "\\PC{0,64}",
    ) {
        let encoded = cursor.encode();
        let mut inputs = vec![noise.clone(), format!("{encoded}{noise}")];
        inputs.extend(edited(&encoded, &edits));
        for input in inputs {
            for (kind, attributes) in [
                (cursor.kind.as_str(), attributes),
                ("blocks", POSITION_KEY),
                ("history", POSITION_KEY),
                ("audit", &[][..]),
            ] {
                if let Ok(decoded) = Cursor::decode(&input, kind, FILTERS, attributes) {
                    prop_assert_eq!(&decoded.kind, kind);
                    let mut names: Vec<&str> = decoded.key.keys().map(String::as_str).collect();
                    let mut wanted = attributes.to_vec();
                    names.sort_unstable();
                    wanted.sort_unstable();
                    prop_assert_eq!(names, wanted);
                    prop_assert!(decoded.key.values().all(|v| !v.is_empty()));
                }
            }
        }
    }
}

/// B63 finding, pinned: Viet Nam's trunk `0` after the country code was
/// stripped once per read, so `+84 00…` read back as `+84 0…` and then as
/// `+84 …`. A number left invalid by the stripping keeps its digits.
#[test]
fn b63_a_stripped_trunk_prefix_that_leaves_no_valid_number_is_kept() {
    for id in ["8400000000001", "84000000001"] {
        let once = parsed(id).expect("a possible number");
        assert_eq!(parsed(&once), Ok(once.clone()), "{id}");
        assert_eq!(from_id(id), Ok(once.clone()), "{id}");
    }
    // A trunk `0` before a valid number is still dropped.
    assert_eq!(parsed("+84 0912 345 678"), Ok("+84912345678".to_owned()));
}

/// B7 finding, pinned: one character of a cursor changed gives another
/// valid cursor, which `decode` accepts.
#[test]
fn b7_tampered_cursor_with_another_key_value_is_refused() {
    let cursor = Cursor::at("history", None, "01JD0000000000000000000000".into()).bound_to(FILTERS);
    let encoded = cursor.encode();
    // Change the last digit of the ULID in the sort key ("0" to "1"),
    // re-encoded the way anyone can.
    // The content is base64 before a 16-character checksum.
    let (body, checksum) = encoded.split_at(encoded.len() - 16);
    let json = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body).unwrap(),
    )
    .unwrap();
    let forged_json = json.replace("01JD0000000000000000000000", "01JD0000000000000000000001");
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        forged_json.as_bytes(),
    ) + checksum;
    assert_ne!(forged, encoded);
    assert_eq!(
        Cursor::decode(&forged, "history", FILTERS, POSITION_KEY).ok(),
        None,
        "a cursor with another sort key was accepted"
    );
}

// ---------------------------------------------------------------------------
// Order of blocks (B1, B2, B23, B31)
// ---------------------------------------------------------------------------

const SUBJECTS: &[&str] = &[
    "+16505551234",
    "+447700900123",
    "US.13491208655302741918",
    "US.42",
    "US.ENT.9",
];
const BUSINESSES: &[&str] = &["111", "222", "333", "444"];
const SOURCES: &[Source] = &[
    Source::Manual,
    Source::Notification,
    Source::Bulk,
    Source::Import,
    Source::Auto,
    Source::Carried,
];

fn scope_of(index: u8) -> Scope {
    match index % 4 {
        0 => Scope::All,
        i => Scope::Business(PhoneNumberId::parse(BUSINESSES[usize::from(i) - 1]).unwrap()),
    }
}

static SUBJECT_POOL: LazyLock<Vec<Subject>> = LazyLock::new(|| {
    SUBJECTS
        .iter()
        .map(|s| Subject::parse(s).unwrap())
        .collect()
});

fn subject_of(index: usize) -> Subject {
    SUBJECT_POOL[index % SUBJECT_POOL.len()].clone()
}

/// A block spec: subject, scope, source, expiry, and which identity's
/// facts carry it (the store mirrors linked identities' blocks).
type Spec = (usize, u8, usize, u8, usize);

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..SUBJECTS.len(),
        0u8..4,
        0..SOURCES.len(),
        0u8..4,
        0..SUBJECTS.len(),
    )
}

fn to_block(&(subject, scope, source, expiry, _): &Spec) -> Block {
    block(
        &subject_of(subject),
        scope_of(scope),
        SOURCES[source],
        expiry,
    )
}

/// A list and a permutation of it.
fn shuffled<T: Clone + std::fmt::Debug>(
    items: impl Strategy<Value = Vec<T>>,
) -> impl Strategy<Value = (Vec<T>, Vec<T>)> {
    items.prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
}

/// Blocks of one subject with one block per scope, as the store holds
/// them, and a permutation.
fn record_blocks() -> impl Strategy<Value = (Vec<Block>, Vec<Block>)> {
    shuffled(
        vec((0u8..4, 0..SOURCES.len(), 0u8..4), 0..5).prop_map(|specs| {
            let subject = subject_of(0);
            let mut seen = HashSet::new();
            specs
                .into_iter()
                .filter(|(scope, _, _)| seen.insert(scope % 4))
                .map(|(scope, source, expiry)| {
                    block(&subject, scope_of(scope), SOURCES[source], expiry)
                })
                .collect::<Vec<_>>()
        }),
    )
}

fn record(blocks: Vec<Block>) -> SubjectRecord {
    SubjectRecord {
        blocks,
        ..SubjectRecord::empty(subject_of(0))
    }
}

fn command(scope: u8, source: usize) -> BlockCommand {
    BlockCommand {
        scope: scope_of(scope),
        reason: Reason::parse("spam").unwrap(),
        source: SOURCES[source],
        reason_code: None,
        expires_at: None,
        review_after_days: None,
        contact: None,
        details: Value::Null,
    }
}

fn actor() -> Actor {
    Actor {
        actor: "ops@example.com".into(),
        client: None,
    }
}

/// A delivery on two business numbers from the people of [`SUBJECTS`]:
/// a number with its BSUID and parent, a number alone, a BSUID alone, and
/// a blocked-or-not person changing number.
static ORDER_DELIVERY: LazyLock<Delivery> = LazyLock::new(order_delivery);

fn order_delivery() -> Delivery {
    let mut changes = Vec::new();
    for business in ["111", "222"] {
        changes.push(json!({"value": {
        "metadata": {"phone_number_id": business},
        "contacts": [{"wa_id": "16505551234", "user_id": "US.13491208655302741918",
                      "parent_user_id": "US.ENT.9"}],
        "messages": [
            {"id": format!("wamid.{business}.1"), "from": "16505551234",
             "from_user_id": "US.13491208655302741918", "type": "text"},
            {"id": format!("wamid.{business}.2"), "from": "447700900123", "type": "text"},
            {"id": format!("wamid.{business}.3"), "from_user_id": "US.42", "type": "text"},
            {"id": format!("wamid.{business}.4"), "from": "16505551234", "type": "system",
             "system": {"type": "user_changed_number", "wa_id": "16505559876"}},
        ]}}));
    }
    let body = json!({"object": "whatsapp_business_account", "entry": [{"changes": changes}]});
    Delivery::parse(body.to_string().as_bytes()).unwrap()
}

fn facts_of(specs: &[Spec], known: bool) -> HashMap<Subject, SenderFacts> {
    let mut facts: HashMap<Subject, SenderFacts> = HashMap::new();
    for spec in specs {
        let entry = facts.entry(subject_of(spec.4)).or_default();
        entry.blocks.push(to_block(spec));
        entry.known_contact = known;
    }
    facts
}

/// What a plan decided, in a form that does not depend on the order the
/// decision was reached in.
fn plan_outcome(
    delivery: &Delivery,
    facts: &HashMap<Subject, SenderFacts>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let claims = claim_keys(delivery)
        .into_iter()
        .map(|k| (k, Claim::Claimed))
        .collect();
    let plan = plan_inbound(
        delivery,
        facts,
        &claims,
        &HashMap::new(),
        &HashMap::new(),
        &blocklist::policy::merge_links(&delivery.links).0,
        now(),
    );
    let mut forwarded: Vec<String> = delivery
        .messages
        .iter()
        .filter(|m| plan.forward.contains(&m.position))
        .map(|m| m.id.clone())
        .collect();
    forwarded.sort();
    let mut suppressed: Vec<String> = plan
        .suppressed
        .iter()
        .map(|s| format!("{} {}", s.message.id, s.subject.as_str()))
        .collect();
    suppressed.sort();
    let mut carries: Vec<String> = plan
        .carries
        .iter()
        .map(|c| {
            let mut blocks: Vec<String> = c
                .blocks
                .iter()
                .map(|b| format!("{}/{}", b.subject.as_str(), b.scope))
                .collect();
            blocks.sort();
            format!(
                "{} {} -> {} {:?}",
                c.message_id,
                c.from.as_str(),
                c.to.as_str(),
                blocks
            )
        })
        .collect();
    carries.sort();
    (forwarded, suppressed, carries)
}

proptest! {
    #![proptest_config(config(256))]

    /// B23, B31: whether a business number's traffic is blocked does not
    /// depend on the order of the blocks, and the block named is one that
    /// applies.
    #[test]
    fn b23_blocking_block_is_independent_of_block_order(
        (blocks, permuted) in shuffled(vec(spec(), 0..10)),
    ) {
        let blocks: Vec<Block> = blocks.iter().map(to_block).collect();
        let permuted: Vec<Block> = permuted.iter().map(to_block).collect();
        for business in BUSINESSES {
            let business = PhoneNumberId::parse(business).unwrap();
            let a = blocking_block(&blocks, &business, now());
            let b = blocking_block(&permuted, &business, now());
            prop_assert_eq!(a.is_some(), b.is_some());
            for found in a.into_iter().chain(b) {
                prop_assert!(applies(found, Some(&business)));
            }
        }
    }

    /// B31, B32: a send is refused, and for which reason, whatever the
    /// order of the recipient's blocks.
    #[test]
    fn b31_decide_send_is_independent_of_block_order(
        (blocks, permuted) in shuffled(vec(spec(), 0..10)),
        known in any::<bool>(),
        allow_unknown in any::<bool>(),
    ) {
        let facts = |specs: &[Spec]| SenderFacts {
            blocks: specs.iter().map(to_block).collect(),
            known_contact: known,
            state: None,
        };
        let (a, b) = (facts(&blocks), facts(&permuted));
        for business in BUSINESSES {
            let business = PhoneNumberId::parse(business).unwrap();
            let ra = decide_send(&a, &[], &business, Purpose::Any, allow_unknown, now());
            let rb = decide_send(&b, &[], &business, Purpose::Any, allow_unknown, now());
            prop_assert_eq!(ra.as_ref().err().map(|r| r.reason()), rb.as_ref().err().map(|r| r.reason()));
            for refusal in [ra, rb].into_iter().filter_map(Result::err) {
                if let Some(scope) = refusal.scope() {
                    prop_assert!(scope.covers(&business));
                    prop_assert!(a.blocks.iter().any(|blk| &blk.scope == scope && applies(blk, Some(&business))));
                }
            }
        }
    }

    /// B23, B61, B62: which messages are forwarded, suppressed (and under
    /// which identity) and carried does not depend on the order of blocks.
    #[test]
    fn b23_plan_inbound_is_independent_of_block_order(
        (blocks, permuted) in shuffled(vec(spec(), 0..10)),
        known in any::<bool>(),
    ) {
        let delivery = &*ORDER_DELIVERY;
        let a = plan_outcome(delivery, &facts_of(&blocks, known));
        let b = plan_outcome(delivery, &facts_of(&permuted, known));
        prop_assert_eq!(a, b);
    }

    /// B1, B42: whether a block is created or found already there does not
    /// depend on the order of the subject's blocks.
    #[test]
    fn b1_decide_block_idempotency_is_independent_of_block_order(
        (blocks, permuted) in record_blocks(),
        scope in 0u8..4,
        source in 0..SOURCES.len(),
    ) {
        let a = decide_block(&record(blocks), command(scope, source), &actor(), now());
        let b = decide_block(&record(permuted), command(scope, source), &actor(), now());
        match (a, b) {
            (
                BlockDecision::AlreadyBlocked { existing: ea, change: ca },
                BlockDecision::AlreadyBlocked { existing: eb, change: cb },
            ) => {
                prop_assert_eq!(ca.is_some(), cb.is_some());
                if SOURCES[source] != Source::Auto {
                    prop_assert_eq!(ea, eb);
                }
            }
            (
                BlockDecision::Create { block: ba, change: ca },
                BlockDecision::Create { block: bb, change: cb },
            ) => {
                prop_assert_eq!(ba, bb);
                let sorted = |mut blocks: Vec<Block>| {
                    blocks.sort_by(|x, y| x.scope.cmp(&y.scope));
                    blocks
                };
                prop_assert_eq!(sorted(ca.blocks_after), sorted(cb.blocks_after));
                prop_assert_eq!(ca.blocked_numbers_delta, cb.blocked_numbers_delta);
                prop_assert_eq!(ca.events.len(), cb.events.len());
                prop_assert_eq!(ca.counters, cb.counters);
            }
            (a, b) => {
                prop_assert!(false, "order changed the decision: {:?} vs {:?}", a, b);
            }
        }
    }

    /// B2: whether there is something to unblock, and what is removed,
    /// does not depend on the order of the subject's blocks.
    #[test]
    fn b2_decide_unblock_is_independent_of_block_order(
        (blocks, permuted) in record_blocks(),
        scope in 0u8..4,
    ) {
        let reason = Reason::parse("resolved").unwrap();
        let a = decide_unblock(&record(blocks), &scope_of(scope), &reason, &actor(), now());
        let b = decide_unblock(&record(permuted), &scope_of(scope), &reason, &actor(), now());
        prop_assert_eq!(a.is_some(), b.is_some());
        if let (Some((ra, ca)), Some((rb, cb))) = (a, b) {
            prop_assert_eq!(ra, rb);
            prop_assert_eq!(ca.blocked_numbers_delta, cb.blocked_numbers_delta);
            prop_assert_eq!(ca.remove_blocks, cb.remove_blocks);
        }
    }
}
