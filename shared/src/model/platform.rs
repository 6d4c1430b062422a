//! The platform block (B15): what Meta's Block Users API holds for one
//! person and one business number, and how a block shows it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Block, PhoneNumberId, Scope, time_format};

/// Where the mirror of a block at Meta stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformStatus {
    /// Meta does not hold the person blocked, and nothing asks it to: the
    /// business number's `platform_block` is off, or no block covers it.
    Off,
    /// Meta holds the person blocked on the business number.
    Blocked,
    /// Waiting for the person to write: Meta only accepts persons who wrote
    /// in the last 24 hours.
    Pending,
    /// Meta refused; `error` says why.
    Failed,
}

/// The platform state of one person on one business number: `state`,
/// Meta's error (the per-user entry of `failed_users`, or the request's
/// error) when it refused, and when it was last decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformState {
    pub state: PlatformStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(with = "time_format")]
    pub at: DateTime<Utc>,
}

/// Graph error codes that say "try again later", not "no": rate limits
/// (130429 throughput, 80007 account, 4 application), temporary errors (1,
/// 2), Meta's own failures (131000, 131016), and what the operator fixes
/// rather than the person: an expired or wrong token (190), a missing
/// permission (10, 200–299) or capability (3).
const TRANSIENT_CODES: [i64; 10] = [1, 2, 3, 4, 10, 190, 80007, 130429, 131000, 131016];

/// Whether a refusal may pass by itself or by the operator's fix, rather
/// than stand for this person: one of [`TRANSIENT_CODES`], no code at all
/// (no answer, or one that could not be read), or an HTTP status that says
/// so (5xx, 429, 401, 403).
pub fn is_transient(http_status: Option<u16>, code: Option<i64>) -> bool {
    let by_code = code.is_none_or(|c| TRANSIENT_CODES.contains(&c) || (200..300).contains(&c));
    let by_status = http_status.is_some_and(|s| s >= 500 || matches!(s, 401 | 403 | 429));
    by_code || by_status
}

/// Meta's per-user error for a person who has not written in the last 24
/// hours: the mirror waits for their next message.
pub const OUTSIDE_WINDOW: i64 = 131047;

/// Meta's error when the business number's block list holds 64,000 users.
pub const LIST_FULL: i64 = 139101;

impl PlatformState {
    pub fn new(state: PlatformStatus, error: Option<Value>, at: DateTime<Utc>) -> Self {
        PlatformState { state, error, at }
    }

    /// The code of Meta's error, if it gave one.
    pub fn error_code(&self) -> Option<i64> {
        self.error
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(Value::as_i64)
    }

    /// A refusal to block that may pass ([`is_transient`]): asked again by
    /// the retry sweep and when the person writes again. Every other
    /// refusal stands until a newer block asks again (never retried in a
    /// loop).
    pub fn is_transient_failure(&self) -> bool {
        self.state == PlatformStatus::Failed && self.error_is_transient()
    }

    fn error_is_transient(&self) -> bool {
        let status = self
            .error
            .as_ref()
            .and_then(|e| e.get("http_status"))
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok());
        is_transient(status, self.error_code())
    }

    /// Meta still holds the person although they should be unblocked: an
    /// unblock that failed, asked again by the retry sweep until it
    /// succeeds (a person must not stay blocked at Meta after an unblock).
    pub fn is_failed_unblock(&self) -> bool {
        self.state == PlatformStatus::Blocked && self.error.is_some()
    }

    /// Whether the retry sweep must ask Meta again, with no event to
    /// trigger it.
    pub fn is_retry_due(&self) -> bool {
        self.is_transient_failure() || self.is_failed_unblock()
    }
}

/// How a block shows its platform state: for a block of one business
/// number, that number's state; for a block of every number (`all`), the
/// state of each business number the person has a chat with (`numbers`),
/// summed up as the one that needs attention first (failed, then pending,
/// then blocked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformView {
    #[serde(flatten)]
    pub summary: PlatformState,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub numbers: BTreeMap<String, PlatformState>,
}

impl PlatformView {
    /// The view of `block`: `chats_with` are the business numbers the
    /// person wrote to or was written to from, `enabled` whether a business
    /// number has `platform_block` on, `mirrors` the stored states.
    pub fn of(
        block: &Block,
        chats_with: &[PhoneNumberId],
        enabled: impl Fn(&PhoneNumberId) -> bool,
        mirrors: &BTreeMap<PhoneNumberId, PlatformState>,
    ) -> PlatformView {
        // Every number of a chat, and every number Meta was asked about
        // (a person blocked before they ever chatted is mirrored at a
        // suppressed message, which opens no chat).
        let numbers: Vec<PhoneNumberId> = match &block.scope {
            Scope::All => chats_with
                .iter()
                .chain(mirrors.keys())
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            Scope::Business(id) => vec![id.clone()],
        };
        let off = PlatformState::new(PlatformStatus::Off, None, block.blocked_at);
        let states: BTreeMap<String, PlatformState> = numbers
            .iter()
            .map(|number| {
                let state = match (enabled(number), mirrors.get(number)) {
                    (false, Some(held)) if held.state == PlatformStatus::Blocked => held.clone(),
                    (false, _) => off.clone(),
                    (true, Some(held)) if held.state != PlatformStatus::Off => held.clone(),
                    (true, _) => {
                        PlatformState::new(PlatformStatus::Pending, None, block.blocked_at)
                    }
                };
                (number.to_string(), state)
            })
            .collect();
        let summary = states
            .values()
            .max_by_key(|s| (s.state, s.at))
            .cloned()
            .unwrap_or(off);
        PlatformView {
            summary,
            numbers: if block.scope == Scope::All {
                states
            } else {
                BTreeMap::new()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Subject;
    use crate::model::{Reason, Source};
    use serde_json::json;

    fn block(scope: Scope) -> Block {
        Block {
            subject: Subject::parse("+16505551234").unwrap(),
            scope,
            reason: Reason::parse("spam").unwrap(),
            source: Source::Manual,
            reason_code: None,
            actor: "ops".into(),
            client: None,
            blocked_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            expires_at: None,
            version: 1,
            review_due_at: None,
            rule: None,
        }
    }

    fn id(raw: &str) -> PhoneNumberId {
        PhoneNumberId::parse(raw).unwrap()
    }

    #[test]
    fn b15_a_block_of_every_number_sums_up_the_worst_state() {
        let at: DateTime<Utc> = "2026-01-02T00:00:00Z".parse().unwrap();
        let mirrors = BTreeMap::from([
            (
                id("111"),
                PlatformState::new(PlatformStatus::Blocked, None, at),
            ),
            (
                id("222"),
                PlatformState::new(PlatformStatus::Failed, Some(json!({"code": LIST_FULL})), at),
            ),
        ]);
        let view = PlatformView::of(
            &block(Scope::All),
            &[id("111"), id("222"), id("333")],
            |n| n.as_str() != "333",
            &mirrors,
        );
        assert_eq!(view.summary.state, PlatformStatus::Failed);
        assert_eq!(view.numbers["111"].state, PlatformStatus::Blocked);
        assert_eq!(view.numbers["333"].state, PlatformStatus::Off);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["state"], "failed");
        assert_eq!(json["error"]["code"], LIST_FULL);
    }

    #[test]
    fn b15_a_block_of_one_number_is_pending_until_mirrored_and_off_when_disabled() {
        let scoped = block(Scope::Business(id("111")));
        let none = BTreeMap::new();
        let pending = PlatformView::of(&scoped, &[], |_| true, &none);
        assert_eq!(pending.summary.state, PlatformStatus::Pending);
        assert!(pending.numbers.is_empty());
        let off = PlatformView::of(&scoped, &[], |_| false, &none);
        assert_eq!(off.summary.state, PlatformStatus::Off);
    }

    #[test]
    fn b15_only_rate_limits_and_meta_outages_are_transient() {
        let at = Utc::now();
        let failed = |error| PlatformState::new(PlatformStatus::Failed, error, at);
        assert!(failed(Some(json!({"code": 130429}))).is_transient_failure());
        assert!(
            failed(Some(json!({"code": 190}))).is_transient_failure(),
            "token"
        );
        assert!(failed(Some(json!({"http_status": 503}))).is_transient_failure());
        assert!(failed(None).is_transient_failure());
        assert!(!failed(Some(json!({"code": LIST_FULL}))).is_transient_failure());
        assert!(!failed(Some(json!({"code": 131026}))).is_transient_failure());
        let pending = PlatformState::new(PlatformStatus::Pending, None, at);
        assert!(!pending.is_transient_failure());
        assert!(!pending.is_retry_due());
        let unblock_failed =
            PlatformState::new(PlatformStatus::Blocked, Some(json!({"code": 1})), at);
        assert!(unblock_failed.is_retry_due());
        assert!(!PlatformState::new(PlatformStatus::Blocked, None, at).is_retry_due());
    }

    #[test]
    fn b15_a_block_of_every_number_shows_numbers_meta_was_asked_about_without_a_chat() {
        let at: DateTime<Utc> = "2026-01-02T00:00:00Z".parse().unwrap();
        let mirrors = BTreeMap::from([(
            id("444"),
            PlatformState::new(PlatformStatus::Blocked, None, at),
        )]);
        let view = PlatformView::of(&block(Scope::All), &[], |_| true, &mirrors);
        assert_eq!(view.summary.state, PlatformStatus::Blocked);
        assert_eq!(view.numbers["444"].state, PlatformStatus::Blocked);
    }
}
