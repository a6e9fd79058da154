//! What every command starts from: `pipeline.yaml` and the compose file,
//! resolved, and the one door through which the deployer reads variables
//! (the process environment, then `.env`), so a setting in `.env` reaches
//! every path that reads it.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use bollard::Docker;

use crate::config::pipeline::Pipeline;
use crate::config::{Environment, compose, pipeline};
use crate::registry::Registry;
use crate::stack::Stack;

/// Whether a host deploy may run with the compose file's default
/// credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultCredentials {
    Refuse,
    Allow,
}

pub struct Workspace {
    pub(crate) pipeline: Pipeline,
    pub(crate) stack: Stack,
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
        let mut stack = compose::load(
            &pipeline.compose,
            compose::ProjectName {
                flag: files.project_name,
            },
            &lookup,
            deploy_keys(&pipeline),
        )?;
        pipeline.check_against(&stack)?;
        stack.edge = pipeline.edge.clone();
        stack.files = pipeline.volume_files(&lookup)?;
        Ok(Workspace {
            pipeline,
            stack,
            env,
            project_flag: files.project_name.map(str::to_owned),
        })
    }

    /// The stack as it resolves with `overlay` taking precedence over the
    /// environment: the same compose file, seen from a deploy host.
    pub(crate) fn stack_with(&self, overlay: &[(String, String)]) -> anyhow::Result<Stack> {
        let lookup = |key: &str| {
            overlay
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| self.env.get(key))
        };
        let mut stack = compose::load(
            &self.pipeline.compose,
            compose::ProjectName {
                flag: self.project_flag.as_deref(),
            },
            &lookup,
            deploy_keys(&self.pipeline),
        )?;
        stack.edge = self.pipeline.edge.clone();
        stack.files = self.pipeline.volume_files(&lookup)?;
        Ok(stack)
    }

    /// The stack on the deploy host running `tag`: the version, then
    /// pipeline.yaml's `deploy.env`, over the environment.
    pub(crate) fn host_stack(&self, tag: &str) -> anyhow::Result<Stack> {
        self.stack_with(&self.host_overlay(tag))
    }

    /// The variables the stack resolves with on the host.
    pub(crate) fn host_overlay(&self, tag: &str) -> Vec<(String, String)> {
        let mut overlay = vec![("TAG".to_owned(), tag.to_owned())];
        overlay.extend(self.pipeline.deploy.env.iter().cloned());
        overlay
    }

    /// Refuses a host deploy while a variable of pipeline.yaml's
    /// `deploy.credentials` is unset (the stack would fall back to the
    /// compose file's local defaults), unless `defaults` allows it; then it
    /// only warns.
    pub(crate) fn check_credentials(
        &self,
        defaults: DefaultCredentials,
        progress: &crate::progress::Progress,
    ) -> anyhow::Result<()> {
        let missing: Vec<&str> = self
            .pipeline
            .deploy
            .credentials
            .iter()
            .filter(|v| self.var(v).is_none())
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let what = format!(
            "{} {} not set, so the host's stack would run with the compose file's local defaults \
             (as the original did: root/root), which anyone who reaches the host can guess",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        );
        match defaults {
            DefaultCredentials::Allow => {
                progress.println(&format!("warning: {what}"));
                Ok(())
            }
            DefaultCredentials::Refuse => Err(anyhow!(
                "refusing to deploy: {what}. Set them (Jenkins: bind them from a credential in \
                 the Deploy stage), or pass --allow-default-credentials for a host only you can \
                 reach"
            )),
        }
    }

    /// A variable as the files see it (environment, then `.env`); empty
    /// counts as unset.
    pub(crate) fn var(&self, key: &str) -> Option<String> {
        self.env.get(key).filter(|v| !v.is_empty())
    }

    /// The daemon on this machine (`DOCKER_HOST` or the default socket).
    pub(crate) async fn local_docker(&self) -> anyhow::Result<Docker> {
        Ok(crate::docker::connect_local(self.var("DOCKER_HOST").as_deref()).await?)
    }

    /// The repositories of the images the pipeline builds, as the compose
    /// file names them here.
    pub(crate) fn repositories(&self) -> Vec<&str> {
        self.pipeline
            .built_services(&self.stack)
            .map(|s| crate::images::repository(&s.image))
            .collect()
    }

    /// The registry of the pipeline, or an error saying how to name one.
    pub(crate) fn registry(&self) -> anyhow::Result<Registry> {
        self.optional_registry().ok_or_else(|| {
            anyhow!(
                "no registry is configured: set DOCKER_REGISTRY (docker.io for Docker Hub, or \
                 host[:port]) and DOCKER_USERNAME/DOCKER_PASSWORD; {} names them under \
                 `registry:`",
                self.pipeline.path.display()
            )
        })
    }

    /// The registry, if one is configured; without one `deploy` copies the
    /// images from this machine's Docker to the host's.
    pub(crate) fn optional_registry(&self) -> Option<Registry> {
        self.pipeline.registry.clone().map(Registry::new)
    }
}

/// Compose's `deploy:` keys are read when pipeline.yaml has a swarm, and
/// refused otherwise (one host runs one container per service).
fn deploy_keys(pipeline: &Pipeline) -> compose::DeployKeys {
    if pipeline.deploy.swarm.is_some() {
        compose::DeployKeys::Read
    } else {
        compose::DeployKeys::Refuse
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
