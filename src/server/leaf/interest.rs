//! What each leaf connection is told of this server's interest, by nats-server 2.9's rules:
//!
//! - a leaf of ours (we are its hub) hears of all interest in its account: clients on any
//!   core, routes, and other leaf connections, but never its own;
//! - our hub (we are its leaf) hears of our clients' interest and our own leafs' only, not
//!   of what routes or other hubs announced (they reach it another way or not at all).
//!
//! Each connection keeps what it was last told (`Link::announced`, nats-server's `smap`);
//! a change anywhere marks the pattern dirty, and a flush compares each connection's count
//! now with what it was told: `LS+ subject` / `LS- subject` on the 0↔1 edges of plain
//! interest, `LS+ subject queue weight` whenever a group's member count changes.

use std::collections::HashMap;
use std::rc::Rc;

use super::{LeafKey, Link};
use crate::server::route::{Route, SubKey};
use crate::server::shard::{Shard, Target};

/// Whether index entry `t` counts as interest told to leaf connection `to`.
fn counts(t: &Target, to: &Route, to_link: &Link, system: bool) -> bool {
    match t {
        Target::Sub(_) | Target::Core(_) => true,
        // (Each server answers its own clients' USER.INFO.)
        Target::System(r) => system && *r != crate::server::shard::system::Request::UserInfo,
        Target::Route(r) => match &r.leaf {
            // A route's interest goes to our leafs, not to our hub.
            None => !to_link.spoke.get(),
            // Another leaf connection's, unless both are hubs of ours.
            Some(l) => r.client.cid != to.client.cid && (!to_link.spoke.get() || !l.spoke.get()),
        },
        _ => false,
    }
}

/// `LS+ subject[ queue weight]\r\n` or `LS- subject[ queue]\r\n`.
fn line(out: &mut Vec<u8>, subj: &[u8], queue: Option<&[u8]>, n: u32) {
    out.extend_from_slice(if n > 0 { b"LS+ " } else { b"LS- " });
    out.extend_from_slice(subj);
    if let Some(q) = queue {
        out.push(b' ');
        out.extend_from_slice(q);
        if n > 0 {
            out.push(b' ');
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

impl Shard {
    /// Interest in `(subj, queue)` of account `acc` changed: the leafs are told at once
    /// (`now`) or at the next flush.
    pub fn tell_leafs(&self, acc: u32, subj: &[u8], queue: Option<&[u8]>, now: bool) {
        let Some(leafs) = self.leafs.get() else { return };
        if leafs.conns.borrow().is_empty() {
            // A connection that registers is sent everything.
            return;
        }
        leafs.dirty.borrow_mut().push((acc, subj.into(), queue.map(Into::into)));
        if now {
            self.flush_leaf_interest();
        }
    }

    /// Tell every leaf connection what changed in the interest it hears of.
    pub fn flush_leaf_interest(&self) {
        let Some(leafs) = self.leafs.get() else { return };
        let mut dirty: Vec<SubKey> = std::mem::take(&mut *leafs.dirty.borrow_mut());
        if dirty.is_empty() {
            return;
        }
        dirty.sort();
        dirty.dedup();
        let system = self.shared.accounts.system;
        let conns: Vec<Rc<Route>> = leafs.conns.borrow().clone();
        for to in &conns {
            let Some(link) = &to.leaf else { continue };
            let acc = to.client.account.get();
            let mut out = Vec::new();
            for (a, subj, queue) in dirty.iter().filter(|(a, _, _)| *a == acc) {
                let n = self.account(*a).sublist.borrow().count_at(subj, queue.as_deref(), |t| counts(t, to, link, acc == system)) as u32;
                let want = if queue.is_some() { n } else { n.min(1) };
                let key = (subj.clone(), queue.clone());
                let had = link.announced.borrow().get(&key).copied().unwrap_or(0);
                if want == had {
                    continue;
                }
                line(&mut out, subj, queue.as_deref(), want);
                let mut announced = link.announced.borrow_mut();
                if want == 0 {
                    announced.remove(&key);
                } else {
                    announced.insert(key, want);
                }
            }
            if !out.is_empty() {
                to.client.send(&out);
            }
        }
    }

    /// Everything a connection that just finished its handshake hears of, as `LS+` lines,
    /// and the account's loop-detection subject.
    pub fn send_leaf_interest(&self, to: &Route) {
        let (Some(leafs), Some(link)) = (self.leafs.get(), &to.leaf) else { return };
        let acc = to.client.account.get();
        let system = self.shared.accounts.system;
        let mut current: HashMap<LeafKey, u32, ahash::RandomState> = HashMap::default();
        let mut keys = Vec::new();
        for (subj, queue, t) in self.account(acc).sublist.borrow().entries() {
            if !counts(&t, to, link, acc == system) {
                continue;
            }
            let key: LeafKey = (subj[..].into(), queue.as_deref().map(Into::into));
            match current.get_mut(&key) {
                Some(n) => *n += 1,
                None => {
                    current.insert(key.clone(), 1);
                    keys.push(key);
                }
            }
        }
        let mut out = Vec::new();
        for key in keys {
            let n = current.get(&key).copied().unwrap_or(0);
            let n = if key.1.is_some() { n } else { 1 };
            current.insert(key.clone(), n);
            line(&mut out, &key.0, key.1.as_deref(), n);
        }
        // As nats-server: the account's service imports and mapping sources, so that what
        // is published on them at the other side comes here to be imported or mapped (on a
        // connection to our hub, only what the leaf may subscribe to). They are told once,
        // not kept in `announced`: a subscription on one of them that comes and goes takes
        // the interest away again, as nats-server's smap count does.
        let table = &self.shared.accounts;
        let services = table.services.iter().filter(|s| s.from == acc).map(|s| &s.local[..]);
        let mappings = table.mappings.get(acc as usize).map_or(&[][..], |m| m.list()).iter().map(|m| m.src().as_bytes());
        let mut told: Vec<&[u8]> = Vec::new();
        for subj in services.chain(mappings) {
            if !told.contains(&subj) && !current.contains_key(&(subj.into(), None)) && (!link.spoke.get() || to.client.can_subscribe(subj)) {
                line(&mut out, subj, None, 1);
                told.push(subj);
            }
        }
        line(&mut out, leafs.lds(acc).as_bytes(), None, 1);
        *link.announced.borrow_mut() = current;
        to.client.send(&out);
    }
}
