//! B91: `GET /v1/blocks` and `GET /v1/audit` as CSV (`Accept: text/csv`),
//! with the same filters, every page read in turn.
//!
//! A Lambda answer behind API Gateway is at most 6 MB and is not streamed,
//! so an export stops before [`MAX_EXPORT_BYTES`]; what it left out is
//! named by the `X-Next-Cursor` header, the `cursor` of the same listing
//! (send it back with the same filters for the rest). Spreadsheets run a
//! cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return as
//! a formula: such a cell is written with a leading `'`, except a number
//! (`+16505551234`, `-5`), which is data.

use std::future::Future;

use blocklist::http::ApiError;
use blocklist::http::request::Query;
use blocklist::model::{AuditEvent, Block, format_time};
use blocklist::store::{Cursor, Page, StoreError};
use lambda_http::{Body, Request, Response};

/// Where an export stops, under the 6 MB a Lambda answer holds.
pub const MAX_EXPORT_BYTES: usize = 5 * 1024 * 1024;

/// Rows read per page of an export.
pub const EXPORT_PAGE: usize = 200;

/// Whether the caller asked for CSV.
pub fn wants_csv(request: &Request) -> bool {
    request
        .headers()
        .get_all(lambda_http::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv"))
        })
}

/// A cell as a spreadsheet may open it safely.
pub fn neutralised(cell: &str) -> String {
    let Some(first) = cell.chars().next() else {
        return String::new();
    };
    let formula = matches!(first, '=' | '+' | '-' | '@' | '\t' | '\r');
    let number = matches!(first, '+' | '-')
        && cell.len() > 1
        && cell[1..].bytes().all(|b| b.is_ascii_digit());
    if formula && !number {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
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
    let columns = T::COLUMNS;
    let mut out = csv::Writer::from_writer(Vec::new());
    let write_error = |_| ApiError::internal();
    out.write_record(columns).map_err(write_error)?;
    let left_out = loop {
        let Page { items, next } = page(cursor.take()).await?;
        for item in &items {
            out.write_record(item.row().iter().map(|c| neutralised(c)))
                .map_err(write_error)?;
        }
        out.flush().map_err(|_| ApiError::internal())?;
        match next {
            None => break None,
            Some(next) if out.get_ref().len() >= MAX_EXPORT_BYTES => break Some(next),
            Some(next) => cursor = Some(next),
        }
    };
    let bytes = out.into_inner().map_err(|_| ApiError::internal())?;
    let mut response = Response::builder()
        .status(200)
        .header("content-type", "text/csv; charset=utf-8");
    if let Some(next) = left_out {
        response = response.header("x-next-cursor", next.bound_to(&query.filters()).encode());
    }
    Ok(response
        .body(Body::Text(
            String::from_utf8(bytes).map_err(|_| ApiError::internal())?,
        ))
        .unwrap_or_default())
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
        assert!(text.len() >= MAX_EXPORT_BYTES && text.len() < MAX_EXPORT_BYTES + 200 * 700);
        let rows = text.lines().count() - 1;
        assert_eq!(rows, asked.len() * EXPORT_PAGE, "whole pages only");
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
            "the rest starts after the last row"
        );
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
            ("spam", "spam"),
            ("", ""),
        ] {
            assert_eq!(neutralised(cell), safe, "{cell:?}");
        }
    }
}
