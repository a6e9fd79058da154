//! `deployer release`: what CI runs. Check the registry login and the push
//! permission, build, run the acceptance checks, push — in that order;
//! nothing is pushed if a check fails, and a bad password or a repository
//! the user may not push to fails before the build.

use crate::images::{self, Platforms};
use crate::progress::Progress;
use crate::registry::{Dirty, Latest};
use crate::workspace::Workspace;

pub async fn run(
    workspace: &Workspace,
    dirty: Dirty,
    latest: Latest,
    progress: &Progress,
) -> anyhow::Result<()> {
    let registry = workspace.registry()?;
    registry.check_login().await?;
    registry.check_push(&workspace.repositories()).await?;
    progress.println(&format!(
        "registry {}: login as {} accepted, and it may push to {}",
        registry.settings.server,
        registry.settings.username,
        workspace.repositories().join(", ")
    ));
    let docker = workspace.local_docker().await?;
    // One version for the whole release: the tree may change while it runs.
    let version = images::version_tag(&workspace.pipeline.root);
    images::build_stack(&docker, workspace, &version, Platforms::All, progress).await?;
    crate::checks::test_images(workspace, &version, progress).await?;
    let pushed = registry
        .push_release(
            &docker,
            &workspace.repositories(),
            &workspace.pipeline.platforms,
            &version,
            dirty,
            latest,
            progress,
        )
        .await?;
    for reference in &pushed {
        progress.out(&format!("pushed {reference}"));
    }
    Ok(())
}
