//! Settings per business number (B12), with fallback to `default`:
//! `SETTINGS#<phone_number_id>` or `SETTINGS#default` / `SETTINGS`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Store, StoreError, key, n};
use crate::model::{Action, Actor, AuditEvent, Settings, SettingsPatch, SettingsTarget};

pub(super) const SETTINGS: &str = "SETTINGS";

/// The partition of one settings entry (`<phone_number_id>` or `default`):
/// each its own key, so that reading one business number's settings never
/// queues behind another's.
pub(super) fn settings_pk(id: &str) -> String {
    format!("SETTINGS#{id}")
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SettingsItem {
    pub pk: String,
    pub sk: String,
    pub version: u64,
    /// The fields this entry sets itself; the others are inherited
    /// (SPEC section 4).
    #[serde(default)]
    pub overrides: Option<SettingsPatch>,
    /// Entries written before inheritance held every field, flattened: read
    /// as setting them all, as they did.
    #[serde(flatten)]
    pub settings: Option<Settings>,
}

impl SettingsItem {
    fn overrides(&self) -> Option<SettingsPatch> {
        self.overrides
            .clone()
            .or_else(|| self.settings.as_ref().map(Settings::as_patch))
    }
}

/// Settings as stored, with the version that guards the next change.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSettings {
    /// What applies to the business number: the built-in defaults, under
    /// the `default` entry, under its own entry, field by field.
    pub effective: Settings,
    /// What the target's own entry sets.
    pub own: SettingsPatch,
    /// What the `default` entry sets (for a business number).
    pub inherited: Option<SettingsPatch>,
    /// Version of the target's own entry; 0 when it has none.
    pub version: u64,
}

/// How long enforcement may use settings it read (S4): a change reaches
/// every warm function within this time.
pub const SETTINGS_CACHE_FOR: Duration = Duration::from_secs(5);

/// Settings read by enforcement paths, kept for [`SETTINGS_CACHE_FOR`] in
/// the warm function. Only settings: blocks, links and consent are read
/// afresh every time (S4).
#[derive(Debug, Clone, Default)]
pub struct SettingsCache(Arc<Mutex<HashMap<String, (Instant, StoredSettings)>>>);

impl SettingsCache {
    fn get(&self, target: &SettingsTarget) -> Option<StoredSettings> {
        let entries = self.0.lock().ok()?;
        let (read_at, settings) = entries.get(target.as_str())?;
        (read_at.elapsed() < SETTINGS_CACHE_FOR).then(|| settings.clone())
    }

    fn put(&self, target: &SettingsTarget, settings: &StoredSettings) {
        if let Ok(mut entries) = self.0.lock() {
            entries.retain(|_, (read_at, _)| read_at.elapsed() < SETTINGS_CACHE_FOR);
            entries.insert(
                target.as_str().to_owned(),
                (Instant::now(), settings.clone()),
            );
        }
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.0.lock() {
            entries.clear();
        }
    }
}

impl Store {
    /// The settings that apply to `target`, as read at most
    /// [`SETTINGS_CACHE_FOR`] ago: for enforcement paths, which read them
    /// on every send. Changing settings reads them with [`Store::settings`].
    pub async fn recent_settings(
        &self,
        target: &SettingsTarget,
    ) -> Result<StoredSettings, StoreError> {
        if let Some(settings) = self.settings_cache.get(target) {
            return Ok(settings);
        }
        let settings = self.settings(target).await?;
        self.settings_cache.put(target, &settings);
        Ok(settings)
    }

    /// The settings in effect for each of `numbers`, through the settings
    /// cache, read concurrently.
    pub async fn settings_of<C>(
        &self,
        numbers: impl IntoIterator<Item = crate::model::PhoneNumberId>,
    ) -> Result<C, StoreError>
    where
        C: FromIterator<(crate::model::PhoneNumberId, Settings)>,
    {
        let reads = numbers
            .into_iter()
            .map(|number| async move {
                let settings = self
                    .recent_settings(&SettingsTarget::Business(number.clone()))
                    .await?;
                Ok::<_, StoreError>((number, settings.effective))
            })
            .collect();
        Ok(super::batch::run_all(reads).await?.into_iter().collect())
    }

    /// B16: the review period of blocks in `scope`: its business number's
    /// settings, or `default`'s for `all`, through the settings cache.
    pub async fn review_after_days(
        &self,
        scope: &crate::model::Scope,
    ) -> Result<Option<u32>, StoreError> {
        let target = match scope {
            crate::model::Scope::All => SettingsTarget::Default,
            crate::model::Scope::Business(id) => SettingsTarget::Business(id.clone()),
        };
        Ok(self
            .recent_settings(&target)
            .await?
            .effective
            .review_after_days)
    }

    /// Whether each of `numbers` has `platform_block` on (B15).
    pub async fn platform_block_enabled(
        &self,
        numbers: std::collections::BTreeSet<crate::model::PhoneNumberId>,
    ) -> Result<std::collections::BTreeMap<crate::model::PhoneNumberId, bool>, StoreError> {
        let settings: Vec<(crate::model::PhoneNumberId, Settings)> =
            self.settings_of(numbers).await?;
        Ok(settings
            .into_iter()
            .map(|(number, s)| (number, s.platform_block))
            .collect())
    }

    /// The settings that apply to `target`: its own entry, else the
    /// `default` entry, else the built-in defaults. One round trip.
    pub async fn settings(&self, target: &SettingsTarget) -> Result<StoredSettings, StoreError> {
        let ids: Vec<&str> = match target {
            SettingsTarget::Default => vec!["default"],
            SettingsTarget::Business(id) => vec![id.as_str(), "default"],
        };
        let keys = ids
            .iter()
            .map(|id| key(settings_pk(id), SETTINGS))
            .collect();
        let found: Vec<SettingsItem> = self
            .batch_get(&self.tables.blocklist, keys)
            .await?
            .into_iter()
            .map(serde_dynamo::from_item)
            .collect::<Result<_, _>>()?;
        let own = found.iter().find(|i| i.pk == settings_pk(target.as_str()));
        let inherited = match target {
            SettingsTarget::Default => None,
            SettingsTarget::Business(_) => found
                .iter()
                .find(|i| i.pk == settings_pk("default"))
                .and_then(SettingsItem::overrides),
        };
        let own_overrides = own.and_then(SettingsItem::overrides).unwrap_or_default();
        Ok(StoredSettings {
            effective: Settings::resolved(target, inherited.as_ref(), Some(&own_overrides)),
            own: own_overrides,
            inherited,
            version: own.map_or(0, |i| i.version),
        })
    }

    /// Writes `patch` over the current settings of `target`, and clears
    /// the fields `cleared` names (they are inherited again), together with
    /// a `settings_changed` audit event. `Conflict` if they changed
    /// meanwhile.
    pub async fn put_settings(
        &self,
        target: &SettingsTarget,
        current: &StoredSettings,
        patch: &SettingsPatch,
        cleared: &[String],
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Settings, StoreError> {
        // The entry keeps what it set before and what this call sets, less
        // what it clears; the rest stays inherited from `default`.
        let overrides = current.own.merged(patch).without(cleared);
        let next = Settings::resolved(target, current.inherited.as_ref(), Some(&overrides));
        let item = SettingsItem {
            pk: settings_pk(target.as_str()),
            sk: SETTINGS.to_owned(),
            version: current.version + 1,
            overrides: Some(overrides),
            settings: None,
        };
        let mut put = Put::builder()
            .table_name(&self.tables.blocklist)
            .set_item(Some(serde_dynamo::to_item(&item)?));
        put = if current.version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :v")
                .expression_attribute_values(":v", n(current.version))
        };
        let put = put
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let event = AuditEvent {
            event_id: AuditEvent::new_id(now),
            subject: None,
            scope: Some(target.as_str().to_owned()),
            action: Action::SettingsChanged,
            actor: actor.actor.clone(),
            client: actor.client.clone(),
            reason: None,
            source: None,
            at: now,
            details: json!({ "before": current.effective, "after": next, "set": item.overrides }),
            prev_event_id: None,
            prev_hash: None,
            hash: None,
        };
        let audit = self.audit_put(format!("S#{}", target.as_str()), &event)?;
        self.transact(
            vec![TransactWriteItem::builder().put(put).build(), audit],
            None,
        )
        .await?
        .committed_or_conflict()?;
        // A change of `default` applies to every business number.
        self.settings_cache.clear();
        Ok(next)
    }
}
