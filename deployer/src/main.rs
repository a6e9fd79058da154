//! The `deployer` command line: parses arguments and hands each subcommand
//! to its module in `commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deployer::commands::{self, deploy, logs, status, up};
use deployer::progress::Progress;
use deployer::workspace::{DefaultCredentials, Files, Workspace};
use deployer::{Dirty, HostFlags, Latest, Unverifiable, Volumes};

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
    Build {
        /// Also build for the other platforms of pipeline.yaml's
        /// `platforms:` (cross-compiled; tagged VERSION-ARCH), so that
        /// `push` publishes one image index for amd64 and arm64 hosts.
        #[arg(long)]
        all_platforms: bool,
    },
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
    /// and restarts, the last deploy recorded here, the number of students
    /// and whether the API answers. Exits 1 when a service is missing or
    /// unhealthy. On the deploy host it reads the local daemon; from
    /// elsewhere, pass --host.
    ///
    /// A swarm (deploy.swarm in pipeline.yaml, without --host): each
    /// service's desired and running tasks, each node's tasks and their
    /// health, and the managers' quorum.
    Status {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Deploy a released version to the EC2 host over SSH: pull the images
    /// (while the old version serves), seed data only where none exists,
    /// replace the services one at a time behind their healthchecks, run the
    /// read-only acceptance checks. If that fails, the previous version is
    /// put back and the command exits 1. A lock refuses a concurrent deploy;
    /// every deploy is appended to ~/student-ages/audit.log on the host.
    ///
    /// The SSH key comes from EC2_PRIVATE_KEY (a file), known hosts from
    /// EC2_KNOWN_HOSTS (default: yours), the host's Docker socket from
    /// EC2_DOCKER_SOCKET (default /var/run/docker.sock); registry
    /// credentials from DOCKER_USERNAME / DOCKER_PASSWORD.
    ///
    /// A swarm (deploy.swarm in pipeline.yaml, without --host): the
    /// services are created or updated through the Swarm API and each
    /// rolling update is watched; one that fails is rolled back and the
    /// command exits 1 with the failed task's node and logs.
    Deploy {
        #[command(flatten)]
        host: HostArgs,
        /// The image tag to deploy [default: this checkout's git version].
        #[arg(long)]
        tag: Option<String>,
        /// Replace the host's data (on a swarm, the data host's) with
        /// pipeline.yaml's seed files, after keeping the live files as
        /// timestamped backups beside them.
        #[arg(long)]
        reseed_data: bool,
        #[command(flatten)]
        credentials: CredentialArgs,
    },
    /// Prepare the deploy host over SSH: install Docker where it is missing
    /// (apt on Ubuntu/Debian, dnf on Amazon Linux 2023), start it and enable
    /// it at boot, add the SSH user to the `docker` group, bound container
    /// logs (json-file, 10m x 3), create ~/student-ages. What needs root runs
    /// with `sudo -n`, announced first. Running it again changes nothing.
    ///
    /// Works on Ubuntu, Debian and Amazon Linux 2023, amd64 and arm64. The SSH
    /// key comes from EC2_PRIVATE_KEY (a file) and known hosts from
    /// EC2_KNOWN_HOSTS (default: yours), as for deploy; a fresh instance's key
    /// is trusted once with --accept-new-host-key.
    ///
    /// A swarm (deploy.swarm in pipeline.yaml, without --host): make its
    /// hosts, which have Docker already, one Docker Swarm through the Swarm
    /// API: `swarm init` on the first, the others joined (the first
    /// `managers` as managers, a host that left joined again), the `ingress`
    /// network removed, the stack's overlay network created, the data host
    /// labelled.
    Setup {
        #[command(flatten)]
        host: HostArgs,
        /// Change nothing: show what the host has and exit 1 if a deploy
        /// could not run there, naming what is missing.
        #[arg(long)]
        check: bool,
    },
    /// Put back the version deployed before the current one (or --to TAG),
    /// if its images are still on the host.
    Rollback {
        #[command(flatten)]
        host: HostArgs,
        /// The image tag to go back to [default: the previous good deploy].
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        credentials: CredentialArgs,
    },
    /// Push the built images (git version tag and `latest`) to the registry
    /// of pipeline.yaml. Credentials: DOCKER_USERNAME and DOCKER_PASSWORD in
    /// the environment; they are checked before anything is pushed.
    Push {
        /// Allow pushing a `-dirty` version (uncommitted changes).
        #[arg(long)]
        allow_dirty: bool,
        /// Push the local images tagged TAG (only that tag) instead of this
        /// checkout's version and `latest`.
        #[arg(long)]
        tag: Option<String>,
        #[command(flatten)]
        latest: LatestArgs,
    },
    /// What CI runs: check the registry login and push permission, build
    /// (every platform of pipeline.yaml), test, push one image index per
    /// version. Nothing is pushed if a check fails; a wrong password fails
    /// before the build.
    Release {
        /// Allow releasing a `-dirty` version (uncommitted changes).
        #[arg(long)]
        allow_dirty: bool,
        #[command(flatten)]
        latest: LatestArgs,
    },
    /// See or release the deploy host's lock. A deploy killed with SIGKILL
    /// cannot release it; once that deploy's SSH connection is gone (within
    /// a minute), `lock release` removes it. A live lock is never released.
    Lock {
        #[command(subcommand)]
        verb: LockVerb,
    },
    /// Save the deploy host's live data file to this machine.
    ///
    /// On a swarm, the data host's. The file is checked as JSON and written
    /// atomically as a new file named after the project, the file and the
    /// time (UTC), e.g. backups/student-ages-student_age-20261129T041500Z.json;
    /// an older backup is never replaced. Works while the API is down.
    Backup {
        #[command(flatten)]
        host: HostArgs,
        /// The directory the backup is written to (made if missing).
        #[arg(long, value_name = "DIR", default_value = "backups")]
        out: PathBuf,
    },
    /// Put a saved data file back on the deploy host, saving the live one
    /// first.
    ///
    /// On a swarm, on its data host. The file is checked here, the live
    /// file saved to --out, and the file handed to the API, which checks
    /// every entry with its own rules and replaces the data in one durable
    /// write, or changes nothing. Under the host's lock, recorded in its
    /// audit log.
    Restore {
        /// The backup to put back (a JSON object of name to age, as
        /// `deployer backup` saves it).
        #[arg(value_name = "FILE")]
        backup: PathBuf,
        #[command(flatten)]
        host: HostArgs,
        /// The directory the live file is saved to first.
        #[arg(long, value_name = "DIR", default_value = "backups")]
        out: PathBuf,
    },
    /// Print the services' logs, each line prefixed by its service.
    ///
    /// Here, or on the deploy host with --host; on a swarm (deploy.swarm,
    /// without --host) every node's tasks, each line prefixed by service
    /// and slot, task and node.
    Logs {
        /// Only this service's logs.
        service: Option<String>,
        /// Keep streaming new lines.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Lines from the end of each log to show first ("all" for everything).
        #[arg(long, default_value = "100")]
        tail: String,
        #[command(flatten)]
        host: HostArgs,
    },
}

#[derive(Debug, Subcommand)]
enum LockVerb {
    /// Who holds the lock, since when, and whether that deploy is still
    /// connected.
    Status {
        #[command(flatten)]
        host: HostArgs,
    },
    /// Remove a stale lock (its deploy's SSH connection is gone).
    Release {
        #[command(flatten)]
        host: HostArgs,
        /// Also remove a lock that does not record its connection (taken by
        /// an older deployer), when you know no deploy is running.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, clap::Args)]
struct LatestArgs {
    /// Push only the version tag, not `latest` too (CI builds of branches
    /// that do not deploy). `latest` is always this checkout's version.
    #[arg(long)]
    no_latest: bool,
}

impl LatestArgs {
    fn latest(&self) -> Latest {
        if self.no_latest {
            Latest::Skip
        } else {
            Latest::Push
        }
    }
}

#[derive(Debug, clap::Args)]
struct CredentialArgs {
    /// Deploy even though a variable of pipeline.yaml's deploy.credentials
    /// (API_USERNAME, API_PASSWORD) is unset, so the stack runs with the
    /// compose file's local defaults: only for a host no one else reaches.
    #[arg(long)]
    allow_default_credentials: bool,
}

impl CredentialArgs {
    fn defaults(&self) -> DefaultCredentials {
        if self.allow_default_credentials {
            DefaultCredentials::Allow
        } else {
            DefaultCredentials::Refuse
        }
    }
}

/// The deploy host.
#[derive(Debug, clap::Args)]
struct HostArgs {
    /// The deploy host, [user@]host[:port] [default: AWS_EC2_INSTANCE, else
    /// pipeline.yaml's deploy.host].
    #[arg(long, value_name = "[USER@]HOST[:PORT]")]
    host: Option<String>,
    /// Trust the host's key if known_hosts has none for it yet (and record
    /// it). A key that differs from the recorded one is always refused.
    /// [env: EC2_ACCEPT_NEW_HOST_KEY=1]
    #[arg(long, conflicts_with = "host_key")]
    accept_new_host_key: bool,
    /// Pin the host's key instead of using known_hosts: the line of its
    /// /etc/ssh/ssh_host_ed25519_key.pub, e.g. "ssh-ed25519 AAAA...".
    /// [env: EC2_HOST_KEY]
    #[arg(long, value_name = "KEY")]
    host_key: Option<String>,
}

impl HostArgs {
    fn flags(&self) -> HostFlags {
        HostFlags {
            host: self.host.clone(),
            accept_new_host_key: self.accept_new_host_key,
            host_key: self.host_key.clone(),
        }
    }
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
    let dirty = |allow: bool| if allow { Dirty::Allow } else { Dirty::Refuse };
    match cli.command {
        Command::Build { all_platforms } => {
            let platforms = if all_platforms {
                deployer::Platforms::All
            } else {
                deployer::Platforms::Native
            };
            commands::build::run(&workspace, platforms, &progress).await?
        }
        Command::Up { no_build } => {
            let build = if no_build {
                up::Build::Skip
            } else {
                up::Build::IfChanged
            };
            up::run(&workspace, build, &progress).await?;
        }
        Command::Down { volumes } => {
            let volumes = if volumes {
                Volumes::Remove
            } else {
                Volumes::Keep
            };
            commands::down::run(&workspace, volumes, &progress).await?;
        }
        Command::Test => commands::test::run(&workspace, &progress).await?,
        Command::Status { json, host } => {
            let format = if json {
                status::Format::Json
            } else {
                status::Format::Table
            };
            let flags = host.flags();
            let place = if host.host.is_some() {
                status::Place::Host(&flags)
            } else {
                status::Place::Here
            };
            if !status::run(&workspace, format, place, &progress).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Deploy {
            host,
            tag,
            reseed_data,
            credentials,
        } => {
            let options = deploy::Options {
                host: host.flags(),
                tag,
                data: if reseed_data {
                    deploy::Data::Reseed
                } else {
                    deploy::Data::Keep
                },
                defaults: credentials.defaults(),
            };
            deploy::run(&workspace, &options, &progress).await?;
        }
        Command::Setup { host, check } => {
            let options = commands::setup::Options {
                host: host.flags(),
                check,
            };
            commands::setup::run(&workspace, &options, &progress).await?;
        }
        Command::Rollback {
            host,
            to,
            credentials,
        } => {
            let options = commands::rollback::Options {
                host: host.flags(),
                to,
                defaults: credentials.defaults(),
            };
            commands::rollback::run(&workspace, &options, &progress).await?;
        }
        Command::Push {
            allow_dirty,
            tag,
            latest,
        } => {
            let options = commands::push::Options {
                dirty: dirty(allow_dirty),
                tag,
                latest: latest.latest(),
            };
            commands::push::run(&workspace, &options, &progress).await?;
        }
        Command::Release {
            allow_dirty,
            latest,
        } => {
            commands::release::run(&workspace, dirty(allow_dirty), latest.latest(), &progress)
                .await?;
        }
        Command::Lock { verb } => {
            let (host, verb) = match verb {
                LockVerb::Status { host } => (host, commands::lock::Verb::Status),
                LockVerb::Release { host, force } => (
                    host,
                    commands::lock::Verb::Release(if force {
                        Unverifiable::Release
                    } else {
                        Unverifiable::Refuse
                    }),
                ),
            };
            commands::lock::run(&workspace, &host.flags(), verb, &progress).await?;
        }
        Command::Backup { host, out } => {
            let options = commands::backup::Options {
                host: host.flags(),
                out,
            };
            commands::backup::run(&workspace, &options, &progress).await?;
        }
        Command::Restore { backup, host, out } => {
            let options = commands::restore::Options {
                host: host.flags(),
                file: backup,
                out,
            };
            commands::restore::run(&workspace, &options, &progress).await?;
        }
        Command::Logs {
            service,
            follow,
            tail,
            host,
        } => {
            let flags = host.flags();
            let options = logs::Options {
                service: service.as_deref(),
                follow: if follow {
                    logs::Follow::Yes
                } else {
                    logs::Follow::No
                },
                tail: &tail,
            };
            let remote = host.host.is_some().then_some(&flags);
            logs::run(&workspace, &options, remote, &progress).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}
