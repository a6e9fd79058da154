//! Handing the listening sockets to a successor: the way the edge upgrades
//! itself without refusing a single connection.
//!
//! A new edge connects to `$EDGE_RUN_DIR/handover.sock`, which the running
//! edge accepts on. The running edge sends, in one `sendmsg`, every
//! listening descriptor it has (the control and hand-over sockets, then the
//! public listeners) as `SCM_RIGHTS`, followed by a JSON message: which
//! descriptor is which listener, and its current targets. The successor
//! starts accepting on them (both processes accept from the same kernel
//! queue for a moment, so no connection is refused or reset), then writes
//! `READY`; the old edge stops accepting, answers `RELEASED`, finishes its
//! in-flight requests and exits. Established connections stay with the old
//! process until they finish. If the successor dies before `READY`, the old
//! edge simply keeps serving.
//!
//! This needs both processes in the same network namespace (host
//! networking in Docker) and the run directory shared between them.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

use crate::state::State;

pub const SOCKET_NAME: &str = "handover.sock";
const HELLO: &[u8] = b"HELLO 1\n";
const READY: &[u8] = b"READY\n";
const RELEASED: &[u8] = b"RELEASED\n";
/// The descriptors are at most the listeners plus two; far below this.
const MAX_FDS: usize = 64;

/// What the old edge tells its successor, besides the descriptors.
#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    pub pid: u32,
    /// The public listeners, in the order of their descriptors (after the
    /// control and hand-over sockets): their `ListenAddress` as displayed.
    pub listeners: Vec<String>,
    pub state: State,
}

/// What a successor receives.
pub struct Received {
    pub message: Message,
    pub control: OwnedFd,
    pub handover: OwnedFd,
    pub listeners: Vec<OwnedFd>,
    stream: UnixStream,
}

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("hand-over protocol: {0}")]
    Protocol(String),
    #[error("hand-over I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("hand-over sendmsg/recvmsg: {0}")]
    Sys(#[from] nix::Error),
}

/// Old side, on an accepted hand-over connection (blocking; run it on a
/// blocking thread): sends the descriptors and the message, then waits
/// for the successor's `READY`. `Ok(stream)` means the successor is
/// accepting; answer with [`released`] once this process stopped.
pub fn offer(
    mut stream: UnixStream,
    control: RawFd,
    handover: RawFd,
    listeners: &[RawFd],
    message: &Message,
    ready_timeout: Duration,
) -> Result<UnixStream, HandoverError> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut hello = [0u8; HELLO.len()];
    stream.read_exact(&mut hello)?;
    if hello != HELLO {
        return Err(HandoverError::Protocol(format!(
            "expected {:?}, got {:?}",
            String::from_utf8_lossy(HELLO),
            String::from_utf8_lossy(&hello)
        )));
    }
    let json = serde_json::to_vec(message).map_err(|e| HandoverError::Protocol(e.to_string()))?;
    let mut fds = vec![control, handover];
    fds.extend_from_slice(listeners);
    let length = (json.len() as u32).to_be_bytes();
    let rights = [ControlMessage::ScmRights(&fds)];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&length)],
        &rights,
        MsgFlags::empty(),
        None,
    )?;
    stream.write_all(&length[sent..])?;
    stream.write_all(&json)?;
    stream.set_read_timeout(Some(ready_timeout))?;
    let mut ready = [0u8; READY.len()];
    stream.read_exact(&mut ready)?;
    if ready != READY {
        return Err(HandoverError::Protocol(
            "the successor did not say READY".into(),
        ));
    }
    Ok(stream)
}

/// Old side: tells the successor this process no longer accepts.
pub fn released(mut stream: UnixStream) -> Result<(), HandoverError> {
    stream.write_all(RELEASED)?;
    Ok(())
}

/// New side: asks the edge listening on `stream` for its sockets.
pub fn request(mut stream: UnixStream) -> Result<Received, HandoverError> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(HELLO)?;
    let mut length = [0u8; 4];
    let mut fds: Vec<OwnedFd> = Vec::new();
    let got = {
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let mut iov = [IoSliceMut::new(&mut length)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: the kernel just installed these descriptors in
                // this process for us; nothing else owns them.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(HandoverError::Protocol(
                "descriptors were truncated (too many listeners)".into(),
            ));
        }
        msg.bytes
    };
    if got == 0 {
        return Err(HandoverError::Protocol(
            "the running edge closed the hand-over connection".into(),
        ));
    }
    stream.read_exact(&mut length[got..])?;
    let mut json = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut json)?;
    let message: Message =
        serde_json::from_slice(&json).map_err(|e| HandoverError::Protocol(e.to_string()))?;
    if fds.len() != message.listeners.len() + 2 {
        return Err(HandoverError::Protocol(format!(
            "{} descriptors for {} listeners",
            fds.len(),
            message.listeners.len()
        )));
    }
    let mut fds = fds.into_iter();
    let (control, handover) = match (fds.next(), fds.next()) {
        (Some(c), Some(h)) => (c, h),
        _ => return Err(HandoverError::Protocol("no control socket".into())),
    };
    Ok(Received {
        message,
        control,
        handover,
        listeners: fds.collect(),
        stream,
    })
}

impl Received {
    /// Splits the stream off so the rest can be consumed.
    pub fn into_parts(self) -> (Message, OwnedFd, OwnedFd, Vec<OwnedFd>, Pending) {
        (
            self.message,
            self.control,
            self.handover,
            self.listeners,
            Pending(self.stream),
        )
    }
}

/// The hand-over connection, waiting for this process to be ready.
pub struct Pending(UnixStream);

impl Pending {
    /// See [`Received::ready`].
    pub fn ready(self, timeout: Duration) -> Result<(), HandoverError> {
        let mut stream = self.0;
        stream.write_all(READY)?;
        stream.set_read_timeout(Some(timeout))?;
        let mut answer = [0u8; RELEASED.len()];
        stream.read_exact(&mut answer)?;
        if answer != RELEASED {
            return Err(HandoverError::Protocol(
                "the old edge did not say RELEASED".into(),
            ));
        }
        Ok(())
    }
}
