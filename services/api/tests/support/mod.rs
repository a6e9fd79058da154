//! A harness that runs the real `api` binary on a loopback port with its
//! own temporary data file, and kills it when dropped.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const USER: &str = "root";
pub const PASSWORD: &str = "s3cret-test-pw";

/// The seed data every test starts from unless it says otherwise.
pub const SEED: &str = r#"{"alice": 12, "bob": "13", "carol": 11}"#;

pub struct Api {
    child: Child,
    pub base: String,
    pub data_file: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Api {
    /// Starts an API on a fresh copy of `content`.
    pub fn start(content: &str) -> Api {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_file = dir.path().join("student_age.json");
        std::fs::write(&data_file, content).expect("write seed");
        let mut api = Api::start_on(&data_file);
        api._dir = Some(dir);
        api
    }

    /// Starts an API on an existing data file (shared between processes).
    pub fn start_on(data_file: &Path) -> Api {
        let mut command = api_command();
        command
            .env("STUDENT_AGE_FILE", data_file)
            .env("API_USERNAME", USER)
            .env("API_PASSWORD", PASSWORD);
        Api::spawn(command, data_file)
    }

    pub fn spawn(mut command: Command, data_file: &Path) -> Api {
        let mut child = command
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn api");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Keep draining the log after startup so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.split("listen=").nth(1) {
                    let address = address.split_whitespace().next().unwrap_or("").to_owned();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(address);
                    }
                }
            }
        });
        let address = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("collect output");
                panic!(
                    "api did not start: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        };
        Api {
            child,
            base: format!("http://{address}"),
            data_file: data_file.to_owned(),
            _dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn student_url(&self, name: &str) -> String {
        self.url(&format!("/supmit/api/v1.0/student_ages/{name}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        self.child.wait().expect("reap api")
    }

    pub fn read_data(&self) -> serde_json::Map<String, serde_json::Value> {
        let text = std::fs::read_to_string(&self.data_file).expect("read data file");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("data file is not valid JSON ({e}): {text}"))
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn api_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
    for var in [
        "API_USERNAME",
        "API_PASSWORD",
        "API_PASSWORD_FILE",
        "STUDENT_AGE_FILE",
        "student_age_file_path",
    ] {
        command.env_remove(var);
    }
    command
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub async fn put_age(
    client: &reqwest::Client,
    api: &Api,
    name: &str,
    age: u32,
) -> reqwest::Result<reqwest::Response> {
    client
        .put(api.student_url(name))
        .basic_auth(USER, Some(PASSWORD))
        .json(&serde_json::json!({ "age": age }))
        .send()
        .await
}
