//! Chats (B11, B24) in the Chats table: `<subject pk>` /
//! `<phone_number_id>`, listed through a keys-only `gsi1` under
//! `CHATS#<nn>` / `<status>#<phone_number_id>#<subject>`.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::{BATCH_FROM, run_all, run_in_turn};
use super::cursor::Cursor;
use super::keys::{SHARDS, TABLE_KEY, shard_of, subject_pk};
use super::sharded::{KeyRange, Order, ShardedQuery};
use super::transaction::{MAX_TRANSACTION_ACTIONS, Outcome};
use super::{Item, Page, Store, StoreError, build, s};
use crate::identity::Subject;
use crate::model::{Chat, ChatStatus, PhoneNumberId, SessionStatus, format_time};

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ChatItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    #[serde(flatten)]
    pub chat: Chat,
}

pub(super) fn chat_gsi1sk(status: &str, phone_number_id: &str, subject: &Subject) -> String {
    format!("{status}#{phone_number_id}#{subject}")
}

impl ChatItem {
    pub fn new(chat: &Chat) -> Self {
        ChatItem {
            pk: subject_pk(&chat.subject),
            sk: chat.phone_number_id.to_string(),
            gsi1pk: chats_index_pk(shard_of(chat.subject.as_str())),
            gsi1sk: chat_gsi1sk(
                chat.status.as_str(),
                chat.phone_number_id.as_str(),
                &chat.subject,
            ),
            chat: chat.clone(),
        }
    }
}

/// Index partition of the chat listing (B11) holding `subject`'s chats.
pub(super) fn chats_index_pk(shard: u32) -> String {
    format!("CHATS#{shard:02}")
}

/// Filters of `GET /v1/chats` (B11).
#[derive(Debug, Clone, Default)]
pub struct ChatQuery {
    pub status: Option<ChatStatus>,
    pub phone_number_id: Option<PhoneNumberId>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Store {
    /// B11: chats by status and business number. The index holds keys only
    /// (so a message, which changes no listed attribute, never rewrites
    /// it); the page's chats are then read from the table, in batches.
    pub async fn list_chats(&self, query: ChatQuery) -> Result<Page<Chat>, StoreError> {
        // Index sort keys are `<status>#<phone_number_id>#<subject>`: a
        // status, and a business number under it, are key prefixes. One
        // business number's chats of any status are one range per status,
        // in the order statuses sort.
        let prefixes: Vec<String> = match (&query.status, &query.phone_number_id) {
            (Some(status), Some(id)) => vec![format!("{}#{}#", status.as_str(), id)],
            (Some(status), None) => vec![format!("{}#", status.as_str())],
            (None, Some(id)) => {
                let mut statuses = ChatStatus::ALL.map(ChatStatus::as_str);
                statuses.sort_unstable();
                statuses
                    .iter()
                    .map(|status| format!("{status}#{id}#"))
                    .collect()
            }
            (None, None) => vec![],
        };
        let ranges = if prefixes.is_empty() {
            vec![KeyRange::default()]
        } else {
            prefixes
                .into_iter()
                .map(|p| KeyRange::new(Some(p.clone()), Some(format!("{p}~"))))
                .collect()
        };
        let page = self
            .sharded_page(ShardedQuery {
                table: &self.tables.chats,
                index: Some("gsi1"),
                partitions: (0..SHARDS).map(chats_index_pk).collect(),
                ranges,
                order: Order::Ascending,
                filter: None,
                sparse: false,
                after: query.cursor.as_ref().and_then(Cursor::position),
                limit: query.limit,
            })
            .await?;
        let keys: Vec<Item> = page
            .items
            .iter()
            .map(|item| {
                TABLE_KEY
                    .iter()
                    .filter_map(|a| item.get(*a).map(|v| ((*a).to_owned(), v.clone())))
                    .collect()
            })
            .collect();
        let mut found: std::collections::HashMap<(String, String), Chat> = self
            .batch_get_all(&self.tables.chats, keys.clone())
            .await?
            .into_iter()
            .map(|item| {
                let chat: ChatItem = serde_dynamo::from_item(item)?;
                Ok(((chat.pk, chat.sk), chat.chat))
            })
            .collect::<Result<_, StoreError>>()?;
        let chats = keys
            .iter()
            .filter_map(|key| {
                let pk = key.get("pk")?.as_s().ok()?.clone();
                let sk = key.get("sk")?.as_s().ok()?.clone();
                found.remove(&(pk, sk))
            })
            // The index trails the table by a moment: a chat whose status
            // changed meanwhile is listed under its new status only.
            .filter(|chat| query.status.is_none_or(|status| chat.status == status))
            .collect();
        Ok(Page {
            items: chats,
            next: page.next.map(|at| Cursor::at("chats", None, at)),
        })
    }

    /// The update recording inbound traffic on a chat (B24): creates the
    /// chat if needed with `status_if_new`, stamps `last_inbound_at`, sets
    /// `known_contact`, and with `reopen` opens the session: a message that
    /// reaches the business opens one, also where a block had cancelled it
    /// and an unblock since let the person through again. Reopening is on
    /// condition that the chat is not `blocked`: a message let through just
    /// before a block committed must not reopen what the block cancelled
    /// (see [`Store::stamp_alone`]). The index keys are only set on a new
    /// chat, so a message writes no index item.
    pub(super) fn inbound_chat_update(
        &self,
        business: &PhoneNumberId,
        subject: &Subject,
        at: DateTime<Utc>,
        status_if_new: ChatStatus,
        known_contact: bool,
        reopen: bool,
    ) -> Result<Update, StoreError> {
        let new_chat = Chat {
            phone_number_id: business.clone(),
            subject: subject.clone(),
            status: status_if_new,
            session_status: Some(SessionStatus::Open),
            last_inbound_at: Some(at),
            last_outbound_at: None,
            known_contact,
        };
        let item = ChatItem::new(&new_chat);
        let session = if reopen {
            ":open"
        } else {
            "if_not_exists(session_status, :open)"
        };
        let mut update = Update::builder()
            .table_name(&self.tables.chats)
            .key("pk", s(item.pk))
            .key("sk", s(item.sk))
            .update_expression(format!(
                "SET last_inbound_at = :at, known_contact = :known, \
                 phone_number_id = :pnid, #subject = :subject, #number = :number, \
                 gsi1pk = if_not_exists(gsi1pk, :gsi1pk), \
                 #status = if_not_exists(#status, :status), \
                 gsi1sk = if_not_exists(gsi1sk, :gsi1sk), \
                 session_status = {session}, \
                 last_outbound_at = if_not_exists(last_outbound_at, :null)",
            ))
            .expression_attribute_names("#subject", "subject")
            .expression_attribute_names("#number", "number")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":at", s(format_time(at)))
            .expression_attribute_values(":subject", s(subject.as_str()))
            .expression_attribute_values(":number", number_attribute(subject))
            .expression_attribute_values(":known", AttributeValue::Bool(known_contact))
            .expression_attribute_values(":pnid", s(business.as_str()))
            .expression_attribute_values(":gsi1pk", s(item.gsi1pk))
            .expression_attribute_values(":status", s(status_if_new.as_str()))
            .expression_attribute_values(":gsi1sk", s(item.gsi1sk))
            .expression_attribute_values(":open", s("open"))
            .expression_attribute_values(":null", AttributeValue::Null(true));
        // Kept at its latest: Meta redelivers a delivery answered 5xx after
        // later ones went through, and an older message must not move the
        // time back. (A missing time, or the null of a chat that only
        // sends made, compares as not later.)
        let latest = "NOT (last_inbound_at > :at)";
        update = if reopen {
            update
                .condition_expression(format!(
                    "(attribute_not_exists(#status) OR #status <> :blocked) AND {latest}"
                ))
                .expression_attribute_values(":blocked", s(ChatStatus::Blocked.as_str()))
        } else {
            update.condition_expression(latest)
        };
        build(update.build())
    }

    /// Stamps one chat with `reopen` ([`Store::inbound_chat_update`]); a
    /// chat found `blocked` is stamped again with `keep`, which leaves its
    /// session as the block set it. A chat that a later message stamped
    /// already is left as it is.
    async fn stamp_alone(&self, reopen: Update, keep: Update) -> Result<(), StoreError> {
        let failed_condition = |error: &aws_sdk_dynamodb::error::SdkError<_, _>| {
            error
                .as_service_error()
                .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
        };
        match self.update_request(reopen).send().await {
            Ok(_) => Ok(()),
            Err(error) if failed_condition(&error) => {
                match self.update_request(keep).send().await {
                    Ok(_) => Ok(()),
                    Err(error) if failed_condition(&error) => Ok(()),
                    Err(error) => Err(StoreError::from(error)),
                }
            }
            Err(error) => Err(StoreError::from(error)),
        }
    }

    /// Records inbound traffic on one chat: see [`Store::record_chats`] for
    /// a delivery's.
    pub async fn record_inbound(
        &self,
        business: &PhoneNumberId,
        subject: &Subject,
        at: DateTime<Utc>,
        status_if_new: ChatStatus,
        known_contact: bool,
    ) -> Result<(), StoreError> {
        let stamp = |reopen| {
            self.inbound_chat_update(business, subject, at, status_if_new, known_contact, reopen)
        };
        self.stamp_alone(stamp(true)?, stamp(false)?).await
    }

    /// One chat (B11).
    pub async fn get_chat(
        &self,
        business: &PhoneNumberId,
        subject: &Subject,
    ) -> Result<Option<Chat>, StoreError> {
        let item = self
            .get_one(&self.tables.chats, subject_pk(subject), business.as_str())
            .await?;
        match item {
            Some(item) => Ok(Some(serde_dynamo::from_item::<_, ChatItem>(item)?.chat)),
            None => Ok(None),
        }
    }

    /// B24: chats of forwarded messages; by transactions of 100 for a
    /// large delivery (B29). Each touch is idempotent (times are set, not
    /// added), so a retry of the whole may rewrite what already landed.
    pub async fn record_chats(
        &self,
        chats: &[crate::inbound::ChatTouch],
    ) -> Result<(), StoreError> {
        // A transaction may name a chat once: the latest touch of each.
        let mut latest: HashMap<(&PhoneNumberId, &Subject), &crate::inbound::ChatTouch> =
            HashMap::new();
        for chat in chats {
            let entry = latest
                .entry((&chat.phone_number_id, &chat.subject))
                .or_insert(chat);
            if chat.at > entry.at {
                *entry = chat;
            }
        }
        let stamps = latest
            .into_values()
            .map(|chat| {
                let stamp = |reopen| {
                    self.inbound_chat_update(
                        &chat.phone_number_id,
                        &chat.subject,
                        chat.at,
                        ChatStatus::Active,
                        chat.known_contact,
                        reopen,
                    )
                };
                Ok((stamp(true)?, stamp(false)?))
            })
            .collect::<Result<Vec<(Update, Update)>, StoreError>>()?;
        if stamps.len() < BATCH_FROM {
            return self.stamps_alone(stamps).await;
        }
        run_in_turn(
            stamps
                .chunks(MAX_TRANSACTION_ACTIONS)
                .map(|chunk| self.stamps_together(chunk.to_vec()))
                .collect(),
        )
        .await?;
        Ok(())
    }

    /// Stamps of distinct chats in one transaction; one call each should
    /// another transaction hold some of them, or should some chats be
    /// `blocked` (their sessions stay as the block set them).
    async fn stamps_together(&self, stamps: Vec<(Update, Update)>) -> Result<(), StoreError> {
        let actions = stamps
            .iter()
            .map(|(reopen, _)| TransactWriteItem::builder().update(reopen.clone()).build())
            .collect();
        match self.transact(actions, None).await? {
            Outcome::Committed => Ok(()),
            Outcome::ConditionFailed { .. } | Outcome::Conflict => self.stamps_alone(stamps).await,
        }
    }

    /// Stamps, one call each (see [`Store::stamp_alone`]).
    async fn stamps_alone(&self, stamps: Vec<(Update, Update)>) -> Result<(), StoreError> {
        run_all(
            stamps
                .into_iter()
                .map(|(reopen, keep)| self.stamp_alone(reopen, keep))
                .collect(),
        )
        .await?;
        Ok(())
    }

    /// A message went out on a chat: stamps `last_outbound_at` and
    /// `known_contact` (as read for the send), creating the chat (active, no
    /// session) when it is the first contact.
    pub async fn record_outbound(
        &self,
        business: &PhoneNumberId,
        subject: &Subject,
        at: DateTime<Utc>,
        known_contact: bool,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.tables.chats)
            .key("pk", s(subject_pk(subject)))
            .key("sk", s(business.as_str()))
            .update_expression(
                "SET last_outbound_at = :at, phone_number_id = :pnid, #subject = :subject, \
                 #number = :number, \
                 gsi1pk = if_not_exists(gsi1pk, :gsi1pk), \
                 #status = if_not_exists(#status, :active), \
                 gsi1sk = if_not_exists(gsi1sk, :gsi1sk), \
                 last_inbound_at = if_not_exists(last_inbound_at, :null), \
                 known_contact = :known",
            )
            .expression_attribute_names("#subject", "subject")
            .expression_attribute_names("#number", "number")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":at", s(format_time(at)))
            .expression_attribute_values(":pnid", s(business.as_str()))
            .expression_attribute_values(":subject", s(subject.as_str()))
            .expression_attribute_values(":number", number_attribute(subject))
            .expression_attribute_values(":gsi1pk", s(chats_index_pk(shard_of(subject.as_str()))))
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(
                ":gsi1sk",
                s(chat_gsi1sk("active", business.as_str(), subject)),
            )
            .expression_attribute_values(":null", AttributeValue::Null(true))
            .expression_attribute_values(":known", AttributeValue::Bool(known_contact))
            .send()
            .await?;
        Ok(())
    }
}

/// The `number` attribute written beside `subject`: the number, or null
/// for a BSUID (see `identity::subject_fields`).
pub(super) fn number_attribute(subject: &Subject) -> AttributeValue {
    match subject.number() {
        Some(number) => s(number.as_str()),
        None => AttributeValue::Null(true),
    }
}
