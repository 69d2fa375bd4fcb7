//! Routes: the cluster, as nats-server 2.9 forms one. Each server listens on its cluster
//! port and dials the routes it is given; servers tell each other of the peers they know
//! (gossip in INFO), so every pair ends up with one route (a full mesh). Interest crosses
//! with `RS+`/`RS-`, messages with `RMSG`/`HMSG` (see `shard::routes`).
//!
//! Routes live on core zero, as ordinary tasks; what they carry to and from the other cores
//! goes through the mailboxes like any message between cores.
//!
//! - [`conn`]: one route connection: handshake, reader, and what each op does.
//!
//! Here: the cluster's state on core zero (its name, the registered routes, the client URLs
//! of the cluster for clients' discovery), the route listener, and dialling.

pub mod conn;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::client::Client;
use super::options::Cluster as ClusterOpts;
use super::shard::outbox::Mail;
use super::shard::{Mode, Shard};
use crate::config::file::{parse_route_url, RouteUrl};
use crate::protocol::info::RouteInfo;

/// The route port, bound before the executors start, and its TLS.
#[derive(Clone)]
pub struct RouteListener {
    pub listener: Arc<TcpListener>,
    pub addr: SocketAddr,
    pub tls: Option<RouteTls>,
}

/// Route TLS: both sides verify each other (the accepting side as a server asking for a
/// client certificate, the dialling side as a client presenting the same certificate).
#[derive(Clone)]
pub struct RouteTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
    pub timeout: Duration,
}

/// A remote subscription's key: account id, subject, queue.
pub type SubKey = (u32, Box<[u8]>, Option<Box<[u8]>>);

/// One route: its connection and what it knows of the peer.
pub struct Route {
    pub client: Rc<Client>,
    pub state: RefCell<RouteState>,
    /// The peer's interest, with each queue group's weight (1 for plain interest).
    pub subs: RefCell<HashMap<SubKey, u32, ahash::RandomState>>,
    /// Some for a leaf-node connection (see `server::leaf`), which shares the rest.
    pub leaf: Option<crate::server::leaf::Link>,
}

/// What a route knows of its peer and of how it came to be.
#[derive(Default, Debug)]
pub struct RouteState {
    pub remote_id: String,
    pub remote_name: String,
    /// This server dialled it.
    pub solicited: bool,
    /// Where to dial it again when it closes (a solicited route's URL, or the URL of a
    /// duplicate this route replaced).
    pub url: Option<RouteUrl>,
    /// The URL is one of the configured routes: re-dialled for as long as the server runs.
    pub explicit: bool,
    /// Dial again once when it closes, though implicit (see nats-server's `retry`).
    pub retry: bool,
    /// The peer's INFO came and the route is in the cluster's list.
    pub registered: bool,
    /// The peer's client URLs, as its INFO gave them.
    pub connect_urls: Vec<String>,
    /// The peer's WebSocket URLs (its INFO's `ws_connect_urls`).
    pub ws_connect_urls: Vec<String>,
    /// The peer's route port (from its INFO), for `/routez`.
    pub port: u16,
    /// Never dial this one again (self, or refused for good).
    pub no_reconnect: bool,
}

/// The cluster as core zero sees it.
pub struct Cluster {
    pub opts: ClusterOpts,
    /// The cluster's name: configured, or made up (`dynamic`) until a peer's wins.
    pub name: RefCell<String>,
    pub dynamic: Cell<bool>,
    /// Where the route listener listens (the real port when 0 was asked for).
    pub listen: SocketAddr,
    /// Registered routes, one per peer server.
    pub routes: RefCell<Vec<Rc<Route>>>,
    /// Routes still shaking hands.
    pub pending: RefCell<Vec<Rc<Route>>>,
    /// This server's client URLs, as peers and clients are told them.
    pub own_urls: Vec<String>,
    /// This server's WebSocket URLs (none without a WebSocket port).
    pub own_ws_urls: Vec<String>,
    /// The configured routes, parsed.
    pub explicit: Vec<RouteUrl>,
    /// A route has registered once: clients' INFO names the cluster's URLs from then on.
    pub seen_routes: Cell<bool>,
    pub tls: Option<RouteTls>,
    /// The server is in lame duck mode.
    pub lame_duck: Cell<bool>,
    /// What the routes were last told of this server's interest: (account, subject, queue)
    /// → 1 for plain interest, the member count for a queue group (nats-server's `rm`).
    pub announced: RefCell<HashMap<SubKey, u32, ahash::RandomState>>,
    /// Interest that changed since the routes were last told (see `Shard::tell_routes`).
    pub dirty: RefCell<Vec<SubKey>>,
}

/// How long a route dial may take, and the pause between attempts (nats-server's 1s each).
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
const RETRY_DELAY: Duration = Duration::from_secs(1);

impl Cluster {
    fn new(shard: &Shard, opts: ClusterOpts, listen: SocketAddr, tls: Option<RouteTls>) -> Cluster {
        let (name, dynamic) = match &opts.name {
            Some(n) => (n.clone(), false),
            None => (shard.shared.info.cluster.clone().unwrap_or_else(|| shard.shared.info.server_id.chars().take(22).collect()), true),
        };
        let explicit = opts.routes.iter().filter_map(|u| parse_route_url(u).ok()).collect();
        let o = &shard.shared.opts;
        Cluster {
            name: RefCell::new(name),
            dynamic: Cell::new(dynamic),
            listen,
            routes: RefCell::new(Vec::new()),
            pending: RefCell::new(Vec::new()),
            own_urls: client_urls(&o.host, shard.shared.info.port),
            own_ws_urls: o.websocket.as_ref().map_or_else(Vec::new, ws_urls),
            explicit,
            seen_routes: Cell::new(false),
            tls,
            lame_duck: Cell::new(false),
            announced: RefCell::new(HashMap::default()),
            dirty: RefCell::new(Vec::new()),
            opts,
        }
    }

    /// The INFO this server sends on a route.
    pub fn info(&self, shard: &Shard) -> RouteInfo {
        let i = &shard.shared.info;
        let (host, port, ip) = match self.opts.advertise.as_deref().and_then(|a| crate::config::file::advertise_host_port(a, self.listen.port()).ok()) {
            Some((h, p)) => (h.clone(), p, format!("nats-route://{}/", join_host_port(&h, p))),
            None => (self.opts.host.clone(), self.listen.port(), String::new()),
        };
        RouteInfo {
            server_id: i.server_id.clone(),
            server_name: i.server_name.clone(),
            version: i.version.clone(),
            // nats-server 2.9's route protocol version.
            proto: 2,
            go: i.go.clone(),
            host,
            port,
            headers: true,
            auth_required: self.opts.user.is_some(),
            tls_required: self.opts.tls.is_some(),
            tls_verify: self.opts.tls.is_some(),
            max_payload: i.max_payload,
            ip,
            nonce: None,
            cluster: self.name.borrow().clone(),
            dynamic: self.dynamic.get(),
            connect_urls: if self.opts.no_advertise { Vec::new() } else { self.own_urls.clone() },
            ws_connect_urls: if self.opts.no_advertise { Vec::new() } else { self.own_ws_urls.clone() },
            ldm: shard.shared.control.mode() == Mode::LameDuck,
            lnoc: true,
            ..Default::default()
        }
    }

    /// The route registered for server `id`, if any.
    pub fn route_to(&self, id: &str) -> Option<Rc<Route>> {
        self.routes.borrow().iter().find(|r| r.state.borrow().remote_id == id).cloned()
    }

    /// The client URLs of the whole cluster: this server's first, then each peer's once
    /// (empty while this server has no route, as nats-server sends none then).
    pub fn cluster_urls(&self) -> Vec<String> {
        self.gather_urls(&self.own_urls, |s| &s.connect_urls)
    }

    /// The cluster's WebSocket URLs, for WebSocket clients, gathered the same way.
    pub fn cluster_ws_urls(&self) -> Vec<String> {
        self.gather_urls(&self.own_ws_urls, |s| &s.ws_connect_urls)
    }

    fn gather_urls(&self, own: &[String], of: impl Fn(&RouteState) -> &Vec<String>) -> Vec<String> {
        let routes = self.routes.borrow();
        if routes.is_empty() && !self.seen_routes.get() {
            return Vec::new();
        }
        // In lame duck mode clients are pointed at the other servers only, as nats-server does.
        let mut urls = if self.lame_duck.get() { Vec::new() } else { own.to_vec() };
        if !self.opts.no_advertise {
            for r in routes.iter() {
                for u in of(&r.state.borrow()) {
                    if !urls.contains(u) {
                        urls.push(u.clone());
                    }
                }
            }
        }
        urls
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// This server's WebSocket URLs: its `advertise` (the port added when it names none), else
/// as [`client_urls`] for the WebSocket port.
pub fn ws_urls(w: &crate::server::options::Websocket) -> Vec<String> {
    match &w.advertise {
        Some(a) if a.rsplit_once(':').is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok()) => vec![a.clone()],
        Some(a) => vec![join_host_port(a.trim_start_matches('[').trim_end_matches(']'), w.port)],
        None => client_urls(&w.host, w.port),
    }
}

/// This server's client URLs: its listen host, or every non-loopback address of the
/// machine when it listens on all of them (nats-server's choice).
pub fn client_urls(host: &str, port: u16) -> Vec<String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => {
            let mut urls: Vec<String> = local_addresses().into_iter().filter(|a| !a.is_loopback()).map(|a| join_host_port(&a.to_string(), port)).collect();
            if urls.is_empty() {
                urls.push(join_host_port("127.0.0.1", port));
            }
            urls
        }
        _ => vec![join_host_port(bare, port)],
    }
}

/// The machine's interface addresses.
fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

/// Whether `addr` is this server's own route listener (an address of this machine on the
/// cluster port): a route to self, never dialled.
fn is_self(addr: &SocketAddr, listen: &SocketAddr) -> bool {
    if addr.port() != listen.port() {
        return false;
    }
    let ip = addr.ip();
    ip.is_loopback() || ip.is_unspecified() || (!listen.ip().is_unspecified() && ip == listen.ip()) || local_addresses().contains(&ip)
}

/// Start the cluster on core zero: serve the route listener, dial the configured routes.
pub fn start(shard: &Rc<Shard>, opts: ClusterOpts, l: RouteListener) {
    let (listener, listen) = (l.listener, l.addr);
    let cluster = Rc::new(Cluster::new(shard, opts, listen, l.tls));
    if shard.cluster.set(cluster.clone()).is_err() {
        return;
    }
    tracing::info!("Cluster name is {}", cluster.name.borrow());
    if cluster.dynamic.get() {
        tracing::warn!("Cluster name was dynamically generated, consider setting one");
    }
    tracing::info!("Listening for route connections on {listen}");
    let running = {
        let shared = shard.shared.clone();
        move || shared.control.mode() != Mode::Stopping
    };
    let s = shard.clone();
    glommio::spawn_local(super::listener::accept_loop(listener, running, move |stream| {
        glommio::spawn_local(conn::serve(s.clone(), stream, None)).detach();
    }))
    .detach();
    for url in cluster.explicit.clone() {
        glommio::spawn_local(dial(shard.clone(), url, true, Duration::ZERO)).detach();
    }
}

/// Dial a route: the configured ones until they connect (for as long as the server runs),
/// gossiped ones `connect_retries` times more. `delay` comes first.
pub async fn dial(shard: Rc<Shard>, url: RouteUrl, explicit: bool, delay: Duration) {
    let Some(cluster) = shard.cluster.get().cloned() else { return };
    if !delay.is_zero() {
        glommio::timer::sleep(delay).await;
    }
    let mut attempts: u32 = 0;
    let stopping = || shard.shared.control.mode() != Mode::Running;
    while !stopping() {
        let hp = join_host_port(&url.host, url.port);
        let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port).to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
        // Any address of this host on our cluster port is ourselves: nothing to dial (the
        // same route list on every server names each server too).
        let addrs: Vec<SocketAddr> = addrs.into_iter().filter(|a| !is_self(a, &cluster.listen)).collect();
        if addrs.is_empty() && (url.host.as_str(), url.port).to_socket_addrs().is_ok_and(|mut a| a.next().is_some()) {
            tracing::debug!("Not dialling route {hp}: it is this server");
            return;
        }
        let res = match addrs.first() {
            Some(a) => glommio::net::TcpStream::connect_timeout(*a, DIAL_TIMEOUT).await.map_err(|e| e.to_string()),
            None => Err(format!("cannot resolve {hp}")),
        };
        match res {
            Ok(tcp) => {
                glommio::spawn_local(conn::serve(shard.clone(), tcp, Some((url, explicit)))).detach();
                return;
            }
            Err(e) => {
                attempts += 1;
                if attempts == 1 || attempts % 30 == 0 {
                    tracing::error!("Error trying to connect to route (attempt {attempts}): {e}");
                } else {
                    tracing::debug!("Error trying to connect to route (attempt {attempts}): {e}");
                }
                if !explicit && attempts > cluster.opts.connect_retries {
                    return;
                }
            }
        }
        glommio::timer::sleep(RETRY_DELAY).await;
    }
}

impl Shard {
    /// Lame duck mode: tell every route (INFO `ldm`), so the peers stop sending their
    /// clients here.
    pub fn routes_lame_duck(&self) {
        let Some(cluster) = self.cluster.get() else { return };
        cluster.lame_duck.set(true);
        self.publish_cluster_urls();
        let line = format!("INFO {} \r\n", serde_json::to_string(&cluster.info(self)).unwrap_or_default());
        for r in cluster.routes.borrow().iter() {
            r.client.send(line.as_bytes());
        }
    }

    /// Tell every core (this one too) the cluster's client URLs: their INFO carries them,
    /// and the clients that take INFO updates get one now.
    pub fn publish_cluster_urls(&self) {
        let Some(cluster) = self.cluster.get() else { return };
        let urls = Arc::new((cluster.cluster_urls(), cluster.cluster_ws_urls()));
        for c in 0..self.core_count() {
            match self.outbox(c) {
                Some(o) => o.push_control(Mail::ConnectUrls(urls.clone())),
                None => self.set_connect_urls(&urls),
            }
        }
    }

    /// The cluster's client URLs changed: new INFO for new connections, and an INFO update
    /// to every connected client that takes them (protocol 1, past its CONNECT).
    /// A WebSocket client is told of the WebSocket URLs only.
    pub fn set_connect_urls(&self, (urls, ws_urls): &(Vec<String>, Vec<String>)) {
        let changed = self.info_connect_urls() != *urls;
        let ws_changed = *self.ws_urls.borrow() != *ws_urls;
        self.set_info_connect_urls(urls.to_vec());
        *self.ws_urls.borrow_mut() = ws_urls.clone();
        let ws = self.ws();
        for c in self.clients() {
            if !c.authorized.get() || c.opts.borrow().protocol < 1 || c.state.get() != super::client::State::Open {
                continue;
            }
            match (&ws, c.websocket) {
                (Some(ws), true) if ws_changed => c.send(self.ws_info_line(ws, c.cid, c.addr, None).as_bytes()),
                (_, false) if changed => c.send(self.info_line(c.cid, c.addr, None).as_bytes()),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_urls_name_the_listen_host_or_every_address() {
        assert_eq!(client_urls("127.0.0.1", 4222), ["127.0.0.1:4222"]);
        assert_eq!(client_urls("::1", 4222), ["[::1]:4222"]);
        assert_eq!(client_urls("[::1]", 4222), ["[::1]:4222"]);
        // All interfaces: the machine's addresses other than loopback (or loopback when it
        // has no other), each with the port.
        let any = client_urls("0.0.0.0", 4222);
        assert!(!any.is_empty() && any.iter().all(|u| u.ends_with(":4222")), "{any:?}");
        assert!(any.iter().all(|u| !u.starts_with("127.")) || any == ["127.0.0.1:4222"], "{any:?}");
    }

    #[test]
    fn a_route_to_this_machine_on_the_cluster_port_is_self() {
        let listen: SocketAddr = "0.0.0.0:6222".parse().unwrap();
        assert!(is_self(&"127.0.0.1:6222".parse().unwrap(), &listen));
        assert!(!is_self(&"127.0.0.1:6223".parse().unwrap(), &listen));
        // An address that is not this machine's.
        assert!(!is_self(&"192.0.2.1:6222".parse().unwrap(), &listen));
        for ip in local_addresses() {
            assert!(is_self(&SocketAddr::new(ip, 6222), &listen), "{ip}");
        }
    }
}
