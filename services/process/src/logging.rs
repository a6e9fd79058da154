//! Logging for both servers: one line per event on stdout, and one line
//! per request.
//!
//! Lines are formatted on the thread that logs them but written by a
//! logging thread, which writes whatever has queued up with one `write` and
//! flushes whenever the queue is empty: under load the request threads do
//! not each pay a syscall for their log line, and when idle a line appears
//! at once. Nothing is dropped (a full queue makes the logger wait).

/// Logs one line per request (target `request`: `RUST_LOG=warn` or
/// `RUST_LOG=info,request=off` silences them). Used with poem's `around`.
pub async fn log_request<E: poem::Endpoint>(
    next: E,
    req: poem::Request,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = match next.call(req).await {
        Ok(output) => output.into_response(),
        Err(error) => error.into_response(),
    };
    tracing::info!(
        target: "request",
        %method,
        path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
    );
    Ok(response)
}

/// Keeps the logging thread alive; dropping it writes out what is queued.
/// Hold it until the server has stopped.
#[must_use = "dropping the guard stops the logging thread"]
pub struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

/// Logs to stdout, one line per event; `RUST_LOG` filters (default `info`).
pub fn init_logging() -> LogGuard {
    let stdout = std::io::stdout();
    let ansi = std::io::IsTerminal::is_terminal(&stdout);
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::new(stdout));
    tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_writer(writer)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    LogGuard(guard)
}
