//! Log lines in nats-server's shape: `[pid] 2006/01/02 15:04:05.000000 [INF] message`.
//!
//! Built on tracing-subscriber with a formatter of our own; `-D` enables debug, `-V` trace,
//! `-T=false` drops the timestamp, `-l FILE` appends to a file, and `RUST_LOG` still works.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::cli::LogOptions;

/// The nats-server-like line format.
struct NatsFormat {
    pid: u32,
    logtime: bool,
}

/// Collects the message and the other fields of an event (`cid` first, as nats-server puts
/// the client before the text).
#[derive(Default)]
struct Fields {
    message: String,
    cid: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "cid" => self.cid = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

/// Calendar date and time of day in UTC, from the civil-from-days algorithm:
/// (year, month, day, hour, minute, second, microsecond).
fn civil(t: SystemTime) -> (i64, i64, i64, i64, i64, i64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, sod / 3600, (sod / 60) % 60, sod % 60, d.subsec_micros())
}

/// `YYYY/MM/DD hh:mm:ss.uuuuuu` in UTC, as nats-server's log lines.
pub fn timestamp(t: SystemTime) -> String {
    let (year, month, day, h, m, s, us) = civil(t);
    format!("{year:04}/{month:02}/{day:02} {h:02}:{m:02}:{s:02}.{us:06}")
}

/// RFC 3339 in UTC with microseconds: `2026-11-23T13:05:00.123456Z`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_micros(1_795_000_000_000_001);
/// assert_eq!(natsu::logging::rfc3339(t), "2026-11-18T11:06:40.000001Z");
/// ```
pub fn rfc3339(t: SystemTime) -> String {
    let (year, month, day, h, m, s, us) = civil(t);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{us:06}Z")
}

impl<S, N> FormatEvent<S, N> for NatsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERR",
            Level::WARN => "WRN",
            Level::INFO => "INF",
            Level::DEBUG => "DBG",
            Level::TRACE => "TRC",
        };
        let mut f = Fields::default();
        event.record(&mut f);
        write!(w, "[{}] ", self.pid)?;
        if self.logtime {
            write!(w, "{} ", timestamp(SystemTime::now()))?;
        }
        write!(w, "[{level}] ")?;
        if let Some(cid) = f.cid {
            write!(w, "cid:{cid} - ")?;
        }
        writeln!(w, "{}{}", f.message, f.rest)
    }
}

/// A log writer that drops what it cannot write: a closed stderr (a supervisor that went
/// away, a test that stopped reading) must never take the broker down.
struct Lossy<W>(W);

impl<W: std::io::Write> std::io::Write for Lossy<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Install the global subscriber. Errors (an unwritable log file) are returned, not panicked.
pub fn init(opts: &LogOptions) -> Result<(), String> {
    let level = if opts.trace {
        "trace"
    } else if opts.debug {
        "debug"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("natsu={level},warn")));
    let fmt = NatsFormat { pid: std::process::id(), logtime: opts.logtime };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).event_format(fmt);
    let res = match &opts.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {path}: {e}"))?;
            builder.with_writer(std::sync::Mutex::new(file)).try_init()
        }
        None => builder.with_writer(|| Lossy(std::io::stderr())).try_init(),
    };
    res.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_civil_utc() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_426_530_123_456);
        assert_eq!(timestamp(t), "2026/11/23 09:35:30.123456");
        assert_eq!(timestamp(UNIX_EPOCH), "1970/01/01 00:00:00.000000");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000/02/29 00:00:00.000000");
    }
}
