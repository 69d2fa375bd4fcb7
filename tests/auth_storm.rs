//! Issue 15: bcrypt authentication under a reconnect storm. Eight clients with the same bcrypt
//! user (cost 11) connect and disconnect in a loop, a third of them hanging up right after
//! CONNECT (reset or plain close), while a steady client round-trips PINGs. No handshake may
//! end in 'Authentication Timeout', and the steady client must keep getting quick answers.
//! Runs against the reference too (`NATSU_TEST_TARGET=reference`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Raw, Server};

/// As in the issue: eight clients, cost 11 (~185 ms a check on the machine it was seen on).
const STORM_CLIENTS: usize = 8;
const BCRYPT_COST: u32 = 11;
const STORM_FOR: Duration = Duration::from_secs(10);
/// A p99 bound for the steady client that a loaded 2-core CI machine still meets; the
/// figures measured are printed (the issue asks for sub-millisecond round trips).
const STEADY_P99_MAX: Duration = Duration::from_millis(20);

const STORM_PASS: &str = "storm-pass";

/// What the storm clients saw.
#[derive(Default)]
struct Tally {
    passed: AtomicUsize,
    refused: AtomicUsize,
    timeouts: AtomicUsize,
    hung_up: AtomicUsize,
    /// Anything else the server answered (or a close without an answer).
    other: Mutex<Vec<String>>,
}

/// Read one CRLF-terminated line; None when the connection closes first (or the read fails).
fn read_line(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = common::find(buf, b"\r\n") {
            let line: Vec<u8> = buf.drain(..i + 2).collect();
            return Some(String::from_utf8_lossy(&line).into_owned());
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The password the storm clients send.
#[derive(Clone, Copy)]
enum Pass {
    Same(&'static str),
    /// A new one every time, as a guesser would: no check can be shared or remembered.
    EachDifferent,
}

/// One storm client: connect, CONNECT + PING, then (by round) reset, close, or wait for the
/// answer; until `deadline`.
fn storm(port: u16, pass: Pass, id: usize, deadline: Instant, tally: &Tally) {
    let mut round = id;
    while Instant::now() < deadline {
        round += 1;
        let pass = match pass {
            Pass::Same(p) => p.to_string(),
            Pass::EachDifferent => format!("guess-{id}-{round}"),
        };
        let connect = format!("CONNECT {{\"verbose\":false,\"pedantic\":false,\"user\":\"storm\",\"pass\":\"{pass}\"}}\r\nPING\r\n");
        let mut s = match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => s,
            Err(e) => {
                tally.other.lock().unwrap().push(format!("connect: {e}"));
                continue;
            }
        };
        s.set_nodelay(true).unwrap();
        // Well past the 2 s auth timeout: a check that is late shows up as a timeout answer.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        match read_line(&mut s, &mut buf) {
            Some(l) if l.starts_with("INFO ") => {}
            got => {
                tally.other.lock().unwrap().push(format!("instead of INFO: {got:?}"));
                continue;
            }
        }
        if s.write_all(connect.as_bytes()).is_err() {
            tally.other.lock().unwrap().push("CONNECT not sent".into());
            continue;
        }
        match round % 3 {
            // Reset: SO_LINGER 0 makes the close send RST.
            1 => {
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
                drop(s);
                tally.hung_up.fetch_add(1, Ordering::Relaxed);
            }
            // Plain close (FIN) before the answer.
            2 => {
                drop(s);
                tally.hung_up.fetch_add(1, Ordering::Relaxed);
            }
            _ => loop {
                match read_line(&mut s, &mut buf).as_deref() {
                    Some("PONG\r\n") => tally.passed.fetch_add(1, Ordering::Relaxed),
                    Some("-ERR 'Authorization Violation'\r\n") => tally.refused.fetch_add(1, Ordering::Relaxed),
                    Some("-ERR 'Authentication Timeout'\r\n") => tally.timeouts.fetch_add(1, Ordering::Relaxed),
                    // nats-server PINGs a new client early on, to measure its round trip.
                    Some("PING\r\n") => {
                        let _ = s.write_all(b"PONG\r\n");
                        continue;
                    }
                    got => {
                        tally.other.lock().unwrap().push(format!("instead of PONG: {got:?}"));
                        0
                    }
                };
                break;
            },
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What a storm came to.
struct Outcome {
    passed: usize,
    refused: usize,
    timeouts: usize,
    other: Vec<String>,
    /// The steady client's round trips: p50, p99, max.
    rtt: (Duration, Duration, Duration),
}

/// Run a storm of `clients` for [`STORM_FOR`] while a steady client PINGs every 2 ms; print
/// and return what happened.
fn run_storm(what: &str, clients: usize, pass: Pass) -> Outcome {
    // The storms share the machine's few CPUs: one at a time, or each slows the other.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let hash = bcrypt::hash(STORM_PASS, BCRYPT_COST).unwrap().replacen("$2b$", "$2a$", 1);
    // The steady client has a plain-text password: its own handshake costs no bcrypt, so
    // what it measures is how the broker serves others during the storm.
    let conf = format!(
        "authorization {{\n  users = [\n    {{user: storm, password: \"{hash}\"}}\n    {{user: steady, password: \"steady-pass\"}}\n  ]\n}}\n"
    );
    let server = Server::with_config(&conf, &[]);
    let port = server.port;

    let mut steady = Raw::connect_with(port, r#"{"verbose":false,"pedantic":false,"user":"steady","pass":"steady-pass"}"#);
    let tally = Tally::default();
    let deadline = Instant::now() + STORM_FOR;
    let mut rtts = Vec::new();
    std::thread::scope(|scope| {
        for id in 0..clients {
            let tally = &tally;
            scope.spawn(move || storm(port, pass, id, deadline, tally));
        }
        // A PING every 2 ms, timed from send to PONG.
        while Instant::now() < deadline {
            let t = Instant::now();
            steady.send("PING\r\n");
            loop {
                match steady.read_line().as_str() {
                    "PONG\r\n" => break,
                    // nats-server PINGs a new client early on, to measure its round trip.
                    "PING\r\n" => steady.send("PONG\r\n"),
                    other => panic!("steady client got {other:?}"),
                }
            }
            rtts.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    // The steady connection survived the storm.
    assert!(matches!(steady.flush().as_str(), "" | "PING\r\n"));

    rtts.sort();
    let rtt = (percentile(&rtts, 0.5), percentile(&rtts, 0.99), rtts[rtts.len() - 1]);
    let o = Outcome {
        passed: tally.passed.load(Ordering::Relaxed),
        refused: tally.refused.load(Ordering::Relaxed),
        timeouts: tally.timeouts.load(Ordering::Relaxed),
        other: std::mem::take(&mut *tally.other.lock().unwrap()),
        rtt,
    };
    eprintln!(
        "{} {what}: {} passed, {} refused, {} auth timeouts, {} hung up mid-handshake, {} other; steady client: {} round trips, p50 {:?} p99 {:?} max {:?}",
        if common::reference() { "reference" } else { "natsu" },
        o.passed,
        o.refused,
        o.timeouts,
        tally.hung_up.load(Ordering::Relaxed),
        o.other.len(),
        rtts.len(),
        o.rtt.0,
        o.rtt.1,
        o.rtt.2,
    );
    assert!(o.other.is_empty(), "unexpected answers: {:?}", &o.other[..o.other.len().min(10)]);
    o
}

/// Only natsu is held to this: nats-server runs each bcrypt check on the connection's own
/// goroutine, and the steady client's answers wait behind them (p50 ~180 ms measured here
/// on 2 cores), which is what the issue asks natsu to do better than.
fn assert_steady(o: &Outcome) {
    let (p50, p99, max) = o.rtt;
    if !common::reference() {
        assert!(p99 < STEADY_P99_MAX, "steady client p99 {p99:?} (p50 {p50:?}, max {max:?})");
    }
}

#[test]
fn reconnect_storm_with_a_bcrypt_user_gets_no_auth_timeouts() {
    let o = run_storm("right password", STORM_CLIENTS, Pass::Same(STORM_PASS));
    assert_eq!(o.timeouts, 0, "handshakes answered 'Authentication Timeout' ({} passed)", o.passed);
    assert_eq!(o.refused, 0);
    assert!(o.passed >= STORM_CLIENTS, "only {} handshakes passed in {STORM_FOR:?}", o.passed);
    assert_steady(&o);
}

/// Wrong passwords, a different one each time: no check is shared or remembered, so every
/// full handshake costs a bcrypt check; the checks of clients that hung up must not delay
/// the others' answers, nor the checks the steady client's round trips. A quarter of the
/// clients of the other storm: this one is CPU-bound by nature (every check is a real
/// bcrypt), and CI runs it beside other tests on 2 cores; two live checks at a time leave
/// room under the 2 s auth timeout (four and eight passed on an idle machine).
#[test]
fn storm_of_wrong_passwords_is_refused_without_auth_timeouts() {
    let clients = STORM_CLIENTS / 4;
    let o = run_storm("wrong passwords", clients, Pass::EachDifferent);
    assert_eq!(o.timeouts, 0, "handshakes answered 'Authentication Timeout' ({} refused)", o.refused);
    assert_eq!(o.passed, 0);
    assert!(o.refused >= clients, "only {} handshakes refused in {STORM_FOR:?}", o.refused);
    assert_steady(&o);
}
