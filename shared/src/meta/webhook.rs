//! Meta's webhook deliveries: every `entry[].changes[].value.messages[]` and
//! `statuses[]` across business numbers (B22, B25), and the calls people
//! make (`calls[]`, judged like their messages), read tolerantly (B27):
//! unknown fields and message types pass through untouched, and one odd
//! update never fails the rest of the batch.
//!
//! The delivery keeps its JSON so that what is forwarded to the CRM is
//! Meta's payload minus what was dropped (B24), not a re-modelled copy.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::Digest;

use crate::identity::{Link, Subject, UserId};
use crate::model::PhoneNumberId;
use crate::number::Number;

/// The only `object` this product handles.
pub const WHATSAPP_OBJECT: &str = "whatsapp_business_account";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("body is not JSON: {0}")]
    Malformed(String),
    #[error("object is {0:?}, not {WHATSAPP_OBJECT}")]
    WrongObject(String),
}

/// Where an update sits in the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    pub entry: usize,
    pub change: usize,
    pub kind: UpdateKind,
    pub index: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateKind {
    Message,
    Status,
    /// An event of a call a person made (`calls[]` of a `calls` change,
    /// `USER_INITIATED`): read as a message of type `call`, so that a
    /// blocked person's call never reaches the CRM either.
    Call,
    /// A whole change of another field (`user_preferences`,
    /// `account_update`, template updates…): it carries no update id.
    Change,
}

/// A change with neither messages nor statuses, forwarded as it is. It has
/// no id to claim it by, so its key is a digest of what Meta sent (entry
/// id and time, and the change): a retry repeats those bytes. Also one of
/// the business's own calls beside updates, forwarded unjudged, claimed by
/// its id and event (`K#<call id>#<event>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherChange {
    pub position: Position,
    pub key: String,
}

/// Who sent an inbound message: every identity Meta showed for them
/// (B60, B61). Since 2026 `from_user_id` is always there and `from` only
/// when the number is visible; the change's `contacts[]` entry may add a
/// parent BSUID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sender {
    pub number: Option<Number>,
    pub user_id: Option<UserId>,
    pub parent_user_id: Option<UserId>,
    /// Identities a matching `contacts[]` entry names beyond the message's
    /// own (the entry and the message disagree), and a system message's
    /// previous ids: checked too, so a disagreement never lets a blocked
    /// identity through.
    pub also: Vec<Subject>,
    /// A `from` that is not even a lenient number (kept for logs, masked).
    pub unreadable: Option<String>,
}

impl Sender {
    /// Every identity to check against blocks.
    pub fn identities(&self) -> Vec<Subject> {
        let mut subjects = Vec::with_capacity(3);
        subjects.extend(self.number.clone().map(Subject::Number));
        subjects.extend(self.user_id.clone().map(Subject::User));
        subjects.extend(self.parent_user_id.clone().map(Subject::User));
        for other in &self.also {
            if !subjects.contains(other) {
                subjects.push(other.clone());
            }
        }
        subjects
    }

    /// The identity chats and audit events are kept under: the number when
    /// visible, else the BSUID.
    pub fn primary(&self) -> Option<Subject> {
        self.identities().into_iter().next()
    }
}

/// One inbound message (B22).
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    pub position: Position,
    pub id: String,
    pub phone_number_id: Option<PhoneNumberId>,
    pub sender: Sender,
    /// `text`, `image`, … or whatever Meta sends next.
    pub message_type: String,
    pub timestamp: Option<DateTime<Utc>>,
    /// A `system` message saying the sender now writes under another
    /// identity (`user_changed_number`, `user_changed_user_id`, B62).
    pub changed_to: Option<Subject>,
    /// What the customer typed or tapped, as keywords are matched (B81):
    /// a text's body, a quick-reply button's payload, an interactive
    /// button reply's id. Never logged or stored.
    pub said: Option<String>,
}

/// Meta's `user_preferences` update (B82): a customer stopped or resumed
/// marketing messages from a business number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceUpdate {
    pub phone_number_id: PhoneNumberId,
    /// Every identity Meta gave for the person: the number and the BSUID.
    pub subjects: Vec<Subject>,
    pub category: String,
    /// `stop` or `resume`.
    pub value: String,
    pub timestamp: Option<DateTime<Utc>>,
}

/// One error of a `failed` status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusError {
    pub code: Option<i64>,
    pub title: Option<String>,
}

/// One status update (B25).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub position: Position,
    pub id: String,
    pub status: String,
    pub phone_number_id: Option<PhoneNumberId>,
    /// `recipient_id`: absent for sends addressed to a BSUID (B64).
    pub recipient: Option<Number>,
    /// `recipient_user_id`.
    pub recipient_user_id: Option<UserId>,
    pub timestamp: Option<DateTime<Utc>>,
    pub errors: Vec<StatusError>,
}

impl StatusUpdate {
    /// Who the status is about, when it says: the number, else the BSUID.
    pub fn recipient_subject(&self) -> Option<Subject> {
        self.recipient
            .clone()
            .map(Subject::Number)
            .or_else(|| self.recipient_user_id.clone().map(Subject::User))
    }
}

/// A parsed delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    body: Value,
    pub messages: Vec<InboundMessage>,
    pub statuses: Vec<StatusUpdate>,
    /// Identities Meta showed together (B61): `contacts[]` entries,
    /// messages with `from` and `from_user_id`, statuses with both
    /// recipient ids.
    pub links: Vec<Link>,
    /// Messages or statuses without an id, or not objects: logged, not
    /// forwarded (they cannot be de-duplicated).
    pub unusable: usize,
    /// `user_preferences` updates (B82).
    pub preferences: Vec<PreferenceUpdate>,
    /// Changes that are forwarded whole (B24), each claimed by its digest
    /// like an update by its id (B22): those that say when they happened
    /// (the entry's `time`, or a `timestamp` in the value). And the
    /// business's own calls beside updates, each claimed by its id.
    pub other_changes: Vec<OtherChange>,
}

impl Delivery {
    /// Parses a delivery's raw bytes (already signature-checked).
    pub fn parse(bytes: &[u8]) -> Result<Delivery, WebhookError> {
        let body: Value =
            serde_json::from_slice(bytes).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        match body.get("object").and_then(Value::as_str) {
            Some(WHATSAPP_OBJECT) => {}
            Some(other) => return Err(WebhookError::WrongObject(other.to_owned())),
            None => return Err(WebhookError::WrongObject(String::new())),
        }
        let mut delivery = Delivery {
            body: Value::Null,
            messages: vec![],
            statuses: vec![],
            links: vec![],
            unusable: 0,
            preferences: vec![],
            other_changes: vec![],
        };
        for (entry_index, entry) in array(&body, "entry").iter().enumerate() {
            for (change_index, change) in array(entry, "changes").iter().enumerate() {
                // Only a change that says when it happened can tell a retry
                // from a later, identical notice (an errors-only value has
                // no time): one that cannot is forwarded on every attempt.
                let dated = entry.get("time").is_some()
                    || change
                        .get("value")
                        .is_some_and(|v| v.to_string().contains("\"timestamp\""));
                if !has_updates(change.get("value")) && dated {
                    let digest = sha2::Sha256::digest(
                        json!([entry.get("id"), entry.get("time"), change])
                            .to_string()
                            .as_bytes(),
                    );
                    delivery.other_changes.push(OtherChange {
                        position: Position {
                            entry: entry_index,
                            change: change_index,
                            kind: UpdateKind::Change,
                            index: 0,
                        },
                        key: format!("C#{}", hex::encode(digest)),
                    });
                }
                let Some(value) = change.get("value") else {
                    continue;
                };
                let phone_number_id = value
                    .pointer("/metadata/phone_number_id")
                    .and_then(Value::as_str)
                    .and_then(|id| PhoneNumberId::parse(id).ok());
                let at = |kind, index| Position {
                    entry: entry_index,
                    change: change_index,
                    kind,
                    index,
                };
                let contacts: Vec<Sender> =
                    array(value, "contacts").iter().map(read_contact).collect();
                let seen_at = |t: Option<DateTime<Utc>>| t.unwrap_or(DateTime::UNIX_EPOCH);
                for contact in &contacts {
                    delivery.links.push(link_of(contact, DateTime::UNIX_EPOCH));
                }
                let messages = array(value, "messages")
                    .iter()
                    .enumerate()
                    .map(|(index, m)| {
                        read_message(m, at(UpdateKind::Message, index), &phone_number_id)
                    });
                let calls = array(value, "calls")
                    .iter()
                    .enumerate()
                    .filter(|(_, call)| is_users_call(call))
                    .map(|(index, c)| read_call(c, at(UpdateKind::Call, index), &phone_number_id));
                if has_updates(Some(value)) {
                    // The business's own calls beside updates: not judged,
                    // but claimed one by one, as the change is not.
                    delivery.other_changes.extend(
                        array(value, "calls")
                            .iter()
                            .enumerate()
                            .filter(|(_, call)| !is_users_call(call))
                            .filter_map(|(index, call)| {
                                let id = call.get("id")?.as_str()?;
                                let event =
                                    call.get("event").and_then(Value::as_str).unwrap_or("call");
                                Some(OtherChange {
                                    position: at(UpdateKind::Call, index),
                                    key: format!("K#{id}#{event}"),
                                })
                            }),
                    );
                }
                for read in messages.chain(calls) {
                    let Some(mut message) = read else {
                        delivery.unusable += 1;
                        continue;
                    };
                    enrich(&mut message.sender, &contacts);
                    delivery
                        .links
                        .push(link_of(&message.sender, seen_at(message.timestamp)));
                    delivery.messages.push(message);
                }
                if let Some(business) = &phone_number_id {
                    delivery.preferences.extend(
                        array(value, "user_preferences")
                            .iter()
                            .filter_map(|p| read_preference(p, business)),
                    );
                }
                for (index, status) in array(value, "statuses").iter().enumerate() {
                    match read_status(status, at(UpdateKind::Status, index), &phone_number_id) {
                        Some(status) => {
                            let recipient = Sender {
                                number: status.recipient.clone(),
                                user_id: status.recipient_user_id.clone(),
                                ..Sender::default()
                            };
                            delivery
                                .links
                                .push(link_of(&recipient, seen_at(status.timestamp)));
                            delivery.statuses.push(status);
                        }
                        None => delivery.unusable += 1,
                    }
                }
            }
        }
        delivery.body = body;
        Ok(delivery)
    }

    /// Meta's payload with only the updates at `keep` left in it (B24).
    /// Changes left with no updates (messages, statuses, calls), and
    /// entries left with no changes, are dropped; so are `contacts[]` of
    /// senders whose messages and calls were all dropped. `None` when
    /// nothing is left to forward. Changes that carry no updates (other
    /// webhook fields, or the business's own calls alone) pass through
    /// unchanged when `keep` holds their [`UpdateKind::Change`] position,
    /// or when they are not claimed (they do not say when they happened;
    /// see [`Delivery::other_changes`]).
    pub fn filtered(&self, keep: &HashSet<Position>) -> Option<Value> {
        let mut body = self.body.clone();
        let entries = body.get_mut("entry")?.as_array_mut()?;
        for (entry_index, entry) in entries.iter_mut().enumerate() {
            let Some(changes) = entry.get_mut("changes").and_then(Value::as_array_mut) else {
                continue;
            };
            for (change_index, change) in changes.iter_mut().enumerate() {
                if !has_updates(change.get("value")) {
                    let whole = Position {
                        entry: entry_index,
                        change: change_index,
                        kind: UpdateKind::Change,
                        index: 0,
                    };
                    let claimed = self.other_changes.iter().any(|c| c.position == whole);
                    if claimed && !keep.contains(&whole) {
                        *change = Value::Null;
                    }
                    continue;
                }
                let Some(value) = change.get_mut("value").and_then(Value::as_object_mut) else {
                    continue;
                };
                let had_updates = UPDATE_ARRAYS.iter().any(|k| value.contains_key(*k));
                let mut kept_senders = HashSet::new();
                let mut dropped_senders = HashSet::new();
                for (key, kind) in [
                    ("messages", UpdateKind::Message),
                    ("statuses", UpdateKind::Status),
                    ("calls", UpdateKind::Call),
                ] {
                    let Some(items) = value.get_mut(key).and_then(Value::as_array_mut) else {
                        continue;
                    };
                    let mut index = 0;
                    items.retain(|item| {
                        let position = Position {
                            entry: entry_index,
                            change: change_index,
                            kind,
                            index,
                        };
                        index += 1;
                        // The business's own calls are not judged: they go
                        // on as Meta sent them, once (those without an id,
                        // which cannot be claimed, every time).
                        if kind == UpdateKind::Call && !is_users_call(item) {
                            return keep.contains(&position)
                                || !self.other_changes.iter().any(|c| c.position == position);
                        }
                        let kept = keep.contains(&position);
                        if kind != UpdateKind::Status {
                            let set = if kept {
                                &mut kept_senders
                            } else {
                                &mut dropped_senders
                            };
                            // An empty id (a hidden number) names nobody.
                            for key in ["from", "from_user_id"] {
                                if let Some(id) = item
                                    .get(key)
                                    .and_then(Value::as_str)
                                    .filter(|id| !id.is_empty())
                                {
                                    set.insert(id.to_owned());
                                }
                            }
                        }
                        kept
                    });
                    if items.is_empty() {
                        value.remove(key);
                    }
                }
                if let Some(contacts) = value.get_mut("contacts").and_then(Value::as_array_mut) {
                    // A suppressed sender's profile (name, username) does not
                    // reach the CRM, whichever id names it.
                    contacts.retain(|contact| {
                        let ids: Vec<&str> = ["wa_id", "user_id"]
                            .iter()
                            .filter_map(|k| contact.get(*k).and_then(Value::as_str))
                            .filter(|id| !id.is_empty())
                            .collect();
                        ids.iter().any(|id| kept_senders.contains(*id))
                            || !ids.iter().any(|id| dropped_senders.contains(*id))
                    });
                    if contacts.is_empty() {
                        value.remove("contacts");
                    }
                }
                let has_updates = UPDATE_ARRAYS.iter().any(|k| value.contains_key(*k));
                if had_updates && !has_updates {
                    *change = Value::Null;
                }
            }
            changes.retain(|c| !c.is_null());
            if changes.is_empty() {
                *entry = Value::Null;
            }
        }
        entries.retain(|e| !e.is_null());
        (!entries.is_empty()).then_some(body)
    }
}

/// The arrays of a change's value whose items are updates of their own.
const UPDATE_ARRAYS: [&str; 3] = ["messages", "statuses", "calls"];

/// Whether a change's value holds updates with ids: messages, statuses,
/// or calls people made. A change of the business's own calls alone is
/// forwarded whole, like a change of another field.
fn has_updates(value: Option<&Value>) -> bool {
    value.is_some_and(|v| {
        v.get("messages").is_some()
            || v.get("statuses").is_some()
            || array(v, "calls").iter().any(is_users_call)
    })
}

/// Whether a `calls[]` item is a call a person made: anything but the
/// business's own (`BUSINESS_INITIATED`), so that an item of a shape not
/// seen before is judged rather than let through.
fn is_users_call(call: &Value) -> bool {
    call.get("direction").and_then(Value::as_str) != Some("BUSINESS_INITIATED")
}

/// A `contacts[]` entry's identities.
fn read_contact(contact: &Value) -> Sender {
    let text = |key| contact.get(key).and_then(Value::as_str);
    Sender {
        number: text("wa_id").and_then(|w| Number::from_whatsapp_id(w).ok()),
        user_id: text("user_id").and_then(|u| UserId::parse(u).ok()),
        parent_user_id: text("parent_user_id").and_then(|u| UserId::parse(u).ok()),
        also: vec![],
        unreadable: None,
    }
}

/// Completes a sender from the change's `contacts[]` entry that names one
/// of its identities (a parent BSUID, or the BSUID of a number).
fn enrich(sender: &mut Sender, contacts: &[Sender]) {
    let matching = contacts.iter().find(|c| {
        (sender.number.is_some() && c.number == sender.number)
            || (sender.user_id.is_some() && c.user_id == sender.user_id)
    });
    let Some(contact) = matching else { return };
    // Only fill what is missing: where both name a value and they differ,
    // the message's own fields are what Meta attributed the message to.
    if sender.number.is_none() && sender.user_id == contact.user_id {
        sender.number = contact.number.clone();
    }
    if sender.user_id.is_none() && sender.number == contact.number {
        sender.user_id = contact.user_id.clone();
    }
    // A contact that names another BSUID (or number) than the message is
    // someone else's or contradicts it: its parent is not the sender's,
    // though its identities are still checked (below).
    fn agrees<T: PartialEq>(ours: &Option<T>, theirs: &Option<T>) -> bool {
        ours.is_none() || theirs.is_none() || ours == theirs
    }
    if sender.parent_user_id.is_none()
        && agrees(&sender.user_id, &contact.user_id)
        && agrees(&sender.number, &contact.number)
    {
        sender.parent_user_id = contact.parent_user_id.clone();
    }
    for other in contact.identities() {
        if !sender.identities().contains(&other) {
            sender.also.push(other);
        }
    }
}

fn link_of(identities: &Sender, seen_at: DateTime<Utc>) -> Link {
    Link {
        number: identities.number.clone(),
        user_id: identities.user_id.clone(),
        parent_user_id: identities.parent_user_id.clone(),
        seen_at,
    }
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn unix_seconds(value: Option<&Value>) -> Option<DateTime<Utc>> {
    let seconds = match value? {
        Value::String(s) => s.parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    DateTime::from_timestamp(seconds, 0)
}

/// Who sent an update: its `from` and `from_user_id` (either may be
/// empty: Meta leaves a hidden number empty).
fn read_sender(update: &Value) -> Sender {
    let text = |key| {
        update
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let mut sender = Sender::default();
    if let Some(from) = text("from") {
        // B63: a `from` the metadata does not know yet is still a number.
        match Number::from_whatsapp_id(from) {
            Ok(number) => sender.number = Some(number),
            Err(_) => sender.unreadable = Some(from.to_owned()),
        }
    }
    sender.user_id = text("from_user_id").and_then(|u| UserId::parse(u).ok());
    sender
}

/// One event of a call a person made, as a message of type `call`: its id
/// is the call's with the event (`connect`, `terminate`), since each event
/// is delivered (and retried) on its own.
fn read_call(
    call: &Value,
    position: Position,
    phone_number_id: &Option<PhoneNumberId>,
) -> Option<InboundMessage> {
    let id = call.get("id")?.as_str()?;
    let event = call.get("event").and_then(Value::as_str).unwrap_or("call");
    Some(InboundMessage {
        position,
        id: format!("{id}#{event}"),
        phone_number_id: phone_number_id.clone(),
        sender: read_sender(call),
        message_type: "call".to_owned(),
        timestamp: unix_seconds(call.get("timestamp")),
        changed_to: None,
        said: None,
    })
}

fn read_message(
    message: &Value,
    position: Position,
    phone_number_id: &Option<PhoneNumberId>,
) -> Option<InboundMessage> {
    let id = message.get("id")?.as_str()?.to_owned();
    let mut sender = read_sender(message);
    let message_type = message
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let system = message.get("system").filter(|_| message_type == "system");
    let changed_to = system.and_then(changed_identity);
    if let Some(system) = system {
        // Meta names the ids the person had before the change: they are the
        // person too (and may be the ones that are blocked).
        for key in ["previous_user_id", "previous_parent_user_id"] {
            if let Some(previous) = system
                .get(key)
                .and_then(Value::as_str)
                .and_then(|u| UserId::parse(u).ok())
            {
                sender.also.push(Subject::User(previous));
            }
        }
    }
    let said = [
        "/text/body",
        "/button/payload",
        "/interactive/button_reply/id",
    ]
    .iter()
    .find_map(|pointer| message.pointer(pointer).and_then(Value::as_str))
    .map(str::to_owned);
    Some(InboundMessage {
        position,
        id,
        phone_number_id: phone_number_id.clone(),
        sender,
        message_type,
        timestamp: unix_seconds(message.get("timestamp")),
        changed_to,
        said,
    })
}

/// One entry of `user_preferences[]`; `None` without a person or a value.
fn read_preference(entry: &Value, business: &PhoneNumberId) -> Option<PreferenceUpdate> {
    let number = entry
        .get("wa_id")
        .and_then(Value::as_str)
        .and_then(|w| Number::from_whatsapp_id(w).ok())
        .map(Subject::Number);
    let user = entry
        .get("user_id")
        .and_then(Value::as_str)
        .and_then(|u| UserId::parse(u).ok())
        .map(Subject::User);
    let subjects: Vec<Subject> = number.into_iter().chain(user).collect();
    if subjects.is_empty() {
        return None;
    }
    Some(PreferenceUpdate {
        phone_number_id: business.clone(),
        subjects,
        category: entry.get("category")?.as_str()?.to_owned(),
        value: entry.get("value")?.as_str()?.to_owned(),
        timestamp: unix_seconds(entry.get("timestamp")),
    })
}

/// B62: the new identity of a `user_changed_number` (`system.wa_id`) or
/// `user_changed_user_id` (`system.user_id`) system message.
fn changed_identity(system: &Value) -> Option<Subject> {
    let text = |key| system.get(key).and_then(Value::as_str);
    match text("type")? {
        "user_changed_number" => text("wa_id")
            .and_then(|w| Number::from_whatsapp_id(w).ok())
            .map(Subject::Number),
        "user_changed_user_id" => text("user_id")
            .or_else(|| text("new_user_id"))
            .and_then(|u| UserId::parse(u).ok())
            .map(Subject::User),
        _ => None,
    }
}

fn read_status(
    status: &Value,
    position: Position,
    phone_number_id: &Option<PhoneNumberId>,
) -> Option<StatusUpdate> {
    let id = status.get("id")?.as_str()?.to_owned();
    let errors = array(status, "errors")
        .iter()
        .map(|e| StatusError {
            code: e
                .get("code")
                .and_then(|c| c.as_i64().or_else(|| c.as_str()?.parse().ok())),
            title: e.get("title").and_then(Value::as_str).map(str::to_owned),
        })
        .collect();
    Some(StatusUpdate {
        position,
        id,
        status: status
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
        phone_number_id: phone_number_id.clone(),
        recipient: status
            .get("recipient_id")
            .and_then(Value::as_str)
            .and_then(|r| Number::from_whatsapp_id(r).ok()),
        recipient_user_id: status
            .get("recipient_user_id")
            .and_then(Value::as_str)
            .and_then(|u| UserId::parse(u).ok()),
        timestamp: unix_seconds(status.get("timestamp")),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BATCH: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/meta/inbound-batch.json"
    ));
    const FAILED: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/meta/status-failed-131026.json"
    ));

    #[test]
    fn b22_reads_every_message_of_every_entry_and_change() {
        let delivery = Delivery::parse(BATCH).unwrap();
        let ids: Vec<&str> = delivery.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            ["wamid.BATCH0001", "wamid.BATCH0002", "wamid.BATCH0003"]
        );
        assert_eq!(delivery.messages[1].message_type, "image");
        assert_eq!(
            delivery.messages[2]
                .phone_number_id
                .as_ref()
                .map(|p| p.as_str()),
            Some("106540352242923")
        );
        assert_eq!(
            delivery.messages[0].sender.number,
            Some(Number::parse("+16505551234").unwrap())
        );
        assert_eq!(
            delivery.messages[0].timestamp.unwrap().timestamp(),
            1749416383
        );
    }

    #[test]
    fn b25_reads_failed_status_errors() {
        let delivery = Delivery::parse(FAILED).unwrap();
        let status = &delivery.statuses[0];
        assert_eq!(status.status, "failed");
        assert_eq!(status.errors[0].code, Some(131026));
        assert_eq!(
            status.errors[0].title.as_deref(),
            Some("Message undeliverable")
        );
        assert_eq!(status.recipient.as_ref().unwrap().as_str(), "+16505551234");
    }

    #[test]
    fn b27_is_tolerant_of_odd_updates() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{
            "metadata":{"phone_number_id":"1"},
            "messages":[{"id":"a","from_user_id":"US.1","type":"reaction","new_field":{}},
                        {"id":"b","from":"not a number","type":"text"},
                        {"no_id":true}, 7],
            "statuses":"not a list"}}, {"field":"x"}]}, {"id":"2"}], "extra": 1}"#;
        let delivery = Delivery::parse(body).unwrap();
        assert_eq!(delivery.messages.len(), 2);
        assert_eq!(
            delivery.messages[0].sender.user_id,
            Some(UserId::parse("US.1").unwrap())
        );
        assert!(delivery.messages[0].sender.number.is_none());
        assert!(delivery.messages[1].sender.unreadable.is_some());
        assert_eq!(delivery.unusable, 2);
        assert!(matches!(
            Delivery::parse(b"{"),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            Delivery::parse(br#"{"object":"page","entry":[]}"#),
            Err(WebhookError::WrongObject(_))
        ));
    }

    /// Calls a person made are read as messages of type `call`, one per
    /// event (a hidden number is an empty `from`); the business's own calls
    /// are not judged, only claimed.
    #[test]
    fn b23_calls_people_make_are_read_like_messages() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"W","changes":[{"field":"calls","value":{
            "metadata":{"phone_number_id":"1"},
            "calls":[{"id":"wacid.A","from":"","from_user_id":"US.1","event":"connect","timestamp":"1749416383","direction":"USER_INITIATED"},
                     {"id":"wacid.B","from":"15550783881","to":"16505551234","event":"connect","direction":"BUSINESS_INITIATED"},
                     {"id":"wacid.A","from":"16505551234","event":"terminate"},
                     {"event":"connect"}]}}]}]}"#;
        let delivery = Delivery::parse(body).unwrap();
        let read: Vec<(&str, &str, UpdateKind, usize)> = delivery
            .messages
            .iter()
            .map(|m| {
                (
                    m.id.as_str(),
                    m.message_type.as_str(),
                    m.position.kind,
                    m.position.index,
                )
            })
            .collect();
        assert_eq!(
            read,
            vec![
                ("wacid.A#connect", "call", UpdateKind::Call, 0),
                ("wacid.A#terminate", "call", UpdateKind::Call, 2),
            ]
        );
        assert!(delivery.messages[0].sender.number.is_none());
        assert!(delivery.messages[0].sender.unreadable.is_none());
        assert_eq!(delivery.unusable, 1);
        // The business's own call is claimed by its id and event.
        let ours: Vec<(&str, UpdateKind, usize)> = delivery
            .other_changes
            .iter()
            .map(|c| (c.key.as_str(), c.position.kind, c.position.index))
            .collect();
        assert_eq!(ours, vec![("K#wacid.B#connect", UpdateKind::Call, 1)]);

        let nothing_kept = delivery.filtered(&HashSet::new());
        assert!(nothing_kept.is_none(), "{nothing_kept:?}");
        let keep: HashSet<Position> = [delivery.other_changes[0].position].into();
        let kept = delivery.filtered(&keep).unwrap();
        let calls = kept["entry"][0]["changes"][0]["value"]["calls"]
            .as_array()
            .unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0]["id"], "wacid.B");
    }

    #[test]
    fn b24_filtered_keeps_only_chosen_updates_and_their_contacts() {
        let delivery = Delivery::parse(BATCH).unwrap();
        // Keep only the UK sender's image: the first entry keeps one message
        // and one contact; the second entry is dropped whole.
        let keep: HashSet<Position> = [delivery.messages[1].position].into_iter().collect();
        let body = delivery.filtered(&keep).unwrap();
        let entries = body["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        let value = &entries[0]["changes"][0]["value"];
        assert_eq!(value["messages"].as_array().unwrap().len(), 1);
        assert_eq!(value["messages"][0]["id"], "wamid.BATCH0002");
        assert_eq!(value["contacts"].as_array().unwrap().len(), 1);
        assert_eq!(value["contacts"][0]["wa_id"], "447700900123");
        assert_eq!(value["metadata"]["phone_number_id"], "106540352242922");
        assert!(delivery.filtered(&HashSet::new()).is_none());
    }
}
