//! Co-location (`src/server/shard/colocate.rs`): natsu on two cores moves a client that talks
//! mostly with a peer on the other core to that core. The kernel picks each connection's
//! core (SO_REUSEPORT), so these tests open many request/reply pairs (some surely split
//! across the cores) and check what a client must never see, however many moves happen
//! under it: a lost, doubled or reordered message, a lost reply, a changed CONNECT option
//! (echo, headers, verbose), or a subscription that stops working; and that the server's
//! connection count stays true. Moves are counted from natsu's debug log. And a kill -9 in
//! the middle of moves, natsu started again on its port at once, with real clients
//! (async-nats) reconnecting to it.
//!
//! Raw protocol over loopback; every wait is bounded, every loop counted.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{natsu_bin, Raw};

/// natsu on two cores with -D, its client and monitoring ports, and a count of the moves
/// its log reports.
struct Natsu {
    child: Child,
    port: u16,
    http: u16,
    moves: Arc<AtomicUsize>,
}

impl Natsu {
    fn start(extra: &[&str]) -> Natsu {
        Natsu::start_on("-1", extra)
    }

    /// Start on client port `port` ("-1": one the server picks).
    fn start_on(port: &str, extra: &[&str]) -> Natsu {
        let mut child = Command::new(natsu_bin())
            .args(["-a", "127.0.0.1", "-p", port, "-m", "-1", "--cores", "2", "-D"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start natsu");
        let stderr = child.stderr.take().expect("stderr");
        let moves = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let m = moves.clone();
        thread::spawn(move || {
            let (mut port, mut http) = (None, None);
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var("NATSU_TEST_LOG").is_ok() {
                    eprintln!("{line}");
                }
                let tail_port = |l: &str, key: &str| l.split_once(key).and_then(|(_, a)| a.trim().rsplit(':').next()?.parse::<u16>().ok());
                port = port.or_else(|| tail_port(&line, "Listening for client connections on "));
                http = http.or_else(|| tail_port(&line, "Starting http monitor on "));
                if let (Some(p), Some(h)) = (port, http) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send((p, h));
                    }
                }
                if line.contains("Client connection moved to its peer's core") {
                    m.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let (port, http) = rx.recv_timeout(Duration::from_secs(10)).expect("natsu reports its ports");
        Natsu { child, port, http, moves }
    }

    fn varz_connections(&self) -> u64 {
        let r = common::http::get(self.http, "/varz");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("varz json");
        v["connections"].as_u64().expect("connections")
    }

    fn connz_ids(&self) -> Vec<u64> {
        let r = common::http::get(self.http, "/connz?limit=1000");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("connz json");
        v["connections"].as_array().expect("connections").iter().map(|c| c["cid"].as_u64().unwrap()).collect()
    }
}

impl Drop for Natsu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(port: u16, json: &str) -> Raw {
    let c = Raw::connect_with(port, json);
    c.s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

/// One parsed `MSG`/`HMSG`: subject, reply, payload.
type Msg = (String, Option<String>, Vec<u8>);

/// Read the next message, answering PINGs and skipping PONG and +OK (counted in `seen`:
/// PONGs, +OKs).
fn next_msg(c: &mut Raw, seen: &mut [u64; 2]) -> Msg {
    loop {
        let line = c.read_line();
        let l = line.trim_end();
        match l {
            "PING" => {
                c.send("PONG\r\n");
                continue;
            }
            "PONG" => {
                seen[0] += 1;
                continue;
            }
            "+OK" => {
                seen[1] += 1;
                continue;
            }
            _ => {}
        }
        let a: Vec<&str> = l.split(' ').collect();
        let (subject, reply, size) = match (a[0], a.len()) {
            ("MSG", 4) => (a[1], None, a[3].parse::<usize>().unwrap()),
            ("MSG", 5) => (a[1], Some(a[3]), a[4].parse::<usize>().unwrap()),
            ("HMSG", 5) => (a[1], None, a[4].parse::<usize>().unwrap()),
            ("HMSG", 6) => (a[1], Some(a[3]), a[5].parse::<usize>().unwrap()),
            _ => panic!("unexpected line {l:?}"),
        };
        let mut body = c.read_exact_n(size + 2);
        body.truncate(size);
        return (subject.to_string(), reply.map(String::from), body);
    }
}

/// Chatty request/reply pairs, some split across the cores, with a feed published from a
/// third connection that every requester also takes: moves happen, and every requester
/// gets every reply and every feed message once, in order; its CONNECT options and its
/// subscriptions hold after the move; the connection count stays true throughout.
#[test]
fn chatty_pairs_move_and_every_message_arrives_once_in_order() {
    const PAIRS: usize = 12;
    // Which responder each requester asks: connections made one after another tend to
    // alternate between the cores, so some pairs are a connection's neighbours and some not.
    const PEER: [usize; PAIRS] = [0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11];
    const RUN: Duration = Duration::from_secs(6);
    let n = Natsu::start(&[]);
    let port = n.port;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    // Responders: echo each request's payload to its reply subject.
    for i in 0..PAIRS {
        let stop = stop.clone();
        let mut c = connect(port, r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}"#);
        c.send(&format!("SUB svc.{i} 1\r\n"));
        assert_eq!(c.flush(), "");
        threads.push(thread::spawn(move || {
            let mut pongs = [0u64; 2];
            let mut answered = 0u64;
            c.s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            while !stop.load(Ordering::Relaxed) {
                // A read timeout between requests is fine: look at `stop` again.
                if c.buf.is_empty() {
                    use std::io::Read;
                    let mut chunk = [0u8; 65536];
                    match c.s.read(&mut chunk) {
                        Ok(0) => panic!("responder {i} closed"),
                        Ok(k) => c.buf.extend_from_slice(&chunk[..k]),
                        Err(_) => continue,
                    }
                }
                c.s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let (_, reply, body) = next_msg(&mut c, &mut pongs);
                c.s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                let reply = reply.expect("request has a reply subject");
                let mut out = format!("PUB {reply} {}\r\n", body.len()).into_bytes();
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\r\n");
                c.send_bytes(&out);
                answered += 1;
            }
            answered
        }));
    }
    // Requesters: sequential requests; the feed's messages come in between.
    let mut conns = Vec::new();
    for i in 0..PAIRS {
        let mut c = Raw::connect(port);
        c.s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.send("CONNECT {\"verbose\":true,\"pedantic\":false,\"echo\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\nPING\r\n");
        c.expect("+OK\r\nPONG\r\n");
        c.send(&format!("SUB _INBOX.{i}.* 1\r\nSUB feed 2\r\nSUB self.{i} 3\r\n"));
        assert_eq!(c.flush(), "+OK\r\n+OK\r\n+OK\r\n");
        conns.push(c);
    }
    // The feed: numbered messages at a few hundred a second (too few to make anyone move).
    let feed = {
        let stop = stop.clone();
        let mut c = connect(port, r#"{"verbose":false,"pedantic":false}"#);
        thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) && seq < 100_000 {
                let mut batch = String::new();
                for _ in 0..5 {
                    seq += 1;
                    let p = seq.to_string();
                    batch.push_str(&format!("PUB feed {}\r\n{p}\r\n", p.len()));
                }
                c.send(&batch);
                thread::sleep(Duration::from_millis(15));
            }
            assert_eq!(c.flush(), "");
            seq
        })
    };
    let mut requesters = Vec::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        let stop = stop.clone();
        requesters.push(thread::spawn(move || {
            let mut pongs = [0u64; 2];
            let mut feed_next = None::<u64>;
            let mut feed_got = 0u64;
            let mut requests = 0u64;
            let mut take_feed = |body: &[u8], feed_next: &mut Option<u64>| {
                let n: u64 = std::str::from_utf8(body).unwrap().parse().unwrap();
                if let Some(want) = *feed_next {
                    assert_eq!(n, want, "requester {i}: feed message out of order, lost or doubled");
                }
                *feed_next = Some(n + 1);
                feed_got += 1;
            };
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < RUN + Duration::from_secs(5) {
                requests += 1;
                let payload = format!("{i}-{requests}");
                c.send(&format!("PUB svc.{} _INBOX.{i}.{requests} {}\r\n{payload}\r\n", PEER[i], payload.len()));
                loop {
                    let (subject, _, body) = next_msg(&mut c, &mut pongs);
                    if subject == "feed" {
                        take_feed(&body, &mut feed_next);
                        continue;
                    }
                    assert_eq!(subject, format!("_INBOX.{i}.{requests}"), "requester {i}: reply to another request");
                    assert_eq!(body, payload.as_bytes(), "requester {i}: reply payload");
                    break;
                }
            }
            // Verbose still holds: an +OK per PUB.
            assert_eq!(pongs[1], requests, "requester {i}: +OK per request");
            // After the run (moved or not): echo off still holds, a new subscription works.
            c.send(&format!("PUB self.{i} 2\r\nhi\r\nSUB late.{i} 4\r\nPING\r\n"));
            loop {
                let line = c.read_line();
                match line.as_str() {
                    "+OK\r\n" => continue,
                    "PONG\r\n" => break,
                    _ if line.starts_with("MSG feed ") => {
                        let size: usize = line.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
                        let mut body = c.read_exact_n(size + 2);
                        body.truncate(size);
                        take_feed(&body, &mut feed_next);
                    }
                    _ => panic!("requester {i}: unexpected {line:?} (echo off must hold)"),
                }
            }
            (c, requests, feed_next, feed_got)
        }));
    }
    thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    let published = feed.join().expect("feed");
    for t in threads {
        t.join().expect("responder");
    }
    let mut clients = Vec::new();
    for (i, t) in requesters.into_iter().enumerate() {
        let (mut c, requests, feed_next, feed_got) = t.join().expect("requester");
        assert!(requests > 100, "requester {i}: only {requests} requests");
        // The rest of the feed, up to its last message.
        let mut pongs = [0u64; 2];
        let mut next = feed_next.unwrap_or(1);
        let mut got = feed_got;
        while next <= published {
            let (subject, _, body) = next_msg(&mut c, &mut pongs);
            assert_eq!(subject, "feed");
            let k: u64 = std::str::from_utf8(&body).unwrap().parse().unwrap();
            assert_eq!(k, next, "requester {i}: feed message out of order, lost or doubled");
            next += 1;
            got += 1;
        }
        assert!(got > 0);
        clients.push(c);
    }
    let moves = n.moves.load(Ordering::Relaxed);
    eprintln!("{moves} moves");
    assert!(moves >= 1, "no client moved (12 pairs, two cores)");
    // The late subscriptions reach every requester, wherever it is now.
    let mut p = connect(port, r#"{"verbose":false,"pedantic":false}"#);
    for i in 0..PAIRS {
        p.send(&format!("PUB late.{i} 4\r\nlate\r\n"));
    }
    assert_eq!(p.flush(), "");
    for (i, c) in clients.iter_mut().enumerate() {
        let mut pongs = [0u64; 2];
        let (subject, _, body) = next_msg(c, &mut pongs);
        assert_eq!((subject.as_str(), &body[..]), (&*format!("late.{i}"), &b"late"[..]), "requester {i}");
        assert_eq!(c.flush(), "");
    }
    // Every connection counted once: 12 requesters, 12 responders (closed by now or not),
    // the feed and `p`.
    let ids = n.connz_ids();
    let mut dedup = ids.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(ids.len(), dedup.len(), "a connection listed twice: {ids:?}");
    drop(clients);
    drop(p);
    let by = Instant::now() + Duration::from_secs(10);
    while n.varz_connections() != 0 && Instant::now() < by {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(n.varz_connections(), 0, "connection count after every client left");
}

/// `--colocate=false`: the same traffic, no move.
#[test]
fn colocate_false_keeps_clients_where_they_landed() {
    const PAIRS: usize = 8;
    let n = Natsu::start(&["--colocate=false"]);
    let mut threads = Vec::new();
    for i in 0..PAIRS {
        let mut s = connect(n.port, r#"{"verbose":false,"pedantic":false}"#);
        s.send(&format!("SUB svc.{i} 1\r\n"));
        assert_eq!(s.flush(), "");
        let mut r = connect(n.port, r#"{"verbose":false,"pedantic":false}"#);
        r.send(&format!("SUB in.{i} 1\r\n"));
        assert_eq!(r.flush(), "");
        threads.push(thread::spawn(move || {
            let mut pongs = [0u64; 2];
            let start = Instant::now();
            let mut k = 0;
            while start.elapsed() < Duration::from_secs(2) && k < 200_000 {
                k += 1;
                r.send(&format!("PUB svc.{i} in.{i} 1\r\nx\r\n"));
                let (_, reply, _) = next_msg(&mut s, &mut pongs);
                s.send(&format!("PUB {} 1\r\ny\r\n", reply.unwrap()));
                let (subject, _, body) = next_msg(&mut r, &mut pongs);
                assert_eq!((subject.as_str(), &body[..]), (&*format!("in.{i}"), &b"y"[..]));
            }
            k
        }));
    }
    for t in threads {
        assert!(t.join().unwrap() > 100);
    }
    assert_eq!(n.moves.load(Ordering::Relaxed), 0, "a client moved with --colocate=false");
}

/// Pairs that hang up at random moments while moves go on: the server stays sound (every
/// connection is counted out, and it serves a new client afterwards).
#[test]
fn clients_that_hang_up_during_moves_are_counted_out() {
    const PAIRS: usize = 10;
    let n = Natsu::start(&[]);
    let mut threads = Vec::new();
    for i in 0..PAIRS {
        let port = n.port;
        threads.push(thread::spawn(move || {
            // Each pair lives a different while (0.3 s to 3 s), in rounds, for about 4 s.
            let start = Instant::now();
            let mut round = 0u64;
            while start.elapsed() < Duration::from_secs(4) && round < 50 {
                round += 1;
                let life = Duration::from_millis(300 + ((i as u64 * 7919 + round * 104_729) % 2700));
                let mut s = connect(port, r#"{"verbose":false,"pedantic":false}"#);
                s.send(&format!("SUB svc.{i}.{round} 1\r\n"));
                assert_eq!(s.flush(), "");
                let mut r = connect(port, r#"{"verbose":false,"pedantic":false}"#);
                r.send(&format!("SUB in.{i}.{round} 1\r\n"));
                assert_eq!(r.flush(), "");
                let born = Instant::now();
                let mut pongs = [0u64; 2];
                while born.elapsed() < life {
                    r.send(&format!("PUB svc.{i}.{round} in.{i}.{round} 1\r\nx\r\n"));
                    let (_, reply, _) = next_msg(&mut s, &mut pongs);
                    s.send(&format!("PUB {} 1\r\ny\r\n", reply.unwrap()));
                    let (_, _, body) = next_msg(&mut r, &mut pongs);
                    assert_eq!(body, b"y");
                }
                // Hang up without a word, sometimes with a request still unanswered.
                if round % 2 == 0 {
                    r.send(&format!("PUB svc.{i}.{round} in.{i}.{round} 1\r\nx\r\n"));
                }
                drop(r);
                drop(s);
            }
        }));
    }
    for t in threads {
        t.join().expect("pair");
    }
    let by = Instant::now() + Duration::from_secs(10);
    while n.varz_connections() != 0 && Instant::now() < by {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(n.varz_connections(), 0, "connections counted after all left ({} moves)", n.moves.load(Ordering::Relaxed));
    let mut c = connect(n.port, r#"{"verbose":false,"pedantic":false}"#);
    c.send("SUB x 1\r\nPUB x 2\r\nok\r\n");
    assert_eq!(c.flush(), "MSG x 1 2\r\nok\r\n");
}

/// A supervisor's kill -9 in the middle of moves, and natsu started again on the same port
/// at once: real clients (async-nats) reconnect on their own, and every pair talks again on
/// the new process. Nothing of a move outlives the process; this checks that nothing of it
/// stands in the way of the next one either (the port, the clients' resubscriptions).
#[test]
fn killed_during_moves_and_restarted_on_its_port_clients_carry_on() {
    const PAIRS: usize = 12;
    // As in the first test: some pairs are a connection's neighbours and some not.
    const PEER: [usize; PAIRS] = [0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11];
    const AFTER: u64 = 50;
    let port = common::free_port().to_string();
    let url = format!("nats://127.0.0.1:{port}");
    let mut first = Natsu::start_on(&port, &[]);
    let restarted = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    let (second, answered) = rt.block_on(async {
        let connect = || async {
            let opts = async_nats::ConnectOptions::new().retry_on_initial_connect().reconnect_delay_callback(|_| Duration::from_millis(20));
            tokio::time::timeout(Duration::from_secs(10), opts.connect(url.as_str())).await.expect("connect in time").expect("connect")
        };
        let mut responders = Vec::new();
        for i in 0..PAIRS {
            let c = connect().await;
            let mut sub = c.subscribe(format!("svc.{i}")).await.expect("subscribe");
            c.flush().await.expect("flush");
            responders.push(tokio::spawn(async move {
                while let Some(m) = futures::StreamExt::next(&mut sub).await {
                    if let Some(reply) = m.reply {
                        let _ = c.publish(reply, m.payload).await;
                    }
                }
            }));
        }
        let mut requesters = Vec::new();
        for &peer in &PEER {
            let c = connect().await;
            let restarted = restarted.clone();
            requesters.push(tokio::spawn(async move {
                // Requests go on through the kill: those that fail while natsu is away are
                // retried; only answers from the new process count, each checked.
                let (mut after, mut n) = (0u64, 0u64);
                let deadline = Instant::now() + Duration::from_secs(40);
                while after < AFTER && Instant::now() < deadline {
                    n += 1;
                    let body = format!("{peer}.{n}");
                    let was_restarted = restarted.load(Ordering::Acquire);
                    match tokio::time::timeout(Duration::from_secs(1), c.request(format!("svc.{peer}"), body.clone().into())).await {
                        Ok(Ok(m)) => {
                            assert_eq!(m.payload, body.as_bytes(), "the answer to this request");
                            after += u64::from(was_restarted);
                        }
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                after
            }));
        }
        // Kill -9 once clients are moving.
        let by = Instant::now() + Duration::from_secs(15);
        while first.moves.load(Ordering::Relaxed) == 0 && Instant::now() < by {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(first.moves.load(Ordering::Relaxed) > 0, "no client moved in 15 s: nothing to kill natsu in the middle of");
        first.child.kill().expect("kill -9");
        first.child.wait().expect("reap");
        let second = Natsu::start_on(&port, &[]);
        restarted.store(true, Ordering::Release);
        let mut answered = Vec::new();
        for r in requesters {
            answered.push(r.await.expect("requester"));
        }
        for r in responders {
            r.abort();
        }
        (second, answered)
    });
    drop(rt);
    assert!(answered.iter().all(|&a| a >= AFTER), "answers from the restarted natsu per pair: {answered:?}");
    let by = Instant::now() + Duration::from_secs(10);
    while second.varz_connections() != 0 && Instant::now() < by {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(second.varz_connections(), 0, "connections counted after every client left");
}
