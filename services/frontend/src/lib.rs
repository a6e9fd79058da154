//! The student-ages web UI: a server-rendered page that lists, filters,
//! adds, changes and deletes students by calling the API server-side (the
//! browser never sees the API's credentials). Works without JavaScript.
//! Every page asks for a sign-in first (`auth`), unless configured to
//! show the list to all, read-only.
//!
//! [`run`] serves on a listener it is given until `shutdown` resolves, so
//! the binary and the tests start the server the same way. `pages` holds
//! the handlers and templates; `auth` the sign-in, sessions and CSRF
//! checks around them; `api_client` is how they reach the API, at the
//! address `api_url` parses.

mod api_client;
mod api_url;
mod auth;
mod import;
mod listing;
mod pages;

use std::future::Future;
use std::sync::Arc;

use poem::{Endpoint, EndpointExt, Response, Route, get, post};
use student_ages_process::ApiCredentials;
pub use student_ages_process::ServerLimits;

use api_client::ApiClient;
pub use api_url::{ApiUrl, ApiUrlError};
pub use auth::{
    Access, CookieSecure, DEFAULT_KEY_DIR, DEFAULT_KEY_FILE, KeyError, KeySource, LOGIN_COOKIE,
    LoginConfig, SESSION_COOKIE, SessionKey, resolve as resolve_session_key,
};

/// What the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the API is: `http://api:5000` or `unix:/run/edge/api.sock`.
    pub api_url: ApiUrl,
    /// The user the API expects.
    pub api_credentials: ApiCredentials,
    /// Who may sign in, and how.
    pub login: LoginConfig,
}

/// The application: pages, form handlers, sign-in, static files, request
/// log.
pub fn app(config: &Config) -> reqwest::Result<impl Endpoint<Output = Response> + use<>> {
    let api = ApiClient::new(&config.api_url, config.api_credentials.clone())?;
    let auth = Arc::new(auth::Auth::new(&config.login));
    let guard = Arc::clone(&auth);
    Ok(Route::new()
        .at("/", get(pages::index))
        .at("/students", post(pages::save))
        .at("/students/delete", post(pages::delete))
        .at("/students.csv", get(pages::export))
        .at("/import", get(import::upload_form).post(import::preview))
        .at("/import/apply", post(import::apply))
        .at("/login", get(auth::login_page).post(auth::login))
        .at("/logout", post(auth::logout))
        .at("/healthz", get(pages::healthz))
        .at("/static/app.css", get(pages::stylesheet))
        .at("/static/app.js", get(pages::script))
        .data(api)
        .data(Arc::new(listing::ClassCache::default()))
        .data(auth)
        .around(move |next, req| auth::guard(Arc::clone(&guard), next, req))
        .around(student_ages_process::log_request))
}

/// Serves the UI on `listener` until `shutdown` resolves, within the
/// default [`ServerLimits`] (the same as the API's).
pub async fn run(
    listener: std::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    run_with_limits(listener, config, ServerLimits::default(), shutdown).await
}

/// [`run`] with other connection limits (tests shorten the timeouts).
pub async fn run_with_limits(
    listener: std::net::TcpListener,
    config: Config,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let app = app(&config).map_err(std::io::Error::other)?;
    tracing::info!(
        listen = %address,
        api = %config.api_url,
        ui_user = config.login.user.username(),
        ui_user_from = config.login.user.source,
        access = ?config.login.access,
        session_key = config.login.session_key.fingerprint(),
        "frontend listening"
    );
    student_ages_process::serve(listener, app, limits, shutdown).await?;
    tracing::info!("frontend stopped");
    Ok(())
}
