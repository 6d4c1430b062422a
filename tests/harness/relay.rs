//! A recording HTTP relay in front of DynamoDB Local. A store whose client
//! points at [`DynamoRelay::url`] talks to DynamoDB Local through it; every
//! request is noted with its operation (`X-Amz-Target`) and JSON body, and
//! a test may rewrite a request before it goes on (to make one action of a
//! transaction fail, for instance). Answers come back unchanged.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Rewrites the JSON body of a request to `operation`; returns whether it
/// changed anything.
pub type Rewrite = Box<dyn FnMut(&str, &mut Value) -> bool + Send>;

/// Answers a request to `operation` in DynamoDB's place: the JSON body of
/// an HTTP 400 (DynamoDB's error shape), or `None` to pass it on.
pub type Answer = Box<dyn FnMut(&str, &Value) -> Option<Value> + Send>;

/// One request that went through the relay.
#[derive(Debug, Clone)]
pub struct DynamoCall {
    /// The operation, e.g. `TransactWriteItems`.
    pub operation: String,
    /// The body as it reached DynamoDB Local (after any rewrite).
    pub body: Value,
    /// Whether the rewrite changed it.
    pub rewritten: bool,
}

/// An IAM action on a table or one of its indexes: what one call needs
/// granted. A transaction needs each of its actions granted one by one
/// (`PutItem`, `UpdateItem`, `DeleteItem`, `ConditionCheckItem`, `GetItem`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableAccess {
    /// The IAM action without its `dynamodb:` prefix, e.g. `PutItem`.
    pub action: String,
    /// The table name as the request names it.
    pub table: String,
    /// The index a `Query` or `Scan` reads, if any.
    pub index: Option<String>,
}

impl DynamoCall {
    /// The partitions of the counter items (`STATS#…`) the updates of
    /// this transaction add to.
    pub fn counter_partitions(&self) -> Vec<String> {
        self.body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|action| action["Update"]["Key"]["pk"]["S"].as_str())
            .filter(|pk| pk.starts_with("STATS#"))
            .map(str::to_owned)
            .collect()
    }

    /// The table accesses this call needs granted.
    pub fn accesses(&self) -> Vec<TableAccess> {
        let access = |action: &str, table: &Value, index: Option<&Value>| TableAccess {
            action: action.to_owned(),
            table: table.as_str().unwrap_or("(no table name)").to_owned(),
            index: index.and_then(Value::as_str).map(str::to_owned),
        };
        let body = &self.body;
        match self.operation.as_str() {
            "BatchGetItem" | "BatchWriteItem" => body["RequestItems"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(table, _)| access(&self.operation, &Value::String(table.clone()), None))
                .collect(),
            "TransactWriteItems" | "TransactGetItems" => body["TransactItems"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item.as_object()?.iter().next())
                .map(|(kind, action)| {
                    let iam = match kind.as_str() {
                        "Put" => "PutItem",
                        "Update" => "UpdateItem",
                        "Delete" => "DeleteItem",
                        "ConditionCheck" => "ConditionCheckItem",
                        "Get" => "GetItem",
                        other => other,
                    };
                    access(iam, &action["TableName"], None)
                })
                .collect(),
            _ => vec![access(
                &self.operation,
                &body["TableName"],
                body.get("IndexName"),
            )],
        }
    }
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<DynamoCall>>,
    /// JSON bodies of the answers, in the order each connection got them.
    answers: Mutex<Vec<Value>>,
    rewrite: Mutex<Option<Rewrite>>,
    answer: Mutex<Option<Answer>>,
    stopped: AtomicBool,
}

/// The relay; it stops accepting connections when dropped.
pub struct DynamoRelay {
    url: String,
    shared: Arc<Shared>,
}

impl DynamoRelay {
    /// A relay on a free port of loopback in front of `upstream_url`
    /// (`http://host:port`).
    pub fn start(upstream_url: &str) -> DynamoRelay {
        let upstream = upstream_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let shared = accepting.clone();
                std::thread::spawn(move || relay(client, server, shared));
            }
        });
        DynamoRelay { url, shared }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every call since the start or the last [`DynamoRelay::reset`].
    pub fn calls(&self) -> Vec<DynamoCall> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// Every table access of [`DynamoRelay::calls`].
    pub fn accesses(&self) -> Vec<TableAccess> {
        self.calls().iter().flat_map(DynamoCall::accesses).collect()
    }

    /// Forgets the calls noted so far.
    pub fn reset(&self) {
        self.shared.calls.lock().unwrap().clear();
        self.shared.answers.lock().unwrap().clear();
    }

    /// Items DynamoDB read (evaluated, before any filter) for the `Query`
    /// and `Scan` answers since the start or the last reset: what a
    /// listing costs in read capacity.
    pub fn items_read(&self) -> u64 {
        self.shared
            .answers
            .lock()
            .unwrap()
            .iter()
            .filter_map(|answer| answer["ScannedCount"].as_u64())
            .sum()
    }

    /// From now on, every request body goes through `rewrite` first.
    pub fn rewrite(&self, rewrite: impl FnMut(&str, &mut Value) -> bool + Send + 'static) {
        *self.shared.rewrite.lock().unwrap() = Some(Box::new(rewrite));
    }

    /// Makes the first `times` requests that `matches` (operation, body)
    /// fail: they name a table that does not exist, in every action of a
    /// transaction and in every table of a batch too, which DynamoDB
    /// refuses. Returns the count of requests failed so far.
    pub fn fail_first(
        &self,
        times: usize,
        matches: impl Fn(&str, &Value) -> bool + Send + 'static,
    ) -> Arc<std::sync::atomic::AtomicUsize> {
        let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = failed.clone();
        self.rewrite(move |operation, body| {
            if count.load(Ordering::SeqCst) >= times || !matches(operation, body) {
                return false;
            }
            count.fetch_add(1, Ordering::SeqCst);
            body["TableName"] = Value::String("no-such-table".into());
            for action in body["TransactItems"].as_array_mut().into_iter().flatten() {
                for write in action
                    .as_object_mut()
                    .into_iter()
                    .flat_map(|a| a.values_mut())
                {
                    write["TableName"] = Value::String("no-such-table".into());
                }
            }
            if let Some(tables) = body["RequestItems"].as_object_mut() {
                let requests: Vec<Value> = std::mem::take(tables).into_values().collect();
                for (i, request) in requests.into_iter().enumerate() {
                    tables.insert(format!("no-such-table-{i}"), request);
                }
            }
            true
        });
        failed
    }

    /// From now on, `answer` may answer a request in DynamoDB's place (see
    /// [`Answer`]); a request it answers never reaches DynamoDB Local.
    pub fn answer(&self, answer: impl FnMut(&str, &Value) -> Option<Value> + Send + 'static) {
        *self.shared.answer.lock().unwrap() = Some(Box::new(answer));
    }

    /// Cancels every `TransactWriteItems` with an action that `hot` picks
    /// the way DynamoDB cancels a transaction that meets another one on an
    /// item: `TransactionCanceledException` with `TransactionConflict` at
    /// each such action, `None` at the others; nothing is written. Returns
    /// the count of transactions cancelled so far.
    pub fn conflict_on(
        &self,
        hot: impl Fn(&Value) -> bool + Send + 'static,
    ) -> Arc<std::sync::atomic::AtomicUsize> {
        let cancelled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = cancelled.clone();
        self.answer(move |operation, body| {
            if operation != "TransactWriteItems" {
                return None;
            }
            let reasons: Vec<&str> = body["TransactItems"]
                .as_array()?
                .iter()
                .map(|action| if hot(action) { "TransactionConflict" } else { "None" })
                .collect();
            if !reasons.contains(&"TransactionConflict") {
                return None;
            }
            count.fetch_add(1, Ordering::SeqCst);
            Some(serde_json::json!({
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "Message": format!(
                    "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                    reasons.join(", ")
                ),
                "CancellationReasons": reasons
                    .iter()
                    .map(|code| match *code {
                        "None" => serde_json::json!({ "Code": "None" }),
                        code => serde_json::json!({
                            "Code": code,
                            "Message": "Transaction is ongoing for the item",
                        }),
                    })
                    .collect::<Vec<_>>(),
            }))
        });
        cancelled
    }

    /// Requests go on unchanged again.
    pub fn stop_rewriting(&self) {
        *self.shared.rewrite.lock().unwrap() = None;
    }
}

impl Drop for DynamoRelay {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

/// Requests from `client` go to `server` one at a time, each noted and
/// possibly rewritten; answers are copied back as they come.
fn relay(mut client: TcpStream, mut server: TcpStream, shared: Arc<Shared>) {
    let (Ok(mut back_from), Ok(mut back_to)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    let noted = shared.clone();
    std::thread::spawn(move || {
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            let read = match back_from.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            // Noted before its last bytes go on, so that a caller which has
            // its answer finds it noted.
            pending.extend_from_slice(&chunk[..read]);
            while let Some((answer, length)) = complete_answer(&pending) {
                pending.drain(..length);
                noted.answers.lock().unwrap().push(answer);
            }
            if back_to.write_all(&chunk[..read]).is_err() {
                break;
            }
        }
        let _ = back_to.shutdown(std::net::Shutdown::Both);
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    'connection: loop {
        let read = match client.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        pending.extend_from_slice(&chunk[..read]);
        while let Some((next, length)) = complete_request(&pending, &shared) {
            pending.drain(..length);
            // The SDK sends the next request on a connection only after the
            // answer to the last one: an answer of the relay's own never
            // meets one of DynamoDB's on the way back.
            let sent = match next {
                Next::Forward(request) => server.write_all(&request),
                Next::Reply(answer) => client.write_all(&answer),
            };
            if sent.is_err() {
                break 'connection;
            }
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Both);
}

/// When `pending` starts with a whole HTTP/1.1 answer (sized by
/// `content-length`, or chunked): its JSON body (null if it is not JSON)
/// and the length taken.
fn complete_answer(pending: &[u8]) -> Option<(Value, usize)> {
    let end = pending.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    };
    let start = end + 4;
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        let mut at = start;
        loop {
            let line_end = at + pending[at..].windows(2).position(|w| w == b"\r\n")?;
            let size_text = String::from_utf8_lossy(&pending[at..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            let data = line_end + 2;
            if pending.len() < data + size + 2 {
                return None;
            }
            if size == 0 {
                let total = data + 2;
                return Some((serde_json::from_slice(&body).unwrap_or(Value::Null), total));
            }
            body.extend_from_slice(&pending[data..data + size]);
            at = data + size + 2;
        }
    }
    let length = header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let total = start + length;
    if pending.len() < total {
        return None;
    }
    Some((
        serde_json::from_slice(&pending[start..total]).unwrap_or(Value::Null),
        total,
    ))
}

/// What becomes of a request.
enum Next {
    /// The bytes to send on to DynamoDB Local.
    Forward(Vec<u8>),
    /// The relay's own answer, to send back.
    Reply(Vec<u8>),
}

/// An HTTP 400 answer with DynamoDB's JSON error `body`.
fn error_answer(body: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(body).expect("JSON");
    let mut answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\n\
         x-amzn-requestid: relay-answer\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

/// When `pending` starts with a whole HTTP/1.1 request: notes it, applies
/// the answer or the rewrite, and returns what to do with it and the
/// length taken.
fn complete_request(pending: &[u8], shared: &Shared) -> Option<(Next, usize)> {
    let end = pending.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&pending[..end]).into_owned();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let length = header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let total = end + 4 + length;
    if pending.len() < total {
        return None;
    }
    let raw_body = &pending[end + 4..total];
    let operation = header("x-amz-target")
        .and_then(|t| t.rsplit('.').next().map(str::to_owned))
        .unwrap_or_else(|| "(no target)".to_owned());
    if header("transfer-encoding").is_some() {
        // Not the shape the SDK sends DynamoDB; noted so that a test sees it.
        shared.calls.lock().unwrap().push(DynamoCall {
            operation: format!("{operation} (chunked, unread)"),
            body: Value::Null,
            rewritten: false,
        });
        return Some((Next::Forward(pending[..total].to_vec()), total));
    }
    let mut body: Value = serde_json::from_slice(raw_body).unwrap_or(Value::Null);
    let answered = match shared.answer.lock().unwrap().as_mut() {
        Some(answer) if !body.is_null() => answer(&operation, &body),
        _ => None,
    };
    if let Some(answer) = answered {
        shared.calls.lock().unwrap().push(DynamoCall {
            operation,
            body,
            rewritten: false,
        });
        shared.answers.lock().unwrap().push(answer.clone());
        return Some((Next::Reply(error_answer(&answer)), total));
    }
    let rewritten = match shared.rewrite.lock().unwrap().as_mut() {
        Some(rewrite) if !body.is_null() => rewrite(&operation, &mut body),
        _ => false,
    };
    shared.calls.lock().unwrap().push(DynamoCall {
        operation,
        body: body.clone(),
        rewritten,
    });
    if !rewritten {
        return Some((Next::Forward(pending[..total].to_vec()), total));
    }
    let new_body = serde_json::to_vec(&body).expect("JSON");
    let mut request = Vec::with_capacity(end + 64 + new_body.len());
    for (i, line) in head.split("\r\n").enumerate() {
        let is_length = line
            .split_once(':')
            .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("content-length"));
        if i > 0 {
            request.extend_from_slice(b"\r\n");
        }
        if is_length {
            request.extend_from_slice(format!("content-length: {}", new_body.len()).as_bytes());
        } else {
            request.extend_from_slice(line.as_bytes());
        }
    }
    request.extend_from_slice(b"\r\n\r\n");
    request.extend_from_slice(&new_body);
    Some((Next::Forward(request), total))
}
