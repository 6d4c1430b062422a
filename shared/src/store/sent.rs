//! Sent messages (B64): which subject a message sent through the proxy
//! went to, `O#<message id>` / `SENT`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Item, Store, StoreError, key};
use crate::identity::Subject;
use crate::model::PhoneNumberId;

pub(super) const SENT: &str = "SENT";

/// B64: which subject a message sent through the proxy went to.
pub(super) fn sent_pk(message_id: &str) -> String {
    format!("O#{message_id}")
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SentItem {
    pub pk: String,
    pub sk: String,
    pub message_id: String,
    #[serde(flatten, with = "crate::identity::subject_fields")]
    pub subject: Subject,
    pub phone_number_id: String,
    pub ttl: i64,
}

/// B64: sends are remembered for 30 days, longer than Meta keeps sending
/// statuses of a message.
pub const SENT_RECORD_DAYS: i64 = 30;

impl Store {
    /// B64: remembers who a sent message went to, so that a `failed`
    /// status naming neither `recipient_id` nor `recipient_user_id` is
    /// still counted for the right person.
    pub async fn record_sent(
        &self,
        message_id: &str,
        subject: &Subject,
        business: &PhoneNumberId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let item = SentItem {
            pk: sent_pk(message_id),
            sk: SENT.to_owned(),
            message_id: message_id.to_owned(),
            subject: subject.clone(),
            phone_number_id: business.to_string(),
            ttl: (now + chrono::Duration::days(SENT_RECORD_DAYS)).timestamp(),
        };
        self.client
            .put_item()
            .table_name(&self.tables.messages)
            .set_item(Some(serde_dynamo::to_item(item)?))
            .send()
            .await?;
        Ok(())
    }

    /// B64: who the send proxy sent each of these message ids to (records
    /// kept 30 days), in batched reads.
    pub async fn sent_subjects(
        &self,
        message_ids: &[String],
    ) -> Result<HashMap<String, Subject>, StoreError> {
        let keys: Vec<Item> = message_ids
            .iter()
            .map(|id| key(sent_pk(id), SENT))
            .collect();
        let items = self.batch_get_all(&self.tables.messages, keys).await?;
        let mut sent = HashMap::new();
        for item in items {
            let record: SentItem = serde_dynamo::from_item(item)?;
            sent.insert(record.message_id, record.subject);
        }
        Ok(sent)
    }
}
