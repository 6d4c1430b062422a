//! Prefix rules (B84): every number that starts with a prefix is blocked in
//! a scope, without one block per number, for a spam wave from one country
//! or range.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Block, PhoneNumberId, Reason, Scope, Source, time_format};
use crate::identity::Subject;
use crate::number::Number;

/// Most rules a deployment may hold: enforcement reads all of them with
/// every delivery (see `store/rule.rs` for the capacity this allows).
pub const MAX_RULES: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a rule id is 1 to 32 letters, digits, '.', '_' or '-'")]
    Id,
    #[error("a prefix is '+' and 1 to 14 digits, starting with a country code (never 0)")]
    Prefix,
    #[error("a prefix of '+' alone would block every number")]
    Everything,
    #[error("action must be \"block\"")]
    Action,
}

/// The id a client gives a rule in `PUT /v1/rules/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RuleId(String);

impl RuleId {
    /// Every delivery reads every id (see `store/rule.rs`).
    pub const MAX_CHARS: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, RuleError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if (1..=Self::MAX_CHARS).contains(&raw.len()) && raw.chars().all(allowed) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(RuleError::Id)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The start of an E.164 number: `+` and 1 to 14 digits (a number has at
/// most 15), the first a country code's. It matches the canonical form
/// numbers are stored and compared in, so `+234` holds for every Nigerian
/// number however it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Prefix(String);

impl Prefix {
    pub fn parse(raw: &str) -> Result<Self, RuleError> {
        let Some(digits) = raw.strip_prefix('+') else {
            return Err(RuleError::Prefix);
        };
        if digits.is_empty() {
            return Err(RuleError::Everything);
        }
        // No country code starts with 0: such a prefix could never match,
        // and is most likely a national form (`+0803…`) meant otherwise.
        if digits.len() > 14
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(RuleError::Prefix);
        }
        Ok(Self(raw.to_owned()))
    }

    /// A new rule's prefix (B84, B63): [`Prefix::parse`], then written
    /// the way numbers of that start are stored (Argentina's `+5411…` is
    /// stored `+54911…`; see [`crate::number::prefix_as_stored`]), since it
    /// is compared with stored numbers and would otherwise match none of
    /// the wave it names. Stored rules are read with [`Prefix::parse`], as
    /// they were written.
    pub fn parse_new(raw: &str) -> Result<Self, RuleError> {
        Self::parse(raw)?;
        Self::parse(&format!("+{}", crate::number::prefix_as_stored(&raw[1..])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, number: &Number) -> bool {
        number.as_str().starts_with(&self.0)
    }
}

super::values::parsed_string!(RuleId, Prefix);

/// What a rule does to the numbers it matches. Only `block` for now; the
/// field is there so that a later action needs no new shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    #[default]
    Block,
}

impl RuleAction {
    pub fn parse(raw: &str) -> Result<Self, RuleError> {
        match raw {
            "block" => Ok(RuleAction::Block),
            _ => Err(RuleError::Action),
        }
    }
}

/// One prefix rule (SPEC section 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: RuleId,
    pub prefix: Prefix,
    pub scope: Scope,
    pub reason: Reason,
    pub action: RuleAction,
    /// Who made the rule; later edits are in its audit events.
    pub actor: String,
    #[serde(with = "time_format")]
    pub created_at: DateTime<Utc>,
}

/// What enforcement needs of a rule: kept small, since every delivery
/// reads every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleEntry {
    pub id: RuleId,
    pub prefix: Prefix,
    pub scope: Scope,
    pub created_at: DateTime<Utc>,
}

impl RuleEntry {
    /// `<prefix> <scope> <created_at seconds> <id>`: none of the parts can
    /// hold a space.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.prefix,
            self.scope,
            self.created_at.timestamp(),
            self.id
        )
    }

    pub fn decode(raw: &str) -> Option<RuleEntry> {
        let mut parts = raw.splitn(4, ' ');
        let prefix = Prefix::parse(parts.next()?).ok()?;
        let scope = Scope::parse(parts.next()?).ok()?;
        let created_at = DateTime::from_timestamp(parts.next()?.parse().ok()?, 0)?;
        let id = RuleId::parse(parts.next()?).ok()?;
        Some(RuleEntry {
            id,
            prefix,
            scope,
            created_at,
        })
    }

    /// The block this rule makes of `subject`, a person one of whose
    /// numbers it matched. Never stored: rules are read with every
    /// delivery and send, and a number that stops matching (the rule
    /// removed) is free at once.
    pub fn block_of(&self, subject: &Subject) -> Block {
        Block {
            subject: subject.clone(),
            scope: self.scope.clone(),
            reason: Reason::written(&format!("prefix rule {} ({})", self.id, self.prefix)),
            source: Source::Rule,
            reason_code: None,
            actor: "rule".to_owned(),
            client: None,
            blocked_at: self.created_at,
            expires_at: None,
            version: 0,
            review_due_at: None,
            rule: Some(self.id.clone()),
        }
    }
}

impl From<&Rule> for RuleEntry {
    fn from(rule: &Rule) -> Self {
        RuleEntry {
            id: rule.id.clone(),
            prefix: rule.prefix.clone(),
            scope: rule.scope.clone(),
            created_at: rule.created_at,
        }
    }
}

/// Every rule, as enforcement reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    pub entries: Vec<RuleEntry>,
}

impl RuleSet {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The rules matching any of `numbers` (a person's numbers: the one a
    /// message shows and those linked to it, B61), in any scope.
    pub fn matching<'a>(&'a self, numbers: &'a [&Number]) -> impl Iterator<Item = &'a RuleEntry> {
        self.entries
            .iter()
            .filter(move |rule| numbers.iter().any(|n| rule.prefix.matches(n)))
    }

    /// The blocks the rules make of one identity of a sender or recipient:
    /// `numbers` are its own number and those linked to it (B61),
    /// `businesses` the business numbers of the traffic.
    pub fn blocks_for(
        &self,
        subject: &Subject,
        numbers: &[&Number],
        businesses: &std::collections::HashSet<PhoneNumberId>,
    ) -> Vec<Block> {
        self.matching(numbers)
            .filter(|rule| match &rule.scope {
                Scope::All => true,
                Scope::Business(id) => businesses.contains(id),
            })
            .map(|rule| rule.block_of(subject))
            .collect()
    }

    /// The set with `rule` in place of the entry of its id (or added);
    /// `None` removes the entry of `id`. Kept sorted by id.
    pub fn with(&self, id: &RuleId, rule: Option<&Rule>) -> RuleSet {
        let mut entries: Vec<RuleEntry> = self
            .entries
            .iter()
            .filter(|e| &e.id != id)
            .cloned()
            .collect();
        entries.extend(rule.map(RuleEntry::from));
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        RuleSet { entries }
    }

    /// Another rule with the same prefix and scope, which would make
    /// `rule` a second name for it.
    pub fn duplicate_of(&self, rule: &Rule) -> Option<&RuleEntry> {
        self.entries
            .iter()
            .find(|e| e.id != rule.id && e.prefix == rule.prefix && e.scope == rule.scope)
    }
}

/// Why a rule cannot be put.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleRefusal {
    #[error("rule {0} already blocks this prefix in this scope")]
    Duplicate(RuleId),
    #[error("at most 1000 rules: remove one first")]
    Full,
}

/// What putting `rule` over the stored set does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulePut {
    /// The same rule is there already: nothing is written or audited.
    Unchanged,
    Write,
}

/// Decides `PUT /v1/rules/{id}` of `rule` over `set`, where the rule of
/// that id is `before`.
pub fn decide_rule_put(
    set: &RuleSet,
    before: Option<&Rule>,
    rule: &Rule,
) -> Result<RulePut, RuleRefusal> {
    if before == Some(rule) {
        return Ok(RulePut::Unchanged);
    }
    if let Some(other) = set.duplicate_of(rule) {
        return Err(RuleRefusal::Duplicate(other.id.clone()));
    }
    if before.is_none() && set.entries.len() >= MAX_RULES {
        return Err(RuleRefusal::Full);
    }
    Ok(RulePut::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(raw: &str) -> Number {
        Number::parse(raw).unwrap()
    }

    fn rule(id: &str, prefix: &str) -> Rule {
        Rule {
            id: RuleId::parse(id).unwrap(),
            prefix: Prefix::parse(prefix).unwrap(),
            scope: Scope::All,
            reason: Reason::parse("wave").unwrap(),
            action: RuleAction::Block,
            actor: "ops".into(),
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
        }
    }

    fn entry(id: &str, prefix: &str, scope: &str) -> RuleEntry {
        RuleEntry {
            id: RuleId::parse(id).unwrap(),
            prefix: Prefix::parse(prefix).unwrap(),
            scope: Scope::parse(scope).unwrap(),
            created_at: DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
        }
    }

    #[test]
    fn a_prefix_is_plus_and_one_to_fourteen_digits() {
        for good in ["+2", "+234", "+23480", &format!("+1{}", "2".repeat(13))] {
            assert!(Prefix::parse(good).is_ok(), "{good}");
        }
        assert_eq!(Prefix::parse("+"), Err(RuleError::Everything));
        for bad in [
            "",
            "234",
            "+0803",
            "+23 4",
            "+2a",
            "++234",
            &format!("+1{}", "2".repeat(14)),
            "+２３４",
        ] {
            assert_eq!(Prefix::parse(bad), Err(RuleError::Prefix), "{bad:?}");
        }
    }

    #[test]
    fn a_prefix_matches_the_canonical_number() {
        let prefix = Prefix::parse("+234").unwrap();
        assert!(prefix.matches(&number("+234 803 123 4567")));
        assert!(prefix.matches(&number("2348031234567")));
        assert!(!prefix.matches(&number("+16505551234")));
        assert!(
            !Prefix::parse("+2348")
                .unwrap()
                .matches(&number("+2347031234567"))
        );
    }

    #[test]
    fn ids_are_short_and_plain() {
        assert!(RuleId::parse("nigeria-wave_2026.12").is_ok());
        assert!(RuleId::parse(&"x".repeat(32)).is_ok());
        for bad in ["", "a b", "a/b", "é", &"x".repeat(33)] {
            assert_eq!(RuleId::parse(bad), Err(RuleError::Id), "{bad:?}");
        }
    }

    #[test]
    fn entries_round_trip_through_their_compact_form() {
        for e in [
            entry("wave", "+234", "all"),
            entry("x.y-z_1", "+1650", "106540352242922"),
        ] {
            assert_eq!(RuleEntry::decode(&e.encode()), Some(e.clone()));
        }
        assert_eq!(RuleEntry::decode("+234 all"), None);
        assert_eq!(RuleEntry::decode("+234 all x wave"), None);
    }

    #[test]
    fn a_set_matches_any_number_of_the_person() {
        let set = RuleSet {
            entries: vec![entry("ng", "+234", "all"), entry("us", "+1650", "1")],
        };
        let nigerian = number("+2348031234567");
        let american = number("+16505551234");
        let ids = |numbers: &[&Number]| -> Vec<String> {
            set.matching(numbers).map(|e| e.id.to_string()).collect()
        };
        assert_eq!(ids(&[&nigerian]), ["ng"]);
        assert_eq!(ids(&[&american, &nigerian]), ["ng", "us"]);
        assert!(ids(&[]).is_empty());
        assert!(ids(&[&number("+447700900123")]).is_empty());
    }

    #[test]
    fn a_rule_blocks_in_its_scope_only() {
        let line = PhoneNumberId::parse("106540352242922").unwrap();
        let other = PhoneNumberId::parse("1").unwrap();
        let set = RuleSet {
            entries: vec![
                entry("everywhere", "+234", "all"),
                entry("one-line", "+2348", "106540352242922"),
            ],
        };
        let user = Subject::parse("NG.13491208655302741918").unwrap();
        let linked = number("+2348031234567");
        let on = |business: &PhoneNumberId| -> Vec<String> {
            set.blocks_for(&user, &[&linked], &[business.clone()].into())
                .into_iter()
                .map(|b| {
                    assert_eq!(b.subject, user, "kept under the identity asked about");
                    b.rule.unwrap().to_string()
                })
                .collect()
        };
        assert_eq!(on(&line), ["everywhere", "one-line"]);
        assert_eq!(on(&other), ["everywhere"]);
        assert!(set.blocks_for(&user, &[], &[line].into()).is_empty());
    }

    #[test]
    fn a_rule_blocks_as_a_block_naming_it() {
        let subject = Subject::Number(number("+2348031234567"));
        let block = entry("ng", "+234", "all").block_of(&subject);
        assert_eq!(block.subject, subject);
        assert_eq!(block.scope, Scope::All);
        assert_eq!(block.source, Source::Rule);
        assert_eq!(block.rule.as_ref().map(RuleId::as_str), Some("ng"));
        assert!(block.reason.as_str().contains("+234"));
        assert!(block.expires_at.is_none());
    }

    #[test]
    fn a_put_is_refused_when_it_duplicates_or_overfills() {
        let ng = rule("ng", "+234");
        let set = RuleSet::default().with(&ng.id, Some(&ng));
        assert_eq!(
            decide_rule_put(&set, Some(&ng), &ng),
            Ok(RulePut::Unchanged)
        );
        assert_eq!(
            decide_rule_put(&set, Some(&ng), &rule("ng", "+235")),
            Ok(RulePut::Write)
        );
        assert_eq!(
            decide_rule_put(&set, None, &rule("other", "+234")),
            Err(RuleRefusal::Duplicate(ng.id.clone()))
        );
        let full = (0..MAX_RULES).fold(RuleSet::default(), |set, i| {
            let r = rule(&format!("r{i}"), &format!("+1{i}"));
            set.with(&r.id, Some(&r))
        });
        assert_eq!(
            decide_rule_put(&full, None, &rule("one-more", "+9")),
            Err(RuleRefusal::Full)
        );
        let kept = rule("r1", "+8");
        assert_eq!(
            decide_rule_put(
                &full,
                full.entries.iter().find(|e| e.id == kept.id).map(|_| &kept),
                &rule("r1", "+7")
            ),
            Ok(RulePut::Write),
            "a change of a rule held is not a new rule"
        );
    }

    #[test]
    fn a_set_replaces_by_id_and_finds_duplicates() {
        let set = RuleSet {
            entries: vec![entry("b", "+234", "all"), entry("a", "+1", "all")],
        };
        let changed = set.with(&RuleId::parse("b").unwrap(), Some(&rule("b", "+235")));
        let ids: Vec<&str> = changed.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(changed.entries[1].prefix.as_str(), "+235");
        let removed = set.with(&RuleId::parse("a").unwrap(), None);
        assert_eq!(removed.entries.len(), 1);
        assert_eq!(
            set.duplicate_of(&rule("c", "+234")).map(|e| e.id.as_str()),
            Some("b")
        );
        assert_eq!(set.duplicate_of(&rule("b", "+234")), None, "itself");
    }
}
