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
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::MakeWriter;

/// How long the logging thread lets lines gather after the first one.
pub const GATHER: Duration = Duration::from_millis(5);

/// How many bytes may wait before loggers wait for stdout.
const MAX_PENDING: usize = 1 << 20;

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
    /// The date and time to the second, `2026-11-28T19:05:16.`, and the
    /// second it is for.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
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
    /// format writes the event, timestamp included.
    fn write_plain(&self, now: SystemTime, out: &mut String) {
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since_epoch.as_secs();
        SECOND.with_borrow_mut(|(cached, prefix)| {
            if *cached != second {
                prefix.clear();
                write_date_time(second, prefix);
                *cached = second;
            }
            out.push_str(prefix);
        });
        // Writing to a String cannot fail. The listener and method are
        // Display fields; tracing shows a &str field as its Debug form
        // (quoted), as here.
        let _ = writeln!(
            out,
            "{:06}Z  INFO request: listener={} method={} path={:?} status={} upstream={:?} micros={}",
            since_epoch.subsec_micros(),
            self.listener,
            self.method,
            self.path,
            self.status,
            self.upstream,
            self.micros
        );
    }
}

/// Appends `YYYY-MM-DDTHH:MM:SS.` for a time in seconds since the epoch,
/// in UTC, as tracing's timestamps start.
fn write_date_time(since_epoch: u64, out: &mut String) {
    let days = since_epoch / 86_400;
    let in_day = since_epoch % 86_400;
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    );
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Formatted lines not yet written, shared by the loggers and the thread.
#[derive(Default)]
struct Batch {
    pending: Mutex<Pending>,
    /// Signalled when lines arrive in an empty batch, or on close.
    ready: Condvar,
    /// Signalled when the thread has taken the pending lines.
    taken: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

impl Batch {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A logger that panicked mid-append leaves at worst a torn line.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, line: &[u8]) {
        let mut pending = self.lock();
        while pending.lines.len() >= MAX_PENDING && !pending.closed {
            pending = self.taken.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        let was_empty = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        drop(pending);
        if was_empty {
            self.ready.notify_one();
        }
    }

    fn write_until_closed(&self, out: &mut impl Write) {
        let mut spare = Vec::new();
        loop {
            let mut pending = self.lock();
            while pending.lines.is_empty() && !pending.closed {
                pending = self.ready.wait(pending).unwrap_or_else(|e| e.into_inner());
            }
            let closed = pending.closed;
            if !closed {
                drop(pending);
                std::thread::sleep(GATHER);
                pending = self.lock();
            }
            std::mem::swap(&mut pending.lines, &mut spare);
            drop(pending);
            self.taken.notify_all();
            // Nowhere to report a failed log write; the next batch tries again.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
            if closed {
                return;
            }
        }
    }
}

/// Keeps the logging thread running; dropping it writes out every pending
/// line and stops the thread. Hold it until the edge has stopped.
#[must_use = "dropping the guard stops the logging thread"]
pub struct LogGuard(Option<(Arc<Batch>, JoinHandle<()>)>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((batch, thread)) = self.0.take() {
            batch.lock().closed = true;
            batch.ready.notify_one();
            let _ = thread.join();
        }
    }
}

/// Logs to stdout, one line per event; `RUST_LOG` filters (default `info`).
pub fn init() -> LogGuard {
    let ansi = io::IsTerminal::is_terminal(&io::stdout());
    let started = {
        let batch = Arc::new(Batch::default());
        let writer = Arc::clone(&batch);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.write_until_closed(&mut io::stdout()))
            .ok()
            .map(|thread| (batch, thread))
    };
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

/// What tracing writes each formatted line to: the batch, or stdout
/// directly when there is no logging thread.
struct BatchWriter(Option<Arc<Batch>>);

/// One line's writer; borrows the batch, so making one costs nothing.
struct LineWriter<'a>(Option<&'a Batch>);

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter(self.0.as_deref())
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0 {
            Some(batch) => {
                batch.append(buf);
                Ok(buf.len())
            }
            None => io::stdout().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.0 {
            Some(_) => Ok(()),
            None => io::stdout().flush(),
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn lines_logged_together_are_written_in_order_in_one_write() {
        let batch = Arc::new(Batch::default());
        let chunks = Chunks::default();
        let thread = {
            let (batch, mut out) = (Arc::clone(&batch), chunks.clone());
            std::thread::spawn(move || batch.write_until_closed(&mut out))
        };
        for i in 0..100 {
            batch.append(format!("line {i}\n").as_bytes());
        }
        std::thread::sleep(GATHER * 10);
        let written = chunks.0.lock().unwrap().clone();
        // The thread woke at the first line and took the rest with it.
        assert!(written.len() <= 2, "{} writes", written.len());
        let text = String::from_utf8(written.concat()).unwrap();
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);

        batch.append(b"last\n");
        batch.lock().closed = true;
        batch.ready.notify_one();
        thread.join().unwrap();
        assert!(chunks.0.lock().unwrap().concat().ends_with(b"last\n"));
    }

    #[test]
    fn dates_and_times_are_those_of_the_calendar() {
        let shown = |seconds| {
            let mut text = String::new();
            write_date_time(seconds, &mut text);
            text
        };
        // Checked against `date -u -d @SECONDS`.
        assert_eq!(shown(0), "1970-01-01T00:00:00.");
        assert_eq!(shown(951_782_400), "2000-02-29T00:00:00.");
        assert_eq!(shown(1_735_689_599), "2024-12-31T23:59:59.");
        assert_eq!(shown(1_795_892_716), "2026-11-28T19:05:16.");
        assert_eq!(shown(4_107_542_400), "2100-03-01T00:00:00.");
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
        let line = RequestLine {
            listener: "api",
            method: "GET",
            path: "/supmit/api/v1.0/student_ages/zo%C3%A9 \"q\"",
            status: 404,
            upstream: "127.0.0.1:5000",
            micros: 88,
            note: None,
        };
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
        tracing::subscriber::with_default(subscriber, || request(&line));
        let theirs = String::from_utf8(written.0.lock().unwrap().concat()).unwrap();
        assert_eq!(ours, theirs);
    }
}
