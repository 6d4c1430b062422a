use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::time_format;
use crate::identity::{Subject, subject_fields};

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
    /// Meta showed two identities of one person together (B61).
    IdentityLinked,
    /// WhatsApp reported a changed number or user id, and blocks were
    /// carried to the new identity (B62).
    IdentityChanged,
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
            Action::IdentityLinked => "identity_linked",
            Action::IdentityChanged => "identity_changed",
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
    #[serde(flatten, with = "subject_fields::option")]
    pub subject: Option<Subject>,
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
    /// A new event id for an event created at `at`. Ids made by one process
    /// in the same millisecond increase, so events written one after the
    /// other (a contact change and its block, a block and a quick unblock)
    /// keep their order in history.
    pub fn new_id(at: DateTime<Utc>) -> String {
        static LAST: std::sync::Mutex<ulid::Ulid> = std::sync::Mutex::new(ulid::Ulid::nil());
        let fresh = ulid::Ulid::from_datetime(std::time::SystemTime::from(at));
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = if last.timestamp_ms() == fresh.timestamp_ms() {
            last.increment().unwrap_or(fresh)
        } else {
            fresh
        };
        *last = id;
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_one_millisecond_keep_their_order() {
        let at = Utc::now();
        let ids: Vec<String> = (0..100).map(|_| AuditEvent::new_id(at)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        let earlier = AuditEvent::new_id(at - chrono::Duration::days(3));
        assert!(
            earlier < ids[0],
            "an earlier time sorts first: ids follow `at`"
        );
    }
}
