//! The real `frontend` binary's `healthcheck` subcommand, which Docker's
//! HEALTHCHECK runs: healthy when the UI serves and the API answers.

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
