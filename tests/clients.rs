//! Real-client tests: the async-nats crate (the official Rust client) talks to the broker
//! exactly as an application would: pub/sub, wildcards, queue groups, request/reply, headers,
//! no_responders and flush.
//!
//! Each test starts its own broker (natsu, or the reference `nats-server` with
//! `NATSU_TEST_TARGET=reference`) on a free loopback port. Every wait is bounded by
//! [`WAIT`]. No test sleeps to let the server catch up: async-nats 0.38's `flush` only writes
//! the socket (it sends no PING), so ordering between two connections comes from a [`Probe`]
//! round trip instead.

mod common;

use std::time::Duration;

use async_nats::{Client, HeaderMap, Message, RequestErrorKind, Subscriber};
use futures::{FutureExt, StreamExt};

use common::probe::{barrier, Probe};
use common::Server;

/// Upper bound on any single wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

/// Connect a client to `server`, failing the test rather than hanging.
async fn connect(server: &Server) -> Client {
    tokio::time::timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Write out everything `client` has buffered (async-nats's flush: no server round trip).
async fn flush(client: &Client) {
    tokio::time::timeout(WAIT, client.flush())
        .await
        .expect("flush timed out")
        .expect("flush");
}

/// The next message on `sub`, failing after [`WAIT`].
async fn next(sub: &mut Subscriber) -> Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("timed out waiting for a message")
        .expect("subscription ended")
}

/// Messages already received on `sub` and not yet taken, without waiting.
fn take_ready(sub: &mut Subscriber) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(Some(m)) = sub.next().now_or_never() {
        out.push(m);
    }
    out
}

/// The value of header `name` in `msg`, if any.
fn header<'a>(msg: &'a Message, name: &str) -> Option<&'a str> {
    msg.headers.as_ref()?.get(name).map(|v| v.as_str())
}

/// The payload of `msg` read as a decimal number (the tests number their messages).
fn number(msg: &Message) -> usize {
    std::str::from_utf8(&msg.payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("payload is not a number: {:?}", msg.payload))
}

#[tokio::test]
async fn pub_sub() {
    let server = Server::start();
    let sub_client = connect(&server).await;
    let pub_client = connect(&server).await;
    let mut sub = sub_client.subscribe("greet.joe").await.unwrap();
    let probe = Probe::start(&sub_client).await;
    barrier(&pub_client, &probe).await;

    // The first publish goes to a subject nobody listens on: it must not be delivered.
    pub_client
        .publish("greet.sam", "not for joe".into())
        .await
        .unwrap();
    pub_client
        .publish("greet.joe", "hello joe".into())
        .await
        .unwrap();
    flush(&pub_client).await;

    let m = next(&mut sub).await;
    assert_eq!(m.subject.as_str(), "greet.joe");
    assert_eq!(&m.payload[..], b"hello joe");
    assert!(m.reply.is_none());
    assert!(
        m.headers.is_none(),
        "a PUB must arrive as MSG, without headers"
    );

    barrier(&pub_client, &probe).await;
    assert!(
        take_ready(&mut sub).is_empty(),
        "only one message was published to greet.joe"
    );
}

#[tokio::test]
async fn wildcard_subscriptions() {
    let server = Server::start();
    let sub_client = connect(&server).await;
    let pub_client = connect(&server).await;
    let mut star = sub_client.subscribe("orders.*").await.unwrap();
    let mut full = sub_client.subscribe("orders.>").await.unwrap();
    let probe = Probe::start(&sub_client).await;
    barrier(&pub_client, &probe).await;

    for subject in [
        "orders.new",
        "orders.eu.new",
        "other.new",
        "orders",
        "orders.end",
    ] {
        pub_client
            .publish(subject.to_string(), subject.into())
            .await
            .unwrap();
    }
    barrier(&pub_client, &probe).await;

    // `*` matches exactly one token; `>` one or more. Neither matches the bare "orders".
    let subjects = |msgs: Vec<Message>| -> Vec<String> {
        msgs.iter().map(|m| m.subject.to_string()).collect()
    };
    assert_eq!(
        subjects(take_ready(&mut star)),
        ["orders.new", "orders.end"],
        "orders.*"
    );
    assert_eq!(
        subjects(take_ready(&mut full)),
        ["orders.new", "orders.eu.new", "orders.end"],
        "orders.>"
    );
}

#[tokio::test]
async fn queue_group_delivers_each_message_once() {
    const N: usize = 300;
    const MEMBERS: usize = 3;
    let server = Server::start();
    let pub_client = connect(&server).await;
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        let c = connect(&server).await;
        let sub = c.queue_subscribe("jobs", "workers".into()).await.unwrap();
        let probe = Probe::start(&c).await;
        barrier(&pub_client, &probe).await;
        members.push((c, sub, probe));
    }

    for i in 0..N {
        pub_client
            .publish("jobs", i.to_string().into())
            .await
            .unwrap();
    }
    // After a barrier to each member, every delivery has reached its member's client.
    let mut seen = vec![0usize; N];
    let mut per_member = Vec::new();
    for (_, sub, probe) in members.iter_mut() {
        barrier(&pub_client, probe).await;
        let got = take_ready(sub);
        for m in &got {
            seen[number(m)] += 1;
        }
        per_member.push(got.len());
    }
    let lost: Vec<usize> = (0..N).filter(|&i| seen[i] == 0).collect();
    let doubled: Vec<usize> = (0..N).filter(|&i| seen[i] > 1).collect();
    assert!(
        lost.is_empty(),
        "{} messages lost, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        doubled.is_empty(),
        "messages delivered more than once: {doubled:?}"
    );
    // The reference spreads a group's messages at random; 300 over 3 members leaves none idle.
    assert!(
        per_member.iter().all(|&n| n > 0),
        "a member got nothing: {per_member:?}"
    );
}

#[tokio::test]
async fn request_reply() {
    let server = Server::start();
    let responder = connect(&server).await;
    let requester = connect(&server).await;
    let mut requests = responder.subscribe("svc.upper").await.unwrap();
    let probe = Probe::start(&responder).await;
    barrier(&requester, &probe).await;

    let r = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(req) = requests.next().await {
            let reply = req.reply.expect("a request carries a reply subject");
            let body = String::from_utf8_lossy(&req.payload).to_uppercase();
            r.publish(reply, body.into()).await.unwrap();
            r.flush().await.unwrap();
        }
    });

    for i in 0..10 {
        let body = format!("request {i}");
        let resp = tokio::time::timeout(WAIT, requester.request("svc.upper", body.clone().into()))
            .await
            .expect("request timed out")
            .expect("request");
        assert_eq!(&resp.payload[..], body.to_uppercase().as_bytes());
    }
    task.abort();
}

#[tokio::test]
async fn request_reply_with_headers() {
    let server = Server::start();
    let responder = connect(&server).await;
    let requester = connect(&server).await;
    let mut requests = responder.subscribe("svc.trace").await.unwrap();
    let probe = Probe::start(&responder).await;
    barrier(&requester, &probe).await;

    let r = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(req) = requests.next().await {
            let reply = req
                .reply
                .clone()
                .expect("a request carries a reply subject");
            let mut headers = HeaderMap::new();
            headers.insert(
                "X-Trace-Id",
                header(&req, "X-Trace-Id").unwrap_or("missing"),
            );
            headers.insert("X-Responder", "echo");
            r.publish_with_headers(reply, headers, req.payload.clone())
                .await
                .unwrap();
            r.flush().await.unwrap();
        }
    });

    let mut headers = HeaderMap::new();
    headers.insert("X-Trace-Id", "trace-42");
    let resp = tokio::time::timeout(
        WAIT,
        requester.request_with_headers("svc.trace", headers, "ping".into()),
    )
    .await
    .expect("request timed out")
    .expect("request");
    assert_eq!(
        header(&resp, "X-Trace-Id"),
        Some("trace-42"),
        "request header not echoed"
    );
    assert_eq!(header(&resp, "X-Responder"), Some("echo"));
    assert_eq!(&resp.payload[..], b"ping");
    task.abort();
}

#[tokio::test]
async fn request_without_responders_fails_fast() {
    let server = Server::start();
    let requester = connect(&server).await;
    // async-nats asks for no_responders in CONNECT: the server answers the request at once
    // with a 503 status instead of letting it run into the client's 10 s timeout.
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(WAIT, requester.request("nobody.home", "anyone?".into()))
        .await
        .expect("a request with no responders must fail at once, not time out")
        .expect_err("a request with no responders must fail");
    assert_eq!(err.kind(), RequestErrorKind::NoResponders, "got {err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no_responders took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn publish_with_headers_arrives_intact() {
    let server = Server::start();
    let sub_client = connect(&server).await;
    let pub_client = connect(&server).await;
    let mut sub = sub_client.subscribe("headers.test").await.unwrap();
    let probe = Probe::start(&sub_client).await;
    barrier(&pub_client, &probe).await;

    let mut headers = HeaderMap::new();
    headers.insert("X-Single", "one value");
    headers.append("X-Multi", "first");
    headers.append("X-Multi", "second");
    headers.insert("X-Punct", "a:b;c=d, e");
    pub_client
        .publish_with_headers("headers.test", headers.clone(), "body".into())
        .await
        .unwrap();
    // Headers with an empty payload are still an HMSG.
    pub_client
        .publish_with_headers("headers.test", headers, "".into())
        .await
        .unwrap();
    barrier(&pub_client, &probe).await;

    let got = take_ready(&mut sub);
    assert_eq!(got.len(), 2, "expected two messages");
    for (m, want_payload) in got.iter().zip([&b"body"[..], &b""[..]]) {
        assert_eq!(&m.payload[..], want_payload);
        let h = m.headers.as_ref().expect("headers lost");
        assert_eq!(h.get("X-Single").map(|v| v.as_str()), Some("one value"));
        assert_eq!(h.get("X-Punct").map(|v| v.as_str()), Some("a:b;c=d, e"));
        let multi: Vec<&str> = h.get_all("X-Multi").map(|v| v.as_str()).collect();
        assert_eq!(
            multi,
            ["first", "second"],
            "repeated header values lost or reordered"
        );
        assert!(m.status.is_none(), "a plain HPUB must not carry a status");
    }
}

#[tokio::test]
async fn flush_delivers_everything_in_order() {
    const N: usize = 1000;
    let server = Server::start();
    let sub_client = connect(&server).await;
    let pub_client = connect(&server).await;

    // Flushing a client with nothing pending succeeds at once.
    flush(&pub_client).await;

    let mut sub = sub_client.subscribe("flush.test").await.unwrap();
    let probe = Probe::start(&sub_client).await;
    barrier(&pub_client, &probe).await;

    // Everything published before a flush leaves the client; the subscriber then sees all
    // of it, in order, without the publisher doing anything else.
    for i in 0..N {
        pub_client
            .publish("flush.test", i.to_string().into())
            .await
            .unwrap();
    }
    flush(&pub_client).await;
    for i in 0..N {
        assert_eq!(number(&next(&mut sub).await), i, "out of order");
    }
    barrier(&pub_client, &probe).await;
    assert!(
        take_ready(&mut sub).is_empty(),
        "more than {N} messages arrived"
    );
}
