//! `deployer push`: push the built images (version tag and `latest`) to the
//! registry of `pipeline.yaml`, after checking the credentials.

use anyhow::{anyhow, bail};

use crate::commands::Workspace;
use crate::images;
use crate::progress::Progress;
use crate::registry::Registry;

/// The registry of the pipeline, or an error saying how to name one.
pub fn registry(workspace: &Workspace) -> anyhow::Result<Registry> {
    let settings = workspace.pipeline.registry.clone().ok_or_else(|| {
        anyhow!(
            "{} has no `registry:` section: add one naming the server (e.g. \
             `server: ${{DOCKER_REGISTRY:-docker.io}}`) and the credential variables",
            workspace.pipeline.path.display()
        )
    })?;
    Ok(Registry::new(settings))
}

pub struct Options {
    /// Push images of a tree with uncommitted changes (tag `-dirty`).
    pub allow_dirty: bool,
    /// Push the images tagged this instead of the checkout's version (and
    /// not `latest`): re-publishing an older build.
    pub tag: Option<String>,
}

/// Pushes every image under the current version and `latest`; returns the
/// pushed references. The registry login was checked by the caller or is
/// checked here.
pub async fn run(
    workspace: &Workspace,
    options: &Options,
    progress: &Progress,
    login_checked: bool,
) -> anyhow::Result<Vec<String>> {
    let registry = registry(workspace)?;
    if !login_checked {
        registry.check_login().await?;
    }
    let version = match &options.tag {
        Some(tag) => tag.clone(),
        None => images::version_tag(&workspace.pipeline.root),
    };
    if version.ends_with("-dirty") && !options.allow_dirty {
        bail!(
            "the checkout has uncommitted changes (version {version}): commit them so the pushed \
             tag names a real commit, or pass --allow-dirty"
        );
    }
    let docker = crate::docker::connect_local().await?;
    let mut pushed = Vec::new();
    for spec in &workspace.pipeline.images {
        let service = workspace
            .stack
            .service(&spec.service)
            .expect("pipeline images were checked against the stack");
        let repository = images::repository(&service.image);
        let tags: &[&str] = match options.tag {
            Some(_) => &[version.as_str()],
            None => &[version.as_str(), "latest"],
        };
        for tag in tags {
            pushed.push(registry.push(&docker, repository, tag, progress).await?);
        }
    }
    for reference in &pushed {
        println!("pushed {reference}");
    }
    Ok(pushed)
}
