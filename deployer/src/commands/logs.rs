//! `deployer logs`: the services' logs, each line prefixed by its service
//! (on a swarm: by service, task and node, every node's merged).

use anyhow::{anyhow, bail};
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use crate::docker::project_containers;
use crate::host::{self, DeployTarget, HostFlags};
use crate::progress::Progress;
use crate::signal::StopSignal;
use crate::workspace::Workspace;

pub struct Options<'a> {
    pub service: Option<&'a str>,
    pub follow: Follow,
    pub tail: &'a str,
}

/// Whether `logs` keeps streaming new lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    No,
    Yes,
}

/// Streams the logs of the local stack, or of the deploy target's with
/// `host` or when it is a swarm (then every node's tasks, each line
/// prefixed by its service, task and node).
pub async fn run(
    workspace: &Workspace,
    options: &Options<'_>,
    host: Option<&HostFlags>,
    progress: &Progress,
) -> anyhow::Result<()> {
    check_service(workspace, options.service)?;
    // With a swarm as the deploy target, as for `status`: its logs.
    let swarm_flags = HostFlags::default();
    let host = host.or((workspace.pipeline.deploy.swarm.is_some()).then_some(&swarm_flags));
    let Some(flags) = host else {
        let docker = workspace.local_docker().await?;
        let sources = sources(workspace, &docker, options.service, None).await?;
        return merge(sources, options, progress).await;
    };
    let mut stop = StopSignal::install()?;
    match host::deploy_target(workspace, flags)? {
        DeployTarget::Host(..) => {
            let (remote, docker, _) = host::connect(workspace, flags).await?;
            // Ctrl-C is how `logs -f` ends: close the SSH connection then.
            let result = tokio::select! {
                result = async {
                    let sources = sources(workspace, &docker, options.service, None).await?;
                    merge(sources, options, progress).await
                } => result,
                _ = stop.received() => Ok(()),
            };
            remote.close().await;
            result
        }
        DeployTarget::Swarm(swarm, ssh) => {
            let nodes = crate::swarm::connect_all(&swarm, &ssh, progress).await?;
            let result = tokio::select! {
                result = async {
                    let mut all = Vec::new();
                    for node in &nodes {
                        all.extend(
                            sources(
                                workspace,
                                &node.docker,
                                options.service,
                                // `[user@]host[:port]`: the host names it.
                                Some(node.target.rsplit('@').next().unwrap_or(&node.target)),
                            )
                            .await?,
                        );
                    }
                    merge(all, options, progress).await
                } => result,
                _ = stop.received() => Ok(()),
            };
            crate::swarm::close_all(nodes).await;
            result
        }
    }
}

fn check_service(workspace: &Workspace, service: Option<&str>) -> anyhow::Result<()> {
    let stack = &workspace.stack;
    if let Some(name) = service
        && stack.service(name).is_none()
    {
        let names: Vec<_> = stack.services.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "no service {name:?} in the stack (it has: {})",
            names.join(", ")
        );
    }
    Ok(())
}

/// One container's log, and what its lines are prefixed with.
struct Source {
    prefix: String,
    docker: bollard::Docker,
    id: String,
}

/// The stack's containers on `docker` (of `service` only, if given): on
/// one daemon prefixed by their service; on a swarm's `node`, by service,
/// task (slot and ID) and node.
async fn sources(
    workspace: &Workspace,
    docker: &bollard::Docker,
    service: Option<&str>,
    node: Option<&str>,
) -> anyhow::Result<Vec<Source>> {
    let containers = project_containers(docker, &workspace.stack.project).await?;
    Ok(containers
        .iter()
        .filter(|c| !c.oneoff && service.is_none_or(|s| s == c.service()))
        .map(|c| Source {
            prefix: match node {
                None => c.service().to_owned(),
                // A task's container is `<project>_<service>.<slot>.<task ID>`.
                Some(node) => {
                    let task = c
                        .name
                        .trim_start_matches('/')
                        .split_once('.')
                        .map_or("", |(_, task)| task);
                    let (slot, id) = task.split_once('.').unwrap_or((task, ""));
                    let id: String = id.chars().take(8).collect();
                    format!("{}.{slot} {id} @{node}", c.service())
                }
            },
            docker: docker.clone(),
            id: c.id.clone(),
        })
        .collect())
}

async fn merge(
    sources: Vec<Source>,
    options: &Options<'_>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let Options { follow, tail, .. } = *options;
    let width = sources.iter().map(|s| s.prefix.len()).max().unwrap_or(0);
    let streams: Vec<_> = sources
        .into_iter()
        .map(|source| {
            source
                .docker
                .logs(
                    &source.id,
                    Some(LogsOptions {
                        follow: follow == Follow::Yes,
                        stdout: true,
                        stderr: true,
                        tail: tail.to_owned(),
                        ..Default::default()
                    }),
                )
                .map(move |item| (source.prefix.clone(), item))
                .boxed()
        })
        .collect();
    if streams.is_empty() {
        return Err(anyhow!(
            "the stack has no containers there: start it with `deployer up` (here) or `deployer \
             deploy` (on the deploy target)"
        ));
    }
    let mut merged = futures_util::stream::select_all(streams);
    let mut partial: std::collections::HashMap<String, String> = Default::default();
    while let Some((name, item)) = merged.next().await {
        let chunk =
            item.map_err(|e| anyhow!("reading {name}'s logs: {}", crate::docker::message(&e)))?;
        let buffer = partial.entry(name.clone()).or_default();
        buffer.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            progress.out(&format!("{name:<width$} | {}", line.trim_end()));
        }
    }
    for (name, rest) in partial {
        if !rest.is_empty() {
            progress.out(&format!("{name:<width$} | {rest}"));
        }
    }
    Ok(())
}
