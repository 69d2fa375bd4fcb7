//! Leaf nodes, as nats-server 2.9 links them: a server dials the remotes of its
//! `leafnodes { remotes }` (it is their leaf, a "spoke") and accepts leaf connections on its
//! leaf-node port (it is their hub). One connection carries one account: the leaf's
//! `account` on its side, the account the hub binds the leaf's credentials to on the other.
//!
//! A leaf connection is a [`Route`] whose client is of kind [`Kind::Leaf`]: its interest
//! (`LS+`/`LS-`) sits in the account's index as `Target::Route` entries like a route's, and
//! the kind picks the framing (`LMSG`, no account on the wire) and the forwarding rules
//! ([`forwards`]): what comes from a hub goes to local clients and to this server's own
//! leafs, never to its routes; what comes from a leaf of ours goes everywhere but back.
//! Interest follows the same rules (see [`interest`]).
//!
//! Leaf connections live on core zero, with the routes.
//!
//! - [`conn`]: one connection: both handshakes, the reader, the ops;
//! - [`interest`]: what each leaf connection is told of this server's interest;
//! - [`creds`]: a `.creds` file's user JWT and the nonce signed with its seed.

pub mod conn;
pub mod creds;
pub mod interest;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::client::{Kind, State};
use super::options::Tls;
use super::route::{join_host_port, Route};
use super::shard::{Mode, Shard};
use crate::config::file::{parse_route_url, RouteUrl};

/// The `leafnodes` block.
#[derive(Clone, Debug, PartialEq)]
pub struct LeafNodes {
    pub host: String,
    /// The leaf-node port: None, no listener (nats-server's port 0); Some(0) picks a free one
    /// (`port: -1`).
    pub port: Option<u16>,
    /// `authorization { user password }`: the one user leafs log in as, bound to `account`.
    pub user: Option<String>,
    pub password: Option<String>,
    /// The account the single user (or, with no user at all, every leaf) is bound to; None:
    /// `$G`.
    pub account: Option<String>,
    /// `authorization { users: [ {user, password, account} ] }`.
    pub users: Vec<LeafUser>,
    /// How long an accepted leaf has to send CONNECT (nats-server's default: 1s... its
    /// `timeout` in seconds, fractional allowed).
    pub auth_timeout: Option<Duration>,
    pub tls: Option<Tls>,
    /// The address leafs should reach this server at (INFO `leafnode_urls`).
    pub advertise: Option<String>,
    pub no_advertise: bool,
    /// The pause before dialling a remote again (`reconnect`; nats-server's 1s).
    pub reconnect: Duration,
    pub remotes: Vec<Remote>,
}

impl Default for LeafNodes {
    fn default() -> Self {
        LeafNodes {
            host: "0.0.0.0".into(),
            port: None,
            user: None,
            password: None,
            account: None,
            users: Vec::new(),
            auth_timeout: None,
            tls: None,
            advertise: None,
            no_advertise: false,
            reconnect: Duration::from_secs(1),
            remotes: Vec::new(),
        }
    }
}

/// One user of `leafnodes { authorization { users } }`.
#[derive(Clone, Debug, PartialEq)]
pub struct LeafUser {
    pub user: String,
    /// Plain or bcrypt.
    pub password: String,
    /// None: `$G`.
    pub account: Option<String>,
}

/// One entry of `leafnodes { remotes }`: a hub to dial.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Remote {
    /// `nats://[user:pass@]host:port` (or `tls://`), tried in turn.
    pub urls: Vec<String>,
    /// The local account the connection carries; None: `$G`.
    pub account: Option<String>,
    /// A `.creds` file: its user JWT is sent, and the hub's nonce signed with its seed.
    pub credentials: Option<String>,
    /// `tls { ca_file [cert_file key_file] timeout }`: the hub is dialled over TLS (also
    /// when its INFO asks for TLS, or the URL is `tls://`; then with the system's roots).
    pub tls: Option<Tls>,
}

/// Interest on a leaf connection: subject and queue (the account is the connection's).
pub type LeafKey = (Box<[u8]>, Option<Box<[u8]>>);

/// A leaf connection's own state, beside what it shares with a route.
#[derive(Default)]
pub struct Link {
    /// The other side is our hub, and we are its leaf (a spoke): we dialled it (or an
    /// accepted leaf said it is the hub).
    pub spoke: Cell<bool>,
    /// The remote this connection was dialled for (index in `remotes`).
    pub remote: Option<usize>,
    /// What the other side was last told of our interest: (subject, queue) → 1 for plain
    /// interest, the member count for a queue group (nats-server's `smap`).
    pub announced: RefCell<HashMap<LeafKey, u32, ahash::RandomState>>,
    /// The nonce of the INFO sent to (or received from) the other side.
    pub nonce: RefCell<String>,
    /// The other side's server name, for logs and `/leafz`.
    pub remote_name: RefCell<String>,
    /// The other side's loop-detection subject, once seen (`$LDS.…`).
    pub loop_detected: Cell<bool>,
}

/// Leaf nodes as core zero sees them.
pub struct Leafs {
    pub opts: LeafNodes,
    /// Where the leaf-node port listens, if it does.
    pub listen: Option<SocketAddr>,
    /// The leaf-node port's TLS: accepted leafs shake hands after our INFO.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections past their handshake, both ways.
    pub conns: RefCell<Vec<Rc<Route>>>,
    /// Each account's loop-detection subject (`$LDS.<random>`), made when first needed: a
    /// leaf that is told it back by a hub has looped to itself.
    lds: RefCell<HashMap<u32, String>>,
    /// Interest changed since the leafs were last told.
    pub dirty: RefCell<Vec<super::route::SubKey>>,
    /// The leaf-node URLs each remote's hub told of (INFO `leafnode_urls`: the other
    /// servers of its cluster), dialled too when the configured ones fail.
    pub discovered: RefCell<HashMap<usize, Vec<RouteUrl>>>,
}

/// The leaf-node port, bound before the executors start, and its TLS.
#[derive(Clone)]
pub struct LeafListener {
    pub listener: Arc<TcpListener>,
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The dial timeout (nats-server's default) and the pause after a loop was detected.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
const LOOP_DELAY: Duration = Duration::from_secs(30);

/// How long a dialler that found a loop waits: [`LOOP_DELAY`] and 1-5 s more, at random.
/// Two servers that each dropped a different link of the same loop would otherwise dial
/// again at the same moment, every 30s, and form both links at once again. One after the
/// other, each round may still end with no link (which link a server drops depends on the
/// order the subscriptions arrive in, nats-server's too), but not in lockstep.
fn loop_delay() -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = ahash::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    LOOP_DELAY + Duration::from_millis(1000 + h.finish() % 4000)
}

/// Bind the leaf-node port of `opts`, if it has one. Certificates are read first (the
/// remotes' too): a bad TLS setup stops the start.
pub fn bind(opts: &super::Options) -> Result<Option<LeafListener>, super::StartError> {
    let Some(l) = opts.leafnodes.as_ref() else { return Ok(None) };
    for r in &l.remotes {
        if let Some(t) = &r.tls {
            super::tls::leaf_client_config(t).map_err(|e| super::StartError::Tls(format!("leafnode remote: {e}")))?;
        }
    }
    let Some(port) = l.port else { return Ok(None) };
    let tls = match &l.tls {
        Some(t) => Some(super::tls::server_config(t).map_err(|e| super::StartError::Tls(format!("leafnodes: {e}")))?),
        None => None,
    };
    let (listener, addr) = super::listener::bind(&l.host, port)?;
    Ok(Some(LeafListener { listener, addr, tls }))
}

impl Leafs {
    /// The loop-detection subject of account `acc`.
    pub fn lds(&self, acc: u32) -> String {
        self.lds.borrow_mut().entry(acc).or_insert_with(|| format!("$LDS.{}", crate::client::nuid::next())).clone()
    }

    /// The leaf-node URL this server is reached at (INFO `leafnode_urls`), none with
    /// `no_advertise`.
    pub fn urls(&self) -> Vec<String> {
        let Some(listen) = self.listen else { return Vec::new() };
        if self.opts.no_advertise {
            return Vec::new();
        }
        if let Some((h, p)) = self.opts.advertise.as_deref().and_then(|a| crate::config::file::advertise_host_port(a, listen.port()).ok()) {
            return vec![join_host_port(&h, p)];
        }
        super::route::client_urls(&self.opts.host, listen.port())
    }
}

/// Start leaf nodes on core zero: serve the leaf-node port, dial every remote.
pub fn start(shard: &Rc<Shard>, opts: LeafNodes, listener: Option<LeafListener>) {
    let leafs = Rc::new(Leafs {
        listen: listener.as_ref().map(|l| l.addr),
        tls: listener.as_ref().and_then(|l| l.tls.clone()),
        conns: RefCell::new(Vec::new()),
        lds: RefCell::new(HashMap::new()),
        dirty: RefCell::new(Vec::new()),
        discovered: RefCell::new(HashMap::new()),
        opts,
    });
    if shard.leafs.set(leafs.clone()).is_err() {
        return;
    }
    if let Some(l) = listener {
        tracing::info!("Listening for leafnode connections on {}", l.addr);
        let running = {
            let shared = shard.shared.clone();
            move || shared.control.mode() != Mode::Stopping
        };
        let s = shard.clone();
        glommio::spawn_local(super::listener::accept_loop(l.listener, running, move |stream| {
            glommio::spawn_local(conn::serve(s.clone(), stream, None)).detach();
        }))
        .detach();
    }
    for i in 0..leafs.opts.remotes.len() {
        glommio::spawn_local(solicit(shard.clone(), i)).detach();
    }
}

/// Keep remote `i` connected for as long as the server runs: dial its URLs in turn, serve
/// the connection until it closes, pause `reconnect` (30s after a loop), dial again.
async fn solicit(shard: Rc<Shard>, i: usize) {
    let Some(leafs) = shard.leafs.get().cloned() else { return };
    let remote = &leafs.opts.remotes[i];
    let urls: Vec<RouteUrl> = remote.urls.iter().filter_map(|u| parse_route_url(u).ok()).collect();
    if urls.is_empty() {
        return;
    }
    let mut attempts: u64 = 0;
    let mut next = 0;
    while shard.shared.control.mode() == Mode::Running {
        // The configured URLs first, then those the hub told of.
        let mut all = urls.clone();
        for u in leafs.discovered.borrow().get(&i).into_iter().flatten() {
            if !all.iter().any(|a| a.host == u.host && a.port == u.port) {
                all.push(u.clone());
            }
        }
        let url = all[next % all.len()].clone();
        next += 1;
        let hp = join_host_port(&url.host, url.port);
        let addr = (url.host.as_str(), url.port).to_socket_addrs().ok().and_then(|mut a| a.next());
        let res = match addr {
            Some(a) => glommio::net::TcpStream::connect_timeout(a, DIAL_TIMEOUT).await.map_err(|e| e.to_string()),
            None => Err(format!("cannot resolve {hp}")),
        };
        let mut delay = leafs.opts.reconnect;
        match res {
            Ok(tcp) => {
                attempts = 0;
                tracing::debug!("Connected as leafnode to remote server on {hp:?}");
                if conn::serve(shard.clone(), tcp, Some((i, url))).await {
                    delay = loop_delay();
                }
            }
            Err(e) => {
                attempts += 1;
                // As nats-server: the first failure and then one in a while are errors.
                if attempts == 1 || attempts % 3600 == 0 {
                    tracing::error!("Error trying to connect as leafnode to remote server {hp:?} (attempt {attempts}): {e}");
                } else {
                    tracing::debug!("Error trying to connect as leafnode to remote server {hp:?} (attempt {attempts}): {e}");
                }
            }
        }
        glommio::timer::sleep(delay).await;
    }
}

/// Whether a reloaded `leafnodes` block is the one the server started with (a port picked
/// at start, `-1`, counts as the same): leaf nodes are set up once, a change needs a
/// restart.
pub fn unchanged(old: Option<&LeafNodes>, new: Option<&LeafNodes>) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => {
            let port = if n.port == Some(0) { o.port } else { n.port };
            *o == LeafNodes { port, ..n.clone() }
        }
        (o, n) => o.is_none() && n.is_none(),
    }
}

/// Whether a message that came from `from` (a connection's kind and cid, and whether it
/// may reach routes) goes to leaf or route connection `to`. nats-server 2.9's rules:
/// nothing goes back where it came from; routes get what clients and our own leafs sent;
/// a leaf connection to our hub gets what clients and other leafs sent, one to a leaf of
/// ours also what came over a route.
pub fn forwards(from_kind: Kind, from_cid: u64, to_routes: bool, to: &Route) -> bool {
    if to.client.state.get() != State::Open {
        return false;
    }
    match &to.leaf {
        None => to_routes,
        Some(l) => {
            to.client.cid != from_cid
                && match from_kind {
                    Kind::Route => !l.spoke.get(),
                    Kind::Leaf => true,
                    Kind::Client => to_routes,
                }
        }
    }
}

impl Shard {
    /// The leaf connections past their handshake (core zero only).
    pub fn leaf_conns(&self) -> Vec<Rc<Route>> {
        self.leafs.get().map(|l| l.conns.borrow().clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use super::{forwards, Link};
    use crate::server::client::{Client, Kind};
    use crate::server::route::Route;

    fn conn(cid: u64, leaf: Option<bool>) -> Rc<Route> {
        let mut c = Client::new(cid, -1, None, 1 << 20);
        c.kind = if leaf.is_some() { Kind::Leaf } else { Kind::Route };
        let leaf = leaf.map(|spoke| Link { spoke: Cell::new(spoke), ..Default::default() });
        Rc::new(Route { client: Rc::new(c), state: RefCell::new(Default::default()), subs: Default::default(), leaf })
    }

    /// nats-server 2.9's rules, one row per origin: whether a route, our hub (a connection we
    /// dialled: spoke) and a leaf of ours get the message.
    #[test]
    fn forwarding_rules() {
        let (route, hub, leaf, other_leaf) = (conn(1, None), conn(2, Some(true)), conn(3, Some(false)), conn(4, Some(false)));
        let table: [(&str, Kind, u64, bool, [bool; 4]); 6] = [
            ("a client", Kind::Client, 10, true, [true, true, true, true]),
            ("a stream import", Kind::Client, 10, false, [false, false, false, false]),
            ("a route", Kind::Route, 1, false, [false, false, true, true]),
            ("our hub", Kind::Leaf, 2, false, [false, false, true, true]),
            ("a leaf of ours", Kind::Leaf, 3, true, [true, true, false, true]),
            ("another leaf of ours", Kind::Leaf, 4, true, [true, true, true, false]),
        ];
        for (what, kind, cid, to_routes, want) in table {
            let got = [&route, &hub, &leaf, &other_leaf].map(|to| forwards(kind, cid, to_routes, to));
            assert_eq!(got, want, "from {what}: [route, hub, leaf, other leaf]");
        }
    }
}
