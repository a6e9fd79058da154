//! The edge: the one process on the host's public ports, in front of the
//! stack's services. It routes by listener and path prefix to the targets
//! the deployer sets (`edge ctl deploy`), health-checks them continuously,
//! switches a service to a new target without failing a request, hands
//! its own sockets to a successor when it is upgraded, and terminates TLS
//! with certificates from ACME or files.
//!
//! `Edge::start` is what `main` and the tests call; see the modules for
//! each part.

pub mod acme;
pub mod config;
pub mod control;
pub mod discovery;
pub mod handover;
pub mod io;
pub mod log;
pub mod pool;
pub mod proxy;
pub mod server;
pub mod state;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{Notify, watch};

use crate::config::{Config, ListenAddress, ListenerSpec, TlsSettings};
use crate::control::{Answer, Request};
use crate::proxy::{Challenges, ListenerRoutes, Proxy};
use crate::server::{Connections, Serving, Socket};
use crate::tls::CertStore;
use crate::upstream::Upstreams;

/// How long restored targets get for their first health check before the
/// edge accepts anyway (those not answering get no traffic).
const FIRST_CHECK_BOUND: Duration = Duration::from_secs(5);

/// A listener this process serves.
pub struct Listening {
    pub spec: ListenerSpec,
    /// Where it really listens (port 0 resolved).
    pub local: String,
    /// Received from the previous edge rather than bound.
    pub inherited: bool,
}

/// The listening sockets, held until this process stops accepting: then
/// they are closed at once, so a successor started during the drain binds
/// afresh instead of connecting to a socket nobody accepts on.
struct Sockets {
    control: Arc<UnixListener>,
    /// Held only so that stopping closes it.
    _handover: Arc<UnixListener>,
    listeners: Vec<Arc<Socket>>,
}

/// A running edge.
pub struct Edge {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    upstreams: Arc<Upstreams>,
    proxy: Arc<Proxy>,
    listeners: Vec<Listening>,
    sockets: std::sync::Mutex<Option<Sockets>>,
    /// The accept, control and hand-over loops, awaited when stopping.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    draining: watch::Sender<bool>,
    connections: Arc<Connections>,
    certs: Arc<CertStore>,
    handed_over: Notify,
    was_handed_over: AtomicBool,
    started_unix: i64,
    saving: std::sync::Mutex<()>,
}

impl Edge {
    /// Takes the sockets over from a running edge (or binds them when none
    /// answers), restores the targets, checks them once, and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Edge> {
        std::fs::create_dir_all(&config.run_dir)
            .with_context(|| format!("creating EDGE_RUN_DIR {}", config.run_dir.display()))?;
        let handover_path = config.run_dir.join(handover::SOCKET_NAME);
        let control_path = config.run_dir.join(control::SOCKET_NAME);

        let received = match std::os::unix::net::UnixStream::connect(&handover_path) {
            Ok(stream) => {
                let received = tokio::task::spawn_blocking(move || handover::request(stream))
                    .await
                    .context("the hand-over thread panicked")?
                    .with_context(|| {
                        format!(
                            "an edge answers on {} but handing its sockets over failed",
                            handover_path.display()
                        )
                    })?;
                Some(received)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                None
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("connecting to {}", handover_path.display()));
            }
        };

        let unix_listener = |fd: std::os::fd::OwnedFd| -> anyhow::Result<UnixListener> {
            let std = std::os::unix::net::UnixListener::from(fd);
            std.set_nonblocking(true)?;
            Ok(UnixListener::from_std(std)?)
        };
        let (control, handover_listener, listeners, saved, pending) = match received {
            Some(received) => {
                let (message, control_fd, handover_fd, fds, pending) = received.into_parts();
                tracing::info!(
                    previous_pid = message.pid,
                    listeners = message.listeners.len(),
                    "taking over the sockets of the running edge"
                );
                let mut fds: Vec<Option<std::os::fd::OwnedFd>> =
                    fds.into_iter().map(Some).collect();
                let mut listeners = Vec::new();
                for spec in &config.listeners {
                    let shown = spec.address.to_string();
                    let index = message.listeners.iter().position(|a| *a == shown);
                    let (socket, inherited) = match index.and_then(|i| fds[i].take()) {
                        Some(fd) => (
                            server::from_fd(&spec.address, fd)
                                .with_context(|| format!("using the inherited socket {shown}"))?,
                            true,
                        ),
                        None => (bind(spec)?, false),
                    };
                    listeners.push((spec.clone(), socket, inherited));
                }
                (
                    unix_listener(control_fd)?,
                    unix_listener(handover_fd)?,
                    listeners,
                    message.state,
                    Some(pending),
                )
            }
            None => {
                let control = server::bind_unix(&control_path, 0o600)
                    .with_context(|| format!("listening on {}", control_path.display()))?;
                let handover = server::bind_unix(&handover_path, 0o600)
                    .with_context(|| format!("listening on {}", handover_path.display()))?;
                let mut listeners = Vec::new();
                for spec in &config.listeners {
                    listeners.push((spec.clone(), bind(spec)?, false));
                }
                (
                    control,
                    handover,
                    listeners,
                    state::load_or_set_aside(&config.state_dir),
                    None,
                )
            }
        };

        let upstreams = Upstreams::new(config.services(), config.health.clone());
        for (service, targets) in &saved.services {
            let targets: Vec<(String, String)> = targets
                .iter()
                .map(|t| (t.address.clone(), t.health_path.clone()))
                .collect();
            if !upstreams.restore(service, &targets) {
                tracing::warn!(
                    service,
                    "state: no listener routes to this service any more; its targets are dropped"
                );
            }
        }

        // On a swarm, DNS says where the services run (`discovery`).
        let discovery = discovery::Discovery::from_env(&config.services())
            .context("the configuration is not usable")?;
        if let Some(discovery) = &discovery {
            discovery.round(&upstreams).await;
        }

        let challenges = Arc::new(Challenges::default());
        let certs = Arc::new(CertStore::default());
        let plain_tcp = config
            .listeners
            .iter()
            .any(|l| matches!(l.address, ListenAddress::Http(_)));
        match &config.tls {
            TlsSettings::Off => {}
            TlsSettings::Files {
                cert,
                key,
                check_every,
            } => {
                let info = certs
                    .install_files(cert, key)
                    .context("EDGE_TLS_CERT_FILE/EDGE_TLS_KEY_FILE")?;
                tracing::info!(domains = ?info.domains, not_after = info.not_after, "tls: using the certificate from files");
                tokio::spawn(
                    certs
                        .clone()
                        .watch_files(cert.clone(), key.clone(), *check_every),
                );
            }
            TlsSettings::Acme(settings) => {
                let challenge = if plain_tcp {
                    challenges.enabled.store(true, Ordering::Relaxed);
                    acme::Challenge::Http01
                } else {
                    acme::Challenge::TlsAlpn01
                };
                tokio::spawn(acme::maintain(
                    settings.clone(),
                    challenge,
                    certs.clone(),
                    challenges.clone(),
                ));
            }
        }

        let proxy = Arc::new(Proxy::new(
            upstreams.clone(),
            config.limits.clone(),
            challenges,
        ));
        upstreams.first_checks(FIRST_CHECK_BOUND).await;

        let (stop, stop_rx) = watch::channel(false);
        let (draining, draining_rx) = watch::channel(false);
        let connections = Arc::new(Connections::default());
        let serving = Serving::new(
            proxy.clone(),
            config.limits.clone(),
            connections.clone(),
            draining_rx,
        );
        let mut sockets = Vec::new();
        let listeners: Vec<Listening> = listeners
            .into_iter()
            .map(|(spec, socket, inherited)| {
                let local = socket.local();
                sockets.push(Arc::new(socket));
                Listening {
                    local,
                    spec,
                    inherited,
                }
            })
            .collect();
        let https_port = listeners
            .iter()
            .find(|l| matches!(l.spec.address, ListenAddress::Https(_)))
            .and_then(|l| l.local.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok());
        let tls_acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(certs.clone()));
        let mut tasks = Vec::new();
        for (l, socket) in listeners.iter().zip(&sockets) {
            let routes = Arc::new(ListenerRoutes::new(&l.spec, &upstreams, https_port));
            let tls =
                matches!(l.spec.address, ListenAddress::Https(_)).then(|| tls_acceptor.clone());
            tasks.push(tokio::spawn(server::accept_loop(
                socket.clone(),
                routes,
                tls,
                serving.clone(),
                stop_rx.clone(),
            )));
            tracing::info!(listener = l.spec.name, address = %l.spec.address, local = l.local, inherited = l.inherited, "listening");
        }
        let control = Arc::new(control);
        let handover_listener = Arc::new(handover_listener);

        let inner = Arc::new(Inner {
            config,
            upstreams,
            proxy,
            listeners,
            sockets: std::sync::Mutex::new(Some(Sockets {
                control: control.clone(),
                _handover: handover_listener.clone(),
                listeners: sockets,
            })),
            tasks: std::sync::Mutex::new(Vec::new()),
            stop,
            draining,
            connections,
            certs,
            handed_over: Notify::new(),
            was_handed_over: AtomicBool::new(false),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            saving: std::sync::Mutex::new(()),
        });
        tasks.push(tokio::spawn(control_loop(
            inner.clone(),
            control,
            stop_rx.clone(),
        )));
        if let Some(discovery) = discovery {
            let upstreams = inner.upstreams.clone();
            tasks.push(tokio::spawn(discovery.run(upstreams, stop_rx.clone())));
        }
        tasks.push(tokio::spawn(handover_loop(
            inner.clone(),
            handover_listener,
            stop_rx,
        )));
        *inner.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;

        if let Some(pending) = pending {
            match tokio::task::spawn_blocking(move || pending.ready(Duration::from_secs(30))).await
            {
                Ok(Ok(())) => {
                    tracing::info!("the previous edge stopped accepting; this one serves alone")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the previous edge did not confirm the hand-over (it may have exited); serving")
                }
                Err(e) => tracing::warn!(error = %e, "the hand-over thread panicked; serving"),
            }
        }
        if let Err(e) = inner.save_state() {
            tracing::error!(error = %e, "cannot save the state file");
        }
        Ok(Edge { inner })
    }

    /// Where the listener `name` really listens.
    pub fn local_addr(&self, name: &str) -> Option<String> {
        self.inner
            .listeners
            .iter()
            .find(|l| l.spec.name == name)
            .map(|l| l.local.clone())
    }

    /// Resolves when a successor has taken the sockets over.
    pub async fn handed_over(&self) {
        loop {
            let notified = self.inner.handed_over.notified();
            if self.inner.was_handed_over.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    pub fn status(&self) -> serde_json::Value {
        self.inner.status()
    }

    /// Stops accepting, lets in-flight requests finish (at most
    /// `EDGE_SHUTDOWN_TIMEOUT`), stops health checks. Returns the number of
    /// connections still open at the deadline.
    pub async fn shutdown(self) -> usize {
        let inner = self.inner;
        let _ = inner.stop.send(true);
        let tasks = std::mem::take(&mut *inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            // The loops end at the stop signal; one stuck in a hand-over
            // offer is not waited for.
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        drop(
            inner
                .sockets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        inner.proxy.draining.store(true, Ordering::Relaxed);
        let _ = inner.draining.send(true);
        let open = inner.connections.count();
        tracing::info!(
            open_connections = open,
            "draining: no longer accepting; finishing in-flight requests"
        );
        let left = inner
            .connections
            .wait_closed(inner.config.limits.shutdown_timeout)
            .await;
        inner.upstreams.retire_all();
        if left > 0 {
            tracing::warn!(left, "drain timeout: closing the connections still open");
        } else {
            tracing::info!("drained: every connection finished");
        }
        left
    }
}

fn bind(spec: &ListenerSpec) -> anyhow::Result<Socket> {
    server::bind(&spec.address).with_context(|| {
        format!(
            "cannot listen on {} (listener {:?} in EDGE_LISTEN)",
            spec.address, spec.name
        )
    })
}

/// Serves until `shutdown` resolves (SIGTERM) or a successor takes over,
/// then drains and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let edge = Edge::start(config).await?;
    tokio::select! {
        () = shutdown => tracing::info!("shutdown requested"),
        () = edge.handed_over() => tracing::info!("handed over to the new edge"),
    }
    edge.shutdown().await;
    Ok(())
}

impl Inner {
    fn save_state(&self) -> Result<(), state::StateError> {
        let _one_writer = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        state::save(
            &self.config.state_dir,
            &state::State::from_snapshot(self.upstreams.snapshot()),
        )
    }

    fn status(&self) -> serde_json::Value {
        let listeners: Vec<serde_json::Value> = self
            .listeners
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.spec.name,
                    "kind": l.spec.address.kind(),
                    "address": l.spec.address.to_string(),
                    "local": l.local,
                    "redirect_https": l.spec.redirect_https,
                    "routes": l.spec.routes.iter().map(|r| serde_json::json!({
                        "prefix": r.prefix, "service": r.service})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let tls = match &self.config.tls {
            TlsSettings::Off => serde_json::json!({"mode": "off"}),
            TlsSettings::Files { cert, .. } => serde_json::json!({
                "mode": "files",
                "cert_file": cert,
                "certificates": self.certs.info(),
                "last_error": self.certs.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            }),
            TlsSettings::Acme(a) => serde_json::json!({
                "mode": "acme",
                "directory": a.directory,
                "challenge": if self.proxy.challenges.enabled.load(Ordering::Relaxed) { "http-01" } else { "tls-alpn-01" },
                "domains": a.domains,
                "certificates": self.certs.info(),
                "last_error": self.certs.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            }),
        };
        serde_json::json!({
            "edge": {
                "pid": std::process::id(),
                "pid_namespace": pid_namespace(),
                "started_at": tls::rfc3339(self.started_unix),
                "version": env!("CARGO_PKG_VERSION"),
                "open_connections": self.connections.count(),
                "serving": !*self.stop.borrow(),
            },
            "listeners": listeners,
            "services": self.upstreams.status(),
            "tls": tls,
        })
    }

    async fn answer(self: &Arc<Self>, request: Request) -> Result<serde_json::Value, String> {
        match request {
            Request::Status => Ok(self.status()),
            Request::Whoami => Ok(serde_json::json!({
                "pid": std::process::id(),
                "pid_namespace": pid_namespace(),
                "serving": !*self.stop.borrow(),
            })),
            Request::Deploy {
                service,
                targets,
                health_path,
                deploy_timeout_ms,
                drain_timeout_ms,
            } => {
                let saved = std::sync::Mutex::new(None);
                let report = self
                    .upstreams
                    .deploy(
                        &service,
                        &targets,
                        &health_path,
                        Duration::from_millis(deploy_timeout_ms),
                        Duration::from_millis(drain_timeout_ms),
                        || {
                            *saved.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(self.save_state())
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let mut value = serde_json::to_value(report).map_err(|e| e.to_string())?;
                if let Some(Err(e)) = saved.into_inner().unwrap_or_else(|p| p.into_inner()) {
                    tracing::error!(error = %e, "the switch happened but the state file was not saved");
                    value["state_error"] = serde_json::Value::String(e.to_string());
                }
                Ok(value)
            }
            Request::Remove {
                service,
                drain_timeout_ms,
            } => {
                let saved = std::sync::Mutex::new(None);
                let mut value = self
                    .upstreams
                    .remove(&service, Duration::from_millis(drain_timeout_ms), || {
                        *saved.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.save_state())
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(Err(e)) = saved.into_inner().unwrap_or_else(|p| p.into_inner()) {
                    value["state_error"] = serde_json::Value::String(e.to_string());
                }
                Ok(value)
            }
        }
    }
}

/// The pid namespace of this process (`pid:[4026531836]`): the container's
/// healthcheck compares it with the answering edge's, to know whether the
/// edge that serves is the one in its own container.
pub fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

async fn control_loop(
    inner: Arc<Inner>,
    control: Arc<UnixListener>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = control.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read.take_limited());
            let answer = match reader.read_line(&mut line).await {
                Ok(0) => return,
                Ok(_) => match serde_json::from_str::<Request>(&line) {
                    Ok(request) => match inner.answer(request).await {
                        Ok(result) => Answer {
                            ok: true,
                            result: Some(result),
                            error: None,
                        },
                        Err(error) => Answer {
                            ok: false,
                            result: None,
                            error: Some(error),
                        },
                    },
                    Err(e) => Answer {
                        ok: false,
                        result: None,
                        error: Some(format!("not a control request: {e}")),
                    },
                },
                Err(e) => Answer {
                    ok: false,
                    result: None,
                    error: Some(e.to_string()),
                },
            };
            let mut text = serde_json::to_vec(&answer).unwrap_or_default();
            text.push(b'\n');
            let _ = write.write_all(&text).await;
        });
    }
}

trait TakeLimited {
    fn take_limited(self) -> tokio::io::Take<Self>
    where
        Self: Sized;
}

impl TakeLimited for tokio::net::unix::OwnedReadHalf {
    /// A control request is a short line; this bounds a runaway client.
    fn take_limited(self) -> tokio::io::Take<Self> {
        tokio::io::AsyncReadExt::take(self, 64 * 1024)
    }
}

async fn handover_loop(
    inner: Arc<Inner>,
    handover: Arc<UnixListener>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = handover.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let std = match stream
            .into_std()
            .and_then(|s| s.set_nonblocking(false).map(|()| s))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "hand-over connection unusable");
                continue;
            }
        };
        let message = handover::Message {
            pid: std::process::id(),
            listeners: inner
                .listeners
                .iter()
                .map(|l| l.spec.address.to_string())
                .collect(),
            state: state::State::from_snapshot(inner.upstreams.snapshot()),
        };
        // Clones keep every descriptor open while the blocking thread sends it.
        let Some((control, listeners)) = inner
            .sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| (s.control.clone(), s.listeners.clone()))
        else {
            return;
        };
        let handover_fd = handover.as_raw_fd();
        tracing::info!("a new edge asks for the sockets; handing them over");
        let offered = tokio::task::spawn_blocking(move || {
            let fds: Vec<_> = listeners.iter().map(|l| l.raw_fd()).collect();
            handover::offer(
                std,
                control.as_raw_fd(),
                handover_fd,
                &fds,
                &message,
                Duration::from_secs(30),
            )
        })
        .await;
        match offered {
            Ok(Ok(stream)) => {
                let _ = inner.stop.send(true);
                // Let the accept loops see the stop before saying so.
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
                if let Err(e) =
                    tokio::task::spawn_blocking(move || handover::released(stream)).await
                {
                    tracing::warn!(error = %e, "telling the new edge we stopped failed");
                }
                inner.was_handed_over.store(true, Ordering::Release);
                inner.handed_over.notify_waiters();
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the hand-over failed; this edge keeps serving")
            }
            Err(e) => {
                tracing::warn!(error = %e, "the hand-over thread panicked; this edge keeps serving")
            }
        }
    }
}

/// `$EDGE_RUN_DIR` as `edge ctl` and `edge healthcheck` see it.
pub fn run_dir_from_env() -> PathBuf {
    std::env::var_os("EDGE_RUN_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/run/edge"), PathBuf::from)
}

/// `edge healthcheck`: healthy when an edge answers on the control socket,
/// is serving, and is in this process's pid namespace (in Docker: the edge
/// of this very container, not the one it is taking over from).
pub fn healthcheck(run_dir: &std::path::Path) -> anyhow::Result<()> {
    let who = control::call(run_dir, &Request::Whoami, Duration::from_secs(3))?;
    if who["serving"] != serde_json::Value::Bool(true) {
        bail!(
            "the edge answering (pid {}) has stopped serving",
            who["pid"]
        );
    }
    let mine = pid_namespace();
    if who["pid_namespace"].as_str() != Some(mine.as_str()) {
        bail!(
            "the edge answering on the control socket is another one (pid {} in {}), not this \
             container's ({mine}): the hand-over has not happened yet",
            who["pid"],
            who["pid_namespace"]
        );
    }
    Ok(())
}
