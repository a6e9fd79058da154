//! One `send` per message instead of a `writev`.
//!
//! hyper writes a message as a vectored write (the head, then the body's
//! chunks) when the stream says it takes them, and that is `writev` on a
//! socket. A `perf` profile under `bench/edge.sh` showed the VFS layer
//! `writev` goes through (`vfs_writev`, `fdget_pos`, the iovec import) at
//! about 1 us of kernel time per proxied request over HAProxy, which
//! writes with `send`. [`Gathered`] copies a small vectored write into one
//! buffer and sends it with the plain write (`send` on a tokio socket); a
//! large one still goes out as a vectored write, where a copy would cost
//! more than the system call saves.

use std::cell::RefCell;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Vectored writes up to this many bytes are copied and sent at once.
const GATHER_MAX: usize = 16 * 1024;

thread_local! {
    /// Where a small vectored write is put together; reused.
    static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A stream whose small vectored writes go out as one plain write.
pub struct Gathered<S>(pub S);

impl<S: AsyncRead + Unpin> AsyncRead for Gathered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gathered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
        let (first, second) = (non_empty.next(), non_empty.next());
        let inner = Pin::new(&mut self.0);
        match (first, second) {
            (None, _) => Poll::Ready(Ok(0)),
            (Some(only), None) => inner.poll_write(cx, only),
            (Some(_), Some(_)) => {
                let total: usize = bufs.iter().map(|b| b.len()).sum();
                if total > GATHER_MAX {
                    return inner.poll_write_vectored(cx, bufs);
                }
                GATHER.with_borrow_mut(|gathered| {
                    gathered.clear();
                    for b in bufs {
                        gathered.extend_from_slice(b);
                    }
                    // A write of part of it counts as that many bytes of
                    // the slices, in order, as a vectored write's does.
                    inner.poll_write(cx, gathered)
                })
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        // hyper then queues the body's chunks rather than copying them
        // into its own buffer; the small ones are copied here.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn vectored_writes_arrive_in_order_small_ones_whole() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut a = Gathered(a);
        let large = vec![7u8; GATHER_MAX + 1];
        for (parts, whole) in [
            (vec![&b"head "[..], &b""[..], &b"body"[..]], true),
            (vec![&b""[..], &b"one"[..]], true),
            (vec![&b"x"[..], &large[..]], false),
        ] {
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            let expected: Vec<u8> = parts.concat();
            let n = a.write_vectored(&slices).await.unwrap();
            if whole {
                assert_eq!(n, expected.len());
            }
            assert!(n > 0);
            let mut got = vec![0u8; n];
            b.read_exact(&mut got).await.unwrap();
            assert_eq!(got, expected[..n]);
        }
    }
}
