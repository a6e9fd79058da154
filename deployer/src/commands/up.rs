//! `deployer up`: build if needed, apply the stack to the local daemon,
//! wait for health, print the URLs. Ctrl-C removes what the run created.

use anyhow::bail;

use crate::engine::Engine;
use crate::images;
use crate::progress::Progress;
use crate::signal::StopSignal;
use crate::stack::Stack;
use crate::workspace::Workspace;

/// Whether `up` builds first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    IfChanged,
    Skip,
}

pub async fn run(workspace: &Workspace, build: Build, progress: &Progress) -> anyhow::Result<()> {
    let docker = workspace.local_docker().await?;
    if build == Build::IfChanged {
        images::build_stack(
            &docker,
            workspace,
            &images::version_tag(&workspace.pipeline.root),
            images::Platforms::Native,
            progress,
        )
        .await?;
    }
    let mut stop = StopSignal::install()?;
    let engine = Engine::new(&docker, progress);
    let applied = tokio::select! {
        result = engine.apply(&workspace.stack, &workspace.pipeline.seeds) => result?,
        _ = stop.received() => {
            let removed = engine.undo(&workspace.stack.project).await;
            bail!("interrupted: undid the {removed} unfinished step(s) of this run (new \
                   containers removed, containers it had stopped for a replacement started \
                   again); what it had finished stays");
        }
    };
    progress.println(&format!(
        "stack {} is up ({} of {} services changed)",
        workspace.stack.project,
        applied.changed(),
        applied.len()
    ));
    progress.out(&urls(workspace, &workspace.stack));
    Ok(())
}

/// The application's URLs on this machine (pipeline.yaml's `urls:`), and a
/// curl line for the first that needs the credentials.
fn urls(workspace: &Workspace, stack: &Stack) -> String {
    let base = |service: &str| stack.entry(service).map(|e| e.url());
    let urls = &workspace.pipeline.urls;
    let width = urls.iter().map(|u| u.name.len()).max().unwrap_or(0);
    let mut out = String::from("\n");
    let mut example = None;
    for url in urls {
        if let Some(base) = base(&url.service) {
            out.push_str(&format!("  {:<width$}  {base}{}\n", url.name, url.path));
            if url.auth && example.is_none() {
                example = Some(format!("{base}{}", url.path));
            }
        }
    }
    if let Some(url) = example {
        let auth = &workspace.pipeline.auth;
        out.push_str(&format!(
            "\n  try: curl -u {}:{} -X GET {url}\n",
            auth.username, auth.password_shown
        ));
    }
    out
}
