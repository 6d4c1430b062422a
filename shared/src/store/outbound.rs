//! The send proxy's writes: refusals (B31) and chat activity.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::items::{chat_gsi1sk, chats_index_pk};
use super::keys::{shard_of, subject_pk};
use super::number::number_attribute;
use super::{Store, StoreError, s};
use crate::identity::Subject;
use crate::model::{PhoneNumberId, format_time};

impl Store {
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
