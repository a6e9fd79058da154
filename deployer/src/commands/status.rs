//! `deployer status`: the stack on this daemon (or, with `--host`, on the
//! deploy host over SSH), as a table or JSON, with the last deploy from the
//! host's audit log, and how many records the application holds (asked as
//! pipeline.yaml's `status:` says). Exits non-zero when a service is
//! missing or unhealthy.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::host::{self, AuditEntry, HostDir, HostFlags, parse_audit};
use crate::progress::Progress;
use crate::stack::Stack;
use crate::status::{self, ServiceStatus};
use crate::workspace::Workspace;

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// Where `status` looks.
pub enum Place<'a> {
    /// The daemon on this machine (on the deploy host, that is the host's).
    Here,
    Host(&'a HostFlags),
}

/// What `status` adds to the per-service lines.
#[derive(Debug, Serialize)]
struct Overview {
    project: String,
    healthy: bool,
    services: Vec<ServiceStatus>,
    last_deploy: Option<AuditEntry>,
    /// `{"students": 6}`: the count, under the name pipeline.yaml gives it.
    #[serde(flatten)]
    records: BTreeMap<String, usize>,
    /// `{"api": "ok"}`, or why the service asked did not answer.
    #[serde(flatten)]
    answers: BTreeMap<String, String>,
}

/// Prints the status; returns whether every service is running and healthy.
pub async fn run(
    workspace: &Workspace,
    format: Format,
    place: Place<'_>,
    progress: &Progress,
) -> anyhow::Result<bool> {
    let overview = match place {
        Place::Here => {
            let docker = workspace.local_docker().await?;
            let stack = &workspace.stack;
            let services = status::read(&docker, stack).await?;
            let audit = std::fs::read_to_string(workspace.pipeline.root.join("audit.log"))
                .map(|t| parse_audit(&t))
                .unwrap_or_default();
            let port = probe_port(workspace, stack);
            overview(workspace, stack, services, audit, port).await
        }
        Place::Host(flags) => {
            let (mut remote, docker) = host::connect(workspace, flags).await?;
            let result = async {
                let stack = workspace.stack_with(&workspace.pipeline.deploy.env)?;
                let services = status::read(&docker, &stack).await?;
                let audit = HostDir::open(&remote).await?.audit(&remote).await?;
                let port = match probe_port(workspace, &stack) {
                    Some(port) => Some(remote.forward_tcp(port).await?),
                    None => None,
                };
                Ok::<_, anyhow::Error>(overview(workspace, &stack, services, audit, port).await)
            }
            .await;
            remote.close().await;
            result?
        }
    };
    match format {
        Format::Json => progress.out(&serde_json::to_string_pretty(&overview)?),
        Format::Table => progress.out(&table(&overview)),
    }
    Ok(overview.healthy)
}

fn table(overview: &Overview) -> String {
    let mut out = status::table(&overview.services);
    out.push_str("\n\n");
    match &overview.last_deploy {
        Some(e) => out.push_str(&format!(
            "last deploy: {} {} by {} at {}: {}\n",
            e.action, e.version, e.who, e.time, e.result
        )),
        None => out.push_str("last deploy: none recorded here\n"),
    }
    for (service, answer) in &overview.answers {
        match overview.records.iter().next() {
            Some((name, count)) => out.push_str(&format!("{service}: answers; {count} {name}\n")),
            None => out.push_str(&format!("{service}: {answer}\n")),
        }
    }
    if !overview.healthy {
        let bad: Vec<_> = overview
            .services
            .iter()
            .filter(|s| !s.ok)
            .map(|s| s.service.as_str())
            .collect();
        out.push_str(&format!(
            "\nnot healthy: {} (see `deployer logs SERVICE`; start with `deployer up`)\n",
            bad.join(", ")
        ));
    }
    out.trim_end().to_owned()
}

/// The host port of the service `status:` asks, if it publishes one.
fn probe_port(workspace: &Workspace, stack: &Stack) -> Option<u16> {
    let probe = workspace.pipeline.status.as_ref()?;
    stack
        .service(&probe.service)?
        .ports
        .first()?
        .host_port
        .parse()
        .ok()
}

async fn overview(
    workspace: &Workspace,
    stack: &Stack,
    services: Vec<ServiceStatus>,
    audit: Vec<AuditEntry>,
    port: Option<u16>,
) -> Overview {
    let mut records = BTreeMap::new();
    let mut answers = BTreeMap::new();
    if let Some(probe) = &workspace.pipeline.status {
        let answer = match port {
            None => "publishes no port to ask".to_owned(),
            Some(port) => match count(workspace, port).await {
                Ok(n) => {
                    records.insert(probe.records.clone(), n);
                    "ok".to_owned()
                }
                Err(e) => format!("does not answer: {e:#}"),
            },
        };
        answers.insert(probe.service.clone(), answer);
    }
    Overview {
        project: stack.project.clone(),
        healthy: services.iter().all(|s| s.ok),
        services,
        last_deploy: audit.last().cloned(),
        records,
        answers,
    }
}

/// Asks the status probe on `port` and counts what its pointer names.
async fn count(workspace: &Workspace, port: u16) -> anyhow::Result<usize> {
    let probe = workspace
        .pipeline
        .status
        .as_ref()
        .ok_or_else(|| anyhow!("pipeline.yaml has no status: section"))?;
    let mut request = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?
        .get(format!("http://127.0.0.1:{port}{}", probe.path));
    if probe.auth {
        let auth = &workspace.pipeline.auth;
        request = request.basic_auth(&auth.username, Some(auth.password.expose_secret()));
    }
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        bail!("answered {status}");
    }
    let body: serde_json::Value = response.json().await?;
    match body.pointer(&probe.count) {
        Some(serde_json::Value::Object(map)) => Ok(map.len()),
        Some(serde_json::Value::Array(list)) => Ok(list.len()),
        _ => Err(anyhow!(
            "the answer has no object or list at {}",
            probe.count
        )),
    }
}
