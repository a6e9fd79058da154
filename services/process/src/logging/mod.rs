//! Logging for both servers: one line per event on stdout, and one line
//! per request.
//!
//! A line is formatted on the thread that logs it and appended to a shared
//! batch (`batch`); a logging thread writes the batch to stdout with one
//! `write`, at most 5 ms after its first line. Under load the request
//! threads then pay a memcpy for their log line instead of a syscall each,
//! and when idle a line still appears at once to a human. Nothing is
//! dropped while the process lives (when stdout does not keep up, loggers
//! wait) or when it exits or stops on a signal; a SIGKILL loses at most the
//! last 5 ms of lines.
//!
//! The per-request line is the one hot log line: when stdout is not a
//! terminal (so no colours), [`log_request`] has it written by
//! `request_line`, byte for byte as tracing's formatter would, at a
//! fraction of the cost. `RUST_LOG` filters it as any other event.
//!
//! (tracing-appender's non-blocking writer was measured first, in
//! `bench/api.sh`: its worker flushes whenever its queue is empty and spins
//! before it sleeps, which cost the list read about 5 µs of CPU per
//! request, more than the direct writes it replaced.)

mod batch;
mod request_line;

use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use batch::{Batch, BatchWriter};
use request_line::RequestLine;

/// The batch the request lines go to directly, when they may (stdout is
/// not a terminal and the logging thread runs).
static PLAIN_BATCH: OnceLock<Arc<Batch>> = OnceLock::new();

/// Logs one line per request (target `request`: `RUST_LOG=warn` or
/// `RUST_LOG=info,request=off` silences them). Used with poem's `around`.
pub async fn log_request<E: poem::Endpoint>(
    next: E,
    req: poem::Request,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    let started = std::time::Instant::now();
    let method = req.method().clone();
    // A Uri clone shares its bytes: no copy of the path per request.
    let uri = req.uri().clone();
    let response = match next.call(req).await {
        Ok(output) => output.into_response(),
        Err(error) => error.into_response(),
    };
    let line = RequestLine {
        method: method.as_str(),
        path: uri.path(),
        status: response.status().as_u16(),
        micros: started.elapsed().as_micros() as u64,
    };
    match PLAIN_BATCH.get() {
        Some(batch) if tracing::enabled!(target: "request", tracing::Level::INFO) => {
            line.append_to(batch);
        }
        Some(_) => {}
        None => tracing::info!(
            target: "request",
            method = %line.method,
            path = line.path,
            status = line.status,
            micros = line.micros,
        ),
    }
    Ok(response)
}

/// Keeps the logging thread running; dropping it writes out every pending
/// line and stops the thread. Hold it until the server has stopped.
#[must_use = "dropping the guard stops the logging thread"]
pub(crate) struct LogGuard(Option<(Arc<Batch>, JoinHandle<()>)>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((batch, thread)) = self.0.take() {
            batch::stop(&batch, thread);
        }
    }
}

/// Logs to stdout, one line per event; `RUST_LOG` filters (default `info`).
pub(crate) fn init_logging() -> LogGuard {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let started = batch::start();
    // Without the thread (it could not start), log straight to stdout.
    let batch = started.as_ref().map(|(batch, _)| Arc::clone(batch));
    if let Some(batch) = &batch
        && !ansi
    {
        let _ = PLAIN_BATCH.set(Arc::clone(batch));
    }
    tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_writer(BatchWriter(batch))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    LogGuard(started)
}
