//! The edge's logging: one line per event on stdout, and one line per
//! request, cheaply.
//!
//! The request line is the one hot log line (one per proxied request). It
//! used to go through tracing's formatter into tracing-appender's
//! non-blocking writer; a `perf` profile under `bench/edge.sh` showed that
//! writer's worker thread waking (a futex per line, `sched_yield` spins)
//! and writing each line with its own `write` took about a fifth of the
//! edge's CPU. Now, as in the API (`services/process/src/logging`), a line
//! is formatted on the thread that logs it and appended to a shared batch;
//! a logging thread writes the batch to stdout with one `write`, at most
//! [`GATHER`] after its first line. Under load a request then costs a
//! memcpy for its log line; when idle a line still appears at once.
//! Nothing is dropped while the process lives (when stdout does not keep
//! up, loggers wait) or when the guard is dropped at exit.
//!
//! When stdout is not a terminal (no colours), [`request`] writes a
//! successful request's line itself, byte for byte as tracing's default
//! format would (a test holds the two together), at a fraction of the cost;
//! `RUST_LOG` filters it as any other event (target `request`). Lines with
//! a note (warnings) and every other event go through tracing, into the
//! same batch, so their order is kept.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

pub use student_ages_batch_log::GATHER;
pub use student_ages_batch_log::LogGuard;
use student_ages_batch_log::{self as batch, Batch, push_timestamp};

/// The batch request lines go to directly, when they may (stdout is not a
/// terminal and the logging thread runs).
static PLAIN_BATCH: OnceLock<Arc<Batch>> = OnceLock::new();

/// What one request's log line says.
pub struct RequestLine<'a> {
    pub listener: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// The target's address, or what answered instead (`-`, `redirect-https`).
    pub upstream: &'a str,
    pub micros: u64,
    /// Why the edge answered itself or retried: the line is then a warning.
    pub note: Option<&'a str>,
}

/// Logs one line for a request (target `request`: info, or warn with its
/// note).
pub fn request(line: &RequestLine<'_>) {
    match line.note {
        None => {
            if let Some(batch) = PLAIN_BATCH.get() {
                if tracing::enabled!(target: "request", tracing::Level::INFO) {
                    line.append_to(batch);
                }
            } else {
                tracing::info!(
                    target: "request",
                    listener = %line.listener,
                    method = %line.method,
                    path = line.path,
                    status = line.status,
                    upstream = line.upstream,
                    micros = line.micros,
                );
            }
        }
        Some(note) => tracing::warn!(
            target: "request",
            listener = %line.listener,
            method = %line.method,
            path = line.path,
            status = line.status,
            upstream = line.upstream,
            micros = line.micros,
            note,
        ),
    }
}

thread_local! {
    /// Where a request line is put together; reused, so no allocation.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl RequestLine<'_> {
    fn append_to(&self, batch: &Batch) {
        LINE.with_borrow_mut(|buffer| {
            buffer.clear();
            self.write_plain(SystemTime::now(), buffer);
            batch.append(buffer.as_bytes());
        });
    }

    /// Appends the (info) line exactly as tracing's default, uncoloured
    /// format writes the event, timestamp included. Put together piece by
    /// piece rather than through `format_args!`: its machinery was most of
    /// the line's cost in a profile.
    fn write_plain(&self, now: SystemTime, out: &mut String) {
        push_timestamp(now, out);
        // The listener and method are Display fields; tracing shows a &str
        // field as its Debug form (quoted), as here.
        out.push_str("  INFO request: listener=");
        out.push_str(self.listener);
        out.push_str(" method=");
        out.push_str(self.method);
        out.push_str(" path=");
        push_debug(self.path, out);
        out.push_str(" status=");
        push_number(u64::from(self.status), out);
        out.push_str(" upstream=");
        push_debug(self.upstream, out);
        out.push_str(" micros=");
        push_number(self.micros, out);
        out.push('\n');
    }
}

/// Appends `text` as `{:?}` shows it: quoted, escaped. Printable ASCII
/// other than `"` and `\` stands for itself, so such text (most paths and
/// every address) is copied as it is.
fn push_debug(text: &str, out: &mut String) {
    if text.bytes().all(|b| AS_IS[usize::from(b)]) {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{text:?}");
    }
}

/// The bytes `{:?}` shows as themselves in a string.
const AS_IS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        table[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    table
};

/// Appends `n` in decimal.
fn push_number(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// Logs to stdout, one line per event; `RUST_LOG` filters (default
/// `info`). Hold the guard until the edge has stopped.
pub fn init() -> LogGuard {
    batch::init(&PLAIN_BATCH)
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::Mutex;
    use std::time::{Duration, UNIX_EPOCH};

    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;

    use super::*;

    /// Whatever is written, one chunk per `write`.
    #[derive(Clone, Default)]
    struct Chunks(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Chunks {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Formats with tracing's default format and a fixed timestamp.
    struct Fixed(&'static str);

    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
            w.write_str(self.0)
        }
    }

    #[test]
    fn the_request_line_is_byte_for_byte_what_tracing_writes() {
        let lines = [
            RequestLine {
                listener: "api",
                method: "GET",
                path: "/supmit/api/v1.0/student_ages/zo%C3%A9 \"q\"",
                status: 404,
                upstream: "127.0.0.1:5000",
                micros: 88,
                note: None,
            },
            RequestLine {
                listener: "web",
                method: "POST",
                path: "/a/b?c=d&e='f'",
                status: 200,
                upstream: "-",
                micros: 0,
                note: None,
            },
            RequestLine {
                listener: "web",
                method: "GET",
                path: "/\u{e9}t\u{e9}\\\t",
                status: 502,
                upstream: "[::1]:80",
                micros: 18_446_744_073_709_551_615,
                note: None,
            },
        ];
        for line in &lines {
            let at = UNIX_EPOCH + Duration::from_micros(1_795_892_716_151_468);
            let mut ours = String::new();
            line.write_plain(at, &mut ours);

            let written = Chunks::default();
            let sink = written.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_timer(Fixed("2026-11-28T19:05:16.151468Z"))
                .with_writer(move || sink.clone())
                .finish();
            // Without the plain batch (never set in tests), `request` goes
            // through tracing.
            tracing::subscriber::with_default(subscriber, || request(line));
            let theirs = String::from_utf8(written.0.lock().unwrap().concat()).unwrap();
            assert_eq!(ours, theirs);
        }
    }
}
