//! The broker: boot one glommio executor per core, each serving its own share of the
//! connections through its own listening socket (SO_REUSEPORT lets the kernel spread them).
//!
//! - [`shard`]: a core's state and message routing;
//! - [`client`]: a connection's reader, writer and pinger tasks;
//! - [`router`]: what crosses between cores, batched per peer;
//! - [`sublist`]: the subscription index.

pub mod client;
pub mod options;
pub mod router;
pub mod shard;
pub mod sublist;

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::io::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

pub use options::Options;
use router::Mail;
use shard::{Shard, Shared};

use crate::protocol::info::{Info, COMPAT_VERSION};

/// Mails that may wait in one direction of the mesh before the sender waits.
const MESH_CHANNEL_SIZE: usize = 1024;

/// A server that is running on its executors.
pub struct Running {
    /// The address clients connect to (with the real port when 0 was asked for).
    pub addr: SocketAddr,
    pub server_id: String,
    handles: glommio::PoolThreadHandles<()>,
}

impl Running {
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
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Resolve(h) => write!(f, "cannot resolve listen address {h}"),
            StartError::Bind(a, e) => write!(f, "Error listening on port: {a}, \"{e}\""),
            StartError::Executors(e) => write!(f, "cannot start executors: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

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

/// One listening socket per core on the same address, so each executor accepts for itself.
fn bind_listeners(opts: &Options) -> Result<(Vec<std::net::TcpListener>, SocketAddr), StartError> {
    let host = opts.host.trim_start_matches('[').trim_end_matches(']');
    let mut addr = (host, opts.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| StartError::Resolve(opts.host.clone()))?;
    let domain = if addr.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    if addr.port() != 0 {
        // SO_REUSEPORT would let a second natsu share a port already in use (the kernel
        // splitting clients between them); nats-server refuses to start, and so do we: a
        // socket without SO_REUSEPORT cannot bind where anyone listens.
        // A listener of a process that just exited can linger for a moment (io_uring tears
        // its requests down asynchronously), so "in use" is asked again for up to a second.
        let probe = || {
            socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
                .and_then(|s| s.set_reuse_address(true).map(|()| s))
                .and_then(|s| s.bind(&addr.into()))
        };
        let mut tries = 0;
        while let Err(e) = probe() {
            tries += 1;
            if e.kind() != std::io::ErrorKind::AddrInUse || tries >= 20 {
                return Err(StartError::Bind(addr, e));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let mut out = Vec::with_capacity(opts.cores);
    for _ in 0..opts.cores.max(1) {
        let bind = || -> std::io::Result<std::net::TcpListener> {
            let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            s.bind(&addr.into())?;
            s.listen(1024)?;
            Ok(s.into())
        };
        let l = bind().map_err(|e| StartError::Bind(addr, e))?;
        // A requested port of 0 becomes the one the first socket got, for all the others.
        addr = l.local_addr().map_err(|e| StartError::Bind(addr, e))?;
        out.push(l);
    }
    Ok((out, addr))
}

/// Start serving on `opts.cores` executors; returns once the sockets listen.
pub fn start(opts: Options) -> Result<Running, StartError> {
    let cores = opts.cores.clamp(1, 64);
    let (listeners, addr) = bind_listeners(&Options { cores, ..opts.clone() })?;
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
        natsu_version: Some(env!("CARGO_PKG_VERSION").into()),
        ..Default::default()
    };
    let shared = Arc::new(Shared {
        opts: Options { cores, port: addr.port(), ..opts },
        info,
        connections: AtomicUsize::new(0),
        total_connections: AtomicU64::new(0),
        next_cid: AtomicU64::new(0),
    });
    let listeners = Arc::new(Mutex::new(listeners.into_iter().map(Some).collect::<Vec<_>>()));
    let mesh: MeshBuilder<Mail, _> = MeshBuilder::full(cores, MESH_CHANNEL_SIZE);
    // One executor pinned per CPU; asked for more executors than CPUs, let them float.
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let placement = if cores <= cpus {
        PoolPlacement::MaxSpread(cores, None)
    } else {
        tracing::warn!("{cores} executors on {cpus} CPUs: executors are not pinned");
        PoolPlacement::Unbound(cores)
    };
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("natsu")
        // Network I/O needs no registered DMA buffers; keep locked memory small.
        .io_memory(256 << 10)
        .ring_depth(256)
        .on_all_shards(move || async move { run_shard(shared, mesh, listeners).await })
        .map_err(|e| StartError::Executors(e.to_string()))?;
    Ok(Running { addr, server_id, handles })
}

/// The life of one executor: join the mesh, start the cross-core tasks, accept connections.
async fn run_shard(
    shared: Arc<Shared>,
    mesh: MeshBuilder<Mail, glommio::channels::channel_mesh::Full>,
    listeners: Arc<Mutex<Vec<Option<std::net::TcpListener>>>>,
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
    let senders = Rc::new(senders);
    // The mailbox tasks run in the default task queue. A Latency::Matters queue looked like
    // the way to get prompt cross-executor wake-ups, but with glommio 0.9 it lost wake-ups:
    // a PONG waiting for another core's interest ack stalled for seconds in about one of 400
    // SUB+PING rounds (none in 5,000 rounds without it), and round-trip latency was no better.
    for (peer, rx) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(mail) = rx.recv().await {
                shard.handle_mail(peer, mail);
                shard.wait_for_slow_consumer().await;
            }
        })
        .detach();
    }
    for peer in (0..ncores).filter(|&p| p != id) {
        let (shard, senders) = (shard.clone(), senders.clone());
        glommio::spawn_local(async move {
            let Some(ob) = shard.outbox(peer) else { return };
            loop {
                let mail = ob.next().await;
                let bytes = mail.bytes();
                if senders.send_to(peer, mail).await.is_err() {
                    return;
                }
                ob.sent(bytes);
            }
        })
        .detach();
    }
    let std_listener = listeners.lock().ok().and_then(|mut v| v.get_mut(id).and_then(Option::take));
    let Some(std_listener) = std_listener else {
        tracing::error!("no listener for core {id}");
        return;
    };
    // SAFETY: the fd comes from a listening socket we own; ownership moves to glommio.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(std_listener.into_raw_fd()) };
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(client::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                // Out of file descriptors and the like: say so and retry shortly.
                tracing::error!("Error accepting client connection: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
