//! The NATS client library, on glommio (the broker's own reactor).
//!
//! A [`Connection`] belongs to the executor that made it: a thread-per-core program opens
//! one per executor. Its API is the Rust shape of nats.go's:
//!
//! - [`connect`] or [`Options`] (a builder with nats.go's defaults) to connect to one
//!   server or a pool (`nats://a:4222,nats://b:4222`), with reconnect, TLS and credentials;
//! - [`Connection::publish`] and friends; [`Connection::subscribe`] (handler),
//!   [`Connection::subscribe_sync`] (next message), [`Connection::chan_subscribe`]
//!   (channel), queue variants; [`Connection::request`] with one shared response inbox;
//! - [`Connection::flush`], [`Connection::drain`], stats and status;
//! - [`EncodedConnection`] for typed (JSON) messages.
//!
//! Inside, [`conn`] holds the connection's tasks (reader, writer, pinger, supervisor),
//! [`subscription`] the per-subscription queues, [`pool`] the server pool.
//!
//! ```no_run
//! use std::time::Duration;
//! glommio::LocalExecutor::default().run(async {
//!     let nc = natsu::client::connect("nats://127.0.0.1:4222").await?;
//!     let sub = nc.subscribe_sync("hello")?;
//!     nc.publish("hello", "world").await?;
//!     let msg = sub.next_msg(Duration::from_secs(1)).await?;
//!     assert_eq!(msg.text(), Some("world"));
//!     nc.close().await;
//!     Ok::<(), natsu::client::Error>(())
//! });
//! ```

pub mod conn;
pub mod encoded;
pub mod error;
pub mod headers;
pub mod msg;
pub mod nuid;
pub mod options;
mod pool;
pub mod subscription;
pub(crate) mod tls;
pub mod url;

pub use conn::{Connection, Statistics, Status};
pub use encoded::{DefaultEncoder, EncodedConnection, Encoder, JsonEncoder};
pub use error::{Error, Result};
pub use headers::Headers;
pub use msg::Msg;
pub use options::{parse_credentials, Options};
pub use subscription::{MsgRef, Subscription};
pub use tls::TlsOptions;

/// Connect to `url` (or a comma-separated list) with default [`Options`].
///
/// ```no_run
/// # glommio::LocalExecutor::default().run(async {
/// let nc = natsu::client::connect("nats://127.0.0.1:4222").await?;
/// # Ok::<(), natsu::client::Error>(()) });
/// ```
pub async fn connect(url: &str) -> Result<Connection> {
    Options::new().connect(url).await
}
