//! The `frontend` binary: reads its configuration from the environment and
//! serves the student-ages web UI, or answers `frontend healthcheck`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use student_ages_frontend::{ApiUrl, Config};
use student_ages_process::ServerArgs;

const ENVIRONMENT: &str = "\
The API's credentials (environment only, never flags, so they stay out of `ps`):
  API_USERNAME         the user the API requires
  API_PASSWORD         its password, or:
  API_PASSWORD_FILE    a file holding the password (Docker secrets)

Logging: RUST_LOG (default `info`; `warn` drops the per-request lines).

`frontend healthcheck` is healthy when the UI serves and the API answers.

Examples:
  API_USERNAME=root API_PASSWORD=root API_URL=http://localhost:5000 frontend
  API_USERNAME=root API_PASSWORD=root API_URL=unix:/run/edge/api.sock frontend";

/// The student-ages web UI: lists, filters, adds, changes and deletes
/// students through the API, server-side.
#[derive(Debug, Parser)]
#[command(version, after_help = ENVIRONMENT)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// The student-ages API: its base URL, http://host:port, or
    /// unix:/path/to/socket for plain HTTP over a unix socket.
    #[arg(long, env = "API_URL", default_value = "http://localhost:5000")]
    api_url: String,
}

fn main() -> ExitCode {
    let cli: Cli = student_ages_process::parse_args("0.0.0.0:8080");
    student_ages_process::run_server(
        "frontend",
        &cli.server,
        || prepare(&cli),
        |config, listener, shutdown| student_ages_frontend::run(listener, config, shutdown),
    )
}

/// Everything checked before the port is taken: credentials, API_URL.
fn prepare(cli: &Cli) -> anyhow::Result<Config> {
    let api_credentials = student_ages_process::api_credentials_from_env()
        .context("the UI needs the credentials the API expects")?;
    let api_url: ApiUrl = cli.api_url.parse()?;
    Ok(Config {
        api_url,
        api_credentials,
    })
}
