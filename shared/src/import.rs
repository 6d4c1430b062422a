//! CSV imports (SPEC B91): reading an uploaded file into rows, cutting the
//! rows into the chunks the import worker takes one at a time, and the
//! outcome of each row. Pure: the API stores the chunks, the worker blocks
//! each row through the same path as `PUT /v1/blocks/{subject}`.

use serde::{Deserialize, Serialize};

/// At most this many rows per file.
pub const MAX_ROWS: usize = 100_000;

/// At most this many bytes per file. A Lambda request holds 6 MB, and the
/// file arrives JSON-escaped inside API Gateway's event (each line break
/// and quote takes two bytes there): 4 MiB leaves that room, and holds
/// 100,000 rows of a number and a short reason.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// Rows per chunk: one chunk is one worker step, its rows blocked 16 at a
/// time in a few seconds, and one progress update.
pub const CHUNK_ROWS: usize = 500;

/// A chunk's rows stay under this many bytes, so that the chunk with its
/// results (at most 500 of a status and the API's message, under 400
/// bytes each: 200 KB) stays inside DynamoDB's 400 KB item. One row is at
/// most about 30 KB (the cell limits, escaped).
pub const CHUNK_BYTES: usize = 128 * 1024;

/// The columns of an import file, in the order SPEC B91 lists them.
pub const COLUMNS: [&str; 7] = [
    "number", "reason", "scope", "name", "email", "category", "groups",
];

/// A whole file refused: nothing of it is stored or blocked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("the file is empty: the first line must be the header {}", COLUMNS.join(","))]
    Empty,
    #[error("the file is not UTF-8 text (line {line}); save it as CSV UTF-8")]
    NotUtf8 { line: u64 },
    #[error("the header must name the columns {} (number and reason required, in any order); {problem}", COLUMNS.join(","))]
    InvalidHeader { problem: String },
    #[error("the file has no rows below its header")]
    NoRows,
    #[error("the file has more than {MAX_ROWS} rows; split it into files of at most {MAX_ROWS}")]
    TooManyRows,
    #[error("the file is not valid CSV at line {line}: {problem}")]
    Malformed { line: u64, problem: String },
    #[error(
        "a quote opened on line {line} is not closed, so the rest of the file reads as one cell; close it, or double a quote inside a quoted cell (\"\")"
    )]
    UnclosedQuote { line: u64 },
    #[error(
        "line {line}: the {column} cell holds lines that read as rows of the file; a quote opened there may not be closed where it should"
    )]
    SwallowedRows { line: u64, column: &'static str },
    #[error(
        "line {line}: the {column} cell is {chars} characters long (at most {max}); a quote opened there may not be closed"
    )]
    CellTooLong {
        line: u64,
        column: &'static str,
        chars: usize,
        max: usize,
    },
}

/// One row of the file, as written: the worker validates it with the same
/// rules as the API's fields, so that a bad row gets the API's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRow {
    /// 1 for the first row below the header.
    pub row: u32,
    /// The line of the file it starts on (the header is line 1).
    pub line: u32,
    pub number: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub category: String,
    /// Groups separated by `;` or `|` in one cell.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub groups: String,
    /// Set when the row itself is broken (a cell too many or too few): it is
    /// reported, not blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl ImportRow {
    /// The groups of the `groups` cell.
    pub fn group_list(&self) -> Vec<String> {
        self.groups
            .split([';', '|'])
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whether the row names a contact as well as a block.
    pub fn has_contact(&self) -> bool {
        !(self.name.is_empty()
            && self.email.is_empty()
            && self.category.is_empty()
            && self.groups.trim().is_empty())
    }
}

/// Reads an import file: a header naming the columns, then one row per
/// record. A UTF-8 byte-order mark, CRLF line ends, quoted cells holding
/// commas, quotes or line breaks, and blank lines are all taken as a
/// spreadsheet writes them.
pub fn read_file(bytes: &[u8]) -> Result<Vec<ImportRow>, FileError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    // A reader of CSV never fails: a quote left open takes the rest of the
    // file into one cell.
    if let Some(line) = unclosed_quote(bytes) {
        return Err(FileError::UnclosedQuote { line });
    }
    let mut lines = LineCounter::new(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => return Err(FileError::Empty),
        Some(record) => text_record(record?, &mut lines)?,
    };
    let columns = header_columns(&header.0)?;
    let mut rows = Vec::new();
    for record in records {
        let (cells, line) = text_record(record?, &mut lines)?;
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(FileError::TooManyRows);
        }
        check_cells(&columns, &cells, line)?;
        rows.push(row_of(&columns, cells, rows.len() as u32 + 1, line));
    }
    if rows.is_empty() {
        return Err(FileError::NoRows);
    }
    Ok(rows)
}

/// The line on which a quoted cell opens and is never closed, reading
/// the file as the CSV reader does: a quote opens a quoted cell only at
/// the start of a cell (elsewhere it is a character, as in `12" screen`);
/// inside one, `""` is a quote and a lone `"` ends it.
fn unclosed_quote(bytes: &[u8]) -> Option<u64> {
    #[derive(Clone, Copy)]
    enum Cell {
        Start,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut cell = Cell::Start;
    let (mut line, mut opened) = (1u64, 0u64);
    let mut after_cr = false;
    for &b in bytes {
        cell = match (cell, b) {
            (Cell::Start, b'"') => {
                opened = line;
                Cell::Quoted
            }
            (Cell::Start | Cell::Unquoted | Cell::QuoteInQuoted, b',' | b'\r' | b'\n') => {
                Cell::Start
            }
            (Cell::Start | Cell::Unquoted, _) => Cell::Unquoted,
            (Cell::Quoted, b'"') => Cell::QuoteInQuoted,
            (Cell::Quoted, _) => Cell::Quoted,
            (Cell::QuoteInQuoted, b'"') => Cell::Quoted,
            // The reader goes on with the cell unquoted.
            (Cell::QuoteInQuoted, _) => Cell::Unquoted,
        };
        // A line ends with LF, CRLF, or CR alone.
        if b == b'\r' || (b == b'\n' && !after_cr) {
            line += 1;
        }
        after_cr = b == b'\r';
    }
    matches!(cell, Cell::Quoted).then_some(opened)
}

/// The longest cell of each column ([`COLUMNS`] order) a row may have:
/// twice what the API takes (a longer one is not a typo but a quote left
/// open that swallowed the lines below it), and no line break where a
/// value never has one.
const CELL_LIMITS: [(usize, bool); 7] = [
    (256, false),   // number: a number or a BSUID
    (1_000, true),  // reason: 500 characters
    (128, false),   // scope
    (400, true),    // name: 200
    (508, false),   // email: 254
    (200, false),   // category: 100
    (10_400, true), // groups: 50 of 100 and their separators
];

fn check_cells(columns: &[usize], cells: &[String], line: u32) -> Result<(), FileError> {
    let width = columns.iter().filter(|p| **p != usize::MAX).count();
    for (column, at) in columns.iter().enumerate() {
        let Some(cell) = cells.get(*at) else { continue };
        let (max, breaks) = CELL_LIMITS[column];
        let chars = cell.chars().count();
        if chars > max || (!breaks && cell.contains(['\n', '\r'])) {
            return Err(FileError::CellTooLong {
                line: u64::from(line),
                column: COLUMNS[column],
                chars,
                max,
            });
        }
        // Lines of a cell that read as rows of the file: a quote left open
        // there and closed again further down swallowed them.
        let row_like = |l: &str| l.matches(',').count() + 1 >= width;
        if width >= 3 && cell.lines().skip(1).any(row_like) {
            return Err(FileError::SwallowedRows {
                line: u64::from(line),
                column: COLUMNS[column],
            });
        }
    }
    Ok(())
}

impl From<csv::Error> for FileError {
    fn from(error: csv::Error) -> Self {
        let line = error.position().map_or(0, csv::Position::line);
        match error.kind() {
            csv::ErrorKind::Utf8 { .. } => FileError::NotUtf8 { line },
            _ => FileError::Malformed {
                line,
                problem: error.to_string(),
            },
        }
    }
}

/// The line a record starts on. The reader's own position names where the
/// previous record ended, before its line break and any blank lines, so the
/// line is counted here from the bytes.
struct LineCounter<'a> {
    bytes: &'a [u8],
    scanned: usize,
    newlines: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            scanned: 0,
            newlines: 0,
        }
    }

    fn line_at(&mut self, position: usize) -> u64 {
        let mut start = position.min(self.bytes.len()).max(self.scanned);
        while matches!(self.bytes.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        let scanned = &self.bytes[self.scanned..start];
        // A line ends with LF, CRLF, or (old Mac files) CR alone.
        self.newlines += scanned
            .iter()
            .enumerate()
            .filter(|(i, b)| **b == b'\n' || (**b == b'\r' && scanned.get(i + 1) != Some(&b'\n')))
            .count() as u64;
        self.scanned = start;
        self.newlines + 1
    }
}

fn text_record(
    record: csv::ByteRecord,
    lines: &mut LineCounter<'_>,
) -> Result<(Vec<String>, u32), FileError> {
    let position = record.position().map_or(0, |p| p.byte() as usize);
    let line = lines.line_at(position);
    let cells = record
        .iter()
        .map(|cell| {
            std::str::from_utf8(cell)
                .map(str::to_owned)
                .map_err(|_| FileError::NotUtf8 { line })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((cells, line as u32))
}

/// The index of each known column in the file's header.
fn header_columns(header: &[String]) -> Result<Vec<usize>, FileError> {
    let invalid = |problem: String| FileError::InvalidHeader { problem };
    let mut positions = vec![usize::MAX; COLUMNS.len()];
    for (at, raw) in header.iter().enumerate() {
        let name = raw.trim().to_ascii_lowercase();
        let Some(column) = COLUMNS.iter().position(|c| *c == name) else {
            return Err(invalid(format!("unknown column \"{}\"", raw.trim())));
        };
        if positions[column] != usize::MAX {
            return Err(invalid(format!("\"{name}\" appears twice")));
        }
        positions[column] = at;
    }
    for required in ["number", "reason"] {
        let column = COLUMNS.iter().position(|c| *c == required).unwrap_or(0);
        if positions[column] == usize::MAX {
            return Err(invalid(format!("\"{required}\" is missing")));
        }
    }
    Ok(positions)
}

fn row_of(columns: &[usize], cells: Vec<String>, row: u32, line: u32) -> ImportRow {
    let width = columns.iter().filter(|p| **p != usize::MAX).count();
    let cell = |column: usize| {
        cells
            .get(columns[column])
            .map(|c| c.trim().to_owned())
            .unwrap_or_default()
    };
    let problem = (cells.len() != width).then(|| {
        format!(
            "the row has {} cells where the header has {width}; quote a cell that holds a comma",
            cells.len()
        )
    });
    ImportRow {
        row,
        line,
        number: cell(0),
        reason: cell(1),
        scope: cell(2),
        name: cell(3),
        email: cell(4),
        category: cell(5),
        groups: cell(6),
        problem,
    }
}

/// Cuts `rows` into chunks of at most [`CHUNK_ROWS`] rows and about
/// [`CHUNK_BYTES`] bytes, in file order.
pub fn chunks(rows: Vec<ImportRow>) -> Vec<Vec<ImportRow>> {
    let mut out: Vec<Vec<ImportRow>> = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let size = row_size(&row);
        match out.last_mut() {
            Some(chunk) if chunk.len() < CHUNK_ROWS && bytes + size <= CHUNK_BYTES => {
                bytes += size;
                chunk.push(row);
            }
            _ => {
                bytes = size;
                out.push(vec![row]);
            }
        }
    }
    out
}

/// A row as the chunk item stores it (JSON, escapes included).
fn row_size(row: &ImportRow) -> usize {
    serde_json::to_string(row).map_or(4 * 1024, |json| json.len())
}

/// What became of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    Blocked,
    AlreadyBlocked,
    /// The number is not one (B60), or the row's fields are not valid.
    Invalid,
    /// The store refused the change; the row can be imported again.
    Failed,
    /// Its chunk has not been worked through yet.
    Pending,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Blocked => "blocked",
            RowStatus::AlreadyBlocked => "already_blocked",
            RowStatus::Invalid => "invalid",
            RowStatus::Failed => "failed",
            RowStatus::Pending => "pending",
        }
    }

    /// A row that did not end blocked.
    pub fn is_failure(self) -> bool {
        matches!(self, RowStatus::Invalid | RowStatus::Failed)
    }
}

/// One row's result, as the results listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowResult {
    pub row: u32,
    pub line: u32,
    /// The number as written in the file.
    pub number: String,
    pub status: RowStatus,
    /// The API's error, for an invalid or failed row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RowError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Rows of an import by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCounts {
    pub blocked: u64,
    pub already_blocked: u64,
    pub invalid: u64,
    pub failed: u64,
}

impl ImportCounts {
    pub fn of(results: &[RowResult]) -> ImportCounts {
        let mut counts = ImportCounts::default();
        for r in results {
            match r.status {
                RowStatus::Blocked => counts.blocked += 1,
                RowStatus::AlreadyBlocked => counts.already_blocked += 1,
                RowStatus::Invalid => counts.invalid += 1,
                RowStatus::Failed => counts.failed += 1,
                RowStatus::Pending => {}
            }
        }
        counts
    }

    pub fn rows(&self) -> u64 {
        self.blocked + self.already_blocked + self.invalid + self.failed
    }
}

/// Where an import stands, from its counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// Stored; no chunk worked through yet.
    Queued,
    Running,
    /// Every chunk is worked through (rows may have failed).
    Done,
    /// No chunk done for [`STALLED_AFTER`] while some are left: they are
    /// being retried or were parked (their rows show `pending`).
    Stalled,
}

/// How long an import may make no progress before it is `stalled`: as
/// long as the stream may lag before its alarm (an hour).
pub const STALLED_AFTER: chrono::Duration = chrono::Duration::hours(1);

impl ImportStatus {
    /// From the chunks done and the last progress (`since_progress` ago).
    pub fn of(chunks: u32, chunks_done: u32, since_progress: chrono::Duration) -> ImportStatus {
        if chunks_done >= chunks {
            ImportStatus::Done
        } else if since_progress > STALLED_AFTER {
            ImportStatus::Stalled
        } else if chunks_done == 0 {
            ImportStatus::Queued
        } else {
            ImportStatus::Running
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "number,reason,scope,name,email,category,groups\n";

    #[test]
    fn reads_bom_crlf_quoted_commas_and_blank_lines() {
        let file = "\u{feff}number,reason,scope,name,email,category,groups\r\n\
                    +16505551234,\"spam, twice\",all,\"Doe, Jane\",j@example.org,vip,a;b\r\n\
                    \r\n\
                    +447700900123,abuse,,,,,\r\n";
        let rows = read_file(file.as_bytes()).expect("a valid file");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].reason, "spam, twice");
        assert_eq!(rows[0].name, "Doe, Jane");
        assert_eq!(rows[0].group_list(), ["a", "b"]);
        assert_eq!((rows[0].row, rows[0].line), (1, 2));
        assert_eq!(
            (rows[1].row, rows[1].line),
            (2, 4),
            "the blank line is skipped"
        );
        let rows =
            read_file(b"number,reason\n+16505551234,\"two\nlines\"\n+447700900123,x\n").unwrap();
        assert_eq!(
            (rows[1].row, rows[1].line),
            (2, 4),
            "a quoted line break counts"
        );
        assert_eq!(rows[1].problem, None);
        assert!(!rows[1].has_contact());
    }

    #[test]
    fn columns_in_any_order_and_only_the_required_ones() {
        let rows = read_file(b"Reason,NUMBER\nspam,+16505551234\n").expect("valid");
        assert_eq!(rows[0].number, "+16505551234");
        assert_eq!(rows[0].reason, "spam");
    }

    #[test]
    fn a_wrong_header_refuses_the_file() {
        for (file, problem) in [
            (
                "phone,reason\n+16505551234,spam\n",
                "unknown column \"phone\"",
            ),
            ("number,scope\n+16505551234,all\n", "\"reason\" is missing"),
            ("number,reason,number\n1,2,3\n", "\"number\" appears twice"),
            // A file without a header: its first row is read as one.
            ("+16505551234,spam\n", "unknown column \"+16505551234\""),
        ] {
            match read_file(file.as_bytes()) {
                Err(FileError::InvalidHeader { problem: found }) => {
                    assert_eq!(found, problem, "{file:?}")
                }
                other => panic!("{file:?}: {other:?}"),
            }
        }
        assert_eq!(read_file(b""), Err(FileError::Empty));
        assert_eq!(read_file(HEADER.as_bytes()), Err(FileError::NoRows));
    }

    #[test]
    fn a_row_with_a_cell_too_many_is_reported_not_guessed() {
        let file = format!("{HEADER}+16505551234,spam, again,all,,,,\n");
        let rows = read_file(file.as_bytes()).expect("the file is readable");
        assert!(rows[0].problem.as_deref().unwrap().contains("8 cells"));
    }

    #[test]
    fn not_utf8_is_refused_with_its_line() {
        let mut file = HEADER.as_bytes().to_vec();
        file.extend_from_slice(b"+16505551234,caf\xe9,all,,,,\n");
        assert_eq!(read_file(&file), Err(FileError::NotUtf8 { line: 2 }));
    }

    #[test]
    fn at_most_100000_rows() {
        let mut file = String::from(HEADER);
        for i in 0..MAX_ROWS {
            file.push_str(&format!("+1650555{:04},spam,,,,,\n", i % 10_000));
        }
        assert_eq!(read_file(file.as_bytes()).map(|r| r.len()), Ok(MAX_ROWS));
        file.push_str("+16505550000,spam,,,,,\n");
        assert_eq!(read_file(file.as_bytes()), Err(FileError::TooManyRows));
    }

    #[test]
    fn chunks_keep_order_and_bounds() {
        let row = |i: u32, reason: &str| ImportRow {
            row: i,
            line: i + 1,
            number: "+16505551234".into(),
            reason: reason.into(),
            scope: String::new(),
            name: String::new(),
            email: String::new(),
            category: String::new(),
            groups: String::new(),
            problem: None,
        };
        let many: Vec<ImportRow> = (1..=1_201).map(|i| row(i, "spam")).collect();
        let cut = chunks(many);
        assert_eq!(
            cut.iter().map(Vec::len).collect::<Vec<_>>(),
            [500, 500, 201]
        );
        assert_eq!(cut[1][0].row, 501);
        let long: Vec<ImportRow> = (1..=400).map(|i| row(i, &"x".repeat(500))).collect();
        for chunk in chunks(long) {
            assert!(chunk.iter().map(row_size).sum::<usize>() <= CHUNK_BYTES);
        }
    }

    #[test]
    fn status_follows_the_chunks_done() {
        let now = chrono::Duration::zero();
        let hours = chrono::Duration::hours(2);
        assert_eq!(ImportStatus::of(3, 0, now), ImportStatus::Queued);
        assert_eq!(ImportStatus::of(3, 1, now), ImportStatus::Running);
        assert_eq!(ImportStatus::of(3, 3, now), ImportStatus::Done);
        assert_eq!(ImportStatus::of(3, 1, hours), ImportStatus::Stalled);
        assert_eq!(ImportStatus::of(3, 3, hours), ImportStatus::Done);
    }

    #[test]
    fn an_unclosed_quote_refuses_the_file_instead_of_swallowing_rows() {
        let file = format!(
            "{HEADER}+16505550001,\"spam,all,,,,\n+16505550002,spam,all,,,,\n+16505550003,spam,,,,,\n"
        );
        assert_eq!(
            read_file(file.as_bytes()),
            Err(FileError::UnclosedQuote { line: 2 })
        );
        // Closed again further down: the lines between would be one cell.
        let file = format!("{HEADER}\"+16505550001,spam\n+16505550002\",spam,,,,,\n");
        match read_file(file.as_bytes()) {
            Err(FileError::CellTooLong {
                line: 2,
                column: "number",
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let long = format!("{HEADER}+16505550001,\"{}\",,,,,\n", "x".repeat(1_001));
        match read_file(long.as_bytes()) {
            Err(FileError::CellTooLong {
                column: "reason",
                max: 1_000,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // A doubled quote inside a quoted cell is a quote, and so is one
        // inside a cell that does not start with one.
        let quoted = format!("{HEADER}+16505550001,\"said \"\"stop\"\"\",,,,,\n");
        assert_eq!(
            read_file(quoted.as_bytes()).unwrap()[0].reason,
            "said \"stop\""
        );
        let inch = format!("{HEADER}+16505550001,sold a 12\" screen,,,,,\n+16505550002,x,,,,,\n");
        let rows = read_file(inch.as_bytes()).expect("a literal quote is fine");
        assert_eq!(
            (rows[0].reason.as_str(), rows.len()),
            ("sold a 12\" screen", 2)
        );
        // Two quotes left open: the rows between read as one reason.
        let two = format!(
            "{HEADER}+16505550001,\"spam,all,,,,\n+16505550002,spam,all,,,,\n+16505550003,\"x,,,,,\n"
        );
        assert_eq!(
            read_file(two.as_bytes()),
            Err(FileError::SwallowedRows {
                line: 2,
                column: "reason"
            })
        );
        // A reason over two lines is a reason.
        let multi = format!("{HEADER}+16505550001,\"first line\nsecond, line\",,,,,\n");
        assert_eq!(
            read_file(multi.as_bytes()).unwrap()[0].reason,
            "first line\nsecond, line"
        );
    }

    #[test]
    fn old_mac_line_ends_count_as_lines() {
        let rows = read_file(b"number,reason\r+16505550001,a\r+16505550002,b\r").unwrap();
        assert_eq!((rows[1].row, rows[1].line), (2, 3));
    }
}
