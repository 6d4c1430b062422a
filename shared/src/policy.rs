//! The pure decisions: facts in, decision out. No I/O, no clock, no AWS types.
//!
//! A change to a number is described as a [`NumberChange`]: everything that
//! must be written together (B3). The store applies it in one transaction,
//! guarded by the number's version, so a decision taken on stale facts is
//! rejected and taken again on fresh ones.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::model::{
    Action, Actor, AuditEvent, Block, Chat, ChatStatus, Contact, PhoneNumberId, Reason, Scope,
    SessionStatus, Source, StatCounter,
};
use crate::number::Number;

/// What the store holds about one number, read consistently.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberRecord {
    pub number: Number,
    /// Version of the number's state; 0 when nothing was ever written.
    pub version: u64,
    /// Every stored block, expired ones included (they stay until replaced
    /// or removed, and stay counted in `currently_blocked` until then).
    pub blocks: Vec<Block>,
    pub contact: Option<Contact>,
    pub chats: Vec<Chat>,
    /// When the number was last unblocked: failures before it no longer
    /// count towards an automatic block.
    pub last_unblocked_at: Option<DateTime<Utc>>,
}

impl NumberRecord {
    pub fn empty(number: Number) -> Self {
        NumberRecord {
            number,
            version: 0,
            blocks: vec![],
            contact: None,
            chats: vec![],
            last_unblocked_at: None,
        }
    }
}

/// A request to block a number, validated.
#[derive(Debug, Clone)]
pub struct BlockCommand {
    pub scope: Scope,
    pub reason: Reason,
    pub source: Source,
    pub reason_code: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Contact to create or update in the same change (B1).
    pub contact: Option<Contact>,
    /// Extra facts for the audit event (e.g. the message id behind an
    /// auto-block).
    pub details: serde_json::Value,
}

/// The new status of one chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatUpdate {
    pub phone_number_id: PhoneNumberId,
    pub status: ChatStatus,
    pub session_status: Option<SessionStatus>,
    pub known_contact: bool,
}

/// Everything one change writes, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberChange {
    pub number: Number,
    /// The version the decision was taken on; the write fails if it moved.
    pub expected_version: u64,
    pub put_block: Option<Block>,
    pub remove_block: Option<Block>,
    /// The contact to write, when it changes.
    pub put_contact: Option<Contact>,
    /// The contact as it will be after the change (for search fields).
    pub contact_after: Option<Contact>,
    /// Blocks that stay but whose search fields follow a contact change.
    pub reindex_blocks: Vec<Block>,
    /// Active scopes after the change.
    pub scopes_after: Vec<Scope>,
    pub events: Vec<AuditEvent>,
    pub chats: Vec<ChatUpdate>,
    pub counters: Vec<StatCounter>,
    /// +1 when the number gets its first stored block, -1 when its last
    /// one goes (the `currently_blocked` count).
    pub blocked_numbers_delta: i64,
    /// Kept on the number's state: when it was last unblocked.
    pub unblocked_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

impl NumberChange {
    fn new(record: &NumberRecord, at: DateTime<Utc>) -> Self {
        NumberChange {
            number: record.number.clone(),
            expected_version: record.version,
            put_block: None,
            remove_block: None,
            put_contact: None,
            contact_after: record.contact.clone(),
            reindex_blocks: vec![],
            scopes_after: vec![],
            events: vec![],
            chats: vec![],
            counters: vec![],
            blocked_numbers_delta: 0,
            unblocked_at: record.last_unblocked_at,
            at,
        }
    }
}

/// The outcome of deciding a block.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockDecision {
    /// Blocked already in that scope: answer with the existing block. A
    /// contact sent with the call may still need writing.
    AlreadyBlocked {
        existing: Block,
        change: Option<NumberChange>,
    },
    Create {
        block: Block,
        change: NumberChange,
    },
}

/// B1, B3, B42: block `record.number` in `command.scope`.
pub fn decide_block(
    record: &NumberRecord,
    command: BlockCommand,
    actor: &Actor,
    now: DateTime<Utc>,
) -> BlockDecision {
    let contact_change = command
        .contact
        .as_ref()
        .filter(|c| record.contact.as_ref() != Some(*c))
        .cloned();

    // An automatic block also stands down where a permanent block in `all`
    // already covers its business number: it would add nothing but noise
    // (B42). Under a temporary one it still applies, so the number stays
    // blocked when the temporary block ends.
    let covers = |b: &&Block| {
        b.is_active(now)
            && (b.scope == command.scope
                || (command.source == Source::Auto
                    && b.scope == Scope::All
                    && b.expires_at.is_none()))
    };
    if let Some(existing) = record.blocks.iter().find(covers) {
        // Idempotent: no second block, no second audit event (B1). An
        // automatic block never replaces what is there (B42).
        let change = contact_change.map(|contact| contact_change_for(record, contact, actor, now));
        return BlockDecision::AlreadyBlocked {
            existing: existing.clone(),
            change,
        };
    }

    let block = Block {
        number: record.number.clone(),
        scope: command.scope.clone(),
        reason: command.reason.clone(),
        source: command.source,
        reason_code: command.reason_code.clone(),
        actor: actor.actor.clone(),
        client: actor.client.clone(),
        blocked_at: now,
        expires_at: command.expires_at,
        version: 1,
    };

    let mut change = NumberChange::new(record, now);
    // An expired block in the same scope is replaced by the new one.
    let remaining: Vec<&Block> = record
        .blocks
        .iter()
        .filter(|b| b.scope != command.scope)
        .collect();
    change.scopes_after = remaining
        .iter()
        .map(|b| b.scope.clone())
        .chain([command.scope.clone()])
        .collect();
    if let Some(contact) = contact_change {
        change
            .events
            .push(contact_event(record, &contact, actor, now));
        change.put_contact = Some(contact.clone());
        change.contact_after = Some(contact);
        change.reindex_blocks = remaining.iter().map(|b| (*b).clone()).collect();
    }
    let (action, counter) = if command.source == Source::Auto {
        (Action::AutoBlocked, StatCounter::AutoBlocked)
    } else {
        (Action::Blocked, StatCounter::Blocked)
    };
    let mut details = json!({ "after": block });
    merge_details(&mut details, &command.details);
    change.events.push(AuditEvent {
        event_id: AuditEvent::new_id(now),
        number: Some(record.number.clone()),
        scope: Some(command.scope.to_string()),
        action,
        actor: actor.actor.clone(),
        client: actor.client.clone(),
        reason: Some(command.reason.as_str().to_owned()),
        source: Some(command.source.as_str().to_owned()),
        at: now,
        details,
    });
    change.counters.push(counter);
    if record.blocks.is_empty() {
        change.blocked_numbers_delta = 1;
    }
    // The number is a known contact once the change writes its contact.
    let change_has_contact = record.contact.is_some() || change.put_contact.is_some();
    change.chats = record
        .chats
        .iter()
        .filter(|chat| command.scope.covers(&chat.phone_number_id))
        .filter_map(|chat| {
            let session = match chat.session_status {
                Some(SessionStatus::Open) => Some(SessionStatus::Cancelled),
                other => other,
            };
            (chat.status != ChatStatus::Blocked || session != chat.session_status).then(|| {
                ChatUpdate {
                    phone_number_id: chat.phone_number_id.clone(),
                    status: ChatStatus::Blocked,
                    session_status: session,
                    known_contact: chat.known_contact || change_has_contact,
                }
            })
        })
        .collect();
    change.put_block = Some(block.clone());
    BlockDecision::Create { block, change }
}

/// B2, B3: unblock `record.number` in `scope`. `None` when nothing is blocked
/// there.
pub fn decide_unblock(
    record: &NumberRecord,
    scope: &Scope,
    reason: &Reason,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Option<(Block, NumberChange)> {
    // An expired block can still be removed explicitly.
    let removed = record.blocks.iter().find(|b| &b.scope == scope)?.clone();
    let remaining: Vec<&Block> = record.blocks.iter().filter(|b| &b.scope != scope).collect();

    let mut change = NumberChange::new(record, now);
    change.unblocked_at = Some(now);
    change.scopes_after = remaining.iter().map(|b| b.scope.clone()).collect();
    change.events.push(AuditEvent {
        event_id: AuditEvent::new_id(now),
        number: Some(record.number.clone()),
        scope: Some(scope.to_string()),
        action: Action::Unblocked,
        actor: actor.actor.clone(),
        client: actor.client.clone(),
        reason: Some(reason.as_str().to_owned()),
        source: Some(removed.source.as_str().to_owned()),
        at: now,
        details: json!({ "before": removed }),
    });
    change.counters.push(StatCounter::Unblocked);
    if remaining.is_empty() {
        change.blocked_numbers_delta = -1;
    }
    // A chat stays blocked while another block still covers it.
    change.chats = record
        .chats
        .iter()
        .filter(|chat| scope.covers(&chat.phone_number_id))
        .filter(|chat| chat.status == ChatStatus::Blocked)
        .filter(|chat| {
            !remaining
                .iter()
                .any(|b| b.is_active(now) && b.scope.covers(&chat.phone_number_id))
        })
        .map(|chat| ChatUpdate {
            phone_number_id: chat.phone_number_id.clone(),
            status: ChatStatus::Active,
            session_status: chat.session_status,
            known_contact: chat.known_contact || record.contact.is_some(),
        })
        .collect();
    change.remove_block = Some(removed.clone());
    Some((removed, change))
}

/// B10: create or replace the contact of a number. `None` when unchanged.
pub fn decide_contact(
    record: &NumberRecord,
    contact: Contact,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Option<NumberChange> {
    (record.contact.as_ref() != Some(&contact))
        .then(|| contact_change_for(record, contact, actor, now))
}

fn contact_change_for(
    record: &NumberRecord,
    contact: Contact,
    actor: &Actor,
    now: DateTime<Utc>,
) -> NumberChange {
    let mut change = NumberChange::new(record, now);
    change.scopes_after = record.blocks.iter().map(|b| b.scope.clone()).collect();
    change
        .events
        .push(contact_event(record, &contact, actor, now));
    change.reindex_blocks = record.blocks.clone();
    change.put_contact = Some(contact.clone());
    change.contact_after = Some(contact);
    // Chats learn that the number is now a known contact (B32 reads the
    // contact itself; the flag is what the chat views show).
    change.chats = record
        .chats
        .iter()
        .filter(|chat| !chat.known_contact)
        .map(|chat| ChatUpdate {
            phone_number_id: chat.phone_number_id.clone(),
            status: chat.status,
            session_status: chat.session_status,
            known_contact: true,
        })
        .collect();
    change
}

fn contact_event(
    record: &NumberRecord,
    contact: &Contact,
    actor: &Actor,
    now: DateTime<Utc>,
) -> AuditEvent {
    AuditEvent {
        event_id: AuditEvent::new_id(now),
        number: Some(record.number.clone()),
        scope: None,
        action: Action::ContactUpdated,
        actor: actor.actor.clone(),
        client: actor.client.clone(),
        reason: None,
        source: None,
        at: now,
        details: json!({ "before": record.contact, "after": contact }),
    }
}

fn merge_details(into: &mut serde_json::Value, extra: &serde_json::Value) {
    if let (Some(into), Some(extra)) = (into.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            into.insert(k.clone(), v.clone());
        }
    }
}

/// The block that stops traffic between `business` and the number, if any
/// (B23, B31): a block in that business number's scope or in `all`.
pub fn blocking_block<'a>(
    blocks: &'a [Block],
    business: &PhoneNumberId,
    now: DateTime<Utc>,
) -> Option<&'a Block> {
    blocks
        .iter()
        .find(|b| b.is_active(now) && b.scope.covers(business))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn number() -> Number {
        Number::parse("+16505551234").unwrap()
    }

    fn pnid(id: &str) -> PhoneNumberId {
        PhoneNumberId::parse(id).unwrap()
    }

    fn chat(id: &str, status: ChatStatus, session: Option<SessionStatus>) -> Chat {
        Chat {
            phone_number_id: pnid(id),
            number: number(),
            status,
            session_status: session,
            last_inbound_at: None,
            last_outbound_at: None,
            known_contact: false,
        }
    }

    fn command(scope: Scope) -> BlockCommand {
        BlockCommand {
            scope,
            reason: Reason::parse("spam").unwrap(),
            source: Source::Manual,
            reason_code: None,
            expires_at: None,
            contact: None,
            details: json!({}),
        }
    }

    fn actor() -> Actor {
        Actor {
            actor: "agent-7".into(),
            client: Some("crm".into()),
        }
    }

    fn blocked_record(scopes: &[Scope]) -> NumberRecord {
        let mut record = NumberRecord::empty(number());
        record.version = 3;
        for scope in scopes {
            match decide_block(&record, command(scope.clone()), &actor(), now()) {
                BlockDecision::Create { block, .. } => record.blocks.push(block),
                other => panic!("unexpected {other:?}"),
            }
        }
        record
    }

    #[test]
    fn b1_b3_block_writes_block_event_counter_and_cancels_open_sessions() {
        let mut record = NumberRecord::empty(number());
        record.chats = vec![
            chat("111", ChatStatus::Active, Some(SessionStatus::Open)),
            chat("222", ChatStatus::Active, Some(SessionStatus::Closed)),
        ];
        let BlockDecision::Create { block, change } =
            decide_block(&record, command(Scope::All), &actor(), now())
        else {
            panic!("expected a new block");
        };
        assert_eq!(block.actor, "agent-7");
        assert_eq!(block.client.as_deref(), Some("crm"));
        assert_eq!(change.events.len(), 1);
        assert_eq!(change.events[0].action, Action::Blocked);
        assert_eq!(change.counters, vec![StatCounter::Blocked]);
        assert_eq!(change.blocked_numbers_delta, 1);
        assert_eq!(change.expected_version, 0);
        assert_eq!(
            change.chats,
            vec![
                ChatUpdate {
                    phone_number_id: pnid("111"),
                    status: ChatStatus::Blocked,
                    session_status: Some(SessionStatus::Cancelled),
                    known_contact: false,
                },
                ChatUpdate {
                    phone_number_id: pnid("222"),
                    status: ChatStatus::Blocked,
                    session_status: Some(SessionStatus::Closed),
                    known_contact: false,
                },
            ]
        );
    }

    #[test]
    fn b3_scoped_block_touches_only_that_business_numbers_chat() {
        let mut record = NumberRecord::empty(number());
        record.chats = vec![
            chat("111", ChatStatus::Active, None),
            chat("222", ChatStatus::Active, None),
        ];
        let BlockDecision::Create { change, .. } = decide_block(
            &record,
            command(Scope::Business(pnid("222"))),
            &actor(),
            now(),
        ) else {
            panic!()
        };
        assert_eq!(change.chats.len(), 1);
        assert_eq!(change.chats[0].phone_number_id, pnid("222"));
    }

    #[test]
    fn b1_block_in_same_scope_is_idempotent() {
        let record = blocked_record(&[Scope::All]);
        match decide_block(&record, command(Scope::All), &actor(), now()) {
            BlockDecision::AlreadyBlocked { existing, change } => {
                assert_eq!(existing.scope, Scope::All);
                assert!(change.is_none(), "no second audit event");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn second_scope_does_not_count_the_number_twice() {
        let record = blocked_record(&[Scope::All]);
        let BlockDecision::Create { change, .. } = decide_block(
            &record,
            command(Scope::Business(pnid("5"))),
            &actor(),
            now(),
        ) else {
            panic!()
        };
        assert_eq!(change.blocked_numbers_delta, 0);
        assert_eq!(change.expected_version, 3);
        assert_eq!(change.scopes_after.len(), 2);
    }

    #[test]
    fn b42_auto_block_never_replaces_a_manual_block() {
        let record = blocked_record(&[Scope::All]);
        let mut auto = command(Scope::All);
        auto.source = Source::Auto;
        assert!(matches!(
            decide_block(&record, auto, &Actor::system("wa-blocked"), now()),
            BlockDecision::AlreadyBlocked { change: None, .. }
        ));
    }

    #[test]
    fn b42_auto_block_stands_down_under_a_block_for_all() {
        let record = blocked_record(&[Scope::All]);
        let mut auto = command(Scope::Business(pnid("111")));
        auto.source = Source::Auto;
        assert!(matches!(
            decide_block(&record, auto, &Actor::system("wa-blocked"), now()),
            BlockDecision::AlreadyBlocked { change: None, .. }
        ));
        // A manual block in a business scope is still its own block.
        assert!(matches!(
            decide_block(
                &record,
                command(Scope::Business(pnid("111"))),
                &actor(),
                now()
            ),
            BlockDecision::Create { .. }
        ));
    }

    #[test]
    fn auto_block_is_recorded_as_auto_blocked() {
        let mut auto = command(Scope::All);
        auto.source = Source::Auto;
        auto.details = json!({"message_id": "wamid.X"});
        let BlockDecision::Create { change, .. } = decide_block(
            &NumberRecord::empty(number()),
            auto,
            &Actor::system("wa-blocked"),
            now(),
        ) else {
            panic!()
        };
        assert_eq!(change.events[0].action, Action::AutoBlocked);
        assert_eq!(change.events[0].details["message_id"], "wamid.X");
        assert_eq!(change.counters, vec![StatCounter::AutoBlocked]);
    }

    #[test]
    fn b1_contact_sent_with_a_block_is_written_in_the_same_change() {
        let contact = Contact {
            number: number(),
            name: Some("Sheena".into()),
            email: None,
            category: Some("vip".into()),
            groups: vec!["a".into()],
            secondary_numbers: vec![],
        };
        let mut cmd = command(Scope::All);
        cmd.contact = Some(contact.clone());
        let BlockDecision::Create { change, .. } =
            decide_block(&NumberRecord::empty(number()), cmd, &actor(), now())
        else {
            panic!()
        };
        assert_eq!(change.put_contact, Some(contact));
        let actions: Vec<Action> = change.events.iter().map(|e| e.action).collect();
        assert_eq!(actions, vec![Action::ContactUpdated, Action::Blocked]);
    }

    #[test]
    fn b2_unblock_restores_chats_not_covered_by_another_block() {
        let mut record = blocked_record(&[Scope::All, Scope::Business(pnid("222"))]);
        record.chats = vec![
            chat("111", ChatStatus::Blocked, Some(SessionStatus::Cancelled)),
            chat("222", ChatStatus::Blocked, None),
        ];
        let (removed, change) = decide_unblock(
            &record,
            &Scope::All,
            &Reason::parse("ok").unwrap(),
            &actor(),
            now(),
        )
        .unwrap();
        assert_eq!(removed.scope, Scope::All);
        assert_eq!(change.blocked_numbers_delta, 0, "still blocked on 222");
        assert_eq!(change.chats.len(), 1);
        assert_eq!(change.chats[0].phone_number_id, pnid("111"));
        assert_eq!(change.chats[0].status, ChatStatus::Active);
        assert_eq!(change.events[0].action, Action::Unblocked);
    }

    #[test]
    fn b2_unblock_of_last_block_uncounts_the_number() {
        let record = blocked_record(&[Scope::All]);
        let (_, change) = decide_unblock(
            &record,
            &Scope::All,
            &Reason::parse("ok").unwrap(),
            &actor(),
            now(),
        )
        .unwrap();
        assert_eq!(change.blocked_numbers_delta, -1);
        assert_eq!(change.counters, vec![StatCounter::Unblocked]);
    }

    #[test]
    fn b2_unblock_without_block_is_none() {
        let record = blocked_record(&[Scope::Business(pnid("9"))]);
        assert!(
            decide_unblock(
                &record,
                &Scope::All,
                &Reason::parse("x").unwrap(),
                &actor(),
                now()
            )
            .is_none()
        );
    }

    #[test]
    fn b23_blocking_block_honours_scope_and_expiry() {
        let mut record = blocked_record(&[Scope::Business(pnid("222"))]);
        assert!(blocking_block(&record.blocks, &pnid("222"), now()).is_some());
        assert!(blocking_block(&record.blocks, &pnid("111"), now()).is_none());
        record.blocks[0].expires_at = Some(now());
        assert!(blocking_block(&record.blocks, &pnid("222"), now()).is_none());
    }

    #[test]
    fn b10_unchanged_contact_is_no_change() {
        let contact = Contact {
            number: number(),
            name: None,
            email: None,
            category: None,
            groups: vec![],
            secondary_numbers: vec![],
        };
        let mut record = NumberRecord::empty(number());
        assert!(decide_contact(&record, contact.clone(), &actor(), now()).is_some());
        record.contact = Some(contact.clone());
        assert!(decide_contact(&record, contact, &actor(), now()).is_none());
    }
}
