//! Writing a transaction, and the one reading of why DynamoDB cancelled
//! one.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;

use super::{Store, StoreError};

/// How a transaction ended, when DynamoDB answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Committed,
    /// A condition failed; `first` when it was the first action's (the
    /// guard a caller put first).
    ConditionFailed {
        first: bool,
    },
    /// Another transaction touched the same items at the same time.
    Conflict,
}

impl Outcome {
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
                    Ok(Outcome::ConditionFailed {
                        first: codes.first() == Some(&Some("ConditionalCheckFailed")),
                    })
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
