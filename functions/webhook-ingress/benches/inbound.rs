//! The per-event CPU path of a webhook delivery: signature check, parse and
//! decision (no I/O). Throughput is in events, so criterion's `thrpt`
//! line reads as events per second; time per event is its inverse.
//!
//! `cargo bench -p webhook-ingress`

use std::collections::HashMap;
use std::hint::black_box;

use blocklist::identity::Subject;
use blocklist::inbound::{self, Claim, SenderFacts};
use blocklist::meta::signature;
use blocklist::meta::webhook::Delivery;
use blocklist::model::{Block, Reason, Scope, Source};
use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const SECRET: &[u8] = b"bench-app-secret";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../tests/fixtures/meta/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Meta's largest delivery: 1,000 messages from 500 senders over 10
/// business numbers.
fn large_delivery() -> Vec<u8> {
    let changes: Vec<_> = (0..10)
        .map(|line| {
            let messages: Vec<_> = (0..100)
                .map(|i| {
                    json!({"from": format!("1650555{:04}", (line * 100 + i) / 2), "id": format!("wamid.L{line}M{i}"),
                           "timestamp": "1749416383", "type": "text", "text": {"body": "hello there"}})
                })
                .collect();
            json!({"field": "messages", "value": {"messaging_product": "whatsapp",
                   "metadata": {"display_phone_number": "15550783881", "phone_number_id": format!("10654035224{line:04}")},
                   "messages": messages}})
        })
        .collect();
    serde_json::to_vec(
        &json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": changes}]}),
    )
    .unwrap()
}

/// One pass of the CPU path; returns the number of events decided.
fn verify_parse_decide(body: &[u8], header: &str, facts: &HashMap<Subject, SenderFacts>) -> usize {
    signature::verify(SECRET, body, Some(header)).expect("signed");
    let delivery = Delivery::parse(body).expect("parses");
    let claims: HashMap<String, Claim> = inbound::claim_keys(&delivery)
        .into_iter()
        .map(|k| (k, Claim::Claimed))
        .collect();
    let _senders = inbound::senders(&delivery);
    let _unattributed = inbound::unattributed_status_ids(&delivery);
    let plan = inbound::plan_inbound(
        &delivery,
        facts,
        &claims,
        &HashMap::new(),
        &HashMap::new(),
        &blocklist::policy::merge_links(&delivery.links).0,
        Utc::now(),
    );
    let _links =
        blocklist::policy::decide_links(&delivery.links, &HashMap::new(), "bench", Utc::now());
    let _forward = delivery.filtered(&plan.forward);
    plan.forward.len() + plan.suppressed.len()
}

fn bench(c: &mut Criterion) {
    // One blocked sender, so that suppression and filtering are exercised;
    // its BSUID carries the number's block as a linked identity would.
    let blocked = Subject::parse("+16505551234").unwrap();
    let block = Block {
        subject: blocked.clone(),
        scope: Scope::All,
        reason: Reason::parse("spam").unwrap(),
        source: Source::Manual,
        reason_code: None,
        actor: "bench".into(),
        client: None,
        blocked_at: Utc::now(),
        expires_at: None,
        version: 1,
        review_due_at: None,
        rule: None,
    };
    let facts: HashMap<Subject, SenderFacts> = [
        (
            blocked,
            SenderFacts {
                blocks: vec![block.clone()],
                known_contact: false,
                state: None,
            },
        ),
        (
            Subject::parse("US.13491208655302741918").unwrap(),
            SenderFacts {
                blocks: vec![block],
                known_contact: false,
                state: None,
            },
        ),
    ]
    .into_iter()
    .collect();

    let mut group = c.benchmark_group("webhook_verify_parse_decide");
    let payloads = [
        ("inbound-text", fixture("inbound-text.json")),
        ("inbound-unicode", fixture("inbound-unicode.json")),
        ("inbound-batch", fixture("inbound-batch.json")),
        ("status-failed-131026", fixture("status-failed-131026.json")),
        ("inbound-bsuid-linked", fixture("inbound-bsuid-linked.json")),
        ("inbound-bsuid-only", fixture("inbound-bsuid-only.json")),
        ("status-failed-bsuid", fixture("status-failed-bsuid.json")),
        (
            "system-user-changed-number",
            fixture("system-user-changed-number.json"),
        ),
        ("synthetic-1000-messages", large_delivery()),
    ];
    for (name, body) in &payloads {
        let header = signature::sign(SECRET, body);
        let events = verify_parse_decide(body, &header, &facts);
        group.throughput(Throughput::Elements(events as u64));
        group.bench_function(*name, |b| {
            b.iter(|| verify_parse_decide(black_box(body), black_box(&header), &facts))
        });
    }
    group.finish();

    // The figure the issue asks for, in one line per payload: mean
    // nanoseconds per event over a fixed number of passes.
    for (name, body) in &payloads {
        let header = signature::sign(SECRET, body);
        let passes = 2_000u32
            .div_ceil(verify_parse_decide(body, &header, &facts) as u32)
            .max(20);
        let start = std::time::Instant::now();
        let mut events = 0usize;
        for _ in 0..passes {
            events += verify_parse_decide(black_box(body), black_box(&header), &facts);
        }
        let per_event = start.elapsed().as_nanos() as f64 / events as f64;
        println!("{name:<26} {per_event:>9.0} ns/event");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
