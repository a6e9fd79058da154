//! `deployer setup` and the readiness check against hosts that really lack
//! Docker: a bare Debian root filesystem in its own namespaces with its own
//! sshd (support::bare_host), where apt really installs docker.io and dockerd
//! really runs. Each test has its own host; they run side by side.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Instant;

use crate::support;
use crate::support::bare_host::{BareHost, Sudo};
use crate::support::text;

/// `deployer setup --host HOST ARGS` with the host's key and known_hosts.
fn setup(host: &BareHost, args: &[&str]) -> Output {
    setup_with(host, &host.private_key, &host.known_hosts, args)
}

fn setup_with(host: &BareHost, key: &Path, known_hosts: &Path, args: &[&str]) -> Output {
    support::deployer()
        .args(["setup", "--host", &host.target()])
        .args(args)
        .env("EC2_PRIVATE_KEY", key)
        .env("EC2_KNOWN_HOSTS", known_hosts)
        .env_remove("EC2_DOCKER_SOCKET")
        .env_remove("AWS_EC2_INSTANCE")
        .output()
        .expect("run deployer setup")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `command` over SSH as the host's user; its stdout, or a panic.
fn ssh_ok(host: &BareHost, command: &str) -> String {
    let out = host.ssh(command);
    assert!(out.status.success(), "ssh {command}: {}", text(&out));
    stdout(&out)
}

fn assert_clean(host: BareHost) {
    let left = host.shutdown();
    assert!(left.is_empty(), "the bare host left behind: {left:#?}");
}

#[test]
fn setup_installs_docker_on_a_bare_host_and_a_second_run_changes_nothing() {
    let host = BareHost::start();
    // An administrator's settings, which setup must keep.
    host.write_file(
        "/etc/docker/daemon.json",
        "{\n  \"labels\": [\"lab=bare-host\"],\n  \"log-opts\": {\"labels\": \"app\"}\n}\n",
    );

    // Unknown host: trusted once and recorded, as the README tells a
    // newcomer to do; the check names what is missing and changes nothing.
    let recorded = host.path("recorded_known_hosts");
    let out = setup_with(
        &host,
        &host.private_key,
        &recorded,
        &["--check", "--accept-new-host-key"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("is not ready for a deploy"), "{err}");
    assert!(err.contains("Docker is not installed"), "{err}");
    assert!(
        err.contains(&format!("deployer setup --host {}", host.target())),
        "{err}"
    );
    assert!(stdout(&out).contains("not installed"), "{}", text(&out));
    let recorded_text = std::fs::read_to_string(&recorded).unwrap();
    assert!(recorded_text.contains(&host.host_key()), "{recorded_text}");

    // From here the recorded key is checked strictly.
    let started = Instant::now();
    let out = setup_with(&host, &host.private_key, &recorded, &[]);
    let first_run = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    eprintln!("{said}");
    for expected in [
        &format!(
            "setup will run with sudo on {}: write /etc/docker/daemon.json",
            host.target()
        ),
        "apt-get install -y --no-install-recommends docker.io apparmor ca-certificates xz-utils",
        "usermod -aG docker deploy",
        "set Docker's log rotation in /etc/docker/daemon.json (json-file, max-size 10m, max-file 3), keeping its other settings",
        "installed Docker (apt-get install -y --no-install-recommends docker.io apparmor",
        "started dockerd directly",
        "added deploy to the `docker` group",
        "created ~/student-ages",
        "systemd is not PID 1",
    ] {
        assert!(said.contains(expected), "missing {expected:?} in:\n{said}");
    }

    // A fresh login uses Docker without sudo; the daemon runs with the
    // merged settings.
    let info = ssh_ok(
        &host,
        "docker info -f '{{.LoggingDriver}} {{json .Labels}} {{.Driver}}'",
    );
    eprintln!("docker info on the bare host: {info}");
    assert!(info.starts_with("json-file "), "{info}");
    assert!(info.contains("lab=bare-host"), "{info}");
    let config: serde_json::Value =
        serde_json::from_str(&ssh_ok(&host, "cat /etc/docker/daemon.json")).unwrap();
    assert_eq!(config["labels"][0], "lab=bare-host", "{config}");
    assert_eq!(config["log-opts"]["labels"], "app", "{config}");
    assert_eq!(config["log-opts"]["max-size"], "10m", "{config}");
    assert_eq!(config["log-opts"]["max-file"], "3", "{config}");
    assert_eq!(config["log-driver"], "json-file", "{config}");
    assert_eq!(ssh_ok(&host, "stat -c %U ~/student-ages").trim(), "deploy");

    let started = Instant::now();
    let out = setup_with(&host, &host.private_key, &recorded, &[]);
    let second_run = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains("was already set up; nothing changed"),
        "{said}"
    );
    assert!(!said.contains("sudo"), "{said}");

    let out = setup_with(&host, &host.private_key, &recorded, &["--check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("is ready for a deploy"),
        "{}",
        text(&out)
    );

    eprintln!(
        "bare host: extract {:.1?}, boot {:.1?}; setup first run {:.1?}, second run {:.1?}",
        host.extract_time, host.boot_time, first_run, second_run
    );
    assert_clean(host);
}

#[test]
fn setup_starts_a_stopped_daemon_and_restarts_a_running_one_only_to_bound_its_logs() {
    let host = BareHost::start();
    let out = setup(&host, &[]);
    assert!(out.status.success(), "{}", text(&out));
    host.stop_docker();

    let out = setup(&host, &["--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the Docker daemon is not running (nothing answers on /var/run/docker.sock)"),
        "{err}"
    );
    assert!(!err.contains("not installed"), "{err}");
    assert!(!err.contains("group"), "{err}");
    assert!(err.contains("deployer setup --host"), "{err}");

    let started = Instant::now();
    let out = setup(&host, &[]);
    let restart = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!(
            "setup will run with sudo on {}: dockerd",
            host.target()
        )),
        "{said}"
    );
    assert!(said.contains("started dockerd directly"), "{said}");
    assert!(!said.contains("installed Docker"), "{said}");
    assert!(!said.contains("log rotation in"), "{said}");
    ssh_ok(&host, "docker version -f '{{.Server.Version}}'");
    eprintln!("bare host: setup of a stopped daemon {restart:.1?}");

    // An administrator replaces the settings while the daemon runs: setup
    // merges the rotation back in and restarts the daemon so it applies.
    host.write_file(
        "/etc/docker/daemon.json",
        "{\"labels\": [\"after=restart\"]}\n",
    );
    let out = setup(&host, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!(
            "setup will run with sudo on {}: write /etc/docker/daemon.json (json-file logs, \
             max-size 10m, max-file 3), restart dockerd\n",
            host.target()
        )),
        "{said}"
    );
    assert!(said.contains("keeping its other settings"), "{said}");
    assert!(
        said.contains("restarted Docker so the log rotation applies"),
        "{said}"
    );
    let labels = ssh_ok(&host, "docker info -f '{{json .Labels}}'");
    assert!(labels.contains("after=restart"), "{labels}");
    let out = setup(&host, &[]);
    assert!(stdout(&out).contains("nothing changed"), "{}", text(&out));
    assert_clean(host);
}

#[test]
fn without_passwordless_sudo_setup_changes_nothing_and_names_the_commands_to_run() {
    let host = BareHost::start_with(Sudo::WithPassword);
    let out = setup(&host, &["--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("Docker is not installed"),
        "{}",
        text(&out)
    );

    let out = setup(&host, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    eprintln!("{err}");
    for expected in [
        "did not run without a password",
        "a password is required",
        "NOPASSWD",
        "  sudo apt-get update\n",
        "  sudo apt-get install -y --no-install-recommends docker.io apparmor ca-certificates xz-utils\n",
        "  sudo mkdir -p /etc/docker\n",
        "  echo '{\"log-driver\":\"json-file\",\"log-opts\":{\"max-size\":\"10m\",\"max-file\":\"3\"}}' | sudo tee /etc/docker/daemon.json\n",
        "  sudo sh -c 'setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &'\n",
        "  sudo usermod -aG docker deploy\n",
        "Nothing was changed",
    ] {
        assert!(err.contains(expected), "{expected:?} in:\n{err}");
    }
    let out = host.exec(
        "command -v docker || test -e /etc/docker/daemon.json || test -e /home/deploy/student-ages \
         || getent group docker",
    );
    assert!(
        !out.status.success(),
        "setup changed the host: {}",
        text(&out)
    );
    assert_clean(host);
}

#[test]
fn a_private_key_others_can_read_is_named_as_ssh_names_it() {
    let host = BareHost::start();
    let loose = host.path("loose_key");
    std::fs::copy(&host.private_key, &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = setup_with(&host, &loose, &host.known_hosts, &["--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    eprintln!("{err}");
    assert!(err.contains("other users can read it"), "{err}");
    assert!(err.contains("are too open"), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", loose.display())),
        "{err}"
    );
    assert!(!err.contains("not authorized"), "{err}");
    assert_clean(host);
}

#[test]
fn the_deploy_tests_host_is_ready_through_its_own_socket_without_the_docker_group() {
    // The "EC2" host of the deploy tests: its user reaches a daemon of its
    // own through EC2_DOCKER_SOCKET and is in no `docker` group.
    let env = support::ec2::Ec2::start();
    let out = env.deployer(&["setup", "--check"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(said.contains("is ready for a deploy"), "{said}");
    assert!(said.contains("is not a member"), "{said}");
}
