//! The pure decision for an outbound send (B31, B32, B33).

use chrono::{DateTime, Utc};

use crate::inbound::SenderFacts;
use crate::model::{PhoneNumberId, Scope};
use crate::policy::blocking_block;

/// Why a recipient is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// B31: blocked for this business number, in `scope`.
    Blocked { scope: Scope },
    /// B32: no contact, and the business number does not allow unknown
    /// numbers.
    Unknown,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Blocked { .. } => "recipient_blocked",
            Refusal::Unknown => "recipient_unknown",
        }
    }

    pub fn scope(&self) -> Option<&Scope> {
        match self {
            Refusal::Blocked { scope } => Some(scope),
            Refusal::Unknown => None,
        }
    }
}

/// `Ok(())` when a message from `business` may go to the recipient.
pub fn decide_send(
    recipient: &SenderFacts,
    business: &PhoneNumberId,
    allow_unknown_numbers: bool,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if let Some(block) = blocking_block(&recipient.blocks, business, now) {
        return Err(Refusal::Blocked {
            scope: block.scope.clone(),
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
            decide_send(&facts(Some("all"), true), &line, true, Utc::now()),
            Err(Refusal::Blocked { scope: Scope::All })
        );
        assert!(decide_send(&facts(Some("111"), true), &line, true, Utc::now()).is_err());
        assert_eq!(
            decide_send(&facts(Some("222"), true), &line, true, Utc::now()),
            Ok(())
        );
    }

    #[test]
    fn b32_unknown_recipient_is_refused_only_when_unknown_numbers_are_not_allowed() {
        let line = PhoneNumberId::parse("111").unwrap();
        assert_eq!(
            decide_send(&facts(None, false), &line, false, Utc::now()),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            decide_send(&facts(None, false), &line, true, Utc::now()),
            Ok(())
        );
        assert_eq!(
            decide_send(&facts(None, true), &line, false, Utc::now()),
            Ok(())
        );
        // Blocked wins over unknown.
        assert_eq!(
            Refusal::Blocked { scope: Scope::All }.reason(),
            "recipient_blocked"
        );
    }
}
