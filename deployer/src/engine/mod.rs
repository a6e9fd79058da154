//! The engine: make a Docker daemon run a [`Stack`]. The only code that
//! creates, replaces or removes the stack's containers, networks and
//! volumes.
//!
//! `apply` creates what is missing, replaces what changed (a container's
//! config hash label differs from the desired one, which covers its image
//! id), starts what is stopped and leaves the rest alone. Each service is
//! health-gated before the next starts, in dependency order. The same engine
//! serves `up` (local daemon), `test` (a throw-away project) and `deploy`
//! (the host's daemon through SSH).
//!
//! The files: `spec` decides (pure), `replace` puts a new container in
//! service, `volumes` creates and seeds volumes, `health` gates, `undo`
//! takes back what an interrupted run left half-done, `down` removes,
//! `overlay` makes the stack's networks on a swarm.

mod down;
mod edge;
mod health;
mod overlay;
mod replace;
mod spec;
mod undo;
mod volumes;

pub use down::Volumes;
pub(crate) use overlay::{ensure_overlay_networks, missing_overlay_networks};

use std::collections::HashMap;

use anyhow::{anyhow, bail};
use bollard::Docker;
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::{
    RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
};

use crate::config::pipeline::Seed;
use crate::docker::{ProjectContainer, is_not_found, message, project_containers};
use crate::progress::{Progress, Task};
use crate::stack::{Service, Stack, labels};
use spec::{Decision, Strategy};
use undo::Unfinished;

/// Seconds a container gets to stop on SIGTERM before Docker kills it.
const STOP_TIMEOUT_SECS: i32 = 10;

/// What `apply` did to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Created,
    /// Replaced because its configuration or image changed.
    Replaced,
    /// Existed with the right configuration but was not running.
    Started,
    Unchanged,
}

impl Action {
    fn done_message(self) -> &'static str {
        match self {
            Action::Created => "created, healthy",
            Action::Replaced => "replaced, healthy",
            Action::Started => "started, healthy",
            Action::Unchanged => "unchanged",
        }
    }
}

/// What `apply` did, per service in dependency order.
#[derive(Debug, Default)]
pub(crate) struct Applied(pub Vec<(String, Action)>);

impl Applied {
    /// How many services were created, replaced or started.
    pub(crate) fn changed(&self) -> usize {
        self.0
            .iter()
            .filter(|(_, a)| *a != Action::Unchanged)
            .count()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Applies stacks to one daemon.
pub(crate) struct Engine {
    docker: Docker,
    progress: Progress,
    /// What this run made and has not finished: undone if it is interrupted.
    unfinished: Unfinished,
    /// Held (shared) by every container create the daemon may still be
    /// carrying out; the undo takes it exclusively, so it sees them all.
    creating: std::sync::Arc<tokio::sync::RwLock<()>>,
    /// For a variable the compose file reads, what the user sets to change
    /// it, when that is not the variable itself (on a deploy host: the
    /// pipeline's `deploy.env` source, `EC2_API_PORT` for `API_PORT`).
    settings: HashMap<String, String>,
}

impl Engine {
    pub(crate) fn new(docker: &Docker, progress: &Progress) -> Engine {
        Engine {
            docker: docker.clone(),
            progress: progress.clone(),
            unfinished: Unfinished::default(),
            creating: Default::default(),
            settings: HashMap::new(),
        }
    }

    /// Names, in errors, `settings[var]` where the compose file reads `var`.
    pub(crate) fn with_settings(mut self, settings: HashMap<String, String>) -> Engine {
        self.settings = settings;
        self
    }

    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Makes the daemon run `stack`; `seeds` fill volumes created now.
    pub(crate) async fn apply(&self, stack: &Stack, seeds: &[Seed]) -> anyhow::Result<Applied> {
        // A missing file fails here, before anything is made.
        for file in &stack.files {
            file.read()?;
        }
        for key in &stack.networks {
            self.ensure_network(stack, key).await?;
        }
        for key in &stack.volumes {
            self.ensure_volume(stack, key, seeds).await?;
        }
        self.place_files(stack).await?;
        // One listing serves the whole run: replacing one service never
        // touches another's containers.
        let containers = project_containers(&self.docker, &stack.project).await?;
        self.remove_orphans(stack, &containers).await?;
        let mut applied = Applied::default();
        for service in &stack.services {
            let task = self.progress.task(&service.name, "checking");
            match self.apply_service(stack, service, &containers, &task).await {
                Ok(action) => {
                    task.done(action.done_message());
                    applied.0.push((service.name.clone(), action));
                }
                Err(error) => {
                    task.fail("failed (see the error below)");
                    return Err(error);
                }
            }
        }
        // Every service in place: the edge routes to each one's container.
        self.reconcile_edge(stack).await?;
        Ok(applied)
    }

    async fn ensure_network(&self, stack: &Stack, key: &str) -> anyhow::Result<()> {
        let name = stack.network_name(key);
        match self.docker.inspect_network(&name, None).await {
            Ok(network) => {
                let owner = network
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(labels::PROJECT))
                    .cloned();
                if owner.as_deref() != Some(stack.project.as_str()) {
                    bail!(
                        "a network named {name} exists but does not belong to the stack {}; \
                         remove or rename it (`docker network rm {name}`) and run again",
                        stack.project
                    );
                }
                Ok(())
            }
            Err(e) if is_not_found(&e) => {
                self.docker
                    .create_network(NetworkCreateRequest {
                        name: name.clone(),
                        driver: Some("bridge".into()),
                        labels: Some(HashMap::from([
                            (labels::PROJECT.to_owned(), stack.project.clone()),
                            (labels::NETWORK.to_owned(), key.to_owned()),
                        ])),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| anyhow!("cannot create the network {name}: {}", message(&e)))?;
                self.progress.println(&format!("network {name} created"));
                Ok(())
            }
            Err(e) => Err(anyhow!(
                "cannot inspect the network {name}: {}",
                message(&e)
            )),
        }
    }

    /// Removes containers of the project whose service is no longer in the
    /// stack, and helpers a killed run left.
    async fn remove_orphans(
        &self,
        stack: &Stack,
        containers: &[ProjectContainer],
    ) -> anyhow::Result<()> {
        for container in containers {
            let orphan = !container.oneoff && stack.service(container.service()).is_none();
            if container.is_helper() || orphan {
                self.remove_container(&container.id).await?;
                self.progress.println(&format!(
                    "removed {} (no longer in the stack)",
                    container.name
                ));
            }
        }
        Ok(())
    }

    async fn apply_service(
        &self,
        stack: &Stack,
        service: &Service,
        containers: &[ProjectContainer],
        task: &Task,
    ) -> anyhow::Result<Action> {
        let image = self
            .docker
            .inspect_image(&service.image)
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    anyhow!(
                        "the image {} of service {} does not exist on this daemon: build it \
                         (`deployer build`) or run `deployer up` without --no-build",
                        service.image,
                        service.name
                    )
                } else {
                    anyhow!(
                        "cannot inspect the image {}: {}",
                        service.image,
                        message(&e)
                    )
                }
            })?;
        let hash = spec::config_hash(service, &image.id.unwrap_or_default());
        match spec::decide(&service.name, &hash, containers) {
            Decision::Unchanged(current) => {
                self.restore_name(stack, current).await?;
                // Unchanged, but the next service may only start on a
                // healthy one (returns at once when it is).
                self.health_gate(&current.id, service, task).await?;
                Ok(Action::Unchanged)
            }
            Decision::Start(current) => {
                self.restore_name(stack, current).await?;
                task.set("starting");
                self.start(&current.id, service).await?;
                self.health_gate(&current.id, service, task).await?;
                Ok(Action::Started)
            }
            Decision::Create => {
                self.replace(stack, service, &hash, &[], task).await?;
                match spec::strategy(stack, service) {
                    Strategy::StartFirst(target) => {
                        let id = self.container_id(stack, service).await?;
                        self.route(stack, target, &id, task, None).await?;
                    }
                    // A new edge knows nothing yet: tell it where each
                    // service behind it runs.
                    Strategy::HandOver => self.reconcile_edge(stack).await?,
                    Strategy::StopFirst => {}
                }
                Ok(Action::Created)
            }
            Decision::Replace(old) => {
                match spec::strategy(stack, service) {
                    Strategy::StopFirst => self.replace(stack, service, &hash, &old, task).await?,
                    Strategy::StartFirst(target) => {
                        self.replace_start_first(stack, service, &hash, &old, target, task)
                            .await?
                    }
                    Strategy::HandOver if self.edge_moves(service, &old).await => {
                        task.set("its listening addresses change: stopping the old edge first");
                        self.replace(stack, service, &hash, &old, task).await?;
                        self.reconcile_edge(stack).await?;
                    }
                    Strategy::HandOver => {
                        self.replace_edge(stack, service, &hash, &old, task).await?
                    }
                }
                Ok(Action::Replaced)
            }
        }
    }

    /// Whether the edge's new `EDGE_LISTEN` moves an address the running
    /// one listens on ([`spec::edge_addresses_change`]).
    async fn edge_moves(&self, service: &Service, old: &[&ProjectContainer]) -> bool {
        let listen = |env: &[String]| {
            env.iter()
                .find_map(|kv| kv.strip_prefix("EDGE_LISTEN="))
                .map(str::to_owned)
        };
        let Some(new) = listen(&service.env) else {
            return false;
        };
        for container in old {
            let env = self
                .docker
                .inspect_container(&container.id, None)
                .await
                .ok()
                .and_then(|c| c.config)
                .and_then(|c| c.env)
                .unwrap_or_default();
            if let Some(running) = listen(&env)
                && spec::edge_addresses_change(&running, &new)
            {
                return true;
            }
        }
        false
    }

    /// The id of the container under the service's name.
    async fn container_id(&self, stack: &Stack, service: &Service) -> anyhow::Result<String> {
        let name = stack.container_name(&service.name);
        self.docker
            .inspect_container(&name, None)
            .await
            .map_err(|e| anyhow!("cannot inspect {name}: {}", message(&e)))?
            .id
            .ok_or_else(|| anyhow!("{name} has no id"))
    }

    /// Gives a container left set aside by a killed run its name back.
    async fn restore_name(&self, stack: &Stack, current: &ProjectContainer) -> anyhow::Result<()> {
        let name = stack.container_name(current.service());
        if current.name != name {
            self.docker
                .rename_container(&current.id, RenameContainerOptions { name: name.clone() })
                .await
                .map_err(|e| {
                    anyhow!("cannot rename {} to {name}: {}", current.name, message(&e))
                })?;
        }
        Ok(())
    }

    /// Stops (SIGTERM, then SIGKILL after the timeout) and removes a container.
    async fn remove_container(&self, id: &str) -> anyhow::Result<()> {
        let _ = self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(STOP_TIMEOUT_SECS),
                    ..Default::default()
                }),
            )
            .await;
        match self
            .docker
            .remove_container(
                id,
                // `v`: with its anonymous volumes (an image's VOLUME the
                // stack mounts nothing at, as in a helper); named ones stay.
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(anyhow!("cannot remove the container {id}: {}", message(&e))),
        }
    }

    /// What a user sets to change `variable`.
    fn setting_for<'s>(&'s self, variable: &'s str) -> &'s str {
        self.settings.get(variable).map_or(variable, String::as_str)
    }
}
