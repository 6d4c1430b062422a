//! Writing a transaction, and the one reading of why DynamoDB cancelled
//! one.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;

use super::{Item, Store, StoreError};

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
    /// failure is an error.
    pub(super) async fn transact(
        &self,
        actions: Vec<TransactWriteItem>,
        token: Option<&str>,
    ) -> Result<Outcome, StoreError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .set_client_request_token(token.map(str::to_owned))
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(Outcome::Committed),
            Err(error) => error,
        };
        match error.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => {
                let codes: Vec<Option<&str>> = cancel
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code())
                    .collect();
                if codes.contains(&Some("ConditionalCheckFailed")) {
                    let failed = cancel
                        .cancellation_reasons()
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(i, r)| (i, r.item().cloned()))
                        .collect();
                    Ok(Outcome::ConditionFailed { failed })
                } else if codes.contains(&Some("TransactionConflict")) {
                    Ok(Outcome::Conflict)
                } else {
                    Err(error.into())
                }
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                Ok(Outcome::Conflict)
            }
            _ => Err(error.into()),
        }
    }
}
