//! The client library (`natsu::client`) against a real server: natsu, or the reference
//! nats-server with `NATSU_TEST_TARGET=reference`. Every call of the API is exercised here;
//! reconnecting and pools, TLS and credentials, and typed messages have files of their own.
//!
//! Ordering between a SUB and a publish comes from `flush()` (a PING/PONG round trip), never
//! from sleeping.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel;
use natsu::client::{self, Connection, Error, Headers, Msg, Options, Status};

use common::{run_local, Server};

const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(5);

async fn connect(url: &str) -> Connection {
    client::connect(url).await.expect("connect")
}

/// Wait until `done()` holds, checking after each short pause; panic after WAIT.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

/// A responder answering `<data>!` on `subject`.
fn echo_service(nc: &Connection, subject: &str) -> client::Subscription {
    let replier = nc.clone();
    nc.subscribe(subject, move |m: Msg| {
        if let Some(reply) = &m.reply {
            let mut answer = m.data.to_vec();
            answer.push(b'!');
            replier.try_publish(reply, answer).unwrap();
        }
    })
    .unwrap()
}

#[test]
fn publish_and_next_msg() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let nc = connect(&url).await;
        assert_eq!(nc.status(), Status::Connected);
        let sub = nc.subscribe_sync("greet.*").unwrap();
        nc.flush().await.unwrap();
        nc.publish("greet.joe", "hello").await.unwrap();
        nc.publish_request("greet.ann", "reply.here", "hi").await.unwrap();
        let m = sub.next_msg(WAIT).await.unwrap();
        assert_eq!((m.subject.as_str(), m.text(), m.reply.as_deref()), ("greet.joe", Some("hello"), None));
        let m = sub.next_msg(WAIT).await.unwrap();
        assert_eq!((m.subject.as_str(), m.reply.as_deref()), ("greet.ann", Some("reply.here")));
        assert!(matches!(sub.next_msg(Duration::from_millis(50)).await, Err(Error::Timeout)));
        let s = nc.stats();
        assert_eq!((s.out_msgs, s.in_msgs, s.out_bytes, s.in_bytes), (2, 2, 7, 7));
        assert_eq!(sub.delivered(), 2);
        nc.close().await;
        assert!(nc.is_closed());
        assert!(matches!(nc.publish("x", "y").await, Err(Error::ConnectionClosed)));
        assert!(matches!(nc.subscribe_sync("x"), Err(Error::ConnectionClosed)));
        assert!(matches!(nc.flush().await, Err(Error::ConnectionClosed)));
        assert!(matches!(sub.next_msg(WAIT).await, Err(Error::ConnectionClosed)));
    });
}

#[test]
fn server_info_and_connection_facts() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let nc = Options::new().name("facts").connect(&url).await.unwrap();
        assert_eq!(nc.connected_url().as_deref(), Some(url.as_str()));
        assert!(!nc.connected_server_id().unwrap().is_empty());
        assert_eq!(nc.max_payload(), 1024 * 1024);
        assert!(nc.headers_supported());
        assert!(!nc.auth_required() && !nc.tls_required());
        assert_eq!(nc.servers(), vec![url.clone()]);
        assert!(nc.discovered_servers().is_empty());
        assert!(nc.last_error().is_none());
        // Nothing has run the writer yet: the frame waits in the buffer.
        nc.try_publish("buffered", "12345").unwrap();
        assert!(nc.buffered() >= "PUB buffered 5\r\n12345\r\n".len());
        nc.flush().await.unwrap();
        assert_eq!(nc.buffered(), 0);
        nc.flush_timeout(Duration::from_secs(1)).await.unwrap();
        nc.close().await;
        assert_eq!(nc.connected_url(), None);
    });
}

#[test]
fn handlers_queue_groups_and_channels() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let nc = connect(&url).await;
        let other = connect(&url).await;
        let plain = Rc::new(Cell::new(0u32));
        let (a, b, c) = (Rc::new(Cell::new(0u32)), Rc::new(Cell::new(0u32)), Rc::new(Cell::new(0u32)));
        let p = plain.clone();
        nc.subscribe("work", move |_| p.set(p.get() + 1)).unwrap();
        let a2 = a.clone();
        nc.queue_subscribe("work", "workers", move |_| a2.set(a2.get() + 1)).unwrap();
        let b2 = b.clone();
        nc.queue_subscribe("work", "workers", move |_| b2.set(b2.get() + 1)).unwrap();
        let c2 = c.clone();
        other.queue_subscribe("work", "workers", move |_| c2.set(c2.get() + 1)).unwrap();
        let (tx, rx) = local_channel::new_bounded(1000);
        nc.chan_subscribe("work", tx).unwrap();
        let (qtx, qrx) = local_channel::new_bounded(1000);
        nc.chan_queue_subscribe("work", "solo", qtx).unwrap();
        nc.flush().await.unwrap();
        other.flush().await.unwrap();
        for i in 0..300 {
            nc.publish("work", i.to_string()).await.unwrap();
        }
        nc.flush().await.unwrap();
        until("all deliveries", || plain.get() == 300 && a.get() + b.get() + c.get() == 300).await;
        assert_eq!(a.get() + b.get() + c.get(), 300, "each message to exactly one member");
        for i in 0..300 {
            let m = rx.recv().await.unwrap();
            assert_eq!(m.text(), Some(i.to_string().as_str()), "channel keeps order");
            let q = qrx.recv().await.unwrap();
            assert_eq!(q.text(), Some(i.to_string().as_str()));
        }
        nc.close().await;
        other.close().await;
    });
}

#[test]
fn request_reply_styles_and_errors() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let svc = connect(&url).await;
        echo_service(&svc, "echo");
        // A service that never answers.
        svc.subscribe("silent", |_| {}).unwrap();
        svc.flush().await.unwrap();

        let nc = connect(&url).await;
        let r = nc.request("echo", "ping", WAIT).await.unwrap();
        assert_eq!(r.text(), Some("ping!"));
        assert!(r.subject.starts_with("_INBOX."));
        let t0 = Instant::now();
        assert!(matches!(nc.request("silent", "x", Duration::from_millis(200)).await, Err(Error::Timeout)));
        assert!(t0.elapsed() >= Duration::from_millis(200));
        assert!(matches!(nc.request("nobody.home", "x", WAIT).await, Err(Error::NoResponders)));
        let deadline = Instant::now() + WAIT;
        assert_eq!(nc.request_until("echo", None, b"until", deadline).await.unwrap().text(), Some("until!"));
        // A dropped request future is cancelled; the connection goes on.
        {
            let fut = nc.request("silent", "dropped", WAIT);
            let _ = futures_lite::future::or(async { Some(fut.await) }, async {
                glommio::timer::sleep(Duration::from_millis(20)).await;
                None
            })
            .await;
        }
        assert_eq!(nc.request("echo", "after", WAIT).await.unwrap().text(), Some("after!"));
        assert_eq!(nc.new_inbox().len(), "_INBOX.".len() + 22);

        let old = Options::new().old_request_style(true).connect(&url).await.unwrap();
        assert_eq!(old.request("echo", "old", WAIT).await.unwrap().text(), Some("old!"));
        assert!(matches!(old.request("silent", "x", Duration::from_millis(100)).await, Err(Error::Timeout)));
        assert!(matches!(old.request("nobody.home", "x", WAIT).await, Err(Error::NoResponders)));
        for c in [nc, old, svc] {
            c.close().await;
        }
    });
}

#[test]
fn a_thousand_requests_in_flight() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let svc = connect(&url).await;
        echo_service(&svc, "echo");
        svc.flush().await.unwrap();
        let nc = connect(&url).await;
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let nc = nc.clone();
                glommio::spawn_local(async move {
                    let r = nc.request("echo", i.to_string(), WAIT).await.unwrap();
                    assert_eq!(r.text().unwrap(), format!("{i}!"));
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        nc.close().await;
        svc.close().await;
    });
}

#[test]
fn headers_round_trip() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let nc = connect(&url).await;
        let sub = nc.subscribe_sync("h").unwrap();
        nc.flush().await.unwrap();
        let mut h = Headers::new();
        h.insert("Trace", "abc").append("Multi", "1").append("Multi", "2");
        nc.publish_with_headers("h", &h, "body").await.unwrap();
        let m = sub.next_msg(WAIT).await.unwrap();
        assert_eq!(m.headers.as_ref(), Some(&h));
        assert_eq!(m.text(), Some("body"));
        let msg = Msg::new("h", "whole").with_reply("r.1").with_headers(h.clone());
        nc.publish_msg(&msg).await.unwrap();
        assert_eq!(sub.next_msg(WAIT).await.unwrap(), msg);
        // Headers on requests reach the responder.
        let replier = nc.clone();
        nc.subscribe("hreq", move |m| {
            let v = m.headers.as_ref().and_then(|h| h.get("Trace")).unwrap_or("none").to_string();
            replier.try_publish(m.reply.as_deref().unwrap(), v).unwrap();
        })
        .unwrap();
        nc.flush().await.unwrap();
        let r = nc.request_msg(&Msg::new("hreq", "").with_headers(h.clone()), WAIT).await.unwrap();
        assert_eq!(r.text(), Some("abc"));
        let mut bad = Headers::new();
        bad.insert("Bad Key", "v");
        assert!(matches!(nc.publish_with_headers("h", &bad, "x").await, Err(Error::InvalidArgument(_))));
        nc.close().await;
    });
}

#[test]
fn unsubscribe_and_auto_unsubscribe() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let nc = connect(&url).await;
        let sub = nc.subscribe_sync("auto").unwrap();
        sub.auto_unsubscribe(3).unwrap();
        let gone = nc.subscribe_sync("gone").unwrap();
        nc.flush().await.unwrap();
        gone.unsubscribe().unwrap();
        assert!(!gone.is_valid());
        assert!(matches!(gone.unsubscribe(), Err(Error::BadSubscription)));
        for i in 0..5 {
            nc.publish("auto", i.to_string()).await.unwrap();
            nc.publish("gone", "x").await.unwrap();
        }
        nc.flush().await.unwrap();
        for i in 0..3 {
            assert_eq!(sub.next_msg(WAIT).await.unwrap().text(), Some(i.to_string().as_str()));
        }
        assert!(matches!(sub.next_msg(WAIT).await, Err(Error::BadSubscription)));
        assert!(!sub.is_valid());
        assert!(matches!(gone.next_msg(WAIT).await, Err(Error::BadSubscription)));
        // Only the three the subscription allowed came in.
        assert_eq!(nc.stats().in_msgs, 3);
        nc.close().await;
    });
}

#[test]
fn slow_consumer_drops_and_reports() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let reports = Rc::new(RefCell::new(Vec::new()));
        let r = reports.clone();
        let nc = Options::new()
            .error_callback(move |_, sub, e| r.borrow_mut().push((sub.map(|s| s.subject().to_string()), e.to_string())))
            .connect(&url)
            .await
            .unwrap();
        let sub = nc.subscribe_sync("flood").unwrap();
        sub.set_pending_limits(10, -1).unwrap();
        assert_eq!(sub.pending_limits(), (10, usize::MAX));
        assert!(matches!(sub.set_pending_limits(0, 5), Err(Error::InvalidArgument(_))));
        let fast = nc.subscribe_sync("flood").unwrap();
        nc.flush().await.unwrap();
        for _ in 0..100 {
            nc.publish("flood", "0123456789").await.unwrap();
        }
        nc.flush().await.unwrap();
        assert_eq!(sub.pending(), (10, 100));
        assert_eq!(sub.max_pending(), (10, 100));
        assert_eq!(sub.dropped(), 90);
        assert_eq!(fast.pending().0, 100, "other subscriptions are not affected");
        assert!(matches!(nc.last_error(), Some(Error::SlowConsumer)));
        assert_eq!(reports.borrow().len(), 1, "reported once per episode: {:?}", reports.borrow());
        assert_eq!(reports.borrow()[0].0.as_deref(), Some("flood"));
        for _ in 0..10 {
            sub.next_msg(WAIT).await.unwrap();
        }
        assert_eq!(sub.delivered(), 10);
        nc.close().await;
    });
}

#[test]
fn drain_lets_queued_messages_finish() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let closed = Rc::new(Cell::new(false));
        let cl = closed.clone();
        let nc = Options::new().closed_callback(move |_| cl.set(true)).connect(&url).await.unwrap();
        let count = Rc::new(Cell::new(0u32));
        let c = count.clone();
        nc.subscribe("jobs", move |_| c.set(c.get() + 1)).unwrap();
        let one = nc.subscribe_sync("single").unwrap();
        nc.flush().await.unwrap();
        let publisher = connect(&url).await;
        for _ in 0..2000 {
            publisher.publish("jobs", "j").await.unwrap();
        }
        publisher.publish("single", "s").await.unwrap();
        publisher.flush().await.unwrap();
        // A subscription drains on its own and the connection goes on.
        let reader = one.clone();
        let read = glommio::spawn_local(async move { reader.next_msg(WAIT).await });
        one.drain().await.unwrap();
        assert_eq!(read.await.unwrap().text(), Some("s"));
        assert!(!one.is_valid());
        nc.drain().await.unwrap();
        assert_eq!(count.get(), 2000);
        assert!(nc.is_closed() && closed.get());
        assert!(matches!(nc.drain().await, Err(Error::ConnectionClosed)));
        publisher.close().await;
    });
}

#[test]
fn bad_arguments_are_refused() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let nc = connect(&url).await;
        for bad in ["", "a b", "tab\there"] {
            assert!(matches!(nc.publish(bad, "x").await, Err(Error::BadSubject)), "{bad:?}");
        }
        for bad in ["", "a..b", "a.>.b", "sp ace"] {
            assert!(matches!(nc.subscribe_sync(bad), Err(Error::BadSubject)), "{bad:?}");
        }
        assert!(matches!(nc.queue_subscribe_sync("ok", "bad queue"), Err(Error::InvalidArgument(_))));
        let big = vec![0u8; nc.max_payload() + 1];
        assert!(matches!(nc.publish("big", &big).await, Err(Error::MaxPayload)));
        assert!(matches!(nc.request("big", &big, WAIT).await, Err(Error::MaxPayload)));
        let sub = nc.subscribe("async", |_| {}).unwrap();
        assert!(matches!(sub.next_msg(WAIT).await, Err(Error::InvalidArgument(_))));
        assert!(matches!(sub.auto_unsubscribe(0), Err(Error::InvalidArgument(_))));
        // The connection is still fine.
        nc.flush().await.unwrap();
        assert!(matches!(client::connect("nats://host:port:junk").await, Err(Error::InvalidArgument(_))));
        nc.close().await;
    });
}

#[test]
fn echo_off_and_verbose_pedantic() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let errors = Rc::new(RefCell::new(Vec::new()));
        let e2 = errors.clone();
        let quiet = Options::new()
            .echo(false)
            .verbose(true)
            .pedantic(true)
            .error_callback(move |_, _, e| e2.borrow_mut().push(e.clone()))
            .connect(&url)
            .await
            .unwrap();
        let own = quiet.subscribe_sync("mine").unwrap();
        let nc = connect(&url).await;
        let theirs = nc.subscribe_sync("mine").unwrap();
        quiet.flush().await.unwrap();
        nc.flush().await.unwrap();
        quiet.publish("mine", "1").await.unwrap();
        quiet.flush().await.unwrap();
        assert_eq!(theirs.next_msg(WAIT).await.unwrap().text(), Some("1"));
        assert!(matches!(own.next_msg(Duration::from_millis(100)).await, Err(Error::Timeout)));
        // Pedantic: publishing to a wildcard is an -ERR that leaves the connection open.
        quiet.publish("wild.*", "x").await.unwrap();
        quiet.flush().await.unwrap();
        assert!(matches!(errors.borrow().first(), Some(Error::Server(t)) if t.contains("Invalid Publish Subject")), "{:?}", errors.borrow());
        assert!(quiet.is_connected());
        quiet.close().await;
        nc.close().await;
    });
}

#[test]
fn connect_failures() {
    run_local(LIMIT, || async {
        let port = common::free_port();
        let r = Options::new().connect_timeout(Duration::from_millis(500)).connect(&format!("nats://127.0.0.1:{port}")).await;
        assert!(matches!(r, Err(Error::NoServers)), "{:?}", r.err());
    });
}

/// `MsgRef::read` counts the socket reads a connection's messages came in with: it never
/// goes down, and a message sent only after the previous one was handled comes in a later read.
#[test]
fn inline_handlers_know_which_read_a_message_came_in() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let (sc, pc) = (connect(&url).await, connect(&url).await);
        let reads = Rc::new(RefCell::new(Vec::new()));
        let r = reads.clone();
        let _sub = sc.subscribe_inline("reads", move |m| r.borrow_mut().push(m.read)).unwrap();
        sc.flush().await.unwrap();
        for n in 1..=3 {
            pc.publish("reads", "x").await.unwrap();
            pc.flush().await.unwrap();
            until("the message", || reads.borrow().len() == n).await;
        }
        for _ in 0..500 {
            pc.publish("reads", "burst").await.unwrap();
        }
        pc.flush().await.unwrap();
        until("the burst", || reads.borrow().len() == 503).await;
        let reads = reads.borrow();
        assert!(reads[0] < reads[1] && reads[1] < reads[2], "one read each: {:?}", &reads[..3]);
        assert!(reads.windows(2).all(|w| w[0] <= w[1]), "reads counted down");
        sc.close().await;
        pc.close().await;
    });
}

#[test]
fn inline_handlers_see_messages_without_copies() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let nc = connect(&url).await;
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        let sub = nc
            .subscribe_inline("inline.*", move |m| {
                s.borrow_mut().push((m.subject.to_string(), m.reply.map(str::to_string), m.headers.is_some(), m.data.to_vec()))
            })
            .unwrap();
        let q = Rc::new(Cell::new(0));
        let q2 = q.clone();
        nc.queue_subscribe_inline("inline.*", "g", move |_| q2.set(q2.get() + 1)).unwrap();
        assert!(matches!(sub.set_pending_limits(1, 1), Err(Error::InvalidArgument(_))));
        nc.flush().await.unwrap();
        nc.publish("inline.a", "1").await.unwrap();
        nc.publish_request("inline.b", "r", "2").await.unwrap();
        let mut h = Headers::new();
        h.insert("K", "v");
        nc.publish_with_headers("inline.c", &h, "3").await.unwrap();
        nc.flush().await.unwrap();
        until("three messages", || seen.borrow().len() == 3).await;
        assert_eq!(
            *seen.borrow(),
            vec![
                ("inline.a".to_string(), None, false, b"1".to_vec()),
                ("inline.b".to_string(), Some("r".to_string()), false, b"2".to_vec()),
                ("inline.c".to_string(), None, true, b"3".to_vec()),
            ]
        );
        assert_eq!((sub.delivered(), q.get()), (3, 3));
        // Auto-unsubscribe still counts for inline handlers.
        sub.auto_unsubscribe(4).unwrap();
        nc.publish_with_headers("inline.d", &h, "x").await.unwrap();
        for _ in 0..2 {
            nc.publish("inline.d", "x").await.unwrap();
        }
        nc.flush().await.unwrap();
        until("the fourth", || seen.borrow().len() == 4).await;
        nc.flush().await.unwrap();
        assert_eq!(seen.borrow().len(), 4);
        assert!(seen.borrow()[3].2, "headers reach the handler on the auto-unsubscribe path too");
        assert!(!sub.is_valid());
        nc.close().await;
    });
}
