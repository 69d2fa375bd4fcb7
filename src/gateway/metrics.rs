//! What the gateway counts, per executor (each writes only its own counters, so nothing is
//! shared on the request path), summed when `/metrics` is read; and the `/healthz` and
//! `/metrics` answers.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Latency histogram bucket bounds, seconds (Prometheus client defaults, finer at the low end).
pub const BUCKETS: [f64; 14] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0];

/// One executor's counters.
pub struct Metrics {
    /// Its NATS connection is up.
    pub connected: AtomicBool,
    /// Answered requests by status code (hyper's codes are 100 to 999), counted without a
    /// lock on the request path.
    statuses: Box<[AtomicU64]>,
    /// Requests per latency bucket (the last counts those above every bound).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_micros: AtomicU64,
    pub websockets_open: AtomicU64,
    pub websockets_total: AtomicU64,
    pub ws_frames_in: AtomicU64,
    pub ws_frames_out: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            connected: AtomicBool::new(false),
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            latency_micros: AtomicU64::new(0),
            websockets_open: AtomicU64::new(0),
            websockets_total: AtomicU64::new(0),
            ws_frames_in: AtomicU64::new(0),
            ws_frames_out: AtomicU64::new(0),
        }
    }
}

/// One counter per possible status code, indexed by the code.
const STATUS_SLOTS: usize = 1000;

impl Metrics {
    /// Count one answered request.
    pub fn record(&self, status: u16, took: Duration) {
        if let Some(n) = self.statuses.get(status as usize) {
            n.fetch_add(1, Relaxed);
        }
        let secs = took.as_secs_f64();
        let i = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.latency_micros.fetch_add(took.as_micros() as u64, Relaxed);
    }
}

/// The Prometheus text exposition of every executor's counters, summed.
pub fn prometheus(all: &[std::sync::Arc<Metrics>]) -> String {
    let mut statuses = BTreeMap::<u16, u64>::new();
    let mut buckets = [0u64; BUCKETS.len() + 1];
    let (mut micros, mut open, mut total, mut fin, mut fout, mut up) = (0, 0, 0, 0, 0, 0);
    for m in all {
        for (code, n) in m.statuses.iter().enumerate() {
            let n = n.load(Relaxed);
            if n > 0 {
                *statuses.entry(code as u16).or_default() += n;
            }
        }
        for (i, b) in m.buckets.iter().enumerate() {
            buckets[i] += b.load(Relaxed);
        }
        micros += m.latency_micros.load(Relaxed);
        open += m.websockets_open.load(Relaxed);
        total += m.websockets_total.load(Relaxed);
        fin += m.ws_frames_in.load(Relaxed);
        fout += m.ws_frames_out.load(Relaxed);
        up += m.connected.load(Relaxed) as u64;
    }
    let mut out = String::new();
    out.push_str("# HELP natsu_gateway_requests_total HTTP requests answered, by status code.\n# TYPE natsu_gateway_requests_total counter\n");
    for (code, n) in &statuses {
        let _ = writeln!(out, "natsu_gateway_requests_total{{code=\"{code}\"}} {n}");
    }
    out.push_str("# HELP natsu_gateway_request_duration_seconds Time from request to answer.\n# TYPE natsu_gateway_request_duration_seconds histogram\n");
    let mut cumulative = 0;
    for (i, bound) in BUCKETS.iter().enumerate() {
        cumulative += buckets[i];
        let _ = writeln!(out, "natsu_gateway_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += buckets[BUCKETS.len()];
    let _ = writeln!(out, "natsu_gateway_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "natsu_gateway_request_duration_seconds_sum {}", micros as f64 / 1e6);
    let _ = writeln!(out, "natsu_gateway_request_duration_seconds_count {cumulative}");
    for (name, help, kind, v) in [
        ("natsu_gateway_websockets_open", "WebSockets bridged now.", "gauge", open),
        ("natsu_gateway_websockets_total", "WebSockets bridged since start.", "counter", total),
        ("natsu_gateway_websocket_frames_in_total", "Frames from browsers published to NATS.", "counter", fin),
        ("natsu_gateway_websocket_frames_out_total", "Messages from NATS written to browsers.", "counter", fout),
        ("natsu_gateway_nats_connections_up", "Executors whose NATS connection is up.", "gauge", up),
        ("natsu_gateway_executors", "Executors serving HTTP.", "gauge", all.len() as u64),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
    out
}

/// `/healthz`: 200 while every executor's NATS connection is up, else 503.
pub fn health(all: &[std::sync::Arc<Metrics>]) -> (u16, String) {
    let up = all.iter().filter(|m| m.connected.load(Relaxed)).count();
    let ok = up == all.len();
    let body = serde_json::json!({"status": if ok { "ok" } else { "unavailable" }, "nats_connected": up, "executors": all.len()});
    (if ok { 200 } else { 503 }, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sums_executors() {
        let a = Arc::new(Metrics::default());
        let b = Arc::new(Metrics::default());
        a.record(200, Duration::from_micros(300));
        b.record(200, Duration::from_millis(2));
        b.record(504, Duration::from_secs(20));
        a.connected.store(true, Relaxed);
        let text = prometheus(&[a.clone(), b.clone()]);
        assert!(text.contains("natsu_gateway_requests_total{code=\"200\"} 2\n"), "{text}");
        assert!(text.contains("natsu_gateway_requests_total{code=\"504\"} 1\n"));
        assert!(text.contains("_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("_bucket{le=\"0.0025\"} 2\n"));
        assert!(text.contains("_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("_count 3\n"));
        assert_eq!(health(&[a.clone(), b.clone()]).0, 503);
        b.connected.store(true, Relaxed);
        assert_eq!(health(&[a, b]).0, 200);
    }
}
