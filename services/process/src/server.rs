//! Serving a poem endpoint over TCP with the limits poem's own `Server`
//! lacks, for both the API and the UI.
//!
//! poem 3's `Server` has an idle timeout but no header-read timeout, no
//! per-request timeout and no connection cap, so one client holding sockets
//! open (or sending a request a byte at a time) could exhaust the process,
//! and a slow client held shutdown for the whole grace period. [`serve`]
//! drives hyper itself, with poem's endpoint as the service, and applies
//! [`ServerLimits`]:
//!
//! - a request's head must arrive within `header_read_timeout` (HTTP/1;
//!   hyper closes the connection otherwise);
//! - a connection with no request in flight for `idle_timeout` is closed
//!   (HTTP/1 keep-alive and HTTP/2 alike);
//! - a request whose answer takes longer than `request_timeout` gets a JSON
//!   503 and the handler is dropped;
//! - at most `max_connections` are open: a new connection beyond the cap
//!   takes the place of the connection idle the longest (no request in
//!   flight), so idle or half-sent sockets can never starve `/healthz`; when
//!   every connection is busy, the new one gets a JSON 503 and is closed at
//!   once;
//! - on shutdown, idle connections are closed, in-flight requests get
//!   `shutdown_grace` to finish, and then every connection is dropped, so
//!   the process stops within Docker's default 10 s stop timeout whatever a
//!   client does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoEndpoint, Response};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The limits [`serve`] applies. The defaults suit a small service behind
/// a proxy; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections open at once; see the module doc for who gives way.
    pub max_connections: usize,
    /// How long a client may take to send a request's head (HTTP/1),
    /// counted from when the server starts waiting for it.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// How long one request may take, body and handler included.
    pub request_timeout: Duration,
    /// How long shutdown waits for in-flight requests before it drops
    /// every connection.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            // Docker sends SIGKILL 10 s after SIGTERM: leave room to exit.
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// One open connection, as the cap sees it.
struct Connection {
    /// Requests being answered on it now.
    in_flight: AtomicUsize,
    /// When a request last started or ended, in ms since the server started.
    last_active_ms: AtomicU64,
    /// Cancelled to close the connection (evicted by a newer one).
    close: CancellationToken,
}

/// Every open connection, by id.
struct Registry {
    started: Instant,
    max: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Admits a new connection, closing the longest-idle one if the cap is
    /// reached; `None` when every open connection is busy.
    fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= self.max {
            let victim = open
                .iter()
                .filter(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, c)| c.last_active_ms.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            if let Some(victim) = open.remove(&victim) {
                victim.close.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(self.now_ms()),
            close: CancellationToken::new(),
        });
        open.insert(id, Arc::clone(&connection));
        Some(Admitted {
            registry: Arc::clone(self),
            id,
            connection,
        })
    }
}

/// A connection's place in the registry, given back when dropped.
struct Admitted {
    registry: Arc<Registry>,
    id: u64,
    connection: Arc<Connection>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.registry.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(&self.id);
    }
}

/// Marks a request in flight on its connection while it lives.
struct Busy<'a> {
    registry: &'a Registry,
    connection: &'a Connection,
}

impl<'a> Busy<'a> {
    fn start(registry: &'a Registry, connection: &'a Connection) -> Busy<'a> {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        connection
            .last_active_ms
            .store(registry.now_ms(), Ordering::Relaxed);
        Busy {
            registry,
            connection,
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.connection
            .last_active_ms
            .store(self.registry.now_ms(), Ordering::Relaxed);
        self.connection.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The JSON error answered by the server itself, outside any handler.
/// `message` is a literal of ours: nothing in it needs escaping.
fn json_error(status: StatusCode, message: &'static str) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(format!("{{\"error\":\"{message}\"}}"))
}

/// What a connection refused at the cap is sent before it is closed.
const SHED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json; charset=utf-8\r\n\
content-length: 69\r\nretry-after: 1\r\nconnection: close\r\n\r\n\
{\"error\":\"the server is at its connection limit; retry in a moment\"}\n";

/// Serves `endpoint` on `listener` with `limits` until `shutdown`
/// resolves, then shuts down as the module doc says.
pub async fn serve(
    listener: std::net::TcpListener,
    endpoint: impl IntoEndpoint<Endpoint: 'static>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let local = listener.local_addr()?;
    let endpoint = Arc::new(endpoint.into_endpoint().map_to_response());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let registry = Arc::new(Registry {
        started: Instant::now(),
        max: limits.max_connections.max(1),
        next_id: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
    });
    let graceful = CancellationToken::new();
    let force = CancellationToken::new();
    let mut tasks = JoinSet::new();

    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = registry.admit() else {
            tracing::warn!(client = %remote, "connection limit reached; refusing a connection");
            let _ = stream.try_write(SHED_RESPONSE);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(serve_connection(ConnectionTask {
            stream,
            local,
            remote,
            endpoint: Arc::clone(&endpoint),
            builder: Arc::clone(&builder),
            admitted,
            limits,
            graceful: graceful.clone(),
            force: force.clone(),
        }));
    }

    drop(listener);
    graceful.cancel();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown grace over; closing the remaining connections"
        );
        force.cancel();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

struct ConnectionTask<E> {
    stream: tokio::net::TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    endpoint: Arc<E>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    admitted: Admitted,
    limits: ServerLimits,
    graceful: CancellationToken,
    force: CancellationToken,
}

async fn serve_connection<E: Endpoint<Output = Response> + 'static>(task: ConnectionTask<E>) {
    let ConnectionTask {
        stream,
        local,
        remote,
        endpoint,
        builder,
        admitted,
        limits,
        graceful,
        force,
    } = task;
    let registry = Arc::clone(&admitted.registry);
    let connection = Arc::clone(&admitted.connection);
    let service = {
        let connection = Arc::clone(&connection);
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let endpoint = Arc::clone(&endpoint);
            let registry = Arc::clone(&registry);
            let connection = Arc::clone(&connection);
            // Boxed, as is the endpoint's future below: both are large
            // (every middleware's state nested), and hyper and `timeout`
            // would otherwise copy them on every move, on every request.
            Box::pin(async move {
                let _busy = Busy::start(&registry, &connection);
                let req = poem::Request::from((
                    req,
                    poem::web::LocalAddr(poem::Addr::SocketAddr(local)),
                    poem::web::RemoteAddr(poem::Addr::SocketAddr(remote)),
                    poem::http::uri::Scheme::HTTP,
                ));
                let response = Box::pin(endpoint.get_response(req));
                let response = match tokio::time::timeout(limits.request_timeout, response).await {
                    Ok(response) => response,
                    Err(_) => {
                        tracing::warn!(client = %remote, "request timed out");
                        json_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the request took too long and was abandoned; retry later",
                        )
                    }
                };
                Ok::<_, Infallible>(hyper::Response::<BoxBody<Bytes, std::io::Error>>::from(
                    response,
                ))
            })
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let registry = &admitted.registry;
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            () = connection.close.cancelled() => break,
            () = force.cancelled() => break,
            () = idle(registry, &connection, limits.idle_timeout) => break,
            () = graceful.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves once `connection` has had no request in flight for `timeout`.
async fn idle(registry: &Registry, connection: &Connection, timeout: Duration) {
    let timeout_ms = timeout.as_millis() as u64;
    loop {
        let last = connection.last_active_ms.load(Ordering::Relaxed);
        let idle_for = registry.now_ms().saturating_sub(last);
        if idle_for >= timeout_ms && connection.in_flight.load(Ordering::Acquire) == 0 {
            return;
        }
        let wait = timeout_ms.saturating_sub(idle_for).max(10);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shed_response_declares_its_body_length() {
        let text = std::str::from_utf8(SHED_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
