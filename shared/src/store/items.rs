//! Item shapes and key builders (see the key design in `mod.rs`).

use serde::{Deserialize, Serialize};

use crate::identity::{Link, Subject};
use crate::model::{Block, Chat, Contact, format_time};

use super::keys::{shard_of, subject_pk};

pub const STATE: &str = "STATE";

/// Index partition of the block listing (B7) holding `subject`'s blocks.
pub fn blocks_index_pk(shard: u32) -> String {
    format!("BLOCKS#{shard:02}")
}

/// Index partition of the chat listing (B11) holding `subject`'s chats.
pub fn chats_index_pk(shard: u32) -> String {
    format!("CHATS#{shard:02}")
}

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
