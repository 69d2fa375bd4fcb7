//! natsu-bench as a user runs it: real runs against a real server (natsu, or nats-server
//! with `NATSU_TEST_TARGET=reference`), the files each run leaves, `compare` over two runs,
//! and clear errors for bad input. Message counts are small: this checks behaviour, never
//! speed.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Server, TempDir};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_natsu-bench")).args(args).stdin(Stdio::null()).output().expect("run natsu-bench")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn summary(dir: &Path) -> serde_json::Value {
    let s = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&s).expect("summary.json is JSON")
}

#[test]
fn pub_sub_run_saves_summary_and_histograms() {
    let server = Server::start();
    let tmp = TempDir::new("bench");
    let out = tmp.0.join("fanout");
    let csv = tmp.0.join("rates.csv");
    let url = server.url();
    let o = bench(&[
        "run", "--url", &url, "--pub", "2", "--sub", "3", "--msgs", "3000", "--size", "16B", "--no-progress",
        "--out", out.to_str().unwrap(), "--csv", csv.to_str().unwrap(), "--name", "under-test",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for want in ["NATS Pub/Sub stats:", "Pub stats:", "Sub stats:", " [1] ", " [3] ", "min ", "stddev", "Latency (end-to-end"] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    let s = summary(&out);
    assert_eq!(s["name"], "under-test");
    assert_eq!(s["publishers"]["msgs"], 3000);
    assert_eq!(s["subscribers"]["msgs"], 9000, "every subscriber gets every message");
    assert_eq!(s["lost"], 0);
    assert_eq!(s["latency"]["count"], 9000);
    assert!(s["latency"]["p50_us"].as_f64().unwrap() > 0.0);
    let hgrm = std::fs::read_to_string(out.join("latency.hgrm")).unwrap();
    assert!(hgrm.contains("Percentile") && hgrm.contains("#[Max "), "{hgrm}");
    assert!(std::fs::metadata(out.join("latency.hdr")).unwrap().len() > 10);
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(rows.starts_with("#RunID, ClientID, MsgCount"));
    assert_eq!(rows.lines().count(), 1 + 2 + 3, "{rows}");
}

#[test]
fn queue_and_request_runs_and_compare() {
    let server = Server::start();
    let tmp = TempDir::new("bench");
    let url = server.url();
    let q = tmp.0.join("queue");
    let o = bench(&["run", "--url", &url, "--pub", "1", "--sub", "3", "--queue", "--msgs", "3000", "--no-progress", "--out", q.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let s = summary(&q);
    assert_eq!(s["subscribers"]["msgs"], 3000, "a queue group shares the messages");
    assert_eq!(s["workload"]["queue"], true);

    let mut dirs = Vec::new();
    // The second run's client executor polls 200 µs before sleeping.
    for (name, spin) in [("first", "0"), ("second", "200us")] {
        let d = tmp.0.join(name);
        let o = bench(&[
            "run", "--url", &url, "--pub", "1", "--sub", "1", "--request", "--msgs", "300", "--rate", "3000", "--size", "16B",
            "--spin", spin, "--no-progress", "--name", name, "--out", d.to_str().unwrap(),
        ]);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("Latency (request-reply, 300 samples"), "{t}");
        dirs.push(d);
    }
    assert_eq!(summary(&dirs[1])["workload"]["spin_us"], 200);
    let plot = tmp.0.join("plot.svg");
    let o = bench(&["compare", dirs[0].to_str().unwrap(), dirs[1].to_str().unwrap(), "--plot", plot.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("[1] first") && t.contains("[2] second") && t.contains("p99.99") && t.contains('x'), "{t}");
    assert!(t.contains("client spin 200 µs vs 0 µs"), "{t}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("<svg") && svg.contains("first") && svg.contains("second"));
}

#[test]
fn bad_input_is_a_clear_error() {
    let tmp = TempDir::new("bench");
    for args in [
        vec!["run", "--size", "lots"],
        vec!["run", "--pub", "-1"],
        vec!["run", "--bogus"],
        vec!["run", "--pub", "0", "--sub", "0"],
        vec!["run", "--request", "--sub", "0"],
        vec!["run", "--spin", "soon"],
        vec!["compare", "/nonexistent/run"],
    ] {
        let o = bench(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert!(!err.trim().is_empty(), "{args:?} said nothing");
    }
    // Nobody listening: connecting fails, clearly, and soon.
    let port = common::free_port().to_string();
    let url = format!("nats://127.0.0.1:{port}");
    let o = bench(&["run", "--url", &url, "--msgs", "10", "--no-progress", "--out", tmp.0.join("x").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no servers available"), "{}", text(&o));
}

/// `natsu-bench run ... | head -1`: the reader of its output goes away before it prints. No
/// panic, and the run is still saved.
#[test]
fn a_closed_output_pipe_is_no_panic_and_the_run_is_saved() {
    use std::io::Read;
    let server = Server::start();
    let tmp = TempDir::new("bench-pipe");
    let out = tmp.0.join("run");
    let url = server.url();
    let mut child = Command::new(env!("CARGO_BIN_EXE_natsu-bench"))
        .args(["run", "--url", &url, "--pub", "1", "--sub", "1", "--msgs", "2000", "--no-progress", "--out", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run natsu-bench");
    drop(child.stdout.take());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(summary(&out)["subscribers"]["msgs"], 2000, "{err}");
}

#[test]
fn loopback_reports_bandwidth_and_round_trips() {
    let o = bench(&["loopback", "--duration", "300ms"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let figure = |prefix: &str| -> Option<f64> {
        let line = t.lines().find(|l| l.starts_with(prefix))?;
        line[prefix.len()..].trim_start().split(|c: char| c == ' ' || c == ',').next()?.parse().ok()
    };
    assert!(figure("loopback TCP:").is_some_and(|mbps| mbps > 0.0), "{t}");
    assert!(figure("loopback TCP through a relay:").is_some_and(|mbps| mbps > 0.0), "{t}");
    let one = figure("loopback TCP round trip, 16 B, one CPU: p50").expect("one-CPU round trip");
    assert!(one > 0.0 && one < 100_000.0, "{t}");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        let two = figure("loopback TCP round trip, 16 B, two CPUs: p50").expect("two-CPU round trip");
        assert!(two > 0.0 && two < 100_000.0, "{t}");
    }
}
