//! The INFO document the broker sends and the CONNECT document a client sends.

use serde::{Deserialize, Serialize};

/// The nats-server version natsu reports: clients gate features (headers, no_responders) on it.
pub const COMPAT_VERSION: &str = "2.9.10";

/// INFO, as nats-server 2.9 sends it: the same keys for the same configuration, in the
/// same order (serde writes fields in declaration order), checked side by side with the
/// reference by `tests/info_diff.rs`. Optional fields are left out when unset, as there; a
/// client reading an INFO takes missing fields as their defaults.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Info {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    #[serde(default)]
    pub go: String,
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub headers: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    /// Client certificates are required and verified (`tls { verify: true }`), whether TLS
    /// is required or only offered: a client learns before its handshake that it needs one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    /// TLS offered but not required (nats-server's `allow_non_tls`); never with
    /// `tls_required`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_available: bool,
    pub max_payload: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// A random challenge an nkey user signs in its CONNECT (`sig`); sent when nkey users
    /// are configured, as nats-server does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The cluster's name whenever a `cluster` block is configured, as nats-server sends it
    /// (a server alone in its cluster too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
    /// natsu's own version, beside the compatible `version` above: the one key the
    /// reference never sends. Clients ignore keys they do not know, and it tells an
    /// operator which server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub natsu_version: Option<String>,
}

/// CONNECT options; unknown fields are ignored, as nats-server does.
/// The INFO a server sends over a route, with nats-server 2.9's field names in its order.
/// Read from peers too: fields of newer servers that natsu must notice (2.10's pooled and
/// per-account routes) are read and never written.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    pub max_payload: i64,
    /// `nats-route://host:port/`: where to dial this server (set when it advertises, and
    /// by a server gossiping a new peer to the others).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub cluster: String,
    /// The cluster name was made up, not configured: a peer's configured name wins.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dynamic: bool,
    /// The client URLs of the server (for clients' discovery).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    /// Its WebSocket URLs (for WebSocket clients' discovery).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ws_connect_urls: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
    pub lnoc: bool,
    /// 2.10+: the account this route is dedicated to (natsu refuses such routes).
    #[serde(skip_serializing)]
    pub route_account: Option<String>,
    /// 2.10+: the size of the peer's route pool (natsu never sends one, so a 2.10 peer
    /// treats it as an old server and uses one route).
    #[serde(skip_serializing)]
    pub route_pool_size: i64,
    /// A gateway's INFO (natsu has no gateways).
    #[serde(skip_serializing)]
    pub gateway: Option<String>,
}

/// The CONNECT a soliciting server sends over a route. `lang` and `gateway` are read only:
/// a client or a gateway that dialled the route port says so with them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteConnect {
    pub echo: bool,
    pub verbose: bool,
    pub pedantic: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    pub tls_required: bool,
    pub headers: bool,
    /// The soliciting server's id.
    pub name: String,
    pub cluster: String,
    pub dynamic: bool,
    pub lnoc: bool,
    #[serde(skip_serializing)]
    pub lang: String,
    #[serde(skip_serializing)]
    pub gateway: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Connect {
    pub verbose: bool,
    pub pedantic: bool,
    pub tls_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub lang: String,
    pub version: String,
    pub protocol: i32,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// An NKey user's public key (`U…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,
    /// The signature of INFO's `nonce` by the seed of `nkey` (or of the user in `jwt`),
    /// base64 (URL-safe without padding, as clients send it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    /// A user JWT (operator mode; not served yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
}

impl Default for Connect {
    fn default() -> Self {
        // nats-server starts every client verbose and pedantic, and a CONNECT that leaves a
        // field out keeps the default: only an explicit `"verbose":false` turns it off.
        Connect {
            verbose: true,
            pedantic: true,
            tls_required: false,
            name: None,
            lang: String::new(),
            version: String::new(),
            protocol: 0,
            // A client that says nothing about echo gets its own messages.
            echo: true,
            headers: false,
            no_responders: false,
            user: None,
            pass: None,
            auth_token: None,
            nkey: None,
            sig: None,
            jwt: None,
        }
    }
}

/// The account fields of a CONNECT. A client never picks its account (the server does, from
/// its credentials): a CONNECT naming one is refused (the CVE-2022-24450 class of bug).
/// Read apart from [`Connect`] so that struct, which the client library also fills field by
/// field, keeps its shape.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConnectAccount {
    account: Option<String>,
    new_account: bool,
}

/// Whether a CONNECT's JSON asks for an account: a non-empty `account` or `new_account:
/// true`. As nats-server 2.9: `"account":""`, `"account":null` and `"new_account":false`
/// ask for nothing, and a field of the wrong type is a malformed CONNECT (`Err`).
///
/// ```
/// use natsu::protocol::info::asks_for_account;
/// assert!(asks_for_account(br#"{"account":"A"}"#).unwrap());
/// assert!(asks_for_account(br#"{"new_account":true}"#).unwrap());
/// assert!(!asks_for_account(br#"{"account":"","new_account":false}"#).unwrap());
/// assert!(asks_for_account(br#"{"account":5}"#).is_err());
/// ```
pub fn asks_for_account(json: &[u8]) -> Result<bool, serde_json::Error> {
    let a: ConnectAccount = serde_json::from_slice(json)?;
    Ok(a.new_account || a.account.is_some_and(|a| !a.is_empty()))
}

/// The INFO a hub sends on a leaf-node connection, as nats-server 2.9 fills it: at once
/// (with `nonce`, `client_id`, `info_on_connect`), then again once the leaf's CONNECT is
/// accepted (`connect_info`, `remote_account`). A dialling leaf checks `client_id` and
/// `leafnode_urls` to know it reached a leaf-node port.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LeafInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    pub max_payload: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
    pub client_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub info_on_connect: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub connect_info: bool,
    /// Always present (an empty list when `no_advertise`): a leaf tells a leaf-node port
    /// from a client or route port by it.
    pub leafnode_urls: Option<Vec<String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_account: String,
}

/// The CONNECT a leaf sends its hub (nats-server's `leafConnectInfo`). `lang` and
/// `gateway` are read only: a client or a gateway on the leaf-node port says so with them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LeafConnect {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    pub tls_required: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_hub: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub headers: bool,
    #[serde(skip_serializing)]
    pub lang: String,
    #[serde(skip_serializing)]
    pub gateway: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_defaults_and_unknown_fields() {
        let c: Connect = serde_json::from_str(r#"{"verbose":true,"sig":"x","lang":"go","unknown":[1]}"#).unwrap();
        assert!(c.verbose && c.pedantic && c.echo && !c.headers);
        assert_eq!(c.lang, "go");
        assert_eq!((c.sig.as_deref(), c.nkey.as_deref(), c.jwt.as_deref()), (Some("x"), None, None));
        let c: Connect = serde_json::from_str(r#"{"nkey":"UABC","sig":"c2ln","jwt":"e30"}"#).unwrap();
        assert_eq!((c.nkey.as_deref(), c.sig.as_deref(), c.jwt.as_deref()), (Some("UABC"), Some("c2ln"), Some("e30")));
        // Unset, they are not written (the client library sends this struct).
        assert!(!serde_json::to_string(&Connect::default()).unwrap().contains("nkey"));
        let c: Connect = serde_json::from_str(r#"{"verbose":false,"pedantic":false}"#).unwrap();
        assert!(!c.verbose && !c.pedantic);
        assert!(serde_json::from_str::<Connect>("{bad json}").is_err());
    }

    #[test]
    fn info_leaves_out_unset_fields() {
        let i = Info { version: COMPAT_VERSION.into(), proto: 1, ..Default::default() };
        let s = serde_json::to_string(&i).unwrap();
        assert!(!s.contains("auth_required") && !s.contains("client_id") && s.contains("\"proto\":1"));
    }

    #[test]
    fn info_keys_come_in_the_reference_order() {
        // The order nats-server 2.9.10 writes them in (observed with TLS, verify and a
        // cluster); clients do not care, people comparing the two servers' INFO do.
        let i = Info {
            auth_required: true,
            tls_required: true,
            tls_verify: true,
            client_id: Some(1),
            client_ip: Some("127.0.0.1".into()),
            cluster: Some("c".into()),
            ldm: true,
            ..Default::default()
        };
        // (serde_json's Value sorts its keys: look at the text.)
        let s = serde_json::to_string(&i).unwrap();
        let want = [
            "server_id", "server_name", "version", "proto", "go", "host", "port", "headers", "auth_required",
            "tls_required", "tls_verify", "max_payload", "client_id", "client_ip", "cluster", "ldm",
        ];
        let at: Vec<usize> = want.iter().map(|k| s.find(&format!("\"{k}\":")).expect(k)).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{s}");
        assert_eq!(s.matches("\":").count(), want.len(), "{s}");
    }

    #[test]
    fn connect_account_fields() {
        let table: &[(&str, Option<bool>)] = &[
            (r#"{}"#, Some(false)),
            (r#"{"account":"A"}"#, Some(true)),
            (r#"{"account":"$G"}"#, Some(true)),
            (r#"{"new_account":true}"#, Some(true)),
            (r#"{"account":"","new_account":false}"#, Some(false)),
            (r#"{"account":null}"#, Some(false)),
            (r#"{"account":5}"#, None),
            (r#"{"new_account":"yes"}"#, None),
        ];
        for &(json, want) in table {
            assert_eq!(asks_for_account(json.as_bytes()).ok(), want, "{json}");
        }
    }
}
