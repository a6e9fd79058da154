//! The engine's decisions, pure: what a service's container must look like
//! (its create body and config hash) and what to do about the containers a
//! daemon has for it. No Docker calls here, so every rule is unit-tested.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use sha2::{Digest, Sha256};

use crate::docker::ProjectContainer;
use crate::stack::{EdgeTarget, Mount, Network, Restart, Service, Stack, labels};

/// What to do about one service, given the containers the daemon has for it.
#[derive(Debug, PartialEq)]
pub(crate) enum Decision<'c> {
    /// Its one container has the desired configuration and runs.
    Unchanged(&'c ProjectContainer),
    /// Its one container has the desired configuration but is stopped.
    Start(&'c ProjectContainer),
    /// It has no container yet.
    Create,
    /// Its containers differ from the desired one (or there are several):
    /// a new one replaces them all.
    Replace(Vec<&'c ProjectContainer>),
}

/// Decides from the service's containers (`containers` may hold the whole
/// project's) and the desired config hash.
pub(crate) fn decide<'c>(
    service: &str,
    hash: &str,
    containers: &'c [ProjectContainer],
) -> Decision<'c> {
    let existing: Vec<&ProjectContainer> = containers
        .iter()
        .filter(|c| !c.oneoff && c.service() == service)
        .collect();
    match existing.as_slice() {
        [] => Decision::Create,
        [only] if only.labels.get(labels::CONFIG_HASH).map(String::as_str) == Some(hash) => {
            if only.running {
                Decision::Unchanged(only)
            } else {
                Decision::Start(only)
            }
        }
        _ => Decision::Replace(existing),
    }
}

/// How a service's container is replaced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Strategy<'s> {
    /// Stop the old, start the new: a service that publishes host ports
    /// itself (two containers cannot hold one port), or any without an edge.
    StopFirst,
    /// Start the new beside the old, health-gate it, switch the edge to it,
    /// let the old drain, then stop the old: nothing a client sends fails.
    StartFirst(&'s EdgeTarget),
    /// The edge itself: the new one takes the listening sockets over from
    /// the old one, which then drains and exits by itself.
    HandOver,
}

pub(crate) fn strategy<'s>(stack: &'s Stack, service: &Service) -> Strategy<'s> {
    match &stack.edge {
        Some(edge) if edge.service == service.name => Strategy::HandOver,
        Some(edge) => match edge.target(&service.name) {
            Some(target) => Strategy::StartFirst(target),
            None => Strategy::StopFirst,
        },
        None => Strategy::StopFirst,
    }
}

/// Whether an edge's listening addresses change between two `EDGE_LISTEN`
/// values. Sockets are handed over by address: a new edge cannot take
/// over, nor bind beside the old, an address that changed (`0.0.0.0:5000`
/// to `127.0.0.1:5000`), so such an edge is replaced stop-first. Routes may
/// change freely. An unreadable value counts as unchanged (the edge itself
/// then says what is wrong).
pub(crate) fn edge_addresses_change(old: &str, new: &str) -> bool {
    let addresses = |text: &str| {
        student_ages_edge_listen::parse_listeners(text)
            .ok()
            .map(|listeners| {
                let mut all: Vec<String> =
                    listeners.iter().map(|l| l.address.to_string()).collect();
                all.sort();
                all
            })
    };
    match (addresses(old), addresses(new)) {
        (Some(old), Some(new)) => old != new,
        _ => false,
    }
}

/// Identifies a service's desired container: its resolved definition and
/// the id of the image its tag points at now. The image's name is left out:
/// a new tag for the same image id (a release that did not change this
/// service) must not restart it.
pub(crate) fn config_hash(service: &Service, image_id: &str) -> String {
    let mut hasher = Sha256::new();
    let unnamed = Service {
        image: String::new(),
        ..service.clone()
    };
    hasher.update(format!("{unnamed:?}").as_bytes());
    hasher.update(image_id.as_bytes());
    crate::images::hex(&hasher.finalize())
}

/// Docker's form of a restart policy.
pub(crate) fn restart_policy(restart: Restart) -> RestartPolicy {
    RestartPolicy {
        name: Some(match restart {
            Restart::Always => RestartPolicyNameEnum::ALWAYS,
            Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
            Restart::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
            Restart::No => RestartPolicyNameEnum::NO,
        }),
        maximum_retry_count: None,
    }
}

/// The create request for a service's container.
pub(crate) fn container_body(stack: &Stack, service: &Service, hash: &str) -> ContainerCreateBody {
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
    let read_only = |ro: bool| if ro { ":ro" } else { "" };
    let binds = service
        .mounts
        .iter()
        .map(|m| match m {
            Mount::Volume {
                key,
                target,
                read_only: ro,
            } => format!("{}:{target}{}", stack.volume_name(key), read_only(*ro)),
            Mount::Bind {
                source,
                target,
                read_only: ro,
            } => format!("{}:{target}{}", source.display(), read_only(*ro)),
        })
        .collect();
    let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    let (network_mode, networking_config) = match &service.network {
        Network::Host => ("host".to_owned(), None),
        Network::Stack(key) => {
            let network = stack.network_name(key);
            let endpoints = HashMap::from([(
                network.clone(),
                EndpointSettings {
                    aliases: Some(vec![service.name.clone()]),
                    ..Default::default()
                },
            )]);
            (
                network,
                Some(NetworkingConfig {
                    endpoints_config: Some(endpoints),
                }),
            )
        }
    };
    let list = |items: &[String]| (!items.is_empty()).then(|| items.to_vec());
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
            restart_policy: Some(restart_policy(service.restart)),
            network_mode: Some(network_mode),
            cap_add: list(&service.cap_add),
            cap_drop: list(&service.cap_drop),
            log_config: Some(HostConfigLogConfig {
                typ: Some(service.logging.driver.clone()),
                config: Some(service.logging.options.iter().cloned().collect()),
            }),
            init: None,
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{Healthcheck, Logging, Port};
    use std::path::PathBuf;

    fn service() -> Service {
        Service {
            name: "api".into(),
            image: "student-ages-api:v1".into(),
            command: None,
            env: vec!["A=1".into()],
            ports: vec![Port {
                host_ip: "127.0.0.1".into(),
                host_port: "5000".into(),
                container_port: 5000,
                variables: vec!["API_PORT".into()],
            }],
            mounts: vec![
                Mount::Volume {
                    key: "data".into(),
                    target: "/data".into(),
                    read_only: false,
                },
                Mount::Bind {
                    source: PathBuf::from("/etc/x"),
                    target: "/x".into(),
                    read_only: true,
                },
            ],
            network: Network::Stack("default".into()),
            healthcheck: Some(Healthcheck {
                test: vec!["CMD".into(), "/api".into(), "healthcheck".into()],
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(3),
                start_period: Duration::from_secs(2),
                retries: 5,
            }),
            restart: Restart::UnlessStopped,
            depends_on: vec![],
            user: None,
            logging: Logging::default(),
            cap_add: vec![],
            cap_drop: vec![],
        }
    }

    fn stack() -> Stack {
        Stack {
            project: "p".into(),
            services: vec![service()],
            networks: vec!["default".into()],
            volumes: vec!["data".into()],
            edge: None,
            deploy: Default::default(),
            files: Vec::new(),
        }
    }

    fn container(service: &str, hash: &str, running: bool) -> ProjectContainer {
        ProjectContainer {
            id: format!("{service}-{hash}"),
            name: format!("p-{service}-1"),
            state: if running { "running" } else { "exited" }.into(),
            running,
            oneoff: false,
            labels: HashMap::from([
                (labels::SERVICE.to_owned(), service.to_owned()),
                (labels::CONFIG_HASH.to_owned(), hash.to_owned()),
            ]),
        }
    }

    #[test]
    fn a_service_without_containers_is_created() {
        let others = [container("frontend", "h", true)];
        assert_eq!(decide("api", "h", &others), Decision::Create);
        assert_eq!(decide("api", "h", &[]), Decision::Create);
    }

    #[test]
    fn one_container_with_the_desired_hash_is_left_or_started() {
        let running = [container("api", "h", true)];
        assert_eq!(
            decide("api", "h", &running),
            Decision::Unchanged(&running[0])
        );
        let stopped = [container("api", "h", false)];
        assert_eq!(decide("api", "h", &stopped), Decision::Start(&stopped[0]));
    }

    #[test]
    fn another_hash_or_several_containers_are_replaced() {
        let old = [container("api", "old", true)];
        assert_eq!(decide("api", "h", &old), Decision::Replace(vec![&old[0]]));
        // A leftover beside the right one (a killed run): replace both.
        let two = [container("api", "h", true), container("api", "old", false)];
        assert_eq!(
            decide("api", "h", &two),
            Decision::Replace(vec![&two[0], &two[1]])
        );
    }

    #[test]
    fn one_off_containers_are_not_the_services() {
        let mut run = container("api", "h", true);
        run.oneoff = true;
        assert_eq!(decide("api", "h", &[run]), Decision::Create);
    }

    #[test]
    fn the_config_hash_follows_the_definition_and_image_id_but_not_the_tag() {
        let base = config_hash(&service(), "sha256:1");
        let retagged = Service {
            image: "student-ages-api:v2".into(),
            ..service()
        };
        assert_eq!(config_hash(&retagged, "sha256:1"), base);
        assert_ne!(config_hash(&service(), "sha256:2"), base);
        let changed = Service {
            env: vec!["A=2".into()],
            ..service()
        };
        assert_ne!(config_hash(&changed, "sha256:1"), base);
    }

    #[test]
    fn the_container_body_carries_labels_mounts_ports_and_health() {
        let stack = stack();
        let body = container_body(&stack, &stack.services[0], "h1");
        let labels_set = body.labels.unwrap();
        assert_eq!(labels_set[labels::PROJECT], "p");
        assert_eq!(labels_set[labels::SERVICE], "api");
        assert_eq!(labels_set[labels::CONFIG_HASH], "h1");
        let host = body.host_config.unwrap();
        assert_eq!(host.binds.unwrap(), ["p_data:/data", "/etc/x:/x:ro"]);
        let bindings = host.port_bindings.unwrap();
        let binding = &bindings["5000/tcp"].as_ref().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some("5000"));
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(host.network_mode.as_deref(), Some("p_default"));
        let logs = host.log_config.unwrap();
        assert_eq!(logs.typ.as_deref(), Some("json-file"));
        assert_eq!(logs.config.unwrap()["max-size"], "10m");
        let health = body.healthcheck.unwrap();
        assert_eq!(health.interval, Some(1_000_000_000));
        assert_eq!(health.retries, Some(5));
        let aliases = body.networking_config.unwrap().endpoints_config.unwrap()["p_default"]
            .aliases
            .clone();
        assert_eq!(aliases, Some(vec!["api".to_owned()]));
    }

    #[test]
    fn a_host_networked_service_joins_no_stack_network_and_keeps_its_capabilities() {
        let stack = stack();
        let edge = Service {
            name: "edge".into(),
            network: Network::Host,
            ports: vec![],
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["NET_BIND_SERVICE".into()],
            ..service()
        };
        let body = container_body(&stack, &edge, "h");
        assert!(body.networking_config.is_none());
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.cap_add, Some(vec!["NET_BIND_SERVICE".to_owned()]));
    }

    #[test]
    fn services_behind_the_edge_start_first_and_the_edge_hands_over() {
        let mut stack = stack();
        assert_eq!(strategy(&stack, &service()), Strategy::StopFirst);
        stack.edge = Some(crate::stack::EdgeSpec {
            service: "edge".into(),
            targets: vec![EdgeTarget {
                service: "api".into(),
                port: 5000,
                health: "/healthz".into(),
            }],
        });
        assert_eq!(
            strategy(&stack, &service()),
            Strategy::StartFirst(&stack.edge.as_ref().unwrap().targets[0])
        );
        let edge = Service {
            name: "edge".into(),
            ..service()
        };
        assert_eq!(strategy(&stack, &edge), Strategy::HandOver);
        let other = Service {
            name: "worker".into(),
            ..service()
        };
        assert_eq!(strategy(&stack, &other), Strategy::StopFirst);
    }

    #[test]
    fn an_edge_whose_addresses_move_cannot_hand_over() {
        let all = "web=http://0.0.0.0:80 -> frontend; api=http://0.0.0.0:5000 -> api";
        let routes = "web=http://0.0.0.0:80 -> /=frontend,/x=api; api=http://0.0.0.0:5000 -> api";
        let local = "web=http://0.0.0.0:80 -> frontend; api=http://127.0.0.1:5000 -> api";
        assert!(!edge_addresses_change(all, all));
        assert!(!edge_addresses_change(all, routes), "routes may change");
        assert!(edge_addresses_change(all, local));
        assert!(!edge_addresses_change("not a listener", local));
    }
}
