//! One leaf-node connection, as nats-server 2.9 runs one.
//!
//! Dialled (we are the leaf): the hub speaks first with an INFO that has `client_id` and
//! `leafnode_urls` (without them this is not a leaf-node port); we answer CONNECT (user and
//! password from the URL, or a `.creds` JWT and the nonce signed), and once the hub says
//! the CONNECT is taken (an INFO with `connect_info`, or at once from a hub that does not
//! announce it) send our interest and its loop-detection subject.
//!
//! Accepted (we are the hub): INFO first (with a nonce), then the leaf's CONNECT is checked
//! against `leafnodes { authorization }` (or, without one, the clients' users) and the
//! connection bound to the user's account; an INFO with `connect_info` and `remote_account`
//! says so, then our interest follows.
//!
//! Then interest (`LS+`/`LS-`) and messages (`LMSG`, `HMSG`) both ways until it closes.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;

use super::{Leafs, Link, LOOP_DELAY};
use crate::config::file::RouteUrl;
use crate::net::Transport;
use crate::protocol::info::{Connect, LeafConnect, LeafInfo};
use crate::protocol::{Op, Parser, Role};
use crate::server::client::{self, Client, CloseReason, Kind, State, Stream};
use crate::server::monitor::fmt::now_ns;
use crate::server::route::conn::{read_loop, Ops};
use crate::server::route::Route;
use crate::server::shard::{Mode, Shard};

/// The largest message a leaf connection may carry: the other server enforces max_payload
/// on its clients; this only bounds a broken peer.
const LEAF_MAX_PAYLOAD: usize = 64 << 20;
/// How long an accepted leaf has to send CONNECT, and a dialled hub its INFO, by default.
const AUTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Serve a leaf connection until it closes: accepted (`solicit` None) or dialled for remote
/// `i` at `url`. True when it closed because a loop was detected (dial again later).
pub async fn serve(shard: Rc<Shard>, tcp: TcpStream, solicit: Option<(usize, RouteUrl)>) -> bool {
    use std::os::unix::io::AsRawFd;
    let Some(leafs) = shard.leafs.get().cloned() else { return false };
    let opts = shard.opts();
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(opts.write_deadline));
    let (fd, addr) = (tcp.as_raw_fd(), tcp.peer_addr().ok());
    let mut c = Client::new(shard.next_cid(), fd, addr, opts.max_pending);
    c.kind = Kind::Leaf;
    let (remote, url) = match solicit {
        Some((i, u)) => (Some(i), Some(u)),
        None => (None, None),
    };
    if let Some(i) = remote {
        let name = leafs.opts.remotes[i].account.as_deref().unwrap_or("$G");
        match shard.shared.accounts.id(name) {
            Some(id) => c.account.set(id),
            None => {
                tracing::error!("Unable to lookup account {name} for solicited leafnode connection");
                return false;
            }
        }
    }
    let link = Link { spoke: std::cell::Cell::new(remote.is_some()), remote, ..Default::default() };
    let route = Rc::new(Route { client: Rc::new(c), state: RefCell::new(Default::default()), subs: Default::default(), leaf: Some(link) });
    let client = route.client.clone();
    tracing::info!(cid = client.cid, ?addr, "Leafnode connection created for account: {}", shard.account_name(&client));
    let Some(link) = route.leaf.as_ref() else { return false };
    // The hub's INFO goes in the clear; then, with TLS, the handshake.
    let opened = match remote {
        None => {
            let mut info = hub_info(&shard, &leafs, client.cid);
            info.nonce = crate::server::auth::new_nonce();
            info.tls_required = leafs.tls.is_some();
            *link.nonce.borrow_mut() = info.nonce.clone().unwrap_or_default();
            match &leafs.tls {
                None => {
                    client.send(info_line(&info).as_bytes());
                    Ok((Transport::Plain(tcp), None))
                }
                Some(config) => accept_tls(&leafs, config.clone(), tcp, &info).await.map(|t| (t, None)),
            }
        }
        Some(i) => dial_tls(&leafs.opts.remotes[i], url.as_ref(), tcp).await.map(|(t, info)| (t, Some(info))),
    };
    let (transport, first_info) = match opened {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(cid = client.cid, ?addr, "Leafnode handshake error: {e}");
            client.close_reason.set(Some(CloseReason::TlsHandshakeError));
            client.state.set(State::Closed);
            closed(&shard, &leafs, &route);
            return false;
        }
    };
    *client.tls.borrow_mut() = transport.tls_info();
    let stream = Stream::new(transport);
    if let Some(json) = first_info {
        if let Err(reason) = on_info(&shard, &leafs, &route, url.as_ref(), &json) {
            client.drain_and_close(reason);
        }
    }
    // The other side has this long to finish its part of the handshake.
    let timeout = leafs.opts.auth_timeout.unwrap_or(AUTH_TIMEOUT);
    let handshake_timer = glommio::spawn_local(handshake_timeout(route.clone(), timeout));
    let pinger = glommio::spawn_local(client::pinger(shard.clone(), client.clone()));
    let writer_task = {
        let (shard, client, stream) = (shard.clone(), client.clone(), stream.clone());
        glommio::spawn_local(async move { client::writer(&shard, &client, &stream).await })
    };
    let looped = reader(&shard, &leafs, &route, url.as_ref(), &stream).await;
    writer_task.await;
    pinger.cancel().await;
    handshake_timer.cancel().await;
    closed(&shard, &leafs, &route);
    looped
}

/// The server side of a TLS leaf connection: our INFO (sent as it is, before the
/// handshake), then the handshake within the `tls { timeout }`.
async fn accept_tls(leafs: &Leafs, config: std::sync::Arc<rustls::ServerConfig>, mut tcp: TcpStream, info: &LeafInfo) -> Result<Transport, String> {
    use futures_lite::AsyncWriteExt;
    tcp.write_all(info_line(info).as_bytes()).await.map_err(|e| e.to_string())?;
    let timeout = leafs.opts.tls.as_ref().map_or(AUTH_TIMEOUT, |t| t.timeout);
    crate::server::tls::accept(config, tcp, timeout).await
}

/// The dialling side: read the hub's INFO in the clear, then shake hands over TLS when the
/// remote has a `tls` block, the URL is `tls://` or the hub asks for it. Returns the
/// transport and the INFO's JSON.
async fn dial_tls(remote: &super::Remote, url: Option<&RouteUrl>, mut tcp: TcpStream) -> Result<(Transport, Vec<u8>), String> {
    use futures_lite::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read_info = async {
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                return Ok(end);
            }
            if buf.len() > 64 * 1024 {
                return Err("no INFO from the remote".to_string());
            }
            match tcp.read(&mut chunk).await {
                Ok(0) => return Err("connection closed before the remote's INFO".to_string()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let end = futures_lite::future::or(read_info, async {
        glommio::timer::sleep(AUTH_TIMEOUT).await;
        Err("timeout waiting for the remote's INFO".to_string())
    })
    .await?;
    let line = &buf[..end];
    let Some(json) = line.strip_prefix(b"INFO").map(|j| String::from_utf8_lossy(j).trim().as_bytes().to_vec()) else {
        return Err(format!("expected INFO, got {:?}", String::from_utf8_lossy(line)));
    };
    if buf.len() > end + 2 {
        return Err("the remote sent more than its INFO before our CONNECT".to_string());
    }
    let tls_required = serde_json::from_slice::<LeafInfo>(&json).is_ok_and(|i| i.tls_required);
    let scheme_tls = url.is_some_and(|u| u.scheme.eq_ignore_ascii_case("tls"));
    if remote.tls.is_none() && !tls_required && !scheme_tls {
        return Ok((Transport::Plain(tcp), json));
    }
    let t = remote.tls.clone().unwrap_or_default();
    let config = crate::server::tls::leaf_client_config(&t)?;
    let host = url.map(|u| u.host.clone()).unwrap_or_default();
    let handshake = async { crate::client::tls::upgrade(config, &host, tcp).await.map_err(|e| e.to_string()) };
    let transport = futures_lite::future::or(handshake, async {
        glommio::timer::sleep(t.timeout).await;
        Err("TLS handshake timeout".to_string())
    })
    .await?;
    Ok((transport, json))
}

/// `INFO {json} \r\n`, as nats-server writes it.
fn info_line(info: &LeafInfo) -> String {
    format!("INFO {} \r\n", serde_json::to_string(info).unwrap_or_default())
}

/// The INFO this server sends an accepted leaf.
fn hub_info(shard: &Shard, leafs: &Leafs, cid: u64) -> LeafInfo {
    let i = &shard.shared.info;
    let urls = leafs.urls();
    let (host, port) = match urls.first().and_then(|u| u.rsplit_once(':')) {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']').to_string(), p.parse().unwrap_or(0)),
        None => (leafs.opts.host.clone(), leafs.listen.map_or(0, |a| a.port())),
    };
    LeafInfo {
        server_id: i.server_id.clone(),
        server_name: i.server_name.clone(),
        version: i.version.clone(),
        proto: 1,
        go: i.go.clone(),
        ip: urls.first().cloned().unwrap_or_default(),
        host,
        port,
        headers: true,
        // nats-server always says so on its leaf-node port: a leaf must send CONNECT.
        auth_required: true,
        max_payload: i.max_payload,
        cluster: shard.cluster.get().map(|c| c.name.borrow().clone()).unwrap_or_default(),
        ldm: shard.shared.control.mode() == Mode::LameDuck,
        client_id: cid,
        info_on_connect: true,
        leafnode_urls: Some(urls),
        ..Default::default()
    }
}

async fn handshake_timeout(route: Rc<Route>, timeout: Duration) {
    glommio::timer::sleep(timeout).await;
    let c = &route.client;
    if !route.state.borrow().registered && c.state.get() == State::Open {
        tracing::error!(cid = c.cid, "Leafnode handshake timeout");
        if route.leaf.as_ref().is_some_and(|l| l.remote.is_none()) {
            c.send_err("Authentication Timeout");
        }
        c.drain_and_close(CloseReason::AuthenticationTimeout);
    }
}

/// Read until the connection closes; true when it closed over a loop.
async fn reader(shard: &Rc<Shard>, leafs: &Rc<Leafs>, route: &Rc<Route>, url: Option<&RouteUrl>, stream: &Stream) -> bool {
    let mut parser = Parser::new(Role::Leaf, shard.opts().max_control_line.max(4096), LEAF_MAX_PAYLOAD);
    parser.set_headers(true);
    read_loop(shard, &route.client, stream, parser, "Leafnode", &LeafOps { shard, leafs, route, url }).await;
    route.leaf.as_ref().is_some_and(|l| l.loop_detected.get())
}

struct LeafOps<'a> {
    shard: &'a Rc<Shard>,
    leafs: &'a Rc<Leafs>,
    route: &'a Rc<Route>,
    url: Option<&'a RouteUrl>,
}

impl Ops for LeafOps<'_> {
    async fn op(&self, op: Op<'_>) -> Result<(), CloseReason> {
        handle_op(self.shard, self.leafs, self.route, self.url, op).await
    }
}

async fn handle_op(shard: &Rc<Shard>, leafs: &Rc<Leafs>, route: &Rc<Route>, url: Option<&RouteUrl>, op: Op<'_>) -> Result<(), CloseReason> {
    let client = &route.client;
    let registered = route.state.borrow().registered;
    let accepted = route.leaf.as_ref().is_some_and(|l| l.remote.is_none());
    if accepted && !client.authorized.get() && !matches!(op, Op::Connect(_) | Op::Ping | Op::Pong) {
        client.send_err("Authorization Violation");
        return Err(CloseReason::AuthenticationViolation);
    }
    match op {
        Op::Connect(json) if accepted && !client.authorized.get() => on_connect(shard, leafs, route, json).await?,
        Op::Connect(_) => return Err(CloseReason::ProtocolViolation),
        Op::Info(json) => on_info(shard, leafs, route, url, json)?,
        Op::RouteSub { subject, queue, weight, .. } if registered => {
            let acc = client.account.get();
            if subject.starts_with(b"$LDS.") && leafs.lds(acc).as_bytes() == subject {
                return Err(loop_detected(shard, route, true));
            }
            shard.remote_sub(route, acc, subject, queue, weight);
        }
        Op::RouteUnsub { subject, queue, .. } if registered => shard.remote_unsub(route, client.account.get(), subject, queue),
        Op::Routed(m) if registered => shard.route_message(route, &m),
        // Before the handshake ends: nothing to keep them in yet.
        Op::RouteSub { .. } | Op::RouteUnsub { .. } | Op::Routed(_) => {}
        // Answered by `read_loop`.
        Op::Ping | Op::Pong | Op::Ok => {}
        Op::Err(text) => {
            let text = String::from_utf8_lossy(text);
            tracing::error!(cid = client.cid, "Leafnode Error {text}");
            if text.contains("Loop detected") {
                return Err(loop_detected(shard, route, false));
            }
            return Err(CloseReason::ParseError);
        }
        Op::Pub(_) | Op::Sub { .. } | Op::Unsub { .. } | Op::Msg(_) => return Err(CloseReason::ParseError),
    }
    Ok(())
}

/// A loop: this server's own loop-detection subject came back (`tell`: say so to the other
/// side), or the other side found one. A dialled connection waits 30s before trying again.
fn loop_detected(shard: &Shard, route: &Route, tell: bool) -> CloseReason {
    let name = shard.account_name(&route.client).to_string();
    let text = format!("Loop detected for leafnode account={name:?}. Delaying attempt to reconnect for {LOOP_DELAY:?}");
    if tell {
        route.client.send_err(&text);
    }
    tracing::error!(cid = route.client.cid, "{text}");
    if let Some(l) = &route.leaf {
        l.loop_detected.set(true);
    }
    CloseReason::ProtocolViolation
}

/// INFO from the hub (on a dialled connection): the first is answered with CONNECT; the
/// one that says the CONNECT was taken ends the handshake.
fn on_info(shard: &Rc<Shard>, leafs: &Rc<Leafs>, route: &Rc<Route>, url: Option<&RouteUrl>, json: &[u8]) -> Result<(), CloseReason> {
    let client = &route.client;
    let Some(link) = route.leaf.as_ref().filter(|l| l.remote.is_some()) else { return Ok(()) };
    let Ok(info) = serde_json::from_slice::<LeafInfo>(json) else {
        tracing::error!(cid = client.cid, "Leafnode sent an unreadable INFO");
        return Err(CloseReason::ProtocolViolation);
    };
    remember_urls(leafs, link, url, &info);
    if route.state.borrow().registered {
        return Ok(());
    }
    let first = link.remote_name.borrow().is_empty();
    if first {
        if info.client_id == 0 || info.leafnode_urls.is_none() {
            tracing::error!(cid = client.cid, "attempted to connect to wrong port");
            return Err(CloseReason::WrongPort);
        }
        client.headers.set(info.headers);
        *link.remote_name.borrow_mut() = if info.server_name.is_empty() { info.server_id.clone() } else { info.server_name.clone() };
        let nonce = info.nonce.clone().unwrap_or_default();
        let mut connect = LeafConnect {
            version: shard.shared.info.version.clone(),
            server_id: shard.shared.info.server_id.clone(),
            name: shard.shared.info.server_name.clone(),
            headers: true,
            cluster: shard.cluster.get().map(|c| c.name.borrow().clone()).unwrap_or_default(),
            ..Default::default()
        };
        let remote = link.remote.and_then(|i| leafs.opts.remotes.get(i));
        if let Some(path) = remote.and_then(|r| r.credentials.as_deref()) {
            match super::creds::sign(path, &nonce) {
                Ok((jwt, sig)) => (connect.jwt, connect.sig) = (Some(jwt), Some(sig)),
                Err(e) => {
                    tracing::error!(cid = client.cid, "{e}");
                    return Err(CloseReason::AuthenticationViolation);
                }
            }
        } else if let Some(u) = url {
            connect.user = u.user.clone();
            connect.pass = u.password.clone();
        }
        client.send(format!("CONNECT {}\r\n", serde_json::to_string(&connect).unwrap_or_default()).as_bytes());
        tracing::debug!(cid = client.cid, "Remote leafnode connect msg sent");
        // A hub that does not announce a second INFO takes the CONNECT as it comes.
        if !info.info_on_connect {
            register(shard, leafs, route);
        }
        return Ok(());
    }
    if info.connect_info {
        register(shard, leafs, route);
    }
    Ok(())
}

/// Keep the leaf-node URLs a hub's INFO lists (its cluster's servers), with the scheme and
/// credentials of the URL we dialled, as nats-server does: the next dial may pick them.
fn remember_urls(leafs: &Leafs, link: &Link, dialled: Option<&RouteUrl>, info: &LeafInfo) {
    let (Some(i), Some(d), Some(list)) = (link.remote, dialled, info.leafnode_urls.as_ref()) else { return };
    if list.is_empty() {
        return;
    }
    let urls: Vec<RouteUrl> = list
        .iter()
        .filter_map(|hp| {
            let (host, port) = hp.rsplit_once(':')?;
            Some(RouteUrl {
                scheme: d.scheme.clone(),
                user: d.user.clone(),
                password: d.password.clone(),
                host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
                port: port.parse().ok()?,
            })
        })
        .collect();
    leafs.discovered.borrow_mut().insert(i, urls);
}

/// CONNECT from an accepted leaf: check its credentials, bind its account, and say so.
async fn on_connect(shard: &Rc<Shard>, leafs: &Rc<Leafs>, route: &Rc<Route>, json: &[u8]) -> Result<(), CloseReason> {
    let client = &route.client;
    let Ok(c) = serde_json::from_slice::<LeafConnect>(json) else {
        tracing::error!(cid = client.cid, "Leafnode sent an unreadable CONNECT");
        return Err(CloseReason::ProtocolViolation);
    };
    if !c.lang.is_empty() {
        client.send_err("attempted to connect to leaf node port");
        tracing::error!(cid = client.cid, "attempted to connect to leaf node port");
        return Err(CloseReason::WrongPort);
    }
    if !c.gateway.is_empty() {
        let text = format!("Rejecting connection from gateway {:?} on the leafnode port", c.gateway);
        tracing::error!(cid = client.cid, "{text}");
        client.send_err(&text);
        return Err(CloseReason::WrongPort);
    }
    let ours = shard.cluster.get().map(|c| c.name.borrow().clone()).unwrap_or_default();
    if !ours.is_empty() && c.cluster == ours {
        client.send_err("remote leafnode has same cluster name");
        tracing::error!(cid = client.cid, "remote leafnode has same cluster name");
        return Err(CloseReason::ClusterNameConflict);
    }
    let Some(account) = authenticate(shard, leafs, route, &c).await else {
        tracing::error!(cid = client.cid, "Authorization Violation");
        client.send_err("Authorization Violation");
        return Err(CloseReason::AuthenticationViolation);
    };
    let Some(id) = shard.shared.accounts.id(&account) else {
        tracing::error!(cid = client.cid, "Unable to bind leafnode to account {account:?}");
        client.send_err("Authorization Violation");
        return Err(CloseReason::AuthenticationViolation);
    };
    client.account.set(id);
    client.authorized.set(true);
    client.headers.set(c.headers);
    if let Some(link) = &route.leaf {
        *link.remote_name.borrow_mut() = c.name.clone();
        // A leaf that says it is the hub makes us its spoke.
        link.spoke.set(c.is_hub);
    }
    // The same server again on the same account: its old connection is stale (nats-server
    // keeps the new one).
    let stale: Vec<Rc<Route>> = leafs
        .conns
        .borrow()
        .iter()
        .filter(|r| !c.name.is_empty() && r.client.account.get() == id && r.leaf.as_ref().is_some_and(|l| l.remote.is_none() && *l.remote_name.borrow() == c.name))
        .cloned()
        .collect();
    for old in stale {
        tracing::warn!(cid = client.cid, "Replacing connection from same server");
        old.client.send_err("Duplicate Remote LeafNode Connection");
        old.client.drain_and_close(CloseReason::DuplicateLeaf);
    }
    let mut info = hub_info(shard, leafs, client.cid);
    info.connect_info = true;
    info.remote_account = account;
    client.send(info_line(&info).as_bytes());
    register(shard, leafs, route);
    Ok(())
}

/// The account a leaf's credentials bind it to, or None to refuse it: the users of
/// `leafnodes { authorization }`, or its single user, or without either the clients' users
/// (as nats-server falls back to them).
async fn authenticate(shard: &Shard, leafs: &Leafs, route: &Route, c: &LeafConnect) -> Option<String> {
    let o = &leafs.opts;
    let (user, pass) = (c.user.as_deref().unwrap_or(""), c.pass.as_deref().unwrap_or(""));
    let bound = |a: &Option<String>| a.clone().unwrap_or_else(|| "$G".to_string());
    if !o.users.is_empty() {
        let u = o.users.iter().find(|u| u.user == user)?;
        return crate::server::auth::route_credentials_match(&u.user, &u.password, user, pass).await.then(|| bound(&u.account));
    }
    if let (Some(u), Some(p)) = (&o.user, &o.password) {
        return crate::server::auth::route_credentials_match(u, p, user, pass).await.then(|| bound(&o.account));
    }
    let opts = shard.opts();
    if !opts.auth.required() {
        return Some(bound(&o.account));
    }
    let mut top = (*opts).clone();
    // A certificate plays no part here (leaf TLS is not served).
    top.tls = None;
    let connect = Connect { user: c.user.clone(), pass: c.pass.clone(), jwt: c.jwt.clone(), sig: c.sig.clone(), ..Default::default() };
    let nonce = route.leaf.as_ref().map(|l| l.nonce.borrow().clone()).unwrap_or_default();
    let ip = route.client.addr.map(|a| a.ip());
    let p = crate::server::auth::Presented { connect: &connect, nonce: Some(&nonce), cert: None, kind: crate::server::auth::ConnType::Leaf, ip };
    crate::server::auth::authenticate(&top, &p).await.map(|id| bound(&id.account))
}

/// The handshake is done: the connection joins the server's leafs and is told our interest.
fn register(shard: &Rc<Shard>, leafs: &Rc<Leafs>, route: &Rc<Route>) {
    let client = &route.client;
    if route.state.borrow().registered || client.state.get() != State::Open {
        return;
    }
    client.authorized.set(true);
    route.state.borrow_mut().registered = true;
    // The others are told what changed first: from now on all are told alike.
    shard.flush_leaf_interest();
    leafs.conns.borrow_mut().push(route.clone());
    shard.send_leaf_interest(route);
    // A first PING at once times the connection's round trip.
    client.pings_out.set(client.pings_out.get() + 1);
    client.ping_sent.set(now_ns());
    client.send(b"PING\r\n");
    let name = route.leaf.as_ref().map(|l| l.remote_name.borrow().clone()).unwrap_or_default();
    tracing::info!(cid = client.cid, "Leafnode connection registered with {name:?} for account {}", shard.account_name(client));
}

/// The connection closed: what the other side announced goes.
fn closed(shard: &Rc<Shard>, leafs: &Rc<Leafs>, route: &Rc<Route>) {
    let was = {
        let mut conns = leafs.conns.borrow_mut();
        let before = conns.len();
        conns.retain(|r| !Rc::ptr_eq(r, route));
        before != conns.len()
    };
    if was {
        shard.route_gone(route);
    }
    tracing::info!(cid = route.client.cid, reason = ?route.client.close_reason.get(), "Leafnode connection closed");
}
