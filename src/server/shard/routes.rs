//! Routes in the index (core zero only): the interest other servers announce (`RS+`, `RS-`)
//! kept as `Target::Route` entries, the interest of this server told to them, and messages
//! to and from them.
//!
//! The rules are nats-server 2.9's: a message from a route goes to local subscribers only
//! (one hop); a route gets one `RMSG` per message, naming the queue groups it was picked
//! for; a queue group's members on every server weigh the same, a route weighing as much as
//! the members it announced.
//!
//! Other cores know route interest as core zero's interest (`Target::Core(0)`, one entry
//! per queue member), so a client anywhere in the server reaches the routes through core
//! zero's mailbox, in its publishing order.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;

use super::index::Target;
use super::routing::{Message, Origin};
use super::Shard;
use crate::protocol::{encode, subject, Routed};
use crate::server::client::{Kind, Pending};
use crate::server::route::{Route, SubKey};

/// A queue weight bigger than this is taken as this: each unit of weight is an entry in the
/// index (and on every other core), so a peer cannot make this server hold millions.
pub const MAX_QUEUE_WEIGHT: u32 = 1024;

impl Shard {
    /// The routes registered on this core (none but on core zero, and only in a cluster).
    pub fn routes(&self) -> Vec<Rc<Route>> {
        self.cluster.get().map(|c| c.routes.borrow().clone()).unwrap_or_default()
    }

    /// `RS+ account subject [queue weight]` from a route.
    pub fn route_sub(&self, route: &Rc<Route>, account: &[u8], subj: &[u8], queue: Option<&[u8]>, weight: u32) {
        let Some(acc) = self.route_account(route, account, subj) else { return };
        self.remote_sub(route, acc, subj, queue, weight);
    }

    /// Interest a route or leaf connection announced in account `acc`.
    pub fn remote_sub(&self, route: &Rc<Route>, acc: u32, subj: &[u8], queue: Option<&[u8]>, weight: u32) {
        if !subject::valid_subject(subj) || !queue.map_or(true, subject::valid_queue) {
            tracing::debug!(cid = route.client.cid, "invalid remote subscription {:?}", String::from_utf8_lossy(subj));
            return;
        }
        let want = if queue.is_some() { weight.clamp(1, MAX_QUEUE_WEIGHT) } else { 1 };
        let key: SubKey = (acc, subj.into(), queue.map(Into::into));
        let had = route.subs.borrow().get(&key).copied().unwrap_or(0);
        if want == had {
            return;
        }
        route.subs.borrow_mut().insert(key, want);
        if want > had {
            self.route_entries(route, acc, subj, queue, want - had, true);
        } else {
            self.route_entries(route, acc, subj, queue, had - want, false);
        }
    }

    /// `RS- account subject [queue]` from a route.
    pub fn route_unsub(&self, route: &Rc<Route>, account: &[u8], subj: &[u8], queue: Option<&[u8]>) {
        let Some(acc) = self.route_account(route, account, subj) else { return };
        self.remote_unsub(route, acc, subj, queue);
    }

    /// Interest a route or leaf connection withdrew in account `acc`.
    pub fn remote_unsub(&self, route: &Rc<Route>, acc: u32, subj: &[u8], queue: Option<&[u8]>) {
        let key: SubKey = (acc, subj.into(), queue.map(Into::into));
        let Some(had) = route.subs.borrow_mut().remove(&key) else { return };
        self.route_entries(route, acc, subj, queue, had, false);
    }

    /// A route closed: everything it announced goes.
    pub fn route_gone(&self, route: &Rc<Route>) {
        let subs: Vec<_> = route.subs.borrow_mut().drain().collect();
        for ((acc, subj, queue), n) in subs {
            self.route_entries(route, acc, &subj, queue.as_deref(), n, false);
        }
    }

    fn route_account(&self, route: &Route, account: &[u8], subj: &[u8]) -> Option<u32> {
        let id = self.shared.accounts.id_of(account);
        if id.is_none() {
            // As nats-server with a static account list: said and ignored.
            tracing::debug!(cid = route.client.cid, "Unknown account {:?} for remote subject {:?}", String::from_utf8_lossy(account), String::from_utf8_lossy(subj));
        }
        id
    }

    /// Add or remove `n` entries of a route's (or leaf connection's) interest, and tell the
    /// other cores; the routes and leafs that hear of it are told too.
    fn route_entries(&self, route: &Rc<Route>, acc: u32, subj: &[u8], queue: Option<&[u8]>, n: u32, add: bool) {
        for _ in 0..n {
            let t = Target::Route(route.clone());
            let ok = {
                let mut sl = self.account(acc).sublist.borrow_mut();
                if add { sl.insert(subj, queue, t).is_ok() } else { sl.remove(subj, queue, &t).is_ok() }
            };
            if ok {
                self.interest_changed(acc, subj, queue, add);
            }
        }
        if n > 0 {
            self.tell_routes(acc, subj, queue, true);
        }
    }

    /// This server's interest in `(subj, queue)` of account `acc` changed (a subscription on
    /// this core, or another core's interest). The routes are told what they were last told
    /// (`Cluster::announced`, as nats-server's per-account map) against the count now: at
    /// once (`now`), or at the end of a batch (a closing client's subscriptions, so a client
    /// that leaves with two members of a group sends one `RS-`, not a lowered weight and
    /// then `RS-`, as nats-server).
    pub(super) fn tell_routes(&self, acc: u32, subj: &[u8], queue: Option<&[u8]>, now: bool) {
        self.tell_leafs(acc, subj, queue, now && !self.deferring.get());
        let Some(cluster) = self.cluster.get() else { return };
        if cluster.routes.borrow().is_empty() {
            // A route that registers is sent everything (see `send_interest`).
            return;
        }
        cluster.dirty.borrow_mut().push((acc, subj.into(), queue.map(Into::into)));
        if now && !self.deferring.get() {
            self.flush_route_interest();
        }
    }

    /// Tell the routes what changed in this server's interest since they were last told.
    pub fn flush_route_interest(&self) {
        self.flush_leaf_interest();
        let Some(cluster) = self.cluster.get() else { return };
        let mut dirty: Vec<SubKey> = std::mem::take(&mut *cluster.dirty.borrow_mut());
        dirty.sort();
        dirty.dedup();
        let mut out = Vec::new();
        for key in dirty {
            let (acc, subj, queue) = &key;
            let here = self.local_interest(*acc, subj, queue.as_deref());
            let want = if queue.is_some() { here } else { here.min(1) };
            let had = cluster.announced.borrow().get(&key).copied().unwrap_or(0);
            if want == had {
                continue;
            }
            let name = &self.account(*acc).name;
            out.extend_from_slice(&interest_line(name, subj, queue.as_deref().map(|q| (q, want)), want > 0));
            let mut announced = cluster.announced.borrow_mut();
            if want == 0 {
                announced.remove(&key);
            } else {
                announced.insert(key, want);
            }
        }
        if !out.is_empty() {
            for r in cluster.routes.borrow().iter() {
                r.client.send(&out);
            }
        }
    }

    /// This server's own interest in exactly `(subj, queue)` of account `acc`: subscriptions
    /// on any core, and in the system account the requests the server answers (announced as
    /// nats-server announces its internal subscriptions, so a ping anywhere in the cluster
    /// reaches every server).
    fn local_interest(&self, acc: u32, subj: &[u8], queue: Option<&[u8]>) -> u32 {
        let system = self.shared.accounts.system;
        let n = self.account(acc).sublist.borrow().count_at(subj, queue, |t| told_routes(t, acc == system));
        n as u32
    }

    /// Everything this server is interested in, as `RS+` lines for a route that just
    /// registered: every account's own interest (see `local_interest`), and what the
    /// account table always wants (stream imports' subjects, in the exporting account; the
    /// generated reply subjects, in the exporters). Changes not yet told the other routes
    /// are told first, so that all routes are told the same from here on.
    pub fn send_interest(&self, route: &Route) {
        let Some(cluster) = self.cluster.get() else { return };
        self.flush_route_interest();
        let first = cluster.routes.borrow().iter().all(|r| std::ptr::eq(&**r, route));
        let mut out = Vec::new();
        let table = &self.shared.accounts;
        let mut current: HashMap<SubKey, u32, ahash::RandomState> = HashMap::default();
        for (id, index) in self.accounts.iter().enumerate() {
            let id = id as u32;
            let mut keys: Vec<SubKey> = Vec::new();
            for (subj, queue, t) in index.sublist.borrow().entries() {
                if !told_routes(&t, id == table.system) {
                    continue;
                }
                let key: SubKey = (id, subj[..].into(), queue.as_deref().map(Into::into));
                match current.get_mut(&key) {
                    Some(n) => *n += 1,
                    None => {
                        current.insert(key.clone(), 1);
                        keys.push(key);
                    }
                }
            }
            for key in keys {
                let n = current.get(&key).copied().unwrap_or(0);
                let (_, subj, queue) = &key;
                out.extend_from_slice(&interest_line(&index.name, subj, queue.as_deref().map(|q| (q, n)), true));
                if queue.is_none() {
                    current.insert(key, 1);
                }
            }
            for s in table.streams.iter().filter(|s| s.from == id) {
                out.extend_from_slice(&interest_line(&index.name, &s.subject, None, true));
            }
            if table.exporters.contains(&id) {
                let mut pattern = table.reply_prefix.to_vec();
                pattern.push(b'>');
                out.extend_from_slice(&interest_line(&index.name, &pattern, None, true));
            }
        }
        // The first route: what was announced before (to routes since gone) is stale.
        if first {
            *cluster.announced.borrow_mut() = current;
        }
        if !out.is_empty() {
            route.client.send(&out);
        }
    }

    /// A message from a route (to local subscribers on any core, and to our leafs), or from
    /// a leaf connection (see `leaf::forwards`).
    pub fn route_message(&self, route: &Rc<Route>, m: &Routed<'_>) {
        let c = &route.client;
        super::index::bump(&c.stats.in_msgs, 1);
        super::index::bump(&c.stats.in_bytes, m.msg.len() as u64);
        super::index::bump(&self.stats.in_msgs, 1);
        super::index::bump(&self.stats.in_bytes, m.msg.len() as u64);
        // A leaf connection carries its one account; what came from our hub stays off the
        // routes.
        let (acc, kind, to_routes) = match &route.leaf {
            Some(l) => (Some(c.account.get()), Kind::Leaf, !l.spoke.get()),
            None => (self.shared.accounts.id_of(m.account), Kind::Route, false),
        };
        let Some(acc) = acc else {
            tracing::debug!(cid = c.cid, "Unknown account {:?} for routed message on subject {:?}", String::from_utf8_lossy(m.account), String::from_utf8_lossy(m.subject));
            return;
        };
        let origin = Origin { client: None, cid: c.cid, kind, queues: Some(m.queues), to_routes };
        // A leaf node's messages are mapped as clients' are; a route's were at their origin.
        let subject = match kind {
            Kind::Leaf => self.mapped(acc, m.subject),
            _ => std::borrow::Cow::Borrowed(m.subject),
        };
        let msg = Message { subject: &subject, reply: m.reply, header_len: m.header_len, msg: m.msg, big: None };
        self.route(origin, acc, msg, 0);
    }

    /// Note a route as a target of the message being routed (once per route), with the
    /// queue group it was picked for, if any.
    pub(super) fn add_route_target(&self, r: &Rc<Route>, queue: Option<&Bytes>) {
        let mut targets = self.route_targets.borrow_mut();
        let i = match targets.iter().position(|(t, _)| Rc::ptr_eq(t, r)) {
            Some(i) => i,
            None => {
                targets.push((r.clone(), Vec::new()));
                targets.len() - 1
            }
        };
        if let Some(q) = queue {
            targets[i].1.push(q.clone());
        }
    }

    /// Send the message being routed to the routes noted for it; true if any.
    pub(super) fn send_to_routes(&self, acc: u32, m: Message<'_>) -> bool {
        let mut targets = self.route_targets.borrow_mut();
        if targets.is_empty() {
            return false;
        }
        let account = self.account(acc).name.clone();
        for (r, queues) in targets.drain(..) {
            let c = &r.client;
            if c.state.get() != crate::server::client::State::Open {
                continue;
            }
            // A peer that did not ask for headers gets the payload alone, as clients do.
            let (h, body) = match m.header_len {
                Some(h) if !c.headers.get() => (None, &m.msg[h.min(m.msg.len())..]),
                h => (h, m.msg),
            };
            let qs: Vec<&[u8]> = queues.iter().map(|q| &q[..]).collect();
            let (was_empty, queued) = {
                let mut out = c.out.borrow_mut();
                let was_empty = out.is_empty();
                match &r.leaf {
                    Some(_) => encode::leaf_msg(&mut out, m.subject, m.reply, &qs, h, body),
                    None => encode::routed(&mut out, account.as_bytes(), m.subject, m.reply, &qs, h, body),
                }
                (was_empty, out.len())
            };
            super::index::bump(&c.stats.out_msgs, 1);
            super::index::bump(&c.stats.out_bytes, body.len() as u64);
            super::index::bump(&self.stats.out_msgs, 1);
            super::index::bump(&self.stats.out_bytes, body.len() as u64);
            if c.queued(was_empty, queued) == Pending::High {
                self.falling_behind(c);
            }
        }
        true
    }
}

/// Whether index entry `t` counts as this server's interest told to routes: clients on any
/// core, the requests the system account answers, and the leafs connected to us (nats-server
/// forwards a leaf's interest like a client's, but not its hub's).
fn told_routes(t: &Target, system: bool) -> bool {
    match t {
        Target::Sub(_) | Target::Core(_) => true,
        // (Each server answers its own clients' USER.INFO.)
        Target::System(r) => system && *r != crate::server::shard::system::Request::UserInfo,
        Target::Route(r) => r.leaf.as_ref().is_some_and(|l| !l.spoke.get()),
        _ => false,
    }
}

/// `RS+ account subject[ queue weight]\r\n`, or `RS- account subject[ queue]\r\n`.
fn interest_line(account: &str, subj: &[u8], queue: Option<(&[u8], u32)>, add: bool) -> Vec<u8> {
    let mut line = Vec::with_capacity(account.len() + subj.len() + 32);
    line.extend_from_slice(if add { b"RS+ " } else { b"RS- " });
    line.extend_from_slice(account.as_bytes());
    line.push(b' ');
    line.extend_from_slice(subj);
    if let Some((q, w)) = queue {
        line.push(b' ');
        line.extend_from_slice(q);
        if add {
            line.push(b' ');
            line.extend_from_slice(itoa::Buffer::new().format(w).as_bytes());
        }
    }
    line.extend_from_slice(b"\r\n");
    line
}

#[cfg(test)]
mod tests {
    use super::interest_line;

    #[test]
    fn interest_lines_as_nats_server_writes_them() {
        assert_eq!(interest_line("$G", b"foo.*", None, true), b"RS+ $G foo.*\r\n");
        assert_eq!(interest_line("$G", b"foo.*", None, false), b"RS- $G foo.*\r\n");
        assert_eq!(interest_line("A", b"foo", Some((b"q", 3)), true), b"RS+ A foo q 3\r\n");
        assert_eq!(interest_line("A", b"foo", Some((b"q", 0)), false), b"RS- A foo q\r\n");
    }
}
