//! The route port, byte for byte, natsu against nats-server 2.9: a test connects to it with
//! a plain TCP socket, as a misdirected client or as a fake route (CONNECT, then INFO, as
//! nats-server's dialling side does), and every server under test must send the same
//! `-ERR` texts, close at the same points, and speak the same RS+/RS-/RMSG lines. Then
//! routes over TLS (`cluster { tls {...} }` in a config file, certificates made by rcgen),
//! between natsu nodes and between natsu and nats-server, and refused with a certificate
//! from another CA.
//!
//! Each differential test runs one scenario on natsu and on nats-server started alike (a
//! config file with the same `cluster` block; the reference alone under
//! `NATSU_TEST_TARGET=reference`), and asserts that every server gave the expected answer;
//! a failure shows what each one said. The server's own interest (`$SYS.` subjects, see
//! [`own_interest_in_system_account`]) and the PINGs either side sends when it likes are
//! left out of what the other tests compare.
//!
//! natsu hands the route to core zero and clients to any core, so "the server has it"
//! means the route saw the RS+ that interest caused (natsu sends it once core zero knows),
//! or, for interest the fake route announced, a client publish repeated until the route
//! gets it. Every wait is bounded by [`WAIT`].

mod common;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rcgen::{Certificate, ExtendedKeyUsagePurpose, KeyPair};
use serde_json::Value;

use common::cluster::{pick_port, wait_routes, Kind, Node, Ports, CLUSTER_NAME, WAIT};
use common::pki::new_ca;
use common::{reference, Raw, Server, TempDir};

/// The server id the fake route gives itself.
const FAKE_ID: &str = "NFAKEROUTEFORNATSUROUTEPROTOCOLTESTS";

/// Credentials of the cluster in the authorization tests.
const ROUTE_USER: &str = "ruser";
const ROUTE_PASS: &str = "rpass";

/// A `cluster` block requiring credentials, with a one-second login timeout.
fn cluster_auth() -> String {
    format!("  authorization {{ user: {ROUTE_USER}, password: {ROUTE_PASS}, timeout: 1 }}\n")
}

// ---------------------------------------------------------------------------------------
// Servers under test

/// One server under test, listening for routes on `route_port`.
struct Side {
    /// "natsu" or "nats-server", for failure messages.
    name: &'static str,
    server: Server,
    route_port: u16,
    /// Holds the config file.
    _dir: TempDir,
}

/// natsu and nats-server (nats-server alone under `NATSU_TEST_TARGET=reference`), each
/// with the cluster block `cluster { name, listen, <extra> }` on a port of its own, and
/// listening for routes.
fn sides(extra: &str) -> Vec<Side> {
    let kinds: &[Kind] = if reference() { &[Kind::Reference] } else { &[Kind::Natsu, Kind::Reference] };
    kinds
        .iter()
        .map(|&kind| {
            let route_port = pick_port();
            let dir = TempDir::new("route-conf");
            let file = dir.0.join("server.conf");
            let conf = format!("cluster {{\n  name: {CLUSTER_NAME}\n  listen: \"127.0.0.1:{route_port}\"\n{extra}}}\n");
            std::fs::write(&file, conf).unwrap();
            let file = file.to_str().unwrap();
            let (name, server) = match kind {
                Kind::Natsu => ("natsu", Server::target_with(&["-p", "-1", "-c", file, "--cores", "2"])),
                Kind::Reference => ("nats-server", Server::reference_with(&["-p", "-1", "-c", file])),
            };
            wait_accepting(route_port);
            Side { name, server, route_port, _dir: dir }
        })
        .collect()
}

/// Poll until `port` accepts a connection: both servers open the route listener after the
/// client one, whose log line is what [`Server`] waits for.
fn wait_accepting(port: u16) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} not accepting within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every server's observation equals `want`; else fail showing each server's.
fn assert_all<T: Debug + PartialEq>(what: &str, want: &T, got: &[(&str, T)]) {
    if got.iter().any(|(_, g)| g != want) {
        let each: Vec<String> = got.iter().map(|(name, g)| format!("  {name}: {g:#?}")).collect();
        panic!("{what}: want {want:#?}\n{}", each.join("\n"));
    }
}

/// What a server sent, its PINGs left out (nats-server pings a route as soon as it has sent
/// its INFO; natsu once the route is registered).
fn without_pings(text: &str) -> String {
    text.split_inclusive("\r\n").filter(|l| *l != "PING\r\n").collect()
}

/// Send signal `sig` to the process `pid`.
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child this test started and still holds.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0, "kill({pid}, {sig})");
}

// ---------------------------------------------------------------------------------------
// Reading without panicking on a timeout

/// What one read gave.
enum Fill {
    Data,
    Closed,
    TimedOut,
}

/// Read once into `raw.buf`, waiting at most until `deadline`.
fn fill_until(raw: &mut Raw, deadline: Instant) -> Fill {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    raw.s.set_read_timeout(Some(left)).unwrap();
    let mut chunk = [0u8; 65536];
    match raw.s.read(&mut chunk) {
        Ok(0) => Fill::Closed,
        Ok(n) => {
            raw.buf.extend_from_slice(&chunk[..n]);
            Fill::Data
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Fill::Data,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Fill::TimedOut,
        Err(_) => Fill::Closed,
    }
}

/// The next line (CRLF included) before `deadline`; None if it timed out. Panics if the
/// connection closes.
fn line_until(raw: &mut Raw, deadline: Instant) -> Option<String> {
    loop {
        if let Some(i) = raw.buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = raw.buf.drain(..i + 2).collect();
            return Some(String::from_utf8_lossy(&line).into_owned());
        }
        match fill_until(raw, deadline) {
            Fill::Data => {}
            Fill::TimedOut => return None,
            Fill::Closed => panic!("connection closed; have {:?}", String::from_utf8_lossy(&raw.buf)),
        }
    }
}

/// A MSG as a raw client sees it: (subject, sid, reply, payload).
type Delivery = (String, String, Option<String>, String);

/// The next MSG on a client connection before `deadline` (PINGs answered, anything else a
/// failure); None if it timed out.
fn msg_until(raw: &mut Raw, deadline: Instant) -> Option<Delivery> {
    loop {
        let line = line_until(raw, deadline)?;
        if line == "PING\r\n" {
            raw.send("PONG\r\n");
            continue;
        }
        let parts: Vec<&str> = line.trim_end().split(' ').collect();
        let (subject, sid, reply, size) = match parts[..] {
            ["MSG", subject, sid, size] => (subject, sid, None, size),
            ["MSG", subject, sid, reply, size] => (subject, sid, Some(reply.to_string()), size),
            _ => panic!("expected a MSG, got {line:?}"),
        };
        let size: usize = size.parse().unwrap_or_else(|_| panic!("bad size in {line:?}"));
        let payload = raw.read_exact_n(size + 2);
        return Some((subject.into(), sid.into(), reply, String::from_utf8_lossy(&payload[..size]).into_owned()));
    }
}

/// A raw client of `port` that takes INFO updates (protocol 1) and may send headers.
fn client(port: u16) -> Raw {
    Raw::connect_with(port, r#"{"verbose":false,"pedantic":false,"protocol":1,"headers":true}"#)
}

// ---------------------------------------------------------------------------------------
// A fake route

/// A TCP connection to a route port that plays a nats-server 2.9 route.
struct FakeRoute {
    raw: Raw,
    /// The server's INFO.
    info: Value,
}

impl FakeRoute {
    /// Connect and read the server's INFO (nothing sent yet).
    fn dial(port: u16) -> FakeRoute {
        let raw = Raw::connect(port);
        let info = info_json(&raw.info);
        FakeRoute { raw, info }
    }

    /// Connect as the route `id` of the test cluster: CONNECT, then INFO ending in
    /// `info_tail` before CRLF (nats-server writes a space there), with `extra` JSON fields.
    fn join(port: u16, id: &str, info_tail: &str, extra: &str) -> FakeRoute {
        let mut route = FakeRoute::dial(port);
        route.raw.send(&connect_line(id, ""));
        let info = format!(
            r#"{{"server_id":"{id}","server_name":"{id}","version":"2.9.10","proto":1,"host":"127.0.0.1","port":{},"headers":true,"max_payload":1048576,"cluster":"{CLUSTER_NAME}","lnoc":true{extra}}}"#,
            pick_port()
        );
        route.raw.send(&format!("INFO {info}{info_tail}\r\n"));
        route
    }

    /// The next line from the server before `deadline` that is not a PING (answered),
    /// a PONG, or nats-server's `$SYS` interest; an RMSG or HMSG comes with its payload.
    /// None if it timed out.
    fn line_until(&mut self, deadline: Instant) -> Option<String> {
        loop {
            let line = line_until(&mut self.raw, deadline)?;
            if line == "PING\r\n" {
                self.raw.send("PONG\r\n");
                continue;
            }
            if line == "PONG\r\n" || is_system_interest(&line) {
                continue;
            }
            if line.starts_with("RMSG ") || line.starts_with("HMSG ") {
                let size: usize = line.trim_end().rsplit(' ').next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad size in {line:?}"));
                let payload = self.raw.read_exact_n(size + 2);
                return Some(line + &String::from_utf8_lossy(&payload));
            }
            return Some(line);
        }
    }

    /// The next such line, failing after [`WAIT`]; `what` names the wait.
    fn line(&mut self, what: &str) -> String {
        self.line_until(Instant::now() + WAIT).unwrap_or_else(|| panic!("waited {WAIT:?} for {what}"))
    }

    /// Read lines until every line of `want` has come; return all of them, in order.
    fn lines_until_seen(&mut self, want: &[&str], what: &str) -> Vec<String> {
        let mut missing: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        while !missing.is_empty() {
            let line = self.line_until(deadline).unwrap_or_else(|| panic!("{what}: still missing {missing:?}; got {seen:?}"));
            missing.remove(&line);
            seen.push(line);
        }
        seen
    }

    /// Everything the server sends before the PONG to a PING sent now, PINGs answered and
    /// the server's own interest left out.
    fn until_pong(&mut self) -> Vec<String> {
        self.until_pong_all().into_iter().filter(|l| !is_system_interest(l)).collect()
    }

    /// [`FakeRoute::until_pong`] with the server's own interest.
    fn until_pong_all(&mut self) -> Vec<String> {
        self.raw.send("PING\r\n");
        let deadline = Instant::now() + WAIT;
        let mut got = Vec::new();
        loop {
            let line = line_until(&mut self.raw, deadline).unwrap_or_else(|| panic!("no PONG within {WAIT:?}; got {got:?}"));
            match line.as_str() {
                "PONG\r\n" => return got,
                "PING\r\n" => self.raw.send("PONG\r\n"),
                _ => got.push(line),
            }
        }
    }
}

/// An RS+/RS- line for the server's own subscriptions: in nats-server's system account
/// (`$SYS`), or on a `$SYS.` subject in any account (natsu's, see
/// [`own_interest_in_system_account`]). Left out of what the other tests compare.
fn is_system_interest(line: &str) -> bool {
    let mut words = line.split(' ');
    matches!(words.next(), Some("RS+" | "RS-"))
        && match (words.next(), words.next()) {
            (Some("$SYS"), _) => true,
            (_, Some(subject)) => subject.starts_with("$SYS."),
            _ => false,
        }
}

/// A route CONNECT as nats-server 2.9 sends it, for the route `id`, with `extra` fields.
fn connect_line(id: &str, extra: &str) -> String {
    format!(
        r#"CONNECT {{"echo":true,"verbose":false,"pedantic":false,"tls_required":false,"headers":true,"name":"{id}","cluster":"{CLUSTER_NAME}","dynamic":false,"lnoc":true{extra}}}"#
    ) + "\r\n"
}

fn info_json(line: &str) -> Value {
    let json = line.strip_prefix("INFO ").unwrap_or_else(|| panic!("not an INFO: {line:?}")).trim();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("INFO is not JSON ({e}): {line:?}"))
}

/// The JSON keys of an INFO.
fn keys(info: &Value) -> BTreeSet<String> {
    info.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

/// Publish with `client` (a PING round trip after each) until `route` gets something,
/// which it returns: how a test knows interest the fake route announced has reached the
/// client's core.
fn publish_until_routed(client: &mut Raw, route: &mut FakeRoute, publish: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        client.send(publish);
        client.flush();
        if let Some(line) = route.line_until(Instant::now() + Duration::from_millis(100)) {
            return line;
        }
        assert!(Instant::now() < deadline, "nothing reached the route within {WAIT:?} for {publish:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Refused connections

/// Connect to each server's route port, send `send`, and return what the server sent
/// after its INFO until it closed, PINGs left out.
fn refused(sides: &[Side], send: &str) -> Vec<(&'static str, String)> {
    sides
        .iter()
        .map(|side| {
            let mut raw = Raw::connect(side.route_port);
            raw.send(send);
            (side.name, without_pings(&raw.expect_closed()))
        })
        .collect()
}

/// A client's CONNECT (it has `lang`) on the route port.
#[test]
fn client_connect_on_route_port() {
    let sides = sides("");
    let got = refused(&sides, "CONNECT {\"verbose\":false,\"pedantic\":false,\"lang\":\"go\",\"version\":\"1.30.0\",\"protocol\":1}\r\nPING\r\n");
    assert_all("a client CONNECT on the route port", &"-ERR 'attempted to connect to route port'\r\n".to_string(), &got);
}

/// A route of another cluster.
#[test]
fn route_connect_other_cluster_name() {
    let sides = sides("");
    let connect = connect_line(FAKE_ID, "").replace(&format!("\"cluster\":\"{CLUSTER_NAME}\""), "\"cluster\":\"x\"");
    let got = refused(&sides, &connect);
    let want = format!("-ERR 'Rejecting connection, cluster name \"x\" does not match \"{CLUSTER_NAME}\"'\r\n");
    assert_all("a route CONNECT with another cluster name", &want, &got);
}

/// Wrong, and missing, route credentials; the right ones are taken.
#[test]
fn route_credentials() {
    let sides = sides(&cluster_auth());
    let want = "-ERR 'Authorization Violation'\r\n".to_string();
    let wrong = connect_line(FAKE_ID, &format!(r#","user":"{ROUTE_USER}","pass":"wrong""#));
    assert_all("a route CONNECT with a wrong password", &want, &refused(&sides, &wrong));
    let unknown = connect_line(FAKE_ID, &format!(r#","user":"nobody","pass":"{ROUTE_PASS}""#));
    assert_all("a route CONNECT with an unknown user", &want, &refused(&sides, &unknown));
    assert_all("a route CONNECT without credentials", &want, &refused(&sides, &connect_line(FAKE_ID, "")));

    // The right credentials: the route stays, and answers a PING with nothing but PONG
    // (its own interest aside).
    let got: Vec<(&str, Vec<String>)> = sides
        .iter()
        .map(|side| {
            let mut route = FakeRoute::dial(side.route_port);
            assert_eq!(route.info["auth_required"], true, "{}: route INFO {}", side.name, route.info);
            route.raw.send(&connect_line(FAKE_ID, &format!(r#","user":"{ROUTE_USER}","pass":"{ROUTE_PASS}""#)));
            (side.name, route.until_pong())
        })
        .collect();
    assert_all("a route CONNECT with the right credentials, then PING", &Vec::<String>::new(), &got);
}

/// No CONNECT within the cluster's authorization timeout (one second).
#[test]
fn route_authentication_timeout() {
    let sides = sides(&cluster_auth());
    let got: Vec<(&str, String)> = sides
        .iter()
        .map(|side| {
            let mut raw = Raw::connect(side.route_port);
            let start = Instant::now();
            let said = without_pings(&raw.expect_closed());
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(5), "{}: closed after {took:?}", side.name);
            (side.name, said)
        })
        .collect();
    assert_all("a route that sends nothing", &"-ERR 'Authentication Timeout'\r\n".to_string(), &got);
}

// ---------------------------------------------------------------------------------------
// Handshake and messages to the route

/// The route's INFO line, with or without nats-server's space before CRLF, is taken: the
/// route announces `foo`, and a client's publish on `foo` reaches it as RMSG.
#[test]
fn route_info_with_or_without_space() {
    let sides = sides("");
    // A server id per round: the first round's fake route may not be seen gone yet when
    // the second joins, and a second route from one server is a duplicate to be closed.
    for (tail, id) in [(" ", FAKE_ID), ("", "NFAKEROUTEFORNATSUROUTEPROTOCOLTEST2")] {
        let got: Vec<(&str, String)> = sides
            .iter()
            .map(|side| {
                let mut route = FakeRoute::join(side.route_port, id, tail, "");
                route.raw.send("RS+ $G foo\r\n");
                let mut c = client(side.server.port);
                (side.name, publish_until_routed(&mut c, &mut route, "PUB foo 2\r\nhi\r\n"))
            })
            .collect();
        assert_all(&format!("a publish on foo, the route's INFO ending in {tail:?}"), &"RMSG $G foo 2\r\nhi\r\n".to_string(), &got);
    }
}

/// How a client's publish reaches a route with interest: no reply, a reply, a queue
/// group (`|` before the queues when there is no reply, `+ reply` when there is one), and
/// headers.
#[test]
fn routed_message_forms() {
    let sides = sides("");
    let steps: &[(&str, &str)] = &[
        ("PUB plain 2\r\nhi\r\n", "RMSG $G plain 2\r\nhi\r\n"),
        ("PUB plain r.1 2\r\nhi\r\n", "RMSG $G plain r.1 2\r\nhi\r\n"),
        ("PUB work 2\r\nhi\r\n", "RMSG $G work | q1 2\r\nhi\r\n"),
        ("PUB work r.2 2\r\nhi\r\n", "RMSG $G work + r.2 q1 2\r\nhi\r\n"),
        ("HPUB plain 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", "HMSG $G plain 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
        ("HPUB work r.3 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", "HMSG $G work + r.3 q1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
    ];
    let want: Vec<String> = steps.iter().map(|(_, w)| w.to_string()).collect();
    let got: Vec<(&str, Vec<String>)> = sides
        .iter()
        .map(|side| {
            let mut route = FakeRoute::join(side.route_port, FAKE_ID, " ", "");
            // `work` first: once `plain` reaches the client's core, so has `work`.
            route.raw.send("RS+ $G work q1 1\r\nRS+ $G plain\r\n");
            let mut c = client(side.server.port);
            let ready = "RMSG $G plain 5\r\nready\r\n";
            assert_eq!(publish_until_routed(&mut c, &mut route, "PUB plain 5\r\nready\r\n"), ready, "{}", side.name);
            let got = steps
                .iter()
                .map(|(publish, _)| {
                    c.send(publish);
                    loop {
                        // A second `ready`, from a retry sent before the first arrived.
                        let line = route.line(&format!("{}: what {publish:?} sends the route", side.name));
                        if line != ready {
                            break line;
                        }
                    }
                })
                .collect();
            (side.name, got)
        })
        .collect();
    assert_all("what the route gets for each publish", &want, &got);
}

// ---------------------------------------------------------------------------------------
// Interest sent to the route

/// One step of the interest transcript: who sends what, and the interest lines the route
/// must get for it (in this order when `ordered`, else in any order).
struct Step {
    client: usize,
    send: &'static str,
    want: &'static [&'static str],
    ordered: bool,
}

const fn step(client: usize, send: &'static str, want: &'static [&'static str]) -> Step {
    Step { client, send, want, ordered: true }
}

/// Client 2 subscribes and then closes; the rest is on clients 0 and 1 (most likely on
/// different cores of natsu, whose weights must add up).
const INTEREST: &[Step] = &[
    step(0, "SUB foo 1\r\n", &["RS+ $G foo\r\n"]),
    // A second subscription on a subject with interest changes nothing.
    step(1, "SUB foo 1\r\n", &[]),
    step(0, "SUB foo q1 2\r\n", &["RS+ $G foo q1 1\r\n"]),
    // The weight is the number of members, over all clients.
    step(1, "SUB foo q1 2\r\n", &["RS+ $G foo q1 2\r\n"]),
    step(0, "SUB foo q1 3\r\n", &["RS+ $G foo q1 3\r\n"]),
    step(0, "SUB bar.* 4\r\nSUB bar.> 5\r\n", &["RS+ $G bar.*\r\n", "RS+ $G bar.>\r\n"]),
    // A member leaving: the group again with the lower weight.
    step(1, "UNSUB 2\r\n", &["RS+ $G foo q1 2\r\n"]),
    step(0, "UNSUB 3\r\n", &["RS+ $G foo q1 1\r\n"]),
    // The last member: RS- without a weight.
    step(0, "UNSUB 2\r\n", &["RS- $G foo q1\r\n"]),
    step(0, "UNSUB 1\r\n", &[]),
    step(1, "UNSUB 1\r\n", &["RS- $G foo\r\n"]),
    step(2, "SUB gone 1\r\nSUB gone gq 2\r\nSUB gone gq 3\r\n", &["RS+ $G gone\r\n", "RS+ $G gone gq 1\r\n", "RS+ $G gone gq 2\r\n"]),
    // Client 2 closes (the step's `send` is not sent): all its interest goes at once.
    Step { client: 2, send: "", want: &["RS- $G gone\r\n", "RS- $G gone gq\r\n"], ordered: false },
    step(0, "SUB keep 6\r\nSUB keep kq 7\r\n", &["RS+ $G keep\r\n", "RS+ $G keep kq 1\r\n"]),
    step(1, "SUB keep kq 3\r\n", &["RS+ $G keep kq 2\r\n"]),
];

/// What a route that joins after [`INTEREST`] is sent at once (in any order).
const INTEREST_AT_JOIN: &[&str] = &["RS+ $G bar.*\r\n", "RS+ $G bar.>\r\n", "RS+ $G keep\r\n", "RS+ $G keep kq 2\r\n"];

/// Interest of the server's clients as the route gets it: RS+ for the first subscription
/// on a subject, RS- after the last; a queue group's RS+ carries its weight, sent again
/// on every change, and RS- after its last member; a route that joins later gets what is
/// left at once.
#[test]
fn interest_to_route() {
    let sides = sides("");
    let want: Vec<String> = INTEREST
        .iter()
        .map(|s| step_text(s, s.want.iter().map(|l| l.to_string()).collect()))
        .chain([step_text(&LATE_ROUTE, INTEREST_AT_JOIN.iter().map(|l| l.to_string()).collect())])
        .collect();
    let got: Vec<(&str, Vec<String>)> = sides
        .iter()
        .map(|side| {
            let mut route = FakeRoute::join(side.route_port, FAKE_ID, " ", "");
            assert_eq!(route.until_pong(), Vec::<String>::new(), "{}: a route to a server without clients", side.name);
            let mut clients: Vec<Option<Raw>> = (0..3).map(|_| Some(client(side.server.port))).collect();
            let mut transcript = Vec::new();
            for s in INTEREST {
                match s.send {
                    "" => clients[s.client] = None,
                    send => clients[s.client].as_mut().expect("client closed").send(send),
                }
                let got = s.want.iter().map(|_| route.line(&format!("{}: the route's lines for {:?}", side.name, s.send))).collect();
                transcript.push(step_text(s, got));
            }
            // A second route, now: the interest left, at once (before its PONG).
            let mut late = FakeRoute::join(side.route_port, "NFAKELATEROUTE", " ", "");
            transcript.push(step_text(&LATE_ROUTE, late.until_pong()));
            (side.name, transcript)
        })
        .collect();
    assert_all("the interest lines for each step", &want, &got);
}

/// Stands for the second route's join in a transcript.
const LATE_ROUTE: Step = Step { client: 0, send: "(a second route joins)", want: &[], ordered: false };

/// One line of a transcript: the step, then the lines the route got for it (sorted when
/// their order is free), e.g. `c0 SUB foo 1 => RS+ $G foo`.
fn step_text(s: &Step, mut lines: Vec<String>) -> String {
    if !s.ordered {
        lines.sort();
    }
    let send = if s.send.is_empty() { "(closes)" } else { s.send };
    let lines: Vec<&str> = lines.iter().map(|l| l.trim_end()).collect();
    format!("c{} {} => {}", s.client, send.trim_end().replace("\r\n", "; "), lines.join(" | "))
}

// ---------------------------------------------------------------------------------------
// Messages from the route

/// Messages the route sends on `foo` for queue group q1, with a reply.
const FROM_ROUTE: usize = 50;

/// `RMSG $G foo + reply q1 2` from the route goes to exactly one member of q1 (two members,
/// on two clients), with the reply; a member of another group on the same subject gets none.
#[test]
fn routed_queue_message_to_one_member() {
    let sides = sides("");
    for side in &sides {
        let mut route = FakeRoute::join(side.route_port, FAKE_ID, " ", "");
        let mut members: Vec<Raw> = ["q1", "q1", "q2"]
            .iter()
            .map(|q| {
                let mut c = client(side.server.port);
                c.send(&format!("SUB foo {q} 1\r\nSUB mark 2\r\n"));
                c.flush();
                c
            })
            .collect();
        // Once the route has been told, the route's core knows the members.
        route.lines_until_seen(&["RS+ $G foo q1 2\r\n", "RS+ $G foo q2 1\r\n", "RS+ $G mark\r\n"], side.name);
        let mut send = String::new();
        for _ in 0..FROM_ROUTE {
            send.push_str("RMSG $G foo + reply.1 q1 2\r\nhi\r\n");
        }
        send.push_str("RMSG $G mark 1\r\nm\r\n");
        route.raw.send(&send);
        let mut counts = Vec::new();
        for (i, member) in members.iter_mut().enumerate() {
            let deadline = Instant::now() + WAIT;
            let mut n = 0;
            loop {
                let m = msg_until(member, deadline).unwrap_or_else(|| panic!("{}: member {i} got no marker within {WAIT:?}", side.name));
                if m.0 == "mark" {
                    break;
                }
                assert_eq!(m, ("foo".into(), "1".into(), Some("reply.1".into()), "hi".into()), "{}: member {i}", side.name);
                n += 1;
            }
            counts.push(n);
        }
        assert_eq!(counts[0] + counts[1], FROM_ROUTE, "{}: q1 members got {counts:?} of {FROM_ROUTE}", side.name);
        assert_eq!(counts[2], 0, "{}: the q2 member got {} messages routed to q1", side.name, counts[2]);
    }
}

/// The server's own subscriptions (`$SYS.REQ.SERVER.PING`, ...) as a joining route gets
/// them: nats-server announces them in its system account, `$SYS`, which exists without
/// any configuration; natsu must announce its own in the same account, on subjects
/// nats-server announces too (server ids aside).
#[test]
fn own_interest_in_system_account() {
    let sides = sides("");
    let mut subjects = Vec::new();
    let got: Vec<(&str, BTreeSet<String>)> = sides
        .iter()
        .map(|side| {
            let mut route = FakeRoute::join(side.route_port, FAKE_ID, " ", "");
            let id = route.info["server_id"].as_str().unwrap_or_default().to_string();
            let own: Vec<(String, String)> = route
                .until_pong_all()
                .iter()
                .filter(|l| is_system_interest(l))
                .filter_map(|l| {
                    let words: Vec<&str> = l.trim_end().split(' ').collect();
                    (words.len() >= 3).then(|| (words[1].to_string(), words[2].replace(&id, "<id>")))
                })
                .collect();
            assert!(!own.is_empty(), "{}: announced none of its own subscriptions", side.name);
            subjects.push((side.name, own.iter().map(|(_, s)| s.clone()).collect::<BTreeSet<String>>()));
            (side.name, own.into_iter().map(|(account, _)| account).collect())
        })
        .collect();
    assert_all("the accounts of the server's own interest", &BTreeSet::from(["$SYS".to_string()]), &got);
    if let [(_, natsu), (_, nats_server)] = &subjects[..] {
        let extra: Vec<&String> = natsu.difference(nats_server).collect();
        assert!(extra.is_empty(), "natsu announces subjects nats-server does not: {extra:?}");
    }
}

// ---------------------------------------------------------------------------------------
// INFO

/// natsu's route INFO has nats-server's keys (values aside), without and with cluster
/// credentials.
#[test]
fn route_info_keys() {
    if reference() {
        eprintln!("route_info_keys compares natsu with nats-server: nothing to compare against the reference alone");
        return;
    }
    for extra in [String::new(), cluster_auth()] {
        let sides = sides(&extra);
        let got: Vec<(&str, BTreeSet<String>)> = sides.iter().map(|s| (s.name, keys(&FakeRoute::dial(s.route_port).info))).collect();
        let reference_keys = got.iter().find(|(n, _)| *n == "nats-server").map(|(_, k)| k.clone()).unwrap();
        assert_all(&format!("route INFO keys with cluster block extra {extra:?}"), &reference_keys, &got);
    }
}

/// Lame duck mode: the route gets an INFO from the same server with `"ldm":true`.
#[test]
fn lame_duck_info_to_route() {
    let sides = sides("");
    let got: Vec<(&str, (Value, Value))> = sides
        .iter()
        .map(|side| {
            let mut route = FakeRoute::join(side.route_port, FAKE_ID, " ", "");
            route.until_pong();
            // A server without clients stops at once instead.
            let _c = client(side.server.port);
            signal(side.server.pid(), libc::SIGUSR2);
            let line = route.line(&format!("{}: an INFO after SIGUSR2", side.name));
            let info = info_json(&line);
            (side.name, (info["ldm"].clone(), Value::Bool(info["server_id"] == route.info["server_id"])))
        })
        .collect();
    assert_all("the route's next line after SIGUSR2: (ldm, same server_id)", &(Value::Bool(true), Value::Bool(true)), &got);
}

/// natsu only (nats-server 2.9 takes the INFO and ignores the key): a 2.10 peer asking
/// for a route dedicated to one account is told natsu has none.
#[test]
fn route_account_refused() {
    if reference() {
        eprintln!("route_account_refused: nats-server 2.9 ignores route_account; natsu-only");
        return;
    }
    let side = sides("").into_iter().find(|s| s.name == "natsu").unwrap();
    let mut route = FakeRoute::join(side.route_port, FAKE_ID, " ", r#","route_account":"A""#);
    assert_eq!(
        without_pings(&route.raw.expect_closed()),
        "-ERR 'Not possible to have a dedicated route for account \"A\" between those servers'\r\n"
    );
}

// ---------------------------------------------------------------------------------------
// TLS

/// Certificates for routes, in a scratch directory with the nodes' config files. A route
/// certificate serves both ends (it is presented when accepting and when dialling), so it
/// is for server and client authentication.
struct RoutePki {
    dir: TempDir,
    ca: String,
    /// (certificate, key) signed by the CA every node trusts.
    good: (String, String),
    /// (certificate, key) signed by a CA nobody trusts.
    rogue: (String, String),
}

/// A certificate for `127.0.0.1` and `localhost`, for both ends of a route, signed by `ca`.
fn route_leaf(ca: &Certificate, ca_key: &KeyPair) -> (Certificate, KeyPair) {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "natsu route");
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    (params.signed_by(&key, ca, ca_key).unwrap(), key)
}

impl RoutePki {
    fn new() -> RoutePki {
        let dir = TempDir::new("route-pki");
        let (ca, ca_key) = new_ca("natsu route CA");
        let (cert, key) = route_leaf(&ca, &ca_key);
        let (other, other_key) = new_ca("another CA");
        let (rogue, rogue_key) = route_leaf(&other, &other_key);
        let mut pki = RoutePki { dir, ca: String::new(), good: Default::default(), rogue: Default::default() };
        pki.ca = pki.write("ca.pem", &ca.pem());
        pki.good = (pki.write("route.pem", &cert.pem()), pki.write("route-key.pem", &key.serialize_pem()));
        pki.rogue = (pki.write("rogue.pem", &rogue.pem()), pki.write("rogue-key.pem", &rogue_key.serialize_pem()));
        pki
    }

    /// Write a file in the directory; its path.
    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// A config file for node `name`: its route listener on `cluster` (the same as the
    /// harness's `--cluster` flag), TLS with the good or the rogue certificate, trusting
    /// the good CA.
    fn conf(&self, name: &str, cluster: u16, rogue: bool) -> String {
        let (cert, key) = if rogue { &self.rogue } else { &self.good };
        let ca = &self.ca;
        let conf = format!(
            "cluster {{\n  listen: \"127.0.0.1:{cluster}\"\n  tls {{\n    cert_file: \"{cert}\"\n    key_file: \"{key}\"\n    ca_file: \"{ca}\"\n    timeout: 2\n  }}\n}}\n"
        );
        self.write(&format!("{name}.conf"), &conf)
    }
}

/// A node of the test cluster on `ports`, naming `routes`, with route TLS (the rogue
/// certificate if `rogue`).
fn tls_node(pki: &RoutePki, name: &str, kind: Kind, ports: Ports, routes: &[&Ports], rogue: bool) -> Node {
    let routes: Vec<String> = routes.iter().map(|p| p.cluster_url()).collect();
    Node::start_with(name, kind, ports, CLUSTER_NAME, &routes, &["-c", &pki.conf(name, ports.cluster, rogue)])
}

fn num_routes(node: &Node) -> u64 {
    let v = node.routez("");
    v["num_routes"].as_u64().unwrap_or_else(|| panic!("{node}: /routez without num_routes: {v}"))
}

/// A client of `to` subscribed to `subject` (sid 1), and a client of `from`.
fn subscriber_and_publisher(from: &Node, to: &Node, subject: &str) -> (Raw, Raw) {
    let mut sub = client(to.ports.client);
    sub.send(&format!("SUB {subject} 1\r\n"));
    sub.flush();
    (sub, client(from.ports.client))
}

/// Publish on `from` (a PING round trip after each) until a subscriber on `to` gets it.
fn carry(from: &Node, to: &Node, subject: &str) {
    let (mut sub, mut publisher) = subscriber_and_publisher(from, to, subject);
    let deadline = Instant::now() + WAIT;
    loop {
        publisher.send(&format!("PUB {subject} 2\r\nhi\r\n"));
        publisher.flush();
        if let Some(m) = msg_until(&mut sub, Instant::now() + Duration::from_millis(100)) {
            assert_eq!(m, (subject.into(), "1".into(), None, "hi".into()), "{from} to {to}");
            return;
        }
        assert!(Instant::now() < deadline, "nothing published on {from} reached {to} within {WAIT:?}");
    }
}

/// For `lasting`, publish on `from` every 100ms while a subscriber on `to` gets nothing.
fn never_carried(from: &Node, to: &Node, subject: &str, lasting: Duration) {
    let (mut sub, mut publisher) = subscriber_and_publisher(from, to, subject);
    let end = Instant::now() + lasting;
    while Instant::now() < end {
        publisher.send(&format!("PUB {subject} 2\r\nhi\r\n"));
        publisher.flush();
        if let Some(m) = msg_until(&mut sub, Instant::now() + Duration::from_millis(100)) {
            panic!("{to} got {m:?}, published on {from}, without a route between them");
        }
    }
}

/// Two nodes with TLS routes, the second naming the first: the route forms, and carries
/// messages both ways.
fn tls_route(first: Kind, second: Kind) {
    let pki = RoutePki::new();
    let (pa, pb) = (Ports::free(), Ports::free());
    let a = tls_node(&pki, "A", first, pa, &[], false);
    wait_accepting(pa.cluster);
    let b = tls_node(&pki, "B", second, pb, &[&pa], false);
    wait_routes(&a, 1, WAIT);
    wait_routes(&b, 1, WAIT);
    carry(&a, &b, "tls.a2b");
    carry(&b, &a, "tls.b2a");
}

#[test]
fn tls_route_natsu_natsu() {
    tls_route(Kind::Natsu, Kind::Natsu);
}

/// nats-server dials natsu.
#[test]
fn tls_route_nats_server_dials_natsu() {
    tls_route(Kind::Natsu, Kind::Reference);
}

/// natsu dials nats-server.
#[test]
fn tls_route_natsu_dials_nats_server() {
    tls_route(Kind::Reference, Kind::Natsu);
}

/// Past nats-server's one-second route retry, twice.
const NO_ROUTE_FOR: Duration = Duration::from_secs(3);

/// A good node A; B (good) names A; R, whose certificate another CA signed (it trusts A's
/// CA), names A, and A names R: A and B form their route and carry messages; no route
/// forms between R and A either way, and nothing published on A reaches R.
fn tls_route_other_ca(good: Kind, rogue: Kind) {
    let pki = RoutePki::new();
    let (pa, pb, pr) = (Ports::free(), Ports::free(), Ports::free());
    let a = tls_node(&pki, "A", good, pa, &[&pr], false);
    wait_accepting(pa.cluster);
    let b = tls_node(&pki, "B", good, pb, &[&pa], false);
    let r = tls_node(&pki, "R", rogue, pr, &[&pa], true);
    wait_routes(&a, 1, WAIT);
    wait_routes(&b, 1, WAIT);
    carry(&a, &b, "tls.good");
    never_carried(&a, &r, "tls.rogue", NO_ROUTE_FOR);
    assert_eq!(num_routes(&r), 0, "{r}: routes with a certificate from another CA");
    assert_eq!(num_routes(&a), 1, "{a}: routes (B only)");
}

#[test]
fn tls_route_other_ca_natsu_natsu() {
    tls_route_other_ca(Kind::Natsu, Kind::Natsu);
}

/// natsu nodes refuse a nats-server with a certificate from another CA.
#[test]
fn tls_route_other_ca_rogue_nats_server() {
    tls_route_other_ca(Kind::Natsu, Kind::Reference);
}

/// nats-server nodes refuse a natsu with a certificate from another CA.
#[test]
fn tls_route_other_ca_rogue_natsu() {
    tls_route_other_ca(Kind::Reference, Kind::Natsu);
}

/// A config file whose `cluster` block has TLS but no listen address, and the listen
/// address from `--cluster`: nats-server keeps the file's TLS (the flag sets the address
/// only), so the route port says nothing in plain text (it waits for a TLS handshake).
#[test]
fn route_tls_from_file_with_cluster_flag() {
    let pki = RoutePki::new();
    let (cert, key) = &pki.good;
    let ca = &pki.ca;
    let conf = pki.write(
        "tls-only.conf",
        &format!("cluster {{\n  tls {{\n    cert_file: \"{cert}\"\n    key_file: \"{key}\"\n    ca_file: \"{ca}\"\n    timeout: 2\n  }}\n}}\n"),
    );
    let kinds: &[Kind] = if reference() { &[Kind::Reference] } else { &[Kind::Natsu, Kind::Reference] };
    let got: Vec<(&str, String)> = kinds
        .iter()
        .map(|&kind| {
            let node = Node::start_with("A", kind, Ports::free(), CLUSTER_NAME, &[], &["-c", &conf]);
            wait_accepting(node.ports.cluster);
            let mut raw = Raw { s: TcpStream::connect(("127.0.0.1", node.ports.cluster)).unwrap(), buf: Vec::new(), info: String::new() };
            // A server that wants TLS first says nothing; one that does not sends INFO at once.
            let said = match fill_until(&mut raw, Instant::now() + Duration::from_secs(1)) {
                Fill::TimedOut => "(nothing: waiting for a TLS handshake)".to_string(),
                Fill::Closed => "(closed)".to_string(),
                Fill::Data => String::from_utf8_lossy(&raw.buf).chars().take(60).collect(),
            };
            (if node.is_natsu() { "natsu" } else { "nats-server" }, said)
        })
        .collect();
    assert_all("what the route port sends first", &"(nothing: waiting for a TLS handshake)".to_string(), &got);
}
