//! Platform block states (B15) in Blocklist: `<subject pk>` /
//! `P#<phone_number_id>`, one per person and business number, beside the
//! person's blocks: the subject's partition read ([`Store::load_subject`])
//! brings them with the blocks, with no read of its own.
//!
//! Written only by `platform-block`, outside the change transactions: the
//! state is what Meta answered, not part of the block, and a change never
//! writes it. Writes follow Meta's answers (one per person and number per
//! change of their blocks, or per first message after one), so the subject
//! partition sees no more writes than its blocks do (S1).

use serde::{Deserialize, Serialize};

use super::batch::run_all;
use super::keys::subject_pk;
use super::{Store, StoreError};
use crate::model::{PhoneNumberId, PlatformState};
use crate::platform::PlatformMirror;

pub(super) const PLATFORM_PREFIX: &str = "P#";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PlatformItem {
    pub pk: String,
    pub sk: String,
    pub phone_number_id: PhoneNumberId,
    #[serde(flatten)]
    pub state: PlatformState,
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
                let item = PlatformItem {
                    pk: subject_pk(&mirror.subject),
                    sk: format!("{PLATFORM_PREFIX}{}", mirror.phone_number_id),
                    phone_number_id: mirror.phone_number_id.clone(),
                    state: mirror.state.clone(),
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
}
