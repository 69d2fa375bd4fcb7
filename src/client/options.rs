//! Connection options: a builder with nats.go's defaults.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::error::{Error, Result};
use super::tls::TlsOptions;
use super::url::{self, ServerAddr};
use super::{Connection, Subscription};

/// nats.go's `DefaultURL`.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// nats.go's `DefaultSubPendingMsgsLimit`.
pub const DEFAULT_SUB_PENDING_MSGS: usize = 65536;
/// nats.go's `DefaultSubPendingBytesLimit`.
pub const DEFAULT_SUB_PENDING_BYTES: usize = 64 * 1024 * 1024;

pub(crate) type ConnCallback = Rc<dyn Fn(&Connection)>;
pub(crate) type DisconnectCallback = Rc<dyn Fn(&Connection, Option<&Error>)>;
pub(crate) type ErrorCallback = Rc<dyn Fn(&Connection, Option<&Subscription>, &Error)>;

/// How to connect, and how to behave once connected. Every setter returns the options, so
/// they chain; [`Options::connect`] ends the chain.
///
/// ```no_run
/// use std::time::Duration;
/// use natsu::client::Options;
/// # glommio::LocalExecutor::default().run(async {
/// let nc = Options::new()
///     .name("billing")
///     .max_reconnects(10)
///     .reconnect_wait(Duration::from_millis(500))
///     .disconnected_callback(|_, err| eprintln!("disconnected: {err:?}"))
///     .connect("nats://127.0.0.1:4222,nats://127.0.0.1:4223")
///     .await?;
/// nc.publish("greet", "hello").await?;
/// nc.close().await;
/// # Ok::<(), natsu::client::Error>(()) });
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) name: Option<String>,
    pub(crate) verbose: bool,
    pub(crate) pedantic: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) max_pings_out: u32,
    pub(crate) no_randomize: bool,
    pub(crate) allow_reconnect: bool,
    /// Attempts per server; negative means for ever (as nats.go).
    pub(crate) max_reconnect: i64,
    pub(crate) reconnect_wait: Duration,
    pub(crate) reconnect_buf_size: usize,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) token: Option<String>,
    /// An NKey user's seed: the handshake signs the server's nonce with it.
    pub(crate) nkey_seed: Option<Arc<str>>,
    /// A user JWT (operator mode), sent with the seed's signature of the nonce.
    pub(crate) user_jwt: Option<Arc<str>>,
    pub(crate) tls: TlsOptions,
    pub(crate) no_echo: bool,
    pub(crate) sub_pending_msgs: usize,
    pub(crate) sub_pending_bytes: usize,
    pub(crate) old_request_style: bool,
    pub(crate) drain_timeout: Duration,
    pub(crate) flush_timeout: Duration,
    pub(crate) write_buffer: usize,
    pub(crate) disconnected: Option<DisconnectCallback>,
    pub(crate) reconnected: Option<ConnCallback>,
    pub(crate) closed: Option<ConnCallback>,
    pub(crate) discovered: Option<ConnCallback>,
    pub(crate) async_error: Option<ErrorCallback>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            name: None,
            verbose: false,
            pedantic: false,
            connect_timeout: Duration::from_secs(2),
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            no_randomize: false,
            allow_reconnect: true,
            max_reconnect: 60,
            reconnect_wait: Duration::from_secs(2),
            reconnect_buf_size: 8 * 1024 * 1024,
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            user_jwt: None,
            tls: TlsOptions::default(),
            no_echo: false,
            sub_pending_msgs: DEFAULT_SUB_PENDING_MSGS,
            sub_pending_bytes: DEFAULT_SUB_PENDING_BYTES,
            old_request_style: false,
            drain_timeout: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(10),
            write_buffer: 256 * 1024,
            disconnected: None,
            reconnected: None,
            closed: None,
            discovered: None,
            async_error: None,
        }
    }
}

impl Options {
    /// nats.go's defaults: 60 reconnects per server 2 s apart, 2 s connect timeout, a PING
    /// every 2 minutes with 2 unanswered allowed, an 8 MB reconnect buffer.
    pub fn new() -> Options {
        Options::default()
    }

    /// Connect to `urls` (one URL or a comma-separated list) with these options.
    pub async fn connect(self, urls: &str) -> Result<Connection> {
        let servers = url::parse_list(urls).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Connection::open(self, servers).await
    }

    /// Connect to an already parsed server list.
    pub async fn connect_to(self, servers: Vec<ServerAddr>) -> Result<Connection> {
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        Connection::open(self, servers).await
    }

    /// The name the server shows for this connection (in `/connz`).
    pub fn name(mut self, name: impl Into<String>) -> Options {
        self.name = Some(name.into());
        self
    }

    /// Ask the server to acknowledge every operation with `+OK` (off by default, as nats.go).
    pub fn verbose(mut self, on: bool) -> Options {
        self.verbose = on;
        self
    }

    /// Ask the server for strict subject checks.
    pub fn pedantic(mut self, on: bool) -> Options {
        self.pedantic = on;
        self
    }

    /// How long to wait for the TCP connection, INFO and the first PONG.
    pub fn connect_timeout(mut self, d: Duration) -> Options {
        self.connect_timeout = d;
        self
    }

    /// How often to PING the server.
    pub fn ping_interval(mut self, d: Duration) -> Options {
        self.ping_interval = d;
        self
    }

    /// How many PINGs may go unanswered before the connection counts as stale.
    pub fn max_pings_out(mut self, n: u32) -> Options {
        self.max_pings_out = n.max(1);
        self
    }

    /// Try servers in the order given instead of shuffling them.
    pub fn no_randomize(mut self, on: bool) -> Options {
        self.no_randomize = on;
        self
    }

    /// Reconnect after losing the server (on by default).
    pub fn allow_reconnect(mut self, on: bool) -> Options {
        self.allow_reconnect = on;
        self
    }

    /// Attempts per server before it leaves the pool; negative tries for ever.
    pub fn max_reconnects(mut self, n: i64) -> Options {
        self.max_reconnect = n;
        self
    }

    /// Pause between two attempts on the same server.
    pub fn reconnect_wait(mut self, d: Duration) -> Options {
        self.reconnect_wait = d;
        self
    }

    /// Bytes of publishes kept while reconnecting (0: publishing fails while disconnected).
    pub fn reconnect_buffer_size(mut self, bytes: usize) -> Options {
        self.reconnect_buf_size = bytes;
        self
    }

    /// User and password (a URL's `user:pass@` wins over these).
    pub fn user_and_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Options {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// An authentication token (a URL's `token@` wins over this).
    pub fn token(mut self, token: impl Into<String>) -> Options {
        self.token = Some(token.into());
        self
    }

    /// Log in as an NKey user with its seed (`SU…`): the CONNECT carries the public key and
    /// the seed's signature of the server's nonce; the seed never leaves the process. A seed
    /// that does not decode is refused here.
    ///
    /// ```
    /// use natsu::client::Options;
    /// assert!(Options::new().nkey_seed("not a seed").is_err());
    /// ```
    pub fn nkey_seed(mut self, seed: impl Into<String>) -> Result<Options> {
        let seed = seed.into();
        nkeys::KeyPair::from_seed(&seed).map_err(|e| Error::InvalidArgument(format!("nkey seed: {e}")))?;
        self.nkey_seed = Some(seed.into());
        Ok(self)
    }

    /// Log in with a user JWT and its seed (operator mode), as a `.creds` file holds them:
    /// the CONNECT carries the JWT and the seed's signature of the server's nonce.
    ///
    /// ```
    /// use natsu::client::Options;
    /// assert!(Options::new().user_jwt("eyJ0eXAiOiJKV1QifQ.e30.sig", "not a seed").is_err());
    /// ```
    pub fn user_jwt(self, jwt: impl Into<String>, seed: impl Into<String>) -> Result<Options> {
        let mut o = self.nkey_seed(seed)?;
        o.user_jwt = Some(jwt.into().trim().into());
        Ok(o)
    }

    /// Log in with a `.creds` file (`nsc` writes them: the user JWT and its seed, each
    /// framed by dashed lines).
    pub fn credentials_file(self, path: impl AsRef<std::path::Path>) -> Result<Options> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument(format!("credentials file {}: {e}", path.display())))?;
        match parse_credentials(&text) {
            (Some(jwt), Some(seed)) => self.user_jwt(jwt, seed),
            _ => Err(Error::InvalidArgument(format!("credentials file {}: no user JWT and seed in it", path.display()))),
        }
    }

    /// Insist on TLS even when the server does not require it.
    pub fn require_tls(mut self, on: bool) -> Options {
        self.tls.required = on;
        self
    }

    /// Trust the CA certificates in this PEM file (may be called more than once).
    pub fn tls_root_ca(mut self, pem: impl Into<PathBuf>) -> Options {
        self.tls.root_cas.push(pem.into());
        self
    }

    /// Present this certificate chain and key (PEM files) to a server that verifies clients.
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Options {
        self.tls.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Use this rustls configuration as is.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Options {
        self.tls.config = Some(config);
        self
    }

    /// Whether the server sends this connection its own publishes (on by default).
    pub fn echo(mut self, on: bool) -> Options {
        self.no_echo = !on;
        self
    }

    /// Default pending limits of new subscriptions (nats.go: 65536 messages, 64 MB).
    pub fn pending_limits(mut self, msgs: usize, bytes: usize) -> Options {
        self.sub_pending_msgs = msgs;
        self.sub_pending_bytes = bytes;
        self
    }

    /// One inbox subscription per request, as clients did before the shared response inbox.
    pub fn old_request_style(mut self, on: bool) -> Options {
        self.old_request_style = on;
        self
    }

    /// How long [`Connection::drain`] waits for in-flight messages.
    pub fn drain_timeout(mut self, d: Duration) -> Options {
        self.drain_timeout = d;
        self
    }

    /// How long [`Connection::flush`] waits for the PONG.
    pub fn flush_timeout(mut self, d: Duration) -> Options {
        self.flush_timeout = d;
        self
    }

    /// Outbound bytes a publisher may queue before `publish` waits for the socket.
    pub fn write_buffer(mut self, bytes: usize) -> Options {
        self.write_buffer = bytes.max(1024);
        self
    }

    /// Called when the connection to a server is lost, with the reason when there is one.
    pub fn disconnected_callback(mut self, f: impl Fn(&Connection, Option<&Error>) + 'static) -> Options {
        self.disconnected = Some(Rc::new(f));
        self
    }

    /// Called after a reconnect, once subscriptions are re-sent.
    pub fn reconnected_callback(mut self, f: impl Fn(&Connection) + 'static) -> Options {
        self.reconnected = Some(Rc::new(f));
        self
    }

    /// Called once when the connection closes for good.
    pub fn closed_callback(mut self, f: impl Fn(&Connection) + 'static) -> Options {
        self.closed = Some(Rc::new(f));
        self
    }

    /// Called when a server's INFO adds servers to the pool.
    pub fn discovered_servers_callback(mut self, f: impl Fn(&Connection) + 'static) -> Options {
        self.discovered = Some(Rc::new(f));
        self
    }

    /// Called for errors that belong to no call: a slow consumer (with its subscription),
    /// a permissions violation or another `-ERR` from the server.
    pub fn error_callback(mut self, f: impl Fn(&Connection, Option<&Subscription>, &Error) + 'static) -> Options {
        self.async_error = Some(Rc::new(f));
        self
    }
}

/// The JWT (first) and the seed (second) of a `.creds` file's text (or of a decorated JWT
/// alone: the seed is then None). Lines of dashes frame each; anything else is ignored.
///
/// ```
/// let (jwt, seed) = natsu::client::parse_credentials("-----BEGIN NATS USER JWT-----\neyJhbGc.e30.c2ln\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUAXYZ\n------END USER NKEY SEED------\n");
/// assert_eq!((jwt.as_deref(), seed.as_deref()), (Some("eyJhbGc.e30.c2ln"), Some("SUAXYZ")));
/// ```
pub fn parse_credentials(text: &str) -> (Option<String>, Option<String>) {
    let mut framed = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line.starts_with("---") && line.contains("BEGIN") {
            if let Some(v) = lines.by_ref().find(|l| !l.is_empty()) {
                if !v.starts_with("---") {
                    framed.push(v.to_string());
                }
            }
        }
    }
    let jwt = framed.iter().find(|v| v.starts_with("eyJ")).cloned();
    let seed = framed.iter().find(|v| v.starts_with('S')).cloned();
    (jwt, seed)
}
