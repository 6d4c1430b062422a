//! Opaque pagination cursors: the sort key of the last item a page showed
//! (its position in the listing), tagged with the listing it belongs to.
//!
//! A cursor is checked on the way back in: it must decode, belong to the
//! same listing with the same filters and carry exactly a position (or, for
//! the audit feed, the start of a day). Anything else is `invalid_cursor`
//! (400). A position only narrows the listing's own key condition, so even
//! a forged one cannot read outside the query.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cursor is not valid for this listing")]
pub struct CursorError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// Which listing: `blocks`, `chats`, `history`, `audit`.
    pub kind: String,
    /// For the audit feed: the day partition the key belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    pub key: BTreeMap<String, String>,
    /// Fingerprint of the listing's filters ([`filters_fingerprint`]). A
    /// page key is only meaningful under the key condition that produced
    /// it: resumed under other filters (another `since`, another status)
    /// DynamoDB refuses the start key, so the cursor is refused first.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filters: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{}{}", URL_SAFE_NO_PAD.encode(&json), checksum(&json))
    }

    /// This cursor, bound to the listing's `filters` fingerprint.
    pub fn bound_to(mut self, filters: &str) -> Cursor {
        filters.clone_into(&mut self.filters);
        self
    }

    /// Decodes a cursor of `kind` issued under `filters` whose key has
    /// exactly `attributes`.
    pub fn decode(
        raw: &str,
        kind: &str,
        filters: &str,
        attributes: &[&str],
    ) -> Result<Cursor, CursorError> {
        if raw.len() > 2048 {
            return Err(CursorError);
        }
        // A cursor is opaque: a checksum over its content makes any edit of
        // it (a typo, a truncated copy, a changed key value) a 400 rather
        // than a page of some other listing or a store error.
        if raw.len() <= CHECKSUM_CHARS || !raw.is_ascii() {
            return Err(CursorError);
        }
        let (body, sum) = raw.split_at(raw.len() - CHECKSUM_CHARS);
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| CursorError)?;
        if checksum(&bytes) != sum {
            return Err(CursorError);
        }
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| CursorError)?;
        // DynamoDB refuses empty key values: such a cursor was forged.
        let same_attributes = cursor.key.len() == attributes.len()
            && attributes
                .iter()
                .all(|a| cursor.key.get(*a).is_some_and(|v| !v.is_empty()));
        if cursor.kind != kind || cursor.filters != filters || !same_attributes {
            return Err(CursorError);
        }
        Ok(cursor)
    }

    /// A cursor continuing `kind` after the item at `position` (its sort
    /// key), inside `day` for the audit feed.
    pub fn at(kind: &str, day: Option<String>, position: String) -> Cursor {
        Cursor {
            kind: kind.to_owned(),
            day,
            key: BTreeMap::from([(POSITION.to_owned(), position)]),
            filters: String::new(),
        }
    }

    /// A cursor of the audit feed continuing at the start of `day`.
    pub fn start_of_day(kind: &str, day: String) -> Cursor {
        Cursor {
            kind: kind.to_owned(),
            day: Some(day),
            key: BTreeMap::new(),
            filters: String::new(),
        }
    }

    /// Where the listing continues: after this sort key.
    pub fn position(&self) -> Option<String> {
        self.key.get(POSITION).cloned()
    }
}

/// A fingerprint of a listing's filters: the query parameters other than
/// `cursor` and `limit` (a client may change the page size between pages),
/// in any order.
pub fn filters_fingerprint<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = pairs
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "cursor" | "limit"))
        .collect();
    pairs.sort_unstable();
    let canonical = serde_json::to_vec(&pairs).unwrap_or_default();
    checksum(&canonical)
}

/// The key attribute a cursor carries: the sort key of the last item shown.
pub const POSITION: &str = "after";

/// Hex characters of the checksum at the end of an encoded cursor.
const CHECKSUM_CHARS: usize = 16;

/// The first 8 bytes of the content's SHA-256, in hex.
fn checksum(content: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(content)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        Cursor::at("history", None, "01J".into()).bound_to("f1")
    }

    #[test]
    fn round_trips() {
        let encoded = cursor().encode();
        assert_eq!(
            Cursor::decode(&encoded, "history", "f1", &[POSITION]),
            Ok(cursor())
        );
    }

    #[test]
    fn rejects_tampering_and_other_listings() {
        let encoded = cursor().encode();
        assert_eq!(
            Cursor::decode(&encoded, "blocks", "f1", &[POSITION]),
            Err(CursorError)
        );
        assert_eq!(
            Cursor::decode(&encoded, "history", "f1", &[POSITION, "sk"]),
            Err(CursorError)
        );
        assert_eq!(
            Cursor::decode("not base64!", "history", "f1", &[POSITION]),
            Err(CursorError)
        );
        let mut flipped = encoded.into_bytes();
        flipped[3] ^= 0x01;
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            Cursor::decode(&flipped, "history", "f1", &[POSITION]),
            Err(CursorError)
        );
        assert_eq!(
            Cursor::decode(&cursor().encode(), "history", "f2", &[POSITION]),
            Err(CursorError),
            "issued under other filters"
        );
        assert_eq!(cursor().position().as_deref(), Some("01J"));
    }

    #[test]
    fn fingerprint_ignores_order_cursor_and_limit_but_not_values() {
        let a = filters_fingerprint([("since", "2026-01-01"), ("scope", "global")]);
        let b = filters_fingerprint([
            ("scope", "global"),
            ("limit", "5"),
            ("since", "2026-01-01"),
            ("cursor", "x"),
        ]);
        assert_eq!(a, b);
        assert_ne!(
            a,
            filters_fingerprint([("since", "2026-01-02"), ("scope", "global")])
        );
        assert_ne!(a, filters_fingerprint([("since", "2026-01-01")]));
        // Pairs are not concatenated: a value cannot pose as a next key.
        assert_ne!(
            filters_fingerprint([("q", "a"), ("scope", "b")]),
            filters_fingerprint([("q", "a\",\"scope"), ("", "b")])
        );
    }
}
