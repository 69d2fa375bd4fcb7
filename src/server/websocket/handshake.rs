//! The WebSocket opening handshake on the broker's WebSocket port, as nats-server 2.9 does
//! it (RFC 6455 section 4.2): the checks in its order, with its reasons, and the 101 answer.
//!
//! A failed check is answered the way Go's `http.Error` answers (status line, `Sec-Websocket-
//! Version: 13`, `Content-Type: text/plain; charset=utf-8`, the status text as the body); the
//! reason itself is only logged (`<addr> - websocket handshake error: <reason>`).

use std::fmt;

/// The handshake's settings from the `websocket` block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// `same_origin`: an `Origin` must name this server (scheme's default port if none).
    pub same_origin: bool,
    /// `allowed_origins`: `scheme://host[:port]` entries an `Origin` must match.
    pub allowed_origins: Vec<String>,
    /// `compression`: accept permessage-deflate when the client offers it.
    pub compression: bool,
}

/// A check that failed: the HTTP status and nats-server's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket handshake error: {}", self.reason)
    }
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal { status, reason: reason.into() }
    }

    /// The answer to send before closing, as Go's `http.Error` writes it.
    pub fn response(&self) -> Vec<u8> {
        let text = status_text(self.status);
        let body = format!("{text}\n");
        format!(
            "HTTP/1.1 {} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nSec-Websocket-Version: 13\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.status,
            body.len()
        )
        .into_bytes()
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// What an accepted handshake settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The `101 Switching Protocols` answer to write.
    pub response: Vec<u8>,
    /// permessage-deflate was offered and is on.
    pub compress: bool,
    /// The client asked not to mask its frames (`Nats-No-Masking: true`).
    pub no_masking: bool,
    /// `X-Forwarded-For`'s first value when it is an IP address: the client's address for
    /// monitoring and logs.
    pub client_ip: Option<String>,
    /// A browser (`User-Agent: Mozilla/…`): frames to it are kept to 4 KiB.
    pub browser: bool,
    /// Bytes of `buf` the request took.
    pub consumed: usize,
}

/// The outcome of looking at what has arrived so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// The request's head is not complete yet.
    Partial,
    Accepted(Accepted),
    Refused(Refusal),
}

/// Most header lines a request may carry.
const MAX_HEADERS: usize = 64;

/// Check the request at the start of `buf` (read from a connection that arrived with or
/// without TLS).
pub fn check(buf: &[u8], settings: &Settings, tls: bool) -> Handshake {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return Handshake::Partial,
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => return Handshake::Refused(Refusal::new(431, "too many headers")),
        Err(e) => return Handshake::Refused(Refusal::new(400, format!("malformed request: {e}"))),
    };
    match accept(&req, settings, tls) {
        Ok(mut a) => {
            if buf.len() > consumed {
                return Handshake::Refused(Refusal::new(400, "client sent data before handshake is complete"));
            }
            a.consumed = consumed;
            Handshake::Accepted(a)
        }
        Err(r) => Handshake::Refused(r),
    }
}

/// Every value of header `name` (any case), as text.
fn values<'a>(req: &'a httparse::Request<'_, '_>, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    req.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| std::str::from_utf8(h.value).unwrap_or(""))
}

fn first<'a>(req: &'a httparse::Request<'_, '_>, name: &'a str) -> &'a str {
    values(req, name).next().unwrap_or("")
}

/// Whether header `name` holds the comma-separated token `token` (any case).
fn contains(req: &httparse::Request<'_, '_>, name: &str, token: &str) -> bool {
    values(req, name).any(|v| v.split(',').any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case(token)))
}

fn accept(req: &httparse::Request<'_, '_>, settings: &Settings, tls: bool) -> Result<Accepted, Refusal> {
    if req.method != Some("GET") {
        return Err(Refusal::new(405, "request method must be GET"));
    }
    let host = first(req, "Host");
    if host.is_empty() {
        return Err(Refusal::new(400, "'Host' missing in request"));
    }
    if !contains(req, "Upgrade", "websocket") {
        return Err(Refusal::new(400, "invalid value for header 'Upgrade'"));
    }
    if !contains(req, "Connection", "Upgrade") {
        return Err(Refusal::new(400, "invalid value for header 'Connection'"));
    }
    let key = first(req, "Sec-Websocket-Key");
    if key.is_empty() {
        return Err(Refusal::new(400, "key missing"));
    }
    if !contains(req, "Sec-Websocket-Version", "13") {
        return Err(Refusal::new(400, "invalid version"));
    }
    check_origin(req, settings, host, tls).map_err(|e| Refusal::new(403, format!("origin not allowed: {e}")))?;
    let compress = settings.compression && offers_deflate(req);
    let no_masking = first(req, "Nats-No-Masking") == "true";
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key.as_bytes())
    );
    if compress {
        response.push_str("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n");
    }
    if no_masking {
        response.push_str("Nats-No-Masking: true\r\n");
    }
    response.push_str("\r\n");
    let client_ip = values(req, "X-Forwarded-For").next().filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()).map(str::to_string);
    Ok(Accepted {
        response: response.into_bytes(),
        compress,
        no_masking,
        client_ip,
        browser: first(req, "User-Agent").starts_with("Mozilla/"),
        consumed: 0,
    })
}

fn offers_deflate(req: &httparse::Request<'_, '_>) -> bool {
    values(req, "Sec-Websocket-Extensions")
        .flat_map(|list| list.split(','))
        .any(|ext| ext.split(';').any(|p| p.trim_matches([' ', '\t']).eq_ignore_ascii_case("permessage-deflate")))
}

/// `host[:port]` → lower-case host and port, the scheme's default port when none is given
/// (Go's `net.SplitHostPort` rules for brackets).
fn host_and_port(hostport: &str, tls: bool) -> Result<(String, String), String> {
    let default = if tls { "443" } else { "80" };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| format!("address {hostport}: missing ']' in address"))?;
        match after {
            "" => (h, default),
            p => (h, p.strip_prefix(':').ok_or_else(|| format!("address {hostport}: unexpected text after ']'"))?),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => return Err(format!("address {hostport}: too many colons in address")),
            Some((h, p)) => (h, p),
            None => (hostport, default),
        }
    };
    Ok((host.to_ascii_lowercase(), port.to_string()))
}

/// `scheme://host[:port]…` → scheme, host, port (also how `allowed_origins` entries are
/// checked when the config is read).
pub fn parse_origin(origin: &str) -> Result<(String, String, String), String> {
    let (scheme, rest) = origin.split_once("://").ok_or_else(|| format!("parse {origin:?}: invalid URI for request"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = host_and_port(authority, scheme == "https")?;
    Ok((scheme.to_string(), host, port))
}

fn check_origin(req: &httparse::Request<'_, '_>, settings: &Settings, host: &str, tls: bool) -> Result<(), String> {
    if !settings.same_origin && settings.allowed_origins.is_empty() {
        return Ok(());
    }
    let mut origin = first(req, "Origin");
    if origin.is_empty() {
        origin = first(req, "Sec-Websocket-Origin");
    }
    // A client that is no browser may send no origin at all (RFC 6455 section 1.6).
    if origin.is_empty() {
        return Ok(());
    }
    let (scheme, oh, op) = parse_origin(origin)?;
    if settings.same_origin {
        let (rh, rp) = host_and_port(host, tls)?;
        if oh != rh || op != rp {
            return Err("not same origin".into());
        }
    }
    if !settings.allowed_origins.is_empty() {
        let allowed = settings.allowed_origins.iter().filter_map(|a| parse_origin(a).ok()).any(|(s, h, p)| h == oh && s == scheme && p == op);
        if !allowed {
            return Err("not in the allowed list".into());
        }
    }
    Ok(())
}

/// RFC 6455's `Sec-WebSocket-Accept`: base64 of SHA-1 over the key and the protocol's GUID.
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    fn with(extra: &str) -> String {
        format!("{GOOD}{extra}\r\n")
    }

    fn refused(req: &str, settings: &Settings) -> Refusal {
        match check(req.as_bytes(), settings, false) {
            Handshake::Refused(r) => r,
            other => panic!("{req:?} was not refused: {other:?}"),
        }
    }

    fn accepted(req: &str, settings: &Settings) -> Accepted {
        match check(req.as_bytes(), settings, false) {
            Handshake::Accepted(a) => a,
            other => panic!("{req:?} was not accepted: {other:?}"),
        }
    }

    #[test]
    fn rfc_example_key_and_response() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let req = with("");
        let a = accepted(&req, &Settings::default());
        assert_eq!(
            String::from_utf8(a.response).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        assert_eq!(a.consumed, req.len());
        assert!(!a.compress && !a.no_masking && !a.browser && a.client_ip.is_none());
    }

    #[test]
    fn partial_until_the_blank_line() {
        let req = with("");
        for cut in 0..req.len() {
            assert_eq!(check(&req.as_bytes()[..cut], &Settings::default(), false), Handshake::Partial, "cut at {cut}");
        }
    }

    #[test]
    fn checks_in_nats_servers_order_with_its_reasons() {
        let s = Settings::default();
        let r = refused("POST / HTTP/1.1\r\nHost: x\r\n\r\n", &s);
        assert_eq!((r.status, r.reason.as_str()), (405, "request method must be GET"));
        let r = refused("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", &s);
        assert_eq!((r.status, r.reason.as_str()), (400, "'Host' missing in request"));
        let r = refused("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\r\n", &s);
        assert_eq!(r.reason, "invalid value for header 'Upgrade'");
        let r = refused("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", &s);
        assert_eq!(r.reason, "invalid value for header 'Connection'");
        let r = refused("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", &s);
        assert_eq!(r.reason, "key missing");
        let r = refused(&format!("{}\r\n", GOOD.replace("Version: 13", "Version: 8")), &s);
        assert_eq!((r.status, r.reason.as_str()), (400, "invalid version"));
        let r = refused(&format!("{GOOD}\r\nPING\r\n"), &s);
        assert_eq!(r.reason, "client sent data before handshake is complete");
        let r = refused("GET / HTTP/1.1\r\nHost x\r\n\r\n", &s);
        assert_eq!(r.status, 400);
        let text = String::from_utf8(refused("POST / HTTP/1.1\r\n\r\n", &s).response()).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{text}");
        assert!(text.contains("Sec-Websocket-Version: 13\r\n") && text.ends_with("\r\n\r\nMethod Not Allowed\n"), "{text}");
    }

    #[test]
    fn origins() {
        let same = Settings { same_origin: true, ..Settings::default() };
        accepted(&with(""), &same); // no Origin: accepted
        accepted(&with("Origin: http://127.0.0.1:8080\r\n"), &same);
        let r = refused(&with("Origin: http://127.0.0.1:9999\r\n"), &same);
        assert_eq!((r.status, r.reason.as_str()), (403, "origin not allowed: not same origin"));
        let listed = Settings { allowed_origins: vec!["https://app.example.com".into(), "http://localhost:3000".into()], ..Settings::default() };
        accepted(&with("Origin: https://App.Example.com\r\n"), &listed);
        accepted(&with("Origin: http://localhost:3000\r\n"), &listed);
        accepted(&with("Sec-WebSocket-Origin: http://localhost:3000\r\n"), &listed);
        for bad in ["http://app.example.com", "https://app.example.com:8443", "http://localhost:3001", "https://evil.com"] {
            let r = refused(&with(&format!("Origin: {bad}\r\n")), &listed);
            assert_eq!(r.reason, "origin not allowed: not in the allowed list", "{bad}");
        }
        assert_eq!(refused(&with("Origin: nonsense\r\n"), &listed).status, 403);
        assert_eq!(host_and_port("[::1]:80", false).unwrap(), ("::1".to_string(), "80".to_string()));
        assert_eq!(host_and_port("[::1]", true).unwrap(), ("::1".to_string(), "443".to_string()));
        assert!(host_and_port("::1:80", false).is_err());
    }

    #[test]
    fn extensions_masking_forwarding_browsers() {
        let offer = "Sec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate; client_max_window_bits\r\n";
        assert!(!accepted(&with(offer), &Settings::default()).compress, "compression is off unless configured");
        let a = accepted(&with(offer), &Settings { compression: true, ..Settings::default() });
        assert!(a.compress);
        assert!(String::from_utf8(a.response).unwrap().contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
        ));
        let a = accepted(&with("Nats-No-Masking: true\r\nX-Forwarded-For: 10.1.2.3\r\nUser-Agent: Mozilla/5.0 (X11)\r\n"), &Settings::default());
        assert!(a.no_masking && a.browser);
        assert_eq!(a.client_ip.as_deref(), Some("10.1.2.3"));
        assert!(String::from_utf8(a.response).unwrap().contains("Nats-No-Masking: true\r\n"));
        assert_eq!(accepted(&with("X-Forwarded-For: not-an-ip\r\n"), &Settings::default()).client_ip, None);
    }
}
