//! A UI served in process against a test API, and a client that shows the
//! redirects.

use std::time::Duration;

use student_ages_frontend::{ApiUrl, Config};
use student_ages_testkit::{InProcess, SEED, TestApi, credentials};

/// The UI, served in this process on a loopback port, stopped when dropped.
pub struct TestFrontend {
    _server: InProcess,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl TestFrontend {
    /// A UI that reaches the API at `api_url`, with the test user.
    pub fn start(api_url: ApiUrl) -> TestFrontend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let config = Config {
            api_url,
            api_credentials: credentials(),
        };
        let server = InProcess::start(move |shutdown| {
            student_ages_frontend::run(listener, config, shutdown)
        });
        TestFrontend {
            _server: server,
            base,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// An API with the seed data and a UI in front of it.
pub struct Stack {
    // The UI stops before the API it calls.
    pub frontend: TestFrontend,
    pub api: TestApi,
}

impl Stack {
    pub fn start() -> Stack {
        let api = TestApi::start(SEED);
        let frontend = TestFrontend::start(ApiUrl::Http(api.base.clone()));
        Stack { frontend, api }
    }

    pub fn url(&self, path: &str) -> String {
        self.frontend.url(path)
    }

    /// The API's data file, as JSON.
    pub fn data(&self) -> serde_json::Value {
        serde_json::Value::Object(self.api.read_data())
    }
}

/// An HTTP client that does not follow redirects, so tests see the 303s.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}
