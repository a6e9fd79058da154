//! `deployer status`: the stack on this daemon (or, with `--host`, on the
//! deploy host over SSH), as a table or JSON, with the last deploy from the
//! host's audit log, the number of students, and whether the API answers.
//! Exits non-zero when a service is missing or unhealthy.

use std::time::Duration;

use serde::Serialize;

use crate::commands::Workspace;
use crate::commands::deploy::{self, HostFlags};
use crate::host::{AuditEntry, HostDir, parse_audit};
use crate::stack::Stack;
use crate::status::{self, ServiceStatus};

/// What `status` adds to the per-service lines.
#[derive(Debug, Serialize)]
struct Overview {
    project: String,
    healthy: bool,
    services: Vec<ServiceStatus>,
    last_deploy: Option<AuditEntry>,
    /// Students in the data file, as the API reports them.
    students: Option<usize>,
    /// `ok`, or why the API did not answer.
    api: String,
}

/// Prints the status; returns whether every service is running and healthy.
pub async fn run(
    workspace: &Workspace,
    json: bool,
    host: Option<&HostFlags>,
) -> anyhow::Result<bool> {
    let overview = match host {
        None => {
            let docker = crate::docker::connect_local().await?;
            let stack = &workspace.stack;
            let services = status::read(&docker, stack).await?;
            let audit = std::fs::read_to_string(workspace.pipeline.root.join("audit.log"))
                .map(|t| parse_audit(&t))
                .unwrap_or_default();
            let api_port = published_port(stack, "api");
            overview(workspace, stack, services, audit, api_port).await
        }
        Some(flags) => {
            let (mut remote, docker) = deploy::connect(workspace, flags).await?;
            let result = async {
                let stack = workspace.stack_with(&workspace.pipeline.deploy.env)?;
                let services = status::read(&docker, &stack).await?;
                let audit = HostDir::open(&remote).await?.audit(&remote).await?;
                let api_port = match published_port(&stack, "api") {
                    Some(port) => Some(remote.forward_tcp(port).await?),
                    None => None,
                };
                Ok::<_, anyhow::Error>(overview(workspace, &stack, services, audit, api_port).await)
            }
            .await;
            remote.close().await;
            result?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&overview)?);
    } else {
        println!("{}", status::table(&overview.services));
        println!();
        match &overview.last_deploy {
            Some(e) => println!(
                "last deploy: {} {} by {} at {}: {}",
                e.action, e.version, e.who, e.time, e.result
            ),
            None => println!("last deploy: none recorded here"),
        }
        match overview.students {
            Some(n) => println!("API: answers; {n} students in the data file"),
            None => println!("API: {}", overview.api),
        }
        if !overview.healthy {
            let bad: Vec<_> = overview
                .services
                .iter()
                .filter(|s| !s.ok)
                .map(|s| s.service.as_str())
                .collect();
            println!(
                "\nnot healthy: {} (see `deployer logs SERVICE`; start with `deployer up`)",
                bad.join(", ")
            );
        }
    }
    Ok(overview.healthy)
}

fn published_port(stack: &Stack, service: &str) -> Option<u16> {
    stack
        .service(service)?
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
    api_port: Option<u16>,
) -> Overview {
    let (students, api) = match api_port {
        None => (None, "publishes no port to ask".to_owned()),
        Some(port) => match count_students(workspace, port).await {
            Ok(n) => (Some(n), "ok".to_owned()),
            Err(e) => (None, format!("does not answer: {e:#}")),
        },
    };
    Overview {
        project: stack.project.clone(),
        healthy: services.iter().all(|s| s.ok),
        services,
        last_deploy: audit.last().cloned(),
        students,
        api,
    }
}

async fn count_students(workspace: &Workspace, port: u16) -> anyhow::Result<usize> {
    let auth = &workspace.pipeline.auth;
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?
        .get(format!(
            "http://127.0.0.1:{port}/supmit/api/v1.0/get_student_ages"
        ))
        .basic_auth(&auth.username, Some(&auth.password))
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("answered {status}");
    }
    let body: serde_json::Value = response.json().await?;
    body["student_ages"]
        .as_object()
        .map(|o| o.len())
        .ok_or_else(|| anyhow::anyhow!("the answer has no student_ages object"))
}
