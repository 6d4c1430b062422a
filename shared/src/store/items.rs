//! Item shapes and key builders (see the key design in `mod.rs`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{AuditEvent, Block, Chat, Contact, Settings, format_time};
use crate::number::Number;

pub const STATE: &str = "STATE";
pub const CONTACT: &str = "CONTACT";
pub const BLOCKS_PARTITION: &str = "BLOCKS";
pub const CHATS_PARTITION: &str = "CHATS";
pub const SETTINGS_PARTITION: &str = "SETTINGS";
pub const STATS_PARTITION: &str = "STATS";

pub fn number_pk(number: &Number) -> String {
    format!("N#{number}")
}

pub fn block_sk(scope: &str) -> String {
    format!("B#{scope}")
}

pub fn day_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

pub fn day_pk(day: &str) -> String {
    format!("D#{day}")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StateItem {
    pub pk: String,
    pub sk: String,
    pub version: u64,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub unblocked_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BlockItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    #[serde(flatten)]
    pub block: Block,
    /// Lower-cased number, contact name and email, for `q` (B7).
    pub search: String,
    pub category: Option<String>,
    pub groups: Vec<String>,
}

impl BlockItem {
    pub fn new(block: &Block, contact: Option<&Contact>) -> Self {
        BlockItem {
            pk: number_pk(&block.number),
            sk: block_sk(block.scope.as_str()),
            gsi1pk: BLOCKS_PARTITION.to_owned(),
            gsi1sk: format!(
                "{}#{}#{}",
                format_time(block.blocked_at),
                block.number,
                block.scope
            ),
            block: block.clone(),
            search: crate::model::contact_search_text(&block.number, contact),
            category: contact.and_then(|c| c.category.clone()),
            groups: contact.map(|c| c.groups.clone()).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ContactItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub contact: Contact,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChatItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    #[serde(flatten)]
    pub chat: Chat,
}

pub fn chat_gsi1sk(status: &str, phone_number_id: &str, number: &Number) -> String {
    format!("{status}#{phone_number_id}#{number}")
}

impl ChatItem {
    pub fn new(chat: &Chat) -> Self {
        ChatItem {
            pk: number_pk(&chat.number),
            sk: chat.phone_number_id.to_string(),
            gsi1pk: CHATS_PARTITION.to_owned(),
            gsi1sk: chat_gsi1sk(
                chat.status.as_str(),
                chat.phone_number_id.as_str(),
                &chat.number,
            ),
            chat: chat.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AuditItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl AuditItem {
    /// `partition` is `N#<number>` or `S#<settings id>`.
    pub fn new(partition: String, event: &AuditEvent) -> Self {
        AuditItem {
            pk: partition,
            sk: event.event_id.clone(),
            gsi1pk: day_pk(&day_of(event.at)),
            gsi1sk: event.event_id.clone(),
            event: event.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SettingsItem {
    pub pk: String,
    pub sk: String,
    pub version: u64,
    #[serde(flatten)]
    pub settings: Settings,
}
