//! The edge as the engine drives it: telling it where a service runs now
//! (`edge ctl deploy`, which health-checks the new target, switches, and
//! drains the old before it returns), and reading what it routes
//! (`edge ctl status`). Both run inside the edge's container with `docker
//! exec`: the image is `FROM scratch`, the edge binary is its one program.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use super::Engine;
use super::undo::Made;
use crate::docker::{message, project_containers};
use crate::edge_ctl::{DEPLOY_TIMEOUT, DRAIN_TIMEOUT};
use crate::progress::Task;
use crate::stack::{EdgeTarget, Network, Service, Stack};

impl Engine {
    /// The running container of the stack's edge, if it has one.
    pub(super) async fn running_edge(&self, stack: &Stack) -> anyhow::Result<Option<String>> {
        let Some(edge) = &stack.edge else {
            return Ok(None);
        };
        let canonical = stack.container_name(&edge.service);
        let containers = project_containers(&self.docker, &stack.project).await?;
        let mut running: Vec<_> = containers
            .iter()
            .filter(|c| !c.oneoff && c.running && c.service() == edge.service)
            .collect();
        // During a hand-over two run; the new one (not yet renamed) serves.
        running.sort_by_key(|c| c.name == canonical);
        Ok(running.first().map(|c| c.id.clone()))
    }

    /// The address the edge reaches `container` at for `target`: its IP on
    /// the stack's network and the port it listens on there.
    async fn address_of(
        &self,
        stack: &Stack,
        container: &str,
        target: &EdgeTarget,
    ) -> anyhow::Result<String> {
        let service = stack
            .service(&target.service)
            .ok_or_else(|| anyhow!("the stack has no service {}", target.service))?;
        let Network::Stack(key) = &service.network else {
            bail!(
                "{} runs on the host's network; the edge reaches services on the stack's network",
                target.service
            );
        };
        let network = stack.network_name(key);
        let inspect = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| anyhow!("cannot inspect {container}: {}", message(&e)))?;
        let ip = inspect
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&network))
            .and_then(|endpoint| endpoint.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| anyhow!("{container} has no address on the network {network}"))?;
        Ok(format!("{ip}:{}", target.port))
    }

    /// Tells the edge to send `target`'s service to `container` from now
    /// on; returns once the edge has health-checked it, switched, and let
    /// the previous container's in-flight requests finish. Without a running
    /// edge there is nothing to tell (the edge, once created, is told).
    ///
    /// `watched`: the edge's check is the container's health gate. Docker
    /// is watched meanwhile, so a container that exits fails the switch at
    /// once rather than when the edge gives up; either failure carries the
    /// container's last log lines.
    pub(super) async fn route(
        &self,
        stack: &Stack,
        target: &EdgeTarget,
        container: &str,
        task: &Task,
        watched: Option<&Service>,
    ) -> anyhow::Result<()> {
        let Some(edge) = self.running_edge(stack).await? else {
            return Ok(());
        };
        let address = match (self.address_of(stack, container, target).await, watched) {
            (Ok(address), _) => address,
            (Err(error), None) => return Err(error),
            // Not running (it exited at once): say why, with its logs.
            (Err(error), Some(service)) => {
                let why = tokio::time::timeout(Duration::from_secs(2), self.exits(container))
                    .await
                    .unwrap_or_else(|_| format!("is not reachable ({error:#})"));
                return Err(self.failure(container, service, &why).await);
            }
        };
        task.set(&format!(
            "switching the edge to {address} (health {}, then draining the old)",
            target.health
        ));
        // Where the edge sends it now: put back if this run is interrupted
        // before it finishes.
        let previous = crate::edge_ctl::status(&self.docker, &edge)
            .await?
            .services
            .remove(&target.service)
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.address)
            .collect::<Vec<_>>();
        let switched = Made::Routed {
            edge: edge.clone(),
            service: target.service.clone(),
            health: target.health.clone(),
            previous,
        };
        self.unfinished.add(switched.clone());
        let args = [
            "deploy",
            &target.service,
            "--target",
            &address,
            "--health-path",
            &target.health,
            "--deploy-timeout",
            DEPLOY_TIMEOUT,
            "--drain-timeout",
            DRAIN_TIMEOUT,
        ];
        let switching = crate::edge_ctl::ctl(&self.docker, &edge, &args);
        let result = match watched {
            None => switching.await,
            Some(service) => {
                tokio::select! {
                    result = switching => match result {
                        Ok(report) => Ok(report),
                        Err(error) => Err(self
                            .failure(
                                container,
                                service,
                                &format!("never turned healthy behind the edge ({error:#})"),
                            )
                            .await),
                    },
                    // Left to time out in the edge (it then forgets the
                    // target): the previous container keeps serving.
                    exit = self.exits(container) => Err(self.failure(container, service, &exit).await),
                }
            }
        };
        self.unfinished.done(&switched);
        let report = result.with_context(|| {
            format!(
                "the edge did not switch {} to the new container",
                target.service
            )
        })?;
        if report["drained"] == false {
            self.progress.println(&format!(
                "{}: {} request(s) were still running on the old container after {DRAIN_TIMEOUT}",
                target.service, report["in_flight_left"]
            ));
        }
        Ok(())
    }

    /// Puts a service back on the addresses it had (an interrupted switch).
    pub(super) async fn route_back(
        &self,
        edge: &str,
        service: &str,
        health: &str,
        previous: &[String],
    ) -> anyhow::Result<()> {
        if previous.is_empty() {
            return Ok(());
        }
        let mut args = vec!["deploy", service];
        for address in previous {
            args.extend(["--target", address.as_str()]);
        }
        args.extend(["--health-path", health, "--drain-timeout", "0s"]);
        crate::edge_ctl::ctl(&self.docker, edge, &args)
            .await
            .map(|_| ())
    }

    /// Makes the edge route every service behind it to the container that
    /// runs it now: after the edge itself was created (it knows nothing
    /// yet) and at the end of every run (a container restarted by Docker
    /// may have a new address).
    pub(super) async fn reconcile_edge(&self, stack: &Stack) -> anyhow::Result<()> {
        let (Some(spec), Some(edge)) = (&stack.edge, self.running_edge(stack).await?) else {
            return Ok(());
        };
        let routed = crate::edge_ctl::status(&self.docker, &edge).await?.services;
        let containers = project_containers(&self.docker, &stack.project).await?;
        for target in &spec.targets {
            let canonical = stack.container_name(&target.service);
            let Some(current) = containers.iter().find(|c| c.running && c.name == canonical) else {
                continue;
            };
            let address = self.address_of(stack, &current.id, target).await?;
            let now: Vec<&str> = routed
                .get(&target.service)
                .map(|ts| ts.iter().map(|t| t.address.as_str()).collect())
                .unwrap_or_default();
            if now != [address.as_str()] {
                let task = self.progress.task(&target.service, "routing");
                self.route(stack, target, &current.id, &task, None).await?;
                task.done(&format!("routed by the edge to {address}"));
            }
        }
        Ok(())
    }
}
