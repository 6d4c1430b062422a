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
    /// The id of the subject's previous change event, where `prev_hash`
    /// comes from (B53).
    #[serde(default)]
    pub prev_event_id: Option<String>,
    /// The `hash` of the subject's previous change event (B53): what makes
    /// its changes a chain, in which an event edited, removed or put in
    /// later breaks a link. Null for the first, for traffic events
    /// (`inbound_suppressed`, `outbound_refused`) and settings events,
    /// which are not chained, and for events written before the chain.
    #[serde(default)]
    pub prev_hash: Option<String>,
    /// SHA-256 (hex) of the event's canonical JSON without `hash`, so of
    /// `prev_hash` too; null where `prev_hash` is.
    #[serde(default)]
    pub hash: Option<String>,
}

impl AuditEvent {
    /// This event as the link after `prev` (the subject's chain head: the
    /// id and hash of its newest change event).
    pub fn chained(mut self, prev: Option<ChainHead>) -> AuditEvent {
        self.prev_event_id = prev.as_ref().map(|p| p.event_id.clone());
        self.prev_hash = prev.map(|p| p.hash);
        self.hash = None;
        self.hash = Some(self.content_hash());
        self
    }

    /// SHA-256 of the event's JSON with `hash` left out. serde_json writes
    /// object keys sorted, so the bytes are the same for the same event
    /// wherever it is computed.
    pub fn content_hash(&self) -> String {
        use sha2::Digest;
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.remove("hash");
        }
        hex::encode(sha2::Sha256::digest(value.to_string().as_bytes()))
    }

    /// Whether the event is a link of its subject's chain.
    pub fn is_chained(&self) -> bool {
        self.hash.is_some()
    }

    /// The head of the chain once this event is its newest link.
    pub fn as_head(&self) -> Option<ChainHead> {
        self.hash.clone().map(|hash| ChainHead {
            event_id: self.event_id.clone(),
            hash,
        })
    }

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

/// The newest link of a subject's chain, kept on its `STATE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub event_id: String,
    pub hash: String,
}

/// What a history page says of its subject's chain of change events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    /// Every chained event of the page hashes to its `hash`, links to the
    /// one before it, and the newest is the subject's recorded head.
    pub verified: bool,
    /// The newest event where the chain does not hold, if any.
    pub broken_at: Option<String>,
    /// How many chained events the page holds.
    pub checked: usize,
}

/// B53: checks the chained events of one history page, newest first.
/// `older` is the next chained event beyond the page (the one the page's
/// oldest links to), `head` the subject's recorded head when the page
/// starts at the newest event. An edited event no longer hashes to its
/// `hash`; a removed or inserted one breaks the `prev_hash` link of the
/// event after it; removing the newest ones leaves the head pointing past
/// them.
pub fn verify_chain(
    newest_first: &[AuditEvent],
    older: Option<&AuditEvent>,
    head: Option<Option<&ChainHead>>,
) -> ChainCheck {
    let chained: Vec<&AuditEvent> = newest_first.iter().filter(|e| e.is_chained()).collect();
    let broken = |event: &AuditEvent| ChainCheck {
        verified: false,
        broken_at: Some(event.event_id.clone()),
        checked: chained.len(),
    };
    if let (Some(head), Some(newest)) = (head, chained.first()) {
        if head.map(|h| &h.hash) != newest.hash.as_ref() {
            return broken(newest);
        }
    }
    for (i, event) in chained.iter().enumerate() {
        if event.hash.as_deref() != Some(event.content_hash().as_str()) {
            return broken(event);
        }
        let before = chained.get(i + 1).copied().or(older);
        if let Some(before) = before {
            if event.prev_hash != before.hash {
                return broken(event);
            }
        }
    }
    ChainCheck {
        verified: true,
        broken_at: None,
        checked: chained.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: Action, reason: &str) -> AuditEvent {
        AuditEvent {
            event_id: AuditEvent::new_id(Utc::now()),
            subject: None,
            scope: Some("all".into()),
            action,
            actor: "ops".into(),
            client: None,
            reason: Some(reason.into()),
            source: Some("manual".into()),
            at: Utc::now(),
            details: serde_json::json!({"n": 1}),
            prev_event_id: None,
            prev_hash: None,
            hash: None,
        }
    }

    /// Three events chained as the store chains them, newest first.
    fn chain() -> Vec<AuditEvent> {
        let a = event(Action::Blocked, "spam").chained(None);
        let b = event(Action::Unblocked, "ok").chained(a.as_head());
        let c = event(Action::Blocked, "again").chained(b.as_head());
        vec![c, b, a]
    }

    #[test]
    fn b53_an_intact_chain_verifies() {
        let events = chain();
        let head = events[0].as_head();
        let check = verify_chain(&events, None, Some(head.as_ref()));
        assert_eq!((check.verified, check.checked), (true, 3));
        // A page of the two newest, with the third beyond it.
        let check = verify_chain(&events[..2], Some(&events[2]), Some(head.as_ref()));
        assert!(check.verified);
    }

    #[test]
    fn b53_an_edited_removed_or_inserted_event_breaks_the_chain() {
        let events = chain();
        let head = events[0].as_head();
        let mut edited = events.clone();
        edited[1].reason = Some("changed afterwards".into());
        let check = verify_chain(&edited, None, Some(head.as_ref()));
        assert_eq!(
            check.broken_at.as_deref(),
            Some(events[1].event_id.as_str())
        );

        let removed = vec![events[0].clone(), events[2].clone()];
        let check = verify_chain(&removed, None, Some(head.as_ref()));
        assert_eq!(
            check.broken_at.as_deref(),
            Some(events[0].event_id.as_str())
        );

        // Rewritten with a fresh hash of its own: the link after it breaks.
        let mut rewritten = events.clone();
        rewritten[1].reason = Some("changed afterwards".into());
        rewritten[1] = rewritten[1].clone().chained(events[2].as_head());
        let check = verify_chain(&rewritten, None, Some(head.as_ref()));
        assert_eq!(
            check.broken_at.as_deref(),
            Some(events[0].event_id.as_str())
        );

        // The newest removed: the recorded head points past the page.
        let check = verify_chain(&events[1..], None, Some(head.as_ref()));
        assert!(!check.verified);

        let inserted = event(Action::Blocked, "forged").chained(events[1].as_head());
        let forged = vec![
            events[0].clone(),
            inserted,
            events[1].clone(),
            events[2].clone(),
        ];
        assert!(!verify_chain(&forged, None, Some(head.as_ref())).verified);
    }

    #[test]
    fn events_before_the_chain_and_unchained_ones_are_skipped() {
        let mut events = chain();
        events.insert(1, event(Action::InboundSuppressed, "traffic"));
        events.push(event(Action::Blocked, "before the chain"));
        let head = events[0].as_head();
        let check = verify_chain(&events, None, Some(head.as_ref()));
        assert_eq!((check.verified, check.checked), (true, 3));
    }

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
