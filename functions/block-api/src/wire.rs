//! Request bodies as the API accepts them, and their validation into domain
//! values. Unknown fields are refused (a misspelt field must not be
//! silently ignored).

use blocklist::http::ApiError;
use blocklist::http::request::{field_number, field_subject};
use blocklist::identity::Subject;
use blocklist::model::{Contact, Reason, Scope, Source};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockBody {
    pub reason: String,
    pub scope: Option<String>,
    pub source: Option<String>,
    pub reason_code: Option<String>,
    pub contact: Option<ContactBody>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnblockBody {
    pub reason: String,
    pub scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    pub action: BatchAction,
    pub numbers: Vec<String>,
    pub reason: String,
    pub scope: Option<String>,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchAction {
    Block,
    Unblock,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    pub number: Option<String>,
    /// Accepted so a client can send back what it read.
    pub subject: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub category: Option<String>,
    pub groups: Option<Vec<String>>,
    pub secondary_numbers: Option<Vec<String>>,
}

pub fn reason(raw: &str) -> Result<Reason, ApiError> {
    Reason::parse(raw).map_err(|e| ApiError::invalid("invalid_reason", "reason", e.to_string()))
}

/// `scope`, defaulting to `all`.
pub fn scope(raw: Option<&str>) -> Result<Scope, ApiError> {
    Scope::parse(raw.unwrap_or("all"))
        .map_err(|e| ApiError::invalid("invalid_scope", "scope", e.to_string()))
}

/// `source` of a block made through the API. `auto` is reserved for
/// `wa-blocked`, so that automatic blocks stay recognisable (B42).
pub fn source(raw: Option<&str>, default: Source) -> Result<Source, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    match Source::parse(raw) {
        Ok(reserved @ (Source::Auto | Source::Carried)) => Err(ApiError::invalid(
            "invalid_source",
            "source",
            format!(
                "source '{}' is reserved for blocks the product makes itself",
                reserved.as_str()
            ),
        )),
        Ok(source) => Ok(source),
        Err(e) => Err(ApiError::invalid("invalid_source", "source", e.to_string())),
    }
}

pub fn reason_code(raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(code) if code.is_empty() || code.chars().count() > 64 => Err(ApiError::invalid(
            "invalid_reason_code",
            "reason_code",
            "reason_code must be 1 to 64 characters",
        )),
        other => Ok(other),
    }
}

/// How far ahead a temporary block may end: 10 years.
const MAX_BLOCK_DAYS: i64 = 3653;

pub fn expires_at(
    raw: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| {
            ApiError::invalid(
                "invalid_expires_at",
                "expires_at",
                "expires_at must be an RFC 3339 time",
            )
        })?
        .with_timezone(&Utc);
    if at <= now {
        return Err(ApiError::invalid(
            "invalid_expires_at",
            "expires_at",
            "expires_at must be in the future",
        ));
    }
    // A block meant to last longer is a permanent one: a typo in the year
    // (2206 for 2026) must not pass as temporary.
    if at > now + chrono::Duration::days(MAX_BLOCK_DAYS) {
        return Err(ApiError::invalid(
            "invalid_expires_at",
            "expires_at",
            "expires_at must be at most 10 years ahead; leave it out for a permanent block",
        ));
    }
    Ok(Some(at))
}

fn text(value: Option<String>, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.chars().count() > max => Err(ApiError::invalid(
            "invalid_contact",
            field,
            format!("{field} must be at most {max} characters"),
        )),
        other => Ok(other),
    }
}

/// A contact body for `subject` (the path or the blocked subject).
pub fn contact(body: ContactBody, subject: &Subject) -> Result<Contact, ApiError> {
    if let Some(raw) = body.subject.as_ref().or(body.number.as_ref())
        && &field_subject(raw, "contact.number")? != subject
    {
        return Err(ApiError::invalid(
            "invalid_contact",
            "contact.number",
            "contact.number must be the number in the path",
        ));
    }
    let email = text(body.email, "contact.email", 254)?;
    if email.as_deref().is_some_and(|e| !e.contains('@')) {
        return Err(ApiError::invalid(
            "invalid_contact",
            "contact.email",
            "email must contain '@'",
        ));
    }
    let groups = body.groups.unwrap_or_default();
    if groups.len() > 50
        || groups
            .iter()
            .any(|g| g.is_empty() || g.chars().count() > 100)
    {
        return Err(ApiError::invalid(
            "invalid_contact",
            "contact.groups",
            "at most 50 groups of 1 to 100 characters",
        ));
    }
    let secondary = body.secondary_numbers.unwrap_or_default();
    if secondary.len() > 20 {
        return Err(ApiError::invalid(
            "invalid_contact",
            "contact.secondary_numbers",
            "at most 20 secondary numbers",
        ));
    }
    let secondary_numbers = secondary
        .iter()
        .map(|raw| field_number(raw, "contact.secondary_numbers"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Contact {
        subject: subject.clone(),
        name: text(body.name, "contact.name", 200)?,
        email,
        category: text(body.category, "contact.category", 100)?,
        groups,
        secondary_numbers,
    })
}

/// A time filter: RFC 3339, or a date (start of that day UTC; with
/// `end_of_day`, its last millisecond).
pub fn time_param(raw: &str, field: &str, end_of_day: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        let at = at.with_timezone(&Utc);
        return in_range(at.date_naive(), field).map(|_| at);
    }
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("{field} must be an RFC 3339 time or YYYY-MM-DD"),
        )
        .with_field(field)
    })?;
    in_range(date, field)?;
    let time = if end_of_day {
        date.and_hms_milli_opt(23, 59, 59, 999)
    } else {
        date.and_hms_opt(0, 0, 0)
    };
    Ok(time.unwrap_or_default().and_utc())
}

pub fn date_param(raw: &str, field: &str) -> Result<NaiveDate, ApiError> {
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        ApiError::bad_request("invalid_parameter", format!("{field} must be YYYY-MM-DD"))
            .with_field(field)
    })?;
    in_range(date, field)
}

/// Years 1970–9999: anything else is a mistake, and far-off dates would
/// overflow date arithmetic.
fn in_range(date: NaiveDate, field: &str) -> Result<NaiveDate, ApiError> {
    use chrono::Datelike;
    if (1970..=9999).contains(&date.year()) {
        Ok(date)
    } else {
        Err(ApiError::bad_request(
            "invalid_parameter",
            format!("{field} must be between 1970 and 9999"),
        )
        .with_field(field))
    }
}
