//! Figures from every core: core zero asks each other core through its mailbox
//! ([`Mail::Stats`](crate::server::shard::outbox::Mail::Stats)) and answers for itself directly.
//!
//! A core answers from its own state, synchronously, when the mail arrives: counters from
//! its [`ShardStats`](crate::server::shard::ShardStats), and for `/connz` and `/subsz` the
//! records they asked for, already sorted and cut to what the page can use, so core zero
//! merges at most `offset + limit` records per core.
//!
//! Per-account figures cost nothing on the hot path: traffic is counted per connection (as
//! `/connz` shows it) and summed by account when asked, plus what each core's closed
//! connections left behind ([`CoreMonitor`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_channel::oneshot;
use serde::Serialize;

use super::connz::{self, ConnzQuery, StateFilter};
use super::fmt::now_ns;
use crate::server::client::{Client, CloseReason};
use crate::server::shard::index::AccountIndex;
use crate::server::shard::Shard;

/// How long core zero waits for the other cores; a core stalled longer is left out.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// Closed connections each core remembers for `/connz?state=closed` (nats-server keeps the
/// last 10,000; core zero keeps the newest 10,000 of all cores' answers).
pub const MAX_CLOSED: usize = 10_000;

/// What core zero wants from a core.
#[derive(Clone, Debug, Default)]
pub struct CoreQuery {
    /// Connection records for `/connz`.
    pub conns: Option<ConnzQuery>,
    /// Subscription records for `/subsz?subs=1`, optionally only those matching a subject.
    pub subs: Option<SubsQuery>,
    /// Sums over open connections (pending bytes, subscriptions, messages), for `/metrics`.
    pub totals: bool,
    /// Figures per account, for `/accountz`, `/accstatz`, `/subsz?acc=` and `/metrics`.
    pub accounts: bool,
}

/// Which subscriptions `/subsz?subs=1` lists.
#[derive(Clone, Debug, Default)]
pub struct SubsQuery {
    /// Only subscriptions whose subject matches this literal subject.
    pub test: Option<String>,
    /// Only subscriptions of this account (by id).
    pub account: Option<u32>,
}

/// A stats request travelling to another core, with the way back.
#[derive(Debug)]
pub struct StatsRequest {
    pub query: CoreQuery,
    pub reply: oneshot::Sender<CoreSnapshot>,
}

/// One subscription as `/connz?subs=detail` and `/subsz?subs=1` show it.
#[derive(Clone, Debug, Serialize)]
pub struct SubDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qgroup: Option<String>,
    pub sid: String,
    pub msgs: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub cid: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One connection, open or closed, in raw form: core zero sorts and pages these and formats
/// only the page.
#[derive(Clone, Debug, Default)]
pub struct ConnRecord {
    /// A client of the WebSocket port (/connz `type` "websocket").
    pub websocket: bool,
    pub cid: u64,
    /// The account's id (see [`crate::server::shard::imports::AccountTable`]).
    pub account: u32,
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// Unix nanoseconds.
    pub start: u64,
    pub last: u64,
    /// Set for closed connections.
    pub stop: Option<u64>,
    pub reason: Option<&'static str>,
    /// Nanoseconds; 0 when not measured yet.
    pub rtt: u64,
    pub pending: u64,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub num_subs: u32,
    pub name: String,
    pub lang: String,
    pub version: String,
    /// Negotiated TLS version and cipher suite.
    pub tls: Option<(String, String)>,
    /// The authenticated user (or the user a failed CONNECT named); never a secret.
    pub user: Option<String>,
    /// Filled only when the query asks for subscriptions (closed records always keep them).
    pub subs: Vec<SubDetail>,
}

/// The figures of a subscription index: one account's on one core, a core's over its
/// accounts, or a sum over cores. Subscriptions are client subscriptions only: the index
/// also holds other cores' interest and the imports, which are not subscriptions.
#[derive(Clone, Copy, Debug, Default)]
pub struct IndexFigures {
    pub subscriptions: u64,
    pub inserts: u64,
    pub removes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_len: u64,
    /// Over the cached match results; the largest, and the sum (for the average).
    pub fanout_max: u64,
    pub fanout_sum: u64,
}

impl IndexFigures {
    /// One account's index on this core.
    pub fn of(index: &AccountIndex) -> IndexFigures {
        let sl = index.sublist.borrow();
        let (cache_hits, cache_misses, cache_len) = sl.cache_stats();
        let (fanout_max, fanout_sum) = sl.fanout();
        IndexFigures {
            subscriptions: index.subs.get() as u64,
            inserts: index.inserts.get(),
            removes: index.removes.get(),
            cache_hits,
            cache_misses,
            cache_len: cache_len as u64,
            fanout_max,
            fanout_sum,
        }
    }

    pub fn add(&mut self, o: &IndexFigures) {
        self.subscriptions += o.subscriptions;
        self.inserts += o.inserts;
        self.removes += o.removes;
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.cache_len += o.cache_len;
        self.fanout_max = self.fanout_max.max(o.fanout_max);
        self.fanout_sum += o.fanout_sum;
    }
}

/// One account's figures on one core, or summed over the cores.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccountFigures {
    /// Open client connections bound to the account.
    pub connections: u64,
    pub index: IndexFigures,
    /// Of the account's connections, open and closed.
    pub traffic: Traffic,
    /// Connections of the account cut off as slow consumers.
    pub slow_consumers: u64,
}

impl AccountFigures {
    pub fn add(&mut self, o: &AccountFigures) {
        self.connections += o.connections;
        self.index.add(&o.index);
        self.traffic.add(&o.traffic);
        self.slow_consumers += o.slow_consumers;
    }
}

/// Messages and bytes a connection (or a set of them) published and was delivered.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
}

impl Traffic {
    fn of(client: &Client) -> Traffic {
        let s = &client.stats;
        Traffic { in_msgs: s.in_msgs.get(), in_bytes: s.in_bytes.get(), out_msgs: s.out_msgs.get(), out_bytes: s.out_bytes.get() }
    }

    pub fn add(&mut self, o: &Traffic) {
        self.in_msgs += o.in_msgs;
        self.in_bytes += o.in_bytes;
        self.out_msgs += o.out_msgs;
        self.out_bytes += o.out_bytes;
    }
}

/// Figures of one core.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CoreStats {
    pub core: usize,
    pub connections: u64,
    pub subscriptions: u64,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    /// Messages handed to other cores, and received from them.
    pub cross_core_sent: u64,
    pub cross_core_received: u64,
    pub cross_core_batches: u64,
    /// The core's indexes, summed over its accounts.
    #[serde(skip)]
    pub index: IndexFigures,
}

/// Sums over a core's open connections.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub pending: u64,
    pub subscriptions: u64,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// A core's answer.
#[derive(Clone, Debug, Default)]
pub struct CoreSnapshot {
    pub stats: CoreStats,
    /// Records for `/connz`: at most `offset + limit`, best first by the query's sort.
    pub conns: Vec<ConnRecord>,
    /// How many records matched before cutting (the `total` of `/connz`).
    pub conns_total: usize,
    pub subs: Vec<SubDetail>,
    pub totals: Totals,
    /// Per account, by id (empty unless asked for).
    pub accounts: Vec<AccountFigures>,
}

/// A core's monitoring state: the ring of recently closed connections, and what the
/// closed connections of each account add to its figures.
#[derive(Default)]
pub struct CoreMonitor {
    closed: RefCell<VecDeque<ConnRecord>>,
    /// By account id: traffic and slow consumers of the connections closed on this core.
    gone: RefCell<Vec<AccountFigures>>,
}

/// nats-server's wording of a close reason in `/connz`.
pub fn reason_text(r: Option<CloseReason>) -> &'static str {
    r.map_or("Client Closed", CloseReason::as_str)
}

/// Subscriptions of a client, ordered by sid (numerically where sids are numbers).
fn sub_details(client: &Client, account: Option<&str>) -> Vec<SubDetail> {
    let mut v: Vec<SubDetail> = client
        .subs
        .borrow()
        .iter()
        .map(|s| SubDetail {
            account: account.map(str::to_string),
            subject: String::from_utf8_lossy(s.subject()).into_owned(),
            qgroup: s.queue().map(|q| String::from_utf8_lossy(q).into_owned()),
            sid: String::from_utf8_lossy(s.sid()).into_owned(),
            msgs: s.delivered.get(),
            max: s.max.get(),
            cid: client.cid,
        })
        .collect();
    v.sort_by(|a, b| sid_order(&a.sid, &b.sid));
    v
}

fn sid_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// The record of an open (or just closing) connection; subscriptions only if `with_subs`.
pub fn record(client: &Client, with_subs: bool) -> ConnRecord {
    let opts = client.opts.borrow();
    ConnRecord {
        cid: client.cid,
        websocket: client.websocket,
        account: client.account.get(),
        ip: client.addr.map(|a| a.ip()),
        port: client.addr.map_or(0, |a| a.port()),
        start: client.start_ns,
        last: client.last_activity.get().max(client.start_ns),
        stop: None,
        reason: None,
        rtt: client.rtt.get(),
        pending: client.pending() as u64,
        in_msgs: client.stats.in_msgs.get(),
        out_msgs: client.stats.out_msgs.get(),
        in_bytes: client.stats.in_bytes.get(),
        out_bytes: client.stats.out_bytes.get(),
        num_subs: client.subs.borrow().len() as u32,
        name: opts.name.clone().unwrap_or_default(),
        lang: opts.lang.clone(),
        version: opts.version.clone(),
        tls: client.tls.borrow().clone(),
        user: client.user.borrow().clone().or_else(|| opts.user.clone()),
        subs: if with_subs { sub_details(client, None) } else { Vec::new() },
    }
}

impl CoreMonitor {
    /// Remember a connection that is closing, with its subscriptions (before they go).
    pub fn closed(&self, client: &Client) {
        let mut r = record(client, true);
        r.stop = Some(now_ns());
        r.reason = Some(reason_text(client.close_reason.get()));
        let mut ring = self.closed.borrow_mut();
        if ring.len() >= MAX_CLOSED {
            ring.pop_front();
        }
        ring.push_back(r);
        drop(ring);
        let mut gone = self.gone.borrow_mut();
        let id = client.account.get() as usize;
        if gone.len() <= id {
            gone.resize(id + 1, AccountFigures::default());
        }
        let f = &mut gone[id];
        f.traffic.add(&Traffic::of(client));
        if matches!(
            client.close_reason.get(),
            Some(CloseReason::SlowConsumerPendingBytes | CloseReason::SlowConsumerWriteDeadline)
        ) {
            f.slow_consumers += 1;
        }
    }
}

/// This core's figures for every account, by id.
fn account_figures(shard: &Shard, clients: &[Rc<Client>]) -> Vec<AccountFigures> {
    let n = shard.shared.accounts.names.len();
    let mut v: Vec<AccountFigures> = (0..n as u32)
        .map(|id| AccountFigures { index: IndexFigures::of(shard.account(id)), ..Default::default() })
        .collect();
    for (f, gone) in v.iter_mut().zip(shard.monitor.gone.borrow().iter()) {
        f.traffic = gone.traffic;
        f.slow_consumers = gone.slow_consumers;
    }
    for c in clients {
        if let Some(f) = v.get_mut(c.account.get() as usize) {
            f.connections += 1;
            f.traffic.add(&Traffic::of(c));
        }
    }
    v
}

/// This core's answer to `q`.
pub fn snapshot(shard: &Shard, q: &CoreQuery) -> CoreSnapshot {
    let s = &shard.stats;
    let mut index = IndexFigures::default();
    for id in 0..shard.shared.accounts.names.len() as u32 {
        index.add(&IndexFigures::of(shard.account(id)));
    }
    let mut snap = CoreSnapshot {
        stats: CoreStats {
            core: shard.id,
            connections: shard.client_count() as u64,
            subscriptions: shard.subscription_count() as u64,
            in_msgs: s.in_msgs.get(),
            out_msgs: s.out_msgs.get(),
            in_bytes: s.in_bytes.get(),
            out_bytes: s.out_bytes.get(),
            slow_consumers: s.slow_consumers.get(),
            cross_core_sent: s.cross_sent.get(),
            cross_core_received: s.cross_received.get(),
            cross_core_batches: s.cross_batches.get(),
            index,
        },
        ..Default::default()
    };
    let clients = shard.clients();
    if q.accounts {
        snap.accounts = account_figures(shard, &clients);
    }
    if q.totals {
        let t = &mut snap.totals;
        for c in &clients {
            t.pending += c.pending() as u64;
            t.subscriptions += c.subs.borrow().len() as u64;
            t.in_msgs += c.stats.in_msgs.get();
            t.out_msgs += c.stats.out_msgs.get();
            t.in_bytes += c.stats.in_bytes.get();
            t.out_bytes += c.stats.out_bytes.get();
        }
    }
    if let Some(cq) = &q.conns {
        let now = now_ns();
        // `acc=`: that account's connections only (an unknown name has none), and `total`
        // counts them; without it `total` counts the whole state even when `cid=` picks one.
        // nats-server 2.9's quirks, observed and kept: a closed connection of `$G` is never
        // in `acc=$G` (it records no account name for `$G`), and with `state=open` alone
        // `cid=` finds its connection whatever the account.
        let account = cq.account.as_deref().map(|a| shard.shared.accounts.id(a));
        let in_account = |id: u32, closed: bool| account.map_or(true, |a| a == Some(id) && !(closed && id == 0));
        let cid_anywhere = cq.state == StateFilter::Open;
        let wanted = |cid: u64, id: u32, closed: bool| match cq.cid {
            Some(c) if cid_anywhere => c == cid,
            Some(c) => c == cid && in_account(id, closed),
            None => in_account(id, closed),
        };
        let mut recs: Vec<ConnRecord> = Vec::new();
        let mut total = 0;
        if matches!(cq.state, StateFilter::Open | StateFilter::All) {
            for c in &clients {
                total += usize::from(in_account(c.account.get(), false));
                if wanted(c.cid, c.account.get(), false) {
                    recs.push(record(c, false));
                }
            }
        }
        if matches!(cq.state, StateFilter::Closed | StateFilter::All) {
            for r in shard.monitor.closed.borrow().iter() {
                total += usize::from(in_account(r.account, true));
                if wanted(r.cid, r.account, true) {
                    let mut r = r.clone();
                    if !cq.subs.any() {
                        r.subs = Vec::new();
                    }
                    recs.push(r);
                }
            }
        }
        snap.conns_total = total;
        connz::sort(&mut recs, cq.sort, now);
        recs.truncate(cq.offset.saturating_add(cq.limit));
        if cq.subs.any() {
            for r in recs.iter_mut().filter(|r| r.stop.is_none()) {
                if let Some(c) = clients.iter().find(|c| c.cid == r.cid) {
                    r.subs = sub_details(c, None);
                }
            }
        }
        snap.conns = recs;
    }
    if let Some(sq) = &q.subs {
        let table = &shard.shared.accounts;
        for c in clients.iter().filter(|c| sq.account.map_or(true, |a| a == c.account.get())) {
            for d in sub_details(c, Some(table.name(c.account.get()))) {
                if sq.test.as_deref().map_or(true, |t| super::subsz::matches(&d.subject, t)) {
                    snap.subs.push(d);
                }
            }
        }
    }
    snap
}

/// The cores' per-account figures (snapshots taken with `accounts`) summed, by account id.
pub fn sum_accounts(snaps: &[CoreSnapshot]) -> Vec<AccountFigures> {
    let mut sum: Vec<AccountFigures> = Vec::new();
    for s in snaps {
        if sum.len() < s.accounts.len() {
            sum.resize(s.accounts.len(), AccountFigures::default());
        }
        for (t, f) in sum.iter_mut().zip(&s.accounts) {
            t.add(f);
        }
    }
    sum
}

/// Answer a request from core zero (runs on the receiving core, from its mailbox).
pub fn answer(shard: &Shard, req: StatsRequest) {
    // Core zero may have given up waiting; then nobody reads the answer.
    let _ = req.reply.send(snapshot(shard, &req.query));
}

/// Every core's answer to `q`, this core's first; cores that do not answer within
/// [`GATHER_TIMEOUT`] are left out (and logged).
pub async fn gather(shard: &Rc<Shard>, q: CoreQuery) -> Vec<CoreSnapshot> {
    let ncores = shard.shared.opts.cores.max(1);
    let mut waiting = Vec::new();
    for peer in (0..ncores).filter(|&p| p != shard.id) {
        if let Some(ob) = shard.outbox(peer) {
            let (tx, rx) = oneshot::channel();
            ob.push_control(crate::server::shard::outbox::Mail::Stats(StatsRequest { query: q.clone(), reply: tx }));
            waiting.push((peer, rx));
        }
    }
    let mut out = vec![snapshot(shard, &q)];
    let deadline = std::time::Instant::now() + GATHER_TIMEOUT;
    for (peer, rx) in waiting {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let got = futures_lite::future::or(async { rx.await.ok() }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        match got {
            Some(s) => out.push(s),
            None => tracing::warn!("monitoring: core {peer} did not answer within {GATHER_TIMEOUT:?}"),
        }
    }
    out
}
