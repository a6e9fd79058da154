//! `deployer deploy`: run a released version on the deploy host over one
//! SSH connection.
//!
//! The steps, after Kamal's lessons: check the registry login, resolve the
//! stack for the host (a bad variable must not leave a lock behind), then on
//! the connected, locked host: pull the new images while the old version
//! still serves, apply the stack with the same engine as `up` (one service
//! at a time, health-gated), run the read-only acceptance checks through the
//! SSH connection, and only then count the deploy as done. If applying or
//! checking fails, the previous version (from the host's audit log) is
//! applied again. The skeleton around the steps (lock, signals, one audit
//! line per attempt) is `host::with_locked_host`.

use crate::host::{
    self, AuditAction, AuditResult, DeployTarget, HostFlags, LockedHost, deploy_target,
};
use crate::images;
use crate::progress::Progress;
use crate::workspace::{DefaultCredentials, Workspace};

pub struct Options {
    pub host: HostFlags,
    /// The version to deploy; the checkout's git version by default.
    pub tag: Option<String>,
    pub data: Data,
    pub defaults: DefaultCredentials,
}

/// What happens to the host's data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// Seed only volumes that are new (the default).
    Keep,
    /// Replace the live files with the seed files, keeping backups.
    Reseed,
}

pub async fn run(
    workspace: &Workspace,
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<()> {
    let registry = workspace.optional_registry();
    match &registry {
        Some(registry) if !registry.settings.username.is_empty() => registry.check_login().await?,
        Some(_) => {}
        None => progress.println(
            "no registry configured (DOCKER_REGISTRY is empty): the images go from this \
             machine's Docker straight to the host",
        ),
    }
    let tag = match &options.tag {
        Some(tag) => tag.clone(),
        None => images::version_tag(&workspace.pipeline.root),
    };
    workspace.check_credentials(options.defaults, progress)?;
    if let DeployTarget::Swarm(swarm, ssh) = deploy_target(workspace, &options.host)? {
        let reseed = options.data == Data::Reseed;
        return crate::swarm::deploy(
            workspace,
            &swarm,
            &ssh,
            &tag,
            reseed,
            registry.as_ref(),
            progress,
        )
        .await;
    }
    let stack = workspace.host_stack(&tag)?;
    // Before the host is touched: a file to copy there must be readable.
    for file in &stack.files {
        file.read()?;
    }
    host::with_locked_host(
        workspace,
        &options.host,
        progress,
        AuditAction::Deploy,
        Some(&tag),
        async |host| {
            let fetched = host
                .fetch_images(workspace, &stack, registry.as_ref(), &tag)
                .await?;
            host.set_images(fetched);
            let history = host.history().await?;
            if options.data == Data::Reseed {
                host.reseed(workspace, &stack).await?;
            }
            let applied = match host.apply_and_check(workspace, &stack).await {
                Ok(applied) => applied,
                Err(error) => {
                    let result = put_previous_back(host, workspace, &history, &tag, &error).await;
                    host.record(result.clone()).await?;
                    return Err(error.context(format!(
                        "the deploy of {tag} to {} failed ({result})",
                        host.remote.target
                    )));
                }
            };
            host.install(workspace, &tag).await?;
            host.record(AuditResult::Ok).await?;
            let kept = host::keep_versions(&history, &tag);
            let pruned = host
                .prune_images(workspace, &stack, registry.as_ref(), &kept)
                .await;
            progress.println(&format!(
                "images kept on the host for rollback: {} ({pruned} older tags removed)",
                kept.join(", ")
            ));
            progress.println(&format!(
                "deployed {tag} to {} ({} of {} services changed)",
                host.remote.target,
                applied.changed(),
                applied.len()
            ));
            Ok(())
        },
    )
    .await
}

/// After a failed deploy of `tag`: applies the version that ran before it
/// (unless that is `tag` itself); returns what the audit line says.
async fn put_previous_back(
    host: &mut LockedHost,
    workspace: &Workspace,
    history: &[host::AuditEntry],
    tag: &str,
    error: &anyhow::Error,
) -> AuditResult {
    let Some(previous) = host::running_version(history).filter(|v| v != tag) else {
        return AuditResult::failed_nothing_to_restore(error);
    };
    host.engine
        .progress()
        .println(&format!("deploy of {tag} failed; putting {previous} back"));
    let restored = match workspace.host_stack(&previous) {
        Ok(back) => host.apply_and_check(workspace, &back).await,
        Err(e) => Err(e),
    };
    match restored {
        Ok(_) => AuditResult::failed_restored(&previous, error),
        Err(restore) => AuditResult::failed_restore_failed(&previous, error, &restore),
    }
}
