//! WebSocket clients (nats.ws in browsers): the NATS protocol carried in binary WebSocket
//! frames, as nats-server 2.9's `websocket` block serves it.
//!
//! - [`handshake`]: the opening handshake on the WebSocket port, its checks and its answer;
//! - [`frame`]: the framing layer after it, a stream adapter that unwraps the client's frames
//!   and wraps the broker's bytes, so that the client reader, writer and parser run
//!   unchanged over it.

pub mod frame;
pub mod handshake;
