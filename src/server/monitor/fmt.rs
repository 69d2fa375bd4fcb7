//! Times and durations written the way nats-server (Go) writes them in its monitoring JSON.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, now. One vDSO call: cheap enough for once per read pass.
#[inline]
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Calendar date and time of day in UTC from Unix seconds:
/// (year, month, day, hour, minute, second, weekday with 0 = Sunday).
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::logging::civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 4).rem_euclid(7);
    (year, month, day, sod / 3600, (sod / 60) % 60, sod % 60, weekday)
}

/// RFC 3339 in UTC with nanoseconds, trailing zeros dropped, as Go's `time.RFC3339Nano`.
///
/// ```
/// use natsu::server::monitor::fmt::rfc3339_nano;
/// assert_eq!(rfc3339_nano(1_795_000_000_556_444_010), "2026-11-18T11:06:40.55644401Z");
/// assert_eq!(rfc3339_nano(1_795_000_000_000_000_000), "2026-11-18T11:06:40Z");
/// ```
pub fn rfc3339_nano(ns: u64) -> String {
    let (y, mo, d, h, mi, s, _) = civil((ns / 1_000_000_000) as i64);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    let frac = ns % 1_000_000_000;
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// The HTTP `Date` header form (RFC 7231 IMF-fixdate): `Mon, 23 Nov 2026 14:29:49 GMT`.
///
/// ```
/// use natsu::server::monitor::fmt::http_date;
/// assert_eq!(http_date(1_795_000_000_000_000_000), "Wed, 18 Nov 2026 11:06:40 GMT");
/// ```
pub fn http_date(ns: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, mo, d, h, mi, s, wd) = civil((ns / 1_000_000_000) as i64);
    format!("{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} GMT", DAYS[wd as usize], MONTHS[(mo - 1) as usize])
}

/// Whole seconds as nats-server writes uptime and idle time: `1y2d3h4m5s`, leading zero
/// units left out (`4m5s`, `0s`).
///
/// ```
/// use natsu::server::monitor::fmt::uptime;
/// assert_eq!(uptime(0), "0s");
/// assert_eq!(uptime(75_400_000_000), "1m15s");
/// assert_eq!(uptime((86_400 + 3_600 * 2 + 3 * 60 + 4) * 1_000_000_000), "1d2h3m4s");
/// assert_eq!(uptime(366 * 86_400 * 1_000_000_000), "1y1d0h0m0s");
/// ```
pub fn uptime(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86_400);
    let years = days / 365;
    if years > 0 {
        format!("{years}y{}d{}h{}m{}s", days % 365, hours % 24, mins % 60, secs % 60)
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hours % 24, mins % 60, secs % 60)
    } else if hours > 0 {
        format!("{hours}h{}m{}s", mins % 60, secs % 60)
    } else if mins > 0 {
        format!("{mins}m{}s", secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// A duration as Go's `time.Duration.String` writes it: `340µs`, `1.5ms`, `2m3.5s`, `0s`.
///
/// ```
/// use natsu::server::monitor::fmt::go_duration;
/// assert_eq!(go_duration(0), "0s");
/// assert_eq!(go_duration(999), "999ns");
/// assert_eq!(go_duration(340_000), "340µs");
/// assert_eq!(go_duration(1_234_567), "1.234567ms");
/// assert_eq!(go_duration(2_500_000_000), "2.5s");
/// assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
/// ```
pub fn go_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    /// `whole.frac` with the fraction's trailing zeros (and a lone dot) dropped.
    fn decimal(v: u64, unit: u64, width: usize) -> String {
        let frac = format!("{:0width$}", v % unit, width = width);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{}", v / unit)
        } else {
            format!("{}.{frac}", v / unit)
        }
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", decimal(ns, 1_000, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", decimal(ns, 1_000_000, 6));
    }
    let secs = decimal(ns % 60_000_000_000, 1_000_000_000, 9);
    let mins = ns / 60_000_000_000;
    let (h, m) = (mins / 60, mins % 60);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// Serialize a float as Go's encoding/json does for whole numbers (`2`, not `2.0`), so the
/// text matches nats-server's and not only the JSON type.
pub fn go_float<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        // JSON has no NaN or infinity; Go would fail the whole reply, we say 0.
        s.serialize_i64(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_like_durations() {
        assert_eq!(go_duration(1_000), "1µs");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(60_000_000_000), "1m0s");
        assert_eq!(go_duration(61_500_000_000), "1m1.5s");
    }

    #[test]
    fn dates_around_leap_days() {
        // 2024-02-29T00:00:00Z
        assert_eq!(rfc3339_nano(1_709_164_800_000_000_000), "2024-02-29T00:00:00Z");
        assert_eq!(http_date(1_709_164_800_000_000_000), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(rfc3339_nano(1), "1970-01-01T00:00:00.000000001Z");
    }
}

/// RTT as nats-server shows it: truncated to whole microseconds between 1µs and 1ms, else
/// as measured.
pub fn rtt_text(ns: u64) -> String {
    go_duration(if ns > 1_000 && ns < 1_000_000 { ns - ns % 1_000 } else { ns })
}
