//! Putting a new container in service for a service, in one of three ways
//! (`spec::Strategy`):
//!
//! - **stop-first** (a service that publishes its own host ports): the old
//!   container is stopped and set aside (renamed, not removed), the new one
//!   created, started and health-gated; if it fails, the old one is put back.
//! - **start-first** (a service behind the edge): the new container starts
//!   beside the old one, the edge health-checks it (every 100 ms; Docker's
//!   first check would come a whole healthcheck interval after the start),
//!   switches to it and drains the old one, and only then is the old one
//!   stopped. A new container that exits, or that the edge never finds
//!   healthy, gets no traffic and is removed with its logs told; the old
//!   one never stopped. (With no edge running, Docker's health gate.)
//! - **hand-over** (the edge itself): the new edge takes the listening
//!   sockets over from the old one, which drains and exits by itself.
//!
//! Either way a broken release never leaves a service with nothing running.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use bollard::models::ContainerUpdateBody;
use bollard::query_parameters::{RenameContainerOptions, StopContainerOptions};

use super::undo::Made;
use super::{Engine, STOP_TIMEOUT_SECS};
use crate::docker::{ProjectContainer, message};
use crate::progress::Task;
use crate::stack::{EdgeTarget, Restart, Service, Stack};

/// How long an old edge may take to hand over, drain and exit (its own
/// shutdown bound is 30 s).
const HANDOVER_EXIT: Duration = Duration::from_secs(40);

/// What tells that a new container may have traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Docker's healthcheck ([`Engine::health_gate`]).
    Docker,
    /// The edge's own check during the switch, with Docker watched for an
    /// exit meanwhile.
    Edge,
}

impl Engine {
    /// Replaces `old` (empty: creates) with a new container of `service`
    /// whose config hash is `hash`; returns once it is healthy.
    pub(super) async fn replace(
        &self,
        stack: &Stack,
        service: &Service,
        hash: &str,
        old: &[&ProjectContainer],
        task: &Task,
    ) -> anyhow::Result<()> {
        let mut retired = Vec::new();
        for &container in old {
            task.set(&format!("stopping {}", container.name));
            self.retire(container).await?;
            retired.push(container);
        }
        task.set("creating");
        let name = stack.container_name(&service.name);
        let created = match self
            .create(&name, super::spec::container_body(stack, service, hash))
            .await
        {
            Ok(created) => created,
            Err(e) => {
                let error = anyhow!("cannot create the container {name}: {}", message(&e));
                return Err(self.put_back(&retired, error, service, task).await);
            }
        };
        let new = Made::Container(created.id.clone());
        task.set("starting");
        let healthy = match self.start(&created.id, service).await {
            Ok(()) => self.health_gate(&created.id, service, task).await,
            Err(error) => Err(error),
        };
        match healthy {
            Ok(()) => {
                // The new one is in service: from here an interrupt must
                // neither remove it nor bring the old one back.
                self.unfinished.done(&new);
                for old in &retired {
                    self.unfinished.done(&Made::retired(old));
                    self.remove_container(&old.id).await?;
                }
                Ok(())
            }
            Err(error) if retired.is_empty() => {
                // Nothing to go back to. A container that started stays, so
                // its logs can be read; one that never started is removed.
                if !self.is_running_or_restarting(&created.id).await {
                    let _ = self.remove_container(&created.id).await;
                }
                self.unfinished.done(&new);
                Err(error)
            }
            Err(error) => {
                let _ = self.remove_container(&created.id).await;
                self.unfinished.done(&new);
                Err(self.put_back(&retired, error, service, task).await)
            }
        }
    }

    /// Starts a new container of a service behind the edge beside the `old`
    /// ones, health-gates it, switches the edge to it (which drains the
    /// old), then stops the old ones and gives the new one the service's
    /// name.
    pub(super) async fn replace_start_first(
        &self,
        stack: &Stack,
        service: &Service,
        hash: &str,
        old: &[&ProjectContainer],
        target: &EdgeTarget,
        task: &Task,
    ) -> anyhow::Result<()> {
        let gate = match self.running_edge(stack).await? {
            Some(_) => Gate::Edge,
            None => Gate::Docker,
        };
        let id = self
            .start_beside(stack, service, hash, task, gate)
            .await
            .map_err(|e| {
                e.context(format!(
                    "the new {} container was removed; the previous {} keeps serving, untouched",
                    service.name, service.name
                ))
            })?;
        let new = Made::Container(id.clone());
        let watched = (gate == Gate::Edge).then_some(service);
        if let Err(error) = self.route(stack, target, &id, task, watched).await {
            let _ = self.remove_container(&id).await;
            self.unfinished.done(&new);
            // The edge switches only to a healthy target: the previous
            // container still has every request.
            return Err(error.context(format!(
                "the new {} container was removed; the previous {} keeps serving, untouched",
                service.name, service.name
            )));
        }
        // In service: from here an interrupt must not remove it.
        self.unfinished.done(&new);
        for container in old {
            task.set(&format!("stopping {} (drained)", container.name));
            self.remove_container(&container.id).await?;
        }
        self.take_name(stack, service, &id).await
    }

    /// Replaces the edge: the new edge starts beside the old one and takes
    /// its listening sockets over (healthy = it serves); the old one then
    /// finishes its requests and exits by itself, and is removed.
    pub(super) async fn replace_edge(
        &self,
        stack: &Stack,
        service: &Service,
        hash: &str,
        old: &[&ProjectContainer],
        task: &Task,
    ) -> anyhow::Result<()> {
        // An old edge that exits after handing over must stay down: its
        // restart policy would start it again and it would take the
        // sockets back.
        for container in old {
            self.unfinished.add(Made::NoRestart {
                id: container.id.clone(),
                restart: service.restart,
            });
            self.set_restart(&container.id, Restart::No).await?;
        }
        let restore = async || {
            for container in old {
                let _ = self.set_restart(&container.id, service.restart).await;
                self.unfinished.done(&Made::NoRestart {
                    id: container.id.clone(),
                    restart: service.restart,
                });
            }
        };
        let id = match self
            .start_beside(stack, service, hash, task, Gate::Docker)
            .await
        {
            Ok(id) => id,
            Err(error) => {
                restore().await;
                return Err(error.context("the previous edge keeps serving"));
            }
        };
        self.unfinished.done(&Made::Container(id.clone()));
        for container in old {
            task.set(&format!(
                "waiting for {} to hand over and exit",
                container.name
            ));
            let started = Instant::now();
            while self.is_running_or_restarting(&container.id).await
                && started.elapsed() < HANDOVER_EXIT
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            self.unfinished.done(&Made::NoRestart {
                id: container.id.clone(),
                restart: service.restart,
            });
            self.remove_container(&container.id).await?;
        }
        self.take_name(stack, service, &id).await
    }

    /// Creates and starts a new container of `service` under a name of its
    /// own, while others of the service still run, and health-gates it
    /// with Docker's healthcheck unless the edge is to. Removed again if it
    /// does not start or turn healthy (the error carries its logs).
    async fn start_beside(
        &self,
        stack: &Stack,
        service: &Service,
        hash: &str,
        task: &Task,
        gate: Gate,
    ) -> anyhow::Result<String> {
        let name = format!(
            "{}-next-{:x}",
            stack.container_name(&service.name),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        task.set("creating beside the running one");
        let created = self
            .create(&name, super::spec::container_body(stack, service, hash))
            .await
            .map_err(|e| anyhow!("cannot create the container {name}: {}", message(&e)))?;
        let new = Made::Container(created.id.clone());
        task.set("starting");
        let healthy = match self.start(&created.id, service).await {
            Ok(()) if gate == Gate::Docker => self.health_gate(&created.id, service, task).await,
            other => other,
        };
        if let Err(error) = healthy {
            let _ = self.remove_container(&created.id).await;
            self.unfinished.done(&new);
            return Err(error);
        }
        Ok(created.id)
    }

    /// Gives a container the service's canonical name, once the one that
    /// held it is gone.
    async fn take_name(&self, stack: &Stack, service: &Service, id: &str) -> anyhow::Result<()> {
        let name = stack.container_name(&service.name);
        self.docker
            .rename_container(id, RenameContainerOptions { name: name.clone() })
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot rename the new {} to {name}: {}",
                    service.name,
                    message(&e)
                )
            })
    }

    /// Sets a container's restart policy.
    pub(super) async fn set_restart(&self, id: &str, restart: Restart) -> anyhow::Result<()> {
        self.docker
            .update_container(
                id,
                ContainerUpdateBody {
                    restart_policy: Some(super::spec::restart_policy(restart)),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow!("cannot change the restart policy of {id}: {}", message(&e)))
    }

    /// Stops a container and renames it aside, so the new one can take its
    /// name and ports; undone by [`Engine::put_back`] or on Ctrl-C.
    async fn retire(&self, old: &ProjectContainer) -> anyhow::Result<()> {
        // Recorded before it is touched: an interrupt while it stops must
        // still start it again.
        self.unfinished.add(Made::retired(old));
        let _ = self
            .docker
            .stop_container(
                &old.id,
                Some(StopContainerOptions {
                    t: Some(STOP_TIMEOUT_SECS),
                    ..Default::default()
                }),
            )
            .await;
        let aside = format!("{}-retired-{}", old.name, &old.id[..12.min(old.id.len())]);
        if old.name != aside {
            self.docker
                .rename_container(&old.id, RenameContainerOptions { name: aside })
                .await
                .map_err(|e| anyhow!("cannot set {} aside: {}", old.name, message(&e)))?;
        }
        Ok(())
    }

    /// Brings retired containers back (their names, started, healthy) after
    /// a failed replacement; returns `error` saying so.
    async fn put_back(
        &self,
        retired: &[&ProjectContainer],
        error: anyhow::Error,
        service: &Service,
        task: &Task,
    ) -> anyhow::Error {
        let mut restored = Vec::new();
        for old in retired {
            let back = self
                .docker
                .rename_container(
                    &old.id,
                    RenameContainerOptions {
                        name: old.name.clone(),
                    },
                )
                .await
                .is_ok()
                && self.docker.start_container(&old.id, None).await.is_ok();
            if back {
                self.unfinished.done(&Made::retired(old));
                // Back in service only once it answers again.
                task.set(&format!("starting the previous {} again", old.name));
                let health = match self.health_gate(&old.id, service, task).await {
                    Ok(()) => "healthy".to_owned(),
                    Err(e) => format!("not healthy: {}", crate::errors::summary(&e)),
                };
                restored.push(format!("{} ({health})", old.name));
            }
        }
        if restored.is_empty() {
            error
        } else {
            error.context(format!(
                "the new container failed; the previous one was started again: {}",
                restored.join(", ")
            ))
        }
    }

    async fn is_running_or_restarting(&self, id: &str) -> bool {
        self.docker
            .inspect_container(id, None)
            .await
            .ok()
            .and_then(|i| i.state)
            .is_some_and(|s| s.running == Some(true) || s.restarting == Some(true))
    }

    /// Starts a container, explaining a host port that is taken.
    pub(super) async fn start(&self, id: &str, service: &Service) -> anyhow::Result<()> {
        self.docker.start_container(id, None).await.map_err(|e| {
            let text = message(&e);
            if text.contains("port is already allocated") || text.contains("address already in use")
            {
                let ports: Vec<&str> = service
                    .ports
                    .iter()
                    .filter(|p| !p.host_port.is_empty())
                    .map(|p| p.host_port.as_str())
                    .collect();
                let mut settings: Vec<&str> = Vec::new();
                for variable in service.ports.iter().flat_map(|p| &p.variables) {
                    let setting = self.setting_for(variable);
                    if !settings.contains(&setting) {
                        settings.push(setting);
                    }
                }
                let how = if settings.is_empty() {
                    format!("change services.{}.ports in the compose file", service.name)
                } else {
                    format!("set {} to a free port", settings.join(" / "))
                };
                anyhow!(
                    "cannot start {}: a host port it publishes ({}) is already taken by another \
                     program or container. Stop that program, or publish on another port \
                     ({how}). Docker said: {text}",
                    service.name,
                    ports.join(", "),
                )
            } else {
                anyhow!("cannot start {}: {text}", service.name)
            }
        })
    }
}
