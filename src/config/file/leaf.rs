//! The `leafnodes` block (nats-server's alias `leaf` too): a leaf-node port for leafs to
//! connect to (hub), and remotes to dial (leaf).
//!
//! ```text
//! leafnodes {
//!   port: 7422
//!   authorization { users: [ {user: leaf, password: secret, account: A} ] }
//!   remotes: [ { url: "nats://leaf:secret@hub.example:7422", account: A } ]
//!   reconnect: 1
//! }
//! ```
//!
//! As nats-server 2.9 reads it, with its words where it has some; URLs and `advertise`
//! are checked when the file is read (nats-server finds a bad one when it dials). TLS,
//! WebSocket remotes, `hub`, deny lists and `min_version` are refused by name.

use super::Loader;
use crate::config::conf::{Entry, Kind, Map, Pos, Value};
use crate::config::keys::{CLUSTER_TLS, LEAFNODES, LEAF_AUTHORIZATION, LEAF_REMOTE, LEAF_USER};
use crate::server::leaf::{LeafNodes, LeafUser, Remote};
use crate::server::options::Tls;

impl Loader {
    /// `leafnodes { ... }`.
    pub(super) fn leafnodes(&mut self, m: &Map) -> LeafNodes {
        let mut l = LeafNodes::default();
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "listen" => {
                    if let Some((host, port)) = self.host_port(&k, v) {
                        if let Some(h) = host {
                            l.host = h;
                        }
                        l.port = leaf_port(port);
                    }
                }
                "port" => {
                    if let Some(p) = self.int_in(&k, v, -1, 65535) {
                        l.port = leaf_port(p);
                    }
                }
                "host" | "net" => l.host = self.string(&k, v).unwrap_or(l.host),
                "authorization" => {
                    if let Some(am) = self.map(&k, v) {
                        self.leaf_authorization(am, &v.pos, &mut l);
                    }
                }
                "remotes" => l.remotes = self.remotes(v),
                "reconnect" | "reconnect_delay" | "reconnect_interval" => l.reconnect = self.seconds(&k, v).unwrap_or(l.reconnect),
                "leafnode_advertise" | "advertise" => {
                    if let Some(a) = self.string(&k, v) {
                        match super::advertise_host_port(&a, 0) {
                            Ok(_) => l.advertise = Some(a),
                            Err(why) => self.err(&v.pos, why),
                        }
                    }
                }
                "no_advertise" => l.no_advertise = self.bool(&k, v).unwrap_or(l.no_advertise),
                // The clients' TLS keys less what a leaf connection has no use for
                // (`verify_and_map`), as for routes.
                "tls" => {
                    if let Some(tm) = self.map(&k, v) {
                        l.tls = self.tls(tm, &v.pos, &CLUSTER_TLS);
                    }
                }
                _ => self.unserved(e, &LEAFNODES),
            }
        }
        l
    }

    fn leaf_authorization(&mut self, m: &Map, pos: &Pos, l: &mut LeafNodes) {
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "user" | "username" => l.user = self.string(&k, v).or(l.user.take()),
                "pass" | "password" => l.password = self.string(&k, v).or(l.password.take()),
                "timeout" => l.auth_timeout = self.seconds(&k, v).or(l.auth_timeout),
                "account" => l.account = self.string(&k, v).or(l.account.take()),
                "users" => l.users = self.leaf_users(v),
                _ => self.unserved(e, &LEAF_AUTHORIZATION),
            }
        }
        // nats-server's check (validateLeafNodeAuthOptions).
        if l.user.is_some() && !l.users.is_empty() {
            self.err(pos, "can not have a single user/pass and a users array");
        }
        let mut seen = std::collections::HashSet::new();
        for u in &l.users {
            if !seen.insert(u.user.clone()) {
                self.err(pos, format_args!("duplicate user {:?} detected in leafnode authorization", u.user));
            }
        }
    }

    fn leaf_users(&mut self, v: &Value) -> Vec<LeafUser> {
        let Kind::Array(items) = &v.kind else {
            self.err(&v.pos, format_args!("Expected users field to be an array, got {}", v.describe()));
            return Vec::new();
        };
        let mut users = Vec::new();
        for item in items {
            let Kind::Map(um) = &item.kind else {
                self.err(&item.pos, format_args!("Expected user entry to be a map/struct, got {}", item.describe()));
                continue;
            };
            let mut u = LeafUser { user: String::new(), password: String::new(), account: None };
            for e in &um.entries {
                let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
                match k.as_str() {
                    "user" | "username" => u.user = self.string(&k, v).unwrap_or_default(),
                    "pass" | "password" => u.password = self.string(&k, v).unwrap_or_default(),
                    "account" => u.account = self.string(&k, v),
                    _ => self.unserved(e, &LEAF_USER),
                }
            }
            users.push(u);
        }
        users
    }

    /// `remotes: [ { url | urls, account, credentials } ]`.
    fn remotes(&mut self, v: &Value) -> Vec<Remote> {
        let Kind::Array(items) = &v.kind else {
            self.err(&v.pos, format_args!("Expected remotes field to be an array, got {}", v.describe()));
            return Vec::new();
        };
        let mut remotes = Vec::new();
        for item in items {
            let Kind::Map(rm) = &item.kind else {
                self.err(&item.pos, format_args!("Expected remote leafnode entry to be a map/struct, got {}", item.describe()));
                continue;
            };
            let mut r = Remote::default();
            let mut has_url = false;
            for e in &rm.entries {
                let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
                match k.as_str() {
                    "url" | "urls" => {
                        has_url = true;
                        r.urls.extend(self.leaf_urls(e));
                    }
                    "account" | "local" => r.account = self.string(&k, v),
                    "creds" | "credentials" => r.credentials = self.string(&k, v).map(expand_home),
                    "tls" => {
                        if let Some(tm) = self.map(&k, v) {
                            r.tls = self.remote_tls(tm, &v.pos);
                        }
                    }
                    // natsu dials the URLs in the order given; nats-server shuffles them
                    // unless told not to.
                    "no_randomize" | "dont_randomize" => {
                        self.bool(&k, v);
                    }
                    _ => self.unserved(e, &LEAF_REMOTE),
                }
            }
            if !has_url {
                self.err(&item.pos, "remote leafnode entry has no url");
            }
            remotes.push(r);
        }
        remotes
    }

    /// One URL or an array of them, each `nats://[user:pass@]host:port`.
    fn leaf_urls(&mut self, e: &Entry) -> Vec<String> {
        let v = &e.value;
        let items: Vec<&Value> = match &v.kind {
            Kind::Array(items) => items.iter().collect(),
            Kind::Str(_) => vec![v],
            _ => {
                self.err(&v.pos, format_args!("Expected remote leafnode url to be an array or string, got {}", v.describe()));
                return Vec::new();
            }
        };
        let mut urls = Vec::new();
        for item in items {
            let Some(u) = self.string(&e.key, item) else { continue };
            let scheme = u.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
            if matches!(scheme.as_str(), "ws" | "wss") {
                self.err(&item.pos, format_args!("{scheme}:// leafnode URLs are not supported by natsu yet"));
                continue;
            }
            match super::parse_route_url(&u) {
                Ok(_) => urls.push(u),
                Err(why) => self.err(&item.pos, format_args!("error parsing leafnode url {u:?}: {why}")),
            }
        }
        urls
    }
}

impl Loader {
    /// A remote's `tls { ... }`: a leaf verifies its hub (`ca_file`, or the system's roots)
    /// and presents a certificate only if it has one, so neither file is required.
    fn remote_tls(&mut self, m: &Map, pos: &Pos) -> Option<Tls> {
        let mut t = Tls::default();
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                k if CLUSTER_TLS.not_served.contains(&k) => self.unserved(e, &CLUSTER_TLS),
                "cert_file" => t.cert_file = self.string(&k, v).unwrap_or_default(),
                "key_file" => t.key_file = self.string(&k, v).unwrap_or_default(),
                "ca_file" => t.ca_file = self.string(&k, v).or(t.ca_file.take()),
                "verify" => t.verify = self.bool(&k, v).unwrap_or(t.verify),
                "timeout" => t.timeout = self.seconds(&k, v).unwrap_or(t.timeout),
                _ => self.unserved(e, &CLUSTER_TLS),
            }
        }
        if t.cert_file.is_empty() != t.key_file.is_empty() {
            self.err(pos, if t.cert_file.is_empty() { "missing 'cert_file' in TLS configuration" } else { "missing 'key_file' in TLS configuration" });
            return None;
        }
        Some(t)
    }
}

/// A leaf-node port: 0 leaves the port off (nats-server's), -1 picks a free one.
fn leaf_port(p: i64) -> Option<u16> {
    match p {
        0 => None,
        -1 => Some(0),
        n => Some(n as u16),
    }
}

/// `~/x` is under the home directory, as nats-server expands a creds path.
fn expand_home(p: String) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::cli::LogOptions;
    use crate::server::Options;

    /// Load `text` as `t.conf` in a directory of its own; messages name it "t.conf".
    fn load(text: &str) -> Result<(Options, LogOptions, Vec<String>), String> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("natsu-leafconf-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.conf");
        std::fs::write(&p, text).unwrap();
        let prefix = format!("{}/", dir.display());
        let r = super::super::load_with_env(p.to_str().unwrap(), &|_| None).map_err(|e| e.replace(&prefix, ""));
        std::fs::remove_dir_all(&dir).ok();
        r
    }

    fn ok(text: &str) -> (Options, LogOptions, Vec<String>) {
        load(text).unwrap_or_else(|e| panic!("{text:?}:\n{e}"))
    }

    fn errors(text: &str) -> Vec<String> {
        match load(text) {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(e) => e.lines().map(str::to_string).collect(),
        }
    }

    #[test]
    fn a_hub_and_a_leaf() {
        let (o, _, _) = ok("leafnodes {\n listen: 127.0.0.1:7422\n authorization { users: [ {user: a, password: b, account: A} ], timeout: 0.5 }\n reconnect: 2\n remotes: [ {urls: [\"nats://u:p@h:1\", \"nats://h:2\"], account: A, credentials: \"/x.creds\"} ]\n}\naccounts { A {} }");
        let l = o.leafnodes.unwrap();
        assert_eq!((l.host.as_str(), l.port), ("127.0.0.1", Some(7422)));
        assert_eq!((l.users[0].user.as_str(), l.users[0].account.as_deref()), ("a", Some("A")));
        assert_eq!(l.auth_timeout, Some(std::time::Duration::from_millis(500)));
        assert_eq!(l.reconnect, std::time::Duration::from_secs(2));
        assert_eq!(l.remotes[0].urls, ["nats://u:p@h:1", "nats://h:2"]);
        assert_eq!((l.remotes[0].account.as_deref(), l.remotes[0].credentials.as_deref()), (Some("A"), Some("/x.creds")));
        assert_eq!(ok("leaf { port: -1 }").0.leafnodes.unwrap().port, Some(0));
        assert_eq!(ok("leafnodes { remotes: [ {url: \"nats://h:1\"} ] }").0.leafnodes.unwrap().port, None);
    }

    #[test]
    fn what_natsu_refuses() {
        for (text, want) in [
            ("leafnodes { port: 7422, tls { cert_file: a, key_file: b, verify_and_map: true } }", "t.conf:1:58: \"verify_and_map\" is not supported by natsu yet"),
            ("leafnodes { port: 7422, tls { cert_file: a } }", "t.conf:1:29: missing 'key_file' in TLS configuration"),
            ("leafnodes { remotes: [ {url: \"nats://h:1\", tls: { cert_file: a }} ] }", "t.conf:1:49: missing 'key_file' in TLS configuration"),
            ("leafnodes { remotes: [ {url: \"nats://h:1\", tls: { ca_file: a, pinned_certs: [] }} ] }", "t.conf:1:63: \"pinned_certs\" is not supported by natsu yet"),
            ("leafnodes { min_version: 2.8.0 }", "t.conf:1:13: \"min_version\" is not supported by natsu yet"),
            ("leafnodes { remotes: [ {url: \"nats://h:1\", hub: true} ] }", "t.conf:1:44: \"hub\" is not supported by natsu yet"),
            ("leafnodes { remotes: [ {url: \"nats://h:1\", deny_imports: [a]} ] }", "t.conf:1:44: \"deny_imports\" is not supported by natsu yet"),
            ("leafnodes { remotes: [ {url: \"ws://h:1\"} ] }", "t.conf:1:30: ws:// leafnode URLs are not supported by natsu yet"),
            ("leafnodes { remotes: [ {url: \"h:1\"} ] }", "t.conf:1:30: error parsing leafnode url \"h:1\": expected scheme://host:port"),
            ("leafnodes { remotes: [ {account: A} ] }", "t.conf:1:24: remote leafnode entry has no url"),
            ("leafnodes { remotes: 1 }", "t.conf:1:22: Expected remotes field to be an array, got integer 1"),
            ("leafnodes { bogus: 1 }", "t.conf:1:13: unknown field \"bogus\""),
            ("leafnodes { authorization { user: a, password: b, users: [ {user: c, password: d} ] } }", "t.conf:1:27: can not have a single user/pass and a users array"),
        ] {
            assert_eq!(errors(text), [want], "{text}");
        }
    }
}
