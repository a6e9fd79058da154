//! The services behind the edge and their targets: which target is
//! healthy, how many requests each has in flight, and the `deploy` switch
//! with its drain.
//!
//! Every target is health-checked continuously (`GET <health path>`, 2xx =
//! healthy), not only while a deploy waits on it: a target that dies later
//! is taken out after `failures` consecutive failed checks and put back
//! after one good one. A new or restored target gets no traffic before its
//! first good check. The pool of a service is swapped atomically (ArcSwap),
//! so the request path never takes a lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::HealthSettings;

/// How often a target that has never been healthy is checked: a deploy
/// waits on it, so it should not wait a whole interval for nothing.
const FIRST_CHECK_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not checked yet (new or restored): gets no traffic.
    Unknown,
    Healthy,
    Unhealthy,
}

/// One running instance of a service, `host:port`.
pub struct Target {
    pub address: String,
    /// `address` as a Host header, for requests that came without one.
    pub host: http::HeaderValue,
    /// Kept-alive connections to it, idle between requests.
    pub(crate) connections: crate::pool::Connections,
    pub health_path: String,
    health: AtomicU8,
    ever_healthy: AtomicBool,
    failures: AtomicU32,
    in_flight: AtomicUsize,
    served: AtomicU64,
    /// Woken when `in_flight` drops to zero (the drain waits on it) and when
    /// health changes (a deploy waits on it).
    changed: Notify,
    retired: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Target {
    fn new(address: String, health_path: String) -> Arc<Target> {
        let host = http::HeaderValue::from_str(&address)
            // Callers check `valid_target` first; a placeholder keeps this total.
            .unwrap_or_else(|_| http::HeaderValue::from_static("invalid.invalid:1"));
        Arc::new(Target {
            host,
            connections: crate::pool::Connections::default(),
            address,
            health_path,
            health: AtomicU8::new(Health::Unknown as u8),
            ever_healthy: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            changed: Notify::new(),
            retired: AtomicBool::new(false),
            last_error: Mutex::new(None),
        })
    }

    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts a request against this target until the guard is dropped
    /// (after the response body has been sent).
    pub fn start_request(self: &Arc<Target>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// A connect error on the request path: count it as a failed check, so
    /// a dead target leaves the pool without waiting for the next check.
    pub fn connect_failed(&self, error: &str) {
        self.record(false, Some(error.to_string()), 1);
    }

    fn record(&self, ok: bool, error: Option<String>, threshold: u32) {
        let before = self.health();
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            self.health.store(Health::Healthy as u8, Ordering::Relaxed);
            self.ever_healthy.store(true, Ordering::Relaxed);
        } else {
            let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            // A target that was never healthy (or is already out) stays out;
            // a healthy one goes out after `threshold` consecutive failures.
            let out = before != Health::Healthy || failures >= threshold;
            if out {
                self.health
                    .store(Health::Unhealthy as u8, Ordering::Relaxed);
            }
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
        }
        if before != self.health() {
            match self.health() {
                Health::Healthy => tracing::info!(target = %self.address, "target is healthy"),
                Health::Unhealthy => tracing::warn!(
                    target = %self.address,
                    error = self.last_error().unwrap_or_default(),
                    "target is unhealthy: it gets no new requests"
                ),
                Health::Unknown => {}
            }
        }
        self.changed.notify_waiters();
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn usable(&self) -> bool {
        self.health() == Health::Healthy
    }

    fn status(&self) -> TargetStatus {
        TargetStatus {
            address: self.address.clone(),
            health_path: self.health_path.clone(),
            health: self.health(),
            in_flight: self.in_flight(),
            served: self.served.load(Ordering::Relaxed),
            last_error: self.last_error(),
        }
    }
}

/// The in-flight count of one request on one target.
pub struct InFlight(Arc<Target>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

/// One routed service and its current targets.
pub struct Service {
    pub name: String,
    pub(crate) pool: ArcSwap<Vec<Arc<Target>>>,
    next: AtomicUsize,
    /// One deploy or remove at a time per service.
    pub(crate) switching: tokio::sync::Mutex<()>,
}

impl Service {
    /// Picks a target for a request: round robin over the healthy ones,
    /// skipping `avoid`. With none healthy, a target that was healthy
    /// before is still tried (a health check can fail under load; a
    /// request then has a chance, and a connect error is retried).
    pub fn pick(&self, avoid: Option<&Arc<Target>>) -> Option<Arc<Target>> {
        let pool = self.pool.load();
        let n = pool.len();
        if n == 0 {
            return None;
        }
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed)
        };
        let skip = |t: &Arc<Target>| avoid.is_some_and(|a| Arc::ptr_eq(a, t));
        for i in 0..n {
            let t = &pool[(start + i) % n];
            if t.usable() && !skip(t) {
                return Some(t.clone());
            }
        }
        for i in 0..n {
            let t = &pool[(start + i) % n];
            if t.ever_healthy.load(Ordering::Relaxed) && !skip(t) {
                return Some(t.clone());
            }
        }
        None
    }

    pub fn targets(&self) -> Arc<Vec<Arc<Target>>> {
        self.pool.load_full()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub address: String,
    pub health_path: String,
    pub health: Health,
    pub in_flight: usize,
    pub served: u64,
    pub last_error: Option<String>,
}

/// What `deploy` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    pub service: String,
    /// The first (usually the only) new target.
    pub target: String,
    pub targets: Vec<String>,
    pub previous: Vec<String>,
    /// Every previous target finished its in-flight requests in time.
    pub drained: bool,
    pub in_flight_left: usize,
    pub healthy_after_ms: u64,
    pub drained_after_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("no listener routes to a service named {0:?} (routed services: {1})")]
    UnknownService(String, String),
    #[error(
        "target {target} of {service} did not turn healthy within {timeout:?} \
         (GET {path}: {last}); nothing changed, the previous target keeps serving"
    )]
    NeverHealthy {
        service: String,
        target: String,
        path: String,
        timeout: Duration,
        last: String,
    },
    #[error("the target {0:?} is not HOST:PORT (at least one --target is needed)")]
    BadTarget(String),
}

/// All services and the health checker.
pub struct Upstreams {
    services: BTreeMap<String, Arc<Service>>,
    health: HealthSettings,
    checker: Client<HttpConnector, Empty<Bytes>>,
}

impl Upstreams {
    pub fn new(names: impl IntoIterator<Item = String>, health: HealthSettings) -> Arc<Upstreams> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(health.timeout));
        let checker = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Arc::new(Upstreams {
            services: names
                .into_iter()
                .map(|name| {
                    let service = Arc::new(Service {
                        name: name.clone(),
                        pool: ArcSwap::from_pointee(Vec::new()),
                        next: AtomicUsize::new(0),
                        switching: tokio::sync::Mutex::new(()),
                    });
                    (name, service)
                })
                .collect(),
            health,
            checker,
        })
    }

    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.get(name)
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }

    fn known(&self) -> String {
        self.services.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Puts targets in place without waiting (restoring state at start);
    /// each is checked before it gets traffic.
    pub fn restore(self: &Arc<Self>, service: &str, targets: &[(String, String)]) -> bool {
        let Some(svc) = self.services.get(service) else {
            return false;
        };
        let pool: Vec<Arc<Target>> = targets
            .iter()
            .filter(|(address, _)| {
                let ok = valid_target(address);
                if !ok {
                    tracing::warn!(service, target = %address, "state: ignoring a target that is not HOST:PORT");
                }
                ok
            })
            .map(|(address, path)| self.spawn_target(address.clone(), path.clone()))
            .collect();
        svc.pool.store(Arc::new(pool));
        true
    }

    /// Waits until every target has had its first check (or `bound` passed):
    /// the edge starts accepting after this, so restored targets that are
    /// alive serve from the first request.
    pub async fn first_checks(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        for svc in self.services.values() {
            for t in svc.targets().iter() {
                while t.health() == Health::Unknown && Instant::now() < deadline {
                    let notified = t.changed.notified();
                    if t.health() != Health::Unknown {
                        break;
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
                }
            }
        }
    }

    pub(crate) fn spawn_target(
        self: &Arc<Self>,
        address: String,
        health_path: String,
    ) -> Arc<Target> {
        let target = Target::new(address, health_path);
        let upstreams = self.clone();
        let t = target.clone();
        tokio::spawn(async move { upstreams.check_forever(t).await });
        target
    }

    async fn check_forever(&self, target: Arc<Target>) {
        while !target.retired.load(Ordering::Relaxed) {
            let result = self.check_once(&target).await;
            if target.retired.load(Ordering::Relaxed) {
                break;
            }
            match result {
                Ok(()) => target.record(true, None, self.health.failures),
                Err(e) => target.record(false, Some(e), self.health.failures),
            }
            let pause = if target.ever_healthy.load(Ordering::Relaxed) {
                self.health.interval
            } else {
                FIRST_CHECK_INTERVAL.min(self.health.interval)
            };
            tokio::time::sleep(pause).await;
        }
    }

    async fn check_once(&self, target: &Target) -> Result<(), String> {
        let uri: http::Uri = format!("http://{}{}", target.address, target.health_path)
            .parse()
            .map_err(|e| format!("bad health URL: {e}"))?;
        let request = http::Request::get(uri)
            .header(http::header::USER_AGENT, "student-ages-edge health check")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(self.health.timeout, self.checker.request(request))
            .await
            .map_err(|_| format!("no answer within {:?}", self.health.timeout))?
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        // Drain the body so the connection can be reused.
        let _ = tokio::time::timeout(
            self.health.timeout,
            http_body_util::BodyExt::collect(response.into_body()),
        )
        .await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }

    /// `edge ctl deploy`: health-gate the new targets (all of them), switch
    /// the service to them at once, drain the previous ones.
    #[allow(clippy::too_many_arguments)]
    pub async fn deploy(
        self: &Arc<Self>,
        service: &str,
        addresses: &[String],
        health_path: &str,
        deploy_timeout: Duration,
        drain_timeout: Duration,
        after_switch: impl FnOnce(),
    ) -> Result<DeployReport, SwitchError> {
        let svc = self
            .services
            .get(service)
            .ok_or_else(|| SwitchError::UnknownService(service.into(), self.known()))?
            .clone();
        if addresses.is_empty() {
            return Err(SwitchError::BadTarget(String::new()));
        }
        if let Some(bad) = addresses.iter().find(|a| !valid_target(a)) {
            return Err(SwitchError::BadTarget(bad.clone()));
        }
        let _one_at_a_time = svc.switching.lock().await;
        let started = Instant::now();
        let current = svc.targets();
        let mut fresh = Vec::new();
        let targets: Vec<Arc<Target>> = addresses
            .iter()
            .map(|address| {
                match current
                    .iter()
                    .find(|t| t.address == *address && t.health_path == health_path)
                {
                    Some(t) => t.clone(),
                    None => {
                        let t = self.spawn_target(address.clone(), health_path.into());
                        fresh.push(t.clone());
                        t
                    }
                }
            })
            .collect();
        tracing::info!(service, targets = ?addresses, health_path, "deploy: waiting for the new target to turn healthy");
        let deadline = started + deploy_timeout;
        for target in &targets {
            loop {
                let notified = target.changed.notified();
                if target.health() == Health::Healthy {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    for t in &fresh {
                        t.retired.store(true, Ordering::Relaxed);
                    }
                    let last = target
                        .last_error()
                        .unwrap_or_else(|| "no answer yet".into());
                    tracing::warn!(service, target = %target.address, last, "deploy refused: the target never turned healthy");
                    return Err(SwitchError::NeverHealthy {
                        service: service.into(),
                        target: target.address.clone(),
                        path: health_path.into(),
                        timeout: deploy_timeout,
                        last,
                    });
                }
                let _ = tokio::time::timeout(
                    (deadline - now).min(Duration::from_millis(100)),
                    notified,
                )
                .await;
            }
        }
        let healthy_after = started.elapsed();
        let previous: Vec<Arc<Target>> = current
            .iter()
            .filter(|t| !targets.iter().any(|n| Arc::ptr_eq(t, n)))
            .cloned()
            .collect();
        svc.pool.store(Arc::new(targets));
        tracing::info!(
            service,
            targets = ?addresses,
            previous = ?previous.iter().map(|t| &t.address).collect::<Vec<_>>(),
            "deploy: switched; new requests go to the new target"
        );
        after_switch();
        let (drained, left) = drain(&previous, drain_timeout).await;
        Ok(DeployReport {
            service: service.into(),
            target: addresses[0].clone(),
            targets: addresses.to_vec(),
            previous: previous.iter().map(|t| t.address.clone()).collect(),
            drained,
            in_flight_left: left,
            healthy_after_ms: healthy_after.as_millis() as u64,
            drained_after_ms: (started.elapsed() - healthy_after).as_millis() as u64,
        })
    }

    /// `edge ctl remove`: the service keeps its routes but has no target
    /// (503); the old targets drain.
    pub async fn remove(
        &self,
        service: &str,
        drain_timeout: Duration,
        after_switch: impl FnOnce(),
    ) -> Result<serde_json::Value, SwitchError> {
        let svc = self
            .services
            .get(service)
            .ok_or_else(|| SwitchError::UnknownService(service.into(), self.known()))?
            .clone();
        let _one_at_a_time = svc.switching.lock().await;
        let previous = svc.pool.swap(Arc::new(Vec::new()));
        after_switch();
        let (drained, left) = drain(&previous, drain_timeout).await;
        Ok(serde_json::json!({
            "service": service,
            "previous": previous.iter().map(|t| t.address.clone()).collect::<Vec<_>>(),
            "drained": drained,
            "in_flight_left": left,
        }))
    }

    /// The targets of every service, as the state file keeps them.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<(String, String)>> {
        self.services
            .iter()
            .map(|(name, svc)| {
                (
                    name.clone(),
                    svc.targets()
                        .iter()
                        .map(|t| (t.address.clone(), t.health_path.clone()))
                        .collect(),
                )
            })
            .collect()
    }

    pub fn status(&self) -> BTreeMap<String, Vec<TargetStatus>> {
        self.services
            .iter()
            .map(|(name, svc)| {
                (
                    name.clone(),
                    svc.targets().iter().map(|t| t.status()).collect(),
                )
            })
            .collect()
    }

    /// Stops every health check (the process is handing over or exiting).
    pub fn retire_all(&self) {
        for svc in self.services.values() {
            for t in svc.targets().iter() {
                t.retired.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Retires `targets` and waits until their in-flight requests finished,
/// at most `timeout`. Returns (all drained, requests still in flight).
pub(crate) async fn drain(targets: &[Arc<Target>], timeout: Duration) -> (bool, usize) {
    for t in targets {
        t.retired.store(true, Ordering::Relaxed);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left: usize = targets.iter().map(|t| t.in_flight()).sum();
        let now = Instant::now();
        if left == 0 || now >= deadline {
            if left > 0 {
                tracing::warn!(
                    left,
                    "drain: in-flight requests still running at the drain timeout"
                );
            }
            return (left == 0, left);
        }
        // Notify has no "wait on any of these"; a short poll bounds the wait.
        let wait = (deadline - now).min(Duration::from_millis(20));
        match targets.iter().find(|t| t.in_flight() > 0) {
            Some(t) => {
                let _ = tokio::time::timeout(wait, t.changed.notified()).await;
            }
            None => continue,
        }
    }
}

/// `host:port` with a port.
pub fn valid_target(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && port.parse::<u16>().is_ok_and(|p| p > 0)
                && !address.contains('/')
                && !address.contains(char::is_whitespace)
                && address.parse::<http::uri::Authority>().is_ok()
        }
        None => false,
    }
}

/// An error and its sources on one line (hyper's top-level messages say
/// little: "client error (Connect)").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let message = s.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = s.source();
    }
    text
}
