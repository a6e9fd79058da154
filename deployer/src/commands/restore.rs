//! `deployer restore FILE`: put a saved data file back on the deploy
//! target, through the API that owns it, after saving the live file. Under
//! the host's lock, with one audit line, as a deploy.

use std::path::PathBuf;

use anyhow::Context;

use crate::backup;
use crate::host::{self, AuditAction, DeployTarget, HostFlags, deploy_target};
use crate::progress::Progress;
use crate::workspace::Workspace;

pub struct Options {
    pub host: HostFlags,
    /// The backup to put back.
    pub file: PathBuf,
    /// Where the live file is saved first.
    pub out: PathBuf,
}

pub async fn run(
    workspace: &Workspace,
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<()> {
    // Checked before any connection: a wrong file changes nothing.
    let backup::Restore {
        bytes,
        students,
        stack,
        seed,
        entry,
    } = backup::prepare_restore(workspace, &options.file)?;
    if let DeployTarget::Swarm(swarm, ssh) = deploy_target(workspace, &options.host)? {
        return crate::swarm::restore(
            workspace,
            &swarm,
            &ssh,
            &options.file,
            backup::Restore {
                bytes,
                students,
                stack,
                seed,
                entry,
            },
            &options.out,
            progress,
        )
        .await;
    }
    let file = options.file.display().to_string();
    host::with_locked_host(
        workspace,
        &options.host,
        progress,
        AuditAction::Restore,
        Some(&file),
        async |host| {
            backup::save_all(
                &host.engine,
                &stack,
                std::slice::from_ref(&seed),
                &options.out,
                &host.remote.target.to_string(),
                progress,
            )
            .await
            .context("the live data could not be saved first, so nothing was restored")?;
            let local = host.remote.forward_tcp(&entry.host_ip, entry.port).await?;
            let (before, after) = backup::put_back(
                &format!("http://127.0.0.1:{local}"),
                &workspace.pipeline.auth,
                bytes,
            )
            .await?;
            progress.println(&format!(
                "restored {file} ({students} students) on {}: {before} students before, {after} now",
                host.remote.target
            ));
            Ok(())
        },
    )
    .await
}
