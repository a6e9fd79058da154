//! Ctrl-C and SIGTERM (a CI job being aborted), caught from the moment they
//! are installed: a signal that arrives before anyone waits for it is kept
//! for the next wait instead of killing the process halfway through a step
//! (say, just after taking the host lock).

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

pub(crate) struct StopSignal {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignal {
    pub(crate) fn install() -> anyhow::Result<StopSignal> {
        Ok(StopSignal {
            interrupt: signal(SignalKind::interrupt()).context("cannot catch Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
        })
    }

    /// Resolves when either signal has arrived (or had arrived).
    pub(crate) async fn received(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }
}
