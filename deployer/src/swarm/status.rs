//! `deployer status` of a swarm, read only: per service the tasks it wants
//! and runs, per node its role, state and tasks with their containers'
//! health (read from the node's own daemon), and the managers' quorum.

use std::collections::HashMap;

use anyhow::anyhow;
use bollard::models::{NodeSpecRoleEnum, Reachability, TaskState};
use bollard::query_parameters::{ListServicesOptions, ListTasksOptions};
use serde::Serialize;

use super::spec::service_name;
use super::{Node, Unreachable, close_all, connect_reachable};
use crate::config::pipeline::SwarmSettings;
use crate::docker::{Health, health_of, message};
use crate::host::{AuditEntry, HostDir};
use crate::progress::Progress;
use crate::remote::ConnectOptions;
use crate::stack::{Entry, Stack, labels};

/// Connects to the swarm and reads its status, the audit log on the first
/// manager, and where (forwarded from this machine) the data host's edge
/// serves `entry`; the connections stay open for that forward.
pub(crate) async fn read_status(
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
    stack: &Stack,
    entry: Option<Entry>,
    progress: &Progress,
) -> anyhow::Result<(SwarmStatus, Vec<AuditEntry>, Option<String>, Vec<Node>)> {
    let (mut nodes, unreachable) = connect_reachable(swarm, ssh, progress).await?;
    let result = async {
        let mut status = read(&nodes, stack).await?;
        status.unreachable = unreachable;
        let keeper = &nodes[0].remote;
        let audit = HostDir::open(keeper).await?.audit(keeper).await?;
        // Through the data host's edge, if that host answers.
        let data_host = nodes.iter_mut().find(|n| n.index == swarm.data);
        let url = match (entry, data_host) {
            (Some(entry), Some(node)) => Some(format!(
                "http://127.0.0.1:{}",
                node.remote.forward_tcp(&entry.host_ip, entry.port).await?
            )),
            _ => None,
        };
        anyhow::Ok((status, audit, url))
    }
    .await;
    match result {
        Ok((status, audit, url)) => Ok((status, audit, url, nodes)),
        Err(error) => {
            close_all(nodes).await;
            Err(error)
        }
    }
}

/// One service of the stack on the swarm.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmService {
    pub service: String,
    pub image: Option<String>,
    /// `replicated` or `global`.
    pub mode: String,
    pub desired: u64,
    pub running: u64,
    /// running, degraded (fewer running than desired), or missing.
    pub state: String,
    /// healthy when every running task's container is, else the worst.
    pub health: String,
    pub ok: bool,
    /// `updating`, `completed`, `rollback_completed`, ... of its last update.
    pub update: Option<String>,
}

/// One node of the swarm.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmNode {
    /// As deploy.swarm.hosts names it, if it is one of them.
    pub host: Option<String>,
    pub hostname: String,
    pub addr: String,
    /// `manager` or `worker`.
    pub role: String,
    pub leader: bool,
    /// `ready`, `down`, ...
    pub state: String,
    pub availability: String,
    /// Keeps the data (the data host's label).
    pub data: bool,
    pub tasks: Vec<NodeTask>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeTask {
    pub service: String,
    pub task: String,
    pub state: String,
    pub health: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Quorum {
    pub managers: usize,
    pub reachable: usize,
    /// The managers a majority takes.
    pub needed: usize,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SwarmStatus {
    pub services: Vec<SwarmService>,
    pub nodes: Vec<SwarmNode>,
    pub quorum: Quorum,
    /// Hosts of deploy.swarm.hosts this machine could not reach.
    pub unreachable: Vec<Unreachable>,
}

impl SwarmStatus {
    /// The nodes the swarm itself counts as down (a host lost, its Docker
    /// stopped, cut off from the managers).
    pub fn down(&self) -> impl Iterator<Item = &SwarmNode> {
        self.nodes.iter().filter(|n| n.state != "ready")
    }

    /// Every service serves as asked, the managers have a quorum, and
    /// every node is up.
    pub fn healthy(&self) -> bool {
        self.services.iter().all(|s| s.ok)
            && self.quorum.ok
            && self.down().next().is_none()
            && self.unreachable.is_empty()
    }
}

/// Reads the stack's services and the swarm's nodes through `nodes[0]` (a
/// manager), each task's health through the daemon of the node it runs on.
pub(crate) async fn read(nodes: &[Node], stack: &Stack) -> anyhow::Result<SwarmStatus> {
    let manager = &nodes[0].docker;
    let mut own_ids = HashMap::new();
    for node in nodes {
        if let Ok(info) = node.docker.info().await
            && let Some(id) = info.swarm.and_then(|s| s.node_id)
        {
            own_ids.insert(id, node);
        }
    }
    let listed = manager
        .list_nodes(None)
        .await
        .map_err(|e| anyhow!("cannot list the swarm's nodes: {}", message(&e)))?;
    let data_label = super::plan::data_label_key(&stack.project);
    let mut swarm_nodes: Vec<(String, SwarmNode)> = listed
        .iter()
        .map(|n| {
            let id = n.id.clone().unwrap_or_default();
            let spec = n.spec.clone().unwrap_or_default();
            let status = n.status.clone().unwrap_or_default();
            let node = SwarmNode {
                host: own_ids.get(&id).map(|node| node.target.clone()),
                hostname: n
                    .description
                    .as_ref()
                    .and_then(|d| d.hostname.clone())
                    .unwrap_or_default(),
                addr: status.addr.unwrap_or_default(),
                role: match spec.role {
                    Some(NodeSpecRoleEnum::MANAGER) => "manager".into(),
                    _ => "worker".into(),
                },
                leader: n
                    .manager_status
                    .as_ref()
                    .and_then(|m| m.leader)
                    .unwrap_or(false),
                state: status
                    .state
                    .map_or_else(|| "unknown".into(), |s| s.to_string()),
                availability: spec.availability.map(|a| a.to_string()).unwrap_or_default(),
                data: spec
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(&data_label))
                    .is_some_and(|v| v == "true"),
                tasks: Vec::new(),
            };
            (id, node)
        })
        .collect();
    let managers: Vec<_> = listed
        .iter()
        .filter_map(|n| n.manager_status.as_ref())
        .collect();
    let reachable = managers
        .iter()
        .filter(|m| m.reachability == Some(Reachability::REACHABLE))
        .count();
    let needed = managers.len() / 2 + 1;
    let quorum = Quorum {
        managers: managers.len(),
        reachable,
        needed,
        ok: reachable >= needed,
    };

    let listed_services = manager
        .list_services(Some(ListServicesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{}={}", labels::PROJECT, stack.project)],
            )])),
            status: Some(true),
        }))
        .await
        .map_err(|e| anyhow!("cannot list the stack's services: {}", message(&e)))?;
    let mut services = Vec::new();
    for service in &stack.services {
        let name = service_name(stack, &service.name);
        let Some(found) = listed_services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(&name))
        else {
            services.push(SwarmService {
                service: service.name.clone(),
                image: None,
                mode: "-".into(),
                desired: 0,
                running: 0,
                state: "missing".into(),
                health: "-".into(),
                ok: false,
                update: None,
            });
            continue;
        };
        let spec = found.spec.clone().unwrap_or_default();
        let counts = found.service_status.clone().unwrap_or_default();
        let tasks = manager
            .list_tasks(Some(ListTasksOptions {
                filters: Some(HashMap::from([
                    ("service".to_owned(), vec![name.clone()]),
                    ("desired-state".to_owned(), vec!["running".to_owned()]),
                ])),
            }))
            .await
            .map_err(|e| anyhow!("cannot list the tasks of {name}: {}", message(&e)))?;
        let mut worst = "healthy".to_owned();
        for task in &tasks {
            let node_id = task.node_id.clone().unwrap_or_default();
            let status = task.status.clone().unwrap_or_default();
            let container = status
                .container_status
                .as_ref()
                .and_then(|c| c.container_id.clone())
                .unwrap_or_default();
            let health = match own_ids.get(&node_id) {
                Some(node) if !container.is_empty() => {
                    match node.docker.inspect_container(&container, None).await {
                        Ok(inspect) => match health_of(&inspect) {
                            Health::Healthy => "healthy".to_owned(),
                            Health::Starting => "starting".to_owned(),
                            Health::Unhealthy(_) => "unhealthy".to_owned(),
                            Health::NoCheck => "none".to_owned(),
                            Health::Exited(code) => format!("exited ({code})"),
                        },
                        Err(_) => "unknown".to_owned(),
                    }
                }
                _ => "unknown".to_owned(),
            };
            if status.state == Some(TaskState::RUNNING)
                && !matches!(health.as_str(), "healthy" | "none")
            {
                worst = health.clone();
            }
            if let Some((_, node)) = swarm_nodes.iter_mut().find(|(id, _)| *id == node_id) {
                node.tasks.push(NodeTask {
                    service: service.name.clone(),
                    task: task
                        .id
                        .clone()
                        .unwrap_or_default()
                        .chars()
                        .take(12)
                        .collect(),
                    state: status.state.map_or_else(|| "new".into(), |s| s.to_string()),
                    health,
                    error: status.err.filter(|e| !e.is_empty()),
                });
            }
        }
        let desired = counts.desired_tasks.unwrap_or(0);
        let running = counts.running_tasks.unwrap_or(0);
        let state = if running >= desired && desired > 0 {
            "running"
        } else {
            "degraded"
        };
        services.push(SwarmService {
            service: service.name.clone(),
            image: spec
                .task_template
                .and_then(|t| t.container_spec)
                .and_then(|c| c.image),
            mode: if spec.mode.as_ref().and_then(|m| m.global.as_ref()).is_some() {
                "global".into()
            } else {
                "replicated".into()
            },
            desired,
            running,
            state: state.into(),
            ok: state == "running" && worst == "healthy",
            health: worst,
            update: found
                .update_status
                .as_ref()
                .and_then(|u| u.state)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty()),
        });
    }
    for (_, node) in &mut swarm_nodes {
        node.tasks.sort_by(|a, b| a.service.cmp(&b.service));
    }
    let mut nodes: Vec<SwarmNode> = swarm_nodes.into_iter().map(|(_, n)| n).collect();
    nodes.sort_by(|a, b| a.addr.cmp(&b.addr));
    Ok(SwarmStatus {
        services,
        nodes,
        quorum,
        unreachable: Vec::new(),
    })
}

/// The status as a table.
pub fn table(status: &SwarmStatus) -> String {
    let mut rows = vec![[
        "SERVICE".to_owned(),
        "MODE".to_owned(),
        "RUNNING".to_owned(),
        "STATE".to_owned(),
        "HEALTH".to_owned(),
        "UPDATE".to_owned(),
        "IMAGE".to_owned(),
    ]];
    for s in &status.services {
        rows.push([
            s.service.clone(),
            s.mode.clone(),
            format!("{}/{}", s.running, s.desired),
            s.state.clone(),
            s.health.clone(),
            s.update.clone().unwrap_or_else(|| "-".into()),
            s.image.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut out = columns(&rows);
    out.push_str("\n\nnodes:\n");
    for n in &status.nodes {
        out.push_str(&format!(
            "  {} ({}{}{}) {} {} {}{}\n",
            n.hostname,
            n.role,
            if n.leader { ", leader" } else { "" },
            if n.data { ", data" } else { "" },
            n.addr,
            n.state,
            n.availability,
            n.host
                .as_ref()
                .map(|h| format!(" [{h}]"))
                .unwrap_or_default()
        ));
        for t in &n.tasks {
            out.push_str(&format!(
                "    {:<10} {} {} {}{}\n",
                t.service,
                t.task,
                t.state,
                t.health,
                t.error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
    }
    for u in &status.unreachable {
        out.push_str(&format!(
            "  {}: cannot be reached from here: {}\n",
            u.host, u.error
        ));
    }
    let q = &status.quorum;
    out.push_str(&format!(
        "managers: {} of {} reachable, {} needed for a quorum: {}",
        q.reachable,
        q.managers,
        q.needed,
        if q.ok {
            "ok"
        } else {
            "LOST (the swarm cannot change)"
        }
    ));
    out
}

fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
