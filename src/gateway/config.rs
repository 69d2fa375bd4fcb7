//! The gateway's settings: a file in the nats conf format (natsu's own parser), and flags
//! that cover the common case without one.
//!
//! ```text
//! listen: "127.0.0.1:8080"        # the HTTP port
//! http_port: 8081                 # /healthz and /metrics, on the listen address's host
//! cores: 2                        # executors (default: every core)
//! timeout: 10s                    # a request's wait for its answer
//! max_body: 1MB                   # larger request bodies get 413
//! access_log: true
//! tls { cert_file: "cert.pem", key_file: "key.pem" }   # HTTPS
//! nats {                          # the nginx module's upstream block
//!   server 127.0.0.1:4222; server 127.0.0.1:4223       # tried in this order
//!   reconnect: 1s; ping: 30s; user: u; password: p
//! }
//! paths [ { prefix: "/slow", timeout: 30s }, { prefix: "/py/", encoding: json, max_body: 4KB } ]
//! hooks [ { path: "^/login", set_headers { "Cache-Control": "no-store" }, remove_headers: ["X-Debug"] } ]
//! ```
//!
//! An unknown key, a value of the wrong type or a bad regex is an error naming
//! `file:line:col`; nothing is ignored.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::conf::{self, Kind, Map, Value};
use crate::config::parse_duration;

/// The nginx module's defaults: retry every second, PING every 30 s.
pub const DEFAULT_RECONNECT: Duration = Duration::from_secs(1);
pub const DEFAULT_PING: Duration = Duration::from_secs(30);
/// nats-proxy's request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// nginx's `client_max_body_size`.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How a request and its answer travel over NATS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// nats-proxy's protobuf messages.
    Protobuf,
    /// The same as JSON ([`crate::service::envelope`]).
    Json,
}

/// The `nats {}` block: where the gateway's NATS connections go.
#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    /// `host:port` or URLs, tried in this order; the first that works is used.
    pub servers: Vec<String>,
    pub reconnect: Duration,
    pub ping: Duration,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

impl Default for Upstream {
    fn default() -> Upstream {
        Upstream { servers: Vec::new(), reconnect: DEFAULT_RECONNECT, ping: DEFAULT_PING, user: None, password: None, token: None }
    }
}

/// Settings for the paths under a prefix (the longest matching prefix wins).
#[derive(Clone, Debug, PartialEq)]
pub struct PathRule {
    pub prefix: String,
    pub timeout: Option<Duration>,
    pub encoding: Option<Encoding>,
    pub max_body: Option<usize>,
}

/// Response headers set or removed for paths matching a regex.
#[derive(Clone, Debug)]
pub struct HookRule {
    pub path: regex::Regex,
    pub set_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
}

/// Everything the gateway runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub http_port: Option<u16>,
    pub cores: usize,
    pub timeout: Duration,
    pub max_body: usize,
    pub access_log: bool,
    pub tls: Option<crate::server::options::Tls>,
    pub nats: Upstream,
    pub paths: Vec<PathRule>,
    pub hooks: Vec<HookRule>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("a socket address"),
            http_port: None,
            cores: 0,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            access_log: true,
            tls: None,
            nats: Upstream::default(),
            paths: Vec::new(),
            hooks: Vec::new(),
        }
    }
}

impl Config {
    /// The settings that apply to `path`: its timeout, encoding and body limit.
    pub fn for_path(&self, path: &str) -> (Duration, Encoding, usize) {
        let rule = self.paths.iter().filter(|r| path.starts_with(&r.prefix)).max_by_key(|r| r.prefix.len());
        (
            rule.and_then(|r| r.timeout).unwrap_or(self.timeout),
            rule.and_then(|r| r.encoding).unwrap_or(Encoding::Protobuf),
            rule.and_then(|r| r.max_body).unwrap_or(self.max_body),
        )
    }

    /// The servers to try, defaulting to the local broker.
    pub fn servers(&self) -> Vec<String> {
        if self.nats.servers.is_empty() {
            vec!["nats://127.0.0.1:4222".to_string()]
        } else {
            self.nats.servers.clone()
        }
    }
}

/// Read a config file; every mistake is reported, one per line.
pub fn load(path: &Path) -> Result<Config, String> {
    let (root, mut errors) = conf::parse_file(path);
    let mut cfg = Config::default();
    if errors.is_empty() {
        read_root(&root, &mut cfg, &mut errors);
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors.join("\n"))
    }
}

/// A socket address from `host:port` (a name is resolved).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("invalid listen address {s:?} (want host:port)"))
}

fn err(v: &Value, what: &str) -> String {
    format!("{}: {what}", v.pos)
}

fn want_str(v: &Value, key: &str, errors: &mut Vec<String>) -> Option<String> {
    match &v.kind {
        Kind::Str(s) => Some(s.clone()),
        _ => {
            errors.push(err(v, &format!("{key} must be a string, not {}", v.describe())));
            None
        }
    }
}

fn want_bool(v: &Value, key: &str, errors: &mut Vec<String>) -> Option<bool> {
    match v.kind {
        Kind::Bool(b) => Some(b),
        _ => {
            errors.push(err(v, &format!("{key} must be true or false, not {}", v.describe())));
            None
        }
    }
}

fn want_duration(v: &Value, key: &str, errors: &mut Vec<String>) -> Option<Duration> {
    let d = match &v.kind {
        Kind::Int(n) if *n > 0 => Ok(Duration::from_secs(*n as u64)),
        Kind::Float(f) if *f > 0.0 => Ok(Duration::from_secs_f64(*f)),
        Kind::Str(s) => parse_duration(s),
        _ => Err(format!("must be a duration such as \"2s\", not {}", v.describe())),
    };
    match d {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            errors.push(err(v, &format!("{key} must be longer than zero")));
            None
        }
        Err(e) => {
            errors.push(err(v, &format!("{key} {e}")));
            None
        }
    }
}

fn want_size(v: &Value, key: &str, errors: &mut Vec<String>) -> Option<usize> {
    match &v.kind {
        Kind::Int(n) if *n > 0 => Some(*n as usize),
        Kind::Str(s) => match crate::config::parse_size(s) {
            Ok(n) if n > 0 => Some(n as usize),
            _ => {
                errors.push(err(v, &format!("{key} must be a size such as 1MB, not {}", v.describe())));
                None
            }
        },
        _ => {
            errors.push(err(v, &format!("{key} must be a size such as 1MB, not {}", v.describe())));
            None
        }
    }
}

fn want_map<'a>(v: &'a Value, key: &str, errors: &mut Vec<String>) -> Option<&'a Map> {
    match &v.kind {
        Kind::Map(m) => Some(m),
        _ => {
            errors.push(err(v, &format!("{key} must be a block {{ ... }}, not {}", v.describe())));
            None
        }
    }
}

fn want_array<'a>(v: &'a Value, key: &str, errors: &mut Vec<String>) -> Option<&'a [Value]> {
    match &v.kind {
        Kind::Array(a) => Some(a),
        _ => {
            errors.push(err(v, &format!("{key} must be a list [ ... ], not {}", v.describe())));
            None
        }
    }
}

fn unknown(e: &conf::Entry, block: &str, errors: &mut Vec<String>) {
    if !e.used_as_variable {
        errors.push(format!("{}: unknown field {:?}{block}", e.pos, e.key));
    }
}

fn read_root(root: &Map, cfg: &mut Config, errors: &mut Vec<String>) {
    for e in &root.entries {
        let v = &e.value;
        match e.key.as_str() {
            "listen" => {
                let s = match &v.kind {
                    Kind::Int(port) => Some(format!("127.0.0.1:{port}")),
                    _ => want_str(v, "listen", errors),
                };
                if let Some(s) = s {
                    match parse_listen(&s) {
                        Ok(a) => cfg.listen = a,
                        Err(m) => errors.push(err(v, &m)),
                    }
                }
            }
            "http_port" => match v.kind {
                Kind::Int(p) if (1..=65535).contains(&p) => cfg.http_port = Some(p as u16),
                _ => errors.push(err(v, &format!("http_port must be a port from 1 to 65535, not {}", v.describe()))),
            },
            "cores" => match v.kind {
                Kind::Int(n) if (1..=1024).contains(&n) => cfg.cores = n as usize,
                _ => errors.push(err(v, &format!("cores must be a number from 1 to 1024, not {}", v.describe()))),
            },
            "timeout" => cfg.timeout = want_duration(v, "timeout", errors).unwrap_or(cfg.timeout),
            "max_body" => cfg.max_body = want_size(v, "max_body", errors).unwrap_or(cfg.max_body),
            "access_log" => cfg.access_log = want_bool(v, "access_log", errors).unwrap_or(cfg.access_log),
            "tls" => cfg.tls = want_map(v, "tls", errors).and_then(|m| read_tls(m, errors)),
            "nats" => {
                if let Some(m) = want_map(v, "nats", errors) {
                    read_upstream(m, &mut cfg.nats, errors);
                }
            }
            "paths" => {
                for item in want_array(v, "paths", errors).unwrap_or(&[]) {
                    if let Some(rule) = want_map(item, "a paths entry", errors).and_then(|m| read_path_rule(item, m, errors)) {
                        cfg.paths.push(rule);
                    }
                }
            }
            "hooks" => {
                for item in want_array(v, "hooks", errors).unwrap_or(&[]) {
                    if let Some(rule) = want_map(item, "a hooks entry", errors).and_then(|m| read_hook(item, m, errors)) {
                        cfg.hooks.push(rule);
                    }
                }
            }
            _ => unknown(e, "", errors),
        }
    }
}

fn read_tls(m: &Map, errors: &mut Vec<String>) -> Option<crate::server::options::Tls> {
    let mut tls = crate::server::options::Tls::default();
    let before = errors.len();
    for e in &m.entries {
        match e.key.as_str() {
            "cert_file" => tls.cert_file = want_str(&e.value, "cert_file", errors).unwrap_or_default(),
            "key_file" => tls.key_file = want_str(&e.value, "key_file", errors).unwrap_or_default(),
            _ => unknown(e, " in tls", errors),
        }
    }
    if errors.len() == before && (tls.cert_file.is_empty() || tls.key_file.is_empty()) {
        errors.push("tls needs both cert_file and key_file".to_string());
    }
    Some(tls)
}

fn read_upstream(m: &Map, up: &mut Upstream, errors: &mut Vec<String>) {
    for e in &m.entries {
        let v = &e.value;
        match e.key.as_str() {
            "server" | "servers" => match &v.kind {
                Kind::Array(a) => {
                    for s in a {
                        up.servers.extend(want_str(s, "server", errors));
                    }
                }
                _ => up.servers.extend(want_str(v, "server", errors)),
            },
            "reconnect" => up.reconnect = want_duration(v, "reconnect", errors).unwrap_or(up.reconnect),
            "ping" => up.ping = want_duration(v, "ping", errors).unwrap_or(up.ping),
            "user" => up.user = want_str(v, "user", errors),
            "password" => up.password = want_str(v, "password", errors),
            "token" => up.token = want_str(v, "token", errors),
            _ => unknown(e, " in nats", errors),
        }
    }
}

fn read_path_rule(item: &Value, m: &Map, errors: &mut Vec<String>) -> Option<PathRule> {
    let mut rule = PathRule { prefix: String::new(), timeout: None, encoding: None, max_body: None };
    for e in &m.entries {
        let v = &e.value;
        match e.key.as_str() {
            "prefix" => rule.prefix = want_str(v, "prefix", errors).unwrap_or_default(),
            "timeout" => rule.timeout = want_duration(v, "timeout", errors),
            "max_body" => rule.max_body = want_size(v, "max_body", errors),
            "encoding" => match want_str(v, "encoding", errors).as_deref() {
                Some("protobuf") => rule.encoding = Some(Encoding::Protobuf),
                Some("json") => rule.encoding = Some(Encoding::Json),
                Some(other) => errors.push(err(v, &format!("encoding must be protobuf or json, not {other:?}"))),
                None => {}
            },
            _ => unknown(e, " in paths", errors),
        }
    }
    if !rule.prefix.starts_with('/') {
        errors.push(err(item, "a paths entry needs a prefix starting with /"));
        return None;
    }
    Some(rule)
}

fn read_hook(item: &Value, m: &Map, errors: &mut Vec<String>) -> Option<HookRule> {
    let mut path = None;
    let mut set_headers = Vec::new();
    let mut remove_headers = Vec::new();
    for e in &m.entries {
        let v = &e.value;
        match e.key.as_str() {
            "path" => {
                if let Some(s) = want_str(v, "path", errors) {
                    match regex::Regex::new(&s) {
                        Ok(r) => path = Some(r),
                        Err(x) => errors.push(err(v, &format!("path is not a valid regex: {x}"))),
                    }
                }
            }
            "set_headers" => {
                for h in &want_map(v, "set_headers", errors).map(|m| m.entries.clone()).unwrap_or_default() {
                    if let Some(val) = want_str(&h.value, &h.key, errors) {
                        check_header(v, &h.key, Some(&val), errors);
                        set_headers.push((h.key.clone(), val));
                    }
                }
            }
            "remove_headers" => {
                for h in want_array(v, "remove_headers", errors).unwrap_or(&[]) {
                    if let Some(name) = want_str(h, "remove_headers", errors) {
                        check_header(h, &name, None, errors);
                        remove_headers.push(name);
                    }
                }
            }
            _ => unknown(e, " in hooks", errors),
        }
    }
    match path {
        Some(path) => Some(HookRule { path, set_headers, remove_headers }),
        None => {
            errors.push(err(item, "a hooks entry needs a path regex"));
            None
        }
    }
}

fn check_header(v: &Value, name: &str, value: Option<&str>, errors: &mut Vec<String>) {
    if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        errors.push(err(v, &format!("{name:?} is not a valid header name")));
    }
    if let Some(val) = value {
        if hyper::header::HeaderValue::from_str(val).is_err() {
            errors.push(err(v, &format!("{val:?} is not a valid value for header {name:?}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let dir = std::env::temp_dir().join(format!("natsu-gw-conf-{}-{}", std::process::id(), text.len()));
        std::fs::write(&dir, text).unwrap();
        let r = load(&dir);
        let _ = std::fs::remove_file(&dir);
        r
    }

    #[test]
    fn full_file() {
        let c = parse(
            "listen: \"127.0.0.1:9090\"\nhttp_port: 9091\ncores: 1\ntimeout: 3s\nmax_body: 4KB\naccess_log: false\n\
             nats {\n  server 127.0.0.1:4223; server 127.0.0.1:4222;\n  reconnect: 250ms; ping: 10s\n  user: u; password: p\n}\n\
             paths [ { prefix: \"/slow\", timeout: 30s }, { prefix: \"/slow/py\", encoding: json, max_body: 1MB } ]\n\
             hooks [ { path: \"^/login\", set_headers { \"Cache-Control\": \"no-store\" }, remove_headers: [\"X-Debug\"] } ]\n",
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.http_port, Some(9091));
        assert_eq!(c.nats.servers, ["127.0.0.1:4223", "127.0.0.1:4222"]);
        assert_eq!(c.nats.reconnect, Duration::from_millis(250));
        assert_eq!(c.nats.user.as_deref(), Some("u"));
        assert_eq!(c.for_path("/slow/x"), (Duration::from_secs(30), Encoding::Protobuf, 4096));
        assert_eq!(c.for_path("/slow/py/x"), (Duration::from_secs(3), Encoding::Json, 1 << 20));
        assert_eq!(c.for_path("/other"), (Duration::from_secs(3), Encoding::Protobuf, 4096));
        assert!(c.hooks[0].path.is_match("/login/x"));
        assert_eq!(c.hooks[0].set_headers, [("Cache-Control".to_string(), "no-store".to_string())]);
        assert!(!c.access_log);
    }

    #[test]
    fn defaults_match_the_nginx_module() {
        let c = parse("nats { server 127.0.0.1:4222 }\n").unwrap();
        assert_eq!((c.nats.reconnect, c.nats.ping, c.timeout), (DEFAULT_RECONNECT, DEFAULT_PING, DEFAULT_TIMEOUT));
    }

    #[test]
    fn mistakes_are_errors_with_positions() {
        for (text, want) in [
            ("listen: 1.2.3\n", "invalid listen address"),
            ("bogus: 1\n", "unknown field \"bogus\""),
            ("nats { server 1.2.3.4:4222; retry: 1s }\n", "unknown field \"retry\" in nats"),
            ("nats { reconnect: soon }\n", "reconnect invalid duration"),
            ("timeout: 0\n", "duration"),
            ("paths [ { timeout: 1s } ]\n", "needs a prefix"),
            ("paths [ { prefix: \"/a\", encoding: xml } ]\n", "protobuf or json"),
            ("hooks [ { path: \"(\" } ]\n", "not a valid regex"),
            ("hooks [ { path: \"x\", set_headers { \"Bad Name\": \"v\" } } ]\n", "not a valid header name"),
            ("tls { cert_file: a }\n", "needs both"),
            ("http_port: 70000\n", "http_port"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            if want != "needs both" {
                assert!(e.contains(":1:"), "{text:?} has no position: {e}");
            }
        }
    }
}
