//! The `cluster` block, and the address forms the block, the cluster flags and the route
//! code share: route URLs (`nats://[user:pass@]host:port`, also `nats-route://` and
//! `tls://`), the `--cluster` listen URL and `advertise`.
//!
//! As nats-server 2.9 reads them, in its words where it has some, with two differences:
//! natsu checks route URLs and `advertise` when the file is read (nats-server finds a bad
//! one when it dials, or crashes on it), and it refuses nats-server 2.10's route pools,
//! compression and per-account routes by name, as it speaks the 2.9 route protocol.
//!
//! ```text
//! cluster {
//!   name: c1
//!   listen: 0.0.0.0:6222
//!   authorization { user: route, password: secret, timeout: 2 }
//!   routes: [ nats://route:secret@10.0.0.1:6222 ]
//!   tls { cert_file: route-cert.pem, key_file: route-key.pem, ca_file: ca.pem }
//! }
//! ```

use std::collections::HashSet;

use super::Loader;
use crate::config::conf::{Kind, Map, Pos, Value};
use crate::config::keys::{AUTHORIZATION, CLUSTER, CLUSTER_TLS, NEWER_CLUSTER_KEYS};
use crate::server::options::Cluster;

impl Loader {
    /// `cluster { ... }`; None (with a warning) when it gives no port, as nats-server then
    /// forms no cluster.
    /// The block, or (Err) the block of a cluster that is off for want of a port.
    pub(super) fn cluster(&mut self, m: &Map, pos: &Pos) -> Result<Cluster, Cluster> {
        let mut c = Cluster::default();
        let mut port_set = false;
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "name" => {
                    if let Some(n) = self.string(&k, v) {
                        match check_cluster_name(&n) {
                            Ok(()) => c.name = Some(n),
                            Err(why) => self.err(&v.pos, why),
                        }
                    }
                }
                "listen" => {
                    if let Some((host, port)) = self.host_port(&k, v) {
                        if let Some(h) = host {
                            c.host = h;
                        }
                        (c.port, port_set) = cluster_port(port);
                    }
                }
                "host" | "net" => c.host = self.string(&k, v).unwrap_or(c.host),
                "port" => {
                    if let Some(p) = self.int_in(&k, v, -1, 65535) {
                        (c.port, port_set) = cluster_port(p);
                    }
                }
                "routes" => c.routes = self.routes(v),
                "authorization" => {
                    if let Some(am) = self.map(&k, v) {
                        self.cluster_authorization(am, &v.pos, &mut c);
                    }
                }
                "tls" => {
                    if let Some(tm) = self.map(&k, v) {
                        c.tls = self.tls(tm, &v.pos, &CLUSTER_TLS);
                    }
                }
                // nats-server's two spellings.
                "advertise" | "cluster_advertise" => {
                    if let Some(a) = self.string(&k, v) {
                        match advertise_host_port(&a, 0) {
                            Ok(_) => c.advertise = Some(a),
                            Err(why) => self.err(&v.pos, why),
                        }
                    }
                }
                "no_advertise" => c.no_advertise = self.bool(&k, v).unwrap_or(c.no_advertise),
                "connect_retries" => c.connect_retries = self.int_in(&k, v, 0, u32::MAX as i64).map_or(c.connect_retries, |n| n as u32),
                _ => match NEWER_CLUSTER_KEYS.iter().find(|(key, _)| *key == k) {
                    Some((_, what)) => self.err(&e.pos, format_args!("{:?} is a nats-server 2.10 setting: natsu speaks the 2.9 route protocol, which has no {what}", e.key)),
                    None => self.unserved(e, &CLUSTER),
                },
            }
        }
        if !port_set {
            // As nats-server: without a port the cluster is off (routes included), unless
            // `--cluster` gives one: then the block's other settings (TLS, credentials…)
            // hold, so they are kept aside for it.
            self.warn(pos, "cluster block has no listen or port: no cluster will be formed");
            return Err(c);
        }
        Ok(c)
    }

    fn cluster_authorization(&mut self, m: &Map, pos: &Pos, c: &mut Cluster) {
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "user" | "username" => c.user = self.string(&k, v).or(c.user.take()),
                "password" | "pass" => c.password = self.string(&k, v).or(c.password.take()),
                "timeout" => c.auth_timeout = self.seconds(&k, v).or(c.auth_timeout),
                // nats-server's words.
                "token" => self.err(pos, "Cluster authorization does not support tokens"),
                "users" => self.err(pos, "Cluster authorization does not allow multiple users"),
                _ => self.unserved(e, &AUTHORIZATION),
            }
        }
    }

    /// `routes: [ URL, ... ]`, each checked; a repeated URL is dropped with nats-server's
    /// warning.
    fn routes(&mut self, v: &Value) -> Vec<String> {
        let Kind::Array(items) = &v.kind else {
            self.wrong_type("routes", v, "an array of route URLs");
            return Vec::new();
        };
        let mut seen = HashSet::new();
        let mut routes = Vec::new();
        for item in items {
            let Some(u) = self.string("routes", item) else { continue };
            if !seen.insert(u.clone()) {
                self.warn(&item.pos, format_args!("invalid use of field {u:?}: Duplicate route entry detected"));
                continue;
            }
            match parse_route_url(&u) {
                Ok(_) => routes.push(u),
                Err(why) => self.err(&item.pos, format_args!("error parsing route url {u:?}: {why}")),
            }
        }
        routes
    }
}

/// A cluster port and whether the cluster is on: -1 is a random port, 0 leaves it off.
fn cluster_port(p: i64) -> (u16, bool) {
    match p {
        0 => (0, false),
        -1 => (0, true),
        n => (n as u16, true),
    }
}

/// A cluster name goes on the wire in route INFO and CONNECT, so it has no blanks.
pub(crate) fn check_cluster_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.contains(char::is_whitespace) {
        return Err(format!("cluster name {n:?} must be non-empty and cannot contain spaces or new lines"));
    }
    Ok(())
}

/// A route URL's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteUrl {
    /// `nats`, `nats-route` or `tls`: all three mean the same, as in nats-server (the
    /// cluster's `tls` block, not the scheme, decides whether routes use TLS).
    pub scheme: String,
    /// What to present to the route (percent-escapes decoded).
    pub user: Option<String>,
    pub password: Option<String>,
    /// Without an IPv6 address's brackets.
    pub host: String,
    pub port: u16,
}

/// A route or leaf URL: `nats://[user[:pass]@]host:port`, `nats-route://…`, `nats-leaf://…` or `tls://…`; the error
/// is the reason alone.
///
/// ```
/// use natsu::config::file::parse_route_url;
/// let r = parse_route_url("nats-route://ru:p%40ss@10.0.0.1:6222").unwrap();
/// assert_eq!((r.user.as_deref(), r.password.as_deref(), r.host.as_str(), r.port), (Some("ru"), Some("p@ss"), "10.0.0.1", 6222));
/// assert_eq!(parse_route_url("nats-leaf://h:7422").unwrap().port, 7422);
/// assert!(parse_route_url("10.0.0.1:6222").is_err());
/// ```
pub fn parse_route_url(u: &str) -> Result<RouteUrl, String> {
    parse_url(u, false)
}

/// `--cluster`'s URL: a route URL where port -1 is a random port (0) and an empty host is
/// every interface (0.0.0.0), as nats-server reads it.
pub(crate) fn parse_listen_url(u: &str) -> Result<RouteUrl, String> {
    parse_url(u, true)
}

fn parse_url(u: &str, listen: bool) -> Result<RouteUrl, String> {
    let (scheme, rest) = u.split_once("://").ok_or("expected scheme://host:port")?;
    // (`nats-leaf://` is how leaf remotes are often written; nats-server dials any scheme.)
    if !matches!(scheme, "nats" | "nats-route" | "nats-leaf" | "tls") {
        return Err("the scheme must be nats://, nats-route:// or tls://".into());
    }
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((ui, hp)) => (Some(ui), hp),
        None => (None, rest),
    };
    let (host, port) = split_host_port(hostport)?;
    // Go's words, as nats-server prints them for --cluster.
    let port = port.ok_or_else(|| format!("address {hostport}: missing port in address"))?;
    let port = match port.parse::<i64>() {
        Ok(-1) if listen => 0,
        Ok(n) if (1..=65535).contains(&n) => n as u16,
        _ => return Err(format!("invalid port \":{port}\" after host")),
    };
    let host = match host {
        "" if listen => "0.0.0.0",
        "" => return Err("missing host".into()),
        h => h,
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => match ui.split_once(':') {
            Some((user, pass)) => (Some(unescape(user)?), Some(unescape(pass)?)),
            None => (Some(unescape(ui)?), None),
        },
    };
    Ok(RouteUrl { scheme: scheme.to_string(), user, password, host: host.to_string(), port })
}

/// Where other servers should reach this one, from `advertise`: `host:port`, or `host` alone
/// for `cluster_port` (so are ports 0 and -1), as nats-server resolves it.
///
/// ```
/// use natsu::config::file::advertise_host_port;
/// assert_eq!(advertise_host_port("10.0.0.1:7222", 6222), Ok(("10.0.0.1".to_string(), 7222)));
/// assert_eq!(advertise_host_port("route.example.com", 6222), Ok(("route.example.com".to_string(), 6222)));
/// assert!(advertise_host_port("a:b:c", 6222).is_err());
/// ```
pub fn advertise_host_port(adv: &str, cluster_port: u16) -> Result<(String, u16), String> {
    // nats-server's words when it checks the value on reload.
    let bad = |why: String| format!("invalid Cluster.Advertise value of {adv}, err={why}");
    let (host, port) = split_host_port(adv).map_err(bad)?;
    if host.is_empty() {
        return Err(bad("missing host".into()));
    }
    let port = match port.map(str::parse::<i64>) {
        None | Some(Ok(0 | -1)) => cluster_port,
        Some(Ok(n)) if (1..=65535).contains(&n) => n as u16,
        _ => return Err(bad(format!("invalid port {:?}", port.unwrap_or_default()))),
    };
    Ok((host.to_string(), port))
}

/// `host:port`, `[v6]:port`, `host` or `[v6]` as Go's `net.SplitHostPort` reads them, in its
/// words; the host comes without brackets and has no blanks.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or_else(|| format!("address {s}: missing ']' in address"))?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(|| format!("address {s}: missing port in address"))?)),
        }
    } else {
        match s.matches(':').count() {
            0 => (s, None),
            1 => s.split_once(':').map(|(h, p)| (h, Some(p))).unwrap_or((s, None)),
            _ => return Err(format!("address {s}: too many colons in address")),
        }
    };
    if let Some(c) = host.chars().find(|c| c.is_whitespace()) {
        // Go's url words.
        return Err(format!("invalid character {:?} in host name", c.to_string()));
    }
    Ok((host, port))
}

/// A URL's user or password with its `%XX` escapes decoded (a password may hold `@` or `:`).
fn unescape(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'%' {
            out.push(b);
            continue;
        }
        let digit = |i: usize| rest.get(i).and_then(|&d| (d as char).to_digit(16));
        let (Some(hi), Some(lo)) = (digit(0), digit(1)) else {
            let at = s.len() - rest.len() - 1;
            // Go's words.
            return Err(format!("invalid URL escape {:?}", s[at..].chars().take(3).collect::<String>()));
        };
        out.push((hi * 16 + lo) as u8);
        rest = &rest[2..];
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once unescaped"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_urls() {
        let r = parse_route_url("nats://127.0.0.1:6222").unwrap();
        assert_eq!(r, RouteUrl { scheme: "nats".into(), user: None, password: None, host: "127.0.0.1".into(), port: 6222 });
        let r = parse_route_url("tls://u:p%3Aw@[::1]:6222/").unwrap();
        assert_eq!((r.scheme.as_str(), r.user.as_deref(), r.password.as_deref(), r.host.as_str(), r.port), ("tls", Some("u"), Some("p:w"), "::1", 6222));
        let r = parse_route_url("nats-route://u@h:1").unwrap();
        assert_eq!((r.user.as_deref(), r.password), (Some("u"), None));
        let table: &[(&str, &str)] = &[
            ("127.0.0.1:6222", "expected scheme://host:port"),
            ("http://h:1", "the scheme must be nats://, nats-route:// or tls://"),
            ("nats://h", "address h: missing port in address"),
            ("nats://:1", "missing host"),
            ("nats://h:0", "invalid port \":0\" after host"),
            ("nats://h:-1", "invalid port \":-1\" after host"),
            ("nats://h:x", "invalid port \":x\" after host"),
            ("nats://h:70000", "invalid port \":70000\" after host"),
            ("nats://::1:6222", "address ::1:6222: too many colons in address"),
            ("nats://[::1:6222", "address [::1:6222: missing ']' in address"),
            ("nats://a b:1", "invalid character \" \" in host name"),
            ("nats://u:%zz@h:1", "invalid URL escape \"%zz\""),
            ("nats://u:%4@h:1", "invalid URL escape \"%4\""),
        ];
        for (u, want) in table {
            assert_eq!(parse_route_url(u).unwrap_err(), *want, "{u}");
        }
        // --cluster: -1 is a random port, no host every interface.
        let l = parse_listen_url("nats://:-1").unwrap();
        assert_eq!((l.host.as_str(), l.port), ("0.0.0.0", 0));
        assert!(parse_listen_url("nats://h:0").is_err());
    }

    #[test]
    fn advertise() {
        let a = |s: &str| advertise_host_port(s, 6222);
        assert_eq!(a("h:7222"), Ok(("h".into(), 7222)));
        assert_eq!(a("h"), Ok(("h".into(), 6222)));
        assert_eq!(a("h:-1"), Ok(("h".into(), 6222)));
        assert_eq!(a("[::1]:7222"), Ok(("::1".into(), 7222)));
        assert_eq!(a("[::1]"), Ok(("::1".into(), 6222)));
        assert_eq!(a("::1").unwrap_err(), "invalid Cluster.Advertise value of ::1, err=address ::1: too many colons in address");
        assert_eq!(a("h:x").unwrap_err(), "invalid Cluster.Advertise value of h:x, err=invalid port \"x\"");
        assert_eq!(a(":7222").unwrap_err(), "invalid Cluster.Advertise value of :7222, err=missing host");
    }
}
