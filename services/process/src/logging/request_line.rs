//! The per-request log line, written without tracing's formatter: byte
//! for byte what tracing's default format writes for the same event (a test
//! holds the two together), at a fraction of the cost. tracing formats the
//! timestamp field by field for every event; here the date and time to the
//! second is made once per second and per thread.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::batch::Batch;

thread_local! {
    /// Where a request line is put together; reused, so no allocation.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    /// The date and time to the second, `2026-11-28T19:05:16.`, and the
    /// second it is for.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
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
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{:06}Z {:>5} request: method={} path={:?} status={} micros={}",
            since_epoch.subsec_micros(),
            self.level,
            self.method,
            self.path,
            self.status,
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

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;

    use super::*;

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
            let before = SystemTime::now();
            let mut theirs = String::new();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            let after = SystemTime::now();
            let second = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
            if second(before) != second(after) {
                continue; // a second boundary passed: try again
            }
            let mut ours = String::new();
            write_date_time(second(before), &mut ours);
            assert_eq!(&theirs[..ours.len()], ours, "{theirs}");
        }
    }

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
