//! Turning errors into text: the one place the source chain of an error is
//! walked, so SSH, Docker, registry and audit messages read alike.

use std::error::Error;

/// Every message in the chain, outermost first, joined with `: `.
pub(crate) fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// The innermost message: usually the OS error a user can act on.
pub(crate) fn root_cause(error: &(dyn Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The first line of an error with its context chain, for one-line records
/// such as the audit log.
pub(crate) fn summary(error: &anyhow::Error) -> String {
    format!("{error:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_reads_outermost_first_and_the_root_is_the_last() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let error = anyhow::Error::new(io).context("connecting to /x.sock");
        let dynamic: &(dyn Error + 'static) = error.as_ref();
        assert_eq!(chain(dynamic), "connecting to /x.sock: permission denied");
        assert_eq!(root_cause(dynamic), "permission denied");
        let multi = anyhow::anyhow!("first line\nsecond").context("outer");
        assert_eq!(summary(&multi), "outer: first line");
    }
}
