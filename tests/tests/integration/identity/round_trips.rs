//! B61 with B29: learning the links of a delivery costs DynamoDB calls by
//! batches, not one call per link. The webhook's store talks to DynamoDB
//! Local through a counting relay that notes each request's
//! `X-Amz-Target`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use blocklist::meta::signature;
use blocklist::store::Store;
use integration_tests::{ApiRequest, dynamodb_client, endpoint, read_response};
use serde_json::Value;

use super::{World, delivery, text_message};
use crate::webhook_ingress::{APP_SECRET, app_for};

/// A TCP relay in front of DynamoDB Local that records the operation of
/// every HTTP request passing through it.
struct CountingRelay {
    url: String,
    operations: Arc<Mutex<Vec<String>>>,
}

impl CountingRelay {
    fn start(upstream_url: &str) -> CountingRelay {
        let upstream = upstream_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let operations = Arc::new(Mutex::new(Vec::new()));
        let seen = operations.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let seen = seen.clone();
                std::thread::spawn(move || relay(client, server, seen));
            }
        });
        CountingRelay { url, operations }
    }

    /// Forgets what was counted so far.
    fn reset(&self) {
        self.operations.lock().unwrap().clear();
    }

    /// Calls per operation since the last reset.
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for operation in self.operations.lock().unwrap().iter() {
            *counts.entry(operation.clone()).or_insert(0) += 1;
        }
        counts
    }

    fn total(&self) -> usize {
        self.operations.lock().unwrap().len()
    }
}

fn relay(mut client: TcpStream, mut server: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let (Ok(mut back_from), Ok(mut back_to)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
        let _ = back_to.shutdown(std::net::Shutdown::Both);
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let read = match client.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if server.write_all(&chunk[..read]).is_err() {
            break;
        }
        pending.extend_from_slice(&chunk[..read]);
        while let Some(length) = complete_request(&pending, &seen) {
            pending.drain(..length);
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Both);
}

/// When `pending` starts with a whole HTTP/1.1 request: records its
/// `X-Amz-Target` and returns its length.
fn complete_request(pending: &[u8], seen: &Mutex<Vec<String>>) -> Option<usize> {
    let end = pending.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&pending[..end]).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let body = header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let total = end + 4 + body;
    if pending.len() < total {
        return None;
    }
    let target = header("x-amz-target").unwrap_or_else(|| "(no target)".to_owned());
    let operation = target.rsplit('.').next().unwrap_or_default().to_owned();
    seen.lock().unwrap().push(operation);
    Some(total)
}

/// Delivers `body` to a webhook whose store goes through `relay`.
async fn deliver_counted(world: &World, relay: &CountingRelay, body: &str) -> Value {
    let store = Store::new(dynamodb_client(&relay.url), world.stack().tables.clone());
    let app = app_for(store, Some(format!("{}/crm", world.ingress.crm.uri())));
    let request = ApiRequest::new("POST", "/webhook")
        .header(
            "x-hub-signature-256",
            &signature::sign(APP_SECRET.as_bytes(), body.as_bytes()),
        )
        .header("content-type", "application/json")
        .raw_body(body);
    let response = read_response(webhook_ingress::handle(&app, request.to_lambda()).await);
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.body
}

#[tokio::test]
async fn b29_b61_links_of_a_delivery_are_written_by_batches_not_one_call_each() {
    const PEOPLE: usize = 60;
    let world = World::new().await;
    let relay = CountingRelay::start(&endpoint());

    // Baseline: PEOPLE messages showing a number only (no link to learn).
    let plain = delivery(
        vec![],
        (0..PEOPLE)
            .map(|i| {
                text_message(
                    Some(&format!("1650555{:04}", 2000 + i)),
                    None,
                    &format!("wamid.B29PLAIN{i}"),
                )
            })
            .collect(),
        vec![],
    );
    relay.reset();
    let answer = deliver_counted(&world, &relay, &plain).await;
    assert_eq!(answer["forwarded"], PEOPLE, "{answer}");
    let baseline = relay.total();
    let baseline_counts = relay.counts();

    // The same with a number and a BSUID each: PEOPLE new links.
    let linked = delivery(
        vec![],
        (0..PEOPLE)
            .map(|i| {
                text_message(
                    Some(&format!("1650555{:04}", 3000 + i)),
                    Some(&format!("US.{}", 10_000_000_000u64 + i as u64)),
                    &format!("wamid.B29LINKED{i}"),
                )
            })
            .collect(),
        vec![],
    );
    relay.reset();
    let answer = deliver_counted(&world, &relay, &linked).await;
    assert_eq!(answer["forwarded"], PEOPLE, "{answer}");
    let with_links = relay.total();
    let linked_counts = relay.counts();

    // Every link was learned.
    let view = world.view("+16505553000").await;
    assert_eq!(view["links"][0]["user_id"], "US.10000000000", "{view}");
    let view = world
        .view(&format!("+1650555{:04}", 3000 + PEOPLE - 1))
        .await;
    assert_eq!(view["links"].as_array().map(Vec::len), Some(1), "{view}");

    // Twice the identities to read (one more batch or so) and PEOPLE links
    // to write, at up to 25 links (100 actions) per transaction.
    let allowed = PEOPLE.div_ceil(25) + 4;
    assert!(
        with_links.saturating_sub(baseline) <= allowed,
        "{PEOPLE} links cost {} DynamoDB calls more than no links (at most {allowed} expected); \
         without links: {baseline_counts:?}, with links: {linked_counts:?}",
        with_links.saturating_sub(baseline)
    );
}
