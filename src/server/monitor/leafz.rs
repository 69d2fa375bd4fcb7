//! `/leafz` and `/varz`'s `leaf` object, key for key as nats-server 2.9's `Leafz` and
//! `LeafNodeOptsVarz`.
//!
//! Built on core zero from its leaf connections (leafs live there). `ip`/`port` are the
//! other end of the TCP connection (a hub's leaf-node port for a connection we dialled, the
//! leaf's ephemeral port for one we accepted); `subscriptions` counts the interest the
//! other side announced, one per subject and queue, as nats-server does.

use serde::Serialize;

use super::fmt::{rfc3339_nano, rtt_text};
use super::params::Query;
use crate::server::leaf::LeafNodes;
use crate::server::route::Route;
use crate::server::shard::Shard;

/// A parsed `/leafz` query: `subs` (a Go boolean) and `acc`.
#[derive(Clone, Debug, Default)]
pub struct LeafzQuery {
    pub subs: bool,
    pub account: Option<String>,
}

impl LeafzQuery {
    /// ```
    /// use natsu::server::monitor::{leafz::LeafzQuery, params::Query};
    /// let q = LeafzQuery::from_query(&Query::parse("subs=1&acc=A")).unwrap();
    /// assert!(q.subs && q.account.as_deref() == Some("A"));
    /// assert!(LeafzQuery::from_query(&Query::parse("subs=2")).is_err());
    /// ```
    pub fn from_query(q: &Query) -> Result<LeafzQuery, String> {
        Ok(LeafzQuery { subs: q.boolean("subs")?, account: q.get("acc").filter(|a| !a.is_empty()).map(str::to_string) })
    }
}

/// One leaf connection in nats-server's `LeafInfo` shape.
#[derive(Clone, Debug, Serialize)]
pub struct LeafInfo {
    pub account: String,
    pub ip: String,
    pub port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rtt: String,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list: Vec<String>,
}

/// The `/leafz` reply.
#[derive(Clone, Debug, Serialize)]
pub struct Leafz {
    pub server_id: String,
    pub now: String,
    pub leafnodes: usize,
    pub leafs: Vec<LeafInfo>,
}

fn leaf_info(shard: &Shard, route: &Route, subs: bool) -> LeafInfo {
    let c = &route.client;
    let list = if subs {
        let mut l: Vec<String> = route.subs.borrow().keys().map(|(_, s, _)| String::from_utf8_lossy(s).into_owned()).collect();
        l.sort();
        l
    } else {
        Vec::new()
    };
    LeafInfo {
        account: shard.account_name(c).to_string(),
        ip: c.addr.map(|a| a.ip().to_string()).unwrap_or_default(),
        port: c.addr.map_or(0, |a| a.port()),
        rtt: rtt_text(c.rtt.get()),
        in_msgs: c.stats.in_msgs.get(),
        out_msgs: c.stats.out_msgs.get(),
        in_bytes: c.stats.in_bytes.get(),
        out_bytes: c.stats.out_bytes.get(),
        subscriptions: route.subs.borrow().len() as u32,
        subscriptions_list: list,
    }
}

/// `/leafz` (core zero).
pub fn build(shard: &Shard, q: &LeafzQuery, now: u64) -> Leafz {
    let leafs: Vec<LeafInfo> = shard.leaf_conns().iter().filter(|r| q.account.as_deref().map_or(true, |a| shard.account_name(&r.client) == a)).map(|r| leaf_info(shard, r, q.subs)).collect();
    Leafz { server_id: shard.shared.info.server_id.clone(), now: rfc3339_nano(now), leafnodes: leafs.len(), leafs }
}

/// `/varz`'s `leaf`: the leaf-node port's settings and the remotes (nats-server's
/// `LeafNodeOptsVarz`; an object with no keys without `leafnodes`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct LeafNodeOptsVarz {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u16,
    #[serde(skip_serializing_if = "is_zero_f", serialize_with = "super::fmt::go_float")]
    pub auth_timeout: f64,
    #[serde(skip_serializing_if = "is_zero_f", serialize_with = "super::fmt::go_float")]
    pub tls_timeout: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemoteLeafOptsVarz>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RemoteLeafOptsVarz {
    pub local_account: String,
    /// `host:port` of each URL, as nats-server shows them (no scheme, no credentials).
    pub urls: Vec<String>,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

fn is_zero_f(n: &f64) -> bool {
    *n == 0.0
}

/// `/varz`'s `leaf` for these options.
pub fn varz(l: Option<&LeafNodes>) -> LeafNodeOptsVarz {
    let Some(l) = l else { return LeafNodeOptsVarz::default() };
    let listening = l.port.is_some();
    LeafNodeOptsVarz {
        host: if listening { l.host.clone() } else { String::new() },
        port: l.port.unwrap_or(0),
        // nats-server's defaults when the port is on: 2s for each.
        auth_timeout: if listening { l.auth_timeout.map_or(2.0, |d| d.as_secs_f64()) } else { 0.0 },
        tls_timeout: if listening { 2.0 } else { 0.0 },
        remotes: l
            .remotes
            .iter()
            .map(|r| RemoteLeafOptsVarz {
                local_account: r.account.clone().unwrap_or_else(|| "$G".into()),
                urls: r.urls.iter().filter_map(|u| crate::config::file::parse_route_url(u).ok()).map(|u| crate::server::route::join_host_port(&u.host, u.port)).collect(),
            })
            .collect(),
    }
}
