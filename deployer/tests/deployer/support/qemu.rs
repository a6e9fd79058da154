//! The arm64 binaries a release built, run on this x86_64 machine under
//! qemu's user-mode emulator (`qemu-aarch64-static`, Debian's
//! qemu-user-static), so a test can see them serve and answer their
//! healthcheck without an arm64 machine. Killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where `deployer release` leaves the arm64 binaries (cargo's target
/// directory: `CARGO_TARGET_DIR`, as the deployer reads it, else
/// `target/`).
pub fn arm64_binary(name: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_relative() {
                super::root().join(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(|| super::root().join("target"))
        .join("aarch64-unknown-linux-gnu/release")
        .join(name)
}

fn command(binary: &str, env: &[(&str, String)]) -> Command {
    let mut command = Command::new("qemu-aarch64-static");
    command.arg(arm64_binary(binary)).env_clear();
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// An arm64 binary serving under qemu.
pub struct Arm64Server(Child);

impl Arm64Server {
    pub fn start(binary: &str, env: &[(&str, String)]) -> Arm64Server {
        let child = command(binary, env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-aarch64-static is needed (qemu-user-static; scripts/test installs it)");
        Arm64Server(child)
    }
}

impl Drop for Arm64Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `BINARY healthcheck` under qemu, retried until it passes or a minute
/// has gone (emulation is slow to start); its last output.
pub fn healthcheck(binary: &str, env: &[(&str, String)]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = command(binary, env).arg("healthcheck").output().unwrap();
        if out.status.success() || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
