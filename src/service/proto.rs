//! nats-proxy's messages (its `protobuf.proto`, proto3), so that its Go gateway and its Go
//! services speak with natsu's unchanged:
//!
//! ```proto
//! message Values   { repeated string arr = 1; }
//! message Request  { string URL = 1; string Method = 2; string RemoteAddr = 3; bytes Body = 4;
//!                    map<string,Values> Form = 5; map<string,Values> Header = 6;
//!                    string WebSocketID = 7; }
//! message Response { int32 StatusCode = 1; map<string,Values> Header = 2; bytes Body = 3;
//!                    bool DoUpgrade = 4; }
//! ```
//!
//! Maps are kept sorted (`BTreeMap`), so a response's headers come out in one order.

use std::collections::BTreeMap;

use prost::Message;

/// A header's or form field's values, in the order sent.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Values {
    #[prost(string, repeated, tag = "1")]
    pub arr: Vec<String>,
}

/// Header or form fields by name.
pub type Variables = BTreeMap<String, Values>;

/// An HTTP request as the gateway publishes it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// The request target as received: path and query (`/users/42?full=1`).
    #[prost(string, tag = "1")]
    pub url: String,
    #[prost(string, tag = "2")]
    pub method: String,
    /// The HTTP client's `ip:port`.
    #[prost(string, tag = "3")]
    pub remote_addr: String,
    #[prost(bytes = "vec", tag = "4")]
    pub body: Vec<u8>,
    /// The query's fields, and an `application/x-www-form-urlencoded` body's (the body's win).
    #[prost(btree_map = "string, message", tag = "5")]
    pub form: Variables,
    #[prost(btree_map = "string, message", tag = "6")]
    pub header: Variables,
    /// Set when the request asks for a WebSocket upgrade: the socket's id, which names its
    /// subjects (`WS_IN<id>`, `WS_OUT<id>`).
    #[prost(string, tag = "7")]
    pub web_socket_id: String,
}

/// A service's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(int32, tag = "1")]
    pub status_code: i32,
    #[prost(btree_map = "string, message", tag = "2")]
    pub header: Variables,
    #[prost(bytes = "vec", tag = "3")]
    pub body: Vec<u8>,
    /// The service accepts a WebSocket upgrade.
    #[prost(bool, tag = "4")]
    pub do_upgrade: bool,
}

/// The first value of `name` in header or form fields (exact name), or `""`.
pub fn first<'a>(vars: &'a Variables, name: &str) -> &'a str {
    vars.get(name).and_then(|v| v.arr.first()).map_or("", |s| s.as_str())
}

/// The first value of header `name`, matched without regard to case (a Go gateway
/// canonicalises names to `Content-Type`, hyper hands them over lower-case).
pub fn header<'a>(vars: &'a Variables, name: &str) -> Option<&'a str> {
    vars.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.arr.first()).map(|s| s.as_str())
}

/// Append `value` to `name`'s values.
pub fn add(vars: &mut Variables, name: &str, value: impl Into<String>) {
    vars.entry(name.to_string()).or_default().arr.push(value.into());
}

impl Request {
    /// Decode from a message's payload.
    pub fn decode_from(data: &[u8]) -> Result<Request, prost::DecodeError> {
        Request::decode(data)
    }

    /// Whether the browser asked for a WebSocket.
    pub fn is_websocket(&self) -> bool {
        !self.web_socket_id.is_empty()
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        let end = self.url.find(['?', '#']).unwrap_or(self.url.len());
        &self.url[..end]
    }

    /// The query without `?`, or `""`.
    pub fn query(&self) -> &str {
        match self.url.find('?') {
            Some(i) => {
                let q = &self.url[i + 1..];
                &q[..q.find('#').unwrap_or(q.len())]
            }
            None => "",
        }
    }
}

impl Response {
    /// An empty answer with this status.
    pub fn with_status(status: i32) -> Response {
        Response { status_code: status, ..Response::default() }
    }

    /// Decode from a message's payload; an empty payload is an error, as nats-proxy's.
    pub fn decode_from(data: &[u8]) -> Result<Response, prost::DecodeError> {
        if data.is_empty() {
            return Err(prost::DecodeError::new("empty response"));
        }
        Response::decode(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bytes produced by hand from the proto definition: field 1 (URL) "/a?b=1", field 2 "GET",
    // field 6 map entry {key "X", value Values{arr ["1", "2"]}}, field 7 "ID".
    #[test]
    fn request_wire_form() {
        let mut r = Request { url: "/a?b=1".into(), method: "GET".into(), web_socket_id: "ID".into(), ..Request::default() };
        add(&mut r.header, "X", "1");
        add(&mut r.header, "X", "2");
        let bytes = r.encode_to_vec();
        let want: &[u8] = &[
            0x0a, 6, b'/', b'a', b'?', b'b', b'=', b'1', //
            0x12, 3, b'G', b'E', b'T', //
            0x32, 11, 0x0a, 1, b'X', 0x12, 6, 0x0a, 1, b'1', 0x0a, 1, b'2', //
            0x3a, 2, b'I', b'D',
        ];
        assert_eq!(bytes, want);
        let back = Request::decode_from(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.path(), "/a");
        assert_eq!(back.query(), "b=1");
        assert_eq!(header(&back.header, "x"), Some("1"));
        assert!(back.is_websocket());
    }

    #[test]
    fn response_round_trip_and_errors() {
        let mut r = Response::with_status(201);
        add(&mut r.header, "Content-Type", "text/plain");
        r.body = b"hi".to_vec();
        r.do_upgrade = true;
        let bytes = r.encode_to_vec();
        assert_eq!(&bytes[..2], &[0x08, 201]);
        assert_eq!(Response::decode_from(&bytes).unwrap(), r);
        assert!(Response::decode_from(b"").is_err());
        assert!(Response::decode_from(b"not protobuf at all \xff\xff").is_err());
    }
}
