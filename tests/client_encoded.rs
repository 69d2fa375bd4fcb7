//! Typed messages (`natsu::client::EncodedConnection`) against a real server: natsu, or the
//! reference nats-server with `NATSU_TEST_TARGET=reference`. Each test checks the bytes on
//! the wire through a plain subscription as well as the values the typed side sees.

mod common;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use natsu::client::{self, Connection, DefaultEncoder, EncodedConnection, Error, JsonEncoder, Options};
use serde::{Deserialize, Serialize};

use common::{run_local, Server};

const LIMIT: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    item: String,
    qty: u32,
    tags: Vec<String>,
}

fn order(id: u64) -> Order {
    Order { id, item: format!("item-{id}"), qty: (id % 7) as u32 + 1, tags: vec!["x".into(), format!("t{id}")] }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Sum {
    sum: i64,
}

async fn connect(url: &str) -> Connection {
    client::connect(url).await.expect("connect")
}

/// A connection whose error callback forwards (subscription subject, error) into a channel.
async fn connect_reporting(url: &str) -> (Connection, LocalReceiver<(Option<String>, Error)>) {
    let (tx, rx) = local_channel::new_unbounded();
    let nc = Options::new()
        .error_callback(move |_, sub, e| {
            let _ = tx.try_send((sub.map(|s| s.subject().to_string()), e.clone()));
        })
        .connect(url)
        .await
        .expect("connect");
    (nc, rx)
}

/// The next value from a channel, or `None` after `d`.
async fn recv_within<T>(rx: &LocalReceiver<T>, d: Duration) -> Option<T> {
    futures_lite::future::or(rx.recv(), async {
        glommio::timer::sleep(d).await;
        None
    })
    .await
}

async fn recv<T>(rx: &LocalReceiver<T>) -> T {
    recv_within(rx, WAIT).await.expect("a value within the wait")
}

/// Wait until a handler subscription has run its handler on `n` messages in all.
async fn settle(sub: &natsu::client::Subscription, n: u64) {
    let deadline = Instant::now() + WAIT;
    while sub.delivered() < n {
        assert!(Instant::now() < deadline, "{} of {n} messages handled", sub.delivered());
        futures_lite::future::yield_now().await;
    }
}

/// A channel and a handler that pushes into it.
fn collector<T: 'static>() -> (Rc<LocalSender<T>>, LocalReceiver<T>) {
    let (tx, rx) = local_channel::new_unbounded();
    (Rc::new(tx), rx)
}

#[test]
fn json_struct_publish_subscribe() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let ec = EncodedConnection::new(connect(&url).await, JsonEncoder);
        let (tx, rx) = collector::<Order>();
        let sub = ec.subscribe("orders.new", move |o: Order| tx.try_send(o).unwrap()).unwrap();
        assert_eq!(sub.subject(), "orders.new");
        let raw = ec.connection().subscribe_sync("orders.new").unwrap();
        ec.flush().await.unwrap();

        for id in 0..5 {
            ec.publish("orders.new", &order(id)).await.unwrap();
        }
        for id in 0..5 {
            assert_eq!(recv(&rx).await, order(id));
        }
        // On the wire: the JSON text of the struct, fields in declaration order.
        let m = raw.next_msg(WAIT).await.unwrap();
        assert_eq!(m.text(), Some(r#"{"id":0,"item":"item-0","qty":1,"tags":["x","t0"]}"#));

        // A struct published raw by someone else decodes too (field order does not matter).
        ec.connection()
            .publish("orders.new", r#"{"tags":[],"qty":3,"item":"tea","id":99}"#)
            .await
            .unwrap();
        assert_eq!(recv(&rx).await, Order { id: 99, item: "tea".into(), qty: 3, tags: vec![] });

        sub.unsubscribe().unwrap();
        ec.close().await;
        assert!(ec.connection().is_closed());
        assert!(matches!(ec.publish("orders.new", &order(1)).await, Err(Error::ConnectionClosed)));
    });
}

#[test]
fn handler_shapes() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let ec = EncodedConnection::new(connect(&url).await, JsonEncoder);
        let (plain_tx, plain) = collector::<Add>();
        ec.subscribe("shape.plain", move |v: Add| plain_tx.try_send(v).unwrap()).unwrap();
        let (subj_tx, with_subject) = collector::<(String, Add)>();
        ec.subscribe_with_subject("shape.subject.*", move |s: &str, v: Add| subj_tx.try_send((s.to_string(), v)).unwrap())
            .unwrap();
        let (reply_tx, with_reply) = collector::<(String, Option<String>, Add)>();
        ec.subscribe_with_reply("shape.reply.>", move |s: &str, r: Option<&str>, v: Add| {
            reply_tx.try_send((s.to_string(), r.map(str::to_string), v)).unwrap()
        })
        .unwrap();
        ec.flush().await.unwrap();

        ec.publish("shape.plain", &Add { a: 1, b: 2 }).await.unwrap();
        ec.publish("shape.subject.left", &Add { a: 3, b: 4 }).await.unwrap();
        ec.publish("shape.subject.right", &Add { a: 5, b: 6 }).await.unwrap();
        ec.publish_request("shape.reply.a.b", "answers.here", &Add { a: 7, b: 8 }).await.unwrap();
        ec.publish("shape.reply.c", &Add { a: 9, b: 10 }).await.unwrap();

        assert_eq!(recv(&plain).await, Add { a: 1, b: 2 });
        assert_eq!(recv(&with_subject).await, ("shape.subject.left".into(), Add { a: 3, b: 4 }));
        assert_eq!(recv(&with_subject).await, ("shape.subject.right".into(), Add { a: 5, b: 6 }));
        assert_eq!(
            recv(&with_reply).await,
            ("shape.reply.a.b".into(), Some("answers.here".into()), Add { a: 7, b: 8 })
        );
        assert_eq!(recv(&with_reply).await, ("shape.reply.c".into(), None, Add { a: 9, b: 10 }));

        // Nothing was delivered twice or to the wrong shape.
        ec.flush().await.unwrap();
        assert!(recv_within(&plain, Duration::from_millis(50)).await.is_none());
        assert!(recv_within(&with_subject, Duration::from_millis(50)).await.is_none());
        assert!(recv_within(&with_reply, Duration::from_millis(50)).await.is_none());

        // Subscribing checks the subject as the connection does.
        assert!(matches!(ec.subscribe("bad subject", |_: Add| {}), Err(Error::BadSubject)));
        ec.drain().await.unwrap();
        assert!(ec.connection().is_closed());
    });
}

#[test]
fn queue_variants_share_the_work() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let ec = EncodedConnection::new(connect(&url).await, DefaultEncoder);
        let (tx, rx) = collector::<(&'static str, u32)>();
        let t1 = tx.clone();
        let a = ec.queue_subscribe("work", "pool", move |n: u32| t1.try_send(("plain", n)).unwrap()).unwrap();
        let t2 = tx.clone();
        let b = ec
            .queue_subscribe_with_subject("work", "pool", move |s: &str, n: u32| {
                assert_eq!(s, "work");
                t2.try_send(("subject", n)).unwrap()
            })
            .unwrap();
        let t3 = tx.clone();
        let c = ec
            .queue_subscribe_with_reply("work", "pool", move |s: &str, r: Option<&str>, n: u32| {
                assert_eq!((s, r), ("work", None));
                t3.try_send(("reply", n)).unwrap()
            })
            .unwrap();
        assert_eq!((a.queue(), b.queue(), c.queue()), (Some("pool"), Some("pool"), Some("pool")));
        ec.flush().await.unwrap();

        const N: u32 = 60;
        for n in 0..N {
            ec.publish("work", &n).await.unwrap();
        }
        // After the PONG, every message the server sent us is in a subscription.
        ec.flush().await.unwrap();
        let received: u64 = [&a, &b, &c].iter().map(|s| s.delivered() + s.pending().0 as u64).sum();
        assert_eq!(received, N as u64, "each message goes to exactly one member");

        let mut seen = vec![false; N as usize];
        for _ in 0..N {
            let (_, n) = recv(&rx).await;
            assert!(!std::mem::replace(&mut seen[n as usize], true), "{n} delivered twice");
        }
        assert!(seen.iter().all(|s| *s));
        ec.close().await;
    });
}

#[test]
fn typed_request_with_typed_responder() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let ec = EncodedConnection::new(connect(&url).await, JsonEncoder);
        let responder = ec.clone();
        ec.subscribe_with_reply("math.add", move |_: &str, reply: Option<&str>, q: Add| {
            responder.try_publish(reply.expect("a request has a reply subject"), &Sum { sum: q.a + q.b }).unwrap();
        })
        .unwrap();
        // A queue-group responder answers as well (one member, so it gets every request).
        let responder = ec.clone();
        ec.queue_subscribe_with_reply("math.neg", "svc", move |_: &str, reply: Option<&str>, n: i64| {
            responder.try_publish(reply.unwrap(), &-n).unwrap();
        })
        .unwrap();
        // A responder that answers with something that is not JSON.
        let raw = ec.connection().clone();
        ec.subscribe_with_reply("math.broken", move |_: &str, reply: Option<&str>, _: Add| {
            raw.try_publish(reply.unwrap(), "not json").unwrap();
        })
        .unwrap();
        ec.flush().await.unwrap();

        for (a, b) in [(2, 3), (-10, 4), (i64::MAX - 1, 1)] {
            let s: Sum = ec.request("math.add", &Add { a, b }, WAIT).await.unwrap();
            assert_eq!(s, Sum { sum: a + b });
        }
        let n: i64 = ec.request("math.neg", &42i64, WAIT).await.unwrap();
        assert_eq!(n, -42);

        let r: Result<Sum, _> = ec.request("math.broken", &Add { a: 1, b: 1 }, WAIT).await;
        assert!(matches!(r, Err(Error::Encoding(_))), "{r:?}");
        let r: Result<Sum, _> = ec.request("math.nobody", &Add { a: 1, b: 1 }, WAIT).await;
        assert!(matches!(r, Err(Error::NoResponders)), "{r:?}");
        ec.close().await;
    });
}

#[test]
fn default_encoder_strings_numbers_bytes() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let ec = EncodedConnection::new(connect(&url).await, DefaultEncoder);
        let raw = ec.connection().subscribe_sync("dflt.>").unwrap();
        let (s_tx, strings) = collector::<String>();
        ec.subscribe("dflt.string", move |v: String| s_tx.try_send(v).unwrap()).unwrap();
        let (i_tx, ints) = collector::<i64>();
        ec.subscribe("dflt.int", move |v: i64| i_tx.try_send(v).unwrap()).unwrap();
        let (f_tx, floats) = collector::<f64>();
        ec.subscribe("dflt.float", move |v: f64| f_tx.try_send(v).unwrap()).unwrap();
        let (b_tx, bools) = collector::<bool>();
        ec.subscribe("dflt.bool", move |v: bool| b_tx.try_send(v).unwrap()).unwrap();
        let (v_tx, vecs) = collector::<Vec<u8>>();
        ec.subscribe("dflt.vec", move |v: Vec<u8>| v_tx.try_send(v).unwrap()).unwrap();
        let (y_tx, bytes) = collector::<Bytes>();
        ec.subscribe("dflt.bytes", move |v: Bytes| y_tx.try_send(v).unwrap()).unwrap();
        ec.flush().await.unwrap();

        ec.publish("dflt.string", &"héllo wörld".to_string()).await.unwrap();
        ec.publish("dflt.int", &-42i64).await.unwrap();
        ec.publish("dflt.float", &2.5f64).await.unwrap();
        ec.publish("dflt.bool", &true).await.unwrap();
        ec.publish("dflt.vec", &vec![0u8, 13, 10, 255]).await.unwrap();
        ec.publish("dflt.bytes", &Bytes::from_static(b"\x00PONG\r\n")).await.unwrap();

        // The wire has the text or the bytes themselves: no quotes, no framing.
        let mut wire = Vec::new();
        for _ in 0..6 {
            let m = raw.next_msg(WAIT).await.unwrap();
            wire.push((m.subject, m.data.to_vec()));
        }
        let want: Vec<(String, Vec<u8>)> = vec![
            ("dflt.string".into(), "héllo wörld".as_bytes().to_vec()),
            ("dflt.int".into(), b"-42".to_vec()),
            ("dflt.float".into(), b"2.5".to_vec()),
            ("dflt.bool".into(), b"true".to_vec()),
            ("dflt.vec".into(), vec![0, 13, 10, 255]),
            ("dflt.bytes".into(), b"\x00PONG\r\n".to_vec()),
        ];
        assert_eq!(wire, want);

        assert_eq!(recv(&strings).await, "héllo wörld");
        assert_eq!(recv(&ints).await, -42);
        assert_eq!(recv(&floats).await, 2.5);
        assert!(recv(&bools).await);
        assert_eq!(recv(&vecs).await, vec![0, 13, 10, 255]);
        assert_eq!(&recv(&bytes).await[..], b"\x00PONG\r\n");

        // Text from other clients: nats.go writes "+7" for 7 and Go's "T" is a bool.
        ec.connection().publish("dflt.int", "+7").await.unwrap();
        ec.connection().publish("dflt.bool", "F").await.unwrap();
        assert_eq!(recv(&ints).await, 7);
        assert!(!recv(&bools).await);

        // A typed request and responder with plain numbers and strings.
        let out = ec.clone();
        ec.subscribe_with_reply("dflt.double", move |_: &str, reply: Option<&str>, n: u32| {
            out.try_publish(reply.unwrap(), &(n * 2)).unwrap();
        })
        .unwrap();
        let out = ec.clone();
        ec.subscribe_with_reply("dflt.upper", move |_: &str, reply: Option<&str>, s: String| {
            out.try_publish(reply.unwrap(), &s.to_uppercase()).unwrap();
        })
        .unwrap();
        ec.flush().await.unwrap();
        let d: u32 = ec.request("dflt.double", &21u32, WAIT).await.unwrap();
        assert_eq!(d, 42);
        let u: String = ec.request("dflt.upper", &"quiet".to_string(), WAIT).await.unwrap();
        assert_eq!(u, "QUIET");
        // The answer is "42"; as a bool it does not decode.
        let r: Result<bool, _> = ec.request("dflt.double", &21u32, WAIT).await;
        assert!(matches!(r, Err(Error::Encoding(_))), "{r:?}");
        ec.close().await;
    });
}

#[test]
fn send_chan_to_recv_chan() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let ec = EncodedConnection::new(connect(&url).await, JsonEncoder);
        let (in_tx, inbox) = local_channel::new_bounded::<Order>(256);
        let sub = ec.bind_recv_chan("chan.orders", in_tx).unwrap();
        let (q_tx, queued) = local_channel::new_bounded::<Order>(256);
        let qsub = ec.bind_recv_queue_chan("chan.orders", "loaders", q_tx).unwrap();
        assert_eq!(qsub.queue(), Some("loaders"));
        ec.flush().await.unwrap();

        let out = ec.bind_send_chan::<Order>("chan.orders");
        const N: u64 = 100;
        for id in 0..N {
            out.send(order(id)).await.unwrap();
        }
        // In order, on both the plain and the (only) queue-group binding.
        for id in 0..N {
            assert_eq!(recv(&inbox).await, order(id));
            assert_eq!(recv(&queued).await, order(id));
        }
        assert_eq!(sub.subject(), "chan.orders");

        // Dropping the sender publishes what is queued, then the task ends.
        let small = ec.bind_send_chan_with_capacity::<Order>("chan.orders", 2);
        for id in N..N + 5 {
            small.send(order(id)).await.unwrap();
        }
        drop(small);
        for id in N..N + 5 {
            assert_eq!(recv(&inbox).await, order(id));
        }

        // Once the connection closes, the send task ends and sending fails.
        ec.close().await;
        let failed = futures_lite::future::or(
            async {
                loop {
                    if out.send(order(0)).await.is_err() {
                        return true;
                    }
                }
            },
            async {
                glommio::timer::sleep(WAIT).await;
                false
            },
        )
        .await;
        assert!(failed, "sending on a bound channel kept working after close");
        // And the receiving bindings end: their channels report no more values.
        assert!(!sub.is_valid() && !qsub.is_valid());
    });
}

#[test]
fn recv_chan_full_is_a_slow_consumer_and_dropped_receiver_unsubscribes() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let (nc, errors) = connect_reporting(&url).await;
        let ec = EncodedConnection::new(nc, DefaultEncoder);
        let (tx, rx) = local_channel::new_bounded::<u32>(2);
        let sub = ec.bind_recv_chan("slow", tx).unwrap();
        ec.flush().await.unwrap();
        for n in 0..10u32 {
            ec.publish("slow", &n).await.unwrap();
        }
        // One report for the episode, naming the subscription.
        let (subject, e) = recv(&errors).await;
        assert_eq!(subject.as_deref(), Some("slow"));
        assert!(matches!(e, Error::SlowConsumer), "{e:?}");
        // The first two fitted; the rest were dropped.
        ec.flush().await.unwrap();
        settle(&sub, 10).await;
        assert_eq!(recv(&rx).await, 0);
        assert_eq!(recv(&rx).await, 1);
        assert!(recv_within(&rx, Duration::from_millis(50)).await.is_none());
        assert!(recv_within(&errors, Duration::from_millis(50)).await.is_none(), "reported once");

        // With room again, values flow; a new overflow is a new episode.
        ec.publish("slow", &100u32).await.unwrap();
        assert_eq!(recv(&rx).await, 100);
        for n in 0..5u32 {
            ec.publish("slow", &n).await.unwrap();
        }
        let (_, e) = recv(&errors).await;
        assert!(matches!(e, Error::SlowConsumer), "{e:?}");

        // Nobody reads any more: the next message unsubscribes the binding.
        drop(rx);
        ec.publish("slow", &1u32).await.unwrap();
        let deadline = Instant::now() + WAIT;
        while sub.is_valid() {
            assert!(Instant::now() < deadline, "the binding stayed subscribed");
            ec.flush().await.unwrap();
            futures_lite::future::yield_now().await;
        }
        ec.close().await;
    });
}

#[test]
fn decode_failures_are_reported_and_skipped() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let (nc, errors) = connect_reporting(&url).await;
        let ec = EncodedConnection::new(nc, JsonEncoder);
        let (tx, rx) = collector::<Order>();
        ec.subscribe("bad.handler", move |o: Order| tx.try_send(o).unwrap()).unwrap();
        let (ctx, crx) = local_channel::new_bounded::<Order>(16);
        ec.bind_recv_chan("bad.chan", ctx).unwrap();
        let dflt = EncodedConnection::new(ec.connection().clone(), DefaultEncoder);
        let (ntx, nums) = collector::<u8>();
        dflt.subscribe_with_subject("bad.num", move |_: &str, n: u8| ntx.try_send(n).unwrap()).unwrap();
        ec.flush().await.unwrap();

        let nc = ec.connection();
        nc.publish("bad.handler", "not json").await.unwrap();
        ec.publish("bad.handler", &order(1)).await.unwrap();
        nc.publish("bad.chan", r#"{"id":"one"}"#).await.unwrap();
        ec.publish("bad.chan", &order(2)).await.unwrap();
        nc.publish("bad.num", "256").await.unwrap();
        dflt.publish("bad.num", &255u8).await.unwrap();

        // The good message after each bad one still arrives, and is the first to arrive.
        assert_eq!(recv(&rx).await, order(1));
        assert_eq!(recv(&crx).await, order(2));
        assert_eq!(recv(&nums).await, 255);

        let mut reports = Vec::new();
        for _ in 0..3 {
            let (subject, e) = recv(&errors).await;
            let Error::Encoding(text) = e else { panic!("expected an encoding error, got {e:?}") };
            reports.push((subject.expect("the subscription is named"), text));
        }
        reports.sort();
        assert_eq!(reports[0].0, "bad.chan");
        assert!(reports[0].1.contains("\"bad.chan\"") && reports[0].1.contains("json:"), "{}", reports[0].1);
        assert_eq!(reports[1].0, "bad.handler");
        assert!(reports[1].1.contains("json:"), "{}", reports[1].1);
        assert_eq!(reports[2].0, "bad.num");
        assert!(reports[2].1.contains("\"256\" is not a u8"), "{}", reports[2].1);
        assert!(matches!(ec.connection().last_error(), Some(Error::Encoding(_))));

        // A value that does not encode is the publisher's error, and nothing is sent.
        let mut m = std::collections::HashMap::new();
        m.insert((1, 2), 3);
        assert!(matches!(ec.publish("bad.handler", &m).await, Err(Error::Encoding(_))));
        ec.flush().await.unwrap();
        assert!(recv_within(&rx, Duration::from_millis(50)).await.is_none());
        assert!(recv_within(&errors, Duration::from_millis(50)).await.is_none());
        ec.close().await;
    });
}

#[test]
fn send_chan_reports_what_it_cannot_publish() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let (nc, errors) = connect_reporting(&url).await;
        let ec = EncodedConnection::new(nc, JsonEncoder);
        let (tx, rx) = collector::<Vec<u8>>();
        ec.subscribe("maps", move |v: Vec<u8>| tx.try_send(v).unwrap()).unwrap();
        ec.flush().await.unwrap();
        // A map keyed by tuples is not JSON: reported and skipped, the next one goes out.
        let out = ec.bind_send_chan::<std::collections::HashMap<(u8, u8), u8>>("maps");
        let mut bad = std::collections::HashMap::new();
        bad.insert((1, 2), 3);
        out.send(bad).await.unwrap();
        let (subject, e) = recv(&errors).await;
        assert_eq!(subject, None);
        assert!(matches!(e, Error::Encoding(_)), "{e:?}");
        out.send(std::collections::HashMap::new()).await.unwrap();
        // An empty map is "{}", which is not a Vec<u8> either: reported by the subscriber.
        let (subject, e) = recv(&errors).await;
        assert_eq!(subject.as_deref(), Some("maps"));
        assert!(matches!(e, Error::Encoding(_)), "{e:?}");

        // An invalid subject ends the binding after one report.
        let broken = ec.bind_send_chan::<u32>("bad subject");
        broken.send(1).await.unwrap();
        let (_, e) = recv(&errors).await;
        assert!(matches!(e, Error::BadSubject), "{e:?}");
        let failed = futures_lite::future::or(
            async {
                loop {
                    if broken.send(2).await.is_err() {
                        return true;
                    }
                }
            },
            async {
                glommio::timer::sleep(WAIT).await;
                false
            },
        )
        .await;
        assert!(failed);
        assert!(recv_within(&rx, Duration::from_millis(50)).await.is_none());
        ec.close().await;
    });
}
