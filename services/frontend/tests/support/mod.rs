//! A harness that runs the real `api` and `frontend` binaries on loopback
//! ports with a temporary copy of the data, and kills both when dropped.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

pub const SEED: &str = r#"{"alice": 12, "bob": 13, "carol": 11}"#;
const USER: &str = "root";
const PASSWORD: &str = "frontend-test-pw";

/// A server process that is killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` on 127.0.0.1:0 and waits for its "listen=" log line.
fn start(mut command: Command) -> Server {
    let mut child = command
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listen=").nth(1)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(address) => Server {
            child,
            base: format!("http://{address}"),
        },
        Err(_) => {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "server did not start: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// The `api` binary of this workspace, built once if the test run has not
/// built it already (`cargo test --workspace` does).
fn api_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            // target/<profile>/deps/<test> → target/<profile>/api
            let exe = std::env::current_exe().expect("test binary path");
            let profile_dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
            let api = profile_dir.join("api");
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "student-ages-api", "--bin", "api"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the api binary failed");
            assert!(api.exists(), "no api binary at {}", api.display());
            api
        })
        .clone()
}

pub struct Stack {
    pub api: Server,
    pub frontend: Server,
    pub data_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Stack {
    pub fn start() -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_file = dir.path().join("student_age.json");
        std::fs::write(&data_file, SEED).expect("write seed");
        let mut api = Command::new(api_binary());
        api.env("STUDENT_AGE_FILE", &data_file)
            .env("API_USERNAME", USER)
            .env("API_PASSWORD", PASSWORD);
        let api = start(api);
        let frontend = start_frontend(&api.base);
        Stack {
            api,
            frontend,
            data_file,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.frontend.base, path)
    }

    pub fn data(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&self.data_file).unwrap()).unwrap()
    }
}

/// A frontend pointed at `api_url`, with the stack's credentials.
pub fn start_frontend(api_url: &str) -> Server {
    let mut frontend = Command::new(env!("CARGO_BIN_EXE_frontend"));
    frontend
        .env("API_URL", api_url)
        .env("API_USERNAME", USER)
        .env("API_PASSWORD", PASSWORD)
        .env_remove("API_PASSWORD_FILE");
    start(frontend)
}

/// An HTTP client that does not follow redirects, so tests see the 303s.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}
