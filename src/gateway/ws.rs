//! The WebSocket bridge. After the service accepted an upgrade for socket `<id>`, each
//! browser frame is published to `WS_IN<id>` and each message on `WS_OUT<id>` is written to
//! the browser (as text when it is UTF-8, else binary), as nats-proxy does. Beyond it: when the
//! browser goes away the gateway publishes `"<code> <reason>"` to `WS_GONE<id>`, and a
//! message on `WS_CLOSE<id>` (optionally `"<code> <reason>"`) closes the socket.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_util::future::{select, Either};
use futures_util::{SinkExt, StreamExt};

use super::Shard;
use crate::client::{Connection, Msg, Subscription};
use crate::service::{WS_CLOSE, WS_GONE, WS_IN, WS_OUT};

/// Messages from NATS waiting for a slow browser; past this the socket is closed (1013)
/// rather than messages dropped.
const BACKLOG: usize = 4096;
/// How long a close we started waits for the browser's answer.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// `"<code> <reason>"` → a close frame; anything else closes normally.
fn close_frame(data: &[u8]) -> CloseFrame<'static> {
    let text = String::from_utf8_lossy(data);
    let (code, reason) = text.split_once(' ').unwrap_or((&text, ""));
    match code.trim().parse::<u16>() {
        Ok(c) if (1000..5000).contains(&c) => CloseFrame { code: CloseCode::from(c), reason: reason.to_string().into() },
        _ => CloseFrame { code: CloseCode::Normal, reason: "".into() },
    }
}

/// A socket the service is being asked about: its outbound subjects are subscribed before
/// the upgrade request is published, so that whatever the service sends while or right
/// after accepting waits here for the handshake instead of being lost. Dropping it
/// unsubscribes.
pub struct Pending {
    pub id: String,
    nc: Connection,
    subs: Vec<Subscription>,
    /// Taken by the bridge.
    rx: Option<futures_channel::mpsc::Receiver<Msg>>,
    overflow: Rc<Cell<bool>>,
}

impl Pending {
    /// Subscribe `WS_OUT<id>` and `WS_CLOSE<id>` into one queue.
    pub fn subscribe(nc: &Connection, id: String) -> crate::client::Result<Pending> {
        let (tx, rx) = futures_channel::mpsc::channel::<Msg>(BACKLOG);
        let overflow = Rc::new(Cell::new(false));
        let mut subs = Vec::new();
        for prefix in [WS_OUT, WS_CLOSE] {
            let mut tx = tx.clone();
            let overflow = overflow.clone();
            subs.push(nc.subscribe(&format!("{prefix}{id}"), move |m| {
                if tx.try_send(m).is_err() {
                    overflow.set(true);
                    tx.close_channel();
                }
            })?);
        }
        Ok(Pending { id, nc: nc.clone(), subs, rx: Some(rx), overflow })
    }

    /// Tell the service the socket is gone without ever having been bridged (the
    /// handshake's connection failed after the service accepted it).
    pub async fn abandon(self, why: &str) {
        let _ = self.nc.publish(&format!("{WS_GONE}{}", self.id), format!("1006 {why}")).await;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        for s in self.subs.drain(..) {
            let _ = s.unsubscribe();
        }
    }
}

/// Bridge one upgraded connection until either side ends it.
pub async fn bridge<S: AsyncRead + AsyncWrite + Unpin>(shard: Rc<Shard>, stream: S, mut pending: Pending, max_frame: usize) {
    let config = WebSocketConfig { max_message_size: Some(max_frame), max_frame_size: Some(max_frame), ..WebSocketConfig::default() };
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
    let (mut sink, mut frames) = ws.split();
    let nc = pending.nc.clone();
    let id = pending.id.clone();
    let overflow = pending.overflow.clone();
    let Some(mut rx) = pending.rx.take() else { return };
    let metrics = &shard.metrics;
    metrics.websockets_open.fetch_add(1, Relaxed);
    metrics.websockets_total.fetch_add(1, Relaxed);

    let inbound = format!("{WS_IN}{id}");
    let reader = async {
        loop {
            match frames.next().await {
                Some(Ok(Message::Text(t))) => {
                    metrics.ws_frames_in.fetch_add(1, Relaxed);
                    let _ = nc.publish(&inbound, t.as_bytes()).await;
                }
                Some(Ok(Message::Binary(b))) => {
                    metrics.ws_frames_in.fetch_add(1, Relaxed);
                    let _ = nc.publish(&inbound, &b).await;
                }
                Some(Ok(Message::Close(f))) => {
                    return f.map_or_else(|| "1005 ".to_string(), |f| format!("{} {}", u16::from(f.code), f.reason));
                }
                Some(Ok(_)) => {} // ping, pong: tungstenite answers pings itself
                Some(Err(e)) => return format!("1006 {e}"),
                None => return "1006 connection closed".to_string(),
            }
        }
    };
    let writer = async {
        while let Some(m) = rx.next().await {
            let frame = if m.subject.starts_with(WS_CLOSE) {
                let _ = sink.send(Message::Close(Some(close_frame(&m.data)))).await;
                return;
            } else {
                match String::from_utf8(m.data.to_vec()) {
                    Ok(t) => Message::Text(t),
                    Err(e) => Message::Binary(e.into_bytes()),
                }
            };
            metrics.ws_frames_out.fetch_add(1, Relaxed);
            if sink.send(frame).await.is_err() {
                return;
            }
        }
        if overflow.get() {
            let frame = CloseFrame { code: CloseCode::Again, reason: "too many messages waiting for the browser".into() };
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
    };
    futures_lite::pin!(reader);
    futures_lite::pin!(writer);
    let gone = match select(reader, writer).await {
        Either::Left((gone, _)) => gone,
        // We sent a close: wait a little for the browser's.
        Either::Right(((), reader)) => glommio::timer::timeout(CLOSE_WAIT, async { Ok(reader.await) })
            .await
            .unwrap_or_else(|_| "1006 no close answer".to_string()),
    };
    drop(pending);
    metrics.websockets_open.fetch_sub(1, Relaxed);
    tracing::debug!("websocket {id} ended: {gone}");
    let _ = nc.publish(&format!("{WS_GONE}{id}"), gone.trim_end()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frames() {
        let f = close_frame(b"4001 kicked out");
        assert_eq!((u16::from(f.code), f.reason.as_ref()), (4001, "kicked out"));
        assert_eq!(u16::from(close_frame(b"").code), 1000);
        assert_eq!(u16::from(close_frame(b"999 no").code), 1000);
        assert_eq!(u16::from(close_frame(b"1001").code), 1001);
    }
}
