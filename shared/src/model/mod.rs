//! The product's nouns, as the API shows them (SPEC section 4).
//!
//! Validated value types (`Scope`, `Reason`, …) can only hold valid values:
//! input is parsed into them once, at the edge.

mod audit;
mod block;
mod chat;
mod consent;
mod contact;
mod platform;
mod rule;
pub mod search;
mod settings;
mod stats;
mod values;

pub use audit::{Action, AuditEvent, ChainCheck, ChainHead, verify_chain};
pub use block::Block;
pub use chat::{Chat, ChatStatus, SessionStatus};
pub use consent::{
    Consent, ConsentCategory, ConsentChange, ConsentSource, ConsentValue, Purpose,
    carried_consents, refusing_consent,
};
pub use contact::Contact;
pub use platform::{
    LIST_FULL, OUTSIDE_WINDOW, PlatformState, PlatformStatus, PlatformView, is_transient,
};
pub use rule::{
    MAX_RULES, Prefix, Rule, RuleAction, RuleEntry, RuleError, RuleId, RulePut, RuleRefusal,
    RuleSet, decide_rule_put,
};
pub use settings::{
    AutoBlockPolicy, Settings, SettingsPatch, SettingsTarget, could_be_keyword, keyword_form,
};
pub use stats::{DayStats, StatCounter, Stats};
pub use values::{Actor, PhoneNumberId, Reason, Scope, Source, ValueError};

/// Times on the wire and in sort keys: RFC 3339 UTC with milliseconds, fixed
/// width, so that string order is time order.
pub fn format_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Reads an optional nested object of a request body as `T`, refusing
/// anything but an object or `null`: serde alone would also read a struct
/// from a list (`"auto_block": [null]`).
pub fn object_only<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::Deserialize;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        value @ serde_json::Value::Object(_) => serde_json::from_value(value)
            .map(Some)
            .map_err(serde::de::Error::custom),
        _ => Err(serde::de::Error::custom("must be an object")),
    }
}

/// Serde helpers for [`format_time`]-shaped timestamps.
pub mod time_format {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            at: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => s.serialize_str(&super::super::format_time(*at)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(raw) => DateTime::parse_from_rfc3339(&raw)
                    .map(|t| Some(t.with_timezone(&Utc)))
                    .map_err(serde::de::Error::custom),
            }
        }
    }
}
