//! NATS message headers: the block that HPUB and HMSG carry in front of the payload.
//!
//! On the wire a block is a version line, `NATS/1.0`, optionally followed by a three-digit
//! status and a description (`NATS/1.0 503 No Responders`), then `Key: Value` lines, then a
//! blank line; every line ends in CRLF. [`Headers`] keeps the entries in insertion order and
//! lets a key carry several values, because the wire form does and servers rely on both
//! (JetStream sends repeated keys, and status-only blocks such as no-responders carry none).

use std::fmt;

/// The version line every header block starts with.
const VERSION: &[u8] = b"NATS/1.0";

/// How much of a bad line an error repeats: enough to recognise it, not a whole payload.
const SNIPPET_MAX: usize = 64;

/// The headers of one message: an optional status line plus ordered, multi-valued entries.
///
/// Keys compare exactly (case-sensitive), as nats.go has done since v1.11: NATS headers are
/// not HTTP headers, and servers match keys such as `Nats-Msg-Id` byte for byte.
///
/// ```
/// use natsu::client::headers::Headers;
///
/// let mut h = Headers::new();
/// h.insert("Nats-Msg-Id", "42").append("Tag", "a").append("Tag", "b");
/// assert_eq!(h.get("Nats-Msg-Id"), Some("42"));
/// assert_eq!(h.get_all("Tag").collect::<Vec<_>>(), ["a", "b"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// The status on the version line (503 for no responders, 100 for JetStream heartbeats);
    /// `None` for the ordinary `NATS/1.0` line that user messages carry.
    status: Option<u16>,
    /// Text after the status (`No Responders`); only ever set together with `status`,
    /// because the wire form has nowhere to put a description without one.
    description: Option<String>,
    /// Entries in the order they were added, so encoding is deterministic and repeated keys
    /// keep their relative order, which receivers may depend on.
    entries: Vec<(String, String)>,
}

impl Headers {
    /// An empty block: no status, no entries. It still encodes to `NATS/1.0\r\n\r\n`.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let h = Headers::new();
    /// assert!(h.is_empty() && h.status().is_none());
    /// ```
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Set `key` to one value, replacing all earlier values of that key.
    ///
    /// The value takes the place of the key's first entry, so re-setting a key does not
    /// move it to the end of the block.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let mut h = Headers::new();
    /// h.append("A", "1").append("A", "2").insert("A", "3");
    /// assert_eq!(h.get_all("A").collect::<Vec<_>>(), ["3"]);
    /// ```
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Headers {
        let key = key.into();
        let value = value.into();
        match self.entries.iter().position(|(k, _)| *k == key) {
            Some(first) => {
                self.entries[first].1 = value;
                let mut index = 0;
                self.entries.retain(|(k, _)| {
                    let keep = index <= first || *k != key;
                    index += 1;
                    keep
                });
            }
            None => self.entries.push((key, value)),
        }
        self
    }

    /// Add a value for `key` after any it already has.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let mut h = Headers::new();
    /// h.append("A", "1").append("A", "2");
    /// assert_eq!(h.len(), 2);
    /// ```
    pub fn append(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Headers {
        self.entries.push((key.into(), value.into()));
        self
    }

    /// The first value of `key`, if it has any.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let mut h = Headers::new();
    /// h.append("A", "1").append("A", "2");
    /// assert_eq!(h.get("A"), Some("1"));
    /// assert_eq!(h.get("a"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<&str> {
        // Not via get_all: its iterator borrows `key` for as long as `self`.
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in the order they were added.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let mut h = Headers::new();
    /// h.append("A", "1").append("B", "x").append("A", "2");
    /// assert_eq!(h.get_all("A").collect::<Vec<_>>(), ["1", "2"]);
    /// ```
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Remove every value of `key`; returns whether there was any.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let mut h = Headers::new();
    /// h.append("A", "1").append("A", "2");
    /// assert!(h.remove("A"));
    /// assert!(!h.remove("A"));
    /// assert!(h.is_empty());
    /// ```
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != key);
        self.entries.len() != before
    }

    /// All entries as `(key, value)` in block order, repeated keys included.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let mut h = Headers::new();
    /// h.append("A", "1").append("B", "2");
    /// assert_eq!(h.iter().collect::<Vec<_>>(), [("A", "1"), ("B", "2")]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of key/value entries (a key with two values counts twice).
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let mut h = Headers::new();
    /// h.append("A", "1").append("A", "2");
    /// assert_eq!(h.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries. A status-only block (no responders) is empty.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let h = Headers::parse(b"NATS/1.0 503\r\n\r\n").unwrap();
    /// assert!(h.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The status on the version line, such as 503 for no responders.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let h = Headers::parse(b"NATS/1.0 503\r\n\r\n").unwrap();
    /// assert_eq!(h.status(), Some(503));
    /// ```
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The text after the status, such as `No Responders`.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let h = Headers::parse(b"NATS/1.0 408 Request Timeout\r\n\r\n").unwrap();
    /// assert_eq!(h.description(), Some("Request Timeout"));
    /// ```
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Set the status line. An empty description is stored as none, because it would not
    /// survive a trip over the wire.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let mut h = Headers::new();
    /// h.set_status(503, Some("No Responders".to_string()));
    /// let mut out = Vec::new();
    /// h.encode(&mut out);
    /// assert_eq!(out, b"NATS/1.0 503 No Responders\r\n\r\n");
    /// ```
    pub fn set_status(&mut self, status: u16, description: Option<String>) {
        self.status = Some(status);
        self.description = description.filter(|d| !d.is_empty());
    }

    /// Check that the block can be encoded without breaking the framing: keys non-empty
    /// printable ASCII without `:` or whitespace, values and the description without CR or
    /// LF, status in 100..=999 (three digits, as the version line requires).
    ///
    /// ```
    /// use natsu::client::headers::{HeaderError, Headers};
    ///
    /// let mut h = Headers::new();
    /// h.insert("A", "1\r\nInjected: yes");
    /// assert_eq!(h.validate(), Err(HeaderError::BadValue("A".to_string())));
    /// ```
    pub fn validate(&self) -> Result<(), HeaderError> {
        if let Some(status) = self.status {
            if !(100..=999).contains(&status) {
                return Err(HeaderError::BadStatus);
            }
        }
        if let Some(d) = &self.description {
            // A description without a status could not be written at all.
            if self.status.is_none() || d.bytes().any(is_line_break) {
                return Err(HeaderError::BadDescription);
            }
        }
        for (k, v) in &self.entries {
            if !valid_key(k.as_bytes()) {
                return Err(HeaderError::BadKey(snippet(k.as_bytes())));
            }
            if v.bytes().any(is_line_break) {
                return Err(HeaderError::BadValue(k.clone()));
            }
        }
        Ok(())
    }

    /// Append the whole block, version line through the final blank line, to `out`.
    /// Call [`Headers::validate`] first: this does not check, so a CRLF in a value would
    /// end up on the wire.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let mut h = Headers::new();
    /// h.append("A", "1").append("A", "2").append("B", "x");
    /// let mut out = Vec::new();
    /// h.encode(&mut out);
    /// assert_eq!(out, b"NATS/1.0\r\nA: 1\r\nA: 2\r\nB: x\r\n\r\n");
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(VERSION);
        if let Some(status) = self.status {
            out.push(b' ');
            out.extend_from_slice(status.to_string().as_bytes());
            if let Some(d) = &self.description {
                out.push(b' ');
                out.extend_from_slice(d.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        for (k, v) in &self.entries {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The exact number of bytes [`Headers::encode`] appends: the header size that goes in
    /// the HPUB control line before the block is written.
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// assert_eq!(Headers::new().encoded_len(), b"NATS/1.0\r\n\r\n".len());
    /// ```
    pub fn encoded_len(&self) -> usize {
        let mut len = VERSION.len() + 2 + 2;
        if let Some(status) = self.status {
            len += 1 + decimal_digits(status);
            if let Some(d) = &self.description {
                len += 1 + d.len();
            }
        }
        for (k, v) in &self.entries {
            len += k.len() + 2 + v.len() + 2;
        }
        len
    }

    /// Parse a block as received in HMSG (the first `hdr_len` bytes of the message).
    ///
    /// Strict on the version line, since anything else there means the framing is off.
    /// Lenient where senders differ harmlessly: bare LF line ends, a missing final blank
    /// line, and spaces or tabs around values, which are trimmed as nats.go does (so a value
    /// with edge whitespace does not survive a round trip).
    ///
    /// ```
    /// use natsu::client::headers::Headers;
    ///
    /// let h = Headers::parse(b"NATS/1.0\r\nA: 1\r\nA: 2\r\nB:  x \r\n\r\n").unwrap();
    /// assert_eq!(h.get_all("A").collect::<Vec<_>>(), ["1", "2"]);
    /// assert_eq!(h.get("B"), Some("x"));
    /// assert!(Headers::parse(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    /// ```
    pub fn parse(block: &[u8]) -> Result<Headers, HeaderError> {
        let mut lines = block.split(|&b| b == b'\n').map(strip_cr);
        let mut headers = Headers::new();
        // split() always yields at least one piece, even for empty input.
        let first = lines.next().unwrap_or_default();
        parse_version_line(first, &mut headers)?;

        let mut ended = false;
        for line in lines {
            if ended {
                // The block length comes from the HMSG control line, so bytes after the
                // blank line mean the sender and we disagree about framing.
                if !line.iter().all(|&b| is_blank(b)) {
                    return Err(HeaderError::BadLine(snippet(line)));
                }
                continue;
            }
            if line.is_empty() {
                ended = true;
                continue;
            }
            let colon = match line.iter().position(|&b| b == b':') {
                Some(i) => i,
                None => return Err(HeaderError::BadLine(snippet(line))),
            };
            let (key, value) = (&line[..colon], trim_blank(&line[colon + 1..]));
            if !valid_key(key) {
                return Err(HeaderError::BadKey(snippet(key)));
            }
            // valid_key admits only ASCII, so this cannot fail; map rather than unwrap.
            let key = std::str::from_utf8(key).map_err(|_| HeaderError::BadKey(snippet(key)))?;
            // A CR left inside the value came from a lone CR, which no encoder produces.
            let value = match std::str::from_utf8(value) {
                Ok(v) if !v.bytes().any(is_line_break) => v,
                _ => return Err(HeaderError::BadValue(key.to_string())),
            };
            headers.entries.push((key.to_string(), value.to_string()));
        }
        Ok(headers)
    }
}

/// Why a header block was rejected, by [`Headers::validate`] or [`Headers::parse`].
///
/// Errors name the key, never the value, since values can carry tokens.
///
/// ```
/// use natsu::client::headers::{HeaderError, Headers};
///
/// let err = Headers::parse(b"NATS/1.0\r\nno colon\r\n\r\n").unwrap_err();
/// assert_eq!(err, HeaderError::BadLine("no colon".to_string()));
/// assert_eq!(err.to_string(), "malformed header line \"no colon\"");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The block does not start with a `NATS/1.0` version line.
    BadVersionLine,
    /// A line that is not `Key: Value`, or data after the closing blank line (a snippet).
    BadLine(String),
    /// A key that is empty or has whitespace, `:` or non-printable bytes (a snippet).
    BadKey(String),
    /// The value of this key has CR or LF in it, or is not UTF-8.
    BadValue(String),
    /// The status is not three digits in 100..=999.
    BadStatus,
    /// The description has CR or LF in it, is not UTF-8, or is set without a status.
    BadDescription,
}

impl fmt::Display for HeaderError {
    /// ```
    /// use natsu::client::headers::HeaderError;
    ///
    /// assert_eq!(HeaderError::BadStatus.to_string(), "invalid header status code");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::BadVersionLine => f.write_str("header block does not start with NATS/1.0"),
            HeaderError::BadLine(line) => write!(f, "malformed header line {line:?}"),
            HeaderError::BadKey(key) => write!(f, "invalid header key {key:?}"),
            HeaderError::BadValue(key) => write!(f, "invalid value for header {key:?}"),
            HeaderError::BadStatus => f.write_str("invalid header status code"),
            HeaderError::BadDescription => f.write_str("invalid header status description"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Read `NATS/1.0[ status[ description]]` into `headers`.
fn parse_version_line(line: &[u8], headers: &mut Headers) -> Result<(), HeaderError> {
    let rest = line.strip_prefix(VERSION).ok_or(HeaderError::BadVersionLine)?;
    // "NATS/1.01" or "NATS/1.0x" is another version line, not this one with a suffix.
    if let Some(&b) = rest.first() {
        if !is_blank(b) {
            return Err(HeaderError::BadVersionLine);
        }
    }
    let rest = trim_blank(rest);
    if rest.is_empty() {
        return Ok(());
    }
    let end = rest.iter().position(|&b| is_blank(b)).unwrap_or(rest.len());
    let code = &rest[..end];
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Err(HeaderError::BadStatus);
    }
    let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if status < 100 {
        return Err(HeaderError::BadStatus);
    }
    let description = trim_blank(&rest[end..]);
    let description = std::str::from_utf8(description).map_err(|_| HeaderError::BadDescription)?;
    if description.bytes().any(is_line_break) {
        return Err(HeaderError::BadDescription);
    }
    headers.status = Some(status);
    headers.description = (!description.is_empty()).then(|| description.to_string());
    Ok(())
}

/// Printable ASCII other than `:` (space and DEL are outside 0x21..=0x7e already).
fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b':')
}

fn is_line_break(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_blank(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_blank(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_blank(*last) {
            break;
        }
        s = rest;
    }
    s
}

fn decimal_digits(mut n: u16) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// A printable, bounded copy of untrusted bytes for an error message.
fn snippet(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(SNIPPET_MAX)];
    String::from_utf8_lossy(cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(h: &Headers) -> Vec<u8> {
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out.len(), h.encoded_len(), "encoded_len disagrees for {h:?}");
        out
    }

    fn round_trip(h: &Headers) {
        assert_eq!(h.validate(), Ok(()));
        let bytes = encoded(h);
        assert_eq!(Headers::parse(&bytes).as_ref(), Ok(h), "{}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn round_trips() {
        round_trip(&Headers::new());

        let mut h = Headers::new();
        h.append("A", "1").append("A", "2").append("B", "x");
        assert_eq!(encoded(&h), b"NATS/1.0\r\nA: 1\r\nA: 2\r\nB: x\r\n\r\n");
        round_trip(&h);

        let mut h = Headers::new();
        h.set_status(503, None);
        assert_eq!(encoded(&h), b"NATS/1.0 503\r\n\r\n");
        round_trip(&h);

        let mut h = Headers::new();
        h.set_status(100, Some("Idle Heartbeat".into()));
        h.append("Nats-Last-Consumer", "7").append("Nats-Last-Stream", "9");
        assert_eq!(
            encoded(&h),
            b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 7\r\nNats-Last-Stream: 9\r\n\r\n"
        );
        round_trip(&h);

        // Empty values and values with inner spaces and colons survive.
        let mut h = Headers::new();
        h.append("Empty", "").append("Url", "nats://a:1 b").append("Utf8", "héllo");
        round_trip(&h);
    }

    #[test]
    fn no_responders_bytes() {
        let h = Headers::parse(b"NATS/1.0 503\r\n\r\n").unwrap();
        assert_eq!(h.status(), Some(503));
        assert_eq!(h.description(), None);
        assert!(h.is_empty());

        let h = Headers::parse(b"NATS/1.0 503 No Responders\r\n\r\n").unwrap();
        assert_eq!(h.status(), Some(503));
        assert_eq!(h.description(), Some("No Responders"));
    }

    #[test]
    fn lenient_parsing() {
        type Case = (&'static [u8], &'static [(&'static str, &'static str)]);
        let cases: &[Case] = &[
            (b"NATS/1.0\n\n", &[]),
            (b"NATS/1.0\r\n", &[]),
            (b"NATS/1.0", &[]),
            (b"NATS/1.0\r\nA: 1\r\n", &[("A", "1")]),
            (b"NATS/1.0\nA: 1\nB: 2\n\n", &[("A", "1"), ("B", "2")]),
            (b"NATS/1.0\r\nA:1\r\n\r\n", &[("A", "1")]),
            (b"NATS/1.0\r\nA: \t 1 \t\r\n\r\n", &[("A", "1")]),
            (b"NATS/1.0\r\nA:\r\n\r\n", &[("A", "")]),
            (b"NATS/1.0\r\nA: x: y\r\n\r\n", &[("A", "x: y")]),
            (b"NATS/1.0 \r\nA: 1\r\n\r\n", &[("A", "1")]),
            (b"NATS/1.0\r\nA: 1\r\n\r\n\r\n", &[("A", "1")]),
        ];
        for (input, want) in cases {
            let h = Headers::parse(input)
                .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(input)));
            assert_eq!(h.iter().collect::<Vec<_>>(), *want, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(h.status(), None);
        }
        let h = Headers::parse(b"NATS/1.0  404   No  Messages \r\n\r\n").unwrap();
        assert_eq!((h.status(), h.description()), (Some(404), Some("No  Messages")));
    }

    #[test]
    fn malformed_rejected() {
        use HeaderError::*;
        let cases: &[(&[u8], HeaderError)] = &[
            (b"", BadVersionLine),
            (b"\r\n\r\n", BadVersionLine),
            (b"A: 1\r\n\r\n", BadVersionLine),
            (b"NATS/1.1\r\n\r\n", BadVersionLine),
            (b"NATS/1.01\r\n\r\n", BadVersionLine),
            (b"NATS/1.0503\r\n\r\n", BadVersionLine),
            (b"nats/1.0\r\n\r\n", BadVersionLine),
            (b" NATS/1.0\r\n\r\n", BadVersionLine),
            (b"NATS/1.0 50\r\n\r\n", BadStatus),
            (b"NATS/1.0 5030\r\n\r\n", BadStatus),
            (b"NATS/1.0 abc\r\n\r\n", BadStatus),
            (b"NATS/1.0 099\r\n\r\n", BadStatus),
            (b"NATS/1.0 No Responders\r\n\r\n", BadStatus),
            (b"NATS/1.0 503 \xff\r\n\r\n", BadDescription),
            (b"NATS/1.0\r\nno colon\r\n\r\n", BadLine("no colon".into())),
            (b"NATS/1.0\r\nA: 1\r\n\r\nB: 2\r\n", BadLine("B: 2".into())),
            (b"NATS/1.0\r\n: 1\r\n\r\n", BadKey("".into())),
            (b"NATS/1.0\r\nA B: 1\r\n\r\n", BadKey("A B".into())),
            (b"NATS/1.0\r\nA : 1\r\n\r\n", BadKey("A ".into())),
            (b"NATS/1.0\r\n A: 1\r\n\r\n", BadKey(" A".into())),
            (b"NATS/1.0\r\nA\x01: 1\r\n\r\n", BadKey("A\u{1}".into())),
            (b"NATS/1.0\r\nA: 1\r2\r\n\r\n", BadValue("A".into())),
            (b"NATS/1.0\r\nA: \xff\r\n\r\n", BadValue("A".into())),
        ];
        for (input, want) in cases {
            assert_eq!(
                Headers::parse(input).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn bad_line_snippet_is_bounded() {
        let mut input = b"NATS/1.0\r\n".to_vec();
        input.resize(input.len() + 10_000, b'x');
        match Headers::parse(&input) {
            Err(HeaderError::BadLine(s)) => assert_eq!(s.len(), SNIPPET_MAX),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn validate_catches_framing_breakers() {
        use HeaderError::*;
        let bad_value = |v: &str| {
            let mut h = Headers::new();
            h.append("K", "ok").append("V", v);
            h.validate()
        };
        assert_eq!(bad_value("a\r\nB: c"), Err(BadValue("V".into())));
        assert_eq!(bad_value("a\nb"), Err(BadValue("V".into())));
        assert_eq!(bad_value("a\rb"), Err(BadValue("V".into())));
        assert_eq!(bad_value("a: b\tc"), Ok(()));

        for key in ["", "A:B", "A B", "A\tB", "Ä", "A\r", "A\x7f"] {
            let mut h = Headers::new();
            h.insert(key, "1");
            assert!(matches!(h.validate(), Err(BadKey(_))), "{key:?}");
        }

        for status in [0, 99, 1000, u16::MAX] {
            let mut h = Headers::new();
            h.set_status(status, None);
            assert_eq!(h.validate(), Err(BadStatus), "{status}");
            assert_eq!(encoded(&h).len(), h.encoded_len());
        }
        let mut h = Headers::new();
        h.set_status(503, Some("No\r\nX: y".into()));
        assert_eq!(h.validate(), Err(BadDescription));
    }

    #[test]
    fn insert_replaces_in_place() {
        let mut h = Headers::new();
        h.append("A", "1").append("B", "x").append("A", "2").append("a", "lower");
        h.insert("A", "3");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("A", "3"), ("B", "x"), ("a", "lower")]);
        h.insert("C", "new");
        assert_eq!(h.get("C"), Some("new"));
        assert_eq!(h.len(), 4);
        assert!(h.remove("a"));
        assert_eq!(h.get("a"), None);
        assert_eq!(h.get("A"), Some("3"));
    }

    #[test]
    fn empty_description_is_none() {
        let mut h = Headers::new();
        h.set_status(503, Some(String::new()));
        assert_eq!(h.description(), None);
        round_trip(&h);
    }

    #[test]
    fn display_names_key_not_value() {
        let mut h = Headers::new();
        h.insert("Authorization", "secret\r\n");
        let msg = h.validate().unwrap_err().to_string();
        assert_eq!(msg, "invalid value for header \"Authorization\"");
        assert!(!msg.contains("secret"));
    }
}
