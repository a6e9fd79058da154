//! `deployer build`: static binaries, then the images, tagged with the git
//! version and `latest`; unchanged images are not rebuilt.

use crate::commands::Workspace;
use crate::images::{self, Image};
use crate::progress::Progress;

pub async fn run(workspace: &Workspace, progress: &Progress) -> anyhow::Result<Vec<Image>> {
    let docker = crate::docker::connect_local().await?;
    build(&docker, workspace, progress).await
}

/// The build step `up` and `build` share.
pub async fn build(
    docker: &bollard::Docker,
    workspace: &Workspace,
    progress: &Progress,
) -> anyhow::Result<Vec<Image>> {
    let binaries = images::cargo_build(&workspace.pipeline, progress).await?;
    let version = images::version_tag(&workspace.pipeline.root);
    images::build_all(
        docker,
        &workspace.pipeline,
        &workspace.stack,
        &binaries,
        &version,
        progress,
    )
    .await
}

pub fn print_sizes(images: &[Image]) {
    for image in images {
        println!(
            "{:<10} {:<40} {:>8}  {}",
            image.service,
            image.versioned,
            images::megabytes(image.size),
            if image.rebuilt { "built" } else { "unchanged" }
        );
    }
}
