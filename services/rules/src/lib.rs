//! What a valid student name and age are.
//!
//! The rules are the API's contract. The web UI checks the same rules before
//! it calls the API, so a user sees the message beside the field; both use
//! this crate so the two can never disagree.

/// The longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The oldest age accepted.
pub const MAX_AGE: i64 = 150;

/// Checks a student name. Names are stored exactly as given.
pub fn name(name: &str) -> Result<&str, String> {
    if name.trim().is_empty() {
        return Err("the student name is empty".into());
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "the student name is {chars} characters long; the limit is {MAX_NAME_CHARS}"
        ));
    }
    if name.contains('/') {
        return Err("the student name must not contain '/'".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the student name must not contain control characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    if name != name.trim() {
        return Err("the student name must not start or end with spaces".into());
    }
    Ok(name)
}

/// Checks an age given through the API.
pub fn age(age: i64) -> Result<u32, String> {
    match u32::try_from(age) {
        Ok(years) if age <= MAX_AGE => Ok(years),
        _ => Err(format!(
            "the age must be a whole number from 0 to {MAX_AGE}, not {age}"
        )),
    }
}

/// Checks an age typed into a form field.
pub fn age_text(text: &str) -> Result<u32, String> {
    match text.trim() {
        "" => Err("the age is empty".into()),
        text => match text.parse::<i64>() {
            Ok(years) => age(years),
            Err(_) => Err(format!(
                "the age must be a whole number from 0 to {MAX_AGE}, not {text:?}"
            )),
        },
    }
}

/// Checks an age given as any JSON value: only a whole number will do.
pub fn age_value(value: &serde_json::Value) -> Result<u32, String> {
    match value.as_i64() {
        Some(years) => age(years),
        None => Err(format!(
            "the age must be a whole number from 0 to {MAX_AGE}, not {value}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_unicode_names() {
        for ok in ["alice", "zoé", "李", "Mary Ann", "o'brien", &"x".repeat(64)] {
            assert_eq!(name(ok), Ok(ok));
        }
    }

    #[test]
    fn refuses_bad_names_saying_why() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("a/b", "'/'"),
            ("a\nb", "control"),
            ("tab\t", "control"),
            (" alice", "spaces"),
        ];
        for (bad, why) in cases {
            let error = name(bad).unwrap_err();
            assert!(error.contains(why), "{bad:?}: {error}");
        }
        assert!(name(&"é".repeat(65)).unwrap_err().contains("65 characters"));
    }

    #[test]
    fn ages_must_be_in_range() {
        assert_eq!(age(0), Ok(0));
        assert_eq!(age(150), Ok(150));
        assert!(age(151).unwrap_err().contains("0 to 150"));
        assert!(age(-1).unwrap_err().contains("not -1"));
        assert_eq!(age_value(&serde_json::json!(12)), Ok(12));
        assert_eq!(age_text(" 12 "), Ok(12));
        assert!(age_text("").unwrap_err().contains("empty"));
        assert!(age_text("1.5").unwrap_err().contains("whole number"));
        for bad in [
            serde_json::json!(1.5),
            serde_json::json!("12"),
            serde_json::json!(null),
        ] {
            assert!(
                age_value(&bad).unwrap_err().contains("whole number"),
                "{bad}"
            );
        }
    }
}
