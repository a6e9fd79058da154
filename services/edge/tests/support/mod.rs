//! What the edge tests share: a small controllable backend (a hyper
//! server on loopback), an edge started in-process on its own temporary
//! directories, the control verbs, and a bounded load that counts failures.

#![allow(dead_code)] // not every test uses every helper

pub mod pebble;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use student_ages_edge::Edge;
use student_ages_edge::config::Config;
use student_ages_edge::control::{self, Request as Ctl};
use tokio::task::JoinHandle;

/// A backend on loopback: echoes what it received as JSON, answers
/// `/healthz` as told, `/slow?ms=N` after N ms, never answers `/hang`,
/// counts bodies on `/upload`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub healthy: Arc<AtomicBool>,
    pub hits: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicUsize::new(0));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (n, h, c, t) = (
            name.to_string(),
            healthy.clone(),
            connections.clone(),
            hits.clone(),
        );
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (n, h, t) = (n.clone(), h.clone(), t.clone());
                let task = tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (n, h, t) = (n.clone(), h.clone(), t.clone());
                        async move { Ok::<_, Infallible>(answer(req, &n, &h, &t).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                let mut all = c.lock().unwrap();
                all.retain(|t| !t.is_finished());
                all.push(task);
            }
        });
        Backend {
            name: name.into(),
            addr,
            healthy,
            hits,
            accept,
            connections,
        }
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Dies as a crashed process does: the listener and every connection
    /// close at once.
    pub fn kill(&self) {
        self.accept.abort();
        for t in self.connections.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    name: &str,
    healthy: &AtomicBool,
    hits: &AtomicUsize,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/healthz" {
        let ok = healthy.load(Ordering::Relaxed);
        return Response::builder()
            .status(if ok { 200 } else { 503 })
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
    }
    hits.fetch_add(1, Ordering::Relaxed);
    if path == "/slow" {
        let ms: u64 = query.trim_start_matches("ms=").parse().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path == "/hang" {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body_len = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let json = serde_json::json!({
        "backend": name,
        "path": path,
        "query": query,
        "headers": headers,
        "body_len": body_len,
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("keep-alive", "timeout=5")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap()
}

/// An edge in this process, on its own run and state directories.
pub struct TestEdge {
    pub edge: Option<Edge>,
    pub dir: tempfile::TempDir,
}

impl TestEdge {
    pub fn dirs() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("edge-test-{}-", std::process::id()))
            .tempdir()
            .unwrap()
    }

    pub fn config(dir: &Path, listen: &str, extra: &[(&str, &str)]) -> Config {
        let mut vars: HashMap<String, String> = HashMap::new();
        vars.insert("EDGE_LISTEN".into(), listen.into());
        vars.insert("EDGE_RUN_DIR".into(), dir.join("run").display().to_string());
        vars.insert(
            "EDGE_STATE_DIR".into(),
            dir.join("state").display().to_string(),
        );
        vars.insert("EDGE_HEALTH_INTERVAL".into(), "200ms".into());
        vars.insert("EDGE_HEALTH_TIMEOUT".into(), "1s".into());
        vars.insert("EDGE_SHUTDOWN_TIMEOUT".into(), "5s".into());
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        Config::from_lookup(|k| vars.get(k).cloned()).unwrap()
    }

    pub async fn start(listen: &str, extra: &[(&str, &str)]) -> TestEdge {
        let dir = TestEdge::dirs();
        TestEdge::start_in(dir, listen, extra).await
    }

    pub async fn start_in(
        dir: tempfile::TempDir,
        listen: &str,
        extra: &[(&str, &str)],
    ) -> TestEdge {
        // The edge's log, shown with a failing test's output.
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .with(student_ages_batch_log::filter(Some("info,request=warn")).unwrap())
            .try_init();
        let config = TestEdge::config(dir.path(), listen, extra);
        let edge = Edge::start(config).await.unwrap();
        TestEdge {
            edge: Some(edge),
            dir,
        }
    }

    pub fn url(&self, listener: &str) -> String {
        format!("http://{}", self.addr(listener))
    }

    pub fn addr(&self, listener: &str) -> String {
        self.edge.as_ref().unwrap().local_addr(listener).unwrap()
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub async fn deploy(
        &self,
        service: &str,
        targets: &[&str],
    ) -> Result<serde_json::Value, String> {
        deploy(
            &self.run_dir(),
            service,
            targets,
            Duration::from_secs(5),
            Duration::from_secs(10),
        )
        .await
    }

    pub async fn status(&self) -> serde_json::Value {
        ctl(&self.run_dir(), Ctl::Status).await.unwrap()
    }

    pub async fn stop(&mut self) {
        if let Some(edge) = self.edge.take() {
            edge.shutdown().await;
        }
    }
}

pub async fn deploy(
    run_dir: &Path,
    service: &str,
    targets: &[&str],
    deploy_timeout: Duration,
    drain_timeout: Duration,
) -> Result<serde_json::Value, String> {
    ctl(
        run_dir,
        Ctl::Deploy {
            service: service.into(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            health_path: "/healthz".into(),
            deploy_timeout_ms: deploy_timeout.as_millis() as u64,
            drain_timeout_ms: drain_timeout.as_millis() as u64,
        },
    )
    .await
}

pub async fn ctl(run_dir: &Path, request: Ctl) -> Result<serde_json::Value, String> {
    let run_dir = run_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        control::call(&run_dir, &request, Duration::from_secs(60)).map_err(|e| e.to_string())
    })
    .await
    .unwrap()
}

/// Counts of a bounded load.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub ok: usize,
    pub failed: Vec<String>,
}

/// `tasks` loops of GET `url` until `stop` is set (or 60 s pass): every
/// non-2xx or error is a failure.
pub fn load(url: String, tasks: usize, stop: Arc<AtomicBool>) -> JoinHandle<Tally> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            handles.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                    match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            tally.ok += 1;
                        }
                        Ok(r) => {
                            let status = r.status();
                            tally
                                .failed
                                .push(format!("{status}: {}", r.text().await.unwrap_or_default()));
                        }
                        Err(e) => tally.failed.push(format!("{e:?}")),
                    }
                }
                tally
            }));
        }
        let mut total = Tally::default();
        for h in handles {
            let t = h.await.unwrap();
            total.ok += t.ok;
            total.failed.extend(t.failed);
        }
        total
    })
}

/// Sends raw bytes on a fresh connection and returns what came back
/// before the edge closed it (or `wait` passed).
pub async fn raw(addr: &str, bytes: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}
