//! One connection on the WebSocket port: TLS (unless `no_tls`), the HTTP upgrade within
//! the handshake timeout, then a client like any other on this core, its bytes framed by
//! [`WsStream`].

use std::rc::Rc;

use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;

use super::frame::{WsStream, FRAME_SIZE_FOR_BROWSERS};
use super::handshake::{self, Handshake};
use crate::net::Transport;
use crate::server::client;
use crate::server::shard::Shard;

/// The longest upgrade request taken (nats-server's Go HTTP server: 1 MiB of headers;
/// a browser's is well under 8 KiB).
const MAX_REQUEST: usize = 64 * 1024;

/// Serve one connection accepted on the WebSocket port until it closes.
pub async fn serve(shard: Rc<Shard>, tcp: TcpStream) {
    let Some(ws) = shard.ws() else { return };
    let addr = tcp.peer_addr().ok();
    let opts = shard.opts();
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(opts.write_deadline));
    let upgrade = async {
        let mut transport = match &ws.tls {
            Some(config) => super::super::tls::accept(config.clone(), tcp, ws.handshake_timeout).await.map_err(|e| format!("TLS handshake error: {e}"))?,
            None => Transport::Plain(tcp),
        };
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let n = futures_lite::io::AsyncReadExt::read(&mut transport, &mut chunk).await.map_err(|e| format!("websocket handshake error: {e}"))?;
            if n == 0 {
                // A port probe (nothing sent) is no error, as in nats-server.
                return Err(if buf.is_empty() { String::new() } else { "websocket handshake error: connection closed".to_string() });
            }
            buf.extend_from_slice(&chunk[..n]);
            let refusal = match handshake::check(&buf, &ws.settings, ws.tls.is_some()) {
                Handshake::Partial if buf.len() < MAX_REQUEST => continue,
                Handshake::Partial => handshake::Refusal { status: 431, reason: "request header too large".into() },
                Handshake::Refused(r) => r,
                Handshake::Accepted(a) => {
                    transport.write_all(&a.response).await.map_err(|e| format!("websocket handshake error: {e}"))?;
                    transport.flush().await.map_err(|e| format!("websocket handshake error: {e}"))?;
                    return Ok((transport, a, buf));
                }
            };
            let _ = transport.write_all(&refusal.response()).await;
            let _ = transport.flush().await;
            let _ = transport.close().await;
            return Err(refusal.to_string());
        }
    };
    let timeout = async {
        glommio::timer::sleep(ws.handshake_timeout).await;
        Err("websocket handshake error: timeout".to_string())
    };
    let (transport, accepted, buf) = match futures_lite::future::or(upgrade, timeout).await {
        Ok(x) => x,
        Err(e) => {
            // nats-server's log line: the address, then the reason.
            let at = addr.map(|a| a.to_string()).unwrap_or_default();
            if e.is_empty() {
                tracing::debug!("{at} - closed before its websocket upgrade");
            } else {
                tracing::error!("{at} - {e}");
            }
            return;
        }
    };
    let frame = if accepted.browser { FRAME_SIZE_FOR_BROWSERS } else { usize::MAX };
    let mut stream = WsStream::new(transport, &buf[accepted.consumed..], frame);
    if accepted.no_masking {
        stream = stream.no_masking();
    }
    if accepted.compress {
        stream = stream.compressed();
    }
    let ip = accepted.client_ip.as_deref().and_then(|ip| ip.parse().ok());
    client::serve_websocket(shard, stream, ip).await;
}
