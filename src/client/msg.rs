//! A message, as published and as delivered.

use bytes::Bytes;

use super::headers::Headers;

/// One NATS message: what a subscriber receives and what [`Connection::publish_msg`] sends.
///
/// ```
/// use natsu::client::{Headers, Msg};
/// let mut h = Headers::new();
/// h.insert("Trace-Id", "42");
/// let m = Msg::new("orders.new", "hello").with_reply("_INBOX.x").with_headers(h);
/// assert_eq!(m.subject, "orders.new");
/// assert_eq!(&m.data[..], b"hello");
/// assert_eq!(m.headers.as_ref().and_then(|h| h.get("Trace-Id")), Some("42"));
/// ```
///
/// [`Connection::publish_msg`]: super::Connection::publish_msg
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Msg {
    pub subject: String,
    /// Where a responder should answer (set by requests).
    pub reply: Option<String>,
    /// Headers, when the message was sent with HPUB (or is to be).
    pub headers: Option<Headers>,
    pub data: Bytes,
}

impl Msg {
    pub fn new(subject: impl Into<String>, data: impl Into<Bytes>) -> Msg {
        Msg { subject: subject.into(), reply: None, headers: None, data: data.into() }
    }

    pub fn with_reply(mut self, reply: impl Into<String>) -> Msg {
        self.reply = Some(reply.into());
        self
    }

    pub fn with_headers(mut self, headers: Headers) -> Msg {
        self.headers = Some(headers);
        self
    }

    /// The payload as text, when it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }

    /// True for the server's "no responders" answer to a request: status 503, no payload.
    pub fn is_no_responders(&self) -> bool {
        self.data.is_empty() && self.headers.as_ref().and_then(Headers::status) == Some(503)
    }
}

/// Subject bytes from the wire as a String (NATS subjects are UTF-8 in practice; anything
/// else is kept readable rather than refused).
pub(crate) fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}
