//! The connection: its shared state, the tasks that serve it, and reconnecting.
//!
//! A [`Connection`] lives on one glommio executor. Calls append frames to one outbound
//! buffer and return; a writer task sends the whole buffer with one write per pass. A
//! reader task parses what the server sends and hands messages to subscriptions. A
//! supervisor task owns the socket: when the reader, the writer or the pinger find it
//! broken, it reconnects through the server pool, re-sends the subscriptions and then the
//! publishes buffered meanwhile, or closes the connection for good.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use futures_lite::future::poll_fn;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;

use super::error::{Error, Result};
use super::headers::Headers;
use super::msg::{self, Msg};
use super::options::Options;
use super::subscription::{MsgRef, Sink, SubState, Subscription};
use super::tls::{self, Transport};
use super::url::{Scheme, ServerAddr};
use super::{nuid, pool::Pool};
use crate::net::{ReadBuf, Shared};
use crate::protocol::info::{Connect, Info};
use crate::protocol::{encode, subject, Op, Parser, Role};

/// Longest control line accepted from a server (subjects can be long).
const MAX_CONTROL_LINE: usize = 64 * 1024;
/// The largest message taken from a server whose INFO announces no positive max_payload:
/// the largest max_payload nats-server accepts (64 MB).
const MAX_INBOUND_UNANNOUNCED: usize = 64 << 20;
/// What a message's total size can exceed its payload size by: its control line (at most
/// [`MAX_CONTROL_LINE`] of arguments after `HMSG `) and the CRLFs.
const MSG_FRAMING: usize = MAX_CONTROL_LINE + 16;
const READ_BUF: usize = 64 * 1024;

/// Where a connection is in its life, as nats.go's `Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Connected,
    Reconnecting,
    DrainingSubs,
    DrainingPubs,
    Closed,
}

/// Counters of a connection (nats.go's `Statistics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub reconnects: u64,
}

#[derive(Default)]
struct Stats {
    in_msgs: Cell<u64>,
    out_msgs: Cell<u64>,
    in_bytes: Cell<u64>,
    out_bytes: Cell<u64>,
    reconnects: Cell<u64>,
}

/// The shared response subscription of new-style requests: `<prefix>*`, one waiter per token.
struct Mux {
    prefix: String,
    waiting: HashMap<String, oneshot::Sender<Msg>, ahash::RandomState>,
    next_token: u64,
}

pub(crate) struct Inner {
    pub(crate) opts: Options,
    status: Cell<Status>,
    /// Frames waiting for the writer; while reconnecting, also the reconnect buffer.
    out: RefCell<Vec<u8>>,
    writer: Cell<Option<Waker>>,
    /// The writer is sending a buffer it took from `out`.
    writing: Cell<bool>,
    /// Publishers waiting for `out` to shrink below the write buffer size.
    room: RefCell<Vec<Waker>>,
    /// One entry per PING in flight: a flush waiting for its PONG, or the pinger's (`None`).
    pongs: RefCell<VecDeque<Option<oneshot::Sender<()>>>>,
    pings_out: Cell<u32>,
    subs: RefCell<HashMap<u64, Rc<SubState>, ahash::RandomState>>,
    /// The subscription the last MSG was for: the next one usually is too, and the reader
    /// looks here before the map. Cleared whenever a subscription is forgotten.
    last_sub: RefCell<Option<(u64, Rc<SubState>)>>,
    /// Socket reads completed on this connection (over reconnects): a message's
    /// [`MsgRef::read`](crate::client::MsgRef::read).
    pub(crate) reads: Cell<u64>,
    next_sid: Cell<u64>,
    mux: RefCell<Option<Mux>>,
    info: RefCell<Info>,
    pool: RefCell<Pool>,
    current: RefCell<Option<ServerAddr>>,
    stats: Stats,
    last_error: RefCell<Option<Error>>,
    /// Why the current socket is done; the supervisor waits for this.
    broken: RefCell<Option<Error>>,
    supervisor: Cell<Option<Waker>>,
    /// Set once the supervisor has finished closing.
    finished: Cell<bool>,
    closed_waiters: RefCell<Vec<Waker>>,
}

/// A connection to a NATS server (or a cluster of them), on the current glommio executor.
/// Cloning it is cheap and gives another handle to the same connection.
///
/// ```no_run
/// use std::time::Duration;
/// # glommio::LocalExecutor::default().run(async {
/// let nc = natsu::client::connect("nats://127.0.0.1:4222").await?;
/// let replier = nc.clone();
/// nc.subscribe("time", move |m| {
///     if let Some(reply) = m.reply {
///         let _ = replier.try_publish(&reply, "noon");
///     }
/// })?;
/// let answer = nc.request("time", "", Duration::from_secs(1)).await?;
/// assert_eq!(answer.text(), Some("noon"));
/// nc.drain().await?;
/// # Ok::<(), natsu::client::Error>(()) });
/// ```
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Rc<Inner>,
}

/// Race `fut` against a deadline.
pub(crate) async fn with_deadline<T>(deadline: Instant, fut: impl Future<Output = T>) -> Result<T> {
    let wait = deadline.saturating_duration_since(Instant::now());
    futures_lite::future::or(async { Ok(fut.await) }, async {
        Timer::new(wait).await;
        Err(Error::Timeout)
    })
    .await
}

/// Add `waker` to a list of waiters unless it is already there: a future polled many
/// times while pending (inside a `select` loop, say) must not grow the list each time.
pub(crate) fn park(list: &RefCell<Vec<Waker>>, waker: &Waker) {
    let mut list = list.borrow_mut();
    if !list.iter().any(|w| w.will_wake(waker)) {
        list.push(waker.clone());
    }
}

fn check_publish_subject(s: &str) -> Result<()> {
    if s.is_empty() || s.bytes().any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        return Err(Error::BadSubject);
    }
    Ok(())
}

fn parse_sid(b: &[u8]) -> Option<u64> {
    crate::protocol::parser::parse_size(b).map(|n| n as u64)
}

impl Inner {
    fn status(&self) -> Status {
        self.status.get()
    }

    fn wake_writer(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Queue a control frame (SUB, UNSUB, PING, PONG).
    fn send_control(&self, frame: &[u8]) {
        self.out.borrow_mut().extend_from_slice(frame);
        self.wake_writer();
    }

    fn send_sub(&self, out: &mut Vec<u8>, sub: &SubState) {
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b"SUB ");
        out.extend_from_slice(sub.subject.as_bytes());
        out.push(b' ');
        if let Some(q) = &sub.queue {
            out.extend_from_slice(q.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(num.format(sub.sid).as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// `UNSUB sid [max]`.
    pub(crate) fn send_unsub(&self, sid: u64, max: Option<u64>) {
        if self.status() == Status::Closed {
            return;
        }
        let mut num = itoa::Buffer::new();
        let mut out = self.out.borrow_mut();
        out.extend_from_slice(b"UNSUB ");
        out.extend_from_slice(num.format(sid).as_bytes());
        if let Some(max) = max {
            out.push(b' ');
            out.extend_from_slice(num.format(max).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        drop(out);
        self.wake_writer();
    }

    /// Stop routing messages to `sid`.
    pub(crate) fn forget_sub(&self, sid: u64) {
        self.subs.borrow_mut().remove(&sid);
        self.last_sub.borrow_mut().take();
    }

    /// The subscription for a MSG's sid, if it is still there.
    fn sub_for(&self, sid: u64) -> Option<Rc<SubState>> {
        if let Some((s, sub)) = &*self.last_sub.borrow() {
            if *s == sid {
                return Some(sub.clone());
            }
        }
        let sub = self.subs.borrow().get(&sid).cloned()?;
        *self.last_sub.borrow_mut() = Some((sid, sub.clone()));
        Some(sub)
    }

    /// The connection's socket is done (or the user closed it): wake the supervisor.
    fn fail(&self, err: Error) {
        let mut broken = self.broken.borrow_mut();
        if broken.is_none() {
            *broken = Some(err);
        }
        drop(broken);
        if let Some(w) = self.supervisor.take() {
            w.wake();
        }
    }

    /// Record an error and tell the error callback.
    pub(crate) fn report(&self, conn: &Connection, sub: Option<&Subscription>, err: Error) {
        *self.last_error.borrow_mut() = Some(err.clone());
        if let Some(cb) = self.opts.async_error.clone() {
            cb(conn, sub, &err);
        }
    }

    /// A response on the request inbox: hand it to the request waiting for its token.
    pub(crate) fn mux_deliver(&self, msg: Msg) {
        let mut mux = self.mux.borrow_mut();
        let Some(m) = mux.as_mut() else { return };
        let Some(token) = msg.subject.strip_prefix(m.prefix.as_str()) else { return };
        if let Some(tx) = m.waiting.remove(token) {
            let _ = tx.send(msg);
        }
    }

    /// The largest message the server may send now.
    fn max_inbound(&self) -> usize {
        max_inbound(&self.info.borrow())
    }

    fn header_support(&self) -> bool {
        self.info.borrow().headers
    }

    /// Servers named in an INFO's `connect_urls` join the pool; true if any was new.
    fn learn_servers(&self, info: &Info) -> bool {
        let tls = self.current.borrow().as_ref().map_or(false, ServerAddr::is_tls);
        let mut added = false;
        let mut pool = self.pool.borrow_mut();
        for u in &info.connect_urls {
            if let Ok(mut addr) = ServerAddr::parse(u) {
                if tls {
                    addr.scheme = Scheme::Tls;
                }
                added |= pool.add_discovered(addr, !self.opts.no_randomize);
            }
        }
        added
    }
}

impl Connection {
    /// Connect with `opts` to the first server of the pool that answers.
    pub(crate) async fn open(opts: Options, servers: Vec<ServerAddr>) -> Result<Connection> {
        let randomize = !opts.no_randomize;
        let inner = Rc::new(Inner {
            opts,
            status: Cell::new(Status::Connecting),
            out: RefCell::new(Vec::new()),
            writer: Cell::new(None),
            writing: Cell::new(false),
            room: RefCell::new(Vec::new()),
            pongs: RefCell::new(VecDeque::new()),
            pings_out: Cell::new(0),
            subs: RefCell::new(HashMap::default()),
            last_sub: RefCell::new(None),
            reads: Cell::new(0),
            next_sid: Cell::new(1),
            mux: RefCell::new(None),
            info: RefCell::new(Info::default()),
            pool: RefCell::new(Pool::new(servers, randomize)),
            current: RefCell::new(None),
            stats: Stats::default(),
            last_error: RefCell::new(None),
            broken: RefCell::new(None),
            supervisor: Cell::new(None),
            finished: Cell::new(false),
            closed_waiters: RefCell::new(Vec::new()),
        });
        let conn = Connection { inner };
        let mut last = Error::NoServers;
        // First contact tries each server once, in pool order (as nats.go without retry).
        let n = conn.inner.pool.borrow().len();
        for i in 0..n {
            let addr = conn.inner.pool.borrow_mut().first_attempt(i);
            match conn.handshake(&addr).await {
                Ok((transport, leftover)) => {
                    conn.inner.pool.borrow_mut().connected(i);
                    *conn.inner.current.borrow_mut() = Some(addr);
                    conn.inner.status.set(Status::Connected);
                    glommio::spawn_local(supervise(conn.clone(), transport, leftover)).detach();
                    return Ok(conn);
                }
                Err(e) => {
                    tracing::debug!(server = %addr, error = %e, "connect failed");
                    last = e;
                }
            }
        }
        // Servers that refuse the connection are "no servers" (as nats.go); a timeout, or a
        // refusal of our credentials or TLS, says so.
        Err(match last {
            Error::Io(_) => Error::NoServers,
            e => e,
        })
    }

    /// TCP connect, INFO, TLS if wanted, CONNECT and PING, then wait for PONG.
    async fn handshake(&self, addr: &ServerAddr) -> Result<(Transport, Vec<u8>)> {
        let opts = &self.inner.opts;
        let deadline = Instant::now() + opts.connect_timeout;
        let tcp = TcpStream::connect_timeout(addr.host_port(), opts.connect_timeout)
            .await
            .map_err(|e| Error::io(e.into()))?;
        let _ = tcp.set_nodelay(true);
        let mut transport = Transport::Plain(tcp);
        let mut buf = Vec::new();
        let info = with_deadline(
            deadline,
            // No message can come before INFO.
            read_ops(&mut transport, &mut buf, 0, |op| match op {
                Op::Info(json) => Some(serde_json::from_slice::<Info>(json).map_err(|e| Error::Protocol(format!("INFO: {e}")))),
                _ => Some(Err(Error::Protocol("expected INFO from the server".into()))),
            }),
        )
        .await??;
        let want_tls = addr.is_tls() || opts.tls.required;
        if want_tls && !info.tls_required && !info.tls_available {
            // Said before any byte goes out, so no credentials are ever sent in clear.
            return Err(Error::Tls("secure connection not available: the server does not offer TLS".into()));
        }
        if want_tls || info.tls_required {
            let Transport::Plain(tcp) = transport else { unreachable!("the socket is plain before the upgrade") };
            let config = opts.tls.client_config()?;
            transport = with_deadline(deadline, tls::upgrade(config, &addr.host, tcp)).await??;
        }
        // An NKey user signs the nonce of this server's INFO (nats.go signs an empty one if
        // the server sent none; the server then refuses it).
        let (nkey, sig) = match &opts.nkey_seed {
            Some(seed) => {
                let kp = nkeys::KeyPair::from_seed(seed).map_err(|e| Error::InvalidArgument(format!("nkey seed: {e}")))?;
                let sig = kp.sign(info.nonce.as_deref().unwrap_or("").as_bytes()).map_err(|e| Error::InvalidArgument(format!("nkey seed: {e}")))?;
                use base64::Engine;
                // A JWT user is named by its JWT, not its key.
                let key = opts.user_jwt.is_none().then(|| kp.public_key());
                (key, Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)))
            }
            None => (None, None),
        };
        let connect = Connect {
            verbose: opts.verbose,
            pedantic: opts.pedantic,
            tls_required: want_tls || info.tls_required,
            name: opts.name.clone(),
            lang: "rust-natsu".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol: 1,
            echo: !opts.no_echo,
            headers: info.headers,
            no_responders: info.headers,
            // Credentials in the URL win over the options, as nats.go.
            user: addr.user.clone().or_else(|| opts.user.clone()),
            pass: addr.pass.clone().or_else(|| opts.password.clone()),
            auth_token: addr.token.clone().or_else(|| opts.token.clone()),
            nkey,
            sig,
            jwt: opts.user_jwt.as_deref().map(str::to_string),
        };
        let mut hello = b"CONNECT ".to_vec();
        serde_json::to_writer(&mut hello, &connect).map_err(|e| Error::Protocol(e.to_string()))?;
        hello.extend_from_slice(b"\r\nPING\r\n");
        with_deadline(deadline, async {
            transport.write_all(&hello).await?;
            transport.flush().await
        })
        .await??;
        with_deadline(
            deadline,
            read_ops(&mut transport, &mut buf, max_inbound(&info), |op| match op {
                Op::Pong => Some(Ok(())),
                Op::Err(text) => Some(Err(Error::from_server(&msg::text(text)))),
                _ => None,
            }),
        )
        .await??;
        let added = self.inner.learn_servers(&info);
        *self.inner.info.borrow_mut() = info;
        if added && self.inner.status() == Status::Reconnecting {
            if let Some(cb) = opts.discovered.clone() {
                cb(self);
            }
        }
        Ok((transport, buf))
    }

    /// Queue a PUB/HPUB frame. Never waits.
    fn put_publish(&self, subject: &str, reply: Option<&str>, headers: Option<&Headers>, data: &[u8]) -> Result<()> {
        let inner = &self.inner;
        let status = inner.status();
        if status == Status::Closed {
            return Err(Error::ConnectionClosed);
        }
        check_publish_subject(subject)?;
        if let Some(r) = reply {
            check_publish_subject(r)?;
        }
        let mut block = Vec::new();
        if let Some(h) = headers {
            if status != Status::Reconnecting && !inner.header_support() {
                return Err(Error::HeadersNotSupported);
            }
            h.validate().map_err(|e| Error::InvalidArgument(e.to_string()))?;
            block.reserve(h.encoded_len() + data.len());
            h.encode(&mut block);
        }
        let total = block.len() + data.len();
        let max = inner.info.borrow().max_payload;
        if max > 0 && total as i64 > max {
            return Err(Error::MaxPayload);
        }
        let mut out = inner.out.borrow_mut();
        if status == Status::Reconnecting
            && out.len() + total + subject.len() + reply.map_or(0, str::len) + 32 > inner.opts.reconnect_buf_size
        {
            return Err(Error::ReconnectBufExceeded);
        }
        if headers.is_some() {
            let hlen = block.len();
            block.extend_from_slice(data);
            encode::publish(&mut out, subject.as_bytes(), reply.map(str::as_bytes), Some(hlen), &block);
        } else {
            encode::publish(&mut out, subject.as_bytes(), reply.map(str::as_bytes), None, data);
        }
        drop(out);
        inner.stats.out_msgs.set(inner.stats.out_msgs.get() + 1);
        inner.stats.out_bytes.set(inner.stats.out_bytes.get() + total as u64);
        inner.wake_writer();
        Ok(())
    }

    /// Wait while the outbound buffer is over the write buffer size (connected only: while
    /// reconnecting the reconnect buffer limit applies instead).
    async fn room(&self) {
        let inner = &self.inner;
        poll_fn(|cx| {
            let s = inner.status();
            if !matches!(s, Status::Connected | Status::DrainingSubs | Status::DrainingPubs)
                || inner.out.borrow().len() < inner.opts.write_buffer
            {
                return Poll::Ready(());
            }
            park(&inner.room, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Publish `data` to `subject`. Returns once the message is queued; waits only while
    /// more than the write buffer size is queued, so a fast publisher cannot outrun the socket.
    ///
    /// ```no_run
    /// # glommio::LocalExecutor::default().run(async {
    /// let nc = natsu::client::connect("127.0.0.1").await?;
    /// nc.publish("events.created", "id=7").await?;
    /// nc.flush().await?; // the server has it now
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub async fn publish(&self, subject: &str, data: impl AsRef<[u8]>) -> Result<()> {
        self.room().await;
        self.put_publish(subject, None, None, data.as_ref())
    }

    /// Publish with a reply subject.
    pub async fn publish_request(&self, subject: &str, reply: &str, data: impl AsRef<[u8]>) -> Result<()> {
        self.room().await;
        self.put_publish(subject, Some(reply), None, data.as_ref())
    }

    /// Publish with headers (HPUB).
    ///
    /// ```no_run
    /// use natsu::client::Headers;
    /// # glommio::LocalExecutor::default().run(async {
    /// let nc = natsu::client::connect("127.0.0.1").await?;
    /// let mut h = Headers::new();
    /// h.insert("Content-Type", "text/plain");
    /// nc.publish_with_headers("notes", &h, "hi").await?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub async fn publish_with_headers(&self, subject: &str, headers: &Headers, data: impl AsRef<[u8]>) -> Result<()> {
        self.room().await;
        self.put_publish(subject, None, Some(headers), data.as_ref())
    }

    /// Publish a whole [`Msg`]: subject, reply, headers and data.
    pub async fn publish_msg(&self, msg: &Msg) -> Result<()> {
        self.room().await;
        self.try_publish_msg(msg)
    }

    /// Publish without ever waiting: for handlers and callbacks, which cannot `.await`.
    pub fn try_publish(&self, subject: &str, data: impl AsRef<[u8]>) -> Result<()> {
        self.put_publish(subject, None, None, data.as_ref())
    }

    /// [`publish_msg`](Self::publish_msg) without ever waiting.
    pub fn try_publish_msg(&self, msg: &Msg) -> Result<()> {
        self.put_publish(&msg.subject, msg.reply.as_deref(), msg.headers.as_ref(), &msg.data)
    }

    fn add_sub(&self, subject: &str, queue: Option<&str>, sink: Sink, sync: bool) -> Result<Rc<SubState>> {
        let inner = &self.inner;
        match inner.status() {
            Status::Closed => return Err(Error::ConnectionClosed),
            Status::DrainingSubs | Status::DrainingPubs => return Err(Error::Draining),
            _ => {}
        }
        if !subject::valid_subject(subject.as_bytes()) {
            return Err(Error::BadSubject);
        }
        if let Some(q) = queue {
            if !subject::valid_queue(q.as_bytes()) {
                return Err(Error::InvalidArgument(format!("invalid queue name {q:?}")));
            }
        }
        let sid = inner.next_sid.get();
        inner.next_sid.set(sid + 1);
        let state = Rc::new(SubState::new(
            sid,
            subject.to_owned(),
            queue.map(str::to_owned),
            sink,
            sync,
            inner.opts.sub_pending_msgs,
            inner.opts.sub_pending_bytes,
        ));
        inner.subs.borrow_mut().insert(sid, state.clone());
        inner.send_sub(&mut inner.out.borrow_mut(), &state);
        inner.wake_writer();
        Ok(state)
    }

    fn handler_sub(&self, subject: &str, queue: Option<&str>, handler: Box<dyn FnMut(Msg)>) -> Result<Subscription> {
        let state = self.add_sub(subject, queue, Sink::Queue, false)?;
        glommio::spawn_local(state.clone().run_handler(handler)).detach();
        Ok(Subscription { conn: self.clone(), state })
    }

    /// Subscribe with a handler, run on this executor for each message in order. A handler
    /// cannot `.await`; to answer, use [`try_publish`](Self::try_publish).
    ///
    /// ```no_run
    /// # glommio::LocalExecutor::default().run(async {
    /// let nc = natsu::client::connect("127.0.0.1").await?;
    /// let sub = nc.subscribe("orders.*", |m| println!("{}: {:?}", m.subject, m.text()))?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn subscribe(&self, subject: &str, handler: impl FnMut(Msg) + 'static) -> Result<Subscription> {
        self.handler_sub(subject, None, Box::new(handler))
    }

    /// A queue-group member with a handler: each message goes to one member of the group.
    pub fn queue_subscribe(&self, subject: &str, queue: &str, handler: impl FnMut(Msg) + 'static) -> Result<Subscription> {
        self.handler_sub(subject, Some(queue), Box::new(handler))
    }

    /// Subscribe with a handler that the connection's reader runs itself, on a view of the
    /// message still in the read buffer: no copy, no allocation, no queue. The fastest way to
    /// consume (the load generator uses it), with two costs: a slow handler slows every
    /// subscription of the connection, and there are no pending limits.
    ///
    /// ```no_run
    /// use std::{cell::Cell, rc::Rc};
    /// # glommio::LocalExecutor::default().run(async {
    /// let nc = natsu::client::connect("127.0.0.1").await?;
    /// let bytes = Rc::new(Cell::new(0usize));
    /// let b = bytes.clone();
    /// nc.subscribe_inline("metrics.>", move |m| b.set(b.get() + m.data.len()))?;
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn subscribe_inline(&self, subject: &str, handler: impl FnMut(&MsgRef<'_>) + 'static) -> Result<Subscription> {
        self.inline_sub(subject, None, Box::new(handler))
    }

    /// A queue-group member with an inline handler.
    pub fn queue_subscribe_inline(&self, subject: &str, queue: &str, handler: impl FnMut(&MsgRef<'_>) + 'static) -> Result<Subscription> {
        self.inline_sub(subject, Some(queue), Box::new(handler))
    }

    fn inline_sub(&self, subject: &str, queue: Option<&str>, handler: Box<dyn FnMut(&MsgRef<'_>)>) -> Result<Subscription> {
        let state = self.add_sub(subject, queue, Sink::Inline(RefCell::new(handler)), false)?;
        Ok(Subscription { conn: self.clone(), state })
    }

    /// A subscription read with [`Subscription::next_msg`].
    pub fn subscribe_sync(&self, subject: &str) -> Result<Subscription> {
        let state = self.add_sub(subject, None, Sink::Queue, true)?;
        Ok(Subscription { conn: self.clone(), state })
    }

    /// A queue-group member read with [`Subscription::next_msg`].
    pub fn queue_subscribe_sync(&self, subject: &str, queue: &str) -> Result<Subscription> {
        let state = self.add_sub(subject, Some(queue), Sink::Queue, true)?;
        Ok(Subscription { conn: self.clone(), state })
    }

    /// Deliver into a glommio local channel; a full channel drops the message (slow consumer).
    ///
    /// ```no_run
    /// use glommio::channels::local_channel;
    /// # glommio::LocalExecutor::default().run(async {
    /// let nc = natsu::client::connect("127.0.0.1").await?;
    /// let (tx, rx) = local_channel::new_bounded(1024);
    /// nc.chan_subscribe("ticks", tx)?;
    /// while let Some(m) = rx.recv().await {
    ///     println!("{:?}", m.data);
    /// }
    /// # Ok::<(), natsu::client::Error>(()) });
    /// ```
    pub fn chan_subscribe(&self, subject: &str, tx: glommio::channels::local_channel::LocalSender<Msg>) -> Result<Subscription> {
        let state = self.add_sub(subject, None, Sink::Chan(tx), false)?;
        Ok(Subscription { conn: self.clone(), state })
    }

    /// A queue-group member delivering into a channel.
    pub fn chan_queue_subscribe(
        &self,
        subject: &str,
        queue: &str,
        tx: glommio::channels::local_channel::LocalSender<Msg>,
    ) -> Result<Subscription> {
        let state = self.add_sub(subject, Some(queue), Sink::Chan(tx), false)?;
        Ok(Subscription { conn: self.clone(), state })
    }

    /// A fresh unique inbox subject, `_INBOX.<nuid>`.
    pub fn new_inbox(&self) -> String {
        format!("_INBOX.{}", nuid::next())
    }

    /// Send a request and wait at most `timeout` for the first response. Responses of all
    /// requests share one wildcard inbox subscription (unless
    /// [`Options::old_request_style`]); [`Error::NoResponders`] when nobody listens. Dropping
    /// the future cancels the request.
    pub async fn request(&self, subject: &str, data: impl AsRef<[u8]>, timeout: Duration) -> Result<Msg> {
        self.request_until(subject, None, data.as_ref(), Instant::now() + timeout).await
    }

    /// A request with headers, from a whole [`Msg`] (its reply field is ignored).
    pub async fn request_msg(&self, msg: &Msg, timeout: Duration) -> Result<Msg> {
        self.request_until(&msg.subject, msg.headers.as_ref(), &msg.data, Instant::now() + timeout).await
    }

    /// A request that gives up at `deadline`.
    pub async fn request_until(&self, subject: &str, headers: Option<&Headers>, data: &[u8], deadline: Instant) -> Result<Msg> {
        match self.inner.status() {
            Status::Closed => return Err(Error::ConnectionClosed),
            Status::DrainingSubs | Status::DrainingPubs => return Err(Error::Draining),
            _ => {}
        }
        let resp = if self.inner.opts.old_request_style {
            self.old_request(subject, headers, data, deadline).await?
        } else {
            let (reply, rx) = self.mux_register()?;
            let _guard = MuxGuard { conn: self, reply: &reply };
            self.room().await;
            self.put_publish(subject, Some(&reply), headers, data)?;
            with_deadline(deadline, rx).await?.map_err(|_| Error::ConnectionClosed)?
        };
        if resp.is_no_responders() {
            return Err(Error::NoResponders);
        }
        Ok(resp)
    }

    async fn old_request(&self, subject: &str, headers: Option<&Headers>, data: &[u8], deadline: Instant) -> Result<Msg> {
        let inbox = self.new_inbox();
        let sub = self.subscribe_sync(&inbox)?;
        sub.auto_unsubscribe(1)?;
        self.room().await;
        let sent = self.put_publish(subject, Some(&inbox), headers, data);
        let r = match sent {
            Ok(()) => sub.next_msg_until(deadline).await,
            Err(e) => Err(e),
        };
        if r.is_err() {
            let _ = sub.unsubscribe();
        }
        r
    }

    /// Register a waiter on the response inbox, creating the inbox subscription first time.
    fn mux_register(&self) -> Result<(String, oneshot::Receiver<Msg>)> {
        if self.inner.mux.borrow().is_none() {
            let prefix = format!("{}.", self.new_inbox());
            self.add_sub(&format!("{prefix}*"), None, Sink::Mux, false)?;
            *self.inner.mux.borrow_mut() = Some(Mux { prefix, waiting: HashMap::default(), next_token: 1 });
        }
        let mut mux = self.inner.mux.borrow_mut();
        let Some(m) = mux.as_mut() else { return Err(Error::ConnectionClosed) };
        let token = m.next_token.to_string();
        m.next_token += 1;
        let (tx, rx) = oneshot::channel();
        let reply = format!("{}{token}", m.prefix);
        m.waiting.insert(token, tx);
        Ok((reply, rx))
    }

    /// Send a PING and wait (at most the flush timeout, 10 s by default) for the PONG: then
    /// the server has processed everything sent before.
    pub async fn flush(&self) -> Result<()> {
        self.flush_timeout(self.inner.opts.flush_timeout).await
    }

    /// [`flush`](Self::flush) with its own timeout.
    pub async fn flush_timeout(&self, timeout: Duration) -> Result<()> {
        self.flush_until(Instant::now() + timeout).await
    }

    pub(crate) async fn flush_until(&self, deadline: Instant) -> Result<()> {
        if self.inner.status() == Status::Closed {
            return Err(Error::ConnectionClosed);
        }
        let (tx, rx) = oneshot::channel();
        self.inner.pongs.borrow_mut().push_back(Some(tx));
        self.inner.send_control(b"PING\r\n");
        with_deadline(deadline, rx).await?.map_err(|_| Error::ConnectionClosed)
    }

    /// Counters since the connection was made.
    pub fn stats(&self) -> Statistics {
        let s = &self.inner.stats;
        Statistics {
            in_msgs: s.in_msgs.get(),
            out_msgs: s.out_msgs.get(),
            in_bytes: s.in_bytes.get(),
            out_bytes: s.out_bytes.get(),
            reconnects: s.reconnects.get(),
        }
    }

    pub fn status(&self) -> Status {
        self.inner.status()
    }

    pub fn is_connected(&self) -> bool {
        self.inner.status() == Status::Connected
    }

    pub fn is_reconnecting(&self) -> bool {
        self.inner.status() == Status::Reconnecting
    }

    pub fn is_closed(&self) -> bool {
        self.inner.status() == Status::Closed
    }

    pub fn is_draining(&self) -> bool {
        matches!(self.inner.status(), Status::DrainingSubs | Status::DrainingPubs)
    }

    /// The last error seen: from the server, a socket, or a slow consumer.
    pub fn last_error(&self) -> Option<Error> {
        self.inner.last_error.borrow().clone()
    }

    /// The server connected to now (without credentials).
    pub fn connected_url(&self) -> Option<String> {
        if !self.is_connected() && !self.is_draining() {
            return None;
        }
        self.inner.current.borrow().as_ref().map(ServerAddr::url)
    }

    /// The `server_id` of the server connected to now.
    pub fn connected_server_id(&self) -> Option<String> {
        if !self.is_connected() && !self.is_draining() {
            return None;
        }
        Some(self.inner.info.borrow().server_id.clone())
    }

    /// The connected server's name and version, from its INFO.
    pub fn connected_server_name(&self) -> String {
        self.inner.info.borrow().server_name.clone()
    }

    pub fn connected_server_version(&self) -> String {
        self.inner.info.borrow().version.clone()
    }

    /// Every server in the pool (without credentials).
    pub fn servers(&self) -> Vec<String> {
        self.inner.pool.borrow().urls(false)
    }

    /// Servers that INFO messages added to the pool.
    pub fn discovered_servers(&self) -> Vec<String> {
        self.inner.pool.borrow().urls(true)
    }

    /// The largest message the server accepts.
    pub fn max_payload(&self) -> usize {
        self.inner.info.borrow().max_payload.max(0) as usize
    }

    pub fn auth_required(&self) -> bool {
        self.inner.info.borrow().auth_required
    }

    pub fn tls_required(&self) -> bool {
        self.inner.info.borrow().tls_required
    }

    /// Whether the server takes headers (HPUB).
    pub fn headers_supported(&self) -> bool {
        self.inner.header_support()
    }

    /// Bytes queued and not yet handed to the socket.
    pub fn buffered(&self) -> usize {
        self.inner.out.borrow().len()
    }

    /// Send what is queued, then close. The closed callback has run when this returns.
    pub async fn close(&self) {
        let inner = &self.inner;
        if inner.status() != Status::Closed {
            let was_up = matches!(inner.status(), Status::Connected | Status::DrainingSubs | Status::DrainingPubs);
            inner.status.set(Status::Closed);
            if was_up {
                // Give the writer a moment to send what is queued, as nats.go flushes on Close.
                let _ = with_deadline(
                    Instant::now() + Duration::from_secs(1),
                    poll_fn(|cx| {
                        if inner.out.borrow().is_empty() && !inner.writing.get() {
                            return Poll::Ready(());
                        }
                        park(&inner.room, cx.waker());
                        Poll::Pending
                    }),
                )
                .await;
            }
            inner.fail(Error::ConnectionClosed);
        }
        self.closed().await
    }

    /// Resolves when the connection has closed for good.
    pub async fn closed(&self) {
        let inner = &self.inner;
        poll_fn(|cx| {
            if inner.finished.get() {
                return Poll::Ready(());
            }
            park(&inner.closed_waiters, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Unsubscribe everything, let the messages already on their way be processed, then
    /// close (waiting at most the drain timeout, 30 s by default).
    pub async fn drain(&self) -> Result<()> {
        let inner = &self.inner;
        match inner.status() {
            Status::Closed => return Err(Error::ConnectionClosed),
            Status::DrainingSubs | Status::DrainingPubs => return Err(Error::Draining),
            _ => {}
        }
        inner.status.set(Status::DrainingSubs);
        let deadline = Instant::now() + inner.opts.drain_timeout;
        let subs: Vec<Rc<SubState>> = inner.subs.borrow().values().cloned().collect();
        for s in &subs {
            inner.send_unsub(s.sid, None);
        }
        let mut result = self.flush_until(deadline).await;
        for s in &subs {
            inner.forget_sub(s.sid);
            s.close(false);
        }
        for s in &subs {
            if with_deadline(deadline, s.drained()).await.is_err() {
                result = Err(Error::Timeout);
                break;
            }
        }
        if inner.status() == Status::DrainingSubs {
            inner.status.set(Status::DrainingPubs);
            let flushed = self.flush_until(deadline).await;
            if result.is_ok() {
                result = flushed;
            }
        }
        self.close().await;
        result
    }
}

/// Removes a request's waiter when the request ends, however it ends (answer, timeout,
/// or the future dropped).
struct MuxGuard<'a> {
    conn: &'a Connection,
    reply: &'a str,
}

impl Drop for MuxGuard<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.conn.inner.mux.borrow_mut().as_mut() {
            if let Some(token) = self.reply.strip_prefix(m.prefix.as_str()) {
                m.waiting.remove(token);
            }
        }
    }
}

/// Read from a socket that has no reader task yet (the handshake), feeding each op to `f`
/// until it returns a result. Bytes after that op stay in `buf`. A message bigger than
/// `max_payload` is an error.
async fn read_ops<R>(t: &mut Transport, buf: &mut Vec<u8>, max_payload: usize, mut f: impl FnMut(Op<'_>) -> Option<Result<R>>) -> Result<R> {
    let mut parser = Parser::new(Role::Client, MAX_CONTROL_LINE, max_payload);
    parser.set_headers(true);
    loop {
        let mut start = 0;
        loop {
            match parser.parse(&buf[start..]) {
                Ok(Some((op, used))) => {
                    start += used;
                    if let Some(r) = f(op) {
                        buf.drain(..start);
                        return r;
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(Error::Protocol(e.to_string())),
            }
        }
        buf.drain(..start);
        check_announced(&parser, max_payload)?;
        let mut chunk = [0u8; 4096];
        let n = t.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The largest message a server whose INFO is `info` may send: its max_payload, as it never
/// delivers more than it accepts from a publisher.
fn max_inbound(info: &Info) -> usize {
    match info.max_payload {
        n if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => MAX_INBOUND_UNANNOUNCED,
    }
}

fn too_big(max_payload: usize) -> Error {
    Error::Protocol(format!("the server sent a message larger than its max_payload ({max_payload} bytes)"))
}

/// Fail on a message whose control line announces more than `max_payload` (the parser waits
/// for its payload), before reading or making room for it: a server's word is not a
/// reason to allocate gigabytes. A message only a little over is caught by [`handle`] once
/// it has arrived.
fn check_announced(parser: &Parser, max_payload: usize) -> Result<()> {
    // The parser enforces max_payload on PUBs only: for a client it is just bookkeeping.
    if parser.needed() > max_payload.saturating_add(MSG_FRAMING) {
        return Err(too_big(max_payload));
    }
    Ok(())
}

/// Own the socket: serve it until it breaks, then reconnect or close.
async fn supervise(conn: Connection, mut transport: Transport, mut leftover: Vec<u8>) {
    let inner = conn.inner.clone();
    loop {
        let stream = Shared::new(transport);
        *inner.broken.borrow_mut() = None;
        let reader = glommio::spawn_local(reader(conn.clone(), stream.clone(), std::mem::take(&mut leftover)));
        let writer = glommio::spawn_local(writer(inner.clone(), stream.clone()));
        let pinger = glommio::spawn_local(pinger(inner.clone()));
        let err = poll_fn(|cx| {
            if let Some(e) = inner.broken.borrow_mut().take() {
                return Poll::Ready(e);
            }
            inner.supervisor.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        // Dropping a glommio task cancels it.
        drop((reader, writer, pinger));
        inner.writing.set(false);
        let user_closed = inner.status() == Status::Closed;
        if user_closed {
            let _ = with_deadline(Instant::now() + Duration::from_millis(200), stream.close()).await;
        }
        drop(stream);
        if !user_closed {
            tracing::debug!(error = %err, "disconnected");
            *inner.last_error.borrow_mut() = Some(err.clone());
        }
        if let Some(cb) = inner.opts.disconnected.clone() {
            cb(&conn, if user_closed { None } else { Some(&err) });
        }
        if user_closed || !inner.opts.allow_reconnect {
            break;
        }
        inner.status.set(Status::Reconnecting);
        match reconnect(&conn).await {
            Some((t, rest)) => {
                transport = t;
                leftover = rest;
                resume(&inner);
                inner.stats.reconnects.set(inner.stats.reconnects.get() + 1);
                inner.status.set(Status::Connected);
                if let Some(cb) = inner.opts.reconnected.clone() {
                    cb(&conn);
                }
            }
            None => break,
        }
    }
    finish(&conn);
}

/// Try the pool until a server takes us, or every server has used up its attempts.
async fn reconnect(conn: &Connection) -> Option<(Transport, Vec<u8>)> {
    let inner = &conn.inner;
    loop {
        if inner.status() == Status::Closed {
            return None;
        }
        let current = inner.current.borrow().clone();
        let Some(addr) = inner.pool.borrow_mut().select_next(current.as_ref(), inner.opts.max_reconnect) else {
            *inner.last_error.borrow_mut() = Some(Error::NoServers);
            return None;
        };
        *inner.current.borrow_mut() = Some(addr.clone());
        let wait = inner.pool.borrow().wait_before(0, inner.opts.reconnect_wait);
        if !wait.is_zero() && !sleep_unless_closed(inner, wait).await {
            return None;
        }
        inner.pool.borrow_mut().attempt(0);
        let attempt = futures_lite::future::or(async { Some(conn.handshake(&addr).await) }, async {
            closed_signal(inner).await;
            None
        })
        .await?;
        match attempt {
            Ok(ok) => {
                inner.pool.borrow_mut().connected(0);
                return Some(ok);
            }
            Err(e) => {
                tracing::debug!(server = %addr, error = %e, "reconnect failed");
                *inner.last_error.borrow_mut() = Some(e);
            }
        }
    }
}

/// Resolves when the user closes the connection.
async fn closed_signal(inner: &Inner) {
    poll_fn(|cx| {
        if inner.status() == Status::Closed {
            return Poll::Ready(());
        }
        inner.supervisor.set(Some(cx.waker().clone()));
        Poll::Pending
    })
    .await
}

/// Sleep, unless the connection is closed first (then false).
async fn sleep_unless_closed(inner: &Inner, d: Duration) -> bool {
    futures_lite::future::or(
        async {
            Timer::new(d).await;
            true
        },
        async {
            closed_signal(inner).await;
            false
        },
    )
    .await
}

/// After a reconnect: subscriptions first, then the publishes kept while disconnected, then
/// a PING for each flush still waiting. Other control frames queued meanwhile are stale.
fn resume(inner: &Inner) {
    let old = std::mem::take(&mut *inner.out.borrow_mut());
    let mut out = Vec::with_capacity(old.len() + 1024);
    let mut subs: Vec<Rc<SubState>> = inner.subs.borrow().values().cloned().collect();
    subs.sort_by_key(|s| s.sid);
    for s in &subs {
        inner.send_sub(&mut out, s);
        if let Some(max) = s.max.get() {
            let left = max.saturating_sub(s.received.get()).max(1);
            let mut num = itoa::Buffer::new();
            out.extend_from_slice(b"UNSUB ");
            out.extend_from_slice(num.format(s.sid).as_bytes());
            out.push(b' ');
            out.extend_from_slice(num.format(left).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    // Our own frames, read back with the broker's parser: keep PUB and HPUB.
    let mut parser = Parser::new(Role::Server, usize::MAX / 4, usize::MAX / 4);
    parser.set_headers(true);
    let mut rest = &old[..];
    while let Ok(Some((op, used))) = parser.parse(rest) {
        if let Op::Pub(p) = op {
            encode::publish(&mut out, p.subject, p.reply, p.header_len, p.msg);
        }
        rest = &rest[used..];
    }
    let mut pongs = inner.pongs.borrow_mut();
    pongs.retain(Option::is_some);
    for _ in 0..pongs.len() {
        out.extend_from_slice(b"PING\r\n");
    }
    inner.pings_out.set(0);
    *inner.out.borrow_mut() = out;
}

/// Closed for good: end every waiter and subscription, run the callbacks.
fn finish(conn: &Connection) {
    let inner = &conn.inner;
    inner.status.set(Status::Closed);
    inner.pongs.borrow_mut().clear();
    inner.mux.borrow_mut().take();
    inner.last_sub.borrow_mut().take();
    let subs: Vec<Rc<SubState>> = inner.subs.borrow_mut().drain().map(|(_, s)| s).collect();
    for s in subs {
        s.close(false);
    }
    for w in inner.room.borrow_mut().drain(..) {
        w.wake();
    }
    inner.out.borrow_mut().clear();
    if let Some(cb) = inner.opts.closed.clone() {
        cb(conn);
    }
    inner.finished.set(true);
    for w in inner.closed_waiters.borrow_mut().drain(..) {
        w.wake();
    }
}

/// Send whatever is queued, one write per pass.
async fn writer(inner: Rc<Inner>, stream: Shared<Transport>) {
    let mut spare: Vec<u8> = Vec::new();
    loop {
        poll_fn(|cx| {
            if !inner.out.borrow().is_empty() {
                return Poll::Ready(());
            }
            inner.writer.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        std::mem::swap(&mut *inner.out.borrow_mut(), &mut spare);
        inner.writing.set(true);
        let res = stream.write_all(&spare).await;
        inner.writing.set(false);
        if spare.capacity() > 4 << 20 {
            spare = Vec::new();
        } else {
            spare.clear();
        }
        for w in inner.room.borrow_mut().drain(..) {
            w.wake();
        }
        if let Err(e) = res {
            inner.fail(Error::io(e));
            return;
        }
    }
}

/// PING every ping interval; too many unanswered means the connection is stale.
async fn pinger(inner: Rc<Inner>) {
    inner.pings_out.set(0);
    loop {
        Timer::new(inner.opts.ping_interval).await;
        if inner.pings_out.get() >= inner.opts.max_pings_out {
            inner.fail(Error::StaleConnection);
            return;
        }
        inner.pings_out.set(inner.pings_out.get() + 1);
        inner.pongs.borrow_mut().push_back(None);
        inner.send_control(b"PING\r\n");
    }
}

/// Read and dispatch until the socket ends or the server breaks the protocol.
async fn reader(conn: Connection, stream: Shared<Transport>, leftover: Vec<u8>) {
    let inner = &conn.inner;
    let mut parser = Parser::new(Role::Client, MAX_CONTROL_LINE, inner.max_inbound());
    parser.set_headers(true);
    let mut buf = ReadBuf::new(READ_BUF, READ_BUF, &leftover);
    loop {
        let mut used_all = 0;
        loop {
            match parser.parse(&buf.pending()[used_all..]) {
                Ok(Some((op, used))) => {
                    used_all += used;
                    if let Err(e) = handle(&conn, op) {
                        inner.fail(e);
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    inner.fail(Error::Protocol(e.to_string()));
                    return;
                }
            }
        }
        buf.consume(used_all);
        // The buffer grows to what the parser waits for: only as far as a message the
        // server may send (an INFO may have changed the limit).
        let limit = inner.max_inbound();
        parser.set_max_payload(limit);
        if let Err(e) = check_announced(&parser, limit) {
            inner.fail(e);
            return;
        }
        match buf.read_from(&stream, parser.needed()).await {
            Ok(0) => {
                inner.fail(Error::io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection closed by the server")));
                return;
            }
            Ok(_) => inner.reads.set(inner.reads.get() + 1),
            Err(e) => {
                inner.fail(Error::io(e));
                return;
            }
        }
        // Let handlers and the writer run between reads of a busy socket.
        futures_lite::future::yield_now().await;
    }
}

/// A subject as text: the ASCII check first (NATS subjects are ASCII in practice, and it is
/// the cheaper test for a short one), the full UTF-8 check otherwise.
#[inline]
fn utf8(b: &[u8]) -> std::result::Result<&str, std::str::Utf8Error> {
    if b.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b)
    }
}

/// Act on one operation from the server.
fn handle(conn: &Connection, op: Op<'_>) -> Result<()> {
    let inner = &conn.inner;
    match op {
        Op::Msg(d) => {
            let limit = inner.max_inbound();
            if d.msg.len() > limit {
                return Err(too_big(limit));
            }
            inner.stats.in_msgs.set(inner.stats.in_msgs.get() + 1);
            inner.stats.in_bytes.set(inner.stats.in_bytes.get() + d.msg.len() as u64);
            let Some(sid) = parse_sid(d.sid) else { return Ok(()) };
            // A message for a subscription already gone (it crossed our UNSUB) is dropped.
            let Some(sub) = inner.sub_for(sid) else { return Ok(()) };
            if matches!(sub.sink, Sink::Inline(_)) && sub.max.get().is_none() {
                // Subjects are ASCII in practice; anything else takes the copying path below
                // through the view of a lossy copy.
                if let (Ok(subject), Ok(reply)) = (utf8(d.subject), d.reply.map(utf8).transpose()) {
                    let (headers, data) = match d.header_len {
                        Some(h) if h <= d.msg.len() => (Some(&d.msg[..h]), &d.msg[h..]),
                        _ => (None, d.msg),
                    };
                    sub.received.set(sub.received.get() + 1);
                    sub.deliver_inline(&MsgRef { subject, reply, headers, data, read: inner.reads.get() });
                    return Ok(());
                }
            }
            let (headers, data) = match d.header_len {
                Some(h) if h <= d.msg.len() => match Headers::parse(&d.msg[..h]) {
                    Ok(hs) => (Some(hs), Bytes::copy_from_slice(&d.msg[h..])),
                    Err(e) => {
                        inner.report(conn, None, Error::Protocol(format!("bad message headers: {e}")));
                        (None, Bytes::copy_from_slice(&d.msg[h..]))
                    }
                },
                _ => (None, Bytes::copy_from_slice(d.msg)),
            };
            let msg = Msg { subject: msg::text(d.subject), reply: d.reply.map(msg::text), headers, data };
            let received = sub.received.get() + 1;
            sub.received.set(received);
            if sub.max.get().is_some_and(|max| received >= max) {
                // The server has removed it too; let it finish what is queued.
                inner.forget_sub(sid);
                sub.deliver(conn, msg);
                sub.close(false);
            } else {
                sub.deliver(conn, msg);
            }
        }
        Op::Ping => inner.send_control(b"PONG\r\n"),
        Op::Pong => {
            inner.pings_out.set(0);
            if let Some(Some(tx)) = inner.pongs.borrow_mut().pop_front() {
                let _ = tx.send(());
            }
        }
        Op::Info(json) => match serde_json::from_slice::<Info>(json) {
            Ok(info) => {
                let added = inner.learn_servers(&info);
                *inner.info.borrow_mut() = info;
                if added {
                    if let Some(cb) = inner.opts.discovered.clone() {
                        cb(conn);
                    }
                }
            }
            Err(e) => inner.report(conn, None, Error::Protocol(format!("INFO: {e}"))),
        },
        Op::Ok => {}
        Op::Err(text) => {
            let e = Error::from_server(&msg::text(text));
            if matches!(e, Error::StaleConnection) {
                return Err(e);
            }
            // The server closes the connection after most errors; the reader sees that and
            // reconnecting follows. Permission errors leave it open.
            inner.report(conn, None, e);
        }
        Op::Connect(_) | Op::Pub(_) | Op::Sub { .. } | Op::Unsub { .. } | Op::RouteSub { .. } | Op::RouteUnsub { .. } | Op::Routed(_) => {
            return Err(Error::Protocol("the server sent a client-only operation".into()));
        }
    }
    Ok(())
}
