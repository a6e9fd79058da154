//! A deploy host, connected and locked: the one skeleton every command that
//! changes a host runs in (after Kamal's `with_lock`).
//!
//! [`with_locked_host`] connects (SSH and the forwarded Docker socket),
//! catches Ctrl-C and SIGTERM from before the lock is taken, takes the lock,
//! runs the command's steps, and however they end — done, failed or
//! interrupted — leaves exactly one line in the audit log, undoes what the
//! engine left half-made on an interrupt, releases the lock and closes the
//! connection. The steps only say what they do.

use anyhow::anyhow;
use bollard::Docker;

use super::{AuditAction, AuditEntry, AuditResult, HostDir, HostFlags, now, who};
use crate::engine::Engine;
use crate::progress::Progress;
use crate::remote::Remote;
use crate::setup::Arch;
use crate::signal::StopSignal;
use crate::workspace::Workspace;

/// What the steps of a command get: the host, its daemon, its deploy
/// directory, and an engine for its daemon.
pub(crate) struct LockedHost {
    pub remote: Remote,
    pub docker: Docker,
    pub dir: HostDir,
    pub engine: Engine,
    /// The host's CPU architecture, as Docker names it.
    pub arch: Arch,
    record: Record,
}

/// This attempt's audit line, until it is written.
struct Record {
    who: String,
    action: AuditAction,
    version: String,
    images: Vec<String>,
    written: bool,
}

impl LockedHost {
    /// The version this attempt is about, once the steps know it.
    pub(crate) fn set_version(&mut self, version: &str) {
        self.record.version = version.to_owned();
    }

    /// The images this attempt brought or put in service.
    pub(crate) fn set_images(&mut self, images: Vec<String>) {
        self.record.images = images;
    }

    /// The host's audit log so far.
    pub(crate) async fn history(&self) -> anyhow::Result<Vec<AuditEntry>> {
        self.dir.audit(&self.remote).await
    }

    /// Writes this attempt's audit line (once; later calls do nothing). From
    /// then on an interrupt no longer undoes anything: what was recorded
    /// stands.
    pub(crate) async fn record(&mut self, result: AuditResult) -> anyhow::Result<()> {
        if self.record.written {
            return Ok(());
        }
        let entry = AuditEntry {
            time: now(),
            who: self.record.who.clone(),
            action: self.record.action,
            version: self.record.version.clone(),
            images: self.record.images.clone(),
            result,
        };
        self.dir.append_audit(&self.remote, &entry).await?;
        self.record.written = true;
        Ok(())
    }
}

/// Runs `steps` on the connected, locked host; see the module doc.
/// `version` is what the attempt is about when known up front (`deploy`),
/// else the steps set it (`rollback` reads it from the log).
pub(crate) async fn with_locked_host<T>(
    workspace: &Workspace,
    flags: &HostFlags,
    progress: &Progress,
    action: AuditAction,
    version: Option<&str>,
    steps: impl AsyncFnOnce(&mut LockedHost) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let (remote, docker, arch) = super::connect(workspace, flags).await?;
    progress.println(&format!("connected to {}", remote.target));
    let dir = match HostDir::open(&remote).await {
        Ok(dir) => dir,
        Err(e) => {
            remote.close().await;
            return Err(e);
        }
    };
    let mut host = LockedHost {
        engine: Engine::new(&docker, progress).with_settings(workspace.pipeline.deploy.sources()),
        remote,
        docker,
        dir,
        arch,
        record: Record {
            who: who(workspace),
            action,
            version: version.unwrap_or("(unknown)").to_owned(),
            images: Vec::new(),
            written: false,
        },
    };
    let result = locked(&mut host, workspace, action, steps).await;
    host.remote.close().await;
    result
}

async fn locked<T>(
    host: &mut LockedHost,
    workspace: &Workspace,
    action: AuditAction,
    steps: impl AsyncFnOnce(&mut LockedHost) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    // Caught from before the lock is taken, so no signal can leave it held.
    let mut stop = StopSignal::install()?;
    let lock = host.dir.lock(&host.remote, &host.record.who).await?;
    let finished = {
        let work = steps(&mut *host);
        tokio::select! {
            outcome = work => Some(outcome),
            _ = stop.received() => None,
        }
    };
    let outcome = match finished {
        Some(Ok(value)) => match host.record(AuditResult::Ok).await {
            Ok(()) => Ok(value),
            Err(e) => Err(e.context(format!("the {action} finished but cannot be recorded"))),
        },
        Some(Err(error)) => {
            // Failed before the steps recorded it (a pull, reading the
            // log): still one line, so every attempt is in the log.
            let _ = host.record(AuditResult::failed(&error)).await;
            Err(error)
        }
        None if host.record.written => Err(anyhow!(
            "interrupted after the {action} of {} was recorded; it stands as recorded",
            host.record.version
        )),
        None => {
            let undone = host.engine.undo(&workspace.stack.project).await;
            let _ = host.record(AuditResult::interrupted(undone)).await;
            Err(anyhow!(
                "interrupted: the {action} stopped; {undone} unfinished step(s) were undone (new \
                 containers removed, replaced ones started again). Check with `deployer status \
                 --host {}`",
                host.remote.target
            ))
        }
    };
    let released = lock.release(&host.remote).await;
    let value = outcome?;
    released?;
    Ok(value)
}
