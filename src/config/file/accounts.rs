//! The `accounts` block, `no_auth_user` and `system_account`, and the checks that need the
//! whole file: users unique across `authorization` and every account, exports and imports
//! that name accounts which exist, imports their exporter allows, no import cycles.
//!
//! As nats-server 2.9 checks them, in its words, except where nats-server accepts something
//! a broker must not: an empty export `accounts` list (nats-server makes the export public),
//! an import key it drops (a service's `prefix`), an entry with neither stream nor service.
//! natsu refuses those and says why.
//!
//! ```text
//! accounts {
//!   A { users: [{user: a, password: b}], exports: [{stream: "a.>"}, {service: "req", accounts: [B]}] }
//!   B { users: [{nkey: U…}], imports: [{stream: {account: A, subject: "a.>"}, prefix: from_a}
//!                                      {service: {account: A, subject: "req"}, to: "a.req"}] }
//! }
//! ```

use super::mapping::{self, Mapped};
use super::Loader;
use crate::config::conf::{Kind, Map, Pos, Value};
use crate::config::keys::{ACCOUNT, EXPORT, IMPORT, IMPORT_FROM};
use crate::protocol::subject::{valid_literal_subject, valid_subject};
use crate::server::options::{Account, Export, ExportKind, Import, ResponseType, GLOBAL_ACCOUNT, SYSTEM_ACCOUNT};
use crate::server::sublist::pattern_covers;
use crate::server::Options;

/// One account as read, with where its parts were written, for the checks across accounts.
pub(super) struct Read {
    account: Account,
    /// The `users` value, when the account has users.
    users_at: Option<Pos>,
    /// Where each of `account.exports` and `account.imports` was written.
    exports_at: Vec<Pos>,
    imports_at: Vec<Pos>,
}

/// The `stream` or `service` an import names, before its exporter is looked up.
struct From {
    kind: ExportKind,
    account: String,
    subject: String,
}

/// The kind an export's or import's `stream` or `service` key names.
fn kind_of(key: &str) -> ExportKind {
    if key == "stream" {
        ExportKind::Stream
    } else {
        ExportKind::Service
    }
}

fn kind_name(k: ExportKind) -> &'static str {
    match k {
        ExportKind::Stream => "stream",
        ExportKind::Service => "service",
    }
}

impl Loader {
    /// `accounts { A { ... } }` (in any of the conf forms) or `accounts: [A, B]` (accounts
    /// with no users, exports or imports). A second `accounts` key replaces the first, as a
    /// second `authorization` does.
    pub(super) fn accounts(&mut self, v: &Value) {
        self.accounts.clear();
        self.users.retain(|(_, u)| u.account.is_none());
        match &v.kind {
            Kind::Array(items) => {
                for item in items {
                    let Some(name) = self.string("accounts", item) else { continue };
                    if self.accounts.iter().any(|r| r.account.name == name) {
                        // nats-server's words.
                        self.err(&item.pos, format_args!("Duplicate Account Entry: {name}"));
                        continue;
                    }
                    if self.account_name(&name, &item.pos) {
                        self.accounts.push(Read { account: Account { name, ..Account::default() }, users_at: None, exports_at: Vec::new(), imports_at: Vec::new() });
                    }
                }
            }
            Kind::Map(m) => {
                for e in &m.entries {
                    if e.used_as_variable {
                        continue;
                    }
                    let Kind::Map(am) = &e.value.kind else {
                        // nats-server's words.
                        self.err(&e.pos, "Expected map entries for accounts");
                        continue;
                    };
                    if !self.account_name(&e.key, &e.pos) {
                        continue;
                    }
                    // A name written twice: the later block wins, as in nats-server.
                    self.accounts.retain(|r| r.account.name != e.key);
                    self.users.retain(|(_, u)| u.account.as_deref() != Some(e.key.as_str()));
                    let r = self.account(&e.key, am);
                    self.accounts.push(r);
                }
            }
            _ => self.wrong_type("accounts", v, "a map of accounts or an array of account names"),
        }
    }

    /// Whether `name` may name an account. nats-server starts with a name that cannot be a
    /// subject token, but its own `$SYS.REQ.ACCOUNT.<name>` services for it fail.
    fn account_name(&mut self, name: &str, at: &Pos) -> bool {
        if name == GLOBAL_ACCOUNT {
            // nats-server's words.
            self.err(at, format_args!("{name:?} is a Reserved Account"));
            return false;
        }
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control()) {
            self.err(at, format_args!("account name {name:?} must be non-empty and cannot contain spaces or new lines"));
            return false;
        }
        true
    }

    fn account(&mut self, name: &str, m: &Map) -> Read {
        let mut r = Read { account: Account { name: name.to_string(), ..Account::default() }, users_at: None, exports_at: Vec::new(), imports_at: Vec::new() };
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "users" => {
                    // A second `users` replaces the first.
                    self.users.retain(|(_, u)| u.account.as_deref() != Some(name));
                    let users = self.users(v, Some(name));
                    r.users_at = (!users.is_empty()).then(|| v.pos.clone());
                    self.users.extend(users);
                }
                "exports" | "imports" => {
                    let Kind::Array(items) = &v.kind else {
                        self.wrong_type(&k, v, "an array");
                        continue;
                    };
                    for item in items {
                        if k == "exports" {
                            if let Some(x) = self.export(item) {
                                r.account.exports.push(x);
                                r.exports_at.push(item.pos.clone());
                            }
                        } else if let Some(i) = self.import(item) {
                            r.account.imports.push(i);
                            r.imports_at.push(item.pos.clone());
                        }
                    }
                }
                "mappings" | "maps" => r.account.mappings = self.mappings(v),
                _ => self.unserved(e, &ACCOUNT),
            }
        }
        r
    }

    /// An entry of `exports` or `imports` (`what`), which must be a map.
    fn item_map<'v>(&mut self, what: &str, item: &'v Value) -> Option<&'v Map> {
        match &item.kind {
            Kind::Map(m) => Some(m),
            _ => {
                // nats-server's words, natsu's type names.
                self.err(&item.pos, format_args!("{what} Items should be a map with type entry, got {}", item.describe()));
                None
            }
        }
    }

    /// `{stream: S}` or `{service: S, response_type: stream}`, either with `accounts: [..]`.
    fn export(&mut self, item: &Value) -> Option<Export> {
        let m = self.item_map("Export", item)?;
        let (mut what, mut accounts, mut response) = (None, None, None);
        let mut ok = true;
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "stream" | "service" => {
                    let kind = kind_of(&k);
                    let Some(s) = self.string(&k, v) else {
                        ok = false;
                        continue;
                    };
                    match what {
                        // nats-server's words.
                        Some((seen, _)) if seen != kind => self.err(&e.pos, format_args!("Detected {k} {s:?} but already saw a {}", kind_name(seen))),
                        _ if !valid_subject(s.as_bytes()) => self.err(&v.pos, format_args!("subject {s:?} is not a valid subject")),
                        _ => {
                            what = Some((kind, s));
                            continue;
                        }
                    }
                    ok = false;
                }
                "accounts" => match self.account_list(v) {
                    Some(a) => accounts = Some(a),
                    None => ok = false,
                },
                "response" | "response_type" => {
                    let Some(s) = self.string(&k, v) else {
                        ok = false;
                        continue;
                    };
                    // Any case, as nats-server.
                    let r = match s.to_ascii_lowercase().as_str() {
                        "singleton" => ResponseType::Singleton,
                        "stream" => ResponseType::Stream,
                        "chunked" => ResponseType::Chunked,
                        _ => {
                            self.err(&v.pos, format_args!("Unknown response type: {s:?}"));
                            ok = false;
                            continue;
                        }
                    };
                    response = Some((r, e.pos.clone()));
                }
                _ => {
                    self.unserved(e, &EXPORT);
                    ok = false;
                }
            }
        }
        let Some((kind, subject)) = what else {
            // nats-server takes an entry without a subject and exports nothing.
            if ok {
                self.err(&item.pos, "an export needs a \"stream\" or a \"service\" subject");
            }
            return None;
        };
        if let (ExportKind::Stream, Some((_, at))) = (kind, &response) {
            // nats-server's words.
            self.err(at, "Detected response directive on non-service");
            return None;
        }
        ok.then(|| Export { kind, subject, accounts, response_type: response.map(|r| r.0).unwrap_or_default() })
    }

    /// An export's `accounts: [A, B]`. An empty list is refused: nats-server reads it as no
    /// list, which makes the export public, surely not what whoever wrote `[]` meant.
    fn account_list(&mut self, v: &Value) -> Option<Vec<String>> {
        let Kind::Array(items) = &v.kind else {
            self.wrong_type("accounts", v, "an array of account names");
            return None;
        };
        if items.is_empty() {
            self.err(&v.pos, "an empty \"accounts\" list makes the export public in nats-server: leave it out for a public export, or name the accounts");
            return None;
        }
        let names: Vec<Option<String>> = items.iter().map(|i| self.string("accounts", i)).collect();
        names.into_iter().collect()
    }

    /// `{stream: {account: A, subject: S}, prefix: P}`, `{stream: {...}, to: T}`,
    /// `{service: {account: A, subject: S}, to: T}`.
    fn import(&mut self, item: &Value) -> Option<Import> {
        let m = self.item_map("Import", item)?;
        let (mut from, mut prefix, mut to): (Option<From>, Option<&Value>, Option<&Value>) = (None, None, None);
        let mut ok = true;
        for e in &m.entries {
            let (k, v) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "stream" | "service" => {
                    let kind = kind_of(&k);
                    if let Some(seen) = from.as_ref().map(|f| f.kind).filter(|&s| s != kind) {
                        // nats-server's words.
                        self.err(&e.pos, format_args!("Detected {k} but already saw a {}", kind_name(seen)));
                        ok = false;
                        continue;
                    }
                    match self.import_from(kind, v) {
                        Some(f) => from = Some(f),
                        None => ok = false,
                    }
                }
                "prefix" => prefix = Some(v),
                "to" => to = Some(v),
                _ => {
                    self.unserved(e, &IMPORT);
                    ok = false;
                }
            }
        }
        let Some(f) = from else {
            // nats-server takes an entry without a stream or service and imports nothing.
            if ok {
                self.err(&item.pos, "an import needs a \"stream\" or a \"service\"");
            }
            return None;
        };
        // An empty prefix or `to` is none, as in nats-server.
        let text = |l: &mut Loader, key: &str, v: Option<&Value>| -> Option<Option<(String, Pos)>> {
            let Some(v) = v else { return Some(None) };
            let s = l.string(key, v)?;
            Some((!s.is_empty()).then(|| (s, v.pos.clone())))
        };
        let (Some(prefix), Some(to)) = (text(self, "prefix", prefix), text(self, "to", to)) else { return None };
        let mut i = Import { kind: f.kind, account: f.account, subject: f.subject, prefix: None, to: None };
        let what = format!("Error adding {} import {:?}", kind_name(i.kind), i.subject);
        if let Some((p, at)) = prefix {
            if i.kind == ExportKind::Service {
                // nats-server drops it: the importer would publish on the subject itself.
                self.err(&at, "a service import takes no 'prefix' (nats-server would drop it): use 'to'");
                return None;
            }
            if to.is_some() {
                // nats-server's words.
                self.err(&item.pos, "Stream import can not have a 'prefix' and a 'to' property");
                return None;
            }
            // `p` and `p.` are the same prefix to nats-server.
            let p = p.strip_suffix('.').unwrap_or(&p);
            if mapping::has_wildcard(p) {
                self.err(&at, format_args!("{what}: stream import prefix can not contain wildcard tokens"));
                return None;
            }
            if !valid_literal_subject(p.as_bytes()) {
                self.err(&at, format_args!("prefix {p:?} is not a valid subject prefix"));
                return None;
            }
            i.prefix = Some(p.to_string());
        }
        if let Some((t, at)) = to {
            match mapped_to(&i, &t) {
                Ok(t) => i.to = Some(t),
                Err(why) => {
                    self.err(&at, format_args!("{what}: {why}"));
                    return None;
                }
            }
        }
        ok.then_some(i)
    }

    /// `{account: A, subject: S}`.
    fn import_from(&mut self, kind: ExportKind, v: &Value) -> Option<From> {
        let Kind::Map(m) = &v.kind else {
            // nats-server's words, natsu's type names.
            let k = if kind == ExportKind::Stream { "Stream" } else { "Service" };
            self.err(&v.pos, format_args!("{k} entry should be an account map, got {}", v.describe()));
            return None;
        };
        let (mut account, mut subject, mut ok) = (String::new(), None, true);
        for e in &m.entries {
            let (k, ev) = (e.key.to_ascii_lowercase(), &e.value);
            match k.as_str() {
                "account" => account = self.string(&k, ev).unwrap_or_default(),
                "subject" => subject = self.string(&k, ev).map(|s| (s, ev.pos.clone())),
                _ => {
                    self.unserved(e, &IMPORT_FROM);
                    ok = false;
                }
            }
        }
        match subject {
            Some((s, at)) if !account.is_empty() && !s.is_empty() => {
                if !valid_subject(s.as_bytes()) {
                    self.err(&at, format_args!("subject {s:?} is not a valid subject"));
                    return None;
                }
                ok.then_some(From { kind, account, subject: s })
            }
            _ => {
                // nats-server's words.
                self.err(&v.pos, "Expect an account name and a subject");
                None
            }
        }
    }

    /// The checks that need the whole file, once it is read, then the accounts, users,
    /// `no_auth_user` and `system_account` into `o`.
    pub(super) fn finish(&mut self, o: &mut Options) {
        let read = std::mem::take(&mut self.accounts);
        let accounts: Vec<&Account> = read.iter().map(|r| &r.account).collect();
        let find = |name: &str| accounts.iter().position(|a| a.name == name);
        for r in &read {
            for (x, at) in r.account.exports.iter().zip(&r.exports_at) {
                for name in x.accounts.iter().flatten().filter(|n| find(n).is_none()) {
                    // nats-server's words.
                    self.err(at, format_args!("{name:?} account not defined for {} export", kind_name(x.kind)));
                }
            }
        }
        // Imports are added in file order; each is checked for cycles against those before.
        let mut added: Vec<Edge> = Vec::new();
        for (into, r) in read.iter().enumerate() {
            for (i, at) in r.account.imports.iter().zip(&r.imports_at) {
                let kind = kind_name(i.kind);
                // nats-server's words, with the accounts named.
                let Some(from) = find(&i.account) else {
                    self.err(at, format_args!("{:?} account not defined for {kind} import", i.account));
                    continue;
                };
                let what = format!("Error adding {kind} import {:?}", i.subject);
                if !exports_to(accounts[from], &r.account.name, i.kind, &i.subject) {
                    self.err(at, format_args!("{what}: {kind} import not authorized (account {:?} does not export it to account {:?})", i.account, r.account.name));
                    continue;
                }
                let edge = Edge::new(into, from, i);
                if edge.forms_cycle(&added, &accounts) {
                    self.err(at, format_args!("{what}: import forms a cycle"));
                    continue;
                }
                added.push(edge);
            }
        }
        let accounts_users: Vec<&Pos> = read.iter().filter_map(|r| r.users_at.as_ref()).collect();
        self.check_users(o, &accounts_users);
        let users = std::mem::take(&mut self.users);
        o.auth.users = users.into_iter().map(|(_, u)| u).collect();
        if let Some((at, name)) = self.no_auth_user.take() {
            // As nats-server 2.9 checks it when it starts, in its words: an NKey user does
            // not count.
            let named = o.auth.users.iter().filter(|u| u.nkey.is_none());
            if named.clone().next().is_none() {
                self.err(&at, format_args!("no_auth_user: {name:?} present, but users are not defined"));
            } else if !named.clone().any(|u| u.user == name) {
                self.err(&at, format_args!("no_auth_user: {name:?} not present as user in authorization block or account configuration"));
            }
            o.auth.no_auth_user = Some(name);
        }
        // In operator mode the accounts come from JWTs: see `finish_operator`.
        let sys = if self.operator.operators_at.is_none() { self.system_account.take() } else { None };
        if let Some((at, name)) = sys {
            // As nats-server when it starts (its words), which also takes `$G`; natsu takes the
            // default `$SYS` too, which nats-server refuses unless an account block names it.
            if find(&name).is_none() && name != GLOBAL_ACCOUNT && name != SYSTEM_ACCOUNT {
                self.err(&at, "error resolving system account: account missing");
            }
            o.system_account = name;
        }
        o.accounts = read.into_iter().map(|r| r.account).collect();
    }
}

/// An import's `to` as the importer's side of the import: checked as nats-server checks
/// it, and wildcard references (`$1`, `{{wildcard(1)}}`) written as the `*` they stand
/// for. Err is the reason after "Error adding ... import".
fn mapped_to(i: &Import, to: &str) -> Result<String, String> {
    let service = i.kind == ExportKind::Service;
    // nats-server's words: the importer subscribes on a service's `to`.
    if service && !valid_subject(to.as_bytes()) {
        return Err("sublist: invalid subject".into());
    }
    // nats-server names the subscribed side first.
    let (a, b) = if service { (to, i.subject.as_str()) } else { (i.subject.as_str(), to) };
    let failed = |why: String| format!("failed to create mapping transform for {} import subject {a:?} to {b:?}: {why}", kind_name(i.kind));
    let to = match mapping::map(&i.subject, to) {
        Mapped::Same => to.to_string(),
        Mapped::To(t) => t,
        Mapped::Invalid(why) => return Err(failed(why)),
        Mapped::NotServed(what) => return Err(format!("{what} in 'to' is not supported by natsu yet")),
    };
    // nats-server delivers a stream on any `to`, even one no client can subscribe to.
    if !valid_subject(to.as_bytes()) {
        return Err(format!("'to' {to:?} is not a valid subject"));
    }
    // A subject without wildcards: a service's `to` may have them (many subjects to one
    // service); a stream delivered on a wildcard subject could never be received.
    if !service && !mapping::has_wildcard(&i.subject) && !valid_literal_subject(to.as_bytes()) {
        return Err(format!("'to' {to:?} must be a literal subject, as the stream's subject is"));
    }
    Ok(to)
}

/// Whether `exporter` exports `subject` (all of it) as `kind` to the account `importer`.
pub(super) fn exports_to(exporter: &Account, importer: &str, kind: ExportKind, subject: &str) -> bool {
    exporter.exports.iter().any(|x| x.kind == kind && pattern_covers(x.subject.as_bytes(), subject.as_bytes()) && x.accounts.as_ref().map_or(true, |a| a.iter().any(|n| n == importer)))
}

/// An import as the cycle check sees it: between account indexes, with its subject in the
/// exporter (`remote`) and in the importer (`local`: prefixed, or `to`).
struct Edge {
    kind: ExportKind,
    into: usize,
    from: usize,
    remote: String,
    local: String,
}

impl Edge {
    fn new(into: usize, from: usize, i: &Import) -> Edge {
        let local = match (&i.prefix, &i.to) {
            (Some(p), _) => format!("{p}.{}", i.subject),
            (None, Some(t)) => t.clone(),
            (None, None) => i.subject.clone(),
        };
        Edge { kind: i.kind, into, from, remote: i.subject.clone(), local }
    }

    /// Whether adding this import lets a message go round for ever, checked as nats-server
    /// does (which, with imports added in its own order, reports the same cycles): for a
    /// stream, whether the exporter, exporting what this import delivers, imports it from an
    /// account already on the path; for a service, whether the exporter forwards requests on
    /// this import's subject to an account already on the path.
    fn forms_cycle(&self, added: &[Edge], accounts: &[&Account]) -> bool {
        let mut visited = vec![false; accounts.len()];
        visited[self.into] = true;
        match self.kind {
            ExportKind::Stream => stream_cycle(self.from, &self.local, added, accounts, &mut visited),
            ExportKind::Service => service_cycle(self.from, &self.local, added, &mut visited),
        }
    }
}

fn stream_cycle(acc: usize, subject: &str, added: &[Edge], accounts: &[&Account], visited: &mut [bool]) -> bool {
    let exports = accounts[acc].exports.iter().any(|x| x.kind == ExportKind::Stream && pattern_covers(x.subject.as_bytes(), subject.as_bytes()));
    if !exports {
        return false;
    }
    for e in added.iter().filter(|e| e.kind == ExportKind::Stream && e.into == acc && mapping::collide(subject, &e.local)) {
        if visited[e.from] {
            return true;
        }
        visited[acc] = true;
        if stream_cycle(e.from, &e.remote, added, accounts, visited) {
            return true;
        }
    }
    false
}

fn service_cycle(acc: usize, subject: &str, added: &[Edge], visited: &mut [bool]) -> bool {
    for e in added.iter().filter(|e| e.kind == ExportKind::Service && e.into == acc && mapping::collide(subject, &e.remote)) {
        if visited[e.from] {
            return true;
        }
        visited[acc] = true;
        let next = if pattern_covers(subject.as_bytes(), e.local.as_bytes()) { &e.local } else { subject };
        if service_cycle(e.from, next, added, visited) {
            return true;
        }
    }
    false
}
