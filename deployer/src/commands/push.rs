//! `deployer push`: push the built images (version tag and `latest`, or
//! one `--tag`) to the registry of `pipeline.yaml`, after checking the
//! credentials.

use crate::images;
use crate::progress::Progress;
use crate::registry::{Dirty, Latest};
use crate::workspace::Workspace;

pub struct Options {
    pub dirty: Dirty,
    /// Push the images tagged this instead of the checkout's version (and
    /// not `latest`): re-publishing an older build.
    pub tag: Option<String>,
    pub latest: Latest,
}

pub async fn run(
    workspace: &Workspace,
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<()> {
    let registry = workspace.registry()?;
    registry.check_login().await?;
    registry.check_push(&workspace.repositories()).await?;
    let docker = workspace.local_docker().await?;
    let pushed = match &options.tag {
        Some(tag) => {
            registry
                .push_tag(
                    &docker,
                    &workspace.repositories(),
                    tag,
                    options.dirty,
                    progress,
                )
                .await?
        }
        None => {
            let version = images::version_tag(&workspace.pipeline.root);
            registry
                .push_release(
                    &docker,
                    &workspace.repositories(),
                    &workspace.pipeline.platforms,
                    &version,
                    options.dirty,
                    options.latest,
                    progress,
                )
                .await?
        }
    };
    for reference in &pushed {
        progress.out(&format!("pushed {reference}"));
    }
    Ok(())
}
