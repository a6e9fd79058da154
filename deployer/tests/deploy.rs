//! `release`, `deploy`, `status --host` and `rollback` end to end, on one
//! machine: a registry with htpasswd auth, and an "EC2" host made of its own
//! sshd and its own Docker daemon (see DESIGN.md).
//!
//! One environment serves one scenario, told in order, because a deploy
//! host's state (what ran before, its data) is the point of these tests.

mod support;

use std::time::Instant;

use support::ec2::Ec2;
use support::{build_images, text};

fn get(url: &str, auth: bool) -> (u16, String) {
    support::get(url, auth)
}

#[test]
fn release_then_deploy_to_an_empty_host_and_redeploy_keeping_live_data() {
    build_images();
    let env = Ec2::start();
    let host = &env.host;

    // A wrong registry password fails fast, before any build.
    let out = env
        .deployer(&["release", "--allow-dirty"])
        .env("DOCKER_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused the login of user \"ci\""),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");

    let out = env
        .deployer(&["release", "--allow-dirty"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("PASS  list students with auth"), "{stdout}");
    assert!(
        stdout.contains(&format!("pushed {}/student-ages-api:", env.registry.server)),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&env.registry.password)
            && !String::from_utf8_lossy(&out.stderr).contains(&env.registry.password)
    );

    // The host starts with no images; deploy pulls them.
    assert_eq!(host.docker(&["images", "-q"]), "");
    let started = Instant::now();
    let out = env.deployer(&["deploy"]).output().unwrap();
    let first_deploy = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let api = |path: &str| format!("http://127.0.0.1:{}{path}", host.api_port);
    let (status, body) = get(&api("/supmit/api/v1.0/get_student_ages"), true);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"alice\":12"), "{body}");
    let (status, page) = get(&format!("http://127.0.0.1:{}/", host.frontend_port), false);
    assert_eq!(status, 200);
    assert!(page.contains("carol"), "{page}");

    // The API, non-root in its container, can write the data the deploy put there.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let put = runtime.block_on(async {
        reqwest::Client::new()
            .put(api("/supmit/api/v1.0/student_ages/frank"))
            .basic_auth("root", Some("root"))
            .json(&serde_json::json!({"age": 15}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(put, 201);

    // A second deploy (nothing changed) keeps the live data.
    let started = Instant::now();
    let out = env.deployer(&["deploy"]).output().unwrap();
    let noop_deploy = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 of 2 services changed"));
    assert_eq!(
        get(&api("/supmit/api/v1.0/get_student_ages/frank"), true).1,
        "15"
    );
    eprintln!("first deploy {first_deploy:?}, no-op deploy {noop_deploy:?}");

    // status from afar, and on the host with the deployer the deploy left there.
    let out = env
        .deployer(&["status", "--host", &host.target(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["healthy"], true);
    assert_eq!(json["students"], 6);
    assert_eq!(json["last_deploy"]["result"], "ok");
    let on_host = host.home().join("student-ages");
    let out = std::process::Command::new(on_host.join("deployer"))
        .arg("status")
        .current_dir(&on_host)
        .env(
            "DOCKER_HOST",
            format!("unix://{}", host.docker_socket.display()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("healthy") && stdout.contains("6 students"),
        "{stdout}"
    );
}
