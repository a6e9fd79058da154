//! What only the real `api` binary can show: how it reads its environment,
//! when it refuses to start (and what it says), and its `healthcheck`
//! subcommand, which Docker's HEALTHCHECK runs.

use reqwest::StatusCode;
use student_ages_testkit::{DataDir, PASSWORD, SEED, TestApi, USER};

use crate::helpers::{LIST, api_command, get};

#[test]
fn healthcheck_subcommand_reports_the_servers_health() {
    let api = TestApi::start(SEED);
    let address = api.base.trim_start_matches("http://").to_owned();
    let healthy = api_command()
        .arg("healthcheck")
        .env("LISTEN_ADDR", &address)
        .output()
        .unwrap();
    assert!(healthy.status.success(), "{healthy:?}");
    drop(api);
    let down = api_command()
        .arg("healthcheck")
        .env("LISTEN_ADDR", &address)
        .output()
        .unwrap();
    assert!(!down.status.success());
}

#[test]
fn refuses_to_start_without_credentials() {
    let data = DataDir::with(SEED);
    let output = api_command()
        .env("STUDENT_AGE_FILE", &data.file)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("API_USERNAME and API_PASSWORD"), "{stderr}");
}

#[test]
fn refuses_a_malformed_data_file_and_leaves_it_untouched() {
    let broken = "{\"alice\": 12,\n \"bob\": }\n";
    let data = DataDir::with(broken);
    let output = api_command()
        .env("STUDENT_AGE_FILE", &data.file)
        .env("API_USERNAME", USER)
        .env("API_PASSWORD", PASSWORD)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&data.file.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("line 2 column"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&data.file).unwrap(), broken);
}

#[tokio::test]
async fn password_file_and_the_original_data_variable_are_honoured() {
    let data = DataDir::with(SEED);
    let secret = data.path().join("password");
    std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    let mut command = api_command();
    command
        .env("student_age_file_path", &data.file)
        .env("API_USERNAME", USER)
        .env("API_PASSWORD_FILE", &secret);
    let api = student_ages_testkit::ServerProcess::spawn(command);
    assert_eq!(
        get(&api.url(&format!("{LIST}/alice"))).await,
        (StatusCode::OK, "12".into())
    );
}

#[tokio::test]
async fn a_failed_login_is_logged_with_the_client_a_trusted_proxy_names() {
    let data = DataDir::with(SEED);
    let api = crate::helpers::spawn_api(&data.file);
    // Loopback is a trusted proxy by default, as the edge is in the stack.
    let response = crate::helpers::client()
        .get(api.url(LIST))
        .header("X-Forwarded-For", "198.51.100.23")
        .basic_auth(USER, Some("guessed-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let log = api.log_until(
        "failed basic-auth attempt",
        std::time::Duration::from_secs(5),
    );
    let line = log
        .lines()
        .find(|l| l.contains("failed basic-auth attempt"))
        .unwrap_or_else(|| panic!("no failed attempt logged:\n{log}"));
    assert!(line.contains("client=198.51.100.23"), "{line}");
    assert!(line.contains(LIST), "{line}");
    assert!(!log.contains("guessed-pw"), "{log}");
}
