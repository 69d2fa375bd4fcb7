//! natsu: a NATS-protocol message broker on glommio, one executor per core.
//!
//! A message's trip through the crate:
//!
//! 1. [`protocol::parser`] scans a client's bytes into operations (PUB, SUB, ...), borrowing
//!    from the read buffer;
//! 2. [`server::client`] acts on them for its connection, on the core that accepted it;
//! 3. [`server::shard`] matches the subject in the core's [`server::sublist`] and appends MSG
//!    frames ([`protocol::encode`]) to local subscribers' outbound buffers;
//! 4. for subscribers on other cores, [`server::shard::outbox`] batches the message into that core's
//!    mailbox, and the receiving shard delivers it in turn;
//! 5. each connection's writer sends its whole buffer once per event-loop pass.
//!
//! [`config`] turns flags into [`server::Options`]; [`logging`] prints nats-server-style lines.
//!
//! [`client`] is the client library over the same [`protocol`] and [`net`] transport. The
//! `client` feature builds those three alone; `server` (on by default) adds the broker.

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "gateway")]
pub mod gateway;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod logging;
#[cfg(feature = "client")]
pub mod net;
#[cfg(feature = "client")]
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "service")]
pub mod service;

/// The README's Rust examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
