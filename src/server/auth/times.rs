//! A user JWT's connect-time ranges (`times`, in the zone `times_location`), read as
//! nats-server 2.9 reads them: a range is a start and an end time of day (`HH:MM:SS`) on
//! today's date in the zone, the end on the next day when it is earlier than the start; the
//! user may connect while now is inside one of them, and is disconnected when it ends.
//!
//! Like the reference, only ranges that start today count: at 03:00 a `22:00:00`–`06:00:00`
//! range has not started (today's starts at 22:00), so the user is refused until 22:00.
//! The zone is the server's local one when `times_location` is empty (`TZ`, else
//! `/etc/localtime`, else UTC), otherwise an IANA name read from the system's time-zone
//! database, as Go's `time.LoadLocation` reads it; a name it cannot load refuses the user.

use tz::TimeZone;

use super::jwt::TimeRange;

const DAY: i64 = 86_400;

/// Where Go looks up a zone name on Linux, in its order (after `$ZONEINFO`).
const ZONE_DIRS: [&str; 4] = ["/usr/share/zoneinfo", "/usr/share/lib/zoneinfo", "/usr/lib/locale/TZ", "/etc/zoneinfo"];

/// When the range `now` (Unix seconds) is in ends (Unix seconds), or why the user may not
/// connect now (for the debug log).
pub(super) fn allowed_until(ranges: &[TimeRange], location: &str, now: i64) -> Result<i64, String> {
    let zone = zone(location)?;
    let offset = |t: i64| zone.find_local_time_type(t).map_or(0, |l| i64::from(l.ut_offset()));
    // A wall-clock time (seconds as if the zone were UTC) as an instant: the offset in force
    // then (Go's rule for a time that a change of offset skips or repeats).
    let instant = |wall: i64| wall - offset(wall - offset(wall));
    let wall_now = now + offset(now);
    let midnight = wall_now - wall_now.rem_euclid(DAY);
    for range in ranges {
        let (start, end) = (time_of_day(&range.start)?, time_of_day(&range.end)?);
        let end_day = if start > end { midnight + DAY } else { midnight };
        let (start, end) = (instant(midnight + start), instant(end_day + end));
        if start <= now && now < end {
            return Ok(end);
        }
    }
    Err("Outside connect times".into())
}

/// Seconds since midnight of `H:MM:SS` or `HH:MM:SS` (Go's layout `15:04:05`).
fn time_of_day(s: &str) -> Result<i64, String> {
    let bad = || format!("time range {s:?} is not HH:MM:SS");
    let mut parts = s.split(':');
    let (Some(h), Some(m), Some(sec), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
    let field = |t: &str, widths: std::ops::RangeInclusive<usize>, max: i64| -> Result<i64, String> {
        if !widths.contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().ok().filter(|v| *v <= max).ok_or_else(bad)
    };
    Ok(field(h, 1..=2, 23)? * 3600 + field(m, 2..=2, 59)? * 60 + field(sec, 2..=2, 59)?)
}

/// The zone `times_location` names.
fn zone(name: &str) -> Result<TimeZone, String> {
    match name {
        "" | "Local" => Ok(local()),
        "UTC" => Ok(TimeZone::utc()),
        _ if name.contains("..") || name.starts_with('/') || name.starts_with('\\') => Err(format!("invalid time zone name {name:?}")),
        _ => named(name).ok_or_else(|| format!("unknown time zone {name:?}")),
    }
}

/// A zone by IANA name: `$ZONEINFO` (a directory) first, then the system's database.
fn named(name: &str) -> Option<TimeZone> {
    let env = std::env::var("ZONEINFO").ok().filter(|d| !d.is_empty());
    let zone = env.iter().map(String::as_str).chain(ZONE_DIRS).find_map(|dir| read(&format!("{dir}/{name}")));
    zone
}

fn read(path: &str) -> Option<TimeZone> {
    TimeZone::from_tz_data(&std::fs::read(path).ok()?).ok()
}

/// The server's local zone, as Go's runtime finds it: `TZ` unset, `/etc/localtime`; `TZ`
/// a path or a name, that zone; anything else (or a zone that does not load), UTC.
fn local() -> TimeZone {
    let zone = match std::env::var("TZ") {
        Err(_) => read("/etc/localtime"),
        Ok(tz) => match tz.strip_prefix(':').unwrap_or(&tz) {
            "" | "UTC" => None,
            path if path.starts_with('/') => read(path),
            name => named(name),
        },
    };
    zone.unwrap_or_else(TimeZone::utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: &str, end: &str) -> TimeRange {
        TimeRange { start: start.into(), end: end.into() }
    }

    /// 2026-01-15, 12:00:00 UTC.
    const NOON: i64 = 1_768_478_400;

    #[test]
    fn ranges_in_utc() {
        assert_eq!(allowed_until(&[range("11:00:00", "13:00:00")], "UTC", NOON), Ok(NOON + 3600));
        assert!(allowed_until(&[range("13:00:00", "14:00:00")], "UTC", NOON).is_err());
        assert!(allowed_until(&[range("10:00:00", "12:00:00")], "UTC", NOON).is_err(), "the end is not inside");
        assert_eq!(allowed_until(&[range("12:00:00", "12:00:01")], "UTC", NOON), Ok(NOON + 1), "the start is");
        // Over midnight: today's start counts, the end is tomorrow.
        assert_eq!(allowed_until(&[range("9:00:00", "01:00:00")], "UTC", NOON), Ok(NOON + 13 * 3600));
        // The reference's rule: at 03:00 yesterday's 22:00-06:00 range does not count.
        assert!(allowed_until(&[range("22:00:00", "06:00:00")], "UTC", NOON - 9 * 3600).is_err());
        // The second of two ranges.
        assert_eq!(allowed_until(&[range("01:00:00", "02:00:00"), range("11:59:00", "12:30:00")], "UTC", NOON), Ok(NOON + 1800));
    }

    #[test]
    fn ranges_in_a_named_zone() {
        if named("America/New_York").is_none() {
            eprintln!("no time-zone database here: skipped");
            return;
        }
        // 12:00 UTC in January is 07:00 in New York (UTC-5).
        assert_eq!(allowed_until(&[range("06:30:00", "07:30:00")], "America/New_York", NOON), Ok(NOON + 1800));
        assert!(allowed_until(&[range("11:00:00", "13:00:00")], "America/New_York", NOON).is_err());
        // In July, UTC-4.
        let july = NOON + 181 * DAY;
        assert_eq!(allowed_until(&[range("07:30:00", "09:00:00")], "America/New_York", july), Ok(july + 3600));
    }

    #[test]
    fn bad_ranges_and_zones_refuse() {
        for (s, e) in [("25:00:00", "26:00:00"), ("1:0:00", "2:00:00"), ("01:00", "02:00:00"), ("", "02:00:00"), ("01:00:00:00", "02:00:00"), ("+1:00:00", "02:00:00")] {
            assert!(allowed_until(&[range(s, e)], "UTC", NOON).is_err(), "{s}-{e}");
        }
        for zone in ["Nowhere/Land", "../etc/passwd", "/etc/localtime"] {
            assert!(allowed_until(&[range("00:00:00", "23:59:59")], zone, NOON).is_err(), "{zone}");
        }
        assert_eq!(time_of_day("23:59:59"), Ok(DAY - 1));
        assert_eq!(time_of_day("7:05:09"), Ok(7 * 3600 + 5 * 60 + 9));
    }
}
