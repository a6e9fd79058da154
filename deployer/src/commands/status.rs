//! `deployer status`: the stack on this daemon, as a table or JSON; exits
//! non-zero when a service is missing or unhealthy.

use crate::commands::Workspace;
use crate::status;

/// Prints the status; returns whether every service is running and healthy.
pub async fn run(workspace: &Workspace, json: bool) -> anyhow::Result<bool> {
    let docker = crate::docker::connect_local().await?;
    let statuses = status::read(&docker, &workspace.stack).await?;
    let healthy = statuses.iter().all(|s| s.ok);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "project": workspace.stack.project,
                "healthy": healthy,
                "services": statuses,
            }))?
        );
    } else {
        println!("{}", status::table(&statuses));
        if !healthy {
            let bad: Vec<_> = statuses
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
    Ok(healthy)
}
