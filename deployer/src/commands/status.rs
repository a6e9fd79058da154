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

use crate::edge_ctl::EdgeStatus;
use crate::host::{self, AuditEntry, HostDir, HostFlags, parse_audit};
use crate::progress::Progress;
use crate::stack::{Entry, Stack};
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
    /// What the edge routes: per service its targets with health and
    /// in-flight requests, and the certificates it serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    edge: Option<EdgeStatus>,
}

/// Prints the status; returns whether every service is running and healthy.
pub async fn run(
    workspace: &Workspace,
    format: Format,
    place: Place<'_>,
    progress: &Progress,
) -> anyhow::Result<bool> {
    if matches!(place, Place::Here) && workspace.pipeline.deploy.swarm.is_some() {
        return swarm_status(workspace, format, progress).await;
    }
    let overview = match place {
        Place::Here => {
            let docker = workspace.local_docker().await?;
            let stack = &workspace.stack;
            let services = status::read(&docker, stack).await?;
            let audit = std::fs::read_to_string(workspace.pipeline.root.join("audit.log"))
                .map(|t| parse_audit(&t))
                .unwrap_or_default();
            let url = probe_entry(workspace, stack).map(|e| e.url());
            let edge = edge_status(&docker, stack, &services).await;
            overview(workspace, stack, services, audit, url, edge).await
        }
        Place::Host(flags) => {
            let (mut remote, docker, _) = host::connect(workspace, flags).await?;
            let result = async {
                let stack = workspace.stack_with(&workspace.pipeline.deploy.env)?;
                let services = status::read(&docker, &stack).await?;
                let audit = HostDir::open(&remote).await?.audit(&remote).await?;
                let url = match probe_entry(workspace, &stack) {
                    Some(entry) => Some(format!(
                        "http://127.0.0.1:{}",
                        remote.forward_tcp(&entry.host_ip, entry.port).await?
                    )),
                    None => None,
                };
                let edge = edge_status(&docker, &stack, &services).await;
                Ok::<_, anyhow::Error>(
                    overview(workspace, &stack, services, audit, url, edge).await,
                )
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
    if let Some(edge) = &overview.edge {
        out.push_str("edge routes:\n");
        for (service, targets) in &edge.services {
            for t in targets {
                out.push_str(&format!(
                    "  {service:<10} -> {:<22} {:<9} in flight {:<3} served {}\n",
                    t.address, t.health, t.in_flight, t.served
                ));
            }
        }
        for cert in &edge.tls.certificates {
            out.push_str(&format!(
                "certificate: {} until {} ({})\n",
                cert.domains.join(", "),
                cert.not_after,
                cert.issuer
            ));
        }
        if let Some(error) = &edge.tls.last_error {
            out.push_str(&format!("certificate error: {error}\n"));
        }
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

/// Where the service `status:` asks is reached, if anywhere.
fn probe_entry(workspace: &Workspace, stack: &Stack) -> Option<Entry> {
    let probe = workspace.pipeline.status.as_ref()?;
    stack.entry(&probe.service)
}

async fn overview(
    workspace: &Workspace,
    stack: &Stack,
    services: Vec<ServiceStatus>,
    audit: Vec<AuditEntry>,
    url: Option<String>,
    edge: Option<EdgeStatus>,
) -> Overview {
    let (records, answers) = records(workspace, url).await;
    Overview {
        project: stack.project.clone(),
        healthy: services.iter().all(|s| s.ok),
        services,
        last_deploy: host::last_deploy(&audit),
        records,
        answers,
        edge,
    }
}

/// `status` of a swarm: the same top-level keys as one host's (`project`,
/// `healthy`, `services`, `last_deploy`, the record count), each service
/// with its replicas, and `swarm`: every node with its tasks, the quorum.
#[derive(Debug, Serialize)]
struct SwarmOverview {
    project: String,
    healthy: bool,
    services: Vec<crate::swarm::SwarmService>,
    last_deploy: Option<AuditEntry>,
    #[serde(flatten)]
    records: BTreeMap<String, usize>,
    #[serde(flatten)]
    answers: BTreeMap<String, String>,
    swarm: SwarmPart,
}

#[derive(Debug, Serialize)]
struct SwarmPart {
    nodes: Vec<crate::swarm::SwarmNode>,
    quorum: crate::swarm::Quorum,
    unreachable: Vec<crate::swarm::Unreachable>,
}

async fn swarm_status(
    workspace: &Workspace,
    format: Format,
    progress: &Progress,
) -> anyhow::Result<bool> {
    let crate::host::DeployTarget::Swarm(swarm, ssh) =
        crate::host::deploy_target(workspace, &HostFlags::default())?
    else {
        unreachable!("without --host, a configured swarm is the target")
    };
    let stack = workspace.stack_with(&workspace.pipeline.deploy.env)?;
    let entry = probe_entry(workspace, &stack);
    // Connecting says nothing: stdout is the table or the JSON.
    let (status, audit, url, nodes) =
        crate::swarm::read_status(&swarm, &ssh, &stack, entry, &Progress::hidden()).await?;
    let (records, answers) = records(workspace, url).await;
    crate::swarm::close_all(nodes).await;
    let overview = SwarmOverview {
        project: stack.project.clone(),
        healthy: status.healthy(),
        services: status.services.clone(),
        last_deploy: host::last_deploy(&audit),
        records,
        answers,
        swarm: SwarmPart {
            nodes: status.nodes.clone(),
            quorum: status.quorum.clone(),
            unreachable: status.unreachable.clone(),
        },
    };
    match format {
        Format::Json => progress.out(&serde_json::to_string_pretty(&overview)?),
        Format::Table => {
            let mut out = crate::swarm::status_table(&status);
            out.push_str("\n\n");
            match &overview.last_deploy {
                Some(e) => out.push_str(&format!(
                    "last deploy: {} {} by {} at {}: {}\n",
                    e.action, e.version, e.who, e.time, e.result
                )),
                None => out.push_str("last deploy: none recorded\n"),
            }
            for (service, answer) in &overview.answers {
                match overview.records.iter().next() {
                    Some((name, count)) => out.push_str(&format!(
                        "{service}: answers through the data host's edge; {count} {name}\n"
                    )),
                    None => out.push_str(&format!("{service}: {answer}\n")),
                }
            }
            if !overview.healthy {
                let mut bad: Vec<String> = overview
                    .services
                    .iter()
                    .filter(|s| !s.ok)
                    .map(|s| s.service.clone())
                    .collect();
                bad.extend(
                    status
                        .down()
                        .map(|n| format!("node {} ({}) is {}", n.hostname, n.addr, n.state)),
                );
                bad.extend(
                    status
                        .unreachable
                        .iter()
                        .map(|u| format!("{} cannot be reached", u.host)),
                );
                if !status.quorum.ok {
                    bad.push("the managers' quorum is lost".into());
                }
                out.push_str(&format!("\nnot healthy: {}\n", bad.join("; ")));
            }
            progress.out(out.trim_end());
        }
    }
    Ok(overview.healthy)
}

/// The record count `status:` asks for at `url`, or why there is none.
async fn records(
    workspace: &Workspace,
    url: Option<String>,
) -> (BTreeMap<String, usize>, BTreeMap<String, String>) {
    let mut records = BTreeMap::new();
    let mut answers = BTreeMap::new();
    if let Some(probe) = &workspace.pipeline.status {
        let answer = match url {
            None => "is reached on no port here".to_owned(),
            Some(url) => match count(workspace, &url).await {
                Ok(n) => {
                    records.insert(probe.records.clone(), n);
                    "ok".to_owned()
                }
                Err(e) => format!("does not answer: {e:#}"),
            },
        };
        answers.insert(probe.service.clone(), answer);
    }
    (records, answers)
}

/// What the stack's edge routes, if it runs (a view: its absence or an
/// error leaves the rest of the status as it is).
async fn edge_status(
    docker: &bollard::Docker,
    stack: &Stack,
    services: &[ServiceStatus],
) -> Option<EdgeStatus> {
    let edge = stack.edge.as_ref()?;
    let container = services
        .iter()
        .find(|s| s.service == edge.service && s.state == "running")?
        .container
        .clone()?;
    crate::edge_ctl::status(docker, &container).await.ok()
}

/// Asks the status probe on `port` and counts what its pointer names.
async fn count(workspace: &Workspace, base: &str) -> anyhow::Result<usize> {
    let probe = workspace
        .pipeline
        .status
        .as_ref()
        .ok_or_else(|| anyhow!("pipeline.yaml has no status: section"))?;
    let mut request = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?
        .get(format!("{base}{}", probe.path));
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
