//! The pure auto-block decision (B40): a delivery failure whose code the
//! business number's policy names counts towards its threshold within its
//! window; reaching it blocks the number.

use chrono::{DateTime, Duration, Utc};

use crate::inbound::DeliveryFailure;
use crate::model::{AutoBlockPolicy, Reason};

/// What an auto-block records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoBlock {
    pub reason: Reason,
    pub reason_code: String,
    /// Failures counted, the triggering one included.
    pub failures: usize,
}

/// Whether `failure` triggers a block, given the number's `recent` failures
/// on the same business number (the triggering one included, as stored).
/// Failures from before `unblocked_at` (someone unblocked the number since)
/// no longer count: an unblock starts the count afresh.
pub fn decide_auto_block(
    failure: &DeliveryFailure,
    recent: &[DeliveryFailure],
    policy: &AutoBlockPolicy,
    unblocked_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<AutoBlock> {
    let code = failure.code?;
    let counts = |f: &DeliveryFailure| {
        f.code
            .is_some_and(|c| policy.error_codes.iter().any(|p| i64::from(*p) == c))
    };
    if !policy.enabled || !counts(failure) {
        return None;
    }
    let window = now - Duration::days(i64::from(policy.window_days));
    let since = unblocked_at.map_or(window, |at| at.max(window));
    if failure.at < since {
        return None;
    }
    let failures = recent
        .iter()
        .filter(|f| f.at >= since && counts(f) && f.phone_number_id == failure.phone_number_id)
        .count();
    if failures < policy.threshold as usize {
        return None;
    }
    let title = failure.title.as_deref().unwrap_or("delivery failed");
    let text = format!(
        "WhatsApp error {code}: {title} ({failures} failure{} in {} days)",
        if failures == 1 { "" } else { "s" },
        policy.window_days
    );
    let reason = Reason::parse(&text.chars().take(Reason::MAX_CHARS).collect::<String>()).ok()?;
    Some(AutoBlock {
        reason,
        reason_code: code.to_string(),
        failures,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::PhoneNumberId;
    use crate::number::Number;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn failure(code: i64, days_ago: i64, id: &str) -> DeliveryFailure {
        DeliveryFailure {
            subject: crate::identity::Subject::Number(Number::parse("+16505551234").unwrap()),
            phone_number_id: PhoneNumberId::parse("111").ok(),
            code: Some(code),
            title: Some("Message undeliverable".into()),
            message_id: id.into(),
            at: now() - Duration::days(days_ago),
        }
    }

    fn policy(threshold: u32) -> AutoBlockPolicy {
        AutoBlockPolicy {
            threshold,
            ..AutoBlockPolicy::default()
        }
    }

    #[test]
    fn b40_threshold_one_blocks_on_the_first_failure() {
        let f = failure(131026, 0, "a");
        let block =
            decide_auto_block(&f, std::slice::from_ref(&f), &policy(1), None, now()).unwrap();
        assert_eq!(block.reason_code, "131026");
        assert_eq!(
            block.reason.as_str(),
            "WhatsApp error 131026: Message undeliverable (1 failure in 30 days)"
        );
    }

    #[test]
    fn b40_threshold_counts_only_failures_inside_the_window() {
        let old = [failure(131026, 40, "a"), failure(131026, 35, "b")];
        let new = failure(131026, 0, "c");
        let all: Vec<_> = old.iter().cloned().chain([new.clone()]).collect();
        assert_eq!(decide_auto_block(&new, &all, &policy(3), None, now()), None);
        let recent = [
            failure(131026, 10, "a"),
            failure(131026, 1, "b"),
            new.clone(),
        ];
        assert_eq!(
            decide_auto_block(&new, &recent, &policy(3), None, now())
                .unwrap()
                .failures,
            3
        );
        assert_eq!(
            decide_auto_block(&new, &recent[1..], &policy(3), None, now()),
            None
        );
    }

    #[test]
    fn b40_other_codes_and_disabled_policies_never_block() {
        let other = failure(131049, 0, "a");
        assert_eq!(
            decide_auto_block(
                &other,
                std::slice::from_ref(&other),
                &policy(1),
                None,
                now()
            ),
            None
        );
        let f = failure(131026, 0, "b");
        let disabled = AutoBlockPolicy {
            enabled: false,
            ..policy(1)
        };
        assert_eq!(
            decide_auto_block(&f, std::slice::from_ref(&f), &disabled, None, now()),
            None
        );
        // Other codes in the window do not count towards the threshold.
        let mixed = [failure(131049, 1, "c"), failure(131049, 2, "d"), f.clone()];
        assert_eq!(decide_auto_block(&f, &mixed, &policy(2), None, now()), None);
    }

    #[test]
    fn b40_an_unblock_starts_the_count_afresh() {
        let before = [failure(131026, 3, "a"), failure(131026, 2, "b")];
        let after = failure(131026, 0, "c");
        let all: Vec<_> = before.iter().cloned().chain([after.clone()]).collect();
        let unblocked = Some(now() - Duration::days(1));
        assert!(decide_auto_block(&after, &all, &policy(3), None, now()).is_some());
        assert_eq!(
            decide_auto_block(&after, &all, &policy(3), unblocked, now()),
            None
        );
        // A redelivered failure from before the unblock does not re-block.
        assert_eq!(
            decide_auto_block(&before[0], &all, &policy(1), unblocked, now()),
            None
        );
    }
}
