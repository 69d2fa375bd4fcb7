//! The one error type of the client library, with nats.go's meanings.

use std::fmt;
use std::sync::Arc;

/// Everything a client call can fail with. The first kinds are nats.go's `Err…` values of
/// the same name; the rest say which part of the world failed (I/O, TLS, encoding).
///
/// ```
/// use natsu::client::Error;
/// let e = Error::NoResponders;
/// assert_eq!(e.to_string(), "nats: no responders available for request");
/// ```
#[derive(Clone, Debug)]
pub enum Error {
    /// The connection was closed (by `close`, `drain`, or after reconnecting gave up).
    ConnectionClosed,
    /// A call did not finish in time (request, flush, next_msg, connect).
    Timeout,
    /// A subject or queue name that the protocol does not allow.
    BadSubject,
    /// A message bigger than the server's `max_payload`.
    MaxPayload,
    /// No server in the pool could be reached.
    NoServers,
    /// The server refused the credentials (`-ERR 'Authorization Violation'` or similar).
    Authorization(String),
    /// A subscription's pending limits were exceeded and messages were dropped.
    SlowConsumer,
    /// The server stopped answering PINGs.
    StaleConnection,
    /// A request went to a subject nobody subscribes to (the server answered 503).
    NoResponders,
    /// Too many bytes published while reconnecting.
    ReconnectBufExceeded,
    /// A call's arguments make no sense (the text says which).
    InvalidArgument(String),
    /// The subscription was unsubscribed, drained or closed.
    BadSubscription,
    /// The connection is draining and takes no new subscriptions or requests.
    Draining,
    /// The server does not support headers (its INFO says `headers: false`).
    HeadersNotSupported,
    /// The server sent `-ERR` with this text (a permissions violation, say).
    Server(String),
    /// Reading or writing the socket failed.
    Io(Arc<std::io::Error>),
    /// TLS set-up or handshake failed.
    Tls(String),
    /// The server broke the protocol (unparsable bytes, INFO that is not JSON).
    Protocol(String),
    /// Encoding or decoding a typed message failed.
    Encoding(String),
}

impl Error {
    pub(crate) fn io(e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::TimedOut {
            return Error::Timeout;
        }
        // A TLS failure after the handshake (a server refusing our certificate answers the
        // first read with an alert) arrives as an io::Error wrapping rustls's error.
        if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return Error::Tls(tls.to_string());
        }
        Error::Io(Arc::new(e))
    }

    /// Map a server `-ERR` text to the error it means.
    pub(crate) fn from_server(text: &str) -> Error {
        let t = text.trim().trim_matches('\'');
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("authorization violation")
            || lower.starts_with("authentication timeout")
            || lower.starts_with("user authentication")
        {
            Error::Authorization(t.to_string())
        } else if lower.starts_with("stale connection") {
            Error::StaleConnection
        } else if lower.starts_with("maximum payload") {
            Error::MaxPayload
        } else {
            Error::Server(t.to_string())
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ConnectionClosed => f.write_str("nats: connection closed"),
            Error::Timeout => f.write_str("nats: timeout"),
            Error::BadSubject => f.write_str("nats: invalid subject"),
            Error::MaxPayload => f.write_str("nats: maximum payload exceeded"),
            Error::NoServers => f.write_str("nats: no servers available for connection"),
            Error::Authorization(t) => write!(f, "nats: authorization violation ({t})"),
            Error::SlowConsumer => f.write_str("nats: slow consumer, messages dropped"),
            Error::StaleConnection => f.write_str("nats: stale connection"),
            Error::NoResponders => f.write_str("nats: no responders available for request"),
            Error::ReconnectBufExceeded => f.write_str("nats: outbound buffer limit exceeded"),
            Error::InvalidArgument(t) => write!(f, "nats: invalid argument: {t}"),
            Error::BadSubscription => f.write_str("nats: invalid subscription"),
            Error::Draining => f.write_str("nats: connection draining"),
            Error::HeadersNotSupported => f.write_str("nats: headers not supported by this server"),
            Error::Server(t) => write!(f, "nats: server error: '{t}'"),
            Error::Io(e) => write!(f, "nats: {e}"),
            Error::Tls(t) => write!(f, "nats: tls: {t}"),
            Error::Protocol(t) => write!(f, "nats: protocol error: {t}"),
            Error::Encoding(t) => write!(f, "nats: encoding: {t}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::io(e)
    }
}

/// What client calls return.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_texts_map_to_kinds() {
        assert!(matches!(Error::from_server("'Authorization Violation'"), Error::Authorization(_)));
        assert!(matches!(Error::from_server("'Stale Connection'"), Error::StaleConnection));
        assert!(matches!(Error::from_server("'Maximum Payload Violation'"), Error::MaxPayload));
        match Error::from_server("'Permissions Violation for Publish to \"x\"'") {
            Error::Server(t) => assert_eq!(t, "Permissions Violation for Publish to \"x\""),
            e => panic!("{e:?}"),
        }
    }
}
