//! Contacts, as the CRM synced them: `<subject pk>` / `CONTACT`.

use serde::{Deserialize, Serialize};

use super::keys::subject_pk;
use super::{Store, StoreError};
use crate::identity::Subject;
use crate::model::Contact;

pub(super) const CONTACT: &str = "CONTACT";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ContactItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub contact: Contact,
}

impl Store {
    /// The contact of a subject, if the CRM synced one.
    pub async fn get_contact(&self, subject: &Subject) -> Result<Option<Contact>, StoreError> {
        let item = self
            .get_one(&self.tables.blocklist, subject_pk(subject), CONTACT)
            .await?;
        match item {
            Some(item) => Ok(Some(
                serde_dynamo::from_item::<_, ContactItem>(item)?.contact,
            )),
            None => Ok(None),
        }
    }
}
