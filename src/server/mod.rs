//! The broker: boot one glommio executor per core, each serving its own share of the
//! connections, accepted from one listening socket the executors share ([`listener`]).
//!
//! - [`client`]: a connection's reader, writer and pinger tasks;
//! - [`shard`]: one core's state: per-account indexes, routing, mail between cores (a folder);
//! - [`sublist`]: the subscription trie and its match cache, which each account index is;
//! - [`monitor`]: the HTTP monitoring port (core zero), figures gathered from every core;
//! - [`route`]: the cluster's routes (core zero).

pub mod auth;
pub mod client;
pub mod leaf;
pub mod listener;
pub mod mapping;
pub mod monitor;
pub mod options;
pub mod route;
pub mod shard;
pub mod sublist;
pub mod tls;
pub mod websocket;

use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use std::sync::Arc;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

pub use options::Options;
use options::{User, GLOBAL_ACCOUNT};
use shard::outbox::Mail;
use shard::{Control, Live, Mode, Shard, Shared};

use crate::protocol::info::{Info, COMPAT_VERSION};

/// Mails that may wait in one direction of the mesh before the sender waits.
const MESH_CHANNEL_SIZE: usize = 1024;

/// A server that is running on its executors.
pub struct Running {
    /// The address clients connect to (with the real port when 0 was asked for).
    pub addr: SocketAddr,
    pub server_id: String,
    handles: glommio::PoolThreadHandles<()>,
    shared: Arc<Shared>,
    /// The client port's listening socket, shut from here when the server stops accepting.
    listen_fd: RawFd,
    /// The route listener's address and socket, in a cluster.
    pub cluster_addr: Option<SocketAddr>,
    cluster_fd: Option<RawFd>,
    /// The WebSocket port's address and socket, when it is on.
    pub ws_addr: Option<SocketAddr>,
    ws_fd: Option<RawFd>,
}

/// The client ports every executor accepts on.
#[derive(Clone)]
struct Listeners {
    client: Arc<std::net::TcpListener>,
    websocket: Option<Arc<std::net::TcpListener>>,
    /// The leaf-node port (core zero serves it).
    leaf: Option<leaf::LeafListener>,
}

impl Running {
    /// Apply reloaded options (SIGHUP): auth, permissions, TLS, limits for new connections.
    /// A TLS configuration that does not load refuses the reload, and so does a change of
    /// the accounts, the system account or a user's account; the old settings stay.
    /// Settings that need a restart (listen address, cores) are reported and ignored.
    pub fn reload(&self, mut opts: Options) -> Result<Vec<String>, String> {
        let old = self.shared.control.live().opts.clone();
        if let Some(why) = accounts_change(&old, &opts) {
            return Err(why);
        }
        let mut ignored = Vec::new();
        if (opts.host.as_str(), opts.port) != (old.host.as_str(), old.port) && opts.port != 0 {
            ignored.push(format!("listen address {}:{} (restart to change it)", opts.host, opts.port));
        }
        if opts.cores != old.cores {
            ignored.push("cores (restart to change it)".to_string());
        }
        if opts.http_port != old.http_port || opts.https_port != old.https_port {
            ignored.push("monitoring ports (restart to change them)".to_string());
        }
        (opts.host, opts.port, opts.cores) = (old.host.clone(), old.port, old.cores);
        (opts.http_port, opts.https_port) = (old.http_port, old.https_port);
        if opts.websocket.as_ref().map(|w| (&w.host, w.port)) != old.websocket.as_ref().map(|w| (&w.host, w.port)) {
            ignored.push("websocket listener (restart to change it)".to_string());
            match (&mut opts.websocket, &old.websocket) {
                (Some(w), Some(o)) => (w.host, w.port) = (o.host.clone(), o.port),
                (None, Some(o)) => opts.websocket = Some(o.clone()),
                (Some(_), None) => opts.websocket = None,
                (None, None) => {}
            }
        }
        if !leaf::unchanged(old.leafnodes.as_ref(), opts.leafnodes.as_ref()) {
            ignored.push("leafnodes (restart to change it)".to_string());
        }
        opts.leafnodes = old.leafnodes.clone();
        let live = Live::new(opts)?;
        let c = &self.shared.control;
        *c.live.lock().map_err(|_| "internal: control lock poisoned".to_string())? = Arc::new(live);
        c.generation.fetch_add(1, Ordering::AcqRel);
        Ok(ignored)
    }

    /// The options in effect now.
    pub fn options(&self) -> Arc<Options> {
        self.shared.control.live().opts.clone()
    }

    /// Stop: stop accepting, send every client what is queued for it, close them; returns
    /// when all cores are done or `within` has passed.
    pub fn stop(&self, within: Duration) -> bool {
        self.enter(Mode::Stopping, within)
    }

    /// Lame duck mode: stop accepting, tell clients (INFO `ldm`), wait the grace period, then
    /// close them spread over the rest of lame_duck_duration; returns when done.
    pub fn lame_duck(&self) -> bool {
        let o = self.options();
        self.enter(Mode::LameDuck, o.lame_duck_duration + Duration::from_secs(5))
    }

    fn enter(&self, mode: Mode, within: Duration) -> bool {
        let c = &self.shared.control;
        c.cores_done.store(0, Ordering::Release);
        c.mode.store(mode as u8, Ordering::Release);
        // As nats-server: new connections are refused from this moment, not from the next
        // time the cores look at the control plane.
        listener::shut(self.listen_fd);
        if let Some(fd) = self.ws_fd {
            listener::shut(fd);
        }
        if let (Some(fd), Mode::Stopping) = (self.cluster_fd, mode) {
            listener::shut(fd);
        }
        let deadline = Instant::now() + within;
        let cores = self.shared.opts.cores;
        while c.cores_done.load(Ordering::Acquire) < cores {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Block until every executor stops (they run until the process exits).
    pub fn join(self) {
        for r in self.handles.join_all() {
            if let Err(e) = r {
                tracing::error!("executor ended with error: {e}");
            }
        }
    }
}

/// Errors that keep the server from starting.
#[derive(Debug)]
pub enum StartError {
    Resolve(String),
    Bind(SocketAddr, std::io::Error),
    Executors(String),
    Tls(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Resolve(h) => write!(f, "cannot resolve listen address {h}"),
            StartError::Bind(a, e) => write!(f, "Error listening on port: {a}, \"{e}\""),
            StartError::Executors(e) => write!(f, "cannot start executors: {e}"),
            StartError::Tls(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Why a reload from `old` to `new` needs a restart: the accounts (their mappings too), the
/// top-level mappings, the system account or the account of a user that stays changed. The
/// account table is built once, at start, and a connected client stays in the account it
/// was bound to. None: the reload may go ahead (users may come and go).
fn accounts_change(old: &Options, new: &Options) -> Option<String> {
    if old.accounts != new.accounts {
        return Some("changing accounts needs a restart".into());
    }
    if old.mappings != new.mappings {
        return Some("changing mappings needs a restart".into());
    }
    if old.system_account != new.system_account {
        return Some("changing system_account needs a restart".into());
    }
    let id = |u: &User| u.nkey.clone().unwrap_or_else(|| u.user.clone());
    for u in &new.auth.users {
        if let Some(was) = old.auth.users.iter().find(|o| id(o) == id(u)) {
            if was.account != u.account {
                let name = |a: &Option<String>| a.clone().unwrap_or_else(|| GLOBAL_ACCOUNT.into());
                return Some(format!("moving user {:?} from account {:?} to {:?} needs a restart", id(u), name(&was.account), name(&u.account)));
            }
        }
    }
    None
}

/// A random server id in nats-server's form: 56 upper-case base32 characters starting with N.
fn new_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut seed = [0u8; 56];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed)).is_err() {
        // Fall back to hashing the time and pid: ids only need to be unique, not secret.
        use std::hash::{BuildHasher, Hasher};
        let mut h = ahash::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        h.write_u32(std::process::id());
        let mut x = h.finish();
        for b in seed.iter_mut() {
            x = x.rotate_left(5) ^ 0x9E37_79B9_7F4A_7C15;
            *b = x as u8;
        }
    }
    std::iter::once('N').chain(seed[1..].iter().map(|b| ALPHABET[(*b as usize) % 32] as char)).collect()
}

/// Start serving on `opts.cores` executors; returns once the sockets listen.
pub fn start(opts: Options) -> Result<Running, StartError> {
    let cores = opts.cores.clamp(1, 64);
    // Certificates are read before binding: a bad TLS setup must not leave a port open.
    let live = Live::new(opts.clone()).map_err(StartError::Tls)?;
    let tls = live.tls.clone();
    let (listener, addr) = listener::bind(&opts.host, opts.port)?;
    let ws_listener = match &opts.websocket {
        Some(w) => {
            let (l, a) = listener::bind(&w.host, w.port)?;
            // nats-server's lines.
            let scheme = if w.tls.is_some() { "wss" } else { "ws" };
            tracing::info!("Listening for websocket clients on {scheme}://{}:{}", w.host, a.port());
            if w.tls.is_none() {
                tracing::warn!("Websocket not configured with TLS. DO NOT USE IN PRODUCTION!");
            }
            Some((l, a))
        }
        None => None,
    };
    let listen_fd = listener.as_raw_fd();
    // The route port too, before any executor starts: a port in use is an error at start.
    let cluster = match &opts.cluster {
        Some(c) => {
            // Routes are mutual TLS: the accepting side always asks for the peer's certificate.
            let tls = match &c.tls {
                Some(t) => {
                    let server = tls::server_config(&options::Tls { verify: true, ..t.clone() }).map_err(|e| StartError::Tls(format!("cluster: {e}")))?;
                    let client = tls::route_client_config(t).map_err(|e| StartError::Tls(format!("cluster: {e}")))?;
                    Some(route::RouteTls { server, client, timeout: t.timeout })
                }
                None => None,
            };
            let (l, addr) = listener::bind(&c.host, c.port)?;
            Some(route::RouteListener { listener: l, addr, tls })
        }
        None => None,
    };
    let leaf_listener = leaf::bind(&opts)?;
    let cluster_addr = cluster.as_ref().map(|l| l.addr);
    let cluster_fd = cluster.as_ref().map(|l| l.listener.as_raw_fd());
    let server_id = new_server_id();
    let info = Info {
        server_id: server_id.clone(),
        server_name: opts.server_name.clone().unwrap_or_else(|| server_id.clone()),
        version: COMPAT_VERSION.into(),
        proto: 1,
        go: "go1.19.8".into(),
        host: opts.host.clone(),
        port: addr.port(),
        headers: true,
        max_payload: opts.max_payload as i64,
        auth_required: opts.auth.required(),
        tls_required: tls.is_some(),
        natsu_version: Some(env!("CARGO_PKG_VERSION").into()),
        ..Default::default()
    };
    let mut opts = Options { cores, port: addr.port(), ..opts };
    if let (Some(w), Some((_, a))) = (&mut opts.websocket, &ws_listener) {
        w.port = a.port();
    }
    if let (Some(l), Some(ll)) = (&mut opts.leafnodes, &leaf_listener) {
        l.port = Some(ll.addr.port());
    }
    let ws_addr = ws_listener.as_ref().map(|(_, a)| *a);
    let ws_fd = ws_listener.as_ref().map(|(l, _)| l.as_raw_fd());
    let ws_listener = ws_listener.map(|(l, _)| l);
    let accounts = shard::imports::AccountTable::new(&opts);
    let live = Live { opts: Arc::new(opts.clone()), ..live };
    let shared = Arc::new(Shared {
        control: Control::new(live),
        opts,
        info,
        connections: AtomicUsize::new(0),
        total_connections: AtomicU64::new(0),
        next_cid: AtomicU64::new(0),
        batch_pools: (0..cores * cores).map(|_| Default::default()).collect(),
        sys_seq: AtomicU64::new(0),
        accounts,
        core_clients: (0..cores).map(|_| AtomicUsize::new(0)).collect(),
        moving: Default::default(),
        moves: AtomicU64::new(0),
    });
    let shared_for_running = shared.clone();
    let mesh: MeshBuilder<Mail, _> = MeshBuilder::full(cores, MESH_CHANNEL_SIZE);
    // One executor pinned per CPU; asked for more executors than CPUs, let them float.
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // Only pinned executors spin: more executors than CPUs would spin against each other.
    let (placement, spin) = if cores <= cpus {
        (PoolPlacement::MaxSpread(cores, None), shared.opts.spin)
    } else {
        tracing::warn!("{cores} executors on {cpus} CPUs: executors are not pinned and do not spin");
        (PoolPlacement::Unbound(cores), Duration::ZERO)
    };
    let handles = LocalExecutorPoolBuilder::new(placement)
        .spin_before_park(spin)
        .preempt_timer(PREEMPT_TIMER)
        .name("natsu")
        // Network I/O needs no registered DMA buffers; keep locked memory small.
        .io_memory(256 << 10)
        .ring_depth(256)
        // Blocking threads wait in accept(2) for good (see `listener`): one per port on
        // every core (clients, WebSocket clients), and on core zero also routes, leaf nodes
        // and monitoring; the others do what blocking work there is (bcrypt checks).
        .blocking_thread_pool_placement(PoolPlacement::Unbound(BLOCKING_THREADS))
        .on_all_shards(move || async move { run_shard(shared, mesh, Listeners { client: listener, websocket: ws_listener, leaf: leaf_listener.clone() }, cluster).await })
        .map_err(|e| StartError::Executors(e.to_string()))?;
    Ok(Running { addr, server_id, handles, shared: shared_for_running, listen_fd, cluster_addr, cluster_fd, ws_addr, ws_fd })
}

/// How long an executor runs ready tasks before it looks at its sockets again. glommio
/// polls for I/O only when no task is ready or this timer fires (its default is 100 ms): a
/// task that yields is ready again at once, so a mailbox working through a burst of mail
/// in slices, or a reader with more bytes always waiting, kept every other client of the core
/// waiting for the whole burst (a publisher's message waited 17-32 ms while another client's
/// 20,000 wildcard SUBs landed; with 2 ms, 5-13 ms, as nats-server's 7-11). 1 ms cost a
/// 1:4 fan-out 18-34% more CPU per message; 2 ms costs nothing measurable
/// (bench/RESULTS.md, session 19).
const PREEMPT_TIMER: Duration = Duration::from_millis(2);

/// Mails (an interest mail counts its changes) a core's mailbox handles from one peer before
/// it lets its other tasks run.
const MAILBOX_SLICE: u32 = 64;

/// The life of one executor: join the mesh, start the cross-core tasks, accept connections.
async fn run_shard(
    shared: Arc<Shared>,
    mesh: MeshBuilder<Mail, glommio::channels::channel_mesh::Full>,
    listeners: Listeners,
    cluster: Option<route::RouteListener>,
) {
    let (senders, mut receivers) = match mesh.join().await {
        Ok(x) => x,
        Err(_) => {
            tracing::error!("could not join the executor mesh");
            return;
        }
    };
    let id = senders.peer_id();
    let ncores = senders.nr_consumers();
    let shard = Rc::new(Shard::new(id, ncores, shared.clone()));
    let _ = shard.me.set(Rc::downgrade(&shard));
    let senders = Rc::new(senders);
    // The mailbox tasks run in the default task queue. A Latency::Matters queue looked like
    // the way to get prompt cross-executor wake-ups, but with glommio 0.9 it lost wake-ups:
    // a PONG waiting for another core's interest ack stalled for seconds in about one of 400
    // SUB+PING rounds (none in 5,000 rounds without it), and round-trip latency was no better.
    for (peer, rx) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            // The mailbox never waits for a slow consumer: everything else the peer sends
            // (other subscribers' messages, interest, acknowledgements) would wait behind
            // it. The publisher that feeds it is stalled on its own core instead.
            // Nor does it hold its core: a burst of mail (20,000 wildcard SUBs on another core
            // send as many interest mails) is handled in slices, so the core's clients are
            // read and written between them (`recv` of a queued mail never yields by itself:
            // publishers here waited out a whole burst).
            let mut handled = 0u32;
            while let Some(mail) = rx.recv().await {
                handled += mail.weight();
                shard.handle_mail(peer, mail);
                if handled >= MAILBOX_SLICE {
                    handled = 0;
                    futures_lite::future::yield_now().await;
                }
            }
        })
        .detach();
    }
    for peer in (0..ncores).filter(|&p| p != id) {
        let (shard, senders) = (shard.clone(), senders.clone());
        glommio::spawn_local(async move {
            let Some(ob) = shard.outbox(peer) else { return };
            loop {
                // The outbox counts a batch's bytes until the peer credits them back.
                let mail = ob.next().await;
                if senders.send_to(peer, mail).await.is_err() {
                    return;
                }
            }
        })
        .detach();
    }
    if id == 0 {
        monitor::spawn(&shard);
        if let (Some(l), Some(c)) = (cluster, shard.shared.opts.cluster.clone()) {
            route::start(&shard, c, l);
        }
        if let Some(l) = shard.shared.opts.leafnodes.clone() {
            leaf::start(&shard, l, listeners.leaf.clone());
        }
    }
    let running = {
        let shared = shard.shared.clone();
        move || shared.control.mode() == Mode::Running
    };
    let accepting = glommio::spawn_local({
        let (shard, running) = (shard.clone(), running.clone());
        listener::accept_loop(listeners.client, running, move |stream| {
            glommio::spawn_local(client::serve(shard.clone(), stream)).detach();
        })
    });
    let accepting_ws = listeners.websocket.map(|l| {
        let shard = shard.clone();
        glommio::spawn_local(listener::accept_loop(l, running, move |stream| {
            glommio::spawn_local(websocket::serve(shard.clone(), stream)).detach();
        }))
    });
    control_task(&shard).await;
    // The control thread shut the listeners when the mode changed, so the loops have ended
    // or end at once; awaiting them (not cancelling) keeps the sockets open until no
    // blocking accept can use their numbers.
    accepting.await;
    if let Some(a) = accepting_ws {
        a.await;
    }
}

/// Blocking threads per executor: up to five acceptors (core zero) and three for bcrypt.
const BLOCKING_THREADS: usize = 8;

/// How often a core looks at the control plane. Reloads and signals are human-scale events;
/// four looks a second cost nothing measurable and keep an idle server idle.
const CONTROL_TICK: Duration = Duration::from_millis(250);

/// Follow the control plane: take reloaded settings, and on lame duck or stop close the
/// clients (accepting stopped already: the control thread shut the listener).
async fn control_task(shard: &Rc<Shard>) {
    let control = &shard.shared.control;
    let mode = loop {
        glommio::timer::sleep(CONTROL_TICK).await;
        if shard.refresh_live() {
            reauthorize(shard).await;
        }
        shard.colocate_look();
        match control.mode() {
            Mode::Running => continue,
            m => break m,
        }
    };
    if mode == Mode::LameDuck {
        lame_duck(shard).await;
    } else {
        for c in shard.clients() {
            c.drain_and_close(client::CloseReason::ServerShutdown);
        }
    }
    for r in shard.routes() {
        r.client.drain_and_close(client::CloseReason::ServerShutdown);
    }
    // Give writers a moment to send what is queued, then report done.
    let deadline = Instant::now() + Duration::from_secs(2);
    while shard.client_count() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    control.cores_done.fetch_add(1, Ordering::AcqRel);
}

/// Lame duck on one core: tell every client, wait the grace period, then close the clients
/// evenly over the rest of lame_duck_duration, so they do not all reconnect at once.
async fn lame_duck(shard: &Rc<Shard>) {
    let opts = shard.opts();
    // The other servers stop sending clients here.
    shard.routes_lame_duck();
    // Only clients that take INFO updates (protocol 1) are told, as nats-server does.
    for c in shard.clients().iter().filter(|c| c.opts.borrow().protocol >= 1) {
        let line = match shard.ws().filter(|_| c.websocket) {
            Some(ws) => shard.ws_ldm_info_line(&ws, c.cid, c.addr),
            None => shard.ldm_info_line(c.cid, c.addr),
        };
        c.send(line.as_bytes());
    }
    glommio::timer::sleep(opts.lame_duck_grace_period).await;
    let clients = shard.clients();
    let spread = opts.lame_duck_duration.saturating_sub(opts.lame_duck_grace_period);
    let gap = spread / (clients.len().max(1) as u32);
    for c in clients {
        c.drain_and_close(client::CloseReason::LameDuck);
        glommio::timer::sleep(gap.min(Duration::from_secs(1))).await;
    }
}

/// After a reload: close clients whose credentials no longer pass, refresh the permissions
/// of the others.
pub(crate) async fn reauthorize(shard: &Rc<Shard>) {
    let opts = shard.opts();
    for c in shard.clients() {
        if !c.authorized.get() {
            continue;
        }
        let opts = if c.websocket { shard.client_opts(&c) } else { opts.clone() };
        match c.recheck(&opts).await {
            Some(id) => {
                *c.user.borrow_mut() = id.user;
                c.set_perms(id.perms);
            }
            None => {
                tracing::info!(cid = c.cid, "Client credentials no longer valid after reload, closing");
                c.send_err("Authorization Violation");
                c.drain_and_close(client::CloseReason::AuthenticationViolation);
            }
        }
    }
}
