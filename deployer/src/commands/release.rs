//! `deployer release`: what CI runs. Check the registry login, build, run
//! the acceptance checks, push — in that order; nothing is pushed if a
//! check fails, and a bad password fails before the build.

use crate::commands::{Workspace, build, push, test};
use crate::progress::Progress;

pub async fn run(
    workspace: &Workspace,
    options: &push::Options,
    progress: &Progress,
) -> anyhow::Result<()> {
    let registry = push::registry(workspace)?;
    registry.check_login().await?;
    progress.println(&format!(
        "registry {}: login as {} accepted",
        registry.settings.server, registry.settings.username
    ));
    let docker = crate::docker::connect_local().await?;
    build::build(&docker, workspace, progress).await?;
    test::run(workspace, progress).await?;
    push::run(workspace, options, progress, true).await?;
    Ok(())
}
