//! The deploy host: how to reach it (flags, environment, pipeline.yaml),
//! and what the deployer keeps there in `~/student-ages/`: the lock that
//! refuses a second concurrent deploy, and the audit log of every attempt.
//! `session` holds the skeleton every command that changes a host runs in.

mod audit;
pub(crate) mod lock;
mod session;
mod steps;

pub(crate) use audit::{
    AuditAction, AuditEntry, AuditResult, keep_versions, last_deploy, now, parse_audit,
    rollback_target, running_version,
};
pub use lock::Unverifiable;
pub(crate) use session::{LockedHost, with_locked_host};

use std::path::PathBuf;

use anyhow::bail;
use bollard::Docker;

use crate::config::pipeline::SwarmSettings;
use crate::remote::{ConnectOptions, Remote, Target};
use crate::workspace::Workspace;

/// Where the deployer keeps its files on the host, in the SSH user's home.
pub(crate) const HOST_DIR: &str = "student-ages";

/// Where and how to connect, from flags (which beat the environment, which
/// beats pipeline.yaml).
#[derive(Debug, Clone, Default)]
pub struct HostFlags {
    pub host: Option<String>,
    pub accept_new_host_key: bool,
    pub host_key: Option<String>,
}

/// What the host commands aim at: one host, or a swarm of several.
pub(crate) enum DeployTarget {
    Host(Target, ConnectOptions),
    /// `deploy.swarm` of pipeline.yaml; every host is reached with the
    /// same SSH settings and its own Docker socket.
    Swarm(SwarmSettings, ConnectOptions),
}

/// Resolves the target: `--host` (one host) beats everything; otherwise
/// the one host of `AWS_EC2_INSTANCE` or `deploy.host`, or the swarm of
/// `deploy.swarm`, whichever is set (both is an error).
pub(crate) fn deploy_target(
    workspace: &Workspace,
    flags: &HostFlags,
) -> anyhow::Result<DeployTarget> {
    let swarm = workspace.pipeline.deploy.swarm.clone();
    let text = match &flags.host {
        Some(host) => Some(host.clone()),
        None => {
            let host = workspace
                .var("AWS_EC2_INSTANCE")
                .map(|h| (h, "AWS_EC2_INSTANCE"))
                .or_else(|| {
                    workspace
                        .pipeline
                        .deploy
                        .host
                        .clone()
                        .map(|h| (h, "deploy.host"))
                });
            match (host, &swarm) {
                (Some((host, from)), Some(swarm)) => bail!(
                    "two deploy targets: the host {host} ({from}) and the swarm of {} hosts \
                     (deploy.swarm.hosts in {}). Unset one of them, or pass --host for one host",
                    swarm.hosts.len(),
                    workspace.pipeline.path.display()
                ),
                (host, _) => host.map(|(host, _)| host),
            }
        }
    };
    let ssh = ssh_options(workspace, flags)?;
    match (text, swarm) {
        (Some(text), _) => {
            let target = Target::parse(&text)?;
            let options = ConnectOptions {
                docker_socket: workspace
                    .var("EC2_DOCKER_SOCKET")
                    .unwrap_or_else(|| "/var/run/docker.sock".into()),
                ..ssh
            };
            Ok(DeployTarget::Host(target, options))
        }
        (None, Some(swarm)) => {
            if ssh.host_key.is_some() {
                bail!(
                    "a pinned host key (--host-key or EC2_HOST_KEY) names one host's key, but the \
                     target is a swarm of {} hosts: put their keys in a known_hosts file \
                     (EC2_KNOWN_HOSTS), or trust them once with --accept-new-host-key",
                    swarm.hosts.len()
                );
            }
            let ssh = ConnectOptions {
                named_in: "deploy.swarm.hosts",
                ..ssh
            };
            Ok(DeployTarget::Swarm(swarm, ssh))
        }
        (None, None) => bail!(
            "no deploy host: pass --host [user@]host[:port], set AWS_EC2_INSTANCE, or set \
             deploy.host (one host) or deploy.swarm (a swarm) in {}",
            workspace.pipeline.path.display()
        ),
    }
}

/// Resolves the one host the command runs against. A swarm target is
/// refused: the commands that run against a swarm hand over to `swarm/`
/// before they get here.
pub(crate) fn target(
    workspace: &Workspace,
    flags: &HostFlags,
) -> anyhow::Result<(Target, ConnectOptions)> {
    match deploy_target(workspace, flags)? {
        DeployTarget::Host(target, options) => Ok((target, options)),
        DeployTarget::Swarm(swarm, _) => bail!(
            "the deploy target is a swarm of {} hosts (deploy.swarm in {}), and this command \
             does not run against a swarm. Pass --host for one host",
            swarm.hosts.len(),
            workspace.pipeline.path.display()
        ),
    }
}

/// The SSH settings every target shares, from flags and the environment;
/// the Docker socket is left for the caller to set.
fn ssh_options(workspace: &Workspace, flags: &HostFlags) -> anyhow::Result<ConnectOptions> {
    // Flags first, then the environment (for CI jobs configured without
    // editing the Jenkinsfile).
    let host_key = flags
        .host_key
        .clone()
        .or_else(|| workspace.var("EC2_HOST_KEY"));
    let accept_new_host_key = flags.accept_new_host_key
        || match workspace.var("EC2_ACCEPT_NEW_HOST_KEY").as_deref() {
            None | Some("0" | "false" | "no") => false,
            Some("1" | "true" | "yes") => true,
            Some(other) => bail!(
                "EC2_ACCEPT_NEW_HOST_KEY={other:?} is not a yes or no: use 1/true/yes or \
                 0/false/no"
            ),
        };
    if host_key.is_some() && accept_new_host_key {
        bail!(
            "a pinned host key (--host-key or EC2_HOST_KEY) and accepting a new one \
             (--accept-new-host-key or EC2_ACCEPT_NEW_HOST_KEY) contradict each other: use one"
        );
    }
    Ok(ConnectOptions {
        key: workspace.var("EC2_PRIVATE_KEY").map(PathBuf::from),
        known_hosts: workspace.var("EC2_KNOWN_HOSTS").map(PathBuf::from),
        docker_socket: String::new(),
        accept_new_host_key,
        host_key,
        named_in: "AWS_EC2_INSTANCE",
    })
}

/// Connects to the host and its Docker daemon; with the host's CPU
/// architecture.
pub(crate) async fn connect(
    workspace: &Workspace,
    flags: &HostFlags,
) -> anyhow::Result<(Remote, Docker, crate::setup::Arch)> {
    let (target, options) = target(workspace, flags)?;
    let mut remote = Remote::connect(&target, &options).await?;
    // Before anything is touched: a host without Docker, with its daemon
    // stopped, or whose user may not use it, is named as such (run `setup`).
    let facts = match crate::setup::ensure_ready(&remote, &options.docker_socket).await {
        Ok(facts) => facts,
        Err(e) => {
            remote.close().await;
            return Err(e);
        }
    };
    match remote.docker(&options.docker_socket).await {
        Ok(docker) => Ok((remote, docker, facts.arch)),
        Err(e) => {
            remote.close().await;
            Err(e)
        }
    }
}

/// The local user and machine (and the CI build), for the lock and the
/// audit log.
pub(crate) fn who(workspace: &Workspace) -> String {
    let user = workspace
        .var("USER")
        .or_else(|| workspace.var("LOGNAME"))
        .unwrap_or_else(|| "unknown".into());
    let host = std::process::Command::new("hostname")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let ci = workspace
        .var("BUILD_TAG")
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    format!("{user}@{host}{ci}")
}

/// The host's deploy directory and its files.
pub(crate) struct HostDir {
    pub path: String,
}

impl HostDir {
    pub(crate) async fn open(remote: &Remote) -> anyhow::Result<HostDir> {
        let home = remote.run("printenv", &["HOME"]).await?;
        let path = format!("{}/{HOST_DIR}", home.trim());
        remote.run("mkdir", &["-p", &path]).await?;
        Ok(HostDir { path })
    }

    pub(crate) fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.path)
    }

    pub(crate) async fn audit(&self, remote: &Remote) -> anyhow::Result<Vec<AuditEntry>> {
        Ok(remote
            .try_run("cat", &[&self.file("audit.log")])
            .await?
            .map(|text| parse_audit(&text))
            .unwrap_or_default())
    }

    pub(crate) async fn append_audit(
        &self,
        remote: &Remote,
        entry: &AuditEntry,
    ) -> anyhow::Result<()> {
        let path = self.file("audit.log");
        // A write cut short (a killed deploy) leaves a line without its
        // newline: start on a fresh line so this entry is not lost with it.
        let torn = remote
            .try_run("tail", &["-c", "1", &path])
            .await?
            .is_some_and(|last| !last.is_empty() && last != "\n");
        let mut line = if torn { b"\n".to_vec() } else { Vec::new() };
        line.extend(serde_json::to_vec(entry)?);
        line.push(b'\n');
        remote.append_file(&path, &line).await
    }
}
