//! Configuration: command-line flags ([`cli`]), the nats-server config file format ([`conf`]
//! reads it into a tree, [`file`] maps the tree onto the options, `keys` lists the keys it
//! refuses by name), `--signal` ([`signal`]), and the value syntax flags and file share
//! (sizes like `1MB`, durations like `"1m30s"`).

pub mod cli;
pub mod conf;
pub mod file;
mod keys;
pub mod signal;

use std::time::Duration;

/// A size: a number with an optional unit. `k`, `m`, `g`, `t` are powers of 1000; `kb`, `ki`,
/// `kib` (and the m, g, t forms) powers of 1024; `b` or nothing is bytes. Case-insensitive.
///
/// ```
/// use natsu::config::parse_size;
/// assert_eq!(parse_size("1MB"), Ok(1 << 20));
/// assert_eq!(parse_size("2k"), Ok(2000));
/// assert!(parse_size("lots").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" | "ki" | "kib" => 1 << 10,
        "m" => 1_000_000,
        "mb" | "mi" | "mib" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" | "gi" | "gib" => 1 << 30,
        "t" => 1_000_000_000_000,
        "tb" | "ti" | "tib" => 1 << 40,
        _ => return Err(format!("invalid size unit in {s:?}")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
}

/// A duration in Go's form (`"2s"`, `"1m30s"`, `"250ms"`, `"1h"`); a bare number is seconds.
///
/// ```
/// use natsu::config::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
/// assert!(parse_duration("soon").is_err());
/// ```
/// natsu's `--spin` / `spin:`: a duration from 0 to [`MAX_SPIN`](crate::server::options::MAX_SPIN).
pub fn parse_spin(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    let max = crate::server::options::MAX_SPIN;
    if d > max {
        return Err(format!("spin {s:?} is longer than {}ms", max.as_millis()));
    }
    Ok(d)
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad = || format!("invalid duration {s:?}");
    let mut total = Duration::ZERO;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_end);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_end = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(value * scale);
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (s, v) in [("0", 0), ("1024", 1024), ("1k", 1000), ("1KB", 1024), ("1kib", 1024), ("64MB", 64 << 20), ("2g", 2_000_000_000)] {
            assert_eq!(parse_size(s), Ok(v), "{s}");
        }
        for s in ["", "-1", "1x", "k", "99999999999999999999", "9999999999999TB"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
    }

    #[test]
    fn durations() {
        for (s, ms) in [("2s", 2000), ("100ms", 100), ("1m30s", 90_000), ("1h", 3_600_000), ("1.5s", 1500), ("3", 3000)] {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for s in ["", "s", "1x", "1s2", "abc", "-1s"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }
}
