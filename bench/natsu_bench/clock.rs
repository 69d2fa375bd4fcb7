//! The clock for per-message timestamps: nanoseconds on one monotonic scale shared by every
//! executor of the run.
//!
//! `clock_gettime` costs ~24 ns on the VMs this project measures on, as much as the rest of a
//! subscriber's work per message, and a flat-out run reads it millions of times. Where the
//! CPU's time-stamp counter is invariant and the kernel itself keeps time with it (so it
//! checked the counters agree across CPUs), this reads the counter (~10 ns) and scales it
//! to ns against CLOCK_MONOTONIC, calibrated once. Anywhere else it is CLOCK_MONOTONIC.
//! Latencies are differences of two readings, so a calibration error of 10⁻⁴ moves a 100 µs
//! latency by 10 ns.

use std::sync::OnceLock;
use std::time::Duration;

/// How long the calibration watches both clocks.
const CALIBRATION: Duration = Duration::from_millis(20);

struct Tsc {
    tsc0: u64,
    ns0: u64,
    /// ns per tick in 32.32 fixed point: an integer multiply per reading, not two
    /// conversions to and from floating point (a third of a subscriber's clock cost).
    ns_per_tick_fp32: u64,
}

impl Tsc {
    #[inline]
    fn ns(&self, ticks: u64) -> u64 {
        self.ns0 + ((ticks.wrapping_sub(self.tsc0) as u128 * self.ns_per_tick_fp32 as u128) >> 32) as u64
    }
}

static TSC: OnceLock<Option<Tsc>> = OnceLock::new();

/// CLOCK_MONOTONIC in ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(target_arch = "x86_64")]
fn ticks() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A counter reading and the CLOCK_MONOTONIC time it was taken at: the middle of the
/// tightest of a few monotonic readings around it (a preemption between two reads would
/// otherwise skew the calibration).
#[cfg(target_arch = "x86_64")]
fn pair() -> (u64, u64) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..50 {
        let before = monotonic_ns();
        let t = ticks();
        let after = monotonic_ns();
        if after - before < best.2 {
            best = (t, before + (after - before) / 2, after - before);
        }
        if best.2 < 1_000 {
            break;
        }
    }
    (best.0, best.1)
}

#[cfg(target_arch = "x86_64")]
fn calibrate() -> Option<Tsc> {
    let source = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource").ok()?;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags"))?;
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    if source.trim() != "tsc" || !has("constant_tsc") || !has("nonstop_tsc") {
        return None;
    }
    let (tsc0, ns0) = pair();
    std::thread::sleep(CALIBRATION);
    let (tsc1, ns1) = pair();
    let ns_per_tick = (ns1 as f64 - ns0 as f64) / (tsc1 as f64 - tsc0 as f64);
    (tsc1 > tsc0 && ns1 > ns0).then(|| Tsc { tsc0, ns0, ns_per_tick_fp32: (ns_per_tick * (1u64 << 32) as f64) as u64 })
}

#[cfg(not(target_arch = "x86_64"))]
fn ticks() -> u64 {
    0
}

#[cfg(not(target_arch = "x86_64"))]
fn calibrate() -> Option<Tsc> {
    None
}

/// Choose the clock (and calibrate it) before any executor starts; 20 ms the first time.
pub fn init() {
    TSC.get_or_init(calibrate);
}

/// Now, in ns on the run's monotonic scale.
#[inline]
pub fn now_ns() -> u64 {
    match TSC.get_or_init(calibrate) {
        Some(t) => t.ns(ticks()),
        None => monotonic_ns(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_monotonic_clock() {
        init();
        // Each reading between two monotonic ones, so a preemption cannot fail the test.
        let (m0a, a, m0b) = (monotonic_ns(), now_ns(), monotonic_ns());
        std::thread::sleep(Duration::from_millis(30));
        let (m1a, b, m1b) = (monotonic_ns(), now_ns(), monotonic_ns());
        let elapsed = (b - a) as f64;
        // Within 1% of the monotonic interval (the calibration's error is far below that).
        let (lo, hi) = ((m1a - m0b) as f64 * 0.99, (m1b - m0a) as f64 * 1.01);
        assert!(lo <= elapsed && elapsed <= hi, "now_ns moved {elapsed} ns, monotonic between {lo} and {hi}");
    }
}
