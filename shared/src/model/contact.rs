use serde::{Deserialize, Serialize};

use crate::number::Number;

/// A customer as the CRM knows them (B10). Blocking never changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub number: Number,
    pub name: Option<String>,
    pub email: Option<String>,
    pub category: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub secondary_numbers: Vec<Number>,
}

impl Contact {
    /// Lower-cased text that `q` searches match against (B7): number, name
    /// and email.
    pub fn search_text(&self) -> String {
        search_text(&self.number, Some(self))
    }
}

/// The searchable text of a number with or without a contact.
pub fn search_text(number: &Number, contact: Option<&Contact>) -> String {
    let mut text = number.as_str().to_owned();
    if let Some(contact) = contact {
        for part in [&contact.name, &contact.email].into_iter().flatten() {
            text.push('\n');
            text.push_str(&part.to_lowercase());
        }
    }
    text
}
