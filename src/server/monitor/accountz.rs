//! `/accountz` (the accounts, or one account's detail with `acc=NAME`) and `/accstatz`
//! (connections and traffic per account), in nats-server 2.9's shapes.
//!
//! What natsu shows differently, and why:
//! - nats-server imports a few `$SYS.REQ.…` services into every account and subscribes
//!   internal clients to them; natsu answers the same requests (`shard::system`) from its
//!   subscription index without imports or internal clients, so its imports, exports and
//!   subscription counts are the configured ones and the clients' only. An account's
//!   `subscriptions` (and its `sublist_stats`) count client subscriptions, as `/subsz`.
//! - `/accstatz` has no `sent`: nats-server counts a delivery on the publisher's account (a
//!   message crossing a stream import counts for the exporter), which natsu cannot tell
//!   without counting per delivery on the hot path; it counts deliveries per connection.
//! - Accounts are listed in the order of the account table (`$G`, the configured ones, then
//!   the system account); nats-server's order is its map's, a different one each time.

use serde::Serialize;

use super::fmt::rfc3339_nano;
use super::gather::AccountFigures;
use super::subsz::SublistStats;
use crate::server::options::{Account, ExportKind, ResponseType, Trust, TrustedAccount};
use crate::server::shard::imports::AccountTable;

/// `/accountz`: the names of the accounts.
#[derive(Serialize)]
pub struct AccountList<'a> {
    pub server_id: &'a str,
    pub now: String,
    pub system_account: &'a str,
    pub accounts: Vec<&'a str>,
}

/// `/accountz?acc=NAME`.
#[derive(Serialize)]
pub struct AccountDetail<'a> {
    pub server_id: &'a str,
    pub now: String,
    pub system_account: &'a str,
    pub account_detail: AccountInfo,
}

/// One account as nats-server's `AccountInfo`, without the JWT and JetStream fields (natsu
/// has neither; nats-server leaves them out too when empty).
#[derive(Serialize)]
pub struct AccountInfo {
    pub account_name: String,
    /// When the account was set up: at start (accounts do not change on reload).
    pub update_time: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_system: bool,
    /// Accounts from the config file never expire.
    pub expired: bool,
    /// Every import resolved (the config reader refuses one that does not).
    pub complete: bool,
    pub jetstream_enabled: bool,
    pub leafnode_connections: u64,
    pub client_connections: u64,
    pub subscriptions: u64,
    /// Subject mappings by source (sorted, as Go writes a map), each destination with its
    /// cumulative weight, as nats-server shows them.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub mappings: std::collections::BTreeMap<String, Vec<MappingInfo>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExportInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<ImportInfo>,
    /// An account of operator mode: what its JWT says.
    #[serde(flatten)]
    pub jwt: Option<JwtInfo>,
    pub sublist_stats: SublistStats,
}

/// One destination of a mapping (nats-server's `MapDest`).
#[derive(Serialize)]
pub struct MappingInfo {
    pub subject: String,
    pub weight: u8,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
}

/// What nats-server shows of an account that comes from a JWT.
#[derive(Serialize)]
pub struct JwtInfo {
    pub jwt: String,
    /// The key that signed the account (the operator's, or one of its signing keys).
    pub issuer_key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name_tag: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The claims, top-level fields in the order nats-server's claims type has them.
    pub decoded_jwt: serde_json::Value,
    /// Revoked users and from when (RFC 3339).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub revoked_user: std::collections::BTreeMap<String, String>,
}

impl JwtInfo {
    pub fn new(a: &TrustedAccount) -> JwtInfo {
        let c = &a.claims;
        JwtInfo {
            jwt: a.jwt.clone(),
            issuer_key: c.iss.clone(),
            name_tag: c.name.clone(),
            tags: c.nats.generic.tags.clone(),
            decoded_jwt: decoded(&a.jwt),
            revoked_user: c.nats.revocations.iter().map(|(k, t)| (k.clone(), rfc3339_nano((*t).max(0) as u64 * 1_000_000_000))).collect(),
        }
    }
}

/// A JWT's claims as JSON, the top-level fields in the order of nats-server's claims type
/// (its `decoded_jwt`), the rest after them as written.
fn decoded(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap_or("");
    let claims: serde_json::Map<String, serde_json::Value> = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut out = serde_json::Map::new();
    for k in ["aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub", "nats"] {
        if let Some(v) = claims.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    for (k, v) in claims {
        if !out.contains_key(&k) {
            out.insert(k, v);
        }
    }
    serde_json::Value::Object(out)
}

/// An export as nats-server lists it.
#[derive(Serialize, Debug, PartialEq)]
pub struct ExportInfo {
    pub subject: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_accounts: Option<Vec<String>>,
}

/// An import as nats-server lists it: a stream by the exporter's subject and the subject it
/// has here (`local_subject`); a service by the subject it is asked on here and the exporter's
/// (`to`).
#[derive(Serialize, Debug, PartialEq)]
pub struct ImportInfo {
    pub subject: String,
    pub account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub invalid: bool,
    /// natsu has neither import sharing nor latency tracking.
    pub share: bool,
    pub tracking: bool,
}

fn kind_name(k: ExportKind) -> &'static str {
    match k {
        ExportKind::Stream => "stream",
        ExportKind::Service => "service",
    }
}

fn response_name(r: ResponseType) -> &'static str {
    match r {
        ResponseType::Singleton => "Singleton",
        ResponseType::Stream => "Streamed",
        ResponseType::Chunked => "Chunked",
    }
}

/// An account's exports and imports, services first then streams for exports and streams
/// first for imports (the order nats-server lists them in), each in file order.
///
/// ```
/// use natsu::server::monitor::accountz::exports_and_imports;
/// use natsu::server::options::{Account, ExportKind, Import};
/// let b = Account {
///     name: "B".into(),
///     exports: vec![],
///     imports: vec![Import { kind: ExportKind::Stream, account: "A".into(), subject: "a.>".into(), prefix: Some("p".into()), to: None }],
///     ..Account::default()
/// };
/// let (_, imports) = exports_and_imports(&b);
/// assert_eq!(imports[0].local_subject.as_deref(), Some("p.a.>"));
/// ```
pub fn exports_and_imports(a: &Account) -> (Vec<ExportInfo>, Vec<ImportInfo>) {
    let mut exports: Vec<ExportInfo> = Vec::new();
    for kind in [ExportKind::Service, ExportKind::Stream] {
        exports.extend(a.exports.iter().filter(|e| e.kind == kind).map(|e| ExportInfo {
            subject: e.subject.clone(),
            kind: kind_name(kind),
            response_type: (kind == ExportKind::Service).then(|| response_name(e.response_type)),
            approved_accounts: e.accounts.clone().filter(|v| !v.is_empty()),
        }));
    }
    let mut imports: Vec<ImportInfo> = Vec::new();
    for kind in [ExportKind::Stream, ExportKind::Service] {
        imports.extend(a.imports.iter().filter(|i| i.kind == kind).map(|i| {
            let (subject, local_subject, to) = match kind {
                ExportKind::Stream => {
                    let local = match (&i.prefix, &i.to) {
                        (Some(p), _) => format!("{p}.{}", i.subject),
                        (None, Some(to)) => to.clone(),
                        (None, None) => i.subject.clone(),
                    };
                    (i.subject.clone(), Some(local), None)
                }
                ExportKind::Service => (i.to.clone().unwrap_or_else(|| i.subject.clone()), None, Some(i.subject.clone())),
            };
            ImportInfo {
                subject,
                account: i.account.clone(),
                local_subject,
                to,
                kind: kind_name(kind),
                invalid: false,
                share: false,
                tracking: false,
            }
        }));
    }
    (exports, imports)
}

/// The list of accounts.
pub fn list<'a>(server_id: &'a str, table: &'a AccountTable, now: u64) -> AccountList<'a> {
    AccountList {
        server_id,
        now: rfc3339_nano(now),
        system_account: table.name(table.system),
        accounts: table.names.iter().map(|n| &**n).collect(),
    }
}

/// The detail of account `id`, from its configuration and its figures summed over the cores.
pub fn detail<'a>(
    server_id: &'a str,
    table: &'a AccountTable,
    configured: &[Account],
    trust: Option<&Trust>,
    id: u32,
    figures: &AccountFigures,
    update_time: u64,
    now: u64,
) -> AccountDetail<'a> {
    let name = table.name(id);
    let (exports, imports) = configured.iter().find(|a| a.name == name).map(exports_and_imports).unwrap_or_default();
    AccountDetail {
        server_id,
        now: rfc3339_nano(now),
        system_account: table.name(table.system),
        account_detail: AccountInfo {
            account_name: name.to_string(),
            update_time: rfc3339_nano(update_time),
            is_system: id == table.system,
            expired: false,
            complete: true,
            jetstream_enabled: false,
            leafnode_connections: 0,
            client_connections: figures.connections,
            subscriptions: figures.index.subscriptions,
            mappings: table.mappings.get(id as usize).map_or(&[][..], |m| m.list()).iter().map(|m| (m.src().to_string(), m.shown().into_iter().map(|d| MappingInfo { subject: d.subject, weight: d.weight, cluster: d.cluster }).collect())).collect(),
            exports,
            imports,
            jwt: trust.and_then(|t| t.accounts.get(name)).map(JwtInfo::new),
            sublist_stats: figures.index.into(),
        },
    }
}

/// `/accstatz`.
#[derive(Serialize)]
pub struct AccStatz<'a> {
    pub server_id: &'a str,
    pub now: String,
    pub account_statz: Vec<AccountStat<'a>>,
}

/// One account in `/accstatz` (nats-server's `AccountStat` without `sent`, see the module
/// comment).
#[derive(Serialize)]
pub struct AccountStat<'a> {
    pub acc: &'a str,
    pub conns: u64,
    pub leafnodes: u64,
    pub total_conns: u64,
    /// What the account's clients published.
    pub received: MsgBytes,
    pub slow_consumers: u64,
}

#[derive(Serialize)]
pub struct MsgBytes {
    pub msgs: u64,
    pub bytes: u64,
}

/// `/accstatz`: the accounts with connections, or all of them with `unused` (as nats-server).
pub fn statz<'a>(server_id: &'a str, table: &'a AccountTable, figures: &[AccountFigures], unused: bool, now: u64) -> AccStatz<'a> {
    let account_statz = table
        .names
        .iter()
        .zip(figures)
        .filter(|(_, f)| unused || f.connections > 0)
        .map(|(name, f)| AccountStat {
            acc: name,
            conns: f.connections,
            leafnodes: 0,
            total_conns: f.connections,
            received: MsgBytes { msgs: f.traffic.in_msgs, bytes: f.traffic.in_bytes },
            slow_consumers: f.slow_consumers,
        })
        .collect();
    AccStatz { server_id, now: rfc3339_nano(now), account_statz }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::options::{Export, Import, Options};

    fn conf() -> Options {
        let export = |kind, subject: &str, accounts: Option<Vec<String>>, response_type| Export {
            kind,
            subject: subject.into(),
            accounts,
            response_type,
        };
        let import = |kind, subject: &str, prefix: Option<&str>, to: Option<&str>| Import {
            kind,
            account: "A".into(),
            subject: subject.into(),
            prefix: prefix.map(Into::into),
            to: to.map(Into::into),
        };
        Options {
            accounts: vec![
                Account {
                    name: "A".into(),
                    exports: vec![
                        export(ExportKind::Stream, "a.>", None, ResponseType::Singleton),
                        export(ExportKind::Service, "req.a", None, ResponseType::Chunked),
                        export(ExportKind::Service, "priv", Some(vec!["B".into()]), ResponseType::Singleton),
                    ],
                    imports: vec![],
                    ..Account::default()
                },
                Account {
                    name: "B".into(),
                    exports: vec![],
                    imports: vec![
                        import(ExportKind::Service, "priv", None, Some("mine")),
                        import(ExportKind::Stream, "a.>", None, None),
                        import(ExportKind::Stream, "s.*", None, Some("t.*")),
                        import(ExportKind::Service, "req.a", None, None),
                    ],
                    ..Account::default()
                },
            ],
            ..Default::default()
        }
    }

    /// The shapes observed on nats-server 2.9.10 with the same configuration.
    #[test]
    fn exports_and_imports_as_the_reference_lists_them() {
        let o = conf();
        let (exports, imports) = exports_and_imports(&o.accounts[0]);
        assert!(imports.is_empty());
        let v = serde_json::to_value(&exports).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"subject": "req.a", "type": "service", "response_type": "Chunked"},
                {"subject": "priv", "type": "service", "response_type": "Singleton", "approved_accounts": ["B"]},
                {"subject": "a.>", "type": "stream"},
            ])
        );
        let (exports, imports) = exports_and_imports(&o.accounts[1]);
        assert!(exports.is_empty());
        let flags = serde_json::json!({"invalid": false, "share": false, "tracking": false});
        let with = |mut v: serde_json::Value| {
            v.as_object_mut().unwrap().extend(flags.as_object().unwrap().clone());
            v
        };
        assert_eq!(
            serde_json::to_value(&imports).unwrap(),
            serde_json::json!([
                with(serde_json::json!({"subject": "a.>", "account": "A", "local_subject": "a.>", "type": "stream"})),
                with(serde_json::json!({"subject": "s.*", "account": "A", "local_subject": "t.*", "type": "stream"})),
                with(serde_json::json!({"subject": "mine", "account": "A", "to": "priv", "type": "service"})),
                with(serde_json::json!({"subject": "req.a", "account": "A", "to": "req.a", "type": "service"})),
            ])
        );
        // Key order within an import is the reference's.
        let text = serde_json::to_string(&imports[2]).unwrap();
        assert_eq!(text, r#"{"subject":"mine","account":"A","to":"priv","type":"service","invalid":false,"share":false,"tracking":false}"#);
    }

    #[test]
    fn detail_and_statz_of_the_table() {
        let o = conf();
        let table = AccountTable::new(&o);
        let l = serde_json::to_value(list("S", &table, 0)).unwrap();
        assert_eq!(l["accounts"], serde_json::json!(["$G", "A", "B", "$SYS"]));
        assert_eq!(l["system_account"], "$SYS");
        let mut figures = vec![AccountFigures::default(); table.names.len()];
        figures[1].connections = 2;
        figures[1].index.subscriptions = 3;
        figures[1].traffic.in_msgs = 4;
        let sys = table.system;
        let d = serde_json::to_value(detail("S", &table, &o.accounts, None, sys, &figures[sys as usize], 0, 0)).unwrap();
        assert_eq!(d["account_detail"]["is_system"], true);
        assert!(d["account_detail"].get("imports").is_none() && d["account_detail"].get("exports").is_none());
        let d = serde_json::to_value(detail("S", &table, &o.accounts, None, 1, &figures[1], 0, 0)).unwrap();
        let a = &d["account_detail"];
        assert!(a.get("is_system").is_none());
        assert_eq!((a["client_connections"].as_u64(), a["subscriptions"].as_u64()), (Some(2), Some(3)));
        assert_eq!(a["sublist_stats"]["num_subscriptions"], 3);
        let s = serde_json::to_value(statz("S", &table, &figures, false, 0)).unwrap();
        assert_eq!(s["account_statz"].as_array().unwrap().len(), 1);
        assert_eq!(s["account_statz"][0]["received"], serde_json::json!({"msgs": 4, "bytes": 0}));
        let s = serde_json::to_value(statz("S", &table, &figures, true, 0)).unwrap();
        assert_eq!(s["account_statz"].as_array().unwrap().len(), 4);
    }
}
