use serde::{Deserialize, Serialize};

use super::PhoneNumberId;

/// Which settings entry: one business number or the `default` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsTarget {
    Default,
    Business(PhoneNumberId),
}

impl SettingsTarget {
    pub fn parse(raw: &str) -> Option<Self> {
        if raw == "default" {
            Some(SettingsTarget::Default)
        } else {
            PhoneNumberId::parse(raw).ok().map(SettingsTarget::Business)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            SettingsTarget::Default => "default",
            SettingsTarget::Business(id) => id.as_str(),
        }
    }
}

/// The auto-block policy of B40.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoBlockPolicy {
    pub enabled: bool,
    pub error_codes: Vec<u32>,
    pub threshold: u32,
    pub window_days: u32,
}

impl Default for AutoBlockPolicy {
    fn default() -> Self {
        AutoBlockPolicy {
            enabled: true,
            error_codes: vec![131026],
            threshold: 1,
            window_days: 30,
        }
    }
}

/// Settings of one business number (or of `default`), SPEC section 4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub phone_number_id: String,
    pub allow_unknown_numbers: bool,
    pub auto_block: AutoBlockPolicy,
    /// B62: when WhatsApp reports that a blocked person changed number or
    /// user id, the blocks follow them to the new identity.
    #[serde(default = "carry_blocks_default")]
    pub carry_blocks_on_change: bool,
    /// B15: blocks that cover this business number are mirrored to Meta's
    /// Block Users API. Per business number only: Meta's block list is a
    /// business number's.
    #[serde(default)]
    pub platform_block: bool,
    /// B81: a text (or quick-reply payload) that is one of these, trimmed
    /// and case-folded, opts the writer out of every message; one of
    /// `opt_in_keywords` opts them back in. Add the words of the
    /// customers' languages here.
    #[serde(default = "default_opt_out_keywords")]
    pub opt_out_keywords: Vec<String>,
    #[serde(default = "default_opt_in_keywords")]
    pub opt_in_keywords: Vec<String>,
    /// B81: the text sent back to a customer whose keyword opted them out
    /// (or, `opt_in_reply`, back in); empty sends nothing (the default).
    #[serde(default)]
    pub opt_out_reply: String,
    #[serde(default)]
    pub opt_in_reply: String,
    /// B16: a block comes due for review this many days after it was made
    /// or last reviewed; `None` (`null`) turns review off.
    #[serde(default = "review_after_days_default")]
    pub review_after_days: Option<u32>,
}

fn review_after_days_default() -> Option<u32> {
    Some(REVIEW_AFTER_DAYS)
}

/// SPEC B16's default review period.
pub const REVIEW_AFTER_DAYS: u32 = 90;

/// Reads a field where `null` is a value (turn off), not "inherit": absent
/// is `None`, `null` is `Some(None)`.
fn null_is_a_value<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn carry_blocks_default() -> bool {
    true
}

/// SPEC B81's default opt-out keywords.
pub const OPT_OUT_KEYWORDS: [&str; 8] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
];

/// SPEC B81's default opt-in keywords.
pub const OPT_IN_KEYWORDS: [&str; 3] = ["START", "UNSTOP", "YES"];

/// How long a keyword may be.
pub const MAX_KEYWORD_CHARS: usize = 64;

/// How many words a keyword has at most: what lets a delivery read
/// settings only for messages that short (S5: a customer's question costs
/// no read for keywords).
pub const MAX_KEYWORD_WORDS: usize = 3;

/// Whether `text` is short enough to be a keyword at all.
pub fn could_be_keyword(text: &str) -> bool {
    let said = keyword_form(text);
    !said.is_empty()
        && said.chars().count() <= MAX_KEYWORD_CHARS
        && said.split_whitespace().count() <= MAX_KEYWORD_WORDS
}

/// How many keywords one list holds at most.
pub const MAX_KEYWORDS: usize = 100;

/// How long a keyword's confirmation reply may be (WhatsApp takes 4,096).
pub const MAX_REPLY_CHARS: usize = 1024;

fn default_opt_out_keywords() -> Vec<String> {
    OPT_OUT_KEYWORDS.iter().map(|k| (*k).to_owned()).collect()
}

fn default_opt_in_keywords() -> Vec<String> {
    OPT_IN_KEYWORDS.iter().map(|k| (*k).to_owned()).collect()
}

/// A text as keywords are compared: trimmed and case-folded.
pub fn keyword_form(text: &str) -> String {
    text.trim().to_lowercase()
}

impl Settings {
    /// The built-in defaults, used when no `default` entry was stored.
    pub fn builtin(target: &SettingsTarget) -> Self {
        Settings {
            phone_number_id: target.as_str().to_owned(),
            allow_unknown_numbers: true,
            auto_block: AutoBlockPolicy::default(),
            carry_blocks_on_change: true,
            platform_block: false,
            opt_out_keywords: default_opt_out_keywords(),
            opt_in_keywords: default_opt_in_keywords(),
            opt_out_reply: String::new(),
            opt_in_reply: String::new(),
            review_after_days: Some(REVIEW_AFTER_DAYS),
        }
    }

    /// B81: the confirmation to send when a keyword set `value`, if any.
    pub fn keyword_reply(&self, value: super::ConsentValue) -> Option<&str> {
        let reply = match value {
            super::ConsentValue::OptedOut => &self.opt_out_reply,
            super::ConsentValue::OptedIn => &self.opt_in_reply,
        };
        (!reply.trim().is_empty()).then_some(reply.as_str())
    }

    /// B81: a word in both keyword lists (it could not say which it
    /// means): the field to blame, and why.
    pub fn keyword_conflict(&self) -> Option<(&'static str, &'static str)> {
        let both = self.opt_out_keywords.iter().any(|w| {
            self.opt_in_keywords
                .iter()
                .any(|b| keyword_form(b) == keyword_form(w))
        });
        both.then_some((
            "opt_in_keywords",
            "a keyword cannot both opt out and opt in",
        ))
    }

    /// B81: whether `text` (a message's whole text) is an opt-out
    /// (`OptedOut`) or opt-in keyword of these settings.
    pub fn keyword(&self, text: &str) -> Option<super::ConsentValue> {
        if !could_be_keyword(text) {
            return None;
        }
        let said = keyword_form(text);
        let is_in = |list: &[String]| list.iter().any(|k| keyword_form(k) == said);
        if is_in(&self.opt_out_keywords) {
            Some(super::ConsentValue::OptedOut)
        } else if is_in(&self.opt_in_keywords) {
            Some(super::ConsentValue::OptedIn)
        } else {
            None
        }
    }

    /// The settings of `target`: the built-in defaults, under what the
    /// `default` entry sets, under what the target's own entry sets, field
    /// by field (SPEC section 4). A later change of `default` reaches every
    /// field a business number does not set itself.
    pub fn resolved(
        target: &SettingsTarget,
        default: Option<&SettingsPatch>,
        own: Option<&SettingsPatch>,
    ) -> Settings {
        let mut settings = Settings::builtin(target);
        for layer in [default, own].into_iter().flatten() {
            settings = settings.patched(layer);
        }
        settings.phone_number_id = target.as_str().to_owned();
        settings
    }

    /// Every field of these settings, as an entry that sets them all (how
    /// entries stored before inheritance, which copied everything, read).
    pub fn as_patch(&self) -> SettingsPatch {
        SettingsPatch {
            phone_number_id: None,
            allow_unknown_numbers: Some(self.allow_unknown_numbers),
            auto_block: Some(AutoBlockPatch {
                enabled: Some(self.auto_block.enabled),
                error_codes: Some(self.auto_block.error_codes.clone()),
                threshold: Some(self.auto_block.threshold),
                window_days: Some(self.auto_block.window_days),
            }),
            carry_blocks_on_change: Some(self.carry_blocks_on_change),
            platform_block: Some(self.platform_block),
            opt_out_keywords: Some(self.opt_out_keywords.clone()),
            opt_in_keywords: Some(self.opt_in_keywords.clone()),
            opt_out_reply: Some(self.opt_out_reply.clone()),
            opt_in_reply: Some(self.opt_in_reply.clone()),
            review_after_days: Some(self.review_after_days),
        }
    }

    /// Applies a partial update: omitted fields keep their value.
    pub fn patched(&self, patch: &SettingsPatch) -> Settings {
        let mut next = self.clone();
        if let Some(allow) = patch.allow_unknown_numbers {
            next.allow_unknown_numbers = allow;
        }
        if let Some(carry) = patch.carry_blocks_on_change {
            next.carry_blocks_on_change = carry;
        }
        if let Some(platform) = patch.platform_block {
            next.platform_block = platform;
        }
        if let Some(words) = &patch.opt_out_keywords {
            next.opt_out_keywords = words.clone();
        }
        if let Some(words) = &patch.opt_in_keywords {
            next.opt_in_keywords = words.clone();
        }
        if let Some(reply) = &patch.opt_out_reply {
            next.opt_out_reply = reply.clone();
        }
        if let Some(reply) = &patch.opt_in_reply {
            next.opt_in_reply = reply.clone();
        }
        if let Some(days) = patch.review_after_days {
            next.review_after_days = days;
        }
        if let Some(auto) = &patch.auto_block {
            if let Some(enabled) = auto.enabled {
                next.auto_block.enabled = enabled;
            }
            if let Some(codes) = &auto.error_codes {
                next.auto_block.error_codes = codes.clone();
            }
            if let Some(threshold) = auto.threshold {
                next.auto_block.threshold = threshold;
            }
            if let Some(days) = auto.window_days {
                next.auto_block.window_days = days;
            }
        }
        next
    }
}

/// The body of `PUT /v1/settings/{id}`, and what an entry stores: the
/// fields it sets itself (the others are inherited).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Accepted so a client can send back what it read; must match the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unknown_numbers: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::object_only"
    )]
    pub auto_block: Option<AutoBlockPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carry_blocks_on_change: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_block: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_out_keywords: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_in_keywords: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_out_reply: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_in_reply: Option<String>,
    /// `null` turns review off (B16): unlike other fields, it does not
    /// clear the field; sending the number back sets it again.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "null_is_a_value"
    )]
    pub review_after_days: Option<Option<u32>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoBlockPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_codes: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_days: Option<u32>,
}

impl SettingsPatch {
    /// The clearable members of a `PUT /v1/settings/{id}` body that are
    /// `null`, removed from it and named as [`SettingsPatch::without`]
    /// takes them.
    pub fn take_nulls(body: &mut serde_json::Value) -> Vec<String> {
        take_nulls_of(body)
    }

    /// `self` with every field `later` sets replaced by its value.
    pub fn merged(&self, later: &SettingsPatch) -> SettingsPatch {
        let auto_block = match (&self.auto_block, &later.auto_block) {
            (Some(a), Some(b)) => Some(AutoBlockPatch {
                enabled: b.enabled.or(a.enabled),
                error_codes: b.error_codes.clone().or_else(|| a.error_codes.clone()),
                threshold: b.threshold.or(a.threshold),
                window_days: b.window_days.or(a.window_days),
            }),
            (a, b) => b.clone().or_else(|| a.clone()),
        };
        SettingsPatch {
            phone_number_id: None,
            allow_unknown_numbers: later.allow_unknown_numbers.or(self.allow_unknown_numbers),
            auto_block,
            carry_blocks_on_change: later.carry_blocks_on_change.or(self.carry_blocks_on_change),
            platform_block: later.platform_block.or(self.platform_block),
            opt_out_keywords: later
                .opt_out_keywords
                .clone()
                .or_else(|| self.opt_out_keywords.clone()),
            opt_in_keywords: later
                .opt_in_keywords
                .clone()
                .or_else(|| self.opt_in_keywords.clone()),
            opt_out_reply: later
                .opt_out_reply
                .clone()
                .or_else(|| self.opt_out_reply.clone()),
            opt_in_reply: later
                .opt_in_reply
                .clone()
                .or_else(|| self.opt_in_reply.clone()),
            review_after_days: later.review_after_days.or(self.review_after_days),
        }
    }

    /// `self` without the fields `cleared` names (as in the body, with
    /// dots: `auto_block.threshold`, or `auto_block` for all of its
    /// fields): they are inherited again.
    pub fn without(&self, cleared: &[String]) -> SettingsPatch {
        let mut next = self.clone();
        for field in cleared {
            match field.as_str() {
                "allow_unknown_numbers" => next.allow_unknown_numbers = None,
                "carry_blocks_on_change" => next.carry_blocks_on_change = None,
                "platform_block" => next.platform_block = None,
                "opt_out_keywords" => next.opt_out_keywords = None,
                "opt_in_keywords" => next.opt_in_keywords = None,
                "opt_out_reply" => next.opt_out_reply = None,
                "opt_in_reply" => next.opt_in_reply = None,
                "auto_block" => next.auto_block = None,
                nested => {
                    let Some(auto) = next.auto_block.as_mut() else {
                        continue;
                    };
                    match nested {
                        "auto_block.enabled" => auto.enabled = None,
                        "auto_block.error_codes" => auto.error_codes = None,
                        "auto_block.threshold" => auto.threshold = None,
                        "auto_block.window_days" => auto.window_days = None,
                        _ => {}
                    }
                }
            }
        }
        if next.auto_block.as_ref() == Some(&AutoBlockPatch::default()) {
            next.auto_block = None;
        }
        next
    }

    /// Range checks that types cannot express, for an entry of `target`.
    /// Returns the offending field.
    pub fn validate(&self, target: &SettingsTarget) -> Result<(), (&'static str, &'static str)> {
        // `false` is what `GET /v1/settings/default` shows: sending it back
        // is fine.
        if *target == SettingsTarget::Default && self.platform_block == Some(true) {
            // Meta's block list belongs to one business number: turning it
            // on everywhere at once is not a default to inherit by accident.
            return Err((
                "platform_block",
                "platform_block is set per business number, not on default",
            ));
        }
        for (field, words) in [
            ("opt_out_keywords", &self.opt_out_keywords),
            ("opt_in_keywords", &self.opt_in_keywords),
        ] {
            let Some(words) = words else { continue };
            if words.len() > MAX_KEYWORDS {
                return Err((field, "at most 100 keywords"));
            }
            if words.iter().any(|w| keyword_form(w).is_empty()) {
                return Err((field, "a keyword must not be empty"));
            }
            if words
                .iter()
                .any(|w| w.trim().chars().count() > MAX_KEYWORD_CHARS)
            {
                return Err((field, "a keyword is at most 64 characters"));
            }
        }
        for (field, reply) in [
            ("opt_out_reply", &self.opt_out_reply),
            ("opt_in_reply", &self.opt_in_reply),
        ] {
            if reply
                .as_ref()
                .is_some_and(|r| r.chars().count() > MAX_REPLY_CHARS)
            {
                return Err((field, "a reply is at most 1024 characters"));
            }
        }
        if self
            .review_after_days
            .flatten()
            .is_some_and(|d| !(1..=3650).contains(&d))
        {
            return Err((
                "review_after_days",
                "review_after_days must be 1 to 3650, or null for no review",
            ));
        }
        if let Some(auto) = &self.auto_block {
            if auto.threshold.is_some_and(|t| !(1..=1000).contains(&t)) {
                return Err(("auto_block.threshold", "threshold must be 1 to 1000"));
            }
            if auto.window_days.is_some_and(|d| !(1..=365).contains(&d)) {
                return Err(("auto_block.window_days", "window_days must be 1 to 365"));
            }
            if auto.error_codes.as_ref().is_some_and(|c| c.len() > 100) {
                return Err(("auto_block.error_codes", "at most 100 error codes"));
            }
        }
        Ok(())
    }
}

/// The fields a settings body may clear with `null`, at its top and in its
/// `auto_block`. A `null` anywhere else is left for the typed parse to
/// refuse (an unknown field stays unknown).
const CLEARABLE: [&str; 9] = [
    "allow_unknown_numbers",
    "carry_blocks_on_change",
    "platform_block",
    "opt_out_keywords",
    "opt_in_keywords",
    "opt_out_reply",
    "opt_in_reply",
    "auto_block",
    "phone_number_id",
];
const CLEARABLE_AUTO_BLOCK: [&str; 4] = ["enabled", "error_codes", "threshold", "window_days"];

/// The clearable members of a settings body that are `null`, removed,
/// named as in the body (`auto_block.threshold`).
fn take_nulls_of(body: &mut serde_json::Value) -> Vec<String> {
    let mut cleared = Vec::new();
    let Some(object) = body.as_object_mut() else {
        return cleared;
    };
    if let Some(auto) = object.get_mut("auto_block").and_then(|a| a.as_object_mut()) {
        auto.retain(|key, value| {
            let clear = value.is_null() && CLEARABLE_AUTO_BLOCK.contains(&key.as_str());
            if clear {
                cleared.push(format!("auto_block.{key}"));
            }
            !clear
        });
    }
    object.retain(|key, value| {
        let clear = value.is_null() && CLEARABLE.contains(&key.as_str());
        if clear {
            cleared.push(key.clone());
        }
        !clear
    });
    cleared
}
