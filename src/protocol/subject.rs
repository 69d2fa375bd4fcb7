//! Subject and queue-name validation.
//!
//! A NATS subject is a list of tokens separated by `.`. In a subscription, a token that is
//! exactly `*` matches any one token and a token that is exactly `>` (only allowed last)
//! matches one or more remaining tokens. Inside a longer token `*` and `>` are ordinary
//! characters: nats-server v2.9 accepts `SUB foo* 1` and delivers `PUB foo*` to it, and natsu
//! does the same on purpose so clients that work against the reference keep working.
//!
//! Where natsu is stricter than the reference: every byte `<= 0x20` (space, tab, CR, LF and
//! the other control characters) and `0x7f` (DEL) is refused anywhere in a subject or queue
//! name. The reference only refuses whitespace, but a control byte in a subject is never
//! intended and would corrupt the line-oriented protocol output of other tools.

/// Token separator.
const TSEP: u8 = b'.';
/// Single-token wildcard, when it is a whole token.
const PWC: &[u8] = b"*";
/// Tail wildcard (one or more tokens), when it is a whole last token.
const FWC: &[u8] = b">";

/// Whether `b` may never appear in a subject or queue name: whitespace, control bytes, DEL.
#[inline]
fn forbidden_byte(b: u8) -> bool {
    b <= 0x20 || b == 0x7f
}

/// A subscription subject: non-empty tokens separated by `.`; `*` and `>` are wildcards only
/// as a whole token and `>` only as the last token (inside a longer token they are ordinary
/// characters, as in nats-server); no byte `<= 0x20` and no `0x7f` anywhere.
///
/// ```
/// use natsu::protocol::subject::valid_subject;
/// assert!(valid_subject(b"foo.*.bar.>"));
/// assert!(!valid_subject(b"foo.>.bar"));
/// assert!(!valid_subject(b"foo..bar"));
/// ```
pub fn valid_subject(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut seen_fwc = false;
    for tok in tokens(s) {
        // Anything after `>` can never be reached by a match, so the reference refuses it.
        if tok.is_empty() || seen_fwc {
            return false;
        }
        if tok.iter().any(|&b| forbidden_byte(b)) {
            return false;
        }
        if tok == FWC {
            seen_fwc = true;
        }
    }
    true
}

/// A publish subject as a pedantic client must send it: [`valid_subject`] and no wildcard
/// tokens (`*` or `>` as a whole token). `foo*` is literal and therefore accepted, as in
/// nats-server.
///
/// ```
/// use natsu::protocol::subject::valid_literal_subject;
/// assert!(valid_literal_subject(b"foo.bar"));
/// assert!(!valid_literal_subject(b"foo.*"));
/// ```
pub fn valid_literal_subject(s: &[u8]) -> bool {
    valid_subject(s) && tokens(s).all(|t| t != PWC && t != FWC)
}

/// A queue group name: non-empty, no whitespace, control bytes or DEL. Dots and wildcard
/// characters carry no meaning in a queue name, so they are allowed.
///
/// ```
/// use natsu::protocol::subject::valid_queue;
/// assert!(valid_queue(b"workers"));
/// assert!(!valid_queue(b"two words"));
/// ```
pub fn valid_queue(q: &[u8]) -> bool {
    !q.is_empty() && !q.iter().any(|&b| forbidden_byte(b))
}

/// Whether a publish subject can ever be delivered: non-empty, no byte `<= 0x20` or `0x7f`,
/// and no empty token (leading or trailing `.`, or `..`).
///
/// Wildcard characters are allowed, because a non-pedantic client may publish to `foo.*`
/// and the reference delivers it. Such a subject is matched as if `*` were an ordinary
/// token: it reaches `foo.*` and `foo.>` subscribers, not `foo.bar` ones.
///
/// ```
/// use natsu::protocol::subject::deliverable_subject;
/// assert!(deliverable_subject(b"foo.*"));
/// assert!(!deliverable_subject(b"foo..bar"));
/// ```
pub fn deliverable_subject(s: &[u8]) -> bool {
    if s.is_empty() || s[0] == TSEP || s[s.len() - 1] == TSEP {
        return false;
    }
    let mut prev_sep = false;
    for &b in s {
        if forbidden_byte(b) {
            return false;
        }
        let sep = b == TSEP;
        if sep && prev_sep {
            return false;
        }
        prev_sep = sep;
    }
    true
}

/// Splits a subject into its tokens. An empty subject yields one empty token, and empty
/// tokens are kept (`"a..b"` yields `a`, ``, `b`), so validation can see them.
///
/// ```
/// use natsu::protocol::subject::tokens;
/// let t: Vec<&[u8]> = tokens(b"foo.bar").collect();
/// assert_eq!(t, vec![&b"foo"[..], &b"bar"[..]]);
/// ```
pub fn tokens(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| b == TSEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_subjects() {
        // (subject, valid_subject, valid_literal_subject)
        let table: &[(&[u8], bool, bool)] = &[
            (b"foo", true, true),
            (b"foo.bar", true, true),
            (b"foo.bar.baz.qux", true, true),
            (b"*", true, false),
            (b">", true, false),
            (b"foo.*", true, false),
            (b"*.bar", true, false),
            (b"foo.*.baz", true, false),
            (b"foo.>", true, false),
            (b"foo.*.>", true, false),
            (b"*.*.*", true, false),
            // Wildcard characters inside a longer token are literal, as in nats-server.
            (b"foo*", true, true),
            (b"foo.*bar", true, true),
            (b"foo.b>r", true, true),
            (b"foo.>>", true, true),
            (b"foo.**", true, true),
            (b"$SYS.REQ.SERVER.PING", true, true),
            (b"_INBOX.abc123.*", true, false),
            (b"a-b_c:d/e", true, true),
            ("ünï.cødé".as_bytes(), true, true),
            // `>` only last.
            (b"foo.>.bar", false, false),
            (b">.foo", false, false),
            (b">.>", false, false),
            // Empty tokens.
            (b"", false, false),
            (b".", false, false),
            (b"..", false, false),
            (b".foo", false, false),
            (b"foo.", false, false),
            (b"foo..bar", false, false),
            (b"foo.*.", false, false),
            // Whitespace, control bytes, DEL.
            (b"fo o", false, false),
            (b"foo\tbar", false, false),
            (b"foo\r", false, false),
            (b"foo\n", false, false),
            (b"\x00", false, false),
            (b"a\x01b", false, false),
            (b"a\x1fb", false, false),
            (b"a\x7fb", false, false),
            (b" foo", false, false),
            (b"foo. .bar", false, false),
        ];
        for &(s, sub, lit) in table {
            let shown = String::from_utf8_lossy(s);
            assert_eq!(valid_subject(s), sub, "valid_subject({shown:?})");
            assert_eq!(
                valid_literal_subject(s),
                lit,
                "valid_literal_subject({shown:?})"
            );
        }
    }

    #[test]
    fn queue_names() {
        let table: &[(&[u8], bool)] = &[
            (b"workers", true),
            (b"q.1", true),
            (b"*", true),
            (b">", true),
            (b"..", true),
            (b"", false),
            (b"two words", false),
            (b"tab\t", false),
            (b"cr\r", false),
            (b"lf\n", false),
            (b"\x00", false),
            (b"del\x7f", false),
        ];
        for &(q, ok) in table {
            assert_eq!(
                valid_queue(q),
                ok,
                "valid_queue({:?})",
                String::from_utf8_lossy(q)
            );
        }
    }

    #[test]
    fn deliverable_subjects() {
        let table: &[(&[u8], bool)] = &[
            (b"foo", true),
            (b"foo.bar", true),
            (b"foo.*", true),
            (b"foo.>", true),
            (b">", true),
            (b"*", true),
            (b"foo.>.bar", true),
            (b"foo*", true),
            (b"a", true),
            (b"a.b.c.d.e.f.g", true),
            (b"", false),
            (b".", false),
            (b"..", false),
            (b".foo", false),
            (b"foo.", false),
            (b"foo..bar", false),
            (b"foo...bar", false),
            (b"fo o", false),
            (b"foo\t", false),
            (b"foo\r\n", false),
            (b"\x01", false),
            (b"a\x7f", false),
        ];
        for &(s, ok) in table {
            assert_eq!(
                deliverable_subject(s),
                ok,
                "deliverable_subject({:?})",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn tokenizing() {
        let table: &[(&[u8], &[&[u8]])] = &[
            (b"foo", &[b"foo"]),
            (b"foo.bar.baz", &[b"foo", b"bar", b"baz"]),
            (b"foo.*.>", &[b"foo", b"*", b">"]),
            (b"", &[b""]),
            (b"a..b", &[b"a", b"", b"b"]),
            (b".a.", &[b"", b"a", b""]),
        ];
        for &(s, want) in table {
            let got: Vec<&[u8]> = tokens(s).collect();
            assert_eq!(got, want, "tokens({:?})", String::from_utf8_lossy(s));
        }
    }
}
