//! The pure decision for an outbound send (B31, B32, B33).

use chrono::{DateTime, Utc};

use crate::inbound::SenderFacts;
use crate::model::{Consent, PhoneNumberId, Purpose, RuleId, Scope, refusing_consent};
use crate::policy::blocking_block;

/// Why a recipient is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// B31: blocked for this business number, in `scope`; by the prefix
    /// rule `rule` when a rule made the block (B84).
    Blocked { scope: Scope, rule: Option<RuleId> },
    /// B32: no contact, and the business number does not allow unknown
    /// numbers.
    Unknown,
    /// B83: the recipient opted out (of every message, or of marketing for
    /// a marketing message), in `scope`.
    OptedOut { scope: Scope },
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Blocked { .. } => "recipient_blocked",
            Refusal::Unknown => "recipient_unknown",
            Refusal::OptedOut { .. } => "recipient_opted_out",
        }
    }

    /// The scope of the block or opt-out that refused.
    pub fn scope(&self) -> Option<&Scope> {
        match self {
            Refusal::Blocked { scope, .. } | Refusal::OptedOut { scope } => Some(scope),
            Refusal::Unknown => None,
        }
    }

    /// The prefix rule that refused, if a rule did (B84).
    pub fn rule(&self) -> Option<&RuleId> {
        match self {
            Refusal::Blocked { rule, .. } => rule.as_ref(),
            _ => None,
        }
    }
}

/// `Ok(())` when a message for `purpose` from `business` may go to the
/// recipient, whose consent records (of every identity) are `consents`. A
/// block refuses first; an opt-out refuses whether or not the person is
/// blocked, and an unblock leaves it as it is (B80).
pub fn decide_send(
    recipient: &SenderFacts,
    consents: &[Consent],
    business: &PhoneNumberId,
    purpose: Purpose,
    allow_unknown_numbers: bool,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if let Some(block) = blocking_block(&recipient.blocks, business, now) {
        return Err(Refusal::Blocked {
            scope: block.scope.clone(),
            rule: block.rule.clone(),
        });
    }
    if let Some(consent) = refusing_consent(consents, business, purpose) {
        return Err(Refusal::OptedOut {
            scope: consent.phone_number_id.clone(),
        });
    }
    if !allow_unknown_numbers && !recipient.known_contact {
        return Err(Refusal::Unknown);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Block, Reason, Source};
    use crate::number::Number;

    fn facts(scope: Option<&str>, known: bool) -> SenderFacts {
        let blocks = scope
            .map(|scope| Block {
                subject: crate::identity::Subject::Number(Number::parse("+16505551234").unwrap()),
                scope: Scope::parse(scope).unwrap(),
                reason: Reason::parse("spam").unwrap(),
                source: Source::Manual,
                reason_code: None,
                actor: "a".into(),
                client: None,
                blocked_at: Utc::now(),
                expires_at: None,
                version: 1,
                review_due_at: None,
                rule: None,
            })
            .into_iter()
            .collect();
        SenderFacts {
            blocks,
            known_contact: known,
            state: None,
        }
    }

    #[test]
    fn b31_blocked_in_all_or_this_business_number_is_refused() {
        let line = PhoneNumberId::parse("111").unwrap();
        assert_eq!(
            decide_send(
                &facts(Some("all"), true),
                &[],
                &line,
                Purpose::Any,
                true,
                Utc::now()
            ),
            Err(Refusal::Blocked {
                scope: Scope::All,
                rule: None
            })
        );
        assert!(
            decide_send(
                &facts(Some("111"), true),
                &[],
                &line,
                Purpose::Any,
                true,
                Utc::now()
            )
            .is_err()
        );
        assert_eq!(
            decide_send(
                &facts(Some("222"), true),
                &[],
                &line,
                Purpose::Any,
                true,
                Utc::now()
            ),
            Ok(())
        );
    }

    #[test]
    fn b32_unknown_recipient_is_refused_only_when_unknown_numbers_are_not_allowed() {
        let line = PhoneNumberId::parse("111").unwrap();
        assert_eq!(
            decide_send(
                &facts(None, false),
                &[],
                &line,
                Purpose::Any,
                false,
                Utc::now()
            ),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            decide_send(
                &facts(None, false),
                &[],
                &line,
                Purpose::Any,
                true,
                Utc::now()
            ),
            Ok(())
        );
        assert_eq!(
            decide_send(
                &facts(None, true),
                &[],
                &line,
                Purpose::Any,
                false,
                Utc::now()
            ),
            Ok(())
        );
        // Blocked wins over unknown.
        assert_eq!(
            Refusal::Blocked {
                scope: Scope::All,
                rule: None
            }
            .reason(),
            "recipient_blocked"
        );
    }

    #[test]
    fn b83_an_opt_out_refuses_by_purpose_and_a_block_still_comes_first() {
        let line = PhoneNumberId::parse("111").unwrap();
        let subject = crate::identity::Subject::parse("+16505551234").unwrap();
        let mut stopped = Consent::unset(subject, Scope::Business(line.clone()));
        stopped.marketing = crate::model::ConsentValue::OptedOut;
        let consents = [stopped];
        let send = |facts: &SenderFacts, purpose| {
            decide_send(facts, &consents, &line, purpose, true, Utc::now())
        };
        assert_eq!(
            send(&facts(None, true), Purpose::Marketing),
            Err(Refusal::OptedOut {
                scope: Scope::Business(line.clone())
            })
        );
        assert_eq!(send(&facts(None, true), Purpose::Utility), Ok(()));
        assert_eq!(
            send(&facts(Some("all"), true), Purpose::Marketing),
            Err(Refusal::Blocked {
                scope: Scope::All,
                rule: None
            })
        );
        assert_eq!(
            Refusal::OptedOut { scope: Scope::All }.reason(),
            "recipient_opted_out"
        );
    }
}
