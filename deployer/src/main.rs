//! The `deployer` command line: parses arguments and hands each subcommand
//! to its module in `commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deployer::commands::{self, Files, Workspace};
use deployer::progress::Progress;

const AFTER_HELP: &str = "\
Files: pipeline.yaml (found in this directory or a parent) says how images are
built, the data to seed and the acceptance checks; docker-compose.yml, which it
names, is the running stack. Variables like ${API_PORT:-5000} in either file
come from the environment.

Docker: the local daemon at /var/run/docker.sock, or DOCKER_HOST=unix://PATH.

Examples:
  deployer up                 build, start the stack on this machine, print its URLs
  deployer status             what runs, its health, ports and uptime
  deployer logs api -f        follow the API's logs
  deployer test               run the acceptance checks on throw-away containers
  deployer down               stop the stack, keep the data";

/// Builds, tests and runs the student-ages stack on Docker.
#[derive(Debug, Parser)]
#[command(version, after_help = AFTER_HELP)]
struct Cli {
    /// The pipeline file [default: pipeline.yaml here or in a parent directory].
    #[arg(long, global = true, value_name = "PATH")]
    file: Option<PathBuf>,

    /// The compose project name: prefix of every container, network and
    /// volume [default: COMPOSE_PROJECT_NAME, else the compose file's `name:`].
    #[arg(long, short = 'p', global = true, value_name = "NAME")]
    project_name: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the static binaries and the images; tag them with the git
    /// version (`-dirty` for uncommitted changes) and `latest`; print sizes.
    /// Images whose inputs did not change are not rebuilt.
    Build,
    /// Build if needed, then start the stack on this machine: create what is
    /// missing, replace what changed, leave the rest; wait for health; print
    /// the URLs. Running it again with nothing changed restarts nothing.
    Up {
        /// Use the images as they are; do not run cargo or build images.
        #[arg(long)]
        no_build: bool,
    },
    /// Stop and remove the stack's containers and network. The data volume
    /// is kept unless --volumes. Only objects labelled with the project are
    /// touched.
    Down {
        /// Remove the stack's volumes too: this deletes the students' data.
        #[arg(long)]
        volumes: bool,
    },
    /// Run the images in a throw-away project on loopback ports with a fresh
    /// copy of the data, run pipeline.yaml's acceptance checks, tear down.
    /// Exits non-zero if any check fails. Does not build: run `build` first.
    Test,
    /// Show each service's container, image, state, health, uptime, ports
    /// and restarts. Exits 1 when a service is missing or unhealthy.
    Status {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the services' logs, each line prefixed by its service.
    Logs {
        /// Only this service's logs.
        service: Option<String>,
        /// Keep streaming new lines.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Lines from the end of each log to show first ("all" for everything).
        #[arg(long, default_value = "100")]
        tail: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let files = Files {
        pipeline: cli.file.as_deref(),
        project_name: cli.project_name.as_deref(),
    };
    let workspace = Workspace::load(&files)?;
    let progress = Progress::detect();
    match cli.command {
        Command::Build => {
            let images = commands::build::run(&workspace, &progress).await?;
            commands::build::print_sizes(&images);
        }
        Command::Up { no_build } => {
            commands::up::run(&workspace, &commands::up::Options { no_build }, &progress).await?;
        }
        Command::Down { volumes } => commands::down::run(&workspace, volumes, &progress).await?,
        Command::Test => commands::test::run(&workspace, &progress).await?,
        Command::Status { json } => {
            if !commands::status::run(&workspace, json).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Logs {
            service,
            follow,
            tail,
        } => commands::logs::run(&workspace, service.as_deref(), follow, &tail).await?,
    }
    Ok(ExitCode::SUCCESS)
}
