//! B91: `GET /v1/blocks` and `GET /v1/audit` as CSV (`Accept: text/csv`),
//! with the same filters, every page read in turn.
//!
//! A Lambda answer behind API Gateway is at most 6 MB, as JSON, and is not
//! streamed, so an export takes whole pages while their CSV, as escaped in
//! that JSON, stays under [`MAX_EXPORT_BYTES`], and for at most
//! [`EXPORT_WITHIN`]; what it left out is named by the `X-Next-Cursor`
//! header, the `cursor` of the same listing (send it back with the same
//! filters for the rest). Spreadsheets run a cell that starts with `=`,
//! `+`, `-`, `@`, a tab or a line break (also after spaces or invisible
//! characters, and in their full-width forms) as a formula: such a cell is
//! written with a leading `'`, except a number (`+16505551234`, `-5`),
//! which is data.

use std::future::Future;

use blocklist::http::ApiError;
use blocklist::http::request::Query;
use blocklist::model::{AuditEvent, Block, format_time};
use blocklist::store::{Cursor, Page, StoreError};
use lambda_http::{Body, Request, Response};

/// Where an export stops: the size of its CSV as escaped in the Lambda
/// answer's JSON, under the 6 MB that answer holds.
pub const MAX_EXPORT_BYTES: usize = 5 * 1024 * 1024;

/// How long an export reads pages, inside the API's 30 s.
pub const EXPORT_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

/// Blocks read per page of an export: at most about 1 KB each.
pub const EXPORT_PAGE: usize = 200;

/// Audit events read per page of an export: a settings event's details
/// can reach tens of KB, so that a page stays well under the cap.
pub const EXPORT_EVENTS_PAGE: usize = 20;

/// Whether the caller asked for CSV: `text/csv` accepted, and preferred
/// (by `q`) to JSON and to `*/*`.
pub fn wants_csv(request: &Request) -> bool {
    let mut csv: Option<f32> = None;
    let mut other: f32 = 0.0;
    for range in request
        .headers()
        .get_all(lambda_http::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = range.split(';');
        let kind = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match kind.as_str() {
            "text/csv" => csv = Some(csv.map_or(q, |c| c.max(q))),
            "application/json" | "*/*" | "application/*" => other = other.max(q),
            _ => {}
        }
    }
    csv.is_some_and(|q| q > 0.0 && q > other)
}

/// A cell as a spreadsheet may open it safely.
pub fn neutralised(cell: &str) -> String {
    // What a spreadsheet skips before it looks for a formula.
    let shown = cell.trim_start_matches(|c: char| {
        (c.is_whitespace() && !matches!(c, '\t' | '\r' | '\n'))
            || matches!(c, '\u{200b}' | '\u{feff}')
    });
    let Some(first) = shown.chars().next() else {
        return cell.to_owned();
    };
    let formula = matches!(
        first,
        '=' | '+' | '-' | '@' | '\t' | '\r' | '\n' | '＝' | '＋' | '－' | '＠'
    );
    let number = shown == cell
        && matches!(first, '+' | '-')
        && cell.len() > 1
        && cell[1..].bytes().all(|b| b.is_ascii_digit());
    if formula && !number {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

/// The length of `text` as a JSON string holds it.
fn escaped_len(text: &str) -> usize {
    serde_json::to_string(text).map_or(text.len() * 6, |s| s.len())
}

/// The columns of a block row.
const BLOCK_COLUMNS: [&str; 12] = [
    "number",
    "subject",
    "scope",
    "reason",
    "source",
    "reason_code",
    "actor",
    "client",
    "blocked_at",
    "expires_at",
    "review_due_at",
    "version",
];

fn block_row(block: &Block) -> Vec<String> {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(format_time).unwrap_or_default();
    vec![
        block
            .subject
            .number()
            .map(ToString::to_string)
            .unwrap_or_default(),
        block.subject.to_string(),
        block.scope.to_string(),
        block.reason.as_str().to_owned(),
        block.source.as_str().to_owned(),
        block.reason_code.clone().unwrap_or_default(),
        block.actor.clone(),
        block.client.clone().unwrap_or_default(),
        format_time(block.blocked_at),
        time(block.expires_at),
        time(block.review_due_at),
        block.version.to_string(),
    ]
}

/// The columns of an audit row; `details` is its JSON.
const EVENT_COLUMNS: [&str; 11] = [
    "event_id", "at", "action", "number", "subject", "scope", "actor", "client", "reason",
    "source", "details",
];

fn event_row(event: &AuditEvent) -> Vec<String> {
    vec![
        event.event_id.clone(),
        format_time(event.at),
        event.action.as_str().to_owned(),
        event
            .subject
            .as_ref()
            .and_then(|s| s.number())
            .map(ToString::to_string)
            .unwrap_or_default(),
        event
            .subject
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        event.scope.clone().unwrap_or_default(),
        event.actor.clone(),
        event.client.clone().unwrap_or_default(),
        event.reason.clone().unwrap_or_default(),
        event.source.clone().unwrap_or_default(),
        event.details.to_string(),
    ]
}

/// What a listing's items are as CSV rows.
pub trait CsvRow {
    const COLUMNS: &'static [&'static str];
    fn row(&self) -> Vec<String>;
}

impl CsvRow for Block {
    const COLUMNS: &'static [&'static str] = &BLOCK_COLUMNS;
    fn row(&self) -> Vec<String> {
        block_row(self)
    }
}

impl CsvRow for AuditEvent {
    const COLUMNS: &'static [&'static str] = &EVENT_COLUMNS;
    fn row(&self) -> Vec<String> {
        event_row(self)
    }
}

/// Every page of a listing from `cursor` on (`page` reads one), as CSV.
pub async fn export<T: CsvRow, F, Fut>(
    query: &Query,
    mut cursor: Option<Cursor>,
    mut page: F,
) -> Result<Response<Body>, ApiError>
where
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: Future<Output = Result<Page<T>, StoreError>>,
{
    let started = std::time::Instant::now();
    let header = T::COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    let mut text = csv_text(std::iter::once(header))?;
    let mut size = escaped_len(&text);
    let left_out = loop {
        let asked = cursor.clone();
        let Page { items, next } = page(cursor.take()).await?;
        let chunk = csv_text(items.iter().map(CsvRow::row))?;
        let chunk_size = escaped_len(&chunk);
        // A page that would go past the cap is left for the next request,
        // which starts where this one did.
        if size + chunk_size > MAX_EXPORT_BYTES && asked.is_some() {
            break asked;
        }
        text.push_str(&chunk);
        size += chunk_size;
        match next {
            None => break None,
            Some(next) if started.elapsed() >= EXPORT_WITHIN => break Some(next),
            Some(next) => cursor = Some(next),
        }
    };
    let mut response = Response::builder()
        .status(200)
        .header("content-type", "text/csv; charset=utf-8")
        .header("vary", "accept");
    if let Some(next) = left_out {
        response = response.header("x-next-cursor", next.bound_to(&query.filters()).encode());
    }
    Ok(response.body(Body::Text(text)).unwrap_or_default())
}

/// `rows` as CSV lines, every cell neutralised.
fn csv_text(rows: impl Iterator<Item = Vec<String>>) -> Result<String, ApiError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    for row in rows {
        out.write_record(row.iter().map(|c| neutralised(c)))
            .map_err(|_| ApiError::internal())?;
    }
    let bytes = out.into_inner().map_err(|_| ApiError::internal())?;
    String::from_utf8(bytes).map_err(|_| ApiError::internal())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blocklist::identity::Subject;
    use blocklist::model::{Reason, Scope, Source};

    fn block(i: usize) -> Block {
        Block {
            subject: Subject::parse(&format!("+1650555{:04}", i % 10_000)).unwrap(),
            scope: Scope::All,
            reason: Reason::parse(&"r".repeat(500)).unwrap(),
            source: Source::Manual,
            reason_code: None,
            actor: "ops".to_owned(),
            client: None,
            blocked_at: chrono::Utc::now(),
            expires_at: None,
            version: 1,
            review_due_at: None,
            rule: None,
        }
    }

    #[tokio::test]
    async fn an_export_past_the_answer_limit_stops_at_a_page_and_names_the_rest() {
        let request = lambda_http::http::Request::builder()
            .uri("/v1/blocks")
            .body(Body::Empty)
            .unwrap();
        let query = Query::parse(&request, &[]).unwrap();
        // Endless pages of 200 rows of about 600 bytes.
        let mut asked = Vec::new();
        let response = export(&query, None, |cursor: Option<Cursor>| {
            let at: usize = cursor
                .and_then(|c| c.position())
                .map_or(0, |p| p.parse().unwrap());
            asked.push(at);
            async move {
                Ok(Page {
                    items: (at..at + EXPORT_PAGE).map(block).collect(),
                    next: Some(Cursor::at("blocks", None, (at + EXPORT_PAGE).to_string())),
                })
            }
        })
        .await
        .unwrap();
        let Body::Text(text) = response.body() else {
            panic!("text")
        };
        assert!(
            escaped_len(text) <= MAX_EXPORT_BYTES,
            "under the cap as JSON holds it"
        );
        assert!(
            escaped_len(text) > MAX_EXPORT_BYTES - EXPORT_PAGE * 700,
            "close to it"
        );
        let rows = text.lines().count() - 1;
        assert_eq!(
            rows,
            (asked.len() - 1) * EXPORT_PAGE,
            "whole pages only; the last one read is left for the next request"
        );
        let next = response.headers()["x-next-cursor"].to_str().unwrap();
        let resumed = Cursor::decode(
            next,
            "blocks",
            &query.filters(),
            &[blocklist::store::POSITION],
        )
        .unwrap();
        assert_eq!(
            resumed.position(),
            Some(rows.to_string()),
            "the rest starts where the page left out does"
        );
    }

    fn accepting(accept: &str) -> bool {
        let request = lambda_http::http::Request::builder()
            .uri("/v1/blocks")
            .header("accept", accept)
            .body(Body::Empty)
            .unwrap();
        wants_csv(&request)
    }

    #[test]
    fn csv_only_when_preferred() {
        for (accept, csv) in [
            ("text/csv", true),
            ("text/csv; charset=utf-8", true),
            ("TEXT/CSV", true),
            ("text/csv, application/json;q=0.5", true),
            ("application/json", false),
            ("*/*", false),
            ("text/csv;q=0", false),
            ("application/json, text/csv;q=0.1", false),
            ("text/csv;q=0.5, */*;q=0.5", false),
            ("text/html", false),
        ] {
            assert_eq!(accepting(accept), csv, "{accept}");
        }
    }

    #[test]
    fn formulas_are_neutralised_and_numbers_kept() {
        for (cell, safe) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("\tcmd", "'\tcmd"),
            ("\r=1", "'\r=1"),
            ("+16505551234", "+16505551234"),
            ("-5", "-5"),
            ("+", "'+"),
            (" =1+1", "' =1+1"),
            ("\u{200b}=1", "'\u{200b}=1"),
            ("＝1+1", "'＝1+1"),
            ("\n=1", "'\n=1"),
            (" +16505551234", "' +16505551234"),
            ("spam", "spam"),
            ("a=b", "a=b"),
            ("   ", "   "),
            ("", ""),
        ] {
            assert_eq!(neutralised(cell), safe, "{cell:?}");
        }
    }
}
