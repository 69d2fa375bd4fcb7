//! A new subscription takes effect as fast as on nats-server. Services that subscribe and
//! never flush are common (nats-proxy's router is one): a request sent on another connection
//! right after the SUB must not get a false "no responders" more often than nats-server
//! gives one. With several cores, the SUB's interest reaches the publishing core one mailbox
//! hop later; natsu asks the other cores before it answers 503.

mod common;

use common::{reference, Raw, Server};

const TRIES: usize = 1000;
/// Subscribing connections, used in turn: with two cores some share the requester's core
/// and some do not.
const SUBSCRIBERS: usize = 4;

/// SUB on one connection, and as soon as its write returns, a request from another
/// connection that wants no_responders; count the 503s.
fn false_no_responders(server: &Server) -> usize {
    let mut subs: Vec<Raw> = (0..SUBSCRIBERS).map(|_| Raw::connect_with(server.port, r#"{"verbose":false}"#)).collect();
    let mut req = Raw::connect_with(server.port, r#"{"verbose":false,"headers":true,"no_responders":true}"#);
    req.send("SUB _R.> 1\r\n");
    req.flush();
    let mut no_responders = 0;
    for i in 0..TRIES {
        subs[i % SUBSCRIBERS].send(&format!("SUB svc.{i} {i}\r\n"));
        req.send(&format!("PUB svc.{i} _R.{i} 2\r\nhi\r\n"));
        // The PONG comes after whatever the broker answered the request with.
        let got = req.flush();
        if got.contains("503") {
            no_responders += 1;
        }
    }
    // Every request that was not refused reached its subscriber, exactly once.
    let mut delivered = 0;
    for s in &mut subs {
        delivered += s.flush().matches("MSG svc.").count();
    }
    assert_eq!(delivered + no_responders, TRIES, "{delivered} delivered and {no_responders} refused of {TRIES}");
    no_responders
}

#[test]
fn a_request_right_after_a_sub_elsewhere_is_not_refused_more_than_on_nats_server() {
    if reference() {
        // The comparison below runs the reference itself.
        return;
    }
    let natsu = Server::with(&Default::default(), &["--cores", "2"]);
    let ours = false_no_responders(&natsu);
    let nats_server = Server::reference_with(&["-p", "-1"]);
    let theirs = false_no_responders(&nats_server);
    eprintln!("false no-responders in {TRIES} tries: natsu {ours}, nats-server {theirs}");
    assert!(ours <= theirs, "natsu answered 503 {ours} times, nats-server {theirs}");
}

/// A request nobody anywhere listens to still gets its 503 at once, with several cores.
#[test]
fn a_request_with_no_responder_anywhere_gets_503() {
    let server = Server::with(&Default::default(), &["--cores", "2"]);
    let mut req = Raw::connect_with(server.port, r#"{"verbose":false,"headers":true,"no_responders":true}"#);
    req.send("SUB _R.> 1\r\n");
    for i in 0..50 {
        req.send(&format!("PUB nobody.{i} _R.{i} 2\r\nhi\r\n"));
        let got = req.flush();
        assert!(got.starts_with(&format!("HMSG _R.{i} 1 ")) && got.contains("NATS/1.0 503"), "try {i}: {got:?}");
    }
}
