//! One route connection: the handshake (both sides send INFO at once, the dialling side
//! CONNECT first), then interest and messages both ways until it closes; then the cluster
//! forgets what the peer announced, and a dialled route is dialled again.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;

use super::{dial, join_host_port, Cluster, Route, RouteState};
use crate::config::file::{parse_route_url, RouteUrl};
use crate::net::{ReadBuf, Transport};
use crate::protocol::info::{RouteConnect, RouteInfo};
use crate::protocol::{Op, Parser, Role};
use crate::server::client::{self, CloseReason, Client, Kind, State, Stream};
use crate::server::monitor::fmt::now_ns;
use crate::server::shard::{Mode, Shard};

/// The largest message a route may carry: peers enforce max_payload on their clients, not
/// on routes, so only a bound against a broken peer.
const ROUTE_MAX_PAYLOAD: usize = 64 << 20;
const READ_BUF_MIN: usize = 4096;
const READ_BUF_MAX: usize = 256 * 1024;

/// Serve a route connection until it closes: accepted (`solicit` None) or dialled to `url`
/// (`explicit`: a configured route).
pub async fn serve(shard: Rc<Shard>, tcp: TcpStream, solicit: Option<(RouteUrl, bool)>) {
    use std::os::unix::io::AsRawFd;
    let Some(cluster) = shard.cluster.get().cloned() else { return };
    let opts = shard.opts();
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(opts.write_deadline));
    let (fd, addr) = (tcp.as_raw_fd(), tcp.peer_addr().ok());
    let mut c = Client::new(shard.next_cid(), fd, addr, opts.max_pending);
    c.kind = Kind::Route;
    let solicited = solicit.is_some();
    let (url, explicit) = match solicit {
        Some((u, e)) => (Some(u), e),
        None => (None, false),
    };
    let route = Rc::new(Route {
        client: Rc::new(c),
        state: RefCell::new(RouteState { solicited, url, explicit, ..Default::default() }),
        subs: Default::default(),
        leaf: None,
    });
    let client = route.client.clone();
    cluster.pending.borrow_mut().push(route.clone());
    tracing::info!(cid = client.cid, ?addr, "Route connection created");
    // With TLS, the handshake comes first, before either side says anything.
    let transport = match &cluster.tls {
        None => Ok(Transport::Plain(tcp)),
        Some(tls) if !solicited => crate::server::tls::accept(tls.server.clone(), tcp, tls.timeout).await,
        Some(tls) => {
            let host = route.state.borrow().url.as_ref().map(|u| u.host.clone()).unwrap_or_default();
            let handshake = async { crate::client::tls::upgrade(tls.client.clone(), &host, tcp).await.map_err(|e| e.to_string()) };
            futures_lite::future::or(handshake, async {
                glommio::timer::sleep(tls.timeout).await;
                Err("TLS handshake timeout".to_string())
            })
            .await
        }
    };
    let stream = match transport {
        Ok(t) => {
            *client.tls.borrow_mut() = t.tls_info();
            Stream::new(t)
        }
        Err(e) => {
            tracing::error!(cid = client.cid, ?addr, "TLS route handshake error: {e}");
            client.close_reason.set(Some(CloseReason::TlsHandshakeError));
            client.state.set(State::Closed);
            closed(&shard, &cluster, &route);
            return;
        }
    };
    if solicited {
        let (user, pass) = route.state.borrow().url.as_ref().map(|u| (u.user.clone(), u.password.clone())).unwrap_or_default();
        let connect = RouteConnect {
            echo: true,
            user,
            pass,
            tls_required: cluster.tls.is_some(),
            headers: true,
            name: shard.shared.info.server_id.clone(),
            cluster: cluster.name.borrow().clone(),
            dynamic: cluster.dynamic.get(),
            lnoc: true,
            ..Default::default()
        };
        client.send(format!("CONNECT {}\r\n", serde_json::to_string(&connect).unwrap_or_default()).as_bytes());
    }
    let mut info = cluster.info(&shard);
    info.nonce = crate::server::auth::new_nonce();
    client.send(info_line(&info).as_bytes());
    // An accepted route must log in first when the cluster has credentials.
    let auth_timer = (!solicited && cluster.opts.user.is_some()).then(|| {
        let timeout = cluster.opts.auth_timeout.unwrap_or(Duration::from_secs(2));
        glommio::spawn_local(auth_timeout(client.clone(), timeout))
    });
    if !solicited && cluster.opts.user.is_none() {
        client.authorized.set(true);
    }
    if solicited {
        client.authorized.set(true);
    }
    let pinger = glommio::spawn_local(client::pinger(shard.clone(), client.clone()));
    let writer_task = {
        let (shard, client, stream) = (shard.clone(), client.clone(), stream.clone());
        glommio::spawn_local(async move { client::writer(&shard, &client, &stream).await })
    };
    reader(&shard, &cluster, &route, &stream).await;
    writer_task.await;
    pinger.cancel().await;
    if let Some(t) = auth_timer {
        t.cancel().await;
    }
    closed(&shard, &cluster, &route);
}

/// `INFO {json} \r\n`, as nats-server writes it.
fn info_line(info: &RouteInfo) -> String {
    format!("INFO {} \r\n", serde_json::to_string(info).unwrap_or_default())
}

async fn auth_timeout(client: Rc<Client>, timeout: Duration) {
    glommio::timer::sleep(timeout).await;
    if !client.authorized.get() && client.state.get() == State::Open {
        tracing::error!(cid = client.cid, "Authentication Timeout");
        client.send_err("Authentication Timeout");
        client.drain_and_close(CloseReason::AuthenticationTimeout);
    }
}

/// What a server-to-server connection does with each op it reads (see [`read_loop`]).
pub(crate) trait Ops {
    /// Handle one op; an error closes the connection (after what is queued is sent).
    async fn op(&self, op: Op<'_>) -> Result<(), CloseReason>;
}

/// Read a route or leaf connection until it closes: parse what comes (`parser` set for the
/// connection's role), hand each op to `ops`, and end each pass as a client's reader does.
/// `what` names the connection in the log ("Route", "Leafnode").
pub(crate) async fn read_loop(shard: &Rc<Shard>, client: &Client, stream: &Stream, mut parser: Parser, what: &str, ops: &impl Ops) {
    let mut buf = ReadBuf::new(READ_BUF_MIN, READ_BUF_MAX, &[]);
    loop {
        if client.state.get() != State::Open {
            return;
        }
        match buf.read_from(stream, parser.needed()).await {
            Ok(0) | Err(_) => {
                client.abort(CloseReason::ClientClosed);
                return;
            }
            Ok(_) => {}
        }
        client.last_activity.set(now_ns());
        let mut used_all = 0;
        loop {
            match parser.parse(&buf.pending()[used_all..]) {
                Ok(Some((op, used))) => {
                    used_all += used;
                    // Keep-alives are the same on every server-to-server connection.
                    let res = match op {
                        Op::Ping => {
                            client.send(b"PONG\r\n");
                            Ok(())
                        }
                        Op::Pong => {
                            client.pings_out.set(0);
                            client.pong_received();
                            Ok(())
                        }
                        Op::Ok => Ok(()),
                        op => ops.op(op).await,
                    };
                    if let Err(reason) = res {
                        client.drain_and_close(reason);
                        return;
                    }
                    if client.state.get() != State::Open {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(cid = client.cid, "{what} parser error: {e}");
                    if let Some(line) = e.err_line() {
                        client.send(line);
                    }
                    client.drain_and_close(CloseReason::ParseError);
                    return;
                }
            }
        }
        buf.consume(used_all);
        shard.end_of_pass(client).await;
        futures_lite::future::yield_now().await;
    }
}

/// A route's ops: messages straight to routing once the route is registered.
struct RouteOps<'a> {
    shard: &'a Rc<Shard>,
    cluster: &'a Rc<Cluster>,
    route: &'a Rc<Route>,
}

impl Ops for RouteOps<'_> {
    async fn op(&self, op: Op<'_>) -> Result<(), CloseReason> {
        match op {
            Op::Routed(m) if self.route.state.borrow().registered => {
                self.shard.route_message(self.route, &m);
                Ok(())
            }
            op => handle_op(self.shard, self.cluster, self.route, op).await,
        }
    }
}

async fn reader(shard: &Rc<Shard>, cluster: &Rc<Cluster>, route: &Rc<Route>, stream: &Stream) {
    let mut parser = Parser::new(Role::Route, shard.opts().max_control_line.max(4096), ROUTE_MAX_PAYLOAD);
    parser.set_headers(true);
    read_loop(shard, &route.client, stream, parser, "Route", &RouteOps { shard, cluster, route }).await;
}

async fn handle_op(shard: &Rc<Shard>, cluster: &Rc<Cluster>, route: &Rc<Route>, op: Op<'_>) -> Result<(), CloseReason> {
    let client = &route.client;
    if !client.authorized.get() && !matches!(op, Op::Connect(_)) {
        client.send_err("Authorization Violation");
        return Err(CloseReason::AuthenticationViolation);
    }
    let registered = route.state.borrow().registered;
    match op {
        Op::Connect(json) => on_connect(shard, cluster, route, json).await?,
        Op::Info(json) => on_info(shard, cluster, route, json)?,
        Op::RouteSub { account, subject, queue, weight } if registered => shard.route_sub(route, account, subject, queue, weight),
        Op::RouteUnsub { account, subject, queue } if registered => shard.route_unsub(route, account, subject, queue),
        // Before the peer's INFO registered the route: nothing to keep it in yet.
        Op::RouteSub { .. } | Op::RouteUnsub { .. } | Op::Routed(_) => {}
        // Answered by `read_loop`.
        Op::Ping | Op::Pong | Op::Ok => {}
        Op::Err(text) => {
            tracing::error!(cid = client.cid, "Route Error {}", String::from_utf8_lossy(text));
            return Err(CloseReason::ParseError);
        }
        Op::Pub(_) | Op::Sub { .. } | Op::Unsub { .. } | Op::Msg(_) => return Err(CloseReason::ParseError),
    }
    Ok(())
}

/// CONNECT from the dialling side: check it is a route of this cluster, with the
/// cluster's credentials.
async fn on_connect(shard: &Shard, cluster: &Cluster, route: &Route, json: &[u8]) -> Result<(), CloseReason> {
    let client = &route.client;
    let Ok(c) = serde_json::from_slice::<RouteConnect>(json) else {
        tracing::error!(cid = client.cid, "Route sent an unreadable CONNECT");
        return Err(CloseReason::ProtocolViolation);
    };
    if !c.lang.is_empty() {
        tracing::error!(cid = client.cid, "attempted to connect to route port");
        client.send_err("attempted to connect to route port");
        return Err(CloseReason::WrongPort);
    }
    if !c.gateway.is_empty() {
        let text = format!("Rejecting connection from gateway {:?} on the Route port", c.gateway);
        tracing::error!(cid = client.cid, "{text}");
        client.send_err(&text);
        return Err(CloseReason::WrongPort);
    }
    if let (Some(user), Some(pass)) = (&cluster.opts.user, &cluster.opts.password) {
        let ok = crate::server::auth::route_credentials_match(user, pass, c.user.as_deref().unwrap_or(""), c.pass.as_deref().unwrap_or("")).await;
        if !ok {
            tracing::error!(cid = client.cid, "Authorization Violation");
            client.send_err("Authorization Violation");
            return Err(CloseReason::AuthenticationViolation);
        }
    }
    if !agree_on_name(shard, cluster, &c.cluster, c.dynamic) {
        let text = format!("Rejecting connection, cluster name {:?} does not match {:?}", c.cluster, cluster.name.borrow());
        tracing::error!(cid = client.cid, "{text}");
        client.send_err(&text);
        return Err(CloseReason::ClusterNameConflict);
    }
    client.authorized.set(true);
    client.headers.set(c.headers);
    route.state.borrow_mut().remote_id = c.name;
    Ok(())
}

/// Whether a peer's cluster name agrees with ours. A made-up name of ours gives way to a
/// configured one, or to a bigger made-up one (so both sides settle on one name); then the
/// other routes, formed under the old name, are closed to form again.
fn agree_on_name(shard: &Shard, cluster: &Cluster, theirs: &str, dynamic: bool) -> bool {
    if theirs.is_empty() || *cluster.name.borrow() == theirs {
        return true;
    }
    if cluster.dynamic.get() && (!dynamic || cluster.name.borrow().as_str() < theirs) {
        tracing::info!("Cluster name updated to {theirs}");
        *cluster.name.borrow_mut() = theirs.to_string();
        cluster.dynamic.set(dynamic);
        for r in cluster.routes.borrow().iter() {
            r.client.drain_and_close(CloseReason::ClusterNameConflict);
        }
        let _ = shard;
        return true;
    }
    false
}

/// INFO from the peer: the first registers the route; later ones tell of other servers
/// (gossip: dial them) or of the peer going into lame duck mode.
fn on_info(shard: &Rc<Shard>, cluster: &Rc<Cluster>, route: &Rc<Route>, json: &[u8]) -> Result<(), CloseReason> {
    let client = &route.client;
    let Ok(info) = serde_json::from_slice::<RouteInfo>(json) else {
        tracing::error!(cid = client.cid, "Route sent an unreadable INFO");
        return Err(CloseReason::ProtocolViolation);
    };
    if let Some(acc) = &info.route_account {
        // A 2.10+ peer asking for a route of one account: natsu has one route per peer.
        let text = format!("Not possible to have a dedicated route for account {acc:?} between those servers");
        tracing::error!(cid = client.cid, "{text}");
        client.send_err(&text);
        route.state.borrow_mut().no_reconnect = true;
        return Err(CloseReason::ProtocolViolation);
    }
    if info.gateway.is_some() {
        tracing::error!(cid = client.cid, "Received information about gateway {:?}, but gateway is not configured", info.gateway);
        return Ok(());
    }
    let (registered, remote_id) = {
        let s = route.state.borrow();
        (s.registered, s.remote_id.clone())
    };
    if registered {
        if info.server_id != remote_id {
            implicit_route(shard, cluster, &info);
        } else if info.ldm {
            // The peer is going away: its clients must not be sent to it any more.
            let mut s = route.state.borrow_mut();
            s.connect_urls.clear();
            s.ws_connect_urls.clear();
            drop(s);
            shard.publish_cluster_urls();
        }
        return Ok(());
    }
    let me = &shard.shared.info;
    if info.server_id == me.server_id {
        tracing::debug!(cid = client.cid, "Detected route to self, ignoring");
        route.state.borrow_mut().no_reconnect = true;
        return Err(CloseReason::DuplicateRoute);
    }
    if !agree_on_name(shard, cluster, &info.cluster, info.dynamic) {
        tracing::error!(cid = client.cid, "Rejecting route, cluster name {:?} does not match {:?}", info.cluster, cluster.name.borrow());
        return Err(CloseReason::ClusterNameConflict);
    }
    if !route.state.borrow().solicited && !info.server_name.is_empty() && info.server_name == me.server_name {
        tracing::error!(cid = client.cid, "Remote server has a duplicate name: {:?}", info.server_name);
        return Err(CloseReason::DuplicateServerName);
    }
    client.headers.set(info.headers);
    {
        let mut s = route.state.borrow_mut();
        s.remote_id = info.server_id.clone();
        s.remote_name = info.server_name.clone();
        s.port = info.port;
        s.connect_urls = info.connect_urls.clone();
        s.ws_connect_urls = info.ws_connect_urls.clone();
        if s.url.is_none() {
            s.url = parse_route_url(&format!("nats-route://{}", join_host_port(&info.host, info.port))).ok();
        }
    }
    if let Some(existing) = cluster.route_to(&info.server_id) {
        // Both servers dialled each other: keep the first, and let it be re-dialled when it
        // closes, as this one would have been.
        let s = route.state.borrow();
        let mut e = existing.state.borrow_mut();
        if s.solicited && !e.solicited {
            e.url = s.url.clone();
            e.explicit = s.explicit;
        }
        e.retry = true;
        tracing::debug!(cid = client.cid, "Detected duplicate remote route {:?}", info.server_id);
        return Err(CloseReason::DuplicateRoute);
    }
    cluster.pending.borrow_mut().retain(|r| !Rc::ptr_eq(r, route));
    // The routes already here are told what changed first: from now on all are told alike.
    shard.flush_route_interest();
    cluster.routes.borrow_mut().push(route.clone());
    cluster.seen_routes.set(true);
    route.state.borrow_mut().registered = true;
    tracing::debug!(cid = client.cid, "Registering remote route {:?}", info.server_id);
    shard.send_interest(route);
    // A first PING at once times the route's round trip.
    client.pings_out.set(client.pings_out.get() + 1);
    client.ping_sent.set(now_ns());
    client.send(b"PING\r\n");
    // Tell the servers we already know of the new one, so they dial it.
    let others: Vec<Rc<Route>> = cluster.routes.borrow().iter().filter(|r| !Rc::ptr_eq(r, route)).cloned().collect();
    if !others.is_empty() {
        let mut fwd = info.clone();
        if fwd.ip.is_empty() {
            let ip = client.addr.map(|a| a.ip().to_string()).unwrap_or_else(|| info.host.clone());
            fwd.ip = format!("nats-route://{}/", join_host_port(&ip, info.port));
        }
        fwd.nonce = None;
        let line = info_line(&fwd);
        for r in others {
            r.client.send(line.as_bytes());
        }
    }
    shard.publish_cluster_urls();
    Ok(())
}

/// A peer told of another server: dial it, unless already routed to, being dialled by
/// configuration, or ourselves.
fn implicit_route(shard: &Rc<Shard>, cluster: &Cluster, info: &RouteInfo) {
    if info.server_id == shard.shared.info.server_id || cluster.route_to(&info.server_id).is_some() {
        return;
    }
    if cluster.pending.borrow().iter().any(|r| r.state.borrow().remote_id == info.server_id) {
        return;
    }
    let configured = cluster.explicit.iter().any(|u| u.host.eq_ignore_ascii_case(&info.host) && u.port == info.port);
    if configured {
        return;
    }
    let Ok(mut url) = parse_route_url(info.ip.trim_end_matches('/')) else {
        tracing::error!("Error parsing URL from INFO: {:?}", info.ip);
        return;
    };
    if info.auth_required {
        url.user = cluster.opts.user.clone();
        url.password = cluster.opts.password.clone();
    }
    glommio::spawn_local(dial(shard.clone(), url, false, Duration::ZERO)).detach();
}

/// The route closed: forget it and what it announced; dial it again if it was dialled.
fn closed(shard: &Rc<Shard>, cluster: &Rc<Cluster>, route: &Rc<Route>) {
    cluster.pending.borrow_mut().retain(|r| !Rc::ptr_eq(r, route));
    let was = {
        let mut routes = cluster.routes.borrow_mut();
        let before = routes.len();
        routes.retain(|r| !Rc::ptr_eq(r, route));
        before != routes.len()
    };
    if was {
        shard.route_gone(route);
        shard.publish_cluster_urls();
    }
    let s = route.state.borrow();
    tracing::info!(cid = route.client.cid, remote = %s.remote_id, reason = ?route.client.close_reason.get(), "Route connection closed");
    if s.no_reconnect || shard.shared.control.mode() != Mode::Running {
        return;
    }
    let Some(url) = s.url.clone() else { return };
    if !(s.solicited || s.retry) {
        return;
    }
    if !s.remote_id.is_empty() && (cluster.route_to(&s.remote_id).is_some() || s.remote_id == shard.shared.info.server_id) {
        return;
    }
    // A little randomness, so two servers that closed each other's duplicates do not
    // dial at the same moment again.
    let jitter = Duration::from_millis(now_ns() % 100);
    let delay = if s.explicit { Duration::from_secs(1) + jitter } else { jitter };
    glommio::spawn_local(dial(shard.clone(), url, s.explicit, delay)).detach();
}
