//! Server options with nats-server's defaults.

use std::time::Duration;

/// Everything the broker needs to know to serve; flags (and later the config file) fill it.
#[derive(Clone, Debug)]
pub struct Options {
    /// Interface to listen on for clients.
    pub host: String,
    /// Client port; 0 picks a free one (nats-server's `-p -1`).
    pub port: u16,
    /// Executors (one per core).
    pub cores: usize,
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host: "0.0.0.0".into(),
            port: 4222,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
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
        }
    }
}
