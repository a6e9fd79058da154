//! Taking a stack away: its containers and networks, and its volumes only
//! when asked, all found by the project label.

use std::collections::HashMap;

use anyhow::{anyhow, bail};
use bollard::query_parameters::{ListNetworksOptions, ListVolumesOptions, RemoveVolumeOptions};

use super::Engine;
use crate::docker::{is_not_found, message, project_containers};
use crate::stack::labels;

/// Whether `down` removes the stack's volumes (and so its data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volumes {
    Keep,
    Remove,
}

impl Engine {
    /// Removes the project's containers and networks (and volumes if asked);
    /// finds them by label. Returns what was removed.
    pub(crate) async fn down(
        &self,
        project: &str,
        volumes: Volumes,
    ) -> anyhow::Result<Vec<String>> {
        let mut removed = Vec::new();
        for container in project_containers(&self.docker, project).await? {
            self.remove_container(&container.id).await?;
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
        if volumes == Volumes::Remove {
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
