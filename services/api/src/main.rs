//! The `api` binary: reads its configuration from the environment and
//! serves the student-ages API, or answers `api healthcheck` for Docker.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use student_ages_api::{Config, Credentials, Store};
use student_ages_process as process;

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
    /// Address and port to listen on.
    #[arg(
        long,
        env = "LISTEN_ADDR",
        default_value = "0.0.0.0:5000",
        global = true
    )]
    listen_addr: String,

    /// The JSON data file (the original service's `student_age_file_path`
    /// variable is honoured too). [default: /data/student_age.json]
    #[arg(long, env = "STUDENT_AGE_FILE")]
    data_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Ask the running server's /healthz on this machine; exit 0 if healthy.
    /// Used as the Docker HEALTHCHECK (a scratch image has no curl).
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Healthcheck) => process::healthcheck(&cli.listen_addr),
        Some(Command::Serve) | None => serve(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("api: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: &Cli) -> anyhow::Result<()> {
    process::init_logging();
    let api = process::api_credentials_from_env().context("the API refuses to run without auth")?;
    let data_file = cli
        .data_file
        .clone()
        .or_else(|| std::env::var_os("student_age_file_path").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/data/student_age.json"));
    let store = Store::open(&data_file).context("cannot start: the data file is not usable")?;
    let listener = std::net::TcpListener::bind(&cli.listen_addr)
        .with_context(|| format!("cannot listen on {} (LISTEN_ADDR)", cli.listen_addr))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(student_ages_api::run(
        listener,
        store,
        Config {
            credentials: Credentials::new(api.username, api.password),
        },
        process::shutdown_signal(),
    ))?;
    Ok(())
}
