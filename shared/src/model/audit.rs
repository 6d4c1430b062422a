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
    /// The customer opted out of marketing or of every message (B80).
    OptedOut,
    /// The customer opted back in (B80).
    OptedIn,
    /// A prefix rule was made, changed or removed (B84).
    RuleAdded,
    RuleChanged,
    RuleRemoved,
    /// A block was reviewed (B16): `details.decision` is `keep` or
    /// `unblock` (then with its own `unblocked` event).
    Reviewed,
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
            Action::OptedOut => "opted_out",
            Action::OptedIn => "opted_in",
            Action::RuleAdded => "rule_added",
            Action::RuleChanged => "rule_changed",
            Action::RuleRemoved => "rule_removed",
            Action::Reviewed => "reviewed",
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
    /// object keys sorted, and numbers are written as DynamoDB gives them
    /// back (a whole float as an integer), so the bytes are the same for
    /// the same event before and after it is stored.
    pub fn content_hash(&self) -> String {
        use sha2::Digest;
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.remove("hash");
        }
        canonical_numbers(&mut value);
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

/// Whole floats as integers (`2.0` as `2`, `-0.0` as `0`): DynamoDB keeps
/// a number's value, not its spelling.
fn canonical_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) if number.is_f64() => {
            if let Some(f) = number.as_f64() {
                // Exactly representable as an i64: below 2^63 in magnitude.
                if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_775e18 {
                    #[allow(clippy::cast_possible_truncation)]
                    let whole = f as i64;
                    *value = serde_json::Value::from(whole);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(canonical_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(canonical_numbers),
        _ => {}
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

/// The actions whose events a change writes on its own subject, under the
/// subject's version guard: each is a link of the chain (B53). Identity
/// events (written for several identities at once) and refused traffic
/// are not.
pub const CHAINED_ACTIONS: [Action; 7] = [
    Action::Reviewed,
    Action::Blocked,
    Action::Unblocked,
    Action::AutoBlocked,
    Action::Expired,
    Action::Edited,
    Action::ContactUpdated,
];

/// B53: checks the events of one history page, newest first, as read
/// after the subject's `head` (for the first page; `None` for later ones).
/// `older` is the event the page's oldest link names as its previous one,
/// when it is beyond the page.
///
/// The links are followed by `prev_event_id`, not by the page's order:
/// event ids follow the clocks of the functions that wrote them, which may
/// disagree by a few milliseconds, while the chain follows the order the
/// changes committed in.
///
/// - Every chained event must hash to its `hash`, and its `prev_hash` must
///   be the `hash` of the event it names (on the page, or `older`): an
///   edited event, or one removed or slipped in, breaks this. No two may
///   name the same one.
/// - A chained event with no previous one starts the chain. It starts
///   again where a release before the chain rewrote the subject's state
///   (during a deploy), so a start is not a break; an event put in the
///   place of another still breaks the link of the event after it.
/// - Once the chain has started, a change event without a hash is a
///   forgery (or an edit that dropped it).
/// - On the first page, the recorded head must be on the page (events
///   newer than it may be there too: they committed after it was read),
///   unless the page holds no chained event (a page of refused traffic).
pub fn verify_chain(
    newest_first: &[AuditEvent],
    older: Option<&AuditEvent>,
    head: Option<Option<&ChainHead>>,
) -> ChainCheck {
    use std::collections::{HashMap, HashSet};
    let chained: Vec<&AuditEvent> = newest_first.iter().filter(|e| e.is_chained()).collect();
    let broken = |event: &AuditEvent| ChainCheck {
        verified: false,
        broken_at: Some(event.event_id.clone()),
        checked: chained.len(),
    };
    if let (Some(Some(head)), Some(newest)) = (head, chained.first()) {
        match chained.iter().find(|e| e.event_id == head.event_id) {
            Some(at_head) if at_head.hash.as_ref() == Some(&head.hash) => {}
            // The head's event changed, or it was removed (with any after it).
            Some(at_head) => return broken(at_head),
            None => return broken(newest),
        }
    }
    let on_page: HashMap<&str, &AuditEvent> =
        chained.iter().map(|e| (e.event_id.as_str(), *e)).collect();
    let mut named = HashSet::new();
    let mut beyond_page = 0;
    for event in &chained {
        if event.hash.as_deref() != Some(event.content_hash().as_str()) {
            return broken(event);
        }
        let Some(prev_id) = event.prev_event_id.as_deref() else {
            if event.prev_hash.is_some() {
                return broken(event);
            }
            continue;
        };
        if !named.insert(prev_id) {
            return broken(event);
        }
        let prev = match on_page.get(prev_id) {
            Some(prev) => Some(*prev),
            None => {
                // Only the page's oldest link may name an event beyond it.
                beyond_page += 1;
                older.filter(|o| o.event_id == prev_id)
            }
        };
        if beyond_page > 1 || prev.is_none_or(|prev| prev.hash != event.prev_hash) {
            return broken(event);
        }
    }
    // A change event without a hash, newer than where the chain starts on
    // the page (anywhere, when the page's oldest link has one before it).
    let started = chained
        .iter()
        .min_by(|a, b| a.event_id.cmp(&b.event_id))
        .map(|oldest| match oldest.prev_event_id {
            Some(_) => String::new(),
            None => oldest.event_id.clone(),
        });
    if let Some(started) = started {
        if let Some(forged) = newest_first.iter().find(|e| {
            !e.is_chained() && CHAINED_ACTIONS.contains(&e.action) && e.event_id > started
        }) {
            return broken(forged);
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
    fn events_before_the_chain_and_refused_traffic_are_not_links() {
        let before = event(Action::Blocked, "before the chain");
        let mut events = chain();
        events.insert(1, event(Action::InboundSuppressed, "traffic"));
        events.push(before);
        let head = events[0].as_head();
        let check = verify_chain(&events, None, Some(head.as_ref()));
        assert_eq!((check.verified, check.checked), (true, 3));
    }

    #[test]
    fn b53_a_change_event_without_a_hash_after_the_chain_started_is_a_forgery() {
        let mut events = chain();
        let forged = event(Action::Unblocked, "slipped in");
        let forged_id = forged.event_id.clone();
        events.insert(0, forged);
        let head = events[1].as_head();
        let check = verify_chain(&events, None, Some(head.as_ref()));
        assert_eq!(check.broken_at, Some(forged_id));
    }

    #[test]
    fn a_restarted_chain_and_events_newer_than_the_head_verify() {
        // A release before the chain rewrote the state: the next change
        // starts the chain again.
        let mut events = chain();
        let restart = event(Action::Blocked, "after a deploy").chained(None);
        events.insert(0, restart);
        let head = events[0].as_head();
        assert!(verify_chain(&events, None, Some(head.as_ref())).verified);
        // The head as read before a newer change committed.
        let newer = event(Action::Unblocked, "just now").chained(events[0].as_head());
        events.insert(0, newer);
        assert!(verify_chain(&events, None, Some(head.as_ref())).verified);
    }

    #[test]
    fn links_are_followed_by_id_whatever_order_the_clocks_gave() {
        // The second change's function ran a few ms behind the first's: its
        // event sorts before the one it follows.
        let mut first = event(Action::Blocked, "spam");
        first.event_id = AuditEvent::new_id(Utc::now() + chrono::Duration::milliseconds(5));
        let first = first.chained(None);
        let second = event(Action::Unblocked, "ok").chained(first.as_head());
        assert!(second.event_id < first.event_id);
        let page = vec![first.clone(), second.clone()];
        let check = verify_chain(&page, None, Some(second.as_head().as_ref()));
        assert!(check.verified, "{check:?}");
    }

    #[test]
    fn whole_floats_hash_as_dynamodb_gives_them_back() {
        let mut stored = event(Action::AutoBlocked, "undeliverable");
        stored.details =
            serde_json::json!({"sender": {"v": 2.0, "z": -0.0, "big": 1e17, "half": 0.5}});
        let stored = stored.chained(None);
        let mut read = stored.clone();
        read.details = serde_json::json!({"sender": {"v": 2, "z": 0, "big": 100_000_000_000_000_000u64, "half": 0.5}});
        assert_eq!(read.content_hash(), stored.content_hash());
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
