//! The INFO document the broker sends and the CONNECT document a client sends.

use serde::{Deserialize, Serialize};

/// The nats-server version natsu reports: clients gate features (headers, no_responders) on it.
pub const COMPAT_VERSION: &str = "2.9.10";

/// INFO, as nats-server 2.9 sends it. Optional fields are left out when unset, as there;
/// a client reading an INFO takes missing fields as their defaults.
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
    pub max_payload: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    /// TLS offered but not required (nats-server's `allow_non_tls`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
    /// natsu's own version, beside the compatible `version` above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub natsu_version: Option<String>,
}

/// CONNECT options; unknown fields are ignored, as nats-server does.
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_defaults_and_unknown_fields() {
        let c: Connect = serde_json::from_str(r#"{"verbose":true,"sig":"x","lang":"go"}"#).unwrap();
        assert!(c.verbose && c.pedantic && c.echo && !c.headers);
        assert_eq!(c.lang, "go");
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
}
