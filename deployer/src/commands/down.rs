//! `deployer down`: remove the stack's containers and network, found by
//! their project label; the data volume stays unless asked.

use crate::engine::{Engine, Volumes};
use crate::progress::Progress;
use crate::workspace::Workspace;

pub async fn run(
    workspace: &Workspace,
    volumes: Volumes,
    progress: &Progress,
) -> anyhow::Result<()> {
    let docker = workspace.local_docker().await?;
    let engine = Engine::new(&docker, progress);
    let removed = engine.down(&workspace.stack.project, volumes).await?;
    for item in &removed {
        progress.out(&format!("removed {item}"));
    }
    if removed.is_empty() {
        progress.out(&format!(
            "nothing to remove: the stack {} is not here",
            workspace.stack.project
        ));
    }
    if volumes == Volumes::Keep {
        progress.out("data volumes kept (remove them too with `deployer down --volumes`)");
    }
    Ok(())
}
