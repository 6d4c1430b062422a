//! Platform block states (B15) in Blocklist: `<subject pk>` /
//! `P#<phone_number_id>`, one per person and business number, beside the
//! person's blocks: the subject's partition read ([`Store::load_subject`])
//! brings them with the blocks, with no read of its own. A state that must
//! be asked again with no event to trigger it (a failed unblock, a
//! transient refusal) also carries the keys of the retry index,
//! `gsi2` under `PLATFORM#<nn>` / `<at>#<subject>#<phone_number_id>`
//! (sparse, keys only, beside the expiry index's `EXPIRES#<nn>`).
//!
//! Written only by `platform-block`, outside the change transactions: the
//! state is what Meta answered, not part of the block, and a change never
//! writes it. Writes follow Meta's answers (one per person and number per
//! change of their blocks, or per first message after one, or per retry),
//! so the subject partition sees no more writes than its blocks do, and the
//! retry index no more than Meta refuses (S1).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::run_all;
use super::keys::{shard_of, subject_of_pk, subject_pk};
use super::{Store, StoreError};
use crate::identity::Subject;
use crate::model::{PhoneNumberId, PlatformState, format_time, time_format};
use crate::platform::PlatformMirror;

pub(super) const PLATFORM_PREFIX: &str = "P#";

/// The index the retry sweep reads (shared with the expiry index).
const RETRY_INDEX: &str = "gsi2";

fn retry_index_pk(shard: u32) -> String {
    format!("PLATFORM#{shard:02}")
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PlatformItem {
    pub pk: String,
    pub sk: String,
    pub phone_number_id: PhoneNumberId,
    #[serde(flatten)]
    pub state: PlatformState,
    #[serde(default, with = "time_format::option")]
    pub wrote_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2sk: Option<String>,
}

impl PlatformItem {
    pub fn mirror(self, subject: &Subject) -> PlatformMirror {
        PlatformMirror {
            subject: subject.clone(),
            phone_number_id: self.phone_number_id,
            state: self.state,
            wrote_at: self.wrote_at,
        }
    }
}

impl Store {
    /// Records what Meta holds for each person and business number.
    pub async fn record_platform_states(
        &self,
        mirrors: &[PlatformMirror],
    ) -> Result<(), StoreError> {
        let puts = mirrors
            .iter()
            .map(|mirror| async move {
                let due = mirror.state.is_retry_due();
                let item = PlatformItem {
                    pk: subject_pk(&mirror.subject),
                    sk: format!("{PLATFORM_PREFIX}{}", mirror.phone_number_id),
                    phone_number_id: mirror.phone_number_id.clone(),
                    state: mirror.state.clone(),
                    wrote_at: mirror.wrote_at,
                    gsi2pk: due.then(|| retry_index_pk(shard_of(mirror.subject.as_str()))),
                    gsi2sk: due.then(|| {
                        format!(
                            "{}#{}#{}",
                            format_time(mirror.state.at),
                            mirror.subject,
                            mirror.phone_number_id
                        )
                    }),
                };
                self.client
                    .put_item()
                    .table_name(&self.tables.blocklist)
                    .set_item(Some(serde_dynamo::to_item(item)?))
                    .send()
                    .await?;
                Ok::<(), StoreError>(())
            })
            .collect();
        run_all(puts).await?;
        Ok(())
    }

    /// The persons whose platform state was last decided before `before`
    /// and must be asked again (see [`PlatformState::is_retry_due`]): at
    /// most `per_shard` of each of the 16 shards, oldest first. The index is
    /// eventually consistent: each is decided again on a consistent read.
    pub async fn platform_retries_due(
        &self,
        before: DateTime<Utc>,
        per_shard: i32,
    ) -> Result<Vec<Subject>, StoreError> {
        // A state decided at `before` exactly sorts after it ('#'): left.
        let pages = self
            .index_up_to(RETRY_INDEX, retry_index_pk, &format_time(before), per_shard)
            .await?;
        let mut due = std::collections::BTreeSet::new();
        for page in pages {
            for item in page.items.unwrap_or_default() {
                let subject = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|pk| subject_of_pk(pk))
                    .ok_or_else(|| {
                        StoreError::Corrupt("a platform retry index item names no subject".into())
                    })?;
                due.insert(subject);
            }
        }
        Ok(due.into_iter().collect())
    }
}
