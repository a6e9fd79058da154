//! What the services' tests share, so it is written once: an API served in
//! this process on a loopback port or a unix socket ([`TestApi`]), any
//! server run in process on its own thread ([`InProcess`]), and a real
//! server binary started on a free port and awaited ([`ServerProcess`]),
//! for the tests that must kill or signal a process.
//!
//! Everything cleans up when dropped: servers are stopped, processes
//! killed and reaped, temporary data removed.

mod in_process;
mod process;

use std::path::{Path, PathBuf};

use student_ages_api::{Config, Store};
use student_ages_process::ApiCredentials;

pub use in_process::InProcess;
pub use process::ServerProcess;

/// The user every test API accepts.
pub const USER: &str = "root";
/// Its password.
pub const PASSWORD: &str = "s3cret-test-pw";

/// The seed data a test starts from unless it says otherwise: note bob's
/// age stored as a string, as the original service wrote them.
pub const SEED: &str = r#"{"alice": 12, "bob": "13", "carol": 11}"#;

/// The test user as the services take it.
pub fn credentials() -> ApiCredentials {
    ApiCredentials {
        username: USER.into(),
        password: PASSWORD.into(),
    }
}

/// A data file with the given content, in a temporary directory of its own.
pub struct DataDir {
    dir: tempfile::TempDir,
    pub file: PathBuf,
}

impl DataDir {
    pub fn with(content: &str) -> DataDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("student_age.json");
        std::fs::write(&file, content).expect("write the seed data");
        DataDir { dir, file }
    }

    /// The directory, for sockets and other files a test needs beside the data.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Reads a data file as JSON, failing the test if it is not.
pub fn read_data(file: &Path) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(file).expect("read the data file");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the data file is not valid JSON ({e}): {text}"))
}

/// The API, served in this process with its own data, stopped when dropped.
pub struct TestApi {
    // Declared first so it stops before the data directory is removed.
    _server: InProcess,
    /// `http://127.0.0.1:PORT`, or `http://localhost` on a unix socket.
    pub base: String,
    /// The unix socket it listens on, if it does.
    pub socket: Option<PathBuf>,
    pub data_file: PathBuf,
    _data: Option<DataDir>,
}

impl TestApi {
    /// An API on a loopback port, on a fresh copy of `content`.
    pub fn start(content: &str) -> TestApi {
        let data = DataDir::with(content);
        let mut api = TestApi::start_on(&data.file);
        api._data = Some(data);
        api
    }

    /// An API on a loopback port, on an existing data file.
    pub fn start_on(data_file: &Path) -> TestApi {
        let store = open(data_file);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let server = InProcess::start(move |shutdown| {
            student_ages_api::run(listener, store, config(), shutdown)
        });
        TestApi {
            _server: server,
            base,
            socket: None,
            data_file: data_file.to_owned(),
            _data: None,
        }
    }

    /// An API listening on a unix socket (plain HTTP), on a fresh copy of
    /// `content`: what the frontend sees behind an edge proxy's socket.
    pub fn start_on_unix_socket(content: &str) -> TestApi {
        let data = DataDir::with(content);
        let store = open(&data.file);
        let socket = data.path().join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind the socket");
        let server = InProcess::start(move |shutdown| async move {
            listener.set_nonblocking(true)?;
            let acceptor = poem::listener::UnixAcceptor::from_std(listener)?;
            poem::Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(student_ages_api::app(store, config()), shutdown, None)
                .await
        });
        TestApi {
            _server: server,
            base: "http://localhost".into(),
            socket: Some(socket),
            data_file: data.file.clone(),
            _data: Some(data),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn student_url(&self, name: &str) -> String {
        self.url(&format!("/supmit/api/v1.0/student_ages/{name}"))
    }

    pub fn read_data(&self) -> serde_json::Map<String, serde_json::Value> {
        read_data(&self.data_file)
    }
}

fn open(data_file: &Path) -> Store {
    Store::open(data_file)
        .unwrap_or_else(|e| panic!("open the data file {}: {e}", data_file.display()))
}

fn config() -> Config {
    Config::new(credentials())
}
