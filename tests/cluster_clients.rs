//! What clients of a cluster learn from it, natsu against nats-server 2.9: `connect_urls` in
//! INFO (the server's own URL first, then the other nodes'), an INFO update when a node joins
//! or leaves, async-nats finding another node on its own when the one it was given dies,
//! and lame duck mode pointing clients at the other nodes only.
//!
//! Each scenario runs on a cluster whose node under test is natsu, and on one where it is
//! nats-server (the reference binary even with `NATSU_TEST_TARGET=reference`, which runs
//! the natsu nodes as nats-server too, to check the tests), expecting the same of both.
//! Raw clients say `"protocol":1`, as clients that take INFO updates do. Every wait is
//! bounded by [`WAIT`] (the reconnect by [`RECONNECT_WAIT`]).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::{Client, Event, Subscriber};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use common::cluster::{mesh, wait_full_mesh, wait_interest, Kind, Node, Ports, Topology, CLUSTER_NAME, WAIT};
use common::Raw;

/// async-nats waits longer between attempts as they fail; three nodes are tried within
/// a few seconds.
const RECONNECT_WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Raw clients and INFO

/// A raw client of `node` that takes INFO updates.
fn raw_client(node: &Node) -> Raw {
    Raw::connect_with(node.ports.client, r#"{"verbose":false,"pedantic":false,"protocol":1}"#)
}

fn info_json(node: &Node, line: &str) -> Value {
    let json = line.strip_prefix("INFO ").unwrap_or_else(|| panic!("{node}: not an INFO: {line:?}")).trim();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{node}: INFO is not JSON ({e}): {line:?}"))
}

/// `connect_urls` of an INFO, in order.
fn connect_urls(info: &Value) -> Vec<String> {
    info["connect_urls"].as_array().into_iter().flatten().filter_map(|u| u.as_str().map(String::from)).collect()
}

/// A node's client address as it appears in `connect_urls`.
fn addr(node: &Node) -> String {
    format!("127.0.0.1:{}", node.ports.client)
}

fn addrs<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> BTreeSet<String> {
    nodes.into_iter().map(addr).collect()
}

/// `connect_urls` as a client of `node` must see them: `node`'s own address first, then
/// the addresses of `others` in any order.
fn assert_own_first(node: &Node, info: &Value, others: &BTreeSet<String>, what: &str) {
    let urls = connect_urls(info);
    assert_eq!(urls.first(), Some(&addr(node)), "{node}: {what}: connect_urls {urls:?} must start with the node's own");
    let rest: BTreeSet<String> = urls[1..].iter().cloned().collect();
    assert_eq!(&rest, others, "{node}: {what}: connect_urls {urls:?} after the node's own");
    assert_eq!(urls.len(), others.len() + 1, "{node}: {what}: connect_urls {urls:?} has duplicates");
}

/// Read INFO lines from `raw` (answering PINGs) until one satisfies `done`, which it
/// returns; fails after [`WAIT`] showing the INFOs seen.
fn info_until(node: &Node, raw: &mut Raw, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{node}: waited {WAIT:?} for {what}; INFOs seen: {seen:#?}");
        raw.s.set_read_timeout(Some(left)).unwrap();
        let line = raw.read_line();
        if line == "PING\r\n" {
            raw.send("PONG\r\n");
            continue;
        }
        let info = info_json(node, &line);
        if done(&info) {
            return info;
        }
        seen.push(info);
    }
}

// ---------------------------------------------------------------------------------------
// async-nats

/// An async-nats client given `node`'s URL only, with its connection events on a channel.
async fn connect_watched(node: &Node) -> (Client, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = tokio::time::timeout(
        WAIT,
        async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(node.url()),
    )
    .await
    .unwrap_or_else(|_| panic!("connecting to {node} timed out"))
    .unwrap_or_else(|e| panic!("connecting to {node}: {e}"));
    (client, rx)
}

async fn connect(node: &Node) -> Client {
    connect_watched(node).await.0
}

/// Wait for `want` among `events`, skipping others; `what` names the wait.
async fn event(events: &mut mpsc::UnboundedReceiver<Event>, want: Event, limit: Duration, what: &str) {
    let found = tokio::time::timeout(limit, async {
        while let Some(e) = events.recv().await {
            if std::mem::discriminant(&e) == std::mem::discriminant(&want) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "waited {limit:?} for {want:?}: {what}");
}

async fn next(sub: &mut Subscriber, what: &str) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap_or_else(|_| panic!("waited {WAIT:?} for {what}"))
        .unwrap_or_else(|| panic!("subscription ended while waiting for {what}"))
}

/// Publish one message from each of `publishers` (named by `nodes`) and take each on `sub`.
async fn each_publisher_reaches(sub: &mut Subscriber, subject: &str, publishers: &[(&Node, &Client)], when: &str) {
    for (node, publisher) in publishers {
        publisher.publish(subject.to_string(), node.name.clone().into()).await.unwrap();
        tokio::time::timeout(WAIT, publisher.flush()).await.expect("flush timed out").expect("flush");
        let m = next(sub, &format!("the message published on {node} {when}")).await;
        assert_eq!(String::from_utf8_lossy(&m.payload), node.name, "{when}");
    }
}

// ---------------------------------------------------------------------------------------
// Discovery

/// A client of each node is told every node's address, its node's own first; async-nats,
/// given the first node's URL only, has them all.
async fn discovery(kinds: &[Kind]) {
    let nodes = mesh(kinds, Topology::Seed);
    for (i, node) in nodes.iter().enumerate() {
        let raw = Raw::connect(node.ports.client);
        let others = addrs(nodes.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, n)| n));
        assert_own_first(node, &info_json(node, &raw.info), &others, "the first INFO");
    }
    let client = connect(&nodes[0]).await;
    let learnt: BTreeSet<String> = client.server_info().connect_urls.into_iter().collect();
    assert_eq!(learnt, addrs(&nodes), "async-nats connected to {}: connect_urls", nodes[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_natsu_nats_server() {
    discovery(&[Kind::Natsu, Kind::Reference]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_natsu_natsu_nats_server() {
    discovery(&[Kind::Natsu, Kind::Natsu, Kind::Reference]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_nats_server_natsu_natsu() {
    discovery(&[Kind::Reference, Kind::Natsu, Kind::Natsu]).await
}

/// A client of the first node of a two-node cluster gets an INFO naming a third node when
/// it joins (it names the first only), and one without it when it is killed.
fn join_and_leave(kinds: [Kind; 3]) {
    let mut nodes = mesh(&kinds[..2], Topology::Seed);
    let mut raw = raw_client(&nodes[0]);
    let first = info_json(&nodes[0], &raw.info);
    assert_own_first(&nodes[0], &first, &addrs(&nodes[1..]), "the first INFO");

    let c = Node::start("C", kinds[2], Ports::free(), CLUSTER_NAME, &[nodes[0].ports.cluster_url()]);
    let c_addr = addr(&c);
    nodes.push(c);
    let joined = info_until(&nodes[0], &mut raw, "an INFO naming C", |i| connect_urls(i).contains(&c_addr));
    assert_own_first(&nodes[0], &joined, &addrs(&nodes[1..]), "the INFO after C joined");
    wait_full_mesh(&nodes);

    nodes[2].kill();
    let left = info_until(&nodes[0], &mut raw, "an INFO without C", |i| !connect_urls(i).contains(&c_addr));
    assert_own_first(&nodes[0], &left, &addrs(&nodes[1..2]), "the INFO after C was killed");
}

/// natsu told of a natsu and then of a nats-server.
#[test]
fn join_and_leave_natsu() {
    join_and_leave([Kind::Natsu, Kind::Natsu, Kind::Reference]);
}

/// The same told by nats-server.
#[test]
fn join_and_leave_nats_server() {
    join_and_leave([Kind::Reference, Kind::Natsu, Kind::Natsu]);
}

// ---------------------------------------------------------------------------------------
// Reconnecting to a discovered node

/// async-nats given only the first node's URL subscribes there; the first node is killed
/// (SIGKILL); the client reconnects to another node on its own, and its subscription gets
/// what every remaining node publishes.
async fn reconnect_to_discovered(kinds: &[Kind]) {
    let mut nodes = mesh(kinds, Topology::Seed);
    let (subscriber, mut events) = connect_watched(&nodes[0]).await;
    let mut sub = subscriber.subscribe("keep.going").await.unwrap();
    let mut publishers = Vec::new();
    for node in &nodes[1..] {
        publishers.push(connect(node).await);
    }
    let refs: Vec<&Client> = publishers.iter().collect();
    wait_interest(&subscriber, &refs).await;
    let pairs: Vec<(&Node, &Client)> = nodes[1..].iter().zip(&publishers).collect();
    each_publisher_reaches(&mut sub, "keep.going", &pairs, "before the kill").await;

    let killed = format!("{}", nodes[0]);
    let killed_port = nodes[0].ports.client;
    nodes[0].kill();
    event(&mut events, Event::Disconnected, WAIT, &format!("{killed} killed")).await;
    event(&mut events, Event::Connected, RECONNECT_WAIT, &format!("reconnecting after {killed} was killed")).await;
    let now = subscriber.server_info();
    assert_ne!(now.port, killed_port, "reconnected to the killed {killed}?");
    assert!(
        nodes[1..].iter().any(|n| n.ports.client == now.port),
        "reconnected to port {} ({}), which is none of the remaining nodes",
        now.port,
        now.server_id
    );

    let pairs: Vec<(&Node, &Client)> = nodes[1..].iter().zip(&publishers).collect();
    wait_interest(&subscriber, &refs).await;
    each_publisher_reaches(&mut sub, "keep.going", &pairs, "after the reconnect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_natsu_to_nats_server() {
    reconnect_to_discovered(&[Kind::Natsu, Kind::Reference]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_natsu_to_natsu_or_nats_server() {
    reconnect_to_discovered(&[Kind::Natsu, Kind::Natsu, Kind::Reference]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_nats_server_to_natsu() {
    reconnect_to_discovered(&[Kind::Reference, Kind::Natsu, Kind::Natsu]).await
}

// ---------------------------------------------------------------------------------------
// Lame duck mode

/// Send signal `sig` to `node`.
fn signal(node: &Node, sig: libc::c_int) {
    let pid = node.pid().unwrap_or_else(|| panic!("{node} is not running"));
    // SAFETY: kill(2) on the pid of a child this test started and still holds.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0, "kill({pid}, {sig})");
}

/// SIGUSR2 on the first node of three: its clients get an INFO with `"ldm":true` whose
/// connect_urls are the other two nodes only (async-nats says LameDuckMode); a client of
/// each other node gets an INFO without the first node (told by its route).
async fn lame_duck(kinds: &[Kind]) {
    let nodes = mesh(kinds, Topology::Seed);
    let mut raw = raw_client(&nodes[0]);
    let mut others: Vec<Raw> = nodes[1..].iter().map(raw_client).collect();
    let (_client, mut events) = connect_watched(&nodes[0]).await;
    let ldm_addr = addr(&nodes[0]);

    signal(&nodes[0], libc::SIGUSR2);
    let info = info_until(&nodes[0], &mut raw, "an INFO with ldm", |i| i["ldm"] == true);
    let urls = connect_urls(&info);
    assert_eq!(urls.iter().cloned().collect::<BTreeSet<_>>(), addrs(&nodes[1..]), "{}: connect_urls in the lame duck INFO {urls:?}", nodes[0]);
    assert_eq!(urls.len(), nodes.len() - 1, "{}: connect_urls in the lame duck INFO {urls:?}", nodes[0]);
    event(&mut events, Event::LameDuckMode, WAIT, &format!("async-nats on {} after SIGUSR2", nodes[0])).await;

    for (node, raw) in nodes[1..].iter().zip(&mut others) {
        let info = info_until(node, raw, &format!("an INFO without {}", nodes[0]), |i| !connect_urls(i).contains(&ldm_addr));
        let rest = addrs(nodes[1..].iter().filter(|n| n.name != node.name));
        assert_own_first(node, &info, &rest, &format!("the INFO after {} went lame duck", nodes[0]));
        assert!(info.get("ldm").is_none_or(|v| v == false), "{node}: its own INFO says ldm: {info}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lame_duck_natsu() {
    lame_duck(&[Kind::Natsu, Kind::Natsu, Kind::Reference]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lame_duck_nats_server() {
    lame_duck(&[Kind::Reference, Kind::Natsu, Kind::Natsu]).await
}
