//! What a valid student name and age are.
//!
//! The rules are the API's contract. The web UI checks the same rules before
//! it calls the API, so a user sees the message beside the field; both use
//! this crate so the two can never disagree.
//!
//! Input is parsed once, at the edge, into [`StudentName`] and [`Age`]: code
//! that holds one knows it is valid. A refusal is a [`NameError`] or an
//! [`AgeError`], so a caller knows which field was wrong without reading the
//! message; their `Display` is the message a user sees.
//!
//! [`order`] is the order names are listed in, everywhere.

pub mod order;

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// The longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The oldest age accepted.
pub const MAX_AGE: u32 = 150;

/// A valid student name: non-empty, at most [`MAX_NAME_CHARS`] characters,
/// no `/`, no control characters, no invisible or bidirectional-control
/// characters (zero-width space, right-to-left override, ...), no leading or
/// trailing spaces. Normalised to Unicode NFC, so "zoé" typed with a
/// combining accent and "zoé" typed precomposed are one student.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StudentName(String);

/// Why a student name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the student name is empty")]
    Empty,
    #[error("the student name is {chars} characters long; the limit is {MAX_NAME_CHARS}")]
    TooLong { chars: usize },
    #[error("the student name must not contain '/'")]
    Slash,
    #[error(
        "the student name must not contain control characters (found U+{:04X})",
        u32::from(*.0)
    )]
    Control(char),
    #[error("the student name must not start or end with spaces")]
    Padded,
    #[error(
        "the student name must not contain invisible or text-direction characters \
         (found U+{:04X})",
        u32::from(*.0)
    )]
    Invisible(char),
}

/// Characters that change how a name looks or reads without being seen:
/// zero-width and formatting characters, bidirectional controls, and
/// default-ignorables. (Control characters are refused on their own.)
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                  // soft hyphen
            | '\u{034F}'            // combining grapheme joiner
            | '\u{061C}'            // Arabic letter mark
            | '\u{115F}'..='\u{1160}' // Hangul fillers
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}' // Mongolian selectors and vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides (RLO)
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates
            | '\u{3164}'            // Hangul filler
            | '\u{FE00}'..='\u{FE0F}' // variation selectors
            | '\u{FEFF}'            // zero-width no-break space (BOM)
            | '\u{FFA0}'            // halfwidth Hangul filler
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}' // tags, variation selectors supplement
    )
}

impl StudentName {
    /// Checks a name and normalises it to NFC.
    pub fn parse(name: &str) -> Result<StudentName, NameError> {
        check(name)?;
        Ok(StudentName(normalized(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The rules, on the name as given.
fn check(name: &str) -> Result<(), NameError> {
    if name.trim().is_empty() {
        return Err(NameError::Empty);
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong { chars });
    }
    if name.contains('/') {
        return Err(NameError::Slash);
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(NameError::Control(c));
    }
    if let Some(c) = name.chars().find(|c| is_invisible(*c)) {
        return Err(NameError::Invisible(c));
    }
    if name != name.trim() {
        return Err(NameError::Padded);
    }
    Ok(())
}

/// `name` in NFC (a quick check first: most names already are).
fn normalized(name: &str) -> String {
    if unicode_normalization::is_nfc_quick(name.chars()) == unicode_normalization::IsNormalized::Yes
    {
        name.to_owned()
    } else {
        name.nfc().collect()
    }
}

impl TryFrom<String> for StudentName {
    type Error = NameError;

    fn try_from(name: String) -> Result<StudentName, NameError> {
        check(&name)?;
        // Keep the caller's allocation when it is already NFC.
        if unicode_normalization::is_nfc_quick(name.chars())
            == unicode_normalization::IsNormalized::Yes
        {
            Ok(StudentName(name))
        } else {
            Ok(StudentName(name.nfc().collect()))
        }
    }
}

impl TryFrom<&str> for StudentName {
    type Error = NameError;

    fn try_from(name: &str) -> Result<StudentName, NameError> {
        StudentName::parse(name)
    }
}

impl AsRef<str> for StudentName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StudentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid age: a whole number of years from 0 to [`MAX_AGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Age(u32);

/// Why an age was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgeError {
    /// A form field left blank.
    #[error("the age is empty")]
    Empty,
    /// A whole number, but not a possible age.
    #[error("the age must be a whole number from 0 to {MAX_AGE}, not {0}")]
    OutOfRange(i64),
    /// Not a whole number at all; `given` is the input as it was written
    /// (quoted when it was text).
    #[error("the age must be a whole number from 0 to {MAX_AGE}, not {given}")]
    NotWhole { given: String },
}

impl Age {
    /// Checks a whole number of years.
    pub fn new(years: i64) -> Result<Age, AgeError> {
        match u32::try_from(years) {
            Ok(years) if years <= MAX_AGE => Ok(Age(years)),
            _ => Err(AgeError::OutOfRange(years)),
        }
    }

    /// Checks an age typed into a form field; spaces around it are ignored.
    pub fn parse(text: &str) -> Result<Age, AgeError> {
        match text.trim() {
            "" => Err(AgeError::Empty),
            text => match text.parse::<i64>() {
                Ok(years) => Age::new(years),
                Err(_) => Err(AgeError::NotWhole {
                    given: format!("{text:?}"),
                }),
            },
        }
    }

    /// Checks an age given as any JSON value: only a whole number will do.
    pub fn from_json(value: &serde_json::Value) -> Result<Age, AgeError> {
        match value.as_i64() {
            Some(years) => Age::new(years),
            None => Err(AgeError::NotWhole {
                given: value.to_string(),
            }),
        }
    }

    pub fn years(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Age {
    type Error = AgeError;

    fn try_from(years: i64) -> Result<Age, AgeError> {
        Age::new(years)
    }
}

impl From<Age> for u32 {
    fn from(age: Age) -> u32 {
        age.0
    }
}

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_unicode_names() {
        for ok in ["alice", "zoé", "李", "Mary Ann", "o'brien", &"x".repeat(64)] {
            assert_eq!(StudentName::parse(ok).unwrap().as_str(), ok);
            assert_eq!(StudentName::try_from(ok.to_owned()).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_bad_names_saying_why() {
        let cases = [
            ("", NameError::Empty, "empty"),
            ("   ", NameError::Empty, "empty"),
            ("a/b", NameError::Slash, "'/'"),
            ("a\nb", NameError::Control('\n'), "control"),
            ("tab\t", NameError::Control('\t'), "control"),
            (" alice", NameError::Padded, "spaces"),
        ];
        for (bad, kind, why) in cases {
            let error = StudentName::parse(bad).unwrap_err();
            assert_eq!(error, kind, "{bad:?}");
            assert!(error.to_string().contains(why), "{bad:?}: {error}");
        }
        let long = StudentName::parse(&"é".repeat(65)).unwrap_err();
        assert_eq!(long, NameError::TooLong { chars: 65 });
        assert!(long.to_string().contains("65 characters"));
    }

    #[test]
    fn messages_are_word_for_word_the_contract() {
        // The API answers these texts; clients and tests may match them.
        let shown = |e: &dyn std::error::Error| e.to_string();
        assert_eq!(
            shown(&NameError::TooLong { chars: 70 }),
            "the student name is 70 characters long; the limit is 64"
        );
        assert_eq!(
            shown(&NameError::Control('\u{7}')),
            "the student name must not contain control characters (found U+0007)"
        );
        assert_eq!(
            shown(&Age::parse("1.5").unwrap_err()),
            "the age must be a whole number from 0 to 150, not \"1.5\""
        );
        assert_eq!(
            shown(&Age::from_json(&serde_json::json!("12")).unwrap_err()),
            "the age must be a whole number from 0 to 150, not \"12\""
        );
        assert_eq!(
            shown(&Age::new(-1).unwrap_err()),
            "the age must be a whole number from 0 to 150, not -1"
        );
    }

    #[test]
    fn ages_must_be_in_range() {
        assert_eq!(Age::new(0).map(Age::years), Ok(0));
        assert_eq!(Age::new(150).map(Age::years), Ok(150));
        assert!(Age::new(151).unwrap_err().to_string().contains("0 to 150"));
        assert!(Age::new(-1).unwrap_err().to_string().contains("not -1"));
        assert_eq!(
            Age::from_json(&serde_json::json!(12)).map(u32::from),
            Ok(12)
        );
        assert_eq!(Age::parse(" 12 ").map(u32::from), Ok(12));
        assert_eq!(Age::parse(""), Err(AgeError::Empty));
        assert!(Age::parse("").unwrap_err().to_string().contains("empty"));
        assert!(
            Age::parse("1.5")
                .unwrap_err()
                .to_string()
                .contains("whole number")
        );
        for bad in [
            serde_json::json!(1.5),
            serde_json::json!("12"),
            serde_json::json!(null),
        ] {
            let error = Age::from_json(&bad).unwrap_err();
            assert!(matches!(error, AgeError::NotWhole { .. }), "{bad}");
            assert!(error.to_string().contains("whole number"), "{bad}");
        }
    }

    #[test]
    fn names_are_normalised_to_nfc_and_unicode_names_keep_working() {
        let decomposed = "zoe\u{301}";
        assert_eq!(StudentName::parse(decomposed).unwrap().as_str(), "zo\u{e9}");
        assert_eq!(
            StudentName::try_from(decomposed.to_owned())
                .unwrap()
                .as_str(),
            "zo\u{e9}"
        );
        for ok in ["李", "Ελένη", "محمد", "Zoë-Ann", "O'Brien"] {
            assert_eq!(StudentName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn invisible_and_bidi_control_characters_are_refused() {
        for (bad, c) in [
            ("a\u{200B}b", '\u{200B}'),
            ("evil\u{202E}gnp", '\u{202E}'),
            ("\u{FEFF}bom", '\u{FEFF}'),
            ("x\u{2066}y", '\u{2066}'),
            ("a\u{00AD}b", '\u{00AD}'),
        ] {
            let error = StudentName::parse(bad).unwrap_err();
            assert_eq!(error, NameError::Invisible(c), "{bad:?}");
            assert!(error.to_string().contains("invisible"), "{error}");
        }
    }
}
