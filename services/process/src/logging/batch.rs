//! Formatted log lines waiting for stdout, and the thread that writes
//! them: one `write` for whatever gathered in [`GATHER`] after the first
//! line, so the threads that log pay a memcpy, not a syscall.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the logging thread lets lines gather after the first one.
pub(super) const GATHER: Duration = Duration::from_millis(5);

/// How many bytes may wait before loggers wait for stdout.
const MAX_PENDING: usize = 1 << 20;

/// Formatted lines not yet written, shared by the loggers and the thread.
#[derive(Default)]
pub(super) struct Batch {
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

    pub(super) fn append(&self, line: &[u8]) {
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
pub(super) fn start() -> Option<(Arc<Batch>, JoinHandle<()>)> {
    let batch = Arc::new(Batch::default());
    let writer = Arc::clone(&batch);
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || writer.write_until_closed(&mut io::stdout()))
        .ok()?;
    Some((batch, thread))
}

/// Writes out every pending line and stops the thread.
pub(super) fn stop(batch: &Batch, thread: JoinHandle<()>) {
    batch.lock().closed = true;
    batch.ready.notify_one();
    let _ = thread.join();
}

/// What tracing writes each formatted line to: the batch, or stdout
/// directly when there is no logging thread.
pub(super) struct BatchWriter(pub(super) Option<Arc<Batch>>);

/// One line's writer; borrows the batch, so making one costs nothing.
pub(super) struct LineWriter<'a>(Option<&'a Batch>);

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
impl Batch {
    /// Takes the pending lines, as the logging thread would.
    pub(super) fn take_for_test(&self) -> String {
        String::from_utf8(std::mem::take(&mut self.lock().lines)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
