//! One module per subcommand: each turns its flags into calls to the engine,
//! images, checks and status modules, and prints what a user needs.

pub mod build;
pub mod deploy;
pub mod down;
pub mod logs;
pub mod push;
pub mod release;
pub mod setup;
pub mod status;
pub mod test;
pub mod up;

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use crate::config::pipeline::Pipeline;
use crate::config::{Environment, compose, pipeline};
use crate::stack::Stack;

/// What every command starts from: the two config files, resolved.
pub struct Workspace {
    pub pipeline: Pipeline,
    pub stack: Stack,
    env: Environment,
    project_flag: Option<String>,
}

/// Where to find the files, from the global flags.
pub struct Files<'a> {
    /// `--file`; by default `pipeline.yaml` here or in a parent directory.
    pub pipeline: Option<&'a Path>,
    pub project_name: Option<&'a str>,
}

impl Workspace {
    pub fn load(files: &Files<'_>) -> anyhow::Result<Workspace> {
        let path = match files.pipeline {
            Some(path) => path.to_owned(),
            None => find_pipeline()?,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let env = Environment::load(dir)?;
        let lookup = |key: &str| env.get(key);
        let pipeline = pipeline::load(&path, &lookup)?;
        let stack = compose::load(
            &pipeline.compose,
            compose::ProjectName {
                flag: files.project_name,
            },
            &lookup,
        )?;
        pipeline.check_against(&stack)?;
        Ok(Workspace {
            pipeline,
            stack,
            env,
            project_flag: files.project_name.map(str::to_owned),
        })
    }

    /// The stack as it resolves with `overlay` taking precedence over the
    /// environment: the same compose file, seen from a deploy host.
    pub fn stack_with(&self, overlay: &[(String, String)]) -> anyhow::Result<Stack> {
        let lookup = |key: &str| {
            overlay
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| self.env.get(key))
        };
        Ok(compose::load(
            &self.pipeline.compose,
            compose::ProjectName {
                flag: self.project_flag.as_deref(),
            },
            &lookup,
        )?)
    }

    /// A variable as the files see it (environment, then `.env`).
    pub fn var(&self, key: &str) -> Option<String> {
        self.env.get(key).filter(|v| !v.is_empty())
    }
}

fn find_pipeline() -> anyhow::Result<PathBuf> {
    let here = std::env::current_dir().context("cannot read the current directory")?;
    here.ancestors()
        .map(|dir| dir.join("pipeline.yaml"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "no pipeline.yaml in {} or any parent directory: run the deployer inside the \
                 student-ages checkout, or pass --file PATH",
                here.display()
            )
        })
}

/// The stack's URLs on this machine, for people.
pub fn print_urls(stack: &Stack) {
    let published = |service: &str| {
        let port = stack
            .service(service)?
            .ports
            .iter()
            .find(|p| !p.host_port.is_empty())?;
        let host = match port.host_ip.as_str() {
            "" | "0.0.0.0" => "localhost",
            ip => ip,
        };
        Some(format!("http://{host}:{}", port.host_port))
    };
    println!();
    if let Some(url) = published("frontend") {
        println!("  frontend  {url}/");
    }
    if let Some(url) = published("api") {
        println!("  API       {url}/supmit/api/v1.0/get_student_ages");
        println!("  API docs  {url}/docs");
        println!();
        let user = std::env::var("API_USERNAME").unwrap_or_else(|_| "root".into());
        let password = if std::env::var_os("API_PASSWORD").is_some() {
            "$API_PASSWORD"
        } else {
            "root"
        };
        println!("  try: curl -u {user}:{password} -X GET {url}/supmit/api/v1.0/get_student_ages");
    }
}

/// Ctrl-C and SIGTERM (a CI job being aborted), caught from the moment it
/// is installed: a signal that arrives before anyone waits for it is kept
/// for the next wait instead of killing the process halfway through a step
/// (say, just after taking the host lock).
pub struct StopSignal {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignal {
    pub fn install() -> anyhow::Result<StopSignal> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignal {
            interrupt: signal(SignalKind::interrupt()).context("cannot catch Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
        })
    }

    /// Resolves when either signal has arrived (or had arrived).
    pub async fn received(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }
}
