//! The client library against a fake server that breaks its own limits: a message bigger
//! than the max_payload its INFO announced closes the connection with an error, and the
//! client never makes room for the size the server claims. The fake server is a std
//! TcpListener in a thread speaking the protocol by hand.

mod common;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;

use natsu::client::{Error, Options};

use common::run_local;

const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(10);
const MAX_PAYLOAD: usize = 1024;

/// How the fake server's connection ended.
#[derive(Debug, PartialEq)]
enum End {
    /// The client closed it.
    Closed,
    /// Still open after [`WAIT`] of silence.
    StillOpen,
}

/// A one-connection server announcing `max_payload` 1024: it answers PING with PONG and,
/// after the first SUB, sends `after_sub`. Its thread returns how the connection ended.
fn fake_server(after_sub: Vec<u8>) -> (String, JoinHandle<End>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("nats://{}", l.local_addr().expect("addr"));
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let info = format!("INFO {{\"server_id\":\"FAKE\",\"version\":\"2.9.0\",\"proto\":1,\"headers\":true,\"max_payload\":{MAX_PAYLOAD}}}\r\n");
        s.write_all(info.as_bytes()).expect("INFO");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut after_sub = Some(after_sub);
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) => return End::Closed,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return End::StillOpen,
                Err(_) => return End::Closed,
            }
            if line.starts_with("PING") {
                let _ = s.write_all(b"PONG\r\n");
            } else if line.starts_with("SUB ") {
                if let Some(bytes) = after_sub.take() {
                    let _ = s.write_all(&bytes);
                }
            }
        }
    });
    (url, t)
}

/// What the client saw: messages delivered on `foo`, the error it closed with, and whether
/// the disconnected callback was told that error.
#[derive(Debug)]
struct Seen {
    delivered: Vec<usize>,
    closed_with: Option<Error>,
    disconnect_reason: Option<String>,
}

/// Connect (no reconnecting) to a fake server that sends `after_sub`, subscribe to `foo` and
/// take messages until the connection closes or nothing comes for a while.
fn client_sees(after_sub: Vec<u8>) -> (Seen, End) {
    let (url, server) = fake_server(after_sub);
    let seen = run_local(LIMIT, move || async move {
        let reason: Rc<RefCell<Option<String>>> = Rc::default();
        let r = reason.clone();
        let nc = Options::new()
            .allow_reconnect(false)
            .disconnected_callback(move |_, e| *r.borrow_mut() = e.map(ToString::to_string))
            .connect(&url)
            .await
            .expect("connect to the fake server");
        let sub = nc.subscribe_sync("foo").expect("subscribe");
        let mut delivered = Vec::new();
        loop {
            match sub.next_msg(Duration::from_secs(2)).await {
                Ok(m) => delivered.push(m.data.len()),
                Err(Error::ConnectionClosed) => break,
                Err(Error::Timeout) => break,
                Err(e) => panic!("next_msg: {e}"),
            }
        }
        let closed_with = if nc.is_closed() { nc.last_error() } else { None };
        nc.close().await;
        let disconnect_reason = reason.borrow().clone();
        Seen { delivered, closed_with, disconnect_reason }
    });
    (seen, server.join().expect("fake server"))
}

fn assert_refused(seen: &Seen, what: &str) {
    match &seen.closed_with {
        Some(Error::Protocol(t)) => assert!(t.contains("max_payload (1024 bytes)"), "{what}: {t}"),
        other => panic!("{what}: the connection should have closed with a protocol error, got {other:?} ({seen:?})"),
    }
    let reason = seen.disconnect_reason.as_deref().unwrap_or_else(|| panic!("{what}: no disconnect reason ({seen:?})"));
    assert!(reason.contains("max_payload"), "{what}: {reason}");
}

/// A MSG claiming 4 GB (or 100 GB): the client closes the connection at once, with an
/// error, without waiting for (or making room for) the payload. The fake server never sends
/// it: a client that waits is still open when `next_msg` gives up and fails here (as the
/// client did before this check, after a 4 GB calloc); one that touches the claimed size
/// does not get that far.
#[test]
fn a_message_announced_over_max_payload_closes_the_connection() {
    for (what, line) in [("MSG", "MSG foo 1 4000000000\r\n"), ("HMSG", "HMSG foo 1 12 4000000000\r\n"), ("MSG 99999999999", "MSG foo 1 99999999999\r\n")] {
        let (seen, end) = client_sees(line.as_bytes().to_vec());
        assert_eq!(end, End::Closed, "{what}: the client must close the connection ({seen:?})");
        assert!(seen.delivered.is_empty(), "{what}: {seen:?}");
        assert_refused(&seen, what);
    }
}

/// A message of exactly max_payload is delivered; one byte more, sent in full, closes the
/// connection, and nothing after it is delivered.
#[test]
fn max_payload_is_the_limit() {
    let msg = |n: usize| {
        let mut m = format!("MSG foo 1 {n}\r\n").into_bytes();
        m.extend(std::iter::repeat(b'x').take(n));
        m.extend_from_slice(b"\r\n");
        m
    };
    let mut bytes = msg(MAX_PAYLOAD);
    bytes.extend(msg(MAX_PAYLOAD + 1));
    bytes.extend(msg(1));
    let (seen, end) = client_sees(bytes);
    assert_eq!(seen.delivered, [MAX_PAYLOAD], "{seen:?}");
    assert_eq!(end, End::Closed, "{seen:?}");
    assert_refused(&seen, "max_payload + 1");

    // Headers count: an HMSG of max_payload in all is delivered.
    let mut h = b"HMSG foo 1 12 1024\r\nNATS/1.0\r\n\r\n".to_vec();
    h.extend(std::iter::repeat(b'y').take(MAX_PAYLOAD - 12));
    h.extend_from_slice(b"\r\n");
    let (seen, end) = client_sees(h);
    assert_eq!(seen.delivered, [MAX_PAYLOAD - 12], "{seen:?}");
    assert!(seen.closed_with.is_none(), "{seen:?}");
    // The client closed it itself at the end.
    assert_eq!(end, End::Closed);
}
