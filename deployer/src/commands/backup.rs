//! `deployer backup`: save the live data file of the deploy target (the
//! host, or a swarm's data host) to this machine, timestamped and checked.

use std::path::PathBuf;

use crate::backup;
use crate::engine::Engine;
use crate::host::{self, DeployTarget, HostFlags, deploy_target};
use crate::progress::Progress;
use crate::workspace::Workspace;

pub struct Options {
    pub host: HostFlags,
    /// Where the backups go; relative to the working directory.
    pub out: PathBuf,
}

pub async fn run(
    workspace: &Workspace,
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<()> {
    match deploy_target(workspace, &options.host)? {
        DeployTarget::Swarm(swarm, ssh) => {
            crate::swarm::backup(workspace, &swarm, &ssh, &options.out, progress).await?;
        }
        DeployTarget::Host(..) => {
            let stack = workspace.host_stack("latest")?;
            let (remote, docker, _) = host::connect(workspace, &options.host).await?;
            let saved = backup::save_all(
                &Engine::new(&docker, progress),
                &stack,
                &workspace.pipeline.seeds,
                &options.out,
                &remote.target.to_string(),
                progress,
            )
            .await;
            remote.close().await;
            saved?;
        }
    }
    Ok(())
}
