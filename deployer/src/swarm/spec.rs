//! The stack as Swarm services, pure: one `ServiceSpec` per compose
//! service, from the resolved stack, compose's `deploy:` keys and what the
//! swarm is like.
//!
//! What every service gets, whatever the compose file says:
//! - `EndpointSpec.Mode = dnsrr`, always (the VIP a service gets otherwise
//!   needs IPVS and fails silently without it), and ports published on
//!   each node (mode host), never through the routing mesh;
//! - the stack's overlay network, where `tasks.<service>` names its tasks;
//! - the config hash of its spec in its task labels, so a deploy tells an
//!   unchanged service from a changed one, and a task of the new spec from
//!   an old one.
//!
//! And by role:
//! - the edge runs on every node (mode global) with its listeners'
//!   ports published there, finds its targets by DNS (`EDGE_DISCOVER`),
//!   and is updated stop-first (a new edge cannot bind beside the old one);
//! - the service that mounts a seeded volume (the API and its data file) is
//!   one replica on the data node (the node label `setup` sets);
//! - the others run `replicas` (default 2), start-first.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, Mount, MountType, MountVolumeOptions,
    NetworkAttachmentConfig, ResourceObject, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecLogDriver,
    TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use sha2::{Digest, Sha256};
use student_ages_edge_listen::ListenAddress;

use crate::config::pipeline::Seed;
use crate::stack::{
    Deploy, Mount as StackMount, Network, Restart, Service, Stack, UpdateConfig, labels,
};

/// Replicas of a service the compose file gives no `deploy.replicas`.
pub(crate) const DEFAULT_REPLICAS: u64 = 2;
/// How long an updated task is watched for failure (Docker's default).
const DEFAULT_MONITOR: Duration = Duration::from_secs(5);
/// How long a task gets to stop on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What the specs depend on besides the stack.
#[derive(Debug, Clone)]
pub(crate) struct Context<'a> {
    pub seeds: &'a [Seed],
    /// `<project>.data`: the node label of the data host.
    pub data_label: String,
    /// Per service, the image reference the tasks run (pinned to a digest
    /// when a registry has one) and its image ID, for the config hash.
    pub images: HashMap<String, (String, String)>,
}

/// How a service is run, as the deploy needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Planned {
    pub service: String,
    /// `<project>_<service>`.
    pub name: String,
    pub spec: ServiceSpec,
    pub hash: String,
    /// Replicas, or `None` for one task per node.
    pub replicas: Option<u64>,
}

/// The swarm service's name of a compose service.
pub(crate) fn service_name(stack: &Stack, service: &str) -> String {
    format!("{}_{service}", stack.project)
}

/// The label a task's config hash is kept under.
pub(crate) const HASH_LABEL: &str = labels::CONFIG_HASH;

/// Every service of the stack as a swarm service, in dependency order;
/// refuses what a swarm cannot run as the compose file says.
pub(crate) fn plan(stack: &Stack, context: &Context<'_>) -> Result<Vec<Planned>, String> {
    stack
        .services
        .iter()
        .map(|service| plan_service(stack, service, context))
        .collect()
}

fn plan_service(
    stack: &Stack,
    service: &Service,
    context: &Context<'_>,
) -> Result<Planned, String> {
    let name = service_name(stack, &service.name);
    let key = format!("services.{}", service.name);
    let deploy = stack.deploy.get(&service.name).cloned().unwrap_or_default();
    let is_edge = stack
        .edge
        .as_ref()
        .is_some_and(|e| e.service == service.name);
    let keeps_data = service.mounts.iter().any(|m| {
        matches!(m, StackMount::Volume { key, .. } if context.seeds.iter().any(|s| &s.volume == key))
    });

    // Where it runs and how many.
    let mut constraints = deploy.placement.constraints.clone();
    let replicas = if is_edge {
        if deploy.replicas.is_some() {
            return Err(format!(
                "`{key}.deploy.replicas`: the edge runs on every node of the swarm (it owns \
                 their public ports); remove `replicas`"
            ));
        }
        None
    } else if keeps_data {
        if deploy.replicas.is_some_and(|r| r != 1) {
            return Err(format!(
                "`{key}.deploy.replicas`: {} keeps the data file, which lives on one node (the \
                 data host): it runs as one replica there",
                service.name
            ));
        }
        constraints.push(format!("node.labels.{}==true", context.data_label));
        Some(1)
    } else {
        Some(deploy.replicas.unwrap_or(DEFAULT_REPLICAS))
    };

    // Where it listens.
    let network = match &service.network {
        Network::Stack(key) => key.clone(),
        // The edge listens on the node's ports through published ports
        // instead, and joins the overlay network to resolve its targets.
        Network::Host if is_edge => "default".to_owned(),
        Network::Host => {
            return Err(format!(
                "`{key}.network_mode`: host networking cannot be used on a swarm; publish ports \
                 instead"
            ));
        }
    };
    let mut ports = Vec::new();
    for port in &service.ports {
        if !matches!(port.host_ip.as_str(), "" | "0.0.0.0") {
            return Err(format!(
                "`{key}.ports`: a swarm publishes a port on every address of a node; {}:{} \
                 cannot be kept to {}",
                port.host_ip, port.host_port, port.host_ip
            ));
        }
        let published = port.host_port.parse::<i64>().map_err(|_| {
            format!(
                "`{key}.ports`: {} has no host port: name one, a swarm publishes it on each \
                 node (mode host)",
                port.container_port
            )
        })?;
        ports.push(host_port(i64::from(port.container_port), published));
    }
    let mut env = service.env.clone();
    if is_edge {
        let listeners = stack
            .edge_listeners()
            .map_err(|e| format!("`{key}.environment.EDGE_LISTEN`: {e}"))?;
        for listener in listeners {
            let address = match listener.address {
                ListenAddress::Http(a) | ListenAddress::Https(a) => a,
                _ => continue,
            };
            if !address.ip().is_unspecified() {
                return Err(format!(
                    "`{key}.environment.EDGE_LISTEN`: on a swarm the edge listens on every address \
                     of each node; {} cannot be kept to {}",
                    listener.name,
                    address.ip()
                ));
            }
            let port = i64::from(address.port());
            ports.push(host_port(port, port));
        }
        let edge = stack.edge.as_ref().expect("is_edge");
        let discover: Vec<String> = edge
            .targets
            .iter()
            .map(|t| {
                format!(
                    "{}=tasks.{}:{}{}",
                    t.service,
                    service_name(stack, &t.service),
                    t.port,
                    t.health
                )
            })
            .collect();
        env.retain(|kv| !kv.starts_with("EDGE_DISCOVER="));
        env.push(format!("EDGE_DISCOVER={}", discover.join("; ")));
        env.sort();
    }

    // How it is replaced.
    let publishes = !ports.is_empty();
    let update = merge_update(deploy.update_config.as_ref(), publishes || is_edge);
    if publishes && update.order == Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST) {
        return Err(format!(
            "`{key}.deploy.update_config.order`: start-first cannot replace a task that \
             publishes a port on its node: the new task would wait for the port forever (the \
             swarm reports `host-mode port already in use`); use stop-first"
        ));
    }
    let rollback = merge_rollback(deploy.rollback_config.as_ref(), &update);
    if publishes && rollback.order == Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST) {
        return Err(format!(
            "`{key}.deploy.rollback_config.order`: start-first cannot replace a task that \
             publishes a port on its node; use stop-first"
        ));
    }

    let mut mounts = Vec::new();
    for mount in &service.mounts {
        match mount {
            StackMount::Volume {
                key: volume,
                target,
                read_only,
            } => mounts.push(Mount {
                target: Some(target.clone()),
                source: Some(stack.volume_name(volume)),
                typ: Some(MountType::VOLUME),
                read_only: Some(*read_only),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(HashMap::from([
                        (labels::PROJECT.to_owned(), stack.project.clone()),
                        (labels::VOLUME.to_owned(), volume.clone()),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            StackMount::Bind { source, .. } => {
                return Err(format!(
                    "`{key}.volumes`: {} is a path on this machine; a swarm task may run on any \
                     node: use a named volume",
                    source.display()
                ));
            }
        }
    }
    let (image, image_id) = context
        .images
        .get(&service.name)
        .cloned()
        .unwrap_or_else(|| (service.image.clone(), String::new()));
    let identity = HashMap::from([
        (labels::PROJECT.to_owned(), stack.project.clone()),
        (labels::SERVICE.to_owned(), service.name.clone()),
    ]);
    let mut spec = ServiceSpec {
        name: Some(name.clone()),
        labels: Some(identity.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image),
                labels: Some(identity),
                args: service.command.clone(),
                env: Some(env),
                user: service.user.clone(),
                mounts: Some(mounts),
                stop_grace_period: Some(nanos(STOP_GRACE)),
                health_check: service.healthcheck.as_ref().map(|h| HealthConfig {
                    test: Some(h.test.clone()),
                    interval: Some(nanos(h.interval)),
                    timeout: Some(nanos(h.timeout)),
                    retries: Some(i64::from(h.retries)),
                    start_period: Some(nanos(h.start_period)),
                    start_interval: None,
                }),
                capability_add: (!service.cap_add.is_empty()).then(|| service.cap_add.clone()),
                capability_drop: (!service.cap_drop.is_empty()).then(|| service.cap_drop.clone()),
                ..Default::default()
            }),
            resources: resources(&deploy),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(match service.restart {
                    Restart::No => TaskSpecRestartPolicyConditionEnum::NONE,
                    Restart::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
                    Restart::Always | Restart::UnlessStopped => {
                        TaskSpecRestartPolicyConditionEnum::ANY
                    }
                }),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: (!constraints.is_empty()).then_some(constraints),
                preferences: (!deploy.placement.spread.is_empty()).then(|| {
                    deploy
                        .placement
                        .spread
                        .iter()
                        .map(|s| TaskSpecPlacementPreferences {
                            spread: Some(TaskSpecPlacementSpread {
                                spread_descriptor: Some(s.clone()),
                            }),
                        })
                        .collect()
                }),
                max_replicas: deploy.placement.max_replicas_per_node.map(|m| m as i64),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(stack.network_name(&network)),
                aliases: Some(vec![service.name.clone()]),
                ..Default::default()
            }]),
            log_driver: Some(TaskSpecLogDriver {
                name: Some(service.logging.driver.clone()),
                options: Some(service.logging.options.iter().cloned().collect()),
            }),
            ..Default::default()
        }),
        mode: Some(match replicas {
            Some(n) => ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(n as i64),
                }),
                ..Default::default()
            },
            None => ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            },
        }),
        update_config: Some(update),
        rollback_config: Some(rollback),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: (!ports.is_empty()).then_some(ports),
        }),
        ..Default::default()
    };
    let hash = hash(&spec, &image_id);
    for labels in [
        spec.labels.as_mut(),
        spec.task_template
            .as_mut()
            .and_then(|t| t.container_spec.as_mut())
            .and_then(|c| c.labels.as_mut()),
    ]
    .into_iter()
    .flatten()
    {
        labels.insert(HASH_LABEL.to_owned(), hash.clone());
    }
    assert_dnsrr(&spec)?;
    Ok(Planned {
        service: service.name.clone(),
        name,
        spec,
        hash,
        replicas,
    })
}

/// Refuses a spec whose endpoint is not DNS round robin with host-mode
/// ports only: the routing mesh fails silently here.
pub(crate) fn assert_dnsrr(spec: &ServiceSpec) -> Result<(), String> {
    let endpoint = spec.endpoint_spec.as_ref();
    let name = spec.name.as_deref().unwrap_or("?");
    if endpoint.and_then(|e| e.mode) != Some(EndpointSpecModeEnum::DNSRR) {
        return Err(format!(
            "{name}: a swarm service of the stack must use endpoint mode dnsrr (a virtual IP \
             needs IPVS and fails silently without it)"
        ));
    }
    let mesh = endpoint
        .and_then(|e| e.ports.as_ref())
        .into_iter()
        .flatten()
        .any(|p| p.publish_mode != Some(EndpointPortConfigPublishModeEnum::HOST));
    if mesh {
        return Err(format!(
            "{name}: every published port must be mode host (the routing mesh is removed)"
        ));
    }
    Ok(())
}

fn host_port(target: i64, published: i64) -> EndpointPortConfig {
    EndpointPortConfig {
        protocol: Some(EndpointPortConfigProtocolEnum::TCP),
        target_port: Some(target),
        published_port: Some(published),
        publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
        ..Default::default()
    }
}

fn nanos(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

fn merge_update(config: Option<&UpdateConfig>, ports: bool) -> ServiceSpecUpdateConfig {
    let c = config.cloned().unwrap_or_default();
    ServiceSpecUpdateConfig {
        parallelism: Some(c.parallelism.unwrap_or(1) as i64),
        delay: Some(nanos(c.delay.unwrap_or_default())),
        failure_action: Some(match c.failure_action.as_deref() {
            Some("continue") => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            Some("pause") => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            _ => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
        }),
        monitor: Some(nanos(c.monitor.unwrap_or(DEFAULT_MONITOR))),
        max_failure_ratio: Some(c.max_failure_ratio.unwrap_or(0.0)),
        order: Some(match c.order.as_deref() {
            Some("stop-first") => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            Some("start-first") => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
            _ if ports => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            _ => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
    }
}

/// The rollback goes as the update went unless `rollback_config` says
/// otherwise; a failing rollback pauses.
fn merge_rollback(
    config: Option<&UpdateConfig>,
    update: &ServiceSpecUpdateConfig,
) -> ServiceSpecRollbackConfig {
    let c = config.cloned().unwrap_or_default();
    ServiceSpecRollbackConfig {
        parallelism: Some(
            c.parallelism
                .map_or(update.parallelism.unwrap_or(1), |p| p as i64),
        ),
        delay: Some(c.delay.map_or(update.delay.unwrap_or(0), nanos)),
        failure_action: Some(match c.failure_action.as_deref() {
            Some("continue") => ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
            _ => ServiceSpecRollbackConfigFailureActionEnum::PAUSE,
        }),
        monitor: Some(c.monitor.map_or(update.monitor.unwrap_or(0), nanos)),
        max_failure_ratio: Some(c.max_failure_ratio.unwrap_or(0.0)),
        order: Some(match c.order.as_deref() {
            Some("stop-first") => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            Some("start-first") => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
            _ => match update.order {
                Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST) => {
                    ServiceSpecRollbackConfigOrderEnum::START_FIRST
                }
                _ => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            },
        }),
    }
}

fn resources(deploy: &Deploy) -> Option<TaskSpecResources> {
    let cpus = |c: Option<f64>| c.map(|c| (c * 1e9).round() as i64);
    let limits = deploy.resources.limits.as_ref().map(|l| Limit {
        nano_cpus: cpus(l.cpus),
        memory_bytes: l.memory_bytes.map(|m| m as i64),
        pids: l.pids.map(|p| p as i64),
    });
    let reservations = deploy
        .resources
        .reservations
        .as_ref()
        .map(|r| ResourceObject {
            nano_cpus: cpus(r.cpus),
            memory_bytes: r.memory_bytes.map(|m| m as i64),
            ..Default::default()
        });
    (limits.is_some() || reservations.is_some()).then_some(TaskSpecResources {
        limits,
        reservations,
        ..Default::default()
    })
}

/// The hash of a spec (before its hash labels) and its image's ID; maps
/// in key order (a HashMap serializes in any order).
fn hash(spec: &ServiceSpec, image_id: &str) -> String {
    fn sorted(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(
                    entries.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sorted).collect())
            }
            other => other,
        }
    }
    let value = serde_json::to_value(spec).expect("a spec serializes");
    let mut hasher = Sha256::new();
    hasher.update(sorted(value).to_string().as_bytes());
    hasher.update(image_id.as_bytes());
    crate::images::hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compose;

    /// The repository's own stack, as a swarm deploy sees it.
    fn project_stack(deploy_yaml: &str) -> (Stack, Vec<Seed>) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut yaml = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
        if !deploy_yaml.is_empty() {
            yaml = yaml.replace(
                "  frontend:\n",
                &format!("  frontend:\n    deploy:\n{deploy_yaml}"),
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker-compose.yml");
        std::fs::write(&path, yaml).unwrap();
        let env = |key: &str| match key {
            "FRONTEND_PORT" => Some("80".to_owned()),
            _ => None,
        };
        let mut stack = compose::load(
            &path,
            compose::ProjectName { flag: Some("p") },
            &env,
            compose::DeployKeys::Read,
        )
        .unwrap();
        stack.edge = Some(crate::stack::EdgeSpec {
            service: "edge".into(),
            targets: vec![
                crate::stack::EdgeTarget {
                    service: "api".into(),
                    port: 5000,
                    health: "/healthz".into(),
                },
                crate::stack::EdgeTarget {
                    service: "frontend".into(),
                    port: 8080,
                    health: "/healthz".into(),
                },
            ],
        });
        let seeds = vec![Seed {
            volume: "student-data".into(),
            file: "data/student_age.json".into(),
            uid: 65532,
            gid: 65532,
        }];
        (stack, seeds)
    }

    fn planned(deploy_yaml: &str) -> Result<Vec<Planned>, String> {
        let (stack, seeds) = project_stack(deploy_yaml);
        plan(
            &stack,
            &Context {
                seeds: &seeds,
                data_label: "p.data".into(),
                images: HashMap::new(),
            },
        )
    }

    fn find<'a>(plans: &'a [Planned], service: &str) -> &'a Planned {
        plans.iter().find(|p| p.service == service).unwrap()
    }

    #[test]
    fn every_service_is_dnsrr_on_the_overlay_network() {
        let plans = planned("").unwrap();
        assert_eq!(
            plans.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["p_api", "p_edge", "p_frontend"]
        );
        for p in &plans {
            assert_dnsrr(&p.spec).unwrap();
            let task = p.spec.task_template.as_ref().unwrap();
            let network = &task.networks.as_ref().unwrap()[0];
            assert_eq!(network.target.as_deref(), Some("p_default"));
            assert_eq!(
                task.container_spec
                    .as_ref()
                    .unwrap()
                    .labels
                    .as_ref()
                    .unwrap()[HASH_LABEL],
                p.hash
            );
        }
    }

    #[test]
    fn the_api_is_one_replica_on_the_data_node() {
        let plans = planned("").unwrap();
        let api = find(&plans, "api");
        assert_eq!(api.replicas, Some(1));
        let placement = api
            .spec
            .task_template
            .as_ref()
            .unwrap()
            .placement
            .as_ref()
            .unwrap();
        assert_eq!(
            placement.constraints.as_deref(),
            Some(&["node.labels.p.data==true".to_owned()][..])
        );
        assert_eq!(
            api.spec.update_config.as_ref().unwrap().order,
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
    }

    #[test]
    fn the_edge_runs_on_every_node_with_host_ports_and_finds_targets_by_dns() {
        let plans = planned("").unwrap();
        let edge = find(&plans, "edge");
        assert_eq!(edge.replicas, None);
        assert!(edge.spec.mode.as_ref().unwrap().global.is_some());
        let ports: Vec<(i64, i64)> = edge
            .spec
            .endpoint_spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.target_port.unwrap(), p.published_port.unwrap()))
            .collect();
        assert_eq!(ports, [(80, 80), (5000, 5000)]);
        let update = edge.spec.update_config.as_ref().unwrap();
        assert_eq!(
            update.order,
            Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST)
        );
        let env = edge
            .spec
            .task_template
            .as_ref()
            .unwrap()
            .container_spec
            .as_ref()
            .unwrap()
            .env
            .clone()
            .unwrap();
        assert!(
            env.contains(&"EDGE_DISCOVER=api=tasks.p_api:5000/healthz; frontend=tasks.p_frontend:8080/healthz".to_owned()),
            "{env:?}"
        );
    }

    #[test]
    fn the_frontend_scales_start_first_as_deploy_says() {
        let plans = planned("").unwrap();
        assert_eq!(find(&plans, "frontend").replicas, Some(DEFAULT_REPLICAS));
        let plans = planned(
            "      replicas: 3\n      update_config: {monitor: 2s}\n      resources: {limits: {memory: 128M}}\n",
        )
        .unwrap();
        let frontend = find(&plans, "frontend");
        assert_eq!(frontend.replicas, Some(3));
        let update = frontend.spec.update_config.as_ref().unwrap();
        assert_eq!(
            update.order,
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
        assert_eq!(update.monitor, Some(2_000_000_000));
        assert_eq!(
            update.failure_action,
            Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK)
        );
        let rollback = frontend.spec.rollback_config.as_ref().unwrap();
        assert_eq!(
            rollback.order,
            Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST)
        );
        let limits = frontend
            .spec
            .task_template
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap();
        assert_eq!(limits.memory_bytes, Some(128 << 20));
        // The hash follows the spec.
        assert_ne!(frontend.hash, find(&planned("").unwrap(), "frontend").hash);
        assert_eq!(
            find(&plans, "api").hash,
            find(&planned("").unwrap(), "api").hash
        );
    }

    #[test]
    fn what_a_swarm_cannot_run_is_refused_naming_the_key() {
        let (mut stack, seeds) = project_stack("");
        let context = Context {
            seeds: &seeds,
            data_label: "p.data".into(),
            images: HashMap::new(),
        };
        stack.deploy.insert(
            "api".into(),
            Deploy {
                replicas: Some(2),
                ..Default::default()
            },
        );
        let e = plan(&stack, &context).unwrap_err();
        assert!(e.contains("`services.api.deploy.replicas`"), "{e}");
        stack.deploy.clear();
        stack.deploy.insert(
            "edge".into(),
            Deploy {
                update_config: Some(UpdateConfig {
                    order: Some("start-first".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let e = plan(&stack, &context).unwrap_err();
        assert!(e.contains("host-mode port already in use"), "{e}");
    }
}
