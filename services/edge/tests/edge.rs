//! The edge as clients, targets and the deployer see it: routing and
//! headers, limits and timeouts, health checks and retries, `ctl deploy`
//! with its drain, the state file, the hand-over between two real `edge`
//! processes, and TLS against Debian's pebble.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{Backend, TestEdge, client, load, raw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_prefix_wins_and_x_forwarded_headers_are_added() {
    let (api, ui) = (Backend::start("api").await, Backend::start("ui").await);
    let edge = TestEdge::start(
        "web=http://127.0.0.1:0 -> /supmit/=api,/docs=api,/=frontend",
        &[],
    )
    .await;
    edge.deploy("api", &[&api.target()]).await.unwrap();
    edge.deploy("frontend", &[&ui.target()]).await.unwrap();
    let c = client();
    let get = |path: &str| {
        let c = c.clone();
        let url = format!("{}{path}", edge.url("web"));
        async move {
            c.get(url)
                .header("X-Forwarded-For", "203.0.113.9")
                .header("Connection", "keep-alive, X-Secret-Hop")
                .header("X-Secret-Hop", "must not pass")
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let j = get("/supmit/api/v1.0/get_student_ages?x=1").await;
    assert_eq!(j["backend"], "api");
    assert_eq!(
        j["path"], "/supmit/api/v1.0/get_student_ages",
        "no prefix stripping"
    );
    assert_eq!(j["query"], "x=1");
    assert_eq!(j["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(j["headers"]["x-forwarded-proto"], "http");
    assert!(j["headers"].get("x-secret-hop").is_none(), "{j}");
    assert_eq!(
        j["headers"]["host"],
        edge.addr("web"),
        "the client's Host is kept"
    );
    assert_eq!(get("/docs").await["backend"], "api");
    assert_eq!(
        get("/supmit").await["backend"],
        "ui",
        "/supmit is not under /supmit/"
    );
    assert_eq!(get("/").await["backend"], "ui");

    let own = c
        .get(format!("{}/.edge/healthz", edge.url("web")))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let health = c
        .get(format!("{}/healthz", edge.url("web")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({}),
        "a service's own /healthz is forwarded, not shadowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_a_healthy_target_gets_503_and_an_unrouted_path_404() {
    let edge = TestEdge::start("web=http://127.0.0.1:0 -> /api/=api", &[]).await;
    let c = client();
    let r = c
        .get(format!("{}/api/x", edge.url("web")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("no healthy target"));
    let r = c
        .get(format!("{}/other", edge.url("web")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5mb_upload_passes_and_a_body_over_the_limit_gets_413() {
    let app = Backend::start("app").await;
    let edge = TestEdge::start("web=http://127.0.0.1:0 -> app", &[]).await;
    edge.deploy("app", &[&app.target()]).await.unwrap();
    let c = client();
    let five_mb = vec![b'x'; 5 * 1024 * 1024];
    let r = c
        .put(format!("{}/upload", edge.url("web")))
        .body(five_mb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["body_len"],
        5 * 1024 * 1024
    );

    let r = c
        .put(format!("{}/upload", edge.url("web")))
        .body(vec![b'x'; 17 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("limit is 16777216 bytes (EDGE_MAX_BODY)")
    );

    // Chunked, so no Content-Length to refuse up front: cut while streaming.
    let small = TestEdge::start(
        "web=http://127.0.0.1:0 -> app",
        &[("EDGE_MAX_BODY", "64KiB")],
    )
    .await;
    small.deploy("app", &[&app.target()]).await.unwrap();
    let mut request =
        b"PUT /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..8 {
        request.extend_from_slice(format!("{:x}\r\n", 16 * 1024).as_bytes());
        request.extend_from_slice(&[b'y'; 16 * 1024]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(&small.addr("web"), &request, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_gets_400_and_others_are_served() {
    let app = Backend::start("app").await;
    let edge = TestEdge::start("web=http://127.0.0.1:0 -> app", &[]).await;
    edge.deploy("app", &[&app.target()]).await.unwrap();
    let answer = raw(
        &edge.addr("web"),
        b"GARBAGE / NOT-HTTP\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let answer = raw(
        &edge.addr("web"),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let r = client().get(edge.url("web")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_after_the_header_timeout_while_others_are_served() {
    let app = Backend::start("app").await;
    let edge = TestEdge::start(
        "web=http://127.0.0.1:0 -> app",
        &[("EDGE_HEADER_TIMEOUT", "1s")],
    )
    .await;
    edge.deploy("app", &[&app.target()]).await.unwrap();
    let addr = edge.addr("web");
    let started = Instant::now();
    let slow = tokio::spawn(async move {
        raw(
            &addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ",
            Duration::from_secs(10),
        )
        .await
    });
    let c = client();
    for _ in 0..5 {
        let r = c.get(edge.url("web")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = slow.await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(!answer.contains("200 OK"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_gets_504_after_the_upstream_timeout_while_others_are_served() {
    let app = Backend::start("app").await;
    let edge = TestEdge::start(
        "web=http://127.0.0.1:0 -> app",
        &[("EDGE_UPSTREAM_TIMEOUT", "1s")],
    )
    .await;
    edge.deploy("app", &[&app.target()]).await.unwrap();
    let c = client();
    let url = format!("{}/hang", edge.url("web"));
    let hanging = tokio::spawn({
        let c = c.clone();
        async move { c.get(url).send().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c.get(edge.url("web")).send().await.unwrap();
    assert_eq!(r.status(), 200, "others are served meanwhile");
    let r = hanging.await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(r.text().await.unwrap().contains("did not answer within 1s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_is_taken_out_and_no_request_fails_thanks_to_the_retry() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let edge = TestEdge::start("web=http://127.0.0.1:0 -> app", &[]).await;
    edge.deploy("app", &[&a.target(), &b.target()])
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(edge.url("web"), 8, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = running.await.unwrap();
    assert!(
        tally.failed.is_empty(),
        "{} failed: {:?}",
        tally.failed.len(),
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert!(tally.ok > 100, "{tally:?}");
    let status = edge.status().await;
    let targets = status["services"]["app"].as_array().unwrap();
    let dead = targets
        .iter()
        .find(|t| t["address"] == a.target().as_str())
        .unwrap();
    assert_eq!(dead["health"], "unhealthy", "{status}");
    let hits_b_before = b.hits.load(Ordering::Relaxed);
    let r = client().get(edge.url("web")).send().await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["backend"], "b");
    assert!(b.hits.load(Ordering::Relaxed) > hits_b_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_target_that_went_unhealthy_still_gets_a_chance_and_503_when_gone() {
    let app = Backend::start("app").await;
    let edge = TestEdge::start("web=http://127.0.0.1:0 -> app", &[]).await;
    edge.deploy("app", &[&app.target()]).await.unwrap();
    app.healthy.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = edge.status().await;
    assert_eq!(
        status["services"]["app"][0]["health"], "unhealthy",
        "{status}"
    );
    // Its health check fails, but it still answers: better an answer than a 503.
    let r = client().get(edge.url("web")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.kill();
    let r = client().get(edge.url("web")).send().await.unwrap();
    assert_eq!(r.status(), 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_waits_for_the_previous_targets_in_flight_requests() {
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    let edge = TestEdge::start("web=http://127.0.0.1:0 -> app", &[]).await;
    edge.deploy("app", &[&old.target()]).await.unwrap();
    let c = client();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), format!("{}/slow?ms=1500", edge.url("web")));
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let report = edge.deploy("app", &[&new.target()]).await.unwrap();
    let took = started.elapsed();
    assert_eq!(report["previous"], serde_json::json!([old.target()]));
    assert_eq!(report["drained"], true, "{report}");
    assert_eq!(report["in_flight_left"], 0);
    assert!(
        took >= Duration::from_millis(1000),
        "returned before the drain: {took:?} {report}"
    );
    assert_eq!(
        slow.await.unwrap()["backend"],
        "old",
        "the in-flight request finished on the old target"
    );
    let r = c
        .get(edge.url("web"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(r["backend"], "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_is_bounded_by_the_drain_timeout() {
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    let edge = TestEdge::start("web=http://127.0.0.1:0 -> app", &[]).await;
    edge.deploy("app", &[&old.target()]).await.unwrap();
    let url = format!("{}/slow?ms=5000", edge.url("web"));
    let _slow = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = support::deploy(
        &edge.run_dir(),
        "app",
        &[&new.target()],
        Duration::from_secs(5),
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    assert_eq!(report["drained"], false, "{report}");
    assert_eq!(report["in_flight_left"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_to_a_target_that_never_turns_healthy_fails_and_the_old_keeps_serving() {
    let (old, broken) = (Backend::start("old").await, Backend::start("broken").await);
    broken.healthy.store(false, Ordering::Relaxed);
    let edge = TestEdge::start("web=http://127.0.0.1:0 -> app", &[]).await;
    edge.deploy("app", &[&old.target()]).await.unwrap();
    let error = support::deploy(
        &edge.run_dir(),
        "app",
        &[&broken.target()],
        Duration::from_secs(1),
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(error.contains("did not turn healthy within 1s"), "{error}");
    assert!(
        error.contains("503"),
        "the last health answer is named: {error}"
    );
    let r = client()
        .get(edge.url("web"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(r["backend"], "old");
    let error = edge.deploy("nope", &[&old.target()]).await.unwrap_err();
    assert!(
        error.contains("no listener routes to a service named \"nope\""),
        "{error}"
    );
    let error = edge.deploy("app", &["not a target"]).await.unwrap_err();
    assert!(error.contains("HOST:PORT"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_under_load_switches_between_real_apis_with_zero_failed_requests() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("student_age.json");
    std::fs::write(&file, r#"{"alice": 12}"#).unwrap();
    let start_api = |file: std::path::PathBuf| async move {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let store = student_ages_api::Store::open(&file).unwrap();
        let config = student_ages_api::Config::new(student_ages_process::ApiCredentials {
            username: "root".into(),
            password: "root".into(),
        });
        let task = tokio::spawn(student_ages_api::run(listener, store, config, async {
            let _ = rx.await;
        }));
        (addr.to_string(), tx, task)
    };
    let (first, stop_first, first_task) = start_api(file.clone()).await;
    let edge = TestEdge::start("api=http://127.0.0.1:0 -> api", &[]).await;
    edge.deploy("api", &[&first]).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let reads = load(
        format!(
            "http://root:root@{}/supmit/api/v1.0/get_student_ages",
            edge.addr("api")
        ),
        6,
        stop.clone(),
    );
    let writes = tokio::spawn({
        let (stop, base) = (stop.clone(), edge.url("api"));
        async move {
            let c = client();
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let name = format!("w{i}");
                let r = c
                    .put(format!("{base}/supmit/api/v1.0/student_ages/{name}"))
                    .basic_auth("root", Some("root"))
                    .json(&serde_json::json!({"age": i % 100}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => acked.push(name),
                    Ok(r) => failed.push(format!("{}", r.status())),
                    Err(e) => failed.push(format!("{e:?}")),
                }
            }
            (acked, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (second, stop_second, second_task) = start_api(file.clone()).await;
    let report = edge.deploy("api", &[&second]).await.unwrap();
    assert_eq!(report["drained"], true, "{report}");
    // The deployer stops the old container only now.
    let _ = stop_first.send(());
    first_task.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = reads.await.unwrap();
    let (acked, failed) = writes.await.unwrap();
    assert!(
        tally.failed.is_empty(),
        "reads failed: {:?}",
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert!(failed.is_empty(), "writes failed: {failed:?}");
    assert!(
        tally.ok > 100 && acked.len() > 10,
        "{} reads, {} writes",
        tally.ok,
        acked.len()
    );
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for name in &acked {
        assert!(
            on_disk.get(name).is_some(),
            "acknowledged {name} is not in the file"
        );
    }
    let _ = stop_second.send(());
    second_task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_survive_a_restart_and_are_health_checked_before_traffic() {
    let (app, gone) = (Backend::start("app").await, Backend::start("gone").await);
    let dir = TestEdge::dirs();
    let listen = "web=http://127.0.0.1:0 -> app; other=http://127.0.0.1:0 -> other";
    let mut edge = TestEdge::start_in(dir, listen, &[]).await;
    edge.deploy("app", &[&app.target()]).await.unwrap();
    edge.deploy("other", &[&gone.target()]).await.unwrap();
    edge.stop().await;
    gone.kill();
    let saved = std::fs::read_to_string(edge.dir.path().join("state/state.json")).unwrap();
    assert!(saved.contains(&app.target()), "{saved}");

    let dir = std::mem::replace(&mut edge.dir, TestEdge::dirs());
    let edge = TestEdge::start_in(dir, listen, &[]).await;
    // The first request after the start already reaches the restored target.
    let r = client().get(edge.url("web")).send().await.unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["backend"],
        "app"
    );
    let status = edge.status().await;
    assert_eq!(
        status["services"]["app"][0]["health"], "healthy",
        "{status}"
    );
    assert_eq!(
        status["services"]["other"][0]["health"], "unhealthy",
        "{status}"
    );
    let r = client().get(edge.url("other")).send().await.unwrap();
    assert_eq!(
        r.status(),
        503,
        "a restored target that never answered gets no traffic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_gives_an_empty_logged_start_and_is_kept_aside() {
    let dir = TestEdge::dirs();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(
        dir.path().join("state/state.json"),
        "{\"version\": 1, \"servi",
    )
    .unwrap();
    let edge = TestEdge::start_in(dir, "web=http://127.0.0.1:0 -> app", &[]).await;
    let status = edge.status().await;
    assert_eq!(status["services"]["app"], serde_json::json!([]));
    let aside = std::fs::read_to_string(edge.dir.path().join("state/state.json.bad")).unwrap();
    assert!(aside.starts_with("{\"version\": 1"));
    let app = Backend::start("app").await;
    edge.deploy("app", &[&app.target()]).await.unwrap();
    let saved = std::fs::read_to_string(edge.dir.path().join("state/state.json")).unwrap();
    assert!(saved.contains(&app.target()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_listener_serves_plain_http_and_status_shows_it_all() {
    let app = Backend::start("app").await;
    let dir = TestEdge::dirs();
    let sock = dir.path().join("api.sock");
    let listen = format!(
        "web=http://127.0.0.1:0 -> app; internal=unix:{} -> app",
        sock.display()
    );
    let edge = TestEdge::start_in(dir, &listen, &[]).await;
    edge.deploy("app", &[&app.target()]).await.unwrap();
    let c = reqwest::Client::builder()
        .unix_socket(sock.as_path())
        .build()
        .unwrap();
    let r = c.get("http://edge/supmit/x").send().await.unwrap();
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["backend"], "app");
    assert_eq!(j["headers"]["x-forwarded-proto"], "http");
    assert!(
        j["headers"].get("x-forwarded-for").is_none(),
        "no client IP on a unix socket"
    );

    let status = edge.status().await;
    assert_eq!(status["listeners"][1]["kind"], "unix", "{status}");
    assert_eq!(status["listeners"][0]["routes"][0]["service"], "app");
    let target = &status["services"]["app"][0];
    assert_eq!(target["address"], app.target().as_str());
    assert_eq!(target["health"], "healthy");
    assert_eq!(target["served"], 1);
    assert_eq!(target["in_flight"], 0);
    assert_eq!(status["tls"]["mode"], "off");
    assert_eq!(status["edge"]["serving"], true);
}

/// A real `edge` process, killed if the test fails before it exits.
struct EdgeProcess {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl EdgeProcess {
    fn spawn(dir: &std::path::Path, listen: &str, name: &str) -> EdgeProcess {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
            .env("EDGE_LISTEN", listen)
            .env("EDGE_RUN_DIR", dir.join("run"))
            .env("EDGE_STATE_DIR", dir.join("state"))
            .env("EDGE_HEALTH_INTERVAL", "200ms")
            .env("EDGE_SHUTDOWN_TIMEOUT", "10s")
            .env("RUST_LOG", "info,request=warn")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        EdgeProcess { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    fn terminate(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until the edge answering the control socket is `pid`.
async fn wait_for_serving_pid(run_dir: &std::path::Path, pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(who) = support::ctl(run_dir, student_ages_edge::control::Request::Whoami).await
            && who["pid"] == pid
            && who["serving"] == true
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn free_port() -> u16 {
    support::pebble::free_port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_edge_takes_the_sockets_over_under_load_and_the_old_one_drains_and_exits_0() {
    let app = Backend::start("app").await;
    let dir = TestEdge::dirs();
    let run_dir = dir.path().join("run");
    let sock = dir.path().join("api.sock");
    let port = free_port();
    let listen = format!(
        "web=http://127.0.0.1:{port} -> app; internal=unix:{} -> app",
        sock.display()
    );
    let mut first = EdgeProcess::spawn(dir.path(), &listen, "first");
    assert!(
        wait_for_serving_pid(&run_dir, first.pid(), Duration::from_secs(10)).await,
        "{}",
        first.log()
    );
    support::deploy(
        &run_dir,
        "app",
        &[&app.target()],
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .await
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let running = load(format!("http://127.0.0.1:{port}/"), 8, stop.clone());
    let unix_load = tokio::spawn({
        let (stop, sock) = (stop.clone(), sock.clone());
        async move {
            let c = reqwest::Client::builder()
                .unix_socket(sock.as_path())
                .build()
                .unwrap();
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match c.get("http://edge/x").send().await {
                    Ok(r) if r.status().is_success() => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(format!("{e:?}")),
                }
            }
            (ok, failed)
        }
    });
    // A request in flight across the hand-over finishes on the old edge.
    let slow = tokio::spawn(async move {
        client()
            .get(format!("http://127.0.0.1:{port}/slow?ms=1500"))
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut second = EdgeProcess::spawn(dir.path(), &listen, "second");
    assert!(
        wait_for_serving_pid(&run_dir, second.pid(), Duration::from_secs(10)).await,
        "first:\n{}\nsecond:\n{}",
        first.log(),
        second.log()
    );
    let exit = first.wait_exit(Duration::from_secs(15)).await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "first edge: {exit:?}\n{}",
        first.log()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = running.await.unwrap();
    let (unix_ok, unix_failed) = unix_load.await.unwrap();
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    assert!(
        tally.failed.is_empty() && unix_failed.is_empty(),
        "tcp failed {:?}, unix failed {:?}\nfirst:\n{}\nsecond:\n{}",
        &tally.failed[..tally.failed.len().min(5)],
        &unix_failed[..unix_failed.len().min(5)],
        first.log(),
        second.log()
    );
    assert!(
        tally.ok > 100 && unix_ok > 20,
        "{} tcp, {unix_ok} unix",
        tally.ok
    );
    assert!(
        first.log().contains("handed over to the new edge"),
        "{}",
        first.log()
    );
    assert!(second.log().contains("inherited=true"), "{}", second.log());

    // The successor has the targets (they came with the sockets).
    let status = support::ctl(&run_dir, student_ages_edge::control::Request::Status)
        .await
        .unwrap();
    assert_eq!(
        status["services"]["app"][0]["health"], "healthy",
        "{status}"
    );
    let health = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
        .arg("healthcheck")
        .env("EDGE_RUN_DIR", &run_dir)
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    // SIGTERM: in-flight requests finish, then the process exits 0.
    let slow = tokio::spawn(async move {
        client()
            .get(format!("http://127.0.0.1:{port}/slow?ms=1000"))
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    second.terminate();
    assert_eq!(slow.await.unwrap().unwrap(), 200, "{}", second.log());
    let exit = second.wait_exit(Duration::from_secs(15)).await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "second edge: {exit:?}\n{}",
        second.log()
    );
    let health = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
        .arg("healthcheck")
        .env("EDGE_RUN_DIR", &run_dir)
        .output()
        .unwrap();
    assert!(!health.status.success(), "no edge runs any more");
    assert!(String::from_utf8_lossy(&health.stderr).contains("no edge answers"));
}

/// A client that trusts only pebble's issuing root and finds `domain` on
/// loopback.
fn tls_client(root_pem: &str, domain: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
        .resolve(domain, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn wait_for_certificate(edge: &TestEdge, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let status = edge.status().await;
        if status["tls"]["certificates"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            return status;
        }
        assert!(Instant::now() < deadline, "no certificate: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_issued_by_pebble_over_http_01_is_served_cached_and_port_80_redirects() {
    let app = Backend::start("app").await;
    let dir = TestEdge::dirs();
    let (http_port, https_port) = (free_port(), free_port());
    let pebble =
        support::pebble::Pebble::start(&dir.path().join("pebble"), http_port, https_port).await;
    let listen = format!(
        "web=http://127.0.0.1:{http_port} redirect-https -> app; tls=https://127.0.0.1:{https_port} -> app"
    );
    let cert_dir = dir.path().join("certs");
    let ca = pebble.listener_ca.display().to_string();
    let directory = pebble.directory.clone();
    let vars = [
        ("EDGE_TLS_DOMAINS", "school.test"),
        ("EDGE_ACME_DIRECTORY", directory.as_str()),
        ("EDGE_ACME_CA_FILE", ca.as_str()),
        ("EDGE_ACME_EMAIL", "ops@school.test"),
        ("EDGE_CERT_DIR", cert_dir.to_str().unwrap()),
    ];
    let mut edge = TestEdge::start_in(dir, &listen, &vars).await;
    edge.deploy("app", &[&app.target()]).await.unwrap();
    let status = wait_for_certificate(&edge, Duration::from_secs(20)).await;
    let cert = &status["tls"]["certificates"][0];
    assert_eq!(
        cert["domains"],
        serde_json::json!(["school.test"]),
        "{status}"
    );
    assert!(cert["not_after"].as_str().unwrap() > "2026", "{cert}");
    assert_eq!(status["tls"]["challenge"], "http-01", "{status}");
    assert!(
        pebble.log().contains("by completed challenge"),
        "pebble really validated:\n{}",
        pebble.log()
    );

    let root = pebble.issuing_root().await;
    let c = tls_client(&root, "school.test", https_port);
    let j: serde_json::Value = c
        .get(format!("https://school.test:{https_port}/supmit/x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(j["backend"], "app");
    assert_eq!(j["headers"]["x-forwarded-proto"], "https");

    // Port 80 (here http_port) redirects, except the ACME challenge path.
    let c80 = tls_client(&root, "school.test", http_port);
    let r = c80
        .get(format!("http://school.test:{http_port}/list?q=al"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        format!("https://school.test:{https_port}/list?q=al").as_str()
    );
    let r = c80
        .get(format!(
            "http://school.test:{http_port}/.well-known/acme-challenge/unknown"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "the challenge path is answered, not redirected"
    );

    // A restart uses the cached certificate: no CA needed.
    edge.stop().await;
    drop(pebble);
    let dir = std::mem::replace(&mut edge.dir, TestEdge::dirs());
    let edge = TestEdge::start_in(dir, &listen, &vars).await;
    let status = wait_for_certificate(&edge, Duration::from_secs(5)).await;
    assert_eq!(
        status["tls"]["certificates"][0]["domains"],
        serde_json::json!(["school.test"])
    );
    let r = c
        .get(format!("https://school.test:{https_port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "served over TLS with the cached certificate, to the restored target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_plain_listener_the_certificate_comes_over_tls_alpn_01() {
    let app = Backend::start("app").await;
    let dir = TestEdge::dirs();
    let https_port = free_port();
    let pebble =
        support::pebble::Pebble::start(&dir.path().join("pebble"), free_port(), https_port).await;
    let cert_dir = dir.path().join("certs");
    let ca = pebble.listener_ca.display().to_string();
    let edge = TestEdge::start_in(
        dir,
        &format!("tls=https://127.0.0.1:{https_port} -> app"),
        &[
            ("EDGE_TLS_DOMAINS", "alpn.school.test"),
            ("EDGE_ACME_DIRECTORY", pebble.directory.as_str()),
            ("EDGE_ACME_CA_FILE", ca.as_str()),
            ("EDGE_CERT_DIR", cert_dir.to_str().unwrap()),
        ],
    )
    .await;
    edge.deploy("app", &[&app.target()]).await.unwrap();
    let status = wait_for_certificate(&edge, Duration::from_secs(20)).await;
    assert_eq!(status["tls"]["challenge"], "tls-alpn-01", "{status}");
    assert!(
        pebble.log().contains("by completed challenge"),
        "{}",
        pebble.log()
    );
    let root = pebble.issuing_root().await;
    let r = tls_client(&root, "alpn.school.test", https_port)
        .get(format!("https://alpn.school.test:{https_port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A leaf `issuer` signs for `domain`, valid until 1 January of `until`
/// (which tells two leaves apart).
fn leaf_signed_by(
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    domain: &str,
    until: i32,
) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_files_is_served_and_replaced_when_the_files_change() {
    let app = Backend::start("app").await;
    let dir = TestEdge::dirs();
    let https_port = free_port();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "edge test files CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let root = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let domain = "files.school.test";
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (first_cert, first_key) = leaf_signed_by(&issuer, domain, 2035);
    std::fs::write(&cert_file, &first_cert).unwrap();
    std::fs::write(&key_file, &first_key).unwrap();
    let edge = TestEdge::start_in(
        dir,
        &format!("tls=https://127.0.0.1:{https_port} -> app"),
        &[
            ("EDGE_TLS_CERT_FILE", cert_file.to_str().unwrap()),
            ("EDGE_TLS_KEY_FILE", key_file.to_str().unwrap()),
            ("EDGE_TLS_FILES_CHECK", "100ms"),
        ],
    )
    .await;
    edge.deploy("app", &[&app.target()]).await.unwrap();
    let get = || async {
        tls_client(&root, domain, https_port)
            .get(format!("https://{domain}:{https_port}/"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e:?}"))
    };
    assert_eq!(get().await, Ok(200));
    let not_after = |status: &serde_json::Value| {
        status["tls"]["certificates"][0]["not_after_unix"]
            .as_i64()
            .unwrap()
    };
    let first = edge.status().await;
    assert_eq!(first["tls"]["mode"], "files", "{first}");
    assert_eq!(first["tls"]["certificates"][0]["domains"][0], domain);

    // A renewal elsewhere (certbot, a CI secret) rewrites both files: the
    // new certificate serves without a restart.
    let (second_cert, second_key) = leaf_signed_by(&issuer, domain, 2036);
    std::fs::write(&cert_file, &second_cert).unwrap();
    std::fs::write(&key_file, &second_key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let renewed = loop {
        let status = edge.status().await;
        if not_after(&status) > not_after(&first) + 20 * 86400 {
            break status;
        }
        assert!(Instant::now() < deadline, "never reloaded: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(renewed["tls"]["last_error"].is_null(), "{renewed}");
    assert_eq!(get().await, Ok(200));

    // A key that is not the certificate's: refused, the previous pair
    // keeps serving, and the status says why.
    let (third_cert, _) = leaf_signed_by(&issuer, domain, 2037);
    std::fs::write(&cert_file, &third_cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Until the edge has read the whole new file: a read while the file
    // was half-written fails for that reason first, and is retried on the
    // next change.
    let refused = loop {
        let status = edge.status().await;
        if status["tls"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not the key of the certificate"))
        {
            break status;
        }
        assert!(Instant::now() < deadline, "never noticed: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        refused["tls"]["last_error"]
            .as_str()
            .unwrap()
            .contains("not the key of the certificate"),
        "{refused}"
    );
    assert_eq!(not_after(&refused), not_after(&renewed));
    assert_eq!(get().await, Ok(200));
}
