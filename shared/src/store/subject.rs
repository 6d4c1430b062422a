//! Subjects and their `STATE` item (`<subject pk>` / `STATE`), the version
//! guard of every change. Reading and changing one number: the enforcement
//! read and the transactional write of a [`SubjectChange`] (B3, B4), and
//! of links (B61).

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::{all_pages, run_all};
use super::block::{BlockItem, TOKEN_PK_PREFIX, TOKEN_STATE_VERSION, TokenItem, block_sk};
use super::chat::{ChatItem, chat_gsi1sk};
use super::consent::{CONSENT_PREFIX, ConsentItem};
use super::contact::{CONTACT, ContactItem};
use super::keys::{shard_of, subject_of_pk, subject_pk};
use super::platform::{PLATFORM_PREFIX, PlatformItem};
use super::stats::{BLOCKED_COUNT, stats_pk};
use super::transaction::{
    MAX_TRANSACTION_ACTIONS, Outcome, condition_failure_is_fine, delete_action, put_action,
};
use super::{Item, Store, StoreError, build, key, n, s};
use crate::identity::{Link, Subject};
use crate::inbound::SenderFacts;
use crate::model::{Block, ChainHead, Contact, PhoneNumberId, format_time};
use crate::policy::{LinkChange, SubjectChange, SubjectRecord, SubjectState};

/// How long the writes that did not fit in a change's transaction may be
/// retried after it committed.
const OVERFLOW_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) const STATE: &str = "STATE";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StateItem {
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
    /// The newest link of the subject's chain of change events (B53).
    #[serde(default)]
    pub audit_head: Option<ChainHead>,
}

impl Store {
    /// Everything about a subject, strongly consistent (B4): its partition
    /// in Blocklist and in Chats, queried concurrently, then the states and
    /// chats of the identities it is linked to (B61), which a change must
    /// update with it.
    pub async fn load_subject(&self, subject: &Subject) -> Result<SubjectRecord, StoreError> {
        let pk = subject_pk(subject);
        let (own, chats) = futures::try_join!(
            self.query_partition(&self.tables.blocklist, &pk),
            self.query_partition(&self.tables.chats, &pk),
        )?;
        let mut record = SubjectRecord::empty(subject.clone());
        for item in own {
            let sk = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            if sk == STATE {
                let state = state_from_item(subject, item)?;
                record.version = state.version;
                record.last_unblocked_at = state.unblocked_at;
                record.links = state.links;
                record.linked_blocks = state.linked_blocks;
                record.audit_head = state.audit_head;
            } else if sk == CONTACT {
                let contact: ContactItem = serde_dynamo::from_item(item)?;
                record.contact = Some(contact.contact);
            } else if sk.starts_with("B#") {
                let block: BlockItem = serde_dynamo::from_item(item)?;
                record.blocks.push(block.block);
            } else if sk.starts_with(CONSENT_PREFIX) {
                let consent: ConsentItem = serde_dynamo::from_item(item)?;
                record.consents.push(consent.consent);
            } else if sk.starts_with(PLATFORM_PREFIX) {
                let mirror: PlatformItem = serde_dynamo::from_item(item)?;
                record.platform.push(mirror.mirror(subject));
            }
        }
        for item in chats {
            let chat: ChatItem = serde_dynamo::from_item(item)?;
            record.chats.push(chat.chat);
        }
        let linked: Vec<Subject> = record
            .links
            .iter()
            .flat_map(crate::identity::Link::subjects)
            .filter(|s| s != subject)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !linked.is_empty() {
            let partitions: Vec<String> = linked.iter().map(subject_pk).collect();
            let chats_of = partitions
                .iter()
                .map(|pk| self.query_partition(&self.tables.chats, pk));
            let (states, chats) = futures::try_join!(
                self.subject_states(&linked),
                futures::future::try_join_all(chats_of),
            )?;
            record.linked = linked
                .iter()
                .map(|other| {
                    states
                        .get(other)
                        .cloned()
                        .unwrap_or_else(|| SubjectState::empty(other.clone()))
                })
                .collect();
            for item in chats.into_iter().flatten() {
                let chat: ChatItem = serde_dynamo::from_item(item)?;
                record.chats.push(chat.chat);
            }
        }
        Ok(record)
    }

    /// The `STATE` items of `subjects`, strongly consistent, in batches.
    pub async fn subject_states(
        &self,
        subjects: &[Subject],
    ) -> Result<std::collections::HashMap<Subject, SubjectState>, StoreError> {
        let keys: Vec<Item> = subjects
            .iter()
            .map(|subject| key(subject_pk(subject), STATE))
            .collect();
        let items = self.batch_get_blocklist(keys).await?;
        let mut states = std::collections::HashMap::new();
        for item in items {
            let Some(subject) = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .and_then(|pk| subject_of_pk(pk))
            else {
                continue;
            };
            let state = state_from_item(&subject, item)?;
            states.insert(subject, state);
        }
        Ok(states)
    }

    async fn query_partition(&self, table: &str, pk: &str) -> Result<Vec<Item>, StoreError> {
        all_pages(
            self.client
                .query()
                .table_name(table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true),
        )
        .await
    }

    /// Everything enforcement needs about every identity of a delivery or a
    /// send, in one strongly consistent batched read (B4, B22, B61): blocks
    /// in `all` and in the given business numbers, contact presence, and
    /// the `STATE` item, which carries the blocks of every linked identity.
    /// A person whose message shows only their BSUID is thus stopped by a
    /// block of their number in the same round trip. The same read brings
    /// one copy of the prefix rule set (B84), whose matches come back as
    /// blocks naming their rule.
    ///
    /// `state_only` identities (named only by links) get their `STATE`
    /// read, nothing else.
    pub async fn sender_facts(
        &self,
        senders: &HashMap<Subject, HashSet<PhoneNumberId>>,
        state_only: &[Subject],
        shown: &[crate::identity::Link],
    ) -> Result<HashMap<Subject, SenderFacts>, StoreError> {
        let mut keys: Vec<Item> = Vec::new();
        for subject in state_only.iter().filter(|s| !senders.contains_key(*s)) {
            keys.push(key(subject_pk(subject), STATE));
        }
        for (subject, businesses) in senders {
            let pk = subject_pk(subject);
            let sort_keys = ["B#all".to_owned(), CONTACT.to_owned(), STATE.to_owned()]
                .into_iter()
                .chain(businesses.iter().map(|b| block_sk(b.as_str())));
            for sk in sort_keys {
                keys.push(
                    [("pk".to_owned(), s(&pk)), ("sk".to_owned(), s(sk))]
                        .into_iter()
                        .collect(),
                );
            }
        }
        if !senders.is_empty() {
            keys.push(super::rule::rule_set_key());
        }
        let items = self.batch_get_blocklist(keys).await?;
        let mut rules = None;
        let mut facts: HashMap<Subject, SenderFacts> = senders
            .keys()
            .chain(state_only)
            .map(|n| (n.clone(), SenderFacts::default()))
            .collect();
        for item in items {
            let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
            let sk = text("sk").unwrap_or_default();
            let pk = text("pk").unwrap_or_default();
            if super::rule::is_rule_set(&pk) {
                rules = Some(super::rule::rule_set_of(item)?.set);
                continue;
            }
            let Some(subject) = subject_of_pk(&pk) else {
                continue;
            };
            let Some(f) = facts.get_mut(&subject) else {
                continue;
            };
            if sk == CONTACT {
                f.known_contact = true;
            } else if sk == STATE {
                let state = state_from_item(&subject, item)?;
                f.blocks.extend(state.linked_blocks.iter().cloned());
                f.state = Some(state);
            } else {
                let block: BlockItem = serde_dynamo::from_item(item)?;
                f.blocks.push(block.block);
            }
        }
        // B84: a prefix rule blocks every identity of a person one of
        // whose numbers it matches, the way a block of that number would.
        for (subject, businesses) in senders {
            let (Some(rules), Some(f)) = (&rules, facts.get_mut(subject)) else {
                continue;
            };
            let linked = f
                .state
                .as_ref()
                .map(SubjectState::linked_subjects)
                .unwrap_or_default();
            // The numbers the delivery itself shows with this identity
            // count too: their link is stored only after the forward.
            let shown_with: Vec<Subject> = shown
                .iter()
                .filter(|link| link.names(subject))
                .flat_map(|link| link.subjects())
                .collect();
            let numbers: Vec<&crate::number::Number> = std::iter::once(subject)
                .chain(&linked)
                .chain(&shown_with)
                .filter_map(Subject::number)
                .collect();
            let made = rules.blocks_for(subject, &numbers, businesses);
            f.blocks.extend(made);
        }
        Ok(facts)
    }

    /// Writes a change in one transaction, guarded by the number's version.
    ///
    /// `Conflict` means the number changed since it was read: read again and
    /// decide again. A change larger than one transaction (a number with
    /// chats on over ~90 business numbers, or a contact change of a number
    /// blocked on as many) gets the rest written right after the commit, in
    /// further transactions under the version the change wrote (S3): once a
    /// newer change has committed, its own writes are the ones that count,
    /// and the stale rest is dropped. The rest is listing data (search
    /// fields, chat status) that enforcement never reads, so it is retried
    /// for a while and then logged rather than reported as a failed change.
    pub async fn apply_change(&self, change: &SubjectChange) -> Result<(), StoreError> {
        let mut actions = self.change_actions(change)?;
        // What enforcement reads (state, blocks, contact, events, counters)
        // goes first; listing data (search fields, chat status) fills the
        // rest of the transaction and follows in further ones.
        let mut deferred = self.token_actions(change)?;
        deferred.extend(self.chat_actions(change.chats.iter())?);
        if actions.len() > MAX_TRANSACTION_ACTIONS {
            let over = actions.split_off(MAX_TRANSACTION_ACTIONS);
            deferred.splice(0..0, over);
        }
        let room = (MAX_TRANSACTION_ACTIONS - actions.len()).min(deferred.len());
        let rest = deferred.split_off(room);
        actions.extend(deferred);
        self.transact(actions, None)
            .await?
            .committed_or_conflict()?;
        let committed = change.expected_version + 1;
        let batches: Vec<&[TransactWriteItem]> = rest.chunks(MAX_TRANSACTION_ACTIONS - 1).collect();
        for (i, batch) in batches.iter().enumerate() {
            let deadline = tokio::time::Instant::now() + OVERFLOW_WITHIN;
            let written = crate::service::retry_until(deadline, || {
                self.overflow(&change.subject, committed, batch.to_vec())
            })
            .await;
            match written {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!("the rest of a change superseded by a newer change");
                    // The newer change deleted the index items of what this
                    // change wrote, not of what this change was to delete:
                    // those go now, unless the newer change wrote them again.
                    let stale = batches[i..].iter().flat_map(|b| b.iter());
                    if let Err(error) = self.delete_stale_tokens(stale, committed).await {
                        tracing::error!(error = %error, "stale index items were not deleted");
                    }
                    return Ok(());
                }
                Err(error) => {
                    tracing::error!(
                        error = %error,
                        "the rest of a committed change was not written"
                    );
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn chat_actions<'a>(
        &self,
        updates: impl Iterator<Item = &'a crate::policy::ChatUpdate>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        updates
            .map(|update| {
                Ok(TransactWriteItem::builder()
                    .update(self.chat_update(update)?)
                    .build())
            })
            .collect()
    }

    /// Writes of a change beyond its transaction, on condition that the
    /// subject's `STATE` is still at `version`; `false` when it is not.
    async fn overflow(
        &self,
        subject: &Subject,
        version: u64,
        rest: Vec<TransactWriteItem>,
    ) -> Result<bool, StoreError> {
        let guard = ConditionCheck::builder()
            .table_name(&self.tables.blocklist)
            .key("pk", s(subject_pk(subject)))
            .key("sk", s(STATE))
            .condition_expression("version = :version")
            .expression_attribute_values(":version", n(version));
        let mut actions = vec![
            TransactWriteItem::builder()
                .condition_check(build(guard.build())?)
                .build(),
        ];
        actions.extend(rest);
        // Superseded only when the guard itself failed; a conflict with a
        // concurrent transaction (or a block gone) is worth another try.
        match self.transact(actions, None).await? {
            Outcome::Committed => Ok(true),
            outcome if outcome.guard_failed() => Ok(false),
            _ => Err(StoreError::Unavailable(
                "the rest of a change conflicted".into(),
            )),
        }
    }

    /// The token deletes among `actions`, each written alone on condition
    /// that the item was written before `version` (or is gone): an item a
    /// newer change wrote again is that change's.
    async fn delete_stale_tokens<'a>(
        &self,
        actions: impl Iterator<Item = &'a TransactWriteItem>,
        version: u64,
    ) -> Result<(), StoreError> {
        let deletes = actions
            .filter_map(TransactWriteItem::delete)
            .filter(|d| {
                d.key
                    .get("pk")
                    .and_then(|pk| pk.as_s().ok())
                    .is_some_and(|pk| pk.starts_with(TOKEN_PK_PREFIX))
            })
            .map(|d| {
                let request = self
                    .client
                    .delete_item()
                    .table_name(&d.table_name)
                    .set_key(Some(d.key.clone()))
                    .condition_expression("attribute_not_exists(#v) OR #v < :v")
                    .expression_attribute_names("#v", TOKEN_STATE_VERSION)
                    .expression_attribute_values(":v", n(version));
                async move {
                    condition_failure_is_fine(request.send().await, |e| {
                        e.is_conditional_check_failed_exception()
                    })
                }
            })
            .collect();
        run_all(deletes).await?;
        Ok(())
    }

    /// The index items (S2) of the blocks a change touches: blocks put or
    /// removed, and every block when the contact changes. Items the change
    /// leaves without a token are deleted, the others written afresh (they
    /// carry the contact's fields). Listing data only, so they may follow
    /// the change's transaction.
    fn token_actions(&self, change: &SubjectChange) -> Result<Vec<TransactWriteItem>, StoreError> {
        let touched: std::collections::BTreeSet<&str> = change
            .put_blocks
            .iter()
            .chain(&change.remove_blocks)
            .chain(&change.reindex_blocks)
            .map(|b| b.scope.as_str())
            .collect();
        let items_of = |blocks: &[crate::model::Block], contact: Option<&Contact>| {
            blocks
                .iter()
                .filter(|b| touched.contains(b.scope.as_str()))
                .flat_map(|b| TokenItem::all_of(b, contact, change.expected_version + 1))
                .collect::<Vec<_>>()
        };
        let after = items_of(&change.blocks_after, change.contact_after.as_ref());
        let kept: std::collections::HashSet<(&str, &str)> = after
            .iter()
            .map(|i| (i.pk.as_str(), i.sk.as_str()))
            .collect();
        let bl = &self.tables.blocklist;
        let mut actions = Vec::new();
        for gone in items_of(&change.blocks_before, change.contact_before.as_ref()) {
            if kept.contains(&(gone.pk.as_str(), gone.sk.as_str())) {
                continue;
            }
            actions.push(delete_action(bl, gone.pk, gone.sk)?);
        }
        for item in after {
            actions.push(put_action(bl, item)?);
        }
        Ok(actions)
    }

    fn change_actions(&self, change: &SubjectChange) -> Result<Vec<TransactWriteItem>, StoreError> {
        let pk = subject_pk(&change.subject);
        let bl = &self.tables.blocklist;
        let mut actions = Vec::new();

        // The version guard: every change of a subject rewrites its state,
        // with the head of its chain of change events.
        let (events, audit_head) = change.chained_events();
        let state = SubjectState {
            subject: change.subject.clone(),
            version: change.expected_version,
            blocks: change.blocks_after.clone(),
            unblocked_at: change.unblocked_at,
            links: change.links.clone(),
            linked_blocks: change.linked_blocks.clone(),
            blocks_unknown: false,
            audit_head,
        };
        actions.push(self.state_put(&state)?);
        // The events right after the state that records their chain head:
        // whatever of a large change follows in further transactions, they
        // are never among it (B3, B53).
        for event in &events {
            let partition = event
                .subject
                .as_ref()
                .map_or_else(|| pk.clone(), subject_pk);
            actions.push(self.audit_put(partition, event)?);
        }
        // Linked identities whose mirror of these blocks changes (B61),
        // each under its own version guard.
        for linked in &change.linked_states {
            actions.push(self.state_put(linked)?);
        }

        for removed in &change.remove_blocks {
            actions.push(delete_action(
                bl,
                pk.clone(),
                block_sk(removed.scope.as_str()),
            )?);
        }
        for block in &change.put_blocks {
            actions.push(put_action(bl, BlockItem::new(block))?);
        }
        if let Some(contact) = &change.put_contact {
            let item = ContactItem {
                pk: pk.clone(),
                sk: CONTACT.to_owned(),
                contact: contact.clone(),
            };
            actions.push(put_action(bl, item)?);
        }
        let shard = shard_of(change.subject.as_str());
        // All of a change's counters live on one item (its day and shard),
        // which one transaction may name only once: one update adds them all.
        let mut counts: Vec<(&str, u64)> = Vec::new();
        for counter in &change.counters {
            match counts.iter_mut().find(|(a, _)| *a == counter.attribute()) {
                Some((_, by)) => *by += 1,
                None => counts.push((counter.attribute(), 1)),
            }
        }
        if !counts.is_empty() {
            actions.push(self.counters_update(change.at, shard, &counts)?);
        }
        if change.blocked_numbers_delta != 0 {
            let update = Update::builder()
                .table_name(bl)
                .key("pk", s(stats_pk(shard)))
                .key("sk", s(BLOCKED_COUNT))
                .update_expression("ADD blocked_numbers :delta")
                .expression_attribute_values(":delta", n(change.blocked_numbers_delta));
            actions.push(
                TransactWriteItem::builder()
                    .update(build(update.build())?)
                    .build(),
            );
        }
        Ok(actions)
    }

    /// Writes a subject's `STATE` as `state.version + 1`, on condition that
    /// it is still at `state.version` (absent for 0).
    pub(super) fn state_put(&self, state: &SubjectState) -> Result<TransactWriteItem, StoreError> {
        let item = StateItem {
            pk: subject_pk(&state.subject),
            sk: STATE.to_owned(),
            version: state.version + 1,
            scopes: state.blocks.iter().map(|b| b.scope.to_string()).collect(),
            unblocked_at: state.unblocked_at.map(format_time),
            blocks: state.blocks.clone(),
            links: state.links.clone(),
            linked_blocks: state.linked_blocks.clone(),
            audit_head: state.audit_head.clone(),
        };
        let mut put = Put::builder()
            .table_name(&self.tables.blocklist)
            .set_item(Some(serde_dynamo::to_item(item)?));
        put = if state.version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(state.version))
        };
        Ok(TransactWriteItem::builder()
            .put(build(put.build())?)
            .build())
    }

    fn chat_update(&self, update: &crate::policy::ChatUpdate) -> Result<Update, StoreError> {
        let session = serde_dynamo::to_attribute_value(update.session_status)?;
        build(
            Update::builder()
                .table_name(&self.tables.chats)
                .key("pk", s(subject_pk(&update.subject)))
                .key("sk", s(update.phone_number_id.as_str()))
                .update_expression(
                    "SET #status = :status, session_status = :session, gsi1sk = :gsi1sk, \
                     known_contact = :known",
                )
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(update.status.as_str()))
                .expression_attribute_values(":session", session)
                .expression_attribute_values(":known", AttributeValue::Bool(update.known_contact))
                .expression_attribute_values(
                    ":gsi1sk",
                    s(chat_gsi1sk(
                        update.status.as_str(),
                        update.phone_number_id.as_str(),
                        &update.subject,
                    )),
                )
                .build(),
        )
    }
}

impl Store {
    /// B61: writes links on every identity they name, with their audit
    /// events, in one transaction guarded by each identity's version. The
    /// links of one decision name disjoint identities, so no item is
    /// written twice.
    pub async fn apply_links(&self, changes: &[LinkChange]) -> Result<(), StoreError> {
        // An identity left behind by two replaced links at once would be
        // written twice, which one transaction refuses: one at a time then.
        let mut written: Vec<&Subject> = changes
            .iter()
            .flat_map(|c| c.states.iter().map(|s| &s.subject))
            .collect();
        let count = written.len();
        written.sort();
        written.dedup();
        if written.len() < count && changes.len() > 1 {
            for change in changes {
                Box::pin(self.apply_links(std::slice::from_ref(change))).await?;
            }
            return Ok(());
        }
        let mut actions = Vec::new();
        for change in changes {
            for state in &change.states {
                actions.push(self.state_put(state)?);
            }
            let partition = change
                .event
                .subject
                .as_ref()
                .map(subject_pk)
                .unwrap_or_default();
            actions.push(self.audit_put(partition, &change.event)?);
        }
        if actions.is_empty() {
            return Ok(());
        }
        self.transact(actions, None).await?.committed_or_conflict()
    }
}

impl Store {
    /// When the subject was last unblocked, if ever (strongly consistent).
    pub async fn last_unblocked_at(
        &self,
        subject: &Subject,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let item = self
            .get_one(&self.tables.blocklist, subject_pk(subject), STATE)
            .await?;
        match item {
            Some(item) => Ok(state_from_item(subject, item)?.unblocked_at),
            None => Ok(None),
        }
    }
}

/// A `STATE` item as the pure [`SubjectState`].
pub(super) fn state_from_item(subject: &Subject, item: Item) -> Result<SubjectState, StoreError> {
    let state: StateItem = serde_dynamo::from_item(item)?;
    let unblocked_at = match state.unblocked_at {
        Some(at) => Some(
            DateTime::parse_from_rfc3339(&at)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    Ok(SubjectState {
        subject: subject.clone(),
        version: state.version,
        blocks_unknown: state.blocks.is_empty() && !state.scopes.is_empty(),
        blocks: state.blocks,
        unblocked_at,
        links: state.links,
        linked_blocks: state.linked_blocks,
        audit_head: state.audit_head,
    })
}
