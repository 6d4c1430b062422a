//! Writing a transaction, and the one reading of why DynamoDB cancelled
//! one; the actions transactions are made of, and an update written on its
//! own.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::batch::run_all;
use super::stats::{counter_shard, move_counter};
use super::{Item, Store, StoreError, build, s};

/// DynamoDB's limit of actions in one transaction.
pub(super) const MAX_TRANSACTION_ACTIONS: usize = 100;

/// DynamoDB's limit on a `ClientRequestToken`.
const MAX_TOKEN_LENGTH: usize = 36;

/// How many times one transaction's counters move to other shards before
/// its conflict is the caller's (who retries, or reads and decides again).
const COUNTER_MOVES: u32 = 3;

/// The `ClientRequestToken` of a transaction's `moves`-th move.
fn moved_token(token: &str, moves: u32) -> String {
    match moves {
        0 => token.to_owned(),
        n => format!("{}-{n}", &token[..token.len().min(MAX_TOKEN_LENGTH - 2)]),
    }
}

/// How one attempt of a transaction ended: an outcome, or a conflict on
/// the actions at these positions (none known: another request with the
/// same token was still in progress).
enum Cancelled {
    Outcome(Outcome),
    Conflict(Vec<usize>),
}

/// How a transaction ended, when DynamoDB answered it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    Committed,
    /// Conditions failed: the position of each action whose condition
    /// failed, with the item as it was when the action asked for it
    /// (`ReturnValuesOnConditionCheckFailure`).
    ConditionFailed {
        failed: Vec<(usize, Option<Item>)>,
    },
    /// Another transaction touched the same items at the same time.
    Conflict,
}

impl Outcome {
    /// Whether the first action's condition (the guard a caller put first)
    /// failed.
    pub(super) fn guard_failed(&self) -> bool {
        matches!(self, Outcome::ConditionFailed { failed } if failed.first().is_some_and(|(i, _)| *i == 0))
    }

    /// For writes guarded by versions: anything but a commit means the facts
    /// moved, so the caller reads and decides again.
    pub(super) fn committed_or_conflict(self) -> Result<(), StoreError> {
        match self {
            Outcome::Committed => Ok(()),
            _ => Err(StoreError::Conflict),
        }
    }
}

impl Store {
    /// Writes `actions` in one transaction, with `token` as its
    /// `ClientRequestToken` when given (a retry of a write that landed is
    /// then not written twice). Cancellations are outcomes; every other
    /// failure is an error. A transaction cancelled because other
    /// transactions held its counters, and nothing else, is sent again at
    /// once with those counters on other shards ([`move_counter`]), up to
    /// [`COUNTER_MOVES`] times.
    pub(super) async fn transact(
        &self,
        mut actions: Vec<TransactWriteItem>,
        token: Option<&str>,
    ) -> Result<Outcome, StoreError> {
        let movable = actions.iter().any(|a| counter_shard(a).is_some());
        let mut moves = 0;
        loop {
            // A moved transaction is another request: it gets a token of
            // its own (a cancelled one wrote nothing to repeat), which
            // always names the same moves (see `move_counter`).
            let sent_token = token.map(|t| moved_token(t, moves));
            let sent = if movable {
                actions.clone()
            } else {
                std::mem::take(&mut actions)
            };
            let conflicts = match self.transact_once(sent, sent_token).await? {
                Cancelled::Outcome(outcome) => return Ok(outcome),
                Cancelled::Conflict(at) => at,
            };
            let counters_alone = !conflicts.is_empty()
                && conflicts
                    .iter()
                    .all(|&i| actions.get(i).and_then(counter_shard).is_some());
            if !movable || !counters_alone || moves == COUNTER_MOVES {
                return Ok(Outcome::Conflict);
            }
            moves += 1;
            let next = token.map(|t| moved_token(t, moves));
            for &i in &conflicts {
                move_counter(&mut actions[i], next.as_deref());
            }
        }
    }

    async fn transact_once(
        &self,
        actions: Vec<TransactWriteItem>,
        token: Option<String>,
    ) -> Result<Cancelled, StoreError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .set_client_request_token(token)
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(Cancelled::Outcome(Outcome::Committed)),
            Err(error) => error,
        };
        match error.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => {
                let reasons = cancel.cancellation_reasons();
                if reasons
                    .iter()
                    .any(|r| r.code() == Some("ConditionalCheckFailed"))
                {
                    let failed = reasons
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(i, r)| (i, r.item().cloned()))
                        .collect();
                    Ok(Cancelled::Outcome(Outcome::ConditionFailed { failed }))
                } else {
                    let conflicts: Vec<usize> = reasons
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("TransactionConflict"))
                        .map(|(i, _)| i)
                        .collect();
                    if conflicts.is_empty() {
                        Err(error.into())
                    } else {
                        Ok(Cancelled::Conflict(conflicts))
                    }
                }
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                Ok(Cancelled::Conflict(Vec::new()))
            }
            _ => Err(error.into()),
        }
    }

    /// One action per key in one transaction (keys distinct, at most 100).
    /// Keys whose condition failed get `held` of the item as it was, and
    /// the rest is written again without them; should another transaction
    /// hold some of the items, the rest goes one call each through `alone`.
    pub(super) async fn keyed_transaction<'k, T, Fut>(
        &self,
        keys: &[&'k String],
        action: impl Fn(&str) -> Result<TransactWriteItem, StoreError>,
        committed: T,
        held: impl Fn(Option<&Item>) -> T,
        alone: impl Fn(&'k String) -> Fut,
    ) -> Result<Vec<(String, T)>, StoreError>
    where
        T: Clone,
        Fut: std::future::Future<Output = Result<(String, T), StoreError>>,
    {
        let mut settled = Vec::with_capacity(keys.len());
        let mut pending: Vec<&'k String> = keys.to_vec();
        while !pending.is_empty() {
            let actions = pending
                .iter()
                .map(|key| action(key))
                .collect::<Result<Vec<_>, StoreError>>()?;
            match self.transact(actions, None).await? {
                Outcome::Committed => {
                    settled.extend(pending.drain(..).map(|k| (k.clone(), committed.clone())));
                }
                Outcome::ConditionFailed { failed } => {
                    let taken: HashMap<usize, Option<Item>> = failed.into_iter().collect();
                    let mut rest = Vec::with_capacity(pending.len());
                    for (i, key) in pending.into_iter().enumerate() {
                        match taken.get(&i) {
                            Some(item) => settled.push((key.clone(), held(item.as_ref()))),
                            None => rest.push(key),
                        }
                    }
                    pending = rest;
                }
                Outcome::Conflict => {
                    settled.extend(run_all(pending.drain(..).map(&alone).collect()).await?);
                }
            }
        }
        Ok(settled)
    }

    /// Writes a transaction; retries DynamoDB's transaction conflicts (two
    /// deliveries bumping one counter at once). A failed condition means the
    /// claims were completed or taken over meanwhile: nothing to do, and
    /// `false` is returned.
    pub(super) async fn transact_with_conflict_retries(
        &self,
        actions: Vec<TransactWriteItem>,
    ) -> Result<bool, StoreError> {
        let key = actions.len();
        crate::service::retry_on_conflict(5, &key, || async {
            match self.transact(actions.clone(), None).await? {
                Outcome::Committed => Ok(true),
                Outcome::ConditionFailed { .. } => Ok(false),
                Outcome::Conflict => Err(StoreError::Conflict),
            }
        })
        .await
    }

    /// The `UpdateItem` request of a transaction's `Update`.
    pub(super) fn update_request(
        &self,
        update: Update,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .set_table_name(Some(update.table_name))
            .set_key(Some(update.key))
            .set_update_expression(Some(update.update_expression))
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
    }
}

/// An unconditional put of `item` in `table`, as a transaction action.
pub(super) fn put_action(
    table: &str,
    item: impl serde::Serialize,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(serde_dynamo::to_item(item)?));
    Ok(TransactWriteItem::builder()
        .put(build(put.build())?)
        .build())
}

/// An unconditional delete of one item, as a transaction action.
pub(super) fn delete_action(
    table: &str,
    pk: String,
    sk: String,
) -> Result<TransactWriteItem, StoreError> {
    let delete = Delete::builder()
        .table_name(table)
        .key("pk", s(pk))
        .key("sk", s(sk));
    Ok(TransactWriteItem::builder()
        .delete(build(delete.build())?)
        .build())
}

/// The result of a conditional write whose failed condition means that
/// nothing is left to do (another writer owns the item now): `Ok`.
pub(super) fn condition_failure_is_fine<O, E, R>(
    result: Result<O, aws_sdk_dynamodb::error::SdkError<E, R>>,
    condition_failed: impl Fn(&E) -> bool,
) -> Result<(), StoreError>
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(error) if error.as_service_error().is_some_and(condition_failed) => Ok(()),
        Err(error) => Err(StoreError::from(error)),
    }
}
