//! HTTP basic auth for every `/supmit/...` route.

use std::fmt;
use std::sync::Arc;

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Basic;
use subtle::ConstantTimeEq;

/// The one user allowed to call the API.
#[derive(Clone)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Compares both fields in constant time (for equal lengths), and always
    /// compares both, so timing does not tell which one was wrong.
    pub fn matches(&self, username: &str, password: &str) -> bool {
        let user_ok = self.username.as_bytes().ct_eq(username.as_bytes());
        let password_ok = self.password.as_bytes().ct_eq(password.as_bytes());
        (user_ok & password_ok).into()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// HTTP basic auth with the configured username and password.
#[derive(SecurityScheme)]
#[oai(ty = "basic", checker = "check")]
pub struct ApiAuth(());

async fn check(req: &Request, basic: Basic) -> Option<()> {
    let credentials = req.data::<Arc<Credentials>>()?;
    credentials
        .matches(&basic.username, &basic.password)
        .then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_pair_matches() {
        let credentials = Credentials::new("root", "s3cret");
        assert!(credentials.matches("root", "s3cret"));
        assert!(!credentials.matches("root", "s3cre"));
        assert!(!credentials.matches("roo", "s3cret"));
        assert!(!credentials.matches("", ""));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!("{:?}", Credentials::new("root", "s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
