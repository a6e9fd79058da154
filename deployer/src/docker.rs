//! Reaching a Docker daemon, and turning its failures into messages a user
//! can act on.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use bollard::{ClientVersion, Docker};

/// Docker 20.10 speaks API 1.41 and refuses newer clients; every daemon
/// since speaks it too.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// The local daemon: `DOCKER_HOST` (a `unix://` socket) or
/// `/var/run/docker.sock`.
pub async fn connect_local() -> anyhow::Result<Docker> {
    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) => path.to_owned(),
            None => {
                return Err(anyhow!(
                    "DOCKER_HOST={host} is not supported: the deployer talks to a unix socket \
                     (unix:///var/run/docker.sock); remote hosts are reached with \
                     `deployer deploy`, over SSH"
                ));
            }
        },
        _ => "/var/run/docker.sock".to_owned(),
    };
    connect_unix(&socket).await
}

/// A daemon behind a unix socket; pings it so a dead or forbidden daemon
/// fails here, with advice, rather than halfway through a command.
pub async fn connect_unix(socket: &str) -> anyhow::Result<Docker> {
    if !Path::new(socket).exists() {
        return Err(anyhow!(
            "no Docker daemon: {socket} does not exist. Start Docker (`sudo systemctl start \
             docker`, or `scripts/ensure-docker` in this repo) or point DOCKER_HOST at its socket"
        ));
    }
    let docker = Docker::connect_with_unix(socket, 120, &API_VERSION)
        .with_context(|| format!("cannot use the Docker socket {socket}"))?;
    match tokio::time::timeout(Duration::from_secs(10), docker.ping()).await {
        Err(_) => Err(anyhow!(
            "the Docker daemon at {socket} did not answer within 10 s; is it starting or hung? \
             (`systemctl status docker`)"
        )),
        Ok(Err(error)) => Err(explain_connect(socket, error)),
        Ok(Ok(_)) => Ok(docker),
    }
}

fn explain_connect(socket: &str, error: bollard::errors::Error) -> anyhow::Error {
    // The useful part (the OS error) is at the bottom of the source chain.
    let mut text = error.to_string().to_lowercase();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&cause.to_string().to_lowercase());
        source = cause.source();
    }
    if text.contains("permission denied") {
        anyhow!(
            "permission denied on the Docker socket {socket}: add yourself to the `docker` group \
             (`sudo usermod -aG docker $USER`, then log in again) or run as root"
        )
    } else if text.contains("connection refused") {
        anyhow!(
            "no Docker daemon is listening on {socket} (connection refused): start Docker \
             (`sudo systemctl start docker`, or `scripts/ensure-docker`)"
        )
    } else {
        anyhow!(error).context(format!("the Docker daemon at {socket} did not answer"))
    }
}

/// The daemon's message for a failed call, without bollard's framing.
pub fn message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Whether a call failed because the object does not exist.
pub fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
