//! `/subsz`: the subscription index's figures, and with `subs=1` the subscriptions.
//!
//! Server-wide by default, over every account's index; `acc=NAME` narrows both the figures
//! and the list to one account, as nats-server 2.9 does (an unknown account: all zeros).

use serde::Serialize;

use super::fmt::{go_float, rfc3339_nano};
use super::gather::{CoreSnapshot, IndexFigures, SubDetail};
use super::params::Query;
use crate::protocol::subject;

/// nats-server's page size for `subs=1`.
pub const DEFAULT_LIMIT: usize = 1024;

/// Whether the subscription `pattern` matches the literal `subject`.
///
/// ```
/// use natsu::server::monitor::subsz::matches;
/// assert!(matches("foo.*", "foo.bar"));
/// assert!(matches("foo.>", "foo.bar.baz"));
/// assert!(!matches("foo.>", "foo"));
/// assert!(!matches("foo.*", "foo.bar.baz"));
/// ```
pub fn matches(pattern: &str, subject: &str) -> bool {
    crate::server::sublist::pattern_matches(pattern.as_bytes(), subject.as_bytes())
}

/// A parsed `/subsz` query.
#[derive(Clone, Debug, Default)]
pub struct SubszQuery {
    pub subs: bool,
    pub offset: usize,
    pub limit: usize,
    pub test: Option<String>,
    /// `acc=`: one account's index only.
    pub account: Option<String>,
}

impl SubszQuery {
    /// Read the query with nats-server's errors.
    ///
    /// ```
    /// use natsu::server::monitor::{params::Query, subsz::SubszQuery};
    /// let e = SubszQuery::from_query(&Query::parse("subs=1&test=foo.*")).unwrap_err();
    /// assert_eq!(e, "invalid test subject, must be valid publish subject: foo.*");
    /// ```
    pub fn from_query(q: &Query) -> Result<SubszQuery, String> {
        let subs = q.boolean("subs")?;
        let offset = q.int("offset", 0)?.max(0) as usize;
        let limit = match q.int("limit", 0)? {
            l if l <= 0 => DEFAULT_LIMIT,
            l => l as usize,
        };
        let test = q.get("test").map(str::to_string);
        if let Some(t) = &test {
            if !subject::valid_literal_subject(t.as_bytes()) {
                return Err(format!("invalid test subject, must be valid publish subject: {t}"));
            }
        }
        let account = q.get("acc").map(str::to_string);
        Ok(SubszQuery { subs, offset, limit, test, account })
    }
}

/// The index's figures, summed over the cores (nats-server's `SublistStats`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SublistStats {
    pub num_subscriptions: u64,
    pub num_cache: u64,
    pub num_inserts: u64,
    pub num_removes: u64,
    pub num_matches: u64,
    #[serde(serialize_with = "go_float")]
    pub cache_hit_rate: f64,
    /// Over the cached match results of every core's index (each core caches its own).
    pub max_fanout: u64,
    #[serde(serialize_with = "go_float")]
    pub avg_fanout: f64,
}

impl From<IndexFigures> for SublistStats {
    fn from(f: IndexFigures) -> SublistStats {
        SublistStats {
            num_subscriptions: f.subscriptions,
            num_cache: f.cache_len,
            num_inserts: f.inserts,
            num_removes: f.removes,
            num_matches: f.cache_hits + f.cache_misses,
            cache_hit_rate: if f.cache_hits + f.cache_misses > 0 {
                f.cache_hits as f64 / (f.cache_hits + f.cache_misses) as f64
            } else {
                0.0
            },
            max_fanout: f.fanout_max,
            avg_fanout: if f.cache_len > 0 { f.fanout_sum as f64 / f.cache_len as f64 } else { 0.0 },
        }
    }
}

impl SublistStats {
    /// Every account's index on every core.
    pub fn sum(snaps: &[CoreSnapshot]) -> SublistStats {
        let mut f = IndexFigures::default();
        for c in snaps {
            f.add(&c.stats.index);
        }
        f.into()
    }

    /// One account's index on every core (from snapshots taken with `accounts`); zeros for
    /// an account none of them has.
    pub fn account(snaps: &[CoreSnapshot], id: Option<u32>) -> SublistStats {
        let mut f = IndexFigures::default();
        for a in snaps.iter().filter_map(|c| c.accounts.get(id? as usize)) {
            f.add(&a.index);
        }
        f.into()
    }
}

/// `/subsz?subs=1` with a non-empty page.
#[derive(Serialize)]
struct SubszFull<'a> {
    server_id: &'a str,
    now: String,
    #[serde(flatten)]
    stats: SublistStats,
    total: usize,
    offset: usize,
    limit: usize,
    subscriptions_list: Vec<SubDetail>,
}

/// The `/subsz` reply with the figures `stats`. Like nats-server 2.9, only the figures
/// unless there is a non-empty page of subscriptions to show; `total` is the length of that
/// page, as there.
pub fn reply(
    server_id: &str,
    q: &SubszQuery,
    stats: SublistStats,
    snaps: Vec<CoreSnapshot>,
    now: u64,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut subs: Vec<SubDetail> = snaps.into_iter().flat_map(|s| s.subs).collect();
    // Each client's subscriptions come in sid order; keep it within a cid.
    subs.sort_by_key(|s| s.cid);
    let page: Vec<SubDetail> = subs.into_iter().skip(q.offset).take(q.limit).collect();
    if !q.subs || page.is_empty() {
        return serde_json::to_vec_pretty(&stats);
    }
    serde_json::to_vec_pretty(&SubszFull {
        server_id,
        now: rfc3339_nano(now),
        stats,
        total: page.len(),
        offset: q.offset,
        limit: q.limit,
        subscriptions_list: page,
    })
}
