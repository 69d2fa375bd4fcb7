//! One client connection: its state, and the three tasks that serve it on its core.
//!
//! - the reader parses what the client sends and acts on it (publish, subscribe, ...);
//! - the writer sends whatever the connection has queued, one `send` per event-loop pass;
//! - the pinger sends PINGs every ping_interval and ends a connection that stops answering.
//!
//! Anything on this core that delivers to the client (a publisher's reader, the cross-core
//! mailbox) appends a frame to [`Client::out`] and wakes the writer; nothing blocks on a
//! client's socket but that client's own writer.

use std::cell::{Cell, OnceCell, RefCell};
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;


use bytes::Bytes;
use glommio::net::TcpStream;

use super::auth::{self, CertNames, ClientPerms, Identity, Presented, Verdict};
use super::monitor::fmt::now_ns;
use super::shard::{Shard, SubsBySid};
use crate::protocol::info::Connect;
use crate::protocol::{encode, Op, Parser, Role};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Open,
    /// Stop reading; send what is queued (an -ERR, say), then close.
    Draining,
    Closed,
}

/// Why a connection closed, as nats-server names it in /connz.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    SlowConsumerPendingBytes,
    SlowConsumerWriteDeadline,
    ParseError,
    StaleConnection,
    MaxConnectionsExceeded,
    ProtocolViolation,
    ServerShutdown,
    WriteError,
    ReadError,
    /// Bad or missing credentials, or anything but CONNECT first when auth is on.
    AuthenticationViolation,
    AuthenticationTimeout,
    TlsHandshakeError,
    /// Closed in lame duck mode.
    LameDuck,
    /// A second route to a server already routed to.
    DuplicateRoute,
    ClusterNameConflict,
    DuplicateServerName,
    /// A client on the route port.
    WrongPort,
    /// A leaf connected again (same server, same account) while its old connection was
    /// still up: the old one goes.
    DuplicateLeaf,
    /// The user's account has as many connections as its JWT allows.
    MaxAccountConnectionsExceeded,
    /// The user's JWT expired.
    AuthenticationExpired,
}

impl CloseReason {
    /// nats-server's wording, for /connz `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            CloseReason::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            CloseReason::ParseError => "Parse Error",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::WriteError => "Write Error",
            CloseReason::ReadError => "Read Error",
            CloseReason::AuthenticationViolation => "Authentication Failure",
            CloseReason::AuthenticationTimeout => "Authentication Timeout",
            CloseReason::TlsHandshakeError => "TLS Handshake Failure",
            // nats-server closes lame-duck clients as a server shutdown.
            CloseReason::LameDuck => "Server Shutdown",
            CloseReason::DuplicateRoute => "Duplicate Route",
            CloseReason::ClusterNameConflict => "Cluster Name Conflict",
            CloseReason::DuplicateServerName => "Duplicate Server Name",
            CloseReason::WrongPort => "Incorrect Port",
            CloseReason::DuplicateLeaf => "Duplicate Remote LeafNode Connection",
            CloseReason::MaxAccountConnectionsExceeded => "Maximum Account Connections Exceeded",
            CloseReason::AuthenticationExpired => "Authentication Expired",
        }
    }
}

/// Where a connection's queued bytes stand against its max_pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    Low,
    /// Over half: whoever produced the bytes should wait for the writer.
    High,
    /// Over the limit: the connection was cut off.
    Over,
}

/// What a connection is, as nats-server's `c.kind`: the kind picks the delivery framing
/// (MSG/HMSG for clients) and the forwarding rules (a message from a route never goes back to
/// a route). Routes (RMSG) and leaf nodes (LMSG) come with the cluster and leaf node work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    #[default]
    Client,
    /// Another server of the cluster (see `server::route`).
    Route,
    /// A leaf-node connection, either way (see `server::leaf`).
    Leaf,
}

/// Counters for one connection.
#[derive(Default, Debug)]
pub struct ClientStats {
    pub in_msgs: Cell<u64>,
    pub in_bytes: Cell<u64>,
    pub out_msgs: Cell<u64>,
    pub out_bytes: Cell<u64>,
}

/// A client connection's shared state on its core.
pub struct Client {
    /// Server-wide connection id.
    pub cid: u64,
    pub addr: Option<SocketAddr>,
    /// Frames waiting for the writer.
    pub out: RefCell<Vec<u8>>,
    /// Big payloads queued without a copy (see `Shard::deliver`), each with the offset in
    /// `out` where it goes, and their bytes (counted against max_pending with `out`).
    pub big: RefCell<Vec<(usize, Bytes)>>,
    pub big_bytes: Cell<usize>,
    /// Bytes the writer has taken from `out` and not yet finished sending; counted with `out`
    /// against max_pending.
    pub in_flight: Cell<usize>,
    writer: Cell<Option<Waker>>,
    /// Producers stalled until this client's pending bytes go down, and this client's reader
    /// when another core asked it to stall (`remote_stalls`).
    stalled: RefCell<Vec<Waker>>,
    /// Consumers on other cores this client's messages made fall behind: its reader waits
    /// (for a bounded time) at the end of a pass while this is not 0.
    pub remote_stalls: Cell<u32>,
    /// Publishers on other cores (core, cid) told to stall for this consumer, released when
    /// it catches up or closes.
    pub remote_producers: RefCell<Vec<(u16, u64)>>,
    /// How long producers on this core have waited for this consumer since it last was
    /// under half its max_pending (see `Shard::wait_for_slow_consumer`).
    pub stalled_for: Cell<Duration>,
    pub state: Cell<State>,
    pub close_reason: Cell<Option<CloseReason>>,
    /// CONNECT options (defaults until the client sends CONNECT).
    pub opts: RefCell<Connect>,
    /// Cached flags from `opts`, read on the hot path.
    pub echo: Cell<bool>,
    pub headers: Cell<bool>,
    pub verbose: Cell<bool>,
    pub pedantic: Cell<bool>,
    pub no_responders: Cell<bool>,
    /// Its CONNECT was announced in the system account (a DISCONNECT then follows).
    pub announced: Cell<bool>,
    /// What the connection is: picks its delivery framing and forwarding rules.
    pub kind: Kind,
    /// A client of the WebSocket port (nats-server's client type `websocket`): framed by
    /// its transport, checked under the WebSocket port's credentials.
    pub websocket: bool,
    /// The account the client is bound to (an index into the server's account table; 0 is
    /// `$G`), set once its credentials are checked.
    pub account: Cell<u32>,
    /// Subscriptions by sid.
    pub subs: RefCell<SubsBySid>,
    /// PINGs sent without a PONG back.
    pub pings_out: Cell<u32>,
    /// Interest epoch this client's subscriptions need acknowledged by every other core
    /// before a PONG may go out (so a flush after SUB means "visible server-wide").
    pub need_epoch: Cell<u64>,
    /// Messages this client published went to another core since its last PING: the PONG
    /// then waits until those cores have queued them to their subscribers, so that a flush
    /// after PUB means "delivered to every subscriber's connection", as on nats-server.
    pub published_across: Cell<bool>,
    pub stats: ClientStats,
    /// CONNECT passed authentication (always true when no auth is configured).
    pub authorized: Cell<bool>,
    /// What the user's JWT limits (operator mode; none otherwise).
    pub limits: Cell<auth::ClientLimits>,
    /// Counted in its account's connections (operator mode's `conn` limit).
    pub account_counted: Cell<bool>,
    /// The authenticated user name (for /connz `authorized_user` and the logs).
    pub user: RefCell<Option<String>>,
    /// Permissions of that user; `restricted` mirrors `perms.is_some()` for the hot path.
    perms: RefCell<Option<ClientPerms>>,
    restricted: Cell<bool>,
    /// TLS version and cipher suite when the connection uses TLS.
    pub tls: RefCell<Option<(String, String)>>,
    /// The nonce this connection's INFO carried (NKey users sign it); kept for the
    /// re-check after a reload.
    pub nonce: Option<Box<str>>,
    /// The client certificate's names, read after the handshake when `verify_and_map` maps
    /// certificates to users.
    /// (Boxed: the names are big, seldom used, and a connection's hot fields should stay
    /// close together.)
    pub cert: OnceCell<Box<CertNames>>,
    /// nats-server's `v<version>:<lang>:<name>` label for log lines, set by CONNECT.
    pub label: RefCell<String>,
    /// For /connz: when the connection was accepted and last read from or written to (Unix
    /// ns, set once per read or write pass), and its round-trip time (ns, 0 until measured).
    pub start_ns: u64,
    pub last_activity: Cell<u64>,
    pub rtt: Cell<u64>,
    /// When the pinger's PING went out (Unix ns, 0: none outstanding), to time the PONG.
    pub ping_sent: Cell<u64>,
    /// Bytes this connection may have queued before it is a slow consumer (the setting when
    /// it connected: a reload applies to new connections).
    max_pending: usize,
    fd: RawFd,
    /// Co-location (see `shard::colocate`): this client's traffic with one other core since
    /// the core last looked, and the state of a move to another core, if one is under way.
    pub peer: Cell<super::shard::colocate::PeerTraffic>,
    pub moving: RefCell<Option<Box<super::shard::colocate::Moving>>>,
    /// A move is under way: deliveries are tracked (see `Shard::deliver`).
    pub tracking: Cell<bool>,
}

impl Client {
    pub(crate) fn new(cid: u64, fd: RawFd, addr: Option<SocketAddr>, max_pending: usize) -> Client {
        let defaults = Connect::default();
        Client {
            cid,
            addr,
            // Empty until something is queued: an idle connection costs no outbound buffer.
            out: RefCell::new(Vec::new()),
            big: RefCell::new(Vec::new()),
            big_bytes: Cell::new(0),
            in_flight: Cell::new(0),
            writer: Cell::new(None),
            stalled: RefCell::new(Vec::new()),
            remote_stalls: Cell::new(0),
            remote_producers: RefCell::new(Vec::new()),
            stalled_for: Cell::new(Duration::ZERO),
            state: Cell::new(State::Open),
            close_reason: Cell::new(None),
            echo: Cell::new(defaults.echo),
            headers: Cell::new(defaults.headers),
            verbose: Cell::new(defaults.verbose),
            pedantic: Cell::new(defaults.pedantic),
            no_responders: Cell::new(false),
            account: Cell::new(0),
            kind: Kind::Client,
            websocket: false,
            announced: Cell::new(false),
            opts: RefCell::new(defaults),
            subs: RefCell::new(SubsBySid::default()),
            pings_out: Cell::new(0),
            need_epoch: Cell::new(0),
            published_across: Cell::new(false),
            stats: ClientStats::default(),
            authorized: Cell::new(false),
            limits: Cell::new(auth::ClientLimits::default()),
            account_counted: Cell::new(false),
            user: RefCell::new(None),
            perms: RefCell::new(None),
            restricted: Cell::new(false),
            tls: RefCell::new(None),
            nonce: None,
            cert: OnceCell::new(),
            label: RefCell::new(String::new()),
            start_ns: now_ns(),
            last_activity: Cell::new(0),
            rtt: Cell::new(0),
            ping_sent: Cell::new(0),
            max_pending,
            fd,
            peer: Cell::new(Default::default()),
            moving: RefCell::new(None),
            tracking: Cell::new(false),
        }
    }

    /// The connection's socket (as the client's core knows it).
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// A PONG came: if it answers the pinger's PING, that timed the round trip.
    pub(crate) fn pong_received(&self) {
        let sent = self.ping_sent.replace(0);
        if sent != 0 {
            self.rtt.set(now_ns().saturating_sub(sent).max(1));
        }
    }

    /// Check this connection's credentials again (after a reload): what it presented when it
    /// logged in, under the new options. None: they no longer pass.
    pub async fn recheck(&self, opts: &super::options::Options) -> Option<Identity> {
        let connect = self.opts.borrow().clone();
        auth::authenticate(opts, &self.presented(&connect)).await
    }

    /// The largest payload this client may publish: the server's, or less if its user JWT
    /// says so.
    pub fn max_payload(&self, opts: &super::options::Options) -> usize {
        self.limits.get().payload.map_or(opts.max_payload, |p| p.min(opts.max_payload))
    }

    /// What this connection presents to the credential check with `connect`.
    fn presented<'a>(&'a self, connect: &'a Connect) -> Presented<'a> {
        let kind = if self.websocket { auth::ConnType::WebSocket } else { auth::ConnType::Standard };
        Presented { connect, nonce: self.nonce.as_deref(), cert: self.cert.get().map(|c| &**c), kind, ip: self.addr.map(|a| a.ip()) }
    }

    /// A copy of this connection's permissions (for a move to another core).
    pub fn perms_clone(&self) -> Option<ClientPerms> {
        self.perms.borrow().clone()
    }

    /// Set (or, with None, lift) this connection's permissions.
    pub fn set_perms(&self, perms: Option<ClientPerms>) {
        self.restricted.set(perms.is_some());
        *self.perms.borrow_mut() = perms;
    }

    /// This connection's permissions as nats-server shows them (None: unrestricted).
    pub fn public_permissions(&self) -> Option<serde_json::Value> {
        self.perms.borrow().as_ref().map(ClientPerms::public)
    }

    pub fn can_publish(&self, subj: &[u8]) -> bool {
        !self.restricted.get() || self.perms.borrow().as_ref().map_or(true, |p| p.can_publish(subj))
    }

    /// A message with a reply subject is delivered to this connection (response
    /// permissions open the reply subject for it).
    #[inline]
    pub fn note_reply(&self, reply: &[u8]) {
        if self.restricted.get() {
            if let Some(p) = self.perms.borrow().as_ref() {
                p.note_reply(reply);
            }
        }
    }

    pub fn can_subscribe(&self, subj: &[u8]) -> bool {
        !self.restricted.get() || self.perms.borrow().as_ref().map_or(true, |p| p.can_subscribe(subj))
    }

    /// Whether a message on `subj` must not reach this connection (a wildcard subscription
    /// overlapping a denied subject).
    #[inline]
    pub fn denies_delivery(&self, subj: &[u8]) -> bool {
        self.restricted.get() && self.perms.borrow().as_ref().is_some_and(|p| p.denies_delivery(subj))
    }

    /// Wake the writer if it is parked.
    #[inline]
    pub fn wake_writer(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Queue raw protocol bytes (+OK, -ERR, PONG, INFO).
    pub fn send(&self, bytes: &[u8]) {
        if self.state.get() == State::Closed {
            return;
        }
        if crate::logging::trace_enabled() && !bytes.starts_with(b"INFO") {
            self.trace_out(bytes);
        }
        let (was_empty, queued) = {
            let mut out = self.out.borrow_mut();
            let was_empty = out.is_empty();
            out.extend_from_slice(bytes);
            (was_empty, out.len())
        };
        self.queued(was_empty, queued);
    }

    /// The one check every byte queued for this connection passes (messages, PONG, +OK,
    /// -ERR alike): over max_pending it is a slow consumer and is cut off, so a client that
    /// floods PINGs or verbose PUBs and never reads cannot grow the broker's memory.
    /// Returns how the pending bytes stand.
    #[inline]
    pub fn queued(&self, was_empty: bool, queued: usize) -> Pending {
        let pending = queued + self.big_bytes.get() + self.in_flight.get();
        if pending > self.max_pending {
            tracing::info!(cid = self.cid, "Slow Consumer Detected: MaxPending of {} exceeded", self.max_pending);
            self.abort(CloseReason::SlowConsumerPendingBytes);
            return Pending::Over;
        }
        if was_empty {
            self.wake_writer();
        }
        if pending > self.max_pending / 2 {
            Pending::High
        } else {
            Pending::Low
        }
    }

    /// Trace protocol lines going out (-V), as nats-server shows them: without CRLF, and
    /// an -ERR without its quotes.
    #[cold]
    pub fn trace_out(&self, bytes: &[u8]) {
        let label = self.label.borrow();
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let shown: Vec<u8> = if line.starts_with(b"-ERR '") {
                line.iter().copied().filter(|&b| b != b'\'').collect()
            } else {
                line.to_vec()
            };
            crate::logging::trace_out(self.cid, self.addr, &label, &shown);
        }
    }

    /// Queue `-ERR 'text'`.
    pub fn send_err(&self, text: &str) {
        let mut line = Vec::with_capacity(text.len() + 10);
        encode::err(&mut line, text);
        self.send(&line);
    }

    /// Bytes queued and in flight.
    pub fn pending(&self) -> usize {
        self.out.borrow().len() + self.big_bytes.get() + self.in_flight.get()
    }

    /// Resolves once pending bytes are at most `bytes`, or the connection is closed.
    pub async fn wait_pending_below(&self, bytes: usize) {
        futures_lite::future::poll_fn(|cx| {
            if self.pending() <= bytes || self.state.get() == State::Closed {
                return Poll::Ready(());
            }
            let mut w = self.stalled.borrow_mut();
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Resolves once no other core asks this client's reader to stall, or it is closed.
    pub async fn wait_unstalled(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.remote_stalls.get() == 0 || self.state.get() == State::Closed {
                return Poll::Ready(());
            }
            self.stalled.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// This connection's max_pending.
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// The writer made progress (or the connection ended): let stalled producers look again.
    pub fn wake_stalled(&self) {
        if !self.stalled.borrow().is_empty() {
            for w in self.stalled.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// Stop reading and close once what is queued has been sent.
    pub fn drain_and_close(&self, reason: CloseReason) {
        if self.state.get() == State::Open {
            self.state.set(State::Draining);
            self.close_reason.set(Some(reason));
        }
        self.wake_writer();
    }

    /// Close now, discarding what is queued. Shutting the socket down wakes the reader and
    /// the writer, which finish the clean-up.
    pub fn abort(&self, reason: CloseReason) {
        if self.state.get() == State::Closed {
            return;
        }
        if self.close_reason.get().is_none() {
            self.close_reason.set(Some(reason));
        }
        self.state.set(State::Closed);
        self.out.borrow_mut().clear();
        self.big.borrow_mut().clear();
        self.big_bytes.set(0);
        self.wake_stalled();
        // SAFETY: `fd` is this connection's socket, open until the TcpStream that owns it
        // drops, which happens only after both tasks using it have finished.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
        self.wake_writer();
    }
}

/// Read the names of the client's certificate for `verify_and_map`. A certificate that
/// does not parse names no one: the CONNECT check then refuses the client.
fn read_client_cert(client: &Client, t: &Transport) {
    let Transport::ServerTls(s) = t else { return };
    let Some(leaf) = s.get_ref().1.peer_certificates().and_then(|c| c.first()) else { return };
    match CertNames::from_der(leaf) {
        Ok(names) => {
            let _ = client.cert.set(Box::new(names));
        }
        Err(e) => tracing::debug!(cid = client.cid, "{e}"),
    }
}

pub(crate) type Stream = crate::net::Shared<Transport>;
use crate::net::{ReadBuf, Transport};

/// Serve one accepted connection until it closes.
pub async fn serve(shard: Rc<Shard>, tcp: TcpStream) {
    use std::os::unix::io::AsRawFd;
    let fd = tcp.as_raw_fd();
    let addr = tcp.peer_addr().ok();
    let opts = shard.opts();
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(opts.write_deadline));
    let Some((client, info)) = open(&shard, fd, addr, false) else {
        refuse(&shard, Stream::new(Transport::Plain(tcp)), fd, addr).await;
        return;
    };
    // The INFO goes out in plain text; with TLS on, the handshake follows at once, or with
    // `allow_non_tls` once the client's first byte says it is starting one.
    let stream = match shard.tls() {
        None => {
            client.send(info.as_bytes());
            Stream::new(Transport::Plain(tcp))
        }
        Some(config) => {
            let mut tcp = tcp;
            let sent = futures_lite::io::AsyncWriteExt::write_all(&mut tcp, info.as_bytes()).await;
            let timeout = opts.tls.as_ref().map_or(Duration::from_secs(2), |t| t.timeout);
            let handshake = match &sent {
                Ok(()) if opts.allow_non_tls => super::tls::client_starts_tls(&tcp, timeout).await,
                _ => true,
            };
            let upgraded = match sent {
                Ok(()) if !handshake => Ok(Transport::Plain(tcp)),
                Ok(()) => super::tls::accept(config, tcp, timeout).await,
                Err(e) => Err(e.to_string()),
            };
            match upgraded {
                Ok(t) => {
                    *client.tls.borrow_mut() = t.tls_info();
                    if opts.tls.as_ref().is_some_and(|t| t.verify_and_map) {
                        read_client_cert(&client, &t);
                    }
                    Stream::new(t)
                }
                Err(e) => {
                    tracing::error!(cid = client.cid, ?addr, "TLS handshake error: {e}");
                    client.close_reason.set(Some(CloseReason::TlsHandshakeError));
                    client.state.set(State::Closed);
                    shard.unregister(&client);
                    return;
                }
            }
        }
    };
    run(shard, client, stream).await;
}

/// Serve a WebSocket client past its upgrade (see `server::websocket`): INFO in a frame,
/// then as any client; `ip` is the address `X-Forwarded-For` gave, if any.
pub async fn serve_websocket(shard: Rc<Shard>, ws: crate::server::websocket::frame::WsStream<Transport>, ip: Option<std::net::IpAddr>) {
    use std::os::unix::io::AsRawFd;
    let tcp = ws.get_ref().tcp();
    let fd = tcp.as_raw_fd();
    let mut addr = tcp.peer_addr().ok();
    let tls = ws.get_ref().tls_info();
    if let (Some(ip), Some(a)) = (ip, addr.as_mut()) {
        a.set_ip(ip);
    }
    let stream = Stream::new(Transport::WebSocket(Box::new(ws)));
    // (The port's settings stay while its listener does: a reload keeps the block.)
    let Some(ws) = shard.ws() else { return };
    let Some((client, _)) = open(&shard, fd, addr, true) else {
        refuse(&shard, stream, fd, addr).await;
        return;
    };
    *client.tls.borrow_mut() = tls;
    client.send(shard.ws_info_line(&ws, client.cid, addr, client.nonce.as_deref()).as_bytes());
    run(shard, client, stream).await;
}

/// A new connection on this core: its client state and INFO line, counted against
/// max_connections (None: over it, and not counted).
fn open(shard: &Rc<Shard>, fd: RawFd, addr: Option<SocketAddr>, websocket: bool) -> Option<(Rc<Client>, String)> {
    // A reload published since this core last looked applies to this connection already
    // (the control task looks only a few times a second); the connected clients are then
    // checked again here, as the control task would have.
    if shard.refresh_live() {
        let shard = shard.clone();
        glommio::spawn_local(async move { super::reauthorize(&shard).await }).detach();
    }
    let cid = shard.next_cid();
    let mut client = Client::new(cid, fd, addr, shard.opts().max_pending);
    client.websocket = websocket;
    let opts = shard.client_opts(&client);
    // As nats-server 2.9: with NKey users configured, every client gets a nonce of its own.
    client.nonce = auth::nonce_required(&opts.auth).then(auth::new_nonce).flatten().map(Into::into);
    let client = Rc::new(client);
    client.authorized.set(!opts.auth.required());
    let info = shard.info_line(cid, addr, client.nonce.as_deref());
    if !shard.register(&client) {
        return None;
    }
    tracing::debug!(cid, ?addr, "Client connection created");
    Some((client, info))
}

/// Turn a connection away for max_connections, as nats-server does: INFO, then the error.
async fn refuse(shard: &Rc<Shard>, stream: Stream, fd: RawFd, addr: Option<SocketAddr>) {
    let websocket = matches!(stream.with(|t| matches!(t, Transport::WebSocket(_))), true);
    let client = Client::new(shard.next_cid(), fd, addr, shard.opts().max_pending);
    let info = match shard.ws().filter(|_| websocket) {
        Some(ws) => shard.ws_info_line(&ws, client.cid, addr, None),
        None => shard.info_line(client.cid, addr, None),
    };
    client.send(info.as_bytes());
    client.send_err("maximum connections exceeded");
    client.drain_and_close(CloseReason::MaxConnectionsExceeded);
    writer(shard, &client, &stream).await;
}

/// Serve a counted connection until it closes, then forget it.
async fn run(shard: Rc<Shard>, client: Rc<Client>, stream: Stream) {
    let opts = shard.client_opts(&client);
    let auth_timer = opts.auth.required().then(|| glommio::spawn_local(auth_timeout(client.clone(), opts.auth.timeout)));
    serve_until_closed(shard, client, stream, Vec::new(), auth_timer).await;
}

/// Serve a client that moved here from another core (see `shard::colocate`), starting
/// with the bytes it sent there that were not parsed yet.
pub(crate) async fn resume(shard: Rc<Shard>, client: Rc<Client>, tcp: TcpStream, leftover: Vec<u8>) {
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(shard.opts().write_deadline));
    serve_until_closed(shard, client, Stream::new(Transport::Plain(tcp)), leftover, None).await;
}

async fn serve_until_closed(shard: Rc<Shard>, client: Rc<Client>, stream: Stream, mut leftover: Vec<u8>, auth_timer: Option<glommio::Task<()>>) {
    let pinger = glommio::spawn_local(pinger(shard.clone(), client.clone()));
    let writer_task = {
        let (shard, client, stream) = (shard.clone(), client.clone(), stream.clone());
        glommio::spawn_local(async move { writer(&shard, &client, &stream).await })
    };
    while let Some(rest) = reader(&shard, &client, &stream, &leftover).await {
        // Asked to move to another core (see `shard::colocate`): the reader stopped between
        // two commands, with `rest` not parsed yet.
        leftover = rest;
        if !shard.move_out(&client).await {
            continue;
        }
        // The writer sends what is queued and ends; then the socket goes.
        writer_task.await;
        pinger.cancel().await;
        if let Some(t) = auth_timer {
            t.cancel().await;
        }
        if !shard.move_out_done(&client, leftover) {
            shard.unregister(&client);
        }
        return;
    }
    writer_task.await;
    pinger.cancel().await;
    if let Some(t) = auth_timer {
        t.cancel().await;
    }
    shard.unregister(&client);
    tracing::debug!(cid = client.cid, reason = ?client.close_reason.get(), out_msgs = client.stats.out_msgs.get(), in_msgs = client.stats.in_msgs.get(), "Client connection closed");
}

/// How long a WebSocket client gets to take the close frame.
const WS_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A WebSocket connection closed in order ends with a close frame saying why, as
/// nats-server sends it (unless the client closed first: its close was answered already).
async fn close_websocket(client: &Client, stream: &Stream) {
    let reason = client.close_reason.get().unwrap_or(CloseReason::ClientClosed);
    let is_ws = stream.with(|t| match t {
        Transport::WebSocket(ws) => {
            ws.queue_close(ws_close_status(reason), ws_close_text(reason));
            true
        }
        _ => false,
    });
    if is_ws {
        let _ = futures_lite::future::or(async { stream.close().await.is_ok() }, async {
            glommio::timer::sleep(WS_CLOSE_TIMEOUT).await;
            false
        })
        .await;
    }
}

/// nats-server's close status for the reason a WebSocket client is closed.
fn ws_close_status(reason: CloseReason) -> u16 {
    use crate::server::websocket::frame::*;
    use CloseReason::*;
    match reason {
        ClientClosed => CLOSE_NORMAL,
        AuthenticationTimeout | AuthenticationViolation | AuthenticationExpired | SlowConsumerPendingBytes | SlowConsumerWriteDeadline | MaxConnectionsExceeded
        | MaxAccountConnectionsExceeded => CLOSE_POLICY_VIOLATION,
        TlsHandshakeError => CLOSE_TLS_HANDSHAKE,
        ParseError | ProtocolViolation => CLOSE_PROTOCOL_ERROR,
        WriteError | ReadError | StaleConnection | ServerShutdown | LameDuck => CLOSE_GOING_AWAY,
        _ => CLOSE_INTERNAL_ERROR,
    }
}

/// The close frame's text: the reason in nats-server's words (it closes a connection that
/// breaks the protocol as a protocol violation).
fn ws_close_text(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::ParseError => CloseReason::ProtocolViolation.as_str(),
        r => r.as_str(),
    }
}

/// A write buffer bigger than this is given back after [`BIG_WRITE_BUF_KEEP`] without a pass
/// that fills a quarter of it.
const BIG_WRITE_BUF: usize = 1 << 20;
const BIG_WRITE_BUF_KEEP: Duration = Duration::from_secs(1);
/// A write buffer this small is given back after each pass rather than kept.
const SMALL_WRITE_BUF: usize = 1024;

/// Send what is queued, a whole buffer per pass, until the connection closes.
pub(crate) async fn writer(shard: &Shard, client: &Client, stream: &Stream) {
    let mut spare: Vec<u8> = Vec::new();
    let mut spare_big: Vec<(usize, Bytes)> = Vec::new();
    let deadline = shard.opts().write_deadline;
    // When a pass last filled at least a quarter of its buffer (now_ns).
    let mut last_big_pass = 0u64;
    loop {
        // Park until there is something to send or the connection is done.
        let park = futures_lite::future::poll_fn(|cx| {
            let state = client.state.get();
            if state == State::Closed {
                return Poll::Ready(false);
            }
            if !client.out.borrow().is_empty() {
                return Poll::Ready(true);
            }
            if state == State::Draining || client.handing_off() {
                return Poll::Ready(false);
            }
            client.writer.set(Some(cx.waker().clone()));
            Poll::Pending
        });
        // Big buffers are kept while traffic lasts (a new one costs a page fault per 4 KiB
        // as it fills: ~13% of the server's CPU under a 1 KiB flood when they were given
        // back after any small pass) and given back after a second without a big pass, or
        // of silence.
        let holding = spare.capacity() > BIG_WRITE_BUF || client.out.borrow().capacity() > BIG_WRITE_BUF;
        let go = if holding {
            let quiet = async {
                glommio::timer::sleep(BIG_WRITE_BUF_KEEP).await;
                None
            };
            match futures_lite::future::or(async { Some(park.await) }, quiet).await {
                Some(go) => go,
                None => {
                    spare = Vec::new();
                    let mut out = client.out.borrow_mut();
                    if out.is_empty() {
                        *out = Vec::new();
                    }
                    continue;
                }
            }
        } else {
            park.await
        };
        if !go {
            break;
        }
        std::mem::swap(&mut *client.out.borrow_mut(), &mut spare);
        std::mem::swap(&mut *client.big.borrow_mut(), &mut spare_big);
        client.in_flight.set(spare.len() + client.big_bytes.replace(0));
        // write_deadline bounds the whole flush, as nats-server's deadline on its writev
        // does: a consumer that takes a few bytes at a time must not stretch it forever.
        // (Each single write is bounded by the socket's write timeout, set in `serve`.)
        let by = Some(std::time::Instant::now() + deadline);
        let res = if spare_big.is_empty() {
            stream.write_all_by(&spare, by).await
        } else {
            // Big payloads go out from where they are, between the frames around them.
            let mut parts = Vec::with_capacity(spare_big.len() * 2 + 1);
            let mut at = 0;
            for (pos, b) in &spare_big {
                parts.push(std::io::IoSlice::new(&spare[at..*pos]));
                parts.push(std::io::IoSlice::new(b));
                at = *pos;
            }
            parts.push(std::io::IoSlice::new(&spare[at..]));
            let res = stream.write_vectored_all_by(&mut parts, by).await;
            drop(parts);
            spare_big.clear();
            res
        };
        client.in_flight.set(0);
        client.last_activity.set(now_ns());
        client.wake_stalled();
        if client.pending() <= client.max_pending / 2 {
            client.stalled_for.set(Duration::ZERO);
            shard.release_producers(client);
        }
        let now = client.last_activity.get();
        if spare.len() >= spare.capacity() / 4 {
            last_big_pass = now;
        }
        if spare.capacity() > BIG_WRITE_BUF && now.saturating_sub(last_big_pass) > BIG_WRITE_BUF_KEEP.as_nanos() as u64 {
            spare = Vec::with_capacity(64 * 1024);
        } else if spare.capacity() <= SMALL_WRITE_BUF {
            // A connection that sends little (most of 15,000 idle ones: the INFO, a PONG)
            // holds no buffer between passes; a malloc per small pass costs less than the
            // write it goes with.
            spare = Vec::new();
        } else {
            spare.clear();
        }
        if let Err(e) = res {
            if client.state.get() != State::Closed {
                let reason = if e.kind() == std::io::ErrorKind::TimedOut {
                    tracing::info!(cid = client.cid, "Slow Consumer Detected: WriteDeadline exceeded");
                    CloseReason::SlowConsumerWriteDeadline
                } else {
                    CloseReason::WriteError
                };
                client.abort(reason);
            }
            break;
        }
    }
    if client.state.get() != State::Closed && !client.handing_off() {
        // Closed in order (after what was queued): a WebSocket client gets its close frame
        // before the socket goes.
        close_websocket(client, stream).await;
        client.abort(client.close_reason.get().unwrap_or(CloseReason::ClientClosed));
    }
}

/// Smallest and usual largest read buffer (a payload bigger than that grows it for a while).
const READ_BUF_MIN: usize = 512;
const READ_BUF_MAX: usize = 64 * 1024;

/// Read, parse and act until the client goes away or breaks the protocol.
///
/// `leftover`: bytes the client sent before this reader began (it moved from another core).
/// Returns them again (what is not parsed yet) when it stops for a move to another core.
async fn reader(shard: &Rc<Shard>, client: &Rc<Client>, stream: &Stream, leftover: &[u8]) -> Option<Vec<u8>> {
    let opts = shard.opts();
    let mut parser = Parser::new(Role::Server, opts.max_control_line, client.max_payload(&opts));
    parser.set_headers(client.headers.get());
    // Start small (nats-server starts at 512 B: 64K idle connections must not cost GBs)
    // and double while reads fill it.
    let mut buf = ReadBuf::new(READ_BUF_MIN, READ_BUF_MAX, leftover);
    let mut parse_first = !leftover.is_empty();
    loop {
        if client.state.get() != State::Open {
            return None;
        }
        if std::mem::take(&mut parse_first) {
            // What came with a move is parsed before anything more is read.
        } else {
            match buf.read_from(stream, parser.needed()).await {
                // A WebSocket client's stream ends on a close frame (answered) or a framing
                // error (a close frame queued): those go out before the socket does.
                Ok(0) if client.websocket => {
                    client.drain_and_close(CloseReason::ClientClosed);
                    return None;
                }
                Err(e) if client.websocket && e.kind() == std::io::ErrorKind::InvalidData => {
                    client.drain_and_close(CloseReason::ProtocolViolation);
                    return None;
                }
                Ok(0) | Err(_) => {
                    client.abort(CloseReason::ClientClosed);
                    return None;
                }
                Ok(_) => {}
            }
        }
        client.last_activity.set(now_ns());
        let mut used_all = 0;
        loop {
            match parser.parse(&buf.pending()[used_all..]) {
                Ok(Some((op, used))) => {
                    if crate::logging::trace_enabled() {
                        trace_in(client, &buf.pending()[used_all..used_all + used]);
                    }
                    used_all += used;
                    // The hot path: a publish needs no future (handle_op's is built per op).
                    if let Op::Pub(p) = &op {
                        if client.authorized.get() {
                            if p.msg.len() < BIG_PAYLOAD {
                                shard.publish(client, p, None);
                            } else {
                                // A big payload leaves the read buffer as shared bytes: every
                                // core and subscriber it goes to takes a reference, not a copy.
                                let at = Offsets::of(buf.pending(), p);
                                drop(op);
                                let bytes = buf.freeze_front(used_all);
                                used_all = 0;
                                shard.publish(client, &at.publish(&bytes), Some(&bytes));
                            }
                            if client.state.get() != State::Open {
                                return None;
                            }
                            continue;
                        }
                    }
                    let connect = matches!(op, Op::Connect(_));
                    // With auth on, nothing but CONNECT may come first (as nats-server), unless
                    // a no_auth_user is configured: the client is then that user, and goes on
                    // as if it had sent a CONNECT with the defaults (verbose, pedantic).
                    if !connect && !client.authorized.get() {
                        let Some(id) = auth::skipped_connect(&shard.client_opts(client)) else {
                            auth_violation(client);
                            return None;
                        };
                        if authorize(shard, client, id).is_err() {
                            auth_violation(client);
                            return None;
                        }
                    }
                    if let Err(stop) = handle_op(shard, client, op).await {
                        client.drain_and_close(stop);
                        return None;
                    }
                    if connect {
                        parser.set_headers(client.headers.get());
                        parser.set_max_payload(client.max_payload(&opts));
                    }
                    if client.state.get() != State::Open {
                        return None;
                    }
                    // A long run of other commands (a burst of wildcard SUBs costs micro-
                    // seconds each) gives way once the executor's preempt timer has fired:
                    // the other clients of this core are read and written, then the rest of
                    // the buffer is parsed before anything more is read.
                    if glommio::executor().need_preempt() {
                        parse_first = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(cid = client.cid, error = %e, "Client parser error");
                    if let Some(line) = e.err_line() {
                        client.send(line);
                    }
                    client.drain_and_close(CloseReason::ParseError);
                    return None;
                }
            }
        }
        buf.consume(used_all);
        shard.end_of_pass(client).await;
        // Let the writers and the mailbox run before reading more: a socket with data ready
        // returns at once, and a fast publisher must not starve its subscribers.
        futures_lite::future::yield_now().await;
        if client.move_wanted().is_some() && client.state.get() == State::Open {
            return Some(buf.pending().to_vec());
        }
    }
}

/// A payload this big (or bigger) is handed on as `Bytes` (see `ReadBuf::freeze_front`): below
/// it a copy per core and subscriber costs less than the reference counts and the vectored
/// writes.
pub const BIG_PAYLOAD: usize = 32 * 1024;

/// Where a PUB's parts sit in the read buffer, to find them again in the frozen bytes.
struct Offsets {
    subject: (usize, usize),
    reply: Option<(usize, usize)>,
    header_len: Option<usize>,
    msg: (usize, usize),
}

impl Offsets {
    fn of(base: &[u8], p: &crate::protocol::Publish<'_>) -> Offsets {
        let at = |part: &[u8]| (part.as_ptr() as usize - base.as_ptr() as usize, part.len());
        Offsets { subject: at(p.subject), reply: p.reply.map(at), header_len: p.header_len, msg: at(p.msg) }
    }

    fn publish<'a>(&self, b: &'a [u8]) -> crate::protocol::Publish<'a> {
        let part = |(o, l): (usize, usize)| &b[o..o + l];
        crate::protocol::Publish { subject: part(self.subject), reply: self.reply.map(part), header_len: self.header_len, msg: part(self.msg) }
    }
}

/// Trace one operation read from a client (-V): its control line, and a payload if any.
#[cold]
fn trace_in(client: &Client, raw: &[u8]) {
    let end = memchr::memmem::find(raw, b"\r\n").unwrap_or(raw.len());
    let label = client.label.borrow();
    let line = &raw[..end];
    // As nats-server: a CONNECT's password and token never reach the log.
    let redacted = (line.len() > 8 && line[..8].eq_ignore_ascii_case(b"CONNECT ")).then(|| redact_connect(line)).flatten();
    crate::logging::trace_in(client.cid, client.addr, &label, redacted.as_deref().unwrap_or(line));
    if raw.starts_with(b"PUB") || raw.starts_with(b"pub") || raw.starts_with(b"HPUB") || raw.starts_with(b"hpub") {
        let payload = raw.get(end + 2..raw.len().saturating_sub(2)).unwrap_or_default();
        crate::logging::trace_payload(client.cid, client.addr, &label, payload);
    }
}

/// A CONNECT line with `pass` and `auth_token` replaced by `[REDACTED]`; None when it holds
/// neither (the line is shown as sent).
fn redact_connect(line: &[u8]) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(&line[8..]).ok()?;
    let obj = v.as_object_mut()?;
    let mut any = false;
    for key in ["pass", "auth_token"] {
        if let Some(x) = obj.get_mut(key) {
            *x = serde_json::Value::String("[REDACTED]".into());
            any = true;
        }
    }
    any.then(|| [&line[..8], v.to_string().as_bytes()].concat())
}

/// Refuse a client's credentials (or their absence): tell it and close.
fn auth_violation(client: &Client) {
    tracing::error!(cid = client.cid, "authentication error");
    client.send_err("Authorization Violation");
    client.drain_and_close(CloseReason::AuthenticationViolation);
}

/// Take what a passing credential check found: user name, permissions, account, and a
/// user JWT's limits. Err says why the connection goes: an authorization violation (for
/// the caller to report), or a limit (reported here).
///
/// A connection stays in one account for its life: refused, and nothing changed, when a
/// later CONNECT's credentials belong to another account. (nats-server 2.9 moves the
/// connection then, and leaves its subscriptions behind in the old account.)
fn authorize(shard: &Shard, client: &Rc<Client>, id: Identity) -> Result<(), CloseReason> {
    let bound = client.account.get();
    shard.bind_account(client, id.account.as_deref());
    if client.authorized.get() && client.account.get() != bound {
        client.account.set(bound);
        return Err(CloseReason::AuthenticationViolation);
    }
    if !client.account_counted.get() && id.limits.account_conns.is_some() {
        if !shard.count_account_connection(client.account.get(), id.limits.account_conns) {
            // nats-server's words.
            tracing::error!(cid = client.cid, "maximum account active connections exceeded");
            client.send_err("maximum account active connections exceeded");
            client.drain_and_close(CloseReason::MaxAccountConnectionsExceeded);
            return Err(CloseReason::MaxAccountConnectionsExceeded);
        }
        client.account_counted.set(true);
    }
    *client.user.borrow_mut() = id.user;
    client.set_perms(id.perms);
    let had = client.limits.replace(id.limits).expires;
    if let Some(at) = id.limits.expires.filter(|at| had != Some(*at)) {
        glommio::spawn_local(expire(Rc::downgrade(client), at)).detach();
    }
    client.authorized.set(true);
    Ok(())
}

/// Close the connection when its user JWT expires (as nats-server, with its words), unless
/// it has logged in again with another JWT by then. (A weak reference: a connection that
/// closes first is not kept until its JWT would have expired.)
async fn expire(client: std::rc::Weak<Client>, at: i64) {
    let left = (at - crate::server::auth::jwt::now()).max(0) as u64;
    glommio::timer::sleep(Duration::from_secs(left)).await;
    let Some(client) = client.upgrade() else { return };
    if client.state.get() == State::Open && client.limits.get().expires == Some(at) {
        tracing::debug!(cid = client.cid, "User Authentication Expired");
        client.send_err("User Authentication Expired");
        client.drain_and_close(CloseReason::AuthenticationExpired);
    }
}

/// Act on one operation. `Err` closes the connection (after sending what is queued).
async fn handle_op(shard: &Rc<Shard>, client: &Rc<Client>, op: Op<'_>) -> Result<(), CloseReason> {
    match op {
        Op::Pub(p) => shard.publish(client, &p, None),
        Op::Sub { subject, queue, sid } => shard.subscribe(client, subject, queue, sid),
        Op::Unsub { sid, max } => {
            shard.unsubscribe(client, sid, max);
            if client.verbose.get() {
                client.send(b"+OK\r\n");
            }
        }
        Op::Ping => {
            // A PONG promises the client that its subscriptions are in place server-wide, and
            // that what it published has reached every subscriber's connection.
            let epoch = if client.published_across.replace(false) { shard.barrier() } else { client.need_epoch.get() };
            shard.wait_interest_acked(epoch).await;
            client.send(b"PONG\r\n");
        }
        Op::Pong => {
            client.pings_out.set(0);
            client.pong_received();
        }
        Op::Connect(json) => {
            // As nats-server: the first estimate of the round trip is INFO out to CONNECT in.
            if client.rtt.get() == 0 {
                client.rtt.set(now_ns().saturating_sub(client.start_ns).max(1));
            }
            let c: Connect = serde_json::from_slice(json).map_err(|_| CloseReason::ParseError)?;
            if c.protocol > 1 {
                client.send_err("invalid client protocol");
                return Err(CloseReason::ProtocolViolation);
            }
            if c.no_responders && !c.headers {
                client.send_err("no responders requires headers support");
                return Err(CloseReason::ProtocolViolation);
            }
            // The server binds a client to its account from its credentials; a client that
            // names one (`account`, `new_account`) is refused whatever its credentials, as
            // nats-server 2.9 does.
            if crate::protocol::info::asks_for_account(json).map_err(|_| CloseReason::ParseError)? {
                auth_violation(client);
                return Err(CloseReason::AuthenticationViolation);
            }
            // Every CONNECT is checked, a second one too, as nats-server does (a client that
            // skipped CONNECT as the no_auth_user and then sends wrong credentials is refused).
            let opts = shard.client_opts(client);
            if opts.auth.required() {
                // A bcrypt check may wait behind others: give it up once the client has hung
                // up or been closed (auth timeout), so dead connections cost no check.
                let gone = || client.state.get() != State::Open || auth::peer_hung_up(client.fd);
                match auth::authenticate_client(&opts, &client.presented(&c), gone).await {
                    Verdict::Pass(id) => {
                        if let Err(why) = authorize(shard, client, id) {
                            if why == CloseReason::AuthenticationViolation {
                                auth_violation(client);
                            }
                            return Err(why);
                        }
                    }
                    Verdict::Refuse => {
                        auth_violation(client);
                        return Err(CloseReason::AuthenticationViolation);
                    }
                    Verdict::Gone => return Err(CloseReason::ClientClosed),
                }
            }
            client.echo.set(c.echo);
            client.headers.set(c.headers);
            client.verbose.set(c.verbose);
            client.pedantic.set(c.pedantic);
            client.no_responders.set(c.no_responders);
            *client.label.borrow_mut() = crate::logging::client_label(
                c.name.as_deref().unwrap_or(""),
                &c.lang,
                &c.version,
            );
            *client.opts.borrow_mut() = c;
            if client.verbose.get() {
                client.send(b"+OK\r\n");
            }
            // A user JWT that allows less than the server's max_payload: a client that takes
            // INFO updates (protocol 1) hears of it in a new INFO (nats-server sends it
            // before its first PONG).
            let max = client.max_payload(&opts);
            if max != opts.max_payload && client.opts.borrow().protocol >= 1 {
                let info = match shard.ws().filter(|_| client.websocket) {
                    Some(ws) => shard.ws_info_line(&ws, client.cid, client.addr, client.nonce.as_deref()),
                    None => shard.info_line(client.cid, client.addr, client.nonce.as_deref()),
                };
                let info = info.replacen(&format!("\"max_payload\":{}", opts.max_payload), &format!("\"max_payload\":{max}"), 1);
                client.send(info.as_bytes());
            }
            if !client.announced.get() {
                shard.client_connected(client);
            }
        }
        Op::Info(_) | Op::Ok => {}
        // The parser only yields these to client- and route-role parsers.
        Op::Msg(_) | Op::Err(_) | Op::RouteSub { .. } | Op::RouteUnsub { .. } | Op::Routed(_) => return Err(CloseReason::ParseError),
    }
    Ok(())
}

/// Close a client that has not authenticated within the auth timeout.
async fn auth_timeout(client: Rc<Client>, timeout: Duration) {
    glommio::timer::sleep(timeout).await;
    if !client.authorized.get() && client.state.get() == State::Open {
        tracing::error!(cid = client.cid, "Authentication Timeout");
        client.send_err("Authentication Timeout");
        client.drain_and_close(CloseReason::AuthenticationTimeout);
    }
}

/// PING the client every ping_interval; close it when ping_max PINGs go unanswered.
pub(crate) async fn pinger(shard: Rc<Shard>, client: Rc<Client>) {
    let opts = shard.opts();
    let interval = opts.ping_interval.max(Duration::from_millis(10));
    loop {
        glommio::timer::sleep(interval).await;
        if client.state.get() != State::Open {
            return;
        }
        if client.pings_out.get() + 1 > opts.ping_max {
            tracing::debug!(cid = client.cid, "Stale Client Connection - Closing");
            client.send_err("Stale Connection");
            client.drain_and_close(CloseReason::StaleConnection);
            return;
        }
        client.pings_out.set(client.pings_out.get() + 1);
        client.ping_sent.set(now_ns());
        client.send(b"PING\r\n");
    }
}

#[cfg(test)]
mod tests {
    /// What every connection costs before it sends anything: the client state is one
    /// allocation of this size (bench/RESULTS.md accounts for an idle connection's bytes).
    #[test]
    fn client_state_stays_small() {
        let size = std::mem::size_of::<super::Client>();
        println!("Client: {size} bytes");
        assert!(size <= 2048, "Client grew to {size} bytes");
    }
}
