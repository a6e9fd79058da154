//! The per-request log line, written without tracing's formatter: byte
//! for byte what tracing's default format writes for the same event (a test
//! holds the two together), at a fraction of the cost. tracing formats the
//! timestamp field by field for every event; here the date and time to the
//! second is made once per second and per thread.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::SystemTime;

use student_ages_batch_log::{Batch, push_timestamp};

thread_local! {
    /// Where a request line is put together; reused, so no allocation.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// What the per-request line says.
pub(super) struct RequestLine<'a> {
    /// Info, or debug for a successful health probe.
    pub(super) level: tracing::Level,
    pub(super) method: &'a str,
    pub(super) path: &'a str,
    pub(super) status: u16,
    pub(super) micros: u64,
}

impl RequestLine<'_> {
    /// Appends the line, stamped now, to the batch stdout is written from.
    pub(super) fn append_to(&self, batch: &Batch) {
        LINE.with_borrow_mut(|buffer| {
            buffer.clear();
            self.write_plain(SystemTime::now(), buffer);
            batch.append(buffer.as_bytes());
        });
    }

    /// Appends the line exactly as tracing's default (full, uncoloured)
    /// format writes the event, timestamp included.
    fn write_plain(&self, now: SystemTime, out: &mut String) {
        push_timestamp(now, out);
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            " {:>5} request: method={} path={:?} status={} micros={}",
            self.level, self.method, self.path, self.status, self.micros
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};

    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;

    use super::*;

    /// Formats with tracing's default format and our fixed timestamp.
    struct Fixed(&'static str);

    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
            w.write_str(self.0)
        }
    }

    #[test]
    fn the_request_line_is_byte_for_byte_what_tracing_writes() {
        let at = UNIX_EPOCH + Duration::from_micros(1_795_892_716_151_468);
        for level in [tracing::Level::INFO, tracing::Level::DEBUG] {
            the_request_line_is_what_tracing_writes_at(level, at);
        }
    }

    fn the_request_line_is_what_tracing_writes_at(level: tracing::Level, at: SystemTime) {
        let line = RequestLine {
            level,
            method: "GET",
            path: "/supmit/api/v1.0/student_ages/zo%C3%A9 \"q\"",
            status: 404,
            micros: 88,
        };
        let mut ours = String::new();
        line.write_plain(at, &mut ours);

        let written = Lines::default();
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_timer(Fixed("2026-11-28T19:05:16.151468Z"))
            .with_writer(move || sink.clone())
            .with_max_level(tracing::Level::TRACE)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            if level == tracing::Level::DEBUG {
                tracing::debug!(
                    target: "request",
                    method = %line.method,
                    path = line.path,
                    status = line.status,
                    micros = line.micros,
                );
            } else {
                tracing::info!(
                    target: "request",
                    method = %line.method,
                    path = line.path,
                    status = line.status,
                    micros = line.micros,
                );
            }
        });
        let theirs = String::from_utf8(written.0.lock().unwrap().concat()).unwrap();
        assert_eq!(ours, theirs);
    }

    /// Whatever tracing writes, kept.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
