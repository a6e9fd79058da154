//! Putting a new container in service for a service: create it, start it,
//! gate it on health. Containers it replaces are stopped and set aside
//! (renamed, not removed) first, and put back if the new one fails, so a
//! broken release never leaves a service with nothing running.

use anyhow::anyhow;
use bollard::query_parameters::{
    CreateContainerOptions, RenameContainerOptions, StopContainerOptions,
};

use super::undo::Made;
use super::{Engine, STOP_TIMEOUT_SECS};
use crate::docker::{ProjectContainer, message};
use crate::progress::Task;
use crate::stack::{Service, Stack};

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
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                super::spec::container_body(stack, service, hash),
            )
            .await
        {
            Ok(created) => created,
            Err(e) => {
                let error = anyhow!("cannot create the container {name}: {}", message(&e));
                return Err(self.put_back(&retired, error, service, task).await);
            }
        };
        let new = Made::Container(created.id.clone());
        self.unfinished.add(new.clone());
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
