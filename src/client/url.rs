//! Server addresses, as users write them in options and as servers advertise them in the
//! INFO `connect_urls` list.
//!
//! Accepted forms follow what nats.go users pass in practice: `nats://host:port`,
//! `tls://host`, bare `host:port` or `host`, credentials in the userinfo
//! (`nats://user:pass@host`, `nats://token@host`), and bracketed IPv6. Anything the client
//! cannot dial as a plain NATS or TLS connection (WebSocket, other schemes, paths) is an
//! error up front rather than a confusing connect failure later.
//!
//! Credentials never leave this module in text form: [`ServerAddr`]'s `Display` and
//! `Debug` and [`UrlError`] all print `***` in their place, because URLs end up in logs.

use std::fmt;
use std::net::Ipv6Addr;

/// The port nats-server listens on unless told otherwise.
const DEFAULT_PORT: u16 = 4222;

/// What replaces credentials in anything printable.
const REDACTED: &str = "***";

/// How to talk to the server once the TCP connection is up.
///
/// ```
/// use natsu::client::url::{Scheme, ServerAddr};
///
/// assert_eq!(ServerAddr::parse("tls://demo.nats.io").unwrap().scheme, Scheme::Tls);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `nats://` or no scheme: plain TCP, upgraded to TLS only if the server asks for it.
    Nats,
    /// `tls://`: the client insists on TLS.
    Tls,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Nats => "nats",
            Scheme::Tls => "tls",
        }
    }
}

/// One server to connect to, with any credentials the URL carried.
///
/// `Debug` and `Display` hide the password and token.
///
/// ```
/// use natsu::client::url::ServerAddr;
///
/// let addr = ServerAddr::parse("nats://alice:s3cret@127.0.0.1:4333").unwrap();
/// assert_eq!(addr.host_port(), "127.0.0.1:4333");
/// assert_eq!(addr.user.as_deref(), Some("alice"));
/// assert_eq!(addr.to_string(), "nats://127.0.0.1:4333");
/// assert!(!format!("{addr:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Whether TLS is required from the start.
    pub scheme: Scheme,
    /// Host name (lowercased, since DNS ignores case and pool entries are compared by
    /// URL) or IP address; IPv6 without brackets, in canonical form.
    pub host: String,
    /// TCP port; 4222 when the URL gave none.
    pub port: u16,
    /// User from `user:pass@`, percent-decoded.
    pub user: Option<String>,
    /// Password from `user:pass@`, percent-decoded.
    pub pass: Option<String>,
    /// Token from a userinfo without `:` (`token@host`), percent-decoded, as nats.go reads it.
    pub token: Option<String>,
}

impl ServerAddr {
    /// Parse one server URL.
    ///
    /// Accepts `nats://host:port`, `tls://host`, `host:port`, `host`,
    /// `nats://user:pass@host:port`, `nats://token@host`, and IPv6 as `[::1]:4222` or
    /// `nats://[::1]`. The scheme is case-insensitive, the port defaults to 4222, userinfo
    /// is percent-decoded and a trailing `/` is ignored. `ws://`, `wss://` and other
    /// schemes, an empty host, a bad or zero port, and a path, query or fragment are errors.
    ///
    /// ```
    /// use natsu::client::url::{Scheme, ServerAddr};
    ///
    /// let addr = ServerAddr::parse("localhost").unwrap();
    /// assert_eq!((addr.scheme, addr.host.as_str(), addr.port), (Scheme::Nats, "localhost", 4222));
    ///
    /// let addr = ServerAddr::parse("NATS://[::1]:4333").unwrap();
    /// assert_eq!(addr.host_port(), "[::1]:4333");
    ///
    /// let err = ServerAddr::parse("ws://localhost:8080").unwrap_err();
    /// assert_eq!(err.reason, "WebSocket URLs are not supported");
    /// ```
    pub fn parse(s: &str) -> Result<ServerAddr, UrlError> {
        parse_addr(s.trim()).map_err(|reason| UrlError::new(s.trim(), reason))
    }

    /// Whether the URL asked for TLS (`tls://`).
    ///
    /// ```
    /// use natsu::client::url::ServerAddr;
    ///
    /// assert!(ServerAddr::parse("TLS://a:1").unwrap().is_tls());
    /// assert!(!ServerAddr::parse("a:1").unwrap().is_tls());
    /// ```
    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::Tls
    }

    /// `host:port` for connecting, with IPv6 hosts in brackets.
    ///
    /// ```
    /// use natsu::client::url::ServerAddr;
    ///
    /// assert_eq!(ServerAddr::parse("nats://[::1]").unwrap().host_port(), "[::1]:4222");
    /// assert_eq!(ServerAddr::parse("example.com").unwrap().host_port(), "example.com:4222");
    /// ```
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without credentials, always with scheme and port: used for display and to
    /// tell whether two pool entries are the same server.
    ///
    /// ```
    /// use natsu::client::url::ServerAddr;
    ///
    /// let addr = ServerAddr::parse("tok@127.0.0.1").unwrap();
    /// assert_eq!(addr.url(), "nats://127.0.0.1:4222");
    /// ```
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.host_port())
    }

    /// Whether the URL carried a user, password or token.
    ///
    /// ```
    /// use natsu::client::url::ServerAddr;
    ///
    /// assert!(ServerAddr::parse("nats://tok@host").unwrap().has_credentials());
    /// assert!(!ServerAddr::parse("nats://host").unwrap().has_credentials());
    /// ```
    pub fn has_credentials(&self) -> bool {
        self.user.is_some() || self.pass.is_some() || self.token.is_some()
    }
}

impl fmt::Display for ServerAddr {
    /// Same as [`ServerAddr::url`]: never prints credentials.
    ///
    /// ```
    /// use natsu::client::url::ServerAddr;
    ///
    /// let addr = ServerAddr::parse("nats://u:p@h:1").unwrap();
    /// assert_eq!(format!("{addr}"), "nats://h:1");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for ServerAddr {
    /// Field by field like a derived `Debug`, but with the password and token masked: a
    /// `{:?}` of connect options in a log line must not leak them.
    ///
    /// ```
    /// use natsu::client::url::ServerAddr;
    ///
    /// let dbg = format!("{:?}", ServerAddr::parse("nats://u:pw@h").unwrap());
    /// assert!(dbg.contains("pass: Some(\"***\")") && !dbg.contains("pw"));
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAddr")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("pass", &self.pass.as_ref().map(|_| REDACTED))
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// Parse a comma-separated list of server URLs, as given on a command line or in one
/// option. Spaces around entries are trimmed and empty entries skipped; the first bad
/// entry is the error, and a list with no entries at all is one too.
///
/// ```
/// use natsu::client::url::parse_list;
///
/// let pool = parse_list("nats://a:4222, b:4223,,tls://c").unwrap();
/// let urls: Vec<String> = pool.iter().map(|a| a.url()).collect();
/// assert_eq!(urls, ["nats://a:4222", "nats://b:4223", "tls://c:4222"]);
/// assert!(parse_list(" , ").is_err());
/// ```
pub fn parse_list(s: &str) -> Result<Vec<ServerAddr>, UrlError> {
    let addrs = s
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(ServerAddr::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(UrlError::new(s.trim(), "no server URLs given"));
    }
    Ok(addrs)
}

/// A server URL that could not be used, and why.
///
/// `url` is the input with any userinfo replaced by `***`, so the error can be logged.
///
/// ```
/// use natsu::client::url::ServerAddr;
///
/// let err = ServerAddr::parse("nats://bob:hunter2@host:99999").unwrap_err();
/// assert_eq!(err.url, "nats://***@host:99999");
/// assert_eq!(err.to_string(), "invalid server URL \"nats://***@host:99999\": invalid port");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError {
    /// The offending URL, credentials redacted.
    pub url: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl UrlError {
    fn new(url: &str, reason: &'static str) -> UrlError {
        UrlError { url: redact(url), reason }
    }
}

impl fmt::Display for UrlError {
    /// ```
    /// use natsu::client::url::ServerAddr;
    ///
    /// let err = ServerAddr::parse("nats://").unwrap_err();
    /// assert_eq!(err.to_string(), "invalid server URL \"nats://\": empty host");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid server URL \"{}\": {}", self.url, self.reason)
    }
}

impl std::error::Error for UrlError {}

/// The parser proper; errors are bare reasons so the caller builds the redacted error once.
fn parse_addr(s: &str) -> Result<ServerAddr, &'static str> {
    if s.is_empty() {
        return Err("empty URL");
    }
    let (scheme, rest) = match s.find("://") {
        Some(i) => (parse_scheme(&s[..i])?, &s[i + 3..]),
        None => (Scheme::Nats, s),
    };

    // The authority ends where a URL path, query or fragment would start; a credential
    // containing one of these must be percent-encoded, as in any URL.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !(tail.is_empty() || tail == "/") {
        return Err("unexpected path, query or fragment");
    }

    // The last '@' splits, so an unencoded '@' in a password still works.
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (mut user, mut pass, mut token) = (None, None, None);
    if let Some(info) = userinfo {
        if info.is_empty() {
            return Err("empty credentials");
        }
        // Like nats.go: `user:pass@` is a user and password, anything without ':' a token.
        match info.split_once(':') {
            Some((u, p)) => {
                user = Some(percent_decode(u)?);
                pass = Some(percent_decode(p)?);
            }
            None => token = Some(percent_decode(info)?),
        }
    }

    let (host, port) = split_host_port(host_port)?;
    let port = match port {
        None => DEFAULT_PORT,
        Some("") => return Err("missing port after ':'"),
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => return Err("invalid port"),
        Some(p) => match p.parse::<u16>() {
            Ok(0) => return Err("port 0 is not allowed"),
            Ok(port) => port,
            Err(_) => return Err("invalid port"),
        },
    };
    Ok(ServerAddr { scheme, host, port, user, pass, token })
}

fn parse_scheme(name: &str) -> Result<Scheme, &'static str> {
    if name.eq_ignore_ascii_case("nats") {
        Ok(Scheme::Nats)
    } else if name.eq_ignore_ascii_case("tls") {
        Ok(Scheme::Tls)
    } else if name.eq_ignore_ascii_case("ws") || name.eq_ignore_ascii_case("wss") {
        // Named apart from other schemes: nats.go accepts these, so users will try them.
        Err("WebSocket URLs are not supported")
    } else {
        Err("unsupported scheme (want nats:// or tls://)")
    }
}

/// Split `host[:port]` or `[v6][:port]`; the host comes back normalised.
fn split_host_port(s: &str) -> Result<(String, Option<&str>), &'static str> {
    if let Some(bracketed) = s.strip_prefix('[') {
        let close = bracketed.find(']').ok_or("missing ']' after IPv6 address")?;
        let ip: Ipv6Addr = bracketed[..close].parse().map_err(|_| "invalid IPv6 address")?;
        let after = &bracketed[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err("unexpected characters after IPv6 address"),
        };
        return Ok((ip.to_string(), port));
    }
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    if port.is_some_and(|p| p.contains(':')) {
        return Err("IPv6 address must be in brackets");
    }
    if host.is_empty() {
        return Err("empty host");
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
        return Err("invalid character in host");
    }
    Ok((host.to_ascii_lowercase(), port))
}

fn percent_decode(s: &str) -> Result<String, &'static str> {
    const BAD: &str = "invalid percent-encoding in credentials";
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|&b| hex_value(b)).ok_or(BAD)?;
            let lo = bytes.get(i + 2).and_then(|&b| hex_value(b)).ok_or(BAD)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| BAD)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Replace everything between the scheme and the last '@' with `***`.
///
/// Deliberately cruder than the parser: it runs on input the parser rejected, so it looks
/// at the last '@' anywhere rather than trusting where the authority ends (an unencoded
/// '/' in a password would otherwise leave the rest of it in the message).
fn redact(s: &str) -> String {
    let start = match s.find("://") {
        Some(i) if s[..i].bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) => {
            i + 3
        }
        _ => 0,
    };
    match s[start..].rfind('@') {
        Some(at) => format!("{}{REDACTED}{}", &s[..start], &s[start + at..]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Creds<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);
    const NONE: Creds<'static> = (None, None, None);

    #[test]
    fn accepted_forms() {
        use Scheme::*;
        let cases: &[(&str, Scheme, &str, u16, Creds, &str)] = &[
            ("nats://127.0.0.1:4222", Nats, "127.0.0.1", 4222, NONE, "nats://127.0.0.1:4222"),
            ("nats://localhost:4333", Nats, "localhost", 4333, NONE, "nats://localhost:4333"),
            ("nats://localhost", Nats, "localhost", 4222, NONE, "nats://localhost:4222"),
            ("nats://localhost/", Nats, "localhost", 4222, NONE, "nats://localhost:4222"),
            ("nats://localhost:5/", Nats, "localhost", 5, NONE, "nats://localhost:5"),
            ("tls://demo.nats.io", Tls, "demo.nats.io", 4222, NONE, "tls://demo.nats.io:4222"),
            ("tls://demo.nats.io:443", Tls, "demo.nats.io", 443, NONE, "tls://demo.nats.io:443"),
            ("NATS://Host.Example:1", Nats, "host.example", 1, NONE, "nats://host.example:1"),
            ("Tls://h", Tls, "h", 4222, NONE, "tls://h:4222"),
            ("localhost:4222", Nats, "localhost", 4222, NONE, "nats://localhost:4222"),
            ("localhost", Nats, "localhost", 4222, NONE, "nats://localhost:4222"),
            ("10.0.0.1", Nats, "10.0.0.1", 4222, NONE, "nats://10.0.0.1:4222"),
            (
                "my_host-1.local:65535",
                Nats,
                "my_host-1.local",
                65535,
                NONE,
                "nats://my_host-1.local:65535",
            ),
            ("  nats://padded:1  ", Nats, "padded", 1, NONE, "nats://padded:1"),
            ("[::1]:4222", Nats, "::1", 4222, NONE, "nats://[::1]:4222"),
            ("[::1]", Nats, "::1", 4222, NONE, "nats://[::1]:4222"),
            ("nats://[::1]", Nats, "::1", 4222, NONE, "nats://[::1]:4222"),
            ("tls://[FE80:0:0::1]:7", Tls, "fe80::1", 7, NONE, "tls://[fe80::1]:7"),
            (
                "nats://[::ffff:1.2.3.4]:1",
                Nats,
                "::ffff:1.2.3.4",
                1,
                NONE,
                "nats://[::ffff:1.2.3.4]:1",
            ),
            (
                "nats://user:pass@host:4222",
                Nats,
                "host",
                4222,
                (Some("user"), Some("pass"), None),
                "nats://host:4222",
            ),
            (
                "nats://token@host",
                Nats,
                "host",
                4222,
                (None, None, Some("token")),
                "nats://host:4222",
            ),
            (
                "user:pass@host",
                Nats,
                "host",
                4222,
                (Some("user"), Some("pass"), None),
                "nats://host:4222",
            ),
            ("tok@[::1]:9", Nats, "::1", 9, (None, None, Some("tok")), "nats://[::1]:9"),
            (
                "nats://u%40x:p%3Aw%2F%25@h",
                Nats,
                "h",
                4222,
                (Some("u@x"), Some("p:w/%"), None),
                "nats://h:4222",
            ),
            ("nats://u:p@ss@h", Nats, "h", 4222, (Some("u"), Some("p@ss"), None), "nats://h:4222"),
            ("nats://u:a:b@h", Nats, "h", 4222, (Some("u"), Some("a:b"), None), "nats://h:4222"),
            ("nats://u:@h", Nats, "h", 4222, (Some("u"), Some(""), None), "nats://h:4222"),
            ("nats://%C3%A9@h", Nats, "h", 4222, (None, None, Some("é")), "nats://h:4222"),
        ];
        for &(input, scheme, host, port, (user, pass, token), url) in cases {
            let addr = ServerAddr::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(addr.scheme, scheme, "{input:?}");
            assert_eq!(addr.host, host, "{input:?}");
            assert_eq!(addr.port, port, "{input:?}");
            assert_eq!(addr.user.as_deref(), user, "{input:?}");
            assert_eq!(addr.pass.as_deref(), pass, "{input:?}");
            assert_eq!(addr.token.as_deref(), token, "{input:?}");
            assert_eq!(addr.url(), url, "{input:?}");
            assert_eq!(addr.to_string(), url, "{input:?}");
            assert_eq!(addr.has_credentials(), (user, pass, token) != NONE, "{input:?}");
            assert_eq!(addr.is_tls(), scheme == Tls, "{input:?}");
            // What url() prints parses back to the same server, minus credentials.
            let again = ServerAddr::parse(&addr.url()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!((again.scheme, again.host, again.port), (addr.scheme, addr.host, addr.port));
        }
    }

    #[test]
    fn rejected_forms() {
        let cases: &[(&str, &str)] = &[
            ("", "empty URL"),
            ("   ", "empty URL"),
            ("ws://localhost:8080", "WebSocket URLs are not supported"),
            ("WSS://localhost", "WebSocket URLs are not supported"),
            ("http://localhost", "unsupported scheme (want nats:// or tls://)"),
            ("://localhost", "unsupported scheme (want nats:// or tls://)"),
            ("nats://", "empty host"),
            ("nats://:4222", "empty host"),
            (":4222", "empty host"),
            ("nats://u:p@", "empty host"),
            ("nats://@host", "empty credentials"),
            ("nats://host:", "missing port after ':'"),
            ("nats://host:abc", "invalid port"),
            ("nats://host:+1", "invalid port"),
            ("nats://host:-1", "invalid port"),
            ("nats://host:65536", "invalid port"),
            ("nats://host:99999999999999999999", "invalid port"),
            ("nats://host:4222junk", "invalid port"),
            ("nats://host:0", "port 0 is not allowed"),
            ("[::1]:0", "port 0 is not allowed"),
            ("nats://host:4222/path", "unexpected path, query or fragment"),
            ("nats://host//", "unexpected path, query or fragment"),
            ("nats://host?x=1", "unexpected path, query or fragment"),
            ("nats://host#frag", "unexpected path, query or fragment"),
            ("nats://ho st", "invalid character in host"),
            ("nats://hóst", "invalid character in host"),
            ("nats://host]:1", "invalid character in host"),
            ("::1", "IPv6 address must be in brackets"),
            ("nats://::1:4222", "IPv6 address must be in brackets"),
            ("nats://[::1", "missing ']' after IPv6 address"),
            ("nats://[]", "invalid IPv6 address"),
            ("nats://[not:v6]", "invalid IPv6 address"),
            ("nats://[1.2.3.4]", "invalid IPv6 address"),
            ("nats://[::1]x", "unexpected characters after IPv6 address"),
            ("nats://[::1]:", "missing port after ':'"),
            ("nats://u:p%zz@h", "invalid percent-encoding in credentials"),
            ("nats://tok%4@h", "invalid percent-encoding in credentials"),
            ("nats://%ff@h", "invalid percent-encoding in credentials"),
        ];
        for &(input, reason) in cases {
            match ServerAddr::parse(input) {
                Err(e) => assert_eq!(e.reason, reason, "{input:?}"),
                Ok(addr) => panic!("{input:?} parsed as {addr:?}"),
            }
        }
    }

    #[test]
    fn errors_redact_credentials() {
        let cases: &[(&str, &str)] = &[
            ("nats://bob:hunter2@host:0", "nats://***@host:0"),
            ("nats://sekrit@host:0", "nats://***@host:0"),
            ("bob:hunter2@host:0", "***@host:0"),
            ("nats://bob:hunter2@", "nats://***@"),
            ("nats://bob:hunter2%zz@host", "nats://***@host"),
            // An unencoded '/' or '?' ends the authority, so these fail as having a path;
            // the message must still not show any of the password.
            ("nats://bob:hun/ter2@host", "nats://***@host"),
            ("nats://bob:hun?ter2@host", "nats://***@host"),
            ("user:pa://ss@host:0", "***@host:0"),
            ("ws://u:p@host", "ws://***@host"),
            ("nats://host:0", "nats://host:0"),
        ];
        for &(input, shown) in cases {
            let err = ServerAddr::parse(input).expect_err(input);
            assert_eq!(err.url, shown, "{input:?}");
            let text = err.to_string();
            assert!(text.starts_with(&format!("invalid server URL \"{shown}\": ")), "{text}");
            for secret in ["hunter2", "ter2", "sekrit", "pa:"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
        let err = parse_list("a:1, nats://bob:hunter2@h:0").unwrap_err();
        assert_eq!(err.url, "nats://***@h:0");
    }

    #[test]
    fn display_and_debug_hide_credentials() {
        let addr = ServerAddr::parse("tls://bob:hunter2@h").expect("valid");
        assert_eq!(addr.to_string(), "tls://h:4222");
        let dbg = format!("{addr:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("user: Some(\"bob\")"), "{dbg}");
        let tok = ServerAddr::parse("sekrit@h").expect("valid");
        assert!(!format!("{tok:?} {tok}").contains("sekrit"));
        assert!(format!("{tok:?}").contains("token: Some(\"***\")"));
        let plain = format!("{:?}", ServerAddr::parse("h").expect("valid"));
        assert!(plain.contains("pass: None, token: None"), "{plain}");
    }

    #[test]
    fn lists() {
        let pool = parse_list(" nats://a:1 ,b, , tls://[::1]:3,").expect("valid");
        let urls: Vec<String> = pool.iter().map(ServerAddr::url).collect();
        assert_eq!(urls, ["nats://a:1", "nats://b:4222", "tls://[::1]:3"]);
        assert_eq!(parse_list("single").expect("valid").len(), 1);

        for input in ["", " ", ",", " , ,"] {
            let err = parse_list(input).expect_err(input);
            assert_eq!(err.reason, "no server URLs given", "{input:?}");
        }
        let err = parse_list("a:1,ws://b").unwrap_err();
        assert_eq!((err.url.as_str(), err.reason), ("ws://b", "WebSocket URLs are not supported"));
    }

    #[test]
    fn same_server_compares_equal_by_url() {
        let a = ServerAddr::parse("NATS://u:p@LocalHost").expect("valid");
        let b = ServerAddr::parse("localhost:4222").expect("valid");
        assert_eq!(a.url(), b.url());
        assert_ne!(a, b, "credentials still distinguish the values themselves");
    }
}
