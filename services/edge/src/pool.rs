//! Kept-alive HTTP/1 connections to the targets, reused by their requests.
//!
//! Each target keeps a short stack of idle connections (hyper's
//! `client::conn::http1` handles, each driven by its own task). A request
//! takes the most recently used one, or opens a new one, and its `Lease`
//! gives it back when the response body has been sent, so a connection
//! carries one exchange at a time. This is the little of hyper-util's pooled
//! client the edge needs: no pool key to hash, no URI to rebuild into
//! origin form, no boxed future, and no task spawned per request to wait
//! for the connection's return.
//!
//! A kept-alive connection the target closed is noticed by its task and
//! skipped; one that closes while a request is handed to it gives the
//! request back unsent, and it goes out on another connection.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::proxy::RequestBody;
use crate::upstream::Target;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// An idle connection unused this long is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_IDLE_PER_TARGET: usize = 256;

/// The idle connections of one target, the most recently used last.
#[derive(Default)]
pub struct Connections {
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

impl Connections {
    fn take(&self) -> Option<SendRequest<RequestBody>> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
        (idle.since.elapsed() < IDLE_TIMEOUT).then_some(idle.sender)
    }

    fn put_back(&self, sender: SendRequest<RequestBody>) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // The oldest sit first: drop those unused for too long.
        let stale = idle
            .iter()
            .take_while(|i| now.duration_since(i.since) >= IDLE_TIMEOUT)
            .count();
        idle.drain(..stale);
        if idle.len() < MAX_IDLE_PER_TARGET {
            idle.push(Idle { sender, since: now });
        }
    }
}

/// Why a request got no response from its target.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made: nothing was sent, the body untouched.
    #[error("connecting to the target failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The connection was made (or reused) and the exchange failed.
    #[error(transparent)]
    Exchange(#[from] hyper::Error),
}

/// A connection carrying one exchange; back to its target's idle
/// connections when dropped (after the response body), unless it closed.
pub struct Lease {
    target: Arc<Target>,
    sender: Option<SendRequest<RequestBody>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take()
            && !sender.is_closed()
        {
            self.target.connections.put_back(sender);
        }
    }
}

/// Sends the request in `slot` (origin-form URI, with a Host header) to
/// `target` on an idle connection or a new one. The request is taken out
/// of `slot` only when a connection is there to take it: after a connect
/// error it is still in `slot`, unsent. With `replay`, `slot` holds a copy
/// of it (it has no body) while it is out, to send again if the target
/// closes the connection under it; the caller drops the copy. The
/// request stays in the caller's slot rather than in this future, which is
/// moved with every request (inside hyper's and tokio's futures).
pub async fn send(
    target: &Arc<Target>,
    slot: &mut Option<Request<RequestBody>>,
    replay: bool,
) -> Result<(Response<Incoming>, Lease), SendError> {
    loop {
        let (mut sender, reused) = match target.connections.take() {
            Some(sender) => (sender, true),
            // Boxed: the rare connect's large future would otherwise be
            // moved with every request's.
            None => (Box::pin(connect(target)).await?, false),
        };
        // A reused connection becomes ready once its previous exchange is
        // wholly done; an error means the target closed it meanwhile.
        if sender.ready().await.is_err() && reused {
            continue;
        }
        let copy = if replay {
            slot.as_ref().map(crate::proxy::replica)
        } else {
            None
        };
        let request = std::mem::replace(slot, copy).expect("the request is in its slot");
        match sender.try_send_request(request).await {
            Ok(response) => {
                let lease = Lease {
                    target: target.clone(),
                    sender: Some(sender),
                };
                return Ok((response, lease));
            }
            Err(mut error) => match error.take_message() {
                // Closed before the request was written: try another one.
                Some(unsent) if reused => *slot = Some(unsent),
                _ => return Err(SendError::Exchange(error.into_error())),
            },
        }
    }
}

async fn connect(target: &Target) -> Result<SendRequest<RequestBody>, SendError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.address.as_str()))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {CONNECT_TIMEOUT:?}"),
            )
        })
        .and_then(|connected| connected)
        .map_err(SendError::Connect)?;
    stream.set_nodelay(true).map_err(SendError::Connect)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(crate::io::Gathered(stream))).await?;
    tokio::spawn(async move {
        // Its errors reach the request that was using it.
        let _ = connection.await;
    });
    Ok(sender)
}
