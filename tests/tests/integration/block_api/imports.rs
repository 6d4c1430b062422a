//! B91: `POST /v1/imports` takes a CSV file, `block-import` blocks its
//! rows a chunk at a time, `GET /v1/imports/{id}` shows the progress and
//! `GET /v1/imports/{id}/results` every row's result.

use integration_tests::{ApiRequest, ApiResponse, token};
use serde_json::{Value, json};

use super::Api;
use super::bad_input::{assert_error, assert_nothing_written};
use super::export::csv_of;

const HEADER: &str = "number,reason,scope,name,email,category,groups";
const LINE: &str = "106540352242922";

pub(crate) async fn upload(api: &Api, file: &str) -> ApiResponse {
    api.send(
        ApiRequest::new("POST", "/v1/imports")
            .bearer(&api.token)
            .header("content-type", "text/csv; charset=utf-8")
            .raw_body(file),
    )
    .await
}

/// The chunk items of every import, as the Imports stream hands them to
/// `block-import` (keys only: the worker reads the chunk itself).
pub(crate) async fn chunk_records(api: &Api) -> Vec<Value> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = api
            .stack
            .client
            .scan()
            .table_name(&api.stack.tables.imports)
            .consistent_read(true)
            .projection_expression("pk, sk")
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan Imports");
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    let mut keys: Vec<(String, String)> = items
        .into_iter()
        .filter_map(|item| {
            let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
            Some((text("pk")?, text("sk")?))
        })
        .filter(|(_, sk)| sk == "CHUNK")
        .collect();
    keys.sort();
    keys.into_iter()
        .enumerate()
        .map(|(i, (pk, sk))| {
            json!({
                "eventID": format!("{i}"),
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {
                    "Keys": {"pk": {"S": pk}, "sk": {"S": sk}},
                    "SequenceNumber": format!("{}", 100 + i),
                    "StreamViewType": "NEW_IMAGE"
                }
            })
        })
        .collect()
}

/// The stream records of import `id`'s chunks.
async fn chunk_records_of(api: &Api, id: &str) -> Vec<Value> {
    chunk_records(api)
        .await
        .into_iter()
        .filter(|r| {
            r.pointer("/dynamodb/Keys/pk/S")
                .and_then(Value::as_str)
                .is_some_and(|pk| pk.contains(id))
        })
        .collect()
}

/// Hands `records` to `block-import`; every one succeeds.
async fn work(api: &Api, records: Vec<Value>) {
    let answer = block_import::handle(&api.app, json!({ "Records": records })).await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
}

async fn import_of(api: &Api, id: &str) -> Value {
    let response = api.call("GET", &format!("/v1/imports/{id}"), None).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.body
}

/// Every result of an import, page after page of `limit`.
async fn all_results(api: &Api, id: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut uri = format!("/v1/imports/{id}/results?limit={limit}{query}");
        if let Some(c) = &cursor {
            uri.push_str(&format!("&cursor={c}"));
        }
        let page = api.call("GET", &uri, None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.body["items"].as_array().unwrap().clone();
        assert!(items.len() <= limit);
        out.extend(items);
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn b91_an_import_blocks_every_row_and_reports_each() {
    let api = Api::new().await;
    // A spreadsheet's export: a byte-order mark, CRLF line ends, quoted
    // commas, a contact with groups, and an invalid number in row 7.
    let file = format!(
        "\u{feff}{HEADER}\r\n\
         +16505550001,\"spam, and more spam\",all,\"Doe, Jane\",jane@example.org,vip,\"support;billing\"\r\n\
         +16505550002,abuse,{LINE},,,,\r\n\
         +16505550003,abuse,,,,,\r\n\
         +16505550004,abuse,,,not-an-email,,\r\n\
         +16505550005,abuse,not a scope,,,,\r\n\
         +16505550001,\"spam, and more spam\",all,,,,\r\n\
         +1 650 555 00,abuse,,,,,\r\n\
         +16505550008,,,,,,\r\n\
         +16505550009,abuse,all,,,,,extra\r\n\
         +44 7700 900123,abuse,,,,,\r\n"
    );
    let created = upload(&api, &file).await;
    assert_eq!(created.status, 202, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/imports/{id}").as_str())
    );
    assert_eq!(created.body["status"], "queued");
    assert_eq!(created.body["rows"], 10);
    assert_eq!(created.body["rows_done"], 0);
    assert_eq!(created.body["actor"], "agent-1");
    // Nothing is blocked before the worker runs.
    let listing = api.call("GET", "/v1/blocks", None).await;
    assert_eq!(listing.body["items"], json!([]));

    work(&api, chunk_records(&api).await).await;
    let done = import_of(&api, &id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["rows_done"], 10);
    assert_eq!(
        done["counts"],
        json!({"blocked": 4, "already_blocked": 1, "invalid": 5, "failed": 0})
    );

    let results = all_results(&api, &id, "", 200).await;
    let by_row: Vec<(u64, u64, &str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["row"].as_u64().unwrap(),
                r["line"].as_u64().unwrap(),
                r["status"].as_str().unwrap(),
                r["error"]["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        by_row,
        [
            (1, 2, "blocked", ""),
            (2, 3, "blocked", ""),
            (3, 4, "blocked", ""),
            (4, 5, "invalid", "invalid_contact"),
            (5, 6, "invalid", "invalid_scope"),
            (6, 7, "already_blocked", ""),
            (7, 8, "invalid", "invalid_number"),
            (8, 9, "invalid", "invalid_reason"),
            (9, 10, "invalid", "invalid_row"),
            (10, 11, "blocked", ""),
        ]
    );
    assert_eq!(results[3]["error"]["field"], "email");
    assert_eq!(
        results[6]["number"], "+1 650 555 00",
        "as written in the file"
    );
    assert!(
        results[6]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid number"),
        "{}",
        results[6]
    );

    // Each block is the one `PUT /v1/blocks` makes, with source `import`,
    // its contact written with it, and an audit event naming the import.
    let first = api.call("GET", "/v1/blocks/+16505550001", None).await;
    let block = &first.body["blocks"][0];
    assert_eq!(block["reason"], "spam, and more spam");
    assert_eq!(block["source"], "import");
    assert_eq!(block["actor"], "agent-1");
    assert_eq!(first.body["contact"]["name"], "Doe, Jane");
    assert_eq!(
        first.body["contact"]["groups"],
        json!(["support", "billing"])
    );
    let history = api.history("+16505550001").await;
    let blocked: Vec<&Value> = history
        .iter()
        .filter(|e| e["action"] == "blocked")
        .collect();
    assert_eq!(blocked.len(), 1, "row 6 wrote nothing: {history:#?}");
    assert_eq!(blocked[0]["details"]["import"], id.as_str());
    assert_eq!(blocked[0]["details"]["row"], 1);
    let scoped = api.call("GET", "/v1/blocks/+16505550002", None).await;
    assert_eq!(scoped.body["blocks"][0]["scope"], LINE);
    let canonical = api.call("GET", "/v1/blocks/+447700900123", None).await;
    assert_eq!(canonical.body["blocks"].as_array().unwrap().len(), 1);
    for number in ["+16505550004", "+16505550005", "+16505550008"] {
        let none = api.call("GET", &format!("/v1/blocks/{number}"), None).await;
        assert_eq!(none.body["blocks"], json!([]), "{number}");
    }

    // The failed rows alone, and as a CSV to download.
    let failed = all_results(&api, &id, "&status=failed", 200).await;
    let rows: Vec<u64> = failed.iter().map(|r| r["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, [4, 5, 7, 8, 9]);
    let (csv, next) = csv_of(&api, &format!("/v1/imports/{id}/results")).await;
    assert_eq!(next, None);
    assert_eq!(
        csv[0],
        [
            "row", "line", "number", "status", "code", "message", "field"
        ]
    );
    assert_eq!(csv.len(), 11);
    // A canonical number keeps its `+`; a cell as written in the file that
    // a spreadsheet would read as a formula is neutralised.
    assert_eq!(csv[1][2], "+16505550001");
    assert_eq!(
        csv[7][..5],
        ["7", "8", "'+1 650 555 00", "invalid", "invalid_number"]
    );
}

#[tokio::test]
async fn b91_rows_are_idempotent_a_chunk_counts_once_and_a_second_upload_blocks_nothing_twice() {
    let api = Api::new().await;
    let file = format!("{HEADER}\n+16505550001,spam,,,,,\n+16505550002,spam,,,,,\n");
    let first = upload(&api, &file).await;
    let id = first.body["id"].as_str().unwrap().to_owned();
    let records = chunk_records(&api).await;
    // The stream hands the same chunk over twice (a retried batch).
    work(&api, records.clone()).await;
    work(&api, records).await;
    let done = import_of(&api, &id).await;
    assert_eq!(done["rows_done"], 2, "{done}");
    assert_eq!(done["counts"]["blocked"], 2);
    assert_eq!(done["chunks_done"], 1);

    // The same file again (an operator retrying an upload): a new import,
    // whose rows find their blocks.
    let second = upload(&api, &file).await;
    let again = second.body["id"].as_str().unwrap().to_owned();
    assert_ne!(again, id);
    let records = chunk_records_of(&api, &again).await;
    work(&api, records).await;
    let done = import_of(&api, &again).await;
    assert_eq!(
        done["counts"],
        json!({"blocked": 0, "already_blocked": 2, "invalid": 0, "failed": 0})
    );
    for number in ["+16505550001", "+16505550002"] {
        let history = api.history(number).await;
        assert_eq!(history.len(), 1, "one audit event: {history:#?}");
    }
}

#[tokio::test]
async fn b91_a_large_import_runs_in_chunks_with_progress_and_pages_of_results() {
    let api = Api::new().await;
    let mut file = format!("{HEADER}\n");
    // 40 numbers, each in 30 or so rows: 40 blocks, and reads for the rest
    // (DynamoDB Local runs transactions one at a time).
    for i in 0..1_201 {
        file.push_str(&format!("+1650555{:04},spam wave,,,,,\n", i % 40));
    }
    let created = upload(&api, &file).await;
    assert_eq!(created.status, 202, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["chunks"], 3);
    let records = chunk_records(&api).await;
    assert_eq!(records.len(), 3);

    // Before any chunk is done, every row is pending.
    let pending = api
        .call("GET", &format!("/v1/imports/{id}/results?limit=5"), None)
        .await;
    assert_eq!(pending.body["items"][0]["status"], "pending");

    work(&api, records[..1].to_vec()).await;
    let running = import_of(&api, &id).await;
    assert_eq!(running["status"], "running");
    assert_eq!(running["rows_done"], 500);
    assert_eq!(running["chunks_done"], 1);

    work(&api, records[1..].to_vec()).await;
    let done = import_of(&api, &id).await;
    assert_eq!(done["status"], "done");
    assert_eq!(
        done["counts"],
        json!({"blocked": 40, "already_blocked": 1_161, "invalid": 0, "failed": 0})
    );

    // Pages of 200 cross the chunk boundaries: every row once, in order.
    let results = all_results(&api, &id, "", 200).await;
    let rows: Vec<u64> = results.iter().map(|r| r["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, (1..=1_201).collect::<Vec<u64>>());
    assert!(results[..40].iter().all(|r| r["status"] == "blocked"));
    assert!(
        results[40..]
            .iter()
            .all(|r| r["status"] == "already_blocked")
    );
    assert_eq!(
        all_results(&api, &id, "&status=failed", 200).await,
        Vec::<Value>::new()
    );
    let stats = api.call("GET", "/v1/stats", None).await;
    assert_eq!(stats.body["currently_blocked"], 40);
}

#[tokio::test]
async fn b91_the_largest_file_is_taken_and_one_row_more_is_refused() {
    let api = Api::new().await;
    let mut file = format!("{HEADER}\n");
    for i in 0..100_000u32 {
        file.push_str(&format!("+4477009{:05},bulk,,,,,\n", i));
    }
    let created = upload(&api, &file).await;
    assert_eq!(created.status, 202, "{}", created.body);
    assert_eq!(created.body["rows"], 100_000);
    assert_eq!(created.body["chunks"], 200);
    assert_eq!(chunk_records(&api).await.len(), 200);

    file.push_str("+447700999999,bulk,,,,,\n");
    let refused = upload(&api, &file).await;
    assert_error(&refused, 422, "too_many_rows");
    assert_eq!(refused.body["error"]["field"], "file");
    assert_eq!(chunk_records(&api).await.len(), 200, "nothing more stored");
}

#[tokio::test]
async fn b91_bad_files_are_refused_whole_with_a_clear_error() {
    let api = Api::new().await;
    for (file, status, code, says) in [
        (
            "phone,reason\n+16505550001,spam\n".to_owned(),
            422,
            "invalid_header",
            "unknown column \"phone\"",
        ),
        (
            "number,scope\n+16505550001,all\n".to_owned(),
            422,
            "invalid_header",
            "\"reason\" is missing",
        ),
        (
            "+16505550001,spam\n".to_owned(),
            422,
            "invalid_header",
            "number,reason,scope",
        ),
        (String::new(), 422, "empty_file", "empty"),
        (format!("{HEADER}\r\n\r\n"), 422, "no_rows", "no rows"),
        (
            // 20 MB: over the 4 MiB a file may have.
            format!(
                "{HEADER}\n{}",
                "+16505550001,spam,,,,,\n".repeat(20 * 1024 * 1024 / 23)
            ),
            413,
            "payload_too_large",
            "split it",
        ),
    ] {
        let response = upload(&api, &file).await;
        assert_error(&response, status, code);
        let message = response.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{code}: {message}");
    }
    // Not CSV.
    let json_body = api
        .call(
            "POST",
            "/v1/imports",
            Some(json!({"number": "+16505550001"})),
        )
        .await;
    assert_error(&json_body, 415, "unsupported_media_type");
    // A reader may not import.
    let reader = api
        .send(
            ApiRequest::new("POST", "/v1/imports")
                .bearer(&token("viewer", &["blocklist:read"]))
                .header("content-type", "text/csv")
                .raw_body(&format!("{HEADER}\n+16505550001,spam,,,,,\n")),
        )
        .await;
    assert_error(&reader, 403, "forbidden");
    assert!(chunk_records(&api).await.is_empty(), "nothing stored");
    assert_nothing_written(&api, &["+16505550001"]).await;

    // Unknown and malformed ids, and a bad status filter.
    let missing = api
        .call("GET", "/v1/imports/01M8YBG0DZM7WJ14R2JNXERH27", None)
        .await;
    assert_error(&missing, 404, "import_not_found");
    let malformed = api.call("GET", "/v1/imports/..%2Fsettings", None).await;
    assert_error(&malformed, 404, "import_not_found");
    let created = upload(&api, &format!("{HEADER}\n+16505550001,spam,,,,,\n")).await;
    let id = created.body["id"].as_str().unwrap();
    let bad = api
        .call(
            "GET",
            &format!("/v1/imports/{id}/results?status=nope"),
            None,
        )
        .await;
    assert_error(&bad, 400, "invalid_parameter");
    let bad_cursor = api
        .call("GET", &format!("/v1/imports/{id}/results?cursor=abc"), None)
        .await;
    assert_error(&bad_cursor, 400, "invalid_cursor");
}

/// Sets the upload state of import `id` as a test's setup (an upload
/// under way, or one that failed).
async fn set_upload_state(api: &Api, id: &str, state: &str) {
    use aws_sdk_dynamodb::types::AttributeValue;
    api.stack
        .client
        .update_item()
        .table_name(&api.stack.tables.imports)
        .key("pk", AttributeValue::S(format!("IMPORT#{id}")))
        .key("sk", AttributeValue::S("JOB".into()))
        .update_expression("SET #state = :state")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":state", AttributeValue::S(state.into()))
        .send()
        .await
        .expect("set the upload state");
}

#[tokio::test]
async fn b91_chunks_wait_for_their_upload_and_those_of_an_upload_given_up_block_nothing() {
    let api = Api::new().await;
    let created = upload(&api, &format!("{HEADER}\n+16505550001,spam,,,,,\n")).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let records = chunk_records(&api).await;

    // Under way when the chunk arrives: it waits, and goes on once the
    // upload is done.
    set_upload_state(&api, &id, "uploading").await;
    let finish = {
        let api = Api::on(&api.stack);
        let id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            set_upload_state(&api, &id, "ready").await;
        })
    };
    work(&api, records.clone()).await;
    finish.await.unwrap();
    assert_eq!(import_of(&api, &id).await["counts"]["blocked"], 1);

    // Another import whose upload is still "under way" long after
    // block-api's timeout: given up, its chunk blocks nothing.
    let later = upload(&api, &format!("{HEADER}\n+16505550002,spam,,,,,\n")).await;
    let later = later.body["id"].as_str().unwrap().to_owned();
    set_upload_state(&api, &later, "uploading").await;
    let mut stale = Api::on(&api.stack);
    stale.app.now = || chrono::Utc::now() + chrono::Duration::minutes(3);
    let records = chunk_records_of(&api, &later).await;
    work(&stale, records).await;
    let none = api.call("GET", "/v1/blocks/+16505550002", None).await;
    assert_eq!(none.body["blocks"], json!([]));
}

#[tokio::test]
async fn b91_a_chunk_retried_after_a_failure_reports_the_rows_its_first_attempt_did() {
    let api = Api::new().await;
    let file = format!(
        "{HEADER}\n+16505550001,spam,,,,,\n+16505550002,spam,,,,,\n+16505550003,spam,,,,,\n"
    );
    let id = upload(&api, &file).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let records = chunk_records(&api).await;
    // The first attempt: row 1's block is written, and the store refuses
    // the writes of the others.
    let relay = integration_tests::DynamoRelay::start(&integration_tests::endpoint());
    relay.fail_first(usize::MAX, |operation, body| {
        let text = body.to_string();
        operation == "TransactWriteItems"
            && (text.contains("+16505550002") || text.contains("+16505550003"))
    });
    let failing = api.via(&relay);
    let answer = block_import::handle(&failing.app, json!({ "Records": records.clone() })).await;
    assert_eq!(
        answer["batchItemFailures"].as_array().unwrap().len(),
        1,
        "{answer}"
    );
    let chunk = api.stack.store.import_chunk(&id, 0).await.unwrap().unwrap();
    assert_eq!(chunk.results, None);
    assert_eq!(
        chunk.partial.len(),
        1,
        "the row done is kept: {:?}",
        chunk.partial
    );
    assert_eq!(
        chunk.partial[0].status,
        blocklist::import::RowStatus::Blocked
    );

    // The retry reports that row as blocked, not as already blocked.
    work(&api, records).await;
    let done = import_of(&api, &id).await;
    assert_eq!(
        done["counts"],
        json!({"blocked": 3, "already_blocked": 0, "invalid": 0, "failed": 0}),
        "{done}"
    );
    for number in ["+16505550001", "+16505550002", "+16505550003"] {
        let history = api.history(number).await;
        assert_eq!(history.len(), 1, "one block, one event: {history:#?}");
    }

    // Recording a chunk twice counts it once.
    let chunk = api.stack.store.import_chunk(&id, 0).await.unwrap().unwrap();
    let results = chunk.results.clone().expect("recorded");
    let again = api
        .stack
        .store
        .finish_chunk(&chunk, &results, chrono::Utc::now())
        .await
        .unwrap();
    assert!(!again, "the second recording is refused");
    assert_eq!(import_of(&api, &id).await["rows_done"], 3);
}

#[tokio::test]
async fn b91_an_upload_that_fails_partway_blocks_nothing() {
    let api = Api::new().await;
    // 26 chunks: two BatchWriteItem calls, the first refused.
    let mut file = format!("{HEADER}\n");
    for i in 0..12_600u32 {
        file.push_str(&format!("+4477009{i:05},spam,,,,,\n"));
    }
    let relay = integration_tests::DynamoRelay::start(&integration_tests::endpoint());
    let mut refused_once = false;
    relay.rewrite(move |operation, body| {
        if operation != "BatchWriteItem" || refused_once {
            return false;
        }
        refused_once = true;
        let items = body["RequestItems"].as_object_mut().unwrap();
        let (_, writes) = items
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap();
        items.clear();
        items.insert("no-such-table".into(), writes);
        true
    });
    let refused = upload(&api.via(&relay), &file).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    // The import is marked aborted; whatever chunks were stored are
    // skipped.
    let jobs = api
        .stack
        .client
        .scan()
        .table_name(&api.stack.tables.imports)
        .filter_expression("sk = :job")
        .expression_attribute_values(
            ":job",
            aws_sdk_dynamodb::types::AttributeValue::S("JOB".into()),
        )
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["state"].as_s().unwrap(), "aborted");
    let id = jobs[0]["id"].as_s().unwrap().clone();
    let gone = api.call("GET", &format!("/v1/imports/{id}"), None).await;
    assert_error(&gone, 404, "import_not_found");
    // A chunk of it handed over anyway (as the stream would for one that
    // was stored) blocks nothing.
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let text = |v: &str| A::S(v.to_owned());
    api.stack
        .client
        .put_item()
        .table_name(&api.stack.tables.imports)
        .item("pk", text(&format!("IMPORT#{id}#00000")))
        .item("sk", text("CHUNK"))
        .item("import_id", text(&id))
        .item("index", A::N("0".into()))
        .item("actor", text("agent-1"))
        .item(
            "rows",
            text(r#"[{"row":1,"line":2,"number":"+447700900000","reason":"spam"}]"#),
        )
        .item("ttl", A::N("4102444800".into()))
        .send()
        .await
        .unwrap();
    work(&api, chunk_records(&api).await).await;
    let listing = api.call("GET", "/v1/blocks", None).await;
    assert_eq!(listing.body["items"], json!([]), "nothing is blocked");
}

#[tokio::test]
async fn b91_failed_rows_page_across_many_chunks_in_order() {
    let api = Api::new().await;
    // 6 chunks of 500 rows; the bad rows are in chunks 0, 2, 3, 4 and 5
    // (more than a page reads), none in chunk 1. The good rows name one
    // number: one block, and the rest find it (a read each, no write), so
    // that the test takes seconds against DynamoDB Local.
    let bad = [3u32, 1_499, 1_500, 2_100, 2_999, 3_000];
    let mut file = format!("{HEADER}\n");
    for row in 1..=3_000u32 {
        if bad.contains(&row) {
            file.push_str("12,spam,,,,,\n");
        } else {
            file.push_str("+16505550000,spam wave,,,,,\n");
        }
    }
    let id = upload(&api, &file).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    work(&api, chunk_records(&api).await).await;
    let done = import_of(&api, &id).await;
    assert_eq!(done["status"], "done");
    assert_eq!(
        done["counts"],
        json!({"blocked": 1, "already_blocked": 2_993, "invalid": 6, "failed": 0})
    );
    for limit in [1, 2, 200] {
        let failed = all_results(&api, &id, "&status=failed", limit).await;
        let rows: Vec<u64> = failed.iter().map(|r| r["row"].as_u64().unwrap()).collect();
        assert_eq!(rows, bad.map(u64::from), "limit {limit}");
    }
    // Every row once, in order, with pages smaller than a chunk and more
    // chunks than a page reads.
    let all = all_results(&api, &id, "", 137).await;
    let rows: Vec<u64> = all.iter().map(|r| r["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, (1..=3_000).collect::<Vec<u64>>());

    // A cursor into a chunk that expired meanwhile goes on at the start of
    // the next one.
    let mut cursor = String::new();
    for _ in 0..3 {
        let page = api
            .call(
                "GET",
                &format!("/v1/imports/{id}/results?limit=200{cursor}"),
                None,
            )
            .await;
        cursor = format!("&cursor={}", page.body["next_cursor"].as_str().unwrap());
    }
    // Rows 1–600 read: the cursor is 100 rows into chunk 1.
    use aws_sdk_dynamodb::types::AttributeValue;
    api.stack
        .client
        .delete_item()
        .table_name(&api.stack.tables.imports)
        .key("pk", AttributeValue::S(format!("IMPORT#{id}#00001")))
        .key("sk", AttributeValue::S("CHUNK".into()))
        .send()
        .await
        .unwrap();
    let next = api
        .call(
            "GET",
            &format!("/v1/imports/{id}/results?limit=200{cursor}"),
            None,
        )
        .await;
    assert_eq!(
        next.body["items"][0]["row"], 1_001,
        "{}",
        next.body["items"][0]
    );
}
