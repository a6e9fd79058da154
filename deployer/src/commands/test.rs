//! `deployer test`: run the images in a throw-away project (own network,
//! loopback ports the daemon picks, a fresh copy of the seed data), run the
//! acceptance checks of `pipeline.yaml`, always tear down.

use std::collections::HashMap;

use anyhow::{anyhow, bail};

use crate::checks;
use crate::commands::{StopSignal, Workspace};
use crate::engine::{Engine, project_containers};
use crate::progress::Progress;
use crate::stack::labels;

pub async fn run(workspace: &Workspace, progress: &Progress) -> anyhow::Result<()> {
    let docker = crate::docker::connect_local().await?;
    let mut stack = workspace.stack.clone();
    stack.project = format!("{}-test-{}", stack.project, std::process::id());
    for service in &mut stack.services {
        service.restart = "no".into();
        for port in &mut service.ports {
            port.host_ip = "127.0.0.1".into();
            port.host_port = String::new();
        }
    }
    let mut stop = StopSignal::install()?;
    let engine = Engine::new(&docker, progress);
    progress.println(&format!("test project {}", stack.project));
    let result = tokio::select! {
        result = run_checks(&engine, &docker, &stack, workspace) => result,
        _ = stop.received() => Err(anyhow!("interrupted")),
    };
    let teardown = engine.down(&stack.project, true).await;
    progress.println(&format!("test project {} removed", stack.project));
    let failed = result?;
    teardown?;
    if failed > 0 {
        bail!(
            "{failed} of {} acceptance checks failed (see the FAIL lines above); nothing was released",
            workspace.pipeline.checks.len()
        );
    }
    Ok(())
}

/// Applies the throw-away stack and runs the checks; the number failed.
async fn run_checks(
    engine: &Engine<'_>,
    docker: &bollard::Docker,
    stack: &crate::stack::Stack,
    workspace: &Workspace,
) -> anyhow::Result<usize> {
    engine.apply(stack, &workspace.pipeline.seeds).await?;
    let mut base_urls = HashMap::new();
    for container in project_containers(docker, &stack.project).await? {
        let service = container
            .labels
            .get(labels::SERVICE)
            .cloned()
            .unwrap_or_default();
        let inspect = docker.inspect_container(&container.id, None).await?;
        let port = inspect
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|ports| {
                ports
                    .into_values()
                    .flatten()
                    .flatten()
                    .find_map(|b| b.host_port.filter(|p| !p.is_empty()))
            });
        if let Some(port) = port {
            base_urls.insert(service, format!("http://127.0.0.1:{port}"));
        }
    }
    let outcomes = checks::run(
        &workspace.pipeline.checks,
        &base_urls,
        &workspace.pipeline.auth,
    )
    .await;
    let mut failed = 0;
    for outcome in &outcomes {
        match &outcome.failure {
            None => println!("PASS  {}", outcome.name),
            Some(why) => {
                failed += 1;
                println!("FAIL  {}: {why}", outcome.name);
            }
        }
    }
    Ok(failed)
}
