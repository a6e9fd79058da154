//! A small harness for running the real `deployer` binary against the real
//! Docker daemon. Every test works in its own compose project (unique name,
//! free ports) and removes everything labelled with that project when done.

#![allow(dead_code)]

pub mod bare_host;
pub mod ec2;
pub mod load;
pub mod netns;
pub mod qemu;
pub mod swarm_lab;
pub mod swarm_target;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The workspace root: where pipeline.yaml lives.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A `deployer` command run from the workspace root, with the stack's
/// variables cleared so the caller's environment cannot leak in.
pub fn deployer() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployer"));
    command.current_dir(root()).stdin(Stdio::null());
    for var in [
        "API_PORT",
        "FRONTEND_PORT",
        "API_LOG",
        "FRONTEND_LOG",
        "TAG",
        "DOCKER_IMAGE_BACKEND",
        "DOCKER_IMAGE_FRONTEND",
        "COMPOSE_PROJECT_NAME",
    ] {
        command.env_remove(var);
    }
    command
}

/// Builds the images once per test binary (`deployer build`).
pub fn build_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = deployer()
            .arg("build")
            .output()
            .expect("run deployer build");
        assert!(
            out.status.success(),
            "deployer build failed:\n{}",
            text(&out)
        );
    });
}

/// Runs a program the test fixtures need and returns its stdout; panics
/// naming it when it is missing or fails (scripts/test installs them all).
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed (scripts/test installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The mount points under `dir` now, from this process's mount table.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_owned)
        .collect()
}

pub fn text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A port free on loopback now, below the kernel's ephemeral range
/// (32768 and up): a port the kernel handed out for `:0` can be taken by
/// any outgoing connection between this check and the bind that uses it
/// (an edge test failed so). 12000-19999, apart from the edge tests'
/// 20000-31999; each test process starts at its own offset.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % 8_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 12_000 + ((start + n * 7) % 8_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Runs `docker ARGS` and returns its stdout; for inspecting what the
/// deployer did, and for cleaning up after it.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A compose project owned by one test: its name, its ports, and a Drop
/// that removes every container, network and volume labelled with it.
pub struct Project {
    pub name: String,
    pub api_port: u16,
    pub frontend_port: u16,
}

impl Project {
    pub fn new(test: &str) -> Project {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "dtest-{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Project {
            name,
            api_port: free_port(),
            frontend_port: free_port(),
        }
    }

    /// `deployer -p NAME ARGS` with this project's ports.
    pub fn deployer(&self, args: &[&str]) -> Command {
        let mut command = deployer();
        command
            .args(["-p", &self.name])
            .args(args)
            .env("API_PORT", self.api_port.to_string())
            .env("FRONTEND_PORT", self.frontend_port.to_string());
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.deployer(args).output().expect("run deployer")
    }

    /// Container name → id of this project's containers.
    pub fn containers(&self) -> Vec<(String, String)> {
        docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--format",
            "{{.Names}} {{.ID}}",
        ])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, i)| (n.to_owned(), i.to_owned()))
        .collect()
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    pub fn frontend_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.frontend_port)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let label = format!("label=com.docker.compose.project={}", self.name);
        for id in docker(&["ps", "-aq", "--filter", &label]).split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        for id in docker(&["network", "ls", "-q", "--filter", &label]).split_whitespace() {
            docker(&["network", "rm", id]);
        }
        for name in docker(&["volume", "ls", "-q", "--filter", &label]).split_whitespace() {
            docker(&["volume", "rm", "-f", name]);
        }
    }
}

/// An image derived from the built ones for one test (`docker build` of a
/// Dockerfile and a few files), removed when dropped.
pub struct TestImage {
    /// `<prefix>-<pid>`; the image is `<repository>:latest`.
    pub repository: String,
}

impl TestImage {
    pub fn build(prefix: &str, dockerfile: &str, files: &[(&str, &str)]) -> TestImage {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
        for (name, body) in files {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        let image = TestImage {
            repository: format!("{prefix}-{}", std::process::id()),
        };
        let built = Command::new("docker")
            .args(["build", "-q", "-t", &image.name()])
            .arg(dir.path())
            .output()
            .expect("run docker build");
        assert!(built.status.success(), "{}", text(&built));
        image
    }

    /// An API whose data file is not JSON: it exits at start, so its
    /// container never turns healthy.
    pub fn sick_api(prefix: &str) -> TestImage {
        TestImage::build(
            prefix,
            "FROM student-ages-api:latest\nCOPY broken.json /broken.json\n\
             ENTRYPOINT [\"/api\", \"--data-file\", \"/broken.json\"]\n",
            &[("broken.json", "{ not json")],
        )
    }

    pub fn name(&self) -> String {
        format!("{}:latest", self.repository)
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        docker(&["rmi", "-f", &self.name()]);
    }
}

/// Whether a GET of `url` gets any HTTP answer.
pub fn answers(url: &str) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { reqwest::Client::new().get(url).send().await.is_ok() })
}

/// GET with basic auth root:root; (status, body).
pub fn get(url: &str, auth: bool) -> (u16, String) {
    get_as(url, auth.then_some("root"))
}

/// GET as the user root with `password`; (status, body).
pub fn get_with_password(url: &str, password: &str) -> (u16, String) {
    get_as(url, Some(password))
}

fn get_as(url: &str, password: Option<&str>) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new().get(url);
        if let Some(password) = password {
            request = request.basic_auth("root", Some(password));
        }
        let response = request.send().await.expect("request");
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

/// Signs in to the web UI at `base` (`http://host:port`) as root/root,
/// through its form as a browser would; the `Cookie` header value of the
/// session.
pub async fn sign_in_with(client: &reqwest::Client, base: &str) -> String {
    let cookies = |response: &reqwest::Response| -> Vec<String> {
        response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
            .collect()
    };
    let form = client.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(form.status().as_u16(), 200, "GET {base}/login");
    let form_cookies = cookies(&form);
    let page = form.text().await.unwrap();
    let csrf = page
        .split_once(r#"name="csrf" value=""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(token, _)| token.to_owned())
        .unwrap_or_else(|| panic!("no csrf field in the login page: {page}"));
    let answer = client
        .post(format!("{base}/login"))
        .header(reqwest::header::COOKIE, form_cookies.join("; "))
        .form(&[("username", "root"), ("password", "root"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303, "signing in to {base}");
    cookies(&answer).join("; ")
}

/// The UI page at `url` after signing in at `base`; (status, body).
pub fn signed_in_page(base: &str, path: &str) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let cookie = sign_in_with(&client, base).await;
        let response = client
            .get(format!("{base}{path}"))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

/// A test CA's certificate (PEM) and, written into `dir`, a chain and key it
/// signed for 127.0.0.1: (CA PEM, chain file, key file).
pub fn test_certificate(dir: &std::path::Path) -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "deployer test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    (ca_pem, path(cert_file), path(key_file))
}

/// Prints a benchmark line: the mean, min and max of `runs`.
pub fn summary(name: &str, runs: &[std::time::Duration]) {
    let secs: Vec<f64> = runs.iter().map(std::time::Duration::as_secs_f64).collect();
    let mean = secs.iter().sum::<f64>() / secs.len() as f64;
    let min = secs.iter().cloned().fold(f64::MAX, f64::min);
    let max = secs.iter().cloned().fold(0.0, f64::max);
    println!(
        "{name:<48} mean {mean:.2} s  min {min:.2} s  max {max:.2} s  ({} runs)",
        secs.len()
    );
}
