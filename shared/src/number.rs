//! Canonical customer numbers.
//!
//! Every number that enters the product (API paths and bodies, webhook `from`
//! and `wa_id`, Graph `to`) goes through [`Number::parse`], so the same
//! subscriber always has the same key in the store, whatever form it came in.
//! Ids that WhatsApp itself shows may instead go through
//! [`Number::from_whatsapp_id`], which also keeps those the number metadata
//! does not know yet (see the last section).
//!
//! Accepted input: `+` and digits, optionally with spaces, dashes, dots and
//! parentheses, a leading `00` instead of `+`, or bare digits as WhatsApp
//! sends them in `wa_id` / `from`. Country metadata comes from the
//! `phonenumber` crate (libphonenumber's data).
//!
//! # Forms of one subscriber (B63)
//!
//! A WhatsApp id is the number as its owner registered it, written the way
//! WhatsApp dials it, and it is not rewritten when a country renumbers
//! (Meta's webhook reference: "a WhatsApp user's ID and phone number may not
//! always match"). A CRM stores whatever form its users typed. The forms
//! below are folded into one canonical number. A form is folded only when
//! the rule is unambiguous: the form folded away can never be the number of
//! a different subscriber.
//!
//! - Brazil: mobiles got a ninth digit (`9`) in front of the 8-digit
//!   subscriber number; older WhatsApp ids still carry the 12-digit form. Both
//!   map to the 13-digit form `+55 AA 9XXXX XXXX`.
//! - Mexico: WhatsApp ids of mobiles carry the old `1` after the country code
//!   (`521` + 10 digits); E.164 has been `52` + 10 digits since 2019. Both map
//!   to `+52` + 10 digits.
//! - Argentina: a mobile's WhatsApp id is `54 9` + area code + number, while
//!   CRMs store the number as it is dialled at home: `+54` + area code +
//!   number, often with the trunk `0` before the area code or the mobile
//!   prefix `15` after it (`+54 11 15 2345 6789`, `+54 011 15 2345 6789`,
//!   `+54 11 2345 6789`, `0054 9 11 2345-6789`). Neither `9` nor `15` is part
//!   of the number: both only say "a mobile is called" (the caller pays). The
//!   national significant number is always 10 digits (an area code of 2, 3
//!   or 4 digits and a subscriber number of 8, 7 or 6), and fixed lines and
//!   mobiles are numbered from that one 10-digit space, in blocks that each
//!   go to one provider for one service, so the same 10 digits are never a
//!   landline of one person and a mobile of another. Every form
//!   therefore maps to `+54 9` + the 10 digits, the form WhatsApp uses and
//!   the E.164 form libphonenumber gives a mobile. A landline written as
//!   `+54` + 10 digits gets the same `9`: the canonical form is a key, not a
//!   number to dial, and nobody else can hold it. The `15` (which comes after
//!   an area code of varying length) is removed by the metadata itself:
//!   libphonenumber's AR `nationalPrefixForParsing` lists every area code
//!   followed by `15` and rewrites the match with `9$1`, and the
//!   `phonenumber` crate applies it to international input as well; this
//!   module only adds the `9` to what the metadata leaves as a 10-digit
//!   geographic number (area codes start with `11`, `2` or `3`), so toll-free
//!   `800`, shared-cost `810`, premium `60x` and satellite `67x` numbers keep
//!   their form. Sources: Secretaría de Comunicaciones, Resolución 46/97
//!   (Plan Fundamental de Numeración Nacional: 10-digit numbers for fixed and
//!   mobile lines) and Resolución 25/2011 (areas renumbered because mobile
//!   demand exhausted their shared numbering); WhatsApp FAQ on international
//!   numbers, <https://faq.whatsapp.com/en/general/21016748> (add `9`, drop
//!   `15`); libphonenumber issue #684 (mobiles written without `15` read as
//!   fixed lines), <https://github.com/google/libphonenumber/issues/684>.
//! - Viet Nam: between 15 Sep 2018 and 30 Jun 2019 the 11-digit mobiles
//!   (`01xx` + 7 digits at home, `+84 1xx` + 7 digits abroad) got 10-digit
//!   numbers: the 3-digit network code was replaced (`120` → `70`, …, `199` →
//!   `59`; the table is `VIETNAM_2018_NETWORK_CODES` in this file) and the
//!   last seven digits kept. Messaging apps were not migrated for their users, so old ids
//!   remain. The current plan has no 10-digit national number starting with
//!   those codes (10-digit numbers starting with `1` are only `1800` / `1900`
//!   service numbers; some old codes are reused for 9-digit numbers, which
//!   the rule does not touch), so an old form is never another subscriber.
//!   Sources: Ministry of Information and Communications, Decision
//!   798/QĐ-BTTTT of 25 May 2018 (conversion table);
//!   <https://sggpnews.org.vn/science_technology/mobile-phone-numbers-conversion-to-affect-60-million-subscribers-nationwide-76279.html>;
//!   on apps: <https://baonghean.vn/en/chuyen-sim-dien-thoai-ve-10-so-khach-hang-phai-ra-ngan-hang-cap-nhat-thue-bao-10180530.html>.
//! - Benin: on 30 Nov 2024 every number went from 8 to 10 digits by
//!   prefixing `01`, one prefix for all operators and services. An 8-digit
//!   number is folded to `01` + it when the metadata says the 8 digits are
//!   not a valid number today and `01` + them is one: the 8-digit `81…`
//!   (shared cost) and `857[58]…` (VoIP) ranges still exist and keep their
//!   form. Sources: ARCEP Bénin, Décision n°2020-349/ARCEP (plan de
//!   numérotation), <https://arcep.bj/wp-content/uploads/2020/12/D%C3%A9cision-n%C2%B02020-349-ARCEP-portant-%C3%A9tablissement-du-Plan-de-Num%C3%A9rotation-en-RB.pdf>;
//!   <https://fr.allafrica.com/stories/202411300249.html> (30 Nov 2024).
//! - Gabon: on 15 Nov 2019 the `0` that numbers carried after `+241`
//!   (`+241 06 11 11 11`, mobiles also written without it, `+241 6 11 11 11`)
//!   became an operator digit: `6` for Gabon Télécom (Libertis, Moov)
//!   mobiles (`02`, `05`, `06` → `62`, `65`, `66`), `7` for Airtel (`04`,
//!   `07` → `74`, `77`), `1` for fixed lines (`01` → `11`). The old forms
//!   kept working until 6 Apr 2024, so old ids remain. No current number
//!   starts with `0` or has 7 digits, so an old form is never another
//!   subscriber; `03`, which the conversion does not name, is left alone.
//!   Sources: ARCEP Gabon, announcement of 3 Jun 2019,
//!   <http://news.alibreville.com/h/89332.html>; ANINF communiqué of
//!   29 Feb 2024, <http://news.alibreville.com/h/114469.html>; comments in
//!   libphonenumber's GA metadata.
//!
//! Looked at and not folded:
//! - Côte d'Ivoire (8 to 10 digits, 31 Jan 2021; ARTCI,
//!   <https://artci.ci/en/faq/>): the prefix added depends on the operator
//!   that held the number (`07` / `05` / `01` for Orange / MTN / Moov
//!   mobiles, `27` / `25` / `21` for fixed lines), which the eight digits
//!   tell only through block allocations that no metadata carries (ARTCI
//!   handed out mobile blocks in ranges meant for other services during the
//!   saturation since 2015), and a wrong guess would merge two subscribers.
//!   Old 8-digit ids, which WhatsApp keeps until their owner changes number
//!   in the app, stay their own subject through [`Number::from_whatsapp_id`].
//! - Cameroon (8 to 9 digits, 21 Nov 2014): `6` went before mobiles and `2`
//!   before Camtel numbers, but sources disagree on Camtel's conversion (`2`
//!   before the old number, or `243` replacing `22` / `33`) and the 8-digit
//!   `88…` toll-free range still exists, so there is no unambiguous rule
//!   (<http://www.camerpost.com/cameroun-la-numerotation-telephonique-est-passee-de-huit-a-neuf-chiffres-22112014/>).
//! - Colombia (fixed lines to 10 digits, `60` + area code, 1 Sep 2021): the
//!   old 8-digit forms (area digit + 7 digits) overlap the 8-digit fixed
//!   range `46…` that the metadata still lists (an old Medellín number, area
//!   `4`, starting with `6` has the same digits), and mobiles, which
//!   customers write from, did not change.
//!
//! # Numbers the metadata does not know yet
//!
//! New ranges reach WhatsApp before they reach libphonenumber. A `from`,
//! `wa_id` or `recipient_id` that [`Number::parse`] refuses (unknown country
//! code, a length the country's plan does not have) is still a subscriber
//! who can write to the business, so [`Number::from_whatsapp_id`] keeps it as
//! `+` and its digits, after the same folding, when it has the shape of an
//! international number. [`Number::is_known_to_metadata`] tells such a
//! number from a canonical one.

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

/// A customer WhatsApp number in canonical form (`+` and digits).
///
/// Holds only canonical values: [`Number::parse`] gives the E.164 form the
/// metadata agrees with (with the folds of the module docs), and
/// [`Number::from_whatsapp_id`] adds the ids WhatsApp shows for ranges the
/// metadata does not know yet.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Number(String);

/// E.164 allows at most 15 digits; anything past that is refused before the
/// metadata lookup.
const MAX_DIGITS: usize = 15;

/// The fewest digits a WhatsApp id kept without the metadata may have: the
/// shortest international numbers in use have 7 (Niue, `+683` and 4 digits).
const MIN_WHATSAPP_ID_DIGITS: usize = 7;

impl Number {
    /// Parses any accepted form into the canonical number.
    ///
    /// The canonical form parses to itself: a form whose canonical number
    /// would read as another one again (the metadata stripping a second
    /// trunk `0` from a national number of zeros) is refused, so that no
    /// stored number ever changes under a later parse.
    pub fn parse(input: &str) -> Result<Number, NumberError> {
        let number = Number::parse_once(input)?;
        match Number::parse_once(&number.0) {
            Ok(again) if again == number => Ok(number),
            Ok(_) => Err(NumberError::TooShort),
            Err(error) => Err(error),
        }
    }

    fn parse_once(input: &str) -> Result<Number, NumberError> {
        let digits = international_digits(input)?;
        canonicalise(&fold_whatsapp_quirks(&digits))
    }

    /// A number exactly as stored (`+` and 7 to 15 digits, not starting
    /// with 0), without folding: a key written under a form an earlier
    /// release kept must read back, and be removable, under that same key.
    pub fn stored(raw: &str) -> Option<Number> {
        let digits = raw.strip_prefix('+')?;
        ((7..=MAX_DIGITS).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0'))
        .then(|| Number(raw.to_owned()))
    }

    /// The number of an id that WhatsApp itself shows (webhook `from`,
    /// `wa_id`, `recipient_id`): the canonical number when
    /// [`Number::parse`] accepts it, otherwise, when the id is 7 to 15
    /// ASCII digits (an optional leading `+` allowed) not starting with `0`,
    /// `+` and its digits after the same folding. WhatsApp only shows ids of
    /// registered subscribers, so a refusal by the metadata means the
    /// metadata is behind, not that the number is wrong.
    pub fn from_whatsapp_id(raw: &str) -> Result<Number, NumberError> {
        let refusal = match Number::parse(raw) {
            Ok(number) => return Ok(number),
            Err(refusal) => refusal,
        };
        let digits = raw.strip_prefix('+').unwrap_or(raw);
        let has_id_shape = (MIN_WHATSAPP_ID_DIGITS..=MAX_DIGITS).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !has_id_shape {
            return Err(refusal);
        }
        Ok(kept_without_metadata(digits))
    }

    /// Whether the metadata knows this number, i.e. it is what
    /// [`Number::parse`] gives and not only what
    /// [`Number::from_whatsapp_id`] kept.
    pub fn is_known_to_metadata(&self) -> bool {
        Number::parse(&self.0).is_ok()
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

/// The canonical number of folded international digits, as the metadata
/// sees them.
fn canonicalise(digits: &str) -> Result<Number, NumberError> {
    let read = canonicalise_once(digits);
    // Argentina: the metadata strips a trunk `0`, and a `15` after the
    // longest area code it can see, so `54 0 385 415 0000` reads as area
    // `3854`, mobile prefix `15` and a subscriber too short to be one. The
    // only reading left is the trunk `0` alone before ten digits.
    if read == Err(NumberError::TooShort)
        && let Some(national) = argentina_mobile_as_dialled_at_home(digits).strip_prefix("540")
        && national.len() == 10
    {
        return canonicalise_once(&format!("54{national}"));
    }
    read
}

fn canonicalise_once(digits: &str) -> Result<Number, NumberError> {
    // Argentina's `9`, trunk `0` and `15` written together run past 15
    // digits before the metadata strips the national prefixes.
    let digits = argentina_mobile_as_dialled_at_home(digits);
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
    // metadata knows about (Argentina's `0` and `15`) are applied the same
    // way for every input.
    let canonical = parsed.format().mode(phonenumber::Mode::E164).to_string();
    // A trunk prefix the metadata stripped (`+84 0…`) is kept when what is
    // left is no valid number either: stripping again on the next read
    // would give yet another number (`+84 00…` to `+84 0…` to `+84 …`), so
    // a stored number would not read back as itself.
    if canonical.len() < e164.len()
        && !digits.starts_with("54")
        && !is_valid_in_metadata(&canonical[1..])
    {
        return Ok(Number(e164));
    }
    Ok(Number(format!(
        "+{}",
        fold_argentina_mobile(&canonical[1..])
    )))
}

/// The number of WhatsApp id digits that the metadata refuses: `+` and the
/// digits, folded like any other input. A fold adds at most two digits, and
/// only to inputs of at most 12, so the result stays within E.164's 15.
fn kept_without_metadata(digits: &str) -> Number {
    let folded = fold_argentina_mobile(&fold_whatsapp_quirks(digits));
    Number(format!("+{folded}"))
}

/// Folds the forms of one subscriber that differ in their digits (see the
/// module docs), before the metadata sees them. Argentina's forms are folded
/// around the metadata instead: see [`argentina_mobile_as_dialled_at_home`]
/// and [`fold_argentina_mobile`].
fn fold_whatsapp_quirks(digits: &str) -> String {
    // Brazil: a trunk `0` before the area code (`+55 (011) …`) is not part
    // of the number; without it the folds below see the real length.
    if digits.len() == 13 && digits.starts_with("550") {
        return fold_whatsapp_quirks(&format!("55{}", &digits[3..]));
    }
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
    if let Some(folded) = fold_vietnam_2018(digits)
        .or_else(|| fold_benin_2024(digits))
        .or_else(|| fold_gabon_2019(digits))
    {
        return folded;
    }
    digits.to_owned()
}

/// Viet Nam's 2018 mobile renumbering: old 3-digit network code (after the
/// country code, without the trunk `0`) and the code that replaced it. The
/// seven digits after the code did not change.
const VIETNAM_2018_NETWORK_CODES: [(&str, &str); 21] = [
    // MobiFone
    ("120", "70"),
    ("121", "79"),
    ("122", "77"),
    ("126", "76"),
    ("128", "78"),
    // VinaPhone
    ("123", "83"),
    ("124", "84"),
    ("125", "85"),
    ("127", "81"),
    ("129", "82"),
    // Viettel
    ("162", "32"),
    ("163", "33"),
    ("164", "34"),
    ("165", "35"),
    ("166", "36"),
    ("167", "37"),
    ("168", "38"),
    ("169", "39"),
    // Vietnamobile
    ("186", "56"),
    ("188", "58"),
    // Gmobile
    ("199", "59"),
];

/// `84` + old 3-digit network code + 7 digits, to the 10-digit numbering.
fn fold_vietnam_2018(digits: &str) -> Option<String> {
    let national = digits.strip_prefix("84").filter(|n| n.len() == 10)?;
    let (old_code, subscriber) = national.split_at(3);
    let (_, new_code) = VIETNAM_2018_NETWORK_CODES
        .iter()
        .find(|(old, _)| *old == old_code)?;
    Some(format!("84{new_code}{subscriber}"))
}

/// `229` + 8 digits, to `229 01` + the same 8 digits, unless the 8 digits
/// are still a number of their own.
fn fold_benin_2024(digits: &str) -> Option<String> {
    let old = digits.strip_prefix("229").filter(|n| n.len() == 8)?;
    let renumbered = format!("22901{old}");
    (!is_valid_in_metadata(digits) && is_valid_in_metadata(&renumbered)).then_some(renumbered)
}

/// `241` + `0` + 7 digits, or `241` + 7 digits of a mobile, to the 2019
/// numbering where the `0` became the operator digit.
fn fold_gabon_2019(digits: &str) -> Option<String> {
    let national = digits.strip_prefix("241")?;
    let (old, with_zero) = match national.len() {
        8 => (national.strip_prefix('0')?, true),
        7 => (national, false),
        _ => return None,
    };
    let operator_digit = match old.as_bytes()[0] {
        b'2' | b'5' | b'6' => '6',
        b'4' | b'7' => '7',
        // Fixed lines were only ever written with their `0` from abroad.
        b'1' if with_zero => '1',
        _ => return None,
    };
    Some(format!("241{operator_digit}{old}"))
}

/// Argentina: `54 9` + area code + `15` + number (the `9` and the `15`
/// written together) or `54 9 0` + 10 digits. The `9` is set aside so that
/// the metadata's own national-prefix rule removes the `0` and the `15`
/// after an area code of any length, and [`fold_argentina_mobile`] puts it
/// back. Every other input is returned as it is.
fn argentina_mobile_as_dialled_at_home(digits: &str) -> String {
    // A mobile's national number is 9 + 10 digits; more than 10 after the 9
    // means a trunk `0` or a `15` is still in it.
    match digits.strip_prefix("549") {
        Some(rest) if (11..=13).contains(&rest.len()) => format!("54{rest}"),
        _ => digits.to_owned(),
    }
}

/// Argentina: `54` + a 10-digit geographic number (area codes start with
/// `11`, `2` or `3`) to `54 9` + the same 10 digits, the form of a mobile
/// (see the module docs for why a landline may share it). Non-geographic
/// numbers (`800`, `810`, `60x`, `67x`) keep their form.
fn fold_argentina_mobile(digits: &str) -> String {
    match digits.strip_prefix("54") {
        Some(national)
            if national.len() == 10
                && (national.starts_with("11") || national.starts_with(['2', '3'])) =>
        {
            format!("549{national}")
        }
        _ => digits.to_owned(),
    }
}

/// The start of stored numbers that the start of a number written in one
/// of the forms folded above stands for (B84: a prefix rule is compared
/// with stored numbers), where the start alone decides it:
/// - Argentina: `54` + a geographic area code (`11`, `2…`, `3…`), with or
///   without its trunk `0`, gets the `9` (`54 11` → `54 9 11`);
/// - Brazil: area code + a first subscriber digit only old 8-digit mobiles
///   have (`6`–`8`) gets the ninth digit (`55 11 8` → `55 11 9 8`);
/// - Mexico: `52 1` loses the `1`;
/// - Benin: an old 8-digit start of the ranges renumbered with `01`
///   (mobiles `4…`, `5…`, `6…`, `9…`, `2[5-9]…`) gets it (`229 97` →
///   `229 01 97`);
/// - Gabon: `241 0` + an operator digit becomes that digit (`241 07` →
///   `241 77`).
///
/// Every other start is returned as it is: one that old and new forms
/// share (`55 11 9`), that the digits do not decide yet (`54 0`,
/// `229 2`), that only some lengths fold (Viet Nam's old codes are also
/// the start of shorter numbers in use), or that a fold removes from the
/// middle (Argentina's `15` after an area code of any length).
pub fn prefix_as_stored(digits: &str) -> String {
    if let Some(national) = digits.strip_prefix("54") {
        let geographic = |n: &str| n.starts_with(['1', '2', '3']);
        if geographic(national) {
            return format!("549{national}");
        }
        if let Some(after_trunk) = national.strip_prefix('0').filter(|n| geographic(n)) {
            return format!("549{after_trunk}");
        }
    }
    if let Some(national) = digits.strip_prefix("55")
        && national.len() >= 3
        && !national.starts_with('0')
        && matches!(national.as_bytes()[2], b'6'..=b'8')
    {
        return format!("55{}9{}", &national[..2], &national[2..]);
    }
    if let Some(rest) = digits.strip_prefix("521") {
        return format!("52{rest}");
    }
    if let Some(old) = digits.strip_prefix("229") {
        let renumbered = old.starts_with(['4', '5', '6', '9'])
            || (old.starts_with('2')
                && old
                    .as_bytes()
                    .get(1)
                    .is_some_and(|d| (b'5'..=b'9').contains(d)));
        if renumbered {
            return format!("22901{old}");
        }
    }
    if let Some(old) = digits.strip_prefix("2410") {
        let operator_digit = match old.as_bytes().first() {
            Some(b'2' | b'5' | b'6') => Some('6'),
            Some(b'4' | b'7') => Some('7'),
            Some(b'1') => Some('1'),
            _ => None,
        };
        if let Some(digit) = operator_digit {
            return format!("241{digit}{old}");
        }
    }
    digits.to_owned()
}

/// Whether the metadata lists these international digits as a valid number.
fn is_valid_in_metadata(digits: &str) -> bool {
    phonenumber::parse(None, format!("+{digits}"))
        .is_ok_and(|number| phonenumber::is_valid(&number))
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
        // A stored `+<digits>` reads back as it was written: it may be a
        // number only WhatsApp's lenient form accepted (B63), or one an
        // earlier release kept in another form, whose key must not move.
        if let Some(number) = Number::stored(&raw) {
            return Ok(number);
        }
        match Number::parse(&raw) {
            Ok(number) => Ok(number),
            Err(error) if raw.starts_with('+') => {
                Number::from_whatsapp_id(&raw).map_err(|_| serde::de::Error::custom(error))
            }
            Err(error) => Err(serde::de::Error::custom(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(input: &str) -> String {
        Number::parse(input).unwrap().to_string()
    }

    /// B63 finding of the property run, pinned: a trunk `0` before an area
    /// code whose digits and the subscriber's also spell a longer area code
    /// and `15` (`0 385 415…`, `0 3854 15…`) is read the only way that
    /// leaves a whole number.
    #[test]
    fn b63_argentina_trunk_zero_before_an_area_code_that_reads_as_a_longer_one() {
        for form in [
            "5403854150000",
            "54903854150000",
            "+54 0385 415 0000",
            "+54 9 0385 415-0000",
        ] {
            assert_eq!(canonical(form), "+5493854150000", "{form}");
            assert_eq!(
                Number::from_whatsapp_id(form).unwrap().as_str(),
                "+5493854150000",
                "{form}"
            );
        }
    }

    /// B63 finding of the property run, pinned: an Argentine id of zeros
    /// whose canonical form would lose another trunk `0` when parsed again
    /// is not a canonical number; WhatsApp's id is kept as it came.
    #[test]
    fn b63_a_canonical_number_always_parses_to_itself() {
        assert!(Number::parse("54000000000001").is_err());
        let kept = Number::from_whatsapp_id("54000000000001").unwrap();
        assert_eq!(kept.as_str(), "+54000000000001");
        assert_eq!(Number::from_whatsapp_id(kept.as_str()).unwrap(), kept);
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

    /// Parses every form and checks that all give `expected`, that the
    /// result parses to itself, and that its digits, read back as a WhatsApp
    /// id, give it again.
    fn assert_one_subscriber(expected: &str, forms: &[&str]) {
        for form in forms {
            let number = Number::parse(form).unwrap_or_else(|e| panic!("{form:?}: {e}"));
            assert_eq!(number.as_str(), expected, "form {form:?}");
            assert_eq!(
                Number::parse(number.as_str()).as_ref(),
                Ok(&number),
                "canonical form of {form:?} is not canonical"
            );
            assert_eq!(
                Number::from_whatsapp_id(number.digits()).as_ref(),
                Ok(&number),
                "wa_id form of {form:?}"
            );
            assert!(number.is_known_to_metadata(), "form {form:?}");
        }
    }

    /// B84: the start of a folded form stands for the start of the stored
    /// number, for every length the start alone decides.
    #[test]
    fn b84_a_start_in_a_folded_form_is_the_start_of_the_stored_number() {
        for (form, stored) in [
            ("541123456789", "+5491123456789"),
            ("5403514123456", "+5493514123456"),
            ("551181234567", "+5511981234567"),
            ("5215512345678", "+525512345678"),
            ("22997123456", "+2290197123456"),
            ("24107123456", "+24177123456"),
        ] {
            assert_eq!(Number::parse(&format!("+{form}")).unwrap().as_str(), stored);
            // Each start that is folded (those the digits so far do not
            // decide are kept) is a start of the stored number.
            let mut folded = 0;
            for length in 4..form.len() {
                let start = prefix_as_stored(&form[..length]);
                if start == form[..length] {
                    continue;
                }
                folded += 1;
                assert!(
                    stored[1..].starts_with(&start),
                    "{form}: {} stands for {start}, not a start of {stored}",
                    &form[..length]
                );
            }
            assert!(
                folded >= form.len() - 6,
                "{form}: folded at {folded} lengths"
            );
        }
        // Starts that are already stored forms, or that old and new forms
        // share, are kept.
        for kept in [
            "549", "5491", "55119", "552123", "52", "8432", "8416", "2290", "2298", "24166", "1650",
        ] {
            assert_eq!(prefix_as_stored(kept), kept);
        }
    }

    #[test]
    fn every_form_of_a_quirk_country_subscriber_is_one_number() {
        let subscribers: &[(&str, &[&str])] = &[
            (
                "+5511981234567",
                &[
                    "+55 11 98123 4567",
                    "551181234567",
                    "5511981234567",
                    "0055 (11) 98123-4567",
                ],
            ),
            (
                "+525512345678",
                &[
                    "5215512345678",
                    "+52 1 55 1234 5678",
                    "+52 55 1234 5678",
                    "0052 55 1234 5678",
                ],
            ),
            // Argentina, Buenos Aires: area code of 2 digits.
            (
                "+5491123456789",
                &[
                    "5491123456789",
                    "+54 9 11 2345 6789",
                    "+54 11 15 2345 6789",
                    "+54 11 2345 6789",
                    "0054 9 11 2345-6789",
                    "+54 011 15 2345-6789",
                    "+54 (011) 2345-6789",
                    "+54 9 11 15 2345 6789",
                    "+54 9 011 2345 6789",
                ],
            ),
            // Córdoba: area code of 3 digits.
            (
                "+5493514123456",
                &[
                    "5493514123456",
                    "+54 9 351 412 3456",
                    "+54 351 15 412 3456",
                    "+54 351 412-3456",
                    "+54 0351 15 412-3456",
                ],
            ),
            // Río Gallegos: area code of 4 digits.
            (
                "+5492966451234",
                &[
                    "5492966451234",
                    "+54 9 2966 45-1234",
                    "+54 2966 15 45-1234",
                    "+54 2966 45-1234",
                    "+54 02966 15 45-1234",
                ],
            ),
            // Viet Nam: Viettel 0162 became 032, MobiFone 0120 became 070.
            (
                "+84322345678",
                &["841622345678", "+84 162 234 5678", "+84 32 234 5678"],
            ),
            ("+84703456789", &["841203456789", "+84 70 345 6789"]),
            // Benin: a mobile and a fixed line.
            (
                "+2290197123456",
                &["22997123456", "+229 97 12 34 56", "+229 01 97 12 34 56"],
            ),
            ("+2290121301234", &["22921301234", "+229 01 21 30 12 34"]),
            // Gabon: Gabon Télécom and Airtel mobiles, a fixed line.
            (
                "+24166111111",
                &[
                    "24106111111",
                    "2416111111",
                    "+241 66 11 11 11",
                    "+241 066 11 11 11",
                ],
            ),
            (
                "+24177280150",
                &["24107280150", "2417280150", "+241 77 28 01 50"],
            ),
            ("+24111441234", &["+241 01 44 12 34", "+241 11 44 12 34"]),
        ];
        for (expected, forms) in subscribers {
            assert_one_subscriber(expected, forms);
        }
    }

    #[test]
    fn argentina_non_geographic_numbers_keep_their_form() {
        assert_eq!(canonical("+54 800 123 4567"), "+548001234567");
        assert_eq!(canonical("+54 800 123 45678"), "+5480012345678");
        assert_eq!(canonical("+54 810 123 4567"), "+548101234567");
        assert_eq!(canonical("+54 600 123 4567"), "+546001234567");
    }

    #[test]
    fn argentina_subscriber_digits_that_start_with_15_are_kept() {
        // Removing `15` here would leave 6 digits after a 2-digit area code:
        // the metadata keeps them, so "15" is part of the number.
        assert_eq!(canonical("+54 11 1523 4567"), "+5491115234567");
        assert_eq!(canonical("5491115234567"), "+5491115234567");
    }

    #[test]
    fn argentina_landline_shares_the_mobile_form() {
        // The same 10 digits are one line, fixed or mobile: the key is the
        // mobile form either way.
        assert_one_subscriber(
            "+5491143211234",
            &["+54 11 4321 1234", "+54 011 4321-1234", "5491143211234"],
        );
    }

    #[test]
    fn argentina_agrees_with_the_metadata_on_mobiles() {
        // The canonical form is what libphonenumber formats as a mobile's
        // E.164 form, and it parses to a valid mobile.
        let parsed = phonenumber::parse(None, "+54 9 11 2345 6789").unwrap();
        assert_eq!(
            parsed.format().mode(phonenumber::Mode::E164).to_string(),
            canonical("+54 11 15 2345 6789")
        );
        assert!(phonenumber::is_valid(&parsed));
    }

    #[test]
    fn vietnam_every_2018_network_code_is_folded() {
        for (old, new) in VIETNAM_2018_NETWORK_CODES {
            let renumbered = canonical(&format!("84{old}2345678"));
            assert_eq!(renumbered, format!("+84{new}2345678"), "code {old}");
            assert!(is_valid_in_metadata(&renumbered[1..]), "code {new}");
        }
    }

    #[test]
    fn vietnam_current_numbers_keep_their_form() {
        // 10-digit service numbers, and a 9-digit mobile in a reused code.
        assert_eq!(canonical("+84 1800 123456"), "+841800123456");
        assert_eq!(canonical("+84 1900 123456"), "+841900123456");
        assert_eq!(canonical("+84 160 123 456"), "+84160123456");
    }

    #[test]
    fn benin_eight_digit_numbers_still_in_the_plan_keep_their_form() {
        assert_eq!(canonical("+229 81 12 34 56"), "+22981123456");
        assert_eq!(canonical("+229 85 75 12 34"), "+22985751234");
    }

    #[test]
    fn gabon_prefix_the_conversion_does_not_name_is_left_alone() {
        assert_eq!(canonical("+241 03 12 34 56"), "+24103123456");
    }

    #[test]
    fn ivory_coast_old_ids_stay_their_own_subject() {
        assert_eq!(Number::parse("22545123456"), Err(NumberError::TooShort));
        let old = Number::from_whatsapp_id("22545123456").unwrap();
        assert_eq!(old.as_str(), "+22545123456");
        assert!(!old.is_known_to_metadata());
        assert_ne!(old, Number::parse("+225 05 45 12 3456").unwrap());
    }

    #[test]
    fn whatsapp_ids_the_metadata_knows_are_parsed_strictly() {
        for id in [
            "16505551234",
            "+16505551234",
            "5215512345678",
            "551181234567",
            "5491123456789",
            "841623456789",
        ] {
            let number = Number::from_whatsapp_id(id).unwrap();
            assert_eq!(Ok(&number), Number::parse(id).as_ref(), "id {id}");
            assert!(number.is_known_to_metadata(), "id {id}");
        }
    }

    #[test]
    fn whatsapp_ids_the_metadata_refuses_are_kept_as_their_digits() {
        // A length the country's plan does not have, an unassigned country
        // code.
        for (id, kept) in [
            ("22545123456", "+22545123456"),
            ("+999123456789", "+999123456789"),
        ] {
            assert!(Number::parse(id).is_err(), "id {id}");
            let number = Number::from_whatsapp_id(id).unwrap();
            assert_eq!(number.as_str(), kept);
            assert!(!number.is_known_to_metadata(), "id {id}");
            assert_eq!(
                Number::from_whatsapp_id(number.digits()).as_ref(),
                Ok(&number)
            );
            assert_eq!(Number::from_whatsapp_id(number.as_str()), Ok(number));
        }
    }

    #[test]
    fn whatsapp_ids_kept_without_the_metadata_are_folded_too() {
        assert_eq!(
            kept_without_metadata("551181234567").as_str(),
            "+5511981234567"
        );
        assert_eq!(
            kept_without_metadata("5215512345678").as_str(),
            "+525512345678"
        );
        assert_eq!(
            kept_without_metadata("541123456789").as_str(),
            "+5491123456789"
        );
        assert_eq!(
            kept_without_metadata("841622345678").as_str(),
            "+84322345678"
        );
        assert_eq!(
            kept_without_metadata("24106111111").as_str(),
            "+24166111111"
        );
    }

    #[test]
    fn whatsapp_ids_without_the_shape_of_a_number_keep_the_strict_error() {
        for id in [
            "",
            "US.13491208655302741918",
            "+1650",
            "999123",
            "0999123456789",
            "9991234567890123",
            "999 123 456 789",
            "++999123456789",
        ] {
            let strict = Number::parse(id).unwrap_err();
            assert_eq!(Number::from_whatsapp_id(id), Err(strict), "id {id:?}");
        }
    }

    #[test]
    fn serde_round_trip_canonicalises() {
        let number: Number = serde_json::from_str("\"0016505551234\"").unwrap();
        assert_eq!(serde_json::to_string(&number).unwrap(), "\"+16505551234\"");
        assert!(serde_json::from_str::<Number>("\"nope\"").is_err());
    }
}
