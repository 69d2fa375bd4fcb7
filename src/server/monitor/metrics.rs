//! `/metrics`: the numeric figures of `/varz`, `/connz`, `/subsz` and `/routez` in the
//! Prometheus text format (exposition 0.0.4), named as prometheus-nats-exporter names them
//! (`gnatsd_varz_in_msgs`, `gnatsd_connz_num_connections`, ...), so dashboards built for
//! nats-server and the exporter work unchanged; plus natsu's per-core series
//! (`natsu_core_in_msgs_total{core="0"}`, ...).
//!
//! Per account, the exporter's `-accstatz` series for every account (it asks with
//! `unused=1`), labelled `account`, `account_id` and `account_name` as it labels them:
//! `gnatsd_accstatz_current_connections`, `_total_connections`, `_leaf_nodes`,
//! `_subscriptions` (client subscriptions), `_received_messages`, `_received_bytes`,
//! `_slow_consumers`. Not `_sent_*`: nats-server counts a delivery on the publisher's
//! account, natsu on the receiving connection's, so natsu's figure has its own name,
//! `natsu_account_out_msgs_total` (and `_out_bytes_total`).
//!
//! Per route, natsu's own series in the exporter's naming, labelled with the route's `rid`
//! and the peer's `remote_id`: `gnatsd_routez_in_msgs`, `_out_msgs`, `_in_bytes`,
//! `_out_bytes` (counters), `_pending_size`, `_subscriptions` (gauges); beside the
//! exporter's `gnatsd_routez_num_routes`.
//!
//! As the exporter does, every numeric top-level key of `/varz` becomes a gauge, and
//! `server_id`, `server_name` and `version` become gauges of value 1 with a `value` label.
//! The `/connz` sums cover all open connections (the exporter sums one page of them).

use std::fmt::Write as _;
use std::sync::Arc;

use super::gather::{AccountFigures, CoreSnapshot, CoreStats};
use super::routez::{RouteInfo, Routez};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes families: one `# HELP` and `# TYPE` per name, then its samples.
pub struct Exposition {
    out: String,
    server_id: String,
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A sample value: integers as integers, other numbers as Rust writes floats (which
/// Prometheus reads), non-finite ones in the format's spelling.
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Exposition {
    pub fn new(server_id: &str) -> Exposition {
        Exposition { out: String::with_capacity(8 * 1024), server_id: escape(server_id) }
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample with the server_id label.
    pub fn single(&mut self, name: &str, help: &str, kind: &str, v: f64) {
        self.header(name, help, kind);
        let _ = writeln!(self.out, "{name}{{server_id=\"{}\"}} {}", self.server_id, value(v));
    }

    /// A gauge of value 1 carrying a string in its `value` label (the exporter's form).
    pub fn label(&mut self, name: &str, help: &str, label: &str) {
        self.header(name, help, "gauge");
        let _ = writeln!(self.out, "{name}{{server_id=\"{}\",value=\"{}\"}} 1", self.server_id, escape(label));
    }

    /// One series per row; a row's labels (`k="v"` pairs, escaped) follow server_id.
    fn rows(&mut self, name: &str, help: &str, kind: &str, rows: impl Iterator<Item = (String, u64)>) {
        self.header(name, help, kind);
        for (labels, v) in rows {
            let _ = writeln!(self.out, "{name}{{server_id=\"{}\",{labels}}} {v}", self.server_id);
        }
    }

    /// One series per core.
    pub fn per_core(&mut self, name: &str, help: &str, kind: &str, cores: &[CoreStats], f: fn(&CoreStats) -> u64) {
        self.rows(name, help, kind, cores.iter().map(|c| (format!("core=\"{}\"", c.core), f(c))));
    }

    /// One series per account, labelled as the exporter labels its `accstatz` series.
    pub fn per_account(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        accounts: &[(&str, AccountFigures)],
        f: fn(&AccountFigures) -> u64,
    ) {
        let rows = accounts.iter().map(|(n, a)| {
            let n = escape(n);
            (format!("account=\"{n}\",account_id=\"{n}\",account_name=\"{n}\""), f(a))
        });
        self.rows(name, help, kind, rows);
    }

    /// One series per route, labelled with its rid and the peer's server id.
    pub fn per_route(&mut self, name: &str, help: &str, kind: &str, routes: &[RouteInfo], f: fn(&RouteInfo) -> u64) {
        let rows = routes.iter().map(|r| (format!("rid=\"{}\",remote_id=\"{}\"", r.rid, escape(&r.remote_id)), f(r)));
        self.rows(name, help, kind, rows);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Every numeric top-level key of an endpoint's JSON as `gnatsd_<endpoint>_<key>` gauges.
pub fn json_gauges(e: &mut Exposition, endpoint: &str, doc: &serde_json::Value, labels: &[&str]) {
    let Some(obj) = doc.as_object() else { return };
    for (k, v) in obj {
        let name = format!("gnatsd_{endpoint}_{k}");
        match v {
            serde_json::Value::Number(n) => e.single(&name, k, "gauge", n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) if labels.contains(&k.as_str()) => e.label(&name, k, s),
            _ => {}
        }
    }
}

/// The `/connz` figures the exporter publishes, from sums over open connections.
pub fn connz(e: &mut Exposition, snaps: &[CoreSnapshot]) {
    let t = snaps.iter().fold(super::gather::Totals::default(), |mut a, s| {
        a.pending += s.totals.pending;
        a.subscriptions += s.totals.subscriptions;
        a.in_msgs += s.totals.in_msgs;
        a.out_msgs += s.totals.out_msgs;
        a.in_bytes += s.totals.in_bytes;
        a.out_bytes += s.totals.out_bytes;
        a
    });
    let conns: u64 = snaps.iter().map(|s| s.stats.connections).sum();
    let limit = super::connz::DEFAULT_LIMIT as u64;
    e.single("gnatsd_connz_num_connections", "num_connections", "gauge", conns.min(limit) as f64);
    e.single("gnatsd_connz_total", "total", "gauge", conns as f64);
    e.single("gnatsd_connz_offset", "offset", "gauge", 0.0);
    e.single("gnatsd_connz_limit", "limit", "gauge", limit as f64);
    e.single("gnatsd_connz_pending_bytes", "pending_bytes", "gauge", t.pending as f64);
    e.single("gnatsd_connz_subscriptions", "subscriptions", "gauge", t.subscriptions as f64);
    e.single("gnatsd_connz_in_bytes", "in_bytes", "counter", t.in_bytes as f64);
    e.single("gnatsd_connz_out_bytes", "out_bytes", "counter", t.out_bytes as f64);
    e.single("gnatsd_connz_in_msgs", "in_msgs", "counter", t.in_msgs as f64);
    e.single("gnatsd_connz_out_msgs", "out_msgs", "counter", t.out_msgs as f64);
}

/// `/routez`: the number of routes, and each route's figures (see the module comment).
pub fn routez(e: &mut Exposition, rz: &Routez) {
    e.single("gnatsd_routez_num_routes", "num_routes", "gauge", rz.num_routes as f64);
    let r = &rz.routes[..];
    e.per_route("gnatsd_routez_in_msgs", "in_msgs", "counter", r, |r| r.in_msgs);
    e.per_route("gnatsd_routez_out_msgs", "out_msgs", "counter", r, |r| r.out_msgs);
    e.per_route("gnatsd_routez_in_bytes", "in_bytes", "counter", r, |r| r.in_bytes);
    e.per_route("gnatsd_routez_out_bytes", "out_bytes", "counter", r, |r| r.out_bytes);
    e.per_route("gnatsd_routez_pending_size", "pending_size", "gauge", r, |r| r.pending_size as u64);
    e.per_route("gnatsd_routez_subscriptions", "subscriptions", "gauge", r, |r| u64::from(r.subscriptions));
}

/// The per-account series (see the module comment), from the cores' figures summed by
/// account id.
pub fn accounts(e: &mut Exposition, names: &[Arc<str>], figures: &[AccountFigures]) {
    let a: Vec<(&str, AccountFigures)> = names.iter().map(|n| &**n).zip(figures.iter().copied()).collect();
    let a = &a[..];
    e.per_account("gnatsd_accstatz_current_connections", "current_connections", "gauge", a, |f| f.connections);
    // natsu has no leaf nodes: total connections are the client connections.
    e.per_account("gnatsd_accstatz_total_connections", "total_connections", "gauge", a, |f| f.connections);
    e.per_account("gnatsd_accstatz_leaf_nodes", "leaf_nodes", "gauge", a, |_| 0);
    e.per_account("gnatsd_accstatz_subscriptions", "subscriptions", "gauge", a, |f| f.index.subscriptions);
    e.per_account("gnatsd_accstatz_received_messages", "received_messages", "gauge", a, |f| f.traffic.in_msgs);
    e.per_account("gnatsd_accstatz_received_bytes", "received_bytes", "gauge", a, |f| f.traffic.in_bytes);
    e.per_account("gnatsd_accstatz_slow_consumers", "slow_consumers", "gauge", a, |f| f.slow_consumers);
    e.per_account(
        "natsu_account_out_msgs_total",
        "Messages delivered to the account's connections",
        "counter",
        a,
        |f| f.traffic.out_msgs,
    );
    e.per_account(
        "natsu_account_out_bytes_total",
        "Payload bytes delivered to the account's connections",
        "counter",
        a,
        |f| f.traffic.out_bytes,
    );
}

/// natsu's per-core series.
pub fn cores(e: &mut Exposition, snaps: &[CoreSnapshot]) {
    let mut cores: Vec<CoreStats> = snaps.iter().map(|s| s.stats.clone()).collect();
    cores.sort_by_key(|c| c.core);
    let c = &cores[..];
    e.per_core("natsu_core_connections", "Client connections served by the core", "gauge", c, |s| s.connections);
    e.per_core("natsu_core_subscriptions", "Subscriptions in the core's index", "gauge", c, |s| s.subscriptions);
    e.per_core("natsu_core_in_msgs_total", "Messages published by the core's clients", "counter", c, |s| s.in_msgs);
    e.per_core("natsu_core_out_msgs_total", "Messages delivered to the core's clients", "counter", c, |s| s.out_msgs);
    e.per_core("natsu_core_in_bytes_total", "Payload bytes published by the core's clients", "counter", c, |s| s.in_bytes);
    e.per_core("natsu_core_out_bytes_total", "Payload bytes delivered to the core's clients", "counter", c, |s| s.out_bytes);
    e.per_core("natsu_core_slow_consumers_total", "Slow consumers cut off by the core", "counter", c, |s| s.slow_consumers);
    e.per_core("natsu_core_cross_core_sent_total", "Messages the core handed to other cores", "counter", c, |s| s.cross_core_sent);
    e.per_core(
        "natsu_core_cross_core_received_total",
        "Messages the core received from other cores",
        "counter",
        c,
        |s| s.cross_core_received,
    );
    e.per_core(
        "natsu_core_cross_core_batches_total",
        "Batches of messages the core received from other cores",
        "counter",
        c,
        |s| s.cross_core_batches,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_escaped_labels() {
        let mut e = Exposition::new("S\"1");
        e.single("gnatsd_varz_cpu", "cpu", "gauge", 0.5);
        e.label("gnatsd_varz_version", "version", "2.9.10");
        let t = e.finish();
        assert_eq!(
            t,
            "# HELP gnatsd_varz_cpu cpu\n# TYPE gnatsd_varz_cpu gauge\ngnatsd_varz_cpu{server_id=\"S\\\"1\"} 0.5\n\
             # HELP gnatsd_varz_version version\n# TYPE gnatsd_varz_version gauge\n\
             gnatsd_varz_version{server_id=\"S\\\"1\",value=\"2.9.10\"} 1\n"
        );
        assert_eq!(value(3.0), "3");
        assert_eq!(value(f64::NAN), "NaN");
    }
}
