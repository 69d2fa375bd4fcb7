//! hyper 1.x on glommio: its I/O traits over any futures-io stream (a glommio `TcpStream`,
//! or TLS over one), and its timer on glommio's timers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};

/// A futures-io stream seen through hyper's `Read` and `Write`.
pub struct HyperIo<S> {
    pub stream: S,
    /// Where reads land before they are copied into hyper's (uninitialised) buffer: copying
    /// the bytes read costs less than zeroing the whole space hyper offers on every read.
    scratch: Box<[u8]>,
}

/// The most one read takes.
const SCRATCH: usize = 16 << 10;

impl<S> HyperIo<S> {
    pub fn new(stream: S) -> HyperIo<S> {
        HyperIo { stream, scratch: vec![0; SCRATCH].into_boxed_slice() }
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for HyperIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: hyper::rt::ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let room = buf.remaining().min(me.scratch.len());
        match Pin::new(&mut me.stream).poll_read(cx, &mut me.scratch[..room]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&me.scratch[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
}

/// hyper's timer (header read timeouts) on glommio's.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlommioTimer;

/// A glommio timer that hyper may call `Send + Sync`. hyper asks for those bounds because its
/// multi-threaded runtimes move connections between threads; a glommio connection future never
/// leaves the executor thread that created it (glommio tasks are not `Send`), and the timer is
/// created and polled only by that future.
struct Sleep(glommio::timer::Timer);

// SAFETY: see the type's comment: created, polled and dropped on one executor thread.
unsafe impl Send for Sleep {}
// SAFETY: as above; hyper never shares the sleep between threads either.
unsafe impl Sync for Sleep {}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(|_| ())
    }
}

impl hyper::rt::Sleep for Sleep {}

impl hyper::rt::Timer for GlommioTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep(glommio::timer::Timer::new(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }
}

/// A stream with bytes already read from it put back in front: what hyper had read past
/// an upgrade request is the start of the WebSocket's frames.
pub struct Prefixed<S> {
    pub head: bytes::Bytes,
    pub inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if !me.head.is_empty() {
            let n = buf.len().min(me.head.len());
            buf[..n].copy_from_slice(&me.head.split_to(n));
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
