//! The stack's containers as a daemon reports them, found by their compose
//! project label (never by name): what `status`, `logs`, `test` and the
//! engine all read, none of them through another.

use std::collections::HashMap;

use anyhow::anyhow;
use bollard::Docker;
use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use bollard::query_parameters::{ListContainersOptions, LogsOptions};
use futures_util::StreamExt;

use super::message;
use crate::stack::labels;

/// A container of a project, found by its labels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProjectContainer {
    pub id: String,
    pub name: String,
    /// created, running, exited, ...
    pub state: String,
    pub running: bool,
    pub oneoff: bool,
    pub labels: HashMap<String, String>,
}

impl ProjectContainer {
    /// The compose service it belongs to (empty for none).
    pub fn service(&self) -> &str {
        self.labels
            .get(labels::SERVICE)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The deployer's own short-lived helper (volume seeding).
    pub fn is_helper(&self) -> bool {
        self.labels.contains_key(labels::HELPER)
    }
}

/// Every container of `project`, running or not.
pub(crate) async fn project_containers(
    docker: &Docker,
    project: &str,
) -> anyhow::Result<Vec<ProjectContainer>> {
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{}={project}", labels::PROJECT)],
            )])),
            ..Default::default()
        }))
        .await
        .map_err(|e| anyhow!("cannot list containers: {}", message(&e)))?;
    Ok(list
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            let state = c.state.map(|s| s.to_string()).unwrap_or_default();
            ProjectContainer {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                running: state == "running",
                state,
                oneoff: labels.get(labels::ONEOFF).map(String::as_str) == Some("True"),
                labels,
            }
        })
        .collect())
}

/// A container's health as the gate and `status` see it.
#[derive(Debug, PartialEq)]
pub(crate) enum Health {
    Healthy,
    Starting,
    Unhealthy(String),
    /// Running, without a healthcheck.
    NoCheck,
    Exited(i64),
}

pub(crate) fn health_of(inspect: &ContainerInspectResponse) -> Health {
    let Some(state) = &inspect.state else {
        return Health::Starting;
    };
    if state.running != Some(true) {
        if state.restarting == Some(true)
            || state.status.map(|s| s.to_string()) == Some("created".into())
        {
            return Health::Starting;
        }
        return Health::Exited(state.exit_code.unwrap_or_default());
    }
    match &state.health {
        None => Health::NoCheck,
        Some(h) => match h.status {
            Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
            Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy(
                h.log
                    .as_ref()
                    .and_then(|l| l.last())
                    .and_then(|r| r.output.clone())
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .unwrap_or_else(|| "the healthcheck failed".into()),
            ),
            Some(HealthStatusEnum::NONE) => Health::NoCheck,
            _ => Health::Starting,
        },
    }
}

/// The last `lines` lines a container printed, indented.
pub(crate) async fn last_logs(docker: &Docker, id: &str, lines: usize) -> String {
    let mut stream = docker.logs(
        id,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        }),
    );
    let mut out = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    out.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerState, ContainerStateStatusEnum, Health as DockerHealth};

    fn inspect(state: ContainerState) -> ContainerInspectResponse {
        ContainerInspectResponse {
            state: Some(state),
            ..Default::default()
        }
    }

    #[test]
    fn health_reads_the_state_a_gate_needs() {
        let running = |status: Option<HealthStatusEnum>| ContainerState {
            running: Some(true),
            health: status.map(|status| DockerHealth {
                status: Some(status),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(health_of(&inspect(running(None))), Health::NoCheck);
        assert_eq!(
            health_of(&inspect(running(Some(HealthStatusEnum::HEALTHY)))),
            Health::Healthy
        );
        assert_eq!(
            health_of(&inspect(running(Some(HealthStatusEnum::STARTING)))),
            Health::Starting
        );
        assert_eq!(
            health_of(&inspect(running(Some(HealthStatusEnum::UNHEALTHY)))),
            Health::Unhealthy("the healthcheck failed".into())
        );
        let created = ContainerState {
            running: Some(false),
            status: Some(ContainerStateStatusEnum::CREATED),
            ..Default::default()
        };
        assert_eq!(health_of(&inspect(created)), Health::Starting);
        let exited = ContainerState {
            running: Some(false),
            status: Some(ContainerStateStatusEnum::EXITED),
            exit_code: Some(3),
            ..Default::default()
        };
        assert_eq!(health_of(&inspect(exited)), Health::Exited(3));
    }
}
