//! Clusters: messages, interest and request/reply crossing routes, between natsu nodes and
//! between natsu and nats-server 2.9, through the async-nats client and raw connections.
//!
//! Every scenario runs on three clusters (a module per scenario, a test per cluster):
//! `natsu_natsu`, `natsu_nats_server` and `natsu_natsu_nats_server`, the nats-server node
//! being the reference binary even with `NATSU_TEST_TARGET=reference` (which runs the natsu
//! nodes as nats-server too, to check the tests). Unless a test says otherwise the first node
//! is the seed the others name in `--routes`. Publishers and subscribers sit on different
//! nodes, in every direction.
//!
//! Ordering between clients of different nodes comes from a probe round trip
//! ([`wait_interest`]) or from `/routez?subs=1` ([`wait_route_sub`]), and "nothing more
//! arrives" from a marker message published after the rest by the same publisher: a route
//! keeps one publisher's order. Every wait is bounded by [`WAIT`].

mod common;

use std::collections::BTreeSet;

use async_nats::{Client, HeaderMap, Message, RequestErrorKind, Subscriber};
use futures::{FutureExt, StreamExt};

use common::cluster::{
    mesh, read_frame, wait_interest, wait_route_sub, wait_routes, Frame, Kind, Node, Topology, WAIT,
};
use common::Raw;

const NATSU_NATSU: &[Kind] = &[Kind::Natsu, Kind::Natsu];
const NATSU_NATS_SERVER: &[Kind] = &[Kind::Natsu, Kind::Reference];
const NATSU_NATSU_NATS_SERVER: &[Kind] = &[Kind::Natsu, Kind::Natsu, Kind::Reference];

/// A module per scenario, a test per cluster: `scenario::cluster_name`, running
/// `scenario(kinds)`.
macro_rules! on_clusters {
    ($scenario:ident: $($cluster:ident = $kinds:expr),* $(,)?) => {
        mod $scenario {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $cluster() {
                    super::$scenario($kinds).await
                }
            )*
        }
    };
}

/// [`on_clusters`] on the three clusters every scenario runs on.
macro_rules! on_every_cluster {
    ($($scenario:ident),* $(,)?) => {$(
        on_clusters!($scenario:
            natsu_natsu = NATSU_NATSU,
            natsu_nats_server = NATSU_NATS_SERVER,
            natsu_natsu_nats_server = NATSU_NATSU_NATS_SERVER,
        );
    )*};
}

on_every_cluster!(
    subjects,
    queue_group_spreads_over_nodes,
    queue_group_on_the_remote_node_only,
    request_reply,
    headers,
    order,
    unsub_stops_delivery,
    disconnect_stops_delivery,
);

// ---------------------------------------------------------------------------------------
// Clients

async fn connect(node: &Node) -> Client {
    tokio::time::timeout(WAIT, async_nats::connect(node.url()))
        .await
        .unwrap_or_else(|_| panic!("connecting to {node} timed out"))
        .unwrap_or_else(|e| panic!("connecting to {node}: {e}"))
}

/// A client on each node, in node order.
async fn connect_all(nodes: &[Node]) -> Vec<Client> {
    let mut clients = Vec::new();
    for node in nodes {
        clients.push(connect(node).await);
    }
    clients
}

/// A mesh of `kinds` around a seed (the first node), and a client on each node.
async fn seeded(kinds: &[Kind]) -> (Vec<Node>, Vec<Client>) {
    let nodes = mesh(kinds, Topology::Seed);
    let clients = connect_all(&nodes).await;
    (nodes, clients)
}

/// Write out what `client` has buffered (async-nats's flush sends no PING).
async fn flush(client: &Client) {
    tokio::time::timeout(WAIT, client.flush()).await.expect("flush timed out").expect("flush");
}

/// The next message on `sub`; `what` names the wait in the failure.
async fn next(sub: &mut Subscriber, what: &str) -> Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap_or_else(|_| panic!("waited {WAIT:?} for {what}"))
        .unwrap_or_else(|| panic!("subscription ended while waiting for {what}"))
}

/// Messages already received on `sub`, without waiting. Unconstrained: tokio's cooperative
/// budget would otherwise say "pending" after a hundred-odd messages that are there.
fn take_ready(sub: &mut Subscriber) -> Vec<Message> {
    std::iter::from_fn(|| tokio::task::unconstrained(sub.next()).now_or_never().flatten()).collect()
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(&m.payload).into_owned()
}

/// The payload read as the decimal number the tests put there.
fn number(m: &Message) -> usize {
    text(m).parse().unwrap_or_else(|_| panic!("payload is not a number: {:?}", m.payload))
}

/// Indexes of the nodes other than `i`.
fn others(nodes: &[Node], i: usize) -> impl Iterator<Item = usize> {
    (0..nodes.len()).filter(move |&j| j != i)
}

// ---------------------------------------------------------------------------------------
// Subjects

/// Published in this order, each with its subject as payload.
const PUBLISHED: &[&str] =
    &["orders.eu.new", "orders.eu.old", "orders.us.new", "orders", "orders.eu.new.x", "payments.eu.new"];

/// Subscriptions and the messages of [`PUBLISHED`] each must get, once each and in order.
const PATTERNS: &[(&str, &[&str])] = &[
    ("orders.eu.new", &["orders.eu.new"]),
    // The same subject again on the same connection: a copy for each subscription.
    ("orders.eu.new", &["orders.eu.new"]),
    ("orders.*.new", &["orders.eu.new", "orders.us.new"]),
    ("orders.>", &["orders.eu.new", "orders.eu.old", "orders.us.new", "orders.eu.new.x"]),
    ("*.eu.>", &["orders.eu.new", "orders.eu.old", "orders.eu.new.x", "payments.eu.new"]),
    ("orders.us.*", &["orders.us.new"]),
    ("orders.*", &[]),
    ("invoices.>", &[]),
];

/// Literal, `*` and `>` subscriptions on every node but the publisher's, several matching
/// one message: each gets exactly one copy of each message it matches and nothing else.
async fn subjects(kinds: &[Kind]) {
    let (nodes, clients) = seeded(kinds).await;
    for p in 0..nodes.len() {
        // A subject prefix per round keeps rounds apart.
        let prefix = format!("round{p}");
        let mut sides = Vec::new();
        for s in others(&nodes, p) {
            let mut subs = Vec::new();
            for (pattern, _) in PATTERNS {
                subs.push(clients[s].subscribe(format!("{prefix}.{pattern}")).await.unwrap());
            }
            let marker = clients[s].subscribe(format!("{prefix}.marker")).await.unwrap();
            wait_interest(&clients[s], &[&clients[p]]).await;
            sides.push((s, subs, marker));
        }
        for subject in PUBLISHED {
            clients[p].publish(format!("{prefix}.{subject}"), subject.to_string().into()).await.unwrap();
        }
        clients[p].publish(format!("{prefix}.marker"), "".into()).await.unwrap();
        flush(&clients[p]).await;
        for (s, subs, marker) in &mut sides {
            next(marker, &format!("the marker from {} on {}", nodes[p], nodes[*s])).await;
            for ((pattern, want), sub) in PATTERNS.iter().zip(subs.iter_mut()) {
                let got: Vec<String> = take_ready(sub).iter().map(text).collect();
                assert_eq!(got, *want, "{pattern:?} on {}, published on {}", nodes[*s], nodes[p]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Queue groups

const QUEUE_MSGS: usize = 3000;

/// Take the marker on every side, then return what each member got before it, by member.
async fn collect_members(members: &mut [Subscriber], markers: &mut [Subscriber], what: &str) -> Vec<Vec<usize>> {
    let mut got = Vec::new();
    for (member, marker) in members.iter_mut().zip(markers.iter_mut()) {
        next(marker, &format!("the marker after {what}")).await;
        got.push(take_ready(member).iter().map(number).collect());
    }
    got
}

/// Every number below `n` exactly once over all members.
fn assert_exactly_once(got: &[Vec<usize>], n: usize, what: &str) {
    let mut seen = vec![0usize; n];
    for &i in got.iter().flatten() {
        assert!(i < n, "{what}: message {i} was never published");
        seen[i] += 1;
    }
    let lost: Vec<usize> = (0..n).filter(|&i| seen[i] == 0).collect();
    let twice: Vec<usize> = (0..n).filter(|&i| seen[i] > 1).collect();
    assert!(lost.is_empty() && twice.is_empty(), "{what}: lost {lost:?}, delivered more than once {twice:?}");
}

/// One member of a group on each node, all messages published on the first: each message
/// reaches exactly one member, and every member gets a fair share (nats-server 2.9 picks at
/// random among all members on all nodes, local or not; each share within 0.6 and 1.5 times
/// 1/n: 20% to 50% with three nodes).
async fn queue_group_spreads_over_nodes(kinds: &[Kind]) {
    let (nodes, clients) = seeded(kinds).await;
    let (mut members, mut markers) = (Vec::new(), Vec::new());
    for c in &clients {
        members.push(c.queue_subscribe("work", "workers".into()).await.unwrap());
        markers.push(c.subscribe("work.done").await.unwrap());
    }
    for s in others(&nodes, 0) {
        wait_interest(&clients[s], &[&clients[0]]).await;
    }
    for i in 0..QUEUE_MSGS {
        clients[0].publish("work", i.to_string().into()).await.unwrap();
    }
    clients[0].publish("work.done", "".into()).await.unwrap();
    flush(&clients[0]).await;

    let got = collect_members(&mut members, &mut markers, "the queue messages").await;
    assert_exactly_once(&got, QUEUE_MSGS, "queue group with a member on each node");
    let n = nodes.len() as f64;
    for (node, share) in nodes.iter().zip(&got) {
        let fraction = share.len() as f64 / QUEUE_MSGS as f64;
        assert!(
            (0.6 / n..=1.5 / n).contains(&fraction),
            "the member on {node} got {} of {QUEUE_MSGS} messages; shares: {:?}",
            share.len(),
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
}

/// A group whose two members are both on the last node gets every message published on each
/// other node, once.
async fn queue_group_on_the_remote_node_only(kinds: &[Kind]) {
    const MSGS: usize = 1000;
    let (nodes, clients) = seeded(kinds).await;
    let s = nodes.len() - 1;
    let members_client = connect(&nodes[s]).await;
    for p in others(&nodes, s) {
        let subject = format!("remote.work{p}");
        let mut members = vec![
            clients[s].queue_subscribe(subject.clone(), "workers".into()).await.unwrap(),
            members_client.queue_subscribe(subject.clone(), "workers".into()).await.unwrap(),
        ];
        let mut markers = vec![
            clients[s].subscribe(format!("{subject}.done")).await.unwrap(),
            members_client.subscribe(format!("{subject}.done")).await.unwrap(),
        ];
        wait_interest(&clients[s], &[&clients[p]]).await;
        wait_interest(&members_client, &[&clients[p]]).await;
        for i in 0..MSGS {
            clients[p].publish(subject.clone(), i.to_string().into()).await.unwrap();
        }
        clients[p].publish(format!("{subject}.done"), "".into()).await.unwrap();
        flush(&clients[p]).await;
        let got = collect_members(&mut members, &mut markers, &format!("publishing on {}", nodes[p])).await;
        assert_exactly_once(&got, MSGS, &format!("group on {} only, published on {}", nodes[s], nodes[p]));
    }
}

// ---------------------------------------------------------------------------------------
// Request/reply

/// A responder on each node in turn, requesters on all the others: every request answered,
/// by the right responder, with the right body. A subject nobody serves gets no_responders
/// on every node.
async fn request_reply(kinds: &[Kind]) {
    const REQUESTS: usize = 50;
    let (nodes, clients) = seeded(kinds).await;
    for r in 0..nodes.len() {
        let subject = format!("svc.echo{r}");
        let mut requests = clients[r].subscribe(subject.clone()).await.unwrap();
        let responder = clients[r].clone();
        let name = nodes[r].name.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = requests.next().await {
                if let Some(reply) = m.reply {
                    let answer = format!("{name}:{}", String::from_utf8_lossy(&m.payload));
                    responder.publish(reply, answer.into()).await.unwrap();
                    responder.flush().await.unwrap();
                }
            }
        });
        let requesters: Vec<&Client> = others(&nodes, r).map(|q| &clients[q]).collect();
        wait_interest(&clients[r], &requesters).await;
        for q in others(&nodes, r) {
            // Concurrent requests, each on its own reply subject.
            let asks = (0..REQUESTS).map(|i| {
                let c = clients[q].clone();
                let subject = subject.clone();
                async move { (i, tokio::time::timeout(WAIT, c.request(subject, format!("{i}").into())).await) }
            });
            for (i, answer) in futures::future::join_all(asks).await {
                let what = format!("request {i} from {} to the responder on {}", nodes[q], nodes[r]);
                let m =
                    answer.unwrap_or_else(|_| panic!("{what}: timed out")).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(text(&m), format!("{}:{i}", nodes[r].name), "{what}");
            }
        }
        task.abort();
    }
    for (node, c) in nodes.iter().zip(&clients) {
        let answer = tokio::time::timeout(WAIT, c.request("svc.nobody", "".into())).await;
        let err = answer.unwrap_or_else(|_| panic!("request to nobody from {node}: timed out")).err();
        assert_eq!(err.map(|e| e.kind()), Some(RequestErrorKind::NoResponders), "request to nobody from {node}");
    }
}

// ---------------------------------------------------------------------------------------
// Headers

/// HPUB/PUB from a raw publisher on each node in turn; on every other node an async-nats
/// subscriber reads the headers back, a raw subscriber that said `"headers":true` gets the
/// header block byte for byte, and one that said `"headers":false` gets the payload alone
/// (nats-server strips the headers for it).
async fn headers(kinds: &[Kind]) {
    const BLOCK: &str = "NATS/1.0\r\nX-Trace: abc\r\nX-Multi: 1\r\nX-Multi: 2\r\n\r\n";
    const ONLY: &str = "NATS/1.0\r\nX-Only: yes\r\n\r\n";
    let (nodes, clients) = seeded(kinds).await;
    for p in 0..nodes.len() {
        let subject = format!("hdr{p}");
        let mut sides = Vec::new();
        for s in others(&nodes, p) {
            let sub = clients[s].subscribe(subject.clone()).await.unwrap();
            let mut with = Raw::connect_with(nodes[s].ports.client, r#"{"verbose":false,"headers":true}"#);
            let mut without = Raw::connect_with(nodes[s].ports.client, r#"{"verbose":false,"headers":false}"#);
            for raw in [&mut with, &mut without] {
                raw.send(&format!("SUB {subject} 1\r\n"));
                raw.flush();
            }
            // The node forwards one copy per subject and fans it out to all three.
            wait_interest(&clients[s], &[&clients[p]]).await;
            sides.push((s, sub, with, without));
        }
        let mut publisher = Raw::connect_with(nodes[p].ports.client, r#"{"verbose":false,"headers":true}"#);
        let body = "with headers";
        publisher.send(&format!("HPUB {subject} {} {}\r\n{BLOCK}{body}\r\n", BLOCK.len(), BLOCK.len() + body.len()));
        publisher.send(&format!("PUB {subject} 5\r\nplain\r\n"));
        publisher.send(&format!("HPUB {subject} {} {}\r\n{ONLY}\r\n", ONLY.len(), ONLY.len()));
        publisher.flush();
        for (s, mut sub, mut with, mut without) in sides {
            let on = format!("on {}, published on {}", nodes[s], nodes[p]);
            let m = next(&mut sub, &format!("the message with headers {on}")).await;
            let h = m.headers.as_ref().unwrap_or_else(|| panic!("no headers {on}"));
            assert_eq!(h.get("X-Trace").map(|v| v.as_str()), Some("abc"), "{on}");
            let multi: Vec<&str> = h.get_all("X-Multi").map(|v| v.as_str()).collect();
            assert_eq!(multi, ["1", "2"], "{on}");
            assert_eq!(text(&m), body, "{on}");
            let m = next(&mut sub, &format!("the plain message {on}")).await;
            assert!(m.headers.is_none(), "the plain message has headers {on}: {:?}", m.headers);
            assert_eq!(text(&m), "plain", "{on}");
            let m = next(&mut sub, &format!("the headers-only message {on}")).await;
            let h: &HeaderMap =
                m.headers.as_ref().unwrap_or_else(|| panic!("no headers on the headers-only message {on}"));
            assert_eq!(h.get("X-Only").map(|v| v.as_str()), Some("yes"), "{on}");
            assert!(m.payload.is_empty(), "{on}");

            with.expect(&format!("HMSG {subject} 1 {} {}\r\n{BLOCK}{body}\r\n", BLOCK.len(), BLOCK.len() + body.len()));
            with.expect(&format!("MSG {subject} 1 5\r\nplain\r\n"));
            with.expect(&format!("HMSG {subject} 1 {} {}\r\n{ONLY}\r\n", ONLY.len(), ONLY.len()));
            without.expect(&format!("MSG {subject} 1 {}\r\n{body}\r\n", body.len()));
            without.expect(&format!("MSG {subject} 1 5\r\nplain\r\n"));
            without.expect(&format!("MSG {subject} 1 0\r\n\r\n"));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Order

/// 10,000 messages from one publisher on each node in turn arrive in order, none missing,
/// at a subscriber on every other node.
async fn order(kinds: &[Kind]) {
    const MSGS: usize = 10_000;
    let (nodes, clients) = seeded(kinds).await;
    for p in 0..nodes.len() {
        let subject = format!("order{p}");
        let mut subs = Vec::new();
        for s in others(&nodes, p) {
            subs.push((s, clients[s].subscribe(subject.clone()).await.unwrap()));
            wait_interest(&clients[s], &[&clients[p]]).await;
        }
        for i in 0..MSGS {
            clients[p].publish(subject.clone(), i.to_string().into()).await.unwrap();
        }
        flush(&clients[p]).await;
        for (s, sub) in &mut subs {
            for i in 0..MSGS {
                let m = next(sub, &format!("message {i} of {MSGS} from {} on {}", nodes[p], nodes[*s])).await;
                assert_eq!(number(&m), i, "from {} on {}: out of order", nodes[p], nodes[*s]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Interest removed

/// Messages each publisher sends after the interest is gone.
const AFTER: u64 = 100;

/// A raw connection to `node` that subscribed to `subjects` (sids 1, 2, ...) and knows the
/// node has them.
fn raw_subscriber(node: &Node, subjects: &[&str]) -> Raw {
    let mut raw = Raw::connect_with(node.ports.client, r#"{"verbose":false}"#);
    for (sid, subject) in subjects.iter().enumerate() {
        raw.send(&format!("SUB {subject} {}\r\n", sid + 1));
    }
    raw.flush();
    raw
}

/// The next message on `raw`: (subject, sid, payload). A PING (nats-server pings a quiet
/// client soon after it connects) is answered and passed over.
fn read_msg(raw: &mut Raw) -> (String, String, String) {
    loop {
        match read_frame(raw) {
            Frame::Msg { subject, sid, payload } => return (subject, sid, payload),
            Frame::Line(line) if line.trim_end() == "PING" => raw.send("PONG\r\n"),
            Frame::Line(line) => panic!("expected a MSG, got {line:?}"),
        }
    }
}

/// Every other node publishes [`AFTER`] messages on `gone`, then one on `marker`; `raw`
/// (the marker's subscriber on the last node) must get the markers and nothing else, and
/// the last node's routes must not have carried the `gone` messages in (`in_msgs`).
async fn publish_after_interest_gone(nodes: &[Node], clients: &[Client], raw: &mut Raw, gone: &str, marker: &str) {
    let s = nodes.len() - 1;
    let before = nodes[s].route_in_msgs();
    for p in others(nodes, s) {
        for i in 0..AFTER {
            clients[p].publish(gone.to_string(), i.to_string().into()).await.unwrap();
        }
        clients[p].publish(marker.to_string(), nodes[p].name.clone().into()).await.unwrap();
        flush(&clients[p]).await;
    }
    let mut markers = BTreeSet::new();
    for _ in others(nodes, s) {
        let (subject, _, from) = read_msg(raw);
        assert_eq!(
            subject, marker,
            "{} got a message on {subject:?} (from node {from}) after its interest went",
            nodes[s]
        );
        markers.insert(from);
    }
    assert_eq!(markers.len(), nodes.len() - 1, "markers from {markers:?}");
    let carried = nodes[s].route_in_msgs() - before;
    // The markers, and room for the reference's own $SYS traffic; not the `gone` messages.
    assert!(
        carried < AFTER / 2,
        "{}'s routes carried in {carried} messages while {} were published on a subject it had dropped",
        nodes[s],
        AFTER * (nodes.len() as u64 - 1)
    );
}

/// How the subscriber on the last node gives up its interest.
#[derive(Clone, Copy, Debug)]
enum Removal {
    Unsub,
    Disconnect,
}

async fn unsub_stops_delivery(kinds: &[Kind]) {
    interest_removed(kinds, Removal::Unsub).await
}

async fn disconnect_stops_delivery(kinds: &[Kind]) {
    interest_removed(kinds, Removal::Disconnect).await
}

/// A subscriber on the last node UNSUBs, or closes its connection; once every other node's
/// route stops listing the subject, what they publish on it is neither forwarded nor
/// delivered (an UNSUBbed connection gets the markers published after it, and nothing else).
async fn interest_removed(kinds: &[Kind], how: Removal) {
    let (nodes, clients) = seeded(kinds).await;
    let s = nodes.len() - 1;
    let mut sub = raw_subscriber(&nodes[s], &["gone", "marker"]);
    // Takes the markers when `sub` has left.
    let stayer = raw_subscriber(&nodes[s], &["marker"]);
    for p in others(&nodes, s) {
        wait_route_sub(&nodes[p], &nodes[s], "gone", true);
        wait_route_sub(&nodes[p], &nodes[s], "marker", true);
    }
    // Delivery works before: the check after means something.
    clients[0].publish("gone", "before".into()).await.unwrap();
    flush(&clients[0]).await;
    assert_eq!(read_msg(&mut sub), ("gone".into(), "1".into(), "before".into()));

    let mut reader = match how {
        Removal::Unsub => {
            sub.send("UNSUB 1\r\n");
            sub.flush();
            sub
        }
        Removal::Disconnect => {
            drop(sub);
            stayer
        }
    };
    for p in others(&nodes, s) {
        wait_route_sub(&nodes[p], &nodes[s], "gone", false);
    }
    publish_after_interest_gone(&nodes, &clients, &mut reader, "gone", "marker").await;
}

// ---------------------------------------------------------------------------------------
// Route topology

/// Each node's routes lead to exactly the other nodes, one each (none to itself); and stay
/// so for two seconds, past nats-server's one-second route retry.
fn assert_one_route_per_peer(nodes: &[Node]) {
    let ids: Vec<String> = nodes.iter().map(Node::server_id).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        for (i, node) in nodes.iter().enumerate() {
            let v = node.routez("");
            let mut remotes: Vec<String> = v["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r["remote_id"].as_str().unwrap_or("").to_string())
                .collect();
            remotes.sort();
            let mut want: Vec<String> = others(nodes, i).map(|j| ids[j].clone()).collect();
            want.sort();
            assert_eq!(remotes, want, "{node} (id {}): remote_id of each route, against the other nodes' ids", ids[i]);
            assert_eq!(v["num_routes"].as_u64(), Some(nodes.len() as u64 - 1), "{node}: num_routes");
        }
        if std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A client of each node is told every node's client address (`connect_urls`).
fn assert_connect_urls(nodes: &[Node]) {
    let want: BTreeSet<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.ports.client)).collect();
    for node in nodes {
        let raw = Raw::connect(node.ports.client);
        let info: serde_json::Value = serde_json::from_str(raw.info.trim_start_matches("INFO ").trim())
            .unwrap_or_else(|e| panic!("{node}: INFO is not JSON ({e})"));
        let got: BTreeSet<String> = info["connect_urls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(String::from))
            .collect();
        assert_eq!(got, want, "{node}: connect_urls in INFO");
    }
}

/// A message published on each node reaches a subscriber on each other node. A route carries
/// a message one hop only, so this needs a direct route between every two nodes.
async fn every_pair_delivers(nodes: &[Node]) {
    let clients = connect_all(nodes).await;
    for s in 0..nodes.len() {
        let mut sub = clients[s].subscribe(format!("pair.to{s}")).await.unwrap();
        let publishers: Vec<&Client> = others(nodes, s).map(|p| &clients[p]).collect();
        wait_interest(&clients[s], &publishers).await;
        for p in others(nodes, s) {
            clients[p].publish(format!("pair.to{s}"), nodes[p].name.clone().into()).await.unwrap();
            flush(&clients[p]).await;
            let m = next(&mut sub, &format!("the message from {} on {}", nodes[p], nodes[s])).await;
            assert_eq!(text(&m), nodes[p].name);
        }
    }
}

/// Three nodes that name only the first: gossip completes the mesh (`num_routes` 2 on each,
/// every client told every node's address), and a message published on B reaches a
/// subscriber on C. With a nats-server seed, the natsu nodes learn of each other from its
/// gossip.
async fn gossip(kinds: &[Kind]) {
    let nodes = mesh(kinds, Topology::Seed);
    assert_one_route_per_peer(&nodes);
    assert_connect_urls(&nodes);
    every_pair_delivers(&nodes).await;
}

on_clusters!(gossip:
    natsu_seed_natsu_natsu = &[Kind::Natsu, Kind::Natsu, Kind::Natsu],
    natsu_seed_natsu_nats_server = NATSU_NATSU_NATS_SERVER,
    nats_server_seed_natsu_natsu = &[Kind::Reference, Kind::Natsu, Kind::Natsu],
);

/// Every node given the same `--routes`, its own URL included: two routes each, none to
/// itself, one per peer.
async fn same_routes_everywhere(kinds: &[Kind]) {
    let nodes = mesh(kinds, Topology::All);
    assert_one_route_per_peer(&nodes);
    every_pair_delivers(&nodes).await;
}

on_clusters!(same_routes_everywhere:
    natsu_natsu_natsu = &[Kind::Natsu, Kind::Natsu, Kind::Natsu],
    natsu_natsu_nats_server = NATSU_NATSU_NATS_SERVER,
);

/// `/routez` of a node without peers: zero routes, an empty list.
#[test]
fn lone_node_has_no_routes() {
    let nodes = common::cluster::start_mesh(&[Kind::Natsu], Topology::Seed);
    wait_routes(&nodes[0], 0, WAIT);
    let v = nodes[0].routez("");
    assert_eq!(v["routes"].as_array().map(Vec::len), Some(0), "{}: {v}", nodes[0]);
}
