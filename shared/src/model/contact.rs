use serde::{Deserialize, Serialize};

use crate::identity::{Subject, subject_fields};
use crate::number::Number;

/// A customer as the CRM knows them (B10). Blocking never changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    #[serde(flatten, with = "subject_fields")]
    pub subject: Subject,
    pub name: Option<String>,
    pub email: Option<String>,
    pub category: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub secondary_numbers: Vec<Number>,
}

impl Contact {
    /// Lower-cased text that `q` searches match against (B7): number, name
    /// and email.
    pub fn search_text(&self) -> String {
        search_text(&self.subject, Some(self))
    }
}

/// The searchable text of a subject with or without a contact: the
/// subject as stored (lower-cased, so a BSUID matches whatever case `q`
/// has), name and email.
pub fn search_text(subject: &Subject, contact: Option<&Contact>) -> String {
    let mut text = subject.as_str().to_lowercase();
    if let Some(contact) = contact {
        for part in [&contact.name, &contact.email].into_iter().flatten() {
            text.push('\n');
            text.push_str(&part.to_lowercase());
        }
    }
    text
}

/// B65: what a `q` search looks for in [`search_text`]: each returned term
/// is matched as a substring, any one matching is a hit.
///
/// - A BSUID, or a number written internationally (`+…`, `00…`), is
///   matched in its canonical form, so spaces, dashes and WhatsApp forms
///   (Brazil's 12 digits, Mexico's `521`, Argentina's `15`) all find it.
/// - Bare digits (at least 4, formatting allowed) are matched as typed,
///   which finds a suffix or any run of digits, and also in the canonical
///   form of a WhatsApp id when they read as one (`551181234567`).
///   A `+` that a query string decoded into a space is the same case.
/// - Anything else (names, emails) is matched lower-cased.
pub fn search_terms(q: &str) -> Vec<String> {
    let trimmed = q.trim();
    let lowered = trimmed.to_lowercase();
    if trimmed.starts_with(|c: char| c.is_ascii_alphabetic())
        && let Ok(Subject::User(id)) = Subject::parse(trimmed)
    {
        return vec![id.as_str().to_lowercase()];
    }
    let numeric = !trimmed.is_empty()
        && trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.() \u{a0}".contains(c));
    if !numeric {
        return vec![lowered];
    }
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 4 {
        return vec![lowered];
    }
    let international = trimmed.starts_with('+') || digits.starts_with("00");
    let canonical = Number::parse(trimmed).ok().map(|n| n.digits().to_owned());
    match (international, canonical) {
        (true, Some(canonical)) => vec![format!("+{canonical}")],
        (false, Some(canonical)) if canonical != digits => vec![digits, canonical],
        _ => vec![digits],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b65_number_forms_search_for_the_canonical_number() {
        for q in [
            "+1 650 555 1234",
            "+1-650-555-1234",
            "001 650 555 1234",
            "+16505551234",
        ] {
            assert_eq!(search_terms(q), vec!["+16505551234"], "{q:?}");
        }
        // Brazil's 12-digit WhatsApp form finds the 13-digit number.
        assert_eq!(
            search_terms("551181234567"),
            vec!["551181234567", "5511981234567"]
        );
        // A query string's `+` decoded as a space.
        assert_eq!(search_terms(" 4915112345678"), vec!["4915112345678"]);
    }

    #[test]
    fn b65_a_suffix_of_four_digits_or_more_is_matched_as_typed() {
        assert_eq!(search_terms("1234"), vec!["1234"]);
        assert_eq!(search_terms("555-1234"), vec!["5551234"]);
        assert_eq!(search_terms("123"), vec!["123"], "too short: plain text");
    }

    #[test]
    fn b65_bsuids_and_text() {
        assert_eq!(
            search_terms("US.13491208655302741918"),
            vec!["us.13491208655302741918"]
        );
        assert_eq!(search_terms("Sheena"), vec!["sheena"]);
        assert_eq!(search_terms("a@b.example"), vec!["a@b.example"]);
        let text = search_text(&Subject::parse("US.134").unwrap(), None);
        assert!(
            search_terms("us.134")
                .iter()
                .all(|t| text.contains(t.as_str()))
        );
    }
}
