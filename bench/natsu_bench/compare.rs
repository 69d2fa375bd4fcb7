//! `natsu-bench compare`: read run directories back (see [`super::summary`]), print them side
//! by side with ratios against the first run, and plot their latency by percentile.
//!
//! This file also owns the two histogram file forms a run directory holds, so that what
//! `run` writes and what `compare` reads are defined in one place:
//! - `latency.hdr`: one line of base64 over the V2+DEFLATE serialization. That is the form
//!   HdrHistogram's interval logs carry, so other HdrHistogram tools can decode it, and it keeps
//!   every bucket for exact re-plotting;
//! - `latency.hgrm`: the percentile-distribution text HdrHistogram's Java `outputPercentileDistribution`
//!   prints, which is what the online HdrHistogram plotter and most latency tooling accept.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::summary::{group, Latency, Summary, Workload, HDR_FILE, SUMMARY_FILE};

/// Histograms record nanoseconds; people read microseconds. This is the Java tool's "output
/// value unit scaling ratio".
const NS_PER_US: f64 = 1000.0;

/// Rows per halving of the distance to 100% in `.hgrm` files and plots: the Java tool's
/// default, so our files line up with everyone else's.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Write `h` to `path` as one line of base64 over its V2+DEFLATE serialization.
///
/// ```text
/// save_histogram(&hist, &run_dir.join(HDR_FILE))?;
/// ```
pub fn save_histogram(h: &Histogram<u64>, path: &Path) -> Result<(), String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| format!("{}: cannot serialize histogram: {e}", path.display()))?;
    let mut line = BASE64.encode(&bytes);
    line.push('\n');
    std::fs::write(path, line).map_err(|e| format!("{}: {e}", path.display()))
}

/// Read a histogram written by [`save_histogram`] (or any tool writing HdrHistogram's base64
/// V2 / V2+DEFLATE form). Errors name the file.
///
/// ```text
/// let hist = load_histogram(Path::new("bench-runs/a/latency.hdr"))?;
/// println!("p99 {} ns", hist.value_at_quantile(0.99));
/// ```
pub fn load_histogram(path: &Path) -> Result<Histogram<u64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // Tolerate the trailing newline and a file re-wrapped by an editor.
    let b64: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if b64.is_empty() {
        return Err(format!("{}: empty histogram file", path.display()));
    }
    let bytes = BASE64
        .decode(b64.as_bytes())
        .map_err(|e| format!("{}: not base64: {e}", path.display()))?;
    // The deserializer is third-party code walking bytes from a file; some corrupt inputs
    // reach arithmetic that panics in debug builds (negating i64::MIN). A bad file must be an
    // error naming it, not a crash, so a panic in there is turned into one.
    let decoded = std::panic::catch_unwind(|| Deserializer::new().deserialize::<u64, _>(&mut bytes.as_slice()));
    match decoded {
        Ok(Ok(h)) => Ok(h),
        Ok(Err(e)) => Err(format!("{}: not an HdrHistogram: {e}", path.display())),
        Err(_) => Err(format!("{}: not an HdrHistogram: corrupt encoding", path.display())),
    }
}

/// Write HdrHistogram's classic percentile distribution of `h` (nanoseconds) to `path`, values
/// in microseconds, in the layout of Java's `outputPercentileDistribution(out, 5, 1000.0)`.
///
/// ```text
///        Value     Percentile TotalCount 1/(1-Percentile)
///
///       12.031 0.000000000000          1           1.00
///       ...
/// #[Mean    =       14.114, StdDeviation   =        3.015]
/// #[Max     =      230.527, Total count    =       100000]
/// #[Buckets =           21, SubBuckets     =         2048]
/// ```
pub fn write_hgrm(h: &Histogram<u64>, path: &Path) -> Result<(), String> {
    std::fs::write(path, hgrm_text(h)).map_err(|e| format!("{}: {e}", path.display()))
}

fn hgrm_text(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total: u64 = 0;
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / NS_PER_US;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
        } else {
            // The 100% row has no finite 1/(1-Percentile); Java leaves the column out.
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let _ = writeln!(out, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", h.mean() / NS_PER_US, h.stdev() / NS_PER_US);
    let _ = writeln!(out, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / NS_PER_US, h.len());
    let _ = writeln!(out, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), sub_buckets(h.sigfig()));
    out
}

/// The histogram's sub-bucket count, which the crate keeps private: the power of two that
/// gives unit resolution up to 2 × 10^sigfig, as HdrHistogram sizes it.
fn sub_buckets(sigfig: u8) -> u32 {
    let largest = 2.0 * 10f64.powi(i32::from(sigfig));
    1u32 << (largest.log2().ceil() as u32)
}

/// One run directory, read back.
struct Run {
    dir: PathBuf,
    summary: Summary,
    /// `None` when the run measured no latency (no `latency.hdr`).
    hist: Option<Histogram<u64>>,
}

impl Run {
    fn load(dir: &Path) -> Result<Run, String> {
        if !dir.is_dir() {
            return Err(format!("{}: no such run directory", dir.display()));
        }
        let path = dir.join(SUMMARY_FILE);
        let json = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let summary: Summary = serde_json::from_str(&json).map_err(|e| format!("{}: {e}", path.display()))?;
        let hdr = dir.join(HDR_FILE);
        let hist = if hdr.exists() { Some(load_histogram(&hdr)?) } else { None };
        Ok(Run { dir: dir.to_path_buf(), summary, hist })
    }

    /// The label in tables and legends: a run saved without a name still needs one.
    fn name(&self) -> String {
        if self.summary.name.trim().is_empty() {
            self.dir.file_name().map_or_else(|| self.dir.display().to_string(), |n| n.to_string_lossy().into_owned())
        } else {
            self.summary.name.clone()
        }
    }

    /// Latency percentiles in µs: from the histogram when the run kept one (exact, and the
    /// same source as the plot), else the summary's.
    fn latency(&self) -> Option<Latency> {
        match &self.hist {
            Some(h) if !h.is_empty() => {
                let kind = self.summary.latency.as_ref().map(|l| l.kind.clone()).unwrap_or_default();
                Some(Latency::from_histogram(&kind, h))
            }
            _ => self.summary.latency.clone(),
        }
    }

    /// Server CPU per message handed to a client, the figure that says how much work the
    /// server does per message regardless of how fast the clients were. Divides by the larger
    /// side, as the run report does, so fan-out counts every delivery.
    fn cpu_ns_per_msg(&self) -> Option<f64> {
        let s = &self.summary;
        let delivered = s.subscribers.msgs.max(s.publishers.msgs).max(1);
        s.server_cpu_secs.map(|cpu| cpu * 1e9 / delivered as f64)
    }

    /// Points of the latency-by-percentile curve: x = log10(1/(1-percentile)), y = µs.
    fn curve(&self) -> Vec<(f64, f64)> {
        if let Some(h) = self.hist.as_ref().filter(|h| !h.is_empty()) {
            return h
                .iter_quantiles(TICKS_PER_HALF_DISTANCE)
                // 100% sits at infinity on this axis; the table carries the max.
                .filter(|v| v.quantile_iterated_to() < 1.0)
                .map(|v| (-(1.0 - v.quantile_iterated_to()).log10(), v.value_iterated_to() as f64 / NS_PER_US))
                .collect();
        }
        // A run saved without its histogram still gets a (coarse) line from its percentiles.
        self.summary.latency.as_ref().map_or_else(Vec::new, |l| {
            vec![(0.0, l.min_us), (2f64.log10(), l.p50_us), (1.0, l.p90_us), (2.0, l.p99_us), (3.0, l.p999_us), (4.0, l.p9999_us)]
        })
    }
}

/// Compare saved runs: returns the side-by-side table (the caller prints it) and writes the
/// latency-by-percentile plot to `plot` (SVG). Ratios are each run over the first.
///
/// ```text
/// let table = compare(&[PathBuf::from("bench-runs/nats"), PathBuf::from("bench-runs/natsu")],
///                     Path::new("latency.svg"))?;
/// print!("{table}");
/// ```
pub fn compare(dirs: &[PathBuf], plot: &Path) -> Result<String, String> {
    if dirs.is_empty() {
        return Err("no run directories to compare".into());
    }
    let runs = dirs.iter().map(|d| Run::load(d)).collect::<Result<Vec<_>, _>>()?;
    let table = table(&runs);
    write_plot(&runs, plot)?;
    Ok(table)
}

/// What the workload was, in the words of the run report.
fn describe(w: &Workload) -> String {
    let kind = w.kind();
    let amount = match (w.msgs, w.duration_secs) {
        (0, Some(secs)) => format!("{secs}s of msgs"),
        (n, _) => format!("{} msgs", group(n as f64, 0)),
    };
    format!(
        "{kind}: {} pub, {} sub{}, {amount} of {} B, {}, {} client cores{}",
        w.pubs,
        w.subs,
        if w.queue { " (queue group)" } else { "" },
        w.size,
        rate(w.rate),
        w.cores,
        if w.spin_us > 0 { format!(" spinning {}", spin(w.spin_us)) } else { String::new() }
    )
}

fn spin(us: u64) -> String {
    format!("{us} µs")
}

fn rate(r: u64) -> String {
    if r == 0 {
        "unthrottled".into()
    } else {
        format!("{} msgs/s", group(r as f64, 0))
    }
}

/// How `b`'s workload differs from `a`'s (empty when they are the same). The subject is left
/// out: it does not change the load.
fn workload_diff(a: &Workload, b: &Workload) -> Vec<String> {
    let yes = |v: bool| if v { "yes" } else { "no" };
    let mut d = Vec::new();
    let mut field = |name: &str, x: String, y: String| {
        if x != y {
            d.push(format!("{name} {y} vs {x}"));
        }
    };
    field("pubs", a.pubs.to_string(), b.pubs.to_string());
    field("subs", a.subs.to_string(), b.subs.to_string());
    field("msgs", group(a.msgs as f64, 0), group(b.msgs as f64, 0));
    field("size", format!("{} B", a.size), format!("{} B", b.size));
    field("queue", yes(a.queue).into(), yes(b.queue).into());
    field("request", yes(a.request).into(), yes(b.request).into());
    field("rate", rate(a.rate), rate(b.rate));
    let secs = |s: Option<f64>| s.map_or_else(|| "-".to_string(), |s| format!("{s}s"));
    field("duration", secs(a.duration_secs), secs(b.duration_secs));
    field("client cores", a.cores.to_string(), b.cores.to_string());
    field("client spin", spin(a.spin_us), spin(b.spin_us));
    d
}

/// A table row: one value per run (`None` prints as `-`).
struct Row {
    label: String,
    values: Vec<Option<f64>>,
    decimals: usize,
}

fn table(runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Comparing {} runs; ratio = run / [1]", runs.len());
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(out, "[{}] {}  ({})", i + 1, r.name(), r.dir.display());
        let _ = writeln!(out, "    {}", describe(&r.summary.workload));
    }
    let first = &runs[0].summary.workload;
    for (i, r) in runs.iter().enumerate().skip(1) {
        let diff = workload_diff(first, &r.summary.workload);
        if !diff.is_empty() {
            let _ = writeln!(out, "warning: workload of [{}] differs from [1]: {}", i + 1, diff.join(", "));
        }
    }
    out.push('\n');

    let any = |f: &dyn Fn(&Run) -> bool| runs.iter().any(f);
    let row = |label: &str, decimals: usize, f: &dyn Fn(&Run) -> Option<f64>| Row {
        label: label.into(),
        values: runs.iter().map(f).collect(),
        decimals,
    };
    let mut rows = Vec::new();
    if any(&|r| r.summary.workload.pubs > 0) {
        rows.push(row("pub msgs/s", 0, &|r| Some(r.summary.publishers.msgs_per_sec)));
    }
    if any(&|r| r.summary.workload.subs > 0) {
        rows.push(row("sub msgs/s", 0, &|r| Some(r.summary.subscribers.msgs_per_sec)));
        rows.push(row("sub MB/s", 2, &|r| Some(r.summary.subscribers.mb_per_sec)));
    }
    rows.push(row("lost", 0, &|r| Some(r.summary.lost as f64)));
    if any(&|r| r.summary.server_cpu_secs.is_some()) {
        // A route pair's runs sum both servers: say so where any run does.
        let of = runs.iter().map(|r| r.summary.cpu_of()).find(|of| !of.is_empty());
        let label = |l: &str| of.as_ref().map_or_else(|| l.to_owned(), |of| format!("{l} ({of})"));
        rows.push(row(&label("server CPU s"), 2, &|r| r.summary.server_cpu_secs));
        rows.push(row(&label("server CPU ns/msg"), 0, &|r| r.cpu_ns_per_msg()));
    }
    let latencies: Vec<Option<Latency>> = runs.iter().map(Run::latency).collect();
    let mut latency_rows = Vec::new();
    if latencies.iter().any(Option::is_some) {
        let pick = |label: &str, f: fn(&Latency) -> f64| Row {
            label: label.into(),
            values: latencies.iter().map(|l| l.as_ref().map(f)).collect(),
            decimals: 1,
        };
        latency_rows = vec![
            pick("p50", |l| l.p50_us),
            pick("p90", |l| l.p90_us),
            pick("p99", |l| l.p99_us),
            pick("p99.9", |l| l.p999_us),
            pick("p99.99", |l| l.p9999_us),
            pick("max", |l| l.max_us),
        ];
    }

    // Cells first, so every column is as wide as its widest cell.
    let cells = |r: &Row| -> Vec<String> {
        let mut c = vec![r.label.clone()];
        for (i, v) in r.values.iter().enumerate() {
            c.push(v.map_or_else(|| "-".into(), |v| group(v, r.decimals)));
            if i > 0 {
                c.push(ratio(r.values[0], *v));
            }
        }
        c
    };
    let mut header = vec![String::new()];
    for (i, r) in runs.iter().enumerate() {
        header.push(format!("[{}] {}", i + 1, truncate(&r.name(), 24)));
        if i > 0 {
            header.push("ratio".into());
        }
    }
    let kind = latencies.iter().flatten().map(|l| l.kind.as_str()).find(|k| !k.is_empty()).unwrap_or("");
    let latency_title = if kind.is_empty() { "latency µs".to_string() } else { format!("latency µs ({kind})") };
    let body: Vec<Vec<String>> = rows.iter().map(&cells).collect();
    let latency_body: Vec<Vec<String>> = latency_rows.iter().map(&cells).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    widths[0] = widths[0].max(latency_title.chars().count());
    for line in body.iter().chain(&latency_body) {
        for (w, c) in widths.iter_mut().zip(line) {
            *w = (*w).max(c.chars().count());
        }
    }
    let print = |out: &mut String, line: &[String]| {
        let mut s = format!("{:<w$}", line[0], w = widths[0]);
        for (c, w) in line.iter().zip(&widths).skip(1) {
            let _ = write!(s, "  {c:>w$}");
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    print(&mut out, &header);
    for line in &body {
        print(&mut out, line);
    }
    if !latency_body.is_empty() {
        let _ = writeln!(out, "\n{latency_title}");
        for line in &latency_body {
            print(&mut out, line);
        }
    }
    out
}

/// `run / first` as `0.45x`; `-` when either is missing or the first is zero.
fn ratio(first: Option<f64>, v: Option<f64>) -> String {
    match (first, v) {
        (Some(a), Some(b)) if a != 0.0 && a.is_finite() && b.is_finite() => format!("{:.2}x", b / a),
        _ => "-".into(),
    }
}

/// `1234567.891` with 2 decimals → `1,234,567.89`.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Distinct on white and to most colour-blind readers (Tableau 10).
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// `0%`, `90%`, `99%`, `99.9%`, ... for x = 0, 1, 2, 3 decades of 1/(1-percentile).
fn percentile_label(x: f64) -> String {
    let d = x.round();
    if (x - d).abs() > 1e-6 || d < 0.0 {
        return String::new();
    }
    match d as usize {
        0 => "0%".into(),
        1 => "90%".into(),
        n => format!("99.{}%", "9".repeat(n - 2)).replace(".%", "%"),
    }
}

/// The HdrHistogram-style plot: latency against percentile, where the x axis is
/// log10(1/(1-percentile)) so each decade is one more nine.
fn write_plot(runs: &[Run], path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let curves: Vec<Vec<(f64, f64)>> = runs.iter().map(Run::curve).collect();
    let x_far = curves.iter().flatten().map(|p| p.0).fold(0.0, f64::max);
    // At least out to 99.999% so plots of different runs line up; further when the data goes.
    let decades = (x_far.ceil() as usize).clamp(5, 9);
    let y_top = curves.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
    let y_top = if y_top > 0.0 { y_top * 1.08 } else { 1.0 };

    let w = &runs[0].summary.workload;
    let kind = runs.iter().filter_map(Run::latency).map(|l| l.kind).find(|k| !k.is_empty());
    let title = format!("{} latency by percentile — {}", kind.as_deref().unwrap_or("Message"), describe(w));

    let root = SVGBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        // Room for the last tick label, which is centred on the right edge.
        .margin_right(60)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..decades as f64, 0f64..y_top)
        .map_err(|e| err(&e))?;
    let y_label = |y: &f64| if y_top < 10.0 { format!("{y:.1}") } else { group(*y, 0) };
    chart
        .configure_mesh()
        .x_labels(decades + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&y_label)
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (run, points)) in runs.iter().zip(curves).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("[{}] {}", i + 1, run.name()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::super::summary::{SideStats, HGRM_FILE};
    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("natsu-compare-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Latencies 10 µs .. 10 µs + n ns, scaled by `slow`, one sample each.
    fn hist(n: u64, slow: u64) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
        for i in 0..n {
            h.record((10_000 + i) * slow).expect("in range");
        }
        h
    }

    fn summary(name: &str, msgs_per_sec: f64, cpu: Option<f64>) -> Summary {
        Summary {
            name: name.into(),
            url: "nats://127.0.0.1:4222".into(),
            workload: Workload { subject: "bench".into(), pubs: 1, subs: 1, msgs: 100_000, size: 16, cores: 2, ..Workload::default() },
            publishers: SideStats { msgs: 100_000, bytes: 1_600_000, msgs_per_sec, mb_per_sec: msgs_per_sec * 16.0 / 1e6, ..SideStats::default() },
            subscribers: SideStats { msgs: 100_000, bytes: 1_600_000, msgs_per_sec, mb_per_sec: msgs_per_sec * 16.0 / 1e6, ..SideStats::default() },
            latency: Some(Latency { kind: "end-to-end".into(), count: 100_000, p50_us: 1.0, ..Latency::default() }),
            server_cpu_secs: cpu,
            ..Summary::default()
        }
    }

    fn save_run(dir: &Path, s: &Summary, h: Option<&Histogram<u64>>) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join(SUMMARY_FILE), serde_json::to_string_pretty(s).expect("json")).expect("write");
        if let Some(h) = h {
            save_histogram(h, &dir.join(HDR_FILE)).expect("save hdr");
            write_hgrm(h, &dir.join(HGRM_FILE)).expect("save hgrm");
        }
    }

    #[test]
    fn histogram_round_trip() {
        let tmp = TempDir::new("roundtrip");
        let h = hist(100_000, 1);
        let path = tmp.0.join(HDR_FILE);
        save_histogram(&h, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one line");
        assert!(text.ends_with('\n'));
        let back = load_histogram(&path).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.max(), h.max());
        assert_eq!(back.min(), h.min());
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(back.value_at_quantile(q), h.value_at_quantile(q), "q {q}");
        }
        let counts = |h: &Histogram<u64>| h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect::<Vec<_>>();
        assert_eq!(counts(&back), counts(&h));
    }

    #[test]
    fn hgrm_format() {
        // 1..=1000 µs, one sample each: the 50% row is at 500 µs with 500 samples below it.
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let text = hgrm_text(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "       1.000 0.000000000000          1           1.00");
        assert!(lines.contains(&"     500.223 0.500000000000        500           2.00"), "{text}");
        assert!(lines.contains(&"    1000.447 1.000000000000       1000"), "{text}");
        let n = lines.len();
        assert!(lines[n - 3].starts_with("#[Mean    =      500."), "{}", lines[n - 3]);
        assert!(lines[n - 3].contains(", StdDeviation   =      288."), "{}", lines[n - 3]);
        assert_eq!(lines[n - 2], "#[Max     =     1000.447, Total count    =         1000]");
        assert_eq!(lines[n - 1], format!("#[Buckets = {:12}, SubBuckets     =         2048]", h.buckets()));
        // Every data row parses as the plotter reads it: numbers in columns.
        for l in &lines[2..n - 3] {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert!(cols.len() == 4 || cols.len() == 3, "{l}");
            assert!(cols.iter().all(|c| c.parse::<f64>().is_ok()), "{l}");
        }
    }

    #[test]
    fn sub_bucket_count_matches_hdrhistogram() {
        assert_eq!(sub_buckets(1), 32);
        assert_eq!(sub_buckets(2), 256);
        assert_eq!(sub_buckets(3), 2048);
        assert_eq!(sub_buckets(5), 262_144);
    }

    #[test]
    fn compare_two_runs() {
        let tmp = TempDir::new("two");
        let (a, b) = (tmp.0.join("a"), tmp.0.join("b"));
        save_run(&a, &summary("nats-server 2.10", 1_000_000.0, Some(2.0)), Some(&hist(100_000, 1)));
        save_run(&b, &summary("natsu 0.1", 2_500_000.0, Some(0.5)), Some(&hist(100_000, 2)));
        let plot = tmp.0.join("latency.svg");
        let table = compare(&[a.clone(), b.clone()], &plot).unwrap();
        println!("{table}");
        assert!(table.contains("[1] nats-server 2.10"), "{table}");
        assert!(table.contains("[2] natsu 0.1"), "{table}");
        assert!(table.contains(&a.display().to_string()), "{table}");
        assert!(!table.contains("warning"), "{table}");
        let row = |label: &str| table.lines().find(|l| l.starts_with(&format!("{label} "))).unwrap_or_else(|| panic!("no {label} row in\n{table}"));
        assert!(row("pub msgs/s").contains("1,000,000"), "{table}");
        assert!(row("pub msgs/s").ends_with("2,500,000  2.50x"), "{table}");
        assert!(row("server CPU s").ends_with("0.25x"), "{table}");
        // 2.0 s / 100,000 msgs = 20,000 ns; 0.5 s → 5,000 ns.
        assert!(row("server CPU ns/msg").contains("20,000"), "{table}");
        assert!(row("server CPU ns/msg").ends_with("5,000  0.25x"), "{table}");
        // From the histograms, not the summaries' p50 of 1.0: twice as slow.
        assert!(row("p50").ends_with("2.00x"), "{table}");
        assert!(row("p50").contains("60.0"), "{table}");
        assert!(row("max").ends_with("2.00x"), "{table}");
        assert!(table.contains("latency µs (end-to-end)"), "{table}");
        assert_eq!(row("lost").split_whitespace().last(), Some("-"), "0 / 0 has no ratio");

        let svg = std::fs::read_to_string(&plot).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains("nats-server 2.10") && svg.contains("natsu 0.1"));
        for label in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
            assert!(svg.contains(&format!(">{label}<")) || svg.contains(&format!(">\n{label}\n<")), "tick {label}");
        }
        assert!(svg.contains("latency (µs)"));
    }

    #[test]
    fn run_without_latency_and_different_workload() {
        let tmp = TempDir::new("nolat");
        let (a, b) = (tmp.0.join("a"), tmp.0.join("b"));
        save_run(&a, &summary("with", 1_000_000.0, None), Some(&hist(1000, 1)));
        let mut s = summary("without", 500_000.0, None);
        s.latency = None;
        s.workload.size = 128;
        s.workload.rate = 10_000;
        save_run(&b, &s, None);
        let plot = tmp.0.join("p.svg");
        let table = compare(&[a, b], &plot).unwrap();
        assert!(table.contains("warning: workload of [2] differs from [1]: size 128 B vs 16 B, rate 10,000 msgs/s vs unthrottled"), "{table}");
        let p50 = table.lines().find(|l| l.starts_with("p50 ")).unwrap();
        assert_eq!(p50.split_whitespace().collect::<Vec<_>>(), ["p50", "10.5", "-", "-"], "{table}");
        assert!(!table.contains("server CPU"), "{table}");
        assert!(table.lines().find(|l| l.starts_with("sub msgs/s")).unwrap().ends_with("500,000  0.50x"), "{table}");
        assert!(std::fs::read_to_string(&plot).unwrap().contains("without"));
    }

    #[test]
    fn bad_inputs_name_the_file() {
        let tmp = TempDir::new("bad");
        let plot = tmp.0.join("p.svg");

        let missing = tmp.0.join("nope");
        let e = compare(&[missing.clone()], &plot).unwrap_err();
        assert!(e.contains(&missing.display().to_string()), "{e}");

        let no_summary = tmp.0.join("empty");
        std::fs::create_dir_all(&no_summary).unwrap();
        let e = compare(&[no_summary.clone()], &plot).unwrap_err();
        assert!(e.contains(&no_summary.join(SUMMARY_FILE).display().to_string()), "{e}");

        let bad_json = tmp.0.join("json");
        std::fs::create_dir_all(&bad_json).unwrap();
        std::fs::write(bad_json.join(SUMMARY_FILE), "{\"name\": \"x\", ").unwrap();
        let e = compare(&[bad_json.clone()], &plot).unwrap_err();
        assert!(e.contains(&bad_json.join(SUMMARY_FILE).display().to_string()), "{e}");

        let bad_hdr = tmp.0.join("hdr");
        save_run(&bad_hdr, &summary("x", 1.0, None), None);
        let hdr = bad_hdr.join(HDR_FILE);
        for junk in ["", "not base64 at all!", "SGVsbG8gd29ybGQ=\n", "HISTFAAAACl4nJNpmSzMwMDAxQABzFCaEUzKb4LIMAAAUFUEGA==\n"] {
            std::fs::write(&hdr, junk).unwrap();
            let e = compare(&[bad_hdr.clone()], &plot).unwrap_err();
            assert!(e.contains(&hdr.display().to_string()), "{junk:?}: {e}");
        }

        // The plot's own failure names the plot.
        let good = tmp.0.join("good");
        save_run(&good, &summary("x", 1.0, None), None);
        let bad_plot = tmp.0.join("no-such-dir").join("p.svg");
        let e = compare(&[good], &bad_plot).unwrap_err();
        assert!(e.contains(&bad_plot.display().to_string()), "{e}");

        assert!(compare(&[], &plot).is_err());
    }

    /// Every single-byte corruption or truncation of a real histogram file loads as a value or an
    /// error, never a panic.
    #[test]
    fn corrupt_histogram_bytes_never_panic() {
        let tmp = TempDir::new("flip");
        let original = hist(2000, 3);
        let mut bytes = Vec::new();
        V2DeflateSerializer::new().serialize(&original, &mut bytes).unwrap();
        let path = tmp.0.join(HDR_FILE);
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                std::fs::write(&path, BASE64.encode(&b)).unwrap();
                let _ = load_histogram(&path);
            }
            // Cut short: an error, unless only the zlib trailer went missing (the decoder
            // stops once it has the payload), in which case it must be the whole histogram.
            std::fs::write(&path, BASE64.encode(&bytes[..i])).unwrap();
            if let Ok(h) = load_histogram(&path) {
                assert_eq!(h, original, "truncated at {i} of {}", bytes.len());
            }
        }
    }

    #[test]
    fn number_formats() {
        assert_eq!(group(0.0, 0), "0");
        assert_eq!(group(999.4, 0), "999");
        assert_eq!(group(1234567.891, 2), "1,234,567.89");
        assert_eq!(group(-1234.5, 1), "-1,234.5");
        assert_eq!(group(-0.01, 1), "0.0");
        assert_eq!(ratio(Some(2.0), Some(0.9)), "0.45x");
        assert_eq!(ratio(Some(0.0), Some(1.0)), "-");
        assert_eq!(ratio(None, Some(1.0)), "-");
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(5.0), "99.999%");
        assert_eq!(percentile_label(2.5), "");
    }
}
