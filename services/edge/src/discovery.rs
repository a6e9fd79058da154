//! Targets found by DNS instead of set by the deployer: on a Docker Swarm
//! the edge runs on every node and a service's tasks come and go on any of
//! them, so no one can tell each edge where they are. Swarm's DNS can:
//! `tasks.<service>` answers with the address of every task of a `dnsrr`
//! service on the overlay network.
//!
//! `EDGE_DISCOVER` names, per routed service, the DNS name and the port and
//! health path of its targets:
//!
//! ```text
//! EDGE_DISCOVER="api=tasks.stack_api:5000/healthz; frontend=tasks.stack_frontend:8080/healthz"
//! EDGE_DISCOVER_INTERVAL=1s   # how often each name is asked again
//! ```
//!
//! Each round asks the nameserver of `/etc/resolv.conf` (Docker's embedded
//! DNS, 127.0.0.11, in a container on a user-defined network) for the
//! names' A records, directly over UDP: nothing caches the answer (Docker
//! gives it a TTL of 600 s), and a static binary in a `scratch` image has no
//! NSS modules for libc's resolver to load. The service's pool becomes what
//! DNS lists: an address already there keeps its target (and its health);
//! a new one gets a target that receives no request before its first good
//! health check; one DNS no longer lists is taken out and drained, unless
//! no target left is healthy yet (the last task of a service being replaced
//! serves until its successor is checked). A failed lookup changes nothing,
//! so a DNS hiccup never empties a pool.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::config::{ConfigError, parse_duration};
use crate::upstream::{Health, Upstreams};

/// Docker's embedded DNS, when resolv.conf names no nameserver.
const EMBEDDED_DNS: &str = "127.0.0.11:53";
/// How long one DNS answer may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a target DNS no longer lists may finish its requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One service whose targets DNS says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub service: String,
    /// The name asked (`tasks.<swarm service>`).
    pub name: String,
    pub port: u16,
    pub health_path: String,
}

/// What `EDGE_DISCOVER` configures.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub entries: Vec<Entry>,
    pub interval: Duration,
    nameserver: SocketAddr,
}

impl Discovery {
    /// From the process environment; `None` when `EDGE_DISCOVER` is unset
    /// (the deployer sets targets with `edge ctl deploy`).
    pub fn from_env(services: &BTreeSet<String>) -> Result<Option<Discovery>, ConfigError> {
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Discovery::from_lookup(
            |key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()),
            services,
            &resolv,
        )
    }

    /// From `var`, for the routed `services`, asking the first nameserver
    /// of `resolv_conf`.
    pub fn from_lookup(
        var: impl Fn(&str) -> Option<String>,
        services: &BTreeSet<String>,
        resolv_conf: &str,
    ) -> Result<Option<Discovery>, ConfigError> {
        let Some(text) = var("EDGE_DISCOVER") else {
            return Ok(None);
        };
        let bad = |problem: String| ConfigError::Value {
            var: "EDGE_DISCOVER",
            value: text.clone(),
            problem,
        };
        let mut entries = Vec::new();
        for item in text
            .split([';', ','])
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let shape = || {
                format!(
                    "{item:?} is not SERVICE=NAME:PORT[/HEALTH_PATH], such as \
                     api=tasks.stack_api:5000/healthz"
                )
            };
            let (service, rest) = item.split_once('=').ok_or_else(|| bad(shape()))?;
            let (address, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/healthz"),
            };
            let (name, port) = address.rsplit_once(':').ok_or_else(|| bad(shape()))?;
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(shape()))?;
            let (service, name) = (service.trim(), name.trim());
            if name.is_empty() || !name.is_ascii() || name.contains(char::is_whitespace) {
                return Err(bad(shape()));
            }
            if !services.contains(service) {
                return Err(bad(format!(
                    "no listener routes to a service named {service:?} (routed: {})",
                    services.iter().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            entries.push(Entry {
                service: service.to_owned(),
                name: name.to_owned(),
                port,
                health_path: path.to_owned(),
            });
        }
        if entries.is_empty() {
            return Err(bad("names no service".into()));
        }
        let interval = match var("EDGE_DISCOVER_INTERVAL") {
            None => Duration::from_secs(1),
            Some(v) => parse_duration(&v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| ConfigError::Value {
                    var: "EDGE_DISCOVER_INTERVAL",
                    value: v,
                    problem: "expected a duration above zero, such as 2s".into(),
                })?,
        };
        Ok(Some(Discovery {
            entries,
            interval,
            nameserver: nameserver(resolv_conf),
        }))
    }

    /// Asks DNS once for every entry and sets the pools to the answers.
    pub async fn round(&self, upstreams: &Arc<Upstreams>) {
        for entry in &self.entries {
            match resolve_a(self.nameserver, &entry.name, LOOKUP_TIMEOUT).await {
                Ok(ips) => {
                    let mut addresses: Vec<String> = ips
                        .iter()
                        .map(|ip| format!("{ip}:{}", entry.port))
                        .collect();
                    addresses.sort();
                    addresses.dedup();
                    set_targets(upstreams, &entry.service, &addresses, &entry.health_path).await;
                }
                Err(error) => tracing::warn!(
                    service = entry.service,
                    name = entry.name,
                    %error,
                    "discovery: lookup failed; the targets stay as they are"
                ),
            }
        }
    }

    /// Runs rounds every `interval` until `stop` turns true.
    pub async fn run(self, upstreams: Arc<Upstreams>, mut stop: watch::Receiver<bool>) {
        tracing::info!(
            entries = ?self.entries.iter().map(|e| format!("{}={}:{}", e.service, e.name, e.port)).collect::<Vec<_>>(),
            interval = ?self.interval,
            nameserver = %self.nameserver,
            "discovery: targets come from DNS"
        );
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            self.round(&upstreams).await;
        }
    }
}

/// Makes `service`'s pool the targets at `addresses`: those already there
/// stay as they are, new ones are checked before they get a request, the
/// others are taken out and drained.
async fn set_targets(
    upstreams: &Arc<Upstreams>,
    service: &str,
    addresses: &[String],
    health_path: &str,
) {
    let Some(svc) = upstreams.service(service) else {
        return;
    };
    let _one_at_a_time = svc.switching.lock().await;
    let current = svc.targets();
    let same = current.len() == addresses.len()
        && addresses.iter().all(|a| {
            current
                .iter()
                .any(|t| t.address == *a && t.health_path == health_path)
        });
    if same {
        return;
    }
    let mut added = Vec::new();
    let pool: Vec<_> = addresses
        .iter()
        .map(|address| {
            match current
                .iter()
                .find(|t| t.address == *address && t.health_path == health_path)
            {
                Some(t) => t.clone(),
                None => {
                    added.push(address.clone());
                    upstreams.spawn_target(address.clone(), health_path.to_owned())
                }
            }
        })
        .collect();
    let mut pool = pool;
    let mut removed: Vec<_> = current
        .iter()
        .filter(|t| !pool.iter().any(|n| Arc::ptr_eq(t, n)))
        .cloned()
        .collect();
    // Nothing healthy left (a lone task being replaced, its successor not
    // checked yet): the old ones that still answer keep serving until a
    // later round finds a healthy successor.
    if !pool.iter().any(|t| t.health() == Health::Healthy) {
        let (keep, go): (Vec<_>, Vec<_>) = removed
            .into_iter()
            .partition(|t| t.health() == Health::Healthy);
        pool.extend(keep);
        removed = go;
        if pool.len() == current.len() && added.is_empty() {
            return;
        }
    }
    svc.pool.store(Arc::new(pool));
    tracing::info!(
        service,
        added = ?added,
        removed = ?removed.iter().map(|t| &t.address).collect::<Vec<_>>(),
        "discovery: targets changed (new ones get requests once healthy)"
    );
    if !removed.is_empty() {
        tokio::spawn(async move {
            crate::upstream::drain(&removed, DRAIN_TIMEOUT).await;
        });
    }
}

/// The first `nameserver` of a resolv.conf, on port 53.
fn nameserver(resolv_conf: &str) -> SocketAddr {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .unwrap_or_else(|| EMBEDDED_DNS.parse().expect("a valid socket address"))
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("asking {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("{0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("the answer is not usable: {0}")]
    Malformed(&'static str),
    #[error("the nameserver answered with error code {0}")]
    Failed(u8),
}

/// The A records of `name` as `nameserver` answers over UDP. A name that
/// does not exist (a service with no task) has none.
pub async fn resolve_a(
    nameserver: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<Ipv4Addr>, LookupError> {
    let io = |e| LookupError::Io(nameserver, e);
    let bind: SocketAddr = if nameserver.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    let socket = UdpSocket::bind(bind).await.map_err(io)?;
    socket.connect(nameserver).await.map_err(io)?;
    let id = query_id();
    socket.send(&query(id, name)).await.map_err(io)?;
    let mut buffer = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buffer))
            .await
            .map_err(|_| LookupError::Timeout(nameserver, timeout))?
            .map_err(io)?;
        match parse_a(&buffer[..n], id) {
            // A stray datagram (another query's late answer): keep waiting.
            Err(LookupError::Malformed("another query's answer")) => continue,
            other => return other,
        }
    }
}

fn query_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u16);
    seed ^ NEXT.fetch_add(0x9e37, Ordering::Relaxed)
}

/// A standard query for the A records of `name`, recursion desired.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let label = &label.as_bytes()[..label.len().min(63)];
        q.push(label.len() as u8);
        q.extend_from_slice(label);
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]); // type A, class IN
    q
}

/// The A records of an answer to the query `id`.
fn parse_a(message: &[u8], id: u16) -> Result<Vec<Ipv4Addr>, LookupError> {
    let malformed = LookupError::Malformed;
    if message.len() < 12 {
        return Err(malformed("shorter than a header"));
    }
    if u16::from_be_bytes([message[0], message[1]]) != id || message[2] & 0x80 == 0 {
        return Err(malformed("another query's answer"));
    }
    match message[3] & 0x0f {
        0 => {}
        // NXDOMAIN: no task.
        3 => return Ok(Vec::new()),
        code => return Err(LookupError::Failed(code)),
    }
    if message[2] & 0x02 != 0 {
        return Err(malformed("truncated"));
    }
    let count = |i: usize| u16::from_be_bytes([message[i], message[i + 1]]) as usize;
    let (questions, answers) = (count(4), count(6));
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(message, at).ok_or(malformed("a question runs past the end"))? + 4;
    }
    let mut ips = Vec::new();
    for _ in 0..answers {
        at = skip_name(message, at).ok_or(malformed("an answer runs past the end"))?;
        let header = message
            .get(at..at + 10)
            .ok_or(malformed("an answer runs past the end"))?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let class = u16::from_be_bytes([header[2], header[3]]);
        let length = u16::from_be_bytes([header[8], header[9]]) as usize;
        let data = message
            .get(at + 10..at + 10 + length)
            .ok_or(malformed("an answer runs past the end"))?;
        if kind == 1 && class == 1 && length == 4 {
            ips.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + length;
    }
    Ok(ips)
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = *message.get(at)?;
        match length {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2).filter(|end| *end <= message.len()),
            l => at += 1 + l as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> BTreeSet<String> {
        ["api".to_owned(), "frontend".to_owned()].into()
    }

    #[test]
    fn entries_read_as_the_deployer_writes_them() {
        let var = |key: &str| match key {
            "EDGE_DISCOVER" => {
                Some("api=tasks.p_api:5000/healthz; frontend=tasks.p_frontend:8080".to_owned())
            }
            "EDGE_DISCOVER_INTERVAL" => Some("500ms".to_owned()),
            _ => None,
        };
        let d = Discovery::from_lookup(var, &services(), "search x\nnameserver 10.0.0.2\n")
            .unwrap()
            .unwrap();
        assert_eq!(d.entries.len(), 2);
        assert_eq!(d.entries[0].name, "tasks.p_api");
        assert_eq!(d.entries[0].port, 5000);
        assert_eq!(d.entries[1].health_path, "/healthz");
        assert_eq!(d.interval, Duration::from_millis(500));
        assert_eq!(d.nameserver, "10.0.0.2:53".parse().unwrap());
        assert!(
            Discovery::from_lookup(|_| None, &services(), "")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn mistakes_name_the_variable() {
        for (text, expected) in [
            ("api=tasks.p_api", "not SERVICE=NAME:PORT"),
            (
                "other=tasks.x:1",
                "no listener routes to a service named \"other\"",
            ),
            ("api=tasks.p_api:port", "not SERVICE=NAME:PORT"),
        ] {
            let e = Discovery::from_lookup(
                |k| (k == "EDGE_DISCOVER").then(|| text.to_owned()),
                &services(),
                "",
            )
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("EDGE_DISCOVER="), "{e}");
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    /// An answer as Docker's embedded DNS gives it: the question, then
    /// one A record per task, each name a pointer to the question's.
    fn answer(id: u16, name: &str, ips: &[[u8; 4]], code: u8) -> Vec<u8> {
        let mut m = query(id, name);
        m[2] = 0x81;
        m[3] = 0x80 | code;
        m[7] = ips.len() as u8;
        for ip in ips {
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 2, 0x58, 0, 4]);
            m.extend_from_slice(ip);
        }
        m
    }

    #[test]
    fn an_answer_gives_every_task_address() {
        let m = answer(7, "tasks.p_frontend", &[[10, 0, 1, 5], [10, 0, 1, 9]], 0);
        assert_eq!(
            parse_a(&m, 7).unwrap(),
            [Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 1, 9)]
        );
        assert!(matches!(
            parse_a(&m, 8),
            Err(LookupError::Malformed("another query's answer"))
        ));
        assert!(
            parse_a(&answer(7, "tasks.x", &[], 3), 7)
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            parse_a(&answer(7, "tasks.x", &[], 2), 7),
            Err(LookupError::Failed(2))
        ));
        assert!(parse_a(&m[..m.len() - 2], 7).is_err());
    }

    /// Answers every request on `listener` with 200.
    fn serve_ok(listener: tokio::net::TcpListener) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 {
                            return;
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }

    async fn healthy(upstreams: &Upstreams, address: &str) -> bool {
        for _ in 0..100 {
            let pool = upstreams.service("api").unwrap().targets();
            if pool
                .iter()
                .any(|t| t.address == address && t.health() == Health::Healthy)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn addresses(upstreams: &Upstreams) -> Vec<String> {
        let mut pool: Vec<String> = upstreams
            .service("api")
            .unwrap()
            .targets()
            .iter()
            .map(|t| t.address.clone())
            .collect();
        pool.sort();
        pool
    }

    #[tokio::test]
    async fn a_lone_target_dns_dropped_serves_until_its_successor_is_healthy() {
        let upstreams = Upstreams::new(
            ["api".to_owned()],
            crate::config::HealthSettings {
                interval: Duration::from_millis(50),
                timeout: Duration::from_millis(200),
                failures: 1,
            },
        );
        let old = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let old_at = old.local_addr().unwrap().to_string();
        serve_ok(old);
        set_targets(&upstreams, "api", std::slice::from_ref(&old_at), "/healthz").await;
        assert!(healthy(&upstreams, &old_at).await);

        // DNS now lists only the successor, which does not answer yet: the
        // old target stays in the pool, and still gets the requests.
        let new = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let new_at = new.local_addr().unwrap().to_string();
        set_targets(&upstreams, "api", std::slice::from_ref(&new_at), "/healthz").await;
        let mut both = vec![old_at.clone(), new_at.clone()];
        both.sort();
        assert_eq!(addresses(&upstreams), both);
        let picked = upstreams.service("api").unwrap().pick(None).unwrap();
        assert_eq!(picked.address, old_at);

        // Once the successor answers, the next round takes the old one out.
        serve_ok(new);
        assert!(healthy(&upstreams, &new_at).await);
        set_targets(&upstreams, "api", std::slice::from_ref(&new_at), "/healthz").await;
        assert_eq!(addresses(&upstreams), [new_at]);
    }

    #[tokio::test]
    async fn a_lookup_asks_the_nameserver_over_udp() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            let (n, from) = server.recv_from(&mut buffer).await.unwrap();
            let id = u16::from_be_bytes([buffer[0], buffer[1]]);
            assert_eq!(&buffer[12..n - 4], b"\x05tasks\x05p_api\x00");
            let reply = answer(id, "tasks.p_api", &[[10, 0, 0, 7]], 0);
            server.send_to(&reply, from).await.unwrap();
        });
        let ips = resolve_a(at, "tasks.p_api", Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(ips, [Ipv4Addr::new(10, 0, 0, 7)]);
    }
}
