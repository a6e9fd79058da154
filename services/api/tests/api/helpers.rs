//! Requests the API tests make, and the real `api` binary started the way
//! its image starts it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use student_ages_testkit::{PASSWORD, ServerProcess, USER};

pub const LIST: &str = "/supmit/api/v1.0/get_student_ages";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A GET with the test user's credentials: status and body text.
pub async fn get(url: &str) -> (StatusCode, String) {
    let response = client()
        .get(url)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// `PUT {"age": age}` for `name` on the API at `base`.
pub async fn put_age(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    age: u32,
) -> reqwest::Result<reqwest::Response> {
    client
        .put(format!("{base}/supmit/api/v1.0/student_ages/{name}"))
        .basic_auth(USER, Some(PASSWORD))
        .json(&serde_json::json!({ "age": age }))
        .send()
        .await
}

/// The `api` binary with none of its variables inherited from the test's
/// environment.
pub fn api_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
    for var in [
        "API_USERNAME",
        "API_PASSWORD",
        "API_PASSWORD_FILE",
        "STUDENT_AGE_FILE",
        "student_age_file_path",
        "LISTEN_ADDR",
    ] {
        command.env_remove(var);
    }
    command
}

/// The real `api` binary serving `data_file` with the test user.
pub fn spawn_api(data_file: &Path) -> ServerProcess {
    let mut command = api_command();
    command
        .env("STUDENT_AGE_FILE", data_file)
        .env("API_USERNAME", USER)
        .env("API_PASSWORD", PASSWORD);
    ServerProcess::spawn(command)
}
