//! Accounts through a real client (async-nats): account A exports a stream `events.>` and a
//! service `svc.echo`; account B imports the stream under the prefix `fromA` and the
//! service as `echo`. A's user logs in with a password, B's with an NKey made by the test.
//! Every check runs on natsu with `--cores 2` and on the reference nats-server 2.9 with the
//! same config file (on the reference alone with `NATSU_TEST_TARGET=reference`).
//!
//! What both servers are expected to do:
//!
//! - B's `request("echo")` reaches A's responder on `svc.echo` with a generated `_R_.`
//!   reply subject (not B's inbox) and a `Nats-Request-Info` header naming account B; A's
//!   answer on that subject is B's reply. A's own `echo` hears nothing of it, and B's own
//!   `svc.echo` reaches nobody in A.
//! - A's `events.x` reaches B's subscriber as `fromA.events.x`, and not B's own `events.>`;
//!   nothing B publishes (`events.x`, `fromA.events.x`) reaches a subscriber in A.
//!
//! Each round opens fresh connections, with 0 to 2 spare ones between A's and B's and the
//! two in either order: natsu's cores take new connections in turn, so over the rounds A
//! and B sit on the same core and on different ones.
//!
//! async-nats has no PING/PONG barrier: its `flush` only writes, and the reference was seen
//! to take B's request before A's earlier `SUB svc.echo`. So a round first polls until the
//! other side's interest is in place (a probe each `PROBE`, up to `WAIT` in all), and "B's
//! publishes are in" is said by a request of B's answered through the import after them.
//! Probes carry a payload of their own and are skipped only where they may land.

mod common;

use std::future::Future;
use std::time::Duration;

use futures::channel::mpsc::{self, UnboundedReceiver};
use futures::StreamExt;
use serde_json::Value;

use common::natsu_and_reference;

/// Upper bound on one wait of a client.
const WAIT: Duration = Duration::from_secs(5);
/// How long one probe waits before the next is sent.
const PROBE: Duration = Duration::from_millis(100);
/// Rounds per server, each with new connections.
const ROUNDS: usize = 6;

fn conf(b_user: &nkeys::KeyPair) -> String {
    format!(
        r#"
accounts {{
  A {{
    users: [{{user: a, password: a-pw}}]
    exports: [
      {{stream: "events.>"}}
      {{service: "svc.echo"}}
    ]
  }}
  B {{
    users: [{{nkey: {}}}]
    imports: [
      {{stream: {{account: A, subject: "events.>"}}, prefix: "fromA"}}
      {{service: {{account: A, subject: "svc.echo"}}, to: "echo"}}
    ]
  }}
}}
"#,
        b_user.public_key()
    )
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

async fn connect(opts: async_nats::ConnectOptions, url: &str) -> async_nats::Client {
    let opts = opts.connection_timeout(WAIT).request_timeout(Some(WAIT));
    within("connect", opts.connect(url)).await.expect("logged in")
}

/// Fresh connections for one round: (A's, B's, the spares that shift them over the cores).
async fn clients(url: &str, b_seed: &str, round: usize) -> (async_nats::Client, async_nats::Client, Vec<async_nats::Client>) {
    let a = || connect(async_nats::ConnectOptions::with_user_and_password("a".into(), "a-pw".into()), url);
    let b = || connect(async_nats::ConnectOptions::with_nkey(b_seed.to_string()), url);
    let (first_a, spare) = ((round / 3) % 2 == 0, round % 3);
    let first = if first_a { a().await } else { b().await };
    let mut spares = Vec::new();
    for _ in 0..spare {
        spares.push(a().await);
    }
    let second = if first_a { b().await } else { a().await };
    if first_a {
        (first, second, spares)
    } else {
        (second, first, spares)
    }
}

async fn next(what: &str, sub: &mut async_nats::Subscriber) -> async_nats::Message {
    within(what, sub.next()).await.unwrap_or_else(|| panic!("{what}: subscription ended"))
}

/// (subject, payload) of a message, to compare in one assert.
fn seen_pair(m: &async_nats::Message) -> (String, String) {
    (m.subject.to_string(), String::from_utf8_lossy(&m.payload).into_owned())
}

fn pair(subject: &str, payload: &str) -> (String, String) {
    (subject.to_string(), payload.to_string())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// One request as A's responder saw it.
#[derive(Debug)]
struct Request {
    subject: String,
    reply: String,
    /// The `Nats-Request-Info` header.
    info: Option<String>,
    payload: String,
}

/// A's responder on `svc.echo`, for one round: it answers every request with
/// `pong to <payload>` and tells the test what it saw in `seen` (a spawned task cannot fail
/// the test itself). Dropping it stops the task, which holds A's connection open: a
/// responder left from an earlier round would answer in this one's place.
struct Responder {
    seen: UnboundedReceiver<Request>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn serve(a: &async_nats::Client, mut service: async_nats::Subscriber) -> Responder {
    let (tx, seen) = mpsc::unbounded();
    let a = a.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = service.next().await {
            let payload = String::from_utf8_lossy(&m.payload).into_owned();
            if let Some(reply) = m.reply.clone() {
                let _ = a.publish(reply, format!("pong to {payload}").into()).await;
            }
            let info = m.headers.as_ref().and_then(|h| h.get("Nats-Request-Info")).map(|v| v.as_str().to_string());
            let reply = m.reply.as_ref().map(|r| r.to_string()).unwrap_or_default();
            if tx.unbounded_send(Request { subject: m.subject.to_string(), reply, info, payload }).is_err() {
                break;
            }
        }
    });
    Responder { seen, task }
}

fn is_probe(payload: &str) -> bool {
    payload.starts_with("probe ")
}

/// The next request A's responder saw that is not a probe.
async fn next_request(at: &str, responder: &mut Responder) -> Request {
    loop {
        let r = within(at, responder.seen.next()).await.unwrap_or_else(|| panic!("{at}: the responder stopped"));
        if !is_probe(&r.payload) {
            return r;
        }
    }
}

/// The next message on `sub` that is not one of A's stream probes.
async fn next_event(at: &str, sub: &mut async_nats::Subscriber) -> async_nats::Message {
    loop {
        let m = next(at, sub).await;
        if !is_probe(&String::from_utf8_lossy(&m.payload)) {
            return m;
        }
    }
}

/// B asks `echo` until A's responder answers: A's `svc.echo` (and every SUB of A's before
/// it) is known where B publishes.
async fn until_served(at: &str, b: &async_nats::Client) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for k in 0.. {
        let ask = format!("probe {k}");
        if let Ok(Ok(m)) = tokio::time::timeout(PROBE, b.request("echo", ask.clone().into())).await {
            assert_eq!(String::from_utf8_lossy(&m.payload), format!("pong to {ask}"), "{at}");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{at}: B's requests on echo found no responder within {WAIT:?}");
    }
}

/// A publishes `events.probe` until B's `fromA.events.>` gets one: B's interest is known
/// where A publishes.
async fn until_imported(at: &str, a: &async_nats::Client, imported: &mut async_nats::Subscriber) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for k in 0.. {
        a.publish("events.probe", format!("probe {k}").into()).await.unwrap();
        a.flush().await.unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(PROBE, imported.next()).await {
            assert_eq!(m.subject.as_str(), "fromA.events.probe", "{at}");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{at}: A's events reached no importer within {WAIT:?}");
    }
}

/// A request of B's answered through the import: everything B published before it has been
/// handled, and anything it sent A's way is ahead of the request.
async fn b_is_through(at: &str, b: &async_nats::Client, responder: &mut Responder) {
    let answer = within(at, b.request("echo", "barrier".into())).await.unwrap_or_else(|e| panic!("{at}: B's barrier request: {e}"));
    assert_eq!(&answer.payload[..], b"pong to barrier", "{at}");
    assert_eq!(next_request(at, responder).await.payload, "barrier", "{at}: the first request A saw after B's publishes");
}

/// Run `round` ROUNDS times on every server, each time with fresh clients: (where, A's, B's).
fn each_round<F, Fut>(round: F)
where
    F: Fn(String, async_nats::Client, async_nats::Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let b_key = nkeys::KeyPair::new_user();
    let seed = b_key.seed().unwrap();
    let (_dir, servers) = natsu_and_reference(&conf(&b_key), &["--cores", "2"]);
    runtime().block_on(async {
        for (name, srv) in &servers {
            for n in 0..ROUNDS {
                let (a, b, _spares) = clients(&srv.url(), &seed, n).await;
                round(format!("{name} round {n}"), a, b).await;
            }
        }
    });
}

#[test]
fn b_requests_a_service_through_its_import() {
    each_round(|at, a, b| async move {
        // B's name for the service is no subject of A's.
        let mut a_echo = a.subscribe("echo").await.unwrap();
        let mut responder = serve(&a, a.subscribe("svc.echo").await.unwrap());
        until_served(&at, &b).await;

        let ask = format!("ping ({at})");
        let answer = within(&at, b.request("echo", ask.clone().into())).await.unwrap_or_else(|e| panic!("{at}: B's request: {e}"));
        assert_eq!(String::from_utf8_lossy(&answer.payload), format!("pong to {ask}"), "{at}");
        let req = next_request(&at, &mut responder).await;
        assert_eq!((req.subject.as_str(), req.payload.as_str()), ("svc.echo", ask.as_str()), "{at}");
        assert!(req.reply.starts_with("_R_."), "{at}: the responder sees a generated reply subject, not B's inbox: {}", req.reply);
        let info = req.info.unwrap_or_else(|| panic!("{at}: no Nats-Request-Info header"));
        let info: Value = serde_json::from_str(&info).unwrap_or_else(|e| panic!("{at}: Nats-Request-Info {info:?}: {e}"));
        assert_eq!(info.get("acc"), Some(&Value::from("B")), "{at}: {info}");

        // B's own `svc.echo` is B's: A's responder sees the barrier next, not it.
        b.publish("svc.echo", "stray from B".into()).await.unwrap();
        b_is_through(&at, &b, &mut responder).await;
        // B's requests on `echo` went to svc.echo only: A's `echo` first gets A's own.
        a.publish("echo", "marker".into()).await.unwrap();
        assert_eq!(seen_pair(&next(&at, &mut a_echo).await), pair("echo", "marker"), "{at}: A's echo");
    });
}

#[test]
fn a_stream_reaches_b_under_its_prefix_and_nothing_flows_back() {
    each_round(|at, a, b| async move {
        let mut imported = b.subscribe("fromA.events.>").await.unwrap();
        let mut b_events = b.subscribe("events.>").await.unwrap();
        let mut a_events = a.subscribe("events.>").await.unwrap();
        let mut a_prefixed = a.subscribe("fromA.>").await.unwrap();
        let mut responder = serve(&a, a.subscribe("svc.echo").await.unwrap());
        until_imported(&at, &a, &mut imported).await;
        until_served(&at, &b).await;

        let event = format!("event ({at})");
        a.publish("events.x", event.clone().into()).await.unwrap();
        assert_eq!(seen_pair(&next_event(&at, &mut imported).await), pair("fromA.events.x", &event), "{at}: B's import");
        assert_eq!(seen_pair(&next_event(&at, &mut a_events).await), pair("events.x", &event), "{at}: A's own subscriber");

        // B's publishes stay in B: its own `events.>` gets B's first of all (neither
        // A's probes nor A's event came to it), and A's subscribers get only A's.
        let mine = format!("from B ({at})");
        b.publish("events.x", mine.clone().into()).await.unwrap();
        b.publish("fromA.events.x", mine.clone().into()).await.unwrap();
        assert_eq!(seen_pair(&next(&at, &mut b_events).await), pair("events.x", &mine), "{at}: B's own events.>");
        assert_eq!(seen_pair(&next_event(&at, &mut imported).await), pair("fromA.events.x", &mine), "{at}: B's own fromA.events.x");
        b_is_through(&at, &b, &mut responder).await;
        a.publish("events.marker", "marker".into()).await.unwrap();
        a.publish("fromA.marker", "marker".into()).await.unwrap();
        assert_eq!(seen_pair(&next_event(&at, &mut a_events).await), pair("events.marker", "marker"), "{at}: A's events.> after B's publishes");
        assert_eq!(seen_pair(&next(&at, &mut a_prefixed).await), pair("fromA.marker", "marker"), "{at}: A's fromA.> after B's publishes");
    });
}
