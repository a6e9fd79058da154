//! When to stop: the binaries are PID 1 in a scratch image, where
//! `docker stop` sends SIGTERM, and a developer presses Ctrl-C.

/// Resolves on SIGTERM (`docker stop`) or Ctrl-C.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler only fails if the runtime has no signal driver");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
