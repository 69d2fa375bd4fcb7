//! What the micro-benchmark programs share: how they were asked to run.

/// Full run (`cargo bench` passes `--bench`) or a one-pass check (anything else, such as
/// `cargo test --benches`), as criterion does.
#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Bench { quick: bool },
    Check,
}

impl Mode {
    /// From the command line (`--bench`, `--quick`) and `NATSU_BENCH_QUICK=1`.
    pub fn from_env() -> Mode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if !args.iter().any(|a| a == "--bench") {
            return Mode::Check;
        }
        let env_quick = std::env::var("NATSU_BENCH_QUICK").map(|v| v == "1" || v == "true").unwrap_or(false);
        Mode::Bench { quick: env_quick || args.iter().any(|a| a == "--quick") }
    }
}

/// Plain words on the command line: only cases whose name contains one of them run.
pub fn filters() -> Vec<String> {
    std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect()
}

/// 12345678.9 -> "12.35 M".
pub fn fmt_count(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.2} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}
