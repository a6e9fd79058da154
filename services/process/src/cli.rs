//! The command line both servers share: `serve` (the default) or
//! `healthcheck`, and `LISTEN_ADDR`, so the two `main`s only add their own
//! flags and say how to start their server.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// Resolves when the server should stop: SIGTERM or Ctrl-C for the
/// binaries, whatever a test chooses for an in-process server.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The arguments every server binary takes. Flatten into the binary's own
/// `Parser` and parse with [`parse_args`].
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address and port to listen on.
    #[arg(long, env = "LISTEN_ADDR", global = true)]
    pub(crate) listen_addr: String,

    #[command(subcommand)]
    pub(crate) command: Option<ServerCommand>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub(crate) enum ServerCommand {
    /// Serve (the default).
    Serve,
    /// Ask the running server's /healthz on this machine; exit 0 if
    /// healthy. Docker's HEALTHCHECK runs this (a scratch image has no curl).
    Healthcheck,
}

/// Parses the command line of a binary whose `Parser` flattens
/// [`ServerArgs`], with this binary's default listen address (shown in
/// `--help`). Exits with clap's message on a bad command line.
pub fn parse_args<C: Parser>(default_listen_addr: &'static str) -> C {
    let matches = with_default_listen_addr(C::command(), default_listen_addr).get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

fn with_default_listen_addr(command: clap::Command, default: &'static str) -> clap::Command {
    // The derive makes a String field without a default required; with
    // the binary's default it is not.
    command.mut_arg("listen_addr", |arg| {
        arg.default_value(default).required(false)
    })
}

/// Runs a server binary to the end and returns its exit code.
///
/// `healthcheck` probes the server on `LISTEN_ADDR`. `serve` (or no
/// command) starts logging, calls `prepare` (which checks the binary's
/// configuration: credentials, data files), then takes the port and runs
/// `serve` on a multi-threaded runtime until SIGTERM or Ctrl-C. Any error is
/// printed as `<binary>: error: <chain>` and the exit code is 1.
pub fn run_server<T, F>(
    binary: &str,
    args: &ServerArgs,
    prepare: impl FnOnce() -> anyhow::Result<T>,
    serve: impl FnOnce(T, std::net::TcpListener, Shutdown) -> F,
) -> ExitCode
where
    F: Future<Output = std::io::Result<()>>,
{
    let result = match args.command {
        Some(ServerCommand::Healthcheck) => crate::healthcheck(&args.listen_addr),
        Some(ServerCommand::Serve) | None => serve_until_stopped(args, prepare, serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{binary}: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve_until_stopped<T, F>(
    args: &ServerArgs,
    prepare: impl FnOnce() -> anyhow::Result<T>,
    serve: impl FnOnce(T, std::net::TcpListener, Shutdown) -> F,
) -> anyhow::Result<()>
where
    F: Future<Output = std::io::Result<()>>,
{
    let _logging = crate::init_logging();
    let prepared = prepare()?;
    let listener = std::net::TcpListener::bind(&args.listen_addr)
        .with_context(|| format!("cannot listen on {} (LISTEN_ADDR)", args.listen_addr))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        let shutdown: Shutdown = Box::pin(
            crate::shutdown_signal().context("cannot install the SIGTERM and SIGINT handlers")?,
        );
        serve(prepared, listener, shutdown).await?;
        anyhow::Ok(())
    });
    // A blocking task stuck on a hung file must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    #[derive(Debug, Parser)]
    struct Binary {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        own_flag: Option<String>,
    }

    fn parse(args: &[&str]) -> Binary {
        let command = with_default_listen_addr(Binary::command(), "0.0.0.0:1");
        Binary::from_arg_matches(&command.try_get_matches_from(args).unwrap()).unwrap()
    }

    #[test]
    fn no_command_means_serve_on_the_binarys_default_address() {
        let cli = parse(&["bin", "--own-flag", "x"]);
        assert_eq!(cli.server.command, None);
        assert_eq!(cli.server.listen_addr, "0.0.0.0:1");
        assert_eq!(cli.own_flag.as_deref(), Some("x"));
    }

    #[test]
    fn the_listen_address_is_accepted_after_the_subcommand_too() {
        let cli = parse(&["bin", "healthcheck", "--listen-addr", "127.0.0.1:9"]);
        assert_eq!(cli.server.command, Some(ServerCommand::Healthcheck));
        assert_eq!(cli.server.listen_addr, "127.0.0.1:9");
    }
}
