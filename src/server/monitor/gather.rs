//! Figures from every core: core zero asks each other core through its mailbox
//! ([`Mail::Stats`](crate::server::shard::outbox::Mail::Stats)) and answers for itself directly.
//!
//! A core answers from its own state, synchronously, when the mail arrives: counters from
//! its [`ShardStats`](crate::server::shard::ShardStats), and for `/connz` and `/subsz` the
//! records they asked for, already sorted and cut to what the page can use, so core zero
//! merges at most `offset + limit` records per core.

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
}

/// Which subscriptions `/subsz?subs=1` lists.
#[derive(Clone, Debug, Default)]
pub struct SubsQuery {
    /// Only subscriptions whose subject matches this literal subject.
    pub test: Option<String>,
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
    pub account: Option<&'static str>,
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
    pub cid: u64,
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
    #[serde(skip)]
    pub sub_inserts: u64,
    #[serde(skip)]
    pub sub_removes: u64,
    #[serde(skip)]
    pub cache_hits: u64,
    #[serde(skip)]
    pub cache_misses: u64,
    #[serde(skip)]
    pub cache_len: u64,
    #[serde(skip)]
    pub fanout_max: u64,
    #[serde(skip)]
    pub fanout_sum: u64,
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
}

/// A core's monitoring state: the ring of recently closed connections.
#[derive(Default)]
pub struct CoreMonitor {
    closed: RefCell<VecDeque<ConnRecord>>,
}

/// nats-server's wording of a close reason in `/connz`.
pub fn reason_text(r: Option<CloseReason>) -> &'static str {
    r.map_or("Client Closed", CloseReason::as_str)
}

/// Subscriptions of a client, ordered by sid (numerically where sids are numbers).
fn sub_details(client: &Client, account: Option<&'static str>) -> Vec<SubDetail> {
    let mut v: Vec<SubDetail> = client
        .subs
        .borrow()
        .values()
        .map(|s| SubDetail {
            account,
            subject: String::from_utf8_lossy(&s.subject).into_owned(),
            qgroup: s.queue.as_ref().map(|q| String::from_utf8_lossy(q).into_owned()),
            sid: String::from_utf8_lossy(&s.sid).into_owned(),
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
    }
}

/// This core's answer to `q`.
pub fn snapshot(shard: &Shard, q: &CoreQuery) -> CoreSnapshot {
    let s = &shard.stats;
    let (cache_hits, cache_misses, cache_len) = shard.sublist_cache_stats();
    let (fanout_max, fanout_sum) = shard.sublist_fanout();
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
            sub_inserts: s.sub_inserts.get(),
            sub_removes: s.sub_removes.get(),
            cache_hits,
            cache_misses,
            cache_len: cache_len as u64,
            fanout_max,
            fanout_sum,
        },
        ..Default::default()
    };
    let clients = shard.clients();
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
        let mut recs: Vec<ConnRecord> = Vec::new();
        if matches!(cq.state, StateFilter::Open | StateFilter::All) {
            recs.extend(clients.iter().filter(|c| cq.cid.map_or(true, |cid| cid == c.cid)).map(|c| record(c, false)));
        }
        if matches!(cq.state, StateFilter::Closed | StateFilter::All) {
            let ring = shard.monitor.closed.borrow();
            recs.extend(ring.iter().filter(|r| cq.cid.map_or(true, |cid| cid == r.cid)).map(|r| {
                let mut r = r.clone();
                if !cq.subs.any() {
                    r.subs = Vec::new();
                }
                r
            }));
        }
        snap.conns_total = match cq.cid {
            // As nats-server: asked for one cid, the total is still that of the whole state.
            Some(_) => count_state(shard, &clients, cq.state),
            None => recs.len(),
        };
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
        for c in &clients {
            for d in sub_details(c, Some("$G")) {
                if sq.test.as_deref().map_or(true, |t| super::subsz::matches(&d.subject, t)) {
                    snap.subs.push(d);
                }
            }
        }
    }
    snap
}

fn count_state(shard: &Shard, clients: &[Rc<Client>], state: StateFilter) -> usize {
    let closed = shard.monitor.closed.borrow().len();
    match state {
        StateFilter::Open => clients.len(),
        StateFilter::Closed => closed,
        StateFilter::All => clients.len() + closed,
    }
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
