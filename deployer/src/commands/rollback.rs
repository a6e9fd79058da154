//! `deployer rollback`: put back the version deployed before the current
//! one (or `--to TAG`), if its images are still on the host. The same
//! skeleton as `deploy`: connected, locked, one audit line per attempt. On
//! a swarm, a deploy of that version recorded as a rollback.

use anyhow::anyhow;

use crate::host::{self, AuditAction, DeployTarget, HostFlags, deploy_target};
use crate::progress::Progress;
use crate::workspace::{DefaultCredentials, Workspace};

pub struct Options {
    pub host: HostFlags,
    /// The version to go back to; the previous good deploy by default.
    pub to: Option<String>,
    pub defaults: DefaultCredentials,
}

pub async fn run(
    workspace: &Workspace,
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<()> {
    workspace.check_credentials(options.defaults, progress)?;
    if let DeployTarget::Swarm(swarm, ssh) = deploy_target(workspace, &options.host)? {
        let registry = workspace.optional_registry();
        if let Some(registry) = &registry
            && !registry.settings.username.is_empty()
        {
            registry.check_login().await?;
        }
        return crate::swarm::rollback(
            workspace,
            &swarm,
            &ssh,
            options.to.as_deref(),
            registry.as_ref(),
            progress,
        )
        .await;
    }
    host::with_locked_host(
        workspace,
        &options.host,
        progress,
        AuditAction::Rollback,
        options.to.as_deref(),
        async |host| {
            let history = host.history().await?;
            let tag = match &options.to {
                Some(tag) => tag.clone(),
                None => host::rollback_target(&history).ok_or_else(|| {
                    anyhow!(
                        "no earlier version in the audit log of {}: name one with --to TAG",
                        host.remote.target
                    )
                })?,
            };
            host.set_version(&tag);
            let stack = workspace.host_stack(&tag)?;
            host.set_images(stack.services.iter().map(|s| s.image.clone()).collect());
            host.require_images(&stack, &tag).await?;
            host.apply_and_check(workspace, &stack).await?;
            host.install(workspace, &tag).await?;
            progress.println(&format!("rolled back {} to {tag}", host.remote.target));
            Ok(())
        },
    )
    .await
}
