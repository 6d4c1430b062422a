//! The webhook's reads and writes (B22–B25): one batched read of every
//! sender, idempotency claims, and the effects of a delivery.

use std::collections::{HashMap, HashSet};

use super::block::{BlockItem, block_sk};
use super::contact::CONTACT;
use super::items::STATE;
use super::keys::{subject_of_pk, subject_pk};
use super::number::state_from_item;
use super::{Item, Store, StoreError, key, s};
use crate::identity::Subject;
use crate::inbound::SenderFacts;
use crate::model::PhoneNumberId;

impl Store {
    /// Everything enforcement needs about every identity of a delivery or a
    /// send, in one strongly consistent batched read (B4, B22, B61): blocks
    /// in `all` and in the given business numbers, contact presence, and
    /// the `STATE` item, which carries the blocks of every linked identity.
    /// A person whose message shows only their BSUID is thus stopped by a
    /// block of their number in the same round trip.
    ///
    /// `state_only` identities (named only by links) get their `STATE`
    /// read, nothing else.
    pub async fn sender_facts(
        &self,
        senders: &HashMap<Subject, HashSet<PhoneNumberId>>,
        state_only: &[Subject],
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
        let items = self.batch_get_blocklist(keys).await?;
        let mut facts: HashMap<Subject, SenderFacts> = senders
            .keys()
            .chain(state_only)
            .map(|n| (n.clone(), SenderFacts::default()))
            .collect();
        for item in items {
            let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
            let sk = text("sk").unwrap_or_default();
            let Some(subject) = text("pk").and_then(|pk| subject_of_pk(&pk)) else {
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
        Ok(facts)
    }
}
