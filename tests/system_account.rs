//! The system account, differential: natsu (two cores) and nats-server 2.9 with the same
//! config publish the same connect and disconnect advisories in `$SYS` (same keys in the same
//! order, same values where they are not times or ids), and answer `$SYS.REQ.SERVER.PING`
//! and `$SYS.REQ.SERVER.<id|PING>.<ENDPOINT>` with the same shapes.

mod common;

use common::{natsu_and_reference, Raw, Server};
use serde_json::Value;

const CONF: &str = r#"
accounts {
  SYS { users: [{user: sys, password: sys}] }
  A { users: [{user: a, password: a}] }
  B { users: [{user: b, password: b}] }
}
system_account: SYS
"#;

fn login(port: u16, user: &str) -> Raw {
    Raw::connect_with(port, &format!(r#"{{"verbose":false,"user":"{user}","pass":"{user}","headers":true,"no_responders":true,"name":"n-{user}","lang":"rust","version":"9.9"}}"#))
}

/// The messages received before a PONG: (subject, headers and payload).
fn msgs(r: &mut Raw) -> Vec<(String, String)> {
    let got = r.flush();
    let mut out = Vec::new();
    let mut rest = got.as_str();
    while let Some(i) = rest.find("\r\n") {
        let line = &rest[..i];
        rest = &rest[i + 2..];
        let f: Vec<&str> = line.split_whitespace().collect();
        if !matches!(f.first().copied(), Some("MSG" | "HMSG")) {
            continue;
        }
        let n: usize = f[f.len() - 1].parse().unwrap();
        out.push((f[1].to_string(), rest[..n].to_string()));
        rest = &rest[n + 2..];
    }
    out
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn server_id(r: &Raw) -> String {
    let info: Value = serde_json::from_str(r.info.trim_start_matches("INFO ").trim()).unwrap();
    info["server_id"].as_str().unwrap().to_string()
}

/// What one server says: the two advisories and the answers to the requests.
struct Seen {
    connect: Value,
    disconnect: Value,
    statsz: Value,
    varz: Value,
    connz_a: Value,
    bad: Value,
    unknown: String,
}

fn observe(name: &str, srv: &Server) -> Seen {
    let mut sys = login(srv.port, "sys");
    sys.send("SUB $SYS.ACCOUNT.*.CONNECT 1\r\nSUB $SYS.ACCOUNT.*.DISCONNECT 3\r\nSUB _INBOX.s 2\r\n");
    sys.flush();
    let id = server_id(&sys);
    // A client of another account never sees the system account's messages.
    let mut other = login(srv.port, "a");
    other.send("SUB $SYS.> 1\r\n");
    other.flush();
    let mut a = login(srv.port, "a");
    a.send("PUB x 2\r\nhi\r\n");
    a.flush();
    // Advisories are published apart from the client's own traffic (nats-server: from
    // another goroutine; natsu: from the client's core, which may not be the watcher's), so
    // the watcher's PONG does not wait for them: collect until both of A's have come (the
    // watcher's own CONNECT may come too). Account A's two come in order.
    let mut events: Vec<(String, String)> = Vec::new();
    for _ in 0..50 {
        events.extend(msgs(&mut sys).into_iter().filter(|(s, _)| s == "$SYS.ACCOUNT.A.CONNECT"));
        if events.len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(events.len(), 2, "{name}: {events:?}");
    let connect: Value = serde_json::from_str(&events.pop().unwrap().1).unwrap();
    drop(a);
    // The disconnect is published when the server notices: wait for it with PINGs.
    let mut disconnect = None;
    for _ in 0..50 {
        if let Some((subject, body)) = msgs(&mut sys).pop() {
            assert_eq!(subject, "$SYS.ACCOUNT.A.DISCONNECT", "{name}");
            disconnect = Some(serde_json::from_str(&body).unwrap());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let disconnect = disconnect.unwrap_or_else(|| panic!("{name}: no DISCONNECT advisory"));
    assert_eq!(msgs(&mut other), vec![], "{name}: account A saw system messages");
    // The watcher stops watching advisories: the asker's own would come between answers.
    sys.send("UNSUB 1\r\nUNSUB 3\r\n");
    sys.flush();
    let mut ask = |subject: String, body: &str| {
        sys.send(&format!("PUB {subject} _INBOX.s {}\r\n{body}\r\n", body.len()));
        // The answer may come after the PONG (figures are gathered from every core).
        let mut got = msgs(&mut sys);
        for _ in 0..50 {
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            got = msgs(&mut sys);
        }
        assert_eq!(got.len(), 1, "{name} {subject}: {got:?}");
        got[0].1.clone()
    };
    // Another account gets its own connections and figures, and nothing else. (The watcher's
    // `$SYS.>` in A would take A's requests itself.)
    other.send("UNSUB 1\r\n");
    other.flush();
    let mut asker = login(srv.port, "a");
    asker.send("SUB _INBOX.a 5\r\n");
    let mut ask_as_a = |subject: &str| {
        asker.send(&format!("PUB {subject} _INBOX.a 0\r\n\r\n"));
        let mut got = msgs(&mut asker);
        for _ in 0..50 {
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            got = msgs(&mut asker);
        }
        assert_eq!(got.len(), 1, "{name} {subject} from A: {got:?}");
        got[0].1.clone()
    };
    for subject in ["$SYS.REQ.SERVER.PING.CONNZ", "$SYS.REQ.ACCOUNT.PING.CONNZ"] {
        let v: Value = serde_json::from_str(&ask_as_a(subject)).unwrap();
        let conns = v["data"]["connections"].as_array().map_or(0, Vec::len);
        assert_eq!((conns, v["data"]["total"].as_u64()), (2, Some(2)), "{name} {subject}: A's two connections only: {v}");
    }
    let v: Value = serde_json::from_str(&ask_as_a("$SYS.REQ.ACCOUNT.PING.STATZ")).unwrap();
    let accs: Vec<&str> = v["data"]["account_statz"].as_array().map(|l| l.iter().filter_map(|e| e["acc"].as_str()).collect()).unwrap_or_default();
    assert_eq!(accs, vec!["A"], "{name}: {v}");
    assert_eq!(v["data"]["account_statz"][0]["conns"], 2, "{name}: {v}");
    for subject in ["$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.VARZ"] {
        assert!(ask_as_a(subject).starts_with("NATS/1.0 503"), "{name}: {subject} is the system account's");
    }
    drop(asker);
    let statsz = serde_json::from_str(&ask("$SYS.REQ.SERVER.PING".into(), "")).unwrap();
    let varz = serde_json::from_str(&ask("$SYS.REQ.SERVER.PING.VARZ".into(), "")).unwrap();
    let connz_a = serde_json::from_str(&ask(format!("$SYS.REQ.SERVER.{id}.CONNZ"), r#"{"acc":"A"}"#)).unwrap();
    let bad = serde_json::from_str(&ask("$SYS.REQ.SERVER.PING.CONNZ".into(), "{bad")).unwrap();
    let unknown = ask("$SYS.REQ.SERVER.PING.NOSUCHZ".into(), "");
    assert_eq!(connect["server"]["id"], id.as_str(), "{name}");
    Seen { connect, disconnect, statsz, varz, connz_a, bad, unknown }
}

#[test]
fn advisories_and_requests_match_the_reference() {
    let mut seen = Vec::new();
    let (_dir, servers) = natsu_and_reference(CONF, &["--cores", "2"]);
    for (name, srv) in servers {
        let s = observe(name, &srv);
        // What each server must say whatever the other does.
        assert_eq!(s.connect["type"], "io.nats.server.advisory.v1.client_connect", "{name}");
        assert_eq!(s.disconnect["type"], "io.nats.server.advisory.v1.client_disconnect", "{name}");
        for (k, want) in [("acc", "A"), ("user", "a"), ("name", "n-a"), ("lang", "rust"), ("ver", "9.9"), ("kind", "Client"), ("client_type", "nats")] {
            assert_eq!(s.connect["client"][k], want, "{name}: connect client.{k}");
            assert_eq!(s.disconnect["client"][k], want, "{name}: disconnect client.{k}");
        }
        assert_eq!(s.disconnect["reason"], "Client Closed", "{name}");
        // natsu counts what the client published; nats-server 2.9 reports 0 messages here
        // (it counts a read loop's traffic into the client only later), a difference kept.
        let received = (s.disconnect["received"]["msgs"].as_u64(), s.disconnect["received"]["bytes"].as_u64());
        if name == "natsu" {
            assert_eq!(received, (Some(1), Some(2)), "{name}");
        } else {
            assert!(received.0.is_some() && received.1.is_some(), "{name}");
        }
        assert!(matches!(s.statsz["statsz"]["connections"].as_u64(), Some(2 | 3)), "{name}: sys, the A watcher (and the A asker if its close is not seen yet)");
        assert_eq!(s.statsz["statsz"]["active_servers"], 1, "{name}");
        assert_eq!(s.varz["data"]["server_id"], s.connect["server"]["id"], "{name}");
        let conns = s.connz_a["data"]["connections"].as_array().map_or(0, Vec::len);
        assert_eq!(conns, 1, "{name}: CONNZ with acc A lists the A watcher only: {}", s.connz_a);
        assert_eq!(s.bad["error"]["code"], 400, "{name}: {}", s.bad);
        assert!(s.unknown.starts_with("NATS/1.0 503"), "{name}: an unknown endpoint has no responder: {:?}", s.unknown);
        seen.push((name, s));
    }
    if let [(_, ours), (_, theirs)] = &seen[..] {
        for (what, a, b) in [
            ("connect", &ours.connect, &theirs.connect),
            ("connect.server", &ours.connect["server"], &theirs.connect["server"]),
            ("connect.client", &ours.connect["client"], &theirs.connect["client"]),
            ("disconnect", &ours.disconnect, &theirs.disconnect),
            ("disconnect.client", &ours.disconnect["client"], &theirs.disconnect["client"]),
            ("statsz", &ours.statsz, &theirs.statsz),
            ("statsz.statsz", &ours.statsz["statsz"], &theirs.statsz["statsz"]),
            ("varz", &ours.varz, &theirs.varz),
            ("connz", &ours.connz_a, &theirs.connz_a),
            ("error", &ours.bad, &theirs.bad),
            ("error.error", &ours.bad["error"], &theirs.bad["error"]),
        ] {
            assert_eq!(keys(a), keys(b), "{what}: keys and their order");
        }
    }
}

/// `$SYS.REQ.ACCOUNT.<name>.<E>` from the system account, against both servers: the same
/// keys, and figures about the account named only.
#[test]
fn account_requests_match_the_reference() {
    let mut seen: Vec<(&str, Vec<(String, Value)>)> = Vec::new();
    let (_dir, servers) = natsu_and_reference(CONF, &["--cores", "2"]);
    for (name, srv) in &servers {
        let mut sys = login(srv.port, "sys");
        sys.send("SUB _INBOX.s 2\r\n");
        sys.flush();
        let mut a = login(srv.port, "a");
        a.send("SUB a.one 1\r\nSUB a.two 2\r\n");
        a.flush();
        // Answers may come after the PONG (figures come from every core); `none` waits a
        // while for an answer that must not come.
        let mut ask = |subject: &str, body: &str, none: bool| -> Option<Value> {
            sys.send(&format!("PUB {subject} _INBOX.s {}\r\n{body}\r\n", body.len()));
            let mut got = msgs(&mut sys);
            for _ in 0..if none { 15 } else { 100 } {
                if !got.is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
                got = msgs(&mut sys);
            }
            assert!(got.len() <= 1, "{name} {subject}: {got:?}");
            got.pop().map(|(_, body)| serde_json::from_str(&body).unwrap())
        };
        let mut answers = Vec::new();
        let connz = ask("$SYS.REQ.ACCOUNT.A.CONNZ", "", false).expect("CONNZ");
        assert_eq!(connz["data"]["num_connections"], 1, "{name}: A's connection only: {connz}");
        let subsz = ask("$SYS.REQ.ACCOUNT.A.SUBSZ", "", false).expect("SUBSZ");
        let subjects: Vec<&str> = subsz["data"]["subscriptions_list"].as_array().map(|l| l.iter().filter_map(|s| s["subject"].as_str()).collect()).unwrap_or_default();
        // (nats-server also lists the system imports it puts in every account.)
        let mut subjects: Vec<&str> = subjects.into_iter().filter(|s| !s.starts_with("$SYS.")).collect();
        subjects.sort();
        assert_eq!(subjects, ["a.one", "a.two"], "{name}: {subsz}");
        let leafz = ask("$SYS.REQ.ACCOUNT.A.LEAFZ", "", false).expect("LEAFZ");
        assert_eq!(leafz["data"]["leafnodes"], 0, "{name}: {leafz}");
        let mut info = ask("$SYS.REQ.ACCOUNT.A.INFO", "", false).expect("INFO");
        assert_eq!(info["data"]["account_name"], "A", "{name}: {info}");
        // nats-server lists the system services it imports into every account (natsu
        // answers them without imports: see src/server/monitor/accountz.rs).
        if info["data"]["imports"].as_array().is_some_and(|l| l.iter().all(|i| i["account"] == "SYS")) {
            info["data"].as_object_mut().unwrap().shift_remove("imports");
        }
        let statz = ask("$SYS.REQ.ACCOUNT.A.STATZ", "", false).expect("STATZ");
        assert_eq!((statz["data"]["account_statz"][0]["acc"].as_str(), statz["data"]["account_statz"][0]["conns"].as_u64()), (Some("A"), Some(1)), "{name}: {statz}");
        let all = ask("$SYS.REQ.ACCOUNT.PING.STATZ", "", false).expect("PING.STATZ");
        let mut accs: Vec<&str> = all["data"]["account_statz"].as_array().map(|l| l.iter().filter_map(|e| e["acc"].as_str()).collect()).unwrap_or_default();
        accs.sort();
        assert_eq!(accs, ["A", "SYS"], "{name}: the accounts with connections: {all}");
        // An account without connections: no STATZ answer unless asked to include it.
        assert_eq!(ask("$SYS.REQ.ACCOUNT.B.STATZ", "", true), None, "{name}");
        let unused = ask("$SYS.REQ.ACCOUNT.B.STATZ", r#"{"include_unused":true}"#, false).expect("STATZ include_unused");
        assert_eq!(unused["data"]["account_statz"][0]["conns"], 0, "{name}: {unused}");
        let missing = ask("$SYS.REQ.ACCOUNT.NOPE.INFO", "", false).expect("INFO of no account");
        assert_eq!(missing["error"]["code"], 500, "{name}: {missing}");
        for (what, v) in [("connz", connz), ("subsz", subsz), ("leafz", leafz), ("info", info), ("statz", statz), ("missing", missing)] {
            answers.push((what.to_string(), v));
        }
        seen.push((name, answers));
    }
    if let [(_, ours), (_, theirs)] = &seen[..] {
        for ((what, a), (_, b)) in ours.iter().zip(theirs) {
            assert_eq!(keys(a), keys(b), "{what}: keys");
            assert_eq!(keys(&a["data"]), keys(&b["data"]), "{what}: data's keys");
        }
    }
}
