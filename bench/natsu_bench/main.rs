//! natsu-bench: drive any NATS server with publishers and subscribers spread over one
//! glommio executor per core, print rates and latency percentiles as `nats bench` users
//! read them, save each run (summary, histograms) and compare runs side by side.
//!
//! ```text
//! natsu-bench run --pub 1 --sub 1 --msgs 1000000 --size 16B
//! natsu-bench run --pub 1 --sub 4 --queue --url nats://127.0.0.1:4222
//! natsu-bench run --pub 1 --sub 1 --request --rate 10000 --msgs 100000
//! natsu-bench run --pub 1 --sub 1 --url nats://127.0.0.1:4222 --sub-url nats://127.0.0.1:4223
//! natsu-bench compare bench-runs/a bench-runs/b --plot latency.svg
//! natsu-bench loopback --duration 3s
//! ```

mod clock;
mod compare;
mod loopback;
mod report;
mod run;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};

/// Round trips per loopback latency figure.
const LOOPBACK_ROUND_TRIPS: usize = 5_000;

fn cli() -> Command {
    let size = |s: &str| natsu::config::parse_size(s).map(|v| v as usize);
    let dur = |s: &str| natsu::config::parse_duration(s);
    Command::new("natsu-bench")
        .about("Load generator for NATS servers: rates, latency histograms, comparisons")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommand(
            Command::new("run")
                .about("Run one workload and save it (summary.json, latency.hgrm, latency.hdr)")
                .arg(Arg::new("url").long("url").visible_alias("server").short('s').default_value("nats://127.0.0.1:4222").help("server URL (or comma-separated pool)"))
                .arg(Arg::new("sub-url").long("sub-url").help("subscribers (responders) connect here, publishers to --url: a route between two servers (waits until the interest reached --url)"))
                .arg(Arg::new("subject").long("subject").default_value("natsu.bench"))
                .arg(Arg::new("tls-ca").long("tls-ca").value_parser(clap::value_parser!(std::path::PathBuf)).help("PEM file of the CA that signed the server's certificate (tls:// URLs)"))
                .arg(Arg::new("pub").long("pub").value_parser(clap::value_parser!(usize)).default_value("1").help("publishers (requesters with --request)"))
                .arg(Arg::new("sub").long("sub").value_parser(clap::value_parser!(usize)).default_value("0").help("subscribers (responders with --request)"))
                .arg(Arg::new("msgs").long("msgs").value_parser(clap::value_parser!(u64)).default_value("100000").help("messages to publish in all"))
                .arg(Arg::new("size").long("size").value_parser(size).default_value("128B").help("payload size: 16B, 128, 1KiB, 1MB ..."))
                .arg(Arg::new("duration").long("duration").value_parser(dur).help("publish for this long instead of --msgs (10s, 1m)"))
                .arg(Arg::new("rate").long("rate").value_parser(clap::value_parser!(u64)).default_value("0").help("offered msgs/sec over all publishers (0: as fast as possible)"))
                .arg(Arg::new("queue").long("queue").action(ArgAction::SetTrue).help("subscribers form one queue group"))
                .arg(Arg::new("request").long("request").action(ArgAction::SetTrue).help("publishers send requests, subscribers answer; measures round trips"))
                .arg(Arg::new("cores").long("cores").value_parser(clap::value_parser!(usize)).help("client executors (default: every core)"))
                .arg(Arg::new("spin").long("spin").value_parser(dur).default_value("0s").help("how long an idle client executor polls before it sleeps (e.g. 200us; keeps the generator's own wake-ups out of a latency run)"))
                .arg(Arg::new("csv").long("csv").value_parser(clap::value_parser!(PathBuf)).help("write per-client rates as CSV"))
                .arg(Arg::new("no-progress").long("no-progress").action(ArgAction::SetTrue).help("no progress bar"))
                .arg(Arg::new("server-pid").long("server-pid").value_parser(clap::value_parser!(u32)).action(ArgAction::Append).value_delimiter(',').help("report this process's CPU seconds during the run (repeat or comma-separate: summed over every server)"))
                .arg(Arg::new("name").long("name").help("label for tables and plots"))
                .arg(Arg::new("out").long("out").value_parser(clap::value_parser!(PathBuf)).help("run directory (default: bench-runs/<time>)")),
        )
        .subcommand(
            Command::new("compare")
                .about("Side-by-side percentile table and ratios of runs, and a latency plot")
                .arg(Arg::new("runs").num_args(1..).required(true).value_parser(clap::value_parser!(PathBuf)).help("run directories"))
                .arg(Arg::new("plot").long("plot").value_parser(clap::value_parser!(PathBuf)).default_value("latency.svg").help("SVG file to write")),
        )
        .subcommand(
            Command::new("loopback")
                .about("This machine's loopback TCP bandwidth, directly and through a relay (the ceilings for MB/s figures), and round trip on one CPU and on two (the floor under latency)")
                .arg(Arg::new("duration").long("duration").value_parser(dur).default_value("3s")),
        )
}

fn config(m: &ArgMatches) -> run::Config {
    run::Config {
        url: m.get_one::<String>("url").cloned().unwrap_or_default(),
        sub_url: m.get_one::<String>("sub-url").cloned(),
        w: summary::Workload {
            subject: m.get_one::<String>("subject").cloned().unwrap_or_default(),
            pubs: *m.get_one("pub").unwrap_or(&1),
            subs: *m.get_one("sub").unwrap_or(&0),
            msgs: *m.get_one("msgs").unwrap_or(&100_000),
            size: *m.get_one("size").unwrap_or(&128),
            queue: m.get_flag("queue"),
            request: m.get_flag("request"),
            rate: *m.get_one("rate").unwrap_or(&0),
            duration_secs: m.get_one::<Duration>("duration").map(Duration::as_secs_f64),
            cores: m
                .get_one::<usize>("cores")
                .copied()
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            spin_us: m.get_one::<Duration>("spin").map_or(0, |d| d.as_micros() as u64),
        },
        progress: !m.get_flag("no-progress"),
        server_pids: m.get_many::<u32>("server-pid").map(|v| v.copied().collect()).unwrap_or_default(),
        tls_ca: m.get_one::<std::path::PathBuf>("tls-ca").cloned(),
    }
}

/// Print to standard output. A reader that went away (`natsu-bench loopback | head -1`) is no
/// reason for the panic `println!` gives: the rest of the output is dropped, and a run is
/// still saved.
fn say(args: std::fmt::Arguments) {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    static GONE: AtomicBool = AtomicBool::new(false);
    if GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        GONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("natsu-bench: cannot write to standard output: {e}");
        }
    }
}

fn run_cmd(m: &ArgMatches) -> Result<(), String> {
    let cfg = config(m);
    let outcome = run::run(&cfg)?;
    let hist = report::merged_latency(&outcome);
    let summary = report::summarize(&cfg, m.get_one::<String>("name").map(String::as_str), &outcome, hist.as_ref());
    say(format_args!("{}", report::text(&summary)));
    let stamp = summary.started.replace([':', '-'], "").replace('T', "-");
    let dir = m
        .get_one::<PathBuf>("out")
        .cloned()
        .unwrap_or_else(|| PathBuf::from("bench-runs").join(format!("{}-{}", &stamp[..15.min(stamp.len())], std::process::id())));
    report::save(&dir, &summary, hist.as_ref())?;
    say(format_args!("\nSaved to {}\n", dir.display()));
    if let Some(path) = m.get_one::<PathBuf>("csv") {
        std::fs::write(path, report::csv(&summary, &stamp)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if summary.lost > 0 {
        return Err(format!("{} messages lost", summary.lost));
    }
    Ok(())
}

fn main() -> ExitCode {
    let m = cli().get_matches();
    let r = match m.subcommand() {
        Some(("run", m)) => run_cmd(m),
        Some(("compare", m)) => {
            let runs: Vec<PathBuf> = m.get_many::<PathBuf>("runs").map(|v| v.cloned().collect()).unwrap_or_default();
            let plot = m.get_one::<PathBuf>("plot").cloned().unwrap_or_else(|| PathBuf::from("latency.svg"));
            compare::compare(&runs, &plot).map(|table| {
                say(format_args!("{table}\nPlot: {}\n", plot.display()));
            })
        }
        Some(("loopback", m)) => {
            let duration = *m.get_one::<Duration>("duration").unwrap_or(&Duration::from_secs(3));
            loopback::measure(duration, false)
                .map(|mbps| say(format_args!("loopback TCP: {mbps:.0} MB/s\n")))
                .and_then(|()| loopback::measure(duration, true))
                .map(|mbps| say(format_args!("loopback TCP through a relay: {mbps:.0} MB/s\n")))
                .and_then(|()| {
                    for (two, name) in [(false, "one CPU"), (true, "two CPUs")] {
                        if let Some((p50, p99)) = loopback::round_trip(two, LOOPBACK_ROUND_TRIPS)? {
                            say(format_args!("loopback TCP round trip, 16 B, {name}: p50 {p50:.1} µs, p99 {p99:.1} µs\n"));
                        }
                    }
                    Ok(())
                })
        }
        _ => Err("unknown command".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natsu-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        super::cli().debug_assert();
    }

    #[test]
    fn server_pids_repeat_or_comma_separate() {
        let m = super::cli().get_matches_from(["natsu-bench", "run", "--server-pid", "10,11", "--server-pid", "12"]);
        let (_, run) = m.subcommand().expect("run");
        let cfg = super::config(run);
        assert_eq!(cfg.server_pids, vec![10, 11, 12]);
        assert_eq!(cfg.sub_url, None);
        let m = super::cli().get_matches_from(["natsu-bench", "run", "--sub-url", "nats://127.0.0.1:4223"]);
        let (_, run) = m.subcommand().expect("run");
        let cfg = super::config(run);
        assert!(cfg.server_pids.is_empty());
        assert_eq!(cfg.sub_url.as_deref(), Some("nats://127.0.0.1:4223"));
    }
}
