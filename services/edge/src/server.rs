//! Listening sockets and the connections on them: accept, TLS handshake,
//! HTTP/1 and HTTP/2 through hyper-util, the header-read and idle
//! timeouts, and the drain when this process stops accepting.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};

use crate::config::{Limits, ListenAddress};
use crate::proxy::{ListenerRoutes, Proxy};

/// How long a keep-alive connection gets, once this process drains, to send
/// its next request (answered with `Connection: close`) before it is closed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// A listening socket this process accepts on.
pub enum Socket {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Socket {
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Socket::Tcp(l) => l.as_raw_fd(),
            Socket::Unix(l) => l.as_raw_fd(),
        }
    }

    /// The address it really listens on (port 0 resolved).
    pub fn local(&self) -> String {
        match self {
            Socket::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            Socket::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_else(|| "?".into()),
        }
    }
}

/// Binds a fresh socket for `address`; a stale unix socket file (no one
/// accepting) is removed first.
pub fn bind(address: &ListenAddress) -> std::io::Result<Socket> {
    match address {
        ListenAddress::Http(a) | ListenAddress::Https(a) => {
            let socket = if a.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.set_nodelay(true)?;
            socket.bind(*a)?;
            Ok(Socket::Tcp(socket.listen(1024)?))
        }
        ListenAddress::Unix(path) => Ok(Socket::Unix(bind_unix(path, 0o666)?)),
    }
}

/// Binds a unix socket at `path` with `mode`, replacing a stale file.
pub fn bind_unix(path: &Path, mode: u32) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    remove_stale(path)?;
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Removes a socket file nobody accepts on; refuses to touch a live one.
fn remove_stale(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{} is in use by a running process", path.display()),
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

/// Wraps a received descriptor in the socket type its listener needs.
pub fn from_fd(address: &ListenAddress, fd: OwnedFd) -> std::io::Result<Socket> {
    match address {
        ListenAddress::Http(_) | ListenAddress::Https(_) => {
            let std = std::net::TcpListener::from(fd);
            std.set_nonblocking(true)?;
            Ok(Socket::Tcp(tokio::net::TcpListener::from_std(std)?))
        }
        ListenAddress::Unix(_) => {
            let std = std::os::unix::net::UnixListener::from(fd);
            std.set_nonblocking(true)?;
            Ok(Socket::Unix(tokio::net::UnixListener::from_std(std)?))
        }
    }
}

/// Counts open connections so a drain knows when it is done.
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
    closed: Notify,
}

struct ConnectionGuard(Arc<Connections>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

impl Connections {
    fn open(self: &Arc<Self>) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Waits until every connection closed or `timeout`; returns how many
    /// are left.
    pub async fn wait_closed(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.closed.notified();
            let left = self.count();
            let now = Instant::now();
            if left == 0 || now >= deadline {
                return left;
            }
            let _ =
                tokio::time::timeout((deadline - now).min(Duration::from_millis(100)), notified)
                    .await;
        }
    }
}

/// Everything a connection needs.
pub struct Serving {
    pub proxy: Arc<Proxy>,
    pub limits: Limits,
    pub connections: Arc<Connections>,
    /// Flips to true when this process drains (hand-over or SIGTERM).
    pub draining: watch::Receiver<bool>,
    builder: auto::Builder<TokioExecutor>,
}

impl Serving {
    pub fn new(
        proxy: Arc<Proxy>,
        limits: Limits,
        connections: Arc<Connections>,
        draining: watch::Receiver<bool>,
    ) -> Arc<Serving> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(64 * 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256);
        Arc::new(Serving {
            proxy,
            limits,
            connections,
            draining,
            builder,
        })
    }
}

/// Accepts on `socket` until `stop` turns true.
pub async fn accept_loop(
    socket: Arc<Socket>,
    routes: Arc<ListenerRoutes>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    serving: Arc<Serving>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = accept(&socket) => accepted,
        };
        match accepted {
            Ok((Accepted::Tcp(stream), peer)) => {
                let _ = stream.set_nodelay(true);
                let guard = serving.connections.open();
                let (routes, serving, tls) = (routes.clone(), serving.clone(), tls.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    match tls {
                        None => serve(stream, peer, routes, serving).await,
                        Some(acceptor) => {
                            let timeout = serving.limits.header_timeout;
                            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => {
                                    let acme = stream.get_ref().1.alpn_protocol()
                                        == Some(crate::tls::ACME_TLS_ALPN);
                                    if !acme {
                                        serve(stream, peer, routes, serving).await;
                                    }
                                }
                                Ok(Err(e)) => tracing::info!(
                                    target: "connection", client = ?peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::info!(
                                    target: "connection", client = ?peer, "TLS handshake timed out"),
                            }
                        }
                    }
                });
            }
            Ok((Accepted::Unix(stream), _)) => {
                let guard = serving.connections.open();
                let (routes, serving) = (routes.clone(), serving.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    serve(stream, None, routes, serving).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: keep the loop alive, do not spin.
                tracing::error!(listener = %routes.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(socket: &Socket) -> std::io::Result<(Accepted, Option<SocketAddr>)> {
    match socket {
        Socket::Tcp(l) => l
            .accept()
            .await
            .map(|(s, peer)| (Accepted::Tcp(s), Some(peer))),
        Socket::Unix(l) => l.accept().await.map(|(s, _)| (Accepted::Unix(s), None)),
    }
}

async fn serve<S>(
    stream: S,
    peer: Option<SocketAddr>,
    routes: Arc<ListenerRoutes>,
    serving: Arc<Serving>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(AtomicU64::new(now_ms()));
    let io = TokioIo::new(Watched {
        inner: crate::io::Gathered(stream),
        activity: activity.clone(),
    });
    let proxy = serving.proxy.clone();
    let client = peer.and_then(crate::proxy::ClientIp::new);
    let service = service_fn(move |request| proxy.handle(request, &routes, client.clone()));
    let connection = serving.builder.serve_connection(io, service);
    tokio::pin!(connection);
    let idle = serving.limits.idle_timeout;
    let mut draining = serving.draining.clone();
    let mut drain_seen = *draining.borrow();
    let mut grace = Box::pin(tokio::time::sleep(if drain_seen {
        Duration::ZERO
    } else {
        Duration::from_secs(365 * 86400)
    }));
    let mut shutdown_sent = false;
    let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(50)));
    tick.tick().await;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    let message = crate::upstream::error_chain(e.as_ref());
                    // Clients closing an idle keep-alive connection are normal.
                    if !message.contains("connection closed before message completed") {
                        tracing::info!(target: "connection", client = ?peer, error = %message, "connection ended with an error");
                    }
                }
                return;
            }
            changed = draining.changed(), if !drain_seen => {
                if changed.is_err() || *draining.borrow() {
                    drain_seen = true;
                    grace.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                }
            }
            () = &mut grace, if drain_seen && !shutdown_sent => {
                shutdown_sent = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                let quiet = now_ms().saturating_sub(activity.load(Ordering::Relaxed));
                if quiet >= idle.as_millis() as u64 {
                    tracing::info!(target: "connection", client = ?peer, idle = ?idle, "closing a connection idle for the idle timeout");
                    return;
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A stream that notes when bytes last moved, for the idle timeout.
struct Watched<S> {
    inner: S,
    activity: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.store(now_ms(), Ordering::Relaxed);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.store(now_ms(), Ordering::Relaxed);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.store(now_ms(), Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
