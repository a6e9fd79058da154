//! `deployer up`: build if needed, apply the stack to the local daemon,
//! wait for health, print the URLs. Ctrl-C removes what the run created.

use anyhow::bail;

use crate::commands::{StopSignal, Workspace, build, print_urls};
use crate::engine::{Action, Engine};
use crate::progress::Progress;

pub struct Options {
    pub no_build: bool,
}

pub async fn run(
    workspace: &Workspace,
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<()> {
    let docker = crate::docker::connect_local().await?;
    if !options.no_build {
        build::build(&docker, workspace, progress).await?;
    }
    let mut stop = StopSignal::install()?;
    let engine = Engine::new(&docker, progress);
    let unfinished = engine.unfinished();
    let actions = tokio::select! {
        result = engine.apply(&workspace.stack, &workspace.pipeline.seeds) => result?,
        _ = stop.received() => {
            let removed = engine.undo(&unfinished, &workspace.stack.project).await;
            bail!("interrupted: undid the {removed} unfinished step(s) of this run (new \
                   containers removed, containers it had stopped for a replacement started \
                   again); what it had finished stays");
        }
    };
    let changed = actions
        .iter()
        .filter(|(_, a)| *a != Action::Unchanged)
        .count();
    progress.println(&format!(
        "stack {} is up ({} of {} services changed)",
        workspace.stack.project,
        changed,
        actions.len()
    ));
    print_urls(&workspace.stack);
    Ok(())
}
