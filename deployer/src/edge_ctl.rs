//! Talking to the edge (services/edge): `edge ctl VERB` run inside its
//! container with `docker exec` (the image is `FROM scratch`; the edge
//! binary is its one program), answering JSON. The engine switches
//! services with it; `status` reads what the edge routes.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use bollard::Docker;
use serde::{Deserialize, Serialize};

use crate::docker::exec;

/// The edge's control command inside its image.
const CTL: [&str; 2] = ["/edge", "ctl"];

/// How long the edge waits for a new target's health, and for an old
/// target's in-flight requests to finish, before it gives up.
pub(crate) const DEPLOY_TIMEOUT: &str = "30s";
pub(crate) const DRAIN_TIMEOUT: &str = "30s";

/// One target as `edge ctl status` reports it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub(crate) struct TargetStatus {
    pub address: String,
    pub health: String,
    pub in_flight: u64,
    #[serde(default)]
    pub served: u64,
}

/// What `edge ctl status` says: per service behind the edge its targets,
/// and the certificates it serves.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub(crate) struct EdgeStatus {
    #[serde(default)]
    pub services: BTreeMap<String, Vec<TargetStatus>>,
    #[serde(default)]
    pub tls: TlsStatus,
}

/// The edge's TLS: `off`, `files` or `acme`, and the certificates in use.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub(crate) struct TlsStatus {
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub certificates: Vec<Certificate>,
    #[serde(default)]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub(crate) struct Certificate {
    pub domains: Vec<String>,
    pub not_after: String,
    #[serde(default)]
    pub issuer: String,
}

/// Runs `edge ctl ARGS` in the edge container; its JSON answer.
pub(crate) async fn ctl(
    docker: &Docker,
    edge: &str,
    args: &[&str],
) -> anyhow::Result<serde_json::Value> {
    let argv: Vec<&str> = CTL.iter().chain(args).copied().collect();
    let ran = exec(docker, edge, &argv).await?;
    if !ran.success() {
        bail!(
            "the edge refused `{}`: {}",
            args.join(" "),
            ran.stderr.trim()
        );
    }
    serde_json::from_str(ran.stdout.trim())
        .with_context(|| format!("the edge's answer to `{}` is not JSON", args.join(" ")))
}

/// What the edge routes now.
pub(crate) async fn status(docker: &Docker, edge: &str) -> anyhow::Result<EdgeStatus> {
    let value = ctl(docker, edge, &["status"]).await?;
    serde_json::from_value(value).context("the edge's status has an unexpected shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_status_reads_targets_per_service() {
        let json = serde_json::json!({
            "edge": {"pid": 1},
            "listeners": [],
            "services": {
                "api": [{"address": "172.18.0.3:5000", "health_path": "/healthz",
                         "health": "healthy", "in_flight": 2, "served": 10, "last_error": null}]
            },
            "tls": {"mode": "acme", "domains": ["school.test"], "certificates": [
                {"domains": ["school.test"], "not_after": "2027-02-26T00:00:00Z",
                 "not_after_unix": 1803859200, "issuer": "Pebble Intermediate CA"}]}
        });
        let status: EdgeStatus = serde_json::from_value(json).unwrap();
        assert_eq!(status.services["api"][0].address, "172.18.0.3:5000");
        assert_eq!(status.services["api"][0].in_flight, 2);
        assert_eq!(status.tls.certificates[0].not_after, "2027-02-26T00:00:00Z");
    }
}
