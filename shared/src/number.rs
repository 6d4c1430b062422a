//! Canonical customer numbers.
//!
//! Every number that enters the product (API paths and bodies, webhook `from`
//! and `wa_id`, Graph `to`) goes through [`Number::parse`], so the same
//! subscriber always has the same key in the store, whatever form it came in.
//!
//! Accepted input: `+` and digits, optionally with spaces, dashes, dots and
//! parentheses, a leading `00` instead of `+`, or bare digits as WhatsApp
//! sends them in `wa_id` / `from`. Country metadata comes from the
//! `phonenumber` crate (libphonenumber's data).
//!
//! WhatsApp quirks folded into one identity:
//! - Brazil: mobiles got a ninth digit (`9`) in front of the 8-digit subscriber
//!   number; older WhatsApp ids still carry the 12-digit form. Both map to the
//!   13-digit form `+55 AA 9XXXX XXXX`.
//! - Mexico: WhatsApp ids of mobiles carry the old `1` after the country code
//!   (`521` + 10 digits); E.164 has been `52` + 10 digits since 2019. Both map
//!   to `+52` + 10 digits.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an input is not a customer number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("number is empty")]
    Empty,
    #[error("number may contain only digits, '+', spaces, dashes, dots and parentheses")]
    InvalidCharacters,
    #[error("number has no known country code")]
    UnknownCountry,
    #[error("number is too short for its country")]
    TooShort,
    #[error("number is too long for its country")]
    TooLong,
}

/// A customer WhatsApp number in canonical E.164 form (`+` and digits).
///
/// Holds only canonical values: the only constructor is [`Number::parse`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Number(String);

/// E.164 allows at most 15 digits; anything past that is refused before the
/// metadata lookup.
const MAX_DIGITS: usize = 15;

impl Number {
    /// Parses any accepted form into the canonical number.
    pub fn parse(input: &str) -> Result<Number, NumberError> {
        let digits = international_digits(input)?;
        let digits = fold_whatsapp_quirks(&digits);
        if digits.len() > MAX_DIGITS {
            return Err(NumberError::TooLong);
        }
        let e164 = format!("+{digits}");
        let parsed = phonenumber::parse(None, &e164).map_err(|error| match error {
            phonenumber::ParseError::TooShortNsn | phonenumber::ParseError::TooShortAfterIdd => {
                NumberError::TooShort
            }
            phonenumber::ParseError::TooLong => NumberError::TooLong,
            phonenumber::ParseError::InvalidCountryCode => NumberError::UnknownCountry,
            _ => NumberError::InvalidCharacters,
        })?;
        check_possible_length(&parsed)?;
        // Re-format from the parsed value so that national-prefix quirks the
        // metadata knows about are applied the same way for every input.
        let canonical = parsed.format().mode(phonenumber::Mode::E164).to_string();
        Ok(Number(canonical))
    }

    /// The canonical `+<digits>` form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without `+`, as WhatsApp writes a `wa_id`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// The number for logs: only the last four digits visible (B52).
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks any phone-number-like string for logs, keeping the last 4 characters.
pub fn mask(raw: &str) -> String {
    let count = raw.chars().count();
    raw.chars()
        .enumerate()
        .map(|(i, c)| {
            if i + 4 < count && c.is_ascii_digit() {
                '*'
            } else {
                c
            }
        })
        .collect()
}

/// Strips formatting and returns the digits of the international form.
fn international_digits(input: &str) -> Result<String, NumberError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(NumberError::Empty);
    }
    let mut digits = String::with_capacity(trimmed.len());
    for (i, c) in trimmed.char_indices() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => {}
            ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
            _ => return Err(NumberError::InvalidCharacters),
        }
    }
    if digits.is_empty() {
        return Err(NumberError::Empty);
    }
    // `00` is the international call prefix in most of the world.
    let digits = match digits.strip_prefix("00") {
        Some(rest) if !trimmed.starts_with('+') => rest.to_owned(),
        _ => digits,
    };
    if digits.is_empty() {
        return Err(NumberError::TooShort);
    }
    Ok(digits)
}

/// Brazil's ninth digit and Mexico's `521` (see the module docs).
fn fold_whatsapp_quirks(digits: &str) -> String {
    // Brazil: 55 + 2-digit area code + 8-digit subscriber whose first digit is
    // 6-9 (the mobile ranges before the ninth digit was added).
    if digits.len() == 12 && digits.starts_with("55") {
        let (area, subscriber) = digits[2..].split_at(2);
        if matches!(subscriber.as_bytes()[0], b'6'..=b'9') && !area.starts_with('0') {
            return format!("55{area}9{subscriber}");
        }
    }
    // Mexico: 52 + 1 + 10 digits.
    if digits.len() == 13 && digits.starts_with("521") {
        return format!("52{}", &digits[3..]);
    }
    digits.to_owned()
}

/// "A possible international number": the national part has a length the
/// country's numbering plan allows. Deliberately not full validity (which
/// needs up-to-date ranges): refusing to block a real number is worse than
/// accepting a number in a range the metadata does not know yet.
fn check_possible_length(number: &phonenumber::PhoneNumber) -> Result<(), NumberError> {
    let database = &*phonenumber::metadata::DATABASE;
    // Every region sharing the country code (e.g. +44: GB, GG, IM, JE).
    let Some(regions) = database.by_code(&number.code().value()) else {
        return Err(NumberError::UnknownCountry);
    };
    // The crate's metadata keeps possible lengths per number type; a number
    // a subscriber can use on WhatsApp is one of these types.
    use phonenumber::Type;
    let kinds = [
        Type::FixedLine,
        Type::Mobile,
        Type::PersonalNumber,
        Type::Voip,
        Type::Uan,
    ];
    let mut possible: Vec<u16> = regions
        .iter()
        .flat_map(|meta| {
            kinds
                .iter()
                .filter_map(|kind| meta.descriptors().get(*kind))
        })
        .flat_map(|descriptor| descriptor.possible_length().iter().copied())
        .collect();
    possible.sort_unstable();
    possible.dedup();
    let national = number.national();
    let length = (national.value().checked_ilog10().map_or(1, |d| d + 1) as u16)
        + u16::from(national.zeros());
    match (possible.first(), possible.last()) {
        (Some(&min), _) if length < min => Err(NumberError::TooShort),
        (_, Some(&max)) if length > max => Err(NumberError::TooLong),
        _ if possible.is_empty() || possible.contains(&length) => Ok(()),
        // A length inside the range that the plan skips (e.g. 9 where only 8
        // and 10 exist) is as wrong as one outside it.
        _ => Err(NumberError::TooShort),
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Number {
    // Debug output ends up in logs: keep it masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Number({})", self.masked())
    }
}

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Number::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(input: &str) -> String {
        Number::parse(input).unwrap().to_string()
    }

    #[test]
    fn accepts_every_documented_input_form() {
        for input in [
            "+16505551234",
            "16505551234",
            "+1 (650) 555-1234",
            "001 650 555 1234",
            "+1.650.555.1234",
            " +1 650 555 1234 ",
        ] {
            assert_eq!(canonical(input), "+16505551234", "input {input:?}");
        }
    }

    #[test]
    fn canonical_form_of_common_countries() {
        assert_eq!(canonical("447700900123"), "+447700900123");
        assert_eq!(canonical("4915112345678"), "+4915112345678");
        assert_eq!(canonical("+39 06 1234 5678"), "+390612345678");
    }

    #[test]
    fn brazil_ninth_digit_forms_are_one_customer() {
        let with_nine = Number::parse("+55 11 98123 4567").unwrap();
        let without_nine = Number::parse("551181234567").unwrap();
        assert_eq!(with_nine, without_nine);
        assert_eq!(with_nine.as_str(), "+5511981234567");
    }

    #[test]
    fn brazil_landlines_keep_eight_digits() {
        // Subscriber numbers starting 2-5 are fixed lines: no ninth digit.
        assert_eq!(canonical("551132345678"), "+551132345678");
    }

    #[test]
    fn mexico_521_and_52_forms_are_one_customer() {
        let wa_id = Number::parse("5215512345678").unwrap();
        let e164 = Number::parse("+52 55 1234 5678").unwrap();
        assert_eq!(wa_id, e164);
        assert_eq!(e164.as_str(), "+525512345678");
    }

    #[test]
    fn refuses_what_is_not_a_possible_international_number() {
        assert_eq!(Number::parse(""), Err(NumberError::Empty));
        assert_eq!(Number::parse("   "), Err(NumberError::Empty));
        assert_eq!(Number::parse("+"), Err(NumberError::Empty));
        assert_eq!(Number::parse("abc"), Err(NumberError::InvalidCharacters));
        assert_eq!(
            Number::parse("+1650555abcd"),
            Err(NumberError::InvalidCharacters)
        );
        assert_eq!(
            Number::parse("1+6505551234"),
            Err(NumberError::InvalidCharacters)
        );
        assert_eq!(Number::parse("+1650"), Err(NumberError::TooShort));
        assert_eq!(
            Number::parse("+1650555123456789"),
            Err(NumberError::TooLong)
        );
        assert_eq!(Number::parse("+165055512345"), Err(NumberError::TooLong));
        // No country code: national forms with a trunk prefix, or too few
        // digits to hold a country code and a subscriber number.
        assert_eq!(
            Number::parse("07700 900123"),
            Err(NumberError::UnknownCountry)
        );
        assert_eq!(
            Number::parse("(0)30 1234567"),
            Err(NumberError::UnknownCountry)
        );
        assert_eq!(Number::parse("5551234"), Err(NumberError::TooShort));
        assert_eq!(
            Number::parse("+999123456789"),
            Err(NumberError::UnknownCountry)
        );
    }

    #[test]
    fn masks_all_but_the_last_four_digits() {
        let number = Number::parse("+16505551234").unwrap();
        assert_eq!(number.masked(), "+*******1234");
        assert_eq!(format!("{number:?}"), "Number(+*******1234)");
        assert_eq!(mask("12"), "12");
    }

    #[test]
    fn serde_round_trip_canonicalises() {
        let number: Number = serde_json::from_str("\"0016505551234\"").unwrap();
        assert_eq!(serde_json::to_string(&number).unwrap(), "\"+16505551234\"");
        assert!(serde_json::from_str::<Number>("\"nope\"").is_err());
    }
}
