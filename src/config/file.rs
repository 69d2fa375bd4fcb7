//! The configuration file mapped onto [`Options`] and [`LogOptions`]: keys spelled as
//! nats-server's, each value's type and range checked, every mistake reported at once as
//! `file:line:col: reason`.
//!
//! The accounts, `no_auth_user` and `system_account` are read and checked across the whole
//! file in `accounts`, the mapping an import's `to` makes in `mapping`, the users and their
//! permissions in `users`, the `cluster` block and the route URL forms in `cluster`.
//!
//! No setting is ignored: an unknown key is an error in nats-server 2.9's words
//! (`file:line:col: unknown field "x"`), and a key nats-server 2.9 knows that natsu does not
//! serve yet is refused by name (`file:line:col: "gateway" is not supported by natsu yet`).
//! natsu's own `cores`, `spin` and `colocate` are the keys nats-server does not know.
//!
//! Loading only checks: TLS certificate files are read when the server starts.
//!
//! ```no_run
//! let (opts, log, warnings) = natsu::config::file::load("configs/minimal.conf").unwrap();
//! ```

mod accounts;
mod cluster;
mod leaf;
mod mapping;
mod operator;
mod users;
mod websocket;

pub use cluster::{advertise_host_port, parse_route_url, RouteUrl};
pub(crate) use cluster::{check_cluster_name, parse_listen_url};

use std::path::Path;
use std::time::Duration;

use super::cli::LogOptions;
use super::conf::{self, Entry, Kind, Map, Pos, Value};
use super::keys::{Block, Unknown, AUTHORIZATION, TLS, TOP};
use super::{parse_duration, parse_spin};
use crate::server::options::{Auth, Tls, User};
use crate::server::Options;

/// nats-server keeps sizes in 32-bit integers and refuses larger ones.
const MAX_INT32: i64 = i32::MAX as i64;

/// Read and check the file at `path`, with `$VAR` from the process environment. Ok gives the
/// options, the log options and the warnings to log; Err gives every error, one per line.
pub fn load(path: &str) -> Result<(Options, LogOptions, Vec<String>), String> {
    load_with_env(path, &|k| std::env::var(k).ok())
}

/// [`load`] with the environment as a lookup function.
pub fn load_with_env(path: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(Options, LogOptions, Vec<String>), String> {
    let (root, mut errors) = conf::parse_file_with_env(Path::new(path), env);
    let mut l = Loader::default();
    let mut o = Options::default();
    // nats-server's default; the file may turn it off.
    let mut log = LogOptions { logtime: true, ..LogOptions::default() };
    l.top(&root, &mut o, &mut log);
    l.finish(&mut o);
    l.finish_operator(&mut o);
    l.finish_websocket(&o);
    errors.append(&mut l.errors);
    if errors.is_empty() {
        o.config_file = Some(path.to_string());
        Ok((o, log, l.warnings))
    } else {
        Err(errors.join("\n"))
    }
}

#[derive(Default)]
struct Loader {
    errors: Vec<String>,
    warnings: Vec<String>,
    /// Every user with where it was written, those of `authorization` (account None) and of
    /// each account, in the order their blocks came: duplicates are checked across all of
    /// them once the file is read, as nats-server checks them.
    users: Vec<(Pos, User)>,
    /// The `accounts` block as read: imports name other accounts, so they are checked once
    /// the file is read.
    accounts: Vec<accounts::Read>,
    /// `no_auth_user` and `system_account` with where they were written: the users and
    /// accounts they name may come later in the file.
    no_auth_user: Option<(Pos, String)>,
    system_account: Option<(Pos, String)>,
    /// Where the `websocket` block is, for the checks made once the users are known.
    websocket_at: Option<Pos>,
    /// `operator`, `resolver` and `resolver_preload` as read.
    operator: operator::Read,
}

impl Loader {
    fn err(&mut self, pos: &Pos, msg: impl std::fmt::Display) {
        self.errors.push(format!("{pos}: {msg}"));
    }

    fn warn(&mut self, pos: &Pos, msg: impl std::fmt::Display) {
        self.warnings.push(format!("{pos}: {msg}"));
    }

    /// A key `block` does not serve: one nats-server 2.9 knows is "not supported by natsu
    /// yet", any other is unknown, both errors. Entries some `$VAR` used are variables, not
    /// options (as nats-server).
    fn unserved(&mut self, e: &Entry, block: &Block) {
        if e.used_as_variable {
            return;
        }
        if block.not_served.contains(&e.key.to_ascii_lowercase().as_str()) {
            return self.not_served(e);
        }
        // nats-server's words, block by block.
        match block.unknown {
            Unknown::Field => self.err(&e.pos, format_args!("unknown field {:?}", e.key)),
            Unknown::Tls => self.err(&e.pos, format_args!("error parsing tls config, unknown field [{:?}]", e.key)),
            Unknown::Permissions => self.err(&e.pos, format_args!("Unknown field {:?} parsing permissions", e.key)),
        }
    }

    fn not_served(&mut self, e: &Entry) {
        self.err(&e.pos, format_args!("{:?} is not supported by natsu yet", e.key));
    }

    fn wrong_type(&mut self, key: &str, v: &Value, want: &str) {
        self.err(&v.pos, format_args!("{key:?} must be {want}, got {}", v.describe()));
    }

    fn string(&mut self, key: &str, v: &Value) -> Option<String> {
        match &v.kind {
            Kind::Str(s) | Kind::Date(s) => Some(s.clone()),
            _ => {
                self.wrong_type(key, v, "a string");
                None
            }
        }
    }

    fn bool(&mut self, key: &str, v: &Value) -> Option<bool> {
        match v.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.wrong_type(key, v, "a boolean (true/false, yes/no, on/off)");
                None
            }
        }
    }

    fn int(&mut self, key: &str, v: &Value) -> Option<i64> {
        match v.kind {
            Kind::Int(n) => Some(n),
            _ => {
                self.wrong_type(key, v, "an integer");
                None
            }
        }
    }

    /// An integer in `lo..=hi`.
    fn int_in(&mut self, key: &str, v: &Value, lo: i64, hi: i64) -> Option<i64> {
        let n = self.int(key, v)?;
        if n < lo || n > hi {
            self.err(&v.pos, format_args!("{key:?} must be from {lo} to {hi}, got {n}"));
            return None;
        }
        Some(n)
    }

    /// A size (`1MB`, `65536`): not negative, and within nats-server's 32-bit limit.
    fn size(&mut self, key: &str, v: &Value) -> Option<usize> {
        let n = self.int(key, v)?;
        if n < 0 {
            self.err(&v.pos, format_args!("{key:?} must not be negative, got {n}"));
            return None;
        }
        if n > MAX_INT32 {
            // nats-server's words.
            self.err(&v.pos, format_args!("{key} value is too big"));
            return None;
        }
        Some(n as usize)
    }

    /// A duration: a string (`"2s"`, `"1m30s"`). A bare integer is seconds, with
    /// nats-server's warning that it should be a string.
    fn duration(&mut self, key: &str, v: &Value) -> Option<Duration> {
        match &v.kind {
            Kind::Str(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(&v.pos, format_args!("error parsing {key}: {e}"));
                    None
                }
            },
            // Unquoted `2m` lexes as the size 2,000,000; whoever wrote it meant two minutes
            // (nats-server would take two million seconds).
            Kind::Int(_) if v.text.ends_with(['m', 'M']) && v.text.len() > 1 => {
                let d = parse_duration(&v.text.to_ascii_lowercase()).ok()?;
                self.warn(&v.pos, format_args!("{key}: {} read as {}; write durations as strings, e.g. \"{}\"", v.text, fmt_duration(d), v.text));
                Some(d)
            }
            Kind::Int(n) if *n >= 0 && v.text.bytes().all(|b| b.is_ascii_digit()) => {
                self.warn(&v.pos, format_args!("invalid use of field {key:?}: {key} should be converted to a duration"));
                Some(Duration::from_secs(*n as u64))
            }
            _ => {
                self.wrong_type(key, v, "a duration string such as \"2s\"");
                None
            }
        }
    }

    /// Seconds as an integer or float (`timeout: 0.5`), or a duration string.
    fn seconds(&mut self, key: &str, v: &Value) -> Option<Duration> {
        let secs = match &v.kind {
            Kind::Int(n) => *n as f64,
            Kind::Float(f) => *f,
            Kind::Str(_) => return self.duration(key, v),
            _ => {
                self.wrong_type(key, v, "a number of seconds");
                return None;
            }
        };
        match Duration::try_from_secs_f64(secs) {
            Ok(d) => Some(d),
            Err(_) => {
                self.err(&v.pos, format_args!("{key:?} must be a positive number of seconds, got {}", v.text));
                None
            }
        }
    }

    fn map<'v>(&mut self, key: &str, v: &'v Value) -> Option<&'v Map> {
        match &v.kind {
            Kind::Map(m) => Some(m),
            _ => {
                self.wrong_type(key, v, "a map { ... }");
                None
            }
        }
    }

    /// `host:port`, `[v6]:port`, `:port` or a bare port number: the host (None when absent)
    /// and the port as written, from -1 to 65535; the caller gives 0 and -1 their meaning.
    fn host_port(&mut self, key: &str, v: &Value) -> Option<(Option<String>, i64)> {
        if let Kind::Int(_) = v.kind {
            return Some((None, self.int_in(key, v, -1, 65535)?));
        }
        let s = self.string(key, v)?;
        let Some((host, port)) = s.rsplit_once(':') else {
            // nats-server's words.
            self.err(&v.pos, format_args!("could not parse address string {s:?}"));
            return None;
        };
        let port = match port.parse::<i64>() {
            Ok(n) if (-1..=65535).contains(&n) => n,
            _ => {
                self.err(&v.pos, format_args!("invalid port in address {s:?}"));
                return None;
            }
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(((!host.is_empty()).then(|| host.to_string()), port))
    }

    fn top(&mut self, root: &Map, o: &mut Options, log: &mut LogOptions) {
        let mut http_host_set = false;
        for e in &root.entries {
            let v = &e.value;
            let key = e.key.to_ascii_lowercase();
            let k = key.as_str();
            match k {
                "listen" => {
                    if let Some((host, port)) = self.host_port(k, v) {
                        if let Some(h) = host {
                            o.host = h;
                        }
                        o.port = client_port(port);
                    }
                }
                "host" | "net" => {
                    if let Some(h) = self.string(k, v) {
                        o.host = h;
                    }
                }
                "port" => o.port = self.int_in(k, v, -1, 65535).map_or(o.port, client_port),
                "server_name" => o.server_name = self.string(k, v).or(o.server_name.take()),
                "http" | "https" => {
                    if let Some((host, port)) = self.host_port(k, v) {
                        if let Some(h) = host {
                            o.http_host = h;
                            http_host_set = true;
                        }
                        set_monitor_port(k, port, o);
                    }
                }
                "http_port" | "monitor_port" | "https_port" => {
                    if let Some(p) = self.int_in(k, v, -1, 65535) {
                        set_monitor_port(k, p, o);
                    }
                }
                "authorization" => {
                    if let Some(m) = self.map(k, v) {
                        o.auth = self.authorization(m, &v.pos);
                    }
                }
                "accounts" => self.accounts(v),
                "mappings" | "maps" => o.mappings = self.mappings(v),
                "operator" | "operators" | "roots" | "root" | "root_operators" | "root_operator" => self.operator(k, v),
                "resolver" | "account_resolver" | "accounts_resolver" => self.resolver(k, v),
                "resolver_preload" => self.resolver_preload(v),
                "resolver_pinned_accounts" => self.resolver_pinned_accounts(v),
                "no_auth_user" => {
                    if let Some(s) = self.string(k, v) {
                        // Empty is none, as in nats-server.
                        self.no_auth_user = (!s.is_empty()).then(|| (v.pos.clone(), s));
                    }
                }
                // nats-server's alias, `system`, too.
                "system_account" | "system" => {
                    if let Some(s) = self.string(k, v) {
                        // Empty is the default, as in nats-server.
                        self.system_account = (!s.is_empty()).then(|| (v.pos.clone(), s));
                    }
                }
                "tls" => {
                    if let Some(m) = self.map(k, v) {
                        o.tls = self.tls(m, &v.pos, &TLS);
                    }
                }
                "allow_non_tls" => o.allow_non_tls = self.bool(k, v).unwrap_or(o.allow_non_tls),
                "cluster" => {
                    if let Some(m) = self.map(k, v) {
                        match self.cluster(m, &v.pos) {
                            Ok(c) => o.cluster = Some(c),
                            Err(off) => o.cluster_off = Some(off),
                        }
                    }
                }
                "leafnodes" | "leaf" => {
                    if let Some(m) = self.map(k, v) {
                        o.leafnodes = Some(self.leafnodes(m));
                    }
                }
                "websocket" | "ws" => {
                    if let Some(m) = self.map(k, v) {
                        o.websocket = self.websocket(m, &v.pos);
                    }
                }
                "debug" => log.debug = self.bool(k, v).unwrap_or(log.debug),
                // nats-server's verbose trace also traces its system account; natsu has none.
                "trace" | "trace_verbose" => log.trace = self.bool(k, v).unwrap_or(log.trace),
                "logtime" => log.logtime = self.bool(k, v).unwrap_or(log.logtime),
                "syslog" => log.syslog = self.bool(k, v).unwrap_or(log.syslog),
                "log_file" | "logfile" => log.log_file = self.string(k, v).or(log.log_file.take()),
                "remote_syslog" => log.remote_syslog = self.string(k, v).or(log.remote_syslog.take()),
                "pid_file" | "pidfile" => o.pid_file = self.string(k, v).or(o.pid_file.take()),
                "max_connections" | "max_conn" => o.max_connections = self.size(k, v).unwrap_or(o.max_connections),
                "max_control_line" => o.max_control_line = self.size(k, v).unwrap_or(o.max_control_line),
                "max_payload" => o.max_payload = self.size(k, v).unwrap_or(o.max_payload),
                "max_pending" | "max_pending_size" => o.max_pending = self.size(k, v).unwrap_or(o.max_pending),
                "max_subscriptions" | "max_subs" => o.max_subscriptions = self.size(k, v).unwrap_or(o.max_subscriptions),
                "ping_interval" => o.ping_interval = self.duration(k, v).unwrap_or(o.ping_interval),
                "ping_max" => o.ping_max = self.int_in(k, v, 0, u32::MAX as i64).map_or(o.ping_max, |n| n as u32),
                "write_deadline" => o.write_deadline = self.duration(k, v).unwrap_or(o.write_deadline),
                "lame_duck_duration" => {
                    if let Some(d) = self.duration(k, v) {
                        // nats-server's floor and words.
                        if d < Duration::from_secs(30) {
                            self.err(&v.pos, format_args!("invalid lame_duck_duration of {}, minimum is 30 seconds", fmt_duration(d)));
                        } else {
                            o.lame_duck_duration = d;
                        }
                    }
                }
                "lame_duck_grace_period" => o.lame_duck_grace_period = self.duration(k, v).unwrap_or(o.lame_duck_grace_period),
                // natsu's own: executors, one per core.
                "cores" => o.cores = self.int_in(k, v, 1, 64).map_or(o.cores, |n| n as usize),
                // natsu's own: how long an idle executor polls before it sleeps.
                "spin" => match &v.kind {
                    Kind::Str(s) => match parse_spin(s) {
                        Ok(d) => o.spin = d,
                        Err(e) => self.err(&v.pos, format_args!("error parsing spin: {e}")),
                    },
                    Kind::Int(0) => o.spin = Duration::ZERO,
                    _ => self.wrong_type(k, v, "a duration string such as \"50us\""),
                },
                // natsu's own: move a client that talks mostly with one other core there.
                "colocate" => o.colocate = self.bool(k, v).unwrap_or(o.colocate),
                _ => self.unserved(e, &TOP),
            }
        }
        // As nats-server: monitoring listens where clients do unless told otherwise.
        if !http_host_set {
            o.http_host = o.host.clone();
        }
    }

    /// `authorization { ... }`; its users go to `self.users`, checked and moved into the
    /// options with the accounts' users once the file is read.
    fn authorization(&mut self, m: &Map, pos: &Pos) -> Auth {
        self.users.retain(|(_, u)| u.account.is_some());
        let mut a = Auth::default();
        let mut users_pos = None;
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "user" | "username" => a.user = self.string(&k, v).or(a.user.take()),
                "password" | "pass" => a.password = self.string(&k, v).or(a.password.take()),
                "token" => a.token = self.string(&k, v).or(a.token.take()),
                "timeout" => a.timeout = self.seconds(&k, v).unwrap_or(a.timeout),
                "users" => {
                    users_pos = Some(v.pos.clone());
                    // A second `users` or `authorization` replaces the first.
                    self.users.retain(|(_, u)| u.account.is_some());
                    let users = self.users(v, None);
                    self.users.extend(users);
                }
                _ => self.unserved(e, &AUTHORIZATION),
            }
        }
        // nats-server's checks and words.
        if users_pos.is_some() && (a.user.is_some() || a.password.is_some()) {
            self.err(pos, "Can not have a single user/pass and a users array");
        }
        if users_pos.is_some() && a.token.is_some() {
            self.err(pos, "Can not have a token and a users array");
        }
        if a.token.is_some() && (a.user.is_some() || a.password.is_some()) {
            self.err(pos, "Cannot have a user/pass and token");
        }
        a
    }

    /// A `tls { ... }` block: the clients' (`block` is `TLS`) or the routes' (`CLUSTER_TLS`,
    /// which refuses more of the keys).
    fn tls(&mut self, m: &Map, pos: &Pos, block: &Block) -> Option<Tls> {
        let mut t = Tls::default();
        let (mut cert, mut key) = (None, None);
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                k if block.not_served.contains(&k) => self.unserved(e, block),
                "cert_file" => cert = self.string(&k, v).or(cert),
                "key_file" => key = self.string(&k, v).or(key),
                "ca_file" => t.ca_file = self.string(&k, v).or(t.ca_file.take()),
                "verify" => t.verify = self.bool(&k, v).unwrap_or(t.verify),
                "verify_and_map" => t.verify_and_map = self.bool(&k, v).unwrap_or(t.verify_and_map),
                "timeout" => t.timeout = self.seconds(&k, v).unwrap_or(t.timeout),
                _ => self.unserved(e, block),
            }
        }
        // Mapping a certificate to a user verifies it first, whatever `verify` says (in
        // nats-server the later of the two keys wins, in its own order).
        t.verify |= t.verify_and_map;
        // nats-server's words. It takes an empty `tls {}` as no TLS; natsu calls it a mistake.
        match (cert, key) {
            (Some(c), Some(k)) => {
                t.cert_file = c;
                t.key_file = k;
                Some(t)
            }
            (None, _) => {
                self.err(pos, "missing 'cert_file' in TLS configuration");
                None
            }
            (_, None) => {
                self.err(pos, "missing 'key_file' in TLS configuration");
                None
            }
        }
    }
}

/// nats-server's client port: 0 is the default port, -1 a random one (0 in [`Options`]).
fn client_port(p: i64) -> u16 {
    match p {
        0 => 4222,
        -1 => 0,
        n => n as u16,
    }
}

/// Monitoring ports as nats-server reads them: 0 leaves monitoring off, -1 is a random port.
fn set_monitor_port(key: &str, p: i64, o: &mut Options) {
    let p = match p {
        0 => None,
        -1 => Some(0),
        n => Some(n as u16),
    };
    if key.starts_with("https") {
        o.https_port = p;
    } else {
        o.http_port = p;
    }
}

/// `90s` as `1m30s`, as Go prints durations.
fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{}ms", ms);
    }
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::options::{Account, Cluster, Export, ExportKind, Import, Permissions, ResponsePermission, ResponseType, SubjectPermission};

    /// A scratch directory removed on drop.
    struct Tmp(std::path::PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("natsu-file-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
        fn write(&self, name: &str, text: &str) -> String {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn env(k: &str) -> Option<String> {
        (k == "NATSU_TEST_PAYLOAD").then(|| "64KB".to_string())
    }

    /// Load `text` as the file `t.conf`; positions in messages start with "t.conf:".
    fn load_text(text: &str) -> Result<(Options, LogOptions, Vec<String>), String> {
        let t = Tmp::new("t");
        let p = t.write("t.conf", text);
        let dir = format!("{}/", t.0.display());
        load_with_env(&p, &env).map_err(|e| e.replace(&dir, "")).map(|(o, l, w)| (o, l, w.into_iter().map(|x| x.replace(&dir, "")).collect()))
    }

    fn ok(text: &str) -> (Options, LogOptions, Vec<String>) {
        load_text(text).unwrap_or_else(|e| panic!("{text:?}:\n{e}"))
    }

    fn errors(text: &str) -> Vec<String> {
        match load_text(text) {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(e) => e.lines().map(str::to_string).collect(),
        }
    }

    #[test]
    fn every_key() {
        let (o, log, warnings) = ok(r#"
            listen: "127.0.0.1:4333"
            server_name: "n1"
            http: "127.0.0.2:8222"
            https_port: 8223
            debug: true
            trace: yes
            logtime: off
            log_file: "/tmp/natsu.log"
            syslog: true
            remote_syslog: "udp://localhost:514"
            pid_file: "/tmp/natsu.pid"
            max_connections: 100
            max_control_line: 2KB
            max_payload: $NATSU_TEST_PAYLOAD
            max_pending: 10MB
            max_subscriptions: 50
            ping_interval: "30s"
            ping_max: 5
            write_deadline: "1m30s"
            lame_duck_duration: "45s"
            lame_duck_grace_period: "5s"
            cores: 2
            authorization { user: u, password: p, timeout: 1.5 }
            tls { cert_file: "./certs/server-cert.pem", key_file: "./certs/server-key.pem", ca_file: "./certs/ca.pem", verify: true, timeout: 3 }
            allow_non_tls: true
        "#);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((o.host.as_str(), o.port, o.server_name.as_deref()), ("127.0.0.1", 4333, Some("n1")));
        assert_eq!((o.http_host.as_str(), o.http_port, o.https_port), ("127.0.0.2", Some(8222), Some(8223)));
        assert!(log.debug && log.trace && !log.logtime && log.syslog);
        assert_eq!(log.log_file.as_deref(), Some("/tmp/natsu.log"));
        assert_eq!(log.remote_syslog.as_deref(), Some("udp://localhost:514"));
        assert_eq!(o.pid_file.as_deref(), Some("/tmp/natsu.pid"));
        assert_eq!((o.max_connections, o.max_control_line, o.max_payload, o.max_pending, o.max_subscriptions), (100, 2048, 65536, 10 << 20, 50));
        assert_eq!((o.ping_interval, o.ping_max, o.write_deadline), (Duration::from_secs(30), 5, Duration::from_secs(90)));
        assert_eq!((o.lame_duck_duration, o.lame_duck_grace_period), (Duration::from_secs(45), Duration::from_secs(5)));
        assert_eq!(o.cores, 2);
        assert_eq!((o.auth.user.as_deref(), o.auth.password.as_deref(), o.auth.timeout), (Some("u"), Some("p"), Duration::from_millis(1500)));
        let tls = o.tls.unwrap();
        assert_eq!((tls.cert_file.as_str(), tls.key_file.as_str(), tls.ca_file.as_deref()), ("./certs/server-cert.pem", "./certs/server-key.pem", Some("./certs/ca.pem")));
        assert!(tls.verify);
        assert_eq!(tls.timeout, Duration::from_secs(3));
        assert!(o.allow_non_tls && o.cluster.is_none());
        assert!(o.config_file.unwrap().ends_with("t.conf"));
        assert!(!ok("").0.allow_non_tls);
    }

    /// nats-server's other spellings of keys natsu serves.
    #[test]
    fn aliases() {
        let (o, log, _) = ok("logfile: /tmp/a.log\npidfile: /tmp/a.pid\nmonitor_port: 8222\ntrace_verbose: true\nmax_conn: 7\nmax_subs: 8\n");
        assert_eq!((log.log_file.as_deref(), o.pid_file.as_deref(), o.http_port), (Some("/tmp/a.log"), Some("/tmp/a.pid"), Some(8222)));
        assert!(log.trace);
        assert_eq!((o.max_connections, o.max_subscriptions), (7, 8));
        let (o, _, _) = ok("authorization { users: [ { username: a, pass: b, permission: { import: x, export: y } }, { user: c, authorization: { pub: z } } ] }");
        let p = o.auth.users[0].permissions.as_ref().unwrap();
        assert_eq!((p.publish.as_ref().unwrap().allow.as_slice(), p.subscribe.as_ref().unwrap().allow.as_slice()), (&["x".to_string()][..], &["y".to_string()][..]));
        assert_eq!(o.auth.users[1].permissions.as_ref().unwrap().publish.as_ref().unwrap().allow, ["z"]);
    }

    #[test]
    fn defaults_and_address_forms() {
        let (o, log, _) = ok("");
        assert_eq!((o.host.as_str(), o.port, o.http_port, o.tls.is_none(), o.cluster.is_none()), ("0.0.0.0", 4222, None, true, true));
        assert!(log.logtime && !log.debug);
        let port = |t: &str| ok(t).0.port;
        assert_eq!(port("port: 4333"), 4333);
        assert_eq!(port("port: -1"), 0);
        assert_eq!(port("port: 0"), 4222);
        assert_eq!(port("listen: 4333"), 4333);
        assert_eq!(port("listen: \":4333\""), 4333);
        let (o, _, _) = ok("listen: \"[::1]:4333\"");
        assert_eq!((o.host.as_str(), o.port), ("::1", 4333));
        let (o, _, _) = ok("net: 127.0.0.1\nhttp: 8222");
        assert_eq!((o.host.as_str(), o.http_host.as_str(), o.http_port), ("127.0.0.1", "127.0.0.1", Some(8222)));
        let (o, _, _) = ok("host: 127.0.0.1\nhttp_port: -1\nhttps: \"0.0.0.0:8443\"");
        assert_eq!((o.http_host.as_str(), o.http_port, o.https_port), ("0.0.0.0", Some(0), Some(8443)));
        assert_eq!(ok("http: 0").0.http_port, None);
        // Keys are case-insensitive, as nats-server's.
        assert_eq!(port("PORT: 4333"), 4333);
    }

    #[test]
    fn durations() {
        let (o, _, w) = ok("ping_interval: 5\nwrite_deadline: \"250ms\"");
        assert_eq!((o.ping_interval, o.write_deadline), (Duration::from_secs(5), Duration::from_millis(250)));
        assert_eq!(w, ["t.conf:1:16: invalid use of field \"ping_interval\": ping_interval should be converted to a duration"]);
        let (o, _, w) = ok("ping_interval: 2m");
        assert_eq!(o.ping_interval, Duration::from_secs(120));
        assert_eq!(w, ["t.conf:1:16: ping_interval: 2m read as 2m0s; write durations as strings, e.g. \"2m\""]);
        assert_eq!(ok("authorization { timeout: \"3s\" }").0.auth.timeout, Duration::from_secs(3));
        assert_eq!(ok("authorization { timeout: 2 }").0.auth.timeout, Duration::from_secs(2));
    }

    #[test]
    fn spin() {
        assert_eq!(ok("spin: \"200us\"").0.spin, Duration::from_micros(200));
        assert_eq!(ok("spin: 0").0.spin, Duration::ZERO);
        assert_eq!(ok("").0.spin, crate::server::options::DEFAULT_SPIN);
        assert!(ok("").0.colocate && !ok("colocate: false").0.colocate);
    }

    #[test]
    fn users_and_permissions() {
        let (o, _, w) = ok(r#"
            authorization {
              ADMIN = { publish: ">", subscribe: ">" }
              users: [
                { user: admin, password: "$2a$11$DRF7jNVtnr3ImK8FAVOvNe0HVDXHn6D7LRnxKNjNXrKNxVY0JmHcq", permissions: $ADMIN }
                { user: pubber, password: x, permissions: { pub: ["a.*", "b.>"], sub: "_INBOX.>" } }
                { user: limited, password: y, permissions: { publish: { allow: "x.>", deny: ["x.secret"] }, subscribe: { deny: "x.secret" } } }
                { user: worker, password: z, permissions: { subscribe: "jobs workers" } }
                { user: free, password: w }
              ]
            }
        "#);
        assert!(w.is_empty(), "{w:?}");
        let u = &o.auth.users;
        assert_eq!(u.iter().map(|u| u.user.as_str()).collect::<Vec<_>>(), ["admin", "pubber", "limited", "worker", "free"]);
        assert!(u[0].password.starts_with("$2a$11$"));
        let sp = |allow: &[&str], deny: &[&str]| Some(SubjectPermission { allow: allow.iter().map(|s| s.to_string()).collect(), deny: deny.iter().map(|s| s.to_string()).collect() });
        assert_eq!(u[0].permissions, Some(Permissions { publish: sp(&[">"], &[]), subscribe: sp(&[">"], &[]), responses: None }));
        assert_eq!(u[1].permissions, Some(Permissions { publish: sp(&["a.*", "b.>"], &[]), subscribe: sp(&["_INBOX.>"], &[]), responses: None }));
        assert_eq!(u[2].permissions, Some(Permissions { publish: sp(&["x.>"], &["x.secret"]), subscribe: sp(&[], &["x.secret"]), responses: None }));
        assert_eq!(u[3].permissions.as_ref().unwrap().subscribe, sp(&["jobs workers"], &[]));
        assert_eq!(u[4].permissions, None);
        assert!(o.auth.required());
        let (o, _, w) = ok(r#"
            authorization { users: [
              { user: a, password: x, permissions: { subscribe: "svc", allow_responses: true } }
              { user: b, password: x, permissions: { allow_responses: { max: 3, expires: "500ms" } } }
              { user: c, password: x, permissions: { publish_allow_responses: { max_msgs: -1, ttl: "-1s" } } }
              { user: d, password: x, permissions: { allow_responses: { max: 0 }, publish: "x" } }
              { user: e, password: x, permissions: { allow_responses: false } }
            ] }
        "#);
        assert!(w.is_empty(), "{w:?}");
        let r: Vec<_> = o.auth.users.iter().map(|u| u.permissions.as_ref().unwrap().responses).collect();
        let rp = |max, expires: Option<Duration>| Some(ResponsePermission { max, expires });
        assert_eq!(r, [rp(Some(1), Some(Duration::from_secs(120))), rp(Some(3), Some(Duration::from_millis(500))), rp(None, None), rp(Some(1), Some(Duration::from_secs(120))), None]);
        let table: &[(&str, &str)] = &[
            ("authorization { users: [{user: a, permissions: {allow_responses: 5}}] }", "t.conf:1:66: error parsing response permissions, expected a boolean or a map"),
            ("authorization { users: [{user: a, permissions: {allow_responses: {max: 1, foo: 2}}}] }", "t.conf:1:75: Unknown field \"foo\" parsing permissions"),
            ("authorization { users: [{user: a, permissions: {allow_responses: {expires: 5}}}] }", "t.conf:1:76: error parsing expires, not a duration string"),
            ("authorization { users: [{user: a, permissions: {allow_responses: {expires: \"soon\"}}}] }", "t.conf:1:76: error parsing expires: invalid duration \"soon\""),
        ];
        check_errors(table);
        let (o, _, _) = ok("authorization { token: \"s3cr3t\" }");
        assert_eq!(o.auth.token.as_deref(), Some("s3cr3t"));
    }

    /// A fresh NKey user's public key (its seed is dropped).
    fn user_nkey() -> String {
        nkeys::KeyPair::new_user().public_key()
    }

    /// nats-server 2.9's account forms and what each means.
    #[test]
    fn accounts_users_exports_imports() {
        let (ua, ub) = (user_nkey(), user_nkey());
        let (o, _, w) = ok(&format!(
            r#"
            authorization {{ users: [{{user: g, password: p}}, {{nkey: {ua}, permissions: {{subscribe: "g.>"}}}}] }}
            accounts {{
              A {{
                users: [{{user: a, password: b, permissions: {{publish: "x"}}}}, {{nkey: {ub}}}]
                exports: [{{stream: "foo.>"}}, {{service: "req.*", accounts: [B], response_type: Stream}}, {{service: "c", response: CHUNKED}}]
              }}
              B: {{
                users = [{{username: bb, pass: c}}]
                imports: [
                  {{stream: {{account: A, subject: "foo.>"}}, prefix: "a."}}
                  {{stream: {{account: A, subject: "foo.x"}}, to: "y"}}
                  {{stream: {{account: A, subject: "foo.*.*"}}, to: "z.$1.{{{{wildcard(2)}}}}"}}
                  {{service: {{account: A, subject: "req.x"}}, to: "a.req"}}
                  {{service: {{account: A, subject: "c"}}, to: ""}}
                ]
              }}
              C = {{}}
            }}
            no_auth_user: g
            system: C
        "#
        ));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.accounts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["A", "B", "C"]);
        let export = |kind, subject: &str, accounts: Option<&[&str]>, response_type| Export { kind, subject: subject.into(), accounts: accounts.map(|a| a.iter().map(|s| s.to_string()).collect()), response_type };
        assert_eq!(
            o.accounts[0].exports,
            [
                export(ExportKind::Stream, "foo.>", None, ResponseType::Singleton),
                export(ExportKind::Service, "req.*", Some(&["B"]), ResponseType::Stream),
                export(ExportKind::Service, "c", None, ResponseType::Chunked),
            ]
        );
        let import = |kind, subject: &str, prefix: Option<&str>, to: Option<&str>| Import { kind, account: "A".into(), subject: subject.into(), prefix: prefix.map(Into::into), to: to.map(Into::into) };
        assert_eq!(
            o.accounts[1].imports,
            [
                // `a.` and `a` are one prefix; wildcard references are the `*` they stand for.
                import(ExportKind::Stream, "foo.>", Some("a"), None),
                import(ExportKind::Stream, "foo.x", None, Some("y")),
                import(ExportKind::Stream, "foo.*.*", None, Some("z.*.*")),
                import(ExportKind::Service, "req.x", None, Some("a.req")),
                import(ExportKind::Service, "c", None, None),
            ]
        );
        assert!(o.accounts[2].exports.is_empty() && o.accounts[2].imports.is_empty());
        let who: Vec<(&str, Option<&str>, Option<&str>)> = o.auth.users.iter().map(|u| (u.user.as_str(), u.nkey.as_deref(), u.account.as_deref())).collect();
        assert_eq!(who, [("g", None, None), ("", Some(ua.as_str()), None), ("a", None, Some("A")), ("", Some(ub.as_str()), Some("A")), ("bb", None, Some("B"))]);
        assert_eq!(o.auth.users[1].permissions.as_ref().unwrap().subscribe.as_ref().unwrap().allow, ["g.>"]);
        assert_eq!(o.auth.users[2].permissions.as_ref().unwrap().publish.as_ref().unwrap().allow, ["x"]);
        assert_eq!((o.auth.no_auth_user.as_deref(), o.system_account.as_str()), (Some("g"), "C"));
        assert!(o.auth.required());

        // Names only; the defaults.
        let (o, _, _) = ok("accounts: [A, B]");
        assert_eq!(o.accounts, [Account { name: "A".into(), ..Account::default() }, Account { name: "B".into(), ..Account::default() }]);
        assert!(!o.auth.required());
        assert_eq!((o.system_account.as_str(), o.auth.no_auth_user.as_deref()), ("$SYS", None));
        // Empty is the default; nats-server takes `$G`; the later of two blocks wins.
        assert_eq!(ok("system_account: \"\"\nno_auth_user: \"\"").0.system_account, "$SYS");
        assert_eq!(ok("system_account: \"$G\"").0.system_account, "$G");
        assert_eq!(ok("system_account: \"$SYS\"").0.system_account, "$SYS");
        let (o, _, _) = ok("accounts { A { users: [{user: a, password: b}] } }\naccounts { B {} }\nauthorization { users: [{user: a, password: c}] }");
        assert_eq!((o.accounts.len(), o.auth.users.len(), o.auth.users[0].account.as_deref()), (1, 1, None));
    }

    #[test]
    fn verify_and_map() {
        let tls = |t: &str| ok(&format!("tls {{ cert_file: c, key_file: k, {t} }}")).0.tls.unwrap();
        let t = tls("verify_and_map: true");
        assert!(t.verify && t.verify_and_map);
        let t = tls("verify_and_map: true, verify: false");
        assert!(t.verify && t.verify_and_map);
        let t = tls("verify_and_map: false");
        assert!(!t.verify && !t.verify_and_map);
        assert_eq!(
            errors("tls { cert_file: c, key_file: k, verify_and_map: 1 }"),
            ["t.conf:1:50: \"verify_and_map\" must be a boolean (true/false, yes/no, on/off), got integer 1"]
        );
    }

    /// nats-server 2.9's refusals of accounts, NKey users, no_auth_user and system_account,
    /// in its words (`nats-server -t`, or when it starts); natsu's own where it refuses more.
    #[test]
    fn account_errors() {
        let (u, acct) = (user_nkey(), nkeys::KeyPair::new_account().public_key());
        let a = "A { exports: [{stream: \"s.>\"}, {service: \"r.>\"}, {stream: \"p.>\", accounts: [C]}] }, C {}";
        let imp = |i: &str| format!("accounts {{ {a}, B {{ imports: [{i}] }} }}");
        let table: Vec<(String, String)> = vec![
            ("accounts { \"$G\" { } }".into(), "t.conf:1:13: \"$G\" is a Reserved Account".into()),
            ("accounts [\"$G\"]".into(), "t.conf:1:11: \"$G\" is a Reserved Account".into()),
            ("accounts [A, A]".into(), "t.conf:1:14: Duplicate Account Entry: A".into()),
            ("accounts { A: 1 }".into(), "t.conf:1:12: Expected map entries for accounts".into()),
            ("accounts: 1".into(), "t.conf:1:11: \"accounts\" must be a map of accounts or an array of account names, got integer 1".into()),
            ("accounts { \"a b\" {} }".into(), "t.conf:1:13: account name \"a b\" must be non-empty and cannot contain spaces or new lines".into()),
            ("accounts { A { bogus: 1 } }".into(), "t.conf:1:16: unknown field \"bogus\"".into()),
            ("accounts { A { exports: {stream: x} } }".into(), "t.conf:1:25: \"exports\" must be an array, got map".into()),
            // Users: unique across authorization and every account, names and NKeys alike.
            ("accounts { A { users: [{user: a, password: b}] }, B { users: [{user: a, password: c}] } }".into(), "t.conf:1:63: Duplicate user \"a\" detected".into()),
            ("authorization { users: [{user: a, password: b}] }\naccounts { A { users: [{user: a, password: b}] } }".into(), "t.conf:2:24: Duplicate user \"a\" detected".into()),
            ("authorization { users: [{user: a, password: x}, {user: a, password: y}] }".into(), "t.conf:1:49: Duplicate user \"a\" detected".into()),
            (format!("authorization {{ users: [{{user: {u}, password: x}}, {{nkey: {u}}}] }}"), format!("t.conf:1:104: Duplicate nkey \"{u}\" detected")),
            (format!("accounts {{ A {{ users: [{{nkey: {u}}}] }}, B {{ users: [{{nkey: {u}}}] }} }}"), format!("t.conf:1:105: Duplicate nkey \"{u}\" detected")),
            ("authorization { user: x, password: y }\naccounts { A { users: [{user: a, password: b}] } }".into(), "t.conf:2:23: Can not have a single user/pass and accounts".into()),
            ("authorization { token: x }\naccounts { A { users: [{user: a, password: b}] } }".into(), "t.conf:2:23: Can not have a token and accounts".into()),
            (format!("authorization {{ users: [{{nkey: {u}, password: x}}] }}"), "t.conf:1:25: Nkey users do not take usernames or passwords".into()),
            (format!("authorization {{ users: [{{nkey: {u}, user: x}}] }}"), "t.conf:1:25: Nkey users do not take usernames or passwords".into()),
            (format!("authorization {{ users: [{{nkey: {acct}}}] }}"), "t.conf:1:25: Not a valid public nkey for a user".into()),
            ("authorization { users: [{nkey: UABC}] }".into(), "t.conf:1:25: Not a valid public nkey for a user".into()),
            ("accounts { A { users: [{nkey: 1}] } }".into(), "t.conf:1:31: \"nkey\" must be a string, got integer 1".into()),
            ("authorization { users: [{user: a, password: b, account: X}] }".into(), "t.conf:1:48: unknown field \"account\"".into()),
            // no_auth_user and system_account, as nats-server checks them when it starts.
            ("no_auth_user: a".into(), "t.conf:1:15: no_auth_user: \"a\" present, but users are not defined".into()),
            ("no_auth_user: a\nauthorization { user: a, password: x }".into(), "t.conf:1:15: no_auth_user: \"a\" present, but users are not defined".into()),
            ("no_auth_user: a\nauthorization { users: [{user: b, password: x}] }".into(), "t.conf:1:15: no_auth_user: \"a\" not present as user in authorization block or account configuration".into()),
            (format!("no_auth_user: {u}\nauthorization {{ users: [{{nkey: {u}}}, {{user: a, password: b}}] }}"), format!("t.conf:1:15: no_auth_user: \"{u}\" not present as user in authorization block or account configuration")),
            ("no_auth_user: 1".into(), "t.conf:1:15: \"no_auth_user\" must be a string, got integer 1".into()),
            ("system_account: X".into(), "t.conf:1:17: error resolving system account: account missing".into()),
            ("system: Y\naccounts { X {} }".into(), "t.conf:1:9: error resolving system account: account missing".into()),
            ("system_account: 1".into(), "t.conf:1:17: \"system_account\" must be a string, got integer 1".into()),
            // Exports.
            ("accounts { A { exports: [\"a\"] } }".into(), "t.conf:1:26: Export Items should be a map with type entry, got string \"a\"".into()),
            ("accounts { A { exports: [{stream: 1}] } }".into(), "t.conf:1:35: \"stream\" must be a string, got integer 1".into()),
            ("accounts { A { exports: [{stream: x, service: y}] } }".into(), "t.conf:1:38: Detected service \"y\" but already saw a stream".into()),
            ("accounts { A { exports: [{service: x, response_type: bogus}] } }".into(), "t.conf:1:54: Unknown response type: \"bogus\"".into()),
            ("accounts { A { exports: [{response_type: stream, stream: x}] } }".into(), "t.conf:1:27: Detected response directive on non-service".into()),
            ("accounts { A { exports: [{stream: x, accounts: [B]}] } }".into(), "t.conf:1:26: \"B\" account not defined for stream export".into()),
            ("accounts { A { exports: [{service: x, accounts: [B]}] } }".into(), "t.conf:1:26: \"B\" account not defined for service export".into()),
            ("accounts { A { exports: [{stream: x, accounts: B}] } }".into(), "t.conf:1:48: \"accounts\" must be an array of account names, got string \"B\"".into()),
            ("accounts { A { exports: [{stream: x, bogus: 1}] } }".into(), "t.conf:1:38: unknown field \"bogus\"".into()),
            // natsu refuses these; nats-server takes them.
            ("accounts { A { exports: [{stream: x, accounts: []}] } }".into(), "t.conf:1:48: an empty \"accounts\" list makes the export public in nats-server: leave it out for a public export, or name the accounts".into()),
            ("accounts { A { exports: [{accounts: [A]}] } }".into(), "t.conf:1:26: an export needs a \"stream\" or a \"service\" subject".into()),
            ("accounts { A { exports: [{stream: \"a..b\"}] } }".into(), "t.conf:1:35: subject \"a..b\" is not a valid subject".into()),
            // Imports.
            (imp("{stream: {account: Z, subject: x}}"), "t.conf:1:116: \"Z\" account not defined for stream import".into()),
            (imp("{service: {account: Z, subject: x}}"), "t.conf:1:116: \"Z\" account not defined for service import".into()),
            (imp("{stream: {account: A, subject: \"r.x\"}}"), "t.conf:1:116: Error adding stream import \"r.x\": stream import not authorized (account \"A\" does not export it to account \"B\")".into()),
            (imp("{service: {account: A, subject: \"s.x\"}}"), "t.conf:1:116: Error adding service import \"s.x\": service import not authorized (account \"A\" does not export it to account \"B\")".into()),
            (imp("{stream: {account: A, subject: \"p.x\"}}"), "t.conf:1:116: Error adding stream import \"p.x\": stream import not authorized (account \"A\" does not export it to account \"B\")".into()),
            (imp("{stream: {account: A, subject: \"s\"}}"), "t.conf:1:116: Error adding stream import \"s\": stream import not authorized (account \"A\" does not export it to account \"B\")".into()),
            (imp("{stream: {account: B, subject: \"s.x\"}}"), "t.conf:1:116: Error adding stream import \"s.x\": stream import not authorized (account \"B\" does not export it to account \"B\")".into()),
            (imp("{stream: {account: A, subject: \"s.x\"}, prefix: p, to: t}"), "t.conf:1:116: Stream import can not have a 'prefix' and a 'to' property".into()),
            (imp("{stream: {account: A, subject: \"s.x\"}, prefix: \"p.*\"}"), "t.conf:1:163: Error adding stream import \"s.x\": stream import prefix can not contain wildcard tokens".into()),
            (imp("{stream: {account: A, subject: \"s.*\"}, to: t}"), "t.conf:1:159: Error adding stream import \"s.*\": failed to create mapping transform for stream import subject \"s.*\" to \"t\": invalid mapping destination: not using all of the token wildcard(s) in t".into()),
            (imp("{service: {account: A, subject: \"r.*\"}, to: t}"), "t.conf:1:160: Error adding service import \"r.*\": failed to create mapping transform for service import subject \"t\" to \"r.*\": invalid mapping destination: not using all of the token wildcard(s) in t".into()),
            (imp("{service: {account: A, subject: \"r.x\"}, to: \"a..b\"}"), "t.conf:1:160: Error adding service import \"r.x\": sublist: invalid subject".into()),
            (imp("{stream: {account: A}}"), "t.conf:1:125: Expect an account name and a subject".into()),
            (imp("{stream: \"s.x\"}"), "t.conf:1:125: Stream entry should be an account map, got string \"s.x\"".into()),
            (imp("{stream: {account: A, subject: \"s.x\"}, service: {account: A, subject: \"r.x\"}}"), "t.conf:1:155: Detected service but already saw a stream".into()),
            (imp("{stream: {account: A, subject: \"s.x\", bogus: 1}}"), "t.conf:1:154: unknown field \"bogus\"".into()),
            (imp("{stream: {account: A, subject: \"s.x\"}, bogus: 1}"), "t.conf:1:155: unknown field \"bogus\"".into()),
            ("accounts { A { imports: [\"a\"] } }".into(), "t.conf:1:26: Import Items should be a map with type entry, got string \"a\"".into()),
            // natsu refuses these; nats-server takes them.
            (imp("{prefix: p}"), "t.conf:1:116: an import needs a \"stream\" or a \"service\"".into()),
            (imp("{service: {account: A, subject: \"r.x\"}, prefix: p}"), "t.conf:1:164: a service import takes no 'prefix' (nats-server would drop it): use 'to'".into()),
            (imp("{stream: {account: A, subject: \"s.x\"}, prefix: \"a..b\"}"), "t.conf:1:163: prefix \"a..b\" is not a valid subject prefix".into()),
            (imp("{stream: {account: A, subject: \"s.x\"}, to: \"a..b\"}"), "t.conf:1:159: Error adding stream import \"s.x\": 'to' \"a..b\" is not a valid subject".into()),
            (imp("{stream: {account: A, subject: \"s.x\"}, to: \"t.*\"}"), "t.conf:1:159: Error adding stream import \"s.x\": 'to' \"t.*\" must be a literal subject, as the stream's subject is".into()),
            (imp("{stream: {account: A, subject: \"s.*.*\"}, to: \"t.$2.$1\"}"), "t.conf:1:161: Error adding stream import \"s.*.*\": wildcards out of order or repeated (\"t.$2.$1\") in 'to' is not supported by natsu yet".into()),
            (imp("{stream: {account: A, subject: \"a..b\"}}"), "t.conf:1:147: subject \"a..b\" is not a valid subject".into()),
            // Cycles.
            (
                "accounts { A { exports: [{stream: \">\"}], imports: [{stream: {account: B, subject: \">\"}}] }, B { exports: [{stream: \">\"}], imports: [{stream: {account: A, subject: \">\"}}] } }".into(),
                "t.conf:1:133: Error adding stream import \">\": import forms a cycle".into(),
            ),
            (
                "accounts { A { exports: [{service: \">\"}], imports: [{service: {account: B, subject: x}}] }, B { exports: [{service: \">\"}], imports: [{service: {account: A, subject: x}}] } }".into(),
                "t.conf:1:134: Error adding service import \"x\": import forms a cycle".into(),
            ),
            (
                "accounts { A { exports: [{stream: \">\"}], imports: [{stream: {account: B, subject: \"x.>\"}}] }, B { exports: [{stream: \">\"}], imports: [{stream: {account: C, subject: \"x.>\"}}] }, C { exports: [{stream: \">\"}], imports: [{stream: {account: A, subject: \"x.>\"}}] } }".into(),
                "t.conf:1:218: Error adding stream import \"x.>\": import forms a cycle".into(),
            ),
        ];
        check_errors(&table.iter().map(|(t, e)| (t.as_str(), e.as_str())).collect::<Vec<_>>());
        // Cycles nats-server does not see: through a prefix or a `to`, messages do not come round.
        for text in [
            "accounts { A { exports: [{stream: \">\"}], imports: [{stream: {account: B, subject: x}, to: y}] }, B { exports: [{stream: \">\"}], imports: [{stream: {account: A, subject: y}, to: z}] } }",
            "accounts { A { exports: [{service: \">\"}], imports: [{service: {account: B, subject: x}, to: y}] }, B { exports: [{service: \">\"}], imports: [{service: {account: A, subject: y}, to: z}] } }",
            "accounts { A { exports: [{stream: \"s.>\"}], imports: [{stream: {account: A, subject: \"s.x\"}}] } }",
        ] {
            ok(text);
        }
    }

    #[test]
    fn unknown_keys_are_errors_and_variables_are_not() {
        let errs = errors("VAR = 4333\nport: $VAR\nunused_var = 1\nfoo: bar\nauthorization {\n  user: a\n  password: b\n  colour: blue\n  A = x\n  users_ = $A\n}\n");
        assert_eq!(errs, ["t.conf:3:1: unknown field \"unused_var\"", "t.conf:4:1: unknown field \"foo\"", "t.conf:8:3: unknown field \"colour\"", "t.conf:10:3: unknown field \"users_\""]);
        // A variable some `$VAR` uses is no option, at the top or in a block.
        let (o, _, w) = ok("VAR = 4333\nport: $VAR\nauthorization {\n  U = u\n  user: $U\n  password: p\n}\n");
        assert_eq!((o.port, o.auth.user.as_deref(), w.len()), (4333, Some("u"), 0));
        // Each block nats-server's way: users, permissions, tls, subject permissions, cluster.
        let table: &[(&str, &str)] = &[
            ("authorization { users: [{user: a, password: b, colour: 1}] }", "t.conf:1:48: unknown field \"colour\""),
            ("authorization { users: [{user: a, password: b, account: X}] }", "t.conf:1:48: unknown field \"account\""),
            ("authorization { users: [{user: a, permissions: {publish: x, foo: 1}}] }", "t.conf:1:61: Unknown field \"foo\" parsing permissions"),
            ("tls { cert_file: c, key_file: k, bogus: 1 }", "t.conf:1:34: error parsing tls config, unknown field [\"bogus\"]"),
            ("authorization { users: [{user: c, permissions: {publish: {allow: \"x\", bar: 1}}}] }", "t.conf:1:71: Unknown field name \"bar\" parsing subject permissions, only 'allow' or 'deny' are permitted"),
        ];
        check_errors(table);
    }

    /// Keys nats-server 2.9 knows that natsu does not serve are refused by name, in every block.
    #[test]
    fn keys_natsu_does_not_serve_yet_are_errors() {
        let table: &[(&str, &str)] = &[
            ("port: 4222\ngateway { port: 7222 }", "t.conf:2:1: \"gateway\" is not supported by natsu yet"),
            ("jetstream: enabled", "t.conf:1:1: \"jetstream\" is not supported by natsu yet"),
            ("trusted_keys: x\nno_system_account: true", "t.conf:1:1: \"trusted_keys\" is not supported by natsu yet\nt.conf:2:1: \"no_system_account\" is not supported by natsu yet"),
            ("resolver_pinned_accounts: [x]", "t.conf:1:28: pinned account key \"x\" is not a valid public account nkey\nt.conf:1:27: resolver_pinned_accounts needs an operator (operator: op.jwt)"),
            ("tls { cert_file: c, key_file: k, verify_cert_and_check_known_urls: true }", "t.conf:1:34: \"verify_cert_and_check_known_urls\" is not supported by natsu yet"),
            ("tls { cert_file: c, key_file: k, cipher_suites: [\"TLS_AES_128_GCM_SHA256\"] }", "t.conf:1:34: \"cipher_suites\" is not supported by natsu yet"),
            ("tls { cert_file: c, key_file: k, curve_preferences: [\"X25519\"] }", "t.conf:1:34: \"curve_preferences\" is not supported by natsu yet"),
            ("tls { cert_file: c, key_file: k, pinned_certs: [] }", "t.conf:1:34: \"pinned_certs\" is not supported by natsu yet"),
            ("authorization { default_permissions: { publish: x } }", "t.conf:1:17: \"default_permissions\" is not supported by natsu yet"),
            // Inside an account, an export and an import.
            (
                "accounts {\n A { jetstream: enabled, mappings: { a: b }, maps: {}, limits: { max_connections: 1 }, default_permissions: { publish: x }, nkey: AD3MKPHJKSIOP7E5CDZDXIK7U4LQM5B4JE7725SPNU4G7OMNRDW54H7W }\n}",
                "t.conf:2:6: \"jetstream\" is not supported by natsu yet\nt.conf:2:56: \"limits\" is not supported by natsu yet\nt.conf:2:88: \"default_permissions\" is not supported by natsu yet\nt.conf:2:125: \"nkey\" is not supported by natsu yet",
            ),
            (
                "accounts { A { exports: [{service: x, latency: \"lat.x\"}, {service: y, response_threshold: \"1s\"}, {service: z, threshold: \"1s\"}, {stream: \"w.*\", account_token_position: 2}] } }",
                "t.conf:1:39: \"latency\" is not supported by natsu yet\nt.conf:1:71: \"response_threshold\" is not supported by natsu yet\nt.conf:1:111: \"threshold\" is not supported by natsu yet\nt.conf:1:145: \"account_token_position\" is not supported by natsu yet",
            ),
            ("accounts { A { exports: [{service: x}] }, B { imports: [{service: {account: A, subject: x}, share: true}] } }", "t.conf:1:93: \"share\" is not supported by natsu yet"),
            ("authorization { users: [{user: a, password: b, allowed_connection_types: [\"STANDARD\"]}] }", "t.conf:1:48: \"allowed_connection_types\" is not supported by natsu yet"),
        ];
        check_errors(table);
    }

    /// The cluster block's mistakes, each in nats-server's words where it has some.
    #[test]
    fn cluster_errors() {
        let table: &[(&str, &str)] = &[
            ("cluster: 6222", "t.conf:1:10: \"cluster\" must be a map { ... }, got integer 6222"),
            ("cluster { port: 6222, routes: \"nats://a:1\" }", "t.conf:1:31: \"routes\" must be an array of route URLs, got string \"nats://a:1\""),
            ("cluster { port: 6222, routes: [\"127.0.0.1:6223\"] }", "t.conf:1:32: error parsing route url \"127.0.0.1:6223\": expected scheme://host:port"),
            ("cluster { port: 6222, routes: [\"http://a:1\"] }", "t.conf:1:32: error parsing route url \"http://a:1\": the scheme must be nats://, nats-route:// or tls://"),
            ("cluster { port: 6222, routes: [\"nats://a\"] }", "t.conf:1:32: error parsing route url \"nats://a\": address a: missing port in address"),
            ("cluster { port: 6222, routes: [\"nats://a:0\"] }", "t.conf:1:32: error parsing route url \"nats://a:0\": invalid port \":0\" after host"),
            ("cluster { port: 6222, routes: [1] }", "t.conf:1:32: \"routes\" must be a string, got integer 1"),
            ("cluster { port: 6222, name: \"a b\" }", "t.conf:1:29: cluster name \"a b\" must be non-empty and cannot contain spaces or new lines"),
            ("cluster { port: 6222, authorization { token: x } }", "t.conf:1:37: Cluster authorization does not support tokens"),
            ("cluster { port: 6222, authorization { users: [] } }", "t.conf:1:37: Cluster authorization does not allow multiple users"),
            ("cluster { port: 6222, authorization { user: a, bogus: 1 } }", "t.conf:1:48: unknown field \"bogus\""),
            ("cluster { port: 6222, connect_retries: -1 }", "t.conf:1:40: \"connect_retries\" must be from 0 to 4294967295, got -1"),
            ("cluster { port: 6222, bogus: 1 }", "t.conf:1:23: unknown field \"bogus\""),
            ("cluster { port: 6222, advertise: 5 }", "t.conf:1:34: \"advertise\" must be a string, got integer 5"),
            ("cluster { port: 6222, advertise: \"a:b:c\" }", "t.conf:1:34: invalid Cluster.Advertise value of a:b:c, err=address a:b:c: too many colons in address"),
            ("cluster { port: 6222, cluster_advertise: \"h:x\" }", "t.conf:1:42: invalid Cluster.Advertise value of h:x, err=invalid port \"x\""),
            // The clients' tls block's checks, and its refusals, and verify_and_map.
            ("cluster { port: 6222, tls { cert_file: c } }", "t.conf:1:27: missing 'key_file' in TLS configuration"),
            ("cluster { port: 6222, tls { cert_file: c, key_file: k, bogus: 1 } }", "t.conf:1:56: error parsing tls config, unknown field [\"bogus\"]"),
            ("cluster { port: 6222, tls { cert_file: c, key_file: k, insecure: true } }", "t.conf:1:56: \"insecure\" is not supported by natsu yet"),
            ("cluster { port: 6222, tls { cert_file: c, key_file: k, verify_and_map: true } }", "t.conf:1:56: \"verify_and_map\" is not supported by natsu yet"),
            ("cluster { port: 6222, tls { cert_file: c, key_file: k, pinned_certs: [] } }", "t.conf:1:56: \"pinned_certs\" is not supported by natsu yet"),
            ("cluster { port: 6222, tls { cert_file: c, key_file: k, cipher_suites: [] } }", "t.conf:1:56: \"cipher_suites\" is not supported by natsu yet"),
            // Route permissions are not served yet, in the block or its authorization.
            ("cluster { port: 6222, permissions: { import: x } }", "t.conf:1:23: \"permissions\" is not supported by natsu yet"),
            ("cluster { port: 6222, authorization { user: a, password: b, permissions: { import: x } } }", "t.conf:1:61: \"permissions\" is not supported by natsu yet"),
            // nats-server 2.10's keys (2.9 calls them unknown).
            ("cluster { port: 6222, pool_size: 3 }", "t.conf:1:23: \"pool_size\" is a nats-server 2.10 setting: natsu speaks the 2.9 route protocol, which has no route pools"),
            ("cluster { port: 6222, compression: s2_auto }", "t.conf:1:23: \"compression\" is a nats-server 2.10 setting: natsu speaks the 2.9 route protocol, which has no route compression"),
            ("cluster { port: 6222, accounts: [A] }", "t.conf:1:23: \"accounts\" is a nats-server 2.10 setting: natsu speaks the 2.9 route protocol, which has no per-account routes"),
        ];
        check_errors(table);
    }

    /// Each line of `table` is a file and every error it must give, one per line.
    /// Mappings' mistakes in nats-server's words, at its positions (the entry's key) where
    /// it has them; where nats-server answers with a Go panic's text, natsu gives the reason.
    #[test]
    fn mapping_errors() {
        let table: &[(&str, &str)] = &[
            ("mappings { \"x.*\": \"y\" }", "t.conf:1:13: Error adding mapping for \"x.*\" to \"y\" : invalid mapping destination: not using all of the token wildcard(s) in y"),
            ("mappings { \"x.*\": \"y.$2\" }", "t.conf:1:13: Error adding mapping for \"x.*\" to \"y.$2\" : invalid mapping destination: wildcard index out of range in $2: [2]"),
            ("mappings { \"x.*\": \"y.{{foo(1)}}\" }", "t.conf:1:13: Error adding mapping for \"x.*\" to \"y.{{foo(1)}}\" : invalid mapping destination: unknown function in {{foo(1)}}"),
            ("mappings { \"x.>\": \"y\" }", "t.conf:1:13: Error adding mapping for \"x.>\" to \"y\" : invalid subject"),
            ("mappings { w: [ {destination: a, weight: 60}, {destination: b, weight: 50} ] }", "t.conf:1:12: Error adding mapping for \"w\" : total weight needs to be <= 100"),
            ("mappings { w: [ {destination: a, weight: 160} ] }", "t.conf:1:34: Invalid weight 160 for mapping destination"),
            ("mappings { w: [ {destination: a, weight: \"x%\"} ] }", "t.conf:1:34: Invalid weight \"x\" for mapping destination"),
            ("mappings { w: [ {destination: a, wait: 1} ] }", "t.conf:1:34: Unknown field \"wait\" for mapping destination"),
            ("mappings { w: [ \"a\" ] }", "t.conf:1:17: Expected an entry for the mapping destination"),
            ("accounts { A { maps { \"x.*\": \"y.{{wildcard()}}\" } } }", "t.conf:1:24: Error adding mapping for \"x.*\" to \"y.{{wildcard()}}\" : invalid mapping destination: not enough arguments passed to the function in {{wildcard()}}"),
        ];
        check_errors(table);
        let (o, _, _) = load_text("mappings { a: b, \"c.*\": [ {dest: \"d.$1\", weight: 40%}, {destination: \"e.$1\", weight: 60, cluster: x} ] }\naccounts { A { mappings { f: g } } }").unwrap();
        assert_eq!(o.mappings.len(), 2);
        assert_eq!(o.mappings[1].dests[0], crate::server::mapping::MapDest { subject: "d.$1".into(), weight: 40, cluster: String::new() });
        assert_eq!(o.mappings[1].dests[1].cluster, "x");
        assert_eq!(o.accounts[0].mappings[0].src, "f");
    }

    fn check_errors(table: &[(&str, &str)]) {
        let mut wrong = Vec::new();
        for (text, want) in table {
            let got = errors(text);
            if got.join("\n") != *want {
                wrong.push(format!("{text}\n  got  {got:?}\n  want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn bad_values_are_errors_with_positions() {
        let table: &[(&str, &str)] = &[
            ("port: \"abc\"", "t.conf:1:7: \"port\" must be an integer, got string \"abc\""),
            ("port: 70000", "t.conf:1:7: \"port\" must be from -1 to 65535, got 70000"),
            ("port: 1.5", "t.conf:1:7: \"port\" must be an integer, got float 1.5"),
            ("debug: 1", "t.conf:1:8: \"debug\" must be a boolean (true/false, yes/no, on/off), got integer 1"),
            ("debug: \"true\"", "t.conf:1:8: \"debug\" must be a boolean (true/false, yes/no, on/off), got string \"true\""),
            ("server_name: [a]", "t.conf:1:14: \"server_name\" must be a string, got array"),
            ("max_payload: 2GB", "t.conf:1:14: max_payload value is too big"),
            ("max_control_line: 10GB", "t.conf:1:19: max_control_line value is too big"),
            ("max_pending: -5", "t.conf:1:14: \"max_pending\" must not be negative, got -5"),
            ("max_payload: 1x", "t.conf:1:14: \"max_payload\" must be an integer, got string \"1x\""),
            ("ping_interval: \"soon\"", "t.conf:1:16: error parsing ping_interval: invalid duration \"soon\""),
            ("ping_interval: true", "t.conf:1:16: \"ping_interval\" must be a duration string such as \"2s\", got boolean true"),
            ("ping_max: -1", "t.conf:1:11: \"ping_max\" must be from 0 to 4294967295, got -1"),
            ("lame_duck_duration: \"1s\"", "t.conf:1:21: invalid lame_duck_duration of 1s, minimum is 30 seconds"),
            ("cores: 0", "t.conf:1:8: \"cores\" must be from 1 to 64, got 0"),
            ("spin: \"1s\"", "t.conf:1:7: error parsing spin: spin \"1s\" is longer than 10ms"),
            ("spin: 5", "t.conf:1:7: \"spin\" must be a duration string such as \"50us\", got integer 5"),
            ("listen: \"127.0.0.1\"", "t.conf:1:9: could not parse address string \"127.0.0.1\""),
            ("listen: \"127.0.0.1:x\"", "t.conf:1:9: invalid port in address \"127.0.0.1:x\""),
            ("http: \"localhost\"", "t.conf:1:7: could not parse address string \"localhost\""),
            ("authorization: 1", "t.conf:1:16: \"authorization\" must be a map { ... }, got integer 1"),
            ("authorization { timeout: \"abc\" }", "t.conf:1:26: error parsing timeout: invalid duration \"abc\""),
            ("authorization { timeout: -1 }", "t.conf:1:26: \"timeout\" must be a positive number of seconds, got -1"),
            ("authorization { user: a, password: b, users: [{user: c, password: d}] }", "t.conf:1:15: Can not have a single user/pass and a users array"),
            ("authorization { token: a, users: [{user: c, password: d}] }", "t.conf:1:15: Can not have a token and a users array"),
            ("authorization { token: a, user: b, password: c }", "t.conf:1:15: Cannot have a user/pass and token"),
            ("authorization { users: [{password: c}] }", "t.conf:1:25: User entry requires a user"),
            ("authorization { users: [{user: c}, {user: c}] }", "t.conf:1:36: Duplicate user \"c\" detected"),
            ("authorization { users: {user: c} }", "t.conf:1:24: \"users\" must be an array of users, got map"),
            ("authorization { users: [ \"x\" ] }", "t.conf:1:26: a user entry must be a map {user: ..., password: ...}, got string \"x\""),
            ("authorization { users: [{user: c, permissions: {publish: 1}}] }", "t.conf:1:58: \"publish\": expected a subject or an array of subjects, got integer 1"),
            ("authorization { users: [{user: c, permissions: {publish: \"a..b\"}}] }", "t.conf:1:58: subject \"a..b\" is not a valid subject"),
            ("authorization { users: [{user: c, permissions: {publish: \">.a\"}}] }", "t.conf:1:58: subject \">.a\" is not a valid subject"),
            ("authorization { users: [{user: c, permissions: {publish: \"a b\"}}] }", "t.conf:1:58: subject \"a b\" is not a valid subject"),
            ("authorization { users: [{user: c, permissions: {publish: {allow: \"x\", bar: 1}}}] }", "t.conf:1:71: Unknown field name \"bar\" parsing subject permissions, only 'allow' or 'deny' are permitted"),
            ("tls { cert_file: \"x\" }", "t.conf:1:5: missing 'key_file' in TLS configuration"),
            ("tls { key_file: \"x\" }", "t.conf:1:5: missing 'cert_file' in TLS configuration"),
            ("tls { }", "t.conf:1:5: missing 'cert_file' in TLS configuration"),
            ("tls { cert_file: a, key_file: b, verify: maybe }", "t.conf:1:42: \"verify\" must be a boolean (true/false, yes/no, on/off), got string \"maybe\""),
            ("port: $NOPE", "t.conf:1:7: variable reference for 'NOPE' can not be found"),
            ("allow_non_tls: 1", "t.conf:1:16: \"allow_non_tls\" must be a boolean (true/false, yes/no, on/off), got integer 1"),
        ];
        check_errors(table);
    }

    #[test]
    fn all_errors_at_once_syntax_and_values() {
        let errs = errors("port: \"abc\"\nmax_payload: 1 MB\ndebug: 3\ntls { cert_file: x }\nping_interval: \"x\n");
        assert_eq!(errs.len(), 5, "{errs:#?}");
        for (e, p) in errs.iter().zip(["t.conf:2:", "t.conf:5:", "t.conf:1:", "t.conf:3:", "t.conf:4:"]) {
            assert!(e.starts_with(p), "{errs:#?}");
        }
    }

    #[test]
    fn all_errors_at_once_unknown_and_not_served() {
        let errs = errors("port: 4222\nfoo: 1\ntls {\n  cert_file: c\n  key_file: k\n  insecure: true\n  bar: 2\n}\naccounts { A { jetstream: enabled } }\ncluster { port: 6222, pool_size: 3 }\nmax_payload: x\nauthorization { users: [ {user: a, colour: red} ] }\nno_auth_user: nobody\n");
        // The checks across the file (no_auth_user names a user) come last.
        assert_eq!(
            errs,
            [
                "t.conf:2:1: unknown field \"foo\"",
                "t.conf:6:3: \"insecure\" is not supported by natsu yet",
                "t.conf:7:3: error parsing tls config, unknown field [\"bar\"]",
                "t.conf:9:16: \"jetstream\" is not supported by natsu yet",
                "t.conf:10:23: \"pool_size\" is a nats-server 2.10 setting: natsu speaks the 2.9 route protocol, which has no route pools",
                "t.conf:11:14: \"max_payload\" must be an integer, got string \"x\"",
                "t.conf:12:36: unknown field \"colour\"",
                "t.conf:13:15: no_auth_user: \"nobody\" not present as user in authorization block or account configuration",
            ]
        );
    }

    /// The cluster block's forms and what each gives.
    #[test]
    fn cluster_forms() {
        let cluster = |text: &str| ok(text).0.cluster.unwrap();
        let c = cluster("cluster { host: 127.0.0.1, port: -1 }");
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 0));
        let c = cluster("cluster { listen: 6222 }");
        assert_eq!(c, Cluster { port: 6222, ..Cluster::default() });
        assert_eq!(c.host, "0.0.0.0");
        let c = cluster("cluster { listen: \"[::1]:6222\" }");
        assert_eq!((c.host.as_str(), c.port), ("::1", 6222));
        let c = cluster(
            "cluster {\n name: c1\n listen: \"0.0.0.0:6222\"\n routes: [ \"nats://127.0.0.1:6223\", \"nats-route://u:p@10.0.0.1:6224\", \"tls://[::1]:6225\" ]\n authorization { user: ru, password: rp, timeout: 0.5 }\n no_advertise: true\n connect_retries: 3\n advertise: \"10.0.0.9:7222\"\n tls { cert_file: r.pem, key_file: rk.pem, ca_file: ca.pem, verify: true, timeout: 3 }\n}",
        );
        assert_eq!((c.name.as_deref(), c.host.as_str(), c.port), (Some("c1"), "0.0.0.0", 6222));
        assert_eq!(c.routes, ["nats://127.0.0.1:6223", "nats-route://u:p@10.0.0.1:6224", "tls://[::1]:6225"]);
        assert_eq!((c.user.as_deref(), c.password.as_deref(), c.auth_timeout), (Some("ru"), Some("rp"), Some(Duration::from_millis(500))));
        assert!(c.no_advertise);
        assert_eq!((c.connect_retries, c.advertise.as_deref()), (3, Some("10.0.0.9:7222")));
        let tls = Tls { cert_file: "r.pem".into(), key_file: "rk.pem".into(), ca_file: Some("ca.pem".into()), verify: true, timeout: Duration::from_secs(3), ..Tls::default() };
        assert_eq!(c.tls, Some(tls));
        // nats-server's other spellings; `verify` kept as written (routes verify anyway).
        let c = cluster("cluster { port: 6222, cluster_advertise: h, authorization { username: u, pass: p }, tls { cert_file: c, key_file: k } }");
        assert_eq!((c.advertise.as_deref(), c.user.as_deref(), c.password.as_deref()), (Some("h"), Some("u"), Some("p")));
        assert!(!c.tls.unwrap().verify);
        // A repeated route is dropped with nats-server's warning.
        let (o, _, w) = ok("cluster { port: 6222, routes: [\"nats://a:1\", \"nats://b:1\", \"nats://a:1\"] }");
        assert_eq!(o.cluster.unwrap().routes, ["nats://a:1", "nats://b:1"]);
        assert_eq!(w, ["t.conf:1:60: invalid use of field \"nats://a:1\": Duplicate route entry detected"]);
        // Without a port there is no cluster, as in nats-server, and a warning says so.
        let (o, _, w) = ok("cluster { routes: [\"nats://a:1\"] }");
        assert!(o.cluster.is_none());
        assert_eq!(w, ["t.conf:1:9: cluster block has no listen or port: no cluster will be formed"]);
        assert!(ok("cluster { port: 0 }").0.cluster.is_none());
    }

    /// Every sample in configs/ and configs/cluster/ loads without errors or warnings.
    /// nats-server 2.9 accepts them all (when installed); it opens the TLS certificates
    /// while checking, so it runs from a directory holding generated ones.
    #[test]
    fn sample_configs_load_here_and_in_nats_server() {
        let confs = |dir: &Path| {
            let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "conf")).collect();
            files.sort();
            files
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let (files, cluster_files) = (confs(&dir), confs(&dir.join("cluster")));
        let names: Vec<String> = files.iter().chain(&cluster_files).map(|p| p.strip_prefix(&dir).unwrap().display().to_string()).collect();
        for want in ["minimal.conf", "auth.conf", "tls.conf", "cluster/seed.conf", "cluster/node.conf", "cluster/node2.conf"] {
            assert!(names.iter().any(|n| n == want), "configs/{want} is missing: {names:?}");
        }
        // Only the sample's own variables: none may leak in from the test's environment.
        let no_env = |_: &str| None;
        for f in files.iter().chain(&cluster_files) {
            let (o, _, w) = load_with_env(f.to_str().unwrap(), &no_env).unwrap_or_else(|e| panic!("{}:\n{e}", f.display()));
            assert!(w.is_empty(), "{}: {w:?}", f.display());
            let name = f.file_name().unwrap().to_str().unwrap();
            match name {
                "auth.conf" => {
                    assert_eq!(o.auth.users.len(), 4);
                    assert!(o.auth.users[0].password.starts_with("$2a$"));
                    assert!(bcrypt::verify("changeme", &o.auth.users[0].password).unwrap());
                }
                "tls.conf" => assert_eq!(o.tls.unwrap().cert_file, "./certs/server-cert.pem"),
                // A three-server cluster on one machine: the seed, and two nodes routing to it.
                "seed.conf" | "node.conf" | "node2.conf" => {
                    let n = ["seed.conf", "node.conf", "node2.conf"].iter().position(|x| *x == name).unwrap() as u16;
                    let c = o.cluster.unwrap();
                    assert_eq!((o.port, o.http_port, c.port, c.name.as_deref()), (4222 + n, Some(8222 + n), 6222 + n, Some("natsu-cluster")));
                    let routes: &[&str] = if n == 0 { &[] } else { &["nats://route:route-secret@127.0.0.1:6222"] };
                    assert_eq!(c.routes, routes);
                }
                _ => {}
            }
        }
        if std::process::Command::new("nats-server").arg("--version").output().is_err() {
            eprintln!("nats-server not installed: skipping the reference check");
            return;
        }
        let t = Tmp::new("certs");
        std::fs::create_dir_all(t.0.join("certs")).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(t.0.join("certs/server-cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(t.0.join("certs/server-key.pem"), ck.key_pair.serialize_pem()).unwrap();
        std::fs::write(t.0.join("certs/ca.pem"), ck.cert.pem()).unwrap();
        for f in files.iter().chain(&cluster_files) {
            let out = std::process::Command::new("nats-server").current_dir(&t.0).env_remove("SEED_ROUTE").arg("-t").arg("-c").arg(f).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("is valid"), "nats-server refuses {}: {text}", f.display());
        }
    }

    #[test]
    fn missing_file() {
        let e = load("/nonexistent/natsu.conf").unwrap_err();
        assert!(e.starts_with("/nonexistent/natsu.conf: No such file"), "{e}");
    }
}
