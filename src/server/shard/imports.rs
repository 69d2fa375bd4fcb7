//! Accounts and what crosses between them: the server-wide account table, stream and service
//! imports as targets in the exporting (streams) or importing (services) account's index,
//! and the generated reply subjects that carry a service's answers back.
//!
//! As nats-server: a stream import of `S` from account A into B puts a target on `S` in A's
//! index; a message published in A on a subject it matches is delivered in B too, under
//! `prefix.subject` or the import's `to`. A service import puts a target on its local
//! subject (`to`, else the subject) in B's index; a request published there is published in
//! A on the exported subject with a generated reply `_R_.<prefix>.<core>.<token>`, and the
//! answer published in A on that subject is delivered in B on the requester's own reply
//! subject. A singleton service (the default) forgets the mapping after the first answer;
//! stream and chunked ones keep it until the response threshold (two minutes, nats-server's
//! default) passes.
//!
//! Every core holds the same import targets (they are configuration, not interest), so the
//! core a message is published on does the whole crossing: a message delivered to another
//! core already names the account it is in there.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::subject;
use crate::server::mapping::Mappings;
use crate::server::options::{ExportKind, Options, ResponseType, GLOBAL_ACCOUNT};

/// How long a service's reply mapping waits for its answer(s), as nats-server's default
/// `response_threshold`.
pub const RESPONSE_THRESHOLD: Duration = Duration::from_secs(120);

/// Most reply mappings a core keeps waiting (about 100 bytes each).
const MAX_WAITING: usize = 1 << 20;

/// Most imports a message crosses, so accounts that import from each other in a circle
/// cannot send one message round forever.
pub const MAX_IMPORT_DEPTH: u8 = 4;

/// The accounts by id: 0 is `$G`, then the configured accounts in file order, then the
/// system account if no account block names it. The same on every core.
#[derive(Debug)]
pub struct AccountTable {
    pub names: Vec<Arc<str>>,
    by_name: HashMap<String, u32>,
    pub system: u32,
    pub streams: Vec<StreamImport>,
    pub services: Vec<ServiceImport>,
    /// Accounts that export a service: their index carries the reply-mapping target.
    pub exporters: Vec<u32>,
    /// `_R_.<6 random letters>.`, the start of every generated reply subject of this
    /// process.
    pub reply_prefix: Box<[u8]>,
    /// Connections per account server-wide, counted for accounts whose JWT limits them.
    pub conns: Box<[std::sync::atomic::AtomicUsize]>,
    /// Each account's subject mappings, by id.
    pub mappings: Box<[Mappings]>,
}

/// A stream import: messages published in `from` on a subject matching `subject` are
/// delivered in `into`, renamed by `rename`.
#[derive(Debug, Clone)]
pub struct StreamImport {
    pub from: u32,
    pub into: u32,
    pub subject: Box<[u8]>,
    pub rename: Rename,
}

/// A service import: requests published in `from` on `local` go to `to` on `remote`.
#[derive(Debug, Clone)]
pub struct ServiceImport {
    pub from: u32,
    pub to: u32,
    pub local: Box<[u8]>,
    pub remote: Box<[u8]>,
    /// `local` to `remote`.
    pub rename: Rename,
    pub response: ResponseType,
}

/// How an import renames a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rename {
    Keep,
    /// `prefix.subject`.
    Prefix(Box<[u8]>),
    /// The tokens of `from`'s wildcards go into `to`'s wildcards, in order (a literal `to`
    /// is taken as it is).
    Map { from: Box<[u8]>, to: Box<[u8]> },
}

impl Rename {
    /// The subject `subj` (a literal that the import's pattern matches) is known by in the
    /// other account.
    ///
    /// ```
    /// use natsu::server::shard::imports::Rename;
    /// assert_eq!(Rename::Prefix((*b"p").into()).apply(b"a.b"), b"p.a.b");
    /// let m = Rename::Map { from: (*b"a.*.>").into(), to: (*b"x.*.y.>").into() };
    /// assert_eq!(m.apply(b"a.1.2.3"), b"x.1.y.2.3");
    /// ```
    pub fn apply(&self, subj: &[u8]) -> Vec<u8> {
        match self {
            Rename::Keep => subj.to_vec(),
            Rename::Prefix(p) => [&p[..], b".", subj].concat(),
            Rename::Map { from, to } => {
                // The subject's tokens at the wildcard positions of `from`; `>` takes the rest.
                let mut caught: Vec<&[u8]> = Vec::new();
                let mut rest = subj;
                for t in subject::tokens(from) {
                    let (tok, next) = match rest.iter().position(|&b| b == b'.') {
                        Some(i) => (&rest[..i], &rest[i + 1..]),
                        None => (rest, &b""[..]),
                    };
                    match t {
                        b"*" => caught.push(tok),
                        b">" => {
                            caught.push(rest);
                            break;
                        }
                        _ => {}
                    }
                    rest = next;
                }
                let mut caught = caught.into_iter();
                let mut out = Vec::with_capacity(to.len() + subj.len());
                for (i, t) in subject::tokens(to).enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    match t {
                        b"*" | b">" => out.extend_from_slice(caught.next().unwrap_or(t)),
                        _ => out.extend_from_slice(t),
                    }
                }
                out
            }
        }
    }
}

impl AccountTable {
    /// The table for `opts`. The config reader has already checked that every import names
    /// an account that exports it; an import that does not resolve here is skipped.
    pub fn new(opts: &Options) -> AccountTable {
        let mut names: Vec<Arc<str>> = vec![GLOBAL_ACCOUNT.into()];
        for a in &opts.accounts {
            if !names.iter().any(|n| **n == *a.name) {
                names.push(a.name.as_str().into());
            }
        }
        if !names.iter().any(|n| **n == *opts.system_account) {
            names.push(opts.system_account.as_str().into());
        }
        let by_name: HashMap<String, u32> = names.iter().enumerate().map(|(i, n)| (n.to_string(), i as u32)).collect();
        let system = by_name.get(&opts.system_account).copied().unwrap_or(0);
        let (mut streams, mut services, mut exporters) = (Vec::new(), Vec::new(), Vec::new());
        for a in &opts.accounts {
            let Some(&into) = by_name.get(&a.name) else { continue };
            for i in &a.imports {
                let Some(&from) = by_name.get(&i.account) else { continue };
                match i.kind {
                    ExportKind::Stream => {
                        let rename = match (&i.prefix, &i.to) {
                            (Some(p), _) => Rename::Prefix(p.as_bytes().into()),
                            (None, Some(to)) => Rename::Map { from: i.subject.as_bytes().into(), to: to.as_bytes().into() },
                            (None, None) => Rename::Keep,
                        };
                        streams.push(StreamImport { from, into, subject: i.subject.as_bytes().into(), rename });
                    }
                    ExportKind::Service => {
                        let response = opts
                            .accounts
                            .iter()
                            .find(|x| x.name == i.account)
                            .and_then(|x| x.exports.iter().find(|e| e.kind == ExportKind::Service && crate::server::sublist::pattern_covers(e.subject.as_bytes(), i.subject.as_bytes())))
                            .map_or(ResponseType::Singleton, |e| e.response_type);
                        let local = i.to.as_deref().unwrap_or(&i.subject);
                        let rename = Rename::Map { from: local.as_bytes().into(), to: i.subject.as_bytes().into() };
                        services.push(ServiceImport { from: into, to: from, local: local.as_bytes().into(), remote: i.subject.as_bytes().into(), rename, response });
                        if !exporters.contains(&from) {
                            exporters.push(from);
                        }
                    }
                }
            }
        }
        // Six random letters and digits (a NUID's start), as nats-server's reply prefixes look.
        let reply_prefix = format!("_R_.{}.", &crate::client::nuid::next()[..6]).into_bytes();
        let conns = names.iter().map(|_| std::sync::atomic::AtomicUsize::new(0)).collect();
        // The config reader refused mappings nats-server refuses; none is dropped here.
        let cluster = opts.cluster.as_ref().and_then(|c| c.name.clone()).unwrap_or_default();
        let mappings = names
            .iter()
            .map(|n| {
                let rules = match &**n {
                    GLOBAL_ACCOUNT => &opts.mappings[..],
                    name => opts.accounts.iter().find(|a| a.name == name).map_or(&[][..], |a| &a.mappings[..]),
                };
                Mappings::new(rules, &cluster).0
            })
            .collect();
        AccountTable { names, by_name, system, streams, services, exporters, reply_prefix: reply_prefix.into(), conns, mappings }
    }

    /// An account's id.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// An account's id by the name's bytes, as a route names it on every message: a scan
    /// while there are few accounts (the first, `$G`, most likely), the map beyond.
    pub fn id_of(&self, name: &[u8]) -> Option<u32> {
        if self.names.len() <= 16 {
            return self.names.iter().position(|n| n.as_bytes() == name).map(|i| i as u32);
        }
        std::str::from_utf8(name).ok().and_then(|n| self.id(n))
    }

    /// An account's name (`$G` for an unknown id).
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or(GLOBAL_ACCOUNT, |n| n)
    }
}

/// Where an answer to a generated reply subject goes.
struct Waiting {
    account: u32,
    reply: Box<[u8]>,
    response: ResponseType,
    expires: Instant,
}

/// One core's reply mappings of service imports requested here.
pub struct Responses {
    map: RefCell<HashMap<u64, Waiting, ahash::RandomState>>,
    /// Tokens are random (not a counter): a client of the exporting account must not be
    /// able to guess the reply subject of another account's pending request.
    state: Cell<u64>,
    next_sweep: Cell<Option<Instant>>,
}

impl Responses {
    pub fn new(seed: u64) -> Responses {
        Responses { map: RefCell::new(HashMap::default()), state: Cell::new(seed | 1), next_sweep: Cell::new(None) }
    }

    /// Remember that an answer on the returned token goes to `reply` in `account`.
    pub fn open(&self, account: u32, reply: &[u8], response: ResponseType) -> u64 {
        let now = Instant::now();
        if self.next_sweep.get().is_some_and(|t| now >= t) {
            self.map.borrow_mut().retain(|_, w| w.expires > now);
            self.next_sweep.set(None);
        }
        if self.next_sweep.get().is_none() {
            self.next_sweep.set(Some(now + RESPONSE_THRESHOLD));
        }
        let mut map = self.map.borrow_mut();
        if map.len() >= MAX_WAITING {
            // Bounded: requests whose responders never answer must not grow this without
            // end. The expired go first; failing that, an arbitrary eighth (a batch, so the
            // scan is paid once per many requests).
            map.retain(|_, w| w.expires > now);
            let mut over = (map.len() + MAX_WAITING / 8).saturating_sub(MAX_WAITING);
            map.retain(|_, _| {
                if over == 0 {
                    return true;
                }
                over -= 1;
                false
            });
        }
        loop {
            let token = self.next_token();
            if !map.contains_key(&token) {
                map.insert(token, Waiting { account, reply: reply.into(), response, expires: now + RESPONSE_THRESHOLD });
                return token;
            }
        }
    }

    fn next_token(&self) -> u64 {
        // splitmix64 over a random start.
        let s = self.state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Where an answer on `token` goes: (account, reply subject). A singleton's mapping is
    /// used up.
    pub fn answer(&self, token: u64) -> Option<(u32, Box<[u8]>)> {
        let mut map = self.map.borrow_mut();
        let w = map.get(&token)?;
        if w.expires <= Instant::now() {
            map.remove(&token);
            return None;
        }
        if w.response == ResponseType::Singleton {
            return map.remove(&token).map(|w| (w.account, w.reply));
        }
        Some((w.account, w.reply.clone()))
    }

    /// Forget a mapping (its request reached nobody).
    pub fn close(&self, token: u64) {
        self.map.borrow_mut().remove(&token);
    }

    /// Mappings waiting for an answer.
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The generated reply subject for `token` on `core`.
pub fn reply_subject(prefix: &[u8], core: usize, token: u64) -> Vec<u8> {
    let mut s = prefix.to_vec();
    s.extend_from_slice(format!("{core}.{token:x}").as_bytes());
    s
}

/// The core and token of a generated reply subject (`None` if `subj` is not one of this
/// process's).
///
/// ```
/// use natsu::server::shard::imports::{parse_reply, reply_subject};
/// let s = reply_subject(b"_R_.abcdef.", 3, 0xfeed);
/// assert_eq!(parse_reply(b"_R_.abcdef.", &s), Some((3, 0xfeed)));
/// assert_eq!(parse_reply(b"_R_.abcdef.", b"_R_.abcdef.3"), None);
/// ```
pub fn parse_reply(prefix: &[u8], subj: &[u8]) -> Option<(usize, u64)> {
    let rest = subj.strip_prefix(prefix)?;
    let rest = std::str::from_utf8(rest).ok()?;
    let (core, token) = rest.split_once('.')?;
    Some((core.parse().ok()?, u64::from_str_radix(token, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::options::{Account, Export, Import};

    #[test]
    fn table_ids_and_imports() {
        let opts = Options {
            accounts: vec![
                Account {
                    name: "A".into(),
                    exports: vec![
                        Export { kind: ExportKind::Stream, subject: "s.>".into(), accounts: None, response_type: ResponseType::Singleton },
                        Export { kind: ExportKind::Service, subject: "req.*".into(), accounts: None, response_type: ResponseType::Stream },
                    ],
                    imports: vec![],
                    ..Account::default()
                },
                Account {
                    name: "B".into(),
                    exports: vec![],
                    imports: vec![
                        Import { kind: ExportKind::Stream, account: "A".into(), subject: "s.>".into(), prefix: Some("a".into()), to: None },
                        Import { kind: ExportKind::Service, account: "A".into(), subject: "req.x".into(), prefix: None, to: Some("a.req".into()) },
                    ],
                    ..Account::default()
                },
            ],
            ..Options::default()
        };
        let t = AccountTable::new(&opts);
        assert_eq!(t.names.iter().map(|n| &**n).collect::<Vec<_>>(), vec!["$G", "A", "B", "$SYS"]);
        assert_eq!((t.id("A"), t.id("B"), t.system), (Some(1), Some(2), 3));
        assert_eq!(t.streams.len(), 1);
        assert_eq!((t.streams[0].from, t.streams[0].into), (1, 2));
        assert_eq!(t.streams[0].rename.apply(b"s.1"), b"a.s.1");
        let s = &t.services[0];
        assert_eq!((s.from, s.to, &s.local[..], &s.remote[..], s.response), (2, 1, &b"a.req"[..], &b"req.x"[..], ResponseType::Stream));
        assert_eq!(t.exporters, vec![1]);
        assert!(t.reply_prefix.starts_with(b"_R_.") && t.reply_prefix.len() == 11);
    }

    #[test]
    fn singleton_mappings_are_used_once_and_streams_stay() {
        let r = Responses::new(42);
        let a = r.open(2, b"_INBOX.1", ResponseType::Singleton);
        let b = r.open(2, b"_INBOX.2", ResponseType::Stream);
        assert_ne!(a, b);
        assert_eq!(r.answer(a), Some((2, (*b"_INBOX.1").into())));
        assert_eq!(r.answer(a), None);
        assert_eq!(r.answer(b).map(|x| x.0), Some(2));
        assert_eq!(r.answer(b).map(|x| x.0), Some(2));
        assert_eq!(r.len(), 1);
        assert_eq!(r.answer(12345), None);
    }

    #[test]
    fn rename_maps_wildcards_in_order() {
        let m = Rename::Map { from: (*b"a.*.*").into(), to: (*b"b.*.c.*").into() };
        assert_eq!(m.apply(b"a.1.2"), b"b.1.c.2");
        let lit = Rename::Map { from: (*b"a.b").into(), to: (*b"x.y").into() };
        assert_eq!(lit.apply(b"a.b"), b"x.y");
        assert_eq!(Rename::Keep.apply(b"q"), b"q");
    }
}
