//! Sign-in for the web UI: who may see and change the students.
//!
//! Every page asks for a session first ([`guard`], around the whole app):
//! without one, a page redirects to `/login` and a form is refused; with
//! one, a form must also carry the session's CSRF token or it is refused
//! with 403. `/healthz`, `/static/*` and the sign-in page itself are open.
//! With [`Access::PublicRead`] the list is open to all, read-only, and
//! signing in enables the forms.
//!
//! Sessions are signed cookies (`session`), verifiable by every frontend
//! container that shares the key (`key`), so replacing a container signs
//! nobody out; the cookie is HttpOnly, SameSite=Lax, and `Secure` when
//! the request came over HTTPS (`X-Forwarded-Proto: https` from the edge)
//! or when told to be. Passwords are checked against an argon2 hash off
//! the async threads; failures are counted per client address (in this
//! process only) and, past the limit, answered with 429 and
//! `Retry-After`.

mod csrf;
mod key;
mod session;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use cookie::{Cookie, SameSite};
use poem::http::{Method, StatusCode, header};
use poem::web::{Data, Form, Query};
use poem::{Endpoint, IntoResponse, Request, Response, handler};
use serde::Deserialize;
use student_ages_process::{LoginUser, Throttle, ThrottleLimits, TrustedProxies};

use crate::pages::{ErrorPage, Nav, render};
use csrf::{LoginTokens, tokens_match};
pub use key::{DEFAULT_KEY_DIR, DEFAULT_KEY_FILE, KeyError, KeySource, SessionKey, resolve};
pub(crate) use session::SignedIn;
use session::{Lookup, Sessions};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sa_session";
/// The cookie holding the sign-in form's CSRF nonce.
pub const LOGIN_COOKIE: &str = "sa_login";
/// Where the sign-in page is.
const LOGIN_PATH: &str = "/login";
/// The largest form body read to find its CSRF token.
const MAX_FORM: usize = 64 * 1024;
/// The largest `multipart/form-data` body (a CSV upload, or the import
/// form carrying one back): the API's 8 MiB, plus room for the form and
/// for line ends a browser turns into CRLF.
const MAX_UPLOAD_FORM: usize = 12 * 1024 * 1024;

/// Who may see the list without signing in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Access {
    /// Every page needs a signed-in user (the default).
    #[default]
    Login,
    /// The list is public and read-only; signing in enables changes.
    PublicRead,
}

/// When the session cookie is marked `Secure`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CookieSecure {
    /// When the request came over HTTPS: `X-Forwarded-Proto: https`.
    #[default]
    Auto,
    /// Always (the site is only ever reached over HTTPS).
    Always,
}

/// How the UI's sign-in behaves.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// Who may sign in.
    pub user: LoginUser,
    pub access: Access,
    /// How long a session lives unused.
    pub session_idle: Duration,
    /// How long a session lives at most, used or not.
    pub session_max_age: Duration,
    /// Signs sessions and form tokens: share it between containers.
    pub session_key: SessionKey,
    pub cookie_secure: CookieSecure,
    /// Peers whose `X-Forwarded-For` names the client (for the throttle).
    pub trusted_proxies: TrustedProxies,
    /// Failed sign-ins allowed per client address.
    pub throttle: ThrottleLimits,
}

impl LoginConfig {
    /// The defaults: sign-in required, 8 h idle sessions of at most 7
    /// days, a random key (for this process only), `Secure` over HTTPS,
    /// loopback proxies trusted, 5 failures per 15 minutes.
    pub fn new(user: LoginUser) -> LoginConfig {
        LoginConfig {
            user,
            access: Access::Login,
            session_idle: Duration::from_secs(8 * 3600),
            session_max_age: Duration::from_secs(7 * 24 * 3600),
            session_key: SessionKey::random(),
            cookie_secure: CookieSecure::Auto,
            trusted_proxies: TrustedProxies::default(),
            throttle: ThrottleLimits::default(),
        }
    }
}

/// The sign-in state shared by the guard and the handlers.
pub(crate) struct Auth {
    user: Arc<LoginUser>,
    access: Access,
    cookie_secure: CookieSecure,
    trusted_proxies: TrustedProxies,
    sessions: Sessions,
    throttle: Throttle,
    login_tokens: LoginTokens,
}

impl Auth {
    pub(crate) fn new(config: &LoginConfig) -> Auth {
        Auth {
            user: Arc::new(config.user.clone()),
            access: config.access,
            cookie_secure: config.cookie_secure,
            trusted_proxies: config.trusted_proxies.clone(),
            sessions: Sessions::new(
                config.session_key.clone(),
                config.session_idle,
                config.session_max_age,
            ),
            throttle: Throttle::new(config.throttle),
            login_tokens: LoginTokens::new(&config.session_key),
        }
    }

    fn secure(&self, req: &Request) -> bool {
        self.cookie_secure == CookieSecure::Always
            || req
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }

    fn client(&self, req: &Request) -> IpAddr {
        self.trusted_proxies
            .client_of(req)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// `Set-Cookie` for the session cookie; `None` clears it.
    fn session_cookie(&self, req: &Request, value: Option<&str>) -> String {
        let mut cookie = Cookie::build((SESSION_COOKIE, value.unwrap_or("").to_owned()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure(req));
        if value.is_none() {
            cookie = cookie.max_age(cookie::time::Duration::ZERO);
        }
        cookie.build().to_string()
    }

    /// `Set-Cookie` for the sign-in form's nonce; `None` clears it.
    fn login_cookie(&self, req: &Request, nonce: Option<&str>) -> String {
        let mut cookie = Cookie::build((LOGIN_COOKIE, nonce.unwrap_or("").to_owned()))
            .path(LOGIN_PATH)
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure(req));
        if nonce.is_none() {
            cookie = cookie.max_age(cookie::time::Duration::ZERO);
        }
        cookie.build().to_string()
    }

    /// The sign-in page, with a fresh form token.
    fn login_form(&self, req: &Request, view: LoginView, status: StatusCode) -> Response {
        let held = cookie_value(req, LOGIN_COOKIE);
        let (nonce, token) = self.login_tokens.issue(held.as_deref());
        let page = LoginPage {
            nav: Nav::default(),
            notice: view.notice,
            error: view.error,
            username: view.username,
            csrf: token,
        };
        let mut response = render(&page, status);
        append_cookie(&mut response, &self.login_cookie(req, Some(&nonce)));
        if view.clear_session {
            append_cookie(&mut response, &self.session_cookie(req, None));
        }
        response
    }
}

/// Whether the response already sets the cookie `name`.
fn sets_cookie(response: &Response, name: &str) -> bool {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| {
            value
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('='))
        })
}

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = header::HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The value of the cookie `name`, if the request has it.
fn cookie_value(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
}

/// The first value of `field` in a urlencoded form body.
fn form_field(body: &[u8], field: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == field)
        .map(|(_, value)| value.into_owned())
}

/// The boundary of a `multipart/form-data` request, if it is one.
fn multipart_boundary(req: &Request) -> Option<String> {
    let content_type = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
        .then(|| multer::parse_boundary(content_type).ok())
        .flatten()
}

/// The first value of the text field `field` in a multipart body.
async fn multipart_field(body: bytes::Bytes, boundary: String, field: &str) -> Option<String> {
    let stream =
        futures_util::stream::once(std::future::ready(Ok::<_, std::convert::Infallible>(body)));
    let mut form = multer::Multipart::new(stream, boundary);
    while let Ok(Some(part)) = form.next_field().await {
        if part.name() == Some(field) {
            return part.text().await.ok();
        }
    }
    None
}

fn see_other(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .finish()
}

fn refused(status: StatusCode, heading: &str, detail: &str, hint: &str, nav: Nav) -> Response {
    let (link_href, link_text) = if nav.user.is_some() {
        ("/", "Back to the list")
    } else {
        (LOGIN_PATH, "Sign in")
    };
    render(
        &ErrorPage {
            nav,
            heading: heading.into(),
            detail: detail.into(),
            hint: hint.into(),
            link_href: link_href.into(),
            link_text: link_text.into(),
        },
        status,
    )
}

/// Runs around every request: open paths pass; otherwise a session is
/// looked up, pages without one go to the sign-in page (or, with
/// [`Access::PublicRead`], are shown read-only), and every form needs a
/// session and its CSRF token.
pub(crate) async fn guard<E: Endpoint>(
    auth: Arc<Auth>,
    next: Arc<E>,
    mut req: Request,
) -> poem::Result<Response> {
    let path = req.uri().path();
    if path == "/healthz" || path.starts_with("/static/") || path == LOGIN_PATH {
        return Ok(call(&*next, req).await);
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let lookup = auth
        .sessions
        .lookup(cookie_value(&req, SESSION_COOKIE).as_deref());
    let mut response = match lookup {
        Lookup::Valid { signed_in, reissue } => {
            if changes {
                let multipart = multipart_boundary(&req);
                let limit = if multipart.is_some() {
                    MAX_UPLOAD_FORM
                } else {
                    MAX_FORM
                };
                let body = match req.take_body().into_bytes_limit(limit).await {
                    Ok(body) => body,
                    Err(_) => {
                        return Ok(refused(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "This form is too large",
                            &format!(
                                "A form may carry at most {} MiB.",
                                limit.div_ceil(1024 * 1024)
                            ),
                            "Nothing was changed. A CSV over 8 MiB must be split and imported \
                             in parts.",
                            Nav::signed_in(&signed_in),
                        ));
                    }
                };
                let sent = match multipart {
                    Some(boundary) => multipart_field(body.clone(), boundary, "csrf").await,
                    None => form_field(&body, "csrf"),
                }
                .unwrap_or_default();
                if !tokens_match(&signed_in.csrf, &sent) {
                    tracing::warn!(
                        client = %auth.client(&req),
                        path = req.uri().path(),
                        "form without this session's CSRF token refused"
                    );
                    return Ok(refused(
                        StatusCode::FORBIDDEN,
                        "This form could not be accepted",
                        "It did not carry this page's security token: it may come from an old \
                         page, or from another site.",
                        "Nothing was changed. Go back to the list, reload it, and send the form again.",
                        Nav::signed_in(&signed_in),
                    ));
                }
                req.set_body(body);
            }
            let cookie = reissue.map(|value| auth.session_cookie(&req, Some(&value)));
            req.extensions_mut().insert(signed_in);
            let mut response = call(&*next, req).await;
            // The handler may have set its own (sign-out clears it).
            if let Some(cookie) = cookie
                && !sets_cookie(&response, SESSION_COOKIE)
            {
                append_cookie(&mut response, &cookie);
            }
            response
        }
        Lookup::Invalid => {
            // Tampered with, or signed with another key: one message per
            // request at most, and at debug so that a client cannot fill
            // the log with them.
            tracing::debug!(
                client = %auth.client(&req),
                "session cookie with a bad signature refused (another key? check that every \
                 frontend shares UI_SESSION_KEY_FILE or UI_SESSION_KEY)"
            );
            let mut response = see_other("/login?expired");
            append_cookie(&mut response, &auth.session_cookie(&req, None));
            response
        }
        Lookup::Expired => {
            let mut response = see_other("/login?expired");
            append_cookie(&mut response, &auth.session_cookie(&req, None));
            response
        }
        Lookup::None if auth.access == Access::PublicRead => {
            if changes {
                refused(
                    StatusCode::FORBIDDEN,
                    "Sign in to make changes",
                    "Anyone may read this list, but only a signed-in user may add, change or \
                     delete students.",
                    "Nothing was changed. Sign in, then send the form again.",
                    Nav::anonymous(true),
                )
            } else {
                call(&*next, req).await
            }
        }
        Lookup::None => see_other(LOGIN_PATH),
    };
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    Ok(response)
}

async fn call<E: Endpoint>(next: &E, req: Request) -> Response {
    match next.call(req).await {
        Ok(output) => output.into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    notice: Option<String>,
    error: Option<String>,
    username: String,
    csrf: String,
}

#[derive(Default)]
struct LoginView {
    notice: Option<String>,
    error: Option<String>,
    username: String,
    /// Whether to clear a stale session cookie.
    clear_session: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    expired: Option<String>,
    signed_out: Option<String>,
}

/// No `Debug`: it holds a password.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

const EXPIRED: &str = "Your session expired, sign in again.";

/// The sign-in page; a signed-in user goes to the list.
#[handler]
pub(crate) async fn login_page(
    req: &Request,
    Query(query): Query<LoginQuery>,
    auth: Data<&Arc<Auth>>,
) -> Response {
    let mut view = LoginView::default();
    match auth
        .sessions
        .lookup(cookie_value(req, SESSION_COOKIE).as_deref())
    {
        Lookup::Valid { .. } => return see_other("/"),
        Lookup::Expired | Lookup::Invalid => {
            view.notice = Some(EXPIRED.into());
            view.clear_session = true;
        }
        Lookup::None if query.expired.is_some() => view.notice = Some(EXPIRED.into()),
        Lookup::None if query.signed_out.is_some() => {
            view.notice = Some("You have signed out.".into());
        }
        Lookup::None => {}
    }
    let mut response = auth.login_form(req, view, StatusCode::OK);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Checks the sign-in form: its CSRF token, the client's failures, then
/// the password (off the async threads). Success starts a new session.
#[handler]
pub(crate) async fn login(
    req: &Request,
    Form(form): Form<LoginForm>,
    auth: Data<&Arc<Auth>>,
) -> Response {
    let client = auth.client(req);
    let view = |error: &str| LoginView {
        error: Some(error.into()),
        username: form.username.clone(),
        ..LoginView::default()
    };
    let nonce = cookie_value(req, LOGIN_COOKIE);
    if !auth.login_tokens.check(nonce.as_deref(), &form.csrf) {
        tracing::warn!(%client, "sign-in form without a valid CSRF token refused");
        return auth.login_form(
            req,
            view(
                "This sign-in form had expired or did not come from this site. \
                 Nothing was checked: sign in again.",
            ),
            StatusCode::FORBIDDEN,
        );
    }
    if let Err(retry_after) = auth.throttle.check(client) {
        return too_many_failures(&auth, client, retry_after);
    }
    let user = Arc::clone(&auth.user);
    let (username, password) = (form.username.clone(), form.password);
    let valid = tokio::task::spawn_blocking(move || user.verify(&username, &password))
        .await
        .unwrap_or(false);
    if !valid {
        auth.throttle.fail(client);
        tracing::warn!(%client, "failed sign-in to the web UI: wrong username or password");
        return auth.login_form(
            req,
            view("Wrong username or password."),
            StatusCode::UNAUTHORIZED,
        );
    }
    auth.throttle.succeed(client);
    let (session, cookie) = auth.sessions.create(auth.user.username());
    tracing::info!(user = %session.username, %client, "signed in to the web UI");
    let mut response = see_other("/");
    append_cookie(&mut response, &auth.session_cookie(req, Some(&cookie)));
    append_cookie(&mut response, &auth.login_cookie(req, None));
    response
}

fn too_many_failures(auth: &Auth, client: IpAddr, retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let limits = auth.throttle.limits();
    // The failures were logged at warn; each refusal after them is not, so
    // a client hammering the form cannot fill the log twice as fast.
    tracing::debug!(%client, retry_after = seconds, "sign-in refused: too many failures");
    let wait = if seconds >= 120 {
        format!("{} minutes", seconds.div_ceil(60))
    } else {
        format!("{seconds} seconds")
    };
    let mut response = refused(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many failed sign-ins",
        &format!(
            "After {} wrong passwords from your address within {}, sign-in is paused for \
             another {wait}.",
            limits.max_failures,
            humantime::format_duration(limits.window)
        ),
        "Wait, then sign in again. If the password is lost, whoever runs the site can set a \
         new one (UI_PASSWORD).",
        Nav::anonymous(false),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    response
}

/// Ends the session (the guard has checked it and its CSRF token).
#[handler]
pub(crate) async fn logout(req: &Request, auth: Data<&Arc<Auth>>) -> Response {
    if let Some(session) = req.extensions().get::<SignedIn>() {
        auth.sessions.revoke(&session.id);
        tracing::info!(user = %session.username, "signed out of the web UI");
    }
    let mut response = see_other("/login?signed_out");
    append_cookie(&mut response, &auth.session_cookie(req, None));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let req = Request::builder()
            .header(header::COOKIE, "a=1; sa_session=abc; b=2")
            .finish();
        assert_eq!(cookie_value(&req, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&req, LOGIN_COOKIE), None);
    }

    #[test]
    fn the_csrf_field_is_read_from_the_form() {
        assert_eq!(
            form_field(b"name=bob&age=3&csrf=ab%2Fc", "csrf").as_deref(),
            Some("ab/c")
        );
        assert_eq!(form_field(b"name=bob", "csrf"), None);
    }
}
