//! HTTP basic auth for every `/supmit/...` route, checked against the one
//! user the API was started with.

use std::sync::Arc;

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{Basic, BasicAuthorization};
use student_ages_process::{ApiCredentials, ExposeSecret};
use subtle::ConstantTimeEq;

/// HTTP basic auth with the configured username and password.
#[derive(SecurityScheme)]
#[oai(ty = "basic", checker = "check")]
pub(crate) struct ApiAuth(());

async fn check(req: &Request, basic: Basic) -> Option<()> {
    let credentials = req.data::<Arc<ApiCredentials>>()?;
    matches(credentials, &basic.username, &basic.password).then_some(())
}

/// The same check as [`ApiAuth`], for a route answered outside
/// poem-openapi: whether the request carries the configured user.
pub(crate) fn allows(req: &Request, credentials: &ApiCredentials) -> bool {
    Basic::from_request(req)
        .is_ok_and(|basic| matches(credentials, &basic.username, &basic.password))
}

/// Compares both fields in constant time (for equal lengths), and always
/// compares both, so timing does not tell which one was wrong.
fn matches(credentials: &ApiCredentials, username: &str, password: &str) -> bool {
    let user_ok = credentials.username.as_bytes().ct_eq(username.as_bytes());
    let password_ok = credentials
        .password
        .expose_secret()
        .as_bytes()
        .ct_eq(password.as_bytes());
    (user_ok & password_ok).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_pair_matches() {
        let credentials = ApiCredentials {
            username: "root".into(),
            password: "s3cret".into(),
        };
        assert!(matches(&credentials, "root", "s3cret"));
        assert!(!matches(&credentials, "root", "s3cre"));
        assert!(!matches(&credentials, "roo", "s3cret"));
        assert!(!matches(&credentials, "", ""));
    }
}
