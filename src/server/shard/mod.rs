//! One core's shard: its connections, its subscription indexes (one per account), what it
//! knows of the other cores' interest, and the routing of every message published on it.
//!
//! A message published here is matched once against its account's index; local subscribers
//! get it at once, and it is appended to the outbox of every other core whose interest
//! matches. Queue groups are decided here, by the publishing core, among local members and
//! the cores that have members: exactly one member server-wide gets each message, and the
//! chosen core is told which groups to deliver to.
//!
//! - [`control`]: what all cores share, and the process's control plane (reload, lame duck);
//! - [`index`]: the per-account index, its targets, SUB and UNSUB;
//! - [`interest`]: interest between cores and the epochs a PONG waits for;
//! - [`routing`]: a publish to its targets, queue picks, delivery;
//! - [`imports`]: accounts, stream and service imports, generated reply subjects;
//! - [`mail`]: what other cores send here, and back-pressure between cores;
//! - [`system`]: the system account's advisories and requests;
//! - [`routes`]: other servers' interest, ours told to them, messages to and from them;
//! - [`outbox`]: the per-peer batches that carry it.

pub mod colocate;
pub mod control;
pub mod imports;
pub mod index;
mod interest;
mod mail;
pub mod outbox;
mod routes;
mod routing;
pub mod system;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;

pub use control::{Control, Live, Mode, Shared};
pub use index::{AccountIndex, Subscription, SubsBySid, Target};
use index::bump;
use imports::Responses;
use outbox::Outbox;

use super::client::{Client, CloseReason};
use super::Options;
use crate::protocol::info::Info;

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

/// One core's state.
pub struct Shard {
    pub id: usize,
    pub shared: Arc<Shared>,
    /// The index of each account, by account id (see [`imports::AccountTable`]).
    accounts: Vec<AccountIndex>,
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
    /// Routes the message being routed goes to, with the queue groups picked for each
    /// (reused; see `routes`).
    route_targets: RefCell<Vec<(Rc<crate::server::route::Route>, Vec<Bytes>)>>,
    /// Interest changes are being made in a batch (a closing client's): the routes are told
    /// at its end.
    deferring: Cell<bool>,
    /// The cluster: on core zero, when routes are configured.
    pub cluster: std::cell::OnceCell<Rc<crate::server::route::Cluster>>,
    /// Leaf nodes: on core zero, when `leafnodes` is configured.
    pub leafs: std::cell::OnceCell<Rc<crate::server::leaf::Leafs>>,
    /// A client that went over half its max_pending during this pass: whoever produced the
    /// messages waits for it at the end of the pass (see [`Shard::end_of_pass`]).
    stall: RefCell<Option<Rc<Client>>>,
    /// This core's copy of the live settings, and the generation it came from.
    live: RefCell<Arc<Live>>,
    /// The cluster's WebSocket URLs, for WebSocket clients' INFO (from core zero).
    pub(crate) ws_urls: RefCell<Vec<String>>,
    live_generation: Cell<u64>,
    /// The INFO template for new connections (auth_required, tls_required follow reloads).
    info: RefCell<Info>,
    /// Recently closed connections, for /connz.
    pub monitor: super::monitor::CoreMonitor,
    /// Requests sent to the other cores as probes (see `routing`), by token.
    probes: RefCell<HashMap<u32, Probe, ahash::RandomState>>,
    next_probe: Cell<u32>,
    /// Service requests made from this core waiting for their answers.
    pub responses: Responses,
    /// Messages routed on this core so far (each one's sequence number), and the core and
    /// sequence number of the message being delivered (see `colocate`).
    seq: Cell<u64>,
    cur: Cell<(u16, u64)>,
    /// Co-location's state on this core (see `colocate`).
    colocate: colocate::CoreState,
    /// This shard, for tasks it starts itself (system requests).
    pub me: std::cell::OnceCell<std::rc::Weak<Shard>>,
    /// The monitoring state the HTTP port uses (or, without one, the system account's
    /// requests), and when the shard started.
    pub monitor_state: std::cell::OnceCell<Rc<super::monitor::MonitorState>>,
    started_ns: u64,
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
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = ahash::RandomState::new().build_hasher();
            h.write_usize(id);
            h.finish()
        };
        let shard = Shard {
            id,
            accounts: shared.accounts.names.iter().map(|n| AccountIndex::new(n.clone())).collect(),
            outboxes: (0..ncores)
                .map(|c| (c != id).then(|| Outbox::new(shared.batch_pools[id * ncores + c].clone(), outbox::high_water(shared.opts.max_pending))))
                .collect(),
            epoch: Cell::new(0),
            acked: RefCell::new(vec![0; ncores]),
            epoch_waiters: RefCell::new(Vec::new()),
            clients: RefCell::new(HashMap::default()),
            rng: Cell::new(seed | 1),
            stats: ShardStats::default(),
            picks: RefCell::new(Vec::new()),
            route_targets: RefCell::new(Vec::new()),
            deferring: Cell::new(false),
            cluster: Default::default(),
            leafs: Default::default(),
            stall: RefCell::new(None),
            live: RefCell::new(shared.control.live()),
            ws_urls: RefCell::new(Vec::new()),
            live_generation: Cell::new(shared.control.generation.load(Ordering::Acquire)),
            info: RefCell::new(shared.info.clone()),
            monitor: Default::default(),
            probes: RefCell::new(HashMap::default()),
            next_probe: Cell::new(0),
            responses: Responses::new(seed.rotate_left(32)),
            seq: Cell::new(0),
            cur: Cell::new((id as u16, 0)),
            colocate: Default::default(),
            me: Default::default(),
            monitor_state: Default::default(),
            started_ns: super::monitor::fmt::now_ns(),
            shared,
        };
        shard.apply_live();
        shard.install_imports();
        shard.install_system();
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
        info.auth_required = crate::server::auth::info_auth_required(&o.auth);
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

    /// How many cores the server runs on.
    pub fn core_count(&self) -> usize {
        self.outboxes.len()
    }

    /// The client URLs new connections' INFO names.
    pub fn info_connect_urls(&self) -> Vec<String> {
        self.info.borrow().connect_urls.clone()
    }

    pub fn set_info_connect_urls(&self, urls: Vec<String>) {
        self.info.borrow_mut().connect_urls = urls;
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

    /// The WebSocket port's settings now (None: no WebSocket port).
    pub fn ws(&self) -> Option<Arc<crate::server::websocket::Live>> {
        self.live.borrow().ws.clone()
    }

    /// The options a client's credentials are checked under: a WebSocket client's may
    /// override the top-level ones (see [`Websocket::client_options`](crate::server::options::Websocket::client_options)).
    pub fn client_opts(&self, client: &Client) -> Arc<Options> {
        let live = self.live.borrow();
        match (&live.ws, client.websocket) {
            (Some(ws), true) => ws.opts.clone(),
            _ => live.opts.clone(),
        }
    }

    /// The INFO line for a new WebSocket client: as any client's, with the credentials the
    /// WebSocket port asks for, no TLS to start (it is the WebSocket's), and the cluster's
    /// WebSocket URLs in `connect_urls`.
    pub fn ws_info_line(&self, ws: &crate::server::websocket::Live, cid: u64, addr: Option<SocketAddr>, nonce: Option<&str>) -> String {
        self.ws_client_info_line(ws, cid, addr, nonce, false)
    }

    /// [`Shard::ws_info_line`] for lame duck mode: `ldm`, and the other servers' URLs only.
    pub fn ws_ldm_info_line(&self, ws: &crate::server::websocket::Live, cid: u64, addr: Option<SocketAddr>) -> String {
        self.ws_client_info_line(ws, cid, addr, None, true)
    }

    fn ws_client_info_line(&self, ws: &crate::server::websocket::Live, cid: u64, addr: Option<SocketAddr>, nonce: Option<&str>, ldm: bool) -> String {
        let mut info = self.info.borrow().clone();
        info.auth_required = crate::server::auth::info_auth_required(&ws.opts.auth);
        info.tls_required = false;
        info.tls_available = false;
        info.tls_verify = false;
        info.connect_urls = self.ws_urls.borrow().clone();
        if ldm {
            let own = self.shared.opts.websocket.as_ref().map(crate::server::route::ws_urls).unwrap_or_default();
            info.connect_urls.retain(|u| !own.contains(u));
        }
        info.ldm = ldm;
        info.nonce = nonce.map(Into::into);
        info.client_id = Some(cid);
        info.client_ip = addr.map(|a| a.ip().to_string());
        format!("INFO {} \r\n", serde_json::to_string(&info).unwrap_or_default())
    }

    /// The INFO line for lame duck mode: `ldm: true`, with the client's own id and address
    /// as nats-server sends it.
    pub fn ldm_info_line(&self, cid: u64, addr: Option<SocketAddr>) -> String {
        self.client_info_line(cid, addr, true, None)
    }

    fn client_info_line(&self, cid: u64, addr: Option<SocketAddr>, ldm: bool, nonce: Option<&str>) -> String {
        let mut info = self.info.borrow().clone();
        if ldm {
            // Clients are pointed at the other servers of the cluster only.
            let own = crate::server::route::client_urls(&self.shared.opts.host, self.shared.info.port);
            info.connect_urls.retain(|u| !own.contains(u));
        }
        info.nonce = nonce.map(Into::into);
        info.client_id = Some(cid);
        info.client_ip = addr.map(|a| a.ip().to_string());
        info.ldm = ldm;
        // nats-server ends INFO with a space before CRLF; some clients' tests match it.
        format!("INFO {} \r\n", serde_json::to_string(&info).unwrap_or_default())
    }

    /// Bind a client to the account its credentials name (None: `$G`).
    pub fn bind_account(&self, client: &Client, account: Option<&str>) {
        let id = account.and_then(|a| self.shared.accounts.id(a)).unwrap_or(0);
        client.account.set(id);
    }

    /// The name of a client's account.
    pub fn account_name(&self, client: &Client) -> &str {
        &self.account(client.account.get()).name
    }

    /// Count a connection in its account's; false (not counted) when the account already
    /// has `limit` connections.
    pub fn count_account_connection(&self, account: u32, limit: Option<usize>) -> bool {
        let Some(n) = self.shared.accounts.conns.get(account as usize) else { return true };
        let limit = limit.unwrap_or(usize::MAX);
        n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| (c < limit).then_some(c + 1)).is_ok()
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
        let subs: Vec<_> = client.subs.borrow().iter().cloned().collect();
        // All of a closing client's interest goes at once: the routes hear the result (one
        // RS- for a group it had two members in), as from nats-server.
        self.deferring.set(true);
        for s in &subs {
            self.remove_sub(s);
        }
        self.deferring.set(false);
        if !subs.is_empty() {
            match self.outbox(0) {
                Some(o) => o.push_control(outbox::Mail::FlushRoutes),
                None => self.flush_route_interest(),
            }
        }
        if self.clients.borrow_mut().remove(&client.cid).is_some() {
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
        }
        if client.account_counted.replace(false) {
            if let Some(n) = self.shared.accounts.conns.get(client.account.get() as usize) {
                n.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.client_disconnected(client);
    }

    /// Connections on this core.
    pub fn client_count(&self) -> usize {
        self.clients.borrow().len()
    }

    pub fn count_slow_consumer(&self) {
        bump(&self.stats.slow_consumers, 1);
    }
}
