//! Users: the `users` arrays of `authorization` and of each account (password users and
//! NKey users, with their permissions), and the checks across all of them once the file is
//! read, as nats-server's: a name or an NKey once in the whole file, no account users beside
//! a single `authorization` user or token.

use std::collections::HashSet;

use super::Loader;
use crate::config::conf::{Kind, Map, Pos, Value};
use crate::config::keys::{PERMISSIONS, USER};
use crate::protocol::subject::{valid_queue, valid_subject};
use crate::server::options::{Permissions, ResponsePermission, SubjectPermission, User};
use crate::server::Options;

impl Loader {
    /// A `users` array, of `authorization` (account None) or of an account: password users
    /// and NKey users, each with where it was written. Duplicates are checked later, across
    /// every block.
    pub(super) fn users(&mut self, v: &Value, account: Option<&str>) -> Vec<(Pos, User)> {
        let Kind::Array(items) = &v.kind else {
            self.wrong_type("users", v, "an array of users");
            return Vec::new();
        };
        let mut users = Vec::new();
        for item in items {
            let Kind::Map(m) = &item.kind else {
                self.err(&item.pos, format_args!("a user entry must be a map {{user: ..., password: ...}}, got {}", item.describe()));
                continue;
            };
            let mut u = User { account: account.map(str::to_string), ..User::default() };
            let (mut named, mut with_password, mut ok) = (false, false, true);
            for e in &m.entries {
                let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
                match k.as_str() {
                    "user" | "username" => {
                        if let Some(s) = self.string(&k, v) {
                            u.user = s;
                            named = true;
                        }
                    }
                    "password" | "pass" => {
                        u.password = self.string(&k, v).unwrap_or_default();
                        with_password = true;
                    }
                    "nkey" => match self.string(&k, v) {
                        Some(key) if valid_user_nkey(&key) => u.nkey = Some(key),
                        Some(_) => {
                            // nats-server's words.
                            self.err(&item.pos, "Not a valid public nkey for a user");
                            ok = false;
                        }
                        None => ok = false,
                    },
                    "permissions" | "permission" | "authorization" => {
                        if let Some(pm) = self.map(&k, v) {
                            u.permissions = Some(self.permissions(pm));
                        }
                    }
                    _ => self.unserved(e, &USER),
                }
            }
            // nats-server's words.
            if u.nkey.is_some() && (named || with_password) {
                self.err(&item.pos, "Nkey users do not take usernames or passwords");
                continue;
            }
            if u.nkey.is_none() && !named {
                if ok {
                    self.err(&item.pos, "User entry requires a user");
                }
                continue;
            }
            users.push((item.pos.clone(), u));
        }
        users
    }

    /// `{publish: ..., subscribe: ...}`; `pub` and `sub` are nats-server's short forms,
    /// `import` and `export` its route spellings.
    fn permissions(&mut self, m: &Map) -> Permissions {
        let mut p = Permissions::default();
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "publish" | "pub" | "import" => p.publish = self.subject_permission(&k, v, false).or(p.publish.take()),
                "subscribe" | "sub" | "export" => p.subscribe = self.subject_permission(&k, v, true).or(p.subscribe.take()),
                "allow_responses" | "publish_allow_responses" => p.responses = self.responses(v),
                _ => self.unserved(e, &PERMISSIONS),
            }
        }
        p
    }

    /// `allow_responses`: `true` (one reply within two minutes), `false`, or `{max: N,
    /// expires: "1m"}` (0 is the default, a negative value unlimited), in nats-server's words.
    fn responses(&mut self, v: &Value) -> Option<ResponsePermission> {
        let m = match &v.kind {
            Kind::Bool(b) => return b.then(ResponsePermission::default),
            Kind::Map(m) => m,
            _ => {
                self.err(&v.pos, "error parsing response permissions, expected a boolean or a map");
                return None;
            }
        };
        let (mut max, mut expires) = (0i64, 0i64);
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "max" | "max_msgs" | "max_messages" | "max_responses" => max = self.int(&k, v)?,
                "expires" | "expiration" | "ttl" => {
                    let Kind::Str(s) = &v.kind else {
                        self.err(&v.pos, "error parsing expires, not a duration string");
                        return None;
                    };
                    // A negative duration (nats-server takes Go's "-1s") is no expiry.
                    let (negative, text) = match s.trim().strip_prefix('-') {
                        Some(rest) => (true, rest),
                        None => (false, s.trim()),
                    };
                    match super::parse_duration(text) {
                        Ok(d) if negative && !d.is_zero() => expires = -1,
                        Ok(d) => expires = d.as_nanos().min(i64::MAX as u128) as i64,
                        Err(err) => {
                            self.err(&v.pos, format_args!("error parsing expires: {err}"));
                            return None;
                        }
                    }
                }
                _ if e.used_as_variable => {}
                _ => self.err(&e.pos, format_args!("Unknown field {:?} parsing permissions", e.key)),
            }
        }
        Some(ResponsePermission::from_limits(max, expires))
    }

    /// A subject, a list of subjects (both: allowed), or `{allow: ..., deny: ...}`.
    fn subject_permission(&mut self, key: &str, v: &Value, sub: bool) -> Option<SubjectPermission> {
        match &v.kind {
            Kind::Map(m) => {
                let mut sp = SubjectPermission::default();
                for e in &m.entries {
                    match e.key.to_ascii_lowercase().as_str() {
                        "allow" => sp.allow = self.subjects(&e.key, &e.value, sub)?,
                        "deny" => sp.deny = self.subjects(&e.key, &e.value, sub)?,
                        _ if e.used_as_variable => {}
                        _ => self.err(&e.pos, format_args!("Unknown field name {:?} parsing subject permissions, only 'allow' or 'deny' are permitted", e.key)),
                    }
                }
                Some(sp)
            }
            _ => Some(SubjectPermission { allow: self.subjects(key, v, sub)?, deny: Vec::new() }),
        }
    }

    fn subjects(&mut self, key: &str, v: &Value, sub: bool) -> Option<Vec<String>> {
        let items: Vec<&Value> = match &v.kind {
            Kind::Array(a) => a.iter().collect(),
            _ => vec![v],
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            let Kind::Str(s) = &item.kind else {
                self.err(&item.pos, format_args!("{key:?}: expected a subject or an array of subjects, got {}", item.describe()));
                ok = false;
                continue;
            };
            if !valid_permission_subject(s, sub) {
                self.err(&item.pos, format_args!("subject {s:?} is not a valid subject"));
                ok = false;
                continue;
            }
            out.push(s.trim().to_string());
        }
        ok.then_some(out)
    }

    /// Users unique across `authorization` and every account (a name and an NKey share one
    /// namespace), and no account users (`accounts_users`: where each account's are) beside
    /// a single `authorization` user or token.
    pub(super) fn check_users(&mut self, o: &Options, accounts_users: &[&Pos]) {
        for at in accounts_users {
            // nats-server's words.
            if o.auth.user.is_some() {
                self.err(at, "Can not have a single user/pass and accounts");
            } else if o.auth.token.is_some() {
                self.err(at, "Can not have a token and accounts");
            }
        }
        let mut seen = HashSet::new();
        for (at, u) in std::mem::take(&mut self.users) {
            let id = u.nkey.clone().unwrap_or_else(|| u.user.clone());
            if seen.insert(id.clone()) {
                self.users.push((at, u));
            } else {
                // nats-server's words; it names the kind of the later entry.
                let kind = if u.nkey.is_some() { "nkey" } else { "user" };
                self.err(&at, format_args!("Duplicate {kind} {id:?} detected"));
            }
        }
    }
}

/// An NKey user's public key: `U…`, its checksum right and a valid Ed25519 point (one no
/// seed can sign for could never log in; nats-server checks only the checksum and prefix).
fn valid_user_nkey(key: &str) -> bool {
    nkeys::KeyPair::from_public_key(key).is_ok_and(|k| k.key_pair_type() == nkeys::KeyPairType::User)
}

/// Publish: a subject (wildcards allowed, they are patterns). Subscribe: a subject and an
/// optional queue group after a space, as nats-server's queue permissions.
fn valid_permission_subject(s: &str, sub: bool) -> bool {
    let mut parts = s.split_whitespace();
    let Some(subject) = parts.next() else { return false };
    if !valid_subject(subject.as_bytes()) {
        return false;
    }
    match (parts.next(), parts.next()) {
        (None, _) => true,
        (Some(q), None) if sub => valid_queue(q.as_bytes()),
        _ => false,
    }
}
