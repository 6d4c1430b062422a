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
/// 2) and Meta's own failures (131000, 131016).
const TRANSIENT_CODES: [i64; 7] = [1, 2, 4, 80007, 130429, 131000, 131016];

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

    /// A refusal that may pass by itself (a rate limit, Meta unavailable,
    /// no answer): worth another attempt when the person writes again.
    /// Every other refusal stands until the block changes (never retried in
    /// a loop).
    pub fn is_transient_failure(&self) -> bool {
        self.state == PlatformStatus::Failed
            && self
                .error_code()
                .is_none_or(|code| TRANSIENT_CODES.contains(&code))
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
        let numbers: Vec<PhoneNumberId> = match &block.scope {
            Scope::All => chats_with.to_vec(),
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
        assert!(failed(None).is_transient_failure());
        assert!(!failed(Some(json!({"code": LIST_FULL}))).is_transient_failure());
        assert!(!failed(Some(json!({"code": 131026}))).is_transient_failure());
        let pending = PlatformState::new(PlatformStatus::Pending, None, at);
        assert!(!pending.is_transient_failure());
    }
}
