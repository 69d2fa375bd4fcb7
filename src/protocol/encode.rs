//! Writing protocol frames into an outbound buffer.
//!
//! Frames are appended to a connection's `Vec<u8>`; the connection's writer sends the whole
//! buffer with one syscall per event-loop pass, so encoding never does I/O.

/// Append `MSG subject sid [reply] size\r\npayload\r\n`, or the HMSG form when the message
/// carries a header block of `header_len` bytes at the front of `msg`.
///
/// ```
/// let mut out = Vec::new();
/// natsu::protocol::encode::msg(&mut out, b"foo", b"1", Some(b"inbox"), None, b"hi");
/// assert_eq!(out, b"MSG foo 1 inbox 2\r\nhi\r\n");
/// ```
#[inline]
pub fn msg(out: &mut Vec<u8>, subject: &[u8], sid: &[u8], reply: Option<&[u8]>, header_len: Option<usize>, msg: &[u8]) {
    let op: &[u8] = if header_len.is_some() { b"HMSG " } else { b"MSG " };
    frame(out, op, subject, Some(sid), reply, header_len, msg);
}

/// Append the line of a MSG (or HMSG) whose `len` bytes of message the caller sends after
/// it, then `\r\n` (a big payload written from where it is, not copied).
pub fn msg_head(out: &mut Vec<u8>, subject: &[u8], sid: &[u8], reply: Option<&[u8]>, header_len: Option<usize>, len: usize) {
    let op: &[u8] = if header_len.is_some() { b"HMSG " } else { b"MSG " };
    out.extend_from_slice(op);
    out.extend_from_slice(subject);
    out.push(b' ');
    out.extend_from_slice(sid);
    out.push(b' ');
    if let Some(r) = reply {
        out.extend_from_slice(r);
        out.push(b' ');
    }
    sizes(out, header_len, len);
}

/// Append `PUB subject [reply] size\r\npayload\r\n` (or HPUB with headers): the client side.
///
/// ```
/// let mut out = Vec::new();
/// natsu::protocol::encode::publish(&mut out, b"foo", None, None, b"hi");
/// assert_eq!(out, b"PUB foo 2\r\nhi\r\n");
/// ```
pub fn publish(out: &mut Vec<u8>, subject: &[u8], reply: Option<&[u8]>, header_len: Option<usize>, msg: &[u8]) {
    let op: &[u8] = if header_len.is_some() { b"HPUB " } else { b"PUB " };
    frame(out, op, subject, None, reply, header_len, msg);
}

/// `op subject [sid] [reply] [header_len] size\r\nmsg\r\n`: the shape MSG, HMSG, PUB and
/// HPUB share.
#[inline]
fn frame(
    out: &mut Vec<u8>,
    op: &[u8],
    subject: &[u8],
    sid: Option<&[u8]>,
    reply: Option<&[u8]>,
    header_len: Option<usize>,
    msg: &[u8],
) {
    out.reserve(op.len() + subject.len() + sid.map_or(0, <[u8]>::len) + reply.map_or(0, <[u8]>::len) + msg.len() + 32);
    out.extend_from_slice(op);
    out.extend_from_slice(subject);
    out.push(b' ');
    for arg in [sid, reply].into_iter().flatten() {
        out.extend_from_slice(arg);
        out.push(b' ');
    }
    sizes_and_payload(out, header_len, msg);
}

/// The header block nats-server sends a requester when nobody subscribes to the subject.
pub const NO_RESPONDERS_HDR: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// `-ERR 'text'\r\n`.
pub fn err(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"-ERR '");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"'\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parser::{Delivery, Op, Parser, Role};

    #[test]
    fn msg_head_then_payload_is_msg() {
        for (reply, hl, m) in [(None, None, &b"payload"[..]), (Some(&b"r.1"[..]), Some(4), &b"a\r\n\r\nbody"[..]), (None, Some(0), &b""[..])] {
            let mut whole = Vec::new();
            msg(&mut whole, b"s.t", b"12", reply, hl, m);
            let mut parts = Vec::new();
            msg_head(&mut parts, b"s.t", b"12", reply, hl, m.len());
            parts.extend_from_slice(m);
            parts.extend_from_slice(b"\r\n");
            assert_eq!(whole, parts);
        }
    }

    #[test]
    fn msg_round_trips_through_the_client_parser() {
        let mut out = Vec::new();
        msg(&mut out, b"a.b", b"sid9", Some(b"_INBOX.x"), Some(12), b"NATS/1.0\r\n\r\nhello");
        msg(&mut out, b"a", b"1", None, None, b"");
        let mut p = Parser::new(Role::Client, 4096, 1 << 20);
        let (op, used) = p.parse(&out).unwrap().unwrap();
        assert_eq!(
            op,
            Op::Msg(Delivery {
                subject: b"a.b",
                sid: b"sid9",
                reply: Some(b"_INBOX.x"),
                header_len: Some(12),
                msg: b"NATS/1.0\r\n\r\nhello"
            })
        );
        let (op, _) = p.parse(&out[used..]).unwrap().unwrap();
        assert_eq!(op, Op::Msg(Delivery { subject: b"a", sid: b"1", reply: None, header_len: None, msg: b"" }));
    }

    /// Every LMSG form round-trips through the leaf parser.
    #[test]
    fn leaf_msgs_round_trip_through_the_leaf_parser() {
        use crate::protocol::parser::Routed;
        type Case<'a> = (Option<&'a [u8]>, &'a [&'a [u8]], Option<usize>, &'a [u8]);
        let cases: [Case; 5] = [
            (None, &[], None, b"hi"),
            (Some(b"r"), &[], None, b"hi"),
            (Some(b"r"), &[b"q1", b"q2"], None, b""),
            (None, &[b"q"], Some(12), b"NATS/1.0\r\n\r\nhi"),
            (Some(b"r"), &[], Some(12), b"NATS/1.0\r\n\r\n"),
        ];
        for (reply, queues, h, body) in cases {
            let mut out = Vec::new();
            leaf_msg(&mut out, b"a.b", reply, queues, h, body);
            let mut p = Parser::new(Role::Leaf, 4096, 1 << 20);
            let (op, used) = p.parse(&out).unwrap().unwrap();
            assert_eq!(used, out.len());
            let qs = queues.join(&b' ');
            assert_eq!(op, Op::Routed(Routed { account: b"", subject: b"a.b", reply, queues: &qs, header_len: h, msg: body }));
        }
    }

    #[test]
    fn publish_frames() {
        let mut out = Vec::new();
        publish(&mut out, b"s", Some(b"r"), Some(2), b"hhpp");
        assert_eq!(out, b"HPUB s r 2 4\r\nhhpp\r\n");
        out.clear();
        err(&mut out, "Invalid Subject");
        assert_eq!(out, b"-ERR 'Invalid Subject'\r\n");
    }
}

/// Append a message for a route: `RMSG account subject [reply] size` with no queue groups,
/// `RMSG account subject + reply q… size` or `RMSG account subject | q… size` with some
/// (the groups the receiving server is to deliver to), or the HMSG form with a header size.
///
/// ```
/// let mut out = Vec::new();
/// let queues: [&[u8]; 2] = [b"q1", b"q2"];
/// natsu::protocol::encode::routed(&mut out, b"$G", b"foo", Some(b"r"), &queues, None, b"hi");
/// assert_eq!(out, b"RMSG $G foo + r q1 q2 2\r\nhi\r\n");
/// ```
pub fn routed(out: &mut Vec<u8>, account: &[u8], subject: &[u8], reply: Option<&[u8]>, queues: &[&[u8]], header_len: Option<usize>, msg: &[u8]) {
    server_msg(out, Some(account), subject, reply, queues, header_len, msg);
}

/// Append a message for a leaf-node connection: the route forms without the account (one
/// leaf connection carries one account), `LMSG` where a route has `RMSG`.
///
/// ```
/// let mut out = Vec::new();
/// let queues: [&[u8]; 1] = [b"q"];
/// natsu::protocol::encode::leaf_msg(&mut out, b"foo", None, &queues, None, b"hi");
/// assert_eq!(out, b"LMSG foo | q 2\r\nhi\r\n");
/// ```
pub fn leaf_msg(out: &mut Vec<u8>, subject: &[u8], reply: Option<&[u8]>, queues: &[&[u8]], header_len: Option<usize>, msg: &[u8]) {
    server_msg(out, None, subject, reply, queues, header_len, msg);
}

/// RMSG (with `account`) or LMSG (without), and their HMSG forms.
fn server_msg(out: &mut Vec<u8>, account: Option<&[u8]>, subject: &[u8], reply: Option<&[u8]>, queues: &[&[u8]], header_len: Option<usize>, msg: &[u8]) {
    let op: &[u8] = match (header_len, account) {
        (Some(_), _) => b"HMSG ",
        (None, Some(_)) => b"RMSG ",
        (None, None) => b"LMSG ",
    };
    out.reserve(op.len() + account.map_or(0, <[u8]>::len) + subject.len() + reply.map_or(0, <[u8]>::len) + queues.iter().map(|q| q.len() + 1).sum::<usize>() + msg.len() + 32);
    out.extend_from_slice(op);
    if let Some(account) = account {
        out.extend_from_slice(account);
        out.push(b' ');
    }
    out.extend_from_slice(subject);
    out.push(b' ');
    match (reply, queues.is_empty()) {
        (Some(r), false) => {
            out.extend_from_slice(b"+ ");
            out.extend_from_slice(r);
            out.push(b' ');
        }
        (None, false) => out.extend_from_slice(b"| "),
        (Some(r), true) => {
            out.extend_from_slice(r);
            out.push(b' ');
        }
        (None, true) => {}
    }
    for q in queues {
        out.extend_from_slice(q);
        out.push(b' ');
    }
    sizes_and_payload(out, header_len, msg);
}

/// `[header_len ]size\r\nmsg\r\n`: how every message frame ends.
#[inline]
fn sizes_and_payload(out: &mut Vec<u8>, header_len: Option<usize>, msg: &[u8]) {
    sizes(out, header_len, msg.len());
    out.extend_from_slice(msg);
    out.extend_from_slice(b"\r\n");
}

/// `[header_len ]len\r\n`.
#[inline]
fn sizes(out: &mut Vec<u8>, header_len: Option<usize>, len: usize) {
    let mut num = itoa::Buffer::new();
    if let Some(h) = header_len {
        out.extend_from_slice(num.format(h).as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(num.format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}
