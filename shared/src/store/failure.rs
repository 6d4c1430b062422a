//! Delivery failures (B25), read by `wa-blocked`: the Failures table,
//! `F#<subject>` / `<at>#<status id>`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::{all_pages, run_all};
use super::{Store, StoreError, s};
use crate::identity::Subject;
use crate::inbound::DeliveryFailure;
use crate::model::format_time;

/// Failures outlive the longest auto-block window (365 days).
const FAILURE_DAYS: i64 = 400;

/// Failures of a subject, sorted by time (`F#<subject>`; the stream filter
/// feeding `wa-blocked` matches the `F#` prefix).
pub(super) fn failure_pk(subject: &Subject) -> String {
    format!("F#{subject}")
}

/// A delivery failure (B25), as `wa-blocked` reads it from the stream.
#[derive(Debug, Serialize, Deserialize)]
pub struct FailureItem {
    pub pk: String,
    pub sk: String,
    /// Always `delivery_failure`: what the stream consumer checks.
    pub kind: String,
    #[serde(flatten, with = "crate::identity::subject_fields")]
    pub subject: Subject,
    /// Empty when the status named no business number.
    #[serde(default)]
    pub phone_number_id: String,
    /// 0 when the status carried no code.
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub title: String,
    pub message_id: String,
    pub at: String,
    pub ttl: i64,
}

impl FailureItem {
    pub const KIND: &'static str = "delivery_failure";

    pub fn new(failure: &crate::inbound::DeliveryFailure, keep_days: i64) -> Self {
        FailureItem {
            pk: failure_pk(&failure.subject),
            sk: format!("{}#{}", format_time(failure.at), failure.message_id),
            kind: Self::KIND.to_owned(),
            subject: failure.subject.clone(),
            phone_number_id: failure
                .phone_number_id
                .as_ref()
                .map_or_else(String::new, |p| p.to_string()),
            code: failure.code.unwrap_or(0),
            title: failure.title.clone().unwrap_or_default(),
            message_id: failure.message_id.clone(),
            at: format_time(failure.at),
            ttl: (failure.at + chrono::Duration::days(keep_days)).timestamp(),
        }
    }

    pub fn failure(self) -> Result<crate::inbound::DeliveryFailure, super::StoreError> {
        let at = DateTime::parse_from_rfc3339(&self.at)
            .map_err(|e| super::StoreError::Corrupt(e.to_string()))?
            .with_timezone(&Utc);
        Ok(crate::inbound::DeliveryFailure {
            subject: self.subject,
            phone_number_id: crate::model::PhoneNumberId::parse(&self.phone_number_id).ok(),
            code: Some(self.code).filter(|c| *c != 0),
            title: Some(self.title).filter(|t| !t.is_empty()),
            message_id: self.message_id,
            at,
        })
    }
}

impl Store {
    /// B25: delivery failures for `wa-blocked`. Keyed by time and status id,
    /// so a redelivered status writes the same item again.
    pub async fn record_failures(&self, failures: &[DeliveryFailure]) -> Result<(), StoreError> {
        run_all(
            failures
                .iter()
                .map(|failure| self.record_failure(failure))
                .collect(),
        )
        .await?;
        Ok(())
    }

    async fn record_failure(&self, failure: &DeliveryFailure) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.failures)
            .set_item(Some(serde_dynamo::to_item(FailureItem::new(
                failure,
                FAILURE_DAYS,
            ))?))
            .send()
            .await?;
        Ok(())
    }

    /// The delivery failures of a subject since `since`, oldest first.
    pub async fn failures_since(
        &self,
        subject: &Subject,
        since: DateTime<Utc>,
    ) -> Result<Vec<DeliveryFailure>, StoreError> {
        let items = all_pages(
            self.client
                .query()
                .table_name(&self.tables.failures)
                .key_condition_expression("pk = :pk AND sk >= :since")
                .expression_attribute_values(":pk", s(failure_pk(subject)))
                .expression_attribute_values(":since", s(crate::model::format_time(since)))
                .consistent_read(true),
        )
        .await?;
        let mut failures = Vec::new();
        for item in items {
            let item: FailureItem = serde_dynamo::from_item(item)?;
            failures.push(item.failure()?);
        }
        Ok(failures)
    }
}
