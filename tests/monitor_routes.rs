//! The monitoring endpoints with routes: `/routez` (plain, `subs=1`, `subs=detail`), the
//! `cluster` block and route figures of `/varz`, and the route series of `/metrics`, on a
//! pair of natsu nodes checked key for key against a pair of nats-servers in the same
//! topology, and on mixed pairs (natsu with nats-server, either side dialling).
//!
//! Every pair is a seed (A) and a node naming it in `--routes` (B): B dials, A accepts.

mod common;

use common::cluster::{http_get, mesh, wait_route_sub, Kind, Node, Topology, CLUSTER_NAME};
use common::Raw;
use serde_json::Value;

fn keys(v: &Value) -> Vec<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn get(node: &Node, target: &str) -> Value {
    node.monitor(target).unwrap_or_else(|e| panic!("{node}: {e}"))
}

/// A raw client of `node` subscribed to `foo.>` and, in queue group `q1`, to `bar`.
fn subscriber(node: &Node) -> Raw {
    let mut r = Raw::connect_with(node.ports.client, r#"{"verbose":false}"#);
    r.send("SUB foo.> 1\r\nSUB bar q1 2\r\nPING\r\n");
    r.expect("PONG\r\n");
    r
}

/// The only route of `routez`, which must lead to server `peer`.
fn only_route<'a>(node: &Node, routez: &'a Value, peer: &str) -> &'a Value {
    assert_eq!(routez["num_routes"], 1, "{node}: {routez}");
    let routes = routez["routes"].as_array().unwrap_or_else(|| panic!("{node}: no routes list: {routez}"));
    assert_eq!(routes.len(), 1, "{node}: {routez}");
    assert_eq!(routes[0]["remote_id"], peer, "{node}: remote_id is not the peer's server id: {routez}");
    &routes[0]
}

/// What one pair's `/routez` and `/varz` look like, for the natsu-versus-reference check.
struct Seen {
    /// A's and B's `/routez`, `/routez?subs=1`, `/routez?subs=detail`.
    routez: [[Value; 3]; 2],
    /// A's and B's `/varz`.
    varz: [Value; 2],
}

/// Start a pair of `kinds`, subscribe on both, check everything whatever the servers are (so
/// the reference pair checks the expectations), and return what was seen.
fn pair(kinds: [Kind; 2]) -> Seen {
    let nodes = mesh(&kinds, Topology::Seed);
    let (a, b) = (&nodes[0], &nodes[1]);
    let ids: Vec<String> = nodes.iter().map(|n| get(n, "/varz")["server_id"].as_str().unwrap_or_default().to_string()).collect();
    let mut subs: Vec<Raw> = nodes.iter().map(subscriber).collect();
    for (at, from) in [(a, b), (b, a)] {
        wait_route_sub(at, from, "foo.>", true);
        wait_route_sub(at, from, "bar", true);
    }

    let routez = |n: &Node| ["", "?subs=1", "?subs=detail"].map(|q| get(n, &format!("/routez{q}")));
    let (ra, rb) = (routez(a), routez(b));
    for (node, r, me, peer) in [(a, &ra, &ids[0], &ids[1]), (b, &rb, &ids[1], &ids[0])] {
        for v in r {
            assert_eq!(v["server_id"], me.as_str(), "{node}: {v}");
            let route = only_route(node, v, peer);
            let dialled = std::ptr::eq(node, b);
            assert_eq!(route["did_solicit"], dialled, "{node}: {route}");
            assert_eq!(route["is_configured"], dialled, "{node}: {route}");
            assert_eq!(route["ip"], "127.0.0.1", "{node}: {route}");
            let port = route["port"].as_u64().unwrap_or(0);
            if dialled {
                assert_eq!(port, u64::from(a.ports.cluster), "{node}: a dialled route shows the peer's route port: {route}");
            } else {
                assert!(port > 0 && port != u64::from(b.ports.cluster), "{node}: an accepted route shows the peer's ephemeral port: {route}");
            }
            for k in ["start", "last_activity"] {
                assert!(route[k].as_str().is_some_and(|s| s.ends_with('Z')), "{node}: {k}: {route}");
            }
            for k in ["rtt", "uptime", "idle"] {
                assert!(route[k].as_str().is_some_and(|s| s.ends_with('s')), "{node}: {k}: {route}");
            }
        }
        // The plain reply lists no subscriptions.
        let plain = &r[0]["routes"][0];
        assert!(plain.get("subscriptions_list").is_none() && plain.get("subscriptions_list_detail").is_none(), "{node}: {plain}");
    }

    // Each sees the other's two subscriptions, and the subjects its system account answers
    // (`$SYS.REQ.SERVER.PING`…: both servers announce them); the count is the list's length.
    for (node, r) in [(a, &ra), (b, &rb)] {
        let (plain, list, detail) = (&r[0]["routes"][0], &r[1]["routes"][0], &r[2]["routes"][0]);
        let count = plain["subscriptions"].as_u64().unwrap_or(0);
        let listed: Vec<&str> = list["subscriptions_list"].as_array().map_or(vec![], |l| l.iter().filter_map(Value::as_str).collect());
        assert!(count >= 2 && count == listed.len() as u64, "{node}: {plain} {list}");
        assert!(listed.contains(&"$SYS.REQ.SERVER.PING"), "{node}: the peer's system requests are announced: {list}");
        assert!(listed.contains(&"foo.>") && listed.contains(&"bar"), "{node}: subs=1 lists subjects only: {list}");
        let details = detail["subscriptions_list_detail"].as_array().cloned().unwrap_or_default();
        let find = |subject: &str| details.iter().find(|d| d["subject"] == subject).cloned().unwrap_or_else(|| panic!("{node}: no {subject} in {detail}"));
        let (bar, foo) = (find("bar"), find("foo.>"));
        assert_eq!((&bar["qgroup"], &bar["sid"], &bar["msgs"], &bar["cid"]), (&"q1".into(), &"$G bar q1".into(), &0.into(), &detail["rid"]), "{node}: {bar}");
        assert_eq!((&foo["sid"], &foo["cid"]), (&"$G foo.>".into(), &detail["rid"]), "{node}: {foo}");
        assert!(foo.get("qgroup").is_none() && foo.get("account").is_none(), "{node}: {foo}");
    }

    let varz = [get(a, "/varz"), get(b, "/varz")];
    for (node, v) in nodes.iter().zip(&varz) {
        assert_eq!((&v["routes"], &v["remotes"]), (&1.into(), &1.into()), "{node}");
        let c = &v["cluster"];
        assert_eq!(c["name"], CLUSTER_NAME, "{node}: {c}");
        assert_eq!(c["addr"], "127.0.0.1", "{node}: {c}");
        assert_eq!(c["cluster_port"], node.ports.cluster, "{node}: {c}");
        assert_eq!((&c["auth_timeout"], &c["tls_timeout"]), (&2.into(), &2.into()), "{node}: {c}");
        let urls: Vec<String> = v["connect_urls"].as_array().map_or(vec![], |u| u.iter().filter_map(|s| s.as_str().map(String::from)).collect());
        let mut want: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.ports.client)).collect();
        if std::ptr::eq(node, b) {
            want.reverse();
        }
        assert_eq!(urls, want, "{node}: its own client URL first, then the peer's");
    }
    assert!(varz[0]["cluster"].get("urls").is_none(), "{a}: no configured routes: {}", varz[0]["cluster"]);
    assert_eq!(varz[1]["cluster"]["urls"], serde_json::json!([format!("127.0.0.1:{}", a.ports.cluster)]), "{b}");

    // A message from A to B's subscriber goes out on A's route and in on B's.
    let figures = |n: &Node| {
        let r = get(n, "/routez");
        let r = &r["routes"][0];
        [&r["in_msgs"], &r["out_msgs"], &r["in_bytes"], &r["out_bytes"]].map(|v| v.as_u64().unwrap_or(0))
    };
    let (fa, fb) = (figures(a), figures(b));
    let mut publisher = Raw::connect_with(a.ports.client, r#"{"verbose":false}"#);
    publisher.send("PUB foo.x 5\r\nhello\r\nPING\r\n");
    publisher.expect("PONG\r\n");
    subs[1].expect("MSG foo.x 1 5\r\nhello\r\n");
    let (ga, gb) = (figures(a), figures(b));
    // nats-server's routes also carry its system account's traffic: at least, there.
    let exact = a.is_natsu() && b.is_natsu();
    let grew = |before: u64, after: u64, by: u64| if exact { after == before + by } else { after >= before + by };
    assert!(grew(fa[1], ga[1], 1) && grew(fa[3], ga[3], 5), "{a}: out_msgs/out_bytes {fa:?} -> {ga:?}");
    assert!(grew(fb[0], gb[0], 1) && grew(fb[2], gb[2], 5), "{b}: in_msgs/in_bytes {fb:?} -> {gb:?}");

    for node in nodes.iter().filter(|n| n.is_natsu()) {
        let (status, body) = http_get(node.ports.http, "/metrics").unwrap_or_else(|e| panic!("{node}: {e}"));
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{node}: {text}");
        let sample = |name: &str| -> Vec<(String, f64)> {
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .filter_map(|l| l.rsplit_once(' ').map(|(series, v)| (series.to_string(), v.parse().unwrap_or(f64::NAN))))
                .collect()
        };
        let one = |name: &str| match &sample(name)[..] {
            [(_, v)] => *v,
            s => panic!("{node}: {name}: want one sample, have {s:?}"),
        };
        assert_eq!(one("gnatsd_routez_num_routes"), 1.0, "{node}");
        assert_eq!(one("gnatsd_varz_routes"), 1.0, "{node}");
        let peer = if std::ptr::eq(node, a) { &ids[1] } else { &ids[0] };
        let route_subs = sample("gnatsd_routez_subscriptions");
        let routez_subs = node.routez("")["routes"][0]["subscriptions"].as_f64();
        assert!(matches!(&route_subs[..], [(series, v)] if series.contains(&format!("remote_id=\"{peer}\"")) && series.contains("rid=\"") && Some(*v) == routez_subs), "{node}: {route_subs:?}");
        if std::ptr::eq(node, a) {
            assert!(one("gnatsd_routez_out_msgs") >= 1.0, "{node}");
        } else {
            assert!(one("gnatsd_routez_in_msgs") >= 1.0, "{node}");
        }
        for name in ["gnatsd_routez_in_bytes", "gnatsd_routez_out_bytes", "gnatsd_routez_pending_size"] {
            one(name);
        }
    }
    Seen { routez: [ra, rb], varz }
}

/// natsu's `/routez` and `/varz` have nats-server's keys in its order, for the same
/// topology and the same subscriptions.
#[test]
fn routez_and_varz_keys_are_the_references() {
    let natsu = pair([Kind::Natsu, Kind::Natsu]);
    let reference = pair([Kind::Reference, Kind::Reference]);
    for side in 0..2 {
        for (q, (n, r)) in ["", "?subs=1", "?subs=detail"].iter().zip(natsu.routez[side].iter().zip(&reference.routez[side])) {
            assert_eq!(keys(n), keys(r), "/routez{q} on node {side}");
            assert_eq!(keys(&n["routes"][0]), keys(&r["routes"][0]), "/routez{q} route on node {side}");
            if let (Some(nd), Some(rd)) = (n["routes"][0]["subscriptions_list_detail"].as_array(), r["routes"][0]["subscriptions_list_detail"].as_array()) {
                for subject in ["bar", "foo.>"] {
                    let entry = |l: &[Value]| l.iter().find(|d| d["subject"] == subject).map(keys);
                    assert_eq!(entry(nd), entry(rd), "/routez{q} detail of {subject} on node {side}");
                }
            }
        }
        assert_eq!(keys(&natsu.varz[side]), keys(&reference.varz[side]), "/varz on node {side}");
        assert_eq!(keys(&natsu.varz[side]["cluster"]), keys(&reference.varz[side]["cluster"]), "/varz cluster on node {side}");
    }
}

/// natsu and nats-server see one route each way and each other's interest, whichever dials.
#[test]
fn mixed_pairs_show_each_other() {
    for kinds in [[Kind::Natsu, Kind::Reference], [Kind::Reference, Kind::Natsu]] {
        let nodes = mesh(&kinds, Topology::Seed);
        let ids: Vec<String> = nodes.iter().map(|n| get(n, "/varz")["server_id"].as_str().unwrap_or_default().to_string()).collect();
        let _subs: Vec<Raw> = nodes.iter().map(subscriber).collect();
        for (i, node) in nodes.iter().enumerate() {
            let other = &nodes[1 - i];
            wait_route_sub(node, other, "foo.>", true);
            wait_route_sub(node, other, "bar", true);
            let v = get(node, "/routez?subs=detail");
            let route = only_route(node, &v, &ids[1 - i]);
            assert_eq!(route["did_solicit"], i == 1, "{node}: {route}");
            let bar = route["subscriptions_list_detail"].as_array().and_then(|l| l.iter().find(|d| d["subject"] == "bar").cloned());
            assert_eq!(bar.as_ref().map(|b| &b["sid"]), Some(&"$G bar q1".into()), "{node}: {route}");
            assert_eq!(get(node, "/varz")["routes"], 1, "{node}");
        }
    }
}
