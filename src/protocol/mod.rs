//! The NATS client protocol: the incremental [`parser`], the frame [`encode`]rs, the
//! INFO/CONNECT JSON documents in [`info`], and [`subject`] rules.
//!
//! Shared by the broker and the client library so the wire format is written once.

pub mod encode;
pub mod info;
pub mod parser;
pub mod subject;

pub use parser::{Delivery, Op, ParseError, Parser, Publish, Role, Routed};
