//! Co-location: a client that talks mostly with one other core (a requester whose responder
//! is there, or the responder) moves to that core, so that the pair's messages stop
//! crossing cores. A crossing costs each message a hand-over and, on an idle core, a
//! wake-up; nats-server, whose reading goroutine writes straight into the other client's
//! socket, pays neither.
//!
//! **Choosing.** Every client counts the messages it published that went to exactly one
//! other core and nowhere else, the messages it received from one other core, and all the
//! rest (see [`PeerTraffic`]). Every 50 ms (while messages cross cores; else every 250 ms)
//! each core looks at its clients: one
//! whose traffic both ways is with one core, at a rate worth a move, moves there if that
//! core serves fewer clients (on a tie, the one on the higher core moves, so only one of a
//! pair does). One move at a time in the whole server, none while another core's move is
//! still fresh in the figures, and no client twice within [`MOVE_AGAIN_AFTER`]. Only plain
//! TCP clients move, with no queue subscriptions and no auto-unsubscribe pending.
//!
//! **Moving** client C from core A to core B, without losing, doubling or reordering a
//! message:
//!
//! 1. C's reader on A stops between two commands (its publishes so far are in A's outboxes)
//!    and A sends B `MoveIn`: C's state, a duplicate of its socket, its subscriptions. From
//!    now on A notes, per core, the sequence number of the last message it delivers to C.
//! 2. B indexes the subscriptions for its own copy of C, whose deliveries it holds with
//!    each message's core and sequence number; it waits until every core has seen B's
//!    interest (from then on every message for C also goes to B), and answers `MoveReady`.
//! 3. A takes C's subscriptions out of its index, waits until every core has handled
//!    everything A sent before (C's publishes included, so none is overtaken by C's next
//!    ones from B), lets its writer send what is queued for C, and sends `MoveDone` with
//!    the unparsed bytes C had sent and, per core, the last sequence number A delivered.
//! 4. B drops the held messages A delivered already (a core numbers its messages in the
//!    order it sends them, and B was hearing them before A stopped, so those are exactly
//!    the ones numbered at or below A's last), and serves C from the socket on.
//!
//! If C closes while this goes on, or B does not answer in time, the move is called off:
//! B forgets its copy (silently: the connection was never counted there), and A goes on
//! serving C, or closes it as usual.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::unix::io::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::index::Subscription;
use super::outbox::Mail;
use super::Shard;
use crate::protocol::info::Connect;
use crate::server::auth::ClientPerms;
use crate::server::client::{Client, Kind, State};

/// A client's traffic since its core last looked (see the module's doc).
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerTraffic {
    /// The other core this client's traffic went to or came from.
    core: u16,
    /// A move to `want - 1` was asked of its reader (0: none).
    want: u16,
    sent: u32,
    received: u32,
    /// Messages published or received that were not that core's alone.
    other: u32,
    /// When the client last moved (seconds on the core's clock; 0: never).
    moved_at: u32,
}

/// How often a core looks at its clients' traffic while messages cross between cores, and
/// while none do (the control task's tick).
const LOOK_BUSY: Duration = Duration::from_millis(50);
const LOOK_IDLE: Duration = Duration::from_millis(250);
/// Messages each way, in one look, that make a pair worth moving: 400 a second. Below
/// that a crossing's cost does not matter.
const MOVE_MIN: u32 = 20;
/// A client does not move again within this long.
const MOVE_AGAIN_AFTER: Duration = Duration::from_secs(10);
/// How long a core waits for the other to index a moving client (then calls it off).
const MOVE_READY_WITHIN: Duration = Duration::from_secs(2);
/// How long a requested move waits for the client's reader to stop between commands.
const MOVE_START_WITHIN: Duration = Duration::from_secs(1);
/// A client with more subscriptions than this does not move.
const MOVE_MAX_SUBS: usize = 256;

impl Client {
    /// A message this client published went to the cores in `mask` (and, if `local`, to
    /// subscribers on its own core).
    #[inline]
    pub fn note_sent(&self, mask: u64, local: bool) {
        if mask == 0 && !local {
            return;
        }
        let mut p = self.peer.get();
        if !local && mask.is_power_of_two() {
            let core = mask.trailing_zeros() as u16;
            if p.core == core || p.sent | p.received == 0 {
                p.core = core;
                p.sent = p.sent.saturating_add(1);
            } else {
                p.other = p.other.saturating_add(1);
            }
        } else {
            p.other = p.other.saturating_add(1);
        }
        self.peer.set(p);
    }

    /// A message routed on core `from` was delivered to this client on core `here`.
    #[inline]
    pub fn note_received(&self, from: u16, here: u16) {
        let mut p = self.peer.get();
        if from != here && (p.core == from || p.sent | p.received == 0) {
            p.core = from;
            p.received = p.received.saturating_add(1);
        } else {
            p.other = p.other.saturating_add(1);
        }
        self.peer.set(p);
    }

    /// The core this client's reader was asked to move it to, if any.
    #[inline]
    pub fn move_wanted(&self) -> Option<usize> {
        let w = self.peer.get().want;
        (w != 0).then(|| w as usize - 1)
    }

    fn clear_move_wanted(&self) {
        let mut p = self.peer.get();
        p.want = 0;
        self.peer.set(p);
    }

    /// Its writer should stop once what is queued is sent: the socket goes to another core.
    pub fn handing_off(&self) -> bool {
        matches!(self.moving.borrow().as_deref(), Some(Moving::Out { handing_off: true, .. }))
    }
}

/// A move under way, as each of the two cores sees it.
pub enum Moving {
    /// On the core the client leaves.
    Out {
        to: usize,
        /// Per core, the sequence number of the last message delivered to the client here
        /// since the move began.
        last: Vec<u64>,
        ready: bool,
        waker: Option<Waker>,
        /// The writer is sending its last bytes.
        handing_off: bool,
        /// The duplicate of the socket sent to the other core.
        fd: RawFd,
    },
    /// On the core it goes to: deliveries are held, each with where `out` ends after it.
    In { held: Vec<Held> },
}

/// A message delivered to a client whose socket has not arrived yet.
pub struct Held {
    core: u16,
    seq: u64,
    end: usize,
    body: u64,
}

/// What a core needs of a client to index it: sent with `Mail::MoveIn`.
pub struct MoveIn {
    cid: u64,
    fd: RawFd,
    addr: Option<SocketAddr>,
    max_pending: usize,
    account: u32,
    connect: Connect,
    echo: bool,
    headers: bool,
    verbose: bool,
    pedantic: bool,
    no_responders: bool,
    announced: bool,
    user: Option<String>,
    perms: Option<ClientPerms>,
    limits: crate::server::auth::ClientLimits,
    account_counted: bool,
    nonce: Option<Box<str>>,
    label: String,
    start_ns: u64,
    rtt: u64,
    /// (subject, sid)
    subs: Vec<(Box<[u8]>, Box<[u8]>)>,
}

impl std::fmt::Debug for MoveIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoveIn").field("cid", &self.cid).field("subs", &self.subs.len()).finish()
    }
}

/// The rest, once the client's socket is free: sent with `Mail::MoveDone`.
#[derive(Debug)]
pub struct MoveDone {
    /// Bytes read from the client and not yet parsed.
    leftover: Vec<u8>,
    /// Per core, the last sequence number delivered on the old core.
    last: Vec<u64>,
    in_msgs: u64,
    in_bytes: u64,
    out_msgs: u64,
    out_bytes: u64,
    pings_out: u32,
    ping_sent: u64,
    published_across: bool,
    last_activity: u64,
}

/// Co-location's state on one core.
#[derive(Default)]
pub struct CoreState {
    /// A client asked to move, and until when its reader has to start.
    requested: RefCell<Option<(Rc<Client>, Instant)>>,
    /// The server's move count when this core last looked.
    moves_seen: Cell<u64>,
    /// Messages crossed (both ways) at the last look, and whether looks every `LOOK_BUSY`
    /// are under way.
    crossed: Cell<u64>,
    looking: Cell<bool>,
}

impl Shard {
    /// The next message routed here: its sequence number, also the current one.
    #[inline]
    pub(super) fn next_seq(&self) -> u64 {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        self.cur.set((self.id as u16, seq));
        seq
    }

    /// A message (`seq` of core `core`) was delivered to `c`, whose move is under way.
    #[cold]
    pub(super) fn track_delivery(&self, c: &Client, core: u16, seq: u64, body: usize) {
        let end = c.out.borrow().len();
        match c.moving.borrow_mut().as_deref_mut() {
            Some(Moving::Out { last, .. }) => {
                if let Some(l) = last.get_mut(core as usize) {
                    *l = (*l).max(seq);
                }
            }
            Some(Moving::In { held }) => held.push(Held { core, seq, end, body: body as u64 }),
            None => {}
        }
    }

    fn seconds(&self) -> u32 {
        (super::super::monitor::fmt::now_ns().saturating_sub(self.started_ns) / 1_000_000_000) as u32 + 1
    }

    /// Look at the clients' traffic (from the control task, four times a second: an idle
    /// server wakes for nothing more). While messages cross between cores a look every
    /// [`LOOK_BUSY`] follows, so that a chatty pair split across cores does not wait long, until
    /// a look finds none crossed.
    pub fn colocate_look(self: &Rc<Self>) {
        if self.outboxes.len() < 2 || self.colocate.looking.get() {
            return;
        }
        let busy = self.crossed_since_look();
        self.colocate_tick((LOOK_IDLE.as_millis() / LOOK_BUSY.as_millis()) as u32);
        if busy && self.opts().colocate {
            self.colocate.looking.set(true);
            let me = self.clone();
            glommio::spawn_local(async move {
                loop {
                    glommio::timer::sleep(LOOK_BUSY).await;
                    if !me.crossed_since_look() || me.shared.control.mode() != super::Mode::Running {
                        break;
                    }
                    me.colocate_tick(1);
                }
                me.colocate.looking.set(false);
            })
            .detach();
        }
    }

    /// Whether messages crossed between this core and another since the last look.
    fn crossed_since_look(&self) -> bool {
        let now = self.stats.cross_sent.get() + self.stats.cross_received.get();
        self.colocate.crossed.replace(now) != now
    }

    /// Look at this core's clients' traffic since the last look (`scale` looks long): ask
    /// one to move if it should.
    fn colocate_tick(&self, scale: u32) {
        let ncores = self.outboxes.len();
        if ncores < 2 {
            return;
        }
        let shared = &self.shared;
        let clients = self.clients.borrow();
        shared.core_clients[self.id].store(clients.len(), Ordering::Relaxed);
        // A requested move whose reader did not come back in time is called off.
        {
            let mut req = self.colocate.requested.borrow_mut();
            if let Some((c, by)) = req.as_ref() {
                if c.moving.borrow().is_none() && (Instant::now() > *by || c.state.get() != State::Open) {
                    c.clear_move_wanted();
                    *req = None;
                    shared.moving.store(false, Ordering::Release);
                }
            }
        }
        // After any move the figures are stale (the moved pair's last quarter second shows
        // it apart): look afresh next time.
        let moves = shared.moves.load(Ordering::Acquire);
        let fresh = self.colocate.moves_seen.replace(moves) == moves;
        let allowed = fresh && self.opts().colocate && shared.control.mode() == super::Mode::Running && !shared.moving.load(Ordering::Acquire);
        let now = self.seconds();
        let mut pick: Option<(Rc<Client>, usize)> = None;
        for c in clients.values() {
            let p = c.peer.replace(PeerTraffic { moved_at: c.peer.get().moved_at, want: c.peer.get().want, ..Default::default() });
            if !allowed || pick.is_some() || p.want != 0 {
                continue;
            }
            let to = p.core as usize;
            if p.sent < MOVE_MIN * scale || p.received < MOVE_MIN * scale || p.other > (p.sent + p.received) / 8 || to == self.id || to >= ncores {
                continue;
            }
            if p.moved_at != 0 && now.saturating_sub(p.moved_at) < MOVE_AGAIN_AFTER.as_secs() as u32 {
                continue;
            }
            let (here, there) = (clients.len(), shared.core_clients[to].load(Ordering::Relaxed));
            if here < there || (here == there && self.id < to) || !self.movable(c) {
                continue;
            }
            pick = Some((c.clone(), to));
        }
        drop(clients);
        if let Some((c, to)) = pick {
            if shared.moving.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                tracing::trace!(cid = c.cid, from = self.id, to, "moving a client to its peer's core");
                let mut p = c.peer.get();
                p.want = to as u16 + 1;
                c.peer.set(p);
                *self.colocate.requested.borrow_mut() = Some((c, Instant::now() + MOVE_START_WITHIN));
            }
        }
    }

    /// Whether a client can move as it is now.
    fn movable(&self, c: &Client) -> bool {
        c.kind == Kind::Client
            && !c.websocket
            && c.tls.borrow().is_none()
            && c.cert.get().is_none()
            && c.state.get() == State::Open
            && c.authorized.get()
            && c.remote_stalls.get() == 0
            && c.remote_producers.borrow().is_empty()
            && c.moving.borrow().is_none()
            // (A user JWT's expiry is timed on the core the client logged in on.)
            && c.limits.get().expires.is_none()
            && {
                let subs = c.subs.borrow();
                subs.len() <= MOVE_MAX_SUBS && subs.iter().all(|s| s.queue().is_none() && s.max.get() == 0)
            }
    }

    /// Steps 1 and 3, on the core the client leaves, from its reader stopped between
    /// commands: send its state to the other core and wait until that core has indexed it;
    /// then wait until every core has answered a barrier (everything sent here before is
    /// delivered) and take its subscriptions out of this core's index. True: the move goes on (the client's writer should now
    /// send what is queued, and [`Shard::move_out_done`] follows); false: it was called off,
    /// and the client is served here as before.
    pub async fn move_out(&self, client: &Rc<Client>) -> bool {
        let Some(to) = client.move_wanted() else { return false };
        client.clear_move_wanted();
        // (A request naming another client stays, to be started or called off as usual:
        // taking it here would leave the server-wide "a move is under way" set for good.)
        let requested = {
            let mut req = self.colocate.requested.borrow_mut();
            let mine = req.as_ref().is_some_and(|(c, _)| Rc::ptr_eq(c, client));
            if mine {
                req.take();
            }
            mine
        };
        if !requested {
            return false;
        }
        let started = self.move_start(client, to);
        let ok = started && self.move_wait_ready(client).await;
        if !ok {
            tracing::debug!(cid = client.cid, from = self.id, to, started, "Client connection move called off");
            if started {
                self.move_call_off(client);
            }
            self.shared.moving.store(false, Ordering::Release);
            return false;
        }
        // Committed. A request of the client's still probing the other cores may yet tell
        // it "no responders", through its subscriptions here: wait for the answers (a probe
        // takes one round trip between cores).
        let by = Instant::now() + MOVE_READY_WITHIN;
        while self.probes.borrow().values().any(|p| Rc::ptr_eq(&p.client, client)) && Instant::now() < by {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        // Every core has applied the other core's interest, but what a core sent here
        // before that may still be on its way: once every core has answered a barrier sent
        // now, all of it has been delivered here (a core's mails arrive in order). That also
        // means every core has handled the client's own publishes, which its next ones, from
        // the other core, must not overtake.
        let epoch = self.barrier();
        self.wait_interest_acked(epoch).await;
        // From now on every message for the client goes to the other core alone.
        let subs: Vec<Rc<Subscription>> = client.subs.borrow().iter().cloned().collect();
        for s in &subs {
            self.unindex(s);
        }
        if let Some(Moving::Out { handing_off, .. }) = client.moving.borrow_mut().as_deref_mut() {
            *handing_off = true;
        }
        client.wake_writer();
        true
    }

    /// Start: the client's state and a duplicate of its socket go to core `to`.
    fn move_start(&self, client: &Rc<Client>, to: usize) -> bool {
        if !self.movable(client) {
            return false;
        }
        let Some(ob) = self.outbox(to) else { return false };
        // SAFETY: dup(2) of the client's open socket; the duplicate is owned by the move.
        let fd = unsafe { libc::dup(client.fd()) };
        if fd < 0 {
            return false;
        }
        let c = client;
        let connect = c.opts.borrow().clone();
        let m = MoveIn {
            cid: c.cid,
            fd,
            addr: c.addr,
            max_pending: c.max_pending(),
            account: c.account.get(),
            connect,
            echo: c.echo.get(),
            headers: c.headers.get(),
            verbose: c.verbose.get(),
            pedantic: c.pedantic.get(),
            no_responders: c.no_responders.get(),
            announced: c.announced.get(),
            user: c.user.borrow().clone(),
            perms: c.perms_clone(),
            limits: c.limits.get(),
            account_counted: c.account_counted.get(),
            nonce: c.nonce.clone(),
            label: c.label.borrow().clone(),
            start_ns: c.start_ns,
            rtt: c.rtt.get(),
            subs: c.subs.borrow().iter().map(|s| (s.subject().into(), s.sid().into())).collect(),
        };
        *c.moving.borrow_mut() = Some(Box::new(Moving::Out { to, last: vec![0; self.outboxes.len()], ready: false, waker: None, handing_off: false, fd }));
        c.tracking.set(true);
        ob.push_control(Mail::MoveIn(Box::new(m)));
        true
    }

    /// Wait for the other core's `MoveReady` (false: it did not come in time, or the
    /// client closed).
    async fn move_wait_ready(&self, client: &Client) -> bool {
        let ready = futures_lite::future::poll_fn(|cx| match client.moving.borrow_mut().as_deref_mut() {
            Some(Moving::Out { ready: true, .. }) => Poll::Ready(true),
            Some(Moving::Out { waker, .. }) if client.state.get() == State::Open => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(false),
        });
        let timeout = async {
            glommio::timer::sleep(MOVE_READY_WITHIN).await;
            false
        };
        futures_lite::future::or(ready, timeout).await && client.state.get() == State::Open
    }

    /// Call a started move off: the other core forgets its copy of the client.
    fn move_call_off(&self, client: &Client) {
        client.tracking.set(false);
        if let Some(Moving::Out { to, fd, .. }) = client.moving.borrow_mut().take().map(|b| *b) {
            if let Some(ob) = self.outbox(to) {
                ob.push_control(Mail::MoveDone { cid: client.cid, done: None });
            } else {
                // SAFETY: the duplicate made for the move, never handed over.
                unsafe { libc::close(fd) };
            }
        }
    }

    /// Step 3's end, once the client's writer has sent what was queued: hand the socket
    /// over, or, if the client closed meanwhile, call the move off. True: the client is the
    /// other core's now, and this core forgets it without a trace (it was never closed).
    pub fn move_out_done(&self, client: &Rc<Client>, leftover: Vec<u8>) -> bool {
        self.shared.moving.store(false, Ordering::Release);
        client.tracking.set(false);
        if client.state.get() != State::Open {
            self.move_call_off(client);
            return false;
        }
        let Some(Moving::Out { to, last, .. }) = client.moving.borrow_mut().take().map(|b| *b) else { return false };
        let Some(ob) = self.outbox(to) else { return false };
        let s = &client.stats;
        let done = MoveDone {
            leftover,
            last,
            in_msgs: s.in_msgs.get(),
            in_bytes: s.in_bytes.get(),
            out_msgs: s.out_msgs.get(),
            out_bytes: s.out_bytes.get(),
            pings_out: client.pings_out.get(),
            ping_sent: client.ping_sent.get(),
            published_across: client.published_across.get(),
            last_activity: client.last_activity.get(),
        };
        ob.push_control(Mail::MoveDone { cid: client.cid, done: Some(Box::new(done)) });
        // Gone from here without a close: no DISCONNECT, no closed-connection entry, the
        // connection count unchanged (the other core counts it now).
        *client.subs.borrow_mut() = Default::default();
        client.announced.set(false);
        client.state.set(State::Closed);
        self.clients.borrow_mut().remove(&client.cid);
        self.shared.moves.fetch_add(1, Ordering::AcqRel);
        tracing::debug!(cid = client.cid, from = self.id, to, "Client connection moved to its peer's core");
        true
    }

    /// Step 2, on the core the client comes to: index it, holding its deliveries, and say
    /// so once every core knows.
    pub(super) fn move_in(&self, from: usize, m: Box<MoveIn>) {
        let m = *m;
        let mut c = Client::new(m.cid, m.fd, m.addr, m.max_pending);
        c.nonce = m.nonce;
        c.start_ns = m.start_ns;
        let c = Rc::new(c);
        c.account.set(m.account);
        c.echo.set(m.echo);
        c.headers.set(m.headers);
        c.verbose.set(m.verbose);
        c.pedantic.set(m.pedantic);
        c.no_responders.set(m.no_responders);
        c.announced.set(m.announced);
        c.authorized.set(true);
        *c.user.borrow_mut() = m.user;
        c.set_perms(m.perms);
        c.limits.set(m.limits);
        c.account_counted.set(m.account_counted);
        *c.label.borrow_mut() = m.label;
        *c.opts.borrow_mut() = m.connect;
        c.rtt.set(m.rtt);
        *c.moving.borrow_mut() = Some(Box::new(Moving::In { held: Vec::new() }));
        c.tracking.set(true);
        // Counted already (on the core it comes from): in the map only.
        self.clients.borrow_mut().insert(c.cid, c.clone());
        for (subject, sid) in &m.subs {
            self.subscribe(&c, subject, None, sid);
        }
        // Nothing may go out before the socket arrives (no +OK for the SUBs above).
        c.out.borrow_mut().clear();
        let epoch = self.barrier();
        let Some(me) = self.me.get().and_then(|w| w.upgrade()) else { return };
        let cid = c.cid;
        glommio::spawn_local(async move {
            me.wait_interest_acked(epoch).await;
            if let Some(ob) = me.outbox(from) {
                ob.push_control(Mail::MoveReady { cid });
            }
        })
        .detach();
    }

    /// On the core the client leaves: the other core has indexed it.
    pub(super) fn move_ready(&self, cid: u64) {
        let Some(c) = self.clients.borrow().get(&cid).cloned() else { return };
        let mut moving = c.moving.borrow_mut();
        if let Some(Moving::Out { ready, waker, .. }) = moving.as_deref_mut() {
            *ready = true;
            if let Some(w) = waker.take() {
                w.wake();
            }
        }
    }

    /// Step 4, on the core the client comes to: take the socket and serve the client (or,
    /// called off, forget it).
    pub(super) fn move_done(&self, cid: u64, done: Option<Box<MoveDone>>) {
        let Some(c) = self.clients.borrow().get(&cid).cloned() else { return };
        let held = match c.moving.borrow_mut().take().map(|b| *b) {
            Some(Moving::In { held }) => held,
            _ => return,
        };
        c.tracking.set(false);
        let Some(d) = done else {
            // Called off: this copy was never counted, never announced, and the socket is
            // the other core's.
            c.announced.set(false);
            let subs: Vec<_> = c.subs.borrow().iter().cloned().collect();
            for s in &subs {
                self.remove_sub(s);
            }
            c.state.set(State::Closed);
            self.clients.borrow_mut().remove(&cid);
            // SAFETY: the duplicate of the socket this move was given.
            unsafe { libc::close(c.fd()) };
            return;
        };
        if c.state.get() != State::Open {
            // Closed here while held (shutdown, or held past max_pending): the connection is
            // this core's now, and closes as any would.
            self.unregister(&c);
            // SAFETY: as above.
            unsafe { libc::close(c.fd()) };
            return;
        }
        let d = *d;
        // What the old core delivered already goes; the rest stays, in order.
        {
            let mut out = c.out.borrow_mut();
            let mut kept = Vec::with_capacity(out.len());
            let (mut start, mut dropped, mut dropped_bytes) = (0, 0u64, 0u64);
            for h in &held {
                if h.seq > d.last.get(h.core as usize).copied().unwrap_or(0) {
                    kept.extend_from_slice(&out[start..h.end]);
                } else {
                    dropped += 1;
                    dropped_bytes += h.body;
                }
                start = h.end;
            }
            kept.extend_from_slice(&out[start..]);
            *out = kept;
            let s = &c.stats;
            s.out_msgs.set(d.out_msgs + s.out_msgs.get() - dropped);
            s.out_bytes.set(d.out_bytes + s.out_bytes.get() - dropped_bytes);
            s.in_msgs.set(d.in_msgs);
            s.in_bytes.set(d.in_bytes);
            // (This core counted them too.)
            self.stats.out_msgs.set(self.stats.out_msgs.get().saturating_sub(dropped));
            self.stats.out_bytes.set(self.stats.out_bytes.get().saturating_sub(dropped_bytes));
        }
        c.pings_out.set(d.pings_out);
        c.ping_sent.set(d.ping_sent);
        c.published_across.set(d.published_across);
        c.last_activity.set(d.last_activity);
        let mut p = c.peer.get();
        p.moved_at = self.seconds();
        c.peer.set(p);
        // SAFETY: the duplicate of the client's socket, now owned here alone.
        let tcp = unsafe { glommio::net::TcpStream::from_raw_fd(c.fd()) };
        let Some(me) = self.me.get().and_then(|w| w.upgrade()) else { return };
        glommio::spawn_local(crate::server::client::resume(me, c, tcp, d.leftover)).detach();
    }
}
