//! The `api` binary: reads its configuration from the environment and
//! serves the student-ages API, or answers `api healthcheck` for Docker.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use student_ages_api::{Config, Credentials, Store};

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
        Some(Command::Healthcheck) => healthcheck(&cli.listen_addr),
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
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let credentials = credentials_from_env()?;
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
        Config { credentials },
        shutdown_signal(),
    ))?;
    Ok(())
}

fn credentials_from_env() -> anyhow::Result<Credentials> {
    let username = std::env::var("API_USERNAME").unwrap_or_default();
    let password = match (
        std::env::var("API_PASSWORD"),
        std::env::var_os("API_PASSWORD_FILE"),
    ) {
        (Ok(password), _) => password,
        (Err(_), Some(file)) => std::fs::read_to_string(&file)
            .map(|p| p.trim_end_matches(['\r', '\n']).to_owned())
            .with_context(|| {
                format!(
                    "cannot read API_PASSWORD_FILE {}",
                    PathBuf::from(&file).display()
                )
            })?,
        (Err(_), None) => String::new(),
    };
    if username.is_empty() || password.is_empty() {
        bail!(
            "no API credentials configured: set API_USERNAME and API_PASSWORD (or \
             API_PASSWORD_FILE) in the environment; the API refuses to run without auth"
        );
    }
    Ok(Credentials::new(username, password))
}

/// Resolves on SIGTERM (`docker stop`; we are PID 1 in a scratch image) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler only fails if the runtime has no signal driver");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; finishing in-flight requests");
}

fn healthcheck(listen_addr: &str) -> anyhow::Result<()> {
    let url = format!("http://{}/healthz", loopback_for(listen_addr)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .context("cannot build the HTTP client")?;
        let response = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("GET {url} answered {status}: {body}");
        }
        Ok(())
    })
}

/// The address to probe on this machine: the listen address, with a
/// wildcard host replaced by loopback.
fn loopback_for(listen_addr: &str) -> anyhow::Result<String> {
    let (host, port) = listen_addr
        .rsplit_once(':')
        .with_context(|| format!("LISTEN_ADDR {listen_addr:?} has no port"))?;
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    Ok(format!("{host}:{port}"))
}
