//! What a run leaves behind, and how `compare` reads it back.
//!
//! A run directory holds:
//! - `summary.json`: a [`Summary`] (the workload, rates, latency percentiles, server CPU);
//! - `latency.hgrm`: HdrHistogram's percentile-distribution text (as `outputPercentileDistribution`
//!   prints it), values in microseconds;
//! - `latency.hdr`: the histogram itself, V2+DEFLATE serialized and base64 encoded (the
//!   HdrHistogram log form), values in nanoseconds, for exact merging and re-plotting.

use serde::{Deserialize, Serialize};

/// File names inside a run directory.
pub const SUMMARY_FILE: &str = "summary.json";
pub const HGRM_FILE: &str = "latency.hgrm";
pub const HDR_FILE: &str = "latency.hdr";

/// The workload a run drove (the flags that shape it).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Workload {
    pub subject: String,
    pub pubs: usize,
    pub subs: usize,
    /// Messages to publish in all (0 when the run was bounded by `duration_secs`).
    pub msgs: u64,
    /// Payload bytes per message.
    pub size: usize,
    /// Subscribers form one queue group (each message to one of them).
    pub queue: bool,
    /// Publishers send requests and subscribers answer them.
    pub request: bool,
    /// Offered rate in messages per second over all publishers; 0 = as fast as possible.
    pub rate: u64,
    pub duration_secs: Option<f64>,
    /// Client executors (one per core).
    pub cores: usize,
    /// How long an idle client executor polled before sleeping, in microseconds.
    pub spin_us: u64,
}

impl Workload {
    /// What kind of run this was, in a word or two.
    pub fn kind(&self) -> &'static str {
        if self.request {
            "request/reply"
        } else if self.pubs > 0 && self.subs > 0 {
            "pub/sub"
        } else if self.pubs > 0 {
            "pub only"
        } else {
            "sub only"
        }
    }
}

/// A number with thousands separators: `group(1234567.8, 0)` is `1,234,568`.
pub fn group(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let mut out = String::new();
    if v < 0.0 && s.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        out.push('-');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// One client's figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ClientRate {
    pub msgs: u64,
    pub bytes: u64,
    pub secs: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
}

/// The figures of one side (publishers or subscribers).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SideStats {
    pub msgs: u64,
    pub bytes: u64,
    /// Aggregate: all messages over the side's whole span (first start to last end).
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub clients: Vec<ClientRate>,
    /// Of the per-client message rates.
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub stddev: f64,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Latency {
    /// "end-to-end" (publisher timestamp in the payload to subscriber) or "request-reply".
    pub kind: String,
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds.
    pub fn from_histogram(kind: &str, h: &hdrhistogram::Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            kind: kind.into(),
            count: h.len(),
            min_us: us(h.min()),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            p9999_us: us(h.value_at_quantile(0.9999)),
            max_us: us(h.max()),
        }
    }
}

/// Everything a run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Summary {
    /// A label for tables and plots (`--name`, default: the server's name and version).
    pub name: String,
    pub url: String,
    /// Where the subscribers were (`--sub-url`: another server, across a route).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_url: Option<String>,
    /// From the server's INFO.
    pub server_name: String,
    pub server_version: String,
    /// RFC 3339 start time.
    pub started: String,
    pub workload: Workload,
    pub publishers: SideStats,
    pub subscribers: SideStats,
    /// Messages subscribers expected and did not get, or requests left unanswered (0 when
    /// nothing was lost).
    pub lost: u64,
    pub latency: Option<Latency>,
    /// Server CPU seconds (utime + stime from /proc) during the run, with `--server-pid`.
    pub server_cpu_secs: Option<f64>,
    /// How many servers `server_cpu_secs` sums when more than one `--server-pid` was given
    /// (both servers of a route pair); absent (0) for one.
    #[serde(skip_serializing_if = "one_or_none")]
    pub server_cpu_servers: usize,
}

fn one_or_none(n: &usize) -> bool {
    *n <= 1
}

impl Summary {
    /// What the server CPU figures cover, for a label: "" for one server.
    pub fn cpu_of(&self) -> String {
        match self.server_cpu_servers {
            0 | 1 => String::new(),
            2 => "both servers".into(),
            n => format!("{n} servers"),
        }
    }
}
