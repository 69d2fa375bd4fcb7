//! Server options with nats-server's defaults.

use std::sync::Arc;
use std::time::Duration;

/// Everything the broker needs to know to serve; flags and the config file fill it.
#[derive(Clone, Debug)]
pub struct Options {
    /// Interface to listen on for clients.
    pub host: String,
    /// Client port; 0 picks a free one (nats-server's `-p -1`).
    pub port: u16,
    /// Executors (one per core).
    pub cores: usize,
    /// How long an executor that ran out of work keeps polling before it sleeps (natsu's
    /// own `--spin`). A message that arrives meanwhile is taken without a wake-up, which on
    /// a VM costs tens of microseconds; the spin yields its CPU to any other ready thread.
    /// It adapts between this and four times this (glommio's `SPIN_GROWTH_MAX`, natsu's
    /// change): a sleep cut short soon doubles it, a long one halves it back.
    /// Only executors pinned to a CPU spin.
    pub spin: Duration,
    /// Move a client that talks mostly with one other core to that core (natsu's own
    /// `--colocate`; see `shard::colocate`).
    pub colocate: bool,
    /// Name reported in INFO; defaults to the server id.
    pub server_name: Option<String>,
    pub max_payload: usize,
    pub max_control_line: usize,
    pub max_connections: usize,
    /// Per connection; 0 means unlimited.
    pub max_subscriptions: usize,
    /// Bytes a connection may have queued for sending before it is a slow consumer.
    pub max_pending: usize,
    pub ping_interval: Duration,
    pub ping_max: u32,
    pub write_deadline: Duration,
    pub pid_file: Option<String>,
    /// Monitoring port over HTTP (`-m`, `http`, `http_port`); None: no monitoring.
    pub http_host: String,
    pub http_port: Option<u16>,
    /// Monitoring port over HTTPS (`-ms`, `https`, `https_port`), with the `tls` settings.
    pub https_port: Option<u16>,
    /// Who may connect and what they may do.
    pub auth: Auth,
    /// TLS for client connections (`--tls…` flags or the `tls` block).
    pub tls: Option<Tls>,
    /// With `tls` set, still let clients connect without TLS (nats-server's `allow_non_tls`):
    /// INFO then offers TLS instead of requiring it.
    pub allow_non_tls: bool,
    /// Lame duck mode: how long to spread closing clients over, and the wait before the first.
    pub lame_duck_duration: Duration,
    pub lame_duck_grace_period: Duration,
    /// The cluster block, parsed and validated; used by the cluster issue.
    pub cluster: Option<Cluster>,
    /// A `cluster` block without a port (no cluster), kept for `--cluster` to complete:
    /// nats-server keeps such a block's settings for the flag.
    pub cluster_off: Option<Cluster>,
    /// The `accounts` block, in file order. Users outside every account (in
    /// `authorization`) are in the global account `$G`, which is never listed here.
    pub accounts: Vec<Account>,
    /// The top-level `mappings { }`: the global account's subject mappings.
    pub mappings: Vec<crate::server::mapping::MapRule>,
    /// `system_account`: the account of the server's own `$SYS.` subjects (nats-server's
    /// default `$SYS`, which exists even when no account block names it).
    pub system_account: String,
    /// The config file this came from (`-c`), for reloads and `/varz`.
    pub config_file: Option<String>,
    /// The `websocket` block (browsers' port); None: no WebSocket listener.
    pub websocket: Option<Websocket>,
    /// The `leafnodes` block: a leaf-node port (hub) and remotes to dial (leaf).
    pub leafnodes: Option<crate::server::leaf::LeafNodes>,
}

/// The default `--spin`: longer than a wake-up, short next to anything a person notices.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// The longest `--spin` accepted.
pub const MAX_SPIN: Duration = Duration::from_millis(10);

impl Default for Options {
    fn default() -> Self {
        Options {
            host: "0.0.0.0".into(),
            port: 4222,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            spin: DEFAULT_SPIN,
            colocate: true,
            server_name: None,
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_connections: 64 * 1024,
            max_subscriptions: 0,
            max_pending: 64 * 1024 * 1024,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            write_deadline: Duration::from_secs(10),
            pid_file: None,
            http_host: "0.0.0.0".into(),
            http_port: None,
            https_port: None,
            auth: Auth::default(),
            tls: None,
            allow_non_tls: false,
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
            cluster: None,
            cluster_off: None,
            accounts: Vec::new(),
            mappings: Vec::new(),
            system_account: SYSTEM_ACCOUNT.into(),
            config_file: None,
            websocket: None,
            leafnodes: None,
        }
    }
}

/// The account of users outside every configured account, as nats-server names it.
pub const GLOBAL_ACCOUNT: &str = "$G";
/// The default system account.
pub const SYSTEM_ACCOUNT: &str = "$SYS";

/// Authentication and authorization: one user/password, or a token, or a list of users.
/// Passwords and tokens are plain text or bcrypt hashes (`$2a$…`, `$2b$…`, `$2y$…`).
#[derive(Clone, Debug, PartialEq)]
pub struct Auth {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// Every user: those of `authorization { users }` (account `None`: `$G`) and those of
    /// every `accounts { X { users } }` (account `Some("X")`), password users and nkey users.
    pub users: Vec<User>,
    /// `no_auth_user`: a client that presents no credentials is this user (a name in
    /// `users`, checked when the file is read).
    pub no_auth_user: Option<String>,
    /// How long a client has to send CONNECT with its credentials (nats-server: 2s).
    pub timeout: Duration,
    /// Operator mode: the trusted operators and the accounts they signed; clients log in
    /// with user JWTs (and no users are configured).
    pub trust: Option<Arc<Trust>>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth { user: None, password: None, token: None, users: Vec::new(), no_auth_user: None, timeout: Duration::from_secs(2), trust: None }
    }
}

impl Auth {
    /// Whether clients must present credentials.
    pub fn required(&self) -> bool {
        self.user.is_some() || self.token.is_some() || !self.users.is_empty() || self.trust.is_some()
    }
}

/// Operator mode (`operator`, `resolver: MEMORY`, `resolver_preload`): which keys may sign
/// accounts, and the accounts (each also in [`Options::accounts`], named by its public key,
/// with the exports and imports its JWT grants).
#[derive(Clone, Debug, PartialEq)]
pub struct Trust {
    /// The operators' public keys (for the logs and /varz).
    pub operators: Vec<String>,
    /// Keys that may sign accounts: each operator's own (unless it asks for strict signing
    /// key usage) and its signing keys.
    pub keys: Vec<String>,
    /// The accounts' own keys may not sign users (an operator's `strict_signing_key_usage`).
    pub strict: bool,
    /// The preloaded accounts by public key.
    pub accounts: std::collections::BTreeMap<String, TrustedAccount>,
    /// `resolver_pinned_accounts`: when not empty, only these accounts' users (and the
    /// system account's) may log in.
    pub pinned: Vec<String>,
}

/// One account of `resolver_preload`, as its JWT says.
#[derive(Clone, Debug, PartialEq)]
pub struct TrustedAccount {
    pub claims: crate::server::auth::jwt::Claims<crate::server::auth::jwt::AccountNats>,
    /// The JWT as written.
    pub jwt: String,
    /// Why the JWT does not pass the reference's validation (None: it does): its users are
    /// refused and it takes part in no import, as nats-server never loads such an account.
    pub invalid: Option<String>,
}

/// One entry of `authorization { users = [...] }` or of an account's `users`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct User {
    /// The name; empty for an nkey user.
    pub user: String,
    /// Plain or bcrypt; empty for an nkey user.
    pub password: String,
    /// An nkey user's public key (`U…`): the client proves it holds the seed by signing the
    /// INFO `nonce`.
    pub nkey: Option<String>,
    /// The account the user belongs to; None: `$G`.
    pub account: Option<String>,
    /// None: may publish and subscribe to anything.
    pub permissions: Option<Permissions>,
}

/// What a user may publish to and subscribe to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Permissions {
    /// None: no rule, everything allowed (but see `responses`).
    pub publish: Option<SubjectPermission>,
    pub subscribe: Option<SubjectPermission>,
    /// `allow_responses` (a user JWT's `resp`): the user may also publish to the reply
    /// subject of each message it received. With it, a user without publish rules may
    /// publish nothing else (nats-server's rule).
    pub responses: Option<ResponsePermission>,
}

/// How often and how long a connection may answer a message it received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponsePermission {
    /// Replies to one request subject; None: any number.
    pub max: Option<u64>,
    /// How long after the request arrived; None: any time.
    pub expires: Option<Duration>,
}

impl Default for ResponsePermission {
    /// nats-server's defaults: one reply, within two minutes.
    fn default() -> ResponsePermission {
        ResponsePermission { max: Some(1), expires: Some(Duration::from_secs(120)) }
    }
}

impl ResponsePermission {
    /// From nats-server's numbers: 0 is the default, a negative one unlimited.
    pub fn from_limits(max: i64, expires_ns: i64) -> ResponsePermission {
        let d = ResponsePermission::default();
        ResponsePermission {
            max: match max {
                0 => d.max,
                n if n < 0 => None,
                n => Some(n as u64),
            },
            expires: match expires_ns {
                0 => d.expires,
                n if n < 0 => None,
                n => Some(Duration::from_nanos(n as u64)),
            },
        }
    }
}

/// Allow and deny lists of subjects (wildcards allowed). An empty allow list with a
/// non-empty deny list allows everything not denied; deny wins over allow.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubjectPermission {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// TLS for client connections.
#[derive(Clone, Debug, PartialEq)]
pub struct Tls {
    pub cert_file: String,
    pub key_file: String,
    /// CA certificates to verify client certificates against.
    pub ca_file: Option<String>,
    /// Require and verify client certificates.
    pub verify: bool,
    /// `verify_and_map`: verify client certificates and pick the user whose name is one of
    /// the certificate's email SANs, DNS SANs or its subject DN (RFC 2253).
    pub verify_and_map: bool,
    /// TLS handshake timeout (nats-server: 2s; the `tls { timeout }` is seconds, may be fractional).
    pub timeout: Duration,
}

impl Default for Tls {
    fn default() -> Self {
        Tls { cert_file: String::new(), key_file: String::new(), ca_file: None, verify: false, verify_and_map: false, timeout: Duration::from_secs(2) }
    }
}

/// The `cluster` block and the cluster flags (`--cluster`, `--routes`, ...): where this
/// server listens for routes, which routes it solicits, and how routes authenticate. Flags
/// override the block field by field, as in nats-server.
///
/// ```
/// let (o, _, _) = natsu::config::file::load("configs/cluster/seed.conf").unwrap();
/// let c = o.cluster.unwrap();
/// assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 6222));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// Every server of a cluster carries the same name; None: one is made up at start
    /// (nats-server's dynamic cluster name), which routes then agree on.
    pub name: Option<String>,
    /// Where routes connect (`listen`, `host`, `--cluster nats://host:port`; default "0.0.0.0").
    pub host: String,
    /// The route port; 0 picks a free one (`port: -1`, `--cluster nats://host:-1`).
    pub port: u16,
    /// Routes to solicit, as written: `nats://`, `nats-route://` or `tls://`, each with an
    /// optional `user:pass@` (what this server presents to that route). Checked when read
    /// ([`parse_route_url`](crate::config::file::parse_route_url) gives the parts).
    pub routes: Vec<String>,
    /// `authorization { user password }`: what routes connecting here must present, and
    /// what this server presents on the routes it learns from others (nats-server's
    /// implicit routes carry the server's own cluster credentials).
    pub user: Option<String>,
    pub password: Option<String>,
    /// How long a route has to send CONNECT; None: nats-server's default (2s, or the TLS
    /// `timeout` plus one second with cluster TLS).
    pub auth_timeout: Option<Duration>,
    /// Do not tell clients about the other servers' client URLs (`connect_urls` in INFO).
    pub no_advertise: bool,
    /// How often to retry a route learned from another server (an implicit route) before
    /// giving up on it; 0: one attempt. Routes in `routes` are retried for ever, as in
    /// nats-server.
    pub connect_retries: u32,
    /// The address other servers should reach this one at (`advertise`, `cluster_advertise`,
    /// `--cluster_advertise`), as written: `host:port`, or `host` alone for the route port.
    /// Checked when read ([`advertise_host_port`](crate::config::file::advertise_host_port)
    /// resolves it).
    pub advertise: Option<String>,
    /// TLS on routes (`cluster { tls { cert_file key_file ca_file verify timeout } }`). Routes
    /// are mutual TLS whatever `verify` says, as in nats-server: the accepting side asks for
    /// and verifies the peer's certificate and the soliciting side presents the same
    /// certificate as a client one ([`route_client_config`](crate::server::tls::route_client_config)).
    /// `verify` is kept as written.
    pub tls: Option<Tls>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            name: None,
            host: "0.0.0.0".into(),
            port: 0,
            routes: Vec::new(),
            user: None,
            password: None,
            auth_timeout: None,
            no_advertise: false,
            connect_retries: 0,
            advertise: None,
            tls: None,
        }
    }
}

/// One `accounts { NAME { ... } }` entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Account {
    pub name: String,
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
    /// `mappings { }`: subjects published in the account mapped to others.
    pub mappings: Vec<crate::server::mapping::MapRule>,
}

/// Whether an export or import is of a stream (messages flow to the importer) or a service
/// (the importer sends requests, the exporter answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Stream,
    Service,
}

/// How many answers a service request may have (`response_type`; nats-server's default
/// singleton).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponseType {
    #[default]
    Singleton,
    Stream,
    Chunked,
}

/// `exports: [{stream: "a.>"}, {service: "req", accounts: [B], response_type: stream}]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Export {
    pub kind: ExportKind,
    /// The exported subject (wildcards allowed).
    pub subject: String,
    /// Accounts allowed to import it; None: public.
    pub accounts: Option<Vec<String>>,
    /// Services only.
    pub response_type: ResponseType,
}

/// `imports: [{stream: {account: A, subject: "a.>"}, prefix: p}, {service: {account: A,
/// subject: req}, to: "a.req"}]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Import {
    pub kind: ExportKind,
    /// The exporting account.
    pub account: String,
    /// The subject in the exporting account.
    pub subject: String,
    /// Streams: the importer sees `prefix.subject`.
    pub prefix: Option<String>,
    /// Streams: the importer sees `to` instead of the subject; services: the importer
    /// publishes requests on `to`, which reach the exporter on `subject`.
    pub to: Option<String>,
}

/// The `websocket` block: a second client port speaking the NATS protocol in WebSocket
/// frames (nats.ws in browsers). Its clients are clients like any other, with their own
/// TLS, origin rules and, optionally, their own credentials.
#[derive(Clone, Debug, PartialEq)]
pub struct Websocket {
    pub host: String,
    /// 0 picks a free one (`port: -1`).
    pub port: u16,
    /// What INFO's `connect_urls` tells WebSocket clients (`host[:port]`).
    pub advertise: Option<String>,
    /// Serve without TLS (required otherwise, as in nats-server).
    pub no_tls: bool,
    pub tls: Option<Tls>,
    pub same_origin: bool,
    pub allowed_origins: Vec<String>,
    /// Accept permessage-deflate when a client offers it.
    pub compression: bool,
    /// How long the TLS and HTTP upgrade may take; None: natsu's default
    /// ([`WS_HANDSHAKE_TIMEOUT`]), where nats-server has none.
    pub handshake_timeout: Option<Duration>,
    /// `authorization { user password token timeout }`: credentials for WebSocket clients
    /// in place of the top-level single user or token (nats-server's auth override).
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub auth_timeout: Option<Duration>,
    /// A WebSocket client without credentials is this user (of the users list).
    pub no_auth_user: Option<String>,
}

/// The WebSocket handshake's bound when the config gives none: a connection that never
/// completes its upgrade must not hold a socket for ever.
pub const WS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for Websocket {
    fn default() -> Self {
        Websocket {
            host: "0.0.0.0".into(),
            port: 0,
            advertise: None,
            no_tls: false,
            tls: None,
            same_origin: false,
            allowed_origins: Vec::new(),
            compression: false,
            handshake_timeout: None,
            user: None,
            password: None,
            token: None,
            auth_timeout: None,
            no_auth_user: None,
        }
    }
}

impl Websocket {
    /// Whether the block overrides the top-level credentials for its clients.
    pub fn auth_override(&self) -> bool {
        self.user.is_some() || self.token.is_some() || self.no_auth_user.is_some()
    }

    /// The options WebSocket clients are checked under: the top-level ones, with the
    /// block's credentials in place of the single user, token and `no_auth_user` when it
    /// overrides them, its TLS (for `verify_and_map`) and its auth timeout.
    pub fn client_options(&self, top: &Options) -> Options {
        let mut o = top.clone();
        if self.auth_override() {
            o.auth.user = self.user.clone();
            o.auth.password = self.password.clone();
            o.auth.token = self.token.clone();
            o.auth.no_auth_user = self.no_auth_user.clone();
        }
        if let Some(t) = self.auth_timeout {
            o.auth.timeout = t;
        }
        o.tls = self.tls.clone();
        o.allow_non_tls = false;
        o
    }
}
