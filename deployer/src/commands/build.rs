//! `deployer build`: static binaries, then the images, tagged with the git
//! version and `latest`; unchanged images are not rebuilt.

use crate::images::{self, Platforms};
use crate::progress::Progress;
use crate::workspace::Workspace;

pub async fn run(
    workspace: &Workspace,
    platforms: Platforms,
    progress: &Progress,
) -> anyhow::Result<()> {
    let docker = workspace.local_docker().await?;
    let built = images::build_stack(
        &docker,
        workspace,
        &images::version_tag(&workspace.pipeline.root),
        platforms,
        progress,
    )
    .await?;
    for image in &built {
        progress.out(&format!(
            "{:<10} {:<40} {:>8}  {}",
            image.service,
            image.versioned,
            images::megabytes(image.size),
            if image.rebuilt { "built" } else { "unchanged" }
        ));
    }
    Ok(())
}
