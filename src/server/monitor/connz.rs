//! `/connz`: open and recently closed connections, paged and sorted as nats-server does.
//!
//! Sort directions are the reference's observed ones: `cid` and `start` ascending, `uptime`
//! ascending too (newest connection first, as 2.9 does), `reason` alphabetical, every other
//! key largest first; ties stay in cid order.
//!
//! Accounts as nats-server 2.9 shows them: a connection's `account` only with `auth=1` and
//! only when it is not `$G`; `acc=NAME` lists that account's connections (and `total` counts
//! them, see `gather::snapshot` for the reference's corner cases); an account that does not
//! exist gets an empty reply.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::Serialize;

use super::fmt::{rfc3339_nano, rtt_text, uptime};
use super::gather::{ConnRecord, SubDetail};
use super::params::Query;
use crate::server::options::GLOBAL_ACCOUNT;

/// nats-server's page size when `limit` is absent or not positive.
pub const DEFAULT_LIMIT: usize = 1024;

/// Which connections to list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateFilter {
    #[default]
    Open,
    Closed,
    All,
}

/// How much of each connection's subscriptions to show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubsLevel {
    #[default]
    None,
    /// `subs=1`: subjects only.
    List,
    /// `subs=detail`: subject, queue, sid, messages.
    Detail,
}

impl SubsLevel {
    pub fn any(self) -> bool {
        self != SubsLevel::None
    }
}

/// The `sort` values nats-server 2.9 accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOpt {
    #[default]
    Cid,
    Start,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
}

impl SortOpt {
    fn parse(s: &str) -> Option<SortOpt> {
        Some(match s {
            "cid" => SortOpt::Cid,
            "start" => SortOpt::Start,
            "subs" => SortOpt::Subs,
            "pending" => SortOpt::Pending,
            "msgs_to" => SortOpt::MsgsTo,
            "msgs_from" => SortOpt::MsgsFrom,
            "bytes_to" => SortOpt::BytesTo,
            "bytes_from" => SortOpt::BytesFrom,
            "last" => SortOpt::Last,
            "idle" => SortOpt::Idle,
            "uptime" => SortOpt::Uptime,
            "stop" => SortOpt::Stop,
            "reason" => SortOpt::Reason,
            _ => return None,
        })
    }
}

/// A parsed `/connz` query.
#[derive(Clone, Debug)]
pub struct ConnzQuery {
    pub sort: SortOpt,
    pub subs: SubsLevel,
    pub auth: bool,
    pub offset: usize,
    pub limit: usize,
    pub cid: Option<u64>,
    pub state: StateFilter,
    /// `acc=`: only this account's connections.
    pub account: Option<String>,
}

impl Default for ConnzQuery {
    fn default() -> Self {
        ConnzQuery {
            sort: SortOpt::Cid,
            subs: SubsLevel::None,
            auth: false,
            offset: 0,
            limit: DEFAULT_LIMIT,
            cid: None,
            state: StateFilter::Open,
            account: None,
        }
    }
}

impl ConnzQuery {
    /// Read the query as nats-server does, with its error texts, checked in its order.
    ///
    /// ```
    /// use natsu::server::monitor::{connz::ConnzQuery, params::Query};
    /// let q = ConnzQuery::from_query(&Query::parse("limit=-3&offset=-1&sort=bytes_to")).unwrap();
    /// assert_eq!((q.limit, q.offset), (1024, 0));
    /// let e = ConnzQuery::from_query(&Query::parse("sort=stop")).unwrap_err();
    /// assert_eq!(e, "sort by stop only valid on closed connections");
    /// ```
    pub fn from_query(q: &Query) -> Result<ConnzQuery, String> {
        let sort = q.get("sort");
        let subs = match q.get("subs") {
            Some("detail") => SubsLevel::Detail,
            _ if q.boolean("subs")? => SubsLevel::List,
            _ => SubsLevel::None,
        };
        let auth = q.boolean("auth")?;
        let offset = q.int("offset", 0)?.max(0) as usize;
        let limit = match q.int("limit", 0)? {
            l if l <= 0 => DEFAULT_LIMIT,
            l => l as usize,
        };
        let cid = q.uint64("cid")?.filter(|&c| c != 0);
        let state = match q.get("state").map(str::to_ascii_lowercase).as_deref() {
            None | Some("open") => StateFilter::Open,
            Some("closed") => StateFilter::Closed,
            Some("any" | "all") => StateFilter::All,
            Some(_) => return Err(format!("Error decoding state for {}", q.get("state").unwrap_or_default())),
        };
        let sort = match sort {
            None => SortOpt::Cid,
            Some(s) => SortOpt::parse(s).ok_or_else(|| format!("invalid sorting option: {s}"))?,
        };
        if state != StateFilter::Closed {
            if sort == SortOpt::Stop {
                return Err("sort by stop only valid on closed connections".into());
            }
            if sort == SortOpt::Reason {
                return Err("sort by reason only valid on closed connections".into());
            }
        }
        // Asked for one connection, the page is one long.
        let limit = if cid.is_some() { 1 } else { limit };
        let account = q.get("acc").map(str::to_string);
        Ok(ConnzQuery { sort, subs, auth, offset, limit, cid, state, account })
    }
}

fn idle(r: &ConnRecord, now: u64) -> u64 {
    r.stop.unwrap_or(now).saturating_sub(r.last)
}

fn up(r: &ConnRecord, now: u64) -> u64 {
    r.stop.unwrap_or(now).saturating_sub(r.start)
}

/// Sort records best first for `by`; ties in cid order.
pub fn sort(recs: &mut [ConnRecord], by: SortOpt, now: u64) {
    let key = |a: &ConnRecord, b: &ConnRecord| -> Ordering {
        match by {
            SortOpt::Cid => Ordering::Equal,
            SortOpt::Start => a.start.cmp(&b.start),
            SortOpt::Subs => b.num_subs.cmp(&a.num_subs),
            SortOpt::Pending => b.pending.cmp(&a.pending),
            SortOpt::MsgsTo => b.out_msgs.cmp(&a.out_msgs),
            SortOpt::MsgsFrom => b.in_msgs.cmp(&a.in_msgs),
            SortOpt::BytesTo => b.out_bytes.cmp(&a.out_bytes),
            SortOpt::BytesFrom => b.in_bytes.cmp(&a.in_bytes),
            SortOpt::Last => b.last.cmp(&a.last),
            SortOpt::Idle => idle(b, now).cmp(&idle(a, now)),
            SortOpt::Uptime => up(a, now).cmp(&up(b, now)),
            SortOpt::Stop => b.stop.cmp(&a.stop),
            SortOpt::Reason => a.reason.cmp(&b.reason),
        }
    };
    recs.sort_unstable_by(|a, b| key(a, b).then(a.cid.cmp(&b.cid)));
}

/// One connection in nats-server's `ConnInfo` shape.
#[derive(Serialize)]
pub struct ConnInfo {
    pub cid: u64,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub conn_type: &'static str,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt: Option<String>,
    pub uptime: String,
    pub idle: String,
    pub pending_bytes: u64,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher_suite: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list_detail: Option<Vec<SubDetail>>,
}


impl ConnInfo {
    /// `accounts`: the account names by id.
    pub fn new(r: ConnRecord, q: &ConnzQuery, now: u64, accounts: &[Arc<str>]) -> ConnInfo {
        let (tls_version, tls_cipher_suite) = match r.tls.clone() {
            // Go names TLS 1.3 suites `TLS_AES_128_GCM_SHA256`; rustls says `TLS13_...`.
            Some((v, c)) => (Some(v), Some(c.strip_prefix("TLS13_").map_or(c.clone(), |s| format!("TLS_{s}")))),
            None => (None, None),
        };
        let account = accounts.get(r.account as usize).map_or(GLOBAL_ACCOUNT, |a| &**a);
        let (list, detail) = match q.subs {
            // nats-server leaves an empty list out altogether.
            _ if r.subs.is_empty() => (None, None),
            SubsLevel::None => (None, None),
            SubsLevel::List => (Some(r.subs.iter().map(|s| s.subject.clone()).collect()), None),
            SubsLevel::Detail => (None, Some(r.subs.clone())),
        };
        ConnInfo {
            cid: r.cid,
            kind: "Client",
            conn_type: if r.websocket { "websocket" } else { "nats" },
            ip: r.ip.map(|i| i.to_string()).unwrap_or_default(),
            port: r.port,
            start: rfc3339_nano(r.start),
            last_activity: rfc3339_nano(r.last),
            stop: r.stop.map(rfc3339_nano),
            reason: r.reason,
            rtt: Some(rtt_text(r.rtt)),
            uptime: uptime(up(&r, now)),
            idle: uptime(idle(&r, now)),
            pending_bytes: r.pending,
            in_msgs: r.in_msgs,
            out_msgs: r.out_msgs,
            in_bytes: r.in_bytes,
            out_bytes: r.out_bytes,
            subscriptions: r.num_subs,
            name: r.name,
            lang: r.lang,
            version: r.version,
            tls_version,
            tls_cipher_suite,
            authorized_user: if q.auth { r.user.filter(|u| !u.is_empty()) } else { None },
            account: (q.auth && account != GLOBAL_ACCOUNT).then(|| account.to_string()),
            subscriptions_list: list,
            subscriptions_list_detail: detail,
        }
    }
}

/// The `/connz` reply.
#[derive(Serialize)]
pub struct Connz {
    pub server_id: String,
    pub now: String,
    pub num_connections: usize,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// None only for an account that does not exist (`null`, as nats-server).
    pub connections: Option<Vec<ConnInfo>>,
}

/// The reply for `acc=` naming an account that does not exist. nats-server 2.9 answers
/// before filling anything in: no server_id, no connections (`null`), the page as asked.
pub fn unknown_account(q: &ConnzQuery, now: u64) -> Connz {
    Connz {
        server_id: String::new(),
        now: rfc3339_nano(now),
        num_connections: 0,
        total: 0,
        offset: q.offset,
        limit: q.limit,
        connections: None,
    }
}

/// Merge the cores' records into the page the query asks for. Closed connections beyond
/// [`super::gather::MAX_CLOSED`] in all (the oldest) are dropped first, as from one ring.
pub fn page(
    server_id: &str,
    q: &ConnzQuery,
    mut recs: Vec<ConnRecord>,
    mut total: usize,
    now: u64,
    accounts: &[Arc<str>],
) -> Connz {
    if q.state != StateFilter::Open {
        let closed = recs.iter().filter(|r| r.stop.is_some()).count();
        if closed > super::gather::MAX_CLOSED && q.cid.is_none() {
            let mut stops: Vec<u64> = recs.iter().filter_map(|r| r.stop).collect();
            stops.sort_unstable();
            let cut = stops[closed - super::gather::MAX_CLOSED];
            recs.retain(|r| r.stop.map_or(true, |s| s >= cut));
            total = total.saturating_sub(closed - super::gather::MAX_CLOSED);
        }
    }
    sort(&mut recs, q.sort, now);
    let connections: Vec<ConnInfo> =
        recs.into_iter().skip(q.offset).take(q.limit).map(|r| ConnInfo::new(r, q, now, accounts)).collect();
    Connz {
        server_id: server_id.to_string(),
        now: rfc3339_nano(now),
        num_connections: connections.len(),
        total,
        offset: q.offset,
        limit: q.limit,
        connections: Some(connections),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(cid: u64, start: u64, out_msgs: u64, stop: Option<u64>) -> ConnRecord {
        ConnRecord { cid, start, last: start, out_msgs, stop, ..Default::default() }
    }

    #[test]
    fn sorts_like_the_reference() {
        let mut v = vec![rec(3, 30, 5, None), rec(1, 10, 0, None), rec(2, 20, 5, None)];
        sort(&mut v, SortOpt::MsgsTo, 100);
        assert_eq!(v.iter().map(|r| r.cid).collect::<Vec<_>>(), [2, 3, 1]);
        sort(&mut v, SortOpt::Uptime, 100);
        assert_eq!(v.iter().map(|r| r.cid).collect::<Vec<_>>(), [3, 2, 1]);
        sort(&mut v, SortOpt::Idle, 100);
        assert_eq!(v.iter().map(|r| r.cid).collect::<Vec<_>>(), [1, 2, 3]);
        sort(&mut v, SortOpt::Cid, 100);
        assert_eq!(v.iter().map(|r| r.cid).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn pages_and_cuts_the_closed_ring() {
        let q = ConnzQuery { state: StateFilter::Closed, offset: 1, limit: 2, ..Default::default() };
        let recs = (1..=5).map(|i| rec(i, i, 0, Some(100 + i))).collect();
        let c = page("S", &q, recs, 5, 200, &[]);
        assert_eq!(c.connections.unwrap_or_default().iter().map(|c| c.cid).collect::<Vec<_>>(), [2, 3]);
        assert_eq!((c.total, c.num_connections, c.offset, c.limit), (5, 2, 1, 2));
    }

    #[test]
    fn query_errors_are_the_references() {
        let e = |s: &str| ConnzQuery::from_query(&Query::parse(s)).unwrap_err();
        assert_eq!(e("sort=bogus"), "invalid sorting option: bogus");
        assert_eq!(e("sort=CID"), "invalid sorting option: CID");
        assert_eq!(e("state=bogus&sort=bogus"), "Error decoding state for bogus");
        assert_eq!(e("sort=reason&state=all"), "sort by reason only valid on closed connections");
        assert_eq!(e("subs=2"), "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"2\": invalid syntax");
        let q = ConnzQuery::from_query(&Query::parse("state=ALL&cid=7&subs=detail&auth=true")).unwrap();
        assert_eq!((q.state, q.cid, q.limit, q.subs, q.auth), (StateFilter::All, Some(7), 1, SubsLevel::Detail, true));
    }
}
