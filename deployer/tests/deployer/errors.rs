//! Errors a user meets: broken pipeline.yaml and docker-compose.yml files
//! (named by file, line and column, or key), a missing pipeline, no Docker
//! daemon, a socket they may not use. Each gets a message and exit code 1.

use crate::support;

use std::path::Path;

use crate::support::{deployer, text};

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).unwrap();
}

const PIPELINE: &str = "images: {}\ntest:\n  auth: {username: root, password: \"${API_PASSWORD:-root}\"}\n  checks: []\n";
const COMPOSE: &str = "services:\n  api:\n    image: student-ages-api:latest\n";

fn run_in(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = deployer()
        .args(["--file", dir.join("pipeline.yaml").to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_pipeline_key_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "pipeline.yaml",
        &format!("{PIPELINE}registy: docker.io\n"),
    );
    write(dir.path(), "docker-compose.yml", COMPOSE);
    let (code, stderr) = run_in(dir.path(), &["status"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("pipeline.yaml:5:1: unknown field `registy`, expected one of"),
        "{stderr}"
    );
}

#[test]
fn an_unsupported_compose_feature_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pipeline.yaml", PIPELINE);
    write(
        dir.path(),
        "docker-compose.yml",
        &format!("{COMPOSE}    deploy: {{replicas: 3}}\n"),
    );
    let (code, stderr) = run_in(dir.path(), &["up", "--no-build"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("docker-compose.yml:4:5: services.api: unknown field `deploy`"),
        "{stderr}"
    );
}

#[test]
fn a_pipeline_naming_a_missing_service_says_which() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "pipeline.yaml",
        &PIPELINE.replace(
            "images: {}",
            "images:\n  web: {package: p, binary: b, dockerfile: D}",
        ),
    );
    write(dir.path(), "docker-compose.yml", COMPOSE);
    let (code, stderr) = run_in(dir.path(), &["build"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("`images.web`"), "{stderr}");
    assert!(
        stderr.contains("has no service \"web\" (it has: api)"),
        "{stderr}"
    );
}

#[test]
fn a_secret_written_into_the_pipeline_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "pipeline.yaml",
        &PIPELINE.replace("\"${API_PASSWORD:-root}\"", "hunter2"),
    );
    write(dir.path(), "docker-compose.yml", COMPOSE);
    let (code, stderr) = run_in(dir.path(), &["test"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("`test.auth.password`: secrets never live in this file"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_missing_pipeline_file_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::deployer()
        .current_dir(dir.path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pipeline.yaml in"));
}

#[test]
fn no_docker_daemon_is_explained() {
    let out = deployer()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no Docker daemon: /nonexistent/docker.sock does not exist"),
        "{stderr}"
    );
}

#[test]
fn permission_denied_on_the_docker_socket_is_explained() {
    // Run as `nobody`, who is not in the docker group. Needs root to switch
    // user, which the test command has (it installs packages and starts dockerd).
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_deployer"))
        .arg("status")
        .current_dir(support::root());
    let out = command.output().expect("setpriv (util-linux) runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("permission denied on the Docker socket")
            && stderr.contains("docker` group"),
        "{stderr}"
    );
}

#[test]
fn a_registry_that_refuses_pushes_fails_release_before_any_build() {
    let dir = tempfile::tempdir().unwrap();
    let registry = support::ec2::Registry::start_read_only(dir.path());
    let out = deployer()
        .args(["release", "--allow-dirty"])
        .env("DOCKER_REGISTRY", &registry.server)
        .env("DOCKER_USERNAME", &registry.username)
        .env("DOCKER_PASSWORD", &registry.password)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not accept pushes to student-ages-api")
            && stderr.contains("Nothing was built or pushed"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("built"),
        "nothing is built: {}",
        text(&out)
    );
    assert!(!stderr.contains(&registry.password));
}

#[test]
fn push_and_release_without_a_registry_say_how_to_name_one() {
    let out = deployer()
        .args(["push", "--allow-dirty"])
        .env_remove("DOCKER_REGISTRY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no registry is configured: set DOCKER_REGISTRY"),
        "{stderr}"
    );
}

/// A pipeline whose deploy target is a swarm of two hosts.
const SWARM: &str =
    "deploy:\n  swarm:\n    hosts: [ops@10.0.0.1, ops@10.0.0.2]\n    data: 10.0.0.2\n";

fn run_swarm(dir: &Path, args: &[&str], host: Option<&str>) -> (i32, String) {
    let mut command = deployer();
    command
        .args(["--file", dir.join("pipeline.yaml").to_str().unwrap()])
        .args(args)
        .env_remove("AWS_EC2_INSTANCE")
        .env_remove("EC2_HOST_KEY");
    if let Some(host) = host {
        command.env("AWS_EC2_INSTANCE", host);
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_swarm_and_a_single_host_both_set_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pipeline.yaml", &format!("{PIPELINE}{SWARM}"));
    write(dir.path(), "docker-compose.yml", COMPOSE);
    let (code, stderr) = run_swarm(dir.path(), &["setup"], Some("ubuntu@203.0.113.10"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "two deploy targets: the host ubuntu@203.0.113.10 (AWS_EC2_INSTANCE) and the swarm \
             of 2 hosts (deploy.swarm.hosts in"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("or pass --host for one host"), "{stderr}");
}

#[test]
fn a_swarm_target_refuses_files_into_volumes_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let files = "files:\n  - {volume: certs, file: cert.pem, path: tls/cert.pem, owner: \"1:1\"}\n";
    write(
        dir.path(),
        "pipeline.yaml",
        &format!("{PIPELINE}{SWARM}{files}"),
    );
    write(
        dir.path(),
        "docker-compose.yml",
        &format!("{COMPOSE}    volumes: [certs:/certs]\nvolumes:\n  certs: {{}}\n"),
    );
    write(dir.path(), "cert.pem", "not used");
    let (code, stderr) = run_swarm(
        dir.path(),
        &["deploy", "--tag", "v1", "--allow-default-credentials"],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("files[0].file (cert.pem) is set, but putting files into volumes")
            && stderr.contains("works on one host only yet"),
        "{stderr}"
    );
    assert!(!stderr.contains("connecting"), "{stderr}");
    write(dir.path(), "pipeline.yaml", &format!("{PIPELINE}{SWARM}"));
    // A broken swarm section is named by its key, for every command.
    write(
        dir.path(),
        "pipeline.yaml",
        &format!("{PIPELINE}{}", SWARM.replace("10.0.0.2\n", "10.0.0.9\n")),
    );
    let (code, stderr) = run_swarm(dir.path(), &["status"], None);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "pipeline.yaml: `deploy.swarm.data`: \"10.0.0.9\" is none of deploy.swarm.hosts: one \
             of ops@10.0.0.1, ops@10.0.0.2"
        ),
        "{stderr}"
    );
}

#[test]
fn a_file_to_put_into_a_volume_is_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let files = "files:\n  - {volume: certs, file: \"${TLS_CERT_FILE:-}\", path: tls/cert.pem, owner: \"65532:65532\"}\n";
    write(dir.path(), "pipeline.yaml", &format!("{PIPELINE}{files}"));
    write(
        dir.path(),
        "docker-compose.yml",
        &format!("{COMPOSE}    volumes: [certs:/certs]\nvolumes:\n  certs: {{}}\n"),
    );
    let missing = dir.path().join("no-such-cert.pem");
    let deploy = || {
        let out = deployer()
            .args(["--file", dir.path().join("pipeline.yaml").to_str().unwrap()])
            .args(["deploy", "--tag", "v1", "--allow-default-credentials"])
            .args(["--host", "ubuntu@203.0.113.10"])
            .env("TLS_CERT_FILE", &missing)
            .env_remove("DOCKER_REGISTRY")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Unreadable: named with the variable that set it, before connecting.
    let (code, stderr) = deploy();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display()))
            && stderr.contains("files[0].file (${TLS_CERT_FILE:-})"),
        "{stderr}"
    );
    assert!(!stderr.contains("connecting"), "{stderr}");
    // A path out of the volume is refused by its key.
    let escaping = files.replace("tls/cert.pem", "../etc/cert.pem");
    write(
        dir.path(),
        "pipeline.yaml",
        &format!("{PIPELINE}{escaping}"),
    );
    let (code, stderr) = run_in(dir.path(), &["status"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("`files[0].path`: \"../etc/cert.pem\" must be a path inside the volume"),
        "{stderr}"
    );
}

#[test]
fn a_swarm_deploy_refuses_to_run_without_a_required_variable() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "pipeline.yaml",
        &format!("{PIPELINE}{SWARM}    require: [UI_SESSION_KEY]\n"),
    );
    write(dir.path(), "docker-compose.yml", COMPOSE);
    for args in [
        &["deploy", "--tag", "v1", "--allow-default-credentials"][..],
        &["rollback"][..],
    ] {
        let out = deployer()
            .args(["--file", dir.path().join("pipeline.yaml").to_str().unwrap()])
            .args(args)
            .env_remove("AWS_EC2_INSTANCE")
            .env_remove("UI_SESSION_KEY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("refusing to deploy to the swarm: UI_SESSION_KEY is not set")
                && stderr.contains("deploy.swarm.require names it"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("connecting"), "{args:?}: {stderr}");
    }
}
