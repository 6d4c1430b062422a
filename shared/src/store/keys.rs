//! Key helpers shared by every entity: the key attributes of a table, the
//! shard of a key, the partition of a subject and the day of a time.

use chrono::{DateTime, Utc};

use crate::identity::Subject;

pub(super) const TABLE_KEY: [&str; 2] = ["pk", "sk"];

/// Partition keys each listing index and each counter is spread over (S1).
/// See the capacity table in `mod.rs` for why 16 is enough.
pub const SHARDS: u32 = 16;

/// Stable shard of a key (FNV-1a, so it never changes between processes or
/// releases).
pub fn shard_of(key: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % SHARDS
}

/// The partition of everything about one subject: `N#<number>` or
/// `U#<bsuid>`.
pub fn subject_pk(subject: &Subject) -> String {
    match subject {
        Subject::Number(number) => format!("N#{number}"),
        Subject::User(id) => format!("U#{id}"),
    }
}

/// The subject a partition key names (`N#…` or `U#…`).
pub(super) fn subject_of_pk(pk: &str) -> Option<Subject> {
    let (kind, raw) = pk.split_once('#')?;
    match kind {
        "N" | "U" => serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok(),
        _ => None,
    }
}

pub(super) fn day_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}
