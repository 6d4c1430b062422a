//! Search and filters of the block list (B7, B65) as index tokens (S2).
//!
//! Every block is also written as one small index item per token of its
//! filterable facts: its scope, its source, the contact's category and
//! groups, and the words and digits of its subject, contact name and email.
//! A filtered listing then reads the items of one token (the most selective
//! the query names) and checks the rest of the filters on them, so what it
//! reads follows what matches, not how many blocks there are.
//!
//! What `q` matches, and why the tokens are what they are (each token is
//! one more item written per block, so there are few):
//! - **Digits by their end.** Every run of at least 4 digits (a number, a
//!   BSUID's digits, digits in an email) is indexed by its last 4 and its
//!   last 7 digits. A query's digits read the longer token they fill and
//!   keep the items whose text contains the whole query: the last digits
//!   of a number, its national number and the whole number in any form all
//!   end it, and 7 digits leave about one number in ten million per token.
//!   Digits from the start or middle of a number match only where they
//!   also end it.
//! - **Words by their start.** Every word (a run of letters and digits with
//!   at least one letter) is indexed by its first 2, 3 and 5 characters. A
//!   text query reads the longest prefix token of its longest word and
//!   keeps the items that contain the whole query, so `sheena`, `nelson`,
//!   `ravi patel`, `example.org` and `zed@` all match, while a fragment from
//!   inside a word (`heena`) does not.
//! - A query with neither (one letter, three digits, punctuation) could
//!   only be answered by reading every block, so it is refused.

use std::collections::BTreeSet;

use crate::identity::Subject;
use crate::number::Number;

use super::{Block, Contact};

/// Indexed word prefixes, in characters, shortest first.
const WORD_PREFIXES: [usize; 3] = [2, 3, 5];
/// Indexed ends of a digit run, shortest first; the shortest is also the
/// fewest digits a number query needs.
const DIGIT_SUFFIXES: [usize; 2] = [4, 7];
const DIGIT_SUFFIX: usize = DIGIT_SUFFIXES[0];

/// The searchable text of a subject with or without a contact: the
/// subject as stored (lower-cased, so a BSUID matches whatever case `q`
/// has), name and email, one per line.
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
    if digits.len() < DIGIT_SUFFIX {
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

/// A `q` that no index token can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("q must hold a word of at least 2 letters or at least 4 digits")]
pub struct QueryTooShort;

/// A planned `q` search: the items of `tokens` (any) are read, and those
/// whose search text contains one of `terms` are the matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSearch {
    pub terms: Vec<String>,
    pub tokens: Vec<String>,
}

/// Plans a `q` search (B65, S2).
pub fn plan_search(q: &str) -> Result<TextSearch, QueryTooShort> {
    let terms = search_terms(q);
    let mut tokens = BTreeSet::new();
    for term in &terms {
        let found = term_tokens(term);
        if found.is_empty() {
            return Err(QueryTooShort);
        }
        tokens.extend(found);
    }
    Ok(TextSearch {
        terms,
        tokens: tokens.into_iter().collect(),
    })
}

/// The tokens whose items hold every text containing `term`, where it
/// matches as [`index_tokens`] indexes: empty when none can.
fn term_tokens(term: &str) -> Vec<String> {
    // Digits of their own (not the tail of a word such as `user1234`,
    // which may go on in the text: that term is matched by its word).
    let digits = standalone_digit_runs(term)
        .filter(|run| run.len() >= DIGIT_SUFFIX)
        .max_by_key(|run| run.len());
    if let Some(run) = digits {
        let end = longest_fitting(&DIGIT_SUFFIXES, run.len());
        return vec![digit_token(&run[run.len() - end..])];
    }
    // The last longest word: a later word starts a word in any text that
    // contains the term (the first may be typed from inside one), and a
    // longer prefix is more selective.
    let word = words(term)
        .filter(|w| w.chars().count() >= WORD_PREFIXES[0])
        .fold(None::<&str>, |best, w| match best {
            Some(b) if b.chars().count() > w.chars().count() => Some(b),
            _ => Some(w),
        });
    word.map(|w| word_token(w, longest_fitting(&WORD_PREFIXES, w.chars().count())))
        .into_iter()
        .collect()
}

/// The longest of `lengths` (sorted) that is at most `length`.
fn longest_fitting(lengths: &[usize], length: usize) -> usize {
    lengths
        .iter()
        .copied()
        .filter(|l| *l <= length)
        .max()
        .unwrap_or(lengths[0])
}

/// Every index token of a block: its scope and source, the contact's
/// category and groups, and the words and digits of its search text.
/// Sorted, without repeats.
pub fn index_tokens(block: &Block, contact: Option<&Contact>) -> Vec<String> {
    let mut tokens = BTreeSet::new();
    tokens.insert(scope_token(block.scope.as_str()));
    tokens.insert(source_token(block.source.as_str()));
    if let Some(contact) = contact {
        if let Some(category) = &contact.category {
            tokens.insert(category_token(category));
        }
        for group in &contact.groups {
            tokens.insert(group_token(group));
        }
    }
    let text = search_text(&block.subject, contact);
    for word in words(&text) {
        let length = word.chars().count();
        for prefix in WORD_PREFIXES.into_iter().filter(|p| *p <= length) {
            tokens.insert(word_token(word, prefix));
        }
    }
    for run in digit_runs(&text) {
        for end in DIGIT_SUFFIXES.into_iter().filter(|e| *e <= run.len()) {
            tokens.insert(digit_token(&run[run.len() - end..]));
        }
    }
    tokens.into_iter().collect()
}

pub fn scope_token(scope: &str) -> String {
    format!("s:{scope}")
}

pub fn source_token(source: &str) -> String {
    format!("o:{source}")
}

pub fn category_token(category: &str) -> String {
    format!("c:{category}")
}

pub fn group_token(group: &str) -> String {
    format!("g:{group}")
}

fn word_token(word: &str, length: usize) -> String {
    format!("t:{}", word.chars().take(length).collect::<String>())
}

fn digit_token(end: &str) -> String {
    format!("d:{end}")
}

/// Words: runs of letters and digits that hold at least one letter
/// (digits alone are indexed by [`digit_runs`]).
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().any(char::is_alphabetic))
}

/// Runs of digits that are words of their own: not preceded or followed
/// by a letter.
fn standalone_digit_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()) && !w.is_empty())
}

fn digit_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Scope, Source};

    fn block(subject: &str) -> Block {
        Block {
            subject: Subject::parse(subject).unwrap(),
            scope: Scope::All,
            reason: crate::model::Reason::parse("spam").unwrap(),
            source: Source::Manual,
            reason_code: None,
            actor: "test".into(),
            client: None,
            blocked_at: chrono::Utc::now(),
            expires_at: None,
            version: 1,
            review_due_at: None,
            rule: None,
        }
    }

    fn contact(subject: &str, name: &str, email: &str) -> Contact {
        Contact {
            subject: Subject::parse(subject).unwrap(),
            name: Some(name.into()),
            email: Some(email.into()),
            category: Some("vip".into()),
            groups: vec!["uk".into(), "north".into()],
            secondary_numbers: vec![],
        }
    }

    /// Whether a search for `q` reads a token of `block` and accepts it:
    /// what the store does, without the store.
    fn finds(q: &str, block: &Block, contact: Option<&Contact>) -> bool {
        let plan = plan_search(q).unwrap();
        let tokens = index_tokens(block, contact);
        let text = search_text(&block.subject, contact);
        plan.tokens.iter().any(|t| tokens.contains(t))
            && plan.terms.iter().any(|t| text.contains(t.as_str()))
    }

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
    }

    #[test]
    fn s2_every_search_reads_one_token_per_term() {
        let plan = |q| plan_search(q).unwrap().tokens;
        assert_eq!(plan("+1 650 555 1234"), ["d:5551234"]);
        assert_eq!(plan("650 555 1234"), ["d:5551234"]);
        assert_eq!(plan("51234"), ["d:1234"]);
        assert_eq!(plan("551181234567"), ["d:1234567"], "both forms end alike");
        assert_eq!(plan("US.13491208655302741918"), ["d:2741918"]);
        assert_eq!(plan("Ravi Patel"), ["t:patel"]);
        assert_eq!(plan("wilhelmina"), ["t:wilhe"]);
        assert_eq!(plan("ZED@"), ["t:zed"]);
        assert_eq!(plan("nels"), ["t:nel"]);
        assert_eq!(plan("al"), ["t:al"]);
        // Digits ending a word are matched by the word, which the text may
        // continue (`user12345`).
        assert_eq!(plan("user1234"), ["t:user1"]);
        // On a tie, the later word, which surely starts one in the text.
        assert_eq!(plan("eena nels"), ["t:nel"]);
        for q in ["a", "123", "@", "+1", "- -"] {
            assert_eq!(plan_search(q), Err(QueryTooShort), "{q:?}");
        }
    }

    #[test]
    fn s2_a_block_is_found_by_what_it_holds_and_nothing_else() {
        let number = "+16505551234";
        let b = block(number);
        let c = contact(number, "Sheena Nelson", "Sheena.N@Example.com");
        for q in [
            "+1 650 555 1234",
            "650 555 1234",
            "5551234",
            "1234",
            "51234",
            "sheena",
            "NELSON",
            "sheena nelson",
            "sh",
            "nels",
            "example.com",
            "sheena.n@",
            "sheena.n@example.com",
        ] {
            assert!(finds(q, &b, Some(&c)), "{q:?} finds the block");
        }
        let user = contact(number, "Ann", "user12345@x.example");
        assert!(
            finds("user1234", &b, Some(&user)),
            "a word ending in digits"
        );
        assert!(
            finds("12345", &b, Some(&user)),
            "digits ending a word's digits"
        );
        for q in ["heena", "nelsen", "9999", "example.org", "165055", "+1 650"] {
            assert!(!finds(q, &b, Some(&c)), "{q:?} does not");
        }
        // A block without a contact is found by its number only.
        assert!(finds("5551234", &b, None));
        assert!(!finds("sheena", &b, None));
    }

    #[test]
    fn s2_filters_are_tokens_too() {
        let number = "+447700900123";
        let tokens = index_tokens(
            &block(number),
            Some(&contact(number, "Ravi", "r@x.example")),
        );
        for token in [
            scope_token("all"),
            source_token("manual"),
            category_token("vip"),
            group_token("uk"),
            group_token("north"),
        ] {
            assert!(tokens.contains(&token), "{token} in {tokens:?}");
        }
        let mut sorted = tokens.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, tokens, "sorted, no repeats");
    }
}
