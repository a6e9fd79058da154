//! `deployer deploy` and `deployer rollback`: run a released version on the
//! EC2 host over one SSH connection.
//!
//! Order (after Kamal's lessons): check the registry login, connect, take
//! the host lock, pull the new images while the old version still serves,
//! then apply the stack with the same engine as `up` (one service at a time,
//! health-gated), run the read-only acceptance checks through the SSH
//! connection, and only then count the deploy as done. If anything fails
//! after the pull, the previous version (from the host's audit log) is
//! applied again. Every attempt is appended to the audit log; the deployer
//! itself, pipeline.yaml, the compose file and a `.env` naming the deployed
//! version are left on the host, so `deployer status` works there.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use bollard::Docker;
use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};

use crate::checks;
use crate::commands::{StopSignal, Workspace, push};
use crate::engine::{Action, Engine};
use crate::host::{AuditEntry, HostDir, keep_versions, now, rollback_target, running_version};
use crate::images;
use crate::progress::Progress;
use crate::registry::Registry;
use crate::remote::{ConnectOptions, Remote, Target, put_if_changed, who};
use crate::stack::Stack;

/// Where and how to connect, from flags (which beat the environment, which
/// beats pipeline.yaml).
#[derive(Debug, Clone, Default)]
pub struct HostFlags {
    pub host: Option<String>,
    pub accept_new_host_key: bool,
    pub host_key: Option<String>,
}

pub struct Options {
    pub host: HostFlags,
    /// The version to deploy; the checkout's git version by default.
    pub tag: Option<String>,
    pub reseed_data: bool,
}

/// Resolves the target and connection settings.
pub fn target(
    workspace: &Workspace,
    flags: &HostFlags,
) -> anyhow::Result<(Target, ConnectOptions)> {
    let text = flags
        .host
        .clone()
        .or_else(|| workspace.var("AWS_EC2_INSTANCE"))
        .or_else(|| workspace.pipeline.deploy.host.clone())
        .ok_or_else(|| {
            anyhow!(
                "no deploy host: pass --host [user@]host[:port], set AWS_EC2_INSTANCE, or set \
                 deploy.host in {}",
                workspace.pipeline.path.display()
            )
        })?;
    let target = Target::parse(&text)?;
    let options = ConnectOptions {
        key: workspace.var("EC2_PRIVATE_KEY").map(PathBuf::from),
        known_hosts: workspace.var("EC2_KNOWN_HOSTS").map(PathBuf::from),
        docker_socket: workspace
            .var("EC2_DOCKER_SOCKET")
            .unwrap_or_else(|| "/var/run/docker.sock".into()),
        accept_new_host_key: flags.accept_new_host_key,
        host_key: flags.host_key.clone(),
    };
    Ok((target, options))
}

/// Connects to the host and its Docker daemon.
pub async fn connect(workspace: &Workspace, flags: &HostFlags) -> anyhow::Result<(Remote, Docker)> {
    let (target, options) = target(workspace, flags)?;
    let mut remote = Remote::connect(&target, &options).await?;
    match remote.docker(&options.docker_socket).await {
        Ok(docker) => Ok((remote, docker)),
        Err(e) => {
            remote.close().await;
            Err(e)
        }
    }
}

/// The variables the stack resolves with on the host: the version, then
/// pipeline.yaml's `deploy.env` (the host's ports).
fn host_overlay(workspace: &Workspace, tag: &str) -> Vec<(String, String)> {
    let mut overlay = vec![("TAG".to_owned(), tag.to_owned())];
    overlay.extend(workspace.pipeline.deploy.env.iter().cloned());
    overlay
}

pub async fn deploy(
    workspace: &Workspace,
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<()> {
    let registry = push::registry(workspace)?;
    if !registry.settings.username.is_empty() {
        registry.check_login().await?;
    }
    let tag = match &options.tag {
        Some(tag) => tag.clone(),
        None => images::version_tag(&workspace.pipeline.root),
    };
    if workspace.var("API_PASSWORD").is_none() {
        progress.println(
            "warning: API_PASSWORD is not set, so the API on the host takes the compose file's \
             local default (root/root, as the original did); set API_USERNAME and API_PASSWORD \
             for a host anyone else can reach",
        );
    }
    // Resolved before anything on the host is touched: a bad variable must
    // not leave a lock behind.
    let stack = workspace.stack_with(&host_overlay(workspace, &tag))?;
    let (mut remote, docker) = connect(workspace, &options.host).await?;
    progress.println(&format!("connected to {}", remote.target));
    let result = async {
        let dir = HostDir::open(&remote).await?;
        // Caught from before the lock is taken, so no signal can leave it held.
        let mut stop = StopSignal::install()?;
        let lock = dir.lock(&remote, &who()).await?;
        let engine = Engine::new(&docker, progress);
        let unfinished = engine.unfinished();
        // Set once this attempt's line is in the audit log.
        let audited = std::cell::Cell::new(false);
        let audit = |result: String, images: Vec<String>| AuditEntry {
            time: now(),
            who: who(),
            action: "deploy".into(),
            version: tag.clone(),
            images,
            result,
        };
        let work = async {
            // Pull first: the running version serves while images download.
            let mut pulled = Vec::new();
            for spec in &workspace.pipeline.images {
                let service = stack
                    .service(&spec.service)
                    .expect("checked against the stack");
                let repository = images::repository(&service.image);
                pulled.push(registry.pull(&docker, repository, &tag, progress).await?);
            }
            let history = dir.audit(&remote).await?;
            // What to put back if this fails: the running version, unless
            // that is the one being deployed again.
            let previous = running_version(&history).filter(|v| *v != tag);
            let applied =
                apply_and_check(workspace, &mut remote, &engine, &stack, options.reseed_data).await;
            let actions = match applied {
                Ok(actions) => actions,
                Err(error) => {
                    let why = format!("{error:#}");
                    let result = match &previous {
                        Some(previous) => {
                            progress.println(&format!(
                                "deploy of {tag} failed; putting {previous} back"
                            ));
                            let restored = match workspace
                                .stack_with(&host_overlay(workspace, previous))
                            {
                                Ok(back) => {
                                    apply_and_check(workspace, &mut remote, &engine, &back, false)
                                        .await
                                }
                                Err(e) => Err(e),
                            };
                            match restored {
                                Ok(_) => {
                                    format!("failed, {previous} restored: {}", first_line(&why))
                                }
                                Err(e) => format!(
                                    "failed, and restoring {previous} failed too: {}; {}",
                                    first_line(&why),
                                    first_line(&format!("{e:#}"))
                                ),
                            }
                        }
                        None => format!(
                            "failed (no other version to restore): {}",
                            first_line(&why)
                        ),
                    };
                    dir.append_audit(&remote, &audit(result.clone(), pulled)).await?;
                    audited.set(true);
                    return Err(error.context(format!(
                        "the deploy of {tag} to {} failed ({result})",
                        remote.target
                    )));
                }
            };
            // In service and checked: leave what status needs, then record it.
            install_on_host(workspace, &remote, &dir, &tag).await?;
            dir.append_audit(&remote, &audit("ok".into(), pulled)).await?;
            audited.set(true);
            let kept = keep_versions(&history, &tag);
            let pruned = prune_images(&docker, workspace, &stack, &registry, &kept).await;
            progress.println(&format!(
                "images kept on the host for rollback: {} ({pruned} older tags removed)",
                kept.join(", ")
            ));
            let changed = actions
                .iter()
                .filter(|(_, a)| *a != Action::Unchanged)
                .count();
            progress.println(&format!(
                "deployed {tag} to {} ({changed} of {} services changed)",
                remote.target,
                actions.len()
            ));
            Ok(())
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            _ = stop.received() => {
                if audited.get() {
                    Err(anyhow!(
                        "interrupted after the deploy of {tag} was recorded; it is in service"
                    ))
                } else {
                    let undone = engine.undo(&unfinished, &stack.project).await;
                    let _ = dir
                        .append_audit(
                            &remote,
                            &audit(format!("interrupted ({undone} unfinished steps undone)"), Vec::new()),
                        )
                        .await;
                    audited.set(true);
                    Err(anyhow!(
                        "interrupted: the deploy of {tag} stopped; {undone} unfinished step(s) were \
                         undone (new containers removed, replaced ones started again). Check with \
                         `deployer status --host {}`",
                        remote.target
                    ))
                }
            }
        };
        if let Err(error) = &outcome
            && !audited.get()
        {
            // Failed before it changed anything (a pull, reading the log):
            // still one line, so every attempt is in the log.
            let _ = dir
                .append_audit(&remote, &audit(format!("failed: {}", first_line(&format!("{error:#}"))), Vec::new()))
                .await;
        }
        let released = lock.release(&remote).await;
        outcome?;
        released
    }
    .await;
    remote.close().await;
    result
}

/// Applies `stack`, then runs the read-only acceptance checks through the
/// SSH connection.
async fn apply_and_check(
    workspace: &Workspace,
    remote: &mut Remote,
    engine: &Engine<'_>,
    stack: &Stack,
    reseed: bool,
) -> anyhow::Result<Vec<(String, Action)>> {
    let progress = engine.progress;
    if reseed {
        for seed in &workspace.pipeline.seeds {
            if engine
                .docker
                .inspect_volume(&stack.volume_name(&seed.volume))
                .await
                .is_ok()
            {
                engine.reseed(stack, seed).await?;
            }
        }
    }
    let actions = engine.apply(stack, &workspace.pipeline.seeds).await?;
    let mut base_urls = HashMap::new();
    for service in &stack.services {
        if let Some(port) = service.ports.first()
            && let Ok(host_port) = port.host_port.parse::<u16>()
        {
            let local = remote.forward_tcp(host_port).await?;
            base_urls.insert(service.name.clone(), format!("http://127.0.0.1:{local}"));
        }
    }
    // Only checks that read: a deploy must not write test data into the
    // live file.
    let read_only: Vec<_> = workspace
        .pipeline
        .checks
        .iter()
        .filter(|c| c.on_deploy)
        .cloned()
        .collect();
    let outcomes = checks::run(&read_only, &base_urls, &workspace.pipeline.auth).await;
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.failure.as_ref().map(|f| format!("{}: {f}", o.name)))
        .collect();
    for outcome in &outcomes {
        if outcome.failure.is_none() {
            progress.println(&format!("PASS  {}", outcome.name));
        }
    }
    if !failed.is_empty() {
        bail!(
            "acceptance checks failed on the host:\n  {}",
            failed.join("\n  ")
        );
    }
    Ok(actions)
}

/// Leaves what `deployer status` needs on the host: the binary, the two
/// files, and a `.env` naming the deployed version and ports.
async fn install_on_host(
    workspace: &Workspace,
    remote: &Remote,
    dir: &HostDir,
    tag: &str,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the deployer's own binary")?;
    put_if_changed(remote, &exe, &dir.file("deployer"), "755").await?;
    put_if_changed(
        remote,
        &workspace.pipeline.path,
        &dir.file("pipeline.yaml"),
        "644",
    )
    .await?;
    let compose_name = workspace
        .pipeline
        .compose
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "docker-compose.yml".into());
    put_if_changed(
        remote,
        &workspace.pipeline.compose,
        &dir.file(&compose_name),
        "644",
    )
    .await?;
    let mut env = format!(
        "# Written by `deployer deploy`: what runs here. No secrets.\nCOMPOSE_PROJECT_NAME={}\n",
        workspace.stack.project
    );
    for (key, value) in host_overlay(workspace, tag) {
        env.push_str(&format!("{key}={value}\n"));
    }
    for key in ["DOCKER_IMAGE_BACKEND", "DOCKER_IMAGE_FRONTEND"] {
        if let Some(value) = workspace.var(key) {
            env.push_str(&format!("{key}={value}\n"));
        }
    }
    remote
        .write_file(&dir.file(".env"), env.as_bytes(), "644")
        .await
}

pub async fn rollback(
    workspace: &Workspace,
    flags: &HostFlags,
    to: Option<&str>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let (mut remote, docker) = connect(workspace, flags).await?;
    let result = async {
        let dir = HostDir::open(&remote).await?;
        // Caught from before the lock is taken, so no signal can leave it held.
        let mut stop = StopSignal::install()?;
        let lock = dir.lock(&remote, &who()).await?;
        let engine = Engine::new(&docker, progress);
        let unfinished = engine.unfinished();
        let work = async {
            let history = dir.audit(&remote).await?;
            let tag = match to {
                Some(tag) => tag.to_owned(),
                None => rollback_target(&history).ok_or_else(|| {
                    anyhow!(
                        "no earlier version in the audit log of {}: name one with --to TAG",
                        remote.target
                    )
                })?,
            };
            let stack = workspace.stack_with(&host_overlay(workspace, &tag))?;
            for service in &stack.services {
                if docker.inspect_image(&service.image).await.is_err() {
                    bail!(
                        "{} is no longer on {}: deploy it instead (`deployer deploy --tag {tag}`), \
                         which pulls it",
                        service.image,
                        remote.target
                    );
                }
            }
            let applied = apply_and_check(workspace, &mut remote, &engine, &stack, false).await;
            let result = match &applied {
                Ok(_) => "ok".to_owned(),
                Err(e) => format!("failed: {}", first_line(&format!("{e:#}"))),
            };
            dir.append_audit(
                &remote,
                &AuditEntry {
                    time: now(),
                    who: who(),
                    action: "rollback".into(),
                    version: tag.clone(),
                    images: stack.services.iter().map(|s| s.image.clone()).collect(),
                    result,
                },
            )
            .await?;
            applied?;
            install_on_host(workspace, &remote, &dir, &tag).await?;
            progress.println(&format!("rolled back {} to {tag}", remote.target));
            Ok(())
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            _ = stop.received() => {
                let undone = engine.undo(&unfinished, &workspace.stack.project).await;
                Err(anyhow!("interrupted: the rollback stopped; {undone} unfinished step(s) were undone"))
            }
        };
        let released = lock.release(&remote).await;
        outcome?;
        released
    }
    .await;
    remote.close().await;
    result
}

/// Removes the host's tags of the stack's images that are not kept (by both
/// their compose and registry names), so releases do not fill its disk.
/// Best effort: a tag Docker refuses to remove (in use) stays. Returns how
/// many tags were removed.
async fn prune_images(
    docker: &Docker,
    workspace: &Workspace,
    stack: &Stack,
    registry: &Registry,
    keep: &[String],
) -> usize {
    let mut removed = 0;
    for spec in &workspace.pipeline.images {
        let Some(service) = stack.service(&spec.service) else {
            continue;
        };
        let repository = images::repository(&service.image);
        for name in [repository.to_owned(), registry.name_of(repository)] {
            let listed = docker
                .list_images(Some(ListImagesOptions {
                    filters: Some(HashMap::from([(
                        "reference".to_owned(),
                        vec![name.clone()],
                    )])),
                    ..Default::default()
                }))
                .await
                .unwrap_or_default();
            for reference in listed.into_iter().flat_map(|i| i.repo_tags) {
                let Some(tag) = reference.strip_prefix(&format!("{name}:")) else {
                    continue;
                };
                if tag == "latest" || keep.iter().any(|k| k == tag) {
                    continue;
                }
                if docker
                    .remove_image(&reference, None::<RemoveImageOptions>, None)
                    .await
                    .is_ok()
                {
                    removed += 1;
                }
            }
        }
    }
    removed
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
