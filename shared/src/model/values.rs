use serde::{Deserialize, Serialize};

/// Why a value was refused. `field`-less: the caller knows which field it
/// parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("reason must be 1 to 500 characters")]
    ReasonLength,
    #[error("scope must be \"all\" or a phone_number_id (digits)")]
    Scope,
    #[error("phone_number_id must be 1 to 32 digits")]
    PhoneNumberId,
    #[error("source must be one of manual, notification, bulk, import, auto, carried")]
    Source,
}

/// `Deserialize` through the type's `parse`, and `Display` of its
/// `as_str`: for the value types that can only hold valid values, so that
/// a stored or sent value is checked exactly as input is.
macro_rules! parsed_string {
    ($($value:ty),+ $(,)?) => {$(
        impl<'de> serde::Deserialize<'de> for $value {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <String as serde::Deserialize>::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl std::fmt::Display for $value {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}
pub(crate) use parsed_string;

parsed_string!(PhoneNumberId, Scope);

/// Meta's id of a business number (`phone_number_id`): digits only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PhoneNumberId(String);

impl PhoneNumberId {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if (1..=32).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValueError::PhoneNumberId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a block applies: every business number, or one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    All,
    Business(PhoneNumberId),
}

impl Scope {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw == "all" {
            Ok(Scope::All)
        } else {
            PhoneNumberId::parse(raw)
                .map(Scope::Business)
                .map_err(|_| ValueError::Scope)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Scope::All => "all",
            Scope::Business(id) => id.as_str(),
        }
    }

    /// Whether a block in this scope applies to traffic of `business`.
    pub fn covers(&self, business: &PhoneNumberId) -> bool {
        match self {
            Scope::All => true,
            Scope::Business(id) => id == business,
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why a number was blocked or unblocked: 1 to 500 characters, not blank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Reason(String);

impl Reason {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let count = raw.chars().count();
        if raw.trim().is_empty() || count > Self::MAX_CHARS {
            return Err(ValueError::ReasonLength);
        }
        Ok(Self(raw.to_owned()))
    }

    /// A reason the product writes itself, cut to the limit.
    pub(crate) fn written(text: &str) -> Self {
        Self(text.chars().take(Self::MAX_CHARS).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// How a block came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Manual,
    Notification,
    Bulk,
    Import,
    Auto,
    /// Carried over from a person's previous identity when WhatsApp
    /// reported a changed number or user id (B62).
    Carried,
    /// A prefix rule matched the number (B84): never stored, and never
    /// given as a filter or in a request.
    Rule,
}

impl Source {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        match raw {
            "manual" => Ok(Source::Manual),
            "notification" => Ok(Source::Notification),
            "bulk" => Ok(Source::Bulk),
            "import" => Ok(Source::Import),
            "auto" => Ok(Source::Auto),
            "carried" => Ok(Source::Carried),
            _ => Err(ValueError::Source),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Manual => "manual",
            Source::Notification => "notification",
            Source::Bulk => "bulk",
            Source::Import => "import",
            Source::Auto => "auto",
            Source::Carried => "carried",
            Source::Rule => "rule",
        }
    }
}

/// Who made a change: the person (or system) acting, and the API client that
/// carried the call when it acted for someone else (B51).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub actor: String,
    pub client: Option<String>,
}

impl Actor {
    /// The product itself (auto-blocking, webhook suppression).
    pub fn system(name: &str) -> Self {
        Actor {
            actor: name.to_owned(),
            client: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_is_one_to_five_hundred_characters() {
        assert!(Reason::parse("spam").is_ok());
        assert!(
            Reason::parse(&"é".repeat(500)).is_ok(),
            "counts characters, not bytes"
        );
        assert_eq!(Reason::parse(""), Err(ValueError::ReasonLength));
        assert_eq!(Reason::parse("   "), Err(ValueError::ReasonLength));
        assert_eq!(
            Reason::parse(&"x".repeat(501)),
            Err(ValueError::ReasonLength)
        );
    }

    #[test]
    fn scope_is_all_or_digits() {
        assert_eq!(Scope::parse("all"), Ok(Scope::All));
        let id = PhoneNumberId::parse("106540352242922").unwrap();
        assert_eq!(
            Scope::parse("106540352242922"),
            Ok(Scope::Business(id.clone()))
        );
        for bad in ["", "ALL", "every", "12a", "1 2", &"1".repeat(33)] {
            assert_eq!(Scope::parse(bad), Err(ValueError::Scope), "{bad:?}");
        }
        assert!(Scope::All.covers(&id));
        assert!(Scope::Business(id.clone()).covers(&id));
        assert!(!Scope::Business(PhoneNumberId::parse("1").unwrap()).covers(&id));
    }

    #[test]
    fn source_names_round_trip() {
        for s in [
            "manual",
            "notification",
            "bulk",
            "import",
            "auto",
            "carried",
        ] {
            assert_eq!(Source::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(Source::parse("robot"), Err(ValueError::Source));
    }
}
