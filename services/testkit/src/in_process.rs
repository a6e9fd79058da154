//! A server run in the test's own process, on a thread and runtime of its
//! own: it answers even while the test blocks (on a child process, say),
//! whatever runtime the test itself uses.

use std::future::Future;
use std::thread::JoinHandle;

use student_ages_process::Shutdown;
use tokio::sync::oneshot;

/// A running server; dropping it shuts the server down gracefully and
/// waits for it.
pub struct InProcess {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl InProcess {
    /// Runs `serve(shutdown)` until the handle is dropped. `serve` gets the
    /// same kind of shutdown future the binaries pass to their `run`.
    pub fn start<F, Fut>(serve: F) -> InProcess
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = std::io::Result<()>>,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                let shutdown: Shutdown = Box::pin(async move {
                    // A dropped sender means the same as a sent stop.
                    let _ = stopped.await;
                });
                runtime.block_on(serve(shutdown))
            })
            .expect("spawn the server thread");
        InProcess {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                // Not a panic in drop (that would abort a failing test):
                // say it, the test's own assertions decide.
                Ok(Err(error)) => eprintln!("the in-process server failed: {error}"),
                Err(_) => eprintln!("the in-process server panicked"),
            }
        }
    }
}
