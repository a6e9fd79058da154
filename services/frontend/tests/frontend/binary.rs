//! The real `frontend` binary: its `healthcheck` subcommand, which Docker's
//! HEALTHCHECK runs (healthy when the UI serves and the API answers), and
//! its sign-in settings read from the environment.

use student_ages_frontend::ApiUrl;
use student_ages_testkit::{SEED, TestApi};

use crate::helpers::TestFrontend;

fn healthcheck(frontend: &TestFrontend) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_frontend"))
        .arg("healthcheck")
        .env("LISTEN_ADDR", frontend.base.trim_start_matches("http://"))
        .output()
        .expect("run frontend healthcheck")
}

#[test]
fn healthcheck_subcommand_fails_when_the_api_does_not_answer() {
    let api = TestApi::start(SEED);
    let frontend = TestFrontend::start(ApiUrl::Http(api.base.clone()));
    let healthy = healthcheck(&frontend);
    assert!(healthy.status.success(), "{healthy:?}");
    drop(api);
    let degraded = healthcheck(&frontend);
    assert!(!degraded.status.success(), "{degraded:?}");
    let stderr = String::from_utf8_lossy(&degraded.stderr);
    assert!(stderr.contains("503"), "{stderr}");
}

/// The real binary, configured from the environment as in docker-compose.
fn frontend_command(api: &TestApi) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_frontend"));
    command
        .env_clear()
        .env("API_URL", &api.base)
        .env("API_USERNAME", student_ages_testkit::USER)
        .env("API_PASSWORD", student_ages_testkit::PASSWORD);
    command
}

#[test]
fn a_ui_user_without_a_password_stops_the_start_with_the_variables_named() {
    let api = TestApi::start(SEED);
    let output = frontend_command(&api)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("UI_USERNAME", "teacher")
        .output()
        .expect("run frontend");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("UI_PASSWORD") && stderr.contains("UI_PASSWORD_HASH"),
        "{stderr}"
    );
    assert!(!stderr.contains(student_ages_testkit::PASSWORD), "{stderr}");
}

#[tokio::test]
async fn the_binary_asks_for_a_sign_in_by_default_and_takes_ui_access_from_the_environment() {
    let api = TestApi::start(SEED);
    let mut command = frontend_command(&api);
    command
        .env("UI_USERNAME", "teacher")
        .env("UI_PASSWORD", "ui-pw-in-env");
    let server = student_ages_testkit::ServerProcess::spawn(command);
    let client = crate::helpers::client();
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login");
    let login = client.get(server.url("/login")).send().await.unwrap();
    assert_eq!(login.status(), reqwest::StatusCode::OK);
    let args = std::fs::read_to_string(format!("/proc/{}/cmdline", server.pid())).unwrap();
    assert!(
        !args.contains("ui-pw-in-env"),
        "no password in the arguments"
    );
    drop(server);

    let mut command = frontend_command(&api);
    command.env("UI_ACCESS", "public-read");
    let server = student_ages_testkit::ServerProcess::spawn(command);
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert!(response.text().await.unwrap().contains(">alice</td>"));
}

/// Signs in to a real `frontend` through its form; the session cookie.
async fn sign_in_to(server: &student_ages_testkit::ServerProcess) -> String {
    use student_ages_frontend::{LOGIN_COOKIE, SESSION_COOKIE};
    let client = crate::helpers::client();
    let form = client.get(server.url("/login")).send().await.unwrap();
    let nonce = crate::helpers::set_cookie(&form, LOGIN_COOKIE).expect("the form's cookie");
    let token = crate::helpers::csrf_in(&form.text().await.unwrap()).expect("the form's token");
    let response = client
        .post(server.url("/login"))
        .header("cookie", format!("{LOGIN_COOKIE}={nonce}"))
        .form(&[
            ("username", student_ages_testkit::USER),
            ("password", student_ages_testkit::PASSWORD),
            ("csrf", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    crate::helpers::set_cookie(&response, SESSION_COOKIE).expect("signed in")
}

async fn list_status(server: &student_ages_testkit::ServerProcess, session: &str) -> u16 {
    crate::helpers::client()
        .get(server.url("/"))
        .header(
            "cookie",
            format!("{}={session}", student_ages_frontend::SESSION_COOKIE),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn two_binaries_started_at_once_on_one_key_file_share_sessions_across_a_restart() {
    let api = TestApi::start(SEED);
    let dir = tempfile::Builder::new()
        .prefix("sa-frontend-bin-key-")
        .tempdir()
        .unwrap();
    let key_file = dir.path().join("state").join("session.key");
    std::fs::create_dir(key_file.parent().unwrap()).unwrap();
    let command = || {
        let mut command = frontend_command(&api);
        command.env("UI_SESSION_KEY_FILE", &key_file);
        command
    };
    let (a, b) = (command(), command());
    let (a, b) = (
        std::thread::spawn(move || student_ages_testkit::ServerProcess::spawn(a)),
        std::thread::spawn(move || student_ages_testkit::ServerProcess::spawn(b)),
    );
    let (mut a, b) = (a.join().unwrap(), b.join().unwrap());
    let session = sign_in_to(&a).await;
    assert_eq!(list_status(&b, &session).await, 200, "B knows A's session");
    // A replaced: the new process reads the same key.
    a.terminate();
    let a = student_ages_testkit::ServerProcess::spawn(command());
    assert_eq!(list_status(&a, &session).await, 200, "a new A too");
    let text = std::fs::read_to_string(&key_file).unwrap();
    let args = std::fs::read_to_string(format!("/proc/{}/cmdline", a.pid())).unwrap();
    assert!(!args.contains(text.trim()), "no key in the arguments");
}

#[test]
fn a_bad_session_key_stops_the_start_with_the_variable_named_and_not_the_key() {
    let api = TestApi::start(SEED);
    let short = "c2hvcnQta2V5LXZhbHVl"; // "short-key-value", 15 bytes
    let output = frontend_command(&api)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("UI_SESSION_KEY", short)
        .output()
        .expect("run frontend");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("UI_SESSION_KEY") && stderr.contains("at least 32"),
        "{stderr}"
    );
    assert!(!stderr.contains(short), "{stderr}");

    let output = frontend_command(&api)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("UI_SESSION_KEY", short)
        .env("UI_SESSION_KEY_FILE", "/nonexistent/session.key")
        .output()
        .expect("run frontend");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("set only one"), "{stderr}");
}
