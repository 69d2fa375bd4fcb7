//! The monitoring port: differential tests against the reference nats-server (same traffic,
//! then every key of its JSON present in natsu's with the same JSON type, the same figures
//! and the same error texts), paging and sorting, closed-connection reasons, JSONP,
//! /metrics parsed as Prometheus text, per-core figures, hostile requests, HTTPS; accounts
//! (`/connz` `account` and `acc=`, `/accountz`, `/accstatz`, per-account `/metrics`) with
//! `$G` alone and with an `accounts` block given to both servers.
//!
//! Both servers run as child processes with `-m -1` (a free port each, read from the log);
//! the HTTP client is a few lines over std's TcpStream. Every wait is bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{natsu_bin, Raw, TempDir};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Servers with a monitoring port

/// A broker with its client port and its monitoring port, killed when dropped.
struct Mon {
    child: Child,
    target: Target,
    port: u16,
    http: u16,
    /// Holds a config file, if any.
    _dir: Option<TempDir>,
}

impl Drop for Mon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which broker.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Natsu,
    Reference,
}

impl Mon {
    /// Start `target` on free ports with monitoring (`-m -1`, or `monitor_flag`), a config
    /// file made of `conf` if given, and extra arguments.
    fn start_with(target: Target, monitor_flag: &str, conf: Option<&str>, extra: &[&str]) -> Mon {
        let mut cmd = match target {
            Target::Natsu => Command::new(natsu_bin()),
            Target::Reference => Command::new("nats-server"),
        };
        cmd.args(["-a", "127.0.0.1", "-p", "-1", monitor_flag, "-1"]);
        let mut dir = None;
        if let Some(conf) = conf {
            let d = TempDir::new("monconf");
            let f = d.0.join("server.conf");
            std::fs::write(&f, conf).unwrap();
            cmd.args(["-c", f.to_str().unwrap()]);
            dir = Some(d);
        }
        cmd.args(extra);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start broker");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel::<(bool, u16)>();
        let echo = std::env::var("NATSU_TEST_LOG").is_ok();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let port_of = |s: &str| s.trim().rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("{line}");
                }
                if let Some((_, a)) = line.split_once("Listening for client connections on ") {
                    if let Some(p) = port_of(a) {
                        let _ = tx.send((false, p));
                    }
                }
                for marker in ["Starting http monitor on ", "Starting https monitor on "] {
                    if let Some((_, a)) = line.split_once(marker) {
                        if let Some(p) = port_of(a) {
                            let _ = tx.send((true, p));
                        }
                    }
                }
            }
        });
        let (mut port, mut http) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while port.is_none() || http.is_none() {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((true, p)) => http = Some(p),
                Ok((false, p)) => port = Some(p),
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("{target:?} did not report both ports within 10s (exit: {status:?})");
                }
            }
        }
        Mon { child, target, port: port.unwrap(), http: http.unwrap(), _dir: dir }
    }

    fn start(target: Target, extra: &[&str]) -> Mon {
        Mon::start_with(target, "-m", None, extra)
    }

    fn get(&self, target: &str) -> Resp {
        get(self.http, target)
    }

    fn json(&self, target: &str) -> Value {
        let r = self.get(target);
        assert_eq!(r.status, 200, "GET {target}: {}", r.text());
        r.json()
    }
}

// ---------------------------------------------------------------------------------------
// A plain HTTP/1.1 client

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One response from the front of `buf`, and the bytes it took; None if incomplete.
fn parse_response(buf: &[u8], head_only: bool) -> Option<(Resp, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect();
    let hv = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    if head_only {
        return Some((Resp { status, headers, body: Vec::new() }, end));
    }
    if hv("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = end;
        loop {
            let line_end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size = usize::from_str_radix(String::from_utf8_lossy(&buf[at..line_end]).trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // No trailers from either server.
                if buf.len() < at + 2 {
                    return None;
                }
                return Some((Resp { status, headers, body }, at + 2));
            }
            if buf.len() < at + size + 2 {
                return None;
            }
            body.extend_from_slice(&buf[at..at + size]);
            at += size + 2;
        }
    }
    let len: usize = hv("content-length").and_then(|v| v.parse().ok()).unwrap_or(buf.len() - end);
    if buf.len() < end + len {
        return None;
    }
    Some((Resp { status, headers, body: buf[end..end + len].to_vec() }, end + len))
}

/// Send raw request bytes and read one response (the connection is closed after).
fn request(port: u16, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the monitoring port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    // A server refusing a long request may answer before taking all of it.
    let _ = s.write_all(raw);
    let head_only = raw.starts_with(b"HEAD ");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some((r, _)) = parse_response(&buf, head_only) {
            return r;
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("timed out reading the response; have {:?}", String::from_utf8_lossy(&buf))
            }
            Err(_) => break,
        }
    }
    parse_response(&buf, head_only)
        .map(|(r, _)| r)
        .unwrap_or_else(|| panic!("incomplete response: {:?}", String::from_utf8_lossy(&buf)))
}

fn get(port: u16, target: &str) -> Resp {
    request(port, format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
}

// ---------------------------------------------------------------------------------------
// Comparing JSON

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `reference` is in `ours` with the same JSON type, recursively; arrays are
/// compared element by element as far as both go. Maps whose keys are data (not fields) are
/// compared by type only.
fn same_shape(path: &str, reference: &Value, ours: &Value, errs: &mut Vec<String>) {
    if kind(reference) != kind(ours) {
        errs.push(format!("{path}: reference has {}, natsu {}", kind(reference), kind(ours)));
        return;
    }
    match (reference, ours) {
        (Value::Object(a), Value::Object(b)) => {
            if path.ends_with("http_req_stats") {
                return;
            }
            for (k, v) in a {
                match b.get(k) {
                    None => errs.push(format!("{path}.{k}: missing in natsu")),
                    Some(w) => same_shape(&format!("{path}.{k}"), v, w, errs),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            // Subscriptions come in no particular order (the reference's are in Go map
            // order): pair them by subject.
            let subject = |v: &Value| v.get("subject").and_then(Value::as_str).map(str::to_string);
            for (i, x) in a.iter().enumerate() {
                let y = match subject(x) {
                    Some(s) => b.iter().find(|y| subject(y).as_deref() == Some(&s)),
                    None => b.get(i),
                };
                if let Some(y) = y {
                    same_shape(&format!("{path}[{i}]"), x, y, errs);
                }
            }
        }
        _ => {}
    }
}

fn assert_same_shape(what: &str, reference: &Value, ours: &Value) {
    let mut errs = Vec::new();
    same_shape(what, reference, ours, &mut errs);
    assert!(errs.is_empty(), "{what} differs from the reference:\n{}\nreference: {reference:#}\nnatsu: {ours:#}", errs.join("\n"));
}

/// Go's RFC 3339 with optional fraction, in UTC: `2026-11-23T14:29:48.55644401Z`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && s.ends_with('Z')
        && (b[19] == b'Z' || (b[19] == b'.' && s[20..s.len() - 1].bytes().all(|c| c.is_ascii_digit())))
}

/// nats-server's uptime form: `[Ny][Nd][Nh][Nm]Ns`.
fn is_uptime(s: &str) -> bool {
    let mut rest = s;
    for unit in ['y', 'd', 'h', 'm', 's'] {
        if let Some(i) = rest.find(unit) {
            if i == 0 || !rest[..i].bytes().all(|c| c.is_ascii_digit()) {
                return false;
            }
            rest = &rest[i + 1..];
        }
    }
    rest.is_empty() && s.ends_with('s')
}

/// Poll until `f` holds, for at most `limit`.
fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Traffic

/// The same traffic for either server: a subscriber (named, two subscriptions, one in a
/// queue group), a publisher, and a client that connects and quits cleanly.
struct Traffic {
    _sub: Raw,
    _publ: Raw,
}

fn traffic(m: &Mon) -> Traffic {
    let mut sub = Raw::connect_with(m.port, r#"{"verbose":false,"name":"sub1","lang":"go","version":"1.2"}"#);
    sub.send("SUB foo 1\r\nSUB bar q 2\r\n");
    sub.flush();
    let mut publ = Raw::connect_with(m.port, r#"{"verbose":false}"#);
    publ.send("PUB foo 5\r\nhello\r\nPUB bar 3\r\nabc\r\n");
    publ.flush();
    // Both messages reached the subscriber before anyone looks at the figures.
    expect_msgs(&mut sub, 2);
    let mut quitter = Raw::connect_with(m.port, r#"{"verbose":false}"#);
    quitter.flush();
    let _ = quitter.s.shutdown(std::net::Shutdown::Both);
    drop(quitter);
    wait_for(Duration::from_secs(5), "the closed connection in /connz", || {
        m.json("/connz?state=closed")["num_connections"].as_u64() == Some(1)
    });
    Traffic { _sub: sub, _publ: publ }
}

/// Read `n` messages (MSG line and payload line each); bounded by the connection's read
/// timeout. Across cores a message may still be in flight when a PONG comes back, so
/// counting what arrived before a PONG would not do.
fn expect_msgs(r: &mut Raw, n: usize) {
    for _ in 0..n {
        let line = r.read_line();
        assert!(line.starts_with("MSG "), "expected MSG, got {line:?}");
        r.read_line();
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn endpoints_match_the_reference_key_for_key() {
    let reference = Mon::start(Target::Reference, &[]);
    let natsu = Mon::start(Target::Natsu, &["--cores", "2"]);
    let _t = (traffic(&reference), traffic(&natsu));
    let targets = [
        "/varz",
        "/connz",
        "/connz?subs=1",
        "/connz?subs=detail",
        "/connz?state=closed",
        "/connz?state=all&subs=1",
        "/connz?auth=1",
        "/routez",
        "/routez?subs=1",
        "/subsz",
        "/subsz?subs=1",
        "/healthz",
    ];
    for target in targets {
        let (r, n) = (reference.get(target), natsu.get(target));
        assert_eq!((r.status, n.status), (200, 200), "{target}");
        assert_eq!(n.header("content-type"), r.header("content-type"), "{target}");
        assert_eq!(n.header("access-control-allow-origin"), Some("*"), "{target}");
        let (mut rj, nj) = (r.json(), n.json());
        if target.starts_with("/subsz?subs=1") {
            // The reference lists its internal clients' subscriptions too; compare ours with
            // the test's.
            let list = rj["subscriptions_list"].as_array_mut().unwrap();
            list.retain(|s| s["subject"] == "foo" || s["subject"] == "bar");
            assert_eq!(list.len(), 2);
        }
        assert_same_shape(target, &rj, &nj);
    }

    // The figures, not only the shapes.
    let (rv, nv) = (reference.json("/varz"), natsu.json("/varz"));
    for k in ["in_msgs", "out_msgs", "in_bytes", "out_bytes", "connections", "total_connections", "slow_consumers", "routes", "max_payload", "max_pending", "ping_interval", "write_deadline", "ping_max", "max_connections", "max_control_line", "auth_timeout", "tls_timeout", "proto", "version", "host", "http_host", "https_port", "http_base_path"] {
        assert_eq!(nv[k], rv[k], "/varz {k}");
    }
    assert_eq!(nv["http_port"].as_u64(), Some(natsu.http as u64));
    assert_eq!(nv["port"].as_u64(), Some(natsu.port as u64));
    for k in ["start", "now", "config_load_time"] {
        assert!(is_rfc3339(nv[k].as_str().unwrap()), "/varz {k} = {}", nv[k]);
    }
    assert!(is_uptime(nv["uptime"].as_str().unwrap()));
    assert!(nv["mem"].as_u64().unwrap() > 0);
    assert!(nv["cores"].as_u64().unwrap() >= 1);
    assert_eq!(nv["http_req_stats"]["/varz"].as_u64(), Some(2), "{}", nv["http_req_stats"]);

    let (rc, nc) = (reference.json("/connz?state=all&subs=detail"), natsu.json("/connz?state=all&subs=detail"));
    assert_eq!(nc["total"], rc["total"]);
    let (rconns, nconns) = (rc["connections"].as_array().unwrap(), nc["connections"].as_array().unwrap());
    assert_eq!(nconns.len(), 3);
    for (r, n) in rconns.iter().zip(nconns) {
        // (Not pending_bytes: the reference sometimes lists a closed client with its last PONG
        // still counted.)
        for k in ["in_msgs", "out_msgs", "in_bytes", "out_bytes", "subscriptions", "name", "lang", "version", "reason", "kind", "type", "ip", "subscriptions_list_detail"] {
            let strip = |v: &Value| {
                // Subscription details carry the server's cid, and come in any order.
                let mut v = v.clone();
                if let Some(a) = v.as_array_mut() {
                    for d in a.iter_mut() {
                        d.as_object_mut().unwrap().remove("cid");
                    }
                    a.sort_by_key(|d| d["subject"].as_str().unwrap_or_default().to_string());
                }
                v
            };
            assert_eq!(strip(&n[k]), strip(&r[k]), "/connz {k} of {n:#}");
        }
        for k in ["start", "last_activity"] {
            assert!(is_rfc3339(n[k].as_str().unwrap()), "{k}: {}", n[k]);
        }
        assert!(is_uptime(n["uptime"].as_str().unwrap()) && is_uptime(n["idle"].as_str().unwrap()));
        let rtt = n["rtt"].as_str().unwrap();
        assert!(["ns", "µs", "ms", "s"].iter().any(|u| rtt.ends_with(u)), "rtt {rtt}");
    }
    let closed = &nconns[2];
    assert_eq!(closed["reason"], "Client Closed");
    assert!(is_rfc3339(closed["stop"].as_str().unwrap()));

    let (rs, ns) = (reference.json("/subsz"), natsu.json("/subsz"));
    assert_same_shape("/subsz", &rs, &ns);
    assert_eq!(ns["num_subscriptions"].as_u64(), Some(2));
    assert_eq!(natsu.get("/healthz").text(), reference.get("/healthz").text());

    // JSONP: callback(json) as application/javascript.
    for target in ["/varz?callback=cb", "/connz?callback=cb", "/healthz?callback=cb", "/subsz?callback=cb&subs=1", "/routez?callback=cb"] {
        let (r, n) = (reference.get(target), natsu.get(target));
        assert_eq!(n.header("content-type"), r.header("content-type"), "{target}");
        assert_eq!(n.header("content-type"), Some("application/javascript"));
        let body = n.text();
        assert!(body.starts_with("cb(") && body.ends_with(')'), "{target}: {body}");
        let inner: Value = serde_json::from_str(&body[3..body.len() - 1]).unwrap();
        let rb = r.text();
        let rinner: Value = serde_json::from_str(&rb[3..rb.len() - 1]).unwrap();
        assert_eq!(kind(&inner), kind(&rinner));
    }
}

#[test]
fn bad_queries_get_the_references_errors() {
    let reference = Mon::start(Target::Reference, &[]);
    let natsu = Mon::start(Target::Natsu, &[]);
    for target in [
        "/connz?sort=bogus",
        "/connz?sort=CID",
        "/connz?sort=rtt",
        "/connz?state=bogus",
        "/connz?state=bogus&sort=bogus",
        "/connz?cid=abc",
        "/connz?cid=-1",
        "/connz?offset=99999999999999999999",
        "/connz?offset=x&state=bogus",
        "/connz?limit=abc",
        "/connz?subs=2",
        "/connz?auth=maybe",
        "/connz?sort=stop",
        "/connz?sort=reason",
        "/connz?sort=stop&state=all",
        "/subsz?subs=x",
        "/subsz?subs=1&test=foo.*",
        "/subsz?subs=1&test=foo.>",
        "/subsz?offset=1.5",
        "/nope",
        "/varz/",
        "/VARZ",
    ] {
        let (r, n) = (reference.get(target), natsu.get(target));
        assert_eq!(n.status, r.status, "{target}: {}", n.text());
        assert_eq!(n.text(), r.text(), "{target}");
        assert_eq!(n.header("content-type"), r.header("content-type"), "{target}");
    }
    // Values the reference takes without complaint.
    for target in [
        "/connz?limit=-1",
        "/connz?offset=-5",
        "/connz?limit=0",
        "/connz?offset=100000",
        "/connz?cid=999",
        "/connz?state=ALL&sort=idle",
        "/connz?subs=true&auth=1&unknown=1",
        "/subsz?limit=-4&offset=44&subs=1",
        "/subsz?subs=1&offset=1000",
        "/varz?callback=",
        "/varz?x=%zz",
    ] {
        let (r, n) = (reference.get(target), natsu.get(target));
        assert_eq!((n.status, r.status), (200, 200), "{target}: {}", n.text());
        assert_same_shape(target, &r.json(), &n.json());
        for k in ["offset", "limit"] {
            assert_eq!(n.json()[k], r.json()[k], "{target} {k}");
        }
    }
}

/// Three clients with different subscription counts and traffic; the order each sort gives,
/// as positions (the servers number connections differently), must be the reference's.
#[test]
fn sorting_and_paging_follow_the_reference() {
    let reference = Mon::start(Target::Reference, &[]);
    let natsu = Mon::start(Target::Natsu, &["--cores", "2"]);
    let mut orders: Vec<BTreeMap<String, Vec<usize>>> = Vec::new();
    for m in [&reference, &natsu] {
        let mut conns = Vec::new();
        for i in 0..3 {
            let mut c = Raw::connect_with(m.port, r#"{"verbose":false}"#);
            for j in 0..=i {
                c.send(&format!("SUB s{i}.{j} {j}\r\n"));
            }
            c.flush();
            conns.push(c);
            std::thread::sleep(Duration::from_millis(20));
        }
        // No two connections tie on any compared key: the reference's sort is not stable,
        // so tied connections come in any order there.
        conns[0].send("PUB x 1\r\na\r\nPUB x 1\r\na\r\nPUB x 1\r\na\r\nPUB x 1\r\na\r\n");
        conns[0].flush();
        conns[2].send("PUB s1.0 10\r\n0123456789\r\nPUB s0.0 2\r\nhi\r\nPUB s0.0 2\r\nhi\r\n");
        conns[2].flush();
        expect_msgs(&mut conns[1], 1);
        expect_msgs(&mut conns[0], 2);
        let cids: Vec<u64> = m.json("/connz")["connections"].as_array().unwrap().iter().map(|c| c["cid"].as_u64().unwrap()).collect();
        assert_eq!(cids.len(), 3);
        let pos = |v: &Value| -> Vec<usize> {
            v["connections"].as_array().unwrap().iter().map(|c| cids.iter().position(|&x| Some(x) == c["cid"].as_u64()).unwrap()).collect()
        };
        let mut o = BTreeMap::new();
        // (`pending` is 0 for all three: a tie; it is only checked to be accepted.)
        assert_eq!(m.json("/connz?sort=pending")["num_connections"], 3);
        for sort in ["cid", "start", "subs", "msgs_to", "msgs_from", "bytes_to", "bytes_from", "uptime"] {
            let v = m.json(&format!("/connz?sort={sort}"));
            o.insert(sort.to_string(), pos(&v));
        }
        // Paging: the second of three, and a page past the end.
        let p = m.json("/connz?limit=1&offset=1");
        assert_eq!((p["total"].as_u64(), p["num_connections"].as_u64(), p["limit"].as_u64(), p["offset"].as_u64()), (Some(3), Some(1), Some(1), Some(1)));
        o.insert("page".into(), pos(&p));
        let p = m.json("/connz?offset=3");
        assert_eq!((p["total"].as_u64(), p["num_connections"].as_u64()), (Some(3), Some(0)));
        // cid=: one connection, page of one, total of the state.
        let p = m.json(&format!("/connz?cid={}", cids[1]));
        assert_eq!((p["total"].as_u64(), p["num_connections"].as_u64(), p["limit"].as_u64()), (Some(3), Some(1), Some(1)));
        o.insert("cid=".into(), pos(&p));
        // Closed ones, closed in the order 1, 0, 2.
        for i in [1, 0, 2] {
            let _ = conns[i].s.shutdown(std::net::Shutdown::Both);
            let want = [1, 0, 2].iter().position(|&x| x == i).unwrap() as u64 + 1;
            wait_for(Duration::from_secs(5), "a closed connection", || {
                m.json("/connz?state=closed")["num_connections"].as_u64() == Some(want)
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        for sort in ["cid", "stop", "subs", "start"] {
            o.insert(format!("closed {sort}"), pos(&m.json(&format!("/connz?state=closed&sort={sort}"))));
        }
        let p = m.json(&format!("/connz?state=closed&cid={}", cids[0]));
        assert_eq!(p["connections"][0]["reason"], "Client Closed");
        orders.push(o);
    }
    assert_eq!(orders[1], orders[0], "natsu's orders (right) against the reference's (left)");
    assert_eq!(orders[1]["subs"], [2, 1, 0]);
    assert_eq!(orders[1]["msgs_to"], [0, 1, 2]);
    assert_eq!(orders[1]["bytes_from"], [2, 0, 1]);
    assert_eq!(orders[1]["closed stop"], [2, 0, 1]);
}

/// A subscriber that never reads, with a small max_pending, is cut off as a slow consumer and
/// listed with nats-server's reason; slow_consumers counts it.
#[test]
fn slow_consumer_is_listed_with_its_reason() {
    // nats-server wants max_payload no higher than max_pending.
    let conf = "max_pending: 65536\nmax_payload: 65536\n";
    let reference = Mon::start_with(Target::Reference, "-m", Some(conf), &[]);
    let natsu = Mon::start_with(Target::Natsu, "-m", Some(conf), &[]);
    for m in [&reference, &natsu] {
        let mut sub = Raw::connect_with(m.port, r#"{"verbose":false}"#);
        sub.send("SUB slow 1\r\n");
        sub.flush();
        // Shrink the subscriber's receive buffer so the kernel does not soak up everything.
        let port = m.port;
        let publisher = std::thread::spawn(move || {
            let mut p = Raw::connect_with(port, r#"{"verbose":false}"#);
            let payload = vec![b'x'; 32 * 1024];
            let mut frame = b"PUB slow 32768\r\n".to_vec();
            frame.extend_from_slice(&payload);
            frame.extend_from_slice(b"\r\n");
            p.s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            // 64 MB at most: far past any socket buffers; stops at the first failure.
            for _ in 0..2048 {
                if p.s.write_all(&frame).is_err() {
                    break;
                }
            }
            let _ = p.s.write_all(b"PING\r\n");
        });
        wait_for(Duration::from_secs(20), "a slow consumer in /connz?state=closed", || {
            m.json("/connz?state=closed")["connections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["reason"] == "Slow Consumer (Pending Bytes)")
        });
        assert!(m.json("/varz")["slow_consumers"].as_u64().unwrap() >= 1);
        // Counted on the consumer's account too.
        let statz = m.json("/accstatz?unused=1");
        let global = statz["account_statz"].as_array().unwrap().iter().find(|a| a["acc"] == "$G").cloned();
        assert!(global.is_some_and(|g| g["slow_consumers"].as_u64() >= Some(1)), "{target:?}: {statz:#}", target = m.target);
        publisher.join().unwrap();
        drop(sub);
    }
}

/// A refused CONNECT is listed as "Authentication Failure"; `auth=1` shows the user of an
/// accepted one and nothing anywhere shows a password.
#[test]
fn authentication_failure_and_authorized_user() {
    for target in [Target::Reference, Target::Natsu] {
        let m = Mon::start(target, &["--user", "alice", "--pass", "s3cr3t-pw"]);
        let mut ok = Raw::connect_with(m.port, r#"{"verbose":false,"user":"alice","pass":"s3cr3t-pw"}"#);
        let mut bad = Raw::connect(m.port);
        bad.send("CONNECT {\"verbose\":false,\"user\":\"alice\",\"pass\":\"wrong-pw\"}\r\nPING\r\n");
        let said = bad.expect_closed();
        assert!(said.contains("Authorization Violation"), "{target:?}: {said:?}");
        wait_for(Duration::from_secs(5), "the refused connection in /connz", || {
            m.json("/connz?state=closed")["num_connections"].as_u64() == Some(1)
        });
        let closed = m.json("/connz?state=closed&auth=1");
        assert_eq!(closed["connections"][0]["reason"], "Authentication Failure", "{target:?}");
        let open = m.json("/connz?auth=1");
        assert_eq!(open["connections"][0]["authorized_user"], "alice", "{target:?}");
        assert!(m.json("/connz")["connections"][0].get("authorized_user").is_none(), "only with auth=1");
        assert_eq!(m.json("/varz")["auth_required"], true);
        for t in ["/connz?auth=1&subs=detail&state=all", "/varz", "/subsz?subs=1", "/metrics"] {
            let body = m.get(t).text();
            assert!(!body.contains("s3cr3t-pw") && !body.contains("wrong-pw"), "{target:?} {t} shows a password");
        }
        ok.flush();
    }
}

/// Parse the Prometheus text format strictly enough: every sample is `name{labels} value`
/// with a float value, and every name has a `# TYPE`.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut types = BTreeSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap();
            let t = it.next().unwrap();
            assert!(["counter", "gauge", "untyped", "histogram", "summary"].contains(&t), "type {t}");
            assert!(types.insert(name.to_string()), "two TYPE lines for {name}");
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad name in {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels in {line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label {pair} in {line}"));
                    assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "label name {k}");
                    let _ = v;
                }
            }
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("value not a float: {line}")),
        };
        assert!(types.contains(name), "{name} has no TYPE before its sample");
        samples.insert(series.to_string(), v);
    }
    samples
}

#[test]
fn metrics_are_prometheus_text_with_exporter_names_and_per_core_series() {
    let m = Mon::start(Target::Natsu, &["--cores", "2"]);
    let _t = traffic(&m);
    let r = m.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let samples = parse_metrics(&r.text());
    let value = |prefix: &str| -> f64 {
        samples
            .iter()
            .find(|(k, _)| k.starts_with(&format!("{prefix}{{")))
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
    };
    assert_eq!(value("gnatsd_varz_in_msgs"), 2.0);
    assert_eq!(value("gnatsd_varz_out_msgs"), 2.0);
    assert_eq!(value("gnatsd_varz_connections"), 2.0);
    assert_eq!(value("gnatsd_varz_subscriptions"), 2.0);
    assert_eq!(value("gnatsd_connz_num_connections"), 2.0);
    assert_eq!(value("gnatsd_connz_in_msgs"), 2.0);
    assert_eq!(value("gnatsd_subsz_num_subscriptions"), 2.0);
    assert_eq!(value("gnatsd_routez_num_routes"), 0.0);
    assert_eq!(value("gnatsd_varz_version"), 1.0);
    assert!(samples.keys().any(|k| k.starts_with("gnatsd_varz_version{") && k.contains("value=\"2.9.10\"")));
    for core in ["0", "1"] {
        assert!(samples.keys().any(|k| k.starts_with("natsu_core_in_msgs_total{") && k.contains(&format!("core=\"{core}\""))));
    }
    let per_core: f64 = samples.iter().filter(|(k, _)| k.starts_with("natsu_core_in_msgs_total{")).map(|(_, v)| v).sum();
    assert_eq!(per_core, 2.0);
}

#[test]
fn varz_cores_lists_each_core_and_adds_up() {
    let m = Mon::start(Target::Natsu, &["--cores", "2"]);
    // Enough connections that both cores get some (the kernel spreads them).
    let mut subs: Vec<Raw> = (0..6)
        .map(|i| {
            let mut s = Raw::connect_with(m.port, r#"{"verbose":false}"#);
            s.send(&format!("SUB t.{i} 1\r\n"));
            s.flush();
            s
        })
        .collect();
    let mut pubs: Vec<Raw> = (0..6).map(|_| Raw::connect_with(m.port, r#"{"verbose":false}"#)).collect();
    for p in pubs.iter_mut() {
        for i in 0..6 {
            p.send(&format!("PUB t.{i} 2\r\nhi\r\n"));
        }
        p.flush();
    }
    for s in subs.iter_mut() {
        expect_msgs(s, 6);
    }
    let v = m.json("/varz?cores=1");
    assert!(v["cores"].is_number(), "cores stays nats-server's CPU count");
    let cores = v["core_stats"].as_array().expect("core_stats with cores=1");
    assert_eq!(cores.len(), 2);
    let sum = |k: &str| cores.iter().map(|c| c[k].as_u64().unwrap()).sum::<u64>();
    for k in ["connections", "subscriptions", "in_msgs", "out_msgs", "in_bytes", "out_bytes"] {
        assert_eq!(sum(k), v[k].as_u64().unwrap(), "{k}");
    }
    assert_eq!(sum("in_msgs"), 36);
    assert_eq!(sum("out_msgs"), 36);
    assert_eq!(sum("cross_core_sent"), sum("cross_core_received"));
    if cores.iter().all(|c| c["connections"].as_u64().unwrap() > 0) {
        assert!(sum("cross_core_sent") > 0, "connections on both cores, yet nothing crossed: {v:#}");
    }
    assert!(m.json("/varz").get("core_stats").is_none());
    // /connz sees the connections of both cores.
    assert_eq!(m.json("/connz")["total"].as_u64(), Some(12));
}

#[test]
fn hostile_requests_get_400s_and_the_broker_keeps_serving() {
    let m = Mon::start(Target::Natsu, &["--cores", "2"]);
    let mut client = Raw::connect_with(m.port, r#"{"verbose":false}"#);

    // A client that sends half a request and stalls holds nothing up.
    let mut staller = TcpStream::connect(("127.0.0.1", m.http)).unwrap();
    staller.write_all(b"GET /varz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    assert_eq!(m.get("/healthz").status, 200);
    assert_eq!(m.get("/connz").status, 200);
    client.flush();
    assert!(t.elapsed() < Duration::from_secs(4), "served others promptly, not after the stalled head timed out");

    // Oversized and malformed requests.
    let long = format!("/connz?x={}", "a".repeat(100 * 1024));
    assert_eq!(get(m.http, &long).status, 400, "100 KB URL");
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(request(m.http, format!("GET /varz HTTP/1.1\r\n{many_headers}\r\n").as_bytes()).status, 400);
    assert_eq!(request(m.http, b"\x00\x01\x02 garbage\r\n\r\n").status, 400);
    assert_eq!(request(m.http, b"GET\r\n\r\n").status, 400);
    for target in [
        "/connz?offset=9223372036854775807&limit=9223372036854775807",
        "/connz?offset=-9223372036854775808&limit=-9223372036854775808",
        "/connz?limit=1000000000&subs=detail&state=all",
        "/subsz?subs=1&offset=9223372036854775807&limit=9223372036854775807",
        "/connz?cid=18446744073709551615",
        "/connz?unknown=%ff%fe&also=&=&&",
        "/varz?cores=1&cores=0",
    ] {
        let r = get(m.http, target);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        r.json();
    }
    assert_eq!(get(m.http, "/connz?cid=18446744073709551616").status, 400);
    assert_eq!(get(m.http, "/varz?callback=alert(1)//").status, 400, "JSONP callbacks are names only");

    // Keep-alive and pipelining: two requests in one write, two responses in order.
    let mut s = TcpStream::connect(("127.0.0.1", m.http)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /varz HTTP/1.1\r\nHost: x\r\n\r\nGET /routez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let (a, n1) = parse_response(&buf, false).unwrap();
    assert_eq!(a.text(), r#"{"status":"ok"}"#);
    let (b, n2) = parse_response(&buf[n1..], true).unwrap();
    assert_eq!(b.status, 200);
    assert!(b.header("content-length").unwrap().parse::<usize>().unwrap() > 100, "HEAD tells the length");
    let (c, _) = parse_response(&buf[n1 + n2..], false).unwrap();
    assert_eq!(c.json()["num_routes"], 0);

    // The staller is cut off after the head timeout, not kept forever.
    staller.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut rest = Vec::new();
    let t = Instant::now();
    let _ = staller.read_to_end(&mut rest);
    assert!(t.elapsed() < Duration::from_secs(12), "stalled request closed after {:?}", t.elapsed());

    // And the broker itself never noticed.
    client.send("SUB z 1\r\nPUB z 2\r\nok\r\n");
    assert!(client.flush().contains("MSG z 1 2"));
    assert_eq!(m.json("/varz")["connections"], 1);
}

/// A TLS client configuration trusting exactly `cert`.
fn tls_client(cert: &rcgen::Certificate) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

fn tls_stream(
    config: &std::sync::Arc<rustls::ClientConfig>,
    tcp: TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// GET over HTTPS.
fn https_get(config: &std::sync::Arc<rustls::ClientConfig>, port: u16, target: &str) -> Resp {
    let mut tls = tls_stream(config, TcpStream::connect(("127.0.0.1", port)).unwrap());
    tls.write_all(format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf);
    parse_response(&buf, false).expect("an HTTPS response").0
}

/// `-ms` serves the same endpoints over TLS with the server's certificate, and `/connz`
/// shows a TLS client's version and cipher suite as the reference does.
#[test]
fn https_monitoring_port_and_tls_clients() {
    let dir = TempDir::new("mon-tls");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert: PathBuf = dir.0.join("cert.pem");
    let key: PathBuf = dir.0.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let config = tls_client(&ck.cert);
    let mut conns = Vec::new();
    for target in [Target::Reference, Target::Natsu] {
        let m = Mon::start_with(
            target,
            "-ms",
            None,
            &["--tls", "--tlscert", cert.to_str().unwrap(), "--tlskey", key.to_str().unwrap()],
        );
        // A NATS client over TLS: INFO in the clear, then the handshake.
        let mut tcp = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut info = Vec::new();
        let mut byte = [0u8; 1];
        while !info.ends_with(b"\r\n") {
            assert_eq!(tcp.read(&mut byte).unwrap(), 1, "INFO line");
            info.push(byte[0]);
        }
        let mut nats = tls_stream(&config, tcp);
        nats.write_all(b"CONNECT {\"verbose\":false,\"name\":\"tls-client\"}\r\nPING\r\n").unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"PONG\r\n") {
            let n = nats.read(&mut byte).unwrap();
            assert_eq!(n, 1, "{target:?}: PONG over TLS; have {:?}", String::from_utf8_lossy(&got));
            got.push(byte[0]);
        }
        let r = https_get(&config, m.http, "/varz");
        assert_eq!(r.status, 200, "{target:?}");
        let v = r.json();
        // With `-ms -1` the reference says -1; natsu says the port it picked.
        let want = if target == Target::Natsu { m.http as i64 } else { -1 };
        assert_eq!(v["https_port"].as_i64(), Some(want), "{target:?}");
        assert_eq!(v["http_port"], 0);
        let c = https_get(&config, m.http, "/connz").json();
        conns.push((target, c["connections"][0].clone()));
        // Plain HTTP on the HTTPS port gets no answer.
        let mut plain = TcpStream::connect(("127.0.0.1", m.http)).unwrap();
        plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        plain.write_all(b"GET /varz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let _ = plain.read_to_end(&mut got);
        assert!(!got.starts_with(b"HTTP/1.1 200"), "{target:?}");
        drop(nats);
    }
    let (r, n) = (&conns[0].1, &conns[1].1);
    assert_same_shape("/connz connection over TLS", r, n);
    assert_eq!(n["tls_version"], r["tls_version"]);
    let suite = n["tls_cipher_suite"].as_str().unwrap();
    assert!(suite.starts_with("TLS_"), "Go's suite names: {suite}");
    // The same client gets the same suite from both (the server's order picks: AES-128-GCM).
    assert_eq!(n["tls_cipher_suite"], r["tls_cipher_suite"]);
    assert_eq!(n["name"], "tls-client");
}

// ---------------------------------------------------------------------------------------
// Accounts

/// Drop the imports of nats-server's own system services (`$SYS.REQ.…`, imported into every
/// account; natsu serves none) from an `/accountz?acc=` reply, and the key if none is left.
/// Returns how many went: each of them is one internal subscription in the reference.
fn without_system_imports(v: &mut Value) -> u64 {
    let d = v["account_detail"].as_object_mut().unwrap();
    let Some(list) = d.get_mut("imports").and_then(Value::as_array_mut) else { return 0 };
    let before = list.len();
    list.retain(|i| !i["subject"].as_str().unwrap_or_default().starts_with("$SYS."));
    let gone = (before - list.len()) as u64;
    if list.is_empty() {
        d.remove("imports");
    }
    gone
}

/// A list in a canonical order (each server lists in its own order).
fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.as_array().map_or(Vec::new(), |a| a.iter().map(Value::to_string).collect());
    out.sort();
    out
}

/// `/accstatz` entries by account name, without the `sent` that natsu does not serve.
fn statz_by_account(v: &Value) -> BTreeMap<String, Value> {
    v["account_statz"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut a = a.clone();
            a.as_object_mut().unwrap().remove("sent");
            (a["acc"].as_str().unwrap().to_string(), a)
        })
        .collect()
}

/// A series' value in `/metrics` text: the sample named `name` whose labels contain `label`.
fn metric(samples: &BTreeMap<String, f64>, name: &str, label: &str) -> f64 {
    samples
        .iter()
        .find(|(k, _)| k.starts_with(&format!("{name}{{")) && k.contains(label))
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {name} with {label} in /metrics"))
}

/// Without an accounts block every client is in `$G`, which neither server names in
/// `/connz`; `/accountz`, `/accstatz` and `acc=` filters agree with the reference.
#[test]
fn accounts_endpoints_with_the_global_account() {
    let reference = Mon::start(Target::Reference, &[]);
    let natsu = Mon::start(Target::Natsu, &["--cores", "2"]);
    let _t = (traffic(&reference), traffic(&natsu));
    for m in [&reference, &natsu] {
        let who = m.target;
        for c in m.json("/connz?auth=1&state=all")["connections"].as_array().unwrap() {
            assert!(c.get("account").is_none(), "{who:?}: $G is never named: {c:#}");
        }
        // The reference records no account for a closed `$G` connection: `acc=$G` lists
        // open ones only.
        let all = m.json("/connz?acc=%24G&state=all");
        assert_eq!((all["total"].as_u64(), all["num_connections"].as_u64()), (Some(2), Some(2)), "{who:?}");
        assert_eq!(m.json("/connz?acc=%24G&state=closed")["total"], 0, "{who:?}");
        let page = m.json("/connz?acc=%24G&limit=1&offset=1");
        assert_eq!((page["total"].as_u64(), page["num_connections"].as_u64()), (Some(2), Some(1)), "{who:?}");
        // An account that does not exist: the reply nats-server gives before filling anything.
        let none = m.json("/connz?acc=Nope&limit=5");
        assert_eq!((&none["server_id"], &none["connections"], &none["total"], &none["limit"]), (&Value::from(""), &Value::Null, &Value::from(0), &Value::from(5)), "{who:?}");
        let zeros = m.json("/subsz?acc=Nope&subs=1");
        assert_eq!(zeros["num_subscriptions"], 0, "{who:?}");
        assert!(zeros.get("subscriptions_list").is_none(), "{who:?}");
    }

    let (rl, nl) = (reference.json("/accountz"), natsu.json("/accountz"));
    assert_same_shape("/accountz", &rl, &nl);
    assert_eq!(sorted(&nl["accounts"]), sorted(&rl["accounts"]));
    assert_eq!(nl["system_account"], rl["system_account"]);
    assert_eq!(natsu.json("/varz")["system_account"], reference.json("/varz")["system_account"]);

    let (mut rg, ng) = (reference.json("/accountz?acc=%24G"), natsu.json("/accountz?acc=%24G"));
    let internal = without_system_imports(&mut rg);
    assert_same_shape("/accountz?acc=$G", &rg, &ng);
    let (r, n) = (&rg["account_detail"], &ng["account_detail"]);
    for k in ["account_name", "client_connections", "leafnode_connections", "expired", "complete", "jetstream_enabled"] {
        assert_eq!(n[k], r[k], "/accountz?acc=$G {k}");
    }
    assert!(n.get("is_system").is_none() && r.get("is_system").is_none());
    assert_eq!(n.get("imports"), r.get("imports"));
    // The reference also counts one internal subscription per system import.
    assert_eq!(n["subscriptions"].as_u64(), Some(2));
    assert_eq!(r["subscriptions"].as_u64(), Some(2 + internal));
    assert_eq!(n["sublist_stats"]["num_subscriptions"].as_u64(), Some(2));
    assert!(is_rfc3339(n["update_time"].as_str().unwrap()));

    let (mut rs, ns) = (reference.json("/accountz?acc=%24SYS"), natsu.json("/accountz?acc=%24SYS"));
    // The reference's system account exports its system services; natsu's exports nothing.
    rs["account_detail"].as_object_mut().unwrap().remove("exports");
    assert_same_shape("/accountz?acc=$SYS", &rs, &ns);
    assert!(ns["account_detail"].get("exports").is_none());
    assert_eq!((&ns["account_detail"]["is_system"], &rs["account_detail"]["is_system"]), (&Value::Bool(true), &Value::Bool(true)));

    for target in ["/accstatz", "/accstatz?unused=1", "/accstatz?unused=true&accs=Nope"] {
        let (r, n) = (reference.json(target), natsu.json(target));
        let (r, n) = (statz_by_account(&r), statz_by_account(&n));
        assert_eq!(n, r, "{target}");
    }
    assert_eq!(statz_by_account(&natsu.json("/accstatz")).keys().collect::<Vec<_>>(), ["$G"]);
    let g = &statz_by_account(&natsu.json("/accstatz"))["$G"];
    assert_eq!((g["conns"].as_u64(), &g["received"]), (Some(2), &serde_json::json!({"msgs": 2, "bytes": 8})));

    for target in ["/subsz?acc=%24G", "/subsz?acc=%24G&subs=1&test=foo", "/connz?acc=%24G&auth=1&subs=detail"] {
        let (mut r, n) = (reference.json(target), natsu.json(target));
        if let Some(list) = r.get_mut("subscriptions_list").and_then(Value::as_array_mut) {
            list.retain(|s| !s["subject"].as_str().unwrap_or_default().starts_with("$SYS."));
        }
        assert_same_shape(target, &r, &n);
    }
    let subs = natsu.json("/subsz?subs=1");
    for s in subs["subscriptions_list"].as_array().unwrap() {
        assert_eq!(s["account"], "$G");
    }
    let (r, n) = (reference.json("/subsz?acc=Nope"), natsu.json("/subsz?acc=Nope"));
    assert_eq!(n, r);
    for target in ["/accountz?acc=Nope", "/accstatz?unused=x"] {
        let (r, n) = (reference.get(target), natsu.get(target));
        assert_eq!((n.status, n.text()), (r.status, r.text()), "{target}");
        assert_eq!(n.header("content-type"), r.header("content-type"), "{target}");
    }
    // JSONP works on the new endpoints as on the others.
    let body = natsu.get("/accountz?callback=cb").text();
    assert!(body.starts_with("cb(") && body.ends_with(')'), "{body}");

    let samples = parse_metrics(&natsu.get("/metrics").text());
    let g = "account=\"$G\",";
    assert_eq!(metric(&samples, "gnatsd_accstatz_current_connections", g), 2.0);
    assert_eq!(metric(&samples, "gnatsd_accstatz_subscriptions", g), 2.0);
    assert_eq!(metric(&samples, "gnatsd_accstatz_received_messages", g), 2.0);
    assert_eq!(metric(&samples, "gnatsd_accstatz_received_bytes", g), 8.0);
    assert_eq!(metric(&samples, "natsu_account_out_msgs_total", g), 2.0);
    assert_eq!(metric(&samples, "gnatsd_accstatz_current_connections", "account=\"$SYS\","), 0.0);
    assert!(samples.keys().any(|k| k.contains("account_id=\"$G\",account_name=\"$G\"")));
}

/// Two accounts with users, a stream and a service export from A imported into B.
const ACCOUNTS_CONF: &str = r#"
accounts {
  A {
    users: [ {user: a, password: pa} ]
    exports: [ {stream: "a.>"}, {service: "req.a", response_type: stream}, {service: "priv", accounts: [B]} ]
  }
  B {
    users: [ {user: b, password: pb} ]
    imports: [ {stream: {account: A, subject: "a.>"}, prefix: "fromA"}, {service: {account: A, subject: "req.a"}, to: "ask"} ]
  }
}
"#;

/// Whether natsu reads an `accounts` block (its config parsing lands on its own).
fn natsu_reads_accounts() -> bool {
    let d = TempDir::new("accconf");
    let f = d.0.join("server.conf");
    std::fs::write(&f, ACCOUNTS_CONF).unwrap();
    let out = Command::new(natsu_bin()).args(["-c", f.to_str().unwrap(), "-t"]).output().expect("run natsu -t");
    out.status.success()
}

/// The same clients on either server: in A a subscriber (`a.x`, `foo`) and a publisher; in B
/// a subscriber on the imported stream (`fromA.>`), and a publisher that leaves.
fn account_traffic(m: &Mon) -> Vec<Raw> {
    let user = |u: &str, name: &str| format!(r#"{{"verbose":false,"user":"{u}","pass":"p{u}","name":"{name}"}}"#);
    let mut a1 = Raw::connect_with(m.port, &user("a", "a1"));
    a1.send("SUB a.x 1\r\nSUB foo 2\r\n");
    a1.flush();
    let mut b1 = Raw::connect_with(m.port, &user("b", "b1"));
    b1.send("SUB fromA.> 1\r\n");
    b1.flush();
    let mut a2 = Raw::connect_with(m.port, &user("a", "a2"));
    // (After the CONNECT's PONG: nats-server counts a PUB read together with the CONNECT
    // on `$G`.)
    a2.send("PUB a.x 5\r\nhello\r\n");
    a2.flush();
    expect_msgs(&mut a1, 1);
    expect_msgs(&mut b1, 1);
    let mut b2 = Raw::connect_with(m.port, &user("b", "b2"));
    b2.send("PUB nobody 3\r\nabc\r\n");
    b2.flush();
    let _ = b2.s.shutdown(std::net::Shutdown::Both);
    wait_for(Duration::from_secs(5), "b2 in /connz?state=closed", || {
        m.json("/connz?state=closed")["num_connections"].as_u64() == Some(1)
    });
    vec![a1, b1, a2]
}

/// The same config file on both servers: each connection's account (with `auth=1`, after
/// `authorized_user`), `acc=` filtering and totals, the account list and system account,
/// each account's detail (less the reference's system-service imports), `/accstatz` and the
/// per-account `/metrics`.
#[test]
fn accounts_block_in_the_monitoring_endpoints() {
    if !natsu_reads_accounts() {
        eprintln!("skipped: this natsu does not read an `accounts` block yet");
        return;
    }
    let reference = Mon::start_with(Target::Reference, "-m", Some(ACCOUNTS_CONF), &[]);
    let natsu = Mon::start_with(Target::Natsu, "-m", Some(ACCOUNTS_CONF), &["--cores", "2"]);
    let _t = (account_traffic(&reference), account_traffic(&natsu));

    let users = |m: &Mon| -> Vec<(Value, Value)> {
        let v = m.json("/connz?auth=1&state=all");
        v["connections"].as_array().unwrap().iter().map(|c| (c["authorized_user"].clone(), c["account"].clone())).collect()
    };
    let (ru, nu) = (users(&reference), users(&natsu));
    assert_eq!(nu, ru);
    assert_eq!(nu.iter().map(|(_, a)| a.as_str().unwrap()).collect::<Vec<_>>(), ["A", "B", "A", "B"]);
    for m in [&reference, &natsu] {
        let who = m.target;
        let text = m.get("/connz?auth=1&acc=B").text();
        assert!(text.contains("\"authorized_user\": \"b\",\n      \"account\": \"B\""), "{who:?}: account right after authorized_user: {text}");
        assert!(m.json("/connz?acc=A")["connections"][0].get("account").is_none(), "{who:?}: only with auth=1");
        for (target, total, num) in [
            ("/connz?acc=A&auth=1&limit=1", 2, 1),
            ("/connz?acc=A&state=closed", 0, 0),
            ("/connz?acc=B&state=closed", 1, 1),
            ("/connz?acc=B&state=all", 2, 2),
            ("/connz?acc=%24G", 0, 0),
        ] {
            let v = m.json(target);
            assert_eq!((v["total"].as_u64(), v["num_connections"].as_u64()), (Some(total), Some(num)), "{who:?} {target}");
            if target.contains("auth=1") {
                for c in v["connections"].as_array().unwrap() {
                    assert_eq!(c["account"], "A", "{who:?} {target}");
                }
            }
        }
    }
    // `cid=` with `acc=`: with state=open alone the connection is found whatever its
    // account; otherwise the account filter comes first. The total is the account's.
    for m in [&reference, &natsu] {
        let who = m.target;
        let cids: Vec<u64> = m.json("/connz?state=all")["connections"].as_array().unwrap().iter().map(|c| c["cid"].as_u64().unwrap()).collect();
        let (a1, b2) = (cids[0], cids[3]);
        for (target, total, found) in [
            (format!("/connz?acc=B&cid={a1}"), 1, Some(a1)),
            (format!("/connz?acc=B&cid={a1}&state=all"), 2, None),
            (format!("/connz?acc=A&cid={b2}&state=closed"), 0, None),
            (format!("/connz?acc=B&cid={b2}&state=closed"), 1, Some(b2)),
        ] {
            let v = m.json(&target);
            assert_eq!(v["total"].as_u64(), Some(total), "{who:?} {target}");
            assert_eq!(v["connections"].as_array().unwrap().first().and_then(|c| c["cid"].as_u64()), found, "{who:?} {target}");
        }
    }
    for target in ["/connz?acc=A&auth=1&subs=detail", "/connz?acc=B&state=closed&auth=1"] {
        assert_same_shape(target, &reference.json(target), &natsu.json(target));
    }

    let (rl, nl) = (reference.json("/accountz"), natsu.json("/accountz"));
    assert_eq!(sorted(&nl["accounts"]), sorted(&rl["accounts"]));
    assert_eq!(sorted(&nl["accounts"]), sorted(&serde_json::json!(["$G", "A", "B", "$SYS"])));
    assert_eq!(nl["system_account"], rl["system_account"]);
    for (acc, subs) in [("A", 2), ("B", 1)] {
        let target = format!("/accountz?acc={acc}");
        let (mut r, n) = (reference.json(&target), natsu.json(&target));
        without_system_imports(&mut r);
        assert_same_shape(&target, &r, &n);
        let (r, n) = (&r["account_detail"], &n["account_detail"]);
        assert_eq!(sorted(&n["exports"]), sorted(&r["exports"]), "{target} exports");
        assert_eq!(sorted(&n["imports"]), sorted(&r["imports"]), "{target} imports");
        for k in ["account_name", "client_connections", "leafnode_connections", "expired", "complete"] {
            assert_eq!(n[k], r[k], "{target} {k}");
        }
        assert!(n.get("is_system").is_none());
        assert_eq!(n["subscriptions"].as_u64(), Some(subs), "{target}");
    }

    for target in ["/accstatz", "/accstatz?unused=1"] {
        assert_eq!(statz_by_account(&natsu.json(target)), statz_by_account(&reference.json(target)), "{target}");
    }
    let s = statz_by_account(&natsu.json("/accstatz"));
    assert_eq!(s.keys().collect::<Vec<_>>(), ["A", "B"]);
    assert_eq!(s["B"]["received"], serde_json::json!({"msgs": 1, "bytes": 3}), "a closed connection's traffic stays counted");

    let (r, n) = (reference.json("/subsz?acc=B&subs=1"), natsu.json("/subsz?acc=B&subs=1"));
    assert_same_shape("/subsz?acc=B&subs=1", &r, &n);
    let subjects = |v: &Value| -> Vec<String> {
        v["subscriptions_list"].as_array().unwrap().iter().map(|s| format!("{} {}", s["account"], s["subject"])).collect()
    };
    assert_eq!(subjects(&n), ["\"B\" \"fromA.>\""]);
    assert!(subjects(&r).contains(&subjects(&n)[0]));
    assert_eq!(natsu.json("/subsz")["num_subscriptions"].as_u64(), Some(3), "server-wide: client subscriptions of every account");

    let samples = parse_metrics(&natsu.get("/metrics").text());
    assert_eq!(metric(&samples, "gnatsd_accstatz_current_connections", "account=\"A\","), 2.0);
    assert_eq!(metric(&samples, "gnatsd_accstatz_current_connections", "account=\"B\","), 1.0);
    assert_eq!(metric(&samples, "gnatsd_accstatz_received_messages", "account=\"B\","), 1.0);
    assert_eq!(metric(&samples, "gnatsd_accstatz_subscriptions", "account=\"A\","), 2.0);
    assert_eq!(metric(&samples, "natsu_account_out_msgs_total", "account=\"B\","), 1.0);
}
