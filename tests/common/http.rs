//! A small HTTP/1.1 client for the gateway tests: one request per connection (or several
//! on one kept-alive connection), plain or over TLS, answers parsed with httparse.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A parsed answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
}

/// The bytes of one request (`Content-Length` added for a body).
pub fn encode(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Read one answer from `s`, leaving `buf` holding whatever followed it.
pub fn read_reply(s: &mut impl Read, buf: &mut Vec<u8>) -> Result<Reply, String> {
    let mut chunk = [0u8; 16384];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut head = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = head.parse(buf).map_err(|e| format!("bad answer ({e}): {:?}", String::from_utf8_lossy(buf)))? {
            let status = head.code.unwrap_or(0);
            let headers: Vec<(String, String)> = head.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
            let len = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse::<usize>().ok()).unwrap_or(0);
            while buf.len() < n + len {
                let got = s.read(&mut chunk).map_err(|e| format!("reading the body: {e}"))?;
                if got == 0 {
                    return Err("connection closed inside the body".into());
                }
                buf.extend_from_slice(&chunk[..got]);
            }
            let body = buf[n..n + len].to_vec();
            buf.drain(..n + len);
            return Ok(Reply { status, headers, body });
        }
        let got = s.read(&mut chunk).map_err(|e| format!("reading: {e}"))?;
        if got == 0 {
            return Err(format!("connection closed before a whole answer: {:?}", String::from_utf8_lossy(buf)));
        }
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// Connect with timeouts.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect to {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// One request on a connection of its own.
pub fn request(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    try_request(port, method, target, headers, body).unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

pub fn try_request(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Reply, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect to {port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(15))).map_err(|e| e.to_string())?;
    s.write_all(&encode(method, target, headers, body)).map_err(|e| format!("write: {e}"))?;
    read_reply(&mut s, &mut Vec::new())
}

pub fn get(port: u16, target: &str) -> Reply {
    request(port, "GET", target, &[], b"")
}
