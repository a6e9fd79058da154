//! `deployer deploy` (and `rollback`) to a swarm, step by step:
//!
//! 1. connect to every host and check the swarm is ready (what `setup
//!    --check` checks), refusing before anything changes;
//! 2. take the deploy lock on the first manager (`~/student-ages/`, as on
//!    one host) and, however the deploy ends, leave one audit line there (a
//!    rollback reads there which version to put back: the one below the
//!    running one, as on one host);
//! 3. put the release's images where the tasks run: with a registry, the
//!    first manager pulls them (to pin each to its digest) and every node
//!    pulls at task start with the credentials sent in the API request
//!    (`X-Registry-Auth`); without one, each image is copied from this
//!    machine's Docker into every node that lacks it;
//! 4. create and seed the data volume on the data host;
//! 5. create or update the services in dependency order, each watched
//!    until it converges (`apply`);
//! 6. run the read-only acceptance checks through the data host's edge.
//!
//! A failed service or check rolls back the services this deploy updated
//! before it (the failed one the swarm rolls back itself), and the command
//! exits 1 saying what failed, where, with its logs. Ctrl-C or SIGTERM
//! stops the deploy where it is (the swarm finishes an update under way);
//! either way the lock is released and the attempt recorded.

use std::collections::HashMap;

use anyhow::{Context, anyhow, bail};

use super::apply::{Change, Cluster};
use super::spec::{self, Planned};
use super::{Node, close_all, connect_all};
use crate::config::pipeline::SwarmSettings;
use crate::engine::Engine;
use crate::host::{AuditAction, AuditEntry, AuditResult, HostDir, rollback_target};
use crate::images;
use crate::progress::Progress;
use crate::registry::Registry;
use crate::remote::ConnectOptions;
use crate::signal::StopSignal;
use crate::stack::Stack;
use crate::transfer::{self, Copied};
use crate::workspace::Workspace;

/// What a run puts on the swarm.
enum Wanted<'a> {
    /// This tag (`deploy`, `rollback --to`).
    Tag(&'a str),
    /// The version below the running one in the audit log (`rollback`).
    Previous,
}

/// Deploys `tag` to the swarm; with `reseed`, first replaces the data
/// host's live files with the seed files, keeping each as a backup beside
/// it (`--reseed-data`).
pub(crate) async fn deploy(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
    tag: &str,
    reseed: bool,
    registry: Option<&Registry>,
    progress: &Progress,
) -> anyhow::Result<()> {
    // What the swarm cannot run is refused before any connection.
    refuse_unrunnable(workspace, &workspace.host_stack(tag)?)?;
    refuse_unset(workspace, swarm)?;
    run(
        workspace,
        swarm,
        ssh,
        AuditAction::Deploy,
        (Wanted::Tag(tag), reseed),
        registry,
        progress,
    )
    .await
}

/// Puts back the version deployed before the running one (by the audit
/// log on the first manager), or `to`: a deploy of that version, recorded
/// as a rollback. Its images must still be in the registry, or, with none,
/// on this machine or on every node.
pub(crate) async fn rollback(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
    to: Option<&str>,
    registry: Option<&Registry>,
    progress: &Progress,
) -> anyhow::Result<()> {
    refuse_unset(workspace, swarm)?;
    let wanted = match to {
        Some(tag) => {
            refuse_unrunnable(workspace, &workspace.host_stack(tag)?)?;
            Wanted::Tag(tag)
        }
        None => Wanted::Previous,
    };
    run(
        workspace,
        swarm,
        ssh,
        AuditAction::Rollback,
        (wanted, false),
        registry,
        progress,
    )
    .await
}

/// Refuses a run while a variable of `deploy.swarm.require` is unset.
fn refuse_unset(workspace: &Workspace, swarm: &SwarmSettings) -> anyhow::Result<()> {
    let missing: Vec<&str> = swarm
        .require
        .iter()
        .filter(|v| workspace.var(v).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!(
            "refusing to deploy to the swarm: {} {} not set, and {}'s deploy.swarm.require \
             names {}; set {} (in CI, from a secret). Nothing was changed.",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            workspace.pipeline.path.display(),
            if missing.len() == 1 { "it" } else { "them" },
            if missing.len() == 1 { "it" } else { "them" },
        );
    }
    Ok(())
}

fn refuse_unrunnable(workspace: &Workspace, stack: &Stack) -> anyhow::Result<()> {
    if let Some(file) = stack.files.first() {
        bail!(
            "{} is set, but putting files into volumes (pipeline.yaml `files:`) works on one \
             host only yet: a swarm has a volume per node. Unset it; for HTTPS on a swarm use \
             TLS_DOMAINS (ACME)",
            file.origin
        );
    }
    spec::plan(
        stack,
        &spec::Context {
            seeds: &workspace.pipeline.seeds,
            data_label: super::plan::data_label_key(&stack.project),
            images: HashMap::new(),
        },
    )
    .map(|_| ())
    .map_err(|e| anyhow!("{}: {e}", workspace.pipeline.compose.display()))
}

async fn run(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
    action: AuditAction,
    wanted: (Wanted<'_>, bool),
    registry: Option<&Registry>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let mut nodes = connect_all(swarm, ssh, progress).await?;
    let result = locked(
        workspace, swarm, &mut nodes, action, wanted, registry, progress,
    )
    .await;
    close_all(nodes).await;
    result
}

async fn locked(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    nodes: &mut [Node],
    action: AuditAction,
    (wanted, reseed): (Wanted<'_>, bool),
    registry: Option<&Registry>,
    progress: &Progress,
) -> anyhow::Result<()> {
    super::setup::inspect(workspace, swarm, nodes)
        .await?
        .verdict()?;
    // The first host is a manager (the first `managers` hosts are), and
    // keeps the lock and the audit log.
    let keeper = &nodes[0];
    let dir = HostDir::open(&keeper.remote).await?;
    let who = crate::host::who(workspace);
    // Caught from before the lock is taken, so no signal can leave it held.
    let mut stop = StopSignal::install()?;
    let lock = dir.lock(&keeper.remote, &who).await?;
    let mut version = match wanted {
        Wanted::Tag(tag) => tag.to_owned(),
        Wanted::Previous => "(unknown)".to_owned(),
    };
    let mut images = Vec::new();
    let work = async {
        if let Wanted::Previous = wanted {
            let history = dir.audit(&nodes[0].remote).await?;
            version = rollback_target(&history).ok_or_else(|| {
                anyhow!(
                    "no earlier version in the audit log on {}: name one with --to TAG",
                    nodes[0].target
                )
            })?;
        }
        let stack = workspace.host_stack(&version)?;
        // A tag given was checked before connecting; the audit log's now.
        if let Wanted::Previous = wanted {
            refuse_unrunnable(workspace, &stack)?;
        }
        let hosts = nodes.len();
        progress.println(&match action {
            AuditAction::Rollback => format!(
                "rolling the swarm of {hosts} hosts back to {version} (lock and audit log on {})",
                nodes[0].target
            ),
            _ => format!(
                "deploying {version} to the swarm of {hosts} hosts (lock and audit log on {})",
                nodes[0].target
            ),
        });
        steps(
            workspace,
            swarm,
            nodes,
            &stack,
            &version,
            reseed,
            registry,
            progress,
            &mut images,
        )
        .await
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        _ = stop.received() => Err(anyhow!(
            "interrupted: the {action} stopped. Services it had updated keep their new spec, and \
             an update under way goes on in the swarm (`deployer status` shows where it is; \
             `deployer deploy` again finishes or replaces it)"
        )),
    };
    let keeper = &nodes[0];
    let entry = AuditEntry {
        time: crate::host::now(),
        who,
        action,
        version: version.clone(),
        images,
        result: match &outcome {
            Ok(_) => AuditResult::Ok,
            Err(error) => AuditResult::failed(error),
        },
    };
    let recorded = dir.append_audit(&keeper.remote, &entry).await;
    let released = lock.release(&keeper.remote).await;
    let (changed, total) = outcome?;
    recorded.with_context(|| format!("the {action} finished but cannot be recorded"))?;
    released?;
    let hosts = nodes.len();
    progress.println(&match action {
        AuditAction::Rollback => format!(
            "rolled the swarm of {hosts} hosts back to {version} ({changed} of {total} services \
             changed)"
        ),
        _ => format!(
            "deployed {version} to the swarm of {hosts} hosts ({changed} of {total} services \
             changed)"
        ),
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn steps(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    nodes: &mut [Node],
    stack: &Stack,
    tag: &str,
    reseed: bool,
    registry: Option<&Registry>,
    progress: &Progress,
    fetched: &mut Vec<String>,
) -> anyhow::Result<(usize, usize)> {
    let images = put_images(workspace, swarm, nodes, stack, tag, registry, progress).await?;
    fetched.extend(images.values().map(|(reference, _)| reference.clone()));

    if reseed {
        // The running API sees the file replaced and reads it again.
        let engine = Engine::new(&nodes[swarm.data].docker, progress);
        for seed in &workspace.pipeline.seeds {
            engine
                .reseed(stack, seed)
                .await
                .with_context(|| format!("reseeding on {}", nodes[swarm.data].target))?;
        }
    }
    Engine::new(&nodes[swarm.data].docker, progress)
        .ensure_seeded_volumes(stack, &workspace.pipeline.seeds)
        .await
        .with_context(|| format!("seeding the data volume on {}", nodes[swarm.data].target))?;

    let planned = spec::plan(
        stack,
        &spec::Context {
            seeds: &workspace.pipeline.seeds,
            data_label: super::plan::data_label_key(&stack.project),
            images,
        },
    )
    .map_err(anyhow::Error::msg)?;
    let changes = {
        let cluster = Cluster::new(
            &nodes[0].docker,
            nodes,
            registry.and_then(Registry::credentials),
            progress,
        )
        .await?;
        let mut changes: Vec<(&Planned, Change)> = Vec::new();
        // The services behind the edge, as its routes name them.
        let routed: Vec<&str> = stack
            .edge
            .iter()
            .flat_map(|e| e.targets.iter().map(|t| t.service.as_str()))
            .collect();
        let edge = stack
            .edge
            .as_ref()
            .map(|e| spec::service_name(stack, &e.service));
        for plan in &planned {
            let applied = match cluster.apply(plan).await {
                Ok(change) => {
                    changes.push((plan, change));
                    // Served, not only running: every edge routes to the
                    // tasks of the services applied so far.
                    let served: Vec<(String, usize)> = changes
                        .iter()
                        .filter(|(p, _)| routed.contains(&p.service.as_str()))
                        .filter_map(|(p, _)| p.replicas.map(|n| (p.service.clone(), n as usize)))
                        .collect();
                    match &edge {
                        Some(edge) => cluster.wait_for_edges(edge, &served).await,
                        None => Ok(()),
                    }
                }
                Err(error) => Err(error),
            };
            if let Err(error) = applied {
                roll_back(&cluster, &changes, progress).await;
                return Err(error.context(format!("the deploy of {tag} to the swarm failed")));
            }
        }
        changes
            .iter()
            .map(|(p, c)| (p.name.clone(), *c))
            .collect::<Vec<_>>()
    };

    if let Err(error) = check(workspace, swarm, nodes, stack, progress).await {
        let cluster = Cluster::new(&nodes[0].docker, nodes, None, progress).await?;
        let updated: Vec<(&Planned, Change)> = planned
            .iter()
            .filter_map(|p| {
                changes
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|(_, c)| (p, *c))
            })
            .collect();
        roll_back(&cluster, &updated, progress).await;
        return Err(error.context(format!("the deploy of {tag} to the swarm failed")));
    }
    // Only once the new version serves: services it no longer has go.
    let keep: Vec<&str> = planned.iter().map(|p| p.name.as_str()).collect();
    let removed =
        super::apply::remove_orphans(&nodes[0].docker, &stack.project, &keep, progress).await?;
    let changed = changes
        .iter()
        .filter(|(_, c)| *c != Change::Unchanged)
        .count();
    if !removed.is_empty() {
        progress.println(&format!(
            "removed {} service(s) the compose file no longer has: {}",
            removed.len(),
            removed.join(", ")
        ));
    }
    Ok((changed, changes.len()))
}

/// Rolls back, newest first, the services this deploy updated.
async fn roll_back(cluster: &Cluster<'_>, changes: &[(&Planned, Change)], progress: &Progress) {
    for (plan, change) in changes.iter().rev() {
        if *change == Change::Updated {
            progress.println(&format!(
                "rolling {} back to its previous spec",
                plan.service
            ));
            cluster.rollback(&plan.name).await;
        }
    }
}

/// Puts each built image where the tasks run; per service, the reference
/// the tasks run and the image ID.
async fn put_images(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    nodes: &[Node],
    stack: &Stack,
    tag: &str,
    registry: Option<&Registry>,
    progress: &Progress,
) -> anyhow::Result<HashMap<String, (String, String)>> {
    let local = match registry {
        Some(_) => None,
        None => Some(workspace.local_docker().await?),
    };
    let mut images = HashMap::new();
    for service in workspace.pipeline.built_services(stack) {
        let repository = images::repository(&service.image);
        let image = format!("{repository}:{tag}");
        let reference = match (registry, &local) {
            (Some(registry), _) => {
                // The first manager pulls it to learn its digest, the data
                // host for the volume's seeding; every node pulls the
                // pinned reference when a task needs it.
                let pulled = registry
                    .pull(&nodes[0].docker, repository, tag, progress)
                    .await?;
                if swarm.data != 0 {
                    registry
                        .pull(&nodes[swarm.data].docker, repository, tag, progress)
                        .await?;
                }
                let inspected = nodes[0].docker.inspect_image(&pulled).await.map_err(|e| {
                    anyhow!("cannot inspect {pulled}: {}", crate::docker::message(&e))
                })?;
                let name = pulled.rsplit_once(':').map_or(pulled.as_str(), |(n, _)| n);
                match inspected
                    .repo_digests
                    .unwrap_or_default()
                    .iter()
                    .find_map(|d| d.strip_prefix(&format!("{name}@")).map(str::to_owned))
                {
                    Some(digest) => format!("{pulled}@{digest}"),
                    None => pulled,
                }
            }
            (None, Some(local)) => {
                // Not here (an older version, for a rollback): the nodes
                // must all still have it.
                let here = local.inspect_image(&image).await.is_ok();
                for node in nodes {
                    if !here {
                        if node.docker.inspect_image(&image).await.is_err() {
                            bail!(
                                "{image} is neither in this machine's Docker nor on {}: with no \
                                 registry, the images go from here to the hosts. Build that \
                                 version here first (`deployer build` at its commit), or set \
                                 DOCKER_REGISTRY. Nothing was changed.",
                                node.target
                            );
                        }
                    } else if transfer::copy_image(local, &node.docker, &image, progress).await?
                        == Copied::AlreadyThere
                    {
                        progress.println(&format!("{image}: already on {}", node.target));
                    }
                }
                image.clone()
            }
            (None, None) => unreachable!("no registry means this machine's Docker"),
        };
        // Built for the nodes' architecture? Checked where it is now.
        let on_manager = if registry.is_some() {
            &reference
        } else {
            &image
        };
        let built_for = transfer::architecture(&nodes[0].docker, on_manager).await?;
        for node in nodes {
            let arch = node
                .docker
                .version()
                .await
                .ok()
                .and_then(|v| v.arch)
                .unwrap_or_default();
            if !arch.is_empty() && arch != built_for {
                bail!(
                    "{image} is built for {built_for}, but {} is {arch}: it would not start \
                     there. Nothing was changed.",
                    node.target
                );
            }
        }
        let id = nodes[0]
            .docker
            .inspect_image(on_manager)
            .await
            .ok()
            .and_then(|i| i.id)
            .unwrap_or_default();
        images.insert(service.name.clone(), (reference, id));
    }
    Ok(images)
}

/// The read-only acceptance checks, through the data host's edge (each
/// service's entry there, forwarded over its SSH connection).
async fn check(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    nodes: &mut [Node],
    stack: &Stack,
    progress: &Progress,
) -> anyhow::Result<()> {
    let node = &mut nodes[swarm.data];
    let mut base_urls = HashMap::new();
    for service in &stack.services {
        if let Some(entry) = stack.entry(&service.name) {
            let local = node.remote.forward_tcp(&entry.host_ip, entry.port).await?;
            base_urls.insert(service.name.clone(), format!("http://127.0.0.1:{local}"));
        }
    }
    let read_only: Vec<_> = workspace
        .pipeline
        .checks
        .iter()
        .filter(|c| c.on_deploy)
        .cloned()
        .collect();
    let outcomes = crate::checks::run(&read_only, &base_urls, &workspace.pipeline.auth).await;
    let mut failed = Vec::new();
    for outcome in &outcomes {
        match &outcome.failure {
            None => progress.println(&format!("PASS  {}", outcome.name)),
            Some(why) => failed.push(format!("{}: {why}", outcome.name)),
        }
    }
    if !failed.is_empty() {
        bail!(
            "acceptance checks failed through {}'s edge:\n  {}",
            node.target,
            failed.join("\n  ")
        );
    }
    Ok(())
}
