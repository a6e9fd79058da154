//! Undoing an interrupted run: what the engine made or set aside and has
//! not finished, kept where the command that catches Ctrl-C can reach it.

use std::sync::{Arc, Mutex};

use bollard::models::{ContainerCreateBody, ContainerCreateResponse};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveVolumeOptions, RenameContainerOptions,
};

use super::Engine;
use crate::docker::{ProjectContainer, project_containers};
use crate::stack::{Restart, labels};

/// An object a run made, or changed and must restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Made {
    Container(String),
    Volume(String),
    /// A container stopped and renamed aside, with its original name.
    Retired {
        id: String,
        name: String,
    },
    /// A switch of the edge in progress: the addresses the service had.
    Routed {
        edge: String,
        service: String,
        health: String,
        previous: Vec<String>,
    },
    /// A container whose restart policy was turned off (an edge handing
    /// over), with the policy to give back.
    NoRestart {
        id: String,
        restart: Restart,
    },
}

impl Made {
    pub(crate) fn retired(old: &ProjectContainer) -> Made {
        Made::Retired {
            id: old.id.clone(),
            name: old.name.clone(),
        }
    }
}

/// What a run has made and not yet finished (a container not yet healthy,
/// a volume not yet seeded), shared with whoever must undo it on Ctrl-C.
#[derive(Debug, Clone, Default)]
pub(crate) struct Unfinished(Arc<Mutex<Vec<Made>>>);

impl Unfinished {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Made>> {
        // A panic while holding this lock cannot leave the list invalid.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add(&self, made: Made) {
        self.list().push(made);
    }

    pub(crate) fn done(&self, made: &Made) {
        self.list().retain(|m| m != made);
    }

    fn take(&self) -> Vec<Made> {
        std::mem::take(&mut *self.list())
    }
}

impl Engine {
    /// Creates a container, recording it as unfinished as soon as the
    /// daemon has made it. The request runs in a task of its own, so a
    /// Ctrl-C that drops the caller's future cannot leave a container the
    /// run never heard of: the undo waits for every create in flight.
    pub(super) async fn create(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<ContainerCreateResponse, bollard::errors::Error> {
        let permit = self.creating.clone().read_owned().await;
        let (docker, unfinished, name) = (
            self.docker.clone(),
            self.unfinished.clone(),
            name.to_owned(),
        );
        let request = tokio::spawn(async move {
            let created = docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(name),
                        ..Default::default()
                    }),
                    body,
                )
                .await;
            if let Ok(created) = &created {
                unfinished.add(Made::Container(created.id.clone()));
            }
            drop(permit);
            created
        });
        match request.await {
            Ok(created) => created,
            // The task cannot be cancelled; a panic in it is a bug.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Adds to `made` the project's containers that were created and never
    /// started: a container the daemon created just as the run was
    /// interrupted, before the run heard back, is in no list, and a project
    /// container that never started is half-made by definition.
    async fn half_made(&self, project: &str, made: &mut Vec<Made>) {
        for container in project_containers(&self.docker, project)
            .await
            .unwrap_or_default()
        {
            let id = Made::Container(container.id.clone());
            let ours = container.is_helper() || container.labels.contains_key(labels::CONFIG_HASH);
            if ours && container.state == "created" && !made.contains(&id) {
                made.push(id);
            }
        }
    }

    /// Undoes what an interrupted run left unfinished: removes the
    /// containers it made, starts again the ones it had set aside, removes
    /// new volumes it had not finished seeding. Returns how many objects.
    pub(crate) async fn undo(&self, project: &str) -> usize {
        // Every create already sent finishes first (bounded: a daemon that
        // hangs must not hang the undo), so it is in the list.
        let _settled =
            tokio::time::timeout(std::time::Duration::from_secs(30), self.creating.write()).await;
        let mut made = self.unfinished.take();
        self.half_made(project, &mut made).await;
        // The edge first: a switch cut short goes back to the containers
        // that still run, before any new one is removed.
        for item in &made {
            if let Made::Routed {
                edge,
                service,
                health,
                previous,
            } = item
            {
                let _ = self.route_back(edge, service, health, previous).await;
            }
        }
        for item in &made {
            if let Made::Container(id) = item {
                let _ = self.remove_container(id).await;
            }
        }
        for item in &made {
            if let Made::NoRestart { id, restart } = item {
                let _ = self.set_restart(id, *restart).await;
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
        // Look once more, for anything another deployer of an older version
        // left (a volume in use by such a container could not be removed).
        let mut late = Vec::new();
        self.half_made(project, &mut late).await;
        for item in &late {
            if let Made::Container(id) = item
                && !made.contains(item)
            {
                let _ = self.remove_container(id).await;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_steps_leave_the_list_and_the_rest_is_taken_once() {
        let unfinished = Unfinished::default();
        let shared = unfinished.clone();
        unfinished.add(Made::Volume("v".into()));
        unfinished.add(Made::Container("c".into()));
        shared.done(&Made::Volume("v".into()));
        assert_eq!(unfinished.take(), [Made::Container("c".into())]);
        assert!(shared.take().is_empty());
    }
}
