//! One core's shard: its connections, its subscription index, what it knows of the other
//! cores' interest, and the routing of every message published on it.
//!
//! A message published here is delivered to local subscribers at once and appended to the
//! outbox of every other core whose interest matches. Queue groups are decided here, by the
//! publishing core, among local members and the cores that have members: exactly one member
//! server-wide gets each message, and the chosen core is told which groups to deliver to.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use bytes::Bytes;

use super::client::{Client, CloseReason, Pending, State};
use super::router::{Batch, BatchPool, Mail, Outbox};
use super::sublist::{Sublist, SublistResult};
use super::Options;
use crate::protocol::info::Info;
use crate::protocol::{encode, subject, Publish};

/// What all cores share: read-mostly configuration and server-wide counters touched only when
/// connections come and go (never per message).
pub struct Shared {
    /// The options the server started with (see [`Shared::control`] for reloaded ones).
    pub opts: Options,
    pub info: Info,
    pub connections: AtomicUsize,
    pub total_connections: AtomicU64,
    pub next_cid: AtomicU64,
    /// How the process tells the cores about reloads, lame duck mode and shutdown.
    pub control: Control,
    /// Batch pools between cores: `batch_pools[from * cores + to]`.
    pub batch_pools: Vec<Arc<BatchPool>>,
}

/// Settings that a reload (SIGHUP) may change, handed to every core.
pub struct Live {
    pub opts: Arc<Options>,
    /// The TLS configuration built from `opts.tls`, once, where it is checked.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// What the server is doing as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Running = 0,
    /// Not accepting; clients are told (INFO `ldm`) and then closed over a while.
    LameDuck = 1,
    /// Closing every client after sending what is queued, then stopping.
    Stopping = 2,
}

/// The control plane between the process (signals) and the cores. The main thread is not an
/// executor, so it cannot use the mailboxes: it publishes here and every core looks a few
/// times a second (see `server::control_task`).
pub struct Control {
    pub generation: AtomicU64,
    pub live: Mutex<Arc<Live>>,
    pub mode: AtomicU8,
    /// Cores that finished stopping or lame duck mode.
    pub cores_done: AtomicUsize,
}

impl Control {
    pub fn new(live: Live) -> Control {
        Control { generation: AtomicU64::new(0), live: Mutex::new(Arc::new(live)), mode: AtomicU8::new(0), cores_done: AtomicUsize::new(0) }
    }

    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            0 => Mode::Running,
            1 => Mode::LameDuck,
            _ => Mode::Stopping,
        }
    }

    /// The latest settings (a cheap Arc clone).
    pub fn live(&self) -> Arc<Live> {
        self.live.lock().map(|l| l.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }
}

/// A subscription of one client on this core.
pub struct Subscription {
    pub client: Rc<Client>,
    pub sid: Box<[u8]>,
    pub subject: Box<[u8]>,
    pub queue: Option<Box<[u8]>>,
    /// Auto-unsubscribe after this many deliveries (0: never).
    pub max: Cell<u64>,
    pub delivered: Cell<u64>,
    /// Removed from the index; a cached match result may still hold it for a moment.
    pub closed: Cell<bool>,
}

/// A subscription handle in the index, equal by identity.
#[derive(Clone)]
pub struct SubRef(pub Rc<Subscription>);

impl PartialEq for SubRef {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

/// Per-core counters.
#[derive(Default, Debug)]
pub struct ShardStats {
    pub in_msgs: Cell<u64>,
    pub in_bytes: Cell<u64>,
    pub out_msgs: Cell<u64>,
    pub out_bytes: Cell<u64>,
    pub slow_consumers: Cell<u64>,
    /// Messages handed to other cores, and received from them.
    pub cross_sent: Cell<u64>,
    pub cross_received: Cell<u64>,
    /// Batches (mails carrying messages) received from other cores: messages received per
    /// batch says how well the hand-over amortises its wake-ups.
    pub cross_batches: Cell<u64>,
    /// Queue messages that found no member left anywhere (the group vanished in flight).
    pub queue_dropped: Cell<u64>,
    /// Subscriptions added to and removed from the index (/subsz `num_inserts`, `num_removes`).
    pub sub_inserts: Cell<u64>,
    pub sub_removes: Cell<u64>,
}

fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get() + by);
}

/// Where a queue message goes.
enum Pick<'a> {
    Local(&'a SubRef),
    Core(u16),
    Nobody,
}

/// One core's state.
pub struct Shard {
    pub id: usize,
    pub shared: Arc<Shared>,
    local: RefCell<Sublist<SubRef>>,
    /// Other cores' interest: entries (subject, queue, core).
    remote: RefCell<Sublist<u16>>,
    /// This core's subscription count per `subject[ queue]`, to broadcast only 0↔1 changes.
    interest: RefCell<HashMap<Vec<u8>, u32, ahash::RandomState>>,
    /// Outbox per core (None for this one).
    outboxes: Vec<Option<Outbox>>,
    /// Interest changes broadcast so far, and the latest each peer has acknowledged.
    epoch: Cell<u64>,
    acked: RefCell<Vec<u64>>,
    epoch_waiters: RefCell<Vec<Waker>>,
    clients: RefCell<HashMap<u64, Rc<Client>, ahash::RandomState>>,
    rng: Cell<u64>,
    pub stats: ShardStats,
    /// Queue groups picked for other cores while routing one message (reused).
    picks: RefCell<Vec<(u16, Bytes)>>,
    /// A client that went over half its max_pending during this pass: whoever produced the
    /// messages waits for it at the end of the pass (see [`Shard::end_of_pass`]).
    stall: RefCell<Option<Rc<Client>>>,
    /// This core's copy of the live settings, and the generation it came from.
    live: RefCell<Arc<Live>>,
    live_generation: Cell<u64>,
    /// The INFO template for new connections (auth_required, tls_required follow reloads).
    info: RefCell<Info>,
    /// Recently closed connections, for /connz.
    pub monitor: super::monitor::CoreMonitor,
    /// Requests sent to the other cores as probes (see [`Shard::probe`]), by token.
    probes: RefCell<HashMap<u32, Probe, ahash::RandomState>>,
    next_probe: Cell<u32>,
}

/// A request that matched no interest this core knows of, asked of every other core before
/// the requester is told there are no responders.
struct Probe {
    client: Rc<Client>,
    reply: Box<[u8]>,
    /// Cores that have not answered yet.
    waiting: usize,
    delivered: bool,
}

/// Longest a producer waits for one slow consumer, as nats-server bounds its stalls; after
/// that it goes on, and a consumer still over max_pending is cut off.
const STALL_MAX: std::time::Duration = std::time::Duration::from_secs(1);

impl Shard {
    /// A shard for core `id` of `ncores`.
    pub fn new(id: usize, ncores: usize, shared: Arc<Shared>) -> Shard {
        let shard = Shard {
            id,
            local: RefCell::new(Sublist::new()),
            remote: RefCell::new(Sublist::new()),
            interest: RefCell::new(HashMap::default()),
            outboxes: (0..ncores)
                .map(|c| (c != id).then(|| Outbox::new(shared.batch_pools[id * ncores + c].clone())))
                .collect(),
            epoch: Cell::new(0),
            acked: RefCell::new(vec![0; ncores]),
            epoch_waiters: RefCell::new(Vec::new()),
            clients: RefCell::new(HashMap::default()),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)),
            stats: ShardStats::default(),
            picks: RefCell::new(Vec::new()),
            stall: RefCell::new(None),
            live: RefCell::new(shared.control.live()),
            live_generation: Cell::new(shared.control.generation.load(Ordering::Acquire)),
            info: RefCell::new(shared.info.clone()),
            monitor: Default::default(),
            probes: RefCell::new(HashMap::default()),
            next_probe: Cell::new(0),
            shared,
        };
        shard.apply_live();
        shard
    }

    /// The current options (reloads replace them).
    pub fn opts(&self) -> Arc<Options> {
        self.live.borrow().opts.clone()
    }

    /// The current TLS configuration, if clients must use TLS.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.live.borrow().tls.clone()
    }

    /// Take the latest settings if the process published new ones; true if it did.
    pub fn refresh_live(&self) -> bool {
        let g = self.shared.control.generation.load(Ordering::Acquire);
        if g == self.live_generation.get() {
            return false;
        }
        self.live_generation.set(g);
        *self.live.borrow_mut() = self.shared.control.live();
        self.apply_live();
        true
    }

    fn apply_live(&self) {
        let live = self.live.borrow();
        let o = &live.opts;
        let mut info = self.info.borrow_mut();
        info.auth_required = o.auth.required();
        // As nats-server: with `allow_non_tls` TLS is offered (`tls_available`), not required;
        // `tls_verify` says client certificates are checked either way.
        let tls = live.tls.is_some();
        info.tls_required = tls && !o.allow_non_tls;
        info.tls_available = tls && o.allow_non_tls;
        info.tls_verify = tls && o.tls.as_ref().is_some_and(|t| t.verify);
        info.max_payload = o.max_payload as i64;
        // nats-server names the cluster in INFO as soon as a `cluster` block is configured; an
        // unnamed one gets a made-up name there, here one derived from the server id so every
        // core says the same.
        info.cluster = o.cluster.as_ref().map(|c| c.name.clone().unwrap_or_else(|| info.server_id.chars().take(22).collect()));
    }

    /// Every client on this core.
    pub fn clients(&self) -> Vec<Rc<Client>> {
        self.clients.borrow().values().cloned().collect()
    }

    /// The outbox towards `core`.
    pub fn outbox(&self, core: usize) -> Option<&Outbox> {
        self.outboxes.get(core).and_then(|o| o.as_ref())
    }

    fn random(&self, n: usize) -> usize {
        // xorshift64*: queue member choice needs to be cheap and spread, not secure.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    pub fn next_cid(&self) -> u64 {
        self.shared.next_cid.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The INFO line for a new connection.
    pub fn info_line(&self, cid: u64, addr: Option<SocketAddr>, nonce: Option<&str>) -> String {
        self.client_info_line(cid, addr, false, nonce)
    }

    /// The INFO line for lame duck mode: `ldm: true`, with the client's own id and address
    /// as nats-server sends it.
    pub fn ldm_info_line(&self, cid: u64, addr: Option<SocketAddr>) -> String {
        self.client_info_line(cid, addr, true, None)
    }

    fn client_info_line(&self, cid: u64, addr: Option<SocketAddr>, ldm: bool, nonce: Option<&str>) -> String {
        let mut info = self.info.borrow().clone();
        info.nonce = nonce.map(Into::into);
        info.client_id = Some(cid);
        info.client_ip = addr.map(|a| a.ip().to_string());
        info.ldm = ldm;
        // nats-server ends INFO with a space before CRLF; some clients' tests match it.
        format!("INFO {} \r\n", serde_json::to_string(&info).unwrap_or_default())
    }

    /// Bind a client to the account its credentials name (None: `$G`).
    pub fn bind_account(&self, client: &Client, account: Option<&str>) {
        let opts = self.opts();
        let id = account.and_then(|a| opts.accounts.iter().position(|x| x.name == a)).map_or(0, |i| i as u32 + 1);
        client.account.set(id);
    }

    /// Count a new connection; false when max_connections is reached.
    pub fn register(&self, client: &Rc<Client>) -> bool {
        let max = self.opts().max_connections;
        if self.shared.connections.fetch_add(1, Ordering::AcqRel) >= max {
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.shared.total_connections.fetch_add(1, Ordering::Relaxed);
        self.clients.borrow_mut().insert(client.cid, client.clone());
        true
    }

    /// Forget a closed connection and its subscriptions.
    pub fn unregister(&self, client: &Rc<Client>) {
        if matches!(
            client.close_reason.get(),
            Some(CloseReason::SlowConsumerPendingBytes | CloseReason::SlowConsumerWriteDeadline)
        ) {
            self.count_slow_consumer();
        }
        self.release_producers(client);
        self.monitor.closed(client);
        let subs: Vec<_> = client.subs.borrow().values().cloned().collect();
        for s in subs {
            self.remove_sub(&s);
        }
        if self.clients.borrow_mut().remove(&client.cid).is_some() {
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Connections on this core.
    pub fn client_count(&self) -> usize {
        self.clients.borrow().len()
    }

    pub fn count_slow_consumer(&self) {
        bump(&self.stats.slow_consumers, 1);
    }

    /// SUB from a client.
    pub fn subscribe(&self, client: &Rc<Client>, subj: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
        if !subject::valid_subject(subj) || !queue.map_or(true, subject::valid_queue) {
            client.send_err("Invalid Subject");
            return;
        }
        if !client.can_subscribe(subj) {
            let subj = String::from_utf8_lossy(subj);
            let text = match queue {
                Some(q) => format!("Permissions Violation for Subscription to \"{subj}\" using queue \"{}\"", String::from_utf8_lossy(q)),
                None => format!("Permissions Violation for Subscription to \"{subj}\""),
            };
            tracing::error!(cid = client.cid, "Subscription Violation - {}", text.trim_start_matches("Permissions Violation for "));
            client.send_err(&text);
            return;
        }
        let max = self.opts().max_subscriptions;
        if max > 0 && client.subs.borrow().len() >= max {
            client.send_err("maximum subscriptions exceeded");
            return;
        }
        if !client.subs.borrow().contains_key(sid) {
            let sub = Rc::new(Subscription {
                client: client.clone(),
                sid: sid.into(),
                subject: subj.into(),
                queue: queue.map(Into::into),
                max: Cell::new(0),
                delivered: Cell::new(0),
                closed: Cell::new(false),
            });
            if self.local.borrow_mut().insert(subj, queue, SubRef(sub.clone())).is_err() {
                client.send_err("Invalid Subject");
                return;
            }
            client.subs.borrow_mut().insert(sid.into(), sub);
            bump(&self.stats.sub_inserts, 1);
            self.interest_changed(subj, queue, true);
            client.need_epoch.set(self.epoch.get());
        }
        if client.verbose.get() {
            client.send(b"+OK\r\n");
        }
    }

    /// UNSUB from a client: now, or after `max` deliveries in all.
    pub fn unsubscribe(&self, client: &Rc<Client>, sid: &[u8], max: Option<u64>) {
        let sub = match client.subs.borrow().get(sid) {
            Some(s) => s.clone(),
            None => return,
        };
        if let Some(m) = max {
            if m > 0 && sub.delivered.get() < m {
                sub.max.set(m);
                return;
            }
        }
        self.remove_sub(&sub);
    }

    fn remove_sub(&self, sub: &Rc<Subscription>) {
        if sub.closed.replace(true) {
            return;
        }
        let _ = self.local.borrow_mut().remove(&sub.subject, sub.queue.as_deref(), &SubRef(sub.clone()));
        sub.client.subs.borrow_mut().remove(&sub.sid);
        bump(&self.stats.sub_removes, 1);
        self.interest_changed(&sub.subject, sub.queue.as_deref(), false);
    }

    /// Track this core's count for a pattern and tell the other cores when it starts or stops.
    fn interest_changed(&self, subj: &[u8], queue: Option<&[u8]>, add: bool) {
        if self.outboxes.len() < 2 {
            return;
        }
        let mut key = subj.to_vec();
        if let Some(q) = queue {
            key.push(b' ');
            key.extend_from_slice(q);
        }
        let mut map = self.interest.borrow_mut();
        let edge = if add {
            let c = map.entry(key).or_insert(0);
            *c += 1;
            *c == 1
        } else {
            match map.get_mut(&key) {
                Some(c) if *c > 1 => {
                    *c -= 1;
                    false
                }
                Some(_) => {
                    map.remove(&key);
                    true
                }
                None => false,
            }
        };
        drop(map);
        // Queue members are announced one by one (other cores hold one entry per member), so
        // a publishing core can weigh each core by its member count and every member is
        // about equally likely, as on nats-server. Plain interest needs only the 0↔1 edges.
        if edge || queue.is_some() {
            let epoch = self.epoch.get() + 1;
            self.epoch.set(epoch);
            for o in self.outboxes.iter().flatten() {
                o.push_control(Mail::Interest {
                    subject: subj.into(),
                    queue: queue.map(Into::into),
                    add,
                    epoch,
                });
            }
        }
    }

    /// Ask every other core to acknowledge once it has handled everything this core sent it
    /// so far (mails to a core are handled in order); returns the epoch to wait for.
    pub fn barrier(&self) -> u64 {
        let epoch = self.epoch.get() + 1;
        self.epoch.set(epoch);
        for o in self.outboxes.iter().flatten() {
            o.push_control(Mail::Barrier { epoch });
        }
        epoch
    }

    /// Wait until every other core has applied this core's interest changes up to `epoch`.
    pub async fn wait_interest_acked(&self, epoch: u64) {
        futures_lite::future::poll_fn(|cx| {
            let done = self.acked.borrow().iter().enumerate().all(|(c, &a)| c == self.id || a >= epoch);
            if done {
                Poll::Ready(())
            } else {
                self.epoch_waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// A client published a message.
    pub fn publish(&self, client: &Rc<Client>, p: &Publish<'_>) {
        bump(&client.stats.in_msgs, 1);
        bump(&client.stats.in_bytes, p.msg.len() as u64);
        bump(&self.stats.in_msgs, 1);
        bump(&self.stats.in_bytes, p.msg.len() as u64);
        if !client.can_publish(p.subject) {
            let subj = String::from_utf8_lossy(p.subject);
            tracing::error!(cid = client.cid, "Publish Violation - Subject \"{subj}\"");
            client.send_err(&format!("Permissions Violation for Publish to \"{subj}\""));
            return;
        }
        // Like nats-server, a pedantic client is told off for any subject that is not a valid
        // literal one (a wildcard token, or an empty token as in `foo.`, `.foo`, `foo..bar`),
        // and the connection stays open. What happens to the message does not change: a
        // wildcard subject is still delivered (taken literally), one with an empty token
        // reaches nobody, as there. Unlike nats-server, a control byte in the subject is
        // refused here too: natsu never delivers such a subject (see `subject`), and a
        // pedantic client is told rather than left to guess.
        if client.pedantic.get() && !subject::valid_literal_subject(p.subject) {
            client.send_err("Invalid Publish Subject");
        }
        // The +OK goes before any MSG the publisher itself receives, as nats-server orders it.
        if client.verbose.get() {
            client.send(b"+OK\r\n");
        }
        // Unlike nats-server, subjects with spaces or control bytes are never delivered: the
        // index matches nothing for them, and nobody is told there are no responders.
        let routed = self.route(client, p.subject, p.reply, p.header_len, p.msg);
        if let Some(reply) = p.reply.filter(|_| !routed && client.no_responders.get()) {
            if subject::deliverable_subject(p.subject) {
                if self.outboxes.len() > 1 {
                    self.probe(client, p.subject, reply, p.header_len, p.msg);
                } else {
                    self.no_responders(client, reply);
                }
            }
        }
    }

    /// A request found no interest this core knows of. Another core may have gained a
    /// subscriber whose interest is still on its way here, so the request goes to every
    /// other core as a probe: a core with local interest delivers it, and each answers. Only
    /// when none delivered is the requester told there are no responders. The extra hop
    /// costs only requests that really have no responder.
    fn probe(&self, client: &Rc<Client>, subj: &[u8], reply: &[u8], header_len: Option<usize>, msg: &[u8]) {
        let token = self.next_probe.get().wrapping_add(1).max(1);
        self.next_probe.set(token);
        let probe = Probe { client: client.clone(), reply: reply.into(), waiting: self.outboxes.len() - 1, delivered: false };
        self.probes.borrow_mut().insert(token, probe);
        // A PONG after this must wait until the other cores have handled it, like any
        // message that crossed.
        client.published_across.set(true);
        for ob in self.outboxes.iter().flatten() {
            ob.push_msg(subj, Some(reply), header_len, msg, std::iter::empty(), 0, client.cid, token);
        }
    }

    /// A core answered a probe.
    fn probe_answered(&self, token: u32, delivered: bool) {
        let mut probes = self.probes.borrow_mut();
        let Some(p) = probes.get_mut(&token) else { return };
        p.delivered |= delivered;
        p.waiting -= 1;
        if p.waiting == 0 {
            if let Some(p) = probes.remove(&token) {
                drop(probes);
                if !p.delivered && p.client.state.get() == State::Open {
                    self.no_responders(&p.client, &p.reply);
                }
            }
        }
    }

    /// Tell a requester nobody listens: a 503 status message on its reply subject, delivered
    /// only to the requester's own subscriptions.
    fn no_responders(&self, client: &Rc<Client>, reply: &[u8]) {
        let r = self.local.borrow_mut().match_subject(reply);
        for s in r.psubs.iter().filter(|s| Rc::ptr_eq(&s.0.client, client)) {
            self.deliver(&s.0, reply, None, Some(encode::NO_RESPONDERS_HDR.len()), encode::NO_RESPONDERS_HDR);
        }
    }

    /// Deliver a message published on this core; true if anyone (here or on another core)
    /// will get it.
    fn route(
        &self,
        origin: &Rc<Client>,
        subj: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        msg: &[u8],
    ) -> bool {
        // Nobody subscribed anywhere (a publish-only load): no lookup at all.
        if self.local.borrow().count() == 0 && self.remote.borrow().count() == 0 {
            return false;
        }
        let local = self.local.borrow_mut().match_subject(subj);
        let skip = (!origin.echo.get()).then_some(origin);
        let mut any = false;
        for s in &local.psubs {
            if skip.is_some_and(|o| Rc::ptr_eq(&s.0.client, o)) {
                continue;
            }
            any |= self.deliver(&s.0, subj, reply, header_len, msg);
        }
        if self.outboxes.len() < 2 {
            for (_, members) in &local.qsubs {
                if let Pick::Local(s) = self.pick(subj, skip, members, &[]) {
                    any |= self.deliver(&s.0, subj, reply, header_len, msg);
                }
            }
            return any;
        }
        let remote = self.remote.borrow_mut().match_subject(subj);
        let mut mask: u64 = 0;
        for &c in &remote.psubs {
            mask |= 1 << c;
        }
        let mut picks = self.picks.borrow_mut();
        picks.clear();
        for (name, members) in &local.qsubs {
            let cores = remote.qsubs.iter().find(|(n, _)| n == name).map_or(&[][..], |(_, c)| &c[..]);
            match self.pick(subj, skip, members, cores) {
                Pick::Local(s) => any |= self.deliver(&s.0, subj, reply, header_len, msg),
                Pick::Core(c) => picks.push((c, name.clone())),
                Pick::Nobody => {}
            }
        }
        for (name, cores) in &remote.qsubs {
            if !cores.is_empty() && !local.qsubs.iter().any(|(n, _)| n == name) {
                picks.push((cores[self.random(cores.len())], name.clone()));
            }
        }
        for &(c, _) in picks.iter() {
            mask |= 1 << c;
        }
        if mask != 0 {
            any = true;
            origin.published_across.set(true);
            for (core, ob) in self.outboxes.iter().enumerate() {
                if let Some(ob) = ob.as_ref().filter(|_| mask & (1 << core) != 0) {
                    let qs = picks.iter().filter(|(c, _)| *c as usize == core).map(|(_, n)| &n[..]);
                    ob.push_msg(subj, reply, header_len, msg, qs, 0, origin.cid, 0);
                    bump(&self.stats.cross_sent, 1);
                }
            }
        }
        any
    }

    /// Choose the one member of a queue group that gets a message: a live local member or a
    /// core that has members. `cores` lists a core once per member it has, so each member
    /// server-wide is about equally likely.
    /// `skip` is a publisher with echo off, whose own members are not eligible.
    fn pick<'a>(&self, subj: &[u8], skip: Option<&Rc<Client>>, members: &'a [SubRef], cores: &[u16]) -> Pick<'a> {
        let eligible = |s: &&SubRef| {
            !s.0.closed.get()
                && s.0.client.state.get() == State::Open
                && !s.0.client.denies_delivery(subj)
                && !skip.is_some_and(|o| Rc::ptr_eq(&s.0.client, o))
        };
        let n_local = members.iter().filter(eligible).count();
        let n = n_local + cores.len();
        if n == 0 {
            return Pick::Nobody;
        }
        let i = self.random(n);
        match members.iter().filter(eligible).nth(i) {
            Some(s) => Pick::Local(s),
            None => Pick::Core(cores[i - n_local]),
        }
    }

    /// Append a MSG for one subscription to its client's outbound buffer.
    #[inline]
    fn deliver(&self, sub: &Rc<Subscription>, subj: &[u8], reply: Option<&[u8]>, header_len: Option<usize>, msg: &[u8]) -> bool {
        let c = &sub.client;
        if sub.closed.get() || c.state.get() != State::Open || c.denies_delivery(subj) {
            return false;
        }
        // A client that did not ask for headers gets the payload alone, as nats-server does.
        let (h, body) = match header_len {
            Some(h) if !c.headers.get() => (None, &msg[h.min(msg.len())..]),
            h => (h, msg),
        };
        let (was_empty, queued) = {
            let mut out = c.out.borrow_mut();
            let was_empty = out.is_empty();
            let start = out.len();
            encode::msg(&mut out, subj, &sub.sid, reply, h, body);
            if crate::logging::trace_enabled() {
                let line = &out[start..];
                let end = memchr::memchr(b'\r', line).unwrap_or(line.len());
                c.trace_out(&line[..end]);
            }
            (was_empty, out.len())
        };
        bump(&c.stats.out_msgs, 1);
        bump(&c.stats.out_bytes, body.len() as u64);
        bump(&self.stats.out_msgs, 1);
        bump(&self.stats.out_bytes, body.len() as u64);
        if c.queued(was_empty, queued) == Pending::High {
            // As nats-server: the producer waits for a consumer falling behind, instead of
            // filling its buffer until it has to be cut off.
            *self.stall.borrow_mut() = Some(c.clone());
        }
        let d = sub.delivered.get() + 1;
        sub.delivered.set(d);
        if sub.max.get() != 0 && d >= sub.max.get() {
            self.remove_sub(sub);
        }
        true
    }

    /// A mail from another core.
    pub fn handle_mail(&self, from: usize, mail: Mail) {
        match mail {
            Mail::Batch(b) => {
                self.deliver_batch(from, &b);
                if let Some(o) = self.outbox(from) {
                    o.give_credit(b.bytes());
                }
                self.shared.batch_pools[from * self.outboxes.len() + self.id].give(b);
            }
            Mail::Credit { bytes } => {
                if let Some(o) = self.outbox(from) {
                    o.credited(bytes);
                }
            }
            Mail::Stall { cid } => {
                if let Some(c) = self.clients.borrow().get(&cid) {
                    c.remote_stalls.set(c.remote_stalls.get() + 1);
                }
            }
            Mail::Unstall { cid } => {
                if let Some(c) = self.clients.borrow().get(&cid) {
                    c.remote_stalls.set(c.remote_stalls.get().saturating_sub(1));
                    c.wake_stalled();
                }
            }
            Mail::ProbeAck { token, delivered } => self.probe_answered(token, delivered),
            Mail::Interest { subject, queue, add, epoch } => {
                let mut remote = self.remote.borrow_mut();
                let core = from as u16;
                let _ = if add {
                    remote.insert(&subject, queue.as_deref(), core)
                } else {
                    remote.remove(&subject, queue.as_deref(), &core)
                };
                drop(remote);
                if let Some(o) = self.outbox(from) {
                    o.push_control(Mail::Ack { epoch });
                }
            }
            Mail::Barrier { epoch } => {
                if let Some(o) = self.outbox(from) {
                    o.push_control(Mail::Ack { epoch });
                }
            }
            Mail::Ack { epoch } => {
                let mut acked = self.acked.borrow_mut();
                if acked[from] < epoch {
                    acked[from] = epoch;
                }
                drop(acked);
                for w in self.epoch_waiters.borrow_mut().drain(..) {
                    w.wake();
                }
            }
            Mail::Stats(req) => super::monitor::answer(self, req),
        }
    }

    /// Deliver messages another core published for subscribers here.
    fn deliver_batch(&self, from: usize, batch: &Batch) {
        bump(&self.stats.cross_received, batch.len() as u64);
        bump(&self.stats.cross_batches, 1);
        let mut local: Option<(&[u8], Rc<SublistResult<SubRef>>)> = None;
        for m in batch.iter() {
            // Consecutive messages usually share a subject; skip even the cache lookup then.
            let r = match &local {
                Some((s, r)) if *s == m.subject => r.clone(),
                _ => {
                    let r = self.local.borrow_mut().match_subject(m.subject);
                    local = Some((m.subject, r.clone()));
                    r
                }
            };
            if m.probe != 0 {
                // Deliver as the publishing core would have, had it known of the interest.
                let mut delivered = false;
                for s in &r.psubs {
                    delivered |= self.deliver(&s.0, m.subject, m.reply, m.header_len, m.msg);
                }
                for (_, members) in &r.qsubs {
                    if let Pick::Local(s) = self.pick(m.subject, None, members, &[]) {
                        delivered |= self.deliver(&s.0, m.subject, m.reply, m.header_len, m.msg);
                    }
                }
                if let Some(o) = self.outbox(from) {
                    o.push_control(Mail::ProbeAck { token: m.probe, delivered });
                }
                self.stall_origin(from, m.origin);
                continue;
            }
            // A forwarded message (hops > 0) is only for its queue groups.
            if m.hops == 0 {
                for s in &r.psubs {
                    self.deliver(&s.0, m.subject, m.reply, m.header_len, m.msg);
                }
            }
            for q in m.queues() {
                let members = r.qsubs.iter().find(|(n, _)| &n[..] == q).map_or(&[][..], |(_, v)| &v[..]);
                if let Pick::Local(s) = self.pick(m.subject, None, members, &[]) {
                    self.deliver(&s.0, m.subject, m.reply, m.header_len, m.msg);
                    continue;
                }
                // The group left this core while the message was in flight: hand it to
                // another core that still has members, if any.
                let remote = self.remote.borrow_mut().match_subject(m.subject);
                let cores: Vec<u16> = remote
                    .qsubs
                    .iter()
                    .filter(|(n, _)| &n[..] == q)
                    .flat_map(|(_, c)| c.iter().copied())
                    // The sender too: its members may be the only ones allowed this
                    // subject (a member here can be filtered by a deny permission). Hops
                    // bound the trips.
                    .filter(|&c| c as usize != self.id)
                    .collect();
                if cores.is_empty() || m.hops as usize >= self.outboxes.len() {
                    tracing::debug!(core = self.id, from, hops = m.hops, "queue message found no member");
                    bump(&self.stats.queue_dropped, 1);
                    continue;
                }
                let c = cores[self.random(cores.len())] as usize;
                if let Some(ob) = self.outbox(c) {
                    ob.push_msg(m.subject, m.reply, m.header_len, m.msg, std::iter::once(q), m.hops + 1, m.origin, 0);
                }
            }
            self.stall_origin(from, m.origin);
        }
    }

    /// A message from core `from`, published by its client `origin`, made a consumer here
    /// fall behind. The mailbox never waits (everything else that core sends would wait
    /// behind it); instead the publisher alone is told to stall until the consumer catches
    /// up, which its own core bounds in time (see [`Shard::end_of_pass`]).
    fn stall_origin(&self, from: usize, origin: u64) {
        let Some(c) = self.stall.borrow_mut().take() else { return };
        if origin == 0 || c.state.get() != State::Open {
            return;
        }
        let producer = (from as u16, origin);
        let mut producers = c.remote_producers.borrow_mut();
        if !producers.contains(&producer) {
            producers.push(producer);
            if let Some(o) = self.outbox(from) {
                o.push_control(Mail::Stall { cid: origin });
            }
        }
    }

    /// A consumer caught up (or closed): release the publishers on other cores it stalled.
    pub fn release_producers(&self, consumer: &Client) {
        if consumer.remote_producers.borrow().is_empty() {
            return;
        }
        for (core, cid) in consumer.remote_producers.borrow_mut().drain(..) {
            if let Some(o) = self.outbox(core as usize) {
                o.push_control(Mail::Unstall { cid });
            }
        }
    }

    /// After a reader's parse pass: if another core is not keeping up, wait for it rather than
    /// queue without bound.
    pub async fn end_of_pass(&self, client: &Client) {
        for ob in self.outboxes.iter().flatten() {
            if ob.is_full() {
                ob.wait_drained().await;
            }
        }
        self.wait_for_slow_consumer().await;
        if client.remote_stalls.get() > 0 {
            let unstalled = futures_lite::future::or(async { Some(client.wait_unstalled().await) }, async {
                glommio::timer::sleep(STALL_MAX).await;
                None
            })
            .await;
            if unstalled.is_none() {
                // Bounded: go on; the consumer is cut off if it goes over max_pending.
                client.remote_stalls.set(0);
            }
        }
    }

    /// If a local consumer went over half its max_pending while this producer (a client's
    /// reader) delivered to it, wait until it is back under. Producers wait on one consumer
    /// for STALL_MAX in all while it stays over half (the budget comes back once it gets under):
    /// a consumer that does not read then fills to max_pending or its write deadline and is
    /// cut off, instead of holding its producers a second per read pass for as long as it
    /// lasts.
    async fn wait_for_slow_consumer(&self) {
        let Some(c) = self.stall.borrow_mut().take() else { return };
        let left = STALL_MAX.saturating_sub(c.stalled_for.get());
        if left.is_zero() {
            return;
        }
        let below = c.max_pending() / 2;
        let start = std::time::Instant::now();
        let _ = futures_lite::future::or(async { Some(c.wait_pending_below(below).await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        if c.pending() > below {
            c.stalled_for.set(c.stalled_for.get() + start.elapsed());
        }
    }

    /// Subscriptions on this core.
    pub fn subscription_count(&self) -> usize {
        self.local.borrow().count()
    }

    /// The index's match cache figures: (hits, misses, cached subjects), for /subsz.
    pub fn sublist_cache_stats(&self) -> (u64, u64, usize) {
        self.local.borrow().cache_stats()
    }

    /// `(largest, sum)` fan-out over this core's cached match results.
    pub fn sublist_fanout(&self) -> (u64, u64) {
        self.local.borrow().fanout()
    }
}
