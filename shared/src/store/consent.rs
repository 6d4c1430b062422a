//! Consent records (B80) in Blocklist: `<subject pk>` / `CONSENT#<scope>`
//! (`all` or a business number), beside the subject's blocks, so that the
//! subject's partition read brings them and a send's enforcement read gets
//! them by key in the same batch as the subject's state. Written with their
//! audit event and day counter in one transaction, guarded by the record's
//! own version; a consent change never touches the blocks.
//!
//! Writes: one per consent change of one person (a keyword, Meta's
//! preference, an API call): the subject's partition sees no more than
//! the person's own messages (S1).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::keys::{shard_of, subject_pk};
use super::transaction::Outcome;
use super::{Store, StoreError, build, key, n};
use crate::identity::Subject;
use crate::model::{
    Action, Actor, AuditEvent, Consent, ConsentChange, ConsentValue, PhoneNumberId, Scope,
    StatCounter,
};

pub(super) const CONSENT_PREFIX: &str = "CONSENT#";

fn consent_sk(scope: &Scope) -> String {
    format!("{CONSENT_PREFIX}{scope}")
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ConsentItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub consent: Consent,
    pub version: u64,
}

impl Store {
    /// The consent records of `subjects` that apply to `business` (scope
    /// `all` and that number), strongly consistent (S4: never cached).
    pub async fn consents_for(
        &self,
        subjects: &[Subject],
        business: &PhoneNumberId,
    ) -> Result<Vec<Consent>, StoreError> {
        let scopes = [Scope::All, Scope::Business(business.clone())];
        let keys = subjects
            .iter()
            .flat_map(|subject| {
                scopes
                    .iter()
                    .map(move |scope| key(subject_pk(subject), consent_sk(scope)))
            })
            .collect();
        self.batch_get_blocklist(keys)
            .await?
            .into_iter()
            .map(|item| Ok(serde_dynamo::from_item::<_, ConsentItem>(item)?.consent))
            .collect()
    }

    /// Every consent record of `subject`, in every scope, strongly
    /// consistent: one query of its partition's `CONSENT#` items.
    pub async fn consent_records(&self, subject: &Subject) -> Result<Vec<Consent>, StoreError> {
        super::batch::all_pages(
            self.client
                .query()
                .table_name(&self.tables.blocklist)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", super::s(subject_pk(subject)))
                .expression_attribute_values(":prefix", super::s(CONSENT_PREFIX))
                .consistent_read(true),
        )
        .await?
        .into_iter()
        .map(|item| Ok(serde_dynamo::from_item::<_, ConsentItem>(item)?.consent))
        .collect()
    }

    /// Applies each of `changes` ([`Store::change_consent`]), concurrently;
    /// returns how many changed a value.
    pub async fn record_consents(
        &self,
        changes: &[ConsentChange],
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let changed = self.record_each_consent(changes, actor, now).await?;
        Ok(changed.into_iter().filter(|c| *c).count())
    }

    /// [`Store::record_consents`], saying of each change whether it changed
    /// a value.
    pub async fn record_each_consent(
        &self,
        changes: &[ConsentChange],
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        // Run concurrently, they finish in any order: each keeps its place.
        let writes = changes
            .iter()
            .enumerate()
            .map(|(i, change)| async move {
                let outcome = self.change_consent(change, actor, now).await?;
                Ok::<_, StoreError>((i, outcome.is_some_and(|(_, changed)| changed)))
            })
            .collect();
        let mut outcomes = super::batch::run_all(writes).await?;
        outcomes.sort_by_key(|(i, _)| *i);
        Ok(outcomes.into_iter().map(|(_, changed)| changed).collect())
    }

    /// B80: applies `change` at `now`: the record after it, and whether a
    /// value changed (then with its `opted_out` / `opted_in` audit event
    /// and day counter, in the same transaction). `None` when the change is
    /// not newer than what set that value (a duplicate, a late delivery).
    pub async fn change_consent(
        &self,
        change: &ConsentChange,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Option<(Consent, bool)>, StoreError> {
        let pk = subject_pk(&change.subject);
        let sk = consent_sk(&change.scope);
        crate::service::retry_on_conflict(8, &(&pk, &sk), || async {
            let stored = self
                .get_one(&self.tables.blocklist, pk.clone(), &sk)
                .await?;
            let (current, version) = match stored {
                Some(item) => {
                    let item: ConsentItem = serde_dynamo::from_item(item)?;
                    (item.consent, item.version)
                }
                None => (
                    Consent::unset(change.subject.clone(), change.scope.clone()),
                    0,
                ),
            };
            let Some((next, changed)) = current.after(change) else {
                return Ok(None);
            };
            let item = ConsentItem {
                pk: pk.clone(),
                sk: sk.clone(),
                consent: next.clone(),
                version: version + 1,
            };
            let mut put = aws_sdk_dynamodb::types::Put::builder()
                .table_name(&self.tables.blocklist)
                .set_item(Some(serde_dynamo::to_item(item)?));
            put = if version == 0 {
                put.condition_expression("attribute_not_exists(pk)")
            } else {
                put.condition_expression("version = :v")
                    .expression_attribute_values(":v", n(version))
            };
            let mut actions = vec![
                aws_sdk_dynamodb::types::TransactWriteItem::builder()
                    .put(build(put.build())?)
                    .build(),
            ];
            if changed {
                let (action, counter) = match change.value {
                    ConsentValue::OptedOut => (Action::OptedOut, StatCounter::OptedOut),
                    ConsentValue::OptedIn => (Action::OptedIn, StatCounter::OptedIn),
                };
                let event = AuditEvent {
                    event_id: AuditEvent::new_id(now),
                    subject: Some(change.subject.clone()),
                    scope: Some(change.scope.to_string()),
                    action,
                    actor: actor.actor.clone(),
                    client: actor.client.clone(),
                    reason: None,
                    source: Some(change.source.as_str().to_owned()),
                    at: now,
                    details: json!({
                        "category": change.category.as_str(),
                        "phone_number_id": change.scope,
                        "message_id": change.message_id,
                        "said_at": crate::model::format_time(change.at),
                    }),
                    prev_event_id: None,
                    prev_hash: None,
                    hash: None,
                };
                actions.push(self.audit_put(pk.clone(), &event)?);
                actions.push(self.counter_update(
                    now,
                    shard_of(change.subject.as_str()),
                    counter.attribute(),
                    1,
                )?);
            }
            match self.transact(actions, None).await? {
                Outcome::Committed => Ok(Some((next, changed))),
                Outcome::ConditionFailed { .. } | Outcome::Conflict => Err(StoreError::Conflict),
            }
        })
        .await
    }
}
