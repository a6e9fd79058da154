//! Formatted log lines waiting for stdout, and the thread that writes
//! them: one `write` for whatever gathered in [`GATHER`] after the first
//! line, so the threads that log pay a memcpy, not a syscall. And the
//! timestamp tracing's default format starts a line with, made without its
//! formatter. The API, the UI (through `student-ages-process`) and the edge
//! all log through it.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How long the logging thread lets lines gather after the first one.
pub const GATHER: Duration = Duration::from_millis(5);

/// How many bytes may wait before loggers wait for stdout.
const MAX_PENDING: usize = 1 << 20;

/// Formatted lines not yet written, shared by the loggers and the thread.
#[derive(Default)]
pub struct Batch {
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

    pub fn append(&self, line: &[u8]) {
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

/// Starts the logging thread on stdout; `None` if it cannot start.
pub fn start() -> Option<(Arc<Batch>, JoinHandle<()>)> {
    let batch = Arc::new(Batch::default());
    let writer = Arc::clone(&batch);
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || writer.write_until_closed(&mut io::stdout()))
        .ok()?;
    Some((batch, thread))
}

/// Writes out every pending line and stops the thread.
pub fn stop(batch: &Batch, thread: JoinHandle<()>) {
    batch.lock().closed = true;
    batch.ready.notify_one();
    let _ = thread.join();
}

/// Keeps the logging thread running; dropping it writes out every pending
/// line and stops the thread. Hold it until the server has stopped.
#[must_use = "dropping the guard stops the logging thread"]
pub struct LogGuard(Option<(Arc<Batch>, JoinHandle<()>)>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((batch, thread)) = self.0.take() {
            stop(&batch, thread);
        }
    }
}

/// Logs to stdout through the batch, one line per event; `RUST_LOG`
/// filters (see [`filter`]). When stdout is not a terminal, `plain` gets
/// the batch, for a caller that writes its hot lines itself.
pub fn init(plain: &std::sync::OnceLock<Arc<Batch>>) -> LogGuard {
    let ansi = io::IsTerminal::is_terminal(&io::stdout());
    let started = start();
    // Without the thread (it could not start), log straight to stdout.
    let batch = started.as_ref().map(|(batch, _)| Arc::clone(batch));
    if let Some(batch) = &batch
        && !ansi
    {
        let _ = plain.set(Arc::clone(batch));
    }
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref()).unwrap_or_else(|error| {
        eprintln!("{error}; logging at info");
        Targets::new().with_default(LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(BatchWriter(batch)),
        )
        .with(filter)
        .init();
    LogGuard(started)
}

/// The log filter `RUST_LOG` asks for: a level (`info`), `target=level`
/// pairs, or both, comma-separated (`info,request=warn`); `info` when unset
/// or empty. (tracing's `Targets` syntax: unlike `EnvFilter` it has no span
/// or field filters, and needs no regex engine in every binary.)
pub fn filter(value: Option<&str>) -> Result<Targets, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(Targets::new().with_default(LevelFilter::INFO)),
        Some(spec) => spec.parse().map_err(|error| {
            format!(
                "RUST_LOG={spec:?} is not a log filter ({error}): write a level (info) or \
                 target=level pairs (info,request=warn)"
            )
        }),
    }
}

/// What tracing writes each formatted line to: the batch, or stdout
/// directly when there is no logging thread.
pub struct BatchWriter(pub Option<Arc<Batch>>);

/// One line's writer; borrows the batch, so making one costs nothing.
pub struct LineWriter<'a>(Option<&'a Batch>);

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

impl Batch {
    /// Takes the pending lines, as the logging thread would: for tests
    /// that check what was logged.
    pub fn take_for_test(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.lock().lines)).into_owned()
    }
}

thread_local! {
    /// The date and time to the second, `2026-11-28T19:05:16.`, and the
    /// second it is for.
    static SECOND: std::cell::RefCell<(u64, String)> =
        const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// Appends `now` as tracing's default format stamps a line,
/// `2026-11-28T19:05:16.123456Z`, in UTC. The part to the second is made
/// once per second and per thread.
pub fn push_timestamp(now: std::time::SystemTime, out: &mut String) {
    use std::fmt::Write as _;
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let second = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, prefix)| {
        if *cached != second {
            prefix.clear();
            write_date_time(second, prefix);
            *cached = second;
        }
        out.push_str(prefix);
    });
    // Writing to a String cannot fail.
    let _ = write!(out, "{:06}Z", since_epoch.subsec_micros());
}

/// Appends `YYYY-MM-DDTHH:MM:SS.` for a time in seconds since the epoch,
/// in UTC, as tracing's timestamps start.
fn write_date_time(since_epoch: u64, out: &mut String) {
    use std::fmt::Write as _;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_is_info_unless_rust_log_says_otherwise_and_a_bad_one_is_named() {
        use tracing::Level;
        let unset = filter(None).unwrap();
        assert!(unset.would_enable("student_ages_api", &Level::INFO));
        assert!(!unset.would_enable("student_ages_api", &Level::DEBUG));
        let quiet_requests = filter(Some("info,request=warn")).unwrap();
        assert!(quiet_requests.would_enable("student_ages_api", &Level::INFO));
        assert!(!quiet_requests.would_enable("request", &Level::INFO));
        assert!(quiet_requests.would_enable("request", &Level::WARN));
        assert!(filter(Some(" ")).unwrap().would_enable("x", &Level::INFO));
        let error = filter(Some("info,request=loud")).unwrap_err();
        assert!(error.contains("RUST_LOG=\"info,request=loud\""), "{error}");
        assert!(error.contains("target=level"), "{error}");
    }

    /// A writer that records each `write_all` it gets as one chunk.
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

    #[test]
    fn the_date_and_time_match_tracings_own_timestamps() {
        for _ in 0..5 {
            let before = std::time::SystemTime::now();
            let mut theirs = String::new();
            tracing_subscriber::fmt::time::FormatTime::format_time(
                &tracing_subscriber::fmt::time::SystemTime,
                &mut tracing_subscriber::fmt::format::Writer::new(&mut theirs),
            )
            .unwrap();
            let after = std::time::SystemTime::now();
            let second = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
            };
            if second(before) != second(after) {
                continue; // a second boundary passed: try again
            }
            let mut ours = String::new();
            write_date_time(second(before), &mut ours);
            assert_eq!(&theirs[..ours.len()], ours, "{theirs}");
        }
    }

    #[test]
    fn the_timestamp_is_tracings() {
        let at = std::time::UNIX_EPOCH + Duration::from_micros(1_795_897_516_123_456);
        let mut out = String::new();
        push_timestamp(at, &mut out);
        assert_eq!(out, "2026-11-28T20:25:16.123456Z");
        let mut leap = String::new();
        push_timestamp(
            std::time::UNIX_EPOCH + Duration::from_secs(951_782_400),
            &mut leap,
        );
        assert_eq!(leap, "2000-02-29T00:00:00.000000Z");
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
}
