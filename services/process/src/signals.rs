//! When to stop: the binaries are PID 1 in a scratch image, where
//! `docker stop` sends SIGTERM, and a developer presses Ctrl-C.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};

/// Installs the SIGTERM (`docker stop`) and SIGINT (Ctrl-C) handlers now,
/// before the server starts, so a signal that comes early is not lost, and
/// returns what resolves on either. Needs a tokio runtime.
pub(crate) fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    })
}
