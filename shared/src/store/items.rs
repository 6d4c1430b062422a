//! Item shapes and key builders (see the key design in `mod.rs`).

use serde::{Deserialize, Serialize};

use crate::identity::{Link, Subject};
use crate::model::{Action, AuditEvent, Block, Chat, Contact, Settings, format_time};

use super::keys::{day_of, shard_of, subject_pk};

pub const STATE: &str = "STATE";
pub const CONTACT: &str = "CONTACT";
pub const SETTINGS: &str = "SETTINGS";

/// The partition of one settings entry (`<phone_number_id>` or `default`):
/// each its own key, so that reading one business number's settings never
/// queues behind another's.
pub fn settings_pk(id: &str) -> String {
    format!("SETTINGS#{id}")
}

/// Index partition of the block listing (B7) holding `subject`'s blocks.
pub fn blocks_index_pk(shard: u32) -> String {
    format!("BLOCKS#{shard:02}")
}

/// Index partition of the chat listing (B11) holding `subject`'s chats.
pub fn chats_index_pk(shard: u32) -> String {
    format!("CHATS#{shard:02}")
}

/// The two kinds of audit events the feed keeps apart (S2): traffic
/// refused (`inbound_suppressed`, `outbound_refused`), which a spam flood
/// multiplies, and changes (every other action), so that a feed of changes
/// never reads through a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditClass {
    Traffic,
    Change,
}

impl AuditClass {
    pub const ALL: [AuditClass; 2] = [AuditClass::Traffic, AuditClass::Change];

    pub fn of(action: Action) -> Self {
        match action {
            Action::InboundSuppressed | Action::OutboundRefused => AuditClass::Traffic,
            _ => AuditClass::Change,
        }
    }

    fn code(self) -> &'static str {
        match self {
            AuditClass::Traffic => "t",
            AuditClass::Change => "c",
        }
    }
}

/// Index partition of one shard of one class of a day of the global audit
/// feed (B8).
pub fn audit_index_pk(day: &str, class: AuditClass, shard: u32) -> String {
    format!("D#{day}#{}#{shard:02}", class.code())
}

/// Partition of one shard of the statistics counters (B9); its sort keys
/// are `D#<yyyy-mm-dd>` (day counters) and [`BLOCKED_COUNT`].
pub fn stats_pk(shard: u32) -> String {
    format!("STATS#{shard:02}")
}

/// Sort key of a shard's day counters.
pub fn stats_day_sk(day: &str) -> String {
    format!("D#{day}")
}

/// Sort key of a shard's count of blocked subjects.
pub const BLOCKED_COUNT: &str = "C";

pub fn block_sk(scope: &str) -> String {
    format!("B#{scope}")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StateItem {
    pub pk: String,
    pub sk: String,
    pub version: u64,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub unblocked_at: Option<String>,
    /// A copy of the subject's own blocks, so that linking it to another
    /// identity can mirror them without reading every block item.
    #[serde(default)]
    pub blocks: Vec<Block>,
    #[serde(default)]
    pub links: Vec<Link>,
    /// Blocks of linked identities (B61), read by every enforcement path.
    #[serde(default)]
    pub linked_blocks: Vec<Block>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BlockItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    #[serde(flatten)]
    pub block: Block,
}

/// Where a block sorts in every listing: newest first, then by subject and
/// scope, which makes it unique.
pub fn block_listing_sk(block: &Block) -> String {
    format!(
        "{}#{}#{}",
        format_time(block.blocked_at),
        block.subject,
        block.scope
    )
}

impl BlockItem {
    pub fn new(block: &Block) -> Self {
        BlockItem {
            pk: subject_pk(&block.subject),
            sk: block_sk(block.scope.as_str()),
            gsi1pk: blocks_index_pk(shard_of(block.subject.as_str())),
            gsi1sk: block_listing_sk(block),
            block: block.clone(),
        }
    }
}

/// Partition of one shard of one index token's items (S2, see
/// `model::search`).
pub fn token_pk(token: &str, shard: u32) -> String {
    format!("I#{token}#{shard:02}")
}

/// A block under one of its index tokens: a copy of the block with the
/// contact fields the filters check, so that a filtered listing reads
/// nothing else.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub block: Block,
    /// Lower-cased number, contact name and email, for `q` (B7).
    pub search: String,
    pub category: Option<String>,
    pub groups: Vec<String>,
}

impl TokenItem {
    /// Every index item of `block` while the contact is `contact`.
    pub fn all_of(block: &Block, contact: Option<&Contact>) -> Vec<TokenItem> {
        let shard = shard_of(block.subject.as_str());
        let sk = block_listing_sk(block);
        let search = crate::model::search::search_text(&block.subject, contact);
        crate::model::search::index_tokens(block, contact)
            .into_iter()
            .map(|token| TokenItem {
                pk: token_pk(&token, shard),
                sk: sk.clone(),
                block: block.clone(),
                search: search.clone(),
                category: contact.and_then(|c| c.category.clone()),
                groups: contact.map(|c| c.groups.clone()).unwrap_or_default(),
            })
            .collect()
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

pub fn chat_gsi1sk(status: &str, phone_number_id: &str, subject: &Subject) -> String {
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
    /// `partition` is a subject's (`N#…`, `U#…`) or `S#<settings id>`.
    pub fn new(partition: String, event: &AuditEvent) -> Self {
        AuditItem {
            pk: partition,
            sk: event.event_id.clone(),
            // Spread by event, not subject: one noisy sender's events still
            // land on every shard of the day.
            gsi1pk: audit_index_pk(
                &day_of(event.at),
                AuditClass::of(event.action),
                shard_of(&event.event_id),
            ),
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
