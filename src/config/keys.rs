//! Which keys each block of the config file may hold beyond those natsu serves: the keys
//! nats-server 2.9 knows there that natsu does not serve yet (refused by name), and how
//! nats-server words a key it does not know there. [`file`](super::file) serves the rest.

/// How a block of the file treats a key it does not serve. Nothing is ignored: a setting
/// natsu would drop could change what the server lets in (`tls { pinned_certs }` dropped
/// would accept any certificate the CA signed), so the file is refused.
pub(super) struct Block {
    /// Keys nats-server 2.9 reads here that natsu does not serve yet: refused by name, so a
    /// user knows the key is right and the feature is what is missing.
    pub not_served: &'static [&'static str],
    /// nats-server's words for a key it does not know here.
    pub unknown: Unknown,
}

pub(super) enum Unknown {
    /// `unknown field "x"`
    Field,
    /// `error parsing tls config, unknown field ["x"]`
    Tls,
    /// `Unknown field "x" parsing permissions`
    Permissions,
}

/// The top level.
pub(super) const TOP: Block = Block {
    not_served: &[
        "account_resolver",
        "accounts_resolver",
        "client_advertise",
        "connect_error_reports",
        "default_js_domain",
        "disable_sublist_cache",
        "gateway",
        "http_base_path",
        "jetstream",
        "log_size_limit",
        "logfile_size_limit",
        "max_sub_tokens",
        "max_subscription_tokens",
        "max_traced_msg_len",
        "mqtt",
        "no_header_support",
        "no_sublist_cache",
        "no_sys_acc",
        "no_system",
        "no_system_account",
        "ocsp",
        "ports_file_dir",
        "prof_port",
        "reconnect_error_reports",
        "resolver_tls",
        "server_tags",
        "store_dir",
        "storedir",
        "trusted",
        "trusted_keys",
    ],
    unknown: Unknown::Field,
};

/// `authorization`, at the top and inside `cluster`.
pub(super) const AUTHORIZATION: Block = Block { not_served: &["default_permission", "default_permissions", "permissions"], unknown: Unknown::Field };

/// One entry of `authorization { users: [...] }`.
pub(super) const USER: Block = Block { not_served: &["allowed_connection_types", "clients", "connection_types"], unknown: Unknown::Field };

/// A user's `permissions`.
pub(super) const PERMISSIONS: Block = Block { not_served: &[], unknown: Unknown::Permissions };

pub(super) const TLS: Block = Block {
    not_served: &["cipher_suites", "connection_rate_limit", "curve_preferences", "insecure", "pinned_certs", "verify_cert_and_check_known_urls"],
    unknown: Unknown::Tls,
};

/// One account of `accounts { NAME { ... } }`: `nkey` is an operator-style account key.
pub(super) const ACCOUNT: Block = Block { not_served: &["default_permissions", "jetstream", "limits", "nkey"], unknown: Unknown::Field };

/// One entry of an account's `exports`.
pub(super) const EXPORT: Block = Block { not_served: &["account_token_position", "latency", "response_threshold", "threshold"], unknown: Unknown::Field };

/// One entry of an account's `imports`.
pub(super) const IMPORT: Block = Block { not_served: &["share"], unknown: Unknown::Field };

/// An import's `{account: A, subject: S}`.
pub(super) const IMPORT_FROM: Block = Block { not_served: &[], unknown: Unknown::Field };

/// `websocket { tls }`: the clients' refusals, and `verify_and_map` (a WebSocket client's
/// certificate is not read for it yet).
pub(super) const WEBSOCKET_TLS: Block = Block { not_served: CLUSTER_TLS.not_served, unknown: Unknown::Tls };

/// `websocket`: `jwt_cookie` needs operator mode.
pub(super) const WEBSOCKET: Block = Block { not_served: &["jwt_cookie"], unknown: Unknown::Field };

/// `cluster`: route permissions (also refused in its `authorization`, where nats-server
/// takes them as deprecated).
pub(super) const CLUSTER: Block = Block { not_served: &["permissions"], unknown: Unknown::Field };

/// `cluster { tls }`: the clients' refusals, and `verify_and_map` (which maps a client's
/// certificate to a user; routes have no users).
pub(super) const CLUSTER_TLS: Block = Block {
    not_served: &["cipher_suites", "connection_rate_limit", "curve_preferences", "insecure", "pinned_certs", "verify_and_map", "verify_cert_and_check_known_urls"],
    unknown: Unknown::Tls,
};

/// nats-server 2.10's `cluster` keys, refused by name with what they are for: natsu speaks
/// the 2.9 route protocol (one route per server pair, every account on it, uncompressed).
/// nats-server 2.9 calls them unknown fields.
pub(super) const NEWER_CLUSTER_KEYS: &[(&str, &str)] = &[("accounts", "per-account routes"), ("compression", "route compression"), ("pool_size", "route pools")];

/// `leafnodes`: a minimum version for accepted leafs is not served yet.
pub(super) const LEAFNODES: Block = Block { not_served: &["min_version", "minimum_version"], unknown: Unknown::Field };

/// `leafnodes { authorization }`.
pub(super) const LEAF_AUTHORIZATION: Block = Block { not_served: &[], unknown: Unknown::Field };

/// One entry of `leafnodes { authorization { users } }`.
pub(super) const LEAF_USER: Block = Block { not_served: &[], unknown: Unknown::Field };

/// One entry of `leafnodes { remotes }`.
pub(super) const LEAF_REMOTE: Block = Block {
    not_served: &[
        "deny_export",
        "deny_exports",
        "deny_import",
        "deny_imports",
        "hub",
        "js_cluster_migrate",
        "jetstream_cluster_migrate",
        "websocket_compress",
        "websocket_compression",
        "websocket_no_masking",
        "ws_compress",
        "ws_compression",
        "ws_no_masking",
    ],
    unknown: Unknown::Field,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are matched lowercased, so a list entry with a capital would never match.
    #[test]
    fn lists_are_lowercase() {
        for b in [&TOP, &AUTHORIZATION, &USER, &PERMISSIONS, &TLS, &ACCOUNT, &EXPORT, &IMPORT, &IMPORT_FROM, &CLUSTER, &CLUSTER_TLS, &WEBSOCKET, &WEBSOCKET_TLS, &LEAFNODES, &LEAF_AUTHORIZATION, &LEAF_USER, &LEAF_REMOTE] {
            for k in b.not_served {
                assert_eq!(*k, k.to_ascii_lowercase());
            }
        }
        for (k, _) in NEWER_CLUSTER_KEYS {
            assert_eq!(*k, k.to_ascii_lowercase());
        }
    }

    /// What the clients' TLS refuses, the routes' refuses too.
    #[test]
    fn cluster_tls_refuses_what_tls_refuses() {
        for k in TLS.not_served {
            assert!(CLUSTER_TLS.not_served.contains(k), "{k}");
        }
    }
}
