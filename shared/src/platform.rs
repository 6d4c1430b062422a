//! The platform block (B15), decided: for one person and one business
//! number, whether Meta's Block Users API must be asked to block, to
//! unblock, or nothing, and what Meta's answer makes of the stored state.
//! Pure: the `platform-block` function gathers the facts and applies.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::identity::Subject;
use crate::model::{
    LIST_FULL, OUTSIDE_WINDOW, PhoneNumberId, PlatformState, PlatformStatus, is_transient,
};

/// Meta only blocks persons who wrote within this window.
pub const WINDOW: Duration = Duration::hours(24);

/// Meta takes at most this many users per Block Users request.
pub const MAX_USERS_PER_REQUEST: usize = 1000;

/// One recorded state: the person, the business number, Meta's side, and
/// the latest time the person was known to write there (kept so that the
/// retry sweep, which has no message at hand, can still tell whether Meta
/// would accept them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformMirror {
    pub subject: Subject,
    pub phone_number_id: PhoneNumberId,
    pub state: PlatformState,
    pub wrote_at: Option<DateTime<Utc>>,
}

/// What is known about one person and one business number.
#[derive(Debug, Clone)]
pub struct MirrorFacts<'a> {
    /// The business number's `platform_block` setting.
    pub enabled: bool,
    /// When the newest active block of the person that covers the
    /// business number was made; `None`: no block covers it.
    pub covered_since: Option<DateTime<Utc>>,
    /// What Meta holds, as last recorded.
    pub current: Option<&'a PlatformState>,
    /// When the person last wrote to the business number, as far as known
    /// (their chats, a message suppressed in the events at hand, or what
    /// was recorded with the state).
    pub last_inbound_at: Option<DateTime<Utc>>,
}

/// What to do about one person and one business number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorStep {
    /// `POST /{phone_number_id}/block_users`.
    Block,
    /// `DELETE /{phone_number_id}/block_users`.
    Unblock,
    /// Record this state; no call to Meta.
    Record(PlatformState),
    Nothing,
}

/// B15's decision.
///
/// - A covered person on a number with `platform_block` on is blocked at
///   Meta once they wrote within 24 hours, and otherwise waits (`pending`)
///   for their next message.
/// - A refusal that stands (anything but [`is_transient`]) is not asked
///   again because the person keeps writing or a batch is retried: only a
///   block made after the refusal asks again. So a flood from a person Meta
///   will not block costs no Graph calls.
/// - A person who is no longer covered is unblocked at Meta wherever Meta
///   may hold them (`blocked`, or `failed`, whose answer may have been
///   unclear; unblocking has no 24-hour rule), also where the setting was
///   switched off meanwhile: it stops new mirrors, it does not leave people
///   blocked at Meta after their unblock here.
pub fn decide(facts: &MirrorFacts<'_>, now: DateTime<Utc>) -> MirrorStep {
    let current = facts
        .current
        .map(|c| c.state)
        .unwrap_or(PlatformStatus::Off);
    let Some(covered_since) = facts.covered_since else {
        return match current {
            PlatformStatus::Blocked | PlatformStatus::Failed => MirrorStep::Unblock,
            PlatformStatus::Pending => {
                MirrorStep::Record(PlatformState::new(PlatformStatus::Off, None, now))
            }
            PlatformStatus::Off => MirrorStep::Nothing,
        };
    };
    if facts.current.is_some_and(PlatformState::is_failed_unblock) {
        // Blocked again before a failed unblock went through: Meta holds
        // the person, as it should; nothing is left to retry.
        return MirrorStep::Record(PlatformState::new(PlatformStatus::Blocked, None, now));
    }
    if !facts.enabled || current == PlatformStatus::Blocked {
        return MirrorStep::Nothing;
    }
    if let Some(refused) = facts.current.filter(|c| c.state == PlatformStatus::Failed)
        && !refused.is_transient_failure()
        && covered_since <= refused.at
    {
        return MirrorStep::Nothing;
    }
    let eligible = facts
        .last_inbound_at
        .is_some_and(|at| at > now - WINDOW && at <= now + Duration::minutes(5));
    if eligible {
        return MirrorStep::Block;
    }
    match current {
        PlatformStatus::Pending | PlatformStatus::Failed => MirrorStep::Nothing,
        PlatformStatus::Off | PlatformStatus::Blocked => {
            MirrorStep::Record(PlatformState::new(PlatformStatus::Pending, None, now))
        }
    }
}

/// How Meta names a person in a Block Users request: by number (`user`,
/// E.164 with `+`) or by business-scoped user id (`user_id`).
pub fn user_entry(subject: &Subject) -> Value {
    match subject {
        Subject::Number(_) => json!({ "user": subject.as_str() }),
        Subject::User(_) => json!({ "user_id": subject.as_str() }),
    }
}

/// The requests for `subjects`: at most [`MAX_USERS_PER_REQUEST`] users
/// each, with the users of each.
pub fn requests(subjects: &[Subject]) -> Vec<(Vec<Subject>, Value)> {
    subjects
        .chunks(MAX_USERS_PER_REQUEST)
        .map(|chunk| {
            let body = json!({
                "messaging_product": "whatsapp",
                "block_users": chunk.iter().map(user_entry).collect::<Vec<_>>(),
            });
            (chunk.to_vec(), body)
        })
        .collect()
}

/// Meta's answer to one Block Users request, as far as it concerns the
/// users in it.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockUsersAnswer {
    /// Per user: the entries of `added_users` / `removed_users`, and those
    /// of `failed_users` with Meta's error. A 2xx, or a 400 with code
    /// 139100 (some failed) that carries the lists.
    PerUser {
        done: Vec<Value>,
        failed: Vec<(Value, Value)>,
    },
    /// The whole request was refused with this error; `transient` when
    /// trying later may succeed ([`is_transient`]).
    Refused { error: Value, transient: bool },
}

impl BlockUsersAnswer {
    /// Reads Graph's answer: `status` and body.
    pub fn parse(status: u16, body: &[u8]) -> BlockUsersAnswer {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let list = &parsed["block_users"];
        let error = parsed.get("error").filter(|e| e.is_object()).cloned();
        let code = error
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(Value::as_i64);
        let per_user = (200..300).contains(&status) || code == Some(139100);
        if per_user && list.is_object() {
            let entries =
                |key: &str| -> Vec<Value> { list[key].as_array().cloned().unwrap_or_default() };
            let mut done = entries("added_users");
            done.extend(entries("removed_users"));
            let failed = entries("failed_users")
                .into_iter()
                .map(|entry| {
                    let error = entry["errors"]
                        .as_array()
                        .and_then(|errors| errors.first())
                        .cloned()
                        .unwrap_or_else(|| json!({ "message": "refused by Meta" }));
                    (entry, error)
                })
                .collect();
            return BlockUsersAnswer::PerUser { done, failed };
        }
        // A 139100 without its lists says some users were done and not
        // which: unclear, so asked again.
        let transient = code == Some(139100) || is_transient(Some(status), code);
        let error = error.unwrap_or_else(|| {
            json!({ "message": format!("the Graph API answered {status}"), "http_status": status })
        });
        BlockUsersAnswer::Refused { error, transient }
    }

    /// Whether the request must be asked again as a whole.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BlockUsersAnswer::Refused {
                transient: true,
                ..
            }
        )
    }
}

/// Whether an entry of Meta's lists names `subject`: by the `input` it was
/// asked with, or by the `wa_id` / `user_id` Meta resolved.
fn names(entry: &Value, subject: &Subject) -> bool {
    if entry["input"].as_str() == Some(subject.as_str()) {
        return true;
    }
    match subject {
        Subject::Number(number) => entry["wa_id"].as_str() == Some(number.digits()),
        Subject::User(id) => entry["user_id"].as_str() == Some(id.as_str()),
    }
}

/// What Meta answered about `subject` in `answer`: the user's own
/// outcome, or the request's error. A user Meta's answer leaves out counts
/// as refused with no code: unclear, so asked again.
pub fn outcome_of(answer: &BlockUsersAnswer, subject: &Subject) -> Result<(), Value> {
    match answer {
        BlockUsersAnswer::PerUser { done, failed } => {
            if let Some((_, error)) = failed.iter().find(|(entry, _)| names(entry, subject)) {
                Err(error.clone())
            } else if done.iter().any(|entry| names(entry, subject)) {
                Ok(())
            } else {
                Err(json!({ "message": "Meta's answer did not name this user" }))
            }
        }
        BlockUsersAnswer::Refused { error, .. } => Err(error.clone()),
    }
}

/// The state a person is left in after Meta answered a block request
/// (`blocking`) or an unblock request about them.
///
/// - Blocked: `blocked`; Meta's 131047 (not written within 24 hours, by
///   Meta's clock): `pending`, until the person writes again; any other
///   refusal: `failed` with Meta's error.
/// - Unblocked: `off`; refused for a reason that may pass: still `blocked`,
///   with the error, for the retry sweep; refused for good (e.g. the user is
///   not on the list): `off`, with the error.
pub fn state_after(
    blocking: bool,
    outcome: Result<(), &Value>,
    now: DateTime<Utc>,
) -> PlatformState {
    match (blocking, outcome) {
        (true, Ok(())) => PlatformState::new(PlatformStatus::Blocked, None, now),
        (false, Ok(())) => PlatformState::new(PlatformStatus::Off, None, now),
        (true, Err(error)) => {
            let code = error.get("code").and_then(Value::as_i64);
            let state = if code == Some(OUTSIDE_WINDOW) {
                PlatformStatus::Pending
            } else {
                PlatformStatus::Failed
            };
            PlatformState::new(state, Some(error.clone()), now)
        }
        (false, Err(error)) => {
            let refused = PlatformState::new(PlatformStatus::Failed, Some(error.clone()), now);
            let state = if refused.is_transient_failure() {
                PlatformStatus::Blocked
            } else {
                PlatformStatus::Off
            };
            PlatformState::new(state, Some(error.clone()), now)
        }
    }
}

/// Is this a list-full refusal (Meta holds 64,000 users for the number)?
pub fn is_list_full(error: &Value) -> bool {
    error.get("code").and_then(Value::as_i64) == Some(LIST_FULL)
}

/// The business numbers a person has chats with, by any of their linked
/// identities (the same person to Meta), each once.
pub fn chats_with(chats: &[crate::model::Chat]) -> Vec<PhoneNumberId> {
    let numbers: std::collections::BTreeSet<PhoneNumberId> =
        chats.iter().map(|c| c.phone_number_id.clone()).collect();
    numbers.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    /// Blocked three hours ago; wrote an hour ago.
    fn facts(current: Option<&PlatformState>) -> MirrorFacts<'_> {
        MirrorFacts {
            enabled: true,
            covered_since: Some(now() - Duration::hours(3)),
            current,
            last_inbound_at: Some(now() - Duration::hours(1)),
        }
    }

    /// Recorded two hours ago.
    fn state(status: PlatformStatus, error: Option<Value>) -> PlatformState {
        PlatformState::new(status, error, now() - Duration::hours(2))
    }

    #[test]
    fn b15_a_covered_person_who_wrote_within_24_hours_is_blocked_at_meta() {
        assert_eq!(decide(&facts(None), now()), MirrorStep::Block);
        let pending = state(PlatformStatus::Pending, None);
        assert_eq!(decide(&facts(Some(&pending)), now()), MirrorStep::Block);
        let blocked = state(PlatformStatus::Blocked, None);
        assert_eq!(decide(&facts(Some(&blocked)), now()), MirrorStep::Nothing);
    }

    #[test]
    fn b15_a_person_silent_for_24_hours_waits_for_their_next_message() {
        let mut silent = facts(None);
        silent.last_inbound_at = Some(now() - Duration::hours(25));
        let MirrorStep::Record(recorded) = decide(&silent, now()) else {
            panic!("pending expected");
        };
        assert_eq!(recorded.state, PlatformStatus::Pending);
        silent.last_inbound_at = None;
        let pending = state(PlatformStatus::Pending, None);
        silent.current = Some(&pending);
        assert_eq!(decide(&silent, now()), MirrorStep::Nothing, "recorded once");
    }

    #[test]
    fn b15_a_standing_refusal_is_asked_again_only_for_a_newer_block() {
        let full = state(PlatformStatus::Failed, Some(json!({"code": LIST_FULL})));
        let wrote = facts(Some(&full));
        assert_eq!(
            decide(&wrote, now()),
            MirrorStep::Nothing,
            "the block is older"
        );
        let mut reblocked = facts(Some(&full));
        reblocked.covered_since = Some(now() - Duration::hours(1));
        assert_eq!(
            decide(&reblocked, now()),
            MirrorStep::Block,
            "a new block asks again"
        );
        let limited = state(PlatformStatus::Failed, Some(json!({"code": 130429})));
        assert_eq!(
            decide(&facts(Some(&limited)), now()),
            MirrorStep::Block,
            "a rate limit passes"
        );
    }

    #[test]
    fn b15_unblock_and_expiry_remove_what_meta_may_hold() {
        let blocked = state(PlatformStatus::Blocked, None);
        let mut gone = facts(Some(&blocked));
        gone.covered_since = None;
        assert_eq!(decide(&gone, now()), MirrorStep::Unblock);
        gone.enabled = false;
        assert_eq!(
            decide(&gone, now()),
            MirrorStep::Unblock,
            "setting off meanwhile"
        );
        let unclear = state(PlatformStatus::Failed, None);
        gone.current = Some(&unclear);
        assert_eq!(
            decide(&gone, now()),
            MirrorStep::Unblock,
            "an unclear answer"
        );
        let pending = state(PlatformStatus::Pending, None);
        gone.current = Some(&pending);
        assert!(matches!(
            decide(&gone, now()),
            MirrorStep::Record(PlatformState {
                state: PlatformStatus::Off,
                ..
            })
        ));
        gone.current = None;
        assert_eq!(decide(&gone, now()), MirrorStep::Nothing);
    }

    #[test]
    fn b15_a_failed_unblock_is_retried_until_it_succeeds_or_a_block_covers_again() {
        let held = state(PlatformStatus::Blocked, Some(json!({"code": 2})));
        let mut gone = facts(Some(&held));
        gone.covered_since = None;
        assert_eq!(decide(&gone, now()), MirrorStep::Unblock);
        let again = facts(Some(&held));
        assert_eq!(
            decide(&again, now()),
            MirrorStep::Record(PlatformState::new(PlatformStatus::Blocked, None, now())),
            "covered again: Meta holds them as it should"
        );
    }

    #[test]
    fn b15_nothing_is_mirrored_where_the_setting_is_off() {
        let mut off = facts(None);
        off.enabled = false;
        assert_eq!(decide(&off, now()), MirrorStep::Nothing);
    }

    #[test]
    fn b15_requests_carry_at_most_1000_users_named_as_meta_names_them() {
        let subjects: Vec<Subject> = (0..2500)
            .map(|i| Subject::parse(&format!("+1650555{i:04}")).unwrap())
            .collect();
        let requests = requests(&subjects);
        let sizes: Vec<(usize, usize)> = requests
            .iter()
            .map(|(users, body)| (users.len(), body["block_users"].as_array().unwrap().len()))
            .collect();
        assert_eq!(sizes, vec![(1000, 1000), (1000, 1000), (500, 500)]);
        assert_eq!(requests[0].1["messaging_product"], "whatsapp");
        assert_eq!(
            requests[0].1["block_users"][0],
            json!({"user": "+16505550000"})
        );
        assert_eq!(requests[2].0[0], subjects[2000]);
        let bsuid = Subject::parse("US.13491208655302741918").unwrap();
        assert_eq!(
            user_entry(&bsuid),
            json!({"user_id": "US.13491208655302741918"})
        );
    }

    #[test]
    fn b15_a_partial_failure_is_read_per_user() {
        let body = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/meta/graph-block-users.response.json"
        ));
        let answer = BlockUsersAnswer::parse(400, body);
        let phone = Subject::parse("+16505551234").unwrap();
        let bsuid = Subject::parse("US.13491208655302741918").unwrap();
        assert_eq!(outcome_of(&answer, &phone), Ok(()));
        let error = outcome_of(&answer, &bsuid).unwrap_err();
        assert_eq!(error["code"], OUTSIDE_WINDOW);
        let after = state_after(true, Err(&error), now());
        assert_eq!(
            after.state,
            PlatformStatus::Pending,
            "131047 waits for a message"
        );
        let other = Subject::parse("+16505559999").unwrap();
        let unnamed = outcome_of(&answer, &other).unwrap_err();
        assert!(
            state_after(true, Err(&unnamed), now()).is_transient_failure(),
            "left out: unclear, asked again"
        );
    }

    #[test]
    fn b15_users_are_matched_by_what_meta_resolved_too() {
        let answer = BlockUsersAnswer::parse(
            200,
            json!({"block_users": {"added_users": [{"input": "16505551234", "wa_id": "16505551234"}],
                                   "failed_users": [{"user_id": "US.1", "errors": [{"code": 100}]}]}})
            .to_string()
            .as_bytes(),
        );
        let phone = Subject::parse("+16505551234").unwrap();
        assert_eq!(outcome_of(&answer, &phone), Ok(()));
        let bsuid = Subject::parse("US.1").unwrap();
        assert_eq!(outcome_of(&answer, &bsuid).unwrap_err()["code"], 100);
    }

    #[test]
    fn b15_whole_request_refusals_are_told_apart() {
        let refused =
            |status, body: Value| BlockUsersAnswer::parse(status, body.to_string().as_bytes());
        let full = refused(
            400,
            json!({"error": {"code": LIST_FULL, "message": "list full"}}),
        );
        assert!(!full.is_transient());
        let limited = refused(400, json!({"error": {"code": 130429, "message": "rate"}}));
        assert!(limited.is_transient());
        let token = refused(401, json!({"error": {"code": 190, "message": "expired"}}));
        assert!(token.is_transient(), "the operator fixes the token");
        let listless = refused(
            400,
            json!({"error": {"code": 139100, "message": "some failed"}}),
        );
        assert!(listless.is_transient(), "139100 without lists is unclear");
        let outage = BlockUsersAnswer::parse(503, b"<html>");
        let BlockUsersAnswer::Refused { error, transient } = outage else {
            panic!("refused expected");
        };
        assert!(transient);
        assert_eq!(error["http_status"], 503);
        let removed = refused(
            200,
            json!({"block_users": {"removed_users": [{"input": "+16505551234"}]}}),
        );
        let phone = Subject::parse("+16505551234").unwrap();
        assert_eq!(outcome_of(&removed, &phone), Ok(()));
    }

    #[test]
    fn b15_a_refused_unblock_keeps_the_person_blocked_only_while_it_may_pass() {
        let kept = state_after(false, Err(&json!({"code": 1})), now());
        assert_eq!(kept.state, PlatformStatus::Blocked, "Meta still holds them");
        assert!(kept.is_retry_due());
        let not_held = state_after(
            false,
            Err(&json!({"code": 100, "message": "not blocked"})),
            now(),
        );
        assert_eq!(not_held.state, PlatformStatus::Off);
        assert!(!not_held.is_retry_due());
    }
}
