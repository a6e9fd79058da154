//! Reaching a Docker daemon, turning its failures into messages a user can
//! act on, and reading the stack's containers back by their labels.

mod containers;
mod exec;

pub(crate) use containers::{Health, ProjectContainer, health_of, last_logs, project_containers};
pub(crate) use exec::exec;

use std::path::Path;
use std::time::Duration;

use bollard::{ClientVersion, Docker};

/// Docker 20.10 speaks API 1.41 and refuses newer clients; every daemon
/// since speaks it too.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Why a daemon could not be reached. Callers that know more (a daemon
/// behind SSH) match the kind and say it their way.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error(
        "DOCKER_HOST={0} is not supported: the deployer talks to a unix socket \
         (unix:///var/run/docker.sock); remote hosts are reached with `deployer deploy`, over SSH"
    )]
    UnsupportedHost(String),
    #[error(
        "no Docker daemon: {socket} does not exist. Start Docker (`sudo systemctl start \
         docker`, or `scripts/ensure-docker` in this repo) or point DOCKER_HOST at its socket"
    )]
    NoSocket { socket: String },
    #[error(
        "permission denied on the Docker socket {socket}: add yourself to the `docker` group \
         (`sudo usermod -aG docker $USER`, then log in again) or run as root"
    )]
    PermissionDenied { socket: String },
    #[error(
        "no Docker daemon is listening on {socket} (connection refused): start Docker \
         (`sudo systemctl start docker`, or `scripts/ensure-docker`)"
    )]
    Refused { socket: String },
    #[error(
        "the Docker daemon at {socket} did not answer within 10 s; is it starting or hung? \
         (`systemctl status docker`)"
    )]
    Timeout { socket: String },
    #[error("the Docker daemon at {socket} did not answer: {detail}")]
    Other { socket: String, detail: String },
}

/// The local daemon: `DOCKER_HOST` (a `unix://` socket, from the
/// environment or `.env`) or `/var/run/docker.sock`.
pub(crate) async fn connect_local(docker_host: Option<&str>) -> Result<Docker, ConnectError> {
    let socket = match docker_host.filter(|h| !h.is_empty()) {
        Some(host) => match host.strip_prefix("unix://") {
            Some(path) => path.to_owned(),
            None => return Err(ConnectError::UnsupportedHost(host.to_owned())),
        },
        None => "/var/run/docker.sock".to_owned(),
    };
    connect_unix(&socket).await
}

/// A daemon behind a unix socket; pings it so a dead or forbidden daemon
/// fails here, with advice, rather than halfway through a command.
pub(crate) async fn connect_unix(socket: &str) -> Result<Docker, ConnectError> {
    let owned = || socket.to_owned();
    if !Path::new(socket).exists() {
        return Err(ConnectError::NoSocket { socket: owned() });
    }
    let docker =
        Docker::connect_with_unix(socket, 120, &API_VERSION).map_err(|e| ConnectError::Other {
            socket: owned(),
            detail: crate::errors::chain(&e),
        })?;
    match tokio::time::timeout(Duration::from_secs(10), docker.ping()).await {
        Err(_) => Err(ConnectError::Timeout { socket: owned() }),
        Ok(Err(error)) => {
            let text = crate::errors::chain(&error).to_lowercase();
            Err(if text.contains("permission denied") {
                ConnectError::PermissionDenied { socket: owned() }
            } else if text.contains("connection refused") {
                ConnectError::Refused { socket: owned() }
            } else {
                ConnectError::Other {
                    socket: owned(),
                    detail: crate::errors::chain(&error),
                }
            })
        }
        Ok(Ok(_)) => Ok(docker),
    }
}

/// The daemon's message for a failed call, without bollard's framing.
pub(crate) fn message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Whether a call failed because the object does not exist.
pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
