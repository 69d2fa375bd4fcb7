//! Big payloads (32 KiB and more) leave natsu's read buffer as shared bytes and reach other
//! cores and subscribers' connections by reference, written out with vectored sends. These
//! tests check what a client sees of that, against natsu on two cores (and the reference
//! with `NATSU_TEST_TARGET=reference`): every subscriber, whichever core it is on, gets every
//! message byte for byte and in each publisher's order, big and small interleaved in one
//! write (so a big payload is taken out of the middle of a read), PUB and HPUB, with and
//! without a reply subject, to clients that take headers and to clients that do not (which
//! get the payload alone); a queue group gets each big message once; a subscriber that does
//! not read is cut off as a slow consumer while the others get everything.
//!
//! Raw protocol over loopback; every read is bounded by the connection's read timeout.

mod common;

use std::thread;
use std::time::Duration;

use common::{Limits, Raw, Server};

/// Payload sizes: small, just under and at the threshold, 64 KiB, odd, and max_payload less room for headers.
const SIZES: [usize; 7] = [16, 32 * 1024 - 1, 32 * 1024, 64 * 1024, 300_007, 5, 1_048_000];

fn start(limits: &Limits) -> Server {
    Server::with(limits, &["--cores", "2"])
}

/// Payload `i` of publisher `p`: its bytes depend on both and on the offset.
fn payload(p: usize, i: usize) -> Vec<u8> {
    let len = SIZES[i % SIZES.len()];
    (0..len).map(|j| (p * 101 + i * 31 + j * 7 + j / 251) as u8).collect()
}

/// The header block of message `i` (every third one is HPUB).
fn headers(p: usize, i: usize) -> Option<Vec<u8>> {
    (i % 3 == 1).then(|| format!("NATS/1.0\r\nPub: {p}\r\nSeq: {i}\r\n\r\n").into_bytes())
}

fn reply(p: usize, i: usize) -> Option<String> {
    (i % 4 == 2).then(|| format!("_INBOX.{p}.{i}"))
}

/// Every command publisher `p` sends: `n` messages on `subject`, in one buffer.
fn commands(p: usize, n: usize, subject: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let body = payload(p, i);
        let reply = reply(p, i).map(|r| format!(" {r}")).unwrap_or_default();
        match headers(p, i) {
            Some(h) => {
                out.extend_from_slice(format!("HPUB {subject}{reply} {} {}\r\n", h.len(), h.len() + body.len()).as_bytes());
                out.extend_from_slice(&h);
            }
            None => out.extend_from_slice(format!("PUB {subject}{reply} {}\r\n", body.len()).as_bytes()),
        }
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One message as received.
struct Got {
    subject: String,
    reply: Option<String>,
    headers: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// The next MSG or HMSG (PINGs answered on the way).
fn read_msg(r: &mut Raw) -> Got {
    next(r).expect("a message, not a PONG")
}

/// Messages until the PONG to a PING sent now.
fn until_pong(r: &mut Raw) -> Vec<Got> {
    r.send("PING\r\n");
    std::iter::from_fn(|| next(r)).collect()
}

/// The next MSG or HMSG, or None at a PONG (PINGs answered on the way).
fn next(r: &mut Raw) -> Option<Got> {
    loop {
        let line = r.read_line();
        let parts: Vec<&str> = line.trim_end().split(' ').collect();
        let (op, args) = (parts[0], &parts[1..]);
        let (subject, reply, hlen, total) = match (op, args.len()) {
            ("MSG", 3) => (args[0], None, None, args[2]),
            ("MSG", 4) => (args[0], Some(args[2]), None, args[3]),
            ("HMSG", 4) => (args[0], None, Some(args[2]), args[3]),
            ("HMSG", 5) => (args[0], Some(args[2]), Some(args[3]), args[4]),
            ("PING", 0) => {
                r.send("PONG\r\n");
                continue;
            }
            ("PONG", 0) => return None,
            _ => panic!("unexpected line {line:?}"),
        };
        let total: usize = total.parse().unwrap();
        let hlen: Option<usize> = hlen.map(|h| h.parse().unwrap());
        let mut body = r.read_exact_n(total + 2);
        assert_eq!(&body[total..], b"\r\n", "message not followed by CRLF");
        body.truncate(total);
        let headers = hlen.map(|h| body.drain(..h).collect());
        return Some(Got { subject: subject.into(), reply: reply.map(Into::into), headers, payload: body });
    }
}

/// A PING round trip before which nothing came but the server's own PINGs (answered).
fn flush_quiet(c: &mut Raw) {
    let before = c.flush();
    for _ in 0..before.matches("PING\r\n").count() {
        c.send("PONG\r\n");
    }
    assert_eq!(before.replace("PING\r\n", ""), "", "unexpected data before PONG");
}

/// A subscriber, with or without headers support, subscribed with `sub` (e.g. "big.> 1").
fn subscriber(server: &Server, headers: bool, sub: &str) -> Raw {
    let mut c = Raw::connect_with(server.port, &format!(r#"{{"verbose":false,"pedantic":false,"headers":{headers}}}"#));
    c.s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.send(&format!("SUB {sub}\r\n"));
    flush_quiet(&mut c);
    c
}

/// Check that `g` is message `i` of publisher `p` as a client with(out) headers sees it.
fn check(g: &Got, p: usize, i: usize, with_headers: bool, subject: &str) {
    assert_eq!(g.subject, subject);
    assert_eq!(g.reply, reply(p, i), "publisher {p} message {i}: reply");
    let want_headers = headers(p, i).filter(|_| with_headers);
    assert!(g.headers == want_headers, "publisher {p} message {i}: headers differ");
    let want = payload(p, i);
    assert_eq!(g.payload.len(), want.len(), "publisher {p} message {i}: size");
    assert!(g.payload == want, "publisher {p} message {i}: payload bytes differ");
}

/// Two publishers, eight subscribers (half without headers) spread over the cores by the
/// kernel: each subscriber gets every message intact, in each publisher's order.
#[test]
fn every_subscriber_gets_every_big_payload_intact() {
    const N: usize = 21;
    let server = start(&Limits::default());
    let mut subs: Vec<(bool, Raw)> = (0..8).map(|k| (k % 2 == 0, subscriber(&server, k % 2 == 0, "big.> 1"))).collect();
    let pubs: Vec<thread::JoinHandle<()>> = (0..2)
        .map(|p| {
            let port = server.port;
            thread::spawn(move || {
                let mut c = Raw::connect_with(port, r#"{"verbose":false,"pedantic":false,"headers":true}"#);
                c.s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                c.send_bytes(&commands(p, N, "big.data"));
                // The PONG: everything is on every subscriber's connection.
                flush_quiet(&mut c);
            })
        })
        .collect();
    // Read while they publish: 8 × 2 × ~1.8 MB is queued otherwise.
    let readers: Vec<thread::JoinHandle<()>> = subs
        .drain(..)
        .map(|(with_headers, mut c)| {
            thread::spawn(move || {
                let mut next = [0usize; 2];
                for _ in 0..2 * N {
                    let g = read_msg(&mut c);
                    // Which publisher: the payload's first byte tells (p * 101 + i * 31).
                    let p = (0..2).find(|&p| next[p] < N && payload(p, next[p]) == g.payload).unwrap_or_else(|| panic!("a message that is neither publisher's next (size {})", g.payload.len()));
                    check(&g, p, next[p], with_headers, "big.data");
                    next[p] += 1;
                }
                flush_quiet(&mut c);
            })
        })
        .collect();
    for t in pubs.into_iter().chain(readers) {
        t.join().unwrap();
    }
}

/// A queue group spread over the cores gets each big message once, intact; a plain
/// subscriber beside it gets all of them.
#[test]
fn a_queue_group_gets_each_big_payload_once() {
    const N: usize = 28;
    let server = start(&Limits::default());
    let members: Vec<Raw> = (0..6).map(|_| subscriber(&server, true, "work q 1")).collect();
    let mut all = subscriber(&server, true, "work 1");
    let mut publisher = Raw::connect_with(server.port, r#"{"verbose":false,"pedantic":false,"headers":true}"#);
    publisher.s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let cmds = commands(0, N, "work");
    let pubber = thread::spawn(move || {
        publisher.send_bytes(&cmds);
        flush_quiet(&mut publisher);
    });
    for i in 0..N {
        check(&read_msg(&mut all), 0, i, true, "work");
    }
    pubber.join().unwrap();
    let mut seen = vec![0; N];
    for mut m in members {
        // Each member's messages in publish order, each of them whole.
        let mut last = None;
        for g in until_pong(&mut m) {
            let i = (0..N).find(|&i| payload(0, i) == g.payload && reply(0, i) == g.reply && headers(0, i) == g.headers).expect("a message not sent");
            assert!(last < Some(i), "out of order");
            last = Some(i);
            seen[i] += 1;
        }
    }
    assert_eq!(seen, vec![1; N], "each message once in the group");
}

/// A subscriber that never reads is cut off once big messages fill its max_pending; one
/// that reads, but slower than the publisher sends, gets every message: the publisher
/// waits for it (what is on its way between the cores must not push it over either).
#[test]
fn a_subscriber_that_does_not_read_big_payloads_is_cut_off() {
    const N: usize = 48;
    let limits = Limits { max_pending: Some(8 << 20), ..Limits::default() };
    let server = start(&limits);
    let mut stuck = subscriber(&server, true, "flood 1");
    let reader = subscriber(&server, true, "flood 1");
    let reading = thread::spawn(move || {
        let mut reader = reader;
        let mut got = 0;
        for i in 0..N {
            // About 60 MB/s: a fraction of what the publisher sends over loopback.
            thread::sleep(Duration::from_millis(16));
            let g = read_msg(&mut reader);
            let want = payload(7, 6 + i * SIZES.len());
            assert!(g.payload == want, "message {i} differs");
            got += 1;
        }
        got
    });
    let mut publisher = Raw::connect_with(server.port, r#"{"verbose":false,"pedantic":false}"#);
    publisher.s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // 1 MiB messages only (index 6 of SIZES).
    let mut cmds = Vec::new();
    for i in 0..N {
        let body = payload(7, 6 + i * SIZES.len());
        cmds.extend_from_slice(format!("PUB flood {}\r\n", body.len()).as_bytes());
        cmds.extend_from_slice(&body);
        cmds.extend_from_slice(b"\r\n");
    }
    publisher.send_bytes(&cmds);
    flush_quiet(&mut publisher);
    assert_eq!(reading.join().unwrap(), N);
    // The stuck one is closed: what it finds is some messages, then the end.
    let _ = stuck.expect_closed();
}
