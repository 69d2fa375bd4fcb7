//! Turning a run's outcome into what people read (`nats bench`-style lines) and what
//! `compare` reads back (the run directory).

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;

use super::run::{ClientResult, Config, Outcome};
use super::summary::{group, ClientRate, Latency, SideStats, Summary, Workload, HDR_FILE, HGRM_FILE, SUMMARY_FILE};

/// `1234567.8` → `1,234,568`.
pub fn commas(v: f64) -> String {
    group(v, 0)
}

fn side(clients: &[&ClientResult]) -> SideStats {
    if clients.is_empty() {
        return SideStats::default();
    }
    let msgs: u64 = clients.iter().map(|c| c.msgs).sum();
    let bytes: u64 = clients.iter().map(|c| c.bytes).sum();
    let start = clients.iter().map(|c| c.start).min().expect("non-empty");
    let end = clients.iter().map(|c| c.end).max().expect("non-empty");
    let span = end.duration_since(start).as_secs_f64().max(1e-9);
    let rates: Vec<ClientRate> = clients
        .iter()
        .map(|c| {
            let secs = c.secs.max(1e-9);
            ClientRate {
                msgs: c.msgs,
                bytes: c.bytes,
                secs: c.secs,
                msgs_per_sec: c.msgs as f64 / secs,
                mb_per_sec: c.bytes as f64 / secs / 1e6,
            }
        })
        .collect();
    let n = rates.len() as f64;
    let avg = rates.iter().map(|r| r.msgs_per_sec).sum::<f64>() / n;
    let var = rates.iter().map(|r| (r.msgs_per_sec - avg).powi(2)).sum::<f64>() / n;
    SideStats {
        msgs,
        bytes,
        msgs_per_sec: msgs as f64 / span,
        mb_per_sec: bytes as f64 / span / 1e6,
        min: rates.iter().map(|r| r.msgs_per_sec).fold(f64::INFINITY, f64::min),
        max: rates.iter().map(|r| r.msgs_per_sec).fold(0.0, f64::max),
        avg,
        stddev: var.sqrt(),
        clients: rates,
    }
}

/// Merge the clients' histograms (None when no client measured latency).
pub fn merged_latency(outcome: &Outcome) -> Option<Histogram<u64>> {
    let mut merged: Option<Histogram<u64>> = None;
    for h in outcome.clients.iter().filter_map(|c| c.latency.as_ref()) {
        match &mut merged {
            None => merged = Some(h.clone()),
            Some(m) => {
                let _ = m.add(h);
            }
        }
    }
    merged.filter(|h| h.len() > 0)
}

pub fn summarize(cfg: &Config, name: Option<&str>, outcome: &Outcome, hist: Option<&Histogram<u64>>) -> Summary {
    let pubs: Vec<&ClientResult> = outcome.clients.iter().filter(|c| c.publisher).collect();
    let subs: Vec<&ClientResult> = outcome.clients.iter().filter(|c| !c.publisher).collect();
    let subscribers = side(&subs);
    let kind = if cfg.w.request { "request-reply" } else { "end-to-end" };
    Summary {
        name: name.map(str::to_owned).unwrap_or_else(|| {
            if outcome.server_name.is_empty() {
                cfg.url.clone()
            } else {
                format!("{} {}", outcome.server_version, outcome.server_name)
            }
        }),
        url: cfg.url.clone(),
        sub_url: cfg.sub_url.clone(),
        server_name: outcome.server_name.clone(),
        server_version: outcome.server_version.clone(),
        started: natsu::logging::rfc3339(std::time::SystemTime::now()),
        workload: Workload { msgs: if cfg.w.duration_secs.is_some() { 0 } else { cfg.w.msgs }, ..cfg.w.clone() },
        publishers: side(&pubs),
        // A request that got no answer in time is lost; a publish is lost when a subscriber
        // that should have had it never did.
        lost: if cfg.w.request {
            pubs.iter().map(|c| c.errors).sum()
        } else {
            outcome.expected.saturating_sub(subscribers.msgs)
        },
        subscribers,
        latency: hist.map(|h| Latency::from_histogram(kind, h)),
        server_cpu_secs: outcome.server_cpu_secs,
        server_cpu_servers: if cfg.server_pids.len() > 1 { cfg.server_pids.len() } else { 0 },
    }
}

fn side_text(out: &mut String, title: &str, s: &SideStats) {
    let _ = writeln!(out, "{title} stats: {} msgs/sec ~ {:.2} MB/sec", commas(s.msgs_per_sec), s.mb_per_sec);
    for (i, c) in s.clients.iter().enumerate() {
        let _ = writeln!(out, " [{}] {} msgs/sec ~ {:.2} MB/sec ({} msgs)", i + 1, commas(c.msgs_per_sec), c.mb_per_sec, c.msgs);
    }
    if s.clients.len() > 1 {
        let _ = writeln!(
            out,
            " min {} | avg {} | max {} | stddev {} msgs",
            commas(s.min),
            commas(s.avg),
            commas(s.max),
            commas(s.stddev)
        );
    }
}

/// The lines a `nats bench` user expects, then latency percentiles.
pub fn text(s: &Summary) -> String {
    let w = &s.workload;
    let mut out = String::new();
    let what = w.kind();
    let _ = writeln!(
        out,
        "natsu-bench {what} on {}{} ({}): {} pubs, {} subs{}, {} msgs of {} B{}, {} client cores{}",
        s.url,
        s.sub_url.as_deref().map(|u| format!(", subscribers on {u}")).unwrap_or_default(),
        s.name,
        w.pubs,
        w.subs,
        if w.queue { " (one queue group)" } else { "" },
        if w.msgs > 0 { commas(w.msgs as f64) } else { format!("{}s of", w.duration_secs.unwrap_or(0.0)) },
        w.size,
        if w.rate > 0 { format!(" at {} msgs/sec", commas(w.rate as f64)) } else { String::new() },
        w.cores,
        if w.spin_us > 0 { format!(" spinning {} µs", w.spin_us) } else { String::new() }
    );
    if w.pubs > 0 && w.subs > 0 && !w.request {
        let total = s.publishers.msgs + s.subscribers.msgs;
        let span_rate = s.publishers.msgs_per_sec + s.subscribers.msgs_per_sec;
        let _ = writeln!(
            out,
            "\nNATS Pub/Sub stats: {} msgs/sec ~ {:.2} MB/sec ({} msgs)",
            commas(span_rate),
            s.publishers.mb_per_sec + s.subscribers.mb_per_sec,
            total
        );
    }
    if w.pubs > 0 {
        out.push('\n');
        side_text(&mut out, if w.request { "Req" } else { "Pub" }, &s.publishers);
    }
    if w.subs > 0 {
        out.push('\n');
        side_text(&mut out, if w.request { "Reply" } else { "Sub" }, &s.subscribers);
    }
    if s.lost > 0 {
        let _ = writeln!(out, "\nLOST: {} messages the subscribers should have received never came", s.lost);
    }
    if let Some(l) = &s.latency {
        let _ = writeln!(
            out,
            "\nLatency ({}, {} samples, µs): min {:.1} | p50 {:.1} | p90 {:.1} | p99 {:.1} | p99.9 {:.1} | p99.99 {:.1} | max {:.1}",
            l.kind, l.count, l.min_us, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.p9999_us, l.max_us
        );
    }
    if let Some(cpu) = s.server_cpu_secs {
        let delivered = s.subscribers.msgs.max(s.publishers.msgs).max(1);
        let of = s.cpu_of();
        let _ = writeln!(
            out,
            "\nServer CPU{}: {cpu:.2} s ({:.0} ns per message{})",
            if of.is_empty() { String::new() } else { format!(", {of} summed") },
            cpu * 1e9 / delivered as f64,
            if s.subscribers.msgs > 0 { " delivered" } else { " published" }
        );
    }
    out
}

/// Write summary.json and, with latency, latency.hgrm and latency.hdr.
pub fn save(dir: &Path, s: &Summary, hist: Option<&Histogram<u64>>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(s).map_err(|e| e.to_string())?;
    let path = dir.join(SUMMARY_FILE);
    std::fs::write(&path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(h) = hist {
        super::compare::write_hgrm(h, &dir.join(HGRM_FILE))?;
        super::compare::save_histogram(h, &dir.join(HDR_FILE))?;
    }
    Ok(())
}

/// Per-client CSV rows in `nats bench --csv` form.
pub fn csv(s: &Summary, run_id: &str) -> String {
    let mut out = String::from("#RunID, ClientID, MsgCount, MsgBytes, MsgsPerSec, BytesPerSec, DurationSecs\n");
    for (prefix, side) in [("P", &s.publishers), ("S", &s.subscribers)] {
        for (i, c) in side.clients.iter().enumerate() {
            let _ = writeln!(
                out,
                "{run_id},{prefix}{i},{},{},{:.0},{:.0},{:.6}",
                c.msgs,
                c.bytes,
                c.msgs_per_sec,
                c.mb_per_sec * 1e6,
                c.secs
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(commas(0.0), "0");
        assert_eq!(commas(999.4), "999");
        assert_eq!(commas(1000.0), "1,000");
        assert_eq!(commas(1234567.8), "1,234,568");
    }

    #[test]
    fn a_route_pair_says_where_subscribers_were_and_whose_cpu_is_summed() {
        let side = SideStats { msgs: 1_000_000, msgs_per_sec: 1e6, ..SideStats::default() };
        let one = Summary {
            url: "nats://127.0.0.1:4222".into(),
            workload: Workload { pubs: 1, subs: 1, msgs: 1_000_000, size: 16, ..Workload::default() },
            publishers: side.clone(),
            subscribers: side,
            server_cpu_secs: Some(0.5),
            ..Summary::default()
        };
        // One server: the lines and the JSON keys as before.
        let t = text(&one);
        assert!(t.contains("on nats://127.0.0.1:4222 ("), "{t}");
        assert!(t.contains("\nServer CPU: 0.50 s (500 ns per message delivered)"), "{t}");
        let json = serde_json::to_string(&one).expect("json");
        assert!(!json.contains("sub_url") && !json.contains("server_cpu_servers"), "{json}");

        let pair = Summary { sub_url: Some("nats://127.0.0.1:4223".into()), server_cpu_servers: 2, ..one };
        let t = text(&pair);
        assert!(t.contains("on nats://127.0.0.1:4222, subscribers on nats://127.0.0.1:4223 ("), "{t}");
        assert!(t.contains("\nServer CPU, both servers summed: 0.50 s (500 ns per message delivered)"), "{t}");
        let back: Summary = serde_json::from_str(&serde_json::to_string(&pair).expect("json")).expect("parse");
        assert_eq!(back, pair);
    }
}
