//! Consent (B80–B83): the customer's own say over what reaches them, kept
//! apart from blocks (the business's decision). Per subject, one record per
//! business number and one for `all`, each with a `marketing` and an `all`
//! value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{PhoneNumberId, Scope, time_format};
use crate::identity::{Subject, subject_fields};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentValue {
    OptedIn,
    OptedOut,
}

/// What a consent value covers: marketing messages, or every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentCategory {
    Marketing,
    All,
}

impl ConsentCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentCategory::Marketing => "marketing",
            ConsentCategory::All => "all",
        }
    }
}

/// Where a consent change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentSource {
    /// The customer wrote an opt-out or opt-in keyword (B81).
    Keyword,
    /// Meta's `user_preferences` webhook (B82).
    UserPreferences,
    /// A send failed with 131050, the customer stopped marketing (B82).
    DeliveryFailure,
    /// `PUT /v1/consents/{subject}`.
    Api,
    Import,
}

impl ConsentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentSource::Keyword => "keyword",
            ConsentSource::UserPreferences => "user_preferences",
            ConsentSource::DeliveryFailure => "delivery_failure",
            ConsentSource::Api => "api",
            ConsentSource::Import => "import",
        }
    }
}

/// One consent record (SPEC section 4): `phone_number_id` is a business
/// number or `all`. Without a record, both values are `opted_in`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    #[serde(flatten, with = "subject_fields")]
    pub subject: Subject,
    pub phone_number_id: Scope,
    pub marketing: ConsentValue,
    pub all: ConsentValue,
    /// Of the latest change.
    pub source: Option<ConsentSource>,
    #[serde(with = "time_format::option")]
    pub at: Option<DateTime<Utc>>,
    pub message_id: Option<String>,
    /// When each value was last set, by the time of what set it (a
    /// message's own time): what keeps a late delivery of an older message
    /// from undoing a newer one.
    #[serde(default, with = "time_format::option")]
    pub marketing_at: Option<DateTime<Utc>>,
    #[serde(default, with = "time_format::option")]
    pub all_at: Option<DateTime<Utc>>,
}

/// One change of one consent value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChange {
    pub subject: Subject,
    pub scope: Scope,
    pub category: ConsentCategory,
    pub value: ConsentValue,
    pub source: ConsentSource,
    /// When the customer said so (a message's or Meta's time), else now.
    pub at: DateTime<Utc>,
    pub message_id: Option<String>,
}

/// B62, B80: a person who changed number or user id keeps their say: each
/// value of their old identity's `records` that something set, as a change
/// of `to` at the time it was set, so a newer say of the new identity wins.
pub fn carried_consents(records: &[Consent], to: &Subject, message_id: &str) -> Vec<ConsentChange> {
    let mut changes = Vec::new();
    for record in records {
        for (category, value, at) in [
            (
                ConsentCategory::Marketing,
                record.marketing,
                record.marketing_at,
            ),
            (ConsentCategory::All, record.all, record.all_at),
        ] {
            let Some(at) = at else { continue };
            changes.push(ConsentChange {
                subject: to.clone(),
                scope: record.phone_number_id.clone(),
                category,
                value,
                source: record.source.unwrap_or(ConsentSource::Api),
                at,
                message_id: Some(message_id.to_owned()),
            });
        }
    }
    changes
}

impl Consent {
    /// The record of a subject and scope that has none stored.
    pub fn unset(subject: Subject, scope: Scope) -> Consent {
        Consent {
            subject,
            phone_number_id: scope,
            marketing: ConsentValue::OptedIn,
            all: ConsentValue::OptedIn,
            source: None,
            at: None,
            message_id: None,
            marketing_at: None,
            all_at: None,
        }
    }

    /// The record after `change`, and whether its value changed; `None`
    /// when `change` changes nothing: it is older than what last set that
    /// value (a late delivery), or a duplicate.
    ///
    /// Where either time is whole seconds (Meta's are), times compare by
    /// the second: a customer's STOP must not lose to an API call made in
    /// the same second, and within one second an opt-out wins (fails
    /// closed). Two API calls compare exactly.
    /// The source and message id change only with the value, so they keep
    /// saying what caused it.
    pub fn after(&self, change: &ConsentChange) -> Option<(Consent, bool)> {
        let (value, set_at) = match change.category {
            ConsentCategory::Marketing => (self.marketing, self.marketing_at),
            ConsentCategory::All => (self.all, self.all_at),
        };
        let changed = value != change.value;
        if let Some(set_at) = set_at {
            let whole_seconds = |at: DateTime<Utc>| at.timestamp_subsec_nanos() == 0;
            let older = if whole_seconds(set_at) || whole_seconds(change.at) {
                let (before, now) = (set_at.timestamp(), change.at.timestamp());
                let wins_tie = changed && change.value == ConsentValue::OptedOut;
                now < before || (now == before && !wins_tie)
            } else {
                change.at <= set_at
            };
            if older {
                return None;
            }
        }
        let mut next = self.clone();
        match change.category {
            ConsentCategory::Marketing => {
                next.marketing = change.value;
                next.marketing_at = Some(change.at);
            }
            ConsentCategory::All => {
                next.all = change.value;
                next.all_at = Some(change.at);
            }
        }
        if changed {
            next.source = Some(change.source);
            next.at = Some(change.at);
            next.message_id = change.message_id.clone();
        }
        Some((next, changed))
    }
}

/// What a send or check is for (B83).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A marketing message: refused to those who stopped marketing or
    /// everything.
    Marketing,
    /// Anything else (a utility or authentication template, a reply in a
    /// conversation): refused to those who stopped everything.
    Utility,
    /// Not known: refused to those who stopped anything (fails closed).
    Any,
}

impl Purpose {
    pub fn parse(raw: &str) -> Option<Purpose> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
    }
}

/// B83: the consent record that refuses a message for `purpose` from
/// `business`, among `consents` (of the person's identities, in scope
/// `all` or that business number): one opted out of `all`, or of
/// `marketing` for a marketing (or unknown) purpose.
pub fn refusing_consent<'a>(
    consents: &'a [Consent],
    business: &PhoneNumberId,
    purpose: Purpose,
) -> Option<&'a Consent> {
    consents
        .iter()
        .filter(|c| c.phone_number_id.covers(business))
        .find(|c| {
            c.all == ConsentValue::OptedOut
                || (purpose != Purpose::Utility && c.marketing == ConsentValue::OptedOut)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(category: ConsentCategory, value: ConsentValue, at: &str) -> ConsentChange {
        ConsentChange {
            subject: Subject::parse("+16505551234").unwrap(),
            scope: Scope::All,
            category,
            value,
            source: ConsentSource::Keyword,
            at: at.parse().unwrap(),
            message_id: Some("wamid.1".into()),
        }
    }

    #[test]
    fn b80_a_later_message_wins_and_an_older_one_arriving_late_changes_nothing() {
        let unset = Consent::unset(Subject::parse("+16505551234").unwrap(), Scope::All);
        let stop = change(
            ConsentCategory::All,
            ConsentValue::OptedOut,
            "2026-01-01T10:00:00Z",
        );
        let start = change(
            ConsentCategory::All,
            ConsentValue::OptedIn,
            "2026-01-01T11:00:00Z",
        );
        let (after_start, changed) = unset.after(&start).unwrap();
        assert!(!changed, "already opted in");
        assert_eq!(
            after_start.all_at,
            Some(start.at),
            "the time is kept all the same"
        );
        assert_eq!(
            after_start.after(&stop),
            None,
            "the older STOP arrives late"
        );
        let (stopped, changed) = unset.after(&stop).unwrap();
        assert!(changed);
        assert_eq!(stopped.all, ConsentValue::OptedOut);
        assert_eq!(stopped.after(&stop), None, "a duplicate");
        assert_eq!(stopped.marketing, ConsentValue::OptedIn, "values are apart");
    }

    #[test]
    fn b80_within_one_second_an_opt_out_wins_and_the_cause_is_kept() {
        let unset = Consent::unset(Subject::parse("+16505551234").unwrap(), Scope::All);
        // The API's opt-in at .400 and the customer's STOP at .000 of the
        // same second (Meta's times are whole seconds).
        let api = change(
            ConsentCategory::All,
            ConsentValue::OptedIn,
            "2026-01-01T10:00:00.400Z",
        );
        let stop = change(
            ConsentCategory::All,
            ConsentValue::OptedOut,
            "2026-01-01T10:00:00Z",
        );
        let (opted_in, _) = unset.after(&api).unwrap();
        let (stopped, changed) = opted_in.after(&stop).expect("the STOP wins the tie");
        assert!(changed);
        assert_eq!(stopped.all, ConsentValue::OptedOut);
        assert_eq!(
            stopped.after(&api),
            None,
            "and stays: the opt-in lost the tie"
        );
        // A later no-op keeps what caused the value.
        let mut later = change(
            ConsentCategory::All,
            ConsentValue::OptedOut,
            "2026-01-01T11:00:00Z",
        );
        later.source = ConsentSource::Api;
        later.message_id = None;
        let (kept, changed) = stopped.after(&later).unwrap();
        assert!(!changed);
        assert_eq!(kept.source, Some(ConsentSource::Keyword));
        assert_eq!(kept.message_id.as_deref(), Some("wamid.1"));
        assert_eq!(kept.all_at, Some(later.at));
    }

    #[test]
    fn b83_purposes_refuse_by_what_the_customer_stopped() {
        let subject = Subject::parse("+16505551234").unwrap();
        let line = PhoneNumberId::parse("111").unwrap();
        let other = PhoneNumberId::parse("222").unwrap();
        let mut marketing = Consent::unset(subject.clone(), Scope::Business(line.clone()));
        marketing.marketing = ConsentValue::OptedOut;
        let consents = vec![marketing];
        assert!(refusing_consent(&consents, &line, Purpose::Marketing).is_some());
        assert!(refusing_consent(&consents, &line, Purpose::Any).is_some());
        assert!(refusing_consent(&consents, &line, Purpose::Utility).is_none());
        assert!(refusing_consent(&consents, &other, Purpose::Marketing).is_none());
        let mut all = Consent::unset(subject, Scope::All);
        all.all = ConsentValue::OptedOut;
        let consents = vec![all];
        assert!(refusing_consent(&consents, &other, Purpose::Utility).is_some());
        assert_eq!(Purpose::parse("utility"), Some(Purpose::Utility));
        assert_eq!(Purpose::parse("promo"), None);
    }
}
