//! The student-ages API: a JSON file of student ages served over HTTP,
//! behind basic auth, on the paths the original Flask service used, plus a
//! write API that answers only once a change is durably on disk.
//!
//! [`run`] serves on a listener it is given until `shutdown` resolves, so
//! the binary and the tests start the server the same way; [`app`] is the
//! same application for any other listener (a test's unix socket).
//!
//! Requests come in through `routes` (behind `auth`), errors leave in one
//! JSON shape through `error`, and `store` is the only code that touches
//! the data file.

mod auth;
mod error;
mod routes;
mod store;
mod students_csv;

use std::future::Future;
use std::sync::Arc;

use poem::http::Method;
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Route};
use poem_openapi::OpenApiService;
pub use student_ages_process::ServerLimits;
use student_ages_process::{ApiCredentials, Throttle, ThrottleLimits, TrustedProxies};
use tokio::io::AsyncReadExt;

pub use store::{Store, StoreError};

/// The largest request body accepted, in bytes: a `{"age": N}` is tiny.
const MAX_BODY_BYTES: usize = 4 * 1024;
/// The largest CSV accepted by an import, or data file by a restore, in
/// bytes: 8 MiB is some 500,000 students as CSV, 300,000 as JSON.
const MAX_BULK_BYTES: usize = 8 * 1024 * 1024;

/// What the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The one user every `/supmit` route accepts.
    pub credentials: ApiCredentials,
    /// Peers whose `X-Forwarded-For` names the client (the edge).
    pub trusted_proxies: TrustedProxies,
    /// How many failed logins a client address may make before 429.
    pub auth_throttle: ThrottleLimits,
}

impl Config {
    /// The given user; loopback trusted as a proxy; 5 failed logins per
    /// client address in 15 minutes.
    pub fn new(credentials: ApiCredentials) -> Config {
        Config {
            credentials,
            trusted_proxies: TrustedProxies::default(),
            auth_throttle: ThrottleLimits::default(),
        }
    }
}

/// The application: routes, docs, auth data, error mapping, request log.
pub fn app(store: Store, config: Config) -> impl Endpoint<Output = Response> {
    let api = OpenApiService::new(routes::Api, "student-ages API", env!("CARGO_PKG_VERSION"))
        .description(
            "Student ages kept in a JSON file. Every /supmit route needs HTTP basic auth; \
             every error is JSON {\"error\": \"...\"}.",
        )
        .server("/");
    // The docs page and document are large and static: compressed when the
    // client accepts it. The API's own answers are small and stay as they are.
    let docs = Route::new()
        .nest("/docs", api.swagger_ui())
        .at("/openapi.json", api.spec_endpoint())
        .with(poem::middleware::Compression::new());
    let credentials = Arc::new(config.credentials);
    let front = Arc::new(Front {
        list: routes::ListRead::new(store.clone(), Arc::clone(&credentials)),
        store,
        credentials,
        guard: auth::Guard {
            throttle: Throttle::new(config.auth_throttle),
            proxies: config.trusted_proxies,
        },
    });
    Dispatch {
        api: api.into_endpoint(),
        docs,
    }
    .around(move |next, req| front_door(next, req, Arc::clone(&front)))
    .catch_all_error(|error| async move { error::framework_error(error) })
    .around(student_ages_process::log_request)
}

/// What [`front_door`] gives every request, and the list read it answers
/// itself.
struct Front {
    list: routes::ListRead,
    store: Store,
    credentials: Arc<ApiCredentials>,
    guard: auth::Guard,
}

/// Every request's way in, in order: the limits on its head and on its
/// body, the failed-login throttle, then the list read (answered here,
/// the API's hottest route) or the data the routes read and on to
/// [`Dispatch`].
///
/// One layer, not one `around` or `data` per step: poem nests each layer's
/// future in the next, each with its own copy of the request, and a
/// request's whole future is copied once when it is boxed, so every layer
/// cost about a kilobyte of copying on every request (callgrind:
/// `bench/api-instructions.sh`).
async fn front_door<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    front: Arc<Front>,
) -> poem::Result<Response> {
    limit_head(&req)?;
    limit_body(&mut req).await?;
    let attempt = match auth::LoginAttempt::admit(&front.guard, &req) {
        Ok(attempt) => attempt,
        Err(wait) => return Ok(auth::too_many_failed_logins(wait)),
    };
    let result = if req.uri().path() == routes::LIST_PATH && req.method() == Method::GET {
        front.list.answer(&req).await
    } else {
        let extensions = req.extensions_mut();
        extensions.insert(front.store.clone());
        extensions.insert(Arc::clone(&front.credentials));
        next.call(req).await.map(IntoResponse::into_response)
    };
    if let Some(attempt) = attempt {
        attempt.finish(&front.guard, &result);
    }
    result
}

/// Sends each request on without a router in front of the API (the list
/// read has been answered by [`front_door`]): `/docs…` and `/openapi.json`
/// to the documentation, everything else to the OpenAPI routes. (Nesting
/// those under `/` in a `Route` would rebuild every request's URI on the
/// way in.)
struct Dispatch<A, D> {
    api: A,
    docs: D,
}

impl<A: Endpoint, D: Endpoint> Endpoint for Dispatch<A, D> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path();
        if routes::NAMELESS_PATHS.contains(&path) {
            // A student path with the name left out: say so, not 404.
            Err(error::empty_name())
        } else if path == "/openapi.json" || path == "/docs" || path.starts_with("/docs/") {
            Box::pin(self.docs.call(req))
                .await
                .map(IntoResponse::into_response)
        } else {
            // Boxed, as the docs are: the routes' future is many times the
            // list read's, and unboxed it would size (and so be copied
            // with) the future of every request, the list reads included.
            Box::pin(self.api.call(req))
                .await
                .map(IntoResponse::into_response)
        }
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes
/// in-flight requests (and so their writes) before returning, within the
/// default [`ServerLimits`].
pub async fn run(
    listener: std::net::TcpListener,
    store: Store,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    run_with_limits(listener, store, config, ServerLimits::default(), shutdown).await
}

/// [`run`] with other connection limits (tests shorten the timeouts).
pub async fn run_with_limits(
    listener: std::net::TcpListener,
    store: Store,
    config: Config,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(listen = %address, data_file = %store.path().display(), "api listening");
    student_ages_process::serve(listener, app(store, config), limits, shutdown).await?;
    tracing::info!("api stopped");
    Ok(())
}

/// The longest request target accepted, in bytes.
const MAX_URI_BYTES: usize = 2048;
/// The most header bytes (names and values) accepted.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Refuses a request target or headers larger than this API needs, with a
/// JSON 414 or 431, well below the sizes at which hyper itself answers
/// (with an empty body, before any of this code runs).
fn limit_head(req: &Request) -> poem::Result<()> {
    use poem::http::StatusCode;
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return Err(poem::Error::from_string(
            format!("the request URL is longer than {MAX_URI_BYTES} bytes"),
            StatusCode::URI_TOO_LONG,
        ));
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        return Err(poem::Error::from_string(
            format!("the request headers are larger than {MAX_HEADER_BYTES} bytes"),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ));
    }
    Ok(())
}

/// The most of a refused body read (and dropped) before answering.
const MAX_DRAIN_BYTES: u64 = 16 * 1024 * 1024;

/// Reads and drops the rest of a body that is being refused, up to
/// [`MAX_DRAIN_BYTES`], so that a client still sending it reads the
/// refusal: closing a connection with unread data makes the kernel reset
/// it, and the client would see a reset instead of the answer.
async fn drain(body: impl tokio::io::AsyncRead + Unpin) {
    let _ = tokio::io::copy(&mut body.take(MAX_DRAIN_BYTES), &mut tokio::io::sink()).await;
}

/// Refuses bodies over [`MAX_BODY_BYTES`] with a 400 that says so (a CSV
/// import or a data file over [`MAX_BULK_BYTES`] with a 413), whether or
/// not the client
/// sent a `Content-Length`; a body that cannot be read (malformed chunked
/// encoding, a client gone) is a 400 that says that.
async fn limit_body(req: &mut Request) -> poem::Result<()> {
    use poem::http::StatusCode;
    let path = req.uri().path();
    let csv = path == routes::CSV_PATH;
    let data_file = path == routes::DATA_FILE_PATH;
    let limit = if csv || data_file {
        MAX_BULK_BYTES
    } else {
        MAX_BODY_BYTES
    };
    // Made only when needed: this runs on every request.
    let too_large = || {
        let mib = MAX_BULK_BYTES / (1024 * 1024);
        if csv {
            poem::Error::from_string(
                format!(
                    "the CSV is larger than {mib} MiB; split it into smaller files and import \
                     each"
                ),
                StatusCode::PAYLOAD_TOO_LARGE,
            )
        } else if data_file {
            poem::Error::from_string(
                format!("the data file is larger than {mib} MiB"),
                StatusCode::PAYLOAD_TOO_LARGE,
            )
        } else {
            poem::Error::from_string(
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                StatusCode::BAD_REQUEST,
            )
        }
    };
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        drain(req.take_body().into_async_read()).await;
        return Err(too_large());
    }
    if declared.is_none() && req.method() != poem::http::Method::GET {
        let mut body = req.take_body().into_async_read();
        let mut bytes = Vec::new();
        match (&mut body)
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .await
        {
            Ok(read) if read > limit => {
                drain(body).await;
                return Err(too_large());
            }
            Ok(_) => req.set_body(bytes),
            Err(_) => {
                return Err(poem::Error::from_string(
                    "the request body could not be read (malformed chunked encoding?); \
                     send it again with a Content-Length",
                    StatusCode::BAD_REQUEST,
                ));
            }
        }
    }
    Ok(())
}
