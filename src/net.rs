//! A byte stream shared by the two tasks that serve one connection on one executor.
//!
//! The reader task and the writer task of a connection (broker or client side) each poll
//! their own direction of the same stream. glommio keeps separate readiness sources for
//! reads and writes, and a borrow lasts only for one poll, so the two never conflict.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_lite::future::poll_fn;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// A stream shared by a reader and a writer task.
///
/// ```no_run
/// # glommio::LocalExecutor::default().run(async {
/// let tcp = glommio::net::TcpStream::connect("127.0.0.1:4222").await.unwrap();
/// let stream = natsu::net::Shared::new(tcp);
/// let mut buf = [0u8; 512];
/// let n = stream.read_some(&mut buf).await.unwrap();
/// assert!(buf[..n].starts_with(b"INFO "));
/// # });
/// ```
pub struct Shared<S>(Rc<RefCell<S>>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Shared<S> {
    pub fn new(stream: S) -> Shared<S> {
        Shared(Rc::new(RefCell::new(stream)))
    }

    /// Read what is there (at least one byte), or 0 at end of stream.
    pub async fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)).await
    }

    /// Write all of `buf` and flush it (a TLS stream holds records back until flushed).
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        self.write_all_by(buf, None).await
    }

    /// [`Shared::write_all`], failing with `TimedOut` when a partial write completes after
    /// `deadline`: a peer that takes a few bytes at a time cannot stretch one flush without
    /// bound. (A write that makes no progress at all is bounded by the stream's own write
    /// timeout.) Checked between writes, so the usual flush costs no timer.
    pub async fn write_all_by(&self, mut buf: &[u8], deadline: Option<std::time::Instant>) -> io::Result<()> {
        while !buf.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
            if !buf.is_empty() && deadline.is_some_and(|d| std::time::Instant::now() > d) {
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
        poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)).await
    }

    /// Write all of `parts` in order (a vectored write where the stream has one) and flush,
    /// under `deadline` as [`Shared::write_all_by`].
    pub async fn write_vectored_all_by(&self, mut parts: &mut [io::IoSlice<'_>], deadline: Option<std::time::Instant>) -> io::Result<()> {
        io::IoSlice::advance_slices(&mut parts, 0);
        while !parts.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_write_vectored(cx, parts)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            io::IoSlice::advance_slices(&mut parts, n);
            if !parts.is_empty() && deadline.is_some_and(|d| std::time::Instant::now() > d) {
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
        poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)).await
    }

    /// Shut the stream down (a TLS stream sends close_notify first).
    pub async fn close(&self) -> io::Result<()> {
        poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)).await
    }

    /// Act on the stream itself, between polls (e.g. queue a WebSocket close frame).
    pub fn with<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

/// A connection's read buffer: bytes read and not yet parsed sit in `pending()`.
///
/// It starts small (an idle connection costs little), doubles while reads fill it, grows to
/// whatever a big payload needs, and shrinks back once that payload is consumed. A big
/// payload can leave it without a copy ([`ReadBuf::freeze_front`]): the buffer's front
/// becomes shared, immutable `Bytes`, and reading goes on in the rest of the allocation.
pub struct ReadBuf {
    /// Initialized to its length; `start..end` is pending.
    buf: BytesMut,
    start: usize,
    end: usize,
    /// The size the buffer has when nothing big passes through (doubles while reads fill
    /// it, up to `max`).
    size: usize,
    /// The usual largest size; a payload may take it further for a while.
    max: usize,
    /// The last read filled all the space it had.
    filled: bool,
    /// Where the current allocation starts and its size (all of it initialized).
    alloc: (usize, usize),
    /// Allocations frozen out of the buffer (the last [`LENT_MAX`]; see
    /// [`ReadBuf::freeze_front`]), with their start and size: reused once nobody else holds
    /// them. A fresh allocation per big payload cost a memset and page faults: more than the
    /// copy it saved.
    lent: Vec<(Bytes, (usize, usize))>,
    /// Allocations made (not reused), for the tests.
    allocs: usize,
}

/// Allocations a read buffer keeps for reuse after freezing big payloads out of them.
const LENT_MAX: usize = 4;

impl ReadBuf {
    /// A buffer of `initial` bytes holding `leftover` (bytes read before this reader began).
    pub fn new(initial: usize, max: usize, leftover: &[u8]) -> ReadBuf {
        let buf = BytesMut::zeroed(initial.max(leftover.len()));
        let alloc = (buf.as_ptr() as usize, buf.len());
        let mut r = ReadBuf { buf, start: 0, end: leftover.len(), size: initial.min(max), max, filled: false, alloc, lent: Vec::new(), allocs: 1 };
        r.buf[..leftover.len()].copy_from_slice(leftover);
        r
    }

    /// Make `buf` a buffer of at least `size` initialized bytes: a lent allocation nobody
    /// else holds any more when one fits (not more than twice the size), else a new one.
    fn renew(&mut self, size: usize) {
        let mut i = 0;
        while i < self.lent.len() {
            let (b, (start, len)) = &self.lent[i];
            if !b.is_unique() || *len < size || *len > 2 * size + 4096 {
                i += 1;
                continue;
            }
            let (start, len) = (*start, *len);
            let (b, _) = self.lent.swap_remove(i);
            let Ok(mut m) = b.try_into_mut() else { continue };
            m.clear();
            // The whole allocation again, from its start (nothing to move: it is empty).
            m.reserve(len);
            if m.as_ptr() as usize == start && m.capacity() == len {
                // SAFETY: the same allocation (its start and size checked): every byte of
                // it was initialized when it was made (`BytesMut::zeroed`) and only written
                // since.
                unsafe { m.set_len(len) };
                self.buf = m;
                self.alloc = (start, len);
                return;
            }
        }
        // Big ones in steps of 16 KiB, so that payloads of about one size reuse each other's.
        let size = if size > self.max { size.next_multiple_of(16 * 1024) } else { size };
        self.buf = BytesMut::zeroed(size);
        self.alloc = (self.buf.as_ptr() as usize, self.buf.len());
        self.allocs += 1;
    }

    /// Bytes read and not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The first `n` pending bytes have been parsed.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.filled && self.size < self.max {
                self.size = (self.size * 2).min(self.max);
                self.renew(self.size);
            } else if self.buf.len() > self.max {
                // Done with a big payload: give the memory back.
                self.buf = BytesMut::new();
                self.size = self.max;
                self.renew(self.max);
            }
        }
    }

    /// Take the first `n` pending bytes out as `Bytes` without copying them (a big payload
    /// that goes on to many subscribers, on other cores too). The buffer goes on in what
    /// is left of its memory; the memory is freed once the last `Bytes` of it is dropped.
    pub fn freeze_front(&mut self, n: usize) -> Bytes {
        assert!(n <= self.end - self.start, "freeze_front past the pending bytes");
        let mut front = self.buf.split_to(self.start + n);
        bytes::Buf::advance(&mut front, self.start);
        self.end -= self.start + n;
        self.start = 0;
        let front = front.freeze();
        if self.lent.len() == LENT_MAX {
            self.lent.remove(0);
        }
        self.lent.push((front.clone(), self.alloc));
        front
    }

    /// Read once from `stream` into the free space, first making room when less than a
    /// quarter is free: a partial command moves to the front, in a buffer twice as big while
    /// reads keep filling it (up to the usual largest), or as big as `needed` (what the
    /// parser waits for).
    ///
    /// The doubling must not wait for a read to end on a command boundary: with 1 KiB
    /// messages that almost never happens, and a buffer stuck at 4 KiB meant a read, and a
    /// write downstream, per four messages.
    pub async fn read_from<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &Shared<S>, needed: usize) -> io::Result<usize> {
        if self.buf.len() - self.end < self.size / 4 || self.start + needed > self.buf.len() {
            let pending = self.end - self.start;
            if self.filled && self.size < self.max {
                self.size = (self.size * 2).min(self.max);
            }
            let size = self.size.max(needed).max(pending + 4096);
            if size > self.buf.len() {
                let old = std::mem::take(&mut self.buf);
                self.renew(size);
                self.buf[..pending].copy_from_slice(&old[self.start..self.end]);
            } else if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
            }
            // (Else a big payload is arriving at the front of a buffer already its size:
            // nothing to move.)
            self.end = pending;
            self.start = 0;
        }
        let space = self.buf.len() - self.end;
        let n = stream.read_some(&mut self.buf[self.end..]).await?;
        self.end += n;
        self.filled = n == space;
        Ok(n)
    }
}

/// A connection's byte stream: plain TCP, or TLS over TCP from either end (the client
/// library's connections and the broker's), or, in the broker, the NATS protocol in
/// WebSocket frames over one of those (a browser's connection).
pub enum Transport {
    Plain(TcpStream),
    ClientTls(Box<futures_rustls::client::TlsStream<TcpStream>>),
    ServerTls(Box<futures_rustls::server::TlsStream<TlsTcp>>),
    #[cfg(feature = "server")]
    WebSocket(Box<crate::server::websocket::frame::WsStream<Transport>>),
}

impl Transport {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::ClientTls(s) => s.get_ref().0,
            Transport::ServerTls(s) => &s.get_ref().0.tcp,
            #[cfg(feature = "server")]
            Transport::WebSocket(s) => s.get_ref().tcp(),
        }
    }

    /// The negotiated TLS version and cipher suite, for monitoring.
    pub fn tls_info(&self) -> Option<(String, String)> {
        let (version, suite) = match self {
            Transport::Plain(_) => return None,
            Transport::ClientTls(s) => (s.get_ref().1.protocol_version(), s.get_ref().1.negotiated_cipher_suite()),
            Transport::ServerTls(s) => (s.get_ref().1.protocol_version(), s.get_ref().1.negotiated_cipher_suite()),
            #[cfg(feature = "server")]
            Transport::WebSocket(s) => return s.get_ref().tls_info(),
        };
        let version = match version {
            Some(rustls::ProtocolVersion::TLSv1_3) => "1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => String::new(),
        };
        Some((version, suite.map(|s| format!("{:?}", s.suite())).unwrap_or_default()))
    }
}

/// The TCP stream under a broker's TLS connection.
///
/// rustls reads at most 4 KiB of records per call (and shrinks its buffer back to that each
/// time it is drained), so a TLS stream reading straight from the socket made a `recv` per
/// 4 KiB: ~150,000 a second under a 600 MB/s flood. Reads here take up to [`READ_AHEAD`] at
/// once and hand rustls its 4 KiB from memory. The buffer starts at 4 KiB, doubles while
/// reads fill it, and is given back whenever the socket has nothing more (an idle connection
/// holds none). Writes go out as rustls queues them: its records in one `sendmsg` (up to 64
/// at once), not one `send` each.
pub struct TlsTcp {
    pub tcp: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The size the next buffer gets.
    size: usize,
}

/// Most bytes one read takes from the socket under TLS.
const READ_AHEAD: usize = 64 * 1024;

impl TlsTcp {
    pub fn new(tcp: TcpStream) -> TlsTcp {
        TlsTcp { tcp, buf: Vec::new(), start: 0, end: 0, size: 4096 }
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.start == this.end {
            if out.len() >= READ_AHEAD {
                return Pin::new(&mut this.tcp).poll_read(cx, out);
            }
            if this.buf.len() != this.size {
                this.buf = vec![0; this.size];
            }
            let n = match Pin::new(&mut this.tcp).poll_read(cx, &mut this.buf) {
                Poll::Ready(Ok(n)) => n,
                other => {
                    // Nothing to read: no buffer held while waiting.
                    this.buf = Vec::new();
                    return other;
                }
            };
            if n == 0 {
                this.buf = Vec::new();
                return Poll::Ready(Ok(0));
            }
            if n == this.buf.len() {
                this.size = (this.size * 2).min(READ_AHEAD);
            }
            this.start = 0;
            this.end = n;
        }
        let n = out.len().min(this.end - this.start);
        out[..n].copy_from_slice(&this.buf[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        tcp_write_vectored(&mut self.get_mut().tcp, cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_close(cx)
    }
}

/// A vectored write on a glommio TCP stream (which writes one buffer at a time): all of
/// `bufs` in one `sendmsg` when the socket takes them now, else glommio's write of the first
/// non-empty one, which waits for room (with the stream's write timeout).
fn tcp_write_vectored(tcp: &mut TcpStream, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
    use std::os::unix::io::AsRawFd;
    let Some(first) = bufs.iter().find(|b| !b.is_empty()) else { return Poll::Ready(Ok(0)) };
    if bufs.len() > 1 {
        // SAFETY: a zeroed msghdr is valid. `IoSlice` is ABI-compatible with `iovec` on Unix,
        // and `bufs` outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len().min(1024) as _;
        // SAFETY: the stream's open socket, and a msghdr over live buffers.
        let n = unsafe { libc::sendmsg(tcp.as_raw_fd(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Poll::Ready(Ok(n as usize));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted {
            return Poll::Ready(Err(e));
        }
    }
    // The socket is full (or one buffer): glommio's write waits for it, with its timeout.
    Pin::new(tcp).poll_write(cx, first)
}

/// Forward one poll to whichever stream the transport holds.
macro_rules! each_stream {
    ($self:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Transport::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Transport::ClientTls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Transport::ServerTls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            #[cfg(feature = "server")]
            Transport::WebSocket($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        each_stream!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        each_stream!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => tcp_write_vectored(s, cx, bufs),
            other => each_stream!(Pin::new(other), s => s.poll_write_vectored(cx, bufs)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => s.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => s.poll_close(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::AsyncWriteExt;

    /// Read `total` bytes of `msg`-sized records sent in one burst over loopback, consuming
    /// whole records only, as the parser does; returns (reads, final buffer size).
    fn read_records(msg: usize, total: usize) -> (usize, usize) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 << 10)
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let writer = glommio::spawn_local(async move {
                    let mut s = TcpStream::connect(addr).await.unwrap();
                    s.write_all(&vec![b'x'; total]).await.unwrap();
                    s.close().await.unwrap();
                });
                let stream = Shared::new(listener.accept().await.unwrap());
                let mut buf = ReadBuf::new(1024, 64 * 1024, &[]);
                let (mut reads, mut got) = (0, 0);
                loop {
                    // A partial record: the parser waits for the whole of it.
                    let needed = if buf.pending().is_empty() { 0 } else { msg };
                    let n = buf.read_from(&stream, needed).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    reads += 1;
                    let whole = buf.pending().len() / msg * msg;
                    got += whole;
                    buf.consume(whole);
                }
                writer.await;
                assert_eq!(got, total);
                (reads, buf.buf.len())
            })
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_busy_connection_reads_in_big_chunks_whatever_the_record_size() {
        // Records that never end a read on a boundary (1 KiB payloads with their MSG line)
        // and small ones: the buffer grows to its usual largest size either way. Records
        // bigger than that take it further for a while, and it shrinks back after.
        for (msg, count) in [(1_043, 20_000), (22, 20_000), (300_001, 5)] {
            let total = msg * count;
            let (reads, size) = read_records(msg, total);
            assert_eq!(size, 64 * 1024, "records of {msg} B: the buffer stayed at {size} B");
            // Reads may come back short (the writer is on the same thread), but not 4 KiB ones.
            assert!(reads < total / 8192, "records of {msg} B: {reads} reads for {total} B");
        }
    }

    /// Under TLS: rustls's 4 KiB reads come out of the read-ahead buffer byte for byte, and a
    /// vectored write of many slices sends them all, in order.
    #[test]
    fn tls_tcp_reads_ahead_and_writes_vectored() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 << 10)
            .spawn(|| async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 1000) as u8).collect();
                let sent = data.clone();
                let writer = glommio::spawn_local(async move {
                    let mut s = TlsTcp::new(TcpStream::connect(addr).await.unwrap());
                    // Slices of assorted sizes, many per vectored write.
                    let mut at = 0;
                    let mut k = 0usize;
                    while at < sent.len() {
                        let cuts: Vec<usize> = (0..80).map(|j| 1 + (k * 31 + j * 977) % 9000).collect();
                        k += 1;
                        let mut slices = Vec::new();
                        let mut end = at;
                        for c in cuts {
                            let e = (end + c).min(sent.len());
                            slices.push(io::IoSlice::new(&sent[end..e]));
                            end = e;
                        }
                        let n = futures_lite::future::poll_fn(|cx| Pin::new(&mut s).poll_write_vectored(cx, &slices)).await.unwrap();
                        assert!(n > 0);
                        at += n;
                    }
                    s.close().await.unwrap();
                });
                let mut r = TlsTcp::new(listener.accept().await.unwrap());
                let mut got = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = futures_lite::future::poll_fn(|cx| Pin::new(&mut r).poll_read(cx, &mut chunk)).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&chunk[..n]);
                    // Every 4 KiB read is served whole while data is buffered.
                    assert!(n == 4096 || r.start == r.end, "a short read with data buffered");
                }
                writer.await;
                assert!(got == data, "bytes differ");
                assert!(r.buf.is_empty(), "the buffer is given back at the end");
            })
            .unwrap()
            .join()
            .unwrap();
    }
    /// Records of assorted sizes, the big ones taken out of the buffer as `Bytes` without a
    /// copy, sent with vectored writes over plain TCP (a `Transport`): every record arrives
    /// whole and in order, and frozen records keep their bytes while reading goes on (kept
    /// to the end, or let go at once: their memory is then reused, not allocated anew).
    #[test]
    fn big_records_leave_the_read_buffer_without_a_copy() {
        big_records(true);
        big_records(false);
    }

    fn big_records(keep: bool) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 << 10)
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                // Record i: 4-byte length, then its bytes (a function of i and the offset).
                let sizes: Vec<usize> = if keep {
                    (0..400).map(|i| [10, 1_000, 40_000, 70_000, 300_000, 33][i % 6] + i).collect()
                } else {
                    // About one size, as a publisher's big payloads often are.
                    (0..400).map(|i| [70_000 + i * 37 % 5_000, 20][i % 2]).collect()
                };
                let record = |i: usize| -> Vec<u8> {
                    let mut r = (sizes[i] as u32).to_le_bytes().to_vec();
                    r.extend((0..sizes[i]).map(|j| (i * 13 + j / 7) as u8));
                    r
                };
                let records: Vec<Vec<u8>> = (0..sizes.len()).map(record).collect();
                let sent = records.clone();
                let writer = glommio::spawn_local(async move {
                    let s = Shared::new(Transport::Plain(TcpStream::connect(addr).await.unwrap()));
                    for group in sent.chunks(7) {
                        let mut parts: Vec<io::IoSlice<'_>> = group.iter().map(|r| io::IoSlice::new(r)).collect();
                        s.write_vectored_all_by(&mut parts, None).await.unwrap();
                    }
                    s.close().await.unwrap();
                });
                let stream = Shared::new(listener.accept().await.unwrap());
                let mut buf = ReadBuf::new(512, 64 * 1024, &[]);
                let mut frozen = Vec::new();
                let mut next = 0;
                loop {
                    let p = buf.pending();
                    let len = (p.len() >= 4).then(|| 4 + u32::from_le_bytes(p[..4].try_into().unwrap()) as usize);
                    match len {
                        Some(len) if p.len() >= len => {
                            assert!(p[..len] == records[next][..], "record {next} differs");
                            if len > 32 * 1024 {
                                let at = p.as_ptr();
                                let b = buf.freeze_front(len);
                                assert_eq!(b.as_ptr(), at, "frozen in place");
                                if keep {
                                    frozen.push((next, b));
                                } else {
                                    assert!(b[..] == records[next][..]);
                                    frozen.push((next, Bytes::new()));
                                }
                            } else {
                                buf.consume(len);
                            }
                            next += 1;
                        }
                        _ => {
                            if buf.read_from(&stream, len.unwrap_or(0)).await.unwrap() == 0 {
                                break;
                            }
                        }
                    }
                }
                writer.await;
                assert_eq!(next, records.len());
                assert!(frozen.len() > 100);
                if keep {
                    for (i, b) in &frozen {
                        assert!(b[..] == records[*i][..], "frozen record {i} changed");
                    }
                } else {
                    assert!(buf.allocs < frozen.len() / 2, "{} allocations for {} frozen records", buf.allocs, frozen.len());
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
