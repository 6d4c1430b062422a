//! Free text made safe for logs (B52). Error details can echo what a
//! dependency was given or returned (an item's key, a field's value), so
//! every error detail that reaches a log goes through [`error`] or
//! [`numbers`]: phone-number-like digit runs are masked and the text is
//! trimmed.

/// Longest error detail kept for a log line, in characters.
pub const MAX_DETAIL_CHARS: usize = 500;

/// Fewest digits a run must have to be masked (shorter runs are counts,
/// codes, ports, years).
const MIN_NUMBER_DIGITS: usize = 7;

/// Masks every phone-number-like run in `text`: 7 or more digits, possibly
/// split by single spaces (`+44 7700 900123`), keep only their last 4
/// digits, as [`crate::Number::masked`] does.
pub fn numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // The run: digits, and single spaces between digits.
        let start = i;
        let mut end = i;
        let mut j = i;
        while j < chars.len() {
            if chars[j].is_ascii_digit() {
                j += 1;
                end = j;
            } else if chars[j] == ' ' && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
                j += 1;
            } else {
                break;
            }
        }
        let run = &chars[start..end];
        let digits = run.iter().filter(|c| c.is_ascii_digit()).count();
        if digits >= MIN_NUMBER_DIGITS {
            let mut seen = 0;
            for &c in run {
                if c.is_ascii_digit() {
                    seen += 1;
                    out.push(if seen + 4 <= digits { '*' } else { c });
                } else {
                    out.push(c);
                }
            }
        } else {
            out.extend(run);
        }
        i = end;
    }
    out
}

/// A URL for a log line: its scheme, host and port only. Credentials,
/// path, query and fragment can all carry secrets (a webhook URL's token).
pub fn url(raw: &str) -> String {
    let Ok(uri) = raw.parse::<http::Uri>() else {
        return "<invalid url>".to_owned();
    };
    match (uri.scheme_str(), uri.host(), uri.port_u16()) {
        (Some(scheme), Some(host), Some(port)) => format!("{scheme}://{host}:{port}"),
        (Some(scheme), Some(host), None) => format!("{scheme}://{host}"),
        _ => "<url>".to_owned(),
    }
}

/// An error for a log line: its message and those of its sources (their
/// `Display`, never `Debug`, which for SDK errors dumps whole requests and
/// responses), numbers masked, trimmed to [`MAX_DETAIL_CHARS`].
pub fn error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let message = inner.to_string();
        // Many errors repeat their source in their own message.
        if !message.is_empty() && !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = inner.source();
    }
    detail(&text)
}

/// Free text for a log line: numbers masked, trimmed to
/// [`MAX_DETAIL_CHARS`].
pub fn detail(text: &str) -> String {
    let masked = numbers(text);
    match masked.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &masked[..cut]),
        None => masked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_numbers_in_any_common_form() {
        assert_eq!(numbers("pk N#+16505551234"), "pk N#+*******1234");
        assert_eq!(numbers("wa_id 16505551234."), "wa_id *******1234.");
        assert_eq!(numbers("+44 7700 900123 x"), "+** **** **0123 x");
        assert_eq!(
            numbers(r#"invalid type: integer `447700900123`, expected a string"#),
            "invalid type: integer `********0123`, expected a string"
        );
        assert_eq!(numbers("%2B16505551234"), "%2B*******1234");
    }

    #[test]
    fn leaves_short_digit_runs_alone() {
        let text = "code 131026 at 2026-11-23T10:00:00Z, 42 items, port 8765";
        assert_eq!(numbers(text), text);
        assert_eq!(numbers(""), "");
        assert_eq!(numbers("1 2 3"), "1 2 3");
    }

    #[test]
    fn urls_keep_only_their_origin() {
        assert_eq!(
            url("https://user:pw@crm.example.com/hooks/T0/s3cret?token=abc#x"),
            "https://crm.example.com"
        );
        assert_eq!(url("http://127.0.0.1:9000/crm"), "http://127.0.0.1:9000");
        assert_eq!(url("not a url"), "<invalid url>");
        assert_eq!(url("/relative?secret=1"), "<url>");
    }

    #[test]
    fn error_chains_use_display_and_are_trimmed() {
        #[derive(Debug)]
        struct Inner;
        impl std::fmt::Display for Inner {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "item N#+16505551234 rejected")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Outer(Inner);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "service error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(
            error(&Outer(Inner)),
            "service error: item N#+*******1234 rejected"
        );
        let long = "x".repeat(MAX_DETAIL_CHARS + 10);
        assert_eq!(detail(&long).chars().count(), MAX_DETAIL_CHARS + 1);
    }
}
