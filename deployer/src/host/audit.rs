//! The audit log on a deploy host (`~/student-ages/audit.log`): one JSON
//! line per deploy, rollback or restore attempt, and what it says about which
//! version runs and where a rollback goes.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct AuditEntry {
    pub time: String,
    pub who: String,
    pub action: AuditAction,
    /// The image tag deployed.
    pub version: String,
    pub images: Vec<String>,
    pub result: AuditResult,
}

/// What an attempt tried.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuditAction {
    Deploy,
    Rollback,
    /// A data file put back (`deployer restore`); its version field names
    /// the file. It changes no version.
    Restore,
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuditAction::Deploy => "deploy",
            AuditAction::Rollback => "rollback",
            AuditAction::Restore => "restore",
        })
    }
}

/// How an attempt ended. Written as one readable string (`ok`,
/// `failed: …`, `interrupted (…)`), as the log has always held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub(crate) enum AuditResult {
    Ok,
    /// The text says what failed and what was put back; it starts `failed`.
    Failed(String),
    /// The text says what was undone; it starts `interrupted`.
    Interrupted(String),
}

impl AuditResult {
    pub(crate) fn failed(error: &anyhow::Error) -> AuditResult {
        AuditResult::Failed(format!("failed: {}", crate::errors::summary(error)))
    }

    /// A failure after which `previous` serves again.
    pub(crate) fn failed_restored(previous: &str, error: &anyhow::Error) -> AuditResult {
        AuditResult::Failed(format!(
            "failed, {previous} restored: {}",
            crate::errors::summary(error)
        ))
    }

    pub(crate) fn failed_restore_failed(
        previous: &str,
        error: &anyhow::Error,
        restore: &anyhow::Error,
    ) -> AuditResult {
        AuditResult::Failed(format!(
            "failed, and restoring {previous} failed too: {}; {}",
            crate::errors::summary(error),
            crate::errors::summary(restore)
        ))
    }

    pub(crate) fn failed_nothing_to_restore(error: &anyhow::Error) -> AuditResult {
        AuditResult::Failed(format!(
            "failed (no other version to restore): {}",
            crate::errors::summary(error)
        ))
    }

    pub(crate) fn interrupted(undone: usize) -> AuditResult {
        AuditResult::Interrupted(format!("interrupted ({undone} unfinished steps undone)"))
    }
}

impl From<String> for AuditResult {
    fn from(text: String) -> AuditResult {
        if text == "ok" {
            AuditResult::Ok
        } else if text.starts_with("interrupted") {
            AuditResult::Interrupted(text)
        } else {
            AuditResult::Failed(text)
        }
    }
}

impl From<AuditResult> for String {
    fn from(result: AuditResult) -> String {
        result.to_string()
    }
}

impl std::fmt::Display for AuditResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditResult::Ok => f.write_str("ok"),
            AuditResult::Failed(text) | AuditResult::Interrupted(text) => f.write_str(text),
        }
    }
}

pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Parses the audit log, skipping lines it cannot read (a log is for people
/// too, and a torn last line must not block a deploy).
pub(crate) fn parse_audit(text: &str) -> Vec<AuditEntry> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The versions as good deploys and rollbacks stacked them: a deploy pushes
/// its version, a rollback pops back down to its version. The last is the
/// one running; the one below it is where a rollback goes.
pub(crate) fn version_stack(entries: &[AuditEntry]) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    for entry in entries
        .iter()
        .filter(|e| e.result == AuditResult::Ok && e.action != AuditAction::Restore)
    {
        if entry.action == AuditAction::Rollback
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

/// The last deploy or rollback attempt (a restore deploys nothing).
pub(crate) fn last_deploy(entries: &[AuditEntry]) -> Option<AuditEntry> {
    entries
        .iter()
        .rev()
        .find(|e| e.action != AuditAction::Restore)
        .cloned()
}

/// The version running now, by the audit log.
pub(crate) fn running_version(entries: &[AuditEntry]) -> Option<String> {
    version_stack(entries).pop()
}

/// Where `rollback` goes without `--to`: the version below the running one.
pub(crate) fn rollback_target(entries: &[AuditEntry]) -> Option<String> {
    let mut stack = version_stack(entries);
    stack.pop();
    stack.pop()
}

/// How many versions' images stay on the host for `rollback`.
pub(crate) const KEEP_VERSIONS: usize = 3;

/// The versions whose images a deploy keeps: the one just deployed and the
/// ones below it on the version stack (where rollbacks go), newest first.
pub(crate) fn keep_versions(history: &[AuditEntry], current: &str) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, result: &str) -> AuditEntry {
        AuditEntry {
            time: "t".into(),
            who: "w".into(),
            action: AuditAction::Deploy,
            version: version.into(),
            images: vec![],
            result: AuditResult::from(result.to_owned()),
        }
    }

    fn rollback(version: &str) -> AuditEntry {
        AuditEntry {
            action: AuditAction::Rollback,
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

    #[test]
    fn lines_keep_the_format_hosts_already_hold() {
        let line = r#"{"time":"2026-11-28T10:00:00Z","who":"ci@x","action":"rollback","version":"v1","images":["api:v1"],"result":"interrupted (2 unfinished steps undone)"}"#;
        let parsed = parse_audit(line);
        assert_eq!(parsed[0].action, AuditAction::Rollback);
        assert_eq!(
            parsed[0].result,
            AuditResult::Interrupted("interrupted (2 unfinished steps undone)".into())
        );
        assert_eq!(serde_json::to_string(&parsed[0]).unwrap(), line);
        let error = anyhow::anyhow!("pull failed\ndetails");
        assert_eq!(
            AuditResult::failed_restored("v1", &error).to_string(),
            "failed, v1 restored: pull failed"
        );
    }
}
