//! Thread-per-core tests: natsu runs with `--cores 2`, and each core accepts its own
//! connections (SO_REUSEPORT), so a test cannot pick which core a connection lands on. Each
//! test therefore opens many connections (16 subscribers, several publishers, or 50 fresh
//! pairs) so that both cores, and every path between them, are surely exercised:
//! deliveries across cores, queue groups across cores (exactly once server-wide), one
//! publisher's order kept on every subscriber, interest (SUB, UNSUB) that every core honours
//! once the subscriber's PING has been answered, and a reply inbox subscribed in the same
//! write as its request, which the responder's core must know by the time it answers.
//!
//! With `NATSU_TEST_TARGET=reference` the same tests run against `nats-server` (which has no
//! `--cores`; `common::Server` drops the flag), so they assert only what the reference does.
//! All I/O is raw protocol over loopback; every wait is bounded by [`WAIT`], and ordering
//! between connections comes from PING/PONG round trips, never from sleeps.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Limits, Raw, Server};

/// Upper bound on any wait for messages in these tests.
const WAIT: Duration = Duration::from_secs(30);

/// natsu on two cores (the reference ignores the flag).
fn start() -> Server {
    Server::with(&Limits::default(), &["--cores", "2"])
}

/// A raw connection that has finished CONNECT (PING/PONG done).
fn connect(server: &Server) -> Raw {
    Raw::connect_with(
        server.port,
        r#"{"verbose":false,"pedantic":false,"echo":true}"#,
    )
}

/// `n` connections, each subscribed (sid 1) to the subject `sub_line(i)` gives (for example
/// `"fan.x"` or `"work q"`), with the SUB acknowledged by a PING/PONG round trip.
fn subscribers(server: &Server, n: usize, sub_line: impl Fn(usize) -> String) -> Vec<Raw> {
    (0..n)
        .map(|i| {
            let mut c = connect(server);
            c.send(&format!("SUB {} 1\r\n", sub_line(i)));
            assert_eq!(c.flush(), "", "unexpected reply to SUB");
            c
        })
        .collect()
}

/// One PUB command.
fn pub_cmd(subject: &str, payload: &str) -> String {
    format!("PUB {subject} {}\r\n{payload}\r\n", payload.len())
}

/// One PUB command with a reply subject.
fn pub_cmd_reply(subject: &str, reply: &str, payload: &str) -> String {
    format!("PUB {subject} {reply} {}\r\n{payload}\r\n", payload.len())
}

/// Send `cmds` in writes of up to 64 KiB, then round trip a PING so that the server has
/// processed every one of them.
fn publish_all(c: &mut Raw, cmds: impl Iterator<Item = String>) {
    let mut batch = String::new();
    for cmd in cmds {
        batch.push_str(&cmd);
        if batch.len() >= 64 * 1024 {
            c.send(&batch);
            batch.clear();
        }
    }
    c.send(&batch);
    assert_eq!(c.flush(), "", "unexpected reply to PUB");
}

/// A delivered message: the fields of one `MSG`.
#[derive(Debug)]
struct Msg {
    subject: String,
    sid: String,
    reply: Option<String>,
    payload: String,
}

/// What the parser found at the front of a connection's buffer.
enum Frame {
    Msg(Msg),
    Pong,
    /// Not a whole frame yet: read more.
    Partial,
}

/// Take one whole frame from the front of `c.buf` (starting at `*pos`), answering server
/// PINGs on the way. `-ERR` or anything unknown fails the test.
fn next_frame(c: &mut Raw, pos: &mut usize) -> Frame {
    loop {
        let rest = &c.buf[*pos..];
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Frame::Partial;
        };
        let line = String::from_utf8_lossy(&rest[..eol]).into_owned();
        match line.as_str() {
            "PONG" => {
                *pos += eol + 2;
                return Frame::Pong;
            }
            "PING" => {
                *pos += eol + 2;
                c.send("PONG\r\n");
                continue;
            }
            "+OK" => {
                *pos += eol + 2;
                continue;
            }
            _ => {}
        }
        let args: Vec<&str> = line.split(' ').collect();
        assert!(
            args[0] == "MSG" && (args.len() == 4 || args.len() == 5),
            "unexpected line from server: {line:?}"
        );
        let size: usize = args[args.len() - 1].parse().expect("MSG size");
        let start = eol + 2;
        if rest.len() < start + size + 2 {
            return Frame::Partial;
        }
        assert_eq!(
            &rest[start + size..start + size + 2],
            b"\r\n",
            "payload not ended by CRLF"
        );
        let msg = Msg {
            subject: args[1].to_string(),
            sid: args[2].to_string(),
            reply: (args.len() == 5).then(|| args[3].to_string()),
            payload: String::from_utf8_lossy(&rest[start..start + size]).into_owned(),
        };
        *pos += start + size + 2;
        return Frame::Msg(msg);
    }
}

/// Read from the socket into `c.buf`, waiting at most `timeout`. False if nothing arrived.
fn read_some(c: &mut Raw, timeout: Duration) -> bool {
    use std::io::Read;
    c.s.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .unwrap();
    let mut chunk = [0u8; 64 * 1024];
    match c.s.read(&mut chunk) {
        Ok(0) => panic!("server closed the connection"),
        Ok(n) => {
            c.buf.extend_from_slice(&chunk[..n]);
            true
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            false
        }
        Err(e) => panic!("read: {e}"),
    }
}

/// Parse every whole frame in `c.buf` into `out`; stop early (leaving the rest buffered)
/// after a PONG if `stop_at_pong`. True if a PONG was seen.
fn parse_into(c: &mut Raw, out: &mut Vec<Msg>, stop_at_pong: bool) -> bool {
    let mut pos = 0;
    let mut pong = false;
    loop {
        match next_frame(c, &mut pos) {
            Frame::Msg(m) => out.push(m),
            Frame::Pong => {
                pong = true;
                if stop_at_pong {
                    break;
                }
            }
            Frame::Partial => break,
        }
    }
    c.buf.drain(..pos);
    pong
}

/// Read until `done(messages so far)` holds; false if it still does not after [`WAIT`].
/// `done` is asked again at least every 200 ms even when nothing arrives.
fn recv_until(c: &mut Raw, out: &mut Vec<Msg>, mut done: impl FnMut(&[Msg]) -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        parse_into(c, out, false);
        if done(out) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        read_some(c, left.min(Duration::from_millis(200)));
    }
}

/// Read exactly `n` messages, failing after [`WAIT`].
fn recv(c: &mut Raw, n: usize) -> Vec<Msg> {
    let mut out = Vec::with_capacity(n);
    let done = recv_until(c, &mut out, |m| m.len() >= n);
    assert!(done, "timed out with {} of {n} messages", out.len());
    out
}

/// Nothing beyond what a test expected reached subscriber `k`.
fn expect_no_more(c: &mut Raw, k: usize) {
    let extra = drain(c);
    assert!(extra.is_empty(), "subscriber {k}: {} extra messages", extra.len());
}

/// Round trip a PING and return the messages that arrived before the PONG.
fn drain(c: &mut Raw) -> Vec<Msg> {
    c.send("PING\r\n");
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while !parse_into(c, &mut out, true) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no PONG within {WAIT:?}");
        read_some(c, left.min(Duration::from_millis(200)));
    }
    out
}

/// The payload of `m` read as a number.
fn number(m: &Msg) -> usize {
    m.payload
        .parse()
        .unwrap_or_else(|_| panic!("payload is not a number: {m:?}"))
}

#[test]
fn every_subscriber_gets_every_message_across_cores() {
    const SUBS: usize = 16;
    const PUBS: usize = 8;
    const EACH: usize = 200;
    let server = start();
    // Literal and wildcard subscriptions that all match "fan.x".
    let patterns = ["fan.x", "fan.*", "fan.>"];
    let subs = subscribers(&server, SUBS, |i| patterns[i % patterns.len()].to_string());
    let pubs: Vec<Raw> = (0..PUBS).map(|_| connect(&server)).collect();

    thread::scope(|s| {
        for (p, mut c) in pubs.into_iter().enumerate() {
            s.spawn(move || {
                publish_all(
                    &mut c,
                    (0..EACH).map(|i| pub_cmd("fan.x", &format!("{p}:{i}"))),
                )
            });
        }
        for (k, mut c) in subs.into_iter().enumerate() {
            s.spawn(move || {
                let got = recv(&mut c, PUBS * EACH);
                // Every publisher's messages arrive complete and in that publisher's order.
                let mut next = [0usize; PUBS];
                for m in &got {
                    assert_eq!((m.subject.as_str(), m.sid.as_str()), ("fan.x", "1"));
                    let (p, i) = m.payload.split_once(':').expect("payload p:i");
                    let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
                    assert_eq!(i, next[p], "subscriber {k}: publisher {p} out of order");
                    next[p] += 1;
                }
                expect_no_more(&mut c, k);
            });
        }
    });
}

#[test]
fn queue_group_across_cores_delivers_each_message_once() {
    queue_group_across_cores(4);
}

/// With a single publisher its core's members compete with the other core's: a pick that
/// weighed a remote core as one member would give each local member about 9 times the share
/// of a remote one.
#[test]
fn queue_group_shares_are_even_with_one_publisher() {
    queue_group_across_cores(1);
}

/// 16 members, 10,000 messages from `PUBS` publishers: each message reaches exactly one
/// member, and every member gets about its fair share.
#[allow(non_snake_case)]
fn queue_group_across_cores(PUBS: usize) {
    const MEMBERS: usize = 16;
    const N: usize = 10_000;
    let server = start();
    let members = subscribers(&server, MEMBERS, |_| "work q".to_string());
    let pubs: Vec<Raw> = (0..PUBS).map(|_| connect(&server)).collect();
    // Messages received by all members together; every member reads until it reaches N.
    let total = AtomicUsize::new(0);

    let per_member: Vec<Vec<usize>> = thread::scope(|s| {
        for (p, mut c) in pubs.into_iter().enumerate() {
            let ids = (p * N / PUBS)..((p + 1) * N / PUBS);
            s.spawn(move || publish_all(&mut c, ids.map(|i| pub_cmd("work", &i.to_string()))));
        }
        let readers: Vec<_> = members
            .into_iter()
            .map(|mut c| {
                let total = &total;
                s.spawn(move || {
                    let mut got = Vec::new();
                    let mut counted = 0;
                    let done = recv_until(&mut c, &mut got, |m| {
                        total.fetch_add(m.len() - counted, Ordering::SeqCst);
                        counted = m.len();
                        total.load(Ordering::SeqCst) >= N
                    });
                    let all = total.load(Ordering::SeqCst);
                    assert!(
                        done,
                        "timed out: the members received {all} of {N} messages in all"
                    );
                    // Anything still on its way to this member counts too.
                    got.extend(drain(&mut c));
                    got.iter().map(number).collect::<Vec<usize>>()
                })
            })
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });

    let mut seen = vec![0u32; N];
    for ids in &per_member {
        for &i in ids {
            assert!(i < N, "unknown message {i}");
            seen[i] += 1;
        }
    }
    let lost = seen.iter().filter(|&&n| n == 0).count();
    let doubled = seen.iter().filter(|&&n| n > 1).count();
    assert_eq!(
        (lost, doubled),
        (0, 0),
        "messages lost, messages delivered more than once"
    );
    let counts: Vec<usize> = per_member.iter().map(Vec::len).collect();
    // The reference picks a member at random, so each of the 16 gets about 625 of 10,000
    // (binomial spread about 24). natsu must spread as evenly across cores: weighing a core
    // by anything but its member count would starve the members on the busier core.
    let fair = N / MEMBERS;
    assert!(
        counts.iter().all(|&n| n > fair / 2 && n < fair * 2),
        "members' shares are far from even ({fair} each): {counts:?}"
    );
}

#[test]
fn one_publishers_order_is_kept_on_every_subscriber() {
    const SUBS: usize = 16;
    const N: usize = 10_000;
    let server = start();
    let subs = subscribers(&server, SUBS, |_| "seq".to_string());
    let mut publisher = connect(&server);

    thread::scope(|s| {
        s.spawn(move || {
            publish_all(
                &mut publisher,
                (0..N).map(|i| pub_cmd("seq", &i.to_string())),
            )
        });
        for (k, mut c) in subs.into_iter().enumerate() {
            s.spawn(move || {
                let got = recv(&mut c, N);
                for (i, m) in got.iter().enumerate() {
                    assert_eq!(number(m), i, "subscriber {k}: message {i} out of order");
                }
                expect_no_more(&mut c, k);
            });
        }
    });
}

#[test]
fn interest_is_visible_on_every_core_after_pong() {
    const ROUNDS: usize = 50;
    let server = start();
    for k in 0..ROUNDS {
        // Both connections are up before the SUB, so B's core must learn of it afterwards.
        let mut a = connect(&server);
        let mut b = connect(&server);
        // Literal, wildcard and queue interest in turn.
        let sub = match k % 3 {
            0 => format!("interest.{k}.x"),
            1 => format!("interest.{k}.*"),
            _ => format!("interest.{k}.x q{k}"),
        };
        a.send(&format!("SUB {sub} 1\r\n"));
        assert_eq!(a.flush(), "");
        b.send(&pub_cmd(&format!("interest.{k}.x"), "hi"));
        a.expect(&format!("MSG interest.{k}.x 1 2\r\nhi\r\n"));
    }
}

#[test]
fn a_publishers_pong_means_delivered_on_every_core() {
    // nats-server queues a message to every subscriber's connection while it handles the
    // PUB, so once the publisher has its PONG, a subscriber that leaves still gets it (the
    // client's drain relies on this). Across cores the message travels in a batch; the
    // publisher's PONG must wait until the other core has handled it.
    const PAIRS: usize = 12;
    const ROUNDS: usize = 25;
    let server = start();
    for p in 0..PAIRS {
        let subject = format!("flushed.{p}");
        let mut sub = connect(&server);
        let mut publisher = connect(&server);
        for k in 0..ROUNDS {
            sub.send(&format!("SUB {subject} {k}\r\n"));
            assert_eq!(sub.flush(), "", "unexpected reply to SUB");
            publisher.send(&pub_cmd(&subject, &k.to_string()));
            assert_eq!(publisher.flush(), "", "unexpected reply to PUB");
            // Leave right after the publisher's PONG: the message must come first.
            sub.send(&format!("UNSUB {k}\r\n"));
            let got = sub.flush();
            let want = format!("MSG {subject} {k} {}\r\n{k}\r\n", k.to_string().len());
            assert_eq!(got, want, "pair {p}, round {k}: the message published before the UNSUB");
        }
    }
}

#[test]
fn unsubscribe_is_honoured_on_every_core_after_pong() {
    const ROUNDS: usize = 20;
    let server = start();
    for k in 0..ROUNDS {
        let gone = format!("gone.{k}");
        let end = format!("sentinel.{k}");
        let msg = |subject: &str, sid: u32, payload: &str| {
            format!("MSG {subject} {sid} {}\r\n{payload}\r\n", payload.len())
        };
        // Two subscribers to the same subject (on the same core or not), each also
        // subscribed to a sentinel that marks the end of what B sent.
        let mut a: Vec<Raw> = (0..2)
            .map(|_| {
                let mut c = connect(&server);
                c.send(&format!("SUB {gone} 1\r\nSUB {end} 9\r\n"));
                assert_eq!(c.flush(), "");
                c
            })
            .collect();
        let mut b = connect(&server);
        b.send(&pub_cmd(&gone, "one"));
        for c in a.iter_mut() {
            c.expect(&msg(&gone, 1, "one"));
        }

        // The first subscriber leaves; the subject still has interest from the second.
        a[0].send("UNSUB 1\r\n");
        assert_eq!(a[0].flush(), "");
        b.send(&(pub_cmd(&gone, "two") + &pub_cmd(&end, "end")));
        a[0].expect(&msg(&end, 9, "end"));
        a[1].expect(&(msg(&gone, 1, "two") + &msg(&end, 9, "end")));

        // The second leaves too: now nobody gets `gone`.
        a[1].send("UNSUB 1\r\n");
        assert_eq!(a[1].flush(), "");
        b.send(&(pub_cmd(&gone, "three") + &pub_cmd(&end, "end")));
        for c in a.iter_mut() {
            c.expect(&msg(&end, 9, "end"));
            assert_eq!(c.flush(), "", "nothing may follow the sentinel");
        }
    }
}

#[test]
fn reply_subject_interest_travels_with_the_request() {
    const ROUNDS: usize = 50;
    let server = start();
    for k in 0..ROUNDS {
        let mut responder = connect(&server);
        responder.send("SUB service 1\r\n");
        assert_eq!(responder.flush(), "");
        // What every client library's request does: subscribe to the reply inbox and
        // publish the request in one write, with no round trip between. The server handles
        // the SUB first, so the responder's reply must find the requester, whichever core
        // each of them is on.
        let mut requester = connect(&server);
        let inbox = format!("_INBOX.{k}");
        requester.send(&format!(
            "SUB {inbox}.* 7\r\n{}",
            pub_cmd_reply("service", &format!("{inbox}.1"), "ask")
        ));
        let request = recv(&mut responder, 1);
        assert_eq!(
            request[0].reply.as_deref(),
            Some(format!("{inbox}.1").as_str())
        );
        assert_eq!(request[0].payload, "ask");
        responder.send(&pub_cmd(&format!("{inbox}.1"), "answer"));
        requester.expect(&format!("MSG {inbox}.1 7 6\r\nanswer\r\n"));
    }
}
