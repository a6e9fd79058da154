//! The `api` binary: reads its configuration from the environment and
//! serves the student-ages API, or answers `api healthcheck` for Docker.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use student_ages_api::{Config, Store};
use student_ages_process::ServerArgs;

const ENVIRONMENT: &str = "\
Credentials (environment only, never flags, so they stay out of `ps`):
  API_USERNAME         the user every /supmit route requires
  API_PASSWORD         its password, or:
  API_PASSWORD_FILE    a file holding the password (Docker secrets)

Logging: RUST_LOG (default `info`; `warn` drops the per-request lines).

Examples:
  API_USERNAME=root API_PASSWORD=root STUDENT_AGE_FILE=data/student_age.json api
  curl -u root:root http://localhost:5000/supmit/api/v1.0/get_student_ages";

/// The student-ages REST API: student ages kept in a JSON file, behind HTTP
/// basic auth. API docs are served at /docs.
#[derive(Debug, Parser)]
#[command(version, after_help = ENVIRONMENT)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// The JSON data file (the original service's `student_age_file_path`
    /// variable is honoured too). [default: /data/student_age.json]
    #[arg(long, env = "STUDENT_AGE_FILE")]
    data_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli: Cli = student_ages_process::parse_args("0.0.0.0:5000");
    student_ages_process::run_server(
        "api",
        &cli.server,
        || prepare(&cli),
        |(store, config), listener, shutdown| {
            student_ages_api::run(listener, store, config, shutdown)
        },
    )
}

/// Everything checked before the port is taken: credentials, data file.
fn prepare(cli: &Cli) -> anyhow::Result<(Store, Config)> {
    let credentials = student_ages_process::api_credentials_from_env()
        .context("the API refuses to run without auth")?;
    let data_file = cli
        .data_file
        .clone()
        .or_else(|| std::env::var_os("student_age_file_path").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/data/student_age.json"));
    let store = Store::open(&data_file).context("cannot start: the data file is not usable")?;
    let mut config = Config::new(credentials);
    if let Some(proxies) = std::env::var("API_TRUSTED_PROXIES")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        config.trusted_proxies = proxies
            .parse()
            .map_err(|e| anyhow::anyhow!("API_TRUSTED_PROXIES: {e}"))?;
    }
    Ok((store, config))
}
