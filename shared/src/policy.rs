//! The pure decisions: facts in, decision out. No I/O, no clock, no AWS types.
//!
//! A change to a number is described as a [`SubjectChange`]: everything that
//! must be written together (B3). The store applies it in one transaction,
//! guarded by the number's version, so a decision taken on stale facts is
//! rejected and taken again on fresh ones.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::identity::{Link, Subject};
use crate::model::{
    Action, Actor, AuditEvent, Block, ChainHead, Chat, ChatStatus, Contact, PhoneNumberId, Reason,
    Scope, SessionStatus, Source, StatCounter,
};

/// The `STATE` item of a subject: its version (the guard of every change),
/// a copy of its own blocks, when it was last unblocked, its links to other
/// identities of the same person (B61), and the blocks of those identities
/// as last mirrored here, so that one read of any identity sees every block
/// of the person.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectState {
    pub subject: Subject,
    /// 0 when nothing was ever written.
    pub version: u64,
    pub blocks: Vec<Block>,
    pub unblocked_at: Option<DateTime<Utc>>,
    pub links: Vec<Link>,
    /// Blocks of linked identities (each names its own subject).
    pub linked_blocks: Vec<Block>,
    /// Written before states kept a copy of their blocks: `blocks` is
    /// empty though the subject has some, which must be read before they
    /// are mirrored anywhere.
    pub blocks_unknown: bool,
    /// The newest link of the subject's chain of change events (B53).
    pub audit_head: Option<ChainHead>,
}

impl SubjectState {
    pub fn empty(subject: Subject) -> Self {
        SubjectState {
            subject,
            version: 0,
            blocks: vec![],
            unblocked_at: None,
            links: vec![],
            linked_blocks: vec![],
            blocks_unknown: false,
            audit_head: None,
        }
    }

    /// Every other identity this subject's links name.
    pub fn linked_subjects(&self) -> Vec<Subject> {
        let mut subjects: Vec<Subject> = self
            .links
            .iter()
            .flat_map(Link::subjects)
            .filter(|s| s != &self.subject)
            .collect();
        subjects.sort();
        subjects.dedup();
        subjects
    }

    /// Whether a link of this subject names `other`.
    pub fn is_linked_to(&self, other: &Subject) -> bool {
        self.links.iter().any(|l| l.names(other))
    }

    /// The state with `subject`'s mirrored blocks replaced by `blocks`.
    fn with_mirrored(&self, subject: &Subject, blocks: &[Block]) -> SubjectState {
        let mut next = self.clone();
        next.linked_blocks.retain(|b| &b.subject != subject);
        next.linked_blocks.extend(blocks.iter().cloned());
        next
    }
}

/// What the store holds about one subject, read consistently.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectRecord {
    pub subject: Subject,
    /// Version of the subject's state; 0 when nothing was ever written.
    pub version: u64,
    /// Every stored block, expired ones included (they stay until replaced
    /// or removed, and stay counted in `currently_blocked` until then).
    pub blocks: Vec<Block>,
    pub contact: Option<Contact>,
    /// Its chats and the chats of its linked identities.
    pub chats: Vec<Chat>,
    /// When the subject was last unblocked: failures before it no longer
    /// count towards an automatic block.
    pub last_unblocked_at: Option<DateTime<Utc>>,
    pub links: Vec<Link>,
    /// Blocks of linked identities, as mirrored on this subject's state.
    pub linked_blocks: Vec<Block>,
    /// The state of every linked identity, for the mirror write.
    pub linked: Vec<SubjectState>,
    /// The newest link of its chain of change events (B53).
    pub audit_head: Option<ChainHead>,
    /// What Meta's Block Users API holds for it, per business number (B15).
    pub platform: Vec<crate::platform::PlatformMirror>,
    /// Its consent records (B80), per scope.
    pub consents: Vec<crate::model::Consent>,
}

impl SubjectRecord {
    pub fn empty(subject: Subject) -> Self {
        SubjectRecord {
            subject,
            version: 0,
            blocks: vec![],
            contact: None,
            chats: vec![],
            last_unblocked_at: None,
            links: vec![],
            linked_blocks: vec![],
            linked: vec![],
            audit_head: None,
            platform: vec![],
            consents: vec![],
        }
    }
}

/// A request to block a subject, validated.
#[derive(Debug, Clone)]
pub struct BlockCommand {
    pub scope: Scope,
    pub reason: Reason,
    pub source: Source,
    pub reason_code: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// B16: the `review_after_days` of the scope's settings; `None`: no
    /// review.
    pub review_after_days: Option<u32>,
    /// Contact to create or update in the same change (B1).
    pub contact: Option<Contact>,
    /// Extra facts for the audit event (e.g. the message id behind an
    /// auto-block).
    pub details: serde_json::Value,
}

/// The new status of one chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatUpdate {
    /// The identity the chat is kept under (the changed subject or one
    /// linked to it).
    pub subject: Subject,
    pub phone_number_id: PhoneNumberId,
    pub status: ChatStatus,
    pub session_status: Option<SessionStatus>,
    pub known_contact: bool,
}

/// Everything one change writes, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectChange {
    pub subject: Subject,
    /// The version the decision was taken on; the write fails if it moved.
    pub expected_version: u64,
    pub put_blocks: Vec<Block>,
    pub remove_blocks: Vec<Block>,
    /// The contact to write, when it changes.
    pub put_contact: Option<Contact>,
    /// The contact as it will be after the change (for search fields).
    pub contact_after: Option<Contact>,
    /// Blocks that stay but whose search fields follow a contact change.
    pub reindex_blocks: Vec<Block>,
    /// The stored blocks and contact as read, whose index items (S2) the
    /// change replaces where it touches them.
    pub blocks_before: Vec<Block>,
    pub contact_before: Option<Contact>,
    /// Every stored block after the change (copied into the state).
    pub blocks_after: Vec<Block>,
    /// Links and mirrored blocks, kept on the state as they were read.
    pub links: Vec<Link>,
    pub linked_blocks: Vec<Block>,
    /// New states of linked identities whose mirror of this subject's
    /// blocks changes; each is written guarded by the version it was read
    /// at, so a concurrent change of either side is decided again.
    pub linked_states: Vec<SubjectState>,
    pub events: Vec<AuditEvent>,
    pub chats: Vec<ChatUpdate>,
    pub counters: Vec<StatCounter>,
    /// +1 when the subject gets its first stored block, -1 when its last
    /// one goes (the `currently_blocked` count).
    pub blocked_numbers_delta: i64,
    /// Kept on the subject's state: when it was last unblocked.
    pub unblocked_at: Option<DateTime<Utc>>,
    /// The chain head as read: the change's events of this subject are
    /// chained after it (B53).
    pub audit_head: Option<ChainHead>,
    pub at: DateTime<Utc>,
}

impl SubjectChange {
    /// The change's events, those of its subject chained after the head
    /// it was decided on (B53), and the head they leave. Traffic events
    /// never come through a change; events of another identity (a carry's
    /// source) stay unchained.
    pub fn chained_events(&self) -> (Vec<AuditEvent>, Option<ChainHead>) {
        let mut head = self.audit_head.clone();
        let events = self
            .events
            .iter()
            .map(|event| {
                if event.subject.as_ref().is_some_and(|s| s != &self.subject) {
                    return event.clone();
                }
                let event = event.clone().chained(head.take());
                head = event.as_head();
                event
            })
            .collect();
        (events, head)
    }
}

impl SubjectChange {
    fn new(record: &SubjectRecord, at: DateTime<Utc>) -> Self {
        SubjectChange {
            subject: record.subject.clone(),
            expected_version: record.version,
            put_blocks: vec![],
            remove_blocks: vec![],
            put_contact: None,
            contact_after: record.contact.clone(),
            reindex_blocks: vec![],
            blocks_before: record.blocks.clone(),
            contact_before: record.contact.clone(),
            blocks_after: record.blocks.clone(),
            links: record.links.clone(),
            linked_blocks: record.linked_blocks.clone(),
            linked_states: vec![],
            events: vec![],
            chats: vec![],
            counters: vec![],
            blocked_numbers_delta: 0,
            unblocked_at: record.last_unblocked_at,
            audit_head: record.audit_head.clone(),
            at,
        }
    }

    /// Mirrors the blocks after the change onto every identity still
    /// linked back to this subject (B61). A link the other side no longer
    /// holds (it was replaced, see [`decide_links`]) is dropped here.
    fn mirror(mut self, record: &SubjectRecord) -> Self {
        for other in &record.linked {
            if !other.is_linked_to(&record.subject) {
                self.links.retain(|l| !l.names(&other.subject));
                self.linked_blocks.retain(|b| b.subject != other.subject);
                continue;
            }
            let next = other.with_mirrored(&record.subject, &self.blocks_after);
            if next.linked_blocks != other.linked_blocks {
                self.linked_states.push(next);
            }
        }
        self
    }
}

/// The outcome of deciding a block.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockDecision {
    /// Blocked already in that scope: answer with the existing block. A
    /// contact sent with the call may still need writing.
    AlreadyBlocked {
        existing: Block,
        change: Option<SubjectChange>,
    },
    Create {
        block: Block,
        change: SubjectChange,
    },
}

/// B1, B3, B42: block `record.subject` in `command.scope`.
pub fn decide_block(
    record: &SubjectRecord,
    command: BlockCommand,
    actor: &Actor,
    now: DateTime<Utc>,
) -> BlockDecision {
    let contact_change = command
        .contact
        .as_ref()
        .filter(|c| record.contact.as_ref() != Some(*c))
        .cloned();

    // An automatic block stands down where a permanent block already
    // covers its business number, in its scope or in `all`: it would add
    // nothing but noise (B42). A temporary block does not stop it (B44): in
    // `all` the automatic block is added beside it, and in its own scope it
    // replaces it, so that the number stays blocked when the temporary
    // block would have ended.
    let covers = |b: &&Block| {
        b.is_active(now)
            && if command.source == Source::Auto {
                b.expires_at.is_none() && (b.scope == command.scope || b.scope == Scope::All)
            } else {
                b.scope == command.scope
            }
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
        subject: record.subject.clone(),
        scope: command.scope.clone(),
        reason: command.reason.clone(),
        source: command.source,
        reason_code: command.reason_code.clone(),
        actor: actor.actor.clone(),
        client: actor.client.clone(),
        blocked_at: now,
        expires_at: command.expires_at,
        version: 1,
        review_due_at: review_due(command.review_after_days, now),
        rule: None,
    };

    let mut change = SubjectChange::new(record, now);
    // An expired block in the same scope is replaced by the new one.
    let remaining: Vec<&Block> = record
        .blocks
        .iter()
        .filter(|b| b.scope != command.scope)
        .collect();
    change.blocks_after = remaining
        .iter()
        .map(|b| (*b).clone())
        .chain([block.clone()])
        .collect();
    if let Some(contact) = contact_change {
        change
            .events
            .push(contact_event(record, &contact, actor, now));
        change.put_contact = Some(contact.clone());
        change.contact_after = Some(contact);
        change.reindex_blocks = remaining.iter().map(|b| (*b).clone()).collect();
    }
    let (action, counter) = match command.source {
        Source::Auto => (Action::AutoBlocked, StatCounter::AutoBlocked),
        _ => (Action::Blocked, StatCounter::Blocked),
    };
    let mut details = json!({ "after": block });
    // What the new block replaces: an expired block, or the temporary one
    // an automatic block outlasts (B44).
    if let Some(replaced) = record.blocks.iter().find(|b| b.scope == command.scope) {
        details["before"] = json!(replaced);
    }
    merge_details(&mut details, &command.details);
    change.events.push(AuditEvent {
        event_id: AuditEvent::new_id(now),
        subject: Some(record.subject.clone()),
        scope: Some(command.scope.to_string()),
        action,
        actor: actor.actor.clone(),
        client: actor.client.clone(),
        reason: Some(command.reason.as_str().to_owned()),
        source: Some(command.source.as_str().to_owned()),
        at: now,
        details,
        prev_event_id: None,
        prev_hash: None,
        hash: None,
    });
    change.counters.push(counter);
    if record.blocks.is_empty() {
        change.blocked_numbers_delta = 1;
    }
    // The subject is a known contact once the change writes its contact.
    let change_has_contact = record.contact.is_some() || change.put_contact.is_some();
    change.chats = chats_blocked(record, &command.scope, change_has_contact);
    change.put_blocks = vec![block.clone()];
    BlockDecision::Create {
        block,
        change: change.mirror(record),
    }
}

/// B16: when a block made or reviewed at `at` comes due for review.
pub fn review_due(review_after_days: Option<u32>, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    review_after_days.map(|days| at + chrono::Duration::days(i64::from(days)))
}

/// The chats of the person in `scope` that a new block turns `blocked`,
/// open sessions becoming `cancelled` (B3).
fn chats_blocked(record: &SubjectRecord, scope: &Scope, known_contact: bool) -> Vec<ChatUpdate> {
    record
        .chats
        .iter()
        .filter(|chat| scope.covers(&chat.phone_number_id))
        .filter_map(|chat| {
            let session = match chat.session_status {
                Some(SessionStatus::Open) => Some(SessionStatus::Cancelled),
                other => other,
            };
            (chat.status != ChatStatus::Blocked || session != chat.session_status).then(|| {
                ChatUpdate {
                    subject: chat.subject.clone(),
                    phone_number_id: chat.phone_number_id.clone(),
                    status: ChatStatus::Blocked,
                    session_status: session,
                    known_contact: chat.known_contact
                        || (known_contact && chat.subject == record.subject),
                }
            })
        })
        .collect()
}

/// B2, B3: unblock `record.subject` in `scope`. `None` when nothing is
/// blocked there.
pub fn decide_unblock(
    record: &SubjectRecord,
    scope: &Scope,
    reason: &Reason,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Option<(Block, SubjectChange)> {
    // An expired block can still be removed explicitly.
    let removed = record.blocks.iter().find(|b| &b.scope == scope)?;
    Some(removal(
        record,
        removed,
        Removal {
            action: Action::Unblocked,
            counter: StatCounter::Unblocked,
            reason: reason.as_str(),
            actor,
        },
        now,
    ))
}

/// B16: what a review decides about a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// The block stays; its next review is `review_after_days` from now.
    Keep,
    /// The block goes, as an unblock (with its `unblocked` event).
    Unblock,
}

/// B16: reviews the active block of `record.subject` in `scope`: a
/// `reviewed` event (and counter) with the decision, and the block kept
/// with its next due time or removed, in one change. `None` when nothing
/// active is blocked there.
pub fn decide_review(
    record: &SubjectRecord,
    scope: &Scope,
    decision: ReviewDecision,
    reason: &Reason,
    review_after_days: Option<u32>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Option<(Block, SubjectChange)> {
    let reviewed = record
        .blocks
        .iter()
        .find(|b| &b.scope == scope && b.is_active(now))?;
    let event = |details: serde_json::Value| AuditEvent {
        event_id: AuditEvent::new_id(now),
        subject: Some(record.subject.clone()),
        scope: Some(scope.to_string()),
        action: Action::Reviewed,
        actor: actor.actor.clone(),
        client: actor.client.clone(),
        reason: Some(reason.as_str().to_owned()),
        source: Some(reviewed.source.as_str().to_owned()),
        at: now,
        details,
        prev_event_id: None,
        prev_hash: None,
        hash: None,
    };
    match decision {
        ReviewDecision::Keep => {
            let mut kept = reviewed.clone();
            kept.review_due_at = review_due(review_after_days, now);
            let mut change = SubjectChange::new(record, now);
            change.blocks_after = record
                .blocks
                .iter()
                .map(|b| {
                    if b.scope == *scope {
                        kept.clone()
                    } else {
                        b.clone()
                    }
                })
                .collect();
            change.events.push(event(
                json!({ "decision": decision, "before": reviewed, "after": kept }),
            ));
            change.counters.push(StatCounter::Reviewed);
            change.put_blocks = vec![kept.clone()];
            Some((kept, change.mirror(record)))
        }
        ReviewDecision::Unblock => {
            let (removed, mut change) = decide_unblock(record, scope, reason, actor, now)?;
            // The review first: the chain and the feed read "reviewed, then
            // unblocked".
            change
                .events
                .insert(0, event(json!({ "decision": decision, "before": removed })));
            change.counters.push(StatCounter::Reviewed);
            Some((removed, change))
        }
    }
}

/// The actor of expiry events: nobody acted, the block's time ran out.
pub const EXPIRY_ACTOR: &str = "expiry";

/// B13: removes the block of `record.subject` in `scope` once its
/// `expires_at` has passed, as an unblock does (chats, counters) with an
/// `expired` event. `None` when there is no such block or it has not
/// expired (it was replaced or extended since it was found due).
pub fn decide_expiry(
    record: &SubjectRecord,
    scope: &Scope,
    now: DateTime<Utc>,
) -> Option<(Block, SubjectChange)> {
    let expired = record
        .blocks
        .iter()
        .find(|b| &b.scope == scope && !b.is_active(now))?;
    Some(removal(
        record,
        expired,
        Removal {
            action: Action::Expired,
            counter: StatCounter::Expired,
            reason: "the temporary block reached its expires_at",
            actor: &Actor::system(EXPIRY_ACTOR),
        },
        now,
    ))
}

/// How a block goes: the event and counter that record it, and why.
struct Removal<'a> {
    action: Action,
    counter: StatCounter,
    reason: &'a str,
    actor: &'a Actor,
}

/// The change that removes `removed` (B3): the event, the counters, and
/// the chats it alone kept blocked back to `active`.
fn removal(
    record: &SubjectRecord,
    removed: &Block,
    how: Removal<'_>,
    now: DateTime<Utc>,
) -> (Block, SubjectChange) {
    let scope = &removed.scope;
    let remaining: Vec<&Block> = record.blocks.iter().filter(|b| &b.scope != scope).collect();

    let mut change = SubjectChange::new(record, now);
    change.unblocked_at = Some(now);
    change.blocks_after = remaining.iter().map(|b| (*b).clone()).collect();
    change.events.push(AuditEvent {
        event_id: AuditEvent::new_id(now),
        subject: Some(record.subject.clone()),
        scope: Some(scope.to_string()),
        action: how.action,
        actor: how.actor.actor.clone(),
        client: how.actor.client.clone(),
        reason: Some(how.reason.to_owned()),
        source: Some(removed.source.as_str().to_owned()),
        at: now,
        details: json!({ "before": removed }),
        prev_event_id: None,
        prev_hash: None,
        hash: None,
    });
    change.counters.push(how.counter);
    if remaining.is_empty() {
        change.blocked_numbers_delta = -1;
    }
    // A chat stays blocked while another block of the person still covers
    // it: one of this subject's, or one of a linked identity.
    let still_blocking: Vec<&Block> = remaining
        .into_iter()
        .chain(record.linked_blocks.iter())
        .filter(|b| b.is_active(now))
        .collect();
    change.chats = record
        .chats
        .iter()
        .filter(|chat| scope.covers(&chat.phone_number_id))
        .filter(|chat| chat.status == ChatStatus::Blocked)
        .filter(|chat| {
            !still_blocking
                .iter()
                .any(|b| b.scope.covers(&chat.phone_number_id))
        })
        .map(|chat| ChatUpdate {
            subject: chat.subject.clone(),
            phone_number_id: chat.phone_number_id.clone(),
            status: ChatStatus::Active,
            session_status: chat.session_status,
            known_contact: chat.known_contact
                || (record.contact.is_some() && chat.subject == record.subject),
        })
        .collect();
    change.remove_blocks = vec![removed.clone()];
    (removed.clone(), change.mirror(record))
}

/// B10: create or replace the contact of a number. `None` when unchanged.
pub fn decide_contact(
    record: &SubjectRecord,
    contact: Contact,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Option<SubjectChange> {
    (record.contact.as_ref() != Some(&contact))
        .then(|| contact_change_for(record, contact, actor, now))
}

fn contact_change_for(
    record: &SubjectRecord,
    contact: Contact,
    actor: &Actor,
    now: DateTime<Utc>,
) -> SubjectChange {
    let mut change = SubjectChange::new(record, now);
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
        .filter(|chat| !chat.known_contact && chat.subject == record.subject)
        .map(|chat| ChatUpdate {
            subject: chat.subject.clone(),
            phone_number_id: chat.phone_number_id.clone(),
            status: chat.status,
            session_status: chat.session_status,
            known_contact: true,
        })
        .collect();
    change
}

fn contact_event(
    record: &SubjectRecord,
    contact: &Contact,
    actor: &Actor,
    now: DateTime<Utc>,
) -> AuditEvent {
    AuditEvent {
        event_id: AuditEvent::new_id(now),
        subject: Some(record.subject.clone()),
        scope: None,
        action: Action::ContactUpdated,
        actor: actor.actor.clone(),
        client: actor.client.clone(),
        reason: None,
        source: None,
        at: now,
        details: json!({ "before": record.contact, "after": contact }),
        prev_event_id: None,
        prev_hash: None,
        hash: None,
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

/// A link between identities to write (B61): the new state of every
/// identity of the person, each guarded by the version it was read at
/// (`SubjectState::version`), and its audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkChange {
    pub link: Link,
    pub states: Vec<SubjectState>,
    pub event: AuditEvent,
}

impl LinkChange {
    /// Items its transaction writes: the states and the event.
    pub fn actions(&self) -> usize {
        self.states.len() + 1
    }
}

/// What [`decide_links`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkDecision {
    pub changes: Vec<LinkChange>,
    /// Identities that one delivery tied to two different partners (one
    /// BSUID shown with two numbers, say): nothing is linked for them, since
    /// which pairing is true cannot be told. Enforcement still checks every
    /// identity a message carries.
    pub ambiguous: Vec<Subject>,
}

/// The identities of the person each new link of `observed` belongs to:
/// its own and every identity they are already linked to. Those whose
/// state is not in `states` must be read before [`decide_links`].
pub fn link_persons(
    observed: &[Link],
    states: &std::collections::HashMap<Subject, SubjectState>,
) -> Vec<std::collections::BTreeSet<Subject>> {
    let (merged, _) = merge_links(observed);
    merged
        .iter()
        .map(|link| {
            let mut person: std::collections::BTreeSet<Subject> =
                link.subjects().into_iter().collect();
            for subject in link.subjects() {
                if let Some(state) = states.get(&subject) {
                    person.extend(state.linked_subjects());
                }
            }
            person
        })
        .collect()
}

/// B61: which of the `observed` links are new, given the states of every
/// identity of the persons they belong to ([`link_persons`]). Links of one
/// delivery that share an identity are merged (a `contacts[]` entry and its
/// message); links that contradict each other in one delivery are dropped
/// as ambiguous.
///
/// Links accumulate: a person is every identity Meta ever showed together,
/// and each of them holds all of the person's links and a mirror of the
/// blocks of all the others. So one read of any identity sees every block
/// of the person, however and in whatever order the links were learned
/// (a number and its BSUID from a status, the BSUID and a parent from a
/// later message). A re-issued BSUID adds an identity to the person and
/// never takes one away: no pairing Meta shows can unblock anyone, and a
/// later unblock of any identity is mirrored to all the others.
pub fn decide_links(
    observed: &[Link],
    states: &std::collections::HashMap<Subject, SubjectState>,
    actor: &str,
    now: DateTime<Utc>,
) -> LinkDecision {
    let (merged, ambiguous) = merge_links(observed);
    let persons = link_persons(observed, states);
    let state_of = |s: &Subject| {
        states
            .get(s)
            .cloned()
            .unwrap_or_else(|| SubjectState::empty(s.clone()))
    };
    let mut changes = Vec::new();
    for (link, person) in merged.into_iter().zip(persons) {
        let known = person.iter().all(|s| {
            state_of(s)
                .links
                .iter()
                .any(|stored| stored.same_identities(&link))
        });
        if known {
            continue;
        }
        let mut links: Vec<Link> = Vec::new();
        for stored in person
            .iter()
            .flat_map(|s| state_of(s).links)
            .chain([link.clone()])
        {
            if !links.iter().any(|l| l.same_identities(&stored)) {
                links.push(stored);
            }
        }
        let mut next_states = Vec::with_capacity(person.len());
        for subject in &person {
            let state = state_of(subject);
            let mut next = state.clone();
            next.links = links.clone();
            next.linked_blocks = person
                .iter()
                .filter(|other| *other != subject)
                .flat_map(|other| state_of(other).blocks)
                .collect();
            if next != state {
                next_states.push(next);
            }
        }
        let primary = link.subjects()[0].clone();
        let event = AuditEvent {
            event_id: AuditEvent::new_id(now),
            subject: Some(primary),
            scope: None,
            action: Action::IdentityLinked,
            actor: actor.to_owned(),
            client: None,
            reason: None,
            source: None,
            at: now,
            details: json!({ "link": link, "identities": person }),
            prev_event_id: None,
            prev_hash: None,
            hash: None,
        };
        changes.push(LinkChange {
            link,
            states: next_states,
            event,
        });
    }
    LinkDecision { changes, ambiguous }
}

/// Whether two links disagree: they share an identity but name different
/// values for another one.
fn contradicts(a: &Link, b: &Link) -> bool {
    let shares = a.subjects().iter().any(|s| b.names(s));
    let field_differs =
        |x: Option<String>, y: Option<String>| matches!((x, y), (Some(x), Some(y)) if x != y);
    shares
        && (field_differs(
            a.number.as_ref().map(|n| n.to_string()),
            b.number.as_ref().map(|n| n.to_string()),
        ) || field_differs(
            a.user_id.as_ref().map(|u| u.to_string()),
            b.user_id.as_ref().map(|u| u.to_string()),
        ) || field_differs(
            a.parent_user_id.as_ref().map(|u| u.to_string()),
            b.parent_user_id.as_ref().map(|u| u.to_string()),
        ))
}

/// Merges the links of one delivery that name a common identity; returns
/// the merged links and the identities of contradicting ones.
pub fn merge_links(observed: &[Link]) -> (Vec<Link>, Vec<Subject>) {
    let mut merged: Vec<Link> = Vec::new();
    let mut ambiguous: Vec<Subject> = Vec::new();
    for link in observed.iter().filter(|l| l.is_link()) {
        let subjects = link.subjects();
        match merged
            .iter()
            .position(|m| subjects.iter().any(|s| m.names(s)))
        {
            Some(i) if contradicts(&merged[i], link) => {
                ambiguous.extend(subjects);
                ambiguous.extend(merged[i].subjects());
            }
            Some(i) => {
                let m = &mut merged[i];
                m.number = m.number.take().or_else(|| link.number.clone());
                m.user_id = m.user_id.take().or_else(|| link.user_id.clone());
                m.parent_user_id = m
                    .parent_user_id
                    .take()
                    .or_else(|| link.parent_user_id.clone());
                m.seen_at = m.seen_at.max(link.seen_at);
            }
            None => merged.push(link.clone()),
        }
    }
    ambiguous.sort();
    ambiguous.dedup();
    merged.retain(|m| !m.subjects().iter().any(|s| ambiguous.contains(s)));
    (merged, ambiguous)
}

/// B62: WhatsApp reported that a blocked person now writes as `record`'s
/// subject (a changed number or user id). Every active block of the person
/// (`blocks`, of any of their identities) is carried to the new identity in
/// the same scope with `source: carried`, with an `identity_changed` event
/// on the old and on the new identity, in one change. `None` when the new
/// identity is already blocked in every one of those scopes.
pub fn decide_carry(
    record: &SubjectRecord,
    from: &Subject,
    blocks: &[Block],
    message_id: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Option<SubjectChange> {
    let mut change = SubjectChange::new(record, now);
    let mut carried: Vec<Block> = Vec::new();
    for block in blocks.iter().filter(|b| b.is_active(now)) {
        let already = record
            .blocks
            .iter()
            .chain(carried.iter())
            .any(|b| b.is_active(now) && b.scope == block.scope);
        if already {
            continue;
        }
        carried.push(Block {
            subject: record.subject.clone(),
            scope: block.scope.clone(),
            reason: block.reason.clone(),
            source: Source::Carried,
            reason_code: block.reason_code.clone(),
            actor: actor.actor.clone(),
            client: actor.client.clone(),
            blocked_at: now,
            expires_at: block.expires_at,
            version: 1,
            review_due_at: block.review_due_at,
            rule: None,
        });
    }
    if carried.is_empty() {
        return None;
    }
    let details = json!({
        "from": from,
        "to": record.subject,
        "message_id": message_id,
        "scopes": carried.iter().map(|b| b.scope.as_str()).collect::<Vec<_>>(),
    });
    for subject in [from, &record.subject] {
        change.events.push(AuditEvent {
            event_id: AuditEvent::new_id(now),
            subject: Some(subject.clone()),
            scope: None,
            action: Action::IdentityChanged,
            actor: actor.actor.clone(),
            client: actor.client.clone(),
            reason: Some("WhatsApp reported a changed identity".to_owned()),
            source: Some(Source::Carried.as_str().to_owned()),
            at: now,
            details: details.clone(),
            prev_event_id: None,
            prev_hash: None,
            hash: None,
        });
    }
    if record.blocks.is_empty() {
        change.blocked_numbers_delta = 1;
    }
    change.counters = carried.iter().map(|_| StatCounter::Blocked).collect();
    let replaced: Vec<&Scope> = carried.iter().map(|b| &b.scope).collect();
    change.blocks_after = record
        .blocks
        .iter()
        .filter(|b| !replaced.contains(&&b.scope))
        .cloned()
        .chain(carried.iter().cloned())
        .collect();
    let mut chats: Vec<ChatUpdate> = Vec::new();
    for block in &carried {
        for update in chats_blocked(record, &block.scope, record.contact.is_some()) {
            if !chats
                .iter()
                .any(|c| c.subject == update.subject && c.phone_number_id == update.phone_number_id)
            {
                chats.push(update);
            }
        }
    }
    change.chats = chats;
    change.put_blocks = carried;
    Some(change.mirror(record))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::number::Number;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn number() -> Subject {
        Subject::Number(Number::parse("+16505551234").unwrap())
    }

    fn pnid(id: &str) -> PhoneNumberId {
        PhoneNumberId::parse(id).unwrap()
    }

    fn chat(id: &str, status: ChatStatus, session: Option<SessionStatus>) -> Chat {
        Chat {
            phone_number_id: pnid(id),
            subject: number(),
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
            review_after_days: Some(90),
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

    fn blocked_record(scopes: &[Scope]) -> SubjectRecord {
        let mut record = SubjectRecord::empty(number());
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
        let mut record = SubjectRecord::empty(number());
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
                    subject: number(),
                    phone_number_id: pnid("111"),
                    status: ChatStatus::Blocked,
                    session_status: Some(SessionStatus::Cancelled),
                    known_contact: false,
                },
                ChatUpdate {
                    subject: number(),
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
        let mut record = SubjectRecord::empty(number());
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
        assert_eq!(change.blocks_after.len(), 2);
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
            &SubjectRecord::empty(number()),
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
            subject: number(),
            name: Some("Sheena".into()),
            email: None,
            category: Some("vip".into()),
            groups: vec!["a".into()],
            secondary_numbers: vec![],
        };
        let mut cmd = command(Scope::All);
        cmd.contact = Some(contact.clone());
        let BlockDecision::Create { change, .. } =
            decide_block(&SubjectRecord::empty(number()), cmd, &actor(), now())
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
            subject: number(),
            name: None,
            email: None,
            category: None,
            groups: vec![],
            secondary_numbers: vec![],
        };
        let mut record = SubjectRecord::empty(number());
        assert!(decide_contact(&record, contact.clone(), &actor(), now()).is_some());
        record.contact = Some(contact.clone());
        assert!(decide_contact(&record, contact, &actor(), now()).is_none());
    }

    fn user() -> Subject {
        Subject::parse("US.13491208655302741918").unwrap()
    }

    fn link(number: &str, user: &str) -> Link {
        Link {
            number: Some(Number::parse(number).unwrap()),
            user_id: Some(crate::identity::UserId::parse(user).unwrap()),
            parent_user_id: None,
            seen_at: now(),
        }
    }

    fn linked_record() -> SubjectRecord {
        let mut record = SubjectRecord::empty(number());
        record.version = 2;
        record.links = vec![link("+16505551234", "US.13491208655302741918")];
        let mut other = SubjectState::empty(user());
        other.version = 5;
        other.links = record.links.clone();
        record.linked = vec![other];
        record
    }

    #[test]
    fn b61_a_block_is_mirrored_onto_every_linked_identity() {
        let record = linked_record();
        let BlockDecision::Create { block, change } =
            decide_block(&record, command(Scope::All), &actor(), now())
        else {
            panic!()
        };
        assert_eq!(change.linked_states.len(), 1);
        let mirrored = &change.linked_states[0];
        assert_eq!(mirrored.subject, user());
        assert_eq!(mirrored.version, 5, "guarded by the version read");
        assert_eq!(mirrored.linked_blocks, vec![block.clone()]);
        // Unblocking removes the mirror again.
        let mut blocked = record.clone();
        blocked.blocks = vec![block];
        blocked.linked[0] = mirrored.clone();
        let (_, change) = decide_unblock(
            &blocked,
            &Scope::All,
            &Reason::parse("ok").unwrap(),
            &actor(),
            now(),
        )
        .unwrap();
        assert_eq!(change.linked_states.len(), 1);
        assert!(change.linked_states[0].linked_blocks.is_empty());
    }

    #[test]
    fn b61_a_link_the_other_side_replaced_is_dropped_not_mirrored() {
        let mut record = linked_record();
        record.linked[0].links = vec![link("+16505559999", "US.13491208655302741918")];
        let BlockDecision::Create { change, .. } =
            decide_block(&record, command(Scope::All), &actor(), now())
        else {
            panic!()
        };
        assert!(change.linked_states.is_empty());
        assert!(change.links.is_empty(), "the stale link is dropped");
    }

    #[test]
    fn b61_new_links_copy_each_sides_blocks_and_known_ones_are_skipped() {
        let mut number_state = SubjectState::empty(number());
        number_state.version = 3;
        let blocked = blocked_record(&[Scope::All]);
        number_state.blocks = blocked.blocks.clone();
        let states: std::collections::HashMap<Subject, SubjectState> =
            [(number(), number_state.clone())].into_iter().collect();
        let observed = vec![link("+16505551234", "US.13491208655302741918")];
        let decision = decide_links(&observed, &states, "webhook-ingress", now());
        assert!(decision.ambiguous.is_empty());
        assert_eq!(decision.changes.len(), 1);
        let change = &decision.changes[0];
        assert_eq!(change.event.action, Action::IdentityLinked);
        let user_state = change.states.iter().find(|s| s.subject == user()).unwrap();
        assert_eq!(user_state.version, 0, "created");
        assert_eq!(user_state.linked_blocks, blocked.blocks);
        let number_next = change
            .states
            .iter()
            .find(|s| s.subject == number())
            .unwrap();
        assert_eq!(number_next.version, 3);
        assert_eq!(number_next.links, observed);
        // Once stored on both sides, the same link is nothing new.
        let stored: std::collections::HashMap<Subject, SubjectState> = change
            .states
            .iter()
            .map(|s| (s.subject.clone(), s.clone()))
            .collect();
        assert!(
            decide_links(&observed, &stored, "webhook-ingress", now())
                .changes
                .is_empty()
        );
    }

    #[test]
    fn b61_one_bsuid_with_two_numbers_in_one_delivery_links_nothing() {
        let observed = vec![
            link("+16505551234", "US.13491208655302741918"),
            link("+16505559876", "US.13491208655302741918"),
            link("+447700900123", "GB.777"),
        ];
        let decision = decide_links(&observed, &Default::default(), "webhook-ingress", now());
        assert_eq!(decision.changes.len(), 1, "only the unambiguous link");
        assert_eq!(
            decision.changes[0].link.user_id.as_ref().unwrap().as_str(),
            "GB.777"
        );
        assert!(decision.ambiguous.contains(&user()));
        assert!(decision.ambiguous.contains(&number()));
    }

    #[test]
    fn b61_a_reissued_bsuid_joins_the_person_and_unblocks_no_one() {
        // The BSUID was linked to an old number, which is blocked.
        let old_number = Subject::parse("+16505559999").unwrap();
        let mut old_block = blocked_record(&[Scope::All]).blocks;
        old_block[0].subject = old_number.clone();
        let mut user_state = SubjectState::empty(user());
        user_state.version = 1;
        user_state.links = vec![link("+16505559999", "US.13491208655302741918")];
        user_state.linked_blocks = old_block.clone();
        let mut old_state = SubjectState::empty(old_number.clone());
        old_state.version = 4;
        old_state.links = user_state.links.clone();
        old_state.blocks = old_block.clone();
        let states: std::collections::HashMap<Subject, SubjectState> =
            [(user(), user_state), (old_number.clone(), old_state)]
                .into_iter()
                .collect();
        let observed = [link("+16505551234", "US.13491208655302741918")];
        // The person now reaches the old number too: its state is needed.
        let persons = link_persons(&observed, &states);
        assert_eq!(
            persons[0].iter().cloned().collect::<Vec<_>>(),
            vec![number(), old_number.clone(), user()]
        );
        let decision = decide_links(&observed, &states, "webhook-ingress", now());
        let change = &decision.changes[0];
        let state_of = |s: &Subject| change.states.iter().find(|n| &n.subject == s).unwrap();
        // The new number is stopped by the old number's block, and every
        // identity holds both links.
        assert_eq!(state_of(&number()).linked_blocks, old_block);
        for subject in [number(), user(), old_number.clone()] {
            assert_eq!(state_of(&subject).links.len(), 2, "{subject:?}");
        }
        assert_eq!(state_of(&user()).linked_blocks, old_block, "kept");
        assert_eq!(state_of(&old_number).version, 4, "guarded as read");
    }

    #[test]
    fn b62_carry_copies_every_scope_once_with_events_on_both_identities() {
        let blocks = blocked_record(&[Scope::All, Scope::Business(pnid("222"))]).blocks;
        let new = Subject::parse("+16505559876").unwrap();
        let mut record = SubjectRecord::empty(new.clone());
        record.chats = vec![Chat {
            subject: new.clone(),
            ..chat("222", ChatStatus::Active, Some(SessionStatus::Open))
        }];
        let change = decide_carry(&record, &number(), &blocks, "wamid.X", &actor(), now()).unwrap();
        assert_eq!(change.put_blocks.len(), 2);
        assert!(
            change
                .put_blocks
                .iter()
                .all(|b| b.source == Source::Carried && b.subject == new)
        );
        let subjects: Vec<_> = change
            .events
            .iter()
            .map(|e| e.subject.clone().unwrap())
            .collect();
        assert_eq!(subjects, vec![number(), new.clone()]);
        assert!(
            change
                .events
                .iter()
                .all(|e| e.action == Action::IdentityChanged)
        );
        assert_eq!(change.blocked_numbers_delta, 1);
        assert_eq!(change.chats.len(), 1);
        assert_eq!(change.chats[0].status, ChatStatus::Blocked);
        // Already blocked in every scope: nothing to carry.
        let mut done = record.clone();
        done.blocks = change.put_blocks.clone();
        assert!(decide_carry(&done, &number(), &blocks, "wamid.X", &actor(), now()).is_none());
    }
}
