//! The monitoring port: nats-server's `/varz /connz /routez /subsz /accountz /accstatz
//! /healthz` (same keys, same JSON types, same query parameters and error texts), JSONP, and
//! natsu's own `/metrics` (Prometheus) and per-core figures (`/varz?cores=1`).
//!
//! It runs as ordinary tasks on core zero ([`spawn`]), like the route links: one listener,
//! one task per HTTP connection, every request bounded in size and time. Figures held by
//! other cores come through the mailboxes ([`gather`]); each core keeps its own ring of
//! recently closed connections ([`CoreMonitor`]).
//!
//! - [`http`]: the HTTP/1.1 server (httparse for requests, responses written here);
//! - [`params`]: query strings and Go's parse errors;
//! - [`varz`], [`connz`], [`routez`], [`subsz`], [`accountz`] (with `/accstatz`),
//!   [`metrics`]: the endpoints;
//! - [`gather`]: the cross-core stats request and each core's answer;
//! - [`fmt`]: Go's time and duration formats.

pub mod accountz;
pub mod connz;
pub mod fmt;
pub mod gather;
pub mod http;
pub mod leafz;
pub mod metrics;
pub mod params;
pub mod routez;
pub mod subsz;
pub mod varz;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::rc::Rc;

pub use gather::{answer, CoreMonitor, StatsRequest};

use super::shard::Shard;

/// State of the monitoring server, on core zero.
pub struct MonitorState {
    /// When the server started (Unix ns): `/varz` `start` and `config_load_time`.
    pub start: u64,
    /// The ports actually listened on (0 for the one not in use), for `/varz`.
    pub http_port: u16,
    pub https_port: u16,
    /// Requests per endpoint, as nats-server's `http_req_stats`.
    pub req_stats: RefCell<BTreeMap<&'static str, u64>>,
    /// The last CPU sample (wall ns, process CPU ns), to report use since the last `/varz`.
    cpu_sample: Cell<(u64, u64)>,
}

impl MonitorState {
    pub fn new(start: u64, http_port: u16, https_port: u16) -> MonitorState {
        MonitorState {
            start,
            http_port,
            https_port,
            req_stats: RefCell::new(BTreeMap::new()),
            cpu_sample: Cell::new((start, 0)),
        }
    }

    /// CPU use in percent of one core since the previous call (since start the first time),
    /// as nats-server samples it; one decimal.
    pub fn cpu_percent(&self, now: u64) -> f64 {
        let cpu = varz::cpu_time_ns();
        let (t0, c0) = self.cpu_sample.replace((now, cpu));
        let wall = now.saturating_sub(t0);
        if wall == 0 {
            return 0.0;
        }
        let pct = cpu.saturating_sub(c0) as f64 * 100.0 / wall as f64;
        (pct * 10.0).round() / 10.0
    }

    /// Count a request to a known endpoint.
    pub fn count(&self, path: &'static str) {
        *self.req_stats.borrow_mut().entry(path).or_insert(0) += 1;
    }
}

/// Stop the process over a monitoring setting that cannot work, as nats-server does.
fn fatal(msg: &str) -> ! {
    tracing::error!("Can't start monitoring: {msg}");
    std::process::exit(1)
}

/// Start the monitoring server on this core (core zero), if `-m` or `-ms` asks for one.
/// Binds at once and logs `Starting http monitor on HOST:PORT` with the real port (a
/// requested port of 0 picks a free one).
pub fn spawn(shard: &Rc<Shard>) {
    let start = fmt::now_ns();
    let o = shard.opts();
    let (port, secure) = match (o.http_port, o.https_port) {
        (None, None) => return,
        (Some(h), Some(s)) => fatal(&format!("can't specify both HTTP ({h}) and HTTPs ({s}) ports")),
        (Some(p), None) => (p, false),
        (None, Some(p)) => (p, true),
    };
    let tls = if secure {
        match &o.tls {
            Some(t) => Some(crate::server::tls::server_config(t).unwrap_or_else(|e| fatal(&e))),
            None => fatal("TLS cert and key required for HTTPS"),
        }
    } else {
        None
    };
    let host = o.http_host.trim_start_matches('[').trim_end_matches(']');
    let addr: SocketAddr = match (host, port).to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(a) => a,
        None => fatal(&format!("can't resolve the monitor host {host}")),
    };
    let std_listener = bind(addr).unwrap_or_else(|e| {
        fatal(&format!("can't listen to the monitor port: listen tcp {addr}: bind: {e}"))
    });
    let addr = std_listener.local_addr().unwrap_or(addr);
    let scheme = if secure { "https" } else { "http" };
    tracing::info!("Starting {scheme} monitor on {addr}");
    let listener = Arc::new(std_listener);
    let (http_port, https_port) = if secure { (0, addr.port()) } else { (addr.port(), 0) };
    let state = Rc::new(MonitorState::new(start, http_port, https_port));
    // The system account's requests ask the same endpoints: let them count and sample here.
    let _ = shard.monitor_state.set(state.clone());
    glommio::spawn_local(http::accept_loop(listener, tls, shard.clone(), state)).detach();
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(s.into())
}
