//! Bounded memory and isolation on every path (issue 15): a client that never reads cannot
//! grow the broker's memory through any reply (PONG, +OK), a consumer that reads steadily
//! but too slowly is cut off once one flush outlasts write_deadline, and consumers that never
//! read slow no one but the publisher feeding them, on any core.
//!
//! Each test runs natsu with `--cores 2` (the reference, with `NATSU_TEST_TARGET=reference`,
//! has no such flag; `common::Server` drops it). The tests measure memory and time, so they
//! run one at a time ([`serial`]) rather than measure each other on a small machine. Every
//! read and write has a timeout and every loop a bound in count and time. Where a loop sleeps
//! it paces a measurement or a publisher's rate; ordering comes from PING/PONG round trips
//! and from a sentinel message published last.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::{find, Limits, Raw, Server};

/// CONNECT as real clients send it (the reference turns verbose and pedantic on when left out).
const QUIET: &str = r#"{"verbose":false,"pedantic":false}"#;
const VERBOSE: &str = r#"{"verbose":true,"pedantic":false}"#;

/// natsu on two cores; ignored by the reference.
const CORES: &[&str] = &["--cores", "2"];

/// SO_RCVBUF of a client that never reads: the kernel then holds only a few KiB for it, and
/// the rest waits in the broker.
const SMALL_RCVBUF: usize = 4096;

/// Longest any single read waits.
const WAIT: Duration = Duration::from_secs(10);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Hold while a test runs: these tests measure time and memory.
fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A client that has finished CONNECT (its PING answered), with a receive buffer of
/// `rcvbuf` bytes if given (set before connecting, so the window never grows past it).
fn dial(port: u16, connect: &str, rcvbuf: Option<usize>) -> Raw {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n).expect("SO_RCVBUF");
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    sock.connect_timeout(&addr.into(), WAIT).expect("connect");
    let s: TcpStream = sock.into();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut r = Raw { s, buf: Vec::new(), info: String::new() };
    r.info = r.read_line();
    assert!(r.info.starts_with("INFO "), "expected INFO, got {:?}", r.info);
    r.send(&format!("CONNECT {connect}\r\nPING\r\n"));
    if connect == VERBOSE {
        r.expect("+OK\r\n");
    }
    r.expect("PONG\r\n");
    r
}

/// Read until `PONG`, for at most `limit`; what came before it, or None if it did not come
/// (or the connection ended).
fn until_pong(r: &mut Raw, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = find(&r.buf, b"PONG\r\n") {
            let before: Vec<u8> = r.buf.drain(..i + 6).take(i).collect();
            return Some(String::from_utf8_lossy(&before).into_owned());
        }
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        r.s.set_read_timeout(Some(left)).unwrap();
        match r.s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => r.buf.extend_from_slice(&chunk[..n]),
            Err(e) if retry(&e) => {}
            Err(_) => return None,
        }
    }
}

/// Round trip a PING: the connection is served and in order. The reference PINGs each
/// client about two seconds after it connects; such a PING is answered, anything else fails.
fn round_trip(r: &mut Raw, who: &str) {
    r.send("PING\r\n");
    let before = until_pong(r, WAIT).unwrap_or_else(|| panic!("{who} got no PONG within {WAIT:?}"));
    for line in before.split_terminator("\r\n") {
        assert_eq!(line, "PING", "{who} got something besides its PONG: {before:?}");
        r.send("PONG\r\n");
    }
}

/// A read or write that timed out or was interrupted: try again.
fn retry(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), WouldBlock | TimedOut | Interrupted)
}

// ---------------------------------------------------------------------------------------
// 1. replies to a client that never reads

/// How a flood ended.
#[derive(Debug)]
struct Flood {
    /// Bytes the broker took before the end.
    sent: usize,
    /// The error that stopped the writer (EPIPE or ECONNRESET once the broker cut it off).
    error: Option<std::io::ErrorKind>,
    elapsed: Duration,
}

/// Most the flooding client sends: every reply to it is kept if nothing bounds them, so a
/// broker without a bound grows by tens of MiB, far past [`MAX_RSS_GROWTH_KIB`].
const FLOOD_BYTES: usize = 128 << 20;
/// Longest a flood may run.
const FLOOD_TIME: Duration = Duration::from_secs(20);
/// max_pending for the flood tests: small, so that the replies reach it quickly.
const FLOOD_MAX_PENDING: u64 = 1 << 20;
/// How much the broker's resident memory may grow during a flood.
const MAX_RSS_GROWTH_KIB: u64 = 24 * 1024;

/// A client sends CONNECT `connect` and then `unit` over and over, never reading what the
/// broker answers to each. The broker must cut it off as a slow consumer (without an -ERR)
/// once the answers pass max_pending, its memory must stay bounded meanwhile, and another
/// client must be answered throughout.
fn flood_without_reading(connect: &str, unit: &[u8], what: &str) {
    let _one = serial();
    let limits = Limits { max_pending: Some(FLOOD_MAX_PENDING), ..Default::default() };
    let srv = Server::with(&limits, CORES);
    let mut bystander = dial(srv.port, QUIET, None);
    let mut flooder = dial(srv.port, connect, Some(SMALL_RCVBUF));
    let rss_before = srv.rss_kib();
    assert!(rss_before > 0, "cannot read the broker's RSS");

    let mut w = flooder.s.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let chunk = unit.repeat(64 * 1024 / unit.len());
    let writer = thread::spawn(move || {
        let start = Instant::now();
        let mut sent = 0;
        while sent < FLOOD_BYTES && start.elapsed() < FLOOD_TIME {
            match w.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if retry(&e) => {}
                Err(e) => return Flood { sent, error: Some(e.kind()), elapsed: start.elapsed() },
            }
        }
        Flood { sent, error: None, elapsed: start.elapsed() }
    });

    // Sample the broker's memory while the flood lasts, and have the bystander's PINGs
    // answered all along (each within WAIT).
    let (mut max_rss, mut worst_pong, mut pings) = (rss_before, Duration::ZERO, 0);
    let deadline = Instant::now() + FLOOD_TIME + WAIT;
    while !writer.is_finished() && Instant::now() < deadline {
        max_rss = max_rss.max(srv.rss_kib());
        let t = Instant::now();
        round_trip(&mut bystander, "the bystander");
        worst_pong = worst_pong.max(t.elapsed());
        pings += 1;
        thread::sleep(Duration::from_millis(10));
    }
    assert!(writer.is_finished(), "the flooding writer is stuck");
    let flood = writer.join().unwrap();
    max_rss = max_rss.max(srv.rss_kib());

    // What reached the flooder before the end: only replies, never an -ERR. If its writes
    // all went through, the end of the stream must come after a bounded amount.
    flooder.s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (mut received, mut ended, mut chunk) = (std::mem::take(&mut flooder.buf), false, vec![0u8; 1 << 16]);
    while received.len() < 16 << 20 {
        match flooder.s.read(&mut chunk) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if retry(&e) => break,
            Err(_) => {
                ended = true;
                break;
            }
        }
    }
    eprintln!(
        "{what}: {} bytes taken in {:?}, stopped by {:?}; {} bytes came back, stream ended: {ended}; \
         broker RSS {rss_before} -> max {max_rss} KiB; bystander: {pings} PINGs, slowest PONG {worst_pong:?}",
        flood.sent,
        flood.elapsed,
        flood.error,
        received.len()
    );
    let cut = matches!(
        flood.error,
        Some(
            std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
        )
    ) || ended;
    assert!(cut, "{what}: the client that never reads was not cut off ({flood:?}, {} bytes read back)", received.len());
    assert!(find(&received, b"-ERR").is_none(), "{what}: a slow consumer is cut off without an -ERR");
    assert!(
        max_rss - rss_before < MAX_RSS_GROWTH_KIB,
        "{what}: the broker's RSS grew from {rss_before} to {max_rss} KiB for a client that never reads"
    );
    // The broker is still there for others.
    round_trip(&mut dial(srv.port, QUIET, None), "a new client");
    round_trip(&mut bystander, "the bystander");
}

/// PONGs count against max_pending: a PING flood that never reads its PONGs is cut off.
#[test]
fn ping_flood_without_reading_is_cut_off() {
    flood_without_reading(QUIET, b"PING\r\n", "PING flood");
}

/// +OKs count against max_pending: verbose PUBs that never read their +OKs are cut off.
#[test]
fn verbose_pub_flood_without_reading_is_cut_off() {
    flood_without_reading(VERBOSE, b"PUB a 1\r\nx\r\n", "verbose PUB flood");
}

// ---------------------------------------------------------------------------------------
// 2. write_deadline bounds a whole flush

/// The slow subscriber reads [`SLOW_READ`] bytes every [`SLOW_READ_PAUSE`], at most 3.2 MB/s:
/// its window opens every few milliseconds, so each single send to it completes well within
/// the deadline, but the [`DEADLINE_BACKLOG`] queued for it take five seconds or more.
const SLOW_READ: usize = 32 * 1024;
const SLOW_READ_PAUSE: Duration = Duration::from_millis(10);
/// Bytes published to it: more than the kernel buffers of both ends hold (the broker's send
/// buffer grows to 4 MiB here), and less than half of max_pending (64 MiB by default), so
/// neither max_pending nor a stall of the publisher comes into it.
const DEADLINE_BACKLOG: usize = 16 << 20;
/// How long it may take the broker to cut the slow subscriber off with write_deadline 1 s:
/// generous, it only has to happen. (It happens within about two seconds here.)
const DEADLINE_CUT_WITHIN: Duration = Duration::from_secs(15);

/// write_deadline bounds a whole flush to a connection, not each partial send: a subscriber
/// that reads steadily but too slowly for what is queued for it is a slow consumer, cut off,
/// while its publisher stays. A broker that times each send alone keeps it and delivers the
/// whole backlog.
///
/// The cut is seen from the subscriber's side as the end of the stream, after what the broker
/// had already handed to the kernel.
#[test]
fn write_deadline_bounds_a_whole_flush() {
    let _one = serial();
    let limits = Limits { write_deadline: Some(1), ..Default::default() };
    let srv = Server::with(&limits, CORES);
    let mut sub = dial(srv.port, QUIET, None);
    sub.send("SUB a 1\r\n");
    round_trip(&mut sub, "the subscriber");

    let mut publisher = dial(srv.port, QUIET, None);
    let payload = "x".repeat(4096);
    let msg = format!("PUB a {}\r\n{payload}\r\n", payload.len());
    let start = Instant::now();
    publisher.s.set_write_timeout(Some(WAIT)).unwrap();
    publisher.send(&msg.repeat(DEADLINE_BACKLOG / payload.len()));
    round_trip(&mut publisher, "the publisher");

    sub.s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut chunk = vec![0u8; SLOW_READ];
    let mut received = sub.buf.len();
    let cut_after = loop {
        match sub.s.read(&mut chunk) {
            Ok(0) => break Some(start.elapsed()),
            Ok(n) => received += n,
            Err(e) if retry(&e) => {}
            Err(_) => break Some(start.elapsed()),
        }
        // All of it (MSG lines included) came: the broker never cut it off.
        if received >= DEADLINE_BACKLOG || start.elapsed() > DEADLINE_CUT_WITHIN {
            break None;
        }
        thread::sleep(SLOW_READ_PAUSE);
    };
    eprintln!("slow subscriber: cut off after {cut_after:?}, having received {received} bytes of a {DEADLINE_BACKLOG}-byte backlog");
    assert!(
        cut_after.is_some(),
        "the slow subscriber was not cut off with write_deadline 1s: it received {received} bytes in {:?}",
        start.elapsed()
    );
    // The publisher was not the one cut off.
    round_trip(&mut publisher, "the publisher");
}

// ---------------------------------------------------------------------------------------
// 3. slow consumers slow no one else

/// Rounds of the isolation test, one per placement of the connections on the cores
/// ([`PLANS`]).
const ROUNDS: usize = 5;
/// Subscribers on `a` that never read, and fast ones on `b`.
const SLOW: usize = 4;
const FAST: usize = 4;
/// How long the publisher floods `a`, and with what.
const FLOOD: Duration = Duration::from_secs(3);
const FLOOD_PAYLOAD: usize = 64 * 1024;
/// `b`'s publisher sends this many messages every [`B_PAUSE`] (about 2,000 a second).
const B_BATCH: usize = 10;
const B_PAUSE: Duration = Duration::from_millis(5);
/// Longest a new client may wait for the PONG after its CONNECT and SUB during the flood.
const MAX_PONG: Duration = Duration::from_secs(1);
/// Longest a `b` subscriber may go without a message during the flood.
const MAX_GAP: Duration = Duration::from_secs(1);
/// Fewest messages each `b` subscriber must get during the flood (nominally ~6,000).
const MIN_B: usize = 500;
/// Time between new clients during the flood.
const PROBE_PAUSE: Duration = Duration::from_millis(50);

/// What one `b` subscriber saw: each message's sequence number and when it was read.
type Arrivals = Vec<(u64, Instant)>;

/// Read `MSG b` until the sentinel `end` (published last), noting when each arrived.
fn read_b(mut r: Raw) -> Arrivals {
    r.s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let give_up = Instant::now() + FLOOD + WAIT * 2;
    let (mut got, mut pos, mut chunk) = (Arrivals::new(), 0, vec![0u8; 1 << 16]);
    loop {
        let now = Instant::now();
        while let Some(eol) = find(&r.buf[pos..], b"\r\n") {
            let line = String::from_utf8_lossy(&r.buf[pos..pos + eol]).into_owned();
            if line == "PING" {
                r.send("PONG\r\n");
                pos += eol + 2;
                continue;
            }
            assert!(line.starts_with("MSG b 1 "), "unexpected line {line:?} on a `b` subscriber");
            let len: usize = line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("MSG size");
            let start = pos + eol + 2;
            if r.buf.len() < start + len + 2 {
                break;
            }
            let payload = &r.buf[start..start + len];
            if payload == b"end" {
                return got;
            }
            let seq = std::str::from_utf8(payload).ok().and_then(|p| p.parse().ok()).expect("a sequence number");
            got.push((seq, now));
            pos = start + len + 2;
        }
        r.buf.drain(..pos);
        pos = 0;
        assert!(Instant::now() < give_up, "a `b` subscriber never got the end ({} messages)", got.len());
        match r.s.read(&mut chunk) {
            Ok(0) => panic!("a `b` subscriber was cut off after {} messages", got.len()),
            Ok(n) => r.buf.extend_from_slice(&chunk[..n]),
            Err(e) if retry(&e) => {}
            Err(e) => panic!("a `b` subscriber was cut off after {} messages: {e}", got.len()),
        }
    }
}

/// Longest time in `[from, to]` without an arrival.
fn longest_gap(arrivals: &Arrivals, from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for &(_, t) in arrivals.iter().filter(|(_, t)| *t >= from && *t <= to) {
        gap = gap.max(t - last);
        last = t;
    }
    gap.max(to.saturating_duration_since(last))
}

/// What one round saw.
struct Round {
    /// Slowest CONNECT + SUB + PING round trip of a new client during the flood.
    worst_pong: Duration,
    probes: usize,
    /// Per `b` subscriber: messages during the flood, longest gap.
    b: Vec<(usize, Duration)>,
    /// 64 KiB messages the flooding publisher got in (into the kernel's buffers at least).
    flooded: usize,
    /// Per slow consumer: bytes it found when read after the flood, and whether the stream
    /// then ended (it had been cut off).
    slow: Vec<(usize, bool)>,
}

/// A connection's part in an isolation round.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    /// Subscribes to `a` and never reads.
    Slow,
    /// Subscribes to `b` and reads all it gets.
    Fast,
    /// Floods `a`.
    FloodPub,
    /// Publishes to `b` at a steady pace.
    BPub,
}
use Part::*;

/// Which connections go to which core (0 or 1) in each round, if the broker hands connections
/// to its cores in turn, as natsu does (each core's acceptor waits in line for the next
/// connection, so one made after another is served lands on the other core); idle
/// connections are made in between where needed. A broker that places connections otherwise
/// gets some other mix each round; the reference has a single process.
const PLANS: [&[(Part, usize)]; ROUNDS] = [
    // the flood and the `b` traffic on different cores, each within its core
    &[(Slow, 0), (Slow, 0), (Slow, 0), (Slow, 0), (FloodPub, 0), (Fast, 1), (Fast, 1), (Fast, 1), (Fast, 1), (BPub, 1)],
    // the flood crosses into the slow ones' core; `b` stays on the other
    &[(Slow, 0), (Slow, 0), (Slow, 0), (Slow, 0), (FloodPub, 1), (Fast, 1), (Fast, 1), (Fast, 1), (Fast, 1), (BPub, 1)],
    // the flood and `b` cross into the same core, through the same mailbox
    &[(Slow, 0), (Slow, 0), (Slow, 0), (Slow, 0), (FloodPub, 1), (Fast, 0), (Fast, 0), (Fast, 0), (Fast, 0), (BPub, 1)],
    // `b` crosses into the core where the flood and the slow ones are
    &[(Slow, 0), (Slow, 0), (Slow, 0), (Slow, 0), (FloodPub, 0), (Fast, 0), (Fast, 0), (Fast, 0), (Fast, 0), (BPub, 1)],
    // everything on both cores
    &[(Slow, 0), (Slow, 1), (Slow, 0), (Slow, 1), (FloodPub, 0), (Fast, 0), (Fast, 1), (Fast, 0), (Fast, 1), (BPub, 1)],
];

impl Round {
    fn line(&self) -> String {
        let b: Vec<String> = self.b.iter().map(|(n, gap)| format!("{n} msgs, gap {gap:.0?}")).collect();
        let slow: Vec<String> =
            self.slow.iter().map(|(n, ended)| format!("{} KiB{}", n >> 10, if *ended { " cut" } else { "" })).collect();
        format!(
            "worst PONG {:.1?} of {} new clients; `b` subscribers: {}; flood: {} messages; slow ones after it: {}",
            self.worst_pong,
            self.probes,
            b.join(", "),
            self.flooded,
            slow.join(", ")
        )
    }
}

fn isolation_round(round: usize) -> Round {
    // max_pending and write_deadline at their defaults (64 MiB, 10 s): the slow ones pass
    // half of it early in the flood, and their publisher is then stalled, for a bounded
    // time. Whether they are cut off during the round (by max_pending) or only after it (by
    // the deadline) is reported, not asserted: it is not what this test is about.
    let srv = Server::with(&Limits::default(), CORES);
    let port = srv.port;
    // Connect in the plan's order, each after the one before is served (its PONG is back).
    let (mut slow, mut fast, mut a_pub, mut b_pub, mut idle) = (Vec::new(), Vec::new(), None, None, Vec::new());
    let mut next_core = 0;
    for &(part, core) in PLANS[round] {
        if core != next_core {
            idle.push(dial(port, QUIET, None));
            next_core = 1 - next_core;
        }
        let c = dial(port, QUIET, (part == Slow).then_some(SMALL_RCVBUF));
        next_core = 1 - next_core;
        match part {
            Slow => slow.push(c),
            Fast => fast.push(c),
            FloodPub => a_pub = Some(c),
            BPub => b_pub = Some(c),
        }
    }
    let (mut a_pub, b_pub) = (a_pub.expect("a flooding publisher"), b_pub.expect("a `b` publisher"));
    assert_eq!((slow.len(), fast.len()), (SLOW, FAST));
    for s in &mut slow {
        s.send("SUB a 1\r\n");
        round_trip(s, "a slow subscriber");
    }
    let fast: Vec<_> = fast
        .into_iter()
        .map(|mut s| {
            s.send("SUB b 1\r\n");
            round_trip(&mut s, "a `b` subscriber");
            thread::spawn(move || read_b(s))
        })
        .collect();

    // `b`'s publisher, at a steady pace until told to stop; `end` last.
    let stop = Arc::new(AtomicBool::new(false));
    let b_pub = {
        let stop = stop.clone();
        let mut p = b_pub;
        thread::spawn(move || {
            let start = Instant::now();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) && start.elapsed() < FLOOD + WAIT {
                let batch: String = (0..B_BATCH).map(|i| format!("PUB b 8\r\n{:08}\r\n", seq + i as u64)).collect();
                p.send(&batch);
                seq += B_BATCH as u64;
                thread::sleep(B_PAUSE);
            }
            p.send("PUB b 3\r\nend\r\n");
            round_trip(&mut p, "`b`'s publisher");
            seq
        })
    };

    // The flood on `a`. Its publisher is stalled while the slow ones are over half their
    // max_pending (for a second or so), so its writes may time out: the clock is looked at
    // between them. It stops wherever it is when the time is up and is not asked
    // for a PONG: a stalled publisher takes long to get through what the kernel holds for it.
    let flood = thread::spawn(move || {
        let mut frame = format!("PUB a {FLOOD_PAYLOAD}\r\n").into_bytes();
        frame.resize(frame.len() + FLOOD_PAYLOAD, b'x');
        frame.extend_from_slice(b"\r\n");
        a_pub.s.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
        let start = Instant::now();
        let (mut written, mut off) = (0usize, 0);
        while start.elapsed() < FLOOD {
            match a_pub.s.write(&frame[off..]) {
                Ok(n) => {
                    written += n;
                    off = (off + n) % frame.len();
                }
                Err(e) if retry(&e) => {}
                Err(e) => panic!("the flooding publisher was cut off: {e}"),
            }
        }
        (start, Instant::now(), written / frame.len(), a_pub)
    });

    // New clients, one after another while the flood lasts: each connects, subscribes and
    // waits for its PONG (at most WAIT; a client left waiting counts as WAIT).
    let (mut worst_pong, mut probes) = (Duration::ZERO, 0);
    while !flood.is_finished() && probes < 1000 {
        let t = Instant::now();
        let mut c =
            Raw { s: TcpStream::connect(("127.0.0.1", port)).expect("connect"), buf: Vec::new(), info: String::new() };
        c.s.set_nodelay(true).unwrap();
        c.send(&format!("CONNECT {QUIET}\r\nSUB probe.{round}.{probes} 1\r\nPING\r\n"));
        let answer = until_pong(&mut c, WAIT);
        worst_pong = worst_pong.max(t.elapsed());
        if let Some(before) = answer {
            assert!(
                before.starts_with("INFO ") && before.ends_with("\r\n"),
                "a new client got {before:?} before its PONG"
            );
        }
        probes += 1;
        thread::sleep(PROBE_PAUSE);
    }
    let (from, to, flooded, a_pub) = flood.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    stop.store(true, Ordering::Relaxed);
    // Which slow ones were cut off by now: read each at full speed, all at once, until the end
    // of the stream or a second of silence.
    let slow: Vec<_> = slow
        .into_iter()
        .map(|mut s| {
            thread::spawn(move || {
                s.s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let (mut n, mut chunk) = (s.buf.len(), vec![0u8; 1 << 16]);
                loop {
                    match s.s.read(&mut chunk) {
                        Ok(0) => return (n, true),
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) if retry(&e) => return (n, false),
                        Err(_) => return (n, true),
                    }
                }
            })
        })
        .collect();
    let slow: Vec<(usize, bool)> = slow.into_iter().map(|h| h.join().unwrap()).collect();
    drop((a_pub, idle));
    let published = b_pub.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    let b = fast
        .into_iter()
        .map(|h| {
            let arrivals = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            let seqs: Vec<u64> = arrivals.iter().map(|(s, _)| *s).collect();
            assert!(seqs.iter().copied().eq(0..published), "a `b` subscriber lost or reordered messages");
            let during = arrivals.iter().filter(|(_, t)| *t >= from && *t <= to).count();
            (during, longest_gap(&arrivals, from, to))
        })
        .collect();
    Round { worst_pong, probes, b, flooded, slow }
}

/// Consumers that never read stall only the publisher feeding them, and that for at most
/// about a second at a time: while a publisher floods them with 64 KiB messages, a new client
/// gets its PONG after CONNECT and SUB within [`MAX_PONG`], and subscribers of another subject
/// (another publisher) get its messages with no gap over [`MAX_GAP`], on whichever core each
/// connection landed.
#[test]
fn slow_consumers_slow_no_one_else() {
    let _one = serial();
    let rounds: Vec<Round> = (0..ROUNDS).map(isolation_round).collect();
    let report: String = rounds.iter().enumerate().map(|(i, r)| format!("round {i}: {}\n", r.line())).collect();
    eprint!("{report}");
    let worst_pong = rounds.iter().map(|r| r.worst_pong).max().unwrap();
    let worst_gap = rounds.iter().flat_map(|r| r.b.iter().map(|b| b.1)).max().unwrap();
    let fewest = rounds.iter().flat_map(|r| r.b.iter().map(|b| b.0)).min().unwrap();
    eprintln!("worst PONG {worst_pong:?}, worst `b` gap {worst_gap:?}, fewest `b` messages during a flood {fewest}");
    assert!(worst_pong <= MAX_PONG, "a new client waited {worst_pong:?} for its PONG during the flood:\n{report}");
    assert!(worst_gap <= MAX_GAP, "a `b` subscriber went {worst_gap:?} without a message during the flood:\n{report}");
    assert!(fewest >= MIN_B, "a `b` subscriber got only {fewest} messages during the flood:\n{report}");
}
