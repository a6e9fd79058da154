//! `deployer up`, `down`, `status`, `test` and `logs` against the real
//! Docker daemon, with the images `deployer build` makes.

use crate::support;

use std::time::{Duration, Instant};

use crate::support::load::{Load, Target as LoadTarget};
use crate::support::{Project, TestImage, build_images, docker, get, text};

#[test]
fn up_serves_the_students_through_the_api_and_the_frontend() {
    build_images();
    let project = Project::new("up");
    let out = project.run(&["up", "--no-build"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("http://localhost:{}/", project.frontend_port)),
        "{stdout}"
    );
    assert!(stdout.contains("curl -u root:root"), "{stdout}");

    let (status, body) = get(&project.api_url("/supmit/api/v1.0/get_student_ages"), true);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["student_ages"]["alice"], 12);
    assert_eq!(
        get(
            &project.api_url("/supmit/api/v1.0/get_student_ages/bob"),
            true
        )
        .1,
        "13"
    );
    // The UI shows nothing before a sign-in, and the list after one.
    let (status, page) = get(&project.frontend_url("/"), false);
    assert_eq!(status, 200, "redirected to the sign-in form");
    assert!(
        page.contains(r#"name="csrf""#) && !page.contains("carol"),
        "{page}"
    );
    let (status, page) = support::signed_in_page(&project.frontend_url(""), "/");
    assert_eq!(status, 200);
    assert!(page.contains("alice") && page.contains("carol"), "{page}");

    let status = project.run(&["status", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["healthy"], true);
    assert_eq!(json["services"][0]["service"], "api");
    assert_eq!(json["services"][0]["health"], "healthy");
    assert_eq!(json["services"][1]["state"], "running");
    // Logs are bounded (json-file, 3 × 10 MB), as the compose file says.
    let container = format!("{}-api-1", project.name);
    let logs = docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.LogConfig}}",
        &container,
    ]);
    assert!(
        logs.contains("\"max-size\":\"10m\"") && logs.contains("\"max-file\":\"3\""),
        "{logs}"
    );
}

#[test]
fn a_second_up_with_nothing_changed_restarts_nothing() {
    build_images();
    let project = Project::new("noop");
    let first = project.run(&["up", "--no-build"]);
    assert!(first.status.success(), "{}", text(&first));
    let before = project.containers();

    let second = project.run(&["up", "--no-build"]);
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(project.containers(), before);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("0 of 3 services changed"), "{stdout}");
}

#[test]
fn changing_one_services_environment_replaces_only_that_service() {
    build_images();
    let project = Project::new("env");
    let first = project.run(&["up", "--no-build"]);
    assert!(first.status.success(), "{}", text(&first));
    let before = project.containers();

    let second = project
        .deployer(&["up", "--no-build"])
        .env("FRONTEND_LOG", "debug")
        .output()
        .unwrap();
    assert!(second.status.success(), "{}", text(&second));
    let after = project.containers();
    let id = |list: &[(String, String)], service: &str| {
        list.iter()
            .find(|(name, _)| name.contains(&format!("-{service}-")))
            .map(|(_, id)| id.clone())
            .unwrap()
    };
    assert_eq!(
        id(&before, "api"),
        id(&after, "api"),
        "the api must be left alone"
    );
    assert_ne!(
        id(&before, "frontend"),
        id(&after, "frontend"),
        "the frontend must be replaced"
    );
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("1 of 3 services changed"), "{stdout}");
}

#[test]
fn data_written_through_the_api_survives_down_and_up() {
    build_images();
    let project = Project::new("data");
    assert!(project.run(&["up", "--no-build"]).status.success());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .put(project.api_url("/supmit/api/v1.0/student_ages/zoé"))
            .basic_auth("root", Some("root"))
            .json(&serde_json::json!({"age": 9}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(
        status, 201,
        "the API in its container must be able to write its volume"
    );

    let down = project.run(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(project.containers().is_empty());
    let up = project.run(&["up", "--no-build"]);
    assert!(up.status.success(), "{}", text(&up));
    let (status, body) = get(
        &project.api_url("/supmit/api/v1.0/get_student_ages/zo%C3%A9"),
        true,
    );
    assert_eq!((status, body.as_str()), (200, "9"));
}

#[test]
fn down_removes_only_the_stacks_objects() {
    build_images();
    let project = Project::new("down");
    let neighbour = Project::new("neighbour");
    assert!(project.run(&["up", "--no-build"]).status.success());
    assert!(neighbour.run(&["up", "--no-build"]).status.success());
    // A volume whose name looks like the stack's but carries no label.
    let decoy = format!("{}_decoy", project.name);
    docker(&["volume", "create", &decoy]);

    let out = project.run(&["down", "--volumes"]);
    let decoy_left = docker(&["volume", "ls", "-q", "--filter", &format!("name={decoy}")]);
    docker(&["volume", "rm", "-f", &decoy]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(project.containers().is_empty());
    let label = format!("label=com.docker.compose.project={}", project.name);
    assert_eq!(docker(&["network", "ls", "-q", "--filter", &label]), "");
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &label]), "");
    assert_eq!(
        decoy_left.trim(),
        decoy,
        "an unlabelled volume must be left alone"
    );
    assert_eq!(
        neighbour.containers().len(),
        3,
        "another stack must be left alone"
    );
}

#[test]
fn status_fails_when_the_stack_is_not_running() {
    let project = Project::new("status");
    let out = project.run(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("missing"), "{stdout}");
    assert!(
        stdout.contains("not healthy: api, edge, frontend"),
        "{stdout}"
    );
}

#[test]
fn test_passes_on_good_images_and_cleans_up() {
    build_images();
    let out = support::deployer().arg("test").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("PASS  list students with auth"), "{stdout}");
    assert!(
        stdout.contains("PASS  frontend lists the seed's students"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let project = stdout
        .split_whitespace()
        .find(|w| w.starts_with("student-ages-test-"))
        .expect("the test project is named");
    let label = format!("label=com.docker.compose.project={project}");
    assert_eq!(docker(&["ps", "-aq", "--filter", &label]), "");
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &label]), "");
}

#[test]
fn test_fails_naming_the_check_when_the_api_returns_wrong_data() {
    build_images();
    // An API image that serves other data than the seed, whatever its env says.
    let image = TestImage::build(
        "dtest-wrong-api",
        "FROM student-ages-api:latest\n\
         COPY --chown=65532:65532 wrong.json /wrong/student_age.json\n\
         ENTRYPOINT [\"/api\", \"--data-file\", \"/wrong/student_age.json\"]\n",
        &[("wrong.json", r#"{"alice": 99, "bob": 13}"#)],
    );

    let out = support::deployer()
        .arg("test")
        .env("DOCKER_IMAGE_BACKEND", &image.repository)
        .env("TAG", "latest")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "FAIL  the seed's students are listed: /student_ages/alice: expected 12, got 99"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("PASS  401 without credentials"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("acceptance checks failed"), "{stderr}");
}

#[test]
fn logs_are_prefixed_by_service() {
    build_images();
    let project = Project::new("logs");
    assert!(project.run(&["up", "--no-build"]).status.success());
    get(&project.api_url("/healthz"), false);
    let out = project.run(&["logs", "api"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().all(|l| l.starts_with("api")), "{stdout}");
    assert!(stdout.contains("listen="), "{stdout}");
    let bad = project.run(&["logs", "nope"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no service \"nope\""));
}

#[test]
fn an_unhealthy_service_fails_up_with_its_last_log_lines() {
    build_images();
    let project = Project::new("sick");
    let image = TestImage::sick_api("dtest-sick-api");
    let out = project
        .deployer(&["up", "--no-build"])
        .env("DOCKER_IMAGE_BACKEND", &image.repository)
        .output()
        .unwrap();
    drop(project);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // It restarts (restart: unless-stopped) until the healthcheck gives up.
    assert!(stderr.contains("service api is unhealthy"), "{stderr}");
    assert!(stderr.contains("Its last log lines"), "{stderr}");
    assert!(
        stderr.contains("/broken.json"),
        "the log lines name the file: {stderr}"
    );
}

#[test]
fn ctrl_c_during_up_leaves_no_half_made_containers() {
    build_images();
    let project = Project::new("sigint");
    let mut child = project.deployer(&["up", "--no-build"]).spawn().unwrap();
    // Wait for the first container to exist, then interrupt while it is
    // being health-gated.
    let deadline = Instant::now() + Duration::from_secs(30);
    while project.containers().is_empty() {
        assert!(Instant::now() < deadline, "up never created a container");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        project.containers().is_empty(),
        "left behind: {:?}",
        project.containers()
    );
}

#[test]
fn a_new_container_that_never_turns_healthy_gets_no_traffic_and_the_old_keeps_serving() {
    build_images();
    let project = Project::new("sick-new");
    assert!(project.run(&["up", "--no-build"]).status.success());
    let before = project.containers();
    let load = Load::start(
        LoadTarget {
            api: project.api_url(""),
            ui: project.frontend_url(""),
            https: None,
        },
        "sick",
        2,
        1,
    );

    let sick = TestImage::sick_api("dtest-sick-new-api");
    let out = project
        .deployer(&["up", "--no-build"])
        .env("DOCKER_IMAGE_BACKEND", &sick.repository)
        .output()
        .unwrap();
    let report = load.stop();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the previous api keeps serving, untouched"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/broken.json"),
        "the new container's logs: {stderr}"
    );
    assert_eq!(
        project.containers(),
        before,
        "the same containers, under their names"
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed: {:#?}",
        report.failures.len(),
        report.requests,
        &report.failures[..report.failures.len().min(20)]
    );
    let (status, body) = get(
        &project.api_url("/supmit/api/v1.0/get_student_ages/alice"),
        true,
    );
    assert_eq!((status, body.as_str()), (200, "12"));
}

#[test]
fn ctrl_c_during_a_replacement_removes_the_new_container_and_the_old_keeps_serving() {
    build_images();
    let project = Project::new("sigint-replace");
    assert!(project.run(&["up", "--no-build"]).status.success());
    let before = project.containers();
    let mut child = project
        .deployer(&["up", "--no-build"])
        .env("FRONTEND_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt while the new frontend, beside the old, is being
    // health-gated.
    let deadline = Instant::now() + Duration::from_secs(30);
    while project.containers().len() <= before.len() {
        assert!(Instant::now() < deadline, "the replacement never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(!child.wait().unwrap().success());
    assert_eq!(
        project.containers(),
        before,
        "the old containers, under their names"
    );
    // The old one never stopped; the edge may still be taking the new one
    // out: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = project.frontend_url("/");
    while !support::answers(&url) {
        assert!(
            Instant::now() < deadline,
            "the old frontend never answered again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = get(&url, false);
    assert_eq!(status, 200, "the old frontend serves again");
}

#[test]
fn up_replaces_every_service_under_load_without_failing_a_request() {
    build_images();
    let project = Project::new("zero-downtime");
    // HTTPS on, from a test CA's certificate: the UI load goes over HTTPS
    // (its plain port redirects), the API load over both.
    let tls = tempfile::tempdir().unwrap();
    let (ca_pem, cert_file, key_file) = support::test_certificate(tls.path());
    let (https_port, ui_local_port) = (support::free_port(), support::free_port());
    let up = || {
        let mut command = project.deployer(&["up", "--no-build"]);
        command
            .env("TLS_DOMAINS", "127.0.0.1")
            .env("TLS_CERT_FILE", &cert_file)
            .env("TLS_KEY_FILE", &key_file)
            .env("HTTPS_PORT", https_port.to_string())
            .env("UI_LOCAL_PORT", ui_local_port.to_string());
        command
    };
    let out = up().output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let https = format!("https://127.0.0.1:{https_port}");
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let load = Load::start(
        LoadTarget {
            api: project.api_url(""),
            ui: https.clone(),
            https: Some((https, ca)),
        },
        "zd",
        4,
        2,
    );
    std::thread::sleep(Duration::from_secs(1));
    // Every service's environment changes: the API and the UI are replaced
    // start-first behind the edge, the edge hands its sockets over.
    let out = up()
        .env("API_LOG", "debug")
        .env("FRONTEND_LOG", "debug")
        .env("EDGE_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 of 3 services changed"),
        "{}",
        text(&out)
    );
    std::thread::sleep(Duration::from_secs(1));
    let report = load.stop();
    report.assert_nothing_failed_or_lost(&project.api_url(""));
    eprintln!(
        "zero-downtime up: {} requests, {} acknowledged writes, 0 failed",
        report.requests,
        report.acknowledged.len()
    );
}
