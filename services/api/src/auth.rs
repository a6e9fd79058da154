//! HTTP basic auth for every `/supmit/...` route, checked against the one
//! user the API was started with.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::http::{StatusCode, Uri, header};
use poem::{Request, Response};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{Basic, BasicAuthorization};
use student_ages_process::{ApiCredentials, ExposeSecret, Throttle, TrustedProxies};
use subtle::ConstantTimeEq;

/// HTTP basic auth with the configured username and password. (A failed
/// attempt is counted and logged in the front door: [`LoginAttempt`].)
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
///
/// A failed attempt is logged at warn with the client's address (behind a
/// trusted proxy, the one its `X-Forwarded-For` names) and the path, never
/// the password, nor the username, which is sometimes a password typed in
/// the wrong field.
pub(crate) struct LoginAttempt {
    /// `None` over a unix socket without a trusted `X-Forwarded-For`: not
    /// throttled, logged as such.
    client: Option<IpAddr>,
    /// The path, kept (a reference count, no copy) only for the log line of
    /// an attempt that carries credentials.
    attempted: Option<Uri>,
}

impl LoginAttempt {
    /// Before the request is answered: `Err(wait)` when its client is
    /// held back for `wait` (answer [`too_many_failed_logins`]), `Ok(None)`
    /// when the throttle does not apply (not a `/supmit` route), else the
    /// attempt to [`finish`](Self::finish) with the answer.
    pub(crate) fn admit(guard: &Guard, req: &Request) -> Result<Option<LoginAttempt>, Duration> {
        if !req.uri().path().starts_with("/supmit") {
            return Ok(None);
        }
        let client = guard.proxies.client_of(req);
        if let Some(client) = client {
            guard.throttle.check(client)?;
        }
        Ok(Some(LoginAttempt {
            client,
            attempted: req
                .headers()
                .contains_key(header::AUTHORIZATION)
                .then(|| req.uri().clone()),
        }))
    }

    /// Counts the answer: a 401 to credentials is a failure, a success
    /// clears the client's failures. (An error is still an error here: the
    /// JSON body and the challenge are added further out.)
    pub(crate) fn finish(self, guard: &Guard, result: &poem::Result<Response>) {
        let Some(uri) = self.attempted else {
            return;
        };
        let status = match result {
            Ok(response) => response.status(),
            Err(error) => error.status(),
        };
        if status == StatusCode::UNAUTHORIZED {
            match self.client {
                Some(client) => {
                    tracing::warn!(%client, path = uri.path(), "failed basic-auth attempt");
                    guard.throttle.fail(client);
                }
                None => tracing::warn!(
                    client = "unix socket",
                    path = uri.path(),
                    "failed basic-auth attempt"
                ),
            }
        } else if status.is_success()
            && let Some(client) = self.client
        {
            guard.throttle.succeed(client);
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
        let guard = Guard {
            throttle: Throttle::new(Default::default()),
            proxies: TrustedProxies::default(),
        };
        let credentials = ApiCredentials {
            username: "root".into(),
            password: "s3cret".into(),
        };
        // (A test cannot set the peer's address: the server does; without
        // one the client is unknown, as over a unix socket.)
        let req = Request::builder()
            .uri_str("/supmit/api/v1.0/get_student_ages")
            // "root:guessed-pw"
            .header("authorization", "Basic cm9vdDpndWVzc2VkLXB3")
            .finish();
        let log = logged(|| {
            assert!(!allows(&req, &credentials));
            let attempt = LoginAttempt::admit(&guard, &req).unwrap().unwrap();
            attempt.finish(
                &guard,
                &Err(poem::Error::from_status(StatusCode::UNAUTHORIZED)),
            );
        });
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("failed basic-auth attempt"), "{log}");
        assert!(log.contains("client=\"unix socket\""), "{log}");
        assert!(log.contains("/supmit/api/v1.0/get_student_ages"), "{log}");
        assert!(!log.contains("guessed-pw"), "{log}");
        let good = Request::builder()
            .uri_str("/supmit/api/v1.0/get_student_ages")
            .header("authorization", "Basic cm9vdDpzM2NyZXQ=")
            .finish();
        let log = logged(|| {
            assert!(allows(&good, &credentials));
            let attempt = LoginAttempt::admit(&guard, &good).unwrap().unwrap();
            attempt.finish(&guard, &Ok(Response::default()));
        });
        assert_eq!(log, "");
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
