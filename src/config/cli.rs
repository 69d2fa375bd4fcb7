//! Command-line flags, spelled as nats-server's.
//!
//! nats-server parses flags with Go's `flag` package, so `-port 4222`, `--port 4222`,
//! `-p=4222` and `--port=4222` are all the same flag; scripts use every form. [`normalize`]
//! rewrites Go-style single-dash long flags into clap's `--long` form before clap sees them.

use std::ffi::OsString;

use clap::{Arg, ArgAction, Command};

use super::{file, parse_duration, parse_size, parse_spin};
use crate::server::options::Cluster;
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
    /// (durations written as bare numbers, as nats-server warns).
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
        } else if body == "DV" || body == "DVV" {
            out.push("-D".into());
            out.push("-V".into());
        } else if body == "VV" {
            // nats-server's verbose trace also traces its system account; natsu has none.
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
    if let Some((_, value)) = NOT_SERVED_FLAGS.iter().find(|(n, _)| *n == name) {
        return *value;
    }
    !matches!(
        name,
        "D" | "V"
            | "DV"
            | "VV"
            | "DVV"
            | "debug"
            | "trace"
            | "h"
            | "help"
            | "v"
            | "version"
            | "T"
            | "logtime"
            | "s"
            | "syslog"
            | "t"
            | "tls"
            | "tlsverify"
            | "help_tls"
            | "no_advertise"
    )
}

/// nats-server 2.9 flags natsu does not serve yet, and whether each takes a value. Given, they
/// are refused by name rather than ignored or called unknown: the flag is right, the feature
/// is what is missing.
const NOT_SERVED_FLAGS: &[(&str, bool)] = &[
    ("client_advertise", true),
    ("ports_file_dir", true),
    ("log_size_limit", true),
    ("profile", true),
    ("max_traced_msg_len", true),
    ("js", false),
    ("jetstream", false),
    ("sd", true),
    ("store_dir", true),
];

/// Every not-served flag given, one line each, as one error.
fn refuse_not_served(m: &clap::ArgMatches) -> Result<(), String> {
    let given: Vec<String> = NOT_SERVED_FLAGS.iter().filter(|(id, _)| m.contains_id(id)).map(|(id, _)| format!("--{id} is not supported by natsu yet")).collect();
    if given.is_empty() {
        Ok(())
    } else {
        Err(given.join("\n"))
    }
}

fn command() -> Command {
    let val = |id: &'static str, long: &'static str, help: &'static str| {
        Arg::new(id).long(long).value_name(id).help(help).num_args(1).allow_negative_numbers(true)
    };
    let flag = |id: &'static str, short: char, long: &'static str, help: &'static str| {
        Arg::new(id).short(short).long(long).help(help).action(ArgAction::SetTrue)
    };
    // A Go boolean flag: `--tls` is true, `--tls=false` false; never a separate value.
    let gobool = |id: &'static str, long: &'static str, help: &'static str| {
        Arg::new(id).long(long).help(help).num_args(0..=1).require_equals(true).default_missing_value("true").value_name("bool")
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
        .arg(val("https_port", "https_port", "Use port for https monitoring, also -ms (-1 for a random port)").alias("ms"))
        .arg(val("config", "config", "Configuration file (flags given too override it)").short('c'))
        .arg(gobool("test", "test", "Test the configuration file and exit").short('t'))
        // nats-server spells it `-sl`.
        .arg(val("signal", "signal", "Send signal to a natsu process, also -sl (ldm, stop, quit, term, reopen, reload); CMD=PID or CMD=PIDFILE picks the process").alias("sl").value_name("CMD[=PID]"))
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
        .arg(gobool("syslog", "syslog", "Log to syslog").short('s'))
        .arg(val("remote_syslog", "remote_syslog", "Syslog server address (udp://localhost:514)").short('r'))
        .arg(flag("debug", 'D', "debug", "Enable debugging output"))
        .arg(flag("trace", 'V', "trace", "Trace the raw protocol"))
        .arg(val("cores", "cores", "Executors to run, one per core (default: all cores)"))
        .arg(val("spin", "spin", "How long an idle executor polls before it sleeps (default: 50us, adapting up to 4x while wake-ups come soon after it sleeps; 0 never)"))
        .arg(gobool("colocate", "colocate", "Move a client that talks mostly with one other core to that core (default: true)"))
        .arg(val("max_payload", "max_payload", "Largest message payload (default: 1MB)"))
        .arg(val("max_control_line", "max_control_line", "Longest protocol line (default: 4KB)"))
        .arg(val("max_connections", "max_connections", "Most client connections (default: 64K)"))
        .arg(val("max_subscriptions", "max_subscriptions", "Most subscriptions per connection (default: unlimited)"))
        .arg(val("max_pending", "max_pending", "Bytes queued for a client before it is a slow consumer (default: 64MB)"))
        .arg(val("ping_interval", "ping_interval", "Interval between server PINGs (default: 2m)"))
        .arg(val("ping_max", "ping_max", "Unanswered PINGs before a client is stale (default: 2)"))
        .arg(val("write_deadline", "write_deadline", "Longest a write to a client may block (default: 10s)"))
        .arg(val("user", "user", "User required for connections"))
        .arg(val("pass", "pass", "Password required for connections"))
        .arg(val("auth", "auth", "Authorization token required for connections"))
        .arg(gobool("tls", "tls", "Enable TLS, do not verify clients (default: false)"))
        .arg(val("tlscert", "tlscert", "Server certificate file"))
        .arg(val("tlskey", "tlskey", "Private key for server certificate"))
        .arg(gobool("tlsverify", "tlsverify", "Enable TLS, verify client certificates"))
        .arg(val("tlscacert", "tlscacert", "Client certificate CA for verification"))
        .arg(flag("help", 'h', "help", "Show this message"))
        .arg(flag("version", 'v', "version", "Show version"))
        .arg(gobool("help_tls", "help_tls", "TLS help"))
        .arg(val("routes", "routes", "Routes to solicit and connect, comma-separated (nats://[user:pass@]host:port)").value_name("rurl-1, rurl-2"))
        .arg(val("cluster", "cluster", "Cluster URL for solicited routes (nats://[user:pass@]host:port; port -1 for a random one)").visible_alias("cluster_listen").value_name("cluster-url"))
        .arg(val("cluster_name", "cluster_name", "Cluster Name, if not set one will be dynamically generated"))
        .arg(gobool("no_advertise", "no_advertise", "Do not advertise known cluster information to clients"))
        .arg(val("cluster_advertise", "cluster_advertise", "Cluster URL to advertise to other servers (host:port, or host for the cluster port)"))
        .arg(val("connect_retries", "connect_retries", "For implicit routes, number of connect retries"))
        .args(NOT_SERVED_FLAGS.iter().map(|&(id, value)| (if value { val(id, id, "") } else { gobool(id, id, "") }).hide(true)))
        .after_help(not_served_help())
}

/// The refused flags for `--help`, wrapped to the width of the rest of it.
fn not_served_help() -> String {
    let mut out = String::from("Not supported by natsu yet, and refused: nats-server's");
    let mut width = out.len();
    for (i, (id, _)) in NOT_SERVED_FLAGS.iter().enumerate() {
        let word = format!(" --{id}{}", if i + 1 == NOT_SERVED_FLAGS.len() { "." } else { "," });
        if width + word.len() > 90 {
            out.push('\n');
            width = 0;
        }
        width += word.len();
        out.push_str(&word);
    }
    out
}

/// Parse the command line (including the program name). With `-c FILE` the file is read
/// first and the flags given override it, as nats-server does.
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
    let get = |id: &str| m.get_one::<String>(id).map(String::as_str);
    let gobool = |id: &str| -> Result<bool, String> {
        match get(id) {
            None => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| format!("invalid boolean {v:?} for --{id}")),
        }
    };
    if m.get_flag("help") {
        return Ok(Invocation::Print(command().render_help().to_string()));
    }
    if m.get_flag("version") {
        return Ok(Invocation::Print(format!("natsu: v{} (nats-server {})", env!("CARGO_PKG_VERSION"), crate::protocol::info::COMPAT_VERSION)));
    }
    if gobool("help_tls")? {
        return Ok(Invocation::Print(tls_help()));
    }
    if let Some(s) = get("signal") {
        let (cmd, pid) = match s.split_once('=') {
            Some((c, p)) => (c, Some(p.to_string())),
            None => (s, None),
        };
        return Ok(Invocation::Signal(cmd.to_string(), pid));
    }
    refuse_not_served(&m)?;
    let test = gobool("test")?;
    let config = get("config");
    let (mut o, mut log, warnings) = match config {
        Some(path) => super::file::load(path)?,
        None if test => return Err("must specify [-c, --config] option to check configuration file syntax".into()),
        None => (Options::default(), LogOptions { logtime: true, ..LogOptions::default() }, Vec::new()),
    };
    if let Some(a) = get("addr") {
        // Monitoring follows the client host unless the file set its own (as nats-server).
        if o.http_host == o.host {
            o.http_host = a.to_string();
        }
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
    if let Some(n) = get("name") {
        o.server_name = Some(n.to_string());
    }
    if let Some(p) = get("http_port") {
        o.http_port = monitor_port(p, "-m")?;
    }
    if let Some(p) = get("https_port") {
        o.https_port = monitor_port(p, "-ms")?;
    }
    if let Some(p) = get("pid") {
        o.pid_file = Some(p.to_string());
    }
    if let Some(c) = get("cores") {
        o.cores = match c.parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => n,
            _ => return Err(format!("invalid --cores {c:?}: a number from 1 to 64")),
        };
    }
    if let Some(v) = get("spin") {
        o.spin = parse_spin(v).map_err(|e| format!("--spin: {e}"))?;
    }
    if get("colocate").is_some() {
        o.colocate = gobool("colocate")?;
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
    auth_flags(&m, &mut o)?;
    tls_flags(&m, &mut o)?;
    cluster_flags(&m, &mut o)?;

    if let Some(v) = get("logtime") {
        log.logtime = parse_bool(v).ok_or_else(|| format!("invalid boolean {v:?} for -T"))?;
    }
    log.debug |= m.get_flag("debug");
    log.trace |= m.get_flag("trace");
    if let Some(l) = get("log") {
        log.log_file = Some(l.to_string());
    }
    if get("syslog").is_some() {
        log.syslog = gobool("syslog")?;
    }
    if let Some(r) = get("remote_syslog") {
        log.remote_syslog = Some(r.to_string());
    }
    if let (true, Some(path)) = (test, config) {
        // The warnings first, then nats-server's success line with natsu's name.
        let mut out: String = warnings.iter().map(|w| format!("natsu: warning: {w}\n")).collect();
        out.push_str(&format!("natsu: configuration file {path} is valid"));
        return Ok(Invocation::Print(out));
    }
    Ok(Invocation::Run(Box::new(o), log, warnings))
}

/// `--user`, `--pass`, `--auth` over the file's `authorization`; the same conflicts refused.
fn auth_flags(m: &clap::ArgMatches, o: &mut Options) -> Result<(), String> {
    let get = |id: &str| m.get_one::<String>(id).map(String::to_string);
    let (user, pass, token) = (get("user"), get("pass"), get("auth"));
    if user.is_none() && pass.is_none() && token.is_none() {
        return Ok(());
    }
    let a = &mut o.auth;
    a.user = user.or(a.user.take());
    a.password = pass.or(a.password.take());
    a.token = token.or(a.token.take());
    // nats-server's words.
    if !a.users.is_empty() && (a.user.is_some() || a.password.is_some()) {
        return Err("Can not have a single user/pass and a users array".into());
    }
    if !a.users.is_empty() && a.token.is_some() {
        return Err("Can not have a token and a users array".into());
    }
    if a.token.is_some() && (a.user.is_some() || a.password.is_some()) {
        return Err("Cannot have a user/pass and token".into());
    }
    Ok(())
}

/// `--tls`, `--tlscert`, `--tlskey`, `--tlsverify`, `--tlscacert` over the file's `tls`. Any
/// of them turns TLS on, `--tlsverify` included, as in nats-server.
fn tls_flags(m: &clap::ArgMatches, o: &mut Options) -> Result<(), String> {
    let get = |id: &str| m.get_one::<String>(id).map(String::as_str);
    let on = |id: &str| -> Result<bool, String> {
        match get(id) {
            None => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| format!("invalid boolean {v:?} for --{id}")),
        }
    };
    let (tls, verify) = (on("tls")?, on("tlsverify")?);
    let (cert, key, ca) = (get("tlscert"), get("tlskey"), get("tlscacert"));
    if !tls && !verify && cert.is_none() && key.is_none() && ca.is_none() {
        return Ok(());
    }
    let mut t = o.tls.take().unwrap_or_default();
    if let Some(c) = cert {
        t.cert_file = c.to_string();
    }
    if let Some(k) = key {
        t.key_file = k.to_string();
    }
    if let Some(c) = ca {
        t.ca_file = Some(c.to_string());
    }
    t.verify |= verify;
    // nats-server's words.
    if t.cert_file.is_empty() {
        return Err("TLS Server certificate must be present and valid".into());
    }
    if t.key_file.is_empty() {
        return Err("TLS Server private key must be present and valid".into());
    }
    o.tls = Some(t);
    Ok(())
}

/// `--cluster` (`--cluster_listen`), `--routes`, `--cluster_name`, `--no_advertise`,
/// `--connect_retries`, `--cluster_advertise` over the file's `cluster`, field by field.
fn cluster_flags(m: &clap::ArgMatches, o: &mut Options) -> Result<(), String> {
    let get = |id: &str| m.get_one::<String>(id).map(String::as_str);
    if let Some(u) = get("cluster") {
        let url = file::parse_listen_url(u).map_err(|why| format!("invalid --cluster URL {u:?}: {why}"))?;
        if url.user.is_some() && url.password.is_none() {
            // nats-server's words.
            return Err("expected cluster password to be set".into());
        }
        // A file's cluster block without a port is completed by the flag.
        let mut c = o.cluster.take().or_else(|| o.cluster_off.take()).unwrap_or_default();
        c.host = url.host;
        c.port = url.port;
        // As nats-server: the flag's credentials replace the file's, and a URL without
        // any clears them.
        c.user = url.user;
        c.password = url.password;
        o.cluster = Some(c);
    }
    if let Some(r) = get("routes") {
        let routes: Vec<&str> = r.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
        if o.cluster.is_none() && !routes.is_empty() {
            // nats-server's words.
            return Err("solicited routes require cluster capabilities, e.g. --cluster".into());
        }
        for u in &routes {
            file::parse_route_url(u).map_err(|why| format!("error parsing route url {u:?}: {why}"))?;
        }
        // An empty --routes clears the file's, as in nats-server.
        if let Some(c) = o.cluster.as_mut() {
            c.routes = routes.into_iter().map(str::to_string).collect();
        }
    }
    if let Some(n) = get("cluster_name") {
        file::check_cluster_name(n)?;
        need_cluster(o, "--cluster_name")?.name = Some(n.to_string());
    }
    if let Some(v) = get("no_advertise") {
        let b = parse_bool(v).ok_or_else(|| format!("invalid boolean {v:?} for --no_advertise"))?;
        need_cluster(o, "--no_advertise")?.no_advertise = b;
    }
    if let Some(v) = get("connect_retries") {
        let n: u32 = v.parse().map_err(|_| format!("--connect_retries: invalid number {v:?}"))?;
        need_cluster(o, "--connect_retries")?.connect_retries = n;
    }
    if let Some(a) = get("cluster_advertise") {
        file::advertise_host_port(a, 0)?;
        need_cluster(o, "--cluster_advertise")?.advertise = Some(a.to_string());
    }
    Ok(())
}

/// The cluster a cluster flag sets a field of. nats-server takes such a flag without a
/// cluster and forms none; natsu refuses it rather than drop it.
fn need_cluster<'o>(o: &'o mut Options, flag: &str) -> Result<&'o mut Cluster, String> {
    o.cluster.as_mut().ok_or_else(|| format!("{flag} needs a cluster: --cluster nats://host:port or a cluster block with a port"))
}

/// `--help_tls`: nats-server's TLS help, with the suites and groups natsu's TLS (rustls)
/// really offers instead of Go's.
fn tls_help() -> String {
    let provider = rustls::crypto::ring::default_provider();
    let suites: String = provider.cipher_suites.iter().map(|s| format!("    {:?}\n", s.suite())).collect();
    let groups: String = provider.kx_groups.iter().map(|g| format!("    {:?}\n", g.name())).collect();
    format!(
        "
TLS configuration is specified in the tls section of a configuration file:

e.g.

    tls {{
        cert_file:      \"./certs/server-cert.pem\"
        key_file:       \"./certs/server-key.pem\"
        ca_file:        \"./certs/ca.pem\"
        verify:         true
        timeout:        2
    }}

or with flags: --tls --tlscert FILE --tlskey FILE [--tlsverify --tlscacert FILE]

natsu speaks TLS 1.2 and 1.3 with these cipher suites, best first:
{suites}
and these key exchange groups:
{groups}
The same keys secure routes in the cluster block (cluster {{ tls {{ ... }} }}), where
the peer's certificate is always verified, as in nats-server.

nats-server's cipher_suites, curve_preferences, pinned_certs,
verify_cert_and_check_known_urls, insecure and connection_rate_limit keys are not
supported by natsu yet, nor verify_and_map in the cluster's tls: a file that sets one
is refused.
"
    )
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
        let (_, l) = run(&["-VV"]).unwrap();
        assert!(l.trace && !l.debug);
        let (o, l) = run(&["-DVV", "-p", "4333"]).unwrap();
        assert!(l.trace && l.debug && o.port == 4333);
    }

    #[test]
    fn limits_and_random_port() {
        let (o, _) = run(&["-p", "-1", "--max_payload=2KB", "-max_pending", "1MB", "--ping_interval=500ms", "--cores", "2"]).unwrap();
        assert_eq!((o.port, o.max_payload, o.max_pending, o.cores), (0, 2048, 1 << 20, 2));
        assert_eq!(o.ping_interval, std::time::Duration::from_millis(500));
        assert_eq!(o.spin, crate::server::options::DEFAULT_SPIN);
        assert_eq!(run(&["--spin", "200us"]).unwrap().0.spin, std::time::Duration::from_micros(200));
        assert_eq!(run(&["--spin=0"]).unwrap().0.spin, std::time::Duration::ZERO);
        assert!(o.colocate && run(&["--colocate"]).unwrap().0.colocate);
        assert!(!run(&["--colocate=false"]).unwrap().0.colocate);
        assert!(run(&["--colocate=maybe"]).is_err());
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
            &["-cluster", "x"],
            &["-p", "notaport"],
            &["-p", "70000"],
            &["--cores", "0"],
            &["--max_payload", "big"],
            &["--ping_interval", "soon"],
            &["--spin", "1s"],
            &["--spin", "soon"],
            &["-T=maybe"],
            &["stray"],
        ] {
            assert!(run(args).is_err(), "{args:?} accepted");
        }
    }

    /// A config file in a scratch directory, removed on drop.
    struct Conf(std::path::PathBuf);
    impl Conf {
        fn new(text: &str) -> Conf {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("natsu-cli-{}-{n}.conf", std::process::id()));
            std::fs::write(&p, text).unwrap();
            Conf(p)
        }
        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for Conf {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn printed(args: &[&str]) -> Result<String, String> {
        let v = std::iter::once("natsu").chain(args.iter().copied()).map(OsString::from);
        match parse(v)? {
            Invocation::Print(p) => Ok(p),
            _ => Err("did not print".into()),
        }
    }

    #[test]
    fn config_file_then_flags_override() {
        let f = Conf::new("port: 1\nhost: 127.0.0.1\nmax_payload: 2KB\ndebug: true\nlogtime: false\nserver_name: file\nhttp: 8222\nping_interval: 60\n");
        let v = std::iter::once("natsu").chain(["-c", f.path()]).map(OsString::from);
        let Ok(Invocation::Run(o, l, w)) = parse(v) else { panic!() };
        assert_eq!((o.port, o.host.as_str(), o.max_payload, o.server_name.as_deref(), o.http_port), (1, "127.0.0.1", 2048, Some("file"), Some(8222)));
        assert!(l.debug && !l.logtime);
        assert_eq!(o.config_file.as_deref(), Some(f.path()));
        assert_eq!(w.len(), 1);
        assert!(w[0].ends_with(":8:16: invalid use of field \"ping_interval\": ping_interval should be converted to a duration"), "{w:?}");
        // Flags given override the file; the rest of the file stays.
        let (o, l) = run(&["--config", f.path(), "-p", "-1", "-n", "flag", "-m", "9222", "-T=true", "--max_payload=4KB", "-a", "127.0.0.2"]).unwrap();
        assert_eq!((o.port, o.server_name.as_deref(), o.http_port, o.max_payload), (0, Some("flag"), Some(9222), 4096));
        assert_eq!((o.host.as_str(), o.http_host.as_str()), ("127.0.0.2", "127.0.0.2"));
        assert!(l.debug && l.logtime);
        // Go style: -c=FILE and -config FILE.
        assert_eq!(run(&[&format!("-c={}", f.path())]).unwrap().0.port, 1);
        assert_eq!(run(&["-config", f.path()]).unwrap().0.port, 1);
    }

    #[test]
    fn config_errors_are_all_returned() {
        let f = Conf::new("port: \"x\"\nmax_payload: 1 MB\n");
        let e = run(&["-c", f.path()]).unwrap_err();
        assert_eq!(e.lines().count(), 2, "{e}");
        assert!(e.lines().all(|l| l.starts_with(f.path())), "{e}");
        let e = run(&["-c", "/nonexistent/natsu.conf"]).unwrap_err();
        assert!(e.contains("No such file"), "{e}");
    }

    #[test]
    fn test_flag() {
        let f = Conf::new("port: 4333\nping_interval: 60\n");
        let out = printed(&["-c", f.path(), "-t"]).unwrap();
        assert!(out.ends_with(&format!("natsu: configuration file {} is valid", f.path())), "{out}");
        assert!(out.starts_with("natsu: warning: ") && out.contains("ping_interval should be converted to a duration"), "{out}");
        // An unknown key, or one natsu does not serve, fails the check.
        let unknown = Conf::new("port: 4333\nfoo: 1\ngateway {}\n");
        assert_eq!(printed(&["-c", unknown.path(), "-t"]).unwrap_err(), format!("{0}:2:1: unknown field \"foo\"\n{0}:3:1: \"gateway\" is not supported by natsu yet", unknown.path()));
        assert_eq!(printed(&["-t"]).unwrap_err(), "must specify [-c, --config] option to check configuration file syntax");
        let bad = Conf::new("port: [\n");
        assert!(printed(&["-t", "-c", bad.path()]).is_err());
        // A bad flag next to a good file fails the test too.
        assert!(printed(&["-t", "-c", f.path(), "-p", "x"]).is_err());
    }

    #[test]
    fn auth_flags() {
        let (o, _) = run(&["--user", "u", "--pass", "p"]).unwrap();
        assert_eq!((o.auth.user.as_deref(), o.auth.password.as_deref()), (Some("u"), Some("p")));
        let (o, _) = run(&["-auth", "tok"]).unwrap();
        assert_eq!(o.auth.token.as_deref(), Some("tok"));
        assert_eq!(run(&["--user", "u", "--auth", "t"]).unwrap_err(), "Cannot have a user/pass and token");
        let f = Conf::new("authorization { users: [ {user: a, password: b} ] }\n");
        assert_eq!(run(&["-c", f.path(), "--user", "u"]).unwrap_err(), "Can not have a single user/pass and a users array");
        let f = Conf::new("authorization { user: a, password: b }\n");
        let (o, _) = run(&["-c", f.path(), "--pass", "flagpass"]).unwrap();
        assert_eq!((o.auth.user.as_deref(), o.auth.password.as_deref()), (Some("a"), Some("flagpass")));
    }

    #[test]
    fn tls_flags() {
        let (o, _) = run(&["--tls", "--tlscert", "c.pem", "--tlskey", "k.pem"]).unwrap();
        let t = o.tls.unwrap();
        assert_eq!((t.cert_file.as_str(), t.key_file.as_str(), t.verify, t.ca_file), ("c.pem", "k.pem", false, None));
        // --tlsverify implies --tls.
        let (o, _) = run(&["-tlsverify", "-tlscert=c.pem", "-tlskey", "k.pem", "--tlscacert", "ca.pem"]).unwrap();
        let t = o.tls.unwrap();
        assert!(t.verify);
        assert_eq!(t.ca_file.as_deref(), Some("ca.pem"));
        assert_eq!(run(&["--tls"]).unwrap_err(), "TLS Server certificate must be present and valid");
        assert_eq!(run(&["--tlscert", "c.pem"]).unwrap_err(), "TLS Server private key must be present and valid");
        assert!(run(&["--tls=false"]).unwrap().0.tls.is_none());
        // Flags complete the file's block.
        let f = Conf::new("tls { cert_file: c.pem, key_file: k.pem, timeout: 5 }\n");
        let (o, _) = run(&["-c", f.path(), "--tlsverify", "--tlscacert", "ca.pem"]).unwrap();
        let t = o.tls.unwrap();
        assert_eq!((t.cert_file.as_str(), t.verify, t.ca_file.as_deref(), t.timeout), ("c.pem", true, Some("ca.pem"), std::time::Duration::from_secs(5)));
        let help = printed(&["--help_tls"]).unwrap();
        assert!(help.contains("tls {") && help.contains("cert_file") && help.contains("TLS13_AES_128_GCM_SHA256"), "{help}");
    }

    #[test]
    fn syslog_flags() {
        let (_, l) = run(&["-s", "-r", "udp://localhost:514"]).unwrap();
        assert!(l.syslog);
        assert_eq!(l.remote_syslog.as_deref(), Some("udp://localhost:514"));
        let (_, l) = run(&["--syslog", "--remote_syslog=udp://h:1"]).unwrap();
        assert!(l.syslog);
        assert_eq!(l.remote_syslog.as_deref(), Some("udp://h:1"));
        let f = Conf::new("syslog: true\n");
        assert!(!run(&["-c", f.path(), "-s=false"]).unwrap().1.syslog);
        // A boolean flag does not swallow the next argument.
        let (o, l) = run(&["-s", "-p", "4333"]).unwrap();
        assert!(l.syslog && o.port == 4333);
    }

    /// nats-server's flags natsu does not serve are refused by name, all of them at once,
    /// whatever else is right.
    #[test]
    fn flags_not_served_yet_are_errors() {
        let table: &[(&[&str], &str)] = &[
            (&["--client_advertise", "h:4222"], "--client_advertise is not supported by natsu yet"),
            (&["-js", "-p", "4333"], "--js is not supported by natsu yet"),
            (&["--store_dir", "/tmp/js", "--cluster", "nats://h:1", "-jetstream"], "--jetstream is not supported by natsu yet\n--store_dir is not supported by natsu yet"),
        ];
        for (args, want) in table {
            assert_eq!(run(args).unwrap_err(), *want, "{args:?}");
        }
        let help = printed(&["--help"]).unwrap();
        assert!(help.contains("Not supported by natsu yet, and refused:") && help.contains(" --client_advertise,") && help.contains(" --store_dir."), "{help}");
        assert!(help.contains("--routes <rurl-1, rurl-2>") && help.contains("--cluster <cluster-url>") && help.contains("cluster_listen"), "{help}");
    }

    /// The cluster flags, alone and over a file's cluster block.
    #[test]
    fn cluster_flags() {
        let (o, _) = run(&["--cluster", "nats://127.0.0.1:6222", "--routes", "nats://127.0.0.1:6223, nats-route://u:p@127.0.0.1:6224", "--cluster_name", "c1", "--no_advertise", "--connect_retries", "3", "--cluster_advertise", "10.0.0.1:7222", "-p", "4333"]).unwrap();
        let c = o.cluster.unwrap();
        assert_eq!((c.host.as_str(), c.port, c.name.as_deref(), c.no_advertise, c.connect_retries), ("127.0.0.1", 6222, Some("c1"), true, 3));
        assert_eq!((c.routes.as_slice(), c.advertise.as_deref()), (&["nats://127.0.0.1:6223".to_string(), "nats-route://u:p@127.0.0.1:6224".to_string()][..], Some("10.0.0.1:7222")));
        assert_eq!(o.port, 4333);
        // Go style, the -1 random port, credentials, --cluster_listen, no host.
        let c = run(&["-cluster", "nats://ru:rp@0.0.0.0:-1", "-routes=tls://h:1", "-no_advertise=true"]).unwrap().0.cluster.unwrap();
        assert_eq!((c.port, c.user.as_deref(), c.password.as_deref(), c.routes.as_slice(), c.no_advertise), (0, Some("ru"), Some("rp"), &["tls://h:1".to_string()][..], true));
        let c = run(&["--cluster_listen", "nats://:6222"]).unwrap().0.cluster.unwrap();
        assert_eq!((c.host.as_str(), c.port, c.user.as_deref()), ("0.0.0.0", 6222, None));
        // A boolean flag does not swallow the next argument.
        let (o, _) = run(&["--cluster", "nats://h:1", "--no_advertise", "-p", "4333"]).unwrap();
        assert!(o.cluster.unwrap().no_advertise && o.port == 4333);

        // Over the file: each flag replaces its field, the rest of the block stays.
        let f = Conf::new("cluster {\n name: file\n listen: 127.0.0.1:6222\n authorization { user: fu, password: fp }\n routes: [nats://127.0.0.1:6223]\n no_advertise: true\n connect_retries: 5\n}\n");
        let c = run(&["-c", f.path()]).unwrap().0.cluster.unwrap();
        assert_eq!((c.name.as_deref(), c.port, c.user.as_deref(), c.routes.len(), c.no_advertise, c.connect_retries), (Some("file"), 6222, Some("fu"), 1, true, 5));
        let c = run(&["-c", f.path(), "--cluster_name", "flag", "--routes", "nats://127.0.0.1:7000,nats://127.0.0.1:7001", "--no_advertise=false", "--connect_retries", "1"]).unwrap().0.cluster.unwrap();
        assert_eq!((c.name.as_deref(), c.host.as_str(), c.port, c.user.as_deref()), (Some("flag"), "127.0.0.1", 6222, Some("fu")));
        assert_eq!((c.routes.len(), c.no_advertise, c.connect_retries), (2, false, 1));
        // --cluster replaces the listen address and, as in nats-server, the credentials.
        let c = run(&["-c", f.path(), "--cluster", "nats://0.0.0.0:7222"]).unwrap().0.cluster.unwrap();
        assert_eq!((c.host.as_str(), c.port, c.user.as_deref(), c.password.as_deref(), c.name.as_deref()), ("0.0.0.0", 7222, None, None, Some("file")));
        // An empty --routes clears the file's (and needs no cluster).
        assert!(run(&["-c", f.path(), "--routes="]).unwrap().0.cluster.unwrap().routes.is_empty());
        assert!(run(&["--routes", ""]).unwrap().0.cluster.is_none());
        // Flags make the file's portless block (no cluster) a cluster, keeping its settings
        // (as nats-server: a TLS block there stays in force).
        let portless = Conf::new("cluster { name: c }\n");
        assert!(run(&["-c", portless.path()]).unwrap().0.cluster.is_none());
        let c = run(&["-c", portless.path(), "--cluster", "nats://127.0.0.1:-1"]).unwrap().0.cluster.unwrap();
        assert_eq!((c.port, c.name.as_deref()), (0, Some("c")));
    }

    /// The cluster flags' mistakes, in nats-server's words where it has some.
    #[test]
    fn cluster_flag_errors() {
        let table: &[(&[&str], &str)] = &[
            (&["--routes", "nats://127.0.0.1:1"], "solicited routes require cluster capabilities, e.g. --cluster"),
            (&["--cluster", "nats://u@127.0.0.1:6222"], "expected cluster password to be set"),
            (&["--cluster", "nats://127.0.0.1"], "invalid --cluster URL \"nats://127.0.0.1\": address 127.0.0.1: missing port in address"),
            (&["--cluster", "nats://127.0.0.1:abc"], "invalid --cluster URL \"nats://127.0.0.1:abc\": invalid port \":abc\" after host"),
            (&["--cluster", "nats://127.0.0.1:0"], "invalid --cluster URL \"nats://127.0.0.1:0\": invalid port \":0\" after host"),
            (&["--cluster", "127.0.0.1:6222"], "invalid --cluster URL \"127.0.0.1:6222\": expected scheme://host:port"),
            (&["--cluster", "http://127.0.0.1:6222"], "invalid --cluster URL \"http://127.0.0.1:6222\": the scheme must be nats://, nats-route:// or tls://"),
            (&["--cluster", "nats://h:1", "--routes", "h:2"], "error parsing route url \"h:2\": expected scheme://host:port"),
            (&["--cluster", "nats://h:1", "--routes", "nats://a:1,nats://b"], "error parsing route url \"nats://b\": address b: missing port in address"),
            (&["--cluster", "nats://h:1", "--cluster_name", "a b"], "cluster name \"a b\" must be non-empty and cannot contain spaces or new lines"),
            (&["--cluster", "nats://h:1", "--connect_retries", "x"], "--connect_retries: invalid number \"x\""),
            (&["--cluster", "nats://h:1", "--no_advertise=maybe"], "invalid boolean \"maybe\" for --no_advertise"),
            (&["--cluster", "nats://h:1", "--cluster_advertise", "a:b:c"], "invalid Cluster.Advertise value of a:b:c, err=address a:b:c: too many colons in address"),
            // nats-server takes these and forms no cluster; natsu refuses rather than drop them.
            (&["--cluster_name", "c1"], "--cluster_name needs a cluster: --cluster nats://host:port or a cluster block with a port"),
            (&["--no_advertise"], "--no_advertise needs a cluster: --cluster nats://host:port or a cluster block with a port"),
            (&["--connect_retries", "3"], "--connect_retries needs a cluster: --cluster nats://host:port or a cluster block with a port"),
            (&["--cluster_advertise", "h:1"], "--cluster_advertise needs a cluster: --cluster nats://host:port or a cluster block with a port"),
        ];
        for (args, want) in table {
            assert_eq!(run(args).unwrap_err(), *want, "{args:?}");
        }
        // The file's block with its mistakes, and -t accepting a good one with flags.
        let f = Conf::new("port: 4333\ncluster { port: 6222, pool_size: 3 }\n");
        assert_eq!(run(&["-c", f.path()]).unwrap_err(), format!("{}:2:23: \"pool_size\" is a nats-server 2.10 setting: natsu speaks the 2.9 route protocol, which has no route pools", f.path()));
        let f = Conf::new("cluster { port: 6222 }\n");
        let out = printed(&["-c", f.path(), "-t", "--routes", "nats://127.0.0.1:6223"]).unwrap();
        assert!(out.ends_with("is valid"), "{out}");
    }

    #[test]
    fn signal_flag() {
        let sig = |args: &[&str]| {
            let v = std::iter::once("natsu").chain(args.iter().copied()).map(OsString::from);
            match parse(v) {
                Ok(Invocation::Signal(c, p)) => (c, p),
                other => panic!("{args:?}: {other:?}"),
            }
        };
        assert_eq!(sig(&["--signal", "quit"]), ("quit".into(), None));
        assert_eq!(sig(&["-sl", "reload=123"]), ("reload".into(), Some("123".into())));
        assert_eq!(sig(&["-sl=ldm=/var/run/natsu.pid"]), ("ldm".into(), Some("/var/run/natsu.pid".into())));
        assert_eq!(sig(&["-signal", "stop"]), ("stop".into(), None));
    }

    #[test]
    fn help_and_version_print() {
        for a in ["-h", "--help", "-help", "-v", "--version", "-version"] {
            let v = ["natsu", a].map(OsString::from);
            assert!(matches!(parse(v), Ok(Invocation::Print(_))), "{a}");
        }
    }
}
