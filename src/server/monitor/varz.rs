//! `/varz`: the server's configuration and figures, key for key as nats-server 2.9's, plus
//! (with `cores=1`) one entry per core in `core_stats`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::fmt::{go_float, rfc3339_nano, uptime};
use super::gather::{CoreSnapshot, CoreStats};
use super::{routez, MonitorState};
use crate::server::options::Options;
use crate::server::shard::Shard;

/// An empty JSON object, for the features natsu does not have (gateways, leaf nodes, ...).
#[derive(Serialize, Default)]
pub struct Empty {}

/// The `websocket` block as nats-server 2.9 shows it: empty when there is no WebSocket
/// port, unset settings left out.
#[derive(Serialize, Default)]
pub struct WebsocketVarz {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_auth_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_float")]
    pub auth_timeout: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_tls: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_map: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub same_origin: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compression: bool,
}

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}

fn websocket_varz(o: &Options) -> WebsocketVarz {
    let Some(w) = &o.websocket else { return WebsocketVarz::default() };
    WebsocketVarz {
        host: w.host.clone(),
        port: w.port,
        advertise: w.advertise.clone(),
        no_auth_user: w.no_auth_user.clone(),
        handshake_timeout: w.handshake_timeout.map(|d| d.as_nanos() as u64),
        auth_timeout: w.auth_timeout.map(|d| d.as_secs_f64()),
        no_tls: w.no_tls,
        tls_map: w.tls.as_ref().is_some_and(|t| t.verify_and_map),
        same_origin: w.same_origin,
        allowed_origins: w.allowed_origins.clone(),
        compression: w.compression,
    }
}

/// The `cluster` block: empty without a cluster configured, as nats-server.
#[derive(Serialize, Default)]
pub struct ClusterVarz {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_float")]
    pub auth_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_float")]
    pub tls_timeout: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
}

fn opt_float<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    go_float(&v.unwrap_or(0.0), s)
}

/// nats-server's `Varz`, in its key order.
#[derive(Serialize)]
pub struct Varz {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    pub go: String,
    pub host: String,
    pub port: u16,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    /// The cluster's client URLs, as clients are told them in INFO (none before a route).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    pub max_connections: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_subscriptions: usize,
    /// Nanoseconds, as Go's `time.Duration` marshals.
    pub ping_interval: u64,
    pub ping_max: u32,
    pub http_host: String,
    pub http_port: u16,
    pub http_base_path: String,
    pub https_port: u16,
    /// Seconds.
    #[serde(serialize_with = "go_float")]
    pub auth_timeout: f64,
    pub max_control_line: usize,
    pub max_payload: usize,
    pub max_pending: usize,
    pub cluster: ClusterVarz,
    pub gateway: Empty,
    pub leaf: super::leafz::LeafNodeOptsVarz,
    pub mqtt: Empty,
    pub websocket: WebsocketVarz,
    pub jetstream: Empty,
    #[serde(serialize_with = "go_float")]
    pub tls_timeout: f64,
    pub write_deadline: u64,
    pub start: String,
    pub now: String,
    pub uptime: String,
    pub mem: u64,
    pub cores: usize,
    pub gomaxprocs: usize,
    #[serde(serialize_with = "go_float")]
    pub cpu: f64,
    pub connections: u64,
    pub total_connections: u64,
    pub routes: u64,
    pub remotes: u64,
    pub leafnodes: u64,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    pub subscriptions: u64,
    pub http_req_stats: BTreeMap<&'static str, u64>,
    pub config_load_time: String,
    /// The system account's name (`$SYS` unless `system_account` names another).
    pub system_account: String,
    /// natsu only, with `cores=1`: each executor's figures. (`cores` itself stays the CPU
    /// count, as in nats-server.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_stats: Option<Vec<CoreStats>>,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// Resident memory in bytes, from /proc.
fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

/// CPUs online (nats-server's `runtime.NumCPU`). Not `available_parallelism`: asked from a
/// pinned executor thread, that says 1.
fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// CPU time used by the process so far, in nanoseconds, from /proc.
pub fn cpu_time_ns() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let total = ticks(11) + ticks(12);
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    total * (1_000_000_000 / hz)
}

/// The `scheme://user:pass@` of a route URL dropped, as nats-server lists them.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.trim_end_matches('/').to_string()
}

/// The `cluster` block as nats-server fills it: the settings with its defaults (TLS
/// timeout 2s; auth timeout 2s, or the TLS timeout plus one with cluster TLS), the name the
/// cluster goes by now (a made-up one until a peer's wins) and the port really listened on.
fn cluster_varz(shard: &Shard, o: &Options) -> ClusterVarz {
    let Some(c) = o.cluster.as_ref() else { return ClusterVarz::default() };
    let running = shard.cluster.get();
    let tls_timeout = c.tls.as_ref().map_or(2.0, |t| t.timeout.as_secs_f64());
    let auth_timeout = c.auth_timeout.map_or(if c.tls.is_some() { tls_timeout + 1.0 } else { 2.0 }, |d| d.as_secs_f64());
    ClusterVarz {
        name: running.map(|r| r.name.borrow().clone()).or_else(|| c.name.clone()),
        addr: Some(c.host.clone()).filter(|h| !h.is_empty()),
        cluster_port: Some(running.map_or(c.port, |r| r.listen.port())).filter(|&p| p != 0),
        auth_timeout: Some(auth_timeout),
        urls: c.routes.iter().map(|r| host_port(r)).collect(),
        tls_timeout: Some(tls_timeout),
        tls_required: c.tls.is_some(),
        tls_verify: c.tls.is_some(),
    }
}

/// Build `/varz` from the cores' answers.
pub fn build(shard: &Shard, mon: &MonitorState, snaps: &[CoreSnapshot], with_cores: bool, now: u64) -> Varz {
    let shared = &shard.shared;
    // The current settings: a reload may have changed them since start.
    let o = &*shard.opts();
    let info = &shared.info;
    let sum = |f: fn(&CoreStats) -> u64| snaps.iter().map(|s| f(&s.stats)).sum::<u64>();
    let tls_timeout = o.tls.as_ref().map_or(2.0, |t| t.timeout.as_secs_f64());
    let cluster = cluster_varz(shard, o);
    // nats-server's `remotes` counts routes by peer server id: one route each here.
    let routes = shard.routes().len() as u64;
    Varz {
        server_id: info.server_id.clone(),
        server_name: info.server_name.clone(),
        version: info.version.clone(),
        proto: info.proto,
        go: info.go.clone(),
        host: o.host.clone(),
        port: o.port,
        auth_required: o.auth.required(),
        tls_required: shard.tls().is_some(),
        tls_verify: o.tls.as_ref().is_some_and(|t| t.verify),
        connect_urls: shard.info_connect_urls(),
        max_connections: o.max_connections,
        max_subscriptions: o.max_subscriptions,
        ping_interval: o.ping_interval.as_nanos() as u64,
        ping_max: o.ping_max,
        http_host: o.http_host.clone(),
        http_port: mon.http_port,
        http_base_path: String::new(),
        https_port: mon.https_port,
        auth_timeout: o.auth.timeout.as_secs_f64(),
        max_control_line: o.max_control_line,
        max_payload: o.max_payload,
        max_pending: o.max_pending,
        cluster,
        gateway: Empty {},
        leaf: super::leafz::varz(o.leafnodes.as_ref()),
        mqtt: Empty {},
        websocket: websocket_varz(o),
        jetstream: Empty {},
        tls_timeout,
        write_deadline: o.write_deadline.as_nanos() as u64,
        start: rfc3339_nano(mon.start),
        now: rfc3339_nano(now),
        uptime: uptime(now.saturating_sub(mon.start)),
        mem: rss_bytes(),
        cores: online_cpus(),
        gomaxprocs: o.cores,
        cpu: mon.cpu_percent(now),
        connections: shared.connections.load(Ordering::Relaxed) as u64,
        total_connections: shared.total_connections.load(Ordering::Relaxed),
        routes,
        remotes: routes,
        leafnodes: shard.leaf_conns().len() as u64,
        in_msgs: sum(|s| s.in_msgs),
        out_msgs: sum(|s| s.out_msgs),
        in_bytes: sum(|s| s.in_bytes),
        out_bytes: sum(|s| s.out_bytes),
        slow_consumers: sum(|s| s.slow_consumers),
        // nats-server's accounts' indexes hold the routes' interest too.
        subscriptions: sum(|s| s.subscriptions) + routez::remote_subscriptions(shard),
        http_req_stats: mon.req_stats.borrow().clone(),
        config_load_time: rfc3339_nano(mon.start),
        system_account: shared.accounts.name(shared.accounts.system).to_string(),
        core_stats: with_cores.then(|| {
            let mut v: Vec<CoreStats> = snaps.iter().map(|s| s.stats.clone()).collect();
            v.sort_by_key(|s| s.core);
            v
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn route_urls_lose_scheme_and_credentials() {
        assert_eq!(super::host_port("nats://ruser:pw@10.0.0.1:6222"), "10.0.0.1:6222");
        assert_eq!(super::host_port("nats-route://h:1/"), "h:1");
        assert_eq!(super::host_port("h:2"), "h:2");
    }
}
