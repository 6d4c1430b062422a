use serde::{Deserialize, Serialize};

use crate::identity::{Subject, subject_fields};
use crate::number::Number;

/// A customer as the CRM knows them (B10). Blocking never changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    #[serde(flatten, with = "subject_fields")]
    pub subject: Subject,
    pub name: Option<String>,
    pub email: Option<String>,
    pub category: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub secondary_numbers: Vec<Number>,
}
