//! Who a block is about: a **subject** (SPEC B60) is a canonical phone
//! number or a business-scoped user id (BSUID) that WhatsApp issues per
//! business portfolio, and a person may be known by several of them at once
//! (B61): a number, its BSUID and a parent BSUID.
//!
//! Enforcement always takes every identity of a person together, so the
//! pure decisions never learn which one matched: a block of any of them
//! stops the person.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::time_format;
use crate::number::{Number, NumberError};

/// Longest BSUID body after the country prefix (Meta: up to 128
/// alphanumerics).
pub const MAX_USER_ID_CHARS: usize = 128;

/// Why an input is not a subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("invalid number: {0}")]
    Number(#[from] NumberError),
    #[error(
        "a business-scoped user id is a two-letter country prefix, a dot, and 1 to 128 letters or digits (a parent id: CC.ENT.…)"
    )]
    UserId,
}

/// A business-scoped user id (`US.13491208655302741918`) or a parent BSUID
/// (`US.ENT.…`). Stored exactly as given: Meta compares them as strings.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<UserId, SubjectError> {
        let (country, rest) = raw.split_once('.').ok_or(SubjectError::UserId)?;
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(SubjectError::UserId);
        }
        let body = rest.strip_prefix("ENT.").unwrap_or(rest);
        if body.is_empty()
            || body.len() > MAX_USER_ID_CHARS
            || !body.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(SubjectError::UserId);
        }
        Ok(UserId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a parent BSUID (`CC.ENT.…`), shared by the
    /// businesses of one enterprise.
    pub fn is_parent(&self) -> bool {
        self.0.get(2..7) == Some(".ENT.")
    }

    /// For logs: the country prefix and the last four characters.
    pub fn masked(&self) -> String {
        let count = self.0.chars().count();
        self.0
            .chars()
            .enumerate()
            .map(|(i, c)| if i < 3 || i + 4 >= count { c } else { '*' })
            .collect()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.masked())
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        UserId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// What a block is about (B60).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Number(Number),
    User(UserId),
}

impl Subject {
    /// A number in any accepted form, or a BSUID. Numbers never contain
    /// letters and BSUIDs always start with two and a dot, so the first
    /// three characters tell them apart; anything else is judged as a
    /// number (and refused as `invalid_number`).
    pub fn parse(raw: &str) -> Result<Subject, SubjectError> {
        let trimmed = raw.trim();
        let bytes = trimmed.as_bytes();
        if bytes.len() >= 3 && bytes[..2].iter().all(u8::is_ascii_alphabetic) && bytes[2] == b'.' {
            UserId::parse(trimmed).map(Subject::User)
        } else {
            Ok(Subject::Number(Number::parse(trimmed)?))
        }
    }

    /// The stored and displayed form: `+<digits>` or the BSUID as given.
    pub fn as_str(&self) -> &str {
        match self {
            Subject::Number(number) => number.as_str(),
            Subject::User(id) => id.as_str(),
        }
    }

    pub fn number(&self) -> Option<&Number> {
        match self {
            Subject::Number(number) => Some(number),
            Subject::User(_) => None,
        }
    }

    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Subject::Number(_) => None,
            Subject::User(id) => Some(id),
        }
    }

    /// For logs (B52).
    pub fn masked(&self) -> String {
        match self {
            Subject::Number(number) => number.masked(),
            Subject::User(id) => id.masked(),
        }
    }
}

impl From<Number> for Subject {
    fn from(number: Number) -> Self {
        Subject::Number(number)
    }
}

impl From<UserId> for Subject {
    fn from(id: UserId) -> Self {
        Subject::User(id)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject({})", self.masked())
    }
}

impl Serialize for Subject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        // Stored subjects were validated on the way in; a number that only
        // the lenient WhatsApp form accepted (B63) must read back as well.
        if raw.starts_with('+') {
            if let Some(number) = Number::stored(&raw) {
                return Ok(Subject::Number(number));
            }
            return Number::from_whatsapp_id(&raw)
                .map(Subject::Number)
                .map_err(serde::de::Error::custom);
        }
        Subject::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Serde helpers for a subject field on the wire and in items: written as
/// `"subject"` (either kind) and `"number"` (the number, or `null` for a
/// BSUID), so that clients that only know numbers keep working (B60). Read
/// from `subject`, or from `number` in items written before subjects.
pub mod subject_fields {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Subject;

    #[derive(Serialize)]
    struct Out<'a> {
        subject: &'a str,
        number: Option<&'a str>,
    }

    #[derive(Deserialize)]
    struct In {
        #[serde(default)]
        subject: Option<Subject>,
        #[serde(default)]
        number: Option<Subject>,
    }

    pub fn serialize<S: Serializer>(subject: &Subject, s: S) -> Result<S::Ok, S::Error> {
        Out {
            subject: subject.as_str(),
            number: subject.number().map(|n| n.as_str()),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Subject, D::Error> {
        let fields = In::deserialize(d)?;
        fields
            .subject
            .or(fields.number)
            .ok_or_else(|| serde::de::Error::missing_field("subject"))
    }

    /// The same for an optional subject (audit events of settings have
    /// none).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        use super::super::Subject;

        #[derive(Serialize)]
        struct Out<'a> {
            subject: Option<&'a str>,
            number: Option<&'a str>,
        }

        #[derive(Deserialize)]
        struct In {
            #[serde(default)]
            subject: Option<Subject>,
            #[serde(default)]
            number: Option<Subject>,
        }

        pub fn serialize<S: Serializer>(
            subject: &Option<Subject>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            Out {
                subject: subject.as_ref().map(Subject::as_str),
                number: subject
                    .as_ref()
                    .and_then(Subject::number)
                    .map(|n| n.as_str()),
            }
            .serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Subject>, D::Error> {
            let fields = In::deserialize(d)?;
            Ok(fields.subject.or(fields.number))
        }
    }
}

/// Two or three identities of one person, as Meta showed them together
/// (B61): a webhook `contacts[]` entry with `wa_id` and `user_id` /
/// `parent_user_id`, a message with `from` and `from_user_id`, or a Graph
/// send response's `contacts[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub number: Option<Number>,
    pub user_id: Option<UserId>,
    pub parent_user_id: Option<UserId>,
    #[serde(with = "time_format")]
    pub seen_at: DateTime<Utc>,
}

impl Link {
    /// Every identity the link names.
    pub fn subjects(&self) -> Vec<Subject> {
        let mut subjects: Vec<Subject> = Vec::with_capacity(3);
        subjects.extend(self.number.clone().map(Subject::Number));
        subjects.extend(self.user_id.clone().map(Subject::User));
        subjects.extend(self.parent_user_id.clone().map(Subject::User));
        subjects
    }

    /// A link joins at least two identities; one alone is nothing to store.
    pub fn is_link(&self) -> bool {
        self.subjects().len() >= 2
    }

    /// Whether two links name the same identities (times aside).
    pub fn same_identities(&self, other: &Link) -> bool {
        self.number == other.number
            && self.user_id == other.user_id
            && self.parent_user_id == other.parent_user_id
    }

    pub fn names(&self, subject: &Subject) -> bool {
        match subject {
            Subject::Number(n) => self.number.as_ref() == Some(n),
            Subject::User(u) => {
                self.user_id.as_ref() == Some(u) || self.parent_user_id.as_ref() == Some(u)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b60_user_ids_are_validated_and_kept_as_given() {
        for good in [
            "US.13491208655302741918",
            "BR.abcDEF123",
            "US.ENT.11815799212886844830",
            &format!("IN.{}", "a".repeat(128)),
        ] {
            assert_eq!(UserId::parse(good).unwrap().as_str(), good, "{good}");
        }
        for bad in [
            "13491208655302741918",
            "US13491208655302741918",
            "us.1349",
            "USA.1349",
            "U.1349",
            "US.",
            "US.ENT.",
            "US.13-49",
            "US.13 49",
            "US.1349.5",
            "US.ñ1349",
            &format!("IN.{}", "a".repeat(129)),
        ] {
            assert_eq!(UserId::parse(bad), Err(SubjectError::UserId), "{bad:?}");
        }
        assert!(UserId::parse("US.ENT.118").unwrap().is_parent());
        assert!(!UserId::parse("US.ENTX118").unwrap().is_parent());
    }

    #[test]
    fn b60_subject_is_a_number_or_a_user_id() {
        assert_eq!(
            Subject::parse("+1 650 555 1234").unwrap(),
            Subject::Number(Number::parse("+16505551234").unwrap())
        );
        assert_eq!(
            Subject::parse("1.650.555.1234").unwrap().as_str(),
            "+16505551234"
        );
        let user = Subject::parse("US.13491208655302741918").unwrap();
        assert_eq!(user.as_str(), "US.13491208655302741918");
        assert!(user.number().is_none());
        assert!(matches!(
            Subject::parse("US13491208655302741918"),
            Err(SubjectError::Number(_))
        ));
        assert!(matches!(
            Subject::parse("us.1349"),
            Err(SubjectError::UserId)
        ));
        assert!(matches!(
            Subject::parse("abc"),
            Err(SubjectError::Number(_))
        ));
        assert!(matches!(Subject::parse("12"), Err(SubjectError::Number(_))));
    }

    #[test]
    fn user_ids_are_masked_in_logs() {
        let id = UserId::parse("US.13491208655302741918").unwrap();
        assert_eq!(id.masked(), "US.****************1918");
        assert_eq!(
            format!("{:?}", Subject::User(id)),
            "Subject(US.****************1918)"
        );
    }

    #[test]
    fn b60_subject_fields_write_subject_and_number() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Holder {
            #[serde(flatten, with = "subject_fields")]
            subject: Subject,
            other: u8,
        }
        let number = Holder {
            subject: Subject::parse("+16505551234").unwrap(),
            other: 1,
        };
        let json = serde_json::to_value(&number).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"subject": "+16505551234", "number": "+16505551234", "other": 1})
        );
        assert_eq!(serde_json::from_value::<Holder>(json).unwrap(), number);
        let user = Holder {
            subject: Subject::parse("US.1349").unwrap(),
            other: 2,
        };
        let json = serde_json::to_value(&user).unwrap();
        assert_eq!(json["number"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<Holder>(json).unwrap(), user);
        // Items written before subjects carry only `number`.
        let old: Holder =
            serde_json::from_value(serde_json::json!({"number": "+16505551234", "other": 3}))
                .unwrap();
        assert_eq!(old.subject.as_str(), "+16505551234");
    }
}
