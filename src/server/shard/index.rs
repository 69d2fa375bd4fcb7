//! One subscription index per account on each core, and what it stores: targets of every
//! kind, so that a publish is matched once and the result says where the message goes.
//!
//! A target is a subscription of a client on this core, another core that has interest
//! (one entry per pattern, or per member for a queue group, so a core weighs as much as
//! its members), or an import of the account (see [`super::imports`]). Routes and leaf
//! nodes join as kinds of their own.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use super::imports::{ServiceImport, StreamImport};

use super::Shard;
use crate::protocol::subject;
use crate::server::client::Client;
use crate::server::sublist::Sublist;

/// A subscription of one client on this core.
pub struct Subscription {
    pub client: Rc<Client>,
    /// Subject, queue name and sid, one after the other in one allocation (a server with
    /// 100,000 subscriptions keeps 100,000 of these: three allocations each cost a third
    /// of what the index spends per subscription).
    names: Box<[u8]>,
    subject_len: u32,
    /// 0: no queue group (a queue name is never empty).
    queue_len: u32,
    /// Auto-unsubscribe after this many deliveries (0: never).
    pub max: Cell<u64>,
    pub delivered: Cell<u64>,
    /// Removed from the index; a cached match result may still hold it for a moment.
    pub closed: Cell<bool>,
}

impl Subscription {
    pub fn new(client: Rc<Client>, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) -> Subscription {
        let queue = queue.unwrap_or_default();
        let names: Box<[u8]> = [subject, queue, sid].concat().into();
        Subscription {
            client,
            names,
            subject_len: subject.len() as u32,
            queue_len: queue.len() as u32,
            max: Cell::new(0),
            delivered: Cell::new(0),
            closed: Cell::new(false),
        }
    }

    pub fn subject(&self) -> &[u8] {
        &self.names[..self.subject_len as usize]
    }

    pub fn queue(&self) -> Option<&[u8]> {
        let at = self.subject_len as usize;
        (self.queue_len > 0).then(|| &self.names[at..at + self.queue_len as usize])
    }

    pub fn sid(&self) -> &[u8] {
        &self.names[(self.subject_len + self.queue_len) as usize..]
    }
}

/// A client's subscriptions by sid. Clients number their sids 1, 2, 3...: a sid written
/// as such a number (no sign, no leading zero) and not far beyond the count of
/// subscriptions is a slot in a list; any other sid is in a set that holds the
/// subscriptions themselves and looks them up by their own sid bytes. Either way no sid is
/// stored twice, and a lookup of a numbered sid touches one slot (an UNSUB flood against
/// 100,000 subscriptions is bound by cache misses).
#[derive(Default)]
pub struct SubsBySid {
    numbered: Vec<Option<Rc<Subscription>>>,
    other: std::collections::HashSet<BySid, ahash::RandomState>,
    len: usize,
}

impl SubsBySid {
    /// The slot of a sid written as a small number.
    fn slot(sid: &[u8]) -> Option<usize> {
        if sid.is_empty() || sid.len() > 9 || (sid[0] == b'0' && sid.len() > 1) || !sid.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(sid.iter().fold(0usize, |n, d| n * 10 + (d - b'0') as usize))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, sid: &[u8]) -> Option<&Rc<Subscription>> {
        match Self::slot(sid).and_then(|i| self.numbered.get(i)) {
            Some(Some(s)) => Some(s),
            _ => self.other.get(sid).map(|s| &s.0),
        }
    }

    pub fn contains(&self, sid: &[u8]) -> bool {
        self.get(sid).is_some()
    }

    /// Adds a subscription whose sid is not taken.
    pub fn insert(&mut self, sub: Rc<Subscription>) {
        self.len += 1;
        match Self::slot(sub.sid()) {
            // Dense enough: a list no longer than twice the subscriptions (and a few).
            Some(i) if i < 2 * self.len + 32 => {
                if i >= self.numbered.len() {
                    self.numbered.resize(i + 1, None);
                }
                self.numbered[i] = Some(sub);
            }
            _ => {
                self.other.insert(BySid(sub));
            }
        }
    }

    /// Takes out the subscription with this sid.
    pub fn take(&mut self, sid: &[u8]) -> Option<Rc<Subscription>> {
        let taken = match Self::slot(sid).and_then(|i| self.numbered.get_mut(i)) {
            Some(slot @ Some(_)) => slot.take(),
            _ => self.other.take(sid).map(|s| s.0),
        };
        if taken.is_some() {
            self.len -= 1;
            if self.len == 0 {
                self.numbered = Vec::new();
            }
        }
        taken
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rc<Subscription>> {
        self.numbered.iter().flatten().chain(self.other.iter().map(|s| &s.0))
    }
}

/// A subscription in [`SubsBySid`]'s set, found by its sid.
struct BySid(Rc<Subscription>);

impl std::borrow::Borrow<[u8]> for BySid {
    fn borrow(&self) -> &[u8] {
        self.0.sid()
    }
}

impl std::hash::Hash for BySid {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.sid().hash(h)
    }
}

impl PartialEq for BySid {
    fn eq(&self, other: &Self) -> bool {
        self.0.sid() == other.0.sid()
    }
}

impl Eq for BySid {}

/// Where a matched message goes. Equal by identity (`Rc`) or by core.
#[derive(Clone)]
pub enum Target {
    /// A subscription of a client on this core.
    Sub(Rc<Subscription>),
    /// Another core has interest in this account.
    Core(u16),
    /// A stream import into another account (stored in the exporting account).
    Stream(Rc<StreamImport>),
    /// A service import (stored in the importing account, on its local subject).
    Service(Rc<ServiceImport>),
    /// Answers to this process's generated reply subjects (stored in exporting accounts,
    /// on `_R_.<prefix>.>`).
    Responses,
    /// A request the server answers itself, in the system account (on core zero).
    System(super::system::Request),
    /// Another server of the cluster has interest (on core zero, where routes live; one
    /// entry per queue member it announced).
    Route(Rc<crate::server::route::Route>),
}

impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Target::Sub(a), Target::Sub(b)) => Rc::ptr_eq(a, b),
            (Target::Core(a), Target::Core(b)) => a == b,
            (Target::Stream(a), Target::Stream(b)) => Rc::ptr_eq(a, b),
            (Target::Service(a), Target::Service(b)) => Rc::ptr_eq(a, b),
            (Target::Responses, Target::Responses) => true,
            (Target::System(a), Target::System(b)) => a == b,
            (Target::Route(a), Target::Route(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// One account's index on one core.
pub struct AccountIndex {
    pub name: Arc<str>,
    pub sublist: RefCell<Sublist<Target>>,
    /// Client subscriptions stored (the index also holds other cores' interest and imports).
    pub subs: Cell<usize>,
    /// Client subscriptions ever added and removed: `/accountz` `num_inserts`, `num_removes`.
    pub inserts: Cell<u64>,
    pub removes: Cell<u64>,
}

impl AccountIndex {
    pub fn new(name: Arc<str>) -> AccountIndex {
        AccountIndex { name, sublist: RefCell::new(Sublist::new()), subs: Cell::new(0), inserts: Cell::new(0), removes: Cell::new(0) }
    }
}

impl Shard {
    /// The index of account `id` (`$G` for an id out of range, which binding never gives).
    pub fn account(&self, id: u32) -> &AccountIndex {
        self.accounts.get(id as usize).unwrap_or(&self.accounts[0])
    }

    /// SUB from a client.
    pub fn subscribe(&self, client: &Rc<Client>, subj: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
        if !subject::valid_subject(subj) || !queue.map_or(true, subject::valid_queue) {
            client.send_err("Invalid Subject");
            return;
        }
        if !client.can_subscribe(subj) {
            let subj = String::from_utf8_lossy(subj);
            let text = match queue {
                Some(q) => format!("Permissions Violation for Subscription to \"{subj}\" using queue \"{}\"", String::from_utf8_lossy(q)),
                None => format!("Permissions Violation for Subscription to \"{subj}\""),
            };
            tracing::error!(cid = client.cid, "Subscription Violation - {}", text.trim_start_matches("Permissions Violation for "));
            client.send_err(&text);
            return;
        }
        let max = self.opts().max_subscriptions;
        let max = match client.limits.get().subs {
            Some(jwt) if max == 0 || jwt < max => jwt,
            _ => max,
        };
        if (max > 0 || client.limits.get().subs == Some(0)) && client.subs.borrow().len() >= max {
            client.send_err("maximum subscriptions exceeded");
            return;
        }
        if !client.subs.borrow().contains(sid) {
            let sub = Rc::new(Subscription::new(client.clone(), subj, queue, sid));
            let acc = client.account.get();
            let index = self.account(acc);
            if index.sublist.borrow_mut().insert(subj, queue, Target::Sub(sub.clone())).is_err() {
                client.send_err("Invalid Subject");
                return;
            }
            index.subs.set(index.subs.get() + 1);
            bump(&index.inserts, 1);
            client.subs.borrow_mut().insert(sub);
            bump(&self.stats.sub_inserts, 1);
            self.interest_changed(acc, subj, queue, true);
            self.tell_routes(acc, subj, queue, true);
            client.need_epoch.set(self.epoch.get());
        }
        if client.verbose.get() {
            client.send(b"+OK\r\n");
        }
    }

    /// UNSUB from a client: now, or after `max` deliveries in all.
    pub fn unsubscribe(&self, client: &Rc<Client>, sid: &[u8], max: Option<u64>) {
        if let Some(m) = max.filter(|&m| m > 0) {
            let sub = match client.subs.borrow().get(sid) {
                Some(s) => s.clone(),
                None => return,
            };
            if sub.delivered.get() < m {
                sub.max.set(m);
                return;
            }
        }
        // Taken out of the client's set in one lookup (an UNSUB flood is bound by lookups).
        let Some(sub) = client.subs.borrow_mut().take(sid) else { return };
        self.unindex(&sub);
    }

    /// A subscription goes: out of its client's set and the index.
    pub(super) fn remove_sub(&self, sub: &Rc<Subscription>) {
        // Gone already: its sid may name a newer subscription by now.
        if sub.closed.get() {
            return;
        }
        sub.client.subs.borrow_mut().take(sub.sid());
        self.unindex(sub);
    }

    /// A subscription leaves the index (once), and the other cores and routes hear of it.
    pub(super) fn unindex(&self, sub: &Rc<Subscription>) {
        if sub.closed.replace(true) {
            return;
        }
        let acc = sub.client.account.get();
        let index = self.account(acc);
        if index.sublist.borrow_mut().remove(sub.subject(), sub.queue(), &Target::Sub(sub.clone())).is_ok() {
            index.subs.set(index.subs.get() - 1);
            bump(&index.removes, 1);
        }
        bump(&self.stats.sub_removes, 1);
        self.interest_changed(acc, sub.subject(), sub.queue(), false);
        self.tell_routes(acc, sub.subject(), sub.queue(), true);
    }

    /// Client subscriptions on this core, in every account.
    pub fn subscription_count(&self) -> usize {
        self.accounts.iter().map(|a| a.subs.get()).sum()
    }

    /// The indexes' match cache figures summed: (hits, misses, cached subjects), for /subsz.
    pub fn sublist_cache_stats(&self) -> (u64, u64, usize) {
        self.accounts.iter().map(|a| a.sublist.borrow().cache_stats()).fold((0, 0, 0), |(h, m, n), (h2, m2, n2)| (h + h2, m + m2, n + n2))
    }

    /// `(largest, sum)` fan-out over this core's cached match results.
    pub fn sublist_fanout(&self) -> (u64, u64) {
        self.accounts.iter().map(|a| a.sublist.borrow().fanout()).fold((0, 0), |(m, s), (m2, s2)| (m.max(m2), s + s2))
    }

    /// Put the imports of the account table into this core's indexes: configuration, the
    /// same on every core, never announced as interest.
    pub(super) fn install_imports(&self) {
        let table = &self.shared.accounts;
        for s in &table.streams {
            let _ = self.account(s.from).sublist.borrow_mut().insert(&s.subject, None, Target::Stream(Rc::new(s.clone())));
        }
        for s in &table.services {
            let _ = self.account(s.from).sublist.borrow_mut().insert(&s.local, None, Target::Service(Rc::new(s.clone())));
        }
        for &a in &table.exporters {
            let mut pattern = table.reply_prefix.to_vec();
            pattern.push(b'>');
            let _ = self.account(a).sublist.borrow_mut().insert(&pattern, None, Target::Responses);
        }
    }
}

pub(super) fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get() + by);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::shard::imports::Rename;
    use crate::server::sublist::pattern_matches;

    /// A target in comparable form: its kind and which one.
    fn key(t: &Target) -> (u8, usize) {
        match t {
            Target::Sub(s) => (0, Rc::as_ptr(s) as usize),
            Target::Core(c) => (1, *c as usize),
            Target::Stream(i) => (2, Rc::as_ptr(i) as usize),
            Target::Service(i) => (3, Rc::as_ptr(i) as usize),
            Target::Responses => (4, 0),
            Target::System(r) => (5, *r as usize),
            Target::Route(r) => (6, Rc::as_ptr(r) as usize),
        }
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    fn subject(rng: &mut Rng, wildcards: bool) -> String {
        const WORDS: &[&str] = &["a", "b", "orders", "x"];
        let len = 1 + rng.below(4);
        let toks: Vec<&str> = (0..len)
            .map(|i| match rng.below(8) {
                0 if wildcards && i == len - 1 => ">",
                1 if wildcards => "*",
                _ => WORDS[rng.below(WORDS.len())],
            })
            .collect();
        toks.join(".")
    }

    fn sub(client: &Rc<Client>, sid: &str, subject: &str, queue: Option<&str>) -> Target {
        Target::Sub(Rc::new(Subscription::new(client.clone(), subject.as_bytes(), queue.map(str::as_bytes), sid.as_bytes())))
    }

    /// Sids numbered 1, 2, 3... go to slots, any other sid to the set; "1" and "01" are two
    /// sids; a lookup finds each wherever it went, and taking one leaves the others.
    #[test]
    fn subscriptions_by_sid() {
        let client = Rc::new(Client::new(1, -1, None, 1 << 20));
        let mut subs = SubsBySid::default();
        let sids: Vec<String> = (1..=300).map(|i| i.to_string()).chain(["01", "0", "abc", "-1", "999999999", "1000000000", "4294967296", ""].map(String::from)).collect();
        for (n, sid) in sids.iter().enumerate() {
            assert!(!subs.contains(sid.as_bytes()), "{sid:?} before insert");
            subs.insert(Rc::new(Subscription::new(client.clone(), format!("s.{n}").as_bytes(), None, sid.as_bytes())));
            assert_eq!(subs.len(), n + 1);
        }
        assert_eq!(subs.iter().count(), sids.len());
        for (n, sid) in sids.iter().enumerate() {
            let s = subs.get(sid.as_bytes()).unwrap_or_else(|| panic!("{sid:?} found"));
            assert_eq!((s.sid(), s.subject()), (sid.as_bytes(), format!("s.{n}").as_bytes()));
        }
        assert!(subs.numbered.len() <= 301 && subs.other.len() == 7, "numbered {} other {}", subs.numbered.len(), subs.other.len());
        // Taken in another order than inserted, each once.
        for sid in sids.iter().rev() {
            assert!(subs.take(sid.as_bytes()).is_some(), "{sid:?} taken");
            assert!(subs.take(sid.as_bytes()).is_none(), "{sid:?} taken twice");
            assert!(!subs.contains(sid.as_bytes()));
        }
        assert!(subs.is_empty() && subs.numbered.capacity() == 0 && subs.iter().next().is_none());
        // A sid far beyond the count goes to the set, and is still found by its number.
        subs.insert(Rc::new(Subscription::new(client.clone(), b"x", Some(b"q"), b"5000")));
        assert!(subs.numbered.is_empty());
        assert_eq!(subs.get(b"5000").map(|s| s.queue()), Some(Some(&b"q"[..])));
    }

    /// The same subjects in two accounts' indexes, with targets of each kind: every match
    /// names exactly its own account's targets.
    #[test]
    fn table_of_matches_per_account() {
        let client = Rc::new(Client::new(1, -1, None, 1 << 20));
        let (a, b) = (AccountIndex::new("A".into()), AccountIndex::new("B".into()));
        let a_foo = sub(&client, "1", "foo", None);
        let a_wild = sub(&client, "2", "foo.*", None);
        let a_q = sub(&client, "3", "foo", Some("q"));
        let b_foo = sub(&client, "4", "foo", None);
        let stream = Target::Stream(Rc::new(StreamImport { from: 0, into: 1, subject: (*b"foo").into(), rename: super::super::imports::Rename::Keep }));
        let entries: [(&AccountIndex, &str, Option<&str>, &Target); 7] = [
            (&a, "foo", None, &a_foo),
            (&a, "foo.*", None, &a_wild),
            (&a, "foo", Some("q"), &a_q),
            (&a, "foo", Some("q"), &Target::Core(2)),
            (&a, "foo", None, &stream),
            (&b, "foo", None, &b_foo),
            (&b, ">", None, &Target::Core(1)),
        ];
        for (index, subject, queue, t) in entries {
            index.sublist.borrow_mut().insert(subject.as_bytes(), queue.map(str::as_bytes), t.clone()).unwrap();
        }
        let table: [(&AccountIndex, &str, Vec<&Target>, Vec<(&str, Vec<&Target>)>); 5] = [
            (&a, "foo", vec![&a_foo, &stream], vec![("q", vec![&a_q, &Target::Core(2)])]),
            (&a, "foo.bar", vec![&a_wild], vec![]),
            (&a, "bar", vec![], vec![]),
            (&b, "foo", vec![&b_foo, &Target::Core(1)], vec![]),
            (&b, "foo.bar", vec![&Target::Core(1)], vec![]),
        ];
        for (index, subject, psubs, qsubs) in table {
            let r = index.sublist.borrow_mut().match_subject(subject.as_bytes());
            let mut got: Vec<_> = r.psubs.iter().map(key).collect();
            let mut want: Vec<_> = psubs.into_iter().map(key).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{} {subject}", index.name);
            let got_q: Vec<(Vec<u8>, Vec<(u8, usize)>)> = r.qsubs.iter().map(|(n, m)| (n.to_vec(), m.iter().map(key).collect())).collect();
            let want_q: Vec<(Vec<u8>, Vec<(u8, usize)>)> = qsubs.into_iter().map(|(n, m)| (n.as_bytes().to_vec(), m.into_iter().map(key).collect())).collect();
            assert_eq!(got_q, want_q, "{} {subject}", index.name);
        }
    }

    /// Several accounts' indexes, with targets of every kind coming and going, against a
    /// brute-force matcher: a match never leaks another account's targets, finds every
    /// matching one (queue members grouped by name), and the interest count read off the
    /// index (`count_at`) equals the number of live local subscriptions under the pattern.
    #[test]
    fn per_account_indexes_against_brute_force() {
        const ACCOUNTS: usize = 3;
        const QUEUES: &[Option<&str>] = &[None, None, Some("q1"), Some("q2")];
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let client = Rc::new(Client::new(1, -1, None, 1 << 20));
        let indexes: Vec<AccountIndex> = (0..ACCOUNTS).map(|i| AccountIndex::new(format!("A{i}").into())).collect();
        // (account, pattern, queue, target)
        let mut live: Vec<(usize, String, Option<&str>, Target)> = Vec::new();
        for step in 0..6000 {
            match rng.below(10) {
                0..=4 => {
                    let acc = rng.below(ACCOUNTS);
                    let pattern = subject(&mut rng, true);
                    let queue = QUEUES[rng.below(QUEUES.len())];
                    let target = match rng.below(4) {
                        0 | 1 => Target::Sub(Rc::new(Subscription::new(client.clone(), pattern.as_bytes(), queue.map(str::as_bytes), step.to_string().as_bytes()))),
                        2 => Target::Core(rng.below(4) as u16),
                        // Imports are plain entries.
                        _ if queue.is_none() => Target::Stream(Rc::new(StreamImport { from: acc as u32, into: 0, subject: pattern.as_bytes().into(), rename: Rename::Keep })),
                        _ => Target::Core(7),
                    };
                    indexes[acc].sublist.borrow_mut().insert(pattern.as_bytes(), queue.map(str::as_bytes), target.clone()).unwrap();
                    live.push((acc, pattern, queue, target));
                }
                5 | 6 if !live.is_empty() => {
                    let (acc, pattern, queue, target) = live.swap_remove(rng.below(live.len()));
                    indexes[acc].sublist.borrow_mut().remove(pattern.as_bytes(), queue.map(str::as_bytes), &target).unwrap();
                    let here = indexes[acc].sublist.borrow().count_at(pattern.as_bytes(), queue.map(str::as_bytes), |t| matches!(t, Target::Sub(_)));
                    let brute = live.iter().filter(|(a, p, q, t)| *a == acc && *p == pattern && *q == queue && matches!(t, Target::Sub(_))).count();
                    assert_eq!(here, brute, "step {step}: count_at {pattern} {queue:?}");
                }
                _ => {
                    let acc = rng.below(ACCOUNTS);
                    let s = subject(&mut rng, false);
                    let r = indexes[acc].sublist.borrow_mut().match_subject(s.as_bytes());
                    let mut got_p: Vec<_> = r.psubs.iter().map(key).collect();
                    let mut got_q: Vec<(Vec<u8>, Vec<(u8, usize)>)> = r.qsubs.iter().map(|(n, m)| (n.to_vec(), { let mut v: Vec<_> = m.iter().map(key).collect(); v.sort(); v })).collect();
                    got_p.sort();
                    got_q.sort();
                    let matching = live.iter().filter(|(a, p, _, _)| *a == acc && pattern_matches(p.as_bytes(), s.as_bytes()));
                    let mut want_p: Vec<_> = matching.clone().filter(|(_, _, q, _)| q.is_none()).map(|(_, _, _, t)| key(t)).collect();
                    want_p.sort();
                    let mut want_q: Vec<(Vec<u8>, Vec<(u8, usize)>)> = Vec::new();
                    for (_, _, q, t) in matching.filter(|(_, _, q, _)| q.is_some()) {
                        let name = q.unwrap_or_default().as_bytes().to_vec();
                        match want_q.iter_mut().find(|(n, _)| *n == name) {
                            Some((_, m)) => m.push(key(t)),
                            None => want_q.push((name, vec![key(t)])),
                        }
                    }
                    for (_, m) in want_q.iter_mut() {
                        m.sort();
                    }
                    want_q.sort();
                    assert_eq!((got_p, got_q), (want_p, want_q), "step {step}: account {acc} subject {s}");
                }
            }
        }
    }
}
