//! The pure decision for a webhook delivery (B22–B25): which updates are
//! forwarded, which are suppressed, which were seen before, and what is
//! recorded. No I/O: the facts come in, the plan goes out.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::identity::Subject;
use crate::meta::webhook::{Delivery, InboundMessage, Position, UpdateKind};
use crate::model::{
    Block, ConsentCategory, ConsentChange, ConsentSource, ConsentValue, PhoneNumberId, Scope,
};
use crate::policy::{SubjectState, blocking_block};

/// What the store knows about one identity, read consistently (B4).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderFacts {
    /// Blocks in scope `all` and in the scopes of the delivery's business
    /// numbers, and the blocks of every identity linked to it (B61).
    pub blocks: Vec<Block>,
    pub known_contact: bool,
    /// Its `STATE` item, when it has one (links are learned against it).
    pub state: Option<SubjectState>,
}

/// The facts of a person known by several identities: a block of any of
/// them is a block of the person (B61).
pub fn person_facts(identities: &[Subject], facts: &HashMap<Subject, SenderFacts>) -> SenderFacts {
    let mut person = SenderFacts::default();
    for identity in identities {
        let Some(f) = facts.get(identity) else {
            continue;
        };
        for block in &f.blocks {
            if !person.blocks.contains(block) {
                person.blocks.push(block.clone());
            }
        }
        person.known_contact |= f.known_contact;
    }
    person
}

/// The state of an update's idempotency claim (B22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This invocation owns the update now.
    Claimed,
    /// Handled before: not forwarded or counted again.
    Done,
    /// Another invocation is handling it right now (a concurrent duplicate):
    /// answer 5xx so Meta retries later, when it is done or released.
    InFlight,
}

/// The idempotency key of a message.
pub fn message_key(id: &str) -> String {
    format!("M#{id}")
}

/// The idempotency key of a status: the same message goes through several
/// statuses, each delivered (and retried) on its own.
pub fn status_key(id: &str, status: &str) -> String {
    format!("S#{id}#{status}")
}

/// A message from a blocked person (B23).
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub key: String,
    /// The identity the event is kept under (the number when visible).
    pub subject: Subject,
    pub message: InboundMessage,
    /// The block that stopped it, of whichever identity.
    pub block: Block,
}

/// Inbound traffic on a chat (B24).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTouch {
    pub phone_number_id: PhoneNumberId,
    pub subject: Subject,
    pub at: DateTime<Utc>,
    pub known_contact: bool,
}

/// A `failed` status, for `wa-blocked` (B25, B64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    pub subject: Subject,
    pub phone_number_id: Option<PhoneNumberId>,
    pub code: Option<i64>,
    pub title: Option<String>,
    pub message_id: String,
    pub at: DateTime<Utc>,
}

/// B62: a blocked person reported under a new identity; their blocks are
/// carried to it (unless the business number's settings say otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct Carry {
    pub from: Subject,
    pub to: Subject,
    /// Every active block of the person, of any identity.
    pub blocks: Vec<Block>,
    pub phone_number_id: Option<PhoneNumberId>,
    pub message_id: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboundPlan {
    /// Updates to forward to the CRM.
    pub forward: HashSet<Position>,
    /// Claim keys of the forwarded updates: completed after a successful
    /// forward, released when the CRM fails.
    pub forward_keys: Vec<String>,
    pub suppressed: Vec<Suppression>,
    pub chats: Vec<ChatTouch>,
    pub failures: Vec<DeliveryFailure>,
    /// Failed statuses whose recipient could not be told: neither id in the
    /// status, and no record of the send (B64). Forwarded, not counted.
    pub unattributed_failures: usize,
    pub carries: Vec<Carry>,
    /// Ids of the messages whose sender is blocked where they wrote,
    /// whatever their claim says: nothing is sent back to them (B81).
    pub from_blocked: HashSet<String>,
    pub duplicates: usize,
    pub in_flight: usize,
}

/// Every claim key of a delivery, in order.
pub fn claim_keys(delivery: &Delivery) -> Vec<String> {
    let mut keys: Vec<String> = delivery
        .messages
        .iter()
        .map(|m| message_key(&m.id))
        .chain(
            delivery
                .statuses
                .iter()
                .map(|s| status_key(&s.id, &s.status)),
        )
        .chain(delivery.other_changes.iter().map(|c| c.key.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Every identity whose facts the decision needs, with the business
/// numbers whose blocks apply: every identity of every sender.
pub fn senders(delivery: &Delivery) -> HashMap<Subject, HashSet<PhoneNumberId>> {
    let mut senders: HashMap<Subject, HashSet<PhoneNumberId>> = HashMap::new();
    for message in &delivery.messages {
        for identity in message.sender.identities() {
            let scopes = senders.entry(identity).or_default();
            scopes.extend(message.phone_number_id.clone());
        }
    }
    senders
}

/// Identities that only links of the delivery name (a status's recipient
/// ids, say): their states are needed to learn the link, nothing more.
pub fn link_identities(delivery: &Delivery) -> Vec<Subject> {
    let senders = senders(delivery);
    let mut subjects: Vec<Subject> = delivery
        .links
        .iter()
        .filter(|l| l.is_link())
        .flat_map(|l| l.subjects())
        .filter(|s| !senders.contains_key(s))
        .collect();
    subjects.sort();
    subjects.dedup();
    subjects
}

/// Message ids of `failed` statuses that name no recipient: the send
/// proxy's record of the send tells who it went to (B64).
pub fn unattributed_status_ids(delivery: &Delivery) -> Vec<String> {
    let mut ids: Vec<String> = delivery
        .statuses
        .iter()
        .filter(|s| s.status == "failed" && s.recipient_subject().is_none())
        .map(|s| s.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Every active block of a person, in every scope: the enforcement read
/// only fetches the scopes of the delivery, but each identity's state holds
/// a copy of all its blocks and of its linked identities' (B62 carries them
/// all). Blocks made by prefix rules are left out.
fn every_block(
    identities: &[Subject],
    facts: &HashMap<Subject, SenderFacts>,
    now: DateTime<Utc>,
) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for f in identities.iter().filter_map(|i| facts.get(i)) {
        let stored = f
            .state
            .iter()
            .flat_map(|s| s.blocks.iter().chain(&s.linked_blocks));
        // A rule's block is not the person's: their new number is held by
        // the rules it matches itself (B84).
        for block in f.blocks.iter().chain(stored).filter(|b| b.rule.is_none()) {
            if block.is_active(now)
                && !blocks
                    .iter()
                    .any(|b| b.subject == block.subject && b.scope == block.scope)
            {
                blocks.push(block.clone());
            }
        }
    }
    blocks
}

/// `identities` and every identity a link of `people` names with one of
/// them.
fn with_shown_links(
    mut identities: Vec<Subject>,
    people: &[crate::identity::Link],
) -> Vec<Subject> {
    let shown: Vec<Subject> = people
        .iter()
        .filter(|link| identities.iter().any(|i| link.names(i)))
        .flat_map(|link| link.subjects())
        .collect();
    for subject in shown {
        if !identities.contains(&subject) {
            identities.push(subject);
        }
    }
    identities
}

/// The block that stops a message from a person, if any.
fn blocking<'a>(
    message: &InboundMessage,
    blocks: &'a [Block],
    now: DateTime<Utc>,
) -> Option<&'a Block> {
    match &message.phone_number_id {
        Some(business) => blocking_block(blocks, business, now),
        // Without a business number only a block everywhere applies.
        None => blocks
            .iter()
            .find(|b| b.is_active(now) && b.scope == Scope::All),
    }
}

/// Decides a delivery. `claims` has an entry for every key of
/// [`claim_keys`]; a missing one counts as in flight (fail safe: retried).
/// `sent` maps message ids of the send proxy's sends to their recipient.
/// `settings` holds the settings of the business numbers that reported an
/// identity change (see [`settings_numbers`]); one missing carries, as the
/// built-in default does. `shown` is [`crate::policy::merge_links`] of the
/// delivery's links: the identities it shows together.
pub fn plan_inbound(
    delivery: &Delivery,
    senders: &HashMap<Subject, SenderFacts>,
    claims: &HashMap<String, Claim>,
    sent: &HashMap<String, Subject>,
    settings: &HashMap<PhoneNumberId, crate::model::Settings>,
    shown: &[crate::identity::Link],
    now: DateTime<Utc>,
) -> InboundPlan {
    let mut plan = InboundPlan::default();
    // The same id twice in one delivery is a duplicate too.
    let mut seen: HashSet<String> = HashSet::new();
    let mut chats: HashMap<(PhoneNumberId, Subject), ChatTouch> = HashMap::new();

    // B61: identities the delivery shows together (and no other link
    // contradicts) are one person already, before the link is stored.
    let mut judged: Vec<(Vec<Subject>, Vec<Block>)> = delivery
        .messages
        .iter()
        .map(|message| {
            let identities = with_shown_links(message.sender.identities(), shown);
            let mut blocks = person_facts(&identities, senders).blocks;
            // Each state's copy of its blocks covers the business numbers
            // an identity shown only elsewhere in the delivery was not
            // read for.
            for block in identities
                .iter()
                .filter_map(|i| senders.get(i)?.state.as_ref())
                .flat_map(|s| &s.blocks)
            {
                if !blocks.contains(block) {
                    blocks.push(block.clone());
                }
            }
            (identities, blocks)
        })
        .collect();

    // B62, decided whatever the claim says: a retry after a failed carry
    // must carry again (carrying twice changes nothing).
    for (message, (identities, blocks)) in delivery.messages.iter().zip(&judged) {
        if let (Some(_), Some(to), Some(from)) = (
            blocking(message, blocks, now),
            &message.changed_to,
            message.sender.primary(),
        ) {
            // The new identity, and a BSUID Meta already issued for it: when
            // the system message names previous ids, `from_user_id` is the
            // new one.
            let mut targets = vec![to.clone()];
            let renewed = message.sender.user_id.clone().map(Subject::User);
            if let Some(renewed) = renewed
                && message.sender.also.iter().any(|a| a.user_id().is_some())
                && !message.sender.also.contains(&renewed)
            {
                targets.push(renewed);
            }
            let blocks = every_block(identities, senders, now);
            for target in targets {
                if target != from && !blocks.iter().all(|b| b.subject == target) {
                    plan.carries.push(Carry {
                        from: from.clone(),
                        to: target,
                        blocks: blocks.clone(),
                        phone_number_id: message.phone_number_id.clone(),
                        message_id: message.id.clone(),
                    });
                }
            }
        }
    }
    // A message from a new identity in the same delivery is judged with
    // the blocks carried to it, where carrying is on: the carry itself is
    // written after the forward.
    for carry in &plan.carries {
        // A change reported without a business number is carried (or not)
        // by the `default` settings, which are not read here: left to the
        // carry itself.
        let carries = carry
            .phone_number_id
            .as_ref()
            .is_some_and(|b| settings.get(b).is_none_or(|s| s.carry_blocks_on_change));
        if !carries {
            continue;
        }
        for (identities, blocks) in &mut judged {
            if identities.contains(&carry.to) {
                for block in &carry.blocks {
                    if !blocks.contains(block) {
                        blocks.push(block.clone());
                    }
                }
            }
        }
    }

    for (message, (_, blocks)) in delivery.messages.iter().zip(&judged) {
        let blocked_by = blocking(message, blocks, now);
        if blocked_by.is_some() {
            plan.from_blocked.insert(message.id.clone());
        }
        let key = message_key(&message.id);
        match claims.get(&key).copied().unwrap_or(Claim::InFlight) {
            Claim::Done => {
                plan.duplicates += 1;
                continue;
            }
            Claim::InFlight => {
                plan.in_flight += 1;
                continue;
            }
            Claim::Claimed if !seen.insert(key.clone()) => {
                plan.duplicates += 1;
                continue;
            }
            Claim::Claimed => {}
        }
        let Some(subject) = message.sender.primary() else {
            // No identity at all to check: nothing can block it.
            plan.forward.insert(message.position);
            plan.forward_keys.push(key);
            continue;
        };
        if let Some(block) = blocked_by {
            plan.suppressed.push(Suppression {
                key,
                subject,
                message: message.clone(),
                block: block.clone(),
            });
            continue;
        }
        plan.forward.insert(message.position);
        plan.forward_keys.push(key);
        // A call is not a message on the chat: it opens no session and
        // does not start the 24-hour window of a written message (B15).
        let written = message.position.kind != UpdateKind::Call;
        if let Some(business) = message.phone_number_id.as_ref().filter(|_| written) {
            let at = message.timestamp.unwrap_or(now);
            let known_contact = senders.get(&subject).is_some_and(|f| f.known_contact);
            let touch = ChatTouch {
                phone_number_id: business.clone(),
                subject: subject.clone(),
                at,
                known_contact,
            };
            chats
                .entry((business.clone(), subject))
                .and_modify(|t| t.at = t.at.max(at))
                .or_insert(touch);
        }
    }

    // B22 for changes of other fields: forwarded once, by their digest.
    for change in &delivery.other_changes {
        match claims.get(&change.key).copied().unwrap_or(Claim::InFlight) {
            Claim::Done => plan.duplicates += 1,
            Claim::InFlight => plan.in_flight += 1,
            Claim::Claimed if !seen.insert(change.key.clone()) => plan.duplicates += 1,
            Claim::Claimed => {
                plan.forward.insert(change.position);
                plan.forward_keys.push(change.key.clone());
            }
        }
    }

    for status in &delivery.statuses {
        let key = status_key(&status.id, &status.status);
        match claims.get(&key).copied().unwrap_or(Claim::InFlight) {
            Claim::Done => {
                plan.duplicates += 1;
                continue;
            }
            Claim::InFlight => {
                plan.in_flight += 1;
                continue;
            }
            Claim::Claimed if !seen.insert(key.clone()) => {
                plan.duplicates += 1;
                continue;
            }
            Claim::Claimed => {}
        }
        plan.forward.insert(status.position);
        plan.forward_keys.push(key);
        if status.status != "failed" {
            continue;
        }
        let Some(subject) = status
            .recipient_subject()
            .or_else(|| sent.get(&status.id).cloned())
        else {
            plan.unattributed_failures += 1;
            continue;
        };
        let first = status.errors.first();
        plan.failures.push(DeliveryFailure {
            subject,
            phone_number_id: status.phone_number_id.clone(),
            code: first.and_then(|e| e.code),
            title: first.and_then(|e| e.title.clone()),
            message_id: status.id.clone(),
            at: status.timestamp.unwrap_or(now),
        });
    }
    let mut chats: Vec<ChatTouch> = chats.into_values().collect();
    chats.sort_by(|a, b| (&a.phone_number_id, &a.subject).cmp(&(&b.phone_number_id, &b.subject)));
    plan.chats = chats;
    plan
}

/// Meta's error for a send to a customer who stopped marketing messages.
pub const MARKETING_STOPPED: i64 = 131050;

/// B81, B82: the consent changes a delivery carries, decided for every
/// message and preference whatever its claim says (a retry after a failed
/// write must write again; a change is applied once, by its time): keywords
/// in messages to the business numbers whose `settings` are given, and
/// Meta's `user_preferences`. Failures with 131050 are in
/// [`marketing_stops`].
///
/// A person's say holds for every identity they are known by (B61): each
/// change is made for every identity the update names and every identity
/// `senders` shows linked to them, so a send to any of them finds it.
pub fn consent_changes(
    delivery: &Delivery,
    senders: &HashMap<Subject, SenderFacts>,
    settings: &HashMap<PhoneNumberId, crate::model::Settings>,
    now: DateTime<Utc>,
) -> Vec<ConsentChange> {
    let mut changes = Vec::new();
    for message in &delivery.messages {
        let (Some(said), Some(business)) =
            (message.said.as_deref(), message.phone_number_id.as_ref())
        else {
            continue;
        };
        let Some(value) = settings.get(business).and_then(|s| s.keyword(said)) else {
            continue;
        };
        for subject in person_identities(&message.sender.identities(), senders) {
            changes.push(ConsentChange {
                subject,
                scope: Scope::Business(business.clone()),
                category: ConsentCategory::All,
                value,
                source: ConsentSource::Keyword,
                at: message.timestamp.unwrap_or(now),
                message_id: Some(message.id.clone()),
            });
        }
    }
    for preference in &delivery.preferences {
        let value = match (preference.category.as_str(), preference.value.as_str()) {
            ("marketing_messages", "stop") => ConsentValue::OptedOut,
            ("marketing_messages", "resume") => ConsentValue::OptedIn,
            _ => continue,
        };
        for subject in person_identities(&preference.subjects, senders) {
            changes.push(ConsentChange {
                subject,
                scope: Scope::Business(preference.phone_number_id.clone()),
                category: ConsentCategory::Marketing,
                value,
                source: ConsentSource::UserPreferences,
                at: preference.timestamp.unwrap_or(now),
                message_id: None,
            });
        }
    }
    changes
}

/// B62: every change of identity a delivery reports (WhatsApp's
/// `user_changed_number` / `user_changed_user_id` system messages): the
/// identity it came from, the one it goes to, and the message that says so.
pub fn identity_moves(delivery: &Delivery) -> Vec<(Subject, Subject, String)> {
    delivery
        .messages
        .iter()
        .filter_map(|m| {
            let (from, to) = (m.sender.primary()?, m.changed_to.clone()?);
            (from != to).then(|| (from, to, m.id.clone()))
        })
        .collect()
}

/// B81: a confirmation of a keyword, sent back to its writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordReply {
    pub phone_number_id: PhoneNumberId,
    /// Who wrote: the number when the message shows it, else the BSUID.
    pub to: Subject,
    pub text: String,
    pub message_id: String,
}

/// B81: the confirmations to send for the keyword `changes` (of
/// [`consent_changes`]) of which `changed` says they changed a value: one
/// per message, only when the business number's settings have a reply for
/// it, and none to a person blocked where they wrote (nothing goes to
/// them, also when this attempt finds their message already handled). A
/// change that changed nothing (a retry, a late message) sends nothing, so
/// a retried delivery does not confirm twice.
pub fn keyword_replies(
    delivery: &Delivery,
    plan: &InboundPlan,
    changes: &[ConsentChange],
    changed: &[bool],
    settings: &HashMap<PhoneNumberId, crate::model::Settings>,
) -> Vec<KeywordReply> {
    let mut replies: Vec<KeywordReply> = Vec::new();
    for (change, _) in changes.iter().zip(changed).filter(|(_, c)| **c) {
        let Some(message_id) = change.message_id.as_deref() else {
            continue;
        };
        if change.source != ConsentSource::Keyword
            || replies.iter().any(|r| r.message_id == message_id)
            || plan.from_blocked.contains(message_id)
        {
            continue;
        }
        let Some(message) = delivery.messages.iter().find(|m| m.id == message_id) else {
            continue;
        };
        let (Some(business), Some(to)) = (&message.phone_number_id, message.sender.primary())
        else {
            continue;
        };
        let Some(text) = settings
            .get(business)
            .and_then(|s| s.keyword_reply(change.value))
        else {
            continue;
        };
        replies.push(KeywordReply {
            phone_number_id: business.clone(),
            to,
            text: text.to_owned(),
            message_id: message_id.to_owned(),
        });
    }
    replies
}

/// `identities` and every identity their states (in `senders`) link them to.
fn person_identities(
    identities: &[Subject],
    senders: &HashMap<Subject, SenderFacts>,
) -> Vec<Subject> {
    let mut all: Vec<Subject> = identities.to_vec();
    for identity in identities {
        let linked = senders
            .get(identity)
            .and_then(|f| f.state.as_ref())
            .map(SubjectState::linked_subjects)
            .unwrap_or_default();
        for other in linked {
            if !all.contains(&other) {
                all.push(other);
            }
        }
    }
    all
}

/// B82: a send that failed with 131050 says the customer stopped marketing
/// messages from that business number. A failure that names no business
/// number changes nothing (it would stop marketing from every number).
pub fn marketing_stops(failures: &[DeliveryFailure]) -> Vec<ConsentChange> {
    failures
        .iter()
        .filter(|f| f.code == Some(MARKETING_STOPPED))
        .filter_map(|f| {
            Some(ConsentChange {
                subject: f.subject.clone(),
                scope: Scope::Business(f.phone_number_id.clone()?),
                category: ConsentCategory::Marketing,
                value: ConsentValue::OptedOut,
                source: ConsentSource::DeliveryFailure,
                at: f.at,
                message_id: Some(f.message_id.clone()),
            })
        })
        .collect()
}

/// The business numbers whose settings [`consent_changes`] needs: those of
/// messages whose text is short enough to be a keyword (a question or a
/// sentence is not: it costs no read).
pub fn keyword_numbers(delivery: &Delivery) -> HashSet<PhoneNumberId> {
    delivery
        .messages
        .iter()
        .filter(|m| {
            m.said
                .as_deref()
                .is_some_and(crate::model::could_be_keyword)
        })
        .filter_map(|m| m.phone_number_id.clone())
        .collect()
}

/// The business numbers whose settings a delivery is decided with: those
/// that got a possible keyword (B81) and those that reported an identity
/// change (B62, `carry_blocks_on_change`).
pub fn settings_numbers(delivery: &Delivery) -> HashSet<PhoneNumberId> {
    let mut numbers = keyword_numbers(delivery);
    numbers.extend(
        delivery
            .messages
            .iter()
            .filter(|m| m.changed_to.is_some())
            .filter_map(|m| m.phone_number_id.clone()),
    );
    numbers
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::model::{Reason, Scope, Source};

    const BATCH: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/meta/inbound-batch.json"
    ));
    const FAILED: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/meta/status-failed-131026.json"
    ));

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn block(number: &str, scope: &str) -> Block {
        Block {
            subject: Subject::parse(number).unwrap(),
            scope: Scope::parse(scope).unwrap(),
            reason: Reason::parse("spam").unwrap(),
            source: Source::Manual,
            reason_code: None,
            actor: "a".into(),
            client: None,
            blocked_at: now(),
            expires_at: None,
            version: 1,
            review_due_at: None,
            rule: None,
        }
    }

    /// The facts of `subject`, blocked as `number` in `scope`.
    fn blocked_facts(
        subject: &Subject,
        number: &str,
        scope: &str,
    ) -> HashMap<Subject, SenderFacts> {
        [(
            subject.clone(),
            SenderFacts {
                blocks: vec![block(number, scope)],
                known_contact: true,
                state: None,
            },
        )]
        .into_iter()
        .collect()
    }

    /// The plan of `delivery` with `claims`, no records of sends, and the
    /// built-in settings.
    fn plan_with(
        delivery: &Delivery,
        facts: &HashMap<Subject, SenderFacts>,
        claims: &HashMap<String, Claim>,
    ) -> InboundPlan {
        plan_inbound(
            delivery,
            facts,
            claims,
            &HashMap::new(),
            &HashMap::new(),
            &crate::policy::merge_links(&delivery.links).0,
            now(),
        )
    }

    /// The plan of `delivery` with every update claimed here.
    fn plan_claimed(delivery: &Delivery, facts: &HashMap<Subject, SenderFacts>) -> InboundPlan {
        plan_with(delivery, facts, &all_claimed(delivery))
    }

    fn all_claimed(delivery: &Delivery) -> HashMap<String, Claim> {
        claim_keys(delivery)
            .into_iter()
            .map(|k| (k, Claim::Claimed))
            .collect()
    }

    /// B81, B23: a keyword from a blocked person is never confirmed, also
    /// when this attempt finds the message handled (a retry after a failed
    /// consent write, or the losing copy of a concurrent duplicate), so
    /// that it is not among this plan's suppressions.
    #[test]
    fn b81_a_blocked_persons_keyword_is_not_confirmed_on_a_retry() {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/meta/inbound-text.json"
        ))
        .replace("Does it come in another color?", "STOP");
        let delivery = Delivery::parse(text.as_bytes()).unwrap();
        let us = Subject::parse("+16505551234").unwrap();
        let facts = blocked_facts(&us, "+16505551234", "all");
        let business = PhoneNumberId::parse("106540352242922").unwrap();
        let mut settings = crate::model::Settings::builtin(
            &crate::model::SettingsTarget::Business(business.clone()),
        );
        settings.opt_out_reply = "You will get no more messages.".into();
        let settings: HashMap<PhoneNumberId, crate::model::Settings> =
            [(business, settings)].into_iter().collect();
        let changes = consent_changes(&delivery, &facts, &settings, now());
        assert_eq!(changes.len(), 1, "the keyword is a consent change");
        let changed = vec![true];
        for claim in [Claim::Claimed, Claim::Done, Claim::InFlight] {
            let claims: HashMap<String, Claim> = claim_keys(&delivery)
                .into_iter()
                .map(|k| (k, claim))
                .collect();
            let plan = plan_with(&delivery, &facts, &claims);
            let replies = keyword_replies(&delivery, &plan, &changes, &changed, &settings);
            assert!(replies.is_empty(), "{claim:?}: {replies:?}");
        }
        // Unblocked, the same keyword is confirmed.
        let plan = plan_claimed(&delivery, &HashMap::new());
        assert_eq!(
            keyword_replies(&delivery, &plan, &changes, &changed, &settings).len(),
            1
        );
    }

    #[test]
    fn b23_blocked_sender_is_suppressed_only_where_the_block_applies() {
        let delivery = Delivery::parse(BATCH).unwrap();
        let us = Subject::parse("+16505551234").unwrap();
        // Blocked on the first business number only.
        let facts = blocked_facts(&us, "+16505551234", "106540352242922");
        let plan = plan_claimed(&delivery, &facts);
        assert_eq!(plan.suppressed.len(), 1);
        assert_eq!(plan.suppressed[0].message.id, "wamid.BATCH0001");
        assert_eq!(
            plan.forward.len(),
            2,
            "UK sender, and the US sender on the second line"
        );
        assert_eq!(plan.chats.len(), 2);
        assert!(
            plan.chats
                .iter()
                .any(|c| c.subject == us && c.known_contact)
        );
    }

    #[test]
    fn b23_block_for_all_suppresses_on_every_business_number() {
        let delivery = Delivery::parse(BATCH).unwrap();
        let facts: HashMap<Subject, SenderFacts> = [(
            Subject::parse("+16505551234").unwrap(),
            SenderFacts {
                blocks: vec![block("+16505551234", "all")],
                known_contact: false,
                state: None,
            },
        )]
        .into_iter()
        .collect();
        let plan = plan_claimed(&delivery, &facts);
        let ids: Vec<&str> = plan
            .suppressed
            .iter()
            .map(|s| s.message.id.as_str())
            .collect();
        assert_eq!(ids, ["wamid.BATCH0001", "wamid.BATCH0003"]);
        assert_eq!(plan.forward.len(), 1);
    }

    #[test]
    fn b22_done_claims_are_duplicates_and_in_flight_ones_are_retried() {
        let delivery = Delivery::parse(BATCH).unwrap();
        let mut claims = all_claimed(&delivery);
        claims.insert(message_key("wamid.BATCH0001"), Claim::Done);
        claims.insert(message_key("wamid.BATCH0002"), Claim::InFlight);
        let plan = plan_inbound(
            &delivery,
            &HashMap::new(),
            &claims,
            &HashMap::new(),
            &HashMap::new(),
            &crate::policy::merge_links(&delivery.links).0,
            now(),
        );
        assert_eq!(
            (plan.duplicates, plan.in_flight, plan.forward.len()),
            (1, 1, 1)
        );
        assert_eq!(plan.forward_keys, vec![message_key("wamid.BATCH0003")]);
    }

    #[test]
    fn b22_same_message_twice_in_one_delivery_is_forwarded_once() {
        let message =
            json!({"from": "16505551234", "id": "wamid.TWICE", "timestamp": "1", "type": "text"});
        let body = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
            "metadata": {"phone_number_id": "1"}, "messages": [message, message]}}]}]});
        let delivery = Delivery::parse(body.to_string().as_bytes()).unwrap();
        let plan = plan_claimed(&delivery, &HashMap::new());
        assert_eq!((plan.forward.len(), plan.duplicates), (1, 1));
    }

    #[test]
    fn b25_failed_status_is_forwarded_and_recorded() {
        let delivery = Delivery::parse(FAILED).unwrap();
        let plan = plan_claimed(&delivery, &HashMap::new());
        assert_eq!(plan.forward.len(), 1);
        assert_eq!(plan.failures.len(), 1);
        let failure = &plan.failures[0];
        assert_eq!(failure.code, Some(131026));
        assert_eq!(failure.subject.as_str(), "+16505551234");
        assert_eq!(failure.at.timestamp(), 1751142888);
    }

    #[test]
    fn user_id_only_sender_is_forwarded() {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
            "metadata": {"phone_number_id": "1"},
            "messages": [{"from_user_id": "US.13491208655302741918", "id": "wamid.U", "type": "text"}]}}]}]});
        let delivery = Delivery::parse(body.to_string().as_bytes()).unwrap();
        let plan = plan_claimed(&delivery, &HashMap::new());
        assert_eq!(plan.forward.len(), 1);
        // The chat is kept under the BSUID when the number is hidden.
        assert_eq!(plan.chats.len(), 1);
        assert_eq!(plan.chats[0].subject.as_str(), "US.13491208655302741918");
    }

    const BSUID_ONLY: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/meta/inbound-bsuid-only.json"
    ));
    const FAILED_BSUID: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/meta/status-failed-bsuid.json"
    ));
    const CHANGED_NUMBER: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/meta/system-user-changed-number.json"
    ));

    fn facts_with(subject: &str, blocks: Vec<Block>) -> HashMap<Subject, SenderFacts> {
        [(
            Subject::parse(subject).unwrap(),
            SenderFacts {
                blocks,
                known_contact: false,
                state: None,
            },
        )]
        .into_iter()
        .collect()
    }

    #[test]
    fn b61_bsuid_only_message_is_suppressed_by_a_linked_number_block() {
        let delivery = Delivery::parse(BSUID_ONLY).unwrap();
        // The store puts the linked number's blocks among the BSUID's facts.
        let facts = facts_with(
            "US.13491208655302741918",
            vec![block("+16505551234", "all")],
        );
        let plan = plan_claimed(&delivery, &facts);
        assert_eq!(plan.suppressed.len(), 1);
        assert_eq!(
            plan.suppressed[0].subject.as_str(),
            "US.13491208655302741918"
        );
        assert_eq!(plan.suppressed[0].block.subject.as_str(), "+16505551234");
        assert!(plan.forward.is_empty());
        assert!(plan.chats.is_empty());
    }

    #[test]
    fn b61_a_block_of_any_identity_of_the_message_applies() {
        let linked = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/meta/inbound-bsuid-linked.json"
        ));
        let delivery = Delivery::parse(linked).unwrap();
        let mut b = block("+16505551234", "all");
        b.subject = Subject::parse("US.13491208655302741918").unwrap();
        let facts = facts_with("US.13491208655302741918", vec![b]);
        let plan = plan_claimed(&delivery, &facts);
        assert_eq!(plan.suppressed.len(), 1);
        // Kept under the number, which the message shows.
        assert_eq!(plan.suppressed[0].subject.as_str(), "+16505551234");
    }

    #[test]
    fn b64_failed_status_by_bsuid_is_attributed_to_the_bsuid() {
        let delivery = Delivery::parse(FAILED_BSUID).unwrap();
        let plan = plan_claimed(&delivery, &HashMap::new());
        assert_eq!(plan.failures.len(), 1);
        assert_eq!(plan.failures[0].subject.as_str(), "US.13491208655302741918");
        assert_eq!(plan.failures[0].code, Some(131026));
    }

    #[test]
    fn b64_failed_status_without_recipient_is_attributed_by_message_id() {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
            "metadata": {"phone_number_id": "1"},
            "statuses": [{"id": "wamid.SENT1", "status": "failed", "timestamp": "1",
                          "errors": [{"code": 131026, "title": "undeliverable"}]},
                         {"id": "wamid.UNKNOWN", "status": "failed", "timestamp": "1",
                          "errors": [{"code": 131026}]}]}}]}]});
        let delivery = Delivery::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            unattributed_status_ids(&delivery),
            vec!["wamid.SENT1".to_owned(), "wamid.UNKNOWN".to_owned()]
        );
        let sent: HashMap<String, Subject> =
            [("wamid.SENT1".to_owned(), Subject::parse("US.42").unwrap())].into();
        let plan = plan_inbound(
            &delivery,
            &HashMap::new(),
            &all_claimed(&delivery),
            &sent,
            &HashMap::new(),
            &crate::policy::merge_links(&delivery.links).0,
            now(),
        );
        assert_eq!(plan.failures.len(), 1);
        assert_eq!(plan.failures[0].subject.as_str(), "US.42");
        assert_eq!(plan.unattributed_failures, 1);
        assert_eq!(plan.forward.len(), 2, "statuses are forwarded either way");
    }

    #[test]
    fn b62_changed_number_of_a_blocked_person_is_carried_even_on_redelivery() {
        let delivery = Delivery::parse(CHANGED_NUMBER).unwrap();
        assert_eq!(
            delivery.messages[0].changed_to,
            Some(Subject::parse("+16505559876").unwrap())
        );
        let facts = facts_with("+16505551234", vec![block("+16505551234", "all")]);
        let mut claims = all_claimed(&delivery);
        for claim in claims.values_mut() {
            *claim = Claim::Done;
        }
        let plan = plan_with(&delivery, &facts, &claims);
        assert_eq!(plan.duplicates, 1);
        assert_eq!(plan.carries.len(), 1);
        assert_eq!(plan.carries[0].to.as_str(), "+16505559876");
        assert_eq!(plan.carries[0].from.as_str(), "+16505551234");
        // Not blocked: nothing to carry, and the message is forwarded.
        let plan = plan_claimed(&delivery, &HashMap::new());
        assert!(plan.carries.is_empty());
        assert_eq!(plan.forward.len(), 1);
    }

    #[test]
    fn b84_a_rule_blocks_but_is_not_carried_to_a_changed_number() {
        let delivery = Delivery::parse(CHANGED_NUMBER).unwrap();
        let subject = Subject::parse("+16505551234").unwrap();
        let rule = crate::model::RuleEntry {
            id: crate::model::RuleId::parse("wave").unwrap(),
            prefix: crate::model::Prefix::parse("+1650555").unwrap(),
            scope: Scope::All,
            created_at: now(),
        };
        let facts = facts_with("+16505551234", vec![rule.block_of(&subject)]);
        let plan = plan_claimed(&delivery, &facts);
        assert_eq!(plan.suppressed.len(), 1, "the rule blocks the message");
        assert!(
            plan.carries.is_empty(),
            "the new number is held by the rules it matches itself"
        );
        // With a block of the person besides, that block alone is carried.
        let facts = facts_with(
            "+16505551234",
            vec![rule.block_of(&subject), block("+16505551234", "all")],
        );
        let plan = plan_claimed(&delivery, &facts);
        assert_eq!(plan.carries.len(), 1);
        assert!(plan.carries[0].blocks.iter().all(|b| b.rule.is_none()));
        assert_eq!(plan.carries[0].blocks.len(), 1);
    }
}
