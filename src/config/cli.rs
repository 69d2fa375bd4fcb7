//! Command-line flags, spelled as nats-server's.
//!
//! nats-server parses flags with Go's `flag` package, so `-port 4222`, `--port 4222`,
//! `-p=4222` and `--port=4222` are all the same flag; scripts use every form. [`normalize`]
//! rewrites Go-style single-dash long flags into clap's `--long` form before clap sees them.

use std::ffi::OsString;

use clap::{Arg, ArgAction, Command};

use super::{parse_duration, parse_size};
use crate::server::Options;

/// Logging settings from the flags.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub debug: bool,
    pub trace: bool,
    /// Timestamps on log lines (nats-server's default is on).
    pub logtime: bool,
    pub log_file: Option<String>,
    /// Log to the local syslog (`-s`, `syslog: true`).
    pub syslog: bool,
    /// Log to a remote syslog (`-r udp://host:514`, `remote_syslog`).
    pub remote_syslog: Option<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Serve with these options; the strings are warnings to log once logging is up
    /// (unknown config keys, as nats-server warns).
    Run(Box<Options>, LogOptions, Vec<String>),
    /// `--signal CMD[=PID]`: send a signal to a running natsu and exit. The command is one of
    /// stop, quit, term, reopen, reload, ldm; the PID part is a pid or a pid file.
    Signal(String, Option<String>),
    /// Print this (help, version) and exit successfully.
    Print(String),
}

/// Rewrite Go-style flags: `-port=1` → `--port=1`, `-DV` → `-D -V`; values are left alone.
pub fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = args.into_iter();
    if let Some(prog) = args.next() {
        out.push(prog);
    }
    let mut value_next = false;
    for a in args {
        let s = match a.to_str() {
            Some(s) => s.to_string(),
            None => {
                out.push(a);
                continue;
            }
        };
        if value_next || !s.starts_with('-') || s.starts_with("--") || s == "-" {
            value_next = false;
            out.push(a);
            continue;
        }
        let body = &s[1..];
        let name = body.split('=').next().unwrap_or("");
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            out.push(a);
            continue;
        }
        if name.len() == 1 {
            out.push(a);
        } else if body == "DV" {
            out.push("-D".into());
            out.push("-V".into());
        } else {
            out.push(format!("-{s}").into());
        }
        // A flag given without `=` may take the next argument as its value (e.g. `-p -1`).
        value_next = !body.contains('=') && takes_value(name);
    }
    out
}

fn takes_value(name: &str) -> bool {
    !matches!(name, "D" | "V" | "DV" | "debug" | "trace" | "h" | "help" | "v" | "version" | "T" | "logtime")
}

fn command() -> Command {
    let val = |id: &'static str, long: &'static str, help: &'static str| {
        Arg::new(id).long(long).value_name(id).help(help).num_args(1).allow_negative_numbers(true)
    };
    let flag = |id: &'static str, short: char, long: &'static str, help: &'static str| {
        Arg::new(id).short(short).long(long).help(help).action(ArgAction::SetTrue)
    };
    Command::new("natsu")
        .about("A NATS-protocol message broker on io_uring, one executor per core")
        .disable_version_flag(true)
        .disable_help_flag(true)
        .override_usage("natsu [options]")
        .arg(val("addr", "addr", "Bind to host address (default: 0.0.0.0)").short('a').visible_alias("net"))
        .arg(val("port", "port", "Use port for clients (default: 4222; -1 for a random port)").short('p'))
        .arg(val("name", "name", "Server name (default: the server id)").short('n').visible_alias("server_name"))
        .arg(val("pid", "pid", "File to store the process id").short('P'))
        .arg(val("http_port", "http_port", "Use port for http monitoring (-1 for a random port)").short('m'))
        // nats-server spells it `-ms`; normalize() turns that into `--ms`.
        .arg(val("https_port", "https_port", "Use port for https monitoring (-1 for a random port)").alias("ms"))
        .arg(val("log", "log", "File to redirect log output").short('l'))
        .arg(
            Arg::new("logtime")
                .short('T')
                .long("logtime")
                .help("Timestamp log entries (default: true)")
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true"),
        )
        .arg(flag("debug", 'D', "debug", "Enable debugging output"))
        .arg(flag("trace", 'V', "trace", "Trace the raw protocol"))
        .arg(val("cores", "cores", "Executors to run, one per core (default: all cores)"))
        .arg(val("max_payload", "max_payload", "Largest message payload (default: 1MB)"))
        .arg(val("max_control_line", "max_control_line", "Longest protocol line (default: 4KB)"))
        .arg(val("max_connections", "max_connections", "Most client connections (default: 64K)"))
        .arg(val("max_subscriptions", "max_subscriptions", "Most subscriptions per connection (default: unlimited)"))
        .arg(val("max_pending", "max_pending", "Bytes queued for a client before it is a slow consumer (default: 64MB)"))
        .arg(val("ping_interval", "ping_interval", "Interval between server PINGs (default: 2m)"))
        .arg(val("ping_max", "ping_max", "Unanswered PINGs before a client is stale (default: 2)"))
        .arg(val("write_deadline", "write_deadline", "Longest a write to a client may block (default: 10s)"))
        .arg(flag("help", 'h', "help", "Show this message"))
        .arg(flag("version", 'v', "version", "Show version"))
}

/// Parse the command line (including the program name).
///
/// ```
/// use natsu::config::cli::{parse, Invocation};
/// let args = ["natsu", "-p", "4333", "-cores=2", "-DV"].map(Into::into);
/// match parse(args).unwrap() {
///     Invocation::Run(opts, log, _) => {
///         assert_eq!((opts.port, opts.cores), (4333, 2));
///         assert!(log.debug && log.trace);
///     }
///     _ => unreachable!(),
/// }
/// ```
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, String> {
    let m = command().try_get_matches_from(normalize(args)).map_err(|e| e.to_string())?;
    if m.get_flag("help") {
        return Ok(Invocation::Print(command().render_help().to_string()));
    }
    if m.get_flag("version") {
        return Ok(Invocation::Print(format!("natsu: v{} (nats-server {})", env!("CARGO_PKG_VERSION"), crate::protocol::info::COMPAT_VERSION)));
    }
    let mut o = Options::default();
    let get = |id: &str| m.get_one::<String>(id).map(String::as_str);
    if let Some(a) = get("addr") {
        o.host = a.to_string();
    }
    if let Some(p) = get("port") {
        let n: i64 = p.parse().map_err(|_| format!("invalid port {p:?}"))?;
        o.port = match n {
            -1 => 0,
            0..=65535 => n as u16,
            _ => return Err(format!("invalid port {p:?}")),
        };
    }
    o.server_name = get("name").map(str::to_string);
    if let Some(p) = get("http_port") {
        o.http_port = monitor_port(p, "-m")?;
    }
    if let Some(p) = get("https_port") {
        o.https_port = monitor_port(p, "-ms")?;
    }
    o.pid_file = get("pid").map(str::to_string);
    if let Some(c) = get("cores") {
        o.cores = match c.parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => n,
            _ => return Err(format!("invalid --cores {c:?}: a number from 1 to 64")),
        };
    }
    let size = |id: &str, into: &mut usize| -> Result<(), String> {
        if let Some(v) = get(id) {
            *into = parse_size(v).map_err(|e| format!("--{id}: {e}"))? as usize;
        }
        Ok(())
    };
    size("max_payload", &mut o.max_payload)?;
    size("max_control_line", &mut o.max_control_line)?;
    size("max_connections", &mut o.max_connections)?;
    size("max_subscriptions", &mut o.max_subscriptions)?;
    size("max_pending", &mut o.max_pending)?;
    if let Some(v) = get("ping_max") {
        o.ping_max = v.parse().map_err(|_| format!("--ping_max: invalid number {v:?}"))?;
    }
    if let Some(v) = get("ping_interval") {
        o.ping_interval = parse_duration(v).map_err(|e| format!("--ping_interval: {e}"))?;
    }
    if let Some(v) = get("write_deadline") {
        o.write_deadline = parse_duration(v).map_err(|e| format!("--write_deadline: {e}"))?;
    }
    let logtime = match get("logtime") {
        None => true,
        Some(v) => parse_bool(v).ok_or_else(|| format!("invalid boolean {v:?} for -T"))?,
    };
    let log = LogOptions { debug: m.get_flag("debug"), trace: m.get_flag("trace"), logtime, log_file: get("log").map(str::to_string), ..Default::default() };
    Ok(Invocation::Run(Box::new(o), log, Vec::new()))
}

/// A monitoring port as nats-server reads it: 0 leaves monitoring off, -1 picks a free port
/// (`Some(0)`), anything else is the port.
pub(crate) fn monitor_port(p: &str, flag: &str) -> Result<Option<u16>, String> {
    match p.parse::<i64>() {
        Ok(0) => Ok(None),
        Ok(-1) => Ok(Some(0)),
        Ok(n) if (1..=65535).contains(&n) => Ok(Some(n as u16)),
        _ => Err(format!("invalid port {p:?} for {flag}")),
    }
}

/// Go's flag package booleans.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<(Options, LogOptions), String> {
        let v = std::iter::once("natsu").chain(args.iter().copied()).map(OsString::from);
        match parse(v)? {
            Invocation::Run(o, l, _) => Ok((*o, l)),
            Invocation::Print(p) => Err(format!("printed {p}")),
            Invocation::Signal(s, p) => Err(format!("signal {s} {p:?}")),
        }
    }

    #[test]
    fn go_style_and_clap_style_are_the_same() {
        for args in [
            &["-p", "4333"][..],
            &["--port", "4333"],
            &["-port", "4333"],
            &["-p=4333"],
            &["--port=4333"],
            &["-port=4333"],
        ] {
            assert_eq!(run(args).unwrap().0.port, 4333, "{args:?}");
        }
        assert_eq!(run(&["-a", "127.0.0.1"]).unwrap().0.host, "127.0.0.1");
        assert_eq!(run(&["-addr=::1"]).unwrap().0.host, "::1");
        assert_eq!(run(&["--net", "127.0.0.2"]).unwrap().0.host, "127.0.0.2");
    }

    #[test]
    fn defaults_match_nats_server() {
        let (o, l) = run(&[]).unwrap();
        assert_eq!((o.host.as_str(), o.port, o.max_payload, o.max_control_line), ("0.0.0.0", 4222, 1 << 20, 4096));
        assert_eq!((o.max_connections, o.ping_max, o.max_pending), (65536, 2, 64 << 20));
        assert_eq!(o.ping_interval, std::time::Duration::from_secs(120));
        assert!(l.logtime && !l.debug && !l.trace);
    }

    #[test]
    fn logging_flags() {
        let (_, l) = run(&["-DV", "-T=false", "-l", "/tmp/x.log"]).unwrap();
        assert!(l.debug && l.trace && !l.logtime);
        assert_eq!(l.log_file.as_deref(), Some("/tmp/x.log"));
        let (_, l) = run(&["-D"]).unwrap();
        assert!(l.debug && !l.trace);
        let (_, l) = run(&["--trace", "-T"]).unwrap();
        assert!(l.trace && l.logtime);
    }

    #[test]
    fn limits_and_random_port() {
        let (o, _) = run(&["-p", "-1", "--max_payload=2KB", "-max_pending", "1MB", "--ping_interval=500ms", "--cores", "2"]).unwrap();
        assert_eq!((o.port, o.max_payload, o.max_pending, o.cores), (0, 2048, 1 << 20, 2));
        assert_eq!(o.ping_interval, std::time::Duration::from_millis(500));
    }

    #[test]
    fn monitoring_ports() {
        let (o, _) = run(&[]).unwrap();
        assert_eq!((o.http_port, o.https_port), (None, None));
        for args in [&["-m", "8222"][..], &["--http_port", "8222"], &["-http_port=8222"], &["-m=8222"]] {
            assert_eq!(run(args).unwrap().0.http_port, Some(8222), "{args:?}");
        }
        for args in [&["-ms", "8223"][..], &["--https_port", "8223"], &["-https_port=8223"], &["-ms=8223"]] {
            assert_eq!(run(args).unwrap().0.https_port, Some(8223), "{args:?}");
        }
        assert_eq!(run(&["-m", "-1"]).unwrap().0.http_port, Some(0));
        assert_eq!(run(&["-m", "0"]).unwrap().0.http_port, None);
        for args in [&["-m", "x"][..], &["-m", "70000"], &["-ms", "-2"]] {
            assert!(run(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        for args in [
            &["--bogus"][..],
            &["-routes", "nats://x:1"],
            &["-p", "notaport"],
            &["-p", "70000"],
            &["--cores", "0"],
            &["--max_payload", "big"],
            &["--ping_interval", "soon"],
            &["-T=maybe"],
            &["stray"],
        ] {
            assert!(run(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn help_and_version_print() {
        for a in ["-h", "--help", "-help", "-v", "--version", "-version"] {
            let v = ["natsu", a].map(OsString::from);
            assert!(matches!(parse(v), Ok(Invocation::Print(_))), "{a}");
        }
    }
}
