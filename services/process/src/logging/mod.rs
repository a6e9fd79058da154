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
//! A successful `/healthz` is logged at debug, not info: Docker's
//! healthcheck asks every second, which at info filled the logs with some
//! 40 MB a day of the same line. A failing one (503, say) stays at info.
//!
//! (tracing-appender's non-blocking writer was measured first, in
//! `bench/api.sh`: its worker flushes whenever its queue is empty and spins
//! before it sleeps, which cost the list read about 5 µs of CPU per
//! request, more than the direct writes it replaced.)

mod request_line;

use std::sync::{Arc, OnceLock};

use request_line::RequestLine;
use student_ages_batch_log::{self as batch, Batch, LogGuard};

/// The batch the request lines go to directly, when they may (stdout is
/// not a terminal and the logging thread runs).
static PLAIN_BATCH: OnceLock<Arc<Batch>> = OnceLock::new();

/// The level of a request's line: debug for a successful health probe,
/// info for everything else.
fn request_level(path: &str, status: u16) -> tracing::Level {
    if path == "/healthz" && (200..300).contains(&status) {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    }
}

/// Logs one line per request (target `request`: `RUST_LOG=warn` or
/// `RUST_LOG=info,request=off` silences them; a successful `/healthz` is
/// at debug, `RUST_LOG=info,request=debug` shows it). Used with poem's
/// `around`.
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
    let status = response.status().as_u16();
    let line = RequestLine {
        level: request_level(uri.path(), status),
        method: method.as_str(),
        path: uri.path(),
        status,
        micros: started.elapsed().as_micros() as u64,
    };
    line.log(PLAIN_BATCH.get().map(Arc::as_ref));
    Ok(response)
}

impl RequestLine<'_> {
    /// Writes the line to `batch` directly when there is one (and its
    /// level is enabled), else through tracing.
    fn log(&self, batch: Option<&Batch>) {
        macro_rules! event {
            ($level:expr) => {
                match batch {
                    Some(batch) if tracing::enabled!(target: "request", $level) => {
                        self.append_to(batch);
                    }
                    Some(_) => {}
                    None => tracing::event!(
                        target: "request",
                        $level,
                        method = %self.method,
                        path = self.path,
                        status = self.status,
                        micros = self.micros,
                    ),
                }
            };
        }
        // tracing's macros take the level as a constant.
        if self.level == tracing::Level::DEBUG {
            event!(tracing::Level::DEBUG);
        } else {
            event!(tracing::Level::INFO);
        }
    }
}

/// Logs to stdout, one line per event; `RUST_LOG` filters (default `info`).
pub(crate) fn init_logging() -> LogGuard {
    batch::init(&PLAIN_BATCH)
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::Mutex;

    use poem::http::StatusCode;
    use poem::{Endpoint, EndpointExt, IntoResponse, Route, get, handler};
    use tracing::Level;

    use super::*;

    #[test]
    fn only_a_successful_health_probe_is_quiet() {
        assert_eq!(request_level("/healthz", 200), Level::DEBUG);
        assert_eq!(request_level("/healthz", 204), Level::DEBUG);
        assert_eq!(request_level("/healthz", 503), Level::INFO);
        assert_eq!(request_level("/healthz", 404), Level::INFO);
        assert_eq!(request_level("/", 200), Level::INFO);
        assert_eq!(request_level("/healthz/x", 200), Level::INFO);
    }

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// 200, or 503 when asked with `?fail`.
    #[handler]
    fn probe(req: &poem::Request) -> poem::Response {
        if req.uri().query() == Some("fail") {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        } else {
            "ok".into_response()
        }
    }

    /// Runs `f` with a subscriber filtered by `filter`; what it wrote.
    fn with_filter(filter: &str, f: impl FnOnce()) -> String {
        let lines = Lines::default();
        let sink = lines.clone();
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || sink.clone()),
            )
            .with(student_ages_batch_log::filter(Some(filter)).unwrap());
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
    }

    /// What `log_request` logs through tracing for these requests.
    fn logged(filter: &str, uris: &[&str]) -> String {
        let app = Route::new()
            .at("/healthz", get(probe))
            .at("/", get(probe))
            .around(log_request);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        with_filter(filter, || {
            runtime.block_on(async {
                for uri in uris {
                    let request = poem::Request::builder().uri_str(uri).finish();
                    app.get_response(request).await;
                }
            });
        })
    }

    /// What the plain writer puts in the batch for one request line.
    fn batched(filter: &str, path: &str, status: u16) -> String {
        let batch = Batch::default();
        let line = RequestLine {
            level: request_level(path, status),
            method: "GET",
            path,
            status,
            micros: 1,
        };
        let through_tracing = with_filter(filter, || line.log(Some(&batch)));
        assert_eq!(through_tracing, "", "with a batch, tracing is not used");
        batch.take_for_test()
    }

    #[test]
    fn a_successful_health_probe_is_logged_at_debug_not_info() {
        let text = logged("info", &["/healthz", "/"]);
        assert!(!text.contains("/healthz"), "{text}");
        assert!(
            text.contains(" INFO request: method=GET path=\"/\" status=200"),
            "{text}"
        );
        let text = logged("info,request=debug", &["/healthz"]);
        assert!(
            text.contains("DEBUG request: method=GET path=\"/healthz\" status=200"),
            "{text}"
        );

        assert_eq!(batched("info", "/healthz", 200), "");
        let text = batched("debug", "/healthz", 200);
        assert!(
            text.contains("Z DEBUG request: method=GET path=\"/healthz\" status=200"),
            "{text}"
        );
    }

    #[test]
    fn a_failing_health_probe_is_still_logged_at_info() {
        let text = logged("info", &["/healthz?fail"]);
        assert!(
            text.contains(" INFO request: method=GET path=\"/healthz\" status=503"),
            "{text}"
        );
        let text = batched("info", "/healthz", 503);
        assert!(
            text.contains("Z  INFO request: method=GET path=\"/healthz\" status=503"),
            "{text}"
        );
    }
}
