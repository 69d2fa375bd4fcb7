//! Leaf nodes between natsu and nats-server 2.9, both ways: natsu as the leaf of a
//! nats-server hub, and nats-server as the leaf of a natsu hub (and natsu with natsu).
//! Real processes on loopback, real clients (async-nats): messages both ways, queue groups
//! and request/reply across the link, account binding, a hub's subject mappings applied to
//! what its leafs publish, a hub that restarts, two leafs on one hub without duplicates;
//! and bad `leafnodes` blocks refused with their reasons.
//!
//! "The link is up" is never a sleep: a barrier (see `common::probe`) from one side to a
//! probe on the other says the interest crossed. Every wait is bounded.

mod common;

use std::process::Command;
use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;

use common::cluster::{http_get, pick_port};
use common::probe::{barrier, Probe};
use common::{natsu_bin, Server, TempDir};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Natsu,
    NatsServer,
}

/// A server started from a config file (and `-p -1`), with the file's directory.
struct Node {
    who: Who,
    server: Server,
    _dir: TempDir,
}

impl Node {
    fn start(who: Who, conf: &str) -> Node {
        let dir = TempDir::new("leaf");
        let f = dir.0.join("server.conf");
        std::fs::write(&f, conf).unwrap();
        let file = f.to_str().unwrap();
        let server = match who {
            Who::Natsu => Server::target_with(&["-p", "-1", "-c", file, "--cores", "2"]),
            Who::NatsServer => Server::reference_with(&["-p", "-1", "-c", file]),
        };
        Node { who, server, _dir: dir }
    }

    async fn client(&self) -> Client {
        tokio::time::timeout(WAIT, async_nats::connect(self.server.url()))
            .await
            .unwrap_or_else(|_| panic!("{:?}: connect timed out", self.who))
            .unwrap_or_else(|e| panic!("{:?}: connect: {e}", self.who))
    }

    async fn client_as(&self, user: &str, pass: &str) -> Client {
        tokio::time::timeout(WAIT, async_nats::ConnectOptions::with_user_and_password(user.into(), pass.into()).connect(self.server.url())).await.expect("connect timed out").expect("connect")
    }
}

/// A hub listening for leafs on `leaf_port`, with `extra` config.
fn hub(who: Who, leaf_port: u16, extra: &str) -> Node {
    Node::start(who, &format!("leafnodes {{\n  listen: \"127.0.0.1:{leaf_port}\"\n{extra}\n}}\n"))
}

/// A leaf dialling the hub at `leaf_port` (with `remote` added to the remote's entry), and
/// `extra` top-level config.
fn leaf(who: Who, leaf_port: u16, remote: &str, extra: &str) -> Node {
    Node::start(who, &format!("{extra}\nleafnodes {{\n  reconnect: 1\n  remotes: [ {{ url: \"nats://127.0.0.1:{leaf_port}\" {remote} }} ]\n}}\n"))
}

/// Wait until `subscriber`'s subscriptions so far are visible to `publisher`'s publishes.
async fn linked(subscriber: &Client, publisher: &Client) {
    let probe = Probe::start(subscriber).await;
    barrier(publisher, &probe).await;
}

async fn next(sub: &mut async_nats::Subscriber, what: &str) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next()).await.unwrap_or_else(|_| panic!("waited {WAIT:?} for {what}")).unwrap_or_else(|| panic!("subscription ended: {what}"))
}

/// Nothing more arrives on `sub` within a short while (after a barrier made sure what was
/// sent has arrived).
async fn quiet(sub: &mut async_nats::Subscriber, what: &str) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        panic!("{what}: unexpected message on {}: {:?}", m.subject, m.payload);
    }
}

/// Messages, request/reply and a queue group across one link, both ways; `hub_c` and
/// `leaf_c` are clients of either side.
async fn exchange(hub_c: &Client, leaf_c: &Client, tag: &str) {
    // Leaf to hub and hub to leaf, one message each way, headers kept.
    let mut at_hub = hub_c.subscribe("up.>").await.unwrap();
    let mut at_leaf = leaf_c.subscribe("down.*").await.unwrap();
    linked(hub_c, leaf_c).await;
    linked(leaf_c, hub_c).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Leaf", "1");
    leaf_c.publish_with_headers("up.a.b", headers, "from leaf".into()).await.unwrap();
    hub_c.publish("down.x", "from hub".into()).await.unwrap();
    leaf_c.flush().await.unwrap();
    hub_c.flush().await.unwrap();
    let m = next(&mut at_hub, "leaf → hub").await;
    assert_eq!((m.subject.as_str(), &m.payload[..]), ("up.a.b", &b"from leaf"[..]), "{tag}");
    assert_eq!(m.headers.as_ref().and_then(|h| h.get("X-Leaf")).map(|v| v.as_str()), Some("1"), "{tag}: headers cross");
    let m = next(&mut at_leaf, "hub → leaf").await;
    assert_eq!((m.subject.as_str(), &m.payload[..]), ("down.x", &b"from hub"[..]), "{tag}");

    // Request/reply: a responder on each side answers a requester on the other.
    for (responder, requester, subject) in [(hub_c, leaf_c, "svc.hub"), (leaf_c, hub_c, "svc.leaf")] {
        let mut reqs = responder.subscribe(subject).await.unwrap();
        let r = responder.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = reqs.next().await {
                if let Some(reply) = m.reply {
                    let _ = r.publish(reply, format!("re:{}", String::from_utf8_lossy(&m.payload)).into()).await;
                    let _ = r.flush().await;
                }
            }
        });
        linked(responder, requester).await;
        let answer = tokio::time::timeout(WAIT, requester.request(subject, "ping".into())).await.expect("request timed out").expect("request");
        assert_eq!(&answer.payload[..], b"re:ping", "{tag}: {subject}");
        task.abort();
    }

    // A queue group with members on the far side only: each message reaches exactly one.
    for (members_on, publisher, subject) in [(leaf_c, hub_c, "work.leaf"), (hub_c, leaf_c, "work.hub")] {
        let mut q1 = members_on.queue_subscribe(subject, "workers".into()).await.unwrap();
        let mut q2 = members_on.queue_subscribe(subject, "workers".into()).await.unwrap();
        linked(members_on, publisher).await;
        for i in 0..20 {
            publisher.publish(subject, format!("{i}").into()).await.unwrap();
        }
        publisher.flush().await.unwrap();
        linked(members_on, publisher).await;
        let mut got = 0;
        for sub in [&mut q1, &mut q2] {
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
                got += 1;
            }
        }
        assert_eq!(got, 20, "{tag}: queue group on the far side of {subject}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natsu_leaf_of_a_nats_server_hub() {
    let lp = pick_port();
    let h = hub(Who::NatsServer, lp, "");
    let l = leaf(Who::Natsu, lp, "", "");
    exchange(&h.client().await, &l.client().await, "natsu leaf, nats-server hub").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_leaf_of_a_natsu_hub() {
    let lp = pick_port();
    let h = hub(Who::Natsu, lp, "");
    let l = leaf(Who::NatsServer, lp, "", "");
    exchange(&h.client().await, &l.client().await, "nats-server leaf, natsu hub").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natsu_leaf_of_a_natsu_hub() {
    let lp = pick_port();
    let h = hub(Who::Natsu, lp, "");
    let l = leaf(Who::Natsu, lp, "", "");
    exchange(&h.client().await, &l.client().await, "natsu leaf, natsu hub").await;
}

/// A hub with subject mappings tells its leafs of their sources, so that what a leaf's
/// client publishes on one comes over (nobody at the leaf is interested) and is mapped at
/// the hub, as nats-server does it.
async fn hub_mappings(hub_who: Who, leaf_who: Who) {
    let lp = pick_port();
    let h = Node::start(hub_who, &format!("mappings {{ \"in.*\": \"out.$1\" }}\nleafnodes {{\n  listen: \"127.0.0.1:{lp}\"\n}}\n"));
    let l = leaf(leaf_who, lp, "", "");
    let (hub_c, leaf_c) = (h.client().await, l.client().await);
    let mut at_hub = hub_c.subscribe("out.>").await.unwrap();
    let mut unmapped = hub_c.subscribe("in.>").await.unwrap();
    linked(&hub_c, &leaf_c).await;
    leaf_c.publish("in.x", "mapped".into()).await.unwrap();
    leaf_c.flush().await.unwrap();
    let m = next(&mut at_hub, "the leaf's message, mapped at the hub").await;
    assert_eq!((m.subject.as_str(), &m.payload[..]), ("out.x", &b"mapped"[..]), "{hub_who:?} hub");
    linked(&hub_c, &leaf_c).await;
    quiet(&mut unmapped, "the source subject at the hub").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_natsu_hub_maps_what_its_leafs_publish() {
    hub_mappings(Who::Natsu, Who::NatsServer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_natsu_leaf_forwards_to_a_mapping_nats_server_hub() {
    hub_mappings(Who::NatsServer, Who::Natsu).await;
}

/// A hub binds each leaf user to its account: the leaf's messages reach that account only.
async fn account_binding(hub_who: Who, leaf_who: Who) {
    let lp = pick_port();
    let accounts = "accounts {\n  A { users: [ {user: a, password: a} ] }\n  B { users: [ {user: b, password: b} ] }\n}\n";
    let h = Node::start(hub_who, &format!("{accounts}leafnodes {{\n  listen: \"127.0.0.1:{lp}\"\n  authorization {{ users: [ {{user: leafa, password: secret, account: A}} ] }}\n}}\n"));
    let l = Node::start(leaf_who, &format!("leafnodes {{\n  reconnect: 1\n  remotes: [ {{ url: \"nats://leafa:secret@127.0.0.1:{lp}\" }} ]\n}}\n"));
    let (ca, cb, cl) = (h.client_as("a", "a").await, h.client_as("b", "b").await, l.client().await);
    let mut in_a = ca.subscribe("data").await.unwrap();
    let mut in_b = cb.subscribe("data").await.unwrap();
    linked(&ca, &cl).await;
    cl.publish("data", "x".into()).await.unwrap();
    cl.flush().await.unwrap();
    let m = next(&mut in_a, "the leaf's message in account A").await;
    assert_eq!(&m.payload[..], b"x");
    linked(&ca, &cl).await;
    quiet(&mut in_b, "account B").await;
    // The other way: account A's publishes reach the leaf, B's do not.
    let mut at_leaf = cl.subscribe("back").await.unwrap();
    linked(&cl, &ca).await;
    cb.publish("back", "from b".into()).await.unwrap();
    ca.publish("back", "from a".into()).await.unwrap();
    cb.flush().await.unwrap();
    ca.flush().await.unwrap();
    let m = next(&mut at_leaf, "account A's message at the leaf").await;
    assert_eq!(&m.payload[..], b"from a");
    linked(&cl, &ca).await;
    quiet(&mut at_leaf, "the leaf (account B published)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_binding_natsu_hub() {
    account_binding(Who::Natsu, Who::NatsServer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_binding_nats_server_hub() {
    account_binding(Who::NatsServer, Who::Natsu).await;
}

/// A natsu leaf's `account` picks which of its accounts the link carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natsu_leaf_binds_its_local_account() {
    let lp = pick_port();
    let h = hub(Who::NatsServer, lp, "");
    let accounts = "accounts {\n  A { users: [ {user: a, password: a} ] }\n  B { users: [ {user: b, password: b} ] }\n}\n";
    let l = leaf(Who::Natsu, lp, ", account: B", accounts);
    let (ch, la, lb) = (h.client().await, l.client_as("a", "a").await, l.client_as("b", "b").await);
    let mut at_hub = ch.subscribe("t").await.unwrap();
    linked(&ch, &lb).await;
    la.publish("t", "a".into()).await.unwrap();
    lb.publish("t", "b".into()).await.unwrap();
    la.flush().await.unwrap();
    lb.flush().await.unwrap();
    let m = next(&mut at_hub, "account B's message at the hub").await;
    assert_eq!(&m.payload[..], b"b");
    linked(&ch, &lb).await;
    quiet(&mut at_hub, "the hub (account A published)").await;
}

/// The hub goes away and comes back on the same port: the natsu leaf dials it again and the
/// interest is announced again, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natsu_leaf_reconnects_when_the_hub_restarts() {
    let lp = pick_port();
    let client_port = pick_port();
    let conf = format!("port: {client_port}\nleafnodes {{ listen: \"127.0.0.1:{lp}\" }}\n");
    let dir = TempDir::new("leaf-hub");
    let f = dir.0.join("hub.conf");
    std::fs::write(&f, &conf).unwrap();
    let file = f.to_str().unwrap().to_string();
    let start_hub = || Server::reference_with(&["-c", &file]);
    let mut h = start_hub();
    let l = leaf(Who::Natsu, lp, "", "");
    let cl = l.client().await;
    let mut at_leaf = cl.subscribe("after").await.unwrap();
    {
        let ch = Node::client_of(&h).await;
        linked(&cl, &ch).await;
    }
    h.kill();
    let h2 = start_hub();
    let ch = Node::client_of(&h2).await;
    let mut at_hub = ch.subscribe("up").await.unwrap();
    // The leaf's subscription made before the restart is announced to the new hub.
    linked(&cl, &ch).await;
    linked(&ch, &cl).await;
    ch.publish("after", "again".into()).await.unwrap();
    cl.publish("up", "too".into()).await.unwrap();
    ch.flush().await.unwrap();
    cl.flush().await.unwrap();
    assert_eq!(&next(&mut at_leaf, "a message after the restart").await.payload[..], b"again");
    assert_eq!(&next(&mut at_hub, "a leaf message after the restart").await.payload[..], b"too");
}

impl Node {
    async fn client_of(s: &Server) -> Client {
        tokio::time::timeout(WAIT, async_nats::connect(s.url())).await.expect("connect timed out").expect("connect")
    }
}

/// Two leafs on one hub: a message reaches every subscriber once, whichever side
/// published it, and nothing loops back.
async fn two_leafs(hub_who: Who, leaf_who: [Who; 2]) {
    let lp = pick_port();
    let h = hub(hub_who, lp, "");
    let l1 = leaf(leaf_who[0], lp, "", "");
    let l2 = leaf(leaf_who[1], lp, "", "");
    let (ch, c1, c2) = (h.client().await, l1.client().await, l2.client().await);
    let mut subs = Vec::new();
    for c in [&ch, &c1, &c2] {
        subs.push(c.subscribe("fan").await.unwrap());
    }
    for s in [&ch, &c1, &c2] {
        for p in [&ch, &c1, &c2] {
            if !std::ptr::eq(s, p) {
                linked(s, p).await;
            }
        }
    }
    for (i, p) in [&ch, &c1, &c2].into_iter().enumerate() {
        p.publish("fan", format!("{i}").into()).await.unwrap();
        p.flush().await.unwrap();
    }
    for (s, c) in subs.iter_mut().zip([&ch, &c1, &c2]) {
        let mut got: Vec<String> = Vec::new();
        for _ in 0..3 {
            got.push(String::from_utf8_lossy(&next(s, "a fan-out message").await.payload).into_owned());
        }
        got.sort();
        assert_eq!(got, ["0", "1", "2"]);
        for p in [&ch, &c1, &c2] {
            if !std::ptr::eq(c, p) {
                linked(c, p).await;
            }
        }
        quiet(s, "a duplicate").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_natsu_leafs_on_a_nats_server_hub() {
    two_leafs(Who::NatsServer, [Who::Natsu, Who::Natsu]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natsu_and_nats_server_leafs_on_a_natsu_hub() {
    two_leafs(Who::Natsu, [Who::Natsu, Who::NatsServer]).await;
}

/// A hub with credentials refuses a leaf without them, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_without_credentials_is_refused() {
    let lp = pick_port();
    let _h = hub(Who::Natsu, lp, "  authorization { user: u, password: p }");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", lp)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let info = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(info.starts_with("INFO {") && info.contains("\"leafnode_urls\"") && info.contains("\"client_id\""), "{info}");
    s.write_all(b"CONNECT {\"user\":\"u\",\"pass\":\"wrong\"}\r\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(String::from_utf8_lossy(&got), "-ERR 'Authorization Violation'\r\n");
    // A client on the leaf-node port is told it is on the wrong port.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", lp)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.read(&mut buf).unwrap();
    s.write_all(b"CONNECT {\"lang\":\"go\",\"user\":\"u\",\"pass\":\"p\"}\r\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(String::from_utf8_lossy(&got), "-ERR 'attempted to connect to leaf node port'\r\n");
}

/// `natsu -t` refuses what it does not serve in `leafnodes`, by name, and what nats-server
/// refuses, in its words.
#[test]
fn bad_leafnodes_blocks_are_refused() {
    let dir = TempDir::new("leaf-conf");
    for (conf, want) in [
        ("leafnodes {\n  port: 7422\n  tls { cert_file: a, key_file: b, pinned_certs: [] }\n}\n", ":3:36: \"pinned_certs\" is not supported by natsu yet"),
        ("leafnodes {\n  remotes: [ { url: \"nats://h:7422\", hub: true } ]\n}\n", ":2:38: \"hub\" is not supported by natsu yet"),
        ("leafnodes {\n  remotes: [ { url: \"wss://h:443\" } ]\n}\n", ":2:21: wss:// leafnode URLs are not supported by natsu yet"),
        ("leafnodes {\n  remotes: [ { urls: [\"h:1\"] } ]\n}\n", ":2:23: error parsing leafnode url \"h:1\": expected scheme://host:port"),
        ("leafnodes {\n  colour: blue\n}\n", ":2:3: unknown field \"colour\""),
    ] {
        let f = dir.0.join("bad.conf");
        std::fs::write(&f, conf).unwrap();
        let out = Command::new(natsu_bin()).args(["-t", "-c", f.to_str().unwrap()]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{conf}: accepted");
        assert!(err.contains(&format!("{}{want}", f.display())), "{conf}: {err}");
    }
}

fn get_json(port: u16, target: &str) -> serde_json::Value {
    let (status, body) = http_get(port, target).unwrap();
    assert_eq!(status, 200, "{target}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{target}: {e}"))
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

/// `/leafz` on a natsu leaf and on its nats-server hub list the link with the same keys,
/// each counting the interest the other side announced; `/varz` counts the link and shows
/// the `leaf` settings as nats-server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_shows_the_leafs() {
    let (lp, hub_http, leaf_http, hub2_http) = (pick_port(), pick_port(), pick_port(), pick_port());
    let h = Node::start(Who::NatsServer, &format!("http: \"127.0.0.1:{hub_http}\"\nleafnodes {{ listen: \"127.0.0.1:{lp}\" }}\n"));
    let l = leaf(Who::Natsu, lp, "", &format!("http: \"127.0.0.1:{leaf_http}\""));
    let (ch, cl) = (h.client().await, l.client().await);
    let _s1 = cl.subscribe("from.leaf.a").await.unwrap();
    let _s2 = cl.queue_subscribe("from.leaf.q", "g".into()).await.unwrap();
    let _s3 = ch.subscribe("from.hub").await.unwrap();
    linked(&cl, &ch).await;
    linked(&ch, &cl).await;
    ch.publish("from.leaf.a", "12345".into()).await.unwrap();
    ch.flush().await.unwrap();
    linked(&cl, &ch).await;
    let at_hub = get_json(hub_http, "/leafz?subs=1");
    let at_leaf = get_json(leaf_http, "/leafz?subs=1");
    assert_eq!(keys(&at_leaf), keys(&at_hub));
    assert_eq!(at_leaf["leafnodes"], 1, "{at_leaf}");
    let (hl, ll) = (&at_hub["leafs"][0], &at_leaf["leafs"][0]);
    assert_eq!(keys(ll), keys(hl), "natsu {ll}\nnats-server {hl}");
    assert_eq!((ll["account"].as_str(), ll["ip"].as_str(), ll["port"].as_u64()), (Some("$G"), Some("127.0.0.1"), Some(lp as u64)));
    // What each side announced: the probes' inboxes came and went, so count the test's own.
    let list = |v: &serde_json::Value| -> Vec<String> { v["subscriptions_list"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect() };
    let (hub_knows, leaf_knows) = (list(hl), list(ll));
    for s in ["from.leaf.a", "from.leaf.q"] {
        assert!(hub_knows.contains(&s.to_string()), "the hub knows of {s}: {hub_knows:?}");
    }
    assert!(leaf_knows.contains(&"from.hub".to_string()), "the leaf knows of from.hub: {leaf_knows:?}");
    assert!(hub_knows.iter().chain(&leaf_knows).filter(|s| s.starts_with("$LDS.")).count() == 2, "each side's loop-detection subject: {hub_knows:?} {leaf_knows:?}");
    assert_eq!(ll["subscriptions"].as_u64(), Some(leaf_knows.len() as u64));
    assert!(ll["out_msgs"].as_u64() >= Some(1) && ll["in_msgs"].as_u64() >= Some(1) && ll["in_bytes"].as_u64() >= Some(5), "{ll}");
    let v = get_json(leaf_http, "/varz");
    assert_eq!(v["leafnodes"], 1);
    assert_eq!(v["leaf"], serde_json::json!({"remotes": [{"local_account": "$G", "urls": [format!("127.0.0.1:{lp}")]}]}));
    // A natsu hub's /varz, beside nats-server's.
    let lp2 = pick_port();
    let h2 = Node::start(Who::Natsu, &format!("http: \"127.0.0.1:{hub2_http}\"\nleafnodes {{ listen: \"127.0.0.1:{lp2}\" }}\n"));
    let l2 = leaf(Who::NatsServer, lp2, "", "");
    linked(&l2.client().await, &h2.client().await).await;
    let v = get_json(hub2_http, "/varz");
    assert_eq!(v["leafnodes"], 1);
    assert_eq!(v["leaf"], serde_json::json!({"host": "127.0.0.1", "port": lp2, "auth_timeout": 2, "tls_timeout": 2}));
    let z = get_json(hub2_http, "/leafz?acc=B");
    assert_eq!((z["leafnodes"].as_u64(), z["leafs"].as_array().map(Vec::len)), (Some(0), Some(0)));
}

/// A natsu hub in a cluster with nats-server: a leaf's interest crosses the route, so a
/// client of the other server reaches the leaf, and the leaf reaches it, each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_natsu_hub_in_a_cluster_carries_its_leafs_across_the_route() {
    let (lp, cp1, cp2) = (pick_port(), pick_port(), pick_port());
    let cluster = |me: u16, peer: u16| format!("cluster {{\n  name: lc\n  listen: \"127.0.0.1:{me}\"\n  routes: [\"nats://127.0.0.1:{peer}\"]\n}}\n");
    let n1 = Node::start(Who::Natsu, &format!("{}leafnodes {{ listen: \"127.0.0.1:{lp}\" }}\n", cluster(cp1, cp2)));
    let n2 = Node::start(Who::NatsServer, &cluster(cp2, cp1));
    let l = leaf(Who::NatsServer, lp, "", "");
    let (c1, c2, cl) = (n1.client().await, n2.client().await, l.client().await);
    let mut at_leaf = cl.subscribe("x.leaf").await.unwrap();
    let mut at_n2 = c2.subscribe("x.n2").await.unwrap();
    let mut at_n1 = c1.subscribe("x.n2").await.unwrap();
    for (s, p) in [(&cl, &c2), (&c2, &cl), (&c1, &cl), (&cl, &c1)] {
        linked(s, p).await;
    }
    c2.publish("x.leaf", "via route".into()).await.unwrap();
    cl.publish("x.n2", "from leaf".into()).await.unwrap();
    c2.flush().await.unwrap();
    cl.flush().await.unwrap();
    assert_eq!(&next(&mut at_leaf, "the other server's message at the leaf").await.payload[..], b"via route");
    assert_eq!(&next(&mut at_n2, "the leaf's message at the other server").await.payload[..], b"from leaf");
    assert_eq!(&next(&mut at_n1, "the leaf's message at the hub").await.payload[..], b"from leaf");
    for (s, p) in [(&cl, &c2), (&c2, &cl), (&c1, &cl)] {
        linked(s, p).await;
    }
    quiet(&mut at_leaf, "the leaf").await;
    quiet(&mut at_n2, "the other server").await;
    quiet(&mut at_n1, "the hub").await;
    // A request from the other server answered on the leaf: the reply finds its way back.
    let mut reqs = cl.subscribe("svc").await.unwrap();
    let responder = cl.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = reqs.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, "pong".into()).await;
                let _ = responder.flush().await;
            }
        }
    });
    linked(&cl, &c2).await;
    let answer = tokio::time::timeout(WAIT, c2.request("svc", "ping".into())).await.expect("request timed out").expect("request");
    assert_eq!(&answer.payload[..], b"pong");
    task.abort();
}

/// TLS on the leaf-node port, both ways: the hub sends its INFO in the clear, the leaf
/// verifies the hub's certificate against its `ca_file`, then the link works as before;
/// a leaf that trusts another CA never gets in.
async fn over_tls(hub_who: Who, leaf_who: Who) {
    let pki = common::pki::Pki::new();
    let lp = pick_port();
    let (cert, key, ca, other) = (pki.server_cert.display(), pki.server_key.display(), pki.ca.display(), pki.other_ca.display());
    let h = hub(hub_who, lp, &format!("  tls {{ cert_file: \"{cert}\", key_file: \"{key}\", timeout: 2 }}"));
    let remote = |ca: &dyn std::fmt::Display| format!(", tls: {{ ca_file: \"{ca}\" }}");
    let l = Node::start(leaf_who, &format!("leafnodes {{\n  reconnect: 1\n  remotes: [ {{ url: \"tls://127.0.0.1:{lp}\" {} }} ]\n}}\n", remote(&ca)));
    let (ch, cl) = (h.client().await, l.client().await);
    let mut at_hub = ch.subscribe("secure").await.unwrap();
    linked(&ch, &cl).await;
    cl.publish("secure", "over tls".into()).await.unwrap();
    cl.flush().await.unwrap();
    assert_eq!(&next(&mut at_hub, "a message over the TLS link").await.payload[..], b"over tls");
    // A leaf that does not trust the hub's CA: its messages never arrive.
    let rogue = Node::start(leaf_who, &format!("leafnodes {{\n  reconnect: 1\n  remotes: [ {{ url: \"tls://127.0.0.1:{lp}\" {} }} ]\n}}\n", remote(&other)));
    let cr = rogue.client().await;
    let mut probe_sub = ch.subscribe("rogue").await.unwrap();
    for _ in 0..5 {
        cr.publish("rogue", "x".into()).await.unwrap();
        cr.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    quiet(&mut probe_sub, "the hub (from a leaf that does not trust it)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natsu_leaf_of_a_nats_server_hub_over_tls() {
    over_tls(Who::NatsServer, Who::Natsu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_leaf_of_a_natsu_hub_over_tls() {
    over_tls(Who::Natsu, Who::NatsServer).await;
}

/// Two servers that are each other's leaf form a loop: one of them finds its own
/// loop-detection subject coming back, says so and drops that link (dialling it again
/// only after 30s), so one link is left and each message still arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_is_detected_and_broken() {
    let (lpa, lpb, ma, mb) = (pick_port(), pick_port(), pick_port(), pick_port());
    let conf = |http: u16, listen: u16, dial: u16| {
        format!("http: \"127.0.0.1:{http}\"\nleafnodes {{\n  listen: \"127.0.0.1:{listen}\"\n  reconnect: 1\n  remotes: [ {{ url: \"nats://127.0.0.1:{dial}\" }} ]\n}}\n")
    };
    let a = Node::start(Who::Natsu, &conf(ma, lpa, lpb));
    let b = Node::start(Who::NatsServer, &conf(mb, lpb, lpa));
    let count = |port: u16| get_json(port, "/leafz")["leafnodes"].as_u64().unwrap_or(0);
    // Both links come up, a server finds the loop (and says so in its log) and a link
    // goes: one link on each side. Which link each server drops depends on the order its
    // subscriptions arrive in: now and then the two drop different links and none is left
    // (nats-server pairs do the same), until a dialler tries again after its 30s delay
    // (natsu adds 1-5 s at random, so that the two do not dial at the same moment), which
    // forms the loop again. One link on each side for longer than that spread means the
    // loop is broken: a new link of the delayed dialler would have come and gone in it
    // (too fast to be seen here, but not to duplicate a message). The bound allows three
    // rounds.
    const STABLE: Duration = Duration::from_secs(6);
    let deadline = std::time::Instant::now() + WAIT + 3 * Duration::from_secs(36) + STABLE;
    let mut since: Option<std::time::Instant> = None;
    while std::time::Instant::now() < deadline {
        let found = a.server.logged("Loop detected") || b.server.logged("Loop detected");
        since = match (found, count(ma), count(mb)) {
            (true, 1, 1) => Some(since.unwrap_or_else(std::time::Instant::now)),
            _ => None,
        };
        if since.is_some_and(|t| t.elapsed() >= STABLE) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(a.server.logged("Loop detected") || b.server.logged("Loop detected"), "neither server found the loop");
    assert_eq!((count(ma), count(mb)), (1, 1), "one link left on each side");
    let (ca, cb) = (a.client().await, b.client().await);
    let mut at_b = cb.subscribe("once").await.unwrap();
    linked(&cb, &ca).await;
    ca.publish("once", "x".into()).await.unwrap();
    ca.flush().await.unwrap();
    next(&mut at_b, "the message across the one link left").await;
    linked(&cb, &ca).await;
    quiet(&mut at_b, "a second copy").await;
}

/// A hub in a cluster tells its leafs the other servers' leaf-node URLs: when it goes
/// away, a natsu leaf configured with its URL alone dials another server of the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natsu_leaf_fails_over_to_a_server_its_hub_told_of() {
    let (lp1, lp2, cp1, cp2) = (pick_port(), pick_port(), pick_port(), pick_port());
    let conf =
        |lp: u16, me: u16, peer: u16| format!("leafnodes {{ listen: \"127.0.0.1:{lp}\" }}\ncluster {{\n  name: hubs\n  listen: \"127.0.0.1:{me}\"\n  routes: [\"nats://127.0.0.1:{peer}\"]\n}}\n");
    let mut h1 = Node::start(Who::NatsServer, &conf(lp1, cp1, cp2));
    let h2 = Node::start(Who::NatsServer, &conf(lp2, cp2, cp1));
    let (c1, c2) = (h1.client().await, h2.client().await);
    linked(&c1, &c2).await;
    linked(&c2, &c1).await;
    let l = leaf(Who::Natsu, lp1, "", "");
    let cl = l.client().await;
    linked(&cl, &c1).await;
    drop(c1);
    h1.server.kill();
    let mut at_h2 = c2.subscribe("after.failover").await.unwrap();
    // Bounded by the barrier's wait: the leaf re-dials every second.
    linked(&c2, &cl).await;
    cl.publish("after.failover", "still here".into()).await.unwrap();
    cl.flush().await.unwrap();
    assert_eq!(&next(&mut at_h2, "the leaf's message through the other hub").await.payload[..], b"still here");
}
