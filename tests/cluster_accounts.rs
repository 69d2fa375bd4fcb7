//! Accounts across routes: interest and messages travel per account, so a cluster keeps
//! accounts apart as one server does, and stream and service imports work with the
//! publisher, the importer and the responder on different servers — between natsu nodes and
//! with a nats-server 2.9 node, all started from the same config file.
//!
//! Readiness is a marker: the publisher sends `ready` until the subscriber has one (the
//! interest has crossed the route), then the numbered messages; a route keeps one
//! publisher's order, so "nothing more" is a closing marker after the rest.

mod common;

use std::time::Instant;

use async_nats::{Client, Subscriber};
use futures::{FutureExt, StreamExt};

use common::cluster::{wait_full_mesh, Kind, Node, Ports, CLUSTER_NAME, WAIT};
use common::TempDir;

/// A exports a stream and a service; B imports both; C imports nothing. Users a, b, c.
const CONF: &str = r#"
accounts {
  A: { users: [{user: a, password: a}], exports: [{stream: "news.>"}, {service: "svc.>"}] }
  B: { users: [{user: b, password: b}], imports: [{stream: {account: A, subject: "news.>"}}, {service: {account: A, subject: "svc.>"}}] }
  C: { users: [{user: c, password: c}] }
}
"#;

/// Nodes of `kinds` (the first the seed) on one config file, and the file's directory.
fn cluster(kinds: &[Kind]) -> (TempDir, Vec<Node>) {
    let dir = TempDir::new("cluster-accounts");
    let conf = dir.0.join("accounts.conf");
    std::fs::write(&conf, CONF).unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let ports: Vec<Ports> = kinds.iter().map(|_| Ports::free()).collect();
    let seed = vec![ports[0].cluster_url()];
    let nodes: Vec<Node> = kinds
        .iter()
        .zip(&ports)
        .enumerate()
        .map(|(i, (&kind, &p))| {
            let routes: &[String] = if i == 0 { &[] } else { &seed };
            Node::start_with(&format!("{}", (b'A' + i as u8) as char), kind, p, CLUSTER_NAME, routes, &["-c", &conf])
        })
        .collect();
    wait_full_mesh(&nodes);
    (dir, nodes)
}

async fn login(node: &Node, user: &str) -> Client {
    let c = async_nats::ConnectOptions::with_user_and_password(user.into(), user.into()).connect(node.url());
    tokio::time::timeout(WAIT, c)
        .await
        .unwrap_or_else(|_| panic!("connecting to {node} as {user} timed out"))
        .unwrap_or_else(|e| panic!("connecting to {node} as {user}: {e}"))
}

/// Payloads already received on `sub`, without waiting.
fn ready(sub: &mut Subscriber) -> Vec<String> {
    std::iter::from_fn(|| tokio::task::unconstrained(sub.next()).now_or_never().flatten())
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

/// Publish `ready` on `subject` until `sub` has one (bounded by WAIT): the interest crossed.
async fn until_ready(publisher: &Client, subject: &str, sub: &mut Subscriber, what: &str) {
    let start = Instant::now();
    loop {
        publisher.publish(subject.to_string(), "ready".into()).await.unwrap();
        publisher.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if ready(sub).iter().any(|p| p == "ready") {
            return;
        }
        assert!(start.elapsed() < WAIT, "{what}: no message crossed within {WAIT:?}");
    }
}

/// After `until_ready`: `n` numbered messages and an `end` marker; the numbers `sub` got
/// (markers left out), waiting until the `end` marker arrives.
async fn numbered(publisher: &Client, subject: &str, sub: &mut Subscriber, n: usize, what: &str) -> Vec<usize> {
    for i in 0..n {
        publisher.publish(subject.to_string(), i.to_string().into()).await.unwrap();
    }
    publisher.publish(subject.to_string(), "end".into()).await.unwrap();
    publisher.flush().await.unwrap();
    let mut got = Vec::new();
    loop {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no end marker within {WAIT:?} (got {} numbers)", got.len()))
            .expect("subscription ended");
        match std::str::from_utf8(&m.payload).unwrap_or("") {
            "end" => return got,
            "ready" => {}
            p => got.push(p.parse().unwrap_or_else(|_| panic!("{what}: payload {p:?}"))),
        }
    }
}

/// Each account's subscriber on node B gets its own account's messages from node A, every
/// one once and in order, and never another account's: C publishing on `news.x` and
/// `secret` reaches C alone; A's `secret` reaches A alone (B imports only `news.>`).
async fn isolation(kinds: &[Kind]) {
    const N: usize = 200;
    let (_dir, nodes) = cluster(kinds);
    let (pa, pc) = (login(&nodes[0], "a").await, login(&nodes[0], "c").await);
    let (sa, sb, sc) = (login(&nodes[1], "a").await, login(&nodes[1], "b").await, login(&nodes[1], "c").await);
    let mut a_secret = sa.subscribe("secret").await.unwrap();
    let mut b_secret = sb.subscribe("secret").await.unwrap();
    let mut c_secret = sc.subscribe("secret").await.unwrap();
    until_ready(&pa, "secret", &mut a_secret, "A's secret").await;
    until_ready(&pc, "secret", &mut c_secret, "C's secret").await;
    let what = format!("A's secret from {} to {}", nodes[0], nodes[1]);
    assert_eq!(numbered(&pa, "secret", &mut a_secret, N, &what).await, (0..N).collect::<Vec<_>>(), "{what}");
    let what = format!("C's secret from {} to {}", nodes[0], nodes[1]);
    assert_eq!(numbered(&pc, "secret", &mut c_secret, N, &what).await, (0..N).collect::<Vec<_>>(), "{what}");
    // B's subscriber saw nothing of A's or C's, and neither saw the other's markers.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(ready(&mut b_secret), Vec::<String>::new(), "B's subscriber on {} got another account's messages", nodes[1]);
    assert_eq!(ready(&mut a_secret), Vec::<String>::new(), "A's subscriber got more after its end marker");
    assert_eq!(ready(&mut c_secret), Vec::<String>::new(), "C's subscriber got more after its end marker");
}

/// A's stream `news.>` published on node A reaches B's importer on node B exactly once
/// (the importing server imports; the exporter's server never sends it as B's too), and
/// A's own subscriber there once too; C's publishing on `news.x` reaches neither.
async fn stream_import(kinds: &[Kind]) {
    const N: usize = 200;
    let (_dir, nodes) = cluster(kinds);
    let (pa, pc) = (login(&nodes[0], "a").await, login(&nodes[0], "c").await);
    let (sa, sb) = (login(&nodes[1], "a").await, login(&nodes[1], "b").await);
    let mut b_news = sb.subscribe("news.>").await.unwrap();
    let mut a_news = sa.subscribe("news.x").await.unwrap();
    until_ready(&pa, "news.x", &mut b_news, "B's import").await;
    until_ready(&pa, "news.x", &mut a_news, "A's subscriber").await;
    pc.publish("news.x", "from C".into()).await.unwrap();
    pc.flush().await.unwrap();
    let what = format!("A's news.x from {} to B's importer on {}", nodes[0], nodes[1]);
    assert_eq!(numbered(&pa, "news.x", &mut b_news, N, &what).await, (0..N).collect::<Vec<_>>(), "{what}");
    let what = format!("A's news.x from {} to A's subscriber on {}", nodes[0], nodes[1]);
    let mut got = Vec::new();
    for _ in 0..=N {
        let m = tokio::time::timeout(WAIT, a_news.next()).await.unwrap_or_else(|_| panic!("{what}: timed out")).unwrap();
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    got.retain(|p| p != "ready");
    assert_eq!(got.last().map(String::as_str), Some("end"), "{what}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let late = ready(&mut b_news);
    assert!(late.iter().all(|p| p != "from C"), "{what}: C's message crossed into B: {late:?}");
    assert_eq!(late, Vec::<String>::new(), "{what}: duplicates after the end marker");
}

/// B requests A's service through its import; the responder (in A) is on the other node,
/// in both directions; every request answered once, by the responder, with the body.
async fn service_import(kinds: &[Kind]) {
    const REQUESTS: usize = 50;
    let (_dir, nodes) = cluster(kinds);
    for (r, q) in [(1, 0), (0, 1)] {
        let responder = login(&nodes[r], "a").await;
        let requester = login(&nodes[q], "b").await;
        let mut requests = responder.subscribe("svc.echo").await.unwrap();
        let answering = responder.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = requests.next().await {
                if let Some(reply) = m.reply {
                    answering.publish(reply, m.payload).await.unwrap();
                    answering.flush().await.unwrap();
                }
            }
        });
        // The responder's interest crosses asynchronously: retry the first request.
        let start = Instant::now();
        loop {
            match tokio::time::timeout(std::time::Duration::from_millis(500), requester.request("svc.echo", "first".into())).await {
                Ok(Ok(m)) if &m.payload[..] == b"first" => break,
                _ => assert!(start.elapsed() < WAIT, "B on {} never reached A's responder on {}", nodes[q], nodes[r]),
            }
        }
        for i in 0..REQUESTS {
            let what = format!("request {i} from B on {} to A's responder on {}", nodes[q], nodes[r]);
            let m = tokio::time::timeout(WAIT, requester.request("svc.echo", i.to_string().into()))
                .await
                .unwrap_or_else(|_| panic!("{what}: timed out"))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(String::from_utf8_lossy(&m.payload), i.to_string(), "{what}");
        }
        task.abort();
    }
}

macro_rules! on_pairs {
    ($($scenario:ident),*) => {$(
        mod $scenario {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn natsu_natsu() {
                super::$scenario(&[Kind::Natsu, Kind::Natsu]).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn natsu_nats_server() {
                super::$scenario(&[Kind::Natsu, Kind::Reference]).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats_server_natsu() {
                super::$scenario(&[Kind::Reference, Kind::Natsu]).await
            }
        }
    )*};
}

on_pairs!(isolation, stream_import, service_import);
