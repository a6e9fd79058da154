//! HTTP basic auth for every `/supmit/...` route, checked against the one
//! user the API was started with.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::http::{StatusCode, header};
use poem::{Request, Response};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{Basic, BasicAuthorization};
use student_ages_process::{ApiCredentials, ExposeSecret, Throttle, TrustedProxies};
use subtle::ConstantTimeEq;

/// HTTP basic auth with the configured username and password.
#[derive(SecurityScheme)]
#[oai(ty = "basic", checker = "check")]
pub(crate) struct ApiAuth(());

async fn check(req: &Request, basic: Basic) -> Option<()> {
    let credentials = req.data::<Arc<ApiCredentials>>()?;
    checked(req, credentials, &basic).then_some(())
}

/// The same check as [`ApiAuth`], for a route answered outside
/// poem-openapi: whether the request carries the configured user.
pub(crate) fn allows(req: &Request, credentials: &ApiCredentials) -> bool {
    Basic::from_request(req).is_ok_and(|basic| checked(req, credentials, &basic))
}

/// [`matches`], logging a failed attempt at warn with the client's address
/// and the path (never the password, nor the username, which is sometimes
/// a password typed in the wrong field). A request without credentials is
/// not an attempt: browsers send one first to get the challenge.
fn checked(req: &Request, credentials: &ApiCredentials, basic: &Basic) -> bool {
    let ok = matches(credentials, &basic.username, &basic.password);
    if !ok {
        tracing::warn!(
            client = %req.remote_addr(),
            path = req.uri().path(),
            "failed basic-auth attempt"
        );
    }
    ok
}

/// Who failed to log in how often, and whose `X-Forwarded-For` to believe.
pub(crate) struct Guard {
    pub throttle: Throttle,
    pub proxies: TrustedProxies,
}

/// One request's part in the failed-login throttle: a client address that
/// failed basic auth too often gets 429 with `Retry-After` on every
/// `/supmit` route until its window ends, whatever it sends; a wrong
/// password counts, a right one clears the count. A request without
/// credentials is not an attempt (browsers send one first to get the
/// challenge).
pub(crate) struct LoginAttempt {
    client: IpAddr,
    attempted: bool,
}

impl LoginAttempt {
    /// Before the request is answered: `Err(wait)` when its client is
    /// held back for `wait` (answer [`too_many_failed_logins`]), `Ok(None)`
    /// when the throttle does not apply (not a `/supmit` route, or no
    /// client address), else the attempt to [`finish`](Self::finish) with
    /// the answer.
    pub(crate) fn admit(guard: &Guard, req: &Request) -> Result<Option<LoginAttempt>, Duration> {
        if !req.uri().path().starts_with("/supmit") {
            return Ok(None);
        }
        let Some(client) = guard.proxies.client_of(req) else {
            return Ok(None);
        };
        guard.throttle.check(client)?;
        Ok(Some(LoginAttempt {
            client,
            attempted: req.headers().contains_key(header::AUTHORIZATION),
        }))
    }

    /// Counts the answer: a 401 to credentials is a failure, a success
    /// clears the client's failures. (An error is still an error here: the
    /// JSON body and the challenge are added further out.)
    pub(crate) fn finish(self, guard: &Guard, result: &poem::Result<Response>) {
        if !self.attempted {
            return;
        }
        let status = match result {
            Ok(response) => response.status(),
            Err(error) => error.status(),
        };
        if status == StatusCode::UNAUTHORIZED {
            guard.throttle.fail(self.client);
        } else if status.is_success() {
            guard.throttle.succeed(self.client);
        }
    }
}

/// The 429 for a client held back for `wait`, with `Retry-After`.
pub(crate) fn too_many_failed_logins(wait: Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(header::RETRY_AFTER, seconds.to_string())
        .content_type("application/json; charset=utf-8")
        .body(
            serde_json::json!({
                "error": format!("too many failed logins from this address: try again in {seconds} s")
            })
            .to_string(),
        )
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

    /// Captures what is logged while `f` runs.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_failed_attempt_is_logged_with_the_client_address_and_never_the_password() {
        let credentials = ApiCredentials {
            username: "root".into(),
            password: "s3cret".into(),
        };
        // (A test cannot set the client's address: the server does. The
        // field is there, with what poem puts when there is none.)
        let req = Request::builder()
            .uri_str("/supmit/api/v1.0/get_student_ages")
            // "root:guessed-pw"
            .header("authorization", "Basic cm9vdDpndWVzc2VkLXB3")
            .finish();
        let log = logged(|| assert!(!allows(&req, &credentials)));
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("failed basic-auth attempt"), "{log}");
        assert!(log.contains("client="), "{log}");
        assert!(!log.contains("guessed-pw"), "{log}");
        let good = Request::builder()
            .header("authorization", "Basic cm9vdDpzM2NyZXQ=")
            .finish();
        assert_eq!(logged(|| assert!(allows(&good, &credentials))), "");
    }

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
