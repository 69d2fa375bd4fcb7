//! The client library when servers go away: reconnecting to the same server with the
//! publishes made meanwhile, the reconnect buffer limit, giving up, server pools, failover,
//! cluster discovery (reference nats-server nodes) and stale connections (a fake peer that
//! stops answering PINGs), and the exact bytes a client re-sends after reconnecting.
//!
//! `servers_down_at_first_connect_keep_their_reconnect_attempts` shows a known client bug
//! (initial connect attempts count against `max_reconnects`) and fails until it is fixed.
//!
//! Servers are killed and restarted from inside the test body, so each body owns its
//! servers. Waiting for a reconnect timer is the point of several tests: those waits are
//! deadline loops with a short `reconnect_wait`, never bare sleeps.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use natsu::client::{Connection, Error, Options, Status};

use common::{free_port, run_local, Server};

const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(5);
const RECONNECT_WAIT: Duration = Duration::from_millis(100);

/// What a connection's callbacks saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    /// With the kind of the error, or `None` when the user closed.
    Disconnected(Option<&'static str>),
    Reconnected,
    Closed,
    Discovered,
}

type Events = Rc<RefCell<Vec<Event>>>;

fn kind(e: &Error) -> &'static str {
    match e {
        Error::ConnectionClosed => "ConnectionClosed",
        Error::Timeout => "Timeout",
        Error::NoServers => "NoServers",
        Error::StaleConnection => "StaleConnection",
        Error::Io(_) => "Io",
        Error::Protocol(_) => "Protocol",
        Error::Server(_) => "Server",
        _ => "other",
    }
}

/// Options with a short reconnect wait and every lifecycle callback recording into `events`.
fn recording(events: &Events) -> Options {
    let (d, r, c, s) = (events.clone(), events.clone(), events.clone(), events.clone());
    Options::new()
        .reconnect_wait(RECONNECT_WAIT)
        .disconnected_callback(move |_, err| d.borrow_mut().push(Event::Disconnected(err.map(kind))))
        .reconnected_callback(move |_| r.borrow_mut().push(Event::Reconnected))
        .closed_callback(move |_| c.borrow_mut().push(Event::Closed))
        .discovered_servers_callback(move |_| s.borrow_mut().push(Event::Discovered))
}

/// Wait until `done()` holds, checking every few milliseconds; panic after `limit`.
async fn until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait for the connection to close for good, at most `limit`.
async fn closed_within(nc: &Connection, limit: Duration) {
    let closed = futures_lite::future::or(
        async {
            nc.closed().await;
            true
        },
        async {
            glommio::timer::sleep(limit).await;
            false
        },
    )
    .await;
    assert!(closed, "connection not closed within {limit:?} (status {:?})", nc.status());
}

/// Join a fake peer's thread without blocking the executor: glommio closes sockets through
/// its ring, so a blocked executor would never let the peer see the client hang up.
async fn join_peer<T>(peer: std::thread::JoinHandle<T>) -> T {
    until("the fake peer to see the client hang up", WAIT, || peer.is_finished()).await;
    peer.join().expect("fake peer panicked")
}

fn local_url(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

#[test]
fn reconnect_resubscribes_and_replays_buffered_publishes() {
    let port = free_port();
    let server = Server::start_on(port);
    run_local(LIMIT, move || async move {
        let mut server = server;
        let url = local_url(port);
        let events: Events = Rc::default();
        let nc = recording(&events).max_reconnects(-1).connect(&url).await.unwrap();
        let sub = nc.subscribe_sync("buffered.*").unwrap();
        let handled = Rc::new(RefCell::new(Vec::new()));
        let h = handled.clone();
        nc.subscribe("handled", move |m| h.borrow_mut().push(m.text().unwrap_or_default().to_string())).unwrap();
        nc.flush().await.unwrap();
        nc.publish("buffered.0", "before").await.unwrap();
        assert_eq!(sub.next_msg(WAIT).await.unwrap().text(), Some("before"));

        server.kill();
        until("reconnecting", WAIT, || nc.is_reconnecting()).await;
        assert_eq!(*events.borrow(), vec![Event::Disconnected(Some("Io"))]);
        assert_eq!(nc.connected_url(), None);
        assert!(matches!(nc.last_error(), Some(Error::Io(_))), "{:?}", nc.last_error());
        // Buffered while the server is down.
        for i in 1..=5 {
            nc.publish(&format!("buffered.{i}"), format!("m{i}")).await.unwrap();
            assert!(nc.is_reconnecting());
        }
        nc.publish("handled", "h").await.unwrap();
        assert!(nc.buffered() > 0);
        // A flush made while down completes once the new server has the publishes.
        let flusher = nc.clone();
        let pending_flush = glommio::spawn_local(async move { flusher.flush_timeout(WAIT).await });
        // Let at least one failed attempt pass with the server down.
        glommio::timer::sleep(RECONNECT_WAIT * 2).await;
        assert!(nc.is_reconnecting());
        assert_eq!(nc.stats().reconnects, 0);

        let _server = Server::start_on(port);
        until("reconnected", WAIT, || nc.is_connected()).await;
        assert_eq!(nc.stats().reconnects, 1);
        pending_flush.await.expect("flush pending across the reconnect");
        for i in 1..=5 {
            let m = sub.next_msg(WAIT).await.unwrap();
            assert_eq!((m.subject.as_str(), m.text()), (format!("buffered.{i}").as_str(), Some(format!("m{i}").as_str())));
        }
        until("handler delivery", WAIT, || handled.borrow().len() == 1).await;
        assert_eq!(*handled.borrow(), vec!["h".to_string()]);
        nc.flush().await.unwrap();
        assert_eq!(nc.connected_url().as_deref(), Some(url.as_str()));
        assert_eq!(nc.servers(), vec![url.clone()]);
        // The subscription is live on the new server, not just replayed.
        nc.publish("buffered.after", "after").await.unwrap();
        assert_eq!(sub.next_msg(WAIT).await.unwrap().text(), Some("after"));
        assert!(matches!(sub.next_msg(Duration::from_millis(50)).await, Err(Error::Timeout)), "no duplicates");
        assert_eq!(*events.borrow(), vec![Event::Disconnected(Some("Io")), Event::Reconnected]);

        nc.close().await;
        // Closing a connected connection reports a disconnect without an error, then closed
        // (as nats.go, whose Close runs the disconnected callback when it was connected).
        assert_eq!(
            *events.borrow(),
            vec![Event::Disconnected(Some("Io")), Event::Reconnected, Event::Disconnected(None), Event::Closed]
        );
        assert!(matches!(sub.next_msg(WAIT).await, Err(Error::ConnectionClosed)));
    });
}

#[test]
fn reconnect_buffer_limit() {
    let port = free_port();
    let server = Server::start_on(port);
    run_local(LIMIT, move || async move {
        let mut server = server;
        let url = local_url(port);
        let events: Events = Rc::default();
        let nc = recording(&events).max_reconnects(-1).reconnect_buffer_size(1024).connect(&url).await.unwrap();
        let unbuffered = Options::new().reconnect_wait(RECONNECT_WAIT).reconnect_buffer_size(0).connect(&url).await.unwrap();
        let sub = nc.subscribe_sync("fill").unwrap();
        nc.flush().await.unwrap();
        unbuffered.flush().await.unwrap();

        server.kill();
        until("reconnecting", WAIT, || nc.is_reconnecting() && unbuffered.is_reconnecting()).await;
        assert!(matches!(unbuffered.publish("fill", "x").await, Err(Error::ReconnectBufExceeded)));
        let payload = [b'p'; 100];
        let mut accepted = 0;
        let err = loop {
            match nc.publish("fill", payload).await {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted <= 20, "the 1024-byte reconnect buffer never filled");
        };
        assert!(matches!(err, Error::ReconnectBufExceeded), "{err:?}");
        assert!(accepted >= 1 && accepted * 100 <= 1024, "accepted {accepted}");
        assert!(nc.buffered() <= 1024, "buffered {}", nc.buffered());
        assert_eq!(err.to_string(), "nats: outbound buffer limit exceeded");

        let _server = Server::start_on(port);
        until("reconnected", WAIT, || nc.is_connected()).await;
        nc.flush().await.unwrap();
        for _ in 0..accepted {
            assert_eq!(&sub.next_msg(WAIT).await.unwrap().data[..], &payload[..]);
        }
        assert!(
            matches!(sub.next_msg(Duration::from_millis(100)).await, Err(Error::Timeout)),
            "the refused publish was not sent"
        );
        // Connected again: the limit no longer applies.
        for _ in 0..20 {
            nc.publish("fill", payload).await.unwrap();
        }
        nc.flush().await.unwrap();
        nc.close().await;
        unbuffered.close().await;
    });
}

/// A listener on `port` where a server was just killed, serving no NATS: it accepts
/// connections and drops them at once (`hold` false) or keeps them open and silent, counting
/// them until stopped.
struct Impostor {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Impostor {
    fn start(port: u16, hold: bool) -> Impostor {
        // The killed server's sockets linger on the port (FIN_WAIT, TIME_WAIT): bind as a
        // server restarting there would, with address and port reuse.
        let bind = || -> std::io::Result<TcpListener> {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
            s.listen(64)?;
            Ok(s.into())
        };
        let listener = bind().expect("rebind the killed server's port");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, st) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(c) = conn {
                    a.fetch_add(1, Ordering::SeqCst);
                    if hold {
                        held.push(c);
                    }
                }
            }
        });
        Impostor { port, accepted, stop, thread: Some(thread) }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn gives_up_after_max_reconnects() {
    let port = free_port();
    let server = Server::start_on(port);
    run_local(LIMIT, move || async move {
        let mut server = server;
        let url = local_url(port);
        let events: Events = Rc::default();
        let nc = recording(&events).max_reconnects(2).connect(&url).await.unwrap();
        let sub = nc.subscribe_sync("gone").unwrap();
        nc.flush().await.unwrap();

        server.kill();
        // Every reconnect attempt reaches this listener and fails: we can count them.
        let impostor = Impostor::start(port, false);
        let t0 = Instant::now();
        until("reconnecting", WAIT, || nc.is_reconnecting()).await;
        let flusher = nc.clone();
        let pending_flush = glommio::spawn_local(async move { flusher.flush_timeout(WAIT).await });
        closed_within(&nc, Duration::from_secs(5)).await;
        // Two attempts on the one server, `reconnect_wait` apart.
        assert!(t0.elapsed() >= RECONNECT_WAIT, "gave up after {:?}", t0.elapsed());
        assert_eq!(impostor.accepted(), 2, "max_reconnects(2) means two attempts");
        drop(impostor);

        assert_eq!(nc.status(), Status::Closed);
        assert_eq!(*events.borrow(), vec![Event::Disconnected(Some("Io")), Event::Closed]);
        assert!(matches!(nc.last_error(), Some(Error::NoServers)), "{:?}", nc.last_error());
        assert_eq!(nc.stats().reconnects, 0);
        assert!(matches!(pending_flush.await, Err(Error::ConnectionClosed)));
        assert!(matches!(nc.publish("gone", "x").await, Err(Error::ConnectionClosed)));
        assert!(matches!(sub.next_msg(WAIT).await, Err(Error::ConnectionClosed)));
        assert!(matches!(nc.flush().await, Err(Error::ConnectionClosed)));
        // Closing again is harmless and runs no callback twice.
        nc.close().await;
        assert_eq!(events.borrow().len(), 2);
    });
}

#[test]
fn a_silent_server_is_given_up_after_connect_timeout() {
    let port = free_port();
    let server = Server::start_on(port);
    run_local(LIMIT, move || async move {
        let mut server = server;
        let events: Events = Rc::default();
        let nc = recording(&events)
            .max_reconnects(1)
            .connect_timeout(Duration::from_millis(300))
            .connect(&local_url(port))
            .await
            .unwrap();
        nc.flush().await.unwrap();
        server.kill();
        // The port accepts the reconnect but never sends INFO.
        let impostor = Impostor::start(port, true);
        let t0 = Instant::now();
        closed_within(&nc, Duration::from_secs(3)).await;
        assert!(t0.elapsed() >= Duration::from_millis(300), "gave up after {:?}", t0.elapsed());
        assert_eq!(impostor.accepted(), 1);
        assert_eq!(*events.borrow(), vec![Event::Disconnected(Some("Io")), Event::Closed]);
        assert!(matches!(nc.last_error(), Some(Error::NoServers)), "{:?}", nc.last_error());
    });
}

#[test]
fn close_while_reconnecting() {
    let port = free_port();
    let server = Server::start_on(port);
    run_local(LIMIT, move || async move {
        let mut server = server;
        let events: Events = Rc::default();
        let nc = recording(&events).max_reconnects(-1).connect(&local_url(port)).await.unwrap();
        let sub = nc.subscribe_sync("x").unwrap();
        nc.flush().await.unwrap();
        server.kill();
        until("reconnecting", WAIT, || nc.is_reconnecting()).await;
        nc.publish("x", "kept until close").await.unwrap();
        let flusher = nc.clone();
        let pending_flush = glommio::spawn_local(async move { flusher.flush_timeout(WAIT).await });
        futures_lite::future::yield_now().await;
        let t0 = Instant::now();
        nc.close().await;
        assert!(t0.elapsed() < Duration::from_secs(1), "close took {:?}", t0.elapsed());
        // No second disconnect: it was not connected when closed (as nats.go).
        assert_eq!(*events.borrow(), vec![Event::Disconnected(Some("Io")), Event::Closed]);
        assert_eq!(nc.status(), Status::Closed);
        assert_eq!(nc.buffered(), 0, "the reconnect buffer is dropped");
        assert!(matches!(pending_flush.await, Err(Error::ConnectionClosed)));
        assert!(matches!(sub.next_msg(WAIT).await, Err(Error::ConnectionClosed)));
        assert!(matches!(nc.publish("x", "y").await, Err(Error::ConnectionClosed)));
        // A server coming back afterwards changes nothing.
        let _server = Server::start_on(port);
        assert!(matches!(nc.flush().await, Err(Error::ConnectionClosed)));
        assert_eq!(nc.stats().reconnects, 0);
    });
}

/// A server that was down at the first connect is still worth `max_reconnects` attempts
/// later: in nats.go only reconnect attempts count (`doReconnect` increments
/// `srv.reconnects`; `connect` does not).
#[test]
fn servers_down_at_first_connect_keep_their_reconnect_attempts() {
    let a_port = free_port();
    let b = Server::start();
    run_local(LIMIT, move || async move {
        let mut b = b;
        let (a_url, b_url) = (local_url(a_port), b.url());
        let events: Events = Rc::default();
        let nc = recording(&events)
            .no_randomize(true)
            .max_reconnects(1)
            .connect(&format!("{a_url},{b_url}"))
            .await
            .unwrap();
        assert_eq!(nc.connected_url().as_deref(), Some(b_url.as_str()));
        // A comes up, then B goes away: the client should move to A.
        let _a = Server::start_on(a_port);
        b.kill();
        let deadline = Instant::now() + WAIT;
        while !(nc.is_closed() || nc.connected_url().as_deref() == Some(a_url.as_str())) {
            assert!(Instant::now() < deadline, "neither failed over nor closed");
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            nc.connected_url().as_deref(),
            Some(a_url.as_str()),
            "closed instead of trying {a_url}: events {:?}, last error {:?}",
            events.borrow(),
            nc.last_error()
        );
        nc.close().await;
    });
}

#[test]
fn no_reconnect_when_not_allowed() {
    let port = free_port();
    let server = Server::start_on(port);
    run_local(LIMIT, move || async move {
        let mut server = server;
        let events: Events = Rc::default();
        let nc = recording(&events).allow_reconnect(false).connect(&local_url(port)).await.unwrap();
        nc.flush().await.unwrap();
        server.kill();
        closed_within(&nc, WAIT).await;
        assert_eq!(*events.borrow(), vec![Event::Disconnected(Some("Io")), Event::Closed]);
        assert_eq!(nc.stats().reconnects, 0);
        assert!(matches!(nc.last_error(), Some(Error::Io(_))), "{:?}", nc.last_error());
        assert!(matches!(nc.publish("x", "y").await, Err(Error::ConnectionClosed)));
        assert_eq!(nc.connected_url(), None);
    });
}

#[test]
fn pool_order_and_no_servers() {
    let a = Server::start();
    let b = Server::start();
    let (a_url, b_url) = (a.url(), b.url());
    run_local(LIMIT, move || async move {
        let dead = local_url(free_port());
        // The first server is down: no_randomize tries it, then takes the second.
        let nc = Options::new().no_randomize(true).connect(&format!("{dead},{a_url}")).await.unwrap();
        assert_eq!(nc.connected_url().as_deref(), Some(a_url.as_str()));
        assert_eq!(nc.servers(), vec![dead.clone(), a_url.clone()]);
        assert!(nc.discovered_servers().is_empty());
        nc.close().await;

        // Both up: no_randomize takes the first, every time.
        for _ in 0..5 {
            let nc = Options::new().no_randomize(true).connect(&format!("{b_url},{a_url}")).await.unwrap();
            assert_eq!(nc.connected_url().as_deref(), Some(b_url.as_str()));
            assert_eq!(nc.servers(), vec![b_url.clone(), a_url.clone()]);
            nc.close().await;
        }

        // Randomized (the default): one of them, and the pool has both.
        let nc = Options::new().connect(&format!("{a_url},{b_url}")).await.unwrap();
        let at = nc.connected_url().unwrap();
        assert!(at == a_url || at == b_url, "{at}");
        let mut pool = nc.servers();
        pool.sort();
        let mut want = vec![a_url.clone(), b_url.clone()];
        want.sort();
        assert_eq!(pool, want);
        nc.close().await;

        // Nobody home anywhere.
        let deads = format!("{},{},{}", local_url(free_port()), local_url(free_port()), local_url(free_port()));
        let t0 = Instant::now();
        match Options::new().connect(&deads).await {
            Err(Error::NoServers) => {}
            Err(e) => panic!("expected NoServers, got {e:?}"),
            Ok(_) => panic!("connected to a dead pool"),
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "refused connections fail fast");
        let _keep = (a, b);
    });
}

#[test]
fn failover_to_the_other_server_of_the_pool() {
    let servers = vec![Server::start(), Server::start()];
    run_local(LIMIT, move || async move {
        let mut servers = servers;
        let urls: Vec<String> = servers.iter().map(Server::url).collect();
        let events: Events = Rc::default();
        let nc = recording(&events).connect(&urls.join(",")).await.unwrap();
        let sub = nc.subscribe_sync("fail.over").unwrap();
        nc.flush().await.unwrap();
        let first = nc.connected_url().unwrap();
        let i = urls.iter().position(|u| *u == first).expect("connected to a pool server");
        let other = urls[1 - i].clone();

        servers[i].kill();
        until("failover", WAIT, || nc.is_connected() && nc.connected_url().as_deref() == Some(other.as_str())).await;
        assert_eq!(*events.borrow(), vec![Event::Disconnected(Some("Io")), Event::Reconnected]);
        assert_eq!(nc.stats().reconnects, 1);
        nc.publish("fail.over", "there").await.unwrap();
        assert_eq!(sub.next_msg(WAIT).await.unwrap().text(), Some("there"));
        // A second client straight on the survivor reaches the re-sent subscription.
        let direct = Options::new().connect(&other).await.unwrap();
        direct.publish("fail.over", "direct").await.unwrap();
        direct.flush().await.unwrap();
        assert_eq!(sub.next_msg(WAIT).await.unwrap().text(), Some("direct"));
        direct.close().await;
        nc.close().await;
    });
}

/// Arguments of a reference nats-server cluster node: clients on a port of its choosing, routes
/// on `cport`, soliciting the peer's route port.
fn cluster_args(cport: u16, peer: u16) -> Vec<String> {
    vec![
        "-p".into(),
        "-1".into(),
        "--cluster_name".into(),
        "natsu-test".into(),
        "--cluster".into(),
        format!("nats://127.0.0.1:{cport}"),
        "--routes".into(),
        format!("nats://127.0.0.1:{peer}"),
    ]
}

#[test]
fn cluster_discovery_and_failover_to_a_discovered_server() {
    let (c1, c2) = (free_port(), free_port());
    let node1 = Server::reference_with(&cluster_args(c1, c2).iter().map(String::as_str).collect::<Vec<_>>());
    run_local(LIMIT, move || async move {
        let mut node1 = node1;
        let url1 = node1.url();
        let events: Events = Rc::default();
        let nc = recording(&events).connect(&url1).await.unwrap();
        let sub = nc.subscribe_sync("across").unwrap();
        nc.flush().await.unwrap();
        assert!(nc.discovered_servers().is_empty(), "{:?}", nc.discovered_servers());

        // Node 2 joins after the client connected: node 1 tells it in an INFO.
        let node2 = Server::reference_with(&cluster_args(c2, c1).iter().map(String::as_str).collect::<Vec<_>>());
        let url2 = node2.url();
        until("discovery of node 2", Duration::from_secs(15), || nc.discovered_servers().contains(&url2)).await;
        assert_eq!(nc.discovered_servers(), vec![url2.clone()]);
        assert!(events.borrow().contains(&Event::Discovered));
        let mut pool = nc.servers();
        pool.sort();
        let mut want = vec![url1.clone(), url2.clone()];
        want.sort();
        assert_eq!(pool, want);

        node1.kill();
        until("failover to node 2", WAIT, || nc.connected_url().as_deref() == Some(url2.as_str())).await;
        assert_eq!(
            events.borrow().iter().filter(|e| **e != Event::Discovered).cloned().collect::<Vec<_>>(),
            vec![Event::Disconnected(Some("Io")), Event::Reconnected]
        );
        nc.publish("across", "on node 2").await.unwrap();
        assert_eq!(sub.next_msg(WAIT).await.unwrap().text(), Some("on node 2"));
        nc.close().await;
        drop(node2);
    });
}

/// A fake server for one connection: INFO, then PONG to the handshake's PING. After that it
/// answers PINGs when `answer_pings`, else stays silent. Returns what the client sent after
/// the handshake, once the client hangs up (or after 10 s).
fn fake_server(answer_pings: bool) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let info = format!(
            "INFO {{\"server_id\":\"FAKE\",\"server_name\":\"fake\",\"version\":\"2.9.10\",\"proto\":1,\
             \"host\":\"127.0.0.1\",\"port\":{port},\"headers\":true,\"max_payload\":1048576}}\r\n"
        );
        s.write_all(info.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // The handshake: CONNECT {...}\r\nPING\r\n.
        while common::find(&buf, b"PING\r\n").is_none() {
            match s.read(&mut chunk) {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return String::from_utf8_lossy(&buf).into_owned(),
            }
        }
        assert!(buf.starts_with(b"CONNECT {"), "{:?}", String::from_utf8_lossy(&buf));
        let i = common::find(&buf, b"PING\r\n").unwrap();
        buf.drain(..i + 6);
        s.write_all(b"PONG\r\n").unwrap();
        let mut answered = 0;
        loop {
            if answer_pings {
                let pings = buf.windows(6).filter(|w| *w == b"PING\r\n").count();
                for _ in answered..pings {
                    let _ = s.write_all(b"PONG\r\n");
                }
                answered = pings;
            }
            match s.read(&mut chunk) {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return String::from_utf8_lossy(&buf).into_owned(),
            }
        }
    });
    (port, t)
}

/// A client of the fake server that PINGs every `interval`, allows two unanswered, and
/// does not reconnect.
async fn pinging_client(events: &Events, port: u16, interval: Duration) -> Connection {
    recording(events)
        .allow_reconnect(false)
        .ping_interval(interval)
        .max_pings_out(2)
        .connect(&local_url(port))
        .await
        .unwrap()
}

#[test]
fn stale_connection_when_pings_go_unanswered() {
    let (port, peer) = fake_server(false);
    run_local(LIMIT, move || async move {
        let events: Events = Rc::default();
        let nc = pinging_client(&events, port, Duration::from_millis(100)).await;
        let t0 = Instant::now();
        closed_within(&nc, WAIT).await;
        // Two PINGs sent and unanswered, the third interval finds them outstanding.
        assert!(t0.elapsed() >= Duration::from_millis(250), "stale after only {:?}", t0.elapsed());
        assert_eq!(*events.borrow(), vec![Event::Disconnected(Some("StaleConnection")), Event::Closed]);
        assert!(matches!(nc.last_error(), Some(Error::StaleConnection)), "{:?}", nc.last_error());
        let sent = join_peer(peer).await;
        assert_eq!(sent, "PING\r\nPING\r\n");
    });
}

#[test]
fn answered_pings_keep_the_connection() {
    let (port, peer) = fake_server(true);
    run_local(LIMIT, move || async move {
        let events: Events = Rc::default();
        let nc = pinging_client(&events, port, Duration::from_millis(50)).await;
        // Ten intervals: a client that ignored PONGs would have gone stale by the third.
        glommio::timer::sleep(Duration::from_millis(500)).await;
        assert_eq!(nc.status(), Status::Connected);
        assert!(events.borrow().is_empty(), "{:?}", events.borrow());
        nc.close().await;
        let sent = join_peer(peer).await;
        let pings = sent.matches("PING\r\n").count();
        assert!(pings >= 5, "only {pings} PINGs in 500ms at a 50ms interval: {sent:?}");
        assert_eq!(sent.replace("PING\r\n", ""), "", "nothing but PINGs");
        assert_eq!(*events.borrow(), vec![Event::Disconnected(None), Event::Closed]);
    });
}

/// What a reconnecting client sends first, byte for byte: its subscriptions, then the
/// publishes buffered while it was down, then a PING for the flush still waiting.
#[test]
fn resume_sends_subs_then_buffered_publishes_then_pings() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let info = format!(
            "INFO {{\"server_id\":\"FAKE\",\"server_name\":\"fake\",\"version\":\"2.9.10\",\"proto\":1,\
             \"host\":\"127.0.0.1\",\"port\":{port},\"headers\":true,\"max_payload\":1048576}}\r\n"
        );
        let handshake = |s: &mut TcpStream| -> Vec<u8> {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(info.as_bytes()).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while common::find(&buf, b"PING\r\n").is_none() {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "client hung up in the handshake");
                buf.extend_from_slice(&chunk[..n]);
            }
            let i = common::find(&buf, b"PING\r\n").unwrap();
            buf.drain(..i + 6);
            s.write_all(b"PONG\r\n").unwrap();
            buf
        };
        // First connection: take the handshake and the first SUBs, then hang up.
        let (mut s, _) = listener.accept().unwrap();
        let mut first = handshake(&mut s);
        let mut chunk = [0u8; 4096];
        while common::find(&first, b"PING\r\n").is_none() {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0);
            first.extend_from_slice(&chunk[..n]);
        }
        s.write_all(b"PONG\r\n").unwrap();
        drop(s);
        // Second connection: held before INFO until the test has published while down.
        let (mut s, _) = listener.accept().unwrap();
        go_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut second = handshake(&mut s);
        while common::find(&second, b"PING\r\n").is_none() {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0);
            second.extend_from_slice(&chunk[..n]);
        }
        s.write_all(b"PONG\r\n").unwrap();
        // Hold the connection until the client closes it.
        while matches!(s.read(&mut chunk), Ok(n) if n > 0) {}
        (String::from_utf8_lossy(&first).into_owned(), String::from_utf8_lossy(&second).into_owned())
    });
    run_local(LIMIT, move || async move {
        let events: Events = Rc::default();
        let nc = recording(&events).max_reconnects(-1).connect(&local_url(port)).await.unwrap();
        let a = nc.subscribe_sync("a.>").unwrap();
        nc.queue_subscribe_sync("b", "workers").unwrap();
        let gone = nc.subscribe_sync("gone").unwrap();
        a.auto_unsubscribe(10).unwrap();
        gone.unsubscribe().unwrap();
        nc.flush().await.unwrap();
        until("reconnecting", WAIT, || nc.is_reconnecting()).await;
        nc.publish("a.1", "one").await.unwrap();
        nc.publish_request("a.2", "reply.to", "two").await.unwrap();
        let flusher = nc.clone();
        let pending_flush = glommio::spawn_local(async move { flusher.flush_timeout(WAIT).await });
        // Let the flush register its PING before the new server answers.
        futures_lite::future::yield_now().await;
        go_tx.send(()).unwrap();
        until("reconnected", WAIT, || nc.is_connected()).await;
        pending_flush.await.expect("flush answered by the new server");
        nc.close().await;
        let (first, second) = join_peer(peer).await;
        assert_eq!(first, "SUB a.> 1\r\nSUB b workers 2\r\nSUB gone 3\r\nUNSUB 1 10\r\nUNSUB 3\r\nPING\r\n");
        assert_eq!(second, "SUB a.> 1\r\nUNSUB 1 10\r\nSUB b workers 2\r\nPUB a.1 3\r\none\r\nPUB a.2 reply.to 3\r\ntwo\r\nPING\r\n");
        assert_eq!(
            *events.borrow(),
            vec![Event::Disconnected(Some("Io")), Event::Reconnected, Event::Disconnected(None), Event::Closed]
        );
    });
}
