//! `/routez`: the cluster's routes, key for key as nats-server 2.9's `Routez`.
//!
//! Built on core zero straight from the cluster's registered routes: routes live there, so
//! nothing is gathered from the other cores. `ip`/`port` are the peer's end of the TCP
//! connection (for a dialled route the peer's route port, for an accepted one its ephemeral
//! port), as nats-server shows them. `subscriptions` counts the peer's interest one entry
//! per account, subject and queue (a queue group's weight is one entry), as nats-server
//! keeps it. `import`/`export` are left out: natsu has no route permissions.

use serde::Serialize;

use super::connz::SubsLevel;
use super::fmt::{rfc3339_nano, rtt_text, uptime};
use super::gather::SubDetail;
use super::params::Query;
use crate::server::route::Route;
use crate::server::shard::Shard;

/// A parsed `/routez` query.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoutezQuery {
    pub subs: SubsLevel,
}

impl RoutezQuery {
    /// Read `subs=` as nats-server does: `detail` in any case, else a Go boolean.
    ///
    /// ```
    /// use natsu::server::monitor::{connz::SubsLevel, params::Query, routez::RoutezQuery};
    /// assert_eq!(RoutezQuery::from_query(&Query::parse("subs=DETAIL")).unwrap().subs, SubsLevel::Detail);
    /// assert_eq!(RoutezQuery::from_query(&Query::parse("subs=t")).unwrap().subs, SubsLevel::List);
    /// assert!(RoutezQuery::from_query(&Query::parse("subs=2")).is_err());
    /// ```
    pub fn from_query(q: &Query) -> Result<RoutezQuery, String> {
        let subs = match q.get("subs") {
            Some(s) if s.eq_ignore_ascii_case("detail") => SubsLevel::Detail,
            _ if q.boolean("subs")? => SubsLevel::List,
            _ => SubsLevel::None,
        };
        Ok(RoutezQuery { subs })
    }
}

/// One route in nats-server's `RouteInfo` shape.
#[derive(Clone, Debug, Serialize)]
pub struct RouteInfo {
    pub rid: u64,
    pub remote_id: String,
    pub did_solicit: bool,
    pub is_configured: bool,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    pub rtt: String,
    pub uptime: String,
    pub idle: String,
    /// Bytes waiting to go to the peer (nats-server 2.9 never fills this in: always 0 there).
    pub pending_size: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list_detail: Option<Vec<SubDetail>>,
}

/// The `/routez` reply.
#[derive(Clone, Debug, Serialize)]
pub struct Routez {
    pub server_id: String,
    pub now: String,
    pub num_routes: usize,
    pub routes: Vec<RouteInfo>,
}


/// A route's remote interest, sorted by account name, subject and queue (nats-server walks
/// a map: any order), as `subs=detail` shows it. The `sid` is the key nats-server files a
/// route's subscription under, `ACCOUNT subject[ queue]`; `cid` is the route's.
fn interest(shard: &Shard, route: &Route) -> Vec<SubDetail> {
    let accounts = &shard.shared.accounts;
    let mut subs: Vec<(String, String, Option<String>)> = route
        .subs
        .borrow()
        .keys()
        .map(|(acc, subj, queue)| {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (accounts.name(*acc).to_string(), text(subj), queue.as_deref().map(text))
        })
        .collect();
    subs.sort();
    subs.into_iter()
        .map(|(account, subject, qgroup)| {
            let sid = match &qgroup {
                Some(q) => format!("{account} {subject} {q}"),
                None => format!("{account} {subject}"),
            };
            SubDetail { account: None, subject, qgroup, sid, msgs: 0, max: 0, cid: route.client.cid }
        })
        .collect()
}

impl RouteInfo {
    pub fn new(shard: &Shard, route: &Route, q: &RoutezQuery, now: u64) -> RouteInfo {
        let c = &route.client;
        let st = route.state.borrow();
        let last = c.last_activity.get().max(c.start_ns);
        let num_subs = route.subs.borrow().len();
        let (list, detail) = match q.subs {
            // nats-server leaves an empty list out altogether.
            _ if num_subs == 0 => (None, None),
            SubsLevel::None => (None, None),
            SubsLevel::List => (Some(interest(shard, route).into_iter().map(|s| s.subject).collect()), None),
            SubsLevel::Detail => (None, Some(interest(shard, route))),
        };
        RouteInfo {
            rid: c.cid,
            remote_id: st.remote_id.clone(),
            did_solicit: st.solicited,
            is_configured: st.explicit,
            ip: c.addr.map(|a| a.ip().to_string()).unwrap_or_default(),
            port: c.addr.map_or(0, |a| a.port()),
            start: rfc3339_nano(c.start_ns),
            last_activity: rfc3339_nano(last),
            rtt: rtt_text(c.rtt.get()),
            uptime: uptime(now.saturating_sub(c.start_ns)),
            idle: uptime(now.saturating_sub(last)),
            pending_size: c.pending(),
            in_msgs: c.stats.in_msgs.get(),
            out_msgs: c.stats.out_msgs.get(),
            in_bytes: c.stats.in_bytes.get(),
            out_bytes: c.stats.out_bytes.get(),
            subscriptions: num_subs as u32,
            subscriptions_list: list,
            subscriptions_list_detail: detail,
        }
    }
}

/// `/routez` from the registered routes (none without a cluster), in rid order.
pub fn build(shard: &Shard, q: &RoutezQuery, now: u64) -> Routez {
    let mut routes: Vec<RouteInfo> = shard.routes().iter().map(|r| RouteInfo::new(shard, r, q, now)).collect();
    routes.sort_by_key(|r| r.rid);
    Routez {
        server_id: shard.shared.info.server_id.clone(),
        now: rfc3339_nano(now),
        num_routes: routes.len(),
        routes,
    }
}

/// The number of remote subscriptions over every route (nats-server counts them in its
/// accounts' indexes, so in `/varz` `subscriptions`).
pub fn remote_subscriptions(shard: &Shard) -> u64 {
    shard.routes().iter().map(|r| r.subs.borrow().len() as u64).sum()
}
