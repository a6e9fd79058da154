//! `release`, `deploy`, `status --host` and `rollback` end to end, on one
//! machine: a registry with htpasswd auth, and an "EC2" host made of its own
//! sshd and its own Docker daemon (ARCHITECTURE.md, "Tests", describes it).
//!
//! One environment serves one scenario, told in order, because a deploy
//! host's state (what ran before, its data) is the point of these tests.

use crate::support;

use std::time::Instant;

use crate::support::ec2::Ec2;
use crate::support::netns::OtherNetns;
use crate::support::{TestImage, build_images, text};

/// How long a deploy may take to connect and take the lock: generous, the
/// machines that run this are shared and sometimes very busy.
const TAKES_THE_LOCK: std::time::Duration = std::time::Duration::from_secs(120);

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
    released_for_amd64_and_arm64(&env, &stdout);

    // The host starts with no images; deploy pulls them. Without the API's
    // own credentials it refuses, unless told the defaults are meant.
    assert_eq!(host.docker(&["images", "-q"]), "");
    let out = env
        .deployer(&["deploy"])
        .env_remove("API_USERNAME")
        .env_remove("API_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to deploy: API_USERNAME, API_PASSWORD are not set")
            && stderr.contains("--allow-default-credentials"),
        "{stderr}"
    );
    assert_eq!(
        host.docker(&["images", "-q"]),
        "",
        "a refused deploy changes nothing"
    );
    let started = Instant::now();
    let out = env
        .deployer(&["deploy", "--allow-default-credentials"])
        .env_remove("API_USERNAME")
        .env_remove("API_PASSWORD")
        .output()
        .unwrap();
    let first_deploy = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("warning: API_USERNAME, API_PASSWORD are not set"),
        "{}",
        text(&out)
    );
    let api = |path: &str| format!("http://127.0.0.1:{}{path}", host.api_port);
    let (status, body) = get(&api("/supmit/api/v1.0/get_student_ages"), true);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"alice\":12"), "{body}");
    let (status, page) =
        support::signed_in_page(&format!("http://127.0.0.1:{}", host.frontend_port), "/");
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 of 3 services changed"));
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
    // Real use changes the seed's students; a later deploy of a new version
    // must not depend on them (its checks read shapes, not seed values).
    let runtime_live = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime_live.block_on(async {
        let client = reqwest::Client::new();
        let alice = client
            .put(api("/supmit/api/v1.0/student_ages/alice"))
            .basic_auth("root", Some("root"))
            .json(&serde_json::json!({"age": 20}))
            .send()
            .await
            .unwrap();
        assert_eq!(alice.status().as_u16(), 200);
        let bob = client
            .delete(api("/supmit/api/v1.0/student_ages/bob"))
            .basic_auth("root", Some("root"))
            .send()
            .await
            .unwrap();
        assert_eq!(bob.status().as_u16(), 204);
    });
    publish(&env, "student-ages-api:latest", "live-v2");
    let out = env
        .deployer(&["deploy", "--tag", "live-v2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(deployed_version(&env), "live-v2");
    assert_eq!(
        get(&api("/supmit/api/v1.0/get_student_ages/alice"), true).1,
        "20",
        "the live data stays as users left it"
    );

    // `backup` saves the live file here; `restore` puts it back through the
    // API after saving the live file again, and refuses a broken file
    // before touching anything.
    let saved = tempfile::tempdir().unwrap();
    let out_dir = saved.path().to_str().unwrap();
    let out = env
        .deployer(&["backup", "--out", out_dir])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let backups = || support::files_in(saved.path());
    let [backup] = &backups()[..] else {
        panic!("one backup: {:?}", backups())
    };
    let backed_up: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(backup).unwrap()).unwrap();
    assert_eq!(backed_up["alice"], 20, "{backed_up}");
    assert!(backed_up.get("bob").is_none(), "{backed_up}");
    runtime_live.block_on(async {
        let response = reqwest::Client::new()
            .put(api("/supmit/api/v1.0/student_ages/alice"))
            .basic_auth("root", Some("root"))
            .json(&serde_json::json!({"age": 30}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    });
    let broken = saved.path().join("broken.json");
    std::fs::write(&broken, "{\"alice\": 20,\n \"bob\" 13}").unwrap();
    let out = env
        .deployer(&["restore", broken.to_str().unwrap(), "--out", out_dir])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("broken.json") && text(&out).contains("line 2"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(&broken).unwrap();
    let out = env
        .deployer(&["restore", backup.to_str().unwrap(), "--out", out_dir])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        get(&api("/supmit/api/v1.0/get_student_ages/alice"), true).1,
        "20",
        "the backup's data is back"
    );
    let after = backups();
    assert_eq!(after.len(), 2, "the live file was saved first: {after:?}");
    let live: Vec<serde_json::Value> = after
        .iter()
        .filter(|p| *p != backup)
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    assert_eq!(
        live[0]["alice"], 30,
        "the data before the restore: {live:?}"
    );
    let audit = std::fs::read_to_string(host.home().join("student-ages/audit.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["action"].as_str(), last["result"].as_str()),
        (Some("restore"), Some("ok")),
        "{audit}"
    );
    assert_eq!(
        deployed_version(&env),
        "live-v2",
        "a restore changes no version"
    );

    // A line torn by a killed deploy does not swallow the next entry.
    let audit_log = host.home().join("student-ages/audit.log");
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&audit_log)
        .unwrap();
    std::io::Write::write_all(&mut torn, b"{\"time\": \"2026").unwrap();
    drop(torn);

    // --reseed-data puts the seed back, keeping the live file as a backup.
    let out = env.deployer(&["deploy", "--reseed-data"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let audit = std::fs::read_to_string(&audit_log).unwrap();
    let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["result"], "ok", "{audit}");
    let (status, _) = get(&api("/supmit/api/v1.0/get_student_ages/frank"), true);
    assert_eq!(status, 404, "the seed has no frank");
    let volume = host.docker(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}}",
        "student-ages_student-data",
    ]);
    let backups: Vec<_> = std::fs::read_dir(volume.trim())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("student_age.json.backup-")
        })
        .collect();
    assert_eq!(backups.len(), 1, "one timestamped backup");
    let backup = std::fs::read_to_string(backups[0].path()).unwrap();
    assert!(
        backup.contains("\"frank\""),
        "the backup holds the live data: {backup}"
    );

    // Going public: the API kept to the host's loopback (EC2_API_BIND) is
    // out of reach from another machine, while the UI, which reaches the API
    // through the edge's unix socket, still shows the students.
    let elsewhere = OtherNetns::new();
    assert!(
        elsewhere.answers(host.api_port, "/healthz"),
        "bound to every address first"
    );
    let out = env
        .deployer(&["deploy"])
        .env("EC2_API_BIND", "127.0.0.1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !elsewhere.answers(host.api_port, "/healthz"),
        "the API must not answer another network namespace"
    );
    assert!(elsewhere.answers(host.frontend_port, "/healthz"));
    assert_eq!(get(&api("/supmit/api/v1.0/get_student_ages"), true).0, 200);
    let (status, page) =
        support::signed_in_page(&format!("http://127.0.0.1:{}", host.frontend_port), "/");
    assert_eq!(status, 200);
    assert!(page.contains("carol"), "{page}");
}

fn ids(env: &Ec2) -> String {
    env.host.docker(&["ps", "-q", "--no-trunc"])
}

fn deployed_version(env: &Ec2) -> String {
    let out = env
        .deployer(&["status", "--host", &env.host.target(), "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    json["last_deploy"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Tags the local images `from` as `to` and pushes that tag.
fn publish(env: &Ec2, api_image: &str, to: &str) {
    support::docker(&["tag", api_image, &format!("student-ages-api:{to}")]);
    for service in ["frontend", "edge"] {
        support::docker(&[
            "tag",
            &format!("student-ages-{service}:latest"),
            &format!("student-ages-{service}:{to}"),
        ]);
    }
    let out = env.deployer(&["push", "--tag", to]).output().unwrap();
    support::docker(&[
        "rmi",
        &format!("student-ages-api:{to}"),
        &format!("student-ages-frontend:{to}"),
        &format!("student-ages-edge:{to}"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn failed_and_refused_deploys_leave_the_running_version_serving() {
    build_images();
    let env = Ec2::start();
    let host = &env.host;
    let api = |path: &str| format!("http://127.0.0.1:{}{path}", host.api_port);
    publish(&env, "student-ages-api:latest", "v1");
    let out = env.deployer(&["deploy", "--tag", "v1"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let serving = ids(&env);

    // A host key that is not the host's: refused, nothing changed.
    let other_key = env.path().join("other_host_key");
    std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .unwrap();
    let other_pub = std::fs::read_to_string(other_key.with_extension("pub")).unwrap();
    let fields: Vec<&str> = other_pub.split_whitespace().collect();
    let wrong_known_hosts = env.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong_known_hosts,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            host.ssh_port, fields[0], fields[1]
        ),
    )
    .unwrap();
    let out = env
        .deployer(&["deploy", "--tag", "v1"])
        .env("EC2_KNOWN_HOSTS", &wrong_known_hosts)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("host key of"), "{stderr}");
    assert!(stderr.contains("Nothing was changed"), "{stderr}");

    // A pinned host key: the wrong one is refused, the right one works
    // without any known_hosts file.
    let out = env
        .deployer(&[
            "status",
            "--host-key",
            other_pub.trim(),
            "--host",
            &host.target(),
        ])
        .env_remove("EC2_KNOWN_HOSTS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("host key of"));
    let host_pub = std::fs::read_to_string(env.path().join("host_key.pub")).unwrap();
    let out = env
        .deployer(&[
            "status",
            "--host-key",
            host_pub.trim(),
            "--host",
            &host.target(),
        ])
        .env("EC2_KNOWN_HOSTS", "/nonexistent/known_hosts")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // A key the host does not authorize: refused.
    let out = env
        .deployer(&["deploy", "--tag", "v1"])
        .env("EC2_PRIVATE_KEY", &other_key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the SSH login"), "{stderr}");

    // A wrong registry password: refused before connecting.
    let out = env
        .deployer(&["deploy", "--tag", "v1"])
        .env("DOCKER_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the login"));

    // A Docker socket the SSH user may not use (not in its group): said so.
    let out = env
        .deployer(&["deploy", "--tag", "v1"])
        .env("EC2_DOCKER_SOCKET", "/var/run/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("may not use the Docker socket /var/run/docker.sock"),
        "{stderr}"
    );
    assert!(stderr.contains("`docker` group"), "{stderr}");
    assert_eq!(ids(&env), serving, "a refused deploy must change nothing");

    // The host's logs, from afar.
    let out = env
        .deployer(&["logs", "--host", &host.target(), "api"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().all(|l| l.starts_with("api")) && stdout.contains("listen="),
        "{stdout}"
    );

    // A concurrent deploy is refused while another holds the lock.
    let lock = host.home().join("student-ages/deploy.lock");
    let mut first = env
        .deployer(&["deploy", "--tag", "v1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TAKES_THE_LOCK;
    while !lock.join("holder.json").exists() {
        assert!(
            Instant::now() < deadline,
            "the first deploy never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = first.id().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    let second = env.deployer(&["deploy", "--tag", "v1"]).output().unwrap();
    // A live lock is never released.
    let release = env
        .deployer(&["lock", "release", "--host", &host.target()])
        .output()
        .unwrap();
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    assert!(first.wait().unwrap().success());
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another deploy to") && stderr.contains("held by"),
        "{stderr}"
    );
    assert!(stderr.contains("a deploy is running"), "{stderr}");
    assert_eq!(release.status.code(), Some(1), "{}", text(&release));
    assert!(
        String::from_utf8_lossy(&release.stderr).contains("is live"),
        "{}",
        text(&release)
    );

    // Ctrl-C during a deploy undoes its unfinished steps and frees the lock.
    let interrupted = env
        .deployer(&["deploy", "--tag", "v1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TAKES_THE_LOCK;
    while !lock.join("holder.json").exists() {
        assert!(Instant::now() < deadline, "the deploy never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = interrupted.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let out = interrupted.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert!(!lock.exists(), "the lock is released");
    let audit = std::fs::read_to_string(host.home().join("student-ages/audit.log")).unwrap();
    assert!(
        audit.lines().last().unwrap().contains("interrupted"),
        "{audit}"
    );
    assert_eq!(ids(&env), serving, "the running version is untouched");

    // A deploy killed outright (SIGKILL) cannot release the lock. Once its
    // SSH connection is gone, the lock says so and `lock release` frees it.
    let mut killed = env
        .deployer(&["deploy", "--tag", "v1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TAKES_THE_LOCK;
    while !lock.join("holder.json").exists() {
        assert!(Instant::now() < deadline, "the deploy never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    // Its SSH master outlives it (ControlPersist, up to a minute): end it
    // now rather than wait.
    env.kill_ssh_masters();
    let out = env.deployer(&["deploy", "--tag", "v1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SSH connection is gone") && stderr.contains("deployer lock release"),
        "{stderr}"
    );
    let out = env
        .deployer(&["lock", "status", "--host", &host.target()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("that deploy was killed"));
    let out = env
        .deployer(&["lock", "release", "--host", &host.target()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("released the stale lock"));
    assert!(!lock.exists());
    let out = env.deployer(&["deploy", "--tag", "v1"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(ids(&env), serving, "the killed deploy changed nothing");

    // An API image that does not start: the deploy fails, says why, and v1
    // serves again.
    publish(&env, &TestImage::sick_api("dtest-sick").name(), "sick");
    // Secrets stay out of every process's arguments while a deploy runs.
    let mut deploy = env
        .deployer(&["deploy", "--tag", "sick"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen_secret = None;
    while deploy.try_wait().unwrap().is_none() {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains(&env.registry.password) {
                    seen_secret = Some(cmdline);
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = deploy.wait_with_output().unwrap();
    assert_eq!(
        seen_secret, None,
        "the registry password appeared in a command line"
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("v1 restored"), "{stderr}");
    // Behind the edge, the edge's check is its gate and Docker is watched
    // for its exit: it is told at once, not when a healthcheck gives up.
    assert!(stderr.contains("service api exited"), "{stderr}");
    assert!(
        stderr.contains("/broken.json"),
        "the new container's logs: {stderr}"
    );
    assert!(
        !stderr.contains(&env.registry.password)
            && !String::from_utf8_lossy(&out.stdout).contains(&env.registry.password)
    );
    let (status, body) = get(&api("/supmit/api/v1.0/get_student_ages/alice"), true);
    assert_eq!((status, body.as_str()), (200, "12"));
    assert_eq!(
        deployed_version(&env),
        "sick",
        "the audit log records the failed attempt"
    );
    let audit = std::fs::read_to_string(host.home().join("student-ages/audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .last()
            .unwrap()
            .contains("failed, v1 restored"),
        "{audit}"
    );

    // Rollback: v2 (another API image) deployed, then back to v1 without
    // naming it.
    let v2 = TestImage::build("dtest-v2", "FROM student-ages-api:latest\nLABEL v=2\n", &[]);
    publish(&env, &v2.name(), "v2");
    let out = env.deployer(&["deploy", "--tag", "v2"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        host.docker(&["ps", "--format", "{{.Image}}"])
            .contains("student-ages-api:v2")
    );
    // Old images are pruned, but never a version a rollback may want.
    let tags = host.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        !tags.contains(":sick"),
        "the failed version is pruned: {tags}"
    );
    assert!(
        tags.contains("student-ages-api:v1"),
        "the rollback target stays: {tags}"
    );
    let out = env.deployer(&["rollback"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rolled back"),
        "{}",
        text(&out)
    );
    let images = host.docker(&["ps", "--format", "{{.Image}}"]);
    assert!(
        images.contains("student-ages-api:v1") && !images.contains(":v2"),
        "{images}"
    );
    assert_eq!(
        get(&api("/supmit/api/v1.0/get_student_ages/bob"), true).1,
        "13"
    );
}

#[test]
fn without_a_registry_deploy_copies_only_the_images_the_host_lacks_and_refuses_a_foreign_architecture()
 {
    build_images();
    let env = Ec2::start();
    let host = &env.host;
    let no_registry = |args: &[&str]| {
        let mut command = env.deployer(args);
        command
            .env_remove("DOCKER_REGISTRY")
            .env_remove("DOCKER_USERNAME")
            .env_remove("DOCKER_PASSWORD");
        command.output().unwrap()
    };

    // An empty host: every image travels through the SSH connection.
    assert_eq!(host.docker(&["images", "-q"]), "");
    let started = Instant::now();
    let out = no_registry(&["deploy"]);
    let first = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("no registry configured"), "{stdout}");
    assert_eq!(stdout.matches("copied (").count(), 3, "{stdout}");
    let api = format!(
        "http://127.0.0.1:{}/supmit/api/v1.0/get_student_ages",
        host.api_port
    );
    assert_eq!(get(&api, true).0, 200);

    // Again: the host has them all, nothing travels.
    let started = Instant::now();
    let out = no_registry(&["deploy"]);
    let again = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("already on the host").count(), 3, "{stdout}");
    assert!(!stdout.contains("copied ("), "{stdout}");
    eprintln!("registry-less: first deploy {first:?}, unchanged redeploy {again:?}");

    // Images built for another architecture are refused before they run.
    let serving = ids(&env);
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY f /f\n",
    )
    .unwrap();
    std::fs::write(context.path().join("f"), "arm64").unwrap();
    let tag = format!("arch-{}", std::process::id());
    let built = std::process::Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "--platform", "linux/arm64", "-t"])
        .arg(format!("student-ages-api:{tag}"))
        .arg(context.path())
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built));
    for service in ["frontend", "edge"] {
        support::docker(&[
            "tag",
            &format!("student-ages-{service}:latest"),
            &format!("student-ages-{service}:{tag}"),
        ]);
    }
    let out = no_registry(&["deploy", "--tag", &tag]);
    for service in ["api", "frontend", "edge"] {
        support::docker(&["rmi", &format!("student-ages-{service}:{tag}")]);
    }
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("student-ages-api:{tag} is built for arm64"))
            && stderr.contains("is amd64"),
        "{stderr}"
    );
    assert_eq!(ids(&env), serving, "nothing was changed");
    assert_eq!(get(&api, true).0, 200);
}

/// After `release`: each repository's version is one image index naming an
/// amd64 and an arm64 image, and the arm64 API and UI binaries serve and
/// pass their healthchecks (under qemu).
fn released_for_amd64_and_arm64(env: &Ec2, release_stdout: &str) {
    let prefix = format!("pushed {}/student-ages-api:", env.registry.server);
    let version = release_stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .find(|tag| !tag.ends_with("-amd64") && !tag.ends_with("-arm64") && *tag != "latest")
        .unwrap_or_else(|| panic!("no version pushed: {release_stdout}"))
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for repository in [
        "student-ages-api",
        "student-ages-frontend",
        "student-ages-edge",
    ] {
        for tag in [version.as_str(), "latest"] {
            let index: serde_json::Value = runtime.block_on(async {
                reqwest::Client::new()
                    .get(format!(
                        "http://{}/v2/{repository}/manifests/{tag}",
                        env.registry.server
                    ))
                    .header(
                        "Accept",
                        "application/vnd.docker.distribution.manifest.list.v2+json",
                    )
                    .basic_auth(&env.registry.username, Some(&env.registry.password))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap()
            });
            let platforms: Vec<&str> = index["manifests"]
                .as_array()
                .unwrap_or_else(|| panic!("{repository}:{tag} is not an index: {index}"))
                .iter()
                .map(|m| m["platform"]["architecture"].as_str().unwrap())
                .collect();
            assert_eq!(platforms, ["amd64", "arm64"], "{repository}:{tag}: {index}");
        }
    }

    // The arm64 binaries themselves, under qemu.
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("student_age.json"), r#"{"alice": 12}"#).unwrap();
    let api_addr = format!("127.0.0.1:{}", support::free_port());
    let api_env = [
        ("API_USERNAME", "root".to_owned()),
        ("API_PASSWORD", "root".to_owned()),
        ("LISTEN_ADDR", api_addr.clone()),
        (
            "STUDENT_AGE_FILE",
            data.path().join("student_age.json").display().to_string(),
        ),
    ];
    let _api = support::qemu::Arm64Server::start("api", &api_env);
    let out = support::qemu::healthcheck("api", &api_env);
    assert!(
        out.status.success(),
        "arm64 api healthcheck: {}",
        text(&out)
    );
    let (status, body) = get(
        &format!("http://{api_addr}/supmit/api/v1.0/get_student_ages"),
        true,
    );
    assert_eq!((status, body.contains("alice")), (200, true), "{body}");
    let ui_addr = format!("127.0.0.1:{}", support::free_port());
    let ui_env = [
        ("API_USERNAME", "root".to_owned()),
        ("API_PASSWORD", "root".to_owned()),
        ("API_URL", format!("http://{api_addr}")),
        ("LISTEN_ADDR", ui_addr.clone()),
    ];
    let _ui = support::qemu::Arm64Server::start("frontend", &ui_env);
    let out = support::qemu::healthcheck("frontend", &ui_env);
    assert!(
        out.status.success(),
        "arm64 frontend healthcheck: {}",
        text(&out)
    );
    let (status, page) = support::signed_in_page(&format!("http://{ui_addr}"), "/");
    assert_eq!((status, page.contains("alice")), (200, true), "{page}");
}

#[test]
fn deploy_replaces_the_api_the_ui_the_edge_and_all_three_under_load_without_failing_a_request() {
    use crate::support::load::{Load, Target};

    build_images();
    let env = Ec2::start();
    let host = &env.host;
    // One version tag; what changes between deploys is which repository
    // each service's image comes from (DOCKER_IMAGE_*), so each deploy
    // replaces exactly the services named. No registry: the images are
    // copied from here.
    let tag = format!("zd-{}", std::process::id());
    let mut tagged = Vec::new();
    for service in ["api", "frontend", "edge"] {
        let image = format!("student-ages-{service}:{tag}");
        support::docker(&["tag", &format!("student-ages-{service}:latest"), &image]);
        tagged.push(image);
    }
    let variant = |service: &str| {
        let image = TestImage::build(
            &format!("zd-{service}"),
            &format!("FROM student-ages-{service}:latest\nLABEL variant=2\n"),
            &[],
        );
        let name = format!("{}:{tag}", image.repository);
        support::docker(&["tag", &image.name(), &name]);
        (image, name)
    };
    let (api_v2, api_v2_tagged) = variant("api");
    let (ui_v2, ui_v2_tagged) = variant("frontend");
    let (edge_v2, edge_v2_tagged) = variant("edge");
    let sick = TestImage::sick_api("zd-sick");
    let sick_tagged = format!("{}:{tag}", sick.repository);
    support::docker(&["tag", &sick.name(), &sick_tagged]);
    tagged.extend([api_v2_tagged, ui_v2_tagged, edge_v2_tagged, sick_tagged]);

    // HTTPS from a certificate we have (pipeline.yaml `files:`): a test CA
    // signs one for 127.0.0.1; the load trusts the CA.
    let tls = tempfile::tempdir().unwrap();
    let (ca_pem, cert_file, key_file) = support::test_certificate(tls.path());
    let (https_port, ui_local_port) = (support::free_port(), support::free_port());
    let deploy = |api: &str, ui: &str, edge: &str| {
        env.deployer(&["deploy", "--tag", &tag])
            .env("EC2_TLS_DOMAINS", "127.0.0.1")
            .env("EC2_TLS_CERT_FILE", &cert_file)
            .env("EC2_TLS_KEY_FILE", &key_file)
            .env("EC2_HTTPS_PORT", https_port.to_string())
            .env("EC2_UI_LOCAL_PORT", ui_local_port.to_string())
            .env_remove("DOCKER_REGISTRY")
            .env("DOCKER_IMAGE_BACKEND", api)
            .env("DOCKER_IMAGE_FRONTEND", ui)
            .env("DOCKER_IMAGE_EDGE", edge)
            .output()
            .unwrap()
    };
    let (api1, ui1, edge1) = (
        "student-ages-api",
        "student-ages-frontend",
        "student-ages-edge",
    );
    let out = deploy(api1, ui1, edge1);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tls/cert.pem, tls/key.pem put in place"),
        "{}",
        text(&out)
    );
    // The UI's plain port now redirects to HTTPS, which serves our
    // certificate.
    let https = format!("https://127.0.0.1:{https_port}");
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let plain = format!("http://127.0.0.1:{}/", host.frontend_port);
    let (redirect, login) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let redirect = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(&plain)
                .send()
                .await
                .unwrap();
            let login = reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca.clone())
                .build()
                .unwrap()
                .get(format!("{https}/login"))
                .send()
                .await
                .unwrap();
            (redirect, login.status().as_u16())
        });
    assert_eq!(redirect.status().as_u16(), 301);
    assert_eq!(
        redirect.headers()["location"].to_str().unwrap(),
        format!("{https}/")
    );
    assert_eq!(login, 200, "GET {https}/login");

    let load = Load::start(
        Target {
            api: format!("http://127.0.0.1:{}", host.api_port),
            ui: https.clone(),
            https: Some((https.clone(), ca)),
        },
        "zdhost",
        3,
        2,
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let steps = [
        ("the API", api_v2.repository.as_str(), ui1, edge1, 1),
        (
            "the UI",
            api_v2.repository.as_str(),
            ui_v2.repository.as_str(),
            edge1,
            1,
        ),
        (
            "the edge",
            api_v2.repository.as_str(),
            ui_v2.repository.as_str(),
            edge_v2.repository.as_str(),
            1,
        ),
        ("all three", api1, ui1, edge1, 3),
    ];
    let mut took = Vec::new();
    for (what, api, ui, edge, changed) in steps {
        let started = Instant::now();
        let out = deploy(api, ui, edge);
        took.push((what, started.elapsed()));
        assert!(out.status.success(), "replacing {what}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains(&format!("{changed} of 3 services changed")),
            "replacing {what}: {}",
            text(&out)
        );
    }
    // A broken API image: the deploy fails, its container never gets
    // traffic, and the running API keeps serving.
    let out = deploy(&sick.repository, ui1, edge1);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let report = load.stop();
    support::docker(
        &[
            &["rmi"],
            tagged
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice(),
        ]
        .concat(),
    );
    eprintln!(
        "deploys under load: {took:?}; {} requests, {} failed",
        report.requests,
        report.failures.len()
    );
    report.assert_nothing_failed_or_lost(&format!("http://127.0.0.1:{}", host.api_port));
}
