//! The health gate: a container counts as in service only once Docker calls
//! it healthy (or, behind the edge, once the edge does, while Docker is
//! watched for its exit); a failure carries the container's last log lines,
//! because an opaque "unhealthy" is the most common complaint against
//! deploy tools.

use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::Engine;
use crate::docker::{Health, health_of, last_logs, message};
use crate::progress::Task;
use crate::stack::Service;

/// How often the gate asks the daemon.
const POLL: Duration = Duration::from_millis(200);
/// How long a container without a healthcheck must stay up to count.
const NO_CHECK_GRACE: Duration = Duration::from_millis(500);

impl Engine {
    /// Waits until the container is healthy (or running, without a
    /// healthcheck); on failure the error carries its last log lines.
    pub(super) async fn health_gate(
        &self,
        id: &str,
        service: &Service,
        task: &Task,
    ) -> anyhow::Result<()> {
        let patience = service
            .healthcheck
            .as_ref()
            .map_or(Duration::from_secs(2), |h| {
                h.patience() + Duration::from_secs(5)
            });
        if let Some(h) = &service.healthcheck {
            task.set(&format!(
                "waiting for health ({} every {}s, {} retries, up to {}s)",
                h.test[1..].join(" "),
                h.interval.as_secs_f32(),
                h.retries,
                patience.as_secs()
            ));
        }
        let started = Instant::now();
        loop {
            let inspect = self
                .docker
                .inspect_container(id, None)
                .await
                .map_err(|e| anyhow!("cannot inspect {}: {}", service.name, message(&e)))?;
            match health_of(&inspect) {
                Health::Healthy => return Ok(()),
                Health::NoCheck if started.elapsed() > NO_CHECK_GRACE => return Ok(()),
                Health::Exited(code) => {
                    return Err(self
                        .failure(id, service, &format!("exited with code {code}"))
                        .await);
                }
                Health::Unhealthy(reason) => {
                    return Err(self
                        .failure(id, service, &format!("is unhealthy: {reason}"))
                        .await);
                }
                Health::NoCheck | Health::Starting => {}
            }
            if started.elapsed() > patience {
                return Err(self
                    .failure(
                        id,
                        service,
                        &format!("was not healthy after {}s", patience.as_secs()),
                    )
                    .await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Returns once the container has exited or been restarted by its
    /// restart policy (it exits), saying which; never while it runs.
    pub(super) async fn exits(&self, id: &str) -> String {
        loop {
            if let Ok(inspect) = self.docker.inspect_container(id, None).await {
                let restarts = inspect.restart_count.unwrap_or(0);
                if restarts > 0 {
                    return format!("exited and was restarted {restarts} time(s)");
                }
                if let Health::Exited(code) = health_of(&inspect) {
                    return format!("exited with code {code}");
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub(super) async fn failure(&self, id: &str, service: &Service, what: &str) -> anyhow::Error {
        let logs = last_logs(&self.docker, id, 20).await;
        anyhow!(
            "service {} {what}. Its last log lines:\n{}\n(see all with `deployer logs {}`)",
            service.name,
            if logs.trim().is_empty() {
                "  (no output)".to_owned()
            } else {
                logs
            },
            service.name
        )
    }
}
