//! Variable interpolation as docker compose does it: `$VAR`, `${VAR}`,
//! `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?message}` / `${VAR?message}` (required), `${VAR:+alt}` /
//! `${VAR+alt}` (alt when set), and `$$` for a literal `$`.

/// Why a string could not be interpolated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InterpolateError {
    #[error("`{0}` is not closed: add the missing `}}`")]
    Unclosed(String),
    #[error("`${{{0}}}` is not a valid variable reference")]
    Invalid(String),
    #[error("{var} is required: {message}")]
    Required { var: String, message: String },
}

/// Replaces variable references in `input` with values from `lookup`.
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = matching_brace(body)
                .ok_or_else(|| InterpolateError::Unclosed(format!("${{{body}")))?;
            out.push_str(&expand(&body[..close], lookup)?);
            rest = &body[close + 1..];
        } else {
            let len = if after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len())
            } else {
                0
            };
            if len == 0 {
                // A lone `$` (e.g. before a space): kept, as compose does.
                out.push('$');
            } else {
                out.push_str(&lookup(&after[..len]).unwrap_or_default());
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Like [`interpolate`], and also returns the variables `input` read, in
/// order, each once.
pub fn interpolate_recording(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), InterpolateError> {
    let read = std::cell::RefCell::new(Vec::<String>::new());
    let recording = |name: &str| {
        let mut read = read.borrow_mut();
        if !read.iter().any(|n| n == name) {
            read.push(name.to_owned());
        }
        lookup(name)
    };
    let value = interpolate(input, &recording)?;
    Ok((value, read.into_inner()))
}

/// The index of the `}` closing a `${` whose body starts `body`, allowing
/// nested references in defaults (`${A:-${B}}`).
fn matching_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn expand(
    reference: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    let name_len = reference
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(reference.len());
    let (name, op) = reference.split_at(name_len);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(InterpolateError::Invalid(reference.to_owned()));
    }
    let value = lookup(name);
    let set_and_non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let required = |message: &str| InterpolateError::Required {
        var: name.to_owned(),
        message: if message.is_empty() {
            "set it in the environment".to_owned()
        } else {
            message.to_owned()
        },
    };
    Ok(match op {
        "" => value.unwrap_or_default(),
        _ if op.starts_with(":-") => {
            if set_and_non_empty {
                value.unwrap_or_default()
            } else {
                interpolate(&op[2..], lookup)?
            }
        }
        _ if op.starts_with('-') => match value {
            Some(v) => v,
            None => interpolate(&op[1..], lookup)?,
        },
        _ if op.starts_with(":?") => {
            if set_and_non_empty {
                value.unwrap_or_default()
            } else {
                return Err(required(&op[2..]));
            }
        }
        _ if op.starts_with('?') => value.ok_or_else(|| required(&op[1..]))?,
        // The alternative: what a setting switches on (the HTTPS listener
        // when TLS_DOMAINS is set).
        _ if op.starts_with(":+") => {
            if set_and_non_empty {
                interpolate(&op[2..], lookup)?
            } else {
                String::new()
            }
        }
        _ if op.starts_with('+') => match value {
            Some(_) => interpolate(&op[1..], lookup)?,
            None => String::new(),
        },
        _ => return Err(InterpolateError::Invalid(reference.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(key: &str) -> Option<String> {
        match key {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(input: &str) -> Result<String, InterpolateError> {
        interpolate(input, &env)
    }

    #[test]
    fn an_alternative_appears_only_when_the_variable_is_set() {
        assert_eq!(run("a${SET:+x-$SET}b").unwrap(), "ax-valueb");
        assert_eq!(run("a${EMPTY:+x}b").unwrap(), "ab");
        assert_eq!(run("a${EMPTY+x}b").unwrap(), "axb");
        assert_eq!(run("a${UNSET+x}b").unwrap(), "ab");
    }

    #[test]
    fn recording_names_each_variable_read_once() {
        let lookup = |name: &str| (name == "B").then(|| "2".to_owned());
        let (value, read) = interpolate_recording("${A:-${B}}:$B:${C-x}", &lookup).unwrap();
        assert_eq!(value, "2:2:x");
        assert_eq!(read, ["A", "B", "C"]);
    }

    #[test]
    fn plain_and_braced_references_are_replaced() {
        assert_eq!(run("a-$SET-${SET}.").unwrap(), "a-value-value.");
        assert_eq!(run("${UNSET}|$UNSET").unwrap(), "|");
    }

    #[test]
    fn defaults_follow_compose_rules_for_unset_and_empty() {
        assert_eq!(run("${UNSET:-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY-d}").unwrap(), "");
        assert_eq!(run("${UNSET-d}").unwrap(), "d");
        assert_eq!(run("${SET:-d}").unwrap(), "value");
        assert_eq!(run("${UNSET:-${SET}}").unwrap(), "value");
    }

    #[test]
    fn required_variables_fail_with_their_message() {
        assert_eq!(
            run("${UNSET:?give the password}").unwrap_err(),
            InterpolateError::Required {
                var: "UNSET".into(),
                message: "give the password".into()
            }
        );
        assert!(run("${EMPTY:?x}").is_err());
        assert_eq!(run("${EMPTY?x}").unwrap(), "");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar_and_bad_references_are_errors() {
        assert_eq!(run("$$SET costs $5 $").unwrap(), "$SET costs $5 $");
        assert!(matches!(run("${SET"), Err(InterpolateError::Unclosed(_))));
        assert!(matches!(run("${1A}"), Err(InterpolateError::Invalid(_))));
        assert!(matches!(run("${A B}"), Err(InterpolateError::Invalid(_))));
    }
}
