//! What the deployer keeps on a deploy host, in `~/student-ages/`: the lock
//! that refuses a second concurrent deploy, and the audit log of every
//! deploy (JSON lines: who, when, which version, the result).

use std::time::SystemTime;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::remote::Remote;

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub time: String,
    pub who: String,
    /// `deploy` or `rollback`.
    pub action: String,
    /// The image tag deployed.
    pub version: String,
    pub images: Vec<String>,
    /// `ok`, or what failed (and what was put back).
    pub result: String,
}

impl AuditEntry {
    pub fn ok(&self) -> bool {
        self.result == "ok"
    }
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Parses the audit log, skipping lines it cannot read (a log is for people
/// too, and a torn last line must not block a deploy).
pub fn parse_audit(text: &str) -> Vec<AuditEntry> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The versions as good deploys and rollbacks stacked them: a deploy pushes
/// its version, a rollback pops back down to its version. The last is the
/// one running; the one below it is where a rollback goes.
pub fn version_stack(entries: &[AuditEntry]) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    for entry in entries.iter().filter(|e| e.ok()) {
        if entry.action == "rollback"
            && let Some(at) = stack.iter().rposition(|v| *v == entry.version)
        {
            stack.truncate(at + 1);
            continue;
        }
        if stack.last() != Some(&entry.version) {
            stack.push(entry.version.clone());
        }
    }
    stack
}

/// The version running now, by the audit log.
pub fn running_version(entries: &[AuditEntry]) -> Option<String> {
    version_stack(entries).pop()
}

/// Where `rollback` goes without `--to`: the version below the running one.
pub fn rollback_target(entries: &[AuditEntry]) -> Option<String> {
    let mut stack = version_stack(entries);
    stack.pop();
    stack.pop()
}

/// How many versions' images stay on the host for `rollback`.
pub const KEEP_VERSIONS: usize = 3;

/// The versions whose images a deploy keeps: the one just deployed and the
/// ones below it on the version stack (where rollbacks go), newest first.
pub fn keep_versions(history: &[AuditEntry], current: &str) -> Vec<String> {
    let mut keep = vec![current.to_owned()];
    for version in version_stack(history).into_iter().rev() {
        if keep.len() >= KEEP_VERSIONS {
            break;
        }
        if !keep.contains(&version) {
            keep.push(version);
        }
    }
    keep
}

/// The host's deploy directory and its files.
pub struct HostDir {
    pub path: String,
}

impl HostDir {
    pub async fn open(remote: &Remote) -> anyhow::Result<HostDir> {
        let home = remote.run("printenv", &["HOME"]).await?;
        let path = format!("{}/{}", home.trim(), crate::remote::HOST_DIR);
        remote.run("mkdir", &["-p", &path]).await?;
        Ok(HostDir { path })
    }

    pub fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.path)
    }

    pub async fn audit(&self, remote: &Remote) -> anyhow::Result<Vec<AuditEntry>> {
        Ok(remote
            .try_run("cat", &[&self.file("audit.log")])
            .await?
            .map(|text| parse_audit(&text))
            .unwrap_or_default())
    }

    pub async fn append_audit(&self, remote: &Remote, entry: &AuditEntry) -> anyhow::Result<()> {
        let path = self.file("audit.log");
        // A write cut short (a killed deploy) leaves a line without its
        // newline: start on a fresh line so this entry is not lost with it.
        let torn = remote
            .try_run("tail", &["-c", "1", &path])
            .await?
            .is_some_and(|last| !last.is_empty() && last != "\n");
        let mut line = if torn { b"\n".to_vec() } else { Vec::new() };
        line.extend(serde_json::to_vec(entry)?);
        line.push(b'\n');
        remote.append_file(&path, &line).await
    }

    /// Takes the deploy lock (an atomic `mkdir`), or says who holds it.
    pub async fn lock(&self, remote: &Remote, who: &str) -> anyhow::Result<Lock> {
        let lock = self.file("deploy.lock");
        if remote.try_run("mkdir", &[&lock]).await?.is_none() {
            let owner = remote
                .try_run("cat", &[&format!("{lock}/owner")])
                .await?
                .unwrap_or_else(|| "someone (no owner recorded)".into());
            bail!(
                "another deploy to {} is running: the lock {lock} is held by {}. Wait for it to \
                 finish. If no deploy is running (a killed one left the lock), remove it on the \
                 host: rm -r {lock}",
                remote.target,
                owner.trim()
            );
        }
        let owner = format!("{who} (pid {}) since {}\n", std::process::id(), now());
        if let Err(e) = remote
            .write_file(&format!("{lock}/owner"), owner.as_bytes(), "644")
            .await
        {
            let _ = remote.run("rm", &["-r", &lock]).await;
            return Err(anyhow!("cannot record the owner of the lock {lock}: {e:#}"));
        }
        Ok(Lock { path: lock })
    }
}

/// The held deploy lock; `release` it when done.
pub struct Lock {
    path: String,
}

impl Lock {
    pub async fn release(self, remote: &Remote) -> anyhow::Result<()> {
        remote.run("rm", &["-r", &self.path]).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, result: &str) -> AuditEntry {
        AuditEntry {
            time: "t".into(),
            who: "w".into(),
            action: "deploy".into(),
            version: version.into(),
            images: vec![],
            result: result.into(),
        }
    }

    fn rollback(version: &str) -> AuditEntry {
        AuditEntry {
            action: "rollback".into(),
            ..entry(version, "ok")
        }
    }

    #[test]
    fn deploys_push_versions_and_rollbacks_pop_them() {
        let log = [
            entry("a", "ok"),
            entry("b", "ok"),
            entry("c", "failed: x"),
            entry("b", "ok"),
        ];
        assert_eq!(version_stack(&log), ["a", "b"]);
        assert_eq!(running_version(&log).as_deref(), Some("b"));
        assert_eq!(rollback_target(&log).as_deref(), Some("a"));
        // Rolling back twice goes further back, not back and forth.
        let log = [
            entry("a", "ok"),
            entry("b", "ok"),
            entry("c", "ok"),
            rollback("b"),
        ];
        assert_eq!(running_version(&log).as_deref(), Some("b"));
        assert_eq!(rollback_target(&log).as_deref(), Some("a"));
        assert_eq!(rollback_target(&log[..1]), None);
    }

    #[test]
    fn a_deploy_keeps_the_current_and_the_rollback_targets() {
        let history = [
            entry("v1", "ok"),
            entry("v2", "ok"),
            entry("bad", "failed, v2 restored: x"),
            entry("v3", "ok"),
            rollback("v2"),
        ];
        assert_eq!(keep_versions(&history, "v4"), ["v4", "v2", "v1"]);
        assert_eq!(keep_versions(&history[..1], "v2"), ["v2", "v1"]);
        assert_eq!(keep_versions(&[], "v1"), ["v1"]);
    }

    #[test]
    fn the_audit_log_skips_a_torn_line() {
        let mut text = serde_json::to_string(&entry("a", "ok")).unwrap();
        text.push_str("\n{\"time\": \"2026");
        assert_eq!(parse_audit(&text), [entry("a", "ok")]);
    }
}
