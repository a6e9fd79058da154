//! The engine: make a Docker daemon run a [`Stack`].
//!
//! `apply` creates what is missing, replaces what changed (a container's
//! config hash label differs from the desired one, which covers its image
//! id), starts what is stopped and leaves the rest alone. Each service is
//! health-gated before the next starts, in dependency order. The same engine
//! serves `up` (local daemon) and `test` (a throw-away project).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HealthConfig,
    HealthStatusEnum, HostConfig, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, ListContainersOptions,
    ListNetworksOptions, ListVolumesOptions, LogsOptions, RemoveContainerOptions,
    RemoveVolumeOptions, RenameContainerOptions, StopContainerOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::config::pipeline::Seed;
use crate::docker::{is_not_found, message};
use crate::progress::{Progress, Task};
use crate::stack::{Mount, Service, Stack, labels};

/// What `apply` did to one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Created,
    /// Replaced because its configuration or image changed.
    Replaced,
    /// Existed with the right configuration but was not running.
    Started,
    Unchanged,
}

/// Applies stacks to one daemon.
pub struct Engine<'a> {
    pub docker: &'a Docker,
    pub progress: &'a Progress,
    /// What this run made and has not finished: undone if it is interrupted.
    unfinished: Unfinished,
}

impl<'a> Engine<'a> {
    pub fn new(docker: &'a Docker, progress: &'a Progress) -> Self {
        Engine {
            docker,
            progress,
            unfinished: Unfinished::default(),
        }
    }

    /// A handle that outlives an interrupted `apply`, to clean up after it.
    pub fn unfinished(&self) -> Unfinished {
        self.unfinished.clone()
    }

    /// Makes the daemon run `stack`; `seeds` fill volumes created now.
    pub async fn apply(
        &self,
        stack: &Stack,
        seeds: &[Seed],
    ) -> anyhow::Result<Vec<(String, Action)>> {
        for key in &stack.networks {
            self.ensure_network(stack, key).await?;
        }
        for key in &stack.volumes {
            if self.ensure_volume(stack, key).await? {
                // A new volume counts as made only once it is seeded: an
                // interrupted or failed seeding removes it, so the next run
                // seeds it again rather than starting on no data.
                let volume = Made::Volume(stack.volume_name(key));
                self.unfinished.add(volume.clone());
                for seed in seeds.iter().filter(|s| &s.volume == key) {
                    if let Err(error) = self.seed_volume(stack, seed).await {
                        self.undo(&self.unfinished, &stack.project).await;
                        return Err(error);
                    }
                }
                self.unfinished.done(&volume);
            }
        }
        // One listing serves the whole run: replacing one service never
        // touches another's containers.
        let containers = project_containers(self.docker, &stack.project).await?;
        self.remove_orphans(stack, &containers).await?;
        let mut actions = Vec::new();
        for service in &stack.services {
            let action = self.apply_service(stack, service, &containers).await?;
            actions.push((service.name.clone(), action));
        }
        Ok(actions)
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

    /// Creates the volume if missing; true when it was created now.
    async fn ensure_volume(&self, stack: &Stack, key: &str) -> anyhow::Result<bool> {
        let name = stack.volume_name(key);
        match self.docker.inspect_volume(&name).await {
            Ok(_) => Ok(false),
            Err(e) if is_not_found(&e) => {
                self.docker
                    .create_volume(VolumeCreateRequest {
                        name: Some(name.clone()),
                        labels: Some(HashMap::from([
                            (labels::PROJECT.to_owned(), stack.project.clone()),
                            (labels::VOLUME.to_owned(), key.to_owned()),
                        ])),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| anyhow!("cannot create the volume {name}: {}", message(&e)))?;
                self.progress.println(&format!("volume {name} created"));
                Ok(true)
            }
            Err(e) => Err(anyhow!("cannot inspect the volume {name}: {}", message(&e))),
        }
    }

    /// Puts a seed file into a new volume through a container that is
    /// created and never started (scratch images have no shell to copy with).
    async fn seed_volume(&self, stack: &Stack, seed: &Seed) -> anyhow::Result<()> {
        let (image, target) = volume_user(stack, &seed.volume)?;
        let volume = stack.volume_name(&seed.volume);
        let id = self
            .helper_container(stack, &image, &volume, &target)
            .await?;
        let upload = match seed_tar(seed) {
            Ok(tar) => self.upload(&id, &target, tar).await,
            Err(e) => Err(e),
        };
        self.remove(&id).await?;
        self.unfinished.done(&Made::Container(id));
        upload.with_context(|| format!("cannot seed the volume {volume}"))?;
        self.progress.println(&format!(
            "volume {volume} seeded with {}",
            seed.file.display()
        ));
        Ok(())
    }

    /// Replaces the seed file in an existing volume after copying the live
    /// file beside it as `<name>.backup-<time>` (`deploy --reseed-data`).
    /// Returns the backup's name.
    pub async fn reseed(&self, stack: &Stack, seed: &Seed) -> anyhow::Result<String> {
        let file_name = seed_file_name(seed);
        let (image, target) = volume_user(stack, &seed.volume)?;
        let volume = stack.volume_name(&seed.volume);
        let id = self
            .helper_container(stack, &image, &volume, &target)
            .await?;
        let result = async {
            // The live file arrives as a tar stream of one entry.
            let mut archive = Vec::new();
            let mut stream = self.docker.download_from_container(
                &id,
                Some(DownloadFromContainerOptions {
                    path: format!("{target}/{file_name}"),
                }),
            );
            while let Some(chunk) = stream.next().await {
                archive.extend_from_slice(&chunk.map_err(|e| {
                    anyhow!(
                        "cannot read the live {file_name} in {volume}: {}",
                        message(&e)
                    )
                })?);
            }
            let backup = format!("{file_name}.backup-{}", crate::host::now().replace(':', ""));
            let mut entries = tar::Archive::new(archive.as_slice());
            let mut renamed = tar::Builder::new(Vec::new());
            if let Some(entry) = entries.entries()?.next() {
                let mut entry = entry?;
                let mut header = entry.header().clone();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data)?;
                renamed.append_data(&mut header, &backup, data.as_slice())?;
            }
            // The backup first: if it cannot be written, the live file stays.
            self.upload(&id, &target, renamed.into_inner()?).await?;
            self.upload(&id, &target, seed_tar(seed)?).await?;
            Ok::<_, anyhow::Error>(backup)
        }
        .await;
        self.remove(&id).await?;
        self.unfinished.done(&Made::Container(id));
        let backup = result.with_context(|| format!("cannot reseed the volume {volume}"))?;
        self.progress.println(&format!(
            "volume {volume} reseeded from {}; the live file was kept as {backup}",
            seed.file.display()
        ));
        Ok(backup)
    }

    async fn upload(&self, id: &str, target: &str, tar: Vec<u8>) -> anyhow::Result<()> {
        self.docker
            .upload_to_container(
                id,
                Some(UploadToContainerOptions {
                    path: target.to_owned(),
                    ..Default::default()
                }),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|e| anyhow!("cannot write into {target}: {}", message(&e)))
    }

    /// A created, never-started container with `volume` mounted at
    /// `target`, for copying files in and out (scratch images have no shell).
    async fn helper_container(
        &self,
        stack: &Stack,
        image: &str,
        volume: &str,
        target: &str,
    ) -> anyhow::Result<String> {
        static HELPERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "{}-seed-{}-{}-{}",
            stack.project,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            HELPERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(image.to_owned()),
                    labels: Some(HashMap::from([
                        (labels::PROJECT.to_owned(), stack.project.clone()),
                        (labels::ONEOFF.to_owned(), "True".to_owned()),
                        (labels::HELPER.to_owned(), "seed".to_owned()),
                    ])),
                    host_config: Some(HostConfig {
                        binds: Some(vec![format!("{volume}:{target}")]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot reach the volume {volume}: creating a container from {image} failed: {} \
                     (build or pull the images first)",
                    message(&e)
                )
            })?;
        self.unfinished.add(Made::Container(created.id.clone()));
        Ok(created.id)
    }

    /// Removes containers of the project whose service is no longer in the stack.
    async fn remove_orphans(
        &self,
        stack: &Stack,
        containers: &[ProjectContainer],
    ) -> anyhow::Result<()> {
        for container in containers {
            let service = container
                .labels
                .get(labels::SERVICE)
                .cloned()
                .unwrap_or_default();
            let ours = container.labels.contains_key(labels::HELPER);
            if ours || (!container.oneoff && stack.service(&service).is_none()) {
                self.remove(&container.id).await?;
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
    ) -> anyhow::Result<Action> {
        let task = self.progress.task(&service.name, "checking");
        let result = self
            .apply_service_inner(stack, service, containers, &task)
            .await;
        match &result {
            Ok(action) => task.done(match action {
                Action::Created => "created, healthy",
                Action::Replaced => "replaced, healthy",
                Action::Started => "started, healthy",
                Action::Unchanged => "unchanged",
            }),
            Err(_) => task.fail("failed (see the error below)"),
        }
        result
    }

    async fn apply_service_inner(
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
        let image_id = image.id.unwrap_or_default();
        let hash = config_hash(service, &image_id);
        let existing: Vec<&ProjectContainer> = containers
            .iter()
            .filter(|c| c.labels.get(labels::SERVICE) == Some(&service.name))
            .collect();
        let current = existing
            .iter()
            .find(|c| c.labels.get(labels::CONFIG_HASH) == Some(&hash));
        if let (Some(current), 1) = (current, existing.len()) {
            let name = stack.container_name(&service.name);
            if current.name != name {
                // Left set aside by a run that was killed: its name back.
                self.docker
                    .rename_container(&current.id, RenameContainerOptions { name: name.clone() })
                    .await
                    .map_err(|e| {
                        anyhow!("cannot rename {} to {name}: {}", current.name, message(&e))
                    })?;
            }
            if current.running {
                // Unchanged, but the next service may only start on a
                // healthy one (returns at once when it is).
                self.health_gate(&current.id, service, task).await?;
                return Ok(Action::Unchanged);
            }
            task.set("starting");
            self.start(&current.id, service).await?;
            self.health_gate(&current.id, service, task).await?;
            return Ok(Action::Started);
        }
        let action = if existing.is_empty() {
            Action::Created
        } else {
            Action::Replaced
        };
        // The old container is stopped and set aside, not removed, until the
        // new one is healthy: if the new one fails, the old one comes back.
        let mut retired = Vec::new();
        for &old in &existing {
            task.set(&format!("stopping {}", old.name));
            self.retire(old).await?;
            retired.push(old);
        }
        task.set("creating");
        let body = container_body(stack, service, &hash);
        let name = stack.container_name(&service.name);
        let created = match self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
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
        let started = self.start(&created.id, service).await;
        let healthy = match started {
            Ok(()) => self.health_gate(&created.id, service, task).await,
            Err(error) => Err(error),
        };
        match healthy {
            Ok(()) => {
                // The new one is in service: from here an interrupt must
                // neither remove it nor bring the old one back.
                self.unfinished.done(&new);
                for old in &retired {
                    self.unfinished.done(&retired_made(old));
                    self.remove(&old.id).await?;
                }
                Ok(action)
            }
            Err(error) if retired.is_empty() => {
                // Nothing to go back to. A container that started stays, so
                // its logs can be read; one that never started is removed.
                if !self.is_running_or_restarting(&created.id).await {
                    let _ = self.remove(&created.id).await;
                }
                self.unfinished.done(&new);
                Err(error)
            }
            Err(error) => {
                let _ = self.remove(&created.id).await;
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
        self.unfinished.add(retired_made(old));
        let _ = self
            .docker
            .stop_container(
                &old.id,
                Some(StopContainerOptions {
                    t: Some(10),
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

    /// Brings retired containers back (their names, started) after a failed
    /// replacement; returns `error` saying so.
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
                self.unfinished.done(&retired_made(old));
                // Back in service only once it answers again.
                task.set(&format!("starting the previous {} again", old.name));
                let health = match self.health_gate(&old.id, service, task).await {
                    Ok(()) => "healthy".to_owned(),
                    Err(e) => format!(
                        "not healthy: {}",
                        e.to_string().lines().next().unwrap_or("")
                    ),
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

    async fn start(&self, id: &str, service: &Service) -> anyhow::Result<()> {
        self.docker.start_container(id, None).await.map_err(|e| {
            let text = message(&e);
            if text.contains("port is already allocated") || text.contains("address already in use")
            {
                let ports: Vec<String> = service
                    .ports
                    .iter()
                    .filter(|p| !p.host_port.is_empty())
                    .map(|p| p.host_port.clone())
                    .collect();
                anyhow!(
                    "cannot start {}: a host port it publishes ({}) is already taken by another \
                     program or container. Stop that program, or publish on another port \
                     (the compose file's ports, e.g. API_PORT=5001 / FRONTEND_PORT=8081). \
                     Docker said: {text}",
                    service.name,
                    ports.join(", ")
                )
            } else {
                anyhow!("cannot start {}: {text}", service.name)
            }
        })
    }

    /// Waits until the container is healthy (or running, without a
    /// healthcheck); on failure the error carries its last log lines.
    async fn health_gate(&self, id: &str, service: &Service, task: &Task) -> anyhow::Result<()> {
        let patience = service
            .healthcheck
            .as_ref()
            .map_or(Duration::from_secs(2), |h| {
                h.patience() + Duration::from_secs(5)
            });
        if let Some(h) = &service.healthcheck {
            task.set(&format!(
                "waiting for health ({} every {}s, {} retries, up to {}s)",
                h.test[1..].join(" "),
                h.interval.as_secs_f32(),
                h.retries,
                patience.as_secs()
            ));
        }
        let started = Instant::now();
        loop {
            let inspect = self
                .docker
                .inspect_container(id, None)
                .await
                .map_err(|e| anyhow!("cannot inspect {}: {}", service.name, message(&e)))?;
            match health_of(&inspect) {
                Health::Healthy => return Ok(()),
                Health::NoCheck if started.elapsed() > Duration::from_millis(500) => return Ok(()),
                Health::Exited(code) => {
                    return Err(self
                        .failure(id, service, &format!("exited with code {code}"))
                        .await);
                }
                Health::Unhealthy(reason) => {
                    return Err(self
                        .failure(id, service, &format!("is unhealthy: {reason}"))
                        .await);
                }
                _ => {}
            }
            if started.elapsed() > patience {
                return Err(self
                    .failure(
                        id,
                        service,
                        &format!("was not healthy after {}s", patience.as_secs()),
                    )
                    .await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn failure(&self, id: &str, service: &Service, what: &str) -> anyhow::Error {
        let logs = last_logs(self.docker, id, 20).await;
        anyhow!(
            "service {} {what}. Its last log lines:\n{}\n(see all with `deployer logs {}`)",
            service.name,
            if logs.trim().is_empty() {
                "  (no output)".to_owned()
            } else {
                logs
            },
            service.name
        )
    }

    async fn remove(&self, id: &str) -> anyhow::Result<()> {
        let _ = self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(10),
                    ..Default::default()
                }),
            )
            .await;
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
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

    /// Undoes what an interrupted run left unfinished: removes the
    /// containers it made, starts again the ones it had set aside, removes
    /// new volumes it had not finished seeding. Returns how many objects.
    pub async fn undo(&self, unfinished: &Unfinished, project: &str) -> usize {
        let mut made = unfinished.take();
        // A container the daemon created just as the run was interrupted,
        // before the run heard back, is in no list: find it by its state.
        // A project container that never started is half-made by definition.
        for container in project_containers(self.docker, project)
            .await
            .unwrap_or_default()
        {
            let id = Made::Container(container.id.clone());
            let ours = container.labels.contains_key(labels::HELPER)
                || container.labels.contains_key(labels::CONFIG_HASH);
            if ours && container.state == "created" && !made.contains(&id) {
                made.push(id);
            }
        }
        for item in &made {
            if let Made::Container(id) = item {
                let _ = self.remove(id).await;
            }
        }
        for item in &made {
            if let Made::Retired { id, name } = item {
                let _ = self
                    .docker
                    .rename_container(id, RenameContainerOptions { name: name.clone() })
                    .await;
                let _ = self.docker.start_container(id, None).await;
            }
        }
        for item in &made {
            if let Made::Volume(name) = item {
                let _ = self
                    .docker
                    .remove_volume(name, None::<RemoveVolumeOptions>)
                    .await;
            }
        }
        made.len()
    }

    /// Removes the project's containers and networks (and volumes if asked);
    /// finds them by label. Returns what was removed.
    pub async fn down(&self, project: &str, volumes: bool) -> anyhow::Result<Vec<String>> {
        let mut removed = Vec::new();
        for container in project_containers(self.docker, project).await? {
            self.remove(&container.id).await?;
            removed.push(format!("container {}", container.name));
        }
        let filter = HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={project}", labels::PROJECT)],
        )]);
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filter.clone()),
            }))
            .await
            .map_err(|e| anyhow!("cannot list networks: {}", message(&e)))?;
        for network in networks {
            let name = network.name.unwrap_or_default();
            match self.docker.remove_network(&name).await {
                Ok(()) => removed.push(format!("network {name}")),
                Err(e) if is_not_found(&e) => {}
                Err(e) => bail!("cannot remove the network {name}: {}", message(&e)),
            }
        }
        if volumes {
            let list = self
                .docker
                .list_volumes(Some(ListVolumesOptions {
                    filters: Some(filter),
                }))
                .await
                .map_err(|e| anyhow!("cannot list volumes: {}", message(&e)))?;
            for volume in list.volumes.unwrap_or_default() {
                match self
                    .docker
                    .remove_volume(&volume.name, None::<RemoveVolumeOptions>)
                    .await
                {
                    Ok(()) => removed.push(format!("volume {}", volume.name)),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => bail!("cannot remove the volume {}: {}", volume.name, message(&e)),
                }
            }
        }
        Ok(removed)
    }
}

/// An object a run made, or changed and must restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    Container(String),
    Volume(String),
    /// A container stopped and renamed aside, with its original name.
    Retired {
        id: String,
        name: String,
    },
}

fn retired_made(old: &ProjectContainer) -> Made {
    Made::Retired {
        id: old.id.clone(),
        name: old.name.clone(),
    }
}

/// What a run has made and not yet finished (a container not yet healthy,
/// a volume not yet seeded), shared with whoever must undo it on Ctrl-C.
#[derive(Debug, Clone, Default)]
pub struct Unfinished(Arc<Mutex<Vec<Made>>>);

impl Unfinished {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Made>> {
        // A panic while holding this lock cannot leave the list invalid.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, made: Made) {
        self.list().push(made);
    }

    fn done(&self, made: &Made) {
        self.list().retain(|m| m != made);
    }

    fn take(&self) -> Vec<Made> {
        std::mem::take(&mut *self.list())
    }
}

/// A container of a project, found by its labels.
#[derive(Debug, Clone)]
pub struct ProjectContainer {
    pub id: String,
    pub name: String,
    /// created, running, exited, ...
    pub state: String,
    pub running: bool,
    pub oneoff: bool,
    pub labels: HashMap<String, String>,
}

pub async fn project_containers(
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
            ProjectContainer {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                running: c.state.map(|s| s.to_string()) == Some("running".into()),
                oneoff: labels.get(labels::ONEOFF).map(String::as_str) == Some("True"),
                labels,
            }
        })
        .collect())
}

/// The image and mount point of the first service that mounts `volume`.
fn volume_user(stack: &Stack, volume: &str) -> anyhow::Result<(String, String)> {
    stack
        .services
        .iter()
        .find_map(|s| {
            s.mounts.iter().find_map(|m| match m {
                Mount::Volume { key, target, .. } if key == volume => {
                    Some((s.image.clone(), target.clone()))
                }
                _ => None,
            })
        })
        .ok_or_else(|| anyhow!("no service mounts the volume {volume:?}"))
}

fn seed_file_name(seed: &Seed) -> String {
    seed.file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "seed".into())
}

/// The seed file as a one-entry tar, owned as the pipeline says.
fn seed_tar(seed: &Seed) -> anyhow::Result<Vec<u8>> {
    let data = std::fs::read(&seed.file)
        .with_context(|| format!("cannot read the seed file {}", seed.file.display()))?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(seed.uid);
    header.set_gid(seed.gid);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, seed_file_name(seed), data.as_slice())?;
    Ok(tar.into_inner()?)
}

/// A container's health as the gate sees it.
#[derive(Debug, PartialEq)]
pub enum Health {
    Healthy,
    Starting,
    Unhealthy(String),
    /// Running, without a healthcheck.
    NoCheck,
    Exited(i64),
}

pub fn health_of(inspect: &ContainerInspectResponse) -> Health {
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
pub async fn last_logs(docker: &Docker, id: &str, lines: usize) -> String {
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

/// Identifies a service's desired container: its resolved definition and
/// the id of the image its tag points at now. The image's name is left out:
/// a new tag for the same image id (a release that did not change this
/// service) must not restart it.
pub fn config_hash(service: &Service, image_id: &str) -> String {
    let mut hasher = Sha256::new();
    let unnamed = Service {
        image: String::new(),
        ..service.clone()
    };
    hasher.update(format!("{unnamed:?}").as_bytes());
    hasher.update(image_id.as_bytes());
    crate::images::hex(&hasher.finalize())
}

fn container_body(stack: &Stack, service: &Service, hash: &str) -> ContainerCreateBody {
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &service.ports {
        port_bindings
            .entry(format!("{}/tcp", port.container_port))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(port.host_ip.clone()),
                host_port: Some(port.host_port.clone()),
            });
    }
    let binds = service
        .mounts
        .iter()
        .map(|m| match m {
            Mount::Volume {
                key,
                target,
                read_only,
            } => format!(
                "{}:{target}{}",
                stack.volume_name(key),
                if *read_only { ":ro" } else { "" }
            ),
            Mount::Bind {
                source,
                target,
                read_only,
            } => format!(
                "{}:{target}{}",
                source.display(),
                if *read_only { ":ro" } else { "" }
            ),
        })
        .collect();
    let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    let network = stack.network_name(&service.network);
    ContainerCreateBody {
        image: Some(service.image.clone()),
        cmd: service.command.clone(),
        env: Some(service.env.clone()),
        user: service.user.clone(),
        exposed_ports: Some(
            service
                .ports
                .iter()
                .map(|p| format!("{}/tcp", p.container_port))
                .collect(),
        ),
        healthcheck: service.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: Some(nanos(h.interval)),
            timeout: Some(nanos(h.timeout)),
            start_period: Some(nanos(h.start_period)),
            retries: Some(i64::from(h.retries)),
            start_interval: None,
        }),
        labels: Some(HashMap::from([
            (labels::PROJECT.to_owned(), stack.project.clone()),
            (labels::SERVICE.to_owned(), service.name.clone()),
            (labels::NUMBER.to_owned(), "1".to_owned()),
            (labels::ONEOFF.to_owned(), "False".to_owned()),
            (labels::CONFIG_HASH.to_owned(), hash.to_owned()),
        ])),
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings),
            binds: Some(binds),
            restart_policy: Some(RestartPolicy {
                name: Some(match service.restart.as_str() {
                    "always" => RestartPolicyNameEnum::ALWAYS,
                    "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                    "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                    _ => RestartPolicyNameEnum::NO,
                }),
                maximum_retry_count: None,
            }),
            network_mode: Some(network.clone()),
            init: None,
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network,
                EndpointSettings {
                    aliases: Some(vec![service.name.clone()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}
