//! The control channel: `edge ctl VERB` (run by the deployer through
//! `docker exec`) talks to the running edge over the unix socket
//! `$EDGE_RUN_DIR/control.sock`, one JSON request line, one JSON answer
//! line. The socket is handed over with the listeners, so `ctl` always
//! reaches the edge that serves.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const SOCKET_NAME: &str = "control.sock";

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "lowercase")]
pub enum Request {
    /// Listeners, routes, targets with health and counts, certificates.
    Status,
    /// Which process answers, for `edge healthcheck`.
    Whoami,
    /// Health-gate a target, switch the service to it, drain the old one.
    Deploy {
        service: String,
        targets: Vec<String>,
        health_path: String,
        deploy_timeout_ms: u64,
        drain_timeout_ms: u64,
    },
    /// Take every target of a service out (it answers 503), draining them.
    Remove {
        service: String,
        drain_timeout_ms: u64,
    },
}

/// The answer line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(
        "no edge answers on {path}: {source} (is the edge running, and is EDGE_RUN_DIR the \
         directory it uses?)"
    )]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("talking to the edge on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the edge answered something that is not a control answer: {0}")]
    Garbled(String),
    #[error("{0}")]
    Refused(String),
}

/// Sends one request to the edge whose run directory is `run_dir` and
/// returns its result.
pub fn call(
    run_dir: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<serde_json::Value, CtlError> {
    let path = run_dir.join(SOCKET_NAME);
    let shown = path.display().to_string();
    let mut stream = UnixStream::connect(&path).map_err(|source| CtlError::Connect {
        path: shown.clone(),
        source,
    })?;
    let io = |source| CtlError::Io {
        path: shown.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| CtlError::Garbled(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    let answer: Answer =
        serde_json::from_str(&answer).map_err(|e| CtlError::Garbled(format!("{e}: {answer:?}")))?;
    if answer.ok {
        Ok(answer.result.unwrap_or(serde_json::Value::Null))
    } else {
        Err(CtlError::Refused(
            answer
                .error
                .unwrap_or_else(|| "refused, without a reason".into()),
        ))
    }
}
