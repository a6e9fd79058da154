//! A Docker Swarm of several hosts as the deploy target (`deploy.swarm` in
//! pipeline.yaml). Each host is reached as the one host is: its own SSH
//! connection, its Docker socket forwarded and driven with bollard. The
//! swarm is made only through the Swarm API of those daemons, so join
//! tokens travel inside API requests, never on a command line or in a log.
//!
//! `setup` makes the swarm and says what it changed (`check` only says what
//! is missing); `plan` holds its decisions, pure. `deploy` runs the stack
//! on it: `spec` makes the services' specs (pure), `apply` creates or
//! updates them and watches them converge. `status` reads it back; `data`
//! saves and restores the data host's file.

mod apply;
mod data;
mod deploy;
mod plan;
mod setup;
mod spec;
mod status;

pub(crate) use data::{backup, restore};
pub(crate) use deploy::{deploy, rollback};
pub(crate) use setup::{check, setup};
pub(crate) use status::{Quorum, SwarmNode, SwarmService};
pub(crate) use status::{read_status, table as status_table};

use anyhow::bail;
use bollard::Docker;
use futures_util::future::join_all;

use crate::config::pipeline::{SwarmHost, SwarmSettings};
use crate::progress::Progress;
use crate::remote::{ConnectOptions, Remote, Target};

/// One host of the swarm, connected.
pub(crate) struct Node {
    /// Its index in deploy.swarm.hosts.
    pub index: usize,
    /// `[user@]host[:port]`, as pipeline.yaml writes it.
    pub target: String,
    pub remote: Remote,
    pub docker: Docker,
    /// The Docker server's version.
    pub version: String,
    /// Where the other nodes reach it: its `advertise_addr`, else the
    /// address its SSH connection arrived at (on EC2, the private address
    /// the other hosts of the VPC use); unknown leaves it to Docker.
    pub advertise: Option<String>,
}

/// Connects to every host at once and checks each can take part (Docker
/// answers the SSH user); fails naming every host that cannot, having
/// changed nothing.
pub(crate) async fn connect_all(
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
    progress: &Progress,
) -> anyhow::Result<Vec<Node>> {
    let (nodes, failures) = connect_each(swarm, ssh, progress).await;
    if !failures.is_empty() {
        close_all(nodes).await;
        let failures: Vec<String> = failures
            .iter()
            .map(|u| format!("{}: {}", u.host, u.error))
            .collect();
        bail!(
            "{} of the swarm's {} hosts cannot take part:\n  - {}\nNothing was changed.",
            failures.len(),
            swarm.hosts.len(),
            failures.join("\n  - ")
        );
    }
    Ok(nodes)
}

/// A host of deploy.swarm.hosts that could not be reached, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unreachable {
    pub host: String,
    pub error: String,
}

/// Connects to every host that answers, for reading: a host that is down
/// is what `status` must show, not a reason to fail. The first host (the
/// manager that keeps the audit log) must answer.
pub(crate) async fn connect_reachable(
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
    progress: &Progress,
) -> anyhow::Result<(Vec<Node>, Vec<Unreachable>)> {
    let (nodes, failures) = connect_each(swarm, ssh, progress).await;
    if nodes.first().is_none_or(|n| n.index != 0) {
        close_all(nodes).await;
        let why = failures.first().map_or(String::new(), |u| u.error.clone());
        bail!(
            "the first host of deploy.swarm.hosts, {}, cannot be reached ({why}): it is the \
             manager this tool reads the swarm through",
            swarm.hosts[0].target
        );
    }
    Ok((nodes, failures))
}

/// Connects to every host at once: the nodes that answered, in the
/// hosts' order, and the hosts that did not.
async fn connect_each(
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
    progress: &Progress,
) -> (Vec<Node>, Vec<Unreachable>) {
    let tasks: Vec<_> = swarm
        .hosts
        .iter()
        .map(|h| progress.task(&h.target, "connecting"))
        .collect();
    let results = join_all(
        swarm
            .hosts
            .iter()
            .enumerate()
            .map(|(i, host)| connect_one(i, host, ssh)),
    )
    .await;
    let mut nodes = Vec::new();
    let mut failures = Vec::new();
    for ((result, task), host) in results.into_iter().zip(tasks).zip(&swarm.hosts) {
        match result {
            Ok(node) => {
                task.done(&format!("connected, Docker {}", node.version));
                nodes.push(node);
            }
            Err(error) => {
                task.fail("cannot take part");
                failures.push(Unreachable {
                    host: host.target.clone(),
                    error: format!("{error:#}"),
                });
            }
        }
    }
    (nodes, failures)
}

/// Connects to the first host only: the manager that keeps the deploy
/// lock and the audit log.
pub(crate) async fn connect_keeper(
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
) -> anyhow::Result<Remote> {
    let node = connect_one(0, &swarm.hosts[0], ssh).await?;
    Ok(node.remote)
}

async fn connect_one(index: usize, host: &SwarmHost, ssh: &ConnectOptions) -> anyhow::Result<Node> {
    let target = Target::parse(&host.target)?;
    let options = ConnectOptions {
        docker_socket: host.docker_socket.clone(),
        ..ssh.clone()
    };
    let mut remote = Remote::connect(&target, &options).await?;
    let reached = async {
        let facts = crate::setup::ensure_ready(&remote, &host.docker_socket).await?;
        let version = match facts.daemon {
            crate::setup::Daemon::Answers(version) => version,
            _ => String::new(),
        };
        let docker = remote.docker(&host.docker_socket).await?;
        let advertise = match &host.advertise_addr {
            Some(addr) => Some(addr.clone()),
            None => arrival_address(&remote).await,
        };
        anyhow::Ok((docker, version, advertise))
    }
    .await;
    match reached {
        Ok((docker, version, advertise)) => Ok(Node {
            index,
            target: host.target.clone(),
            remote,
            docker,
            version,
            advertise,
        }),
        Err(error) => {
            remote.close().await;
            Err(error)
        }
    }
}

/// The host's own address of the SSH connection (`SSH_CONNECTION`'s third
/// field), if it is an IP address.
async fn arrival_address(remote: &Remote) -> Option<String> {
    let out = remote
        .try_run("printenv", &["SSH_CONNECTION"])
        .await
        .ok()??;
    let addr = out.split_whitespace().nth(2)?;
    addr.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

pub(crate) async fn close_all(nodes: Vec<Node>) {
    join_all(nodes.into_iter().map(|n| n.remote.close())).await;
}
