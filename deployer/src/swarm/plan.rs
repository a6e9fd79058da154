//! The swarm's decisions, pure: from what each host's daemon and the
//! swarm's managers say, what `setup` must do (make the swarm, join hosts,
//! fix roles, forget the records hosts left behind, label the data node),
//! and what it must refuse to touch. No Docker calls here, so every rule is
//! unit-tested.

use std::collections::HashMap;
use std::fmt;

/// A node's role in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Manager,
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        })
    }
}

/// What a host's own daemon says of its swarm membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Local {
    /// In no swarm.
    Inactive,
    /// Joining one.
    Pending,
    Active {
        /// The swarm's ID: only managers know it.
        cluster: Option<String>,
        node_id: String,
        manager: bool,
    },
    /// The daemon's swarm component failed; its message.
    Error(String),
    /// An autolocked manager after a restart.
    Locked,
}

/// One configured host, as its daemon sees itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostView {
    /// `[user@]host[:port]`, for messages.
    pub target: String,
    pub local: Local,
}

/// How the hosts become one swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Membership {
    /// The host the swarm is made on, when none is in one yet.
    pub init: Option<usize>,
    /// The host whose daemon speaks for the swarm: a manager in it.
    pub anchor: usize,
    /// Hosts in no swarm, to join, with the role each joins as.
    pub joins: Vec<(usize, Role)>,
}

/// Decides how the hosts become one swarm, or why setup must not touch
/// them. `managers`: the first this many hosts are managers. `listed`: the
/// node IDs the first host that is a manager lists (its swarm's nodes),
/// which tells which swarm a worker is in (a worker does not know its
/// swarm's ID).
pub(crate) fn membership(
    hosts: &[HostView],
    managers: usize,
    listed: &[String],
) -> Result<Membership, String> {
    let role = |i: usize| {
        if i < managers {
            Role::Manager
        } else {
            Role::Worker
        }
    };
    let mut refusals = Vec::new();
    for host in hosts {
        match &host.local {
            Local::Error(said) => refusals.push(format!(
                "{}: its swarm state is `error` ({said}); make it leave (`docker swarm leave \
                 --force` there) and run setup again",
                host.target
            )),
            Local::Locked => refusals.push(format!(
                "{}: its swarm is locked (autolock); unlock it with `docker swarm unlock` there",
                host.target
            )),
            Local::Pending => refusals.push(format!(
                "{}: it is still joining a swarm; run setup again in a moment",
                host.target
            )),
            Local::Inactive | Local::Active { .. } => {}
        }
    }
    if !refusals.is_empty() {
        return Err(format!(
            "setup cannot use these hosts as they are:\n  - {}\nNothing was changed.",
            refusals.join("\n  - ")
        ));
    }
    let joins = |init: Option<usize>| {
        hosts
            .iter()
            .enumerate()
            .filter(|(i, h)| h.local == Local::Inactive && Some(*i) != init)
            .map(|(i, _)| (i, role(i)))
            .collect()
    };
    let active: Vec<(usize, &HostView)> = hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| matches!(h.local, Local::Active { .. }))
        .collect();
    if active.is_empty() {
        return Ok(Membership {
            init: Some(0),
            anchor: 0,
            joins: joins(Some(0)),
        });
    }
    let Some(anchor) = hosts
        .iter()
        .position(|h| matches!(h.local, Local::Active { manager: true, .. }))
    else {
        let workers: Vec<&str> = active.iter().map(|(_, h)| h.target.as_str()).collect();
        return Err(format!(
            "{} {} of a swarm none of whose managers is in deploy.swarm.hosts: list a manager \
             of that swarm first, or make {} leave it (`docker swarm leave` there). Nothing was \
             changed.",
            workers.join(", "),
            if workers.len() == 1 {
                "is a worker"
            } else {
                "are workers"
            },
            if workers.len() == 1 { "it" } else { "them" },
        ));
    };
    // Which swarm each active host is in: a manager knows its swarm's ID;
    // a worker is in the anchor's swarm if the anchor lists it.
    let anchor_cluster = match &hosts[anchor].local {
        Local::Active { cluster, .. } => cluster.clone(),
        _ => None,
    };
    let mut elsewhere = Vec::new();
    for (_, host) in &active {
        if let Local::Active {
            cluster,
            node_id,
            manager,
        } = &host.local
        {
            let same = if *manager {
                *cluster == anchor_cluster
            } else {
                listed.contains(node_id)
            };
            if !same {
                elsewhere.push(match cluster {
                    Some(id) => format!("{} (swarm {})", host.target, short(id)),
                    None => host.target.clone(),
                });
            }
        }
    }
    if !elsewhere.is_empty() {
        return Err(format!(
            "the hosts are in different swarms: {} {} in another swarm than {}. Setup does not \
             move a host from one swarm to another (leaving can break the swarm it leaves): \
             make them one swarm by hand, or list only one swarm's hosts in \
             deploy.swarm.hosts. Nothing was changed.",
            elsewhere.join(", "),
            if elsewhere.len() == 1 { "is" } else { "are" },
            hosts[anchor].target,
        ));
    }
    Ok(Membership {
        init: None,
        anchor,
        joins: joins(None),
    })
}

/// The first 12 characters of an ID, as `docker` prints them.
pub(crate) fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// A node as the swarm's managers list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeView {
    pub id: String,
    /// `Version.Index`, for updates.
    pub version: u64,
    pub hostname: String,
    /// The address the managers see it at.
    pub addr: String,
    pub role: Role,
    /// `ready`, `down`, ...
    pub state: String,
    /// What the managers say of its state, if anything.
    pub message: String,
    /// `active`, `pause`, `drain`.
    pub availability: String,
    pub labels: HashMap<String, String>,
    pub leader: bool,
}

/// One configured host in the swarm: its index in deploy.swarm.hosts and
/// how its own daemon names its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub index: usize,
    pub node_id: String,
    pub hostname: String,
    pub addr: String,
}

/// What setup changes about the swarm's node records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NodeChanges {
    /// (node ID, role it gets): promotions first, so the swarm never has
    /// fewer managers on the way.
    pub roles: Vec<(String, Role)>,
    /// Records the hosts left behind when they last left the swarm
    /// (same hostname and address as a member, another ID): removed.
    pub stale: Vec<NodeView>,
    /// Nodes that are none of the hosts: left alone, and said.
    pub others: Vec<NodeView>,
}

pub(crate) fn node_changes(nodes: &[NodeView], members: &[Member], managers: usize) -> NodeChanges {
    let mut changes = NodeChanges::default();
    let mut demotions = Vec::new();
    for member in members {
        let want = if member.index < managers {
            Role::Manager
        } else {
            Role::Worker
        };
        if let Some(node) = nodes.iter().find(|n| n.id == member.node_id)
            && node.role != want
        {
            match want {
                Role::Manager => changes.roles.push((node.id.clone(), want)),
                Role::Worker => demotions.push((node.id.clone(), want)),
            }
        }
    }
    changes.roles.extend(demotions);
    for node in nodes {
        if members.iter().any(|m| m.node_id == node.id) {
            continue;
        }
        let left_behind = members
            .iter()
            .any(|m| m.hostname == node.hostname && m.addr == node.addr);
        if left_behind {
            changes.stale.push(node.clone());
        } else {
            changes.others.push(node.clone());
        }
    }
    changes
}

/// Whether the data node still needs the data label, or why setup must
/// not put it there: another node carries it, so the data would be looked
/// for in the wrong place.
/// `is_data` tells the data host's records (its node, and one it left
/// behind before it joined again).
pub(crate) fn data_label(
    nodes: &[NodeView],
    is_data: impl Fn(&NodeView) -> bool,
    data_host: &str,
    key: &str,
) -> Result<bool, String> {
    let elsewhere: Vec<&NodeView> = nodes
        .iter()
        .filter(|n| !is_data(n) && n.labels.contains_key(key))
        .collect();
    if let Some(other) = elsewhere.first() {
        return Err(format!(
            "the data label {key} is on node {} ({}, {}), but pipeline.yaml names {data_host} as \
             the data host. Setup does not move the data: copy the data file to {data_host} \
             first, then remove the old label (`docker node update --label-rm {key} {}` on a \
             manager) and run setup again. Nothing was changed.",
            other.hostname,
            other.addr,
            short(&other.id),
            short(&other.id),
        ));
    }
    Ok(!nodes
        .iter()
        .any(|n| is_data(n) && n.labels.get(key).is_some_and(|v| v == "true")))
}

/// The node label that marks the host keeping `project`'s data.
pub(crate) fn data_label_key(project: &str) -> String {
    format!("{project}.data")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(target: &str, local: Local) -> HostView {
        HostView {
            target: target.into(),
            local,
        }
    }

    fn active(cluster: &str, node: &str, manager: bool) -> Local {
        Local::Active {
            cluster: manager.then(|| cluster.into()),
            node_id: node.into(),
            manager,
        }
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn fresh_hosts_make_a_swarm_on_the_first_and_join_the_rest_by_role() {
        let hosts = [
            host("a", Local::Inactive),
            host("b", Local::Inactive),
            host("c", Local::Inactive),
        ];
        assert_eq!(
            membership(&hosts, 2, &[]).unwrap(),
            Membership {
                init: Some(0),
                anchor: 0,
                joins: vec![(1, Role::Manager), (2, Role::Worker)],
            }
        );
    }

    #[test]
    fn a_ready_swarm_needs_nothing_and_a_host_that_left_joins_again() {
        let ready = [
            host("a", active("c1", "n1", true)),
            host("b", active("c1", "n2", false)),
            host("c", active("c1", "n3", false)),
        ];
        let plan = membership(&ready, 1, &ids(&["n1", "n2", "n3"])).unwrap();
        assert_eq!((plan.init, plan.anchor), (None, 0));
        assert!(plan.joins.is_empty());

        let left = [
            host("a", Local::Inactive),
            host("b", active("c1", "n2", true)),
            host("c", Local::Inactive),
        ];
        let plan = membership(&left, 2, &ids(&["n1", "n2", "n3"])).unwrap();
        assert_eq!((plan.init, plan.anchor), (None, 1));
        assert_eq!(plan.joins, vec![(0, Role::Manager), (2, Role::Worker)]);
    }

    #[test]
    fn hosts_of_two_swarms_or_broken_ones_are_refused() {
        let two = [
            host("a", active("cluster-one-id", "n1", true)),
            host("b", active("cluster-two-id", "n2", true)),
        ];
        let error = membership(&two, 1, &ids(&["n1"])).unwrap_err();
        assert!(
            error.contains("b (swarm cluster-two-) is in another swarm than a"),
            "{error}"
        );
        assert!(error.ends_with("Nothing was changed."), "{error}");
        // A worker the first manager does not list is in another swarm.
        let worker_elsewhere = [
            host("a", active("c1", "n1", true)),
            host("b", active("c2", "n2", false)),
        ];
        let error = membership(&worker_elsewhere, 1, &ids(&["n1"])).unwrap_err();
        assert!(error.contains("b is in another swarm than a"), "{error}");

        let broken = [
            host("a", Local::Error("raft: boom".into())),
            host("b", Local::Locked),
        ];
        let error = membership(&broken, 1, &[]).unwrap_err();
        assert!(
            error.contains("a: its swarm state is `error` (raft: boom)"),
            "{error}"
        );
        assert!(error.contains("b: its swarm is locked"), "{error}");

        let workers_only = [
            host("a", Local::Inactive),
            host("b", active("c", "n", false)),
        ];
        let error = membership(&workers_only, 1, &[]).unwrap_err();
        assert!(
            error.contains("b is a worker of a swarm none of whose"),
            "{error}"
        );
    }

    fn node(id: &str, hostname: &str, role: Role) -> NodeView {
        NodeView {
            id: id.into(),
            version: 1,
            hostname: hostname.into(),
            addr: format!("10.0.0.{}", hostname.len()),
            role,
            state: "ready".into(),
            message: String::new(),
            availability: "active".into(),
            labels: HashMap::new(),
            leader: false,
        }
    }

    fn member(index: usize, id: &str, hostname: &str) -> Member {
        Member {
            index,
            node_id: id.into(),
            hostname: hostname.into(),
            addr: format!("10.0.0.{}", hostname.len()),
        }
    }

    #[test]
    fn roles_follow_the_file_promotions_first_and_old_records_are_found() {
        let nodes = [
            node("n1", "a", Role::Manager),
            node("n2", "bb", Role::Manager),
            node("n3", "ccc", Role::Worker),
            node("old3", "ccc", Role::Worker),
            node("x", "stranger-host", Role::Worker),
        ];
        let members = [
            member(0, "n1", "a"),
            member(1, "n2", "bb"),
            member(2, "n3", "ccc"),
        ];
        let changes = node_changes(&nodes, &members, 1);
        assert_eq!(changes.roles, vec![("n2".to_owned(), Role::Worker)]);
        assert_eq!(changes.stale.len(), 1);
        assert_eq!(changes.stale[0].id, "old3");
        assert_eq!(changes.others[0].id, "x");

        let changes = node_changes(&nodes, &members, 3);
        assert_eq!(changes.roles, vec![("n3".to_owned(), Role::Manager)]);
        assert_eq!(
            node_changes(&nodes[..3], &members, 2),
            NodeChanges::default()
        );
    }

    #[test]
    fn the_data_label_goes_on_the_data_node_only() {
        let key = data_label_key("student-ages");
        assert_eq!(key, "student-ages.data");
        let mut nodes = vec![
            node("n1", "a", Role::Manager),
            node("n2", "bb", Role::Worker),
        ];
        let is = |id: &'static str| move |n: &NodeView| n.id == id;
        assert_eq!(data_label(&nodes, is("n2"), "b", &key), Ok(true));
        nodes[1].labels.insert(key.clone(), "true".into());
        assert_eq!(data_label(&nodes, is("n2"), "b", &key), Ok(false));
        let error = data_label(&nodes, is("n1"), "a", &key).unwrap_err();
        assert!(error.contains("is on node bb"), "{error}");
        assert!(error.contains("--label-rm student-ages.data n2"), "{error}");
    }
}
