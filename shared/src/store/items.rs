//! Item shapes and key builders (see the key design in `mod.rs`).

use serde::{Deserialize, Serialize};

use crate::identity::Link;
use crate::model::Block;

pub const STATE: &str = "STATE";

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
