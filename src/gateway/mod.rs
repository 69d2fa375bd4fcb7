//! `natsu-gateway`: HTTP and WebSocket in front of NATS request/reply services, with
//! nats-proxy's subjects and messages ([`crate::service`] is the service side).
//!
//! One glommio executor per core, each with its own `SO_REUSEPORT` listener on the HTTP
//! port, its own NATS connection ([`crate::client`]) and its own counters; hyper 1.x serves
//! HTTP/1.1 with keep-alive over glommio's sockets ([`io`]). A request's trip is in
//! [`handler`], the WebSocket bridge in [`ws`], the settings in [`config`], `/healthz` and
//! `/metrics` (on `http_port`) in [`metrics`].
//!
//! ```no_run
//! use natsu::gateway::{config::Config, Gateway};
//! let mut cfg = Config::default();
//! cfg.nats.servers = vec!["127.0.0.1:4222".into()];
//! Gateway::new(cfg)
//!     .hook("^/api/", |resp| { natsu::service::proto::add(&mut resp.header, "X-Api", "1"); })
//!     .unwrap()
//!     .run()
//!     .unwrap();
//! ```

pub mod config;
pub mod handler;
pub mod io;
pub mod metrics;
pub mod ws;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use glommio::net::TcpListener;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use http_body_util::Full;
use hyper::service::service_fn;

use crate::client::{self, Connection};
use crate::net::Transport;
use crate::service::proto::Response;
use config::{Config, HookRule};
use metrics::Metrics;

/// A function over a service's answer, run before it is written.
pub type HookFn = dyn Fn(&mut Response) + Send + Sync;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's headers.
const HEADER_READ: Duration = Duration::from_secs(30);

/// The gateway, configured; [`Gateway::run`] serves until the process ends.
pub struct Gateway {
    cfg: Arc<Config>,
    hooks: Vec<(regex::Regex, Arc<HookFn>)>,
}

/// One executor's share: its NATS connection and counters.
pub struct Shard {
    pub cfg: Arc<Config>,
    hooks: Arc<Vec<(regex::Regex, Arc<HookFn>)>>,
    nc: RefCell<Option<Connection>>,
    pub metrics: Arc<Metrics>,
}

impl Shard {
    /// The NATS connection, once it has been made.
    pub fn connection(&self) -> Option<Connection> {
        self.nc.borrow().clone()
    }

    /// Run every hook whose regex matches `path`, in the order added (config file rules
    /// first).
    pub fn apply_hooks(&self, path: &str, resp: &mut Response) {
        for (re, f) in self.hooks.iter() {
            if re.is_match(path) {
                f(resp);
            }
        }
    }
}

/// A config file's hook rule as a function.
fn rule_hook(rule: &HookRule) -> Arc<HookFn> {
    let set = rule.set_headers.clone();
    let remove = rule.remove_headers.clone();
    Arc::new(move |resp: &mut Response| {
        for name in &remove {
            resp.header.retain(|k, _| !k.eq_ignore_ascii_case(name));
        }
        for (name, value) in &set {
            resp.header.retain(|k, _| !k.eq_ignore_ascii_case(name));
            resp.header.insert(name.clone(), crate::service::proto::Values { arr: vec![value.clone()] });
        }
    })
}

impl Gateway {
    pub fn new(cfg: Config) -> Gateway {
        let hooks = cfg.hooks.iter().map(|r| (r.path.clone(), rule_hook(r))).collect();
        Gateway { cfg: Arc::new(cfg), hooks }
    }

    /// Add a function run over the answers to paths matching `path_regex`.
    pub fn hook(mut self, path_regex: &str, f: impl Fn(&mut Response) + Send + Sync + 'static) -> Result<Gateway, regex::Error> {
        self.hooks.push((regex::Regex::new(path_regex)?, Arc::new(f)));
        Ok(self)
    }

    /// Bind the ports, start the executors and serve; returns only on a start-up error or
    /// when every executor has stopped.
    pub fn run(self) -> Result<(), String> {
        let cfg = self.cfg;
        let cores = if cfg.cores == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { cfg.cores };
        // SO_REUSEPORT would let us share the port with another process's listener without a
        // word: check that nobody is listening there first.
        if cfg.listen.port() != 0 {
            bind_patiently(cfg.listen).map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        }
        let tls = match &cfg.tls {
            Some(t) => Some(crate::server::tls::server_config(t)?),
            None => None,
        };
        let all: Arc<Vec<Arc<Metrics>>> = Arc::new((0..cores).map(|_| Arc::new(Metrics::default())).collect());
        let monitor = match cfg.http_port {
            Some(port) => {
                let addr = SocketAddr::new(cfg.listen.ip(), port);
                Some(bind_patiently(addr).map_err(|e| format!("cannot listen on {addr} for monitoring: {e}"))?)
            }
            None => None,
        };
        let monitor = Arc::new(std::sync::Mutex::new(monitor));
        // The first executor binds the port (which may be 0: any free port); the others join it.
        let bound = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
        let hooks = Arc::new(self.hooks);
        let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(cores))
            .name("natsu-gateway")
            .io_memory(256 << 10)
            .ring_depth(256)
            .on_all_shards(move || {
                let (cfg, all, hooks, tls, monitor, bound) = (cfg.clone(), all.clone(), hooks.clone(), tls.clone(), monitor.clone(), bound.clone());
                async move {
                    let id = glommio::executor().id() - 1;
                    let shard = Rc::new(Shard { cfg: cfg.clone(), hooks, nc: RefCell::new(None), metrics: all[id % all.len()].clone() });
                    let listener = {
                        let mut b = bound.lock().unwrap_or_else(|p| p.into_inner());
                        let addr = b.unwrap_or(cfg.listen);
                        match bind_reuseport(addr) {
                            Ok(l) => {
                                let local = l.local_addr().ok();
                                if b.is_none() {
                                    *b = local;
                                    if let Some(a) = local {
                                        tracing::info!("Listening for HTTP{} on {a}", if tls.is_some() { "S" } else { "" });
                                    }
                                }
                                l
                            }
                            Err(e) => {
                                tracing::error!("cannot listen on {addr}: {e}");
                                std::process::exit(1);
                            }
                        }
                    };
                    if let Some(m) = monitor.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        glommio::spawn_local(serve_monitor(m, all.clone())).detach();
                    }
                    glommio::spawn_local(connect_nats(shard.clone())).detach();
                    accept(shard, listener, tls).await;
                }
            })
            .map_err(|e| format!("cannot start executors: {e}"))?;
        for r in handles.join_all() {
            r.map_err(|e| format!("executor failed: {e:?}"))?;
        }
        Ok(())
    }
}

/// How long a start waits for a port a gateway that just died still holds.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(3);

/// Bind `addr` (a plain bind: it fails while any other socket listens there), waiting a
/// little while it is in use: a gateway killed a moment ago leaves its listening sockets
/// behind until the kernel has torn down its io_uring, which holds them for the accepts it
/// had pending. A supervisor's restart lands right in that window.
fn bind_patiently(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
    loop {
        match std::net::TcpListener::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// This executor's listener on the shared HTTP port: `SO_REUSEPORT` so that every executor
/// has its own accept queue, and `SO_REUSEADDR` so that the connections it leaves in
/// TIME_WAIT do not keep a restarted gateway's first check (a plain bind) off the port.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let domain = if addr.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    // SAFETY: a listening socket we own and give up here.
    Ok(unsafe { TcpListener::from_raw_fd(s.into_raw_fd()) })
}

/// Connect this executor to NATS: the servers in the listed order, the first that works;
/// when none does, wait `reconnect` and go round again, for ever. Once connected the client
/// reconnects by itself with the same pace.
async fn connect_nats(shard: Rc<Shard>) {
    let up = &shard.cfg.nats;
    let servers = shard.cfg.servers().join(",");
    loop {
        let metrics = (shard.metrics.clone(), shard.metrics.clone());
        let mut opts = client::Options::new()
            .name("natsu-gateway")
            .no_randomize(true)
            .max_reconnects(-1)
            .reconnect_wait(up.reconnect)
            .ping_interval(up.ping)
            .disconnected_callback(move |_, _| metrics.0.connected.store(false, std::sync::atomic::Ordering::Relaxed))
            .reconnected_callback(move |nc| {
                tracing::info!("NATS reconnected to {}", nc.connected_url().unwrap_or_default());
                metrics.1.connected.store(true, std::sync::atomic::Ordering::Relaxed)
            });
        if let (Some(u), Some(p)) = (&up.user, &up.password) {
            opts = opts.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &up.token {
            opts = opts.token(t.clone());
        }
        match opts.connect(&servers).await {
            Ok(nc) => {
                tracing::debug!("NATS connected to {}", nc.connected_url().unwrap_or_default());
                *shard.nc.borrow_mut() = Some(nc);
                shard.metrics.connected.store(true, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::warn!("cannot connect to NATS ({servers}): {e}; trying again in {:?}", up.reconnect);
                glommio::timer::sleep(up.reconnect).await;
            }
        }
    }
}

/// Accept HTTP connections on this executor's listener for good.
async fn accept(shard: Rc<Shard>, listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (shard, tls) = (shard.clone(), tls.clone());
                glommio::spawn_local(async move {
                    let remote = match stream.peer_addr() {
                        Ok(a) => a,
                        Err(_) => return,
                    };
                    let _ = stream.set_nodelay(true);
                    let transport = match tls {
                        Some(cfg) => match crate::server::tls::accept(cfg, stream, TLS_HANDSHAKE).await {
                            Ok(t) => t,
                            Err(e) => {
                                tracing::debug!("{remote}: TLS handshake failed: {e}");
                                return;
                            }
                        },
                        None => Transport::Plain(stream),
                    };
                    serve_connection(shard, transport, remote).await;
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serve one connection's requests (keep-alive), then bridge its WebSocket if the last
/// request upgraded it.
async fn serve_connection(shard: Rc<Shard>, transport: Transport, remote: SocketAddr) {
    let slot: handler::UpgradeSlot = Rc::new(RefCell::new(None));
    let svc = {
        let (shard, slot) = (shard.clone(), slot.clone());
        service_fn(move |req| {
            let (shard, slot) = (shard.clone(), slot.clone());
            Box::pin(async move { Ok::<_, std::convert::Infallible>(handler::handle(shard, req, remote, slot).await) })
                as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(io::GlommioTimer)
        .header_read_timeout(HEADER_READ)
        .serve_connection(io::HyperIo::new(transport), svc);
    let served = conn.without_shutdown().await;
    let pending = slot.borrow_mut().take();
    match (served, pending) {
        (Ok(parts), Some(pending)) => {
            let stream = io::Prefixed { head: parts.read_buf, inner: parts.io.into_inner() };
            let max = shard.cfg.max_body;
            ws::bridge(shard, stream, pending, max).await;
        }
        (Err(e), Some(pending)) => {
            tracing::debug!("{remote}: WebSocket {} lost before the bridge: {e}", pending.id);
            pending.abandon("connection lost during the handshake").await;
        }
        (Err(e), None) => tracing::debug!("{remote}: {e}"),
        (Ok(_), None) => {}
    }
}

/// `/healthz` and `/metrics` on the monitoring port.
async fn serve_monitor(listener: std::net::TcpListener, all: Arc<Vec<Arc<Metrics>>>) {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let _ = listener.set_nonblocking(true);
    // SAFETY: the descriptor comes from a listening std socket we own and give up here.
    let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
    if let Ok(a) = listener.local_addr() {
        tracing::info!("Listening for monitoring on http://{a}");
    }
    while let Ok(stream) = listener.accept().await {
        let all = all.clone();
        glommio::spawn_local(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (status, ctype, body) = match req.uri().path() {
                    "/healthz" => {
                        let (s, b) = metrics::health(&all);
                        (s, "application/json", b)
                    }
                    "/metrics" => (200, "text/plain; version=0.0.4", metrics::prometheus(&all)),
                    _ => (404, "application/json", r#"{"error":"not found","status":404}"#.to_string()),
                };
                let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                *r.status_mut() = hyper::StatusCode::from_u16(status).expect("a valid status");
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(ctype));
                std::future::ready(Ok::<_, std::convert::Infallible>(r))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io::HyperIo::new(stream), svc).await;
        })
        .detach();
    }
}

