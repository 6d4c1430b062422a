//! The platform block (B15), decided: for one person and one business
//! number, whether Meta's Block Users API must be asked to block, to
//! unblock, or nothing, and what Meta's answer makes of the stored state.
//! Pure: the `platform-block` function gathers the facts and applies.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::identity::Subject;
use crate::model::{LIST_FULL, OUTSIDE_WINDOW, PhoneNumberId, PlatformState, PlatformStatus};

/// Meta only blocks persons who wrote within this window.
pub const WINDOW: Duration = Duration::hours(24);

/// Meta takes at most this many users per Block Users request.
pub const MAX_USERS_PER_REQUEST: usize = 1000;

/// One recorded state: the person, the business number, and Meta's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformMirror {
    pub subject: Subject,
    pub phone_number_id: PhoneNumberId,
    pub state: PlatformState,
}

/// What is known about one person and one business number.
#[derive(Debug, Clone)]
pub struct MirrorFacts<'a> {
    /// The business number's `platform_block` setting.
    pub enabled: bool,
    /// An active block of the person covers the business number.
    pub covered: bool,
    /// What Meta holds, as last recorded.
    pub current: Option<&'a PlatformState>,
    /// When the person last wrote to the business number, as far as known
    /// (their chat, or a message suppressed in the events at hand).
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// The events at hand changed the person's blocks (a block, unblock,
    /// expiry, edit or carried identity), rather than only showing a
    /// message they wrote.
    pub blocks_changed: bool,
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
/// - A refusal that stands (anything but a rate limit or an outage) is not
///   asked again because the person keeps writing: only a change of their
///   blocks asks again. So a flood from a person Meta will not block costs
///   no Graph calls.
/// - A person Meta holds who is no longer covered is unblocked there, also
///   where the setting was switched off meanwhile (it stops new mirrors; it
///   does not leave people blocked at Meta after their unblock here).
pub fn decide(facts: &MirrorFacts<'_>, now: DateTime<Utc>) -> MirrorStep {
    let current = facts
        .current
        .map(|c| c.state)
        .unwrap_or(PlatformStatus::Off);
    if !facts.covered {
        return match current {
            PlatformStatus::Blocked => MirrorStep::Unblock,
            PlatformStatus::Pending | PlatformStatus::Failed => {
                MirrorStep::Record(PlatformState::new(PlatformStatus::Off, None, now))
            }
            PlatformStatus::Off => MirrorStep::Nothing,
        };
    }
    if !facts.enabled {
        return MirrorStep::Nothing;
    }
    match current {
        PlatformStatus::Blocked => return MirrorStep::Nothing,
        PlatformStatus::Failed
            if !facts.blocks_changed
                && !facts.current.is_some_and(|c| c.is_transient_failure()) =>
        {
            return MirrorStep::Nothing;
        }
        _ => {}
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

/// The bodies of the requests for `subjects`: at most
/// [`MAX_USERS_PER_REQUEST`] users each.
pub fn request_bodies(subjects: &[Subject]) -> Vec<Value> {
    subjects
        .chunks(MAX_USERS_PER_REQUEST)
        .map(|chunk| {
            json!({
                "messaging_product": "whatsapp",
                "block_users": chunk.iter().map(user_entry).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// Meta's answer to one Block Users request, as far as it concerns the
/// users in it.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockUsersAnswer {
    /// Per user: done (`added_users` / `removed_users`) or refused
    /// (`failed_users` with Meta's error). A 200, or a 400 with code 139100
    /// (some failed).
    PerUser {
        done: Vec<String>,
        failed: Vec<(String, Value)>,
    },
    /// The whole request was refused with this error; `transient` when
    /// trying later may succeed (a rate limit, a 5xx, no answer).
    Refused { error: Value, transient: bool },
}

impl BlockUsersAnswer {
    /// Reads Graph's answer: `status` and body.
    pub fn parse(status: u16, body: &[u8]) -> BlockUsersAnswer {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let list = &parsed["block_users"];
        let has_lists = list.is_object();
        let error = parsed.get("error").filter(|e| e.is_object()).cloned();
        let code = error
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(Value::as_i64);
        let per_user = (200..300).contains(&status) || (code == Some(139100) && has_lists);
        if per_user && has_lists {
            let inputs = |key: &str| -> Vec<&Value> {
                list[key]
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default()
            };
            let input_of = |entry: &Value| entry["input"].as_str().map(str::to_owned);
            let mut done: Vec<String> = Vec::new();
            for key in ["added_users", "removed_users"] {
                done.extend(inputs(key).into_iter().filter_map(input_of));
            }
            let failed = inputs("failed_users")
                .into_iter()
                .filter_map(|entry| {
                    let input = input_of(entry)?;
                    let error = entry["errors"]
                        .as_array()
                        .and_then(|errors| errors.first())
                        .cloned()
                        .unwrap_or_else(|| json!({ "message": "refused by Meta" }));
                    Some((input, error))
                })
                .collect();
            return BlockUsersAnswer::PerUser { done, failed };
        }
        let transient = status >= 500
            || status == 429
            || code.is_some_and(|code| {
                PlatformState::new(
                    PlatformStatus::Failed,
                    Some(json!({ "code": code })),
                    Utc::now(),
                )
                .is_transient_failure()
            });
        let error = error.unwrap_or_else(|| {
            json!({ "message": format!("the Graph API answered {status}"), "http_status": status })
        });
        BlockUsersAnswer::Refused { error, transient }
    }
}

/// The state a person is left in after Meta answered a block request
/// (`blocking`) or an unblock request about them.
///
/// - Blocked: `blocked`; Meta's 131047 (not written within 24 hours, by
///   Meta's clock): `pending`, until the person writes again; any other
///   refusal: `failed` with Meta's error.
/// - Unblocked: `off`; refused: still `blocked`, with the error, so the
///   next change of the person's blocks asks again.
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
            PlatformState::new(PlatformStatus::Blocked, Some(error.clone()), now)
        }
    }
}

/// What Meta answered about `subject` in `answer`: the user's own
/// outcome, or the request's error. A user Meta's answer leaves out counts
/// as refused with no code, which is asked again at their next message.
pub fn outcome_of(answer: &BlockUsersAnswer, subject: &Subject) -> Result<(), Value> {
    let input = subject.as_str();
    match answer {
        BlockUsersAnswer::PerUser { done, failed } => {
            if let Some((_, error)) = failed.iter().find(|(i, _)| i == input) {
                Err(error.clone())
            } else if done.iter().any(|i| i == input) {
                Ok(())
            } else {
                Err(json!({ "message": "Meta's answer did not name this user" }))
            }
        }
        BlockUsersAnswer::Refused { error, .. } => Err(error.clone()),
    }
}

/// Is this a list-full refusal (Meta holds 64,000 users for the number)?
pub fn is_list_full(error: &Value) -> bool {
    error.get("code").and_then(Value::as_i64) == Some(LIST_FULL)
}

/// The business numbers a scope covers among those the person has chats
/// with (`all`), or the one it names.
pub fn covered_numbers(
    scope: &crate::model::Scope,
    chats_with: &[PhoneNumberId],
) -> Vec<PhoneNumberId> {
    match scope {
        crate::model::Scope::All => chats_with.to_vec(),
        crate::model::Scope::Business(id) => vec![id.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    fn facts(current: Option<&PlatformState>) -> MirrorFacts<'_> {
        MirrorFacts {
            enabled: true,
            covered: true,
            current,
            last_inbound_at: Some(now() - Duration::hours(1)),
            blocks_changed: true,
        }
    }

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
    fn b15_a_standing_refusal_is_not_asked_again_because_the_person_writes() {
        let full = state(PlatformStatus::Failed, Some(json!({"code": LIST_FULL})));
        let mut wrote = facts(Some(&full));
        wrote.blocks_changed = false;
        assert_eq!(decide(&wrote, now()), MirrorStep::Nothing);
        wrote.blocks_changed = true;
        assert_eq!(
            decide(&wrote, now()),
            MirrorStep::Block,
            "a new block asks again"
        );
        let limited = state(PlatformStatus::Failed, Some(json!({"code": 130429})));
        let mut again = facts(Some(&limited));
        again.blocks_changed = false;
        assert_eq!(
            decide(&again, now()),
            MirrorStep::Block,
            "a rate limit passes"
        );
    }

    #[test]
    fn b15_unblock_and_expiry_remove_what_meta_holds() {
        let blocked = state(PlatformStatus::Blocked, None);
        let mut gone = facts(Some(&blocked));
        gone.covered = false;
        assert_eq!(decide(&gone, now()), MirrorStep::Unblock);
        gone.enabled = false;
        assert_eq!(
            decide(&gone, now()),
            MirrorStep::Unblock,
            "setting off meanwhile"
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
        let bodies = request_bodies(&subjects);
        let sizes: Vec<usize> = bodies
            .iter()
            .map(|b| b["block_users"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        assert_eq!(bodies[0]["messaging_product"], "whatsapp");
        assert_eq!(bodies[0]["block_users"][0], json!({"user": "+16505550000"}));
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
        assert!(
            outcome_of(&answer, &other).is_err(),
            "left out counts as refused"
        );
    }

    #[test]
    fn b15_whole_request_refusals_are_told_apart() {
        let refused =
            |status, body: Value| BlockUsersAnswer::parse(status, body.to_string().as_bytes());
        let full = refused(
            400,
            json!({"error": {"code": LIST_FULL, "message": "list full"}}),
        );
        assert!(matches!(
            full,
            BlockUsersAnswer::Refused {
                transient: false,
                ..
            }
        ));
        let limited = refused(400, json!({"error": {"code": 130429, "message": "rate"}}));
        assert!(matches!(
            limited,
            BlockUsersAnswer::Refused {
                transient: true,
                ..
            }
        ));
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
        let kept = state_after(false, Err(&json!({"code": 1})), now());
        assert_eq!(kept.state, PlatformStatus::Blocked, "Meta still holds them");
    }
}
