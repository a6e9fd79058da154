//! Putting the planned services on the swarm and watching them get there:
//! the only code that creates, updates or rolls back the stack's swarm
//! services.
//!
//! A service whose config hash is unchanged is left alone; a new one is
//! created, a changed one updated (its spec at the version read, so two
//! deploys cannot interleave). Then the deploy watches, as a person at
//! `docker service ps` would, and prints a line per change:
//! - done is the update `completed` **and** no task of the old spec still
//!   running (the swarm says `completed` while old tasks still stop), and as
//!   many tasks of the new spec running as the service wants;
//! - a task that waits for a node it can never get (`host-mode port
//!   already in use`, or no suitable node for long) fails the deploy
//!   instead of hanging: an update stuck so is rolled back;
//! - an update the swarm rolled back (a task failed or turned unhealthy,
//!   `failure_action: rollback`) or paused fails the deploy with the failed
//!   task's node, error and last log lines;
//! - a new service whose tasks keep failing fails too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{ServiceUpdateStatusStateEnum as UpdateState, Task, TaskState};
use bollard::query_parameters::{
    ListContainersOptions, ListServicesOptions, ListTasksOptions, UpdateServiceOptions,
};

use super::Node;
use super::spec::{HASH_LABEL, Planned};
use crate::docker::{is_not_found, message};
use crate::progress::{Progress, Task as Line};

/// How long one service may take to converge.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a task may wait for a node before the deploy says it never
/// gets one (a port in use is said at once).
const UNPLACEABLE_AFTER: Duration = Duration::from_secs(15);
/// New tasks of a new service that fail before the deploy gives up.
const FAILURES_OF_A_NEW_SERVICE: usize = 3;
const POLL: Duration = Duration::from_millis(300);
/// How long every edge gets to route to a converged service's tasks.
const EDGE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the deploy did to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Created,
    Updated,
    Unchanged,
}

/// The swarm as the deploy drives it: a manager's API, and every node's
/// daemon for the logs of the tasks it runs.
pub(crate) struct Cluster<'a> {
    pub manager: &'a Docker,
    pub nodes: &'a [Node],
    /// Each node's swarm node ID, as its own daemon says (index-aligned).
    pub node_ids: Vec<String>,
    /// Swarm node ID → hostname, for people.
    pub hostnames: HashMap<String, String>,
    pub credentials: Option<DockerCredentials>,
    pub progress: &'a Progress,
}

impl Cluster<'_> {
    /// Reads who is who: each node's ID and every node's hostname.
    pub(crate) async fn new<'a>(
        manager: &'a Docker,
        nodes: &'a [Node],
        credentials: Option<DockerCredentials>,
        progress: &'a Progress,
    ) -> anyhow::Result<Cluster<'a>> {
        let mut node_ids = Vec::new();
        for node in nodes {
            let info =
                node.docker.info().await.map_err(|e| {
                    anyhow!("cannot read {}'s Docker: {}", node.target, message(&e))
                })?;
            node_ids.push(info.swarm.and_then(|s| s.node_id).unwrap_or_default());
        }
        let hostnames = manager
            .list_nodes(None)
            .await
            .map_err(|e| anyhow!("cannot list the swarm's nodes: {}", message(&e)))?
            .into_iter()
            .map(|n| {
                (
                    n.id.unwrap_or_default(),
                    n.description.and_then(|d| d.hostname).unwrap_or_default(),
                )
            })
            .collect();
        Ok(Cluster {
            manager,
            nodes,
            node_ids,
            hostnames,
            credentials,
            progress,
        })
    }

    fn hostname(&self, node_id: &str) -> String {
        self.hostnames
            .get(node_id)
            .filter(|h| !h.is_empty())
            .cloned()
            .unwrap_or_else(|| node_id.chars().take(12).collect())
    }

    /// Creates or updates the service, then watches it converge.
    pub(crate) async fn apply(&self, planned: &Planned) -> anyhow::Result<Change> {
        let line = self.progress.task(&planned.service, "checking");
        let change = match self.manager.inspect_service(&planned.name, None).await {
            Err(e) if is_not_found(&e) => {
                self.manager
                    .create_service(planned.spec.clone(), self.credentials.clone())
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "cannot create the service {}: {}",
                            planned.name,
                            message(&e)
                        )
                    })?;
                line.set("created; waiting for its tasks");
                Change::Created
            }
            Err(e) => bail!(
                "cannot inspect the service {}: {}",
                planned.name,
                message(&e)
            ),
            Ok(service) => {
                let current = service
                    .spec
                    .as_ref()
                    .and_then(|s| s.labels.as_ref())
                    .and_then(|l| l.get(HASH_LABEL));
                if current == Some(&planned.hash) {
                    line.set("unchanged; checking its tasks");
                    Change::Unchanged
                } else {
                    let version = service.version.and_then(|v| v.index).unwrap_or(0);
                    self.manager
                        .update_service(
                            &planned.name,
                            planned.spec.clone(),
                            UpdateServiceOptions {
                                version: version as i32,
                                registry_auth_from: "spec".into(),
                                rollback: None,
                            },
                            self.credentials.clone(),
                        )
                        .await
                        .map_err(|e| {
                            anyhow!(
                                "cannot update the service {}: {}",
                                planned.name,
                                message(&e)
                            )
                        })?;
                    line.set("updating");
                    Change::Updated
                }
            }
        };
        match self.watch(planned, change, &line).await {
            Ok(summary) => {
                line.done(&match change {
                    Change::Created => format!("created: {summary}"),
                    Change::Updated => format!("updated: {summary}"),
                    Change::Unchanged => format!("unchanged: {summary}"),
                });
                Ok(change)
            }
            Err(error) => {
                line.fail("failed");
                Err(error)
            }
        }
    }

    /// Until the service runs its planned spec everywhere it should, or
    /// fails; a one-line summary of where it runs.
    async fn watch(
        &self,
        planned: &Planned,
        change: Change,
        line: &Line,
    ) -> anyhow::Result<String> {
        let started = Instant::now();
        let mut seen_updating = false;
        let mut waiting_since: Option<Instant> = None;
        loop {
            let service = self
                .manager
                .inspect_service(&planned.name, None)
                .await
                .map_err(|e| {
                    anyhow!(
                        "cannot inspect the service {}: {}",
                        planned.name,
                        message(&e)
                    )
                })?;
            let status = service.update_status.clone().unwrap_or_default();
            let state = status.state;
            seen_updating |= state == Some(UpdateState::UPDATING);
            let spec_hash = service
                .spec
                .as_ref()
                .and_then(|s| s.labels.as_ref())
                .and_then(|l| l.get(HASH_LABEL))
                .cloned();
            let tasks = self.tasks(&planned.name).await?;
            let desired = self.desired(planned).await?;
            let view = View::of(&tasks, &planned.hash);
            line.set(&view.line(desired, state, |id| self.hostname(id)));

            // The swarm gave up the new spec: rolled back (the spec is the
            // previous one again) or paused.
            let rolled_back =
                change == Change::Updated && spec_hash.as_deref() != Some(&planned.hash);
            let paused = change == Change::Updated
                && state == Some(UpdateState::PAUSED)
                && (seen_updating || started.elapsed() > Duration::from_secs(5));
            if rolled_back || paused {
                if rolled_back
                    && state == Some(UpdateState::ROLLBACK_STARTED)
                    && started.elapsed() < CONVERGE_TIMEOUT
                {
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                let what = if rolled_back {
                    match state {
                        Some(UpdateState::ROLLBACK_COMPLETED) => "the swarm rolled it back",
                        Some(UpdateState::ROLLBACK_PAUSED) => {
                            "the swarm began rolling it back, and the rollback paused"
                        }
                        _ => "its spec was changed back",
                    }
                } else {
                    "the swarm paused it"
                };
                let said = status.message.clone().unwrap_or_default();
                bail!(
                    "the update of {} failed and {what}{}.{}",
                    planned.service,
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!(" ({said})")
                    },
                    self.failed_task_report(&view, planned).await
                );
            }

            // A task that never gets a node.
            if let Some(task) = view.waiting_for_a_node(&tasks) {
                let since = *waiting_since.get_or_insert_with(Instant::now);
                let err = task
                    .status
                    .as_ref()
                    .and_then(|s| s.err.clone())
                    .unwrap_or_default();
                if err.contains("host-mode port already in use")
                    || since.elapsed() > UNPLACEABLE_AFTER
                {
                    let undone = if change == Change::Updated {
                        self.rollback(&planned.name).await;
                        " The update was rolled back."
                    } else {
                        ""
                    };
                    bail!(
                        "a task of {} can never be placed: {err}. A task that publishes a port \
                         needs a node where the port is free (an update of such a service must \
                         be stop-first, or find a spare node).{undone}",
                        planned.service
                    );
                }
            } else {
                waiting_since = None;
            }

            let settled = match change {
                Change::Updated => state == Some(UpdateState::COMPLETED),
                Change::Created | Change::Unchanged => true,
            };
            if settled && view.running_new >= desired && view.running_old == 0 {
                return Ok(view.summary(desired, |id| self.hostname(id)));
            }
            if change == Change::Created && view.failed_new.len() >= FAILURES_OF_A_NEW_SERVICE {
                bail!(
                    "{} does not start: {} of its tasks failed.{}",
                    planned.service,
                    view.failed_new.len(),
                    self.failed_task_report(&view, planned).await
                );
            }
            if started.elapsed() > CONVERGE_TIMEOUT {
                bail!(
                    "{} did not converge within {} s: {}.{}",
                    planned.service,
                    CONVERGE_TIMEOUT.as_secs(),
                    view.line(desired, state, |id| self.hostname(id)),
                    self.failed_task_report(&view, planned).await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the edge on every node routes to exactly the running
    /// tasks of each `(service, tasks)` (as many targets, all healthy): it
    /// finds them by DNS every second and checks each before it gets a
    /// request, so a converged service is not yet a served one. Edges not
    /// running yet (the first deploy, before the edge) are not waited on.
    pub(crate) async fn wait_for_edges(
        &self,
        edge: &str,
        services: &[(String, usize)],
    ) -> anyhow::Result<()> {
        if services.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + EDGE_TIMEOUT;
        for node in self.nodes {
            let containers = node
                .docker
                .list_containers(Some(ListContainersOptions {
                    filters: Some(HashMap::from([(
                        "label".to_owned(),
                        vec![format!("com.docker.swarm.service.name={edge}")],
                    )])),
                    ..Default::default()
                }))
                .await
                .map_err(|e| {
                    anyhow!("cannot list {}'s containers: {}", node.target, message(&e))
                })?;
            for id in containers.into_iter().filter_map(|c| c.id) {
                loop {
                    let seen = crate::edge_ctl::status(&node.docker, &id).await;
                    let short: Vec<String> = match &seen {
                        Ok(status) => services
                            .iter()
                            .filter_map(|(service, tasks)| {
                                let targets =
                                    status.services.get(service).cloned().unwrap_or_default();
                                let healthy =
                                    targets.iter().filter(|t| t.health == "healthy").count();
                                (targets.len() != *tasks || healthy != *tasks).then(|| {
                                    format!(
                                        "{service}: {healthy} healthy of {} targets, {tasks} tasks",
                                        targets.len()
                                    )
                                })
                            })
                            .collect(),
                        Err(e) => vec![format!("{e:#}")],
                    };
                    if short.is_empty() {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!(
                            "the edge on {} does not route to the services' tasks within {} s: {}",
                            node.target,
                            EDGE_TIMEOUT.as_secs(),
                            short.join("; ")
                        );
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        Ok(())
    }

    /// The service's tasks the swarm still lists.
    pub(crate) async fn tasks(&self, name: &str) -> anyhow::Result<Vec<Task>> {
        self.manager
            .list_tasks(Some(ListTasksOptions {
                filters: Some(HashMap::from([(
                    "service".to_owned(),
                    vec![name.to_owned()],
                )])),
            }))
            .await
            .map_err(|e| anyhow!("cannot list the tasks of {name}: {}", message(&e)))
    }

    /// How many tasks the swarm wants running (for a global service, one
    /// per eligible node).
    async fn desired(&self, planned: &Planned) -> anyhow::Result<usize> {
        if let Some(n) = planned.replicas {
            return Ok(n as usize);
        }
        let listed = self
            .manager
            .list_services(Some(ListServicesOptions {
                filters: Some(HashMap::from([(
                    "name".to_owned(),
                    vec![planned.name.clone()],
                )])),
                status: Some(true),
            }))
            .await
            .map_err(|e| anyhow!("cannot list the service {}: {}", planned.name, message(&e)))?;
        Ok(listed
            .into_iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(&planned.name))
            .and_then(|s| s.service_status)
            .and_then(|s| s.desired_tasks)
            // Zero only until the swarm has counted the nodes.
            .map_or(1, |n| (n as usize).max(1)))
    }

    /// The failed task of the new spec seen last: its node, error and log.
    ///
    /// The newest failed task whose container is still on its node is the
    /// one told; a rollback may already have shut down (and the daemon
    /// removed) the container of the one seen last, so the others are tried,
    /// and then any stopped container of the new spec on any node.
    async fn failed_task_report(&self, view: &View<'_>, planned: &Planned) -> String {
        let candidates: Vec<&Task> = view
            .failed_new
            .iter()
            .rev()
            .chain(view.ended_new.iter().rev())
            .copied()
            .collect();
        let Some(&first) = candidates.first() else {
            return String::new();
        };
        // One that printed something tells most: a task shut down while
        // it started (by the rollback) may have printed nothing.
        let mut silent = None;
        for &task in &candidates {
            if let Some(found) = self.container_of(task).await {
                if self.printed(&found).await {
                    return self.describe(task, Some(found)).await;
                }
                silent.get_or_insert((task, found));
            }
        }
        let stopped = self
            .stopped_container_of(&planned.name, &planned.hash)
            .await;
        match (stopped, silent) {
            (Some(found), _) if self.printed(&found).await => {
                self.describe(first, Some(found)).await
            }
            (_, Some((task, found))) => self.describe(task, Some(found)).await,
            (stopped, None) => self.describe(first, stopped).await,
        }
    }

    /// Whether the container (node index, ID) logged anything.
    async fn printed(&self, (i, container): &(usize, String)) -> bool {
        !crate::docker::last_logs(&self.nodes[*i].docker, container, 1)
            .await
            .trim()
            .is_empty()
    }

    /// The node (index) and container of a task, if the container is still
    /// there to read.
    async fn container_of(&self, task: &Task) -> Option<(usize, String)> {
        let node_id = task.node_id.as_deref()?;
        let i = self.node_ids.iter().position(|n| n == node_id)?;
        let container = task
            .status
            .as_ref()?
            .container_status
            .as_ref()?
            .container_id
            .clone()
            .filter(|c| !c.is_empty())?;
        self.nodes[i]
            .docker
            .inspect_container(&container, None)
            .await
            .ok()
            .map(|_| (i, container))
    }

    /// A stopped container of the service's new spec on any node, the one
    /// that stopped last.
    async fn stopped_container_of(&self, service: &str, hash: &str) -> Option<(usize, String)> {
        let mut best: Option<(i64, usize, String)> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            let Ok(listed) = node
                .docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    filters: Some(HashMap::from([
                        (
                            "label".to_owned(),
                            vec![
                                format!("com.docker.swarm.service.name={service}"),
                                format!("{HASH_LABEL}={hash}"),
                            ],
                        ),
                        ("status".to_owned(), vec!["exited".to_owned()]),
                    ])),
                    ..Default::default()
                }))
                .await
            else {
                continue;
            };
            for c in listed {
                let (Some(id), created) = (c.id, c.created.unwrap_or(0)) else {
                    continue;
                };
                if best.as_ref().is_none_or(|(t, _, _)| created > *t) {
                    best = Some((created, i, id));
                }
            }
        }
        best.map(|(_, i, id)| (i, id))
    }

    /// What a failed task says: its node, state and error, and, when its
    /// container is there, its health and last log lines.
    async fn describe(&self, task: &Task, container: Option<(usize, String)>) -> String {
        let node_id = task.node_id.clone().unwrap_or_default();
        let status = task.status.clone().unwrap_or_default();
        let state = status.state.map(|s| s.to_string()).unwrap_or_default();
        let err = status.err.unwrap_or_default();
        let id: String = task
            .id
            .clone()
            .unwrap_or_default()
            .chars()
            .take(12)
            .collect();
        let mut report = format!(
            "\nThe task {id} on node {} ended {state}{}",
            self.hostname(&node_id),
            if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            }
        );
        let Some((i, container)) = container else {
            report.push_str("\nIts container is not there to read its log.");
            return report;
        };
        if self.node_ids.get(i).map(String::as_str) != Some(node_id.as_str())
            || status
                .container_status
                .and_then(|c| c.container_id)
                .as_deref()
                != Some(container.as_str())
        {
            let short: String = container.chars().take(12).collect();
            report.push_str(&format!(
                "\nIts container is gone; a stopped container of the same spec, {short} on node {}, says:",
                self.hostname(self.node_ids.get(i).map_or("", String::as_str))
            ));
        }
        // Its health as the daemon last saw it (a stopped container keeps
        // it): why the swarm gave up on it.
        let health = self.nodes[i]
            .docker
            .inspect_container(&container, None)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.health);
        if let Some(health) = health
            && health.status == Some(bollard::models::HealthStatusEnum::UNHEALTHY)
        {
            let said = health
                .log
                .and_then(|l| l.last().cloned())
                .and_then(|r| r.output)
                .map(|o| o.trim().to_owned())
                .unwrap_or_default();
            report.push_str(&format!(
                "\nIts container turned unhealthy; the last healthcheck said: {said}"
            ));
        }
        let logs = crate::docker::last_logs(&self.nodes[i].docker, &container, 20).await;
        if logs.trim().is_empty() {
            report.push_str("\nIt printed nothing.");
        } else {
            report.push_str(&format!("\nIts last log lines:\n{logs}"));
        }
        report
    }

    /// Asks the swarm to put the service's previous spec back, and waits
    /// (bounded) until it has; best effort, as a deploy is failing.
    pub(crate) async fn rollback(&self, name: &str) {
        let Ok(service) = self.manager.inspect_service(name, None).await else {
            return;
        };
        let version = service.version.and_then(|v| v.index).unwrap_or(0);
        let asked = self
            .manager
            .update_service(
                name,
                service.spec.clone().unwrap_or_default(),
                UpdateServiceOptions {
                    version: version as i32,
                    registry_auth_from: "spec".into(),
                    rollback: Some("previous".into()),
                },
                self.credentials.clone(),
            )
            .await;
        if let Err(e) = asked {
            self.progress
                .println(&format!("cannot roll {name} back: {}", message(&e)));
            return;
        }
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        while Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
            let state = self
                .manager
                .inspect_service(name, None)
                .await
                .ok()
                .and_then(|s| s.update_status)
                .and_then(|u| u.state);
            if matches!(
                state,
                Some(UpdateState::ROLLBACK_COMPLETED | UpdateState::ROLLBACK_PAUSED)
            ) {
                return;
            }
        }
    }
}

/// The tasks of one service, sorted out.
struct View<'t> {
    /// Tasks of the planned spec running, and meant to.
    running_new: usize,
    /// Tasks of another spec still running (told to stop or not).
    running_old: usize,
    /// Where the tasks of the planned spec are: (node ID, state).
    new_tasks: Vec<(String, String)>,
    /// Tasks of the planned spec that failed or were rejected, oldest first.
    failed_new: Vec<&'t Task>,
    /// Tasks of the planned spec that stopped for any reason (a rollback
    /// shuts down an unhealthy one), oldest first.
    ended_new: Vec<&'t Task>,
}

impl<'t> View<'t> {
    fn of(tasks: &'t [Task], hash: &str) -> View<'t> {
        let is_new = |t: &Task| {
            t.spec
                .as_ref()
                .and_then(|s| s.container_spec.as_ref())
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(HASH_LABEL))
                .map(String::as_str)
                == Some(hash)
        };
        let state = |t: &Task| t.status.as_ref().and_then(|s| s.state);
        let wanted = |t: &Task| t.desired_state == Some(TaskState::RUNNING);
        let mut failed_new: Vec<&Task> = tasks
            .iter()
            .filter(|t| {
                is_new(t) && matches!(state(t), Some(TaskState::FAILED | TaskState::REJECTED))
            })
            .collect();
        failed_new.sort_by_key(|t| t.updated_at.as_ref().map(|d| d.to_string()));
        let mut ended_new: Vec<&Task> = tasks
            .iter()
            .filter(|t| {
                is_new(t)
                    && !matches!(
                        state(t),
                        None | Some(TaskState::RUNNING | TaskState::FAILED | TaskState::REJECTED)
                    )
                    && !wanted(t)
            })
            .collect();
        ended_new.sort_by_key(|t| t.updated_at.as_ref().map(|d| d.to_string()));
        View {
            running_new: tasks
                .iter()
                .filter(|t| is_new(t) && wanted(t) && state(t) == Some(TaskState::RUNNING))
                .count(),
            running_old: tasks
                .iter()
                .filter(|t| !is_new(t) && state(t) == Some(TaskState::RUNNING))
                .count(),
            new_tasks: tasks
                .iter()
                .filter(|t| is_new(t) && wanted(t))
                .map(|t| {
                    (
                        t.node_id.clone().unwrap_or_default(),
                        state(t).map_or_else(|| "new".to_owned(), |s| s.to_string()),
                    )
                })
                .collect(),
            failed_new,
            ended_new,
        }
    }

    /// A task meant to run that the scheduler finds no node for.
    fn waiting_for_a_node<'a>(&self, tasks: &'a [Task]) -> Option<&'a Task> {
        tasks.iter().find(|t| {
            t.desired_state == Some(TaskState::RUNNING)
                && t.status.as_ref().and_then(|s| s.state) == Some(TaskState::PENDING)
                && t.status
                    .as_ref()
                    .and_then(|s| s.err.as_deref())
                    .is_some_and(|e| e.contains("no suitable node"))
        })
    }

    fn line(
        &self,
        desired: usize,
        state: Option<UpdateState>,
        host: impl Fn(&str) -> String,
    ) -> String {
        let mut places: Vec<String> = self
            .new_tasks
            .iter()
            .map(|(node, state)| {
                format!(
                    "{} {state}",
                    if node.is_empty() {
                        "-".into()
                    } else {
                        host(node)
                    }
                )
            })
            .collect();
        places.sort();
        let state = match state {
            Some(s) if s != UpdateState::EMPTY => format!(", update {s}"),
            _ => String::new(),
        };
        format!(
            "{}/{desired} new tasks running, {} old still running{state} [{}]",
            self.running_new,
            self.running_old,
            places.join(", ")
        )
    }

    fn summary(&self, desired: usize, host: impl Fn(&str) -> String) -> String {
        let mut nodes: Vec<String> = self.new_tasks.iter().map(|(n, _)| host(n)).collect();
        nodes.sort();
        format!("{desired} running on {}", nodes.join(", "))
    }
}

/// Removes the project's services that `keep` does not name: those the
/// compose file no longer has. Returns their names.
pub(crate) async fn remove_orphans(
    manager: &Docker,
    project: &str,
    keep: &[&str],
    progress: &Progress,
) -> anyhow::Result<Vec<String>> {
    let listed = manager
        .list_services(Some(ListServicesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{}={project}", crate::stack::labels::PROJECT)],
            )])),
            status: None,
        }))
        .await
        .map_err(|e| anyhow!("cannot list the stack's services: {}", message(&e)))?;
    let mut removed = Vec::new();
    for name in listed
        .into_iter()
        .filter_map(|s| s.spec.and_then(|s| s.name))
        .filter(|name| !keep.contains(&name.as_str()))
    {
        match manager.delete_service(&name).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => bail!("cannot remove the service {name}: {}", message(&e)),
        }
        progress.println(&format!("{name}: removed (no longer in the compose file)"));
        removed.push(name);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{TaskSpec, TaskSpecContainerSpec, TaskStatus};

    fn task(hash: &str, node: &str, state: TaskState, desired: TaskState, err: &str) -> Task {
        Task {
            node_id: Some(node.into()),
            desired_state: Some(desired),
            status: Some(TaskStatus {
                state: Some(state),
                err: (!err.is_empty()).then(|| err.into()),
                ..Default::default()
            }),
            spec: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    labels: Some(HashMap::from([(HASH_LABEL.to_owned(), hash.to_owned())])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn old_tasks_still_running_keep_an_update_from_being_done() {
        use TaskState::*;
        let tasks = [
            task("new", "n1", RUNNING, RUNNING, ""),
            task("new", "n2", RUNNING, RUNNING, ""),
            // Told to stop, not stopped yet: the swarm already says
            // `completed`.
            task("old", "n3", RUNNING, SHUTDOWN, ""),
            task("old", "n1", SHUTDOWN, SHUTDOWN, ""),
        ];
        let view = View::of(&tasks, "new");
        assert_eq!((view.running_new, view.running_old), (2, 1));
        assert!(view.waiting_for_a_node(&tasks).is_none());
        assert_eq!(
            view.line(2, Some(UpdateState::COMPLETED), |n| n.to_uppercase()),
            "2/2 new tasks running, 1 old still running, update completed [N1 running, N2 running]"
        );
    }

    #[test]
    fn a_task_that_cannot_be_placed_and_a_failed_one_are_found() {
        use TaskState::*;
        let port = "no suitable node (host-mode port already in use on 1 node)";
        let tasks = [
            task("new", "", PENDING, RUNNING, port),
            task("new", "n2", FAILED, SHUTDOWN, "task: non-zero exit (1)"),
            task("new", "n3", COMPLETE, SHUTDOWN, ""),
            task("old", "n1", RUNNING, RUNNING, ""),
        ];
        let view = View::of(&tasks, "new");
        let waiting = view.waiting_for_a_node(&tasks).unwrap();
        assert_eq!(waiting.status.as_ref().unwrap().err.as_deref(), Some(port));
        assert_eq!(view.failed_new.len(), 1);
        assert_eq!(view.ended_new.len(), 1);
        assert_eq!((view.running_new, view.running_old), (0, 1));
    }
}
