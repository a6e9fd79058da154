//! `deployer down`: remove the stack's containers and network, found by
//! their project label; the data volume stays unless asked.

use crate::commands::Workspace;
use crate::engine::Engine;
use crate::progress::Progress;

pub async fn run(workspace: &Workspace, volumes: bool, progress: &Progress) -> anyhow::Result<()> {
    let docker = crate::docker::connect_local().await?;
    let engine = Engine::new(&docker, progress);
    let removed = engine.down(&workspace.stack.project, volumes).await?;
    for item in &removed {
        println!("removed {item}");
    }
    if removed.is_empty() {
        println!(
            "nothing to remove: the stack {} is not here",
            workspace.stack.project
        );
    }
    if !volumes {
        println!("data volumes kept (remove them too with `deployer down --volumes`)");
    }
    Ok(())
}
