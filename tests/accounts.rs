//! Accounts, differential: the same config file on natsu (two cores, so connections land on
//! both and messages cross between them) and on the reference nats-server, with the same
//! raw-protocol conversation and the same expected bytes. Isolation between accounts, stream
//! imports (prefix and `to`), service imports (`to`, generated `_R_` reply subjects, the
//! answer on the requester's own inbox, singleton and stream responses, no responders).

mod common;

use common::{natsu_and_reference, Raw};

const CONF: &str = r#"
accounts {
  A {
    users: [{user: a, password: a}, {user: a2, password: a2}]
    exports: [
      {stream: "s.>"}
      {stream: "only.b", accounts: [B]}
      {service: "svc.echo"}
      {service: "svc.multi", response_type: stream}
      {service: "svc.one"}
    ]
  }
  B {
    users: [{user: b, password: b}]
    imports: [
      {stream: {account: A, subject: "s.>"}, prefix: "fromA"}
      {stream: {account: A, subject: "only.b"}, to: "mine.b"}
      {service: {account: A, subject: "svc.echo"}, to: "echo"}
      {service: {account: A, subject: "svc.multi"}}
      {service: {account: A, subject: "svc.one"}}
    ]
  }
  C { users: [{user: c, password: c}] }
}
"#;

/// Rounds per test: each opens new connections, which natsu spreads over its cores.
const ROUNDS: usize = 4;

fn login(port: u16, user: &str) -> Raw {
    Raw::connect_with(port, &format!(r#"{{"verbose":false,"user":"{user}","pass":"{user}","headers":true,"no_responders":true}}"#))
}

/// Every message received before a PONG (see `common::messages`).
fn msgs(r: &mut Raw) -> Vec<String> {
    common::messages(r, false)
}

#[test]
fn publishers_reach_only_their_own_account() {
    let (_dir, servers) = natsu_and_reference(CONF, &["--cores", "2"]);
    for (name, srv) in servers {
        for round in 0..ROUNDS {
            let mut a = login(srv.port, "a");
            let mut a2 = login(srv.port, "a2");
            let mut b = login(srv.port, "b");
            let mut c = login(srv.port, "c");
            for r in [&mut a2, &mut b, &mut c] {
                r.send("SUB x 1\r\nSUB s.1 2\r\nSUB > 3\r\n");
                r.flush();
            }
            a.send("PUB x 2\r\nhi\r\nPUB s.1 2\r\nyo\r\n");
            a.flush();
            let got = msgs(&mut a2);
            assert_eq!(got.len(), 4, "{name} round {round}: a2 (same account) gets x and s.1 twice each: {got:?}");
            assert!(got.contains(&"MSG x 1|hi".to_string()) && got.contains(&"MSG s.1 2|yo".to_string()), "{name}: {got:?}");
            // B imports s.> under the prefix only: its own `s.1` and `x` see nothing, `>` sees
            // the imported name.
            assert_eq!(msgs(&mut b), vec!["MSG fromA.s.1 3|yo".to_string()], "{name} round {round}: b");
            assert_eq!(msgs(&mut c), Vec::<String>::new(), "{name} round {round}: c (no import) gets nothing");
            // And back: nothing B or C publishes reaches A.
            b.send("PUB x 2\r\nno\r\nPUB s.1 2\r\nno\r\n");
            c.send("PUB x 2\r\nno\r\nPUB fromA.s.1 2\r\nno\r\n");
            b.flush();
            c.flush();
            assert_eq!(msgs(&mut a2), Vec::<String>::new(), "{name} round {round}: a2 hears nothing from B or C");
        }
    }
}

#[test]
fn stream_imports_rename_with_prefix_and_to() {
    let (_dir, servers) = natsu_and_reference(CONF, &["--cores", "2"]);
    for (name, srv) in servers {
        for round in 0..ROUNDS {
            let mut a = login(srv.port, "a");
            let mut b = login(srv.port, "b");
            b.send("SUB fromA.s.> 1\r\nSUB mine.b 2\r\nSUB only.b 3\r\n");
            b.flush();
            a.send("PUB s.x.y 1\r\n1\r\nPUB only.b 1\r\n2\r\nPUB other 1\r\n3\r\n");
            a.flush();
            assert_eq!(msgs(&mut b), vec!["MSG fromA.s.x.y 1|1".to_string(), "MSG mine.b 2|2".to_string()], "{name} round {round}");
        }
    }
}

/// b requests on its import's local subject; a (the exporter) answers on the reply subject
/// it sees; b gets the answer on its own inbox.
fn request(a: &mut Raw, b: &mut Raw, b_subject: &str, a_subject: &str, answers: usize) -> (String, Vec<String>) {
    b.send(&format!("PUB {b_subject} _INBOX.b.1 3\r\nreq\r\n"));
    b.flush();
    let got = msgs(a);
    assert_eq!(got.len(), 1, "the responder got the request once: {got:?}");
    // HMSG <subject> <sid> <reply>|<headers>|<payload>: the exporter's responder is told who
    // asks, as nats-server tells it.
    let parts: Vec<&str> = got[0].split('|').collect();
    let fields: Vec<&str> = parts[0].split(' ').collect();
    assert_eq!((fields[0], fields[1], parts[2]), ("HMSG", a_subject, "req"), "{got:?}");
    assert!(parts[1].starts_with("NATS/1.0\r\nNats-Request-Info: {\"acc\":\"B\",\"rtt\":"), "{got:?}");
    let reply = fields[3].to_string();
    for i in 0..answers {
        a.send(&format!("PUB {reply} 4\r\nans{i}\r\n"));
    }
    a.flush();
    (reply, msgs(b))
}

#[test]
fn service_imports_answer_on_the_requesters_inbox() {
    let (_dir, servers) = natsu_and_reference(CONF, &["--cores", "2"]);
    for (name, srv) in servers {
        for round in 0..ROUNDS {
            let mut a = login(srv.port, "a");
            let mut b = login(srv.port, "b");
            a.send("SUB svc.* 7\r\n");
            a.flush();
            b.send("SUB _INBOX.b.* 9\r\n");
            b.flush();
            let (reply, got) = request(&mut a, &mut b, "echo", "svc.echo", 1);
            assert!(reply.starts_with("_R_."), "{name}: the responder sees a generated reply subject, not the requester's inbox: {reply}");
            assert_eq!(got, vec!["MSG _INBOX.b.1 9|ans0".to_string()], "{name} round {round}: echo");
            // Singleton (the default): the first answer is the answer.
            let (_, got) = request(&mut a, &mut b, "svc.one", "svc.one", 3);
            assert_eq!(got, vec!["MSG _INBOX.b.1 9|ans0".to_string()], "{name} round {round}: singleton");
            // Stream: every answer until the threshold.
            let (_, got) = request(&mut a, &mut b, "svc.multi", "svc.multi", 3);
            assert_eq!(got.len(), 3, "{name} round {round}: stream responses: {got:?}");
            // The exported subject itself is not B's: publishing it in B reaches nobody in A.
            b.send("PUB svc.echo 1\r\nx\r\n");
            b.flush();
            assert_eq!(msgs(&mut a), Vec::<String>::new(), "{name} round {round}");
        }
    }
}

/// As nats-server 2.9: a request that reaches a service import gets no "no responders"
/// status even when the exporter has no responder (the requester times out instead).
#[test]
fn a_service_import_without_a_responder_stays_silent() {
    let (_dir, servers) = natsu_and_reference(CONF, &["--cores", "2"]);
    for (name, srv) in servers {
        let mut b = login(srv.port, "b");
        b.send("SUB _INBOX.b.* 9\r\nPUB echo _INBOX.b.1 1\r\nx\r\n");
        assert_eq!(msgs(&mut b), Vec::<String>::new(), "{name}");
        // Without the import, the same request is refused at once.
        b.send("PUB nothing.here _INBOX.b.2 1\r\nx\r\n");
        let got = msgs(&mut b);
        assert!(got.len() == 1 && got[0].starts_with("HMSG _INBOX.b.2 9|NATS/1.0 503"), "{name}: {got:?}");
    }
}
