//! Reading the stack back from a daemon: per service its container, image,
//! state, health, uptime, ports and restarts.

use std::time::SystemTime;

use bollard::Docker;
use serde::Serialize;

use crate::docker::message;
use crate::docker::{Health, health_of, project_containers};
use crate::stack::{Stack, labels};

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub container: Option<String>,
    pub image: Option<String>,
    pub image_id: Option<String>,
    /// running, exited, created, ... or `missing`.
    pub state: String,
    /// healthy, unhealthy, starting, none.
    pub health: String,
    pub uptime_seconds: Option<u64>,
    pub ports: Vec<String>,
    pub restarts: i64,
    /// Running, and healthy if it has a healthcheck.
    pub ok: bool,
}

impl ServiceStatus {
    /// A service with no container on the daemon.
    pub fn missing(service: &str) -> ServiceStatus {
        ServiceStatus {
            service: service.to_owned(),
            container: None,
            image: None,
            image_id: None,
            state: "missing".into(),
            health: "-".into(),
            uptime_seconds: None,
            ports: Vec::new(),
            restarts: 0,
            ok: false,
        }
    }
}

pub async fn read(docker: &Docker, stack: &Stack) -> anyhow::Result<Vec<ServiceStatus>> {
    let containers = project_containers(docker, &stack.project).await?;
    let mut statuses = Vec::new();
    for service in &stack.services {
        // The container under the service's own name if there is one (a
        // replacement may have the old one set aside under another).
        let candidates: Vec<_> = containers
            .iter()
            .filter(|c| !c.oneoff && c.labels.get(labels::SERVICE) == Some(&service.name))
            .collect();
        let canonical = stack.container_name(&service.name);
        let Some(container) = candidates
            .iter()
            .find(|c| c.name == canonical)
            .or_else(|| candidates.iter().find(|c| c.running))
            .or(candidates.first())
            .copied()
        else {
            statuses.push(ServiceStatus::missing(&service.name));
            continue;
        };
        let inspect = docker
            .inspect_container(&container.id, None)
            .await
            .map_err(|e| anyhow::anyhow!("cannot inspect {}: {}", container.name, message(&e)))?;
        let state = inspect.state.clone().unwrap_or_default();
        let health = health_of(&inspect);
        let running = state.running == Some(true);
        let uptime_seconds = running
            .then_some(state.started_at.as_deref())
            .flatten()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs());
        let mut ports: Vec<String> = inspect
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .map(|map| {
                map.iter()
                    .flat_map(|(container_port, bindings)| {
                        bindings.iter().flatten().map(move |b| {
                            format!(
                                "{}:{}->{container_port}",
                                b.host_ip.as_deref().unwrap_or(""),
                                b.host_port.as_deref().unwrap_or("")
                            )
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        ports.sort();
        statuses.push(ServiceStatus {
            service: service.name.clone(),
            container: Some(container.name.clone()),
            image: inspect.config.as_ref().and_then(|c| c.image.clone()),
            image_id: inspect.image.as_ref().map(|id| short_id(id)),
            state: state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            health: match &health {
                Health::Healthy => "healthy".into(),
                Health::Starting => "starting".into(),
                Health::Unhealthy(_) => "unhealthy".into(),
                Health::NoCheck => "none".into(),
                Health::Exited(_) => "-".into(),
            },
            uptime_seconds,
            ports,
            restarts: inspect.restart_count.unwrap_or_default(),
            ok: matches!(health, Health::Healthy | Health::NoCheck),
        });
    }
    Ok(statuses)
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// A fixed-width table for people.
pub fn table(statuses: &[ServiceStatus]) -> String {
    let rows: Vec<[String; 8]> = statuses
        .iter()
        .map(|s| {
            [
                s.service.clone(),
                s.container.clone().unwrap_or_else(|| "-".into()),
                match (&s.image, &s.image_id) {
                    (Some(image), Some(id)) => format!("{image} ({id})"),
                    _ => "-".into(),
                },
                s.state.clone(),
                s.health.clone(),
                s.uptime_seconds.map_or("-".into(), uptime),
                if s.ports.is_empty() {
                    "-".into()
                } else {
                    s.ports.join(", ")
                },
                s.restarts.to_string(),
            ]
        })
        .collect();
    let header = [
        "SERVICE",
        "CONTAINER",
        "IMAGE",
        "STATE",
        "HEALTH",
        "UPTIME",
        "PORTS",
        "RESTARTS",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub fn uptime(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_is_short_and_readable() {
        assert_eq!(uptime(12), "12s");
        assert_eq!(uptime(250), "4m 10s");
        assert_eq!(uptime(7_500), "2h 5m");
        assert_eq!(uptime(3 * 86_400 + 4 * 3600 + 9), "3d 4h");
    }

    #[test]
    fn a_missing_service_shows_dashes() {
        let table = table(&[ServiceStatus::missing("api")]);
        assert_eq!(
            table,
            "SERVICE  CONTAINER  IMAGE  STATE    HEALTH  UPTIME  PORTS  RESTARTS\n\
             api      -          -      missing  -       -       -      0"
        );
    }
}
