//! A real server binary, for the tests that are about the process itself:
//! signals, a kill in the middle of a write, two processes on one file.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// How long a binary may take to log that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A server process on a free loopback port, killed and reaped when dropped.
pub struct ServerProcess {
    child: Child,
    /// Every line it has logged on stdout so far.
    lines: Arc<Mutex<Vec<String>>>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl ServerProcess {
    /// Starts `command` with `LISTEN_ADDR=127.0.0.1:0` and waits for its
    /// `listen=` log line, which names the port it got. Panics with the
    /// server's stderr if it does not start.
    pub fn spawn(mut command: Command) -> ServerProcess {
        let mut child = command
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Keep draining the log after startup so the server never blocks
        // on a full pipe.
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                if let Some(rest) = line.split("listen=").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(address) => ServerProcess {
                child,
                lines,
                base: format!("http://{address}"),
            },
            Err(_) => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("collect the output");
                panic!(
                    "the server did not start: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `host:port`, as `LISTEN_ADDR` takes it.
    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// What it has logged on stdout so far, waiting up to `timeout` for a
    /// line containing `wanted` (its log is written in batches).
    pub fn log_until(&self, wanted: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let log = self.lines.lock().unwrap().join("\n");
            if log.contains(wanted) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `KILL`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {} failed", self.pid());
    }

    /// SIGTERM, then waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.child.wait().expect("reap the server")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
