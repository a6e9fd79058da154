//! `deployer test`: run the images in a throw-away project and run
//! pipeline.yaml's acceptance checks against them; always tear down. The
//! images are this checkout's version, or those TAG names.

use crate::progress::Progress;
use crate::workspace::Workspace;

pub async fn run(workspace: &Workspace, progress: &Progress) -> anyhow::Result<()> {
    // This checkout's images unless TAG names others.
    let version = workspace
        .var("TAG")
        .unwrap_or_else(|| crate::images::version_tag(&workspace.pipeline.root));
    crate::checks::test_images(workspace, &version, progress).await
}
