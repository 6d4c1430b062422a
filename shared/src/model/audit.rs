use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::time_format;
use crate::number::Number;

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Blocked,
    Unblocked,
    AutoBlocked,
    Expired,
    Edited,
    ContactUpdated,
    InboundSuppressed,
    OutboundRefused,
    SettingsChanged,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Blocked => "blocked",
            Action::Unblocked => "unblocked",
            Action::AutoBlocked => "auto_blocked",
            Action::Expired => "expired",
            Action::Edited => "edited",
            Action::ContactUpdated => "contact_updated",
            Action::InboundSuppressed => "inbound_suppressed",
            Action::OutboundRefused => "outbound_refused",
            Action::SettingsChanged => "settings_changed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
    }
}

/// One immutable entry of the audit trail (B53).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// A ULID: unique, and ordered by creation time.
    pub event_id: String,
    pub number: Option<Number>,
    pub scope: Option<String>,
    pub action: Action,
    pub actor: String,
    pub client: Option<String>,
    pub reason: Option<String>,
    pub source: Option<String>,
    #[serde(with = "time_format")]
    pub at: DateTime<Utc>,
    /// Before/after and action-specific facts; always a JSON object.
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// A new event id for an event created at `at`.
    pub fn new_id(at: DateTime<Utc>) -> String {
        let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        ulid::Ulid::from_parts(ms, rand_bits()).to_string()
    }
}

/// 80 random bits for a ULID, from the process's std RandomState (seeded by
/// the OS) so that no extra RNG crate is needed.
fn rand_bits() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut high = state.build_hasher();
    high.write_u8(1);
    let mut low = state.build_hasher();
    low.write_u8(2);
    ((u128::from(high.finish()) << 64) | u128::from(low.finish())) & ((1u128 << 80) - 1)
}
