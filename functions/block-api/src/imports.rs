//! B91: CSV imports. `POST /v1/imports` checks the whole file, stores it in
//! chunks and answers 202 with the import; `block-import` blocks each
//! chunk's rows from the Imports stream ([`work_chunk`]);
//! `GET /v1/imports/{id}` shows the progress and
//! `GET /v1/imports/{id}/results` the result of every row (JSON pages, or
//! CSV with `Accept: text/csv`).
//!
//! A row is blocked as `PUT /v1/blocks/{number}` blocks (same checks, same
//! messages, its contact written in the same transaction), with source
//! `import`. Rows are idempotent: a row is blocked once however often its
//! chunk is handed over, and a chunk's results and counts are recorded
//! once. A chunk that fails partway keeps the results of the rows it did,
//! and its retry reports them as they were done; a row that finds the
//! block of another import, or of a file uploaded twice, reports
//! `already_blocked`.

use std::collections::HashMap;

use blocklist::http::auth::{Caller, READ, WRITE};
use blocklist::http::request::{Query, import_body_bytes};
use blocklist::http::{ApiError, json};
use blocklist::identity::Subject;
use blocklist::import::{self, FileError, RowError, RowResult, RowStatus};
use blocklist::model::{Scope, Source};
use blocklist::policy::BlockCommand;
use blocklist::service::{self, BlockOutcome};
use blocklist::store::{Cursor, Import, ImportChunk, Page, StoreError, UploadState};
use futures::StreamExt;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::blocks::{cursor_param, seen_subject};
use crate::export::CsvRow;
use crate::wire::{self, ContactBody};
use crate::{App, page};

/// Rows of one chunk blocked at once, as a batch does.
const ROW_CONCURRENCY: usize = 16;

/// Chunks one page of results reads at most before it answers.
const CHUNKS_PER_PAGE: usize = 4;

/// `POST /v1/imports` (`text/csv`).
pub async fn create(
    app: &App,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    caller.require(WRITE)?;
    let actor = caller.actor()?;
    Query::parse(request, &[])?;
    let content_type = request
        .headers()
        .get(lambda_http::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("text/csv") {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            "an import is a CSV file: send it with Content-Type: text/csv",
        ));
    }
    let rows = import::read_file(import_body_bytes(request)?).map_err(file_error)?;
    let now = (app.now)();
    let id = ulid::Ulid::from_datetime(std::time::SystemTime::from(now)).to_string();
    app.store
        .create_import(&id, &actor, import::chunks(rows), now)
        .await?;
    let created = app
        .store
        .import(&id, now)
        .await?
        .ok_or_else(ApiError::internal)?;
    let mut response = json(202, &created);
    if let Ok(location) = format!("/v1/imports/{id}").parse() {
        response.headers_mut().insert("location", location);
    }
    Ok(response)
}

fn file_error(error: FileError) -> ApiError {
    let code = match error {
        FileError::Empty => "empty_file",
        FileError::NotUtf8 { .. } => "not_utf8",
        FileError::InvalidHeader { .. } => "invalid_header",
        FileError::NoRows => "no_rows",
        FileError::TooManyRows => "too_many_rows",
        FileError::Malformed { .. }
        | FileError::UnclosedQuote { .. }
        | FileError::SwallowedRows { .. }
        | FileError::CellTooLong { .. } => "invalid_csv",
    };
    ApiError::invalid(code, "file", error.to_string())
}

/// `GET /v1/imports/{id}`: the import and its progress.
pub async fn get(
    app: &App,
    caller: &Caller,
    request: &Request,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    Query::parse(request, &[])?;
    Ok(json(200, &found(app, id).await?))
}

async fn found(app: &App, id: &str) -> Result<Import, ApiError> {
    let not_found = || ApiError::not_found("import_not_found", format!("no import {id}"));
    if ulid::Ulid::from_string(id).is_err() {
        return Err(not_found());
    }
    app.store
        .import(id, (app.now)())
        .await?
        .ok_or_else(not_found)
}

/// `GET /v1/imports/{id}/results[?status=failed]`: every row's result in
/// file order, or only the rows that were not blocked.
pub async fn results(
    app: &App,
    caller: &Caller,
    request: &Request,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require(READ)?;
    let query = Query::parse(request, &["status", "limit", "cursor"])?;
    let failed_only = match query.get("status") {
        None | Some("all") => false,
        Some("failed") => true,
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_parameter", "status must be all or failed")
                    .with_field("status"),
            );
        }
    };
    let import = found(app, id).await?;
    let cursor = cursor_param(&query, "import_results")?;
    let listing = ResultListing {
        import: &import,
        failed_only,
    };
    if crate::export::wants_csv(request) {
        return crate::export::export(&query, cursor, |cursor| {
            listing.page(app, cursor, import::CHUNK_ROWS)
        })
        .await;
    }
    let limit = query.limit()?;
    page(listing.page(app, cursor, limit).await?, &query)
}

struct ResultListing<'a> {
    import: &'a Import,
    failed_only: bool,
}

impl ResultListing<'_> {
    /// Up to `limit` results from `cursor` (`<chunk>:<row offset>`),
    /// reading one chunk after the other, at most [`CHUNKS_PER_PAGE`].
    async fn page(
        &self,
        app: &App,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<RowResult>, StoreError> {
        let (start, mut offset) = cursor
            .and_then(|c| c.position())
            .and_then(|p| {
                let (c, o) = p.split_once(':')?;
                Some((c.parse::<u32>().ok()?, o.parse::<usize>().ok()?))
            })
            .unwrap_or((0, 0));
        // The chunks from `start` on that this listing shows, in order.
        let order: Vec<u32> = if self.failed_only {
            self.import
                .failed_chunks
                .iter()
                .copied()
                .filter(|c| *c >= start)
                .collect()
        } else {
            (start..self.import.chunks).collect()
        };
        let mut items = Vec::new();
        for (read, index) in order.iter().enumerate() {
            if read == CHUNKS_PER_PAGE {
                let next = Cursor::at("import_results", None, format!("{index}:0"));
                return Ok(Page {
                    items,
                    next: Some(next),
                });
            }
            // The cursor's offset is into its own chunk only (which may
            // have expired since).
            let skip = if *index == start {
                std::mem::take(&mut offset)
            } else {
                0
            };
            let Some(results) = app.store.import_results(&self.import.id, *index).await? else {
                continue;
            };
            let shown = results
                .into_iter()
                .enumerate()
                .skip(skip)
                .filter(|(_, r)| !self.failed_only || r.status.is_failure());
            for (at, result) in shown {
                if items.len() == limit {
                    let next = Cursor::at("import_results", None, format!("{index}:{at}"));
                    return Ok(Page {
                        items,
                        next: Some(next),
                    });
                }
                items.push(result);
            }
        }
        Ok(Page { items, next: None })
    }
}

impl CsvRow for RowResult {
    const COLUMNS: &'static [&'static str] = &[
        "row", "line", "number", "status", "code", "message", "field",
    ];
    fn row(&self) -> Vec<String> {
        let error = self.error.as_ref();
        vec![
            self.row.to_string(),
            self.line.to_string(),
            self.number.clone(),
            self.status.as_str().to_owned(),
            error.map(|e| e.code.clone()).unwrap_or_default(),
            error.map(|e| e.message.clone()).unwrap_or_default(),
            error.and_then(|e| e.field.clone()).unwrap_or_default(),
        ]
    }
}

/// What became of one chunk of a stream record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    Done,
    /// Recorded before: its stream record came again.
    AlreadyDone,
    /// Expired, or never written.
    Missing,
    /// Its upload failed: the uploader got an error and no import.
    Aborted,
}

/// How long a chunk waits for its upload to finish: the stream hands
/// chunks over as they are stored, before the upload marks its import
/// ready.
const UPLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// An upload this old that is still under way has failed without saying
/// so (block-api stops at 29 s).
const UPLOAD_GIVEN_UP_AFTER: chrono::Duration = chrono::Duration::minutes(2);

/// Blocks the rows of chunk `index` of import `id` and records their
/// results. A store failure fails the chunk, whose record is then retried;
/// the rows done before it are kept with the chunk, so that the retry
/// reports them as they were done.
pub async fn work_chunk(app: &App, id: &str, index: u32) -> Result<ChunkOutcome, StoreError> {
    let waited = tokio::time::Instant::now();
    loop {
        match app.store.upload_state(id).await? {
            None => return Ok(ChunkOutcome::Missing),
            Some(UploadState::Aborted) => return Ok(ChunkOutcome::Aborted),
            Some(UploadState::Ready) => break,
            Some(UploadState::Uploading { since }) => {
                if (app.now)() - since > UPLOAD_GIVEN_UP_AFTER {
                    return Ok(ChunkOutcome::Aborted);
                }
                if waited.elapsed() > UPLOAD_WAIT {
                    return Err(StoreError::Unavailable(
                        "the import's upload is still under way".into(),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
    let Some(chunk) = app.store.import_chunk(id, index).await? else {
        return Ok(ChunkOutcome::Missing);
    };
    if chunk.results.is_some() {
        return Ok(ChunkOutcome::AlreadyDone);
    }
    let results = match block_rows(app, &chunk).await {
        Ok(results) => results,
        Err((done, error)) => {
            // Best effort: if the store is down, this fails too, and the
            // retry finds those rows' blocks (`already_blocked`).
            if let Err(kept) = app.store.keep_partial_results(&chunk, &done).await {
                tracing::warn!(error = %kept, "the rows done before the failure were not kept");
            }
            return Err(error);
        }
    };
    let recorded = app
        .store
        .finish_chunk(&chunk, &results, (app.now)())
        .await?;
    let counts = blocklist::import::ImportCounts::of(&results);
    blocklist::metrics::count(
        crate::FUNCTION,
        blocklist::metrics::Counter::Blocked,
        if recorded { counts.blocked } else { 0 },
    );
    Ok(if recorded {
        ChunkOutcome::Done
    } else {
        ChunkOutcome::AlreadyDone
    })
}

/// A row's position in its chunk, and what became of it.
type RowOutcome = (usize, RowStatus, Option<ApiError>);

/// The results of the rows done when a chunk failed, and the failure.
type Interrupted = (Vec<RowResult>, StoreError);

/// Every row of `chunk` (but those an earlier attempt did), 16 at a time;
/// rows of one number in file order, so that its first row is the one
/// that blocks.
async fn block_rows(app: &App, chunk: &ImportChunk) -> Result<Vec<RowResult>, Interrupted> {
    let mut review_after: HashMap<Scope, Option<u32>> = HashMap::new();
    let mut results: Vec<Option<RowResult>> = vec![None; chunk.rows.len()];
    let earlier: HashMap<u32, &RowResult> = chunk.partial.iter().map(|r| (r.row, r)).collect();
    let mut groups: Vec<(Subject, Vec<(usize, BlockCommand)>)> = Vec::new();
    let mut group_of: HashMap<Subject, usize> = HashMap::new();
    let done_so_far =
        |results: &[Option<RowResult>]| results.iter().flatten().cloned().collect::<Vec<_>>();
    for (at, row) in chunk.rows.iter().enumerate() {
        if let Some(result) = earlier.get(&row.row) {
            results[at] = Some((*result).clone());
            continue;
        }
        match prepare(app, &chunk.import_id, row, &mut review_after).await {
            Ok((subject, command)) => {
                let group = *group_of.entry(subject.clone()).or_insert_with(|| {
                    groups.push((subject, Vec::new()));
                    groups.len() - 1
                });
                groups[group].1.push((at, command));
            }
            Err(error) if error.status >= 500 => {
                let error = StoreError::Unavailable(error.message);
                return Err((done_so_far(&results), error));
            }
            Err(error) => results[at] = Some(outcome(row, RowStatus::Invalid, Some(error))),
        }
    }
    let actor = &chunk.actor;
    // Each number's rows in turn; a store failure stops that number's rows
    // and is reported with the rows done before it.
    let done: Vec<(Vec<RowOutcome>, Option<StoreError>)> = futures::stream::iter(groups)
        .map(|(subject, rows)| async move {
            let mut out = Vec::with_capacity(rows.len());
            for (at, command) in rows {
                match service::block(&app.store, &subject, command, actor, app.now).await {
                    Ok(BlockOutcome::Created(_)) => out.push((at, RowStatus::Blocked, None)),
                    Ok(BlockOutcome::AlreadyBlocked(_)) => {
                        out.push((at, RowStatus::AlreadyBlocked, None))
                    }
                    Err(error) => {
                        let error = ApiError::from(error);
                        if error.status >= 500 {
                            return (out, Some(StoreError::Unavailable(error.message)));
                        }
                        // A refusal of this row fails the row.
                        out.push((at, RowStatus::Failed, Some(error)));
                    }
                }
            }
            (out, None)
        })
        .buffer_unordered(ROW_CONCURRENCY)
        .collect()
        .await;
    let mut failure = None;
    for (group, error) in done {
        for (at, status, error) in group {
            results[at] = Some(outcome(&chunk.rows[at], status, error));
        }
        failure = failure.or(error);
    }
    match failure {
        Some(error) => Err((done_so_far(&results), error)),
        None => Ok(results.into_iter().flatten().collect()),
    }
}

fn outcome(row: &import::ImportRow, status: RowStatus, error: Option<ApiError>) -> RowResult {
    RowResult {
        row: row.row,
        line: row.line,
        number: row.number.clone(),
        status,
        error: error.map(|e| RowError {
            code: e.code.to_owned(),
            message: e.message,
            // The file's column, where the API would name a body field.
            field: e.field.map(|f| f.trim_start_matches("contact.").to_owned()),
        }),
    }
}

/// A row as the block it asks for, checked as `PUT /v1/blocks` checks its
/// path and body.
async fn prepare(
    app: &App,
    import_id: &str,
    row: &import::ImportRow,
    review_after: &mut HashMap<Scope, Option<u32>>,
) -> Result<(Subject, BlockCommand), ApiError> {
    if let Some(problem) = &row.problem {
        return Err(ApiError::invalid("invalid_row", "row", problem.clone()));
    }
    if row.number.is_empty() {
        return Err(ApiError::invalid(
            "missing_field",
            "number",
            "the row has no number",
        ));
    }
    let subject = seen_subject(app, &row.number, "number").await?;
    let reason = wire::reason(&row.reason)?;
    let scope = wire::scope(
        Some(&row.scope)
            .filter(|s| !s.is_empty())
            .map(String::as_str),
    )?;
    let contact = if row.has_contact() {
        let body = ContactBody {
            number: None,
            subject: None,
            name: Some(row.name.clone()).filter(|v| !v.is_empty()),
            email: Some(row.email.clone()).filter(|v| !v.is_empty()),
            category: Some(row.category.clone()).filter(|v| !v.is_empty()),
            groups: Some(row.group_list()),
            secondary_numbers: None,
        };
        Some(wire::contact(body, &subject)?)
    } else {
        None
    };
    let review_after_days = match review_after.get(&scope) {
        Some(days) => *days,
        None => {
            let days = app.store.review_after_days(&scope).await?;
            review_after.insert(scope.clone(), days);
            days
        }
    };
    let command = BlockCommand {
        scope,
        reason,
        source: Source::Import,
        reason_code: None,
        expires_at: None,
        review_after_days,
        contact,
        details: json!({ "import": import_id, "row": row.row, "line": row.line }),
    };
    Ok((subject, command))
}
