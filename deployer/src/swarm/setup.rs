//! `deployer setup` for a swarm target: makes the hosts of deploy.swarm one
//! Docker Swarm through the Swarm API, in order:
//!
//! 1. reads every host's daemon and refuses, before changing anything, what
//!    setup must not touch (hosts in two swarms, a broken swarm state, the
//!    data label on another node, a network of the stack's name that is not
//!    its overlay network);
//! 2. `swarm init` on the first host when none is in a swarm, and joins the
//!    hosts in none (a host that left is joined again), the first `managers`
//!    as managers; the join token is read from a manager and sent to the
//!    joining daemon inside the API request;
//! 3. gives each host the role pipeline.yaml says (promotions first) and
//!    removes the node records hosts left behind when they left;
//! 4. waits until every host's node is `ready`;
//! 5. removes the `ingress` network: the stack publishes its ports on each
//!    host (mode host) and reaches services by DNS (`dnsrr`), never through
//!    the routing mesh, whose virtual IPs need IPVS and fail silently without
//!    it; an ingress-mode publish is then refused instead;
//! 6. creates the stack's attachable overlay networks (the engine's);
//! 7. labels the data host's node `<project>.data=true`.
//!
//! A ready swarm needs none of it, and setup says so.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bollard::Docker;
use bollard::models::{
    LocalNodeState, NodeSpec, NodeSpecRoleEnum, SwarmInitRequest, SwarmJoinRequest,
};
use bollard::query_parameters::{DeleteNodeOptions, ListNetworksOptions, UpdateNodeOptions};
use secrecy::{ExposeSecret, SecretString};

use super::plan::{self, HostView, Local, Member, NodeView, Role, short};
use super::{Node, close_all, connect_all};
use crate::config::pipeline::SwarmSettings;
use crate::docker::message;
use crate::progress::Progress;
use crate::remote::ConnectOptions;
use crate::workspace::Workspace;

/// Where a manager listens for the others, and a joining node too.
const LISTEN_ADDR: &str = "0.0.0.0:2377";
/// How long joined nodes get to turn `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes the swarm; what changed and how it stands.
pub(crate) async fn setup(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
    progress: &Progress,
) -> anyhow::Result<Report> {
    let nodes = connect_all(swarm, ssh, progress).await?;
    let result = make(workspace, swarm, &nodes, progress).await;
    close_all(nodes).await;
    result
}

/// Reads the swarm and fails naming what a deploy would lack; changes
/// nothing.
pub(crate) async fn check(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
    progress: &Progress,
) -> anyhow::Result<Report> {
    let nodes = connect_all(swarm, ssh, progress).await?;
    let result = inspect(workspace, swarm, &nodes).await;
    close_all(nodes).await;
    result
}

/// What `setup` did (or, for `--check`, what is missing), and the swarm's
/// nodes as they are now.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub hosts: usize,
    /// Each change made, in order; empty when the swarm was ready.
    pub changes: Vec<String>,
    /// What a deploy lacks (`--check` only).
    pub missing: Vec<String>,
    /// What a user should know but setup leaves alone.
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
}

/// One host in the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub target: String,
    pub hostname: String,
    pub role: String,
    pub state: String,
    pub availability: String,
    pub docker: String,
    pub data: bool,
}

impl Report {
    /// Ok for a ready swarm, else what is missing (`--check`).
    pub(crate) fn verdict(&self) -> anyhow::Result<()> {
        if self.missing.is_empty() {
            return Ok(());
        }
        bail!(
            "the swarm of {} hosts is not ready for a deploy:\n  - {}\nRun `deployer setup` to \
             make it. Nothing was changed.",
            self.hosts,
            self.missing.join("\n  - ")
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.missing.is_empty() {
            // --check: the verdict says what is missing.
        } else if self.changes.is_empty() {
            writeln!(
                f,
                "the swarm of {} hosts was already set up; nothing changed.",
                self.hosts
            )?;
        } else {
            writeln!(f, "setup changed the swarm of {} hosts:", self.hosts)?;
            for change in &self.changes {
                writeln!(f, "  - {change}")?;
            }
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        let mut table = vec![[
            "host".to_owned(),
            "node".to_owned(),
            "role".to_owned(),
            "state".to_owned(),
            "availability".to_owned(),
            "docker".to_owned(),
            "data".to_owned(),
        ]];
        for row in &self.rows {
            table.push([
                row.target.clone(),
                row.hostname.clone(),
                row.role.clone(),
                row.state.clone(),
                row.availability.clone(),
                row.docker.clone(),
                if row.data { "yes" } else { "" }.to_owned(),
            ]);
        }
        let widths: Vec<usize> = (0..7)
            .map(|c| table.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        let lines: Vec<String> = table
            .iter()
            .map(|row| {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(cell, width)| format!("{cell:<width$}"))
                    .collect();
                format!("  {}", cells.join("  ").trim_end())
            })
            .collect();
        write!(f, "{}", lines.join("\n"))?;
        Ok(())
    }
}

/// What one host's daemon says of itself.
struct SelfView {
    view: HostView,
    /// Its hostname, which the swarm's node records carry too.
    hostname: String,
    /// Its address in the swarm (empty outside one).
    addr: String,
}

async fn observe(nodes: &[Node]) -> anyhow::Result<Vec<SelfView>> {
    let mut views = Vec::new();
    for node in nodes {
        let info = node
            .docker
            .info()
            .await
            .map_err(|e| anyhow!("cannot read {}'s Docker: {}", node.target, message(&e)))?;
        let swarm = info.swarm.unwrap_or_default();
        let local = match swarm.local_node_state.unwrap_or_default() {
            LocalNodeState::ACTIVE => Local::Active {
                cluster: swarm.cluster.as_ref().and_then(|c| c.id.clone()),
                node_id: swarm.node_id.clone().unwrap_or_default(),
                manager: swarm.control_available.unwrap_or(false),
            },
            LocalNodeState::PENDING => Local::Pending,
            LocalNodeState::ERROR => Local::Error(swarm.error.clone().unwrap_or_default()),
            LocalNodeState::LOCKED => Local::Locked,
            LocalNodeState::INACTIVE | LocalNodeState::EMPTY => Local::Inactive,
        };
        views.push(SelfView {
            view: HostView {
                target: node.target.clone(),
                local,
            },
            hostname: info.name.unwrap_or_default(),
            addr: swarm.node_addr.unwrap_or_default(),
        });
    }
    Ok(views)
}

/// How the hosts become one swarm, and the nodes the swarm they are in
/// (if any) lists.
async fn plan_membership(
    nodes: &[Node],
    views: &[SelfView],
    managers: usize,
) -> anyhow::Result<(plan::Membership, Vec<NodeView>)> {
    let first_manager = views
        .iter()
        .position(|v| matches!(v.view.local, Local::Active { manager: true, .. }));
    let listed = match first_manager {
        Some(i) => list_nodes(&nodes[i].docker).await?,
        None => Vec::new(),
    };
    let ids: Vec<String> = listed.iter().map(|n| n.id.clone()).collect();
    let host_views: Vec<HostView> = views.iter().map(|v| v.view.clone()).collect();
    let membership = plan::membership(&host_views, managers, &ids).map_err(anyhow::Error::msg)?;
    Ok((membership, listed))
}

/// The swarm's nodes, as a manager lists them.
async fn list_nodes(docker: &Docker) -> anyhow::Result<Vec<NodeView>> {
    let nodes = docker
        .list_nodes(None)
        .await
        .map_err(|e| anyhow!("cannot list the swarm's nodes: {}", message(&e)))?;
    Ok(nodes
        .into_iter()
        .map(|node| {
            let spec = node.spec.unwrap_or_default();
            let status = node.status.unwrap_or_default();
            NodeView {
                id: node.id.unwrap_or_default(),
                version: node.version.and_then(|v| v.index).unwrap_or(0),
                hostname: node
                    .description
                    .and_then(|d| d.hostname)
                    .unwrap_or_default(),
                addr: status.addr.unwrap_or_default(),
                role: match spec.role {
                    Some(NodeSpecRoleEnum::MANAGER) => Role::Manager,
                    _ => Role::Worker,
                },
                state: status
                    .state
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                message: status.message.unwrap_or_default(),
                availability: spec.availability.map(|a| a.to_string()).unwrap_or_default(),
                labels: spec.labels.unwrap_or_default(),
                leader: node.manager_status.and_then(|m| m.leader).unwrap_or(false),
            }
        })
        .collect())
}

/// Changes, said as they happen (a setup that fails halfway has shown
/// what it did) and kept for the report.
struct Changes<'p> {
    list: Vec<String>,
    progress: &'p Progress,
}

impl Changes<'_> {
    fn add(&mut self, change: String) {
        self.progress.println(&change);
        self.list.push(change);
    }
}

async fn make(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    nodes: &[Node],
    progress: &Progress,
) -> anyhow::Result<Report> {
    let stack = &workspace.stack;
    let key = plan::data_label_key(&stack.project);
    let data_host = &swarm.hosts[swarm.data].target;
    let mut changes = Changes {
        list: Vec::new(),
        progress,
    };
    let mut notes = Vec::new();

    // 1. What each daemon says, and what setup must refuse before it
    //    changes anything.
    let views = observe(nodes).await?;
    let (membership, listed) = plan_membership(nodes, &views, swarm.managers).await?;
    if membership.init.is_none() {
        let anchor = &nodes[membership.anchor].docker;
        let data = &views[swarm.data];
        let data_id = match &data.view.local {
            Local::Active { node_id, .. } => node_id.clone(),
            _ => String::new(),
        };
        // A data host that left and is joined again still owns its old
        // record's label.
        let data_addr = if data.addr.is_empty() {
            nodes[swarm.data].advertise.clone().unwrap_or_default()
        } else {
            data.addr.clone()
        };
        plan::data_label(
            &listed,
            |n| n.id == data_id || n.hostname == data.hostname && n.addr == data_addr,
            data_host,
            &key,
        )
        .map_err(anyhow::Error::msg)?;
        crate::engine::missing_overlay_networks(anchor, stack).await?;
    }

    // 2. One swarm: made on the first host if there is none, joined by
    //    the hosts in none.
    if let Some(first) = membership.init {
        let node = &nodes[first];
        node.docker
            .init_swarm(SwarmInitRequest {
                listen_addr: Some(LISTEN_ADDR.into()),
                advertise_addr: node.advertise.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot make a swarm on {}: {}. If it has several addresses, set \
                     `advertise_addr` for it in deploy.swarm.hosts",
                    node.target,
                    message(&e)
                )
            })?;
        changes.add(format!("made a new swarm on {} (manager)", node.target));
    }
    let anchor = &nodes[membership.anchor];
    if !membership.joins.is_empty() {
        join(anchor, nodes, &membership.joins, &mut changes).await?;
    }

    // 3. Roles as the file says; records left behind removed.
    let members = members(nodes).await?;
    let listed = wait_listed(&anchor.docker, &members).await?;
    let node_changes = plan::node_changes(&listed, &members, swarm.managers);
    for (id, role) in &node_changes.roles {
        let target = member_target(nodes, &members, id);
        update_node(&anchor.docker, id, |spec| {
            spec.role = Some(match role {
                Role::Manager => NodeSpecRoleEnum::MANAGER,
                Role::Worker => NodeSpecRoleEnum::WORKER,
            })
        })
        .await
        .with_context(|| format!("making {target} a {role}"))?;
        changes.add(format!(
            "made {target} a {role}, as deploy.swarm.managers says"
        ));
    }
    // After a demotion the first host may no longer be a manager; the first
    // `managers` hosts all are now.
    let anchor = &nodes[0];
    for stale in &node_changes.stale {
        if stale.role == Role::Manager {
            update_node(&anchor.docker, &stale.id, |spec| {
                spec.role = Some(NodeSpecRoleEnum::WORKER)
            })
            .await
            .with_context(|| format!("demoting the stale node record {}", short(&stale.id)))?;
        }
        anchor
            .docker
            .delete_node(&stale.id, Some(DeleteNodeOptions { force: true }))
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot remove the stale node record {} ({}): {}",
                    short(&stale.id),
                    stale.hostname,
                    message(&e)
                )
            })?;
        changes.add(format!(
            "removed the node record {} ({}, {}) left from when that host last left the swarm",
            short(&stale.id),
            stale.hostname,
            stale.addr
        ));
    }
    for other in &node_changes.others {
        notes.push(format!(
            "node {} ({}, {}) is in the swarm but not in deploy.swarm.hosts; setup leaves it \
             as it is",
            other.hostname,
            other.addr,
            short(&other.id)
        ));
    }

    // 4. Every host's node ready.
    wait_ready(&anchor.docker, nodes, &members).await?;

    // 5. No routing mesh.
    if remove_ingress(&anchor.docker).await? {
        changes.add(
            "removed the `ingress` network: the stack publishes its ports on each host (mode \
             host), never through the routing mesh"
                .into(),
        );
    }

    // 6. The stack's networks.
    for name in crate::engine::ensure_overlay_networks(&anchor.docker, stack).await? {
        changes.add(format!("created the overlay network {name} (attachable)"));
    }

    // 7. The data host.
    let data = members
        .iter()
        .find(|m| m.index == swarm.data)
        .expect("every host is a member once joined");
    let listed = list_nodes(&anchor.docker).await?;
    if plan::data_label(&listed, |n| n.id == data.node_id, data_host, &key)
        .map_err(anyhow::Error::msg)?
    {
        update_node(&anchor.docker, &data.node_id, |spec| {
            spec.labels
                .get_or_insert_with(HashMap::new)
                .insert(key.clone(), "true".into());
        })
        .await
        .with_context(|| format!("labelling {data_host} as the data host"))?;
        changes.add(format!(
            "labelled {data_host} as the data host ({key}=true): the API and its data file \
             stay there"
        ));
    }

    let listed = list_nodes(&anchor.docker).await?;
    Ok(Report {
        hosts: nodes.len(),
        changes: changes.list,
        missing: Vec::new(),
        notes,
        rows: rows(nodes, &members, &listed, swarm.data),
    })
}

/// Joins the hosts of `joins`, one at a time, to the swarm `anchor` (a
/// manager) is in. The tokens stay in secret types and go only into the
/// joining daemon's API request; an error never repeats them. (bollard
/// traces request bodies through the `log` crate at trace level; the
/// deployer installs no `log` logger, so they go nowhere.)
async fn join(
    anchor: &Node,
    nodes: &[Node],
    joins: &[(usize, Role)],
    changes: &mut Changes<'_>,
) -> anyhow::Result<()> {
    let inspected = anchor.docker.inspect_swarm().await.map_err(|e| {
        anyhow!(
            "cannot read the swarm's join tokens from {}: {}",
            anchor.target,
            message(&e)
        )
    })?;
    let tokens = inspected.join_tokens.unwrap_or_default();
    let worker = SecretString::from(tokens.worker.unwrap_or_default());
    let manager = SecretString::from(tokens.manager.unwrap_or_default());
    let managers: Vec<String> = list_manager_addrs(&anchor.docker).await?;
    for (i, role) in joins {
        let node = &nodes[*i];
        let token = match role {
            Role::Manager => &manager,
            Role::Worker => &worker,
        };
        let request = SwarmJoinRequest {
            listen_addr: Some(LISTEN_ADDR.into()),
            advertise_addr: node.advertise.clone(),
            remote_addrs: Some(managers.clone()),
            join_token: Some(token.expose_secret().to_owned()),
            ..Default::default()
        };
        if let Err(e) = node.docker.join_swarm(request).await {
            let said = message(&e).replace(token.expose_secret(), "<join token>");
            bail!(
                "{} could not join the swarm at {}: {said}. The hosts must reach each other on \
                 TCP 2377 (managers), TCP and UDP 7946 and UDP 4789 (on EC2: the security group)",
                node.target,
                managers.join(", ")
            );
        }
        changes.add(format!("{} joined the swarm as a {role}", node.target));
    }
    Ok(())
}

/// Where the swarm's reachable managers listen (`ip:2377`).
async fn list_manager_addrs(docker: &Docker) -> anyhow::Result<Vec<String>> {
    let nodes = docker
        .list_nodes(None)
        .await
        .map_err(|e| anyhow!("cannot list the swarm's nodes: {}", message(&e)))?;
    let addrs: Vec<String> = nodes
        .into_iter()
        .filter_map(|n| n.manager_status)
        .filter(|m| {
            m.reachability
                .is_some_and(|r| r == bollard::models::Reachability::REACHABLE)
        })
        .filter_map(|m| m.addr)
        .collect();
    if addrs.is_empty() {
        bail!("the swarm has no reachable manager to join");
    }
    Ok(addrs)
}

/// Each host's node as its own daemon names it.
async fn members(nodes: &[Node]) -> anyhow::Result<Vec<Member>> {
    let views = observe(nodes).await?;
    views
        .into_iter()
        .zip(nodes)
        .map(|(view, node)| match view.view.local {
            Local::Active { node_id, .. } => Ok(Member {
                index: node.index,
                node_id,
                hostname: view.hostname,
                addr: view.addr,
            }),
            other => Err(anyhow!(
                "{} should be in the swarm now, but its daemon says {other:?}",
                node.target
            )),
        })
        .collect()
}

fn member_target<'n>(nodes: &'n [Node], members: &[Member], id: &'n str) -> &'n str {
    members
        .iter()
        .find(|m| m.node_id == id)
        .map_or(id, |m| nodes[m.index].target.as_str())
}

/// The node list once every member is in it (a node that just joined
/// reaches the managers' list within a moment).
async fn wait_listed(docker: &Docker, members: &[Member]) -> anyhow::Result<Vec<NodeView>> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let listed = list_nodes(docker).await?;
        if members
            .iter()
            .all(|m| listed.iter().any(|n| n.id == m.node_id))
            || Instant::now() > deadline
        {
            return Ok(listed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_ready(docker: &Docker, nodes: &[Node], members: &[Member]) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let listed = list_nodes(docker).await?;
        let not_ready: Vec<String> = members
            .iter()
            .filter_map(|m| {
                let node = listed.iter().find(|n| n.id == m.node_id);
                match node {
                    Some(n) if n.state == "ready" => None,
                    Some(n) => Some(format!(
                        "{} is {}{}",
                        nodes[m.index].target,
                        n.state,
                        if n.message.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", n.message)
                        }
                    )),
                    None => Some(format!(
                        "{} is not listed by the managers",
                        nodes[m.index].target
                    )),
                }
            })
            .collect();
        if not_ready.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the swarm's nodes did not all turn ready within {} s: {}. The hosts must reach \
                 each other on TCP 2377, TCP and UDP 7946 and UDP 4789",
                READY_TIMEOUT.as_secs(),
                not_ready.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Updates a node's spec at its current version.
async fn update_node(
    docker: &Docker,
    id: &str,
    change: impl FnOnce(&mut NodeSpec),
) -> anyhow::Result<()> {
    let node = docker
        .inspect_node(id)
        .await
        .map_err(|e| anyhow!("cannot inspect node {}: {}", short(id), message(&e)))?;
    let mut spec = node.spec.unwrap_or_default();
    change(&mut spec);
    let version = node.version.and_then(|v| v.index).unwrap_or(0) as i64;
    docker
        .update_node(id, spec, UpdateNodeOptions { version })
        .await
        .map_err(|e| anyhow!("cannot update node {}: {}", short(id), message(&e)))
}

/// The swarm's ingress network, if it has one (its name may differ).
async fn ingress(docker: &Docker) -> anyhow::Result<Option<String>> {
    let networks = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .map_err(|e| anyhow!("cannot list the swarm's networks: {}", message(&e)))?;
    Ok(networks
        .into_iter()
        .find(|n| n.ingress == Some(true))
        .map(|n| n.name.unwrap_or_else(|| "ingress".into())))
}

/// Removes the ingress network and waits until managers no longer list
/// it (it lingers a moment), so a setup run right after finds it gone;
/// true when there was one.
async fn remove_ingress(docker: &Docker) -> anyhow::Result<bool> {
    let Some(name) = ingress(docker).await? else {
        return Ok(false);
    };
    if let Err(e) = docker.remove_network(&name).await
        && !crate::docker::is_not_found(&e)
    {
        bail!(
            "cannot remove the swarm's `{name}` network: {}. A service that publishes a port \
             through the routing mesh uses it: publish it with mode host instead",
            message(&e)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while ingress(docker).await?.is_some() {
        if Instant::now() > deadline {
            bail!("the swarm still lists its `{name}` network 20 s after it was removed");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(true)
}

fn rows(nodes: &[Node], members: &[Member], listed: &[NodeView], data: usize) -> Vec<Row> {
    nodes
        .iter()
        .map(|node| {
            let listed = members
                .iter()
                .find(|m| m.index == node.index)
                .and_then(|m| listed.iter().find(|n| n.id == m.node_id));
            let (hostname, role, state, availability) = match listed {
                Some(n) => (
                    n.hostname.clone(),
                    if n.leader {
                        format!("{}, leader", n.role)
                    } else {
                        n.role.to_string()
                    },
                    n.state.clone(),
                    n.availability.clone(),
                ),
                None => (
                    String::new(),
                    "-".into(),
                    "not in the swarm".into(),
                    String::new(),
                ),
            };
            Row {
                target: node.target.clone(),
                hostname,
                role,
                state,
                availability,
                docker: node.version.clone(),
                data: node.index == data,
            }
        })
        .collect()
}

/// `--check`: what a deploy would lack, read without changing anything.
pub(super) async fn inspect(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    nodes: &[Node],
) -> anyhow::Result<Report> {
    let stack = &workspace.stack;
    let key = plan::data_label_key(&stack.project);
    let data_host = &swarm.hosts[swarm.data].target;
    let views = observe(nodes).await?;
    let (membership, listed) = plan_membership(nodes, &views, swarm.managers).await?;
    let mut missing = Vec::new();
    if let Some(first) = membership.init {
        missing.push(format!(
            "none of the hosts is in a swarm (setup makes one on {})",
            nodes[first].target
        ));
        let rows = rows(nodes, &[], &[], swarm.data);
        return Ok(Report {
            hosts: nodes.len(),
            changes: Vec::new(),
            missing,
            notes: Vec::new(),
            rows,
        });
    }
    for (i, role) in &membership.joins {
        missing.push(format!(
            "{} is in no swarm (setup joins it as a {role})",
            nodes[*i].target
        ));
    }
    let anchor = &nodes[membership.anchor].docker;
    let members: Vec<Member> = views
        .iter()
        .zip(nodes)
        .filter_map(|(view, node)| match &view.view.local {
            Local::Active { node_id, .. } => Some(Member {
                index: node.index,
                node_id: node_id.clone(),
                hostname: view.hostname.clone(),
                addr: view.addr.clone(),
            }),
            _ => None,
        })
        .collect();
    let node_changes = plan::node_changes(&listed, &members, swarm.managers);
    for (id, role) in &node_changes.roles {
        missing.push(format!(
            "{} should be a {role}, as deploy.swarm.managers says",
            member_target(nodes, &members, id)
        ));
    }
    for stale in &node_changes.stale {
        missing.push(format!(
            "the swarm keeps the record {} ({}) of a host that left it",
            short(&stale.id),
            stale.hostname
        ));
    }
    for member in &members {
        if let Some(n) = listed.iter().find(|n| n.id == member.node_id)
            && n.state != "ready"
        {
            missing.push(format!("{} is {}", nodes[member.index].target, n.state));
        }
    }
    if let Some(name) = ingress(anchor).await? {
        missing.push(format!("the swarm still has its `{name}` network"));
    }
    for (_, name) in crate::engine::missing_overlay_networks(anchor, stack).await? {
        missing.push(format!("the overlay network {name} is missing"));
    }
    let data_id = members
        .iter()
        .find(|m| m.index == swarm.data)
        .map(|m| m.node_id.clone())
        .unwrap_or_default();
    match plan::data_label(&listed, |n| n.id == data_id, data_host, &key) {
        Ok(true) => missing.push(format!("{data_host} does not carry the data label {key}")),
        Ok(false) => {}
        Err(refusal) => missing.push(refusal),
    }
    Ok(Report {
        hosts: nodes.len(),
        changes: Vec::new(),
        missing,
        notes: Vec::new(),
        rows: rows(nodes, &members, &listed, swarm.data),
    })
}
