//! The service side of natsu's HTTP gateway, compatible with nats-proxy: the gateway turns
//! an HTTP request into a NATS request on a subject made of its method and path, and a
//! service answers it with an HTTP response.
//!
//! - [`proto`]: nats-proxy's protobuf `Request` and `Response`;
//! - [`envelope`]: the same messages as JSON, for services without protobuf;
//! - [`subject`]: how `GET /users/42` becomes `GET:.users.42`, and a route `/users/:id`
//!   the subscription `GET:.users.*`;
//! - [`router`]: the [`Router`] that subscribes a service's routes, runs its middleware and
//!   handlers and publishes their answers;
//! - [`context`]: the [`Context`] a handler reads the request from and writes the answer to.
//!
//! ```no_run
//! use natsu::service::Router;
//! glommio::LocalExecutor::default().run(async {
//!     let nc = natsu::client::connect("nats://127.0.0.1:4222").await?;
//!     let router = Router::new(&nc);
//!     router.get("/hello/:name", |ctx| {
//!         let greeting = format!("hello, {}", ctx.param("name").unwrap_or_default());
//!         ctx.text(200, greeting);
//!     })?;
//!     nc.closed().await; // serve until the connection ends
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! });
//! ```
//!
//! # WebSockets
//!
//! A browser's upgrade request reaches the service like any other, with
//! [`Context::websocket_id`] set; a handler that calls [`Context::accept_websocket`] takes
//! the socket. From then on the socket's id names four subjects, plain prefixes followed by
//! the id (nats-proxy's first two, natsu's last two):
//!
//! | subject | from → to | payload |
//! | --- | --- | --- |
//! | `WS_IN<id>` ([`WS_IN`]) | browser → service | each frame the browser sends ([`Router::on_ws_message`]) |
//! | `WS_OUT<id>` ([`WS_OUT`]) | service → browser | each frame to send ([`Router::ws_send`]) |
//! | `WS_GONE<id>` ([`WS_GONE`]) | gateway → service | `"<code> <reason>"` once the browser has left ([`Router::on_ws_gone`]) |
//! | `WS_CLOSE<id>` ([`WS_CLOSE`]) | service → gateway | empty, or `"<code> <reason>"`: close the browser's socket ([`Router::ws_close`], [`Router::ws_close_with`]) |

pub mod context;
pub mod envelope;
pub mod proto;
pub mod router;
pub mod subject;

pub use context::Context;
pub use router::{Error, Router};

/// Prefix of the subject that carries a WebSocket's frames from the browser to the service.
pub const WS_IN: &str = "WS_IN";
/// Prefix of the subject that carries a WebSocket's frames from the service to the browser.
pub const WS_OUT: &str = "WS_OUT";
/// Prefix of the subject on which the gateway says the browser left: `"<code> <reason>"`.
pub const WS_GONE: &str = "WS_GONE";
/// Prefix of the subject on which a service asks the gateway to close the browser's socket.
pub const WS_CLOSE: &str = "WS_CLOSE";
