//! Operator mode: `operator` (a JWT file, or the JWT itself; several allowed),
//! `resolver: MEMORY` and `resolver_preload { ACCOUNT_KEY: "account JWT" }`, with
//! `system_account` defaulting to the operator's. The other resolvers (`URL(...)`, the
//! `full` and `cache` directory resolvers) are refused as not served yet.
//!
//! The preloaded accounts become accounts named by their public keys, with the exports and
//! imports their JWTs grant (an import of a private export needs the exporter's activation
//! token); the users are not configured at all: they log in with user JWTs the accounts
//! signed ([`crate::server::auth::jwt`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::accounts::exports_to;
use super::{Kind, Loader, Pos, Value};
use crate::server::auth::jwt::{self, AccountNats, ActivationNats, ExportType, OperatorNats};
use crate::server::options::{Account, Export, ExportKind, Import, ResponseType, Trust, TrustedAccount};
use crate::server::mapping::{MapDest, MapRule, Mappings};
use crate::server::sublist::pattern_covers;
use crate::server::Options;

/// What the operator-mode keys said, checked once the whole file is read.
#[derive(Default)]
pub(super) struct Read {
    /// Where `operator` was, and each operator as decoded.
    pub operators_at: Option<Pos>,
    pub operators: Vec<jwt::Claims<OperatorNats>>,
    /// Where a `resolver` was, and whether it is the memory resolver.
    pub resolver_at: Option<Pos>,
    pub memory: bool,
    /// `resolver_preload`: each account key, where it was written, and its JWT.
    pub preload: Vec<(Pos, String, String)>,
    /// `resolver_pinned_accounts`, and where it was.
    pub pinned: Vec<String>,
    pub pinned_at: Option<Pos>,
}

impl Loader {
    /// `operator: "op.jwt"` or `operator: ["a.jwt", "eyJ..."]`.
    pub(super) fn operator(&mut self, key: &str, v: &Value) {
        let items: Vec<&Value> = match &v.kind {
            Kind::Str(_) => vec![v],
            Kind::Array(a) => a.iter().collect(),
            _ => return self.err(&v.pos, format_args!("error parsing operators: unsupported type {}", v.type_name())),
        };
        self.operator.operators_at = Some(v.pos.clone());
        self.operator.operators.clear();
        for item in items {
            let Some(name) = self.string(key, item) else { continue };
            match read_operator(&name).and_then(|op| assert_version(&op).map(|_| op)) {
                Ok(op) => self.operator.operators.push(op),
                // nats-server's words.
                Err(e) => self.err(&item.pos, format_args!("error parsing operator JWT: {e}")),
            }
        }
    }

    /// `resolver: MEMORY`; the others are refused.
    pub(super) fn resolver(&mut self, key: &str, v: &Value) {
        self.operator.resolver_at = Some(v.pos.clone());
        self.operator.memory = false;
        match &v.kind {
            Kind::Str(s) => {
                let up = s.trim().to_ascii_uppercase();
                if up == "MEM" || up == "MEMORY" {
                    self.operator.memory = true;
                } else if up.starts_with("URL") {
                    self.err(&v.pos, format_args!("{key:?} of the URL(...) form is not supported by natsu yet (use MEMORY with resolver_preload)"));
                } else {
                    self.err(&v.pos, format_args!("{key:?} must be MEMORY (URL(...) and the directory resolvers are not supported by natsu yet), got {s:?}"));
                }
            }
            Kind::Map(_) => self.err(&v.pos, format_args!("{key:?} of the full or cache (directory) type is not supported by natsu yet (use MEMORY with resolver_preload)")),
            _ => self.wrong_type(key, v, "MEMORY"),
        }
    }

    /// `resolver_pinned_accounts: KEY` or `[KEY, ...]`: the only accounts whose users may log
    /// in (the system account's too), each a public account key (nats-server's words).
    pub(super) fn resolver_pinned_accounts(&mut self, v: &Value) {
        let items: Vec<&Value> = match &v.kind {
            Kind::Str(_) => vec![v],
            Kind::Array(a) => a.iter().collect(),
            _ => return self.err(&v.pos, format_args!("error parsing resolver_pinned_accounts: unsupported type {}", v.type_name())),
        };
        self.operator.pinned.clear();
        self.operator.pinned_at = Some(v.pos.clone());
        for item in items {
            let Kind::Str(key) = &item.kind else {
                self.err(&item.pos, format_args!("error parsing resolver_pinned_accounts: unsupported type in array {}", item.type_name()));
                continue;
            };
            if !(key.starts_with('A') && nkeys::KeyPair::from_public_key(key).is_ok()) {
                self.err(&item.pos, format_args!("pinned account key {key:?} is not a valid public account nkey"));
                continue;
            }
            self.operator.pinned.push(key.clone());
        }
    }

    /// `resolver_preload { KEY: "jwt" }`.
    pub(super) fn resolver_preload(&mut self, v: &Value) {
        let Kind::Map(m) = &v.kind else {
            // nats-server's words.
            return self.err(&v.pos, "preload should be a map of account_public_key:account_jwt");
        };
        self.operator.preload.clear();
        for e in &m.entries {
            if e.used_as_variable {
                continue;
            }
            let Kind::Str(token) = &e.value.kind else {
                self.err(&e.value.pos, "preload map value should be a string JWT");
                continue;
            };
            self.operator.preload.retain(|(_, k, _)| *k != e.key);
            self.operator.preload.push((e.value.pos.clone(), e.key.clone(), token.trim().to_string()));
        }
    }

    /// Once the file is read: operator mode's checks (in nats-server's words where it has
    /// them), then the trust, the accounts and the system account into `o`.
    pub(super) fn finish_operator(&mut self, o: &mut Options) {
        let read = std::mem::take(&mut self.operator);
        let Some(at) = read.operators_at.clone() else {
            if let Some(r) = &read.resolver_at {
                self.err(r, "a resolver needs an operator (operator: op.jwt) to trust");
            }
            if let Some((p, _, _)) = read.preload.first() {
                self.err(p, "resolver_preload needs an operator (operator: op.jwt) and resolver: MEMORY");
            }
            // nats-server ignores it then; a pin that pins nothing is refused here.
            if let Some(p) = &read.pinned_at {
                self.err(p, "resolver_pinned_accounts needs an operator (operator: op.jwt)");
            }
            return;
        };
        if read.operators.is_empty() {
            return;
        }
        if read.resolver_at.is_none() {
            return self.err(&at, "operators require an account resolver to be configured");
        }
        if !read.memory {
            return;
        }
        if !o.accounts.is_empty() {
            return self.err(&at, "operators do not allow Accounts to be configured directly");
        }
        if !o.auth.users.is_empty() {
            return self.err(&at, "operators do not allow users to be configured directly");
        }
        if o.auth.user.is_some() || o.auth.token.is_some() {
            return self.err(&at, "operators do not allow a user, password or token to be configured: users log in with JWTs");
        }
        // The system account: the config's must be the operator's when the operator names one.
        let named: Vec<&str> = read.operators.iter().map(|op| op.nats.system_account.as_str()).filter(|s| !s.is_empty()).collect();
        match self.system_account.take() {
            Some((p, sys)) => {
                if !named.is_empty() && !named.contains(&sys.as_str()) {
                    return self.err(&p, "system_account in config and operator JWT must be identical");
                }
                o.system_account = sys;
            }
            None => {
                if let Some(sys) = read.operators.first().map(|op| op.nats.system_account.clone()).filter(|s| !s.is_empty()) {
                    o.system_account = sys;
                }
            }
        }
        let mut keys = Vec::new();
        for op in &read.operators {
            if !op.nats.strict_signing_key_usage {
                keys.push(op.sub.clone());
            }
            keys.extend(op.nats.signing_keys.iter().cloned());
        }
        let strict = read.operators.iter().any(|op| op.nats.strict_signing_key_usage);
        let mut accounts: BTreeMap<String, TrustedAccount> = BTreeMap::new();
        for (p, key, token) in &read.preload {
            let claims = match jwt::decode::<AccountNats>(token) {
                Ok(c) => c,
                Err(e) => {
                    // nats-server's words, and why.
                    self.err(p, format_args!("invalid account JWT: {e}"));
                    continue;
                }
            };
            if claims.sub != *key {
                self.err(p, format_args!("invalid account JWT: it is the JWT of account {}, not of {key}", claims.sub));
                continue;
            }
            // nats-server drops a mapping it cannot add without a word; natsu says so.
            let (_, refused) = Mappings::new(&jwt_mappings(&claims.nats), "");
            for (src, why) in refused {
                self.warn(p, format_args!("account {key}: its mapping of {src:?} is left out: {why}"));
            }
            if !keys.contains(&claims.iss) {
                // nats-server takes it and refuses its users; so does natsu, and says so.
                self.warn(p, format_args!("account {key} is not signed by a trusted operator: its users will be refused"));
            }
            let invalid = problems(&claims);
            if let Some(why) = &invalid {
                self.warn(p, format_args!("account {key} does not validate ({why}): its users will be refused"));
            }
            accounts.insert(key.clone(), TrustedAccount { claims, jwt: token.clone(), invalid });
        }
        o.accounts = jwt_accounts(&accounts, &mut |msg| self.warnings.push(format!("{at}: {msg}")));
        let mut pinned = read.pinned.clone();
        if !pinned.is_empty() && !pinned.contains(&o.system_account) {
            // The operator's system account can always log in.
            pinned.push(o.system_account.clone());
        }
        o.auth.trust = Some(Arc::new(Trust { operators: read.operators.iter().map(|op| op.sub.clone()).collect(), keys, strict, accounts, pinned }));
    }
}

/// An operator JWT from a file (bare or framed as `nsc` writes it), or the JWT itself.
fn read_operator(name: &str) -> Result<jwt::Claims<OperatorNats>, String> {
    let text = match std::fs::read_to_string(name) {
        Ok(t) => t,
        Err(_) if name.trim_start().starts_with("eyJ") => name.to_string(),
        Err(e) => return Err(format!("open {name}: {e}")),
    };
    let token = match jwt::parse_creds(&text).0 {
        Some(t) => t,
        None => text.trim().to_string(),
    };
    jwt::decode::<OperatorNats>(&token)
}

/// An operator's `assert_server_version` against the nats-server version natsu stands for
/// ([`COMPAT_VERSION`](crate::protocol::info::COMPAT_VERSION)), in nats-server's words.
fn assert_version(op: &jwt::Claims<OperatorNats>) -> Result<(), String> {
    let want = &op.nats.assert_server_version;
    if want.is_empty() {
        return Ok(());
    }
    let parse = |v: &str| -> Result<[u64; 3], String> {
        let parts: Vec<&str> = v.split('.').collect();
        if parts.len() != 3 {
            return Err("asserted server version must be of form <major>.<minor>.<update>".into());
        }
        let mut out = [0; 3];
        for (i, (p, what)) in parts.iter().zip(["major", "minor", "update"]).enumerate() {
            out[i] = p.parse().map_err(|_| format!("asserted server version cannot parse {p} as {what} version"))?;
        }
        Ok(out)
    };
    let have = parse(crate::protocol::info::COMPAT_VERSION)?;
    let asked = parse(want).map_err(|e| format!("operator {} expects version {want} got error instead: {e}", op.sub))?;
    for (i, what) in ["major", "minor", "update"].iter().enumerate() {
        if asked[i] > have[i] {
            return Err(format!("operator {} expected {what} version {} > server {what} version {}", op.sub, asked[i], have[i]));
        }
        if asked[i] < have[i] {
            break;
        }
    }
    Ok(())
}

/// The accounts' exports and imports as the account table takes them. An import that does
/// not resolve (an unknown account, an export it may not take) is left out with a warning,
/// as nats-server logs it and goes on.
fn jwt_accounts(all: &BTreeMap<String, TrustedAccount>, warn: &mut dyn FnMut(String)) -> Vec<Account> {
    // Accounts that do not validate are not loaded (nats-server never loads them).
    let valid: BTreeMap<String, TrustedAccount> = all.iter().filter(|(_, a)| a.invalid.is_none()).map(|(k, a)| (k.clone(), a.clone())).collect();
    let accounts = &valid;
    let kind = |k: ExportType| match k {
        ExportType::Stream => ExportKind::Stream,
        ExportType::Service => ExportKind::Service,
    };
    // Exports first, private ones with nobody allowed yet.
    let mut out: Vec<Account> = accounts
        .iter()
        .map(|(key, a)| Account {
            name: key.clone(),
            exports: a
                .claims
                .nats
                .exports
                .iter()
                .map(|x| Export {
                    kind: kind(x.kind),
                    subject: x.subject.clone(),
                    accounts: x.token_req.then(Vec::new),
                    response_type: match x.response_type.as_str() {
                        "Stream" => ResponseType::Stream,
                        "Chunked" => ResponseType::Chunked,
                        _ => ResponseType::Singleton,
                    },
                })
                .collect(),
            imports: Vec::new(),
            mappings: jwt_mappings(&a.claims.nats),
        })
        .collect();
    // A private export is open to an importer holding the exporter's activation for it.
    for (importer, a) in accounts {
        for i in a.claims.nats.imports.iter().filter(|i| !i.token.is_empty()) {
            let Some(exporter) = accounts.get(&i.account) else { continue };
            match activation(&i.token, exporter, importer, &i.subject) {
                Ok(()) => {
                    let Some(x) = out.iter_mut().find(|x| x.name == i.account) else { continue };
                    for e in x.exports.iter_mut().filter(|e| e.kind == kind(i.kind) && pattern_covers(e.subject.as_bytes(), i.subject.as_bytes())) {
                        if let Some(allowed) = &mut e.accounts {
                            allowed.push(importer.clone());
                        }
                    }
                }
                Err(e) => warn(format!("account {importer}: the activation token of its import of {:?} from {} is not valid: {e}", i.subject, i.account)),
            }
        }
    }
    let exporters = out.clone();
    for (importer, a) in accounts {
        let mut imports = Vec::new();
        for i in &a.claims.nats.imports {
            let Some(from) = exporters.iter().find(|x| x.name == i.account) else {
                // nats-server's words.
                warn(format!("Can't locate account [{}] for import of [{}] {}", i.account, i.subject, kind_word(i.kind)));
                continue;
            };
            let k = kind(i.kind);
            let (subject, prefix, to) = match i.kind {
                ExportType::Stream => match (i.local_subject.is_empty(), i.to.is_empty()) {
                    (false, _) => (i.subject.clone(), None, Some(i.local_subject.clone())),
                    (true, false) => (i.subject.clone(), Some(i.to.clone()), None),
                    (true, true) => (i.subject.clone(), None, None),
                },
                // The importer publishes on `local_subject` (or `subject`), the exporter
                // answers on `subject` (or the older `to`).
                ExportType::Service => match (i.local_subject.is_empty(), i.to.is_empty()) {
                    (false, _) => (i.subject.clone(), None, Some(i.local_subject.clone())),
                    (true, false) => (i.to.clone(), None, Some(i.subject.clone())),
                    (true, true) => (i.subject.clone(), None, None),
                },
            };
            if !exports_to(from, importer, k, &subject) {
                warn(format!("account {importer}: import of {subject:?} from {} is not authorized (not exported to it)", i.account));
                continue;
            }
            imports.push(Import { kind: k, account: i.account.clone(), subject, prefix, to });
        }
        if let Some(x) = out.iter_mut().find(|x| x.name == *importer) {
            x.imports = imports;
        }
    }
    out
}

fn kind_word(k: ExportType) -> &'static str {
    match k {
        ExportType::Stream => "stream",
        ExportType::Service => "service",
    }
}

/// Why an account JWT fails the reference's validation (the checks that matter here:
/// imports and their activation tokens, and the operator's import, export and wildcard
/// limits); None: it passes.
fn problems(c: &jwt::Claims<AccountNats>) -> Option<String> {
    let n = &c.nats;
    let mut errs: Vec<String> = Vec::new();
    for i in &n.imports {
        if i.account.is_empty() {
            errs.push("account to import from is not specified".into());
        }
        if !i.local_subject.is_empty() && !i.to.is_empty() {
            errs.push("Local Subject replaces To".into());
        }
        if i.share && i.kind != ExportType::Service {
            errs.push(format!("sharing information (for latency tracking) is only valid for services: {:?}", i.subject));
        }
        if i.token.is_empty() {
            continue;
        }
        let Ok(act) = jwt::decode::<ActivationNats>(&i.token) else {
            errs.push(format!("import {:?} contains an invalid activation token", i.subject));
            continue;
        };
        if !(act.iss == i.account || act.nats.issuer_account == i.account) {
            errs.push(format!("activation token doesn't match account for import {:?}", i.subject));
        }
        if act.sub != c.sub {
            errs.push(format!("activation token doesn't match account it is being included in, {:?}", i.subject));
        }
        if act.nats.kind != i.kind {
            errs.push(format!("mismatch between token import type {} and type of import {}", kind_word(act.nats.kind), kind_word(i.kind)));
        }
        if let Some(why) = act.time_invalid(jwt::now()) {
            errs.push(why.to_string());
        }
        let subj = if i.kind == ExportType::Service && !i.to.is_empty() { &i.to } else { &i.subject };
        if !pattern_covers(act.nats.subject.as_bytes(), subj.as_bytes()) {
            errs.push(format!("activation token import subject {:?} doesn't match import {:?}", act.nats.subject, i.subject));
        }
    }
    for (src, dests) in &n.mappings {
        // The JWT library's sum: bytes, which wrap.
        let total = dests.iter().fold(0u8, |t, d| t.wrapping_add(d.weight.filter(|w| *w > 0).unwrap_or(100)));
        if total > 100 {
            errs.push(format!("Mapping {src:?} exceeds 100% among all of it's weighted to mappings"));
        }
    }
    let l = &n.limits;
    if l.imports != jwt::NO_LIMIT && n.imports.len() as i64 > l.imports {
        errs.push("the account contains more imports than allowed by the operator".into());
    }
    if l.exports != jwt::NO_LIMIT {
        if n.exports.len() as i64 > l.exports {
            errs.push("the account contains more exports than allowed by the operator".into());
        }
        if !l.wildcards && n.exports.iter().any(|x| x.subject.split('.').any(|t| t == "*" || t == ">")) {
            errs.push("the account contains wildcard exports that are not allowed by the operator".into());
        }
    }
    (!errs.is_empty()).then(|| errs.join("; "))
}

/// An account JWT's mappings as a config file's: a destination without a weight has 100.
fn jwt_mappings(n: &AccountNats) -> Vec<MapRule> {
    let dest = |d: &jwt::WeightedMapping| MapDest { subject: d.subject.clone(), weight: d.weight.filter(|w| *w > 0).unwrap_or(100), cluster: d.cluster.clone() };
    n.mappings.iter().map(|(src, dests)| MapRule { src: src.clone(), dests: dests.iter().map(dest).collect() }).collect()
}

/// Whether `token` is `exporter`'s grant of `subject` to `importer`.
fn activation(token: &str, exporter: &TrustedAccount, importer: &str, subject: &str) -> Result<(), String> {
    let c = jwt::decode::<ActivationNats>(token)?;
    let signer_ok = c.iss == exporter.claims.sub || (c.nats.issuer_account == exporter.claims.sub && exporter.claims.nats.signing_keys.iter().any(|k| k.key() == c.iss));
    if !signer_ok {
        return Err("not signed by the exporting account".into());
    }
    if c.sub != importer {
        return Err(format!("issued to {}, not to this account", c.sub));
    }
    if !pattern_covers(c.nats.subject.as_bytes(), subject.as_bytes()) {
        return Err(format!("it grants {:?}", c.nats.subject));
    }
    if let Some(why) = c.time_invalid(jwt::now()) {
        return Err(why.into());
    }
    Ok(())
}
