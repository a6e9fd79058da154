//! `deployer backup` and `restore` against a swarm: the data file lives on
//! the data host (`deploy.swarm.data`), where the one API task runs; the
//! lock and the audit log are on the first manager, as for a deploy.

use std::path::Path;

use anyhow::{Context, anyhow};

use super::{Node, close_all, connect_all, connect_one};
use crate::backup;
use crate::config::pipeline::SwarmSettings;
use crate::engine::Engine;
use crate::host::{AuditAction, AuditEntry, AuditResult, HostDir};
use crate::progress::Progress;
use crate::remote::ConnectOptions;
use crate::signal::StopSignal;
use crate::workspace::Workspace;

/// Saves the data host's live data file(s) into `dir`; connects to the
/// data host only.
pub(crate) async fn backup(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
    dir: &Path,
    progress: &Progress,
) -> anyhow::Result<()> {
    let stack = workspace.host_stack("latest")?;
    let host = &swarm.hosts[swarm.data];
    let line = progress.task(&host.target, "connecting to the data host");
    let node = connect_one(swarm.data, host, ssh).await.inspect_err(|_| {
        line.fail("cannot connect");
    })?;
    line.done(&format!("connected, Docker {}", node.version));
    let saved = backup::save_all(
        &Engine::new(&node.docker, progress),
        &stack,
        &workspace.pipeline.seeds,
        dir,
        &node.target,
        progress,
    )
    .await;
    close_all(vec![node]).await;
    saved
}

/// Puts the backup `file` (read and checked: `restore`) back through the
/// API on the data host, under the swarm's lock, after saving the live file
/// into `dir`; one audit line.
pub(crate) async fn restore(
    workspace: &Workspace,
    swarm: &SwarmSettings,
    ssh: &ConnectOptions,
    file: &Path,
    restore: backup::Restore,
    dir: &Path,
    progress: &Progress,
) -> anyhow::Result<()> {
    let backup::Restore {
        bytes,
        students,
        stack,
        seed,
        entry,
    } = restore;
    let mut nodes = connect_all(swarm, ssh, progress).await?;
    let result = async {
        let dir_on_keeper = HostDir::open(&nodes[0].remote).await?;
        let who = crate::host::who(workspace);
        let mut stop = StopSignal::install()?;
        let lock = dir_on_keeper.lock(&nodes[0].remote, &who).await?;
        let work = async {
            let data: &mut Node = &mut nodes[swarm.data];
            backup::save_all(
                &Engine::new(&data.docker, progress),
                &stack,
                std::slice::from_ref(&seed),
                dir,
                &data.target,
                progress,
            )
            .await
            .context("the live data could not be saved first, so nothing was restored")?;
            let local = data.remote.forward_tcp(&entry.host_ip, entry.port).await?;
            backup::put_back(
                &format!("http://127.0.0.1:{local}"),
                &workspace.pipeline.auth,
                bytes,
            )
            .await
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            _ = stop.received() => Err(anyhow!(
                "interrupted: if the API had the file already, it replaced the data in one \
                 write; `deployer status` says how many students there are"
            )),
        };
        let keeper = &nodes[0];
        let entry = AuditEntry {
            time: crate::host::now(),
            who,
            action: AuditAction::Restore,
            version: file.display().to_string(),
            images: Vec::new(),
            result: match &outcome {
                Ok(_) => AuditResult::Ok,
                Err(error) => AuditResult::failed(error),
            },
        };
        let recorded = dir_on_keeper.append_audit(&keeper.remote, &entry).await;
        let released = lock.release(&keeper.remote).await;
        let (before, after) = outcome?;
        recorded.context("the restore finished but cannot be recorded")?;
        released?;
        progress.println(&format!(
            "restored {} ({students} students) on {}: {before} students before, {after} now",
            file.display(),
            nodes[swarm.data].target
        ));
        anyhow::Ok(())
    }
    .await;
    close_all(nodes).await;
    result
}
