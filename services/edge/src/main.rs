//! The `edge` binary: serve (the default), `edge ctl VERB` for the deployer,
//! `edge healthcheck` for Docker.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use student_ages_edge::config::{Config, parse_duration};
use student_ages_edge::control::{self, Request};

const ENVIRONMENT: &str = "\
Configuration (environment):
  EDGE_LISTEN            listeners and routes, entries separated by ';':
                           NAME=ADDRESS [redirect-https] -> ROUTES
                           ADDRESS: http://HOST:PORT | https://HOST:PORT | unix:/PATH
                           ROUTES:  SERVICE | /PREFIX=SERVICE,/PREFIX=SERVICE (longest prefix wins)
  EDGE_RUN_DIR           control and hand-over sockets (default /run/edge)
  EDGE_STATE_DIR         state.json, the targets (default /var/lib/edge)
  EDGE_MAX_BODY          largest request body (default 16MiB)
  EDGE_HEADER_TIMEOUT    time to send a request head, also the keep-alive wait (default 10s)
  EDGE_IDLE_TIMEOUT      no byte either way for this long closes a connection (default 75s)
  EDGE_UPSTREAM_TIMEOUT  time for a target to start answering, else 504 (default 60s)
  EDGE_SHUTDOWN_TIMEOUT  in-flight requests' bound on SIGTERM or hand-over (default 30s)
  EDGE_HEALTH_INTERVAL, EDGE_HEALTH_TIMEOUT, EDGE_HEALTH_FAILURES (1s, 2s, 2)
  EDGE_THREADS           worker threads (default 1)
  EDGE_TLS_DOMAINS       names to get an ACME certificate for (comma-separated)
  EDGE_ACME_DIRECTORY    ACME directory URL (default Let's Encrypt production)
  EDGE_ACME_EMAIL, EDGE_ACME_CA_FILE, EDGE_CERT_DIR (default /var/lib/edge/certs)
  EDGE_TLS_CERT_FILE, EDGE_TLS_KEY_FILE   a fixed certificate instead of ACME
  RUST_LOG               log filter (default info: one line per request, target `request`)

Example:
  EDGE_LISTEN='web=http://0.0.0.0:80 -> frontend; api=http://0.0.0.0:5000 -> api' edge
  edge ctl deploy api --target 172.18.0.5:5000 --health-path /healthz";

/// The edge proxy in front of the student-ages stack: public ports, TLS,
/// health-checked targets switched without dropping a request.
#[derive(Debug, Parser)]
#[command(version, after_help = ENVIRONMENT)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default): take the sockets over from a running edge in
    /// EDGE_RUN_DIR, or bind them.
    Serve,
    /// Talk to the running edge (prints JSON on stdout; exit 1 on refusal).
    Ctl {
        /// The running edge's run directory.
        #[arg(long, env = "EDGE_RUN_DIR", default_value = "/run/edge")]
        run_dir: PathBuf,
        #[command(subcommand)]
        verb: Verb,
    },
    /// Exit 0 when the edge of this container serves (Docker HEALTHCHECK).
    Healthcheck {
        #[arg(long, env = "EDGE_RUN_DIR", default_value = "/run/edge")]
        run_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Listeners, routes, targets (health, in flight, served), certificates.
    Status,
    /// Send SERVICE's new requests to TARGET once it is healthy; wait for
    /// the previous target's in-flight requests; then return.
    Deploy {
        service: String,
        /// HOST:PORT of the new target (repeat for several, round robin).
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        #[arg(long, default_value = "/healthz")]
        health_path: String,
        /// How long the target may take to turn healthy.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        deploy_timeout: Duration,
        /// How long the previous target's in-flight requests may take.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        drain_timeout: Duration,
    },
    /// Take every target of SERVICE out (it answers 503), draining them.
    Remove {
        service: String,
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        drain_timeout: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Ctl { run_dir, verb }) => ctl(&run_dir, verb),
        Some(Command::Healthcheck { run_dir }) => student_ages_edge::healthcheck(&run_dir),
        Some(Command::Serve) | None => serve(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("edge: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn ctl(run_dir: &std::path::Path, verb: Verb) -> anyhow::Result<()> {
    let (request, timeout) = match verb {
        Verb::Status => (Request::Status, Duration::from_secs(10)),
        Verb::Deploy {
            service,
            targets,
            health_path,
            deploy_timeout,
            drain_timeout,
        } => (
            Request::Deploy {
                service,
                targets,
                health_path,
                deploy_timeout_ms: deploy_timeout.as_millis() as u64,
                drain_timeout_ms: drain_timeout.as_millis() as u64,
            },
            deploy_timeout + drain_timeout + Duration::from_secs(10),
        ),
        Verb::Remove {
            service,
            drain_timeout,
        } => (
            Request::Remove {
                service,
                drain_timeout_ms: drain_timeout.as_millis() as u64,
            },
            drain_timeout + Duration::from_secs(10),
        ),
    };
    let result = control::call(run_dir, &request, timeout)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&result).context("printing the answer")?
    );
    Ok(())
}

fn serve() -> anyhow::Result<()> {
    // One log line per request: appended to a batch a background thread
    // writes, so a slow stdout (a busy Docker log driver) never holds a
    // request up. The guard writes what is left when `serve` returns.
    let _flush_at_exit = student_ages_edge::log::init();
    let config = Config::from_env().context("the configuration is not usable")?;
    let threads = match std::env::var("EDGE_THREADS") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .with_context(|| {
                format!("EDGE_THREADS={v:?}: expected a number of threads, at least 1")
            })?,
        _ => 1,
    };
    // One thread by default: a request then never hops between threads on
    // its way from the client's connection to the target's and back, which
    // measured faster on the 2-core hosts this runs on (README, "The edge").
    // One thread gets tokio's current-thread scheduler: with no other
    // worker to steal from or wake, a task wake-up is a plain queue push
    // (the multi-thread scheduler with one worker measured slower).
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(student_ages_edge::run(config, shutdown_signal()))
}

/// Resolves on SIGTERM (`docker stop`; the binary is PID 1 in its image)
/// or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler only fails without a signal driver");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
