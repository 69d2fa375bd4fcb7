//! nats-proxy's subject mapping: an HTTP request for `METHOD /a/b` travels on the NATS subject
//! `METHOD:.a.b` (the path, percent-decoded as Go's `URL.Path`, with `/` turned into `.`), and
//! a service's route `/users/:id` listens on `GET:.users.*`.
//!
//! Where natsu differs, on purpose:
//!
//! - a path that cannot be a subject is refused before anything is published
//!   ([`BadPath`]): white space or control bytes, `*` or `>`, an empty token (`//`, a
//!   trailing `/`, `..`), a subject too long for the broker's control line. nats-proxy
//!   publishes such paths as they are; a space breaks the protocol line and the broker cuts
//!   the gateway's connection off;
//! - the root path `/` maps to `METHOD:` (nats-proxy's `METHOD:.` has an empty token, so no
//!   service could ever subscribe to it).

use std::borrow::Cow;
use std::fmt;

/// The broker's default `max_control_line`.
pub const MAX_CONTROL_LINE: usize = 4096;
/// Room a request's PUB line needs besides the subject: `PUB ` + ` ` + an inbox reply
/// subject + ` ` + a size + CRLF.
const PUB_OVERHEAD: usize = 4 + 1 + 64 + 1 + 10 + 2;
/// The longest subject a request may travel on.
pub const MAX_SUBJECT: usize = MAX_CONTROL_LINE - PUB_OVERHEAD;

/// Why a path cannot be a subject; the text is the HTTP 400 answer's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadPath {
    NotAbsolute,
    BadEscape,
    Space,
    Control,
    Wildcard,
    EmptyToken,
    TooLong,
}

impl fmt::Display for BadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadPath::NotAbsolute => "path must start with /",
            BadPath::BadEscape => "path has an invalid percent-escape",
            BadPath::Space => "path cannot contain white space",
            BadPath::Control => "path cannot contain control characters",
            BadPath::Wildcard => "path cannot contain * or >",
            BadPath::EmptyToken => "path cannot contain an empty segment",
            BadPath::TooLong => "path is too long",
        })
    }
}

impl std::error::Error for BadPath {}

/// Percent-decode a path as Go's `URL.Path` does (`+` stays `+`); invalid UTF-8 after
/// decoding or a `%` without two hex digits is refused.
pub fn decode_path(raw: &str) -> Result<Cow<'_, str>, BadPath> {
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(BadPath::BadEscape);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(raw).decode_utf8().map_err(|_| BadPath::BadEscape)
}

/// The subject a request for `method` and raw (still percent-encoded) `path` travels on.
pub fn request_subject(method: &str, raw_path: &str) -> Result<String, BadPath> {
    let path = decode_path(raw_path)?;
    if !path.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    let mut subject = String::with_capacity(method.len() + 1 + path.len());
    subject.push_str(method);
    subject.push(':');
    if path != "/" {
        for c in path.chars() {
            match c {
                '/' => subject.push('.'),
                '*' | '>' => return Err(BadPath::Wildcard),
                c if c.is_whitespace() => return Err(BadPath::Space),
                c if c.is_control() => return Err(BadPath::Control),
                c => subject.push(c),
            }
        }
        // `METHOD:` then `.tok.tok`: every token after the first must be non-empty.
        if subject[method.len() + 1..].split('.').skip(1).any(str::is_empty) {
            return Err(BadPath::EmptyToken);
        }
    }
    if subject.len() > MAX_SUBJECT {
        return Err(BadPath::TooLong);
    }
    Ok(subject)
}

/// A service route: the subject it listens on and where its `:name` variables sit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePattern {
    /// `METHOD:.users.*` for `/users/:id`.
    pub subject: String,
    /// Each variable's name and its index among the path's `/`-separated segments (the
    /// leading empty one is 0, as nats-proxy counts).
    pub params: Vec<(String, usize)>,
}

/// The subject and variables of a route `template` such as `/users/:id/posts`.
pub fn route_pattern(method: &str, template: &str) -> Result<RoutePattern, BadPath> {
    if !template.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    let mut params = Vec::new();
    let mut concrete = String::with_capacity(template.len());
    for (i, seg) in template.split('/').enumerate() {
        if i > 0 {
            concrete.push('/');
        }
        match seg.strip_prefix(':') {
            Some(name) if !name.is_empty() => {
                params.push((name.to_string(), i));
                concrete.push_str("_");
            }
            _ => concrete.push_str(seg),
        }
    }
    let mut subject = request_subject(method, &concrete)?;
    if !params.is_empty() {
        // Put the wildcards where the placeholders were.
        let prefix = method.len() + 1;
        let mut tokens: Vec<&str> = subject[prefix..].split('.').collect();
        for (_, i) in &params {
            tokens[*i] = "*";
        }
        subject = format!("{}{}", &subject[..prefix], tokens.join("."));
    }
    Ok(RoutePattern { subject, params })
}

/// The value of the path segment at `index` of a request path (percent-decoded), or `""`.
pub fn path_segment(path: &str, index: usize) -> Cow<'_, str> {
    match path.split('/').nth(index) {
        Some(seg) => percent_encoding::percent_decode_str(seg).decode_utf8_lossy(),
        None => Cow::Borrowed(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_subjects() {
        assert_eq!(request_subject("GET", "/users/42").unwrap(), "GET:.users.42");
        assert_eq!(request_subject("POST", "/a/b.c").unwrap(), "POST:.a.b.c");
        assert_eq!(request_subject("GET", "/").unwrap(), "GET:");
        assert_eq!(request_subject("GET", "/j%C3%B6rg").unwrap(), "GET:.jörg");
        assert_eq!(request_subject("GET", "/a%2Fb").unwrap(), "GET:.a.b");
        assert_eq!(request_subject("GET", "/a+b").unwrap(), "GET:.a+b");
    }

    #[test]
    fn paths_that_cannot_be_subjects() {
        for (path, why) in [
            ("users", BadPath::NotAbsolute),
            ("/a%20b", BadPath::Space),
            ("/a\tb", BadPath::Space),
            ("/a%0Db", BadPath::Space),
            ("/a%00b", BadPath::Control),
            ("/a%7Fb", BadPath::Control),
            ("/a/*", BadPath::Wildcard),
            ("/a/%3E", BadPath::Wildcard),
            ("/x*y", BadPath::Wildcard),
            ("/a//b", BadPath::EmptyToken),
            ("/a/", BadPath::EmptyToken),
            ("//", BadPath::EmptyToken),
            ("/a..b", BadPath::EmptyToken),
            ("/.a", BadPath::EmptyToken),
            ("/a%", BadPath::BadEscape),
            ("/a%4", BadPath::BadEscape),
            ("/a%zz", BadPath::BadEscape),
            ("/a%FF", BadPath::BadEscape),
        ] {
            assert_eq!(request_subject("GET", path), Err(why), "{path}");
        }
        let long = format!("/{}", "a".repeat(MAX_SUBJECT));
        assert_eq!(request_subject("GET", &long), Err(BadPath::TooLong));
        let fits = format!("/{}", "a".repeat(MAX_SUBJECT - 5));
        assert!(request_subject("GET", &fits).is_ok());
    }

    #[test]
    fn route_patterns() {
        let p = route_pattern("GET", "/users/:id/posts/:post").unwrap();
        assert_eq!(p.subject, "GET:.users.*.posts.*");
        assert_eq!(p.params, vec![("id".to_string(), 2), ("post".to_string(), 4)]);
        assert_eq!(path_segment("/users/42/posts/j%C3%B6", 2), "42");
        assert_eq!(path_segment("/users/42/posts/j%C3%B6", 4), "jö");
        assert_eq!(path_segment("/users", 4), "");
        assert_eq!(route_pattern("GET", "/").unwrap().subject, "GET:");
        assert_eq!(route_pattern("PUT", "/:a").unwrap().subject, "PUT:.*");
        assert!(route_pattern("GET", "/a//b").is_err());
        assert!(route_pattern("GET", "a").is_err());
    }
}
