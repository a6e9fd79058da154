//! `deployer logs`: the services' logs, each line prefixed by its service.

use anyhow::{anyhow, bail};
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use crate::docker::project_containers;
use crate::host::{self, HostFlags};
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

/// Streams the logs of the local stack, or of the deploy host's with `host`.
pub async fn run(
    workspace: &Workspace,
    options: &Options<'_>,
    host: Option<&HostFlags>,
    progress: &Progress,
) -> anyhow::Result<()> {
    match host {
        None => {
            let docker = workspace.local_docker().await?;
            stream(workspace, &docker, options, progress).await
        }
        Some(flags) => {
            let mut stop = StopSignal::install()?;
            let (remote, docker, _) = host::connect(workspace, flags).await?;
            // Ctrl-C is how `logs -f` ends: close the SSH connection then.
            let result = tokio::select! {
                result = stream(workspace, &docker, options, progress) => result,
                _ = stop.received() => Ok(()),
            };
            remote.close().await;
            result
        }
    }
}

async fn stream(
    workspace: &Workspace,
    docker: &bollard::Docker,
    options: &Options<'_>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let Options {
        service,
        follow,
        tail,
    } = *options;
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
    let containers = project_containers(docker, &stack.project).await?;
    let width = stack
        .services
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    let mut streams = Vec::new();
    for container in containers.iter().filter(|c| !c.oneoff) {
        let name = container.service().to_owned();
        if service.is_some_and(|s| s != name) {
            continue;
        }
        let stream = docker
            .logs(
                &container.id,
                Some(LogsOptions {
                    follow: follow == Follow::Yes,
                    stdout: true,
                    stderr: true,
                    tail: tail.to_owned(),
                    ..Default::default()
                }),
            )
            .map(move |item| (name.clone(), item));
        streams.push(stream.boxed());
    }
    if streams.is_empty() {
        return Err(anyhow!(
            "the stack {} has no containers here: start it with `deployer up`",
            stack.project
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
