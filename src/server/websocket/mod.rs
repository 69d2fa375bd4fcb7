//! WebSocket clients (nats.ws in browsers): the NATS protocol carried in binary WebSocket
//! frames, as nats-server 2.9's `websocket` block serves it.
//!
//! - [`handshake`]: the opening handshake on the WebSocket port, its checks and its answer;
//! - [`frame`]: the framing layer after it, a stream adapter that unwraps the client's frames
//!   and wraps the broker's bytes, so that the client reader, writer and parser run
//!   unchanged over it;
//! - [`conn`]: one connection on the WebSocket port, from TLS and the upgrade to a client
//!   like any other on its core.

pub mod conn;
pub mod frame;
pub mod handshake;

pub use conn::serve;

use std::sync::Arc;
use std::time::Duration;

use super::options::{Options, WS_HANDSHAKE_TIMEOUT};

/// The WebSocket port's settings as the cores serve them (rebuilt on reload).
pub struct Live {
    /// The options its clients' credentials are checked under.
    pub opts: Arc<Options>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub settings: handshake::Settings,
    /// Bounds the TLS handshake and the HTTP upgrade together.
    pub handshake_timeout: Duration,
}

impl Live {
    /// None when `opts` has no WebSocket port; Err when its TLS does not load.
    pub fn new(opts: &Options) -> Result<Option<Live>, String> {
        let Some(w) = &opts.websocket else { return Ok(None) };
        let tls = w.tls.as_ref().map(super::tls::server_config).transpose().map_err(|e| format!("websocket: {e}"))?;
        Ok(Some(Live {
            opts: Arc::new(w.client_options(opts)),
            tls,
            settings: handshake::Settings { same_origin: w.same_origin, allowed_origins: w.allowed_origins.clone(), compression: w.compression },
            handshake_timeout: w.handshake_timeout.unwrap_or(WS_HANDSHAKE_TIMEOUT),
        }))
    }
}
