//! `deployer test`: run the images in a throw-away project and run
//! pipeline.yaml's acceptance checks against them; always tear down.

use crate::progress::Progress;
use crate::workspace::Workspace;

pub async fn run(workspace: &Workspace, progress: &Progress) -> anyhow::Result<()> {
    crate::checks::test_images(workspace, progress).await
}
