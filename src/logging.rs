//! Logs as nats-server writes them: `[pid] 2006/01/02 15:04:05.000000 [INF] message`.
//!
//! One place at a time gets the lines, in nats-server's order of precedence: a file (`-l`),
//! else a remote syslog (`-r udp://host:514`, `tcp://...`, `unix:///path`), else the local
//! syslog (`-s`), else stderr. `-D` turns on debug lines and `-V` trace lines (each alone, as
//! nats-server: `-V` without `-D` shows no debug), `-T=false` drops the timestamp, and
//! `RUST_LOG`, when set, overrides the levels with an `EnvFilter`.
//!
//! Events about a connection carry fields that become nats-server's prefix:
//! `cid` (and `rid` for routes), `addr` (a `SocketAddr`, or an `Option` of one) and `client`
//! (the CONNECT label from [`client_label`]):
//!
//! ```text
//! tracing::debug!(cid, ?addr, "Client connection created");
//! [1234] 2026/11/23 14:33:33.014694 [DBG] 127.0.0.1:35122 - cid:4 - Client connection created
//! ```
//!
//! Protocol traces for `-V` go through [`trace_in`], [`trace_out`] and [`trace_payload`],
//! which cost one atomic load when tracing is off. [`reopen`] reopens the log file (SIGUSR1)
//! and [`reconfigure`] applies changed settings (a config reload).
//!
//! Logging never blocks the thread that logs: an event's text is queued for one writer
//! thread (`writer.rs`), which does every write; when the destination stalls and the queue
//! fills, lines are dropped and counted ([`dropped_lines`]). [`flush`] waits for the queue
//! to be written, as the process does by itself when it exits.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

use crate::config::cli::LogOptions;

mod syslog;
mod writer;

use syslog::{parse_remote, Syslog, SyslogTarget};
pub use writer::{dropped_lines, flush};
use writer::{Dest, Output};

/// The environment variable naming the local syslog socket for `-s` instead of nats-server's
/// `/dev/log`, `/var/run/syslog`, `/var/run/log` (for systems and tests without those).
pub const SYSLOG_SOCKET_ENV: &str = "NATSU_SYSLOG_SOCKET";

/// `-D`: debug lines from natsu (read on every callsite registration; see [`set_levels`]).
static DEBUG: AtomicBool = AtomicBool::new(false);
/// `-V`: trace lines from natsu.
static TRACE: AtomicBool = AtomicBool::new(false);
/// The log file's path (`-l`), to open it again on [`reopen`]; `None` for other
/// destinations. Only [`init`], [`reconfigure`] and [`reopen`] use it (the main thread).
static LOG_FILE: Mutex<Option<String>> = Mutex::new(None);

fn log_file() -> MutexGuard<'static, Option<String>> {
    // Nothing is left half-done by a panic while it is held: keep going.
    LOG_FILE.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------

/// A broken-down time: year, month (1-12), day, hour, minute, second, microsecond, and the
/// offset from UTC in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    min: i64,
    sec: i64,
    micros: u32,
    offset: i64,
}

/// (year, month, day) of a day counted from 1970-01-01: the civil-from-days algorithm.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Calendar date and time of day in UTC.
fn civil(t: SystemTime) -> Civil {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    Civil { year, month, day, hour: sod / 3600, min: (sod / 60) % 60, sec: sod % 60, micros: d.subsec_micros(), offset: 0 }
}

/// Local time (the TZ environment variable or /etc/localtime), as nats-server stamps its
/// lines; UTC if the C library cannot say.
fn local(t: SystemTime) -> Civil {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as libc::time_t;
    // SAFETY: tm is plain data that localtime_r fills in; both pointers are valid for the call.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return civil(t);
        }
        tm
    };
    Civil {
        year: i64::from(tm.tm_year) + 1900,
        month: i64::from(tm.tm_mon) + 1,
        day: i64::from(tm.tm_mday),
        hour: i64::from(tm.tm_hour),
        min: i64::from(tm.tm_min),
        sec: i64::from(tm.tm_sec),
        micros: d.subsec_micros(),
        offset: tm.tm_gmtoff,
    }
}

/// `YYYY/MM/DD hh:mm:ss.uuuuuu` in UTC.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_micros(1_795_426_530_123_456);
/// assert_eq!(natsu::logging::timestamp(t), "2026/11/23 09:35:30.123456");
/// ```
pub fn timestamp(t: SystemTime) -> String {
    line_stamp(civil(t))
}

/// nats-server's line timestamp (Go's `log` with microseconds).
fn line_stamp(c: Civil) -> String {
    format!("{:04}/{:02}/{:02} {:02}:{:02}:{:02}.{:06}", c.year, c.month, c.day, c.hour, c.min, c.sec, c.micros)
}

/// RFC 3339 in UTC with microseconds: `2026-11-23T13:05:00.123456Z`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_micros(1_795_000_000_000_001);
/// assert_eq!(natsu::logging::rfc3339(t), "2026-11-18T11:06:40.000001Z");
/// ```
pub fn rfc3339(t: SystemTime) -> String {
    let c = civil(t);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", c.year, c.month, c.day, c.hour, c.min, c.sec, c.micros)
}

/// Go's `time.RFC3339` (whole seconds, `Z` or `+hh:mm`): the stamp of network syslog lines.
fn rfc3339_secs(c: Civil) -> String {
    let mut s = format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", c.year, c.month, c.day, c.hour, c.min, c.sec);
    if c.offset == 0 {
        s.push('Z');
    } else {
        let sign = if c.offset < 0 { '-' } else { '+' };
        let m = c.offset.abs() / 60;
        let _ = write!(s, "{sign}{:02}:{:02}", m / 60, m % 60);
    }
    s
}

/// Go's `time.Stamp` (`Jan _2 15:04:05`): the stamp of local syslog lines (RFC 3164).
fn bsd_stamp(c: Civil) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS[(c.month.clamp(1, 12) - 1) as usize];
    format!("{month} {:>2} {:02}:{:02}:{:02}", c.day, c.hour, c.min, c.sec)
}

// ---------------------------------------------------------------------------------------
// Lines
// ---------------------------------------------------------------------------------------

/// The message and the other fields of an event.
#[derive(Default)]
struct Fields {
    message: String,
    cid: Option<String>,
    rid: Option<String>,
    addr: Option<String>,
    client: Option<String>,
    rest: String,
}

impl Fields {
    fn set(&mut self, name: &str, value: String) {
        match name {
            "message" => self.message = value,
            "cid" => self.cid = Some(value),
            "rid" => self.rid = Some(value),
            "addr" => {
                // `?addr` on an Option<SocketAddr>.
                let v = value.strip_prefix("Some(").and_then(|v| v.strip_suffix(')')).map(str::to_string).unwrap_or(value);
                if v != "None" && !v.is_empty() {
                    self.addr = Some(v);
                }
            }
            "client" if !value.is_empty() => self.client = Some(value),
            _ => {}
        }
    }

    /// nats-server's text for a connection's line: `addr - cid:N - "label" - message`.
    fn body(&self) -> String {
        let mut s = String::with_capacity(self.message.len() + self.rest.len() + 48);
        if let Some(a) = &self.addr {
            let _ = write!(s, "{a} - ");
        }
        if let Some(c) = &self.cid {
            let _ = write!(s, "cid:{c} - ");
        } else if let Some(r) = &self.rid {
            let _ = write!(s, "rid:{r} - ");
        }
        if let Some(l) = &self.client {
            s.push_str(&go_quote(l.as_bytes()));
            s.push_str(" - ");
        }
        s.push_str(&self.message);
        s.push_str(&self.rest);
        s
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            n @ ("message" | "cid" | "rid" | "addr" | "client") => self.set(n, value.to_string()),
            n => {
                let _ = write!(self.rest, " {n}={value:?}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            n @ ("message" | "cid" | "rid" | "addr" | "client") => self.set(n, format!("{value:?}")),
            n => {
                let _ = write!(self.rest, " {n}={value:?}");
            }
        }
    }
}

/// Go's `%q` of bytes: a double-quoted string with Go's escapes, as nats-server prints
/// payloads and client names.
///
/// ```
/// assert_eq!(natsu::logging::go_quote(b"hi \"you\"\r\n\x00\xff"), r#""hi \"you\"\r\n\x00\xff""#);
/// ```
pub fn go_quote(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    // Valid UTF-8 runs, each followed by the bytes that are not (str::Utf8Chunks is newer
    // than natsu's minimum Rust).
    let mut rest = b;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(v) => (v, &rest[rest.len()..]),
            Err(e) => {
                let (v, after) = rest.split_at(e.valid_up_to());
                let n = e.error_len().unwrap_or(after.len());
                // from_utf8 has just checked these bytes: this cannot fail.
                (std::str::from_utf8(v).unwrap_or_default(), &after[..n])
            }
        };
        rest = &rest[valid.len() + bad.len()..];
        for c in valid.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\x07' => s.push_str("\\a"),
                '\x08' => s.push_str("\\b"),
                '\x0c' => s.push_str("\\f"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                '\x0b' => s.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    let _ = write!(s, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = if (c as u32) < 0x10000 { write!(s, "\\u{:04x}", c as u32) } else { write!(s, "\\U{:08x}", c as u32) };
                }
                c => s.push(c),
            }
        }
        for &x in bad {
            let _ = write!(s, "\\x{x:02x}");
        }
    }
    s.push('"');
    s
}

fn label(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERR",
        Level::WARN => "WRN",
        Level::INFO => "INF",
        Level::DEBUG => "DBG",
        Level::TRACE => "TRC",
    }
}

// ---------------------------------------------------------------------------------------
// The subscriber
// ---------------------------------------------------------------------------------------

/// Formats events into nats-server's lines and sends them to [`OUT`]. Without `RUST_LOG`
/// it is also the filter, from [`DEBUG`] and [`TRACE`].
struct NatsLayer {
    /// False when an `EnvFilter` from `RUST_LOG` decides instead.
    filters: bool,
}

/// Whether natsu's settings let this callsite log: natsu's own events by `-D`/`-V`, other
/// crates' warnings and errors only.
fn allowed(meta: &Metadata<'_>) -> bool {
    let level = *meta.level();
    if !meta.target().starts_with("natsu") {
        return level <= Level::WARN;
    }
    match level {
        Level::TRACE => TRACE.load(Ordering::Relaxed),
        Level::DEBUG => DEBUG.load(Ordering::Relaxed),
        _ => true,
    }
}

impl<S: Subscriber> Layer<S> for NatsLayer {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if !self.filters || allowed(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        !self.filters || allowed(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        if !self.filters {
            return None;
        }
        Some(if TRACE.load(Ordering::Relaxed) {
            LevelFilter::TRACE
        } else if DEBUG.load(Ordering::Relaxed) {
            LevelFilter::DEBUG
        } else {
            LevelFilter::INFO
        })
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        writer::enqueue(*event.metadata().level(), f.body());
    }
}

/// Open the destination the options name, in nats-server's order: file, remote syslog,
/// local syslog, stderr.
fn open(opts: &LogOptions) -> Result<Dest, String> {
    if let Some(path) = &opts.log_file {
        return open_file(path).map(Dest::File).map_err(|e| format!("cannot open log file {path}: {e}"));
    }
    if let Some(url) = &opts.remote_syslog {
        return Syslog::open(parse_remote(url)?, 0).map(Dest::Syslog);
    }
    if opts.syslog {
        let paths = match std::env::var_os(SYSLOG_SOCKET_ENV) {
            Some(p) => vec![PathBuf::from(p)],
            None => ["/dev/log", "/var/run/syslog", "/var/run/log"].iter().map(PathBuf::from).collect(),
        };
        // LOG_DAEMON.
        return Syslog::open(SyslogTarget::Local(paths), 3 << 3).map(Dest::Syslog);
    }
    Ok(Dest::Stderr)
}

fn open_file(path: &str) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // nats-server's mode for its log file.
    std::fs::OpenOptions::new().create(true).append(true).mode(0o660).open(path)
}

/// Set `-D`/`-V` and make every callsite ask again.
fn set_levels(opts: &LogOptions) {
    DEBUG.store(opts.debug, Ordering::Relaxed);
    TRACE.store(opts.trace, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
}

/// Install the global subscriber and start the writer thread. Errors (an unwritable log
/// file, an unreachable syslog, a bad `-r` address) are returned, not panicked.
pub fn init(opts: &LogOptions) -> Result<(), String> {
    let dest = open(opts)?;
    writer::start(Output { dest, logtime: opts.logtime, pid: std::process::id() })?;
    *log_file() = opts.log_file.clone();
    let env = EnvFilter::try_from_default_env().ok();
    DEBUG.store(opts.debug, Ordering::Relaxed);
    TRACE.store(opts.trace, Ordering::Relaxed);
    let layer = NatsLayer { filters: env.is_none() };
    tracing_subscriber::registry().with(env).with(layer).try_init().map_err(|e| e.to_string())
}

/// Apply changed logging settings (a config reload): the destination, `-T`, and `-D`/`-V`
/// (unless `RUST_LOG` rules the levels). On an error the old settings stay. Lines logged
/// before the call go to the old destination.
///
/// Call it from any thread; not from a signal handler.
pub fn reconfigure(opts: &LogOptions) -> Result<(), String> {
    let dest = open(opts)?;
    writer::set_output(Output { dest, logtime: opts.logtime, pid: std::process::id() });
    *log_file() = opts.log_file.clone();
    set_levels(opts);
    Ok(())
}

/// Reopen the log file (`-l`) at its path, for log rotation on SIGUSR1: after
/// `mv natsu.log natsu.log.1`, lines go to a new `natsu.log` (those logged before the call
/// still go to the old one). Logs "File log re-opened" in the new file, or "File log re-open
/// ignored, not a file logger" when there is no file, as nats-server does. If the path
/// cannot be opened the old file stays and the error is logged to it and returned.
///
/// It opens the file itself and never waits for the writer thread, so a stalled
/// destination cannot hold the caller. Call it from any thread (the signal-waiting thread
/// in `main`); not from a signal handler.
pub fn reopen() -> std::io::Result<()> {
    let Some(path) = log_file().clone() else {
        tracing::info!("File log re-open ignored, not a file logger");
        return Ok(());
    };
    match open_file(&path) {
        Ok(file) => {
            writer::reopen_file(file);
            tracing::info!("File log re-opened");
            Ok(())
        }
        Err(e) => {
            tracing::error!("Could not re-open log file {path}: {e}");
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Protocol traces (-V)
// ---------------------------------------------------------------------------------------

/// Whether `-V` (or `RUST_LOG`) lets protocol traces through: one atomic load when off.
/// Check it before building anything only a trace needs.
#[inline]
pub fn trace_enabled() -> bool {
    tracing::enabled!(Level::TRACE)
}

/// nats-server's label for a client after CONNECT: `v<version>:<lang>:<name>` from the parts
/// it sent, empty ones left out (`"v1.2:go"`, `"only-a-name"`, or `""` for none). Compute it
/// once per CONNECT and pass it to the trace calls.
///
/// ```
/// assert_eq!(natsu::logging::client_label("me", "rust", "0.1"), "v0.1:rust:me");
/// assert_eq!(natsu::logging::client_label("", "go", "1.2"), "v1.2:go");
/// assert_eq!(natsu::logging::client_label("", "", ""), "");
/// ```
pub fn client_label(name: &str, lang: &str, version: &str) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(3);
    if !version.is_empty() {
        parts.push(format!("v{version}"));
    }
    for p in [lang, name] {
        if !p.is_empty() {
            parts.push(p.to_string());
        }
    }
    parts.join(":")
}

/// Trace an operation read from a client: `line` is the control line without its CRLF
/// (`SUB foo  1`, `CONNECT {...}`, `PING`), logged as nats-server does:
/// `[TRC] 127.0.0.1:54321 - cid:5 - <<- [SUB foo  1]`. `client` is the [`client_label`]
/// (or `""`).
#[inline]
pub fn trace_in(cid: u64, addr: Option<SocketAddr>, client: &str, line: &[u8]) {
    if trace_enabled() {
        trace_op(cid, addr, client, "<<-", line);
    }
}

/// Trace an operation sent to a client (`MSG foo 1 5`, `PONG`, `-ERR Unknown Protocol
/// Operation` — nats-server shows `-ERR` texts here without their quotes):
/// `[TRC] ... - ->> [MSG foo 1 5]`.
#[inline]
pub fn trace_out(cid: u64, addr: Option<SocketAddr>, client: &str, line: &[u8]) {
    if trace_enabled() {
        trace_op(cid, addr, client, "->>", line);
    }
}

/// Trace a payload read from a client (without its CRLF): `<<- MSG_PAYLOAD: ["hello"]`.
#[inline]
pub fn trace_payload(cid: u64, addr: Option<SocketAddr>, client: &str, payload: &[u8]) {
    if trace_enabled() {
        let q = go_quote(payload);
        tracing::trace!(cid, addr = addr.map(tracing::field::display), client, "<<- MSG_PAYLOAD: [{q}]");
    }
}

/// Trace something the server does for a client on its own, such as dropping its
/// subscriptions on close: `<-> [DELSUB 1]`.
#[inline]
pub fn trace_internal(cid: u64, addr: Option<SocketAddr>, client: &str, line: &[u8]) {
    if trace_enabled() {
        trace_op(cid, addr, client, "<->", line);
    }
}

#[cold]
fn trace_op(cid: u64, addr: Option<SocketAddr>, client: &str, arrow: &str, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    tracing::trace!(cid, addr = addr.map(tracing::field::display), client, "{arrow} [{text}]");
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

    #[test]
    fn syslog_stamps_are_gos() {
        let c = Civil { year: 2026, month: 11, day: 3, hour: 9, min: 5, sec: 7, micros: 1, offset: 0 };
        assert_eq!(bsd_stamp(c), "Nov  3 09:05:07");
        assert_eq!(bsd_stamp(Civil { day: 23, ..c }), "Nov 23 09:05:07");
        assert_eq!(rfc3339_secs(c), "2026-11-03T09:05:07Z");
        assert_eq!(rfc3339_secs(Civil { offset: 3600 + 1800, ..c }), "2026-11-03T09:05:07+01:30");
        assert_eq!(rfc3339_secs(Civil { offset: -5 * 3600, ..c }), "2026-11-03T09:05:07-05:00");
    }

    #[test]
    fn client_prefix_is_nats_servers() {
        let mut f = Fields { message: "Client connection created".into(), ..Default::default() };
        assert_eq!(f.body(), "Client connection created");
        f.set("cid", "4".into());
        assert_eq!(f.body(), "cid:4 - Client connection created");
        f.set("addr", "Some(127.0.0.1:35122)".into());
        assert_eq!(f.body(), "127.0.0.1:35122 - cid:4 - Client connection created");
        f.set("client", "v0.1:rust:me".into());
        assert_eq!(f.body(), "127.0.0.1:35122 - cid:4 - \"v0.1:rust:me\" - Client connection created");
        let mut g = Fields { message: "m".into(), ..Default::default() };
        g.set("addr", "None".into());
        g.set("client", String::new());
        g.set("rid", "2".into());
        assert_eq!(g.body(), "rid:2 - m");
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote(b"hello"), "\"hello\"");
        assert_eq!(go_quote(b"a\tb\x07\x1b\x7f"), "\"a\\tb\\a\\x1b\\x7f\"");
        assert_eq!(go_quote("é\u{85}".as_bytes()), "\"é\\u0085\"");
        assert_eq!(go_quote(b"\\"), "\"\\\\\"");
    }
}
