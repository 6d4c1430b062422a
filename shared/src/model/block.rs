use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Reason, Scope, Source, time_format};
use crate::identity::{Subject, subject_fields};

/// One block of one subject (number or BSUID) in one scope (SPEC section 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    #[serde(flatten, with = "subject_fields")]
    pub subject: Subject,
    pub scope: Scope,
    pub reason: Reason,
    pub source: Source,
    pub reason_code: Option<String>,
    pub actor: String,
    pub client: Option<String>,
    #[serde(with = "time_format")]
    pub blocked_at: DateTime<Utc>,
    #[serde(with = "time_format::option")]
    pub expires_at: Option<DateTime<Utc>>,
    pub version: u64,
    /// When the block comes due for its periodic review (B16): made or last
    /// reviewed, plus the scope's `review_after_days`; null when review is
    /// off for it.
    #[serde(default, with = "time_format::option")]
    pub review_due_at: Option<DateTime<Utc>>,
    /// The prefix rule this block stands for (B84): a block made on the
    /// fly when a rule matches, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<super::RuleId>,
}

impl Block {
    /// A block past its `expires_at` no longer blocks anything (B13).
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}
