//! The `websocket` block: the port browsers (nats.ws) connect to, as nats-server 2.9 reads
//! it, with its checks and words.
//!
//! ```text
//! websocket {
//!   listen: 0.0.0.0:8443
//!   tls { cert_file: ws-cert.pem, key_file: ws-key.pem }
//!   same_origin: false
//!   allowed_origins: [ "https://app.example.com" ]
//!   compression: true
//!   handshake_timeout: "5s"
//!   authorization { token: s3cr3t, timeout: 2 }
//! }
//! ```
//!
//! TLS is required unless `no_tls: true`; a port of 0 (or none) leaves the listener off, as
//! in nats-server. `jwt_cookie` (operator mode) is refused as not served yet.

use super::Loader;
use crate::config::conf::{Kind, Map, Pos, Value};
use crate::config::keys::{AUTHORIZATION, WEBSOCKET, WEBSOCKET_TLS};
use crate::server::options::{Options, Websocket};

impl Loader {
    /// `websocket { ... }`: None when it sets no port (the listener is off).
    pub(super) fn websocket(&mut self, m: &Map, pos: &Pos) -> Option<Websocket> {
        let mut w = Websocket::default();
        let mut port = 0i64;
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "listen" => {
                    if let Some((host, p)) = self.host_port(&k, v) {
                        if let Some(h) = host {
                            w.host = h;
                        }
                        port = p;
                    }
                }
                "port" => port = self.int_in(&k, v, -1, 65535).unwrap_or(port),
                "host" | "net" => w.host = self.string(&k, v).unwrap_or(w.host),
                "advertise" => {
                    if let Some(a) = self.string(&k, v) {
                        match super::advertise_host_port(&a, 0) {
                            Ok(_) => w.advertise = Some(a),
                            Err(why) => self.err(&v.pos, why),
                        }
                    }
                }
                "no_tls" => w.no_tls = self.bool(&k, v).unwrap_or(w.no_tls),
                "tls" => {
                    if let Some(tm) = self.map(&k, v) {
                        w.tls = self.tls(tm, &v.pos, &WEBSOCKET_TLS);
                    }
                }
                "same_origin" => w.same_origin = self.bool(&k, v).unwrap_or(w.same_origin),
                // nats-server's spellings.
                "allowed_origins" | "allowed_origin" | "allow_origins" | "allow_origin" | "origins" | "origin" => w.allowed_origins = self.origins(&k, v),
                "handshake_timeout" => w.handshake_timeout = self.seconds(&k, v).or(w.handshake_timeout),
                "compress" | "compression" => w.compression = self.bool(&k, v).unwrap_or(w.compression),
                "authorization" | "authentication" => {
                    if let Some(am) = self.map(&k, v) {
                        self.websocket_authorization(am, &mut w);
                    }
                }
                "no_auth_user" => {
                    // Empty is none, as in nats-server; checked against the users once the
                    // file is read.
                    w.no_auth_user = self.string(&k, v).filter(|s| !s.is_empty());
                }
                _ => self.unserved(e, &WEBSOCKET),
            }
        }
        if port == 0 {
            return None;
        }
        self.websocket_at = Some(pos.clone());
        w.port = if port == -1 { 0 } else { port as u16 };
        // nats-server's words (it finds this when it starts).
        if w.tls.is_none() && !w.no_tls {
            self.err(pos, "websocket requires TLS configuration");
        }
        Some(w)
    }

    fn websocket_authorization(&mut self, m: &Map, w: &mut Websocket) {
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "user" | "username" => w.user = self.string(&k, v).or(w.user.take()),
                "password" | "pass" => w.password = self.string(&k, v).or(w.password.take()),
                "token" => w.token = self.string(&k, v).or(w.token.take()),
                "timeout" => w.auth_timeout = self.seconds(&k, v).or(w.auth_timeout),
                // nats-server's simple authorization has no users here.
                "users" | "nkeys" => self.err(&e.pos, format_args!("{:?} is not allowed in websocket authorization: users are configured in the top-level authorization or accounts", e.key)),
                _ => self.unserved(e, &AUTHORIZATION),
            }
        }
    }

    /// `allowed_origins`: a string or an array of strings, each an absolute URL
    /// (`scheme://host[:port]`).
    fn origins(&mut self, key: &str, v: &Value) -> Vec<String> {
        let items: Vec<&Value> = match &v.kind {
            Kind::Array(a) => a.iter().collect(),
            _ => vec![v],
        };
        let mut out = Vec::new();
        for item in items {
            let Some(s) = self.string(key, item) else { continue };
            match crate::server::websocket::handshake::parse_origin(&s) {
                Ok(_) => out.push(s),
                // nats-server's words; it takes any string Go's url.Parse takes, and then
                // never matches one without a scheme and host.
                Err(why) => self.err(&item.pos, format_args!("unable to parse allowed origin: {why}")),
            }
        }
        out
    }

    /// The checks that need the whole file: the websocket's `no_auth_user` names a user,
    /// and its single user or token cannot stand beside a users list (nats-server's words).
    pub(super) fn finish_websocket(&mut self, o: &Options) {
        let (Some(w), Some(at)) = (&o.websocket, self.websocket_at.take()) else { return };
        let named: Vec<&str> = o.auth.users.iter().filter(|u| u.nkey.is_none()).map(|u| u.user.as_str()).collect();
        if let Some(name) = &w.no_auth_user {
            if named.is_empty() {
                self.err(&at, format_args!("no_auth_user: {name:?} present, but users are not defined"));
            } else if !named.contains(&name.as_str()) {
                self.err(&at, format_args!("no_auth_user: {name:?} not present as user in authorization block or account configuration"));
            }
        }
        if !o.auth.users.is_empty() {
            if w.user.is_some() {
                self.err(&at, "websocket authentication username not compatible with presence of users/nkeys");
            }
            if w.token.is_some() {
                self.err(&at, "websocket authentication token not compatible with presence of users/nkeys");
            }
        }
    }
}
