//! The student-ages web UI: a server-rendered page that lists, filters,
//! adds, changes and deletes students by calling the API server-side (the
//! browser never sees the API's credentials). Works without JavaScript.
//!
//! [`run`] serves on a listener it is given until `shutdown` resolves, so
//! the binary and the tests start the server the same way. `pages` holds
//! the handlers and templates; `api_client` is how they reach the API, at
//! the address `api_url` parses.

mod api_client;
mod api_url;
mod pages;

use std::future::Future;

use poem::{Endpoint, EndpointExt, Response, Route, get, post};
use student_ages_process::ApiCredentials;
pub use student_ages_process::ServerLimits;

use api_client::ApiClient;
pub use api_url::{ApiUrl, ApiUrlError};

/// What the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the API is: `http://api:5000` or `unix:/run/edge/api.sock`.
    pub api_url: ApiUrl,
    /// The user the API expects.
    pub api_credentials: ApiCredentials,
}

/// The application: pages, form handlers, static files, request log.
pub fn app(config: &Config) -> reqwest::Result<impl Endpoint<Output = Response> + use<>> {
    let api = ApiClient::new(&config.api_url, config.api_credentials.clone())?;
    Ok(Route::new()
        .at("/", get(pages::index))
        .at("/students", post(pages::save))
        .at("/students/delete", post(pages::delete))
        .at("/healthz", get(pages::healthz))
        .at("/static/app.css", get(pages::stylesheet))
        .at("/static/app.js", get(pages::script))
        .data(api)
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
    tracing::info!(listen = %address, api = %config.api_url, "frontend listening");
    student_ages_process::serve(listener, app, limits, shutdown).await?;
    tracing::info!("frontend stopped");
    Ok(())
}
