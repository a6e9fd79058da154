//! The stack's networks on a swarm: one overlay network per network of the
//! compose file, spanning every node, attachable (so the stack's one-off
//! containers can join it as well as its services), labelled as compose
//! labels them. `deployer setup` makes them when it makes the swarm, so a
//! deploy finds them.

use std::collections::HashMap;

use anyhow::{anyhow, bail};
use bollard::Docker;
use bollard::models::NetworkCreateRequest;

use crate::docker::{is_not_found, message};
use crate::stack::{Stack, labels};

/// The stack's overlay networks `docker` (a manager) lacks, by name;
/// refuses a network of the same name that is not the stack's attachable
/// overlay network.
pub(crate) async fn missing_overlay_networks(
    docker: &Docker,
    stack: &Stack,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut missing = Vec::new();
    for key in &stack.networks {
        let name = stack.network_name(key);
        match docker.inspect_network(&name, None).await {
            Ok(network) => {
                let owner = network
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(labels::PROJECT))
                    .map(String::as_str);
                let driver = network.driver.as_deref().unwrap_or("?");
                let scope = network.scope.as_deref().unwrap_or("?");
                if driver != "overlay"
                    || scope != "swarm"
                    || network.attachable != Some(true)
                    || owner != Some(stack.project.as_str())
                {
                    bail!(
                        "a network named {name} exists on the swarm's manager but is not the \
                         stack's attachable overlay network (driver {driver}, scope {scope}, \
                         attachable {}, project {}): it may be left from running the stack on \
                         this host alone. Remove it (`docker network rm {name}` there) and run \
                         setup again",
                        network.attachable.unwrap_or(false),
                        owner.unwrap_or("none"),
                    );
                }
            }
            Err(e) if is_not_found(&e) => missing.push((key.clone(), name)),
            Err(e) => bail!("cannot inspect the network {name}: {}", message(&e)),
        }
    }
    Ok(missing)
}

/// Makes the stack's overlay networks on the swarm of `docker` (a
/// manager); the names of those it created.
pub(crate) async fn ensure_overlay_networks(
    docker: &Docker,
    stack: &Stack,
) -> anyhow::Result<Vec<String>> {
    let mut created = Vec::new();
    for (key, name) in missing_overlay_networks(docker, stack).await? {
        docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("overlay".into()),
                attachable: Some(true),
                labels: Some(HashMap::from([
                    (labels::PROJECT.to_owned(), stack.project.clone()),
                    (labels::NETWORK.to_owned(), key.clone()),
                ])),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("cannot create the overlay network {name}: {}", message(&e)))?;
        created.push(name);
    }
    Ok(created)
}
