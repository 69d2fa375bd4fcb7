//! The service side of natsu's HTTP gateway: nats-proxy's messages ([`proto`]), its
//! subject mapping ([`subject`]), and the same messages as JSON ([`envelope`]).

pub mod envelope;
pub mod proto;
pub mod subject;
