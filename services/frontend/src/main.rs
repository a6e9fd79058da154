//! The `frontend` binary: reads its configuration from the environment and
//! serves the student-ages web UI, or answers `frontend healthcheck`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use student_ages_frontend::Config;
use student_ages_process as process;

const ENVIRONMENT: &str = "\
The API's credentials (environment only, never flags, so they stay out of `ps`):
  API_USERNAME         the user the API requires
  API_PASSWORD         its password, or:
  API_PASSWORD_FILE    a file holding the password (Docker secrets)

Logging: RUST_LOG (default `info`; `warn` drops the per-request lines).

Example:
  API_USERNAME=root API_PASSWORD=root API_URL=http://localhost:5000 frontend";

/// The student-ages web UI: lists, filters, adds, changes and deletes
/// students through the API, server-side.
#[derive(Debug, Parser)]
#[command(version, after_help = ENVIRONMENT)]
struct Cli {
    /// Address and port to listen on.
    #[arg(
        long,
        env = "LISTEN_ADDR",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    listen_addr: String,

    /// Base URL of the student-ages API.
    #[arg(long, env = "API_URL", default_value = "http://localhost:5000")]
    api_url: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the UI (the default).
    Serve,
    /// Ask the running server's /healthz on this machine; exit 0 if healthy
    /// (the UI serves and the API answers). The Docker HEALTHCHECK.
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
            eprintln!("frontend: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: &Cli) -> anyhow::Result<()> {
    process::init_logging();
    let api = process::api_credentials_from_env()
        .context("the UI needs the credentials the API expects")?;
    if !cli.api_url.starts_with("http://") {
        bail!(
            "API_URL {:?} must start with http:// (the API is reached inside the stack)",
            cli.api_url
        );
    }
    let listener = std::net::TcpListener::bind(&cli.listen_addr)
        .with_context(|| format!("cannot listen on {} (LISTEN_ADDR)", cli.listen_addr))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let config = Config {
        api_url: cli.api_url.clone(),
        api_username: api.username,
        api_password: api.password,
    };
    runtime.block_on(student_ages_frontend::run(
        listener,
        config,
        process::shutdown_signal(),
    ))?;
    Ok(())
}
