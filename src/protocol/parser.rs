//! The incremental protocol scanner.
//!
//! [`Parser::parse`] looks at the unconsumed bytes at the front of a read buffer and returns the
//! next complete operation with the number of bytes it spans, or `Ok(None)` when more bytes are
//! needed. Operations borrow from the buffer (no copy); the caller drops the consumed prefix.
//! Because a half-received command is simply looked at again once more bytes arrive, a
//! command split at any byte boundary parses exactly as if it came in one read. To keep that
//! cheap for big payloads the parser remembers how many bytes a pending PUB needs and does not
//! rescan until they are there.
//!
//! Line ends and argument separators are found with memchr. Errors follow nats-server: see
//! [`ParseError`].

use memchr::memchr;

/// Which side of the protocol this parser reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The broker reading a client: CONNECT, PUB, HPUB, SUB, UNSUB, PING, PONG (+OK, -ERR, INFO).
    Server,
    /// A client reading the broker: INFO, MSG, HMSG, PING, PONG, +OK, -ERR.
    Client,
    /// A server reading another server over a route: INFO, CONNECT, RS+, RS-, LS+, LS-,
    /// RMSG, HMSG, LMSG, PING, PONG, +OK, -ERR (nats-server 2.9's route protocol).
    Route,
    /// A server reading another over a leaf-node connection: INFO, CONNECT, LS+, LS-, LMSG,
    /// HMSG, PING, PONG, +OK, -ERR. One leaf connection carries one account, so no op
    /// names one: the account of [`Op::RouteSub`], [`Op::RouteUnsub`] and [`Routed`] is
    /// empty, meaning the connection's own.
    Leaf,
}

/// One protocol operation, borrowing from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// `CONNECT {json}`: the JSON text.
    Connect(&'a [u8]),
    /// `INFO {json}`: the JSON text.
    Info(&'a [u8]),
    /// `PUB subject [reply] size` or `HPUB subject [reply] hdr_len total_len`.
    Pub(Publish<'a>),
    /// `MSG subject sid [reply] size` or `HMSG subject sid [reply] hdr_len total_len`.
    Msg(Delivery<'a>),
    /// `SUB subject [queue] sid`.
    Sub { subject: &'a [u8], queue: Option<&'a [u8]>, sid: &'a [u8] },
    /// `UNSUB sid [max]`; a max that is not a number is ignored, as nats-server does.
    Unsub { sid: &'a [u8], max: Option<u64> },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR 'text'`: the text after `-ERR `.
    Err(&'a [u8]),
    /// `RS+ account subject [queue weight]` from a route (or `LS+ origin account ...`, whose
    /// origin cluster is dropped: natsu has no leaf nodes to keep it for).
    RouteSub { account: &'a [u8], subject: &'a [u8], queue: Option<&'a [u8]>, weight: u32 },
    /// `RS- account subject [queue]` (or `LS-`).
    RouteUnsub { account: &'a [u8], subject: &'a [u8], queue: Option<&'a [u8]> },
    /// `RMSG`, `HMSG` or `LMSG` from a route.
    Routed(Routed<'a>),
}

/// A message from a route: `RMSG account subject [+ reply q… | | q… | reply] size`, the
/// HMSG form with a header size before the total, or `LMSG origin account …` (always
/// with headers).
#[derive(Debug, PartialEq, Eq)]
pub struct Routed<'a> {
    pub account: &'a [u8],
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    /// The queue groups the sending server picked this server for, space separated (empty:
    /// none, and then no queue group here gets the message).
    pub queues: &'a [u8],
    /// `Some` marks HMSG/LMSG.
    pub header_len: Option<usize>,
    pub msg: &'a [u8],
}

/// A message published by a client.
#[derive(Debug, PartialEq, Eq)]
pub struct Publish<'a> {
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    /// Length of the header block at the front of `msg` (0 for PUB). `Some` marks HPUB.
    pub header_len: Option<usize>,
    /// Headers (if any) followed by the payload, without the trailing CRLF.
    pub msg: &'a [u8],
}

/// A message delivered to a client.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery<'a> {
    pub subject: &'a [u8],
    pub sid: &'a [u8],
    pub reply: Option<&'a [u8]>,
    /// `Some` marks HMSG.
    pub header_len: Option<usize>,
    pub msg: &'a [u8],
}

/// Why a byte stream is not the NATS protocol. Each maps to what nats-server sends and does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// An op that is not one of the protocol's, or a payload not followed by CRLF.
    UnknownOp,
    /// A control line longer than the limit.
    MaxControlLine,
    /// A PUB whose declared size is over max_payload (checked on the control line).
    MaxPayload,
    /// Wrong number or form of arguments: nats-server closes such a connection without an -ERR.
    BadArgs,
    /// The peer sent `-ERR`: a client that does so is closed.
    PeerError,
}

impl ParseError {
    /// The `-ERR` line the broker sends before closing, if any.
    pub fn err_line(self) -> Option<&'static [u8]> {
        match self {
            ParseError::UnknownOp => Some(b"-ERR 'Unknown Protocol Operation'\r\n"),
            ParseError::MaxControlLine => Some(b"-ERR 'maximum control line exceeded'\r\n"),
            ParseError::MaxPayload => Some(b"-ERR 'Maximum Payload Violation'\r\n"),
            ParseError::BadArgs | ParseError::PeerError => None,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParseError::UnknownOp => "unknown protocol operation",
            ParseError::MaxControlLine => "maximum control line exceeded",
            ParseError::MaxPayload => "maximum payload violation",
            ParseError::BadArgs => "malformed protocol arguments",
            ParseError::PeerError => "peer sent -ERR",
        })
    }
}

impl std::error::Error for ParseError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Connect,
    Info,
    Pub,
    HPub,
    Msg,
    HMsg,
    Sub,
    Unsub,
    Ping,
    Pong,
    Ok,
    Err,
    RSub,
    RUnsub,
    LSub,
    LUnsub,
    RMsg,
    LMsg,
}

/// Which roles read an op (a bit per [`Role`]).
const SERVER: u8 = 1;
const CLIENT: u8 = 2;
const ROUTE: u8 = 4;
const LEAF: u8 = 8;
const ALL: u8 = SERVER | CLIENT | ROUTE | LEAF;

/// Op names, upper case, with the roles that accept them. A server ignores a client's INFO
/// and +OK, as nats-server does; a client never sends MSG. HMSG from a route has the route
/// form (account first).
const OPS: &[(&[u8], Kind, u8)] = &[
    (b"PUB", Kind::Pub, SERVER),
    (b"HPUB", Kind::HPub, SERVER),
    (b"SUB", Kind::Sub, SERVER),
    (b"UNSUB", Kind::Unsub, SERVER),
    (b"CONNECT", Kind::Connect, SERVER | ROUTE | LEAF),
    (b"MSG", Kind::Msg, CLIENT),
    (b"HMSG", Kind::HMsg, CLIENT | ROUTE | LEAF),
    (b"INFO", Kind::Info, ALL),
    (b"PING", Kind::Ping, ALL),
    (b"PONG", Kind::Pong, ALL),
    (b"+OK", Kind::Ok, ALL),
    (b"-ERR", Kind::Err, ALL),
    (b"RS+", Kind::RSub, ROUTE),
    (b"RS-", Kind::RUnsub, ROUTE),
    (b"LS+", Kind::LSub, ROUTE | LEAF),
    (b"LS-", Kind::LUnsub, ROUTE | LEAF),
    (b"RMSG", Kind::RMsg, ROUTE),
    (b"LMSG", Kind::LMsg, ROUTE | LEAF),
];

const MAX_ARGS: usize = 5;

/// The incremental scanner; one per connection.
#[derive(Debug)]
pub struct Parser {
    role: Role,
    max_control_line: usize,
    max_payload: usize,
    /// Whether HPUB is allowed (a server's client negotiated headers in CONNECT).
    headers: bool,
    /// Bytes the pending message needs in total (from the buffer's front) before it is worth
    /// looking again; 0 when nothing is pending.
    need: usize,
}

impl Parser {
    /// A parser with nats-server's limits for the given role.
    ///
    /// ```
    /// use natsu::protocol::parser::{Op, Parser, Role};
    /// let mut p = Parser::new(Role::Server, 4096, 1 << 20);
    /// let (op, used) = p.parse(b"PING\r\n").unwrap().unwrap();
    /// assert_eq!((op, used), (Op::Ping, 6));
    /// ```
    pub fn new(role: Role, max_control_line: usize, max_payload: usize) -> Parser {
        Parser { role, max_control_line, max_payload, headers: false, need: 0 }
    }

    /// Allow HPUB (the client sent `"headers":true` in CONNECT).
    pub fn set_headers(&mut self, headers: bool) {
        self.headers = headers;
    }

    /// Change the payload limit (a client learns it from INFO).
    pub fn set_max_payload(&mut self, max_payload: usize) {
        self.max_payload = max_payload;
    }

    /// Bytes the buffer must hold before [`Parser::parse`] can make progress (0 if unknown).
    pub fn needed(&self) -> usize {
        self.need
    }

    /// Parse the next operation at the front of `buf`.
    ///
    /// Returns `Ok(Some((op, consumed)))`, `Ok(None)` when `buf` holds only part of an
    /// operation, or the protocol error that ends the connection.
    pub fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Op<'a>, usize)>, ParseError> {
        if buf.is_empty() || buf.len() < self.need {
            return Ok(None);
        }
        if let Some(done) = self.fast_message(buf) {
            return Ok(Some(done));
        }
        self.parse_general(buf)
    }

    /// [`Parser::parse`] for every op and form (the fast path's fallback).
    fn parse_general<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Op<'a>, usize)>, ParseError> {
        let (kind, name_len) = match self.op_kind(buf)? {
            Some(k) => k,
            None => return Ok(None),
        };
        // nats-server limits the arguments (what follows the op and one blank), not the line.
        let arg_len = |line_end: usize| line_end.saturating_sub(name_len + 1);
        let nl = match memchr(b'\n', buf) {
            Some(i) => i,
            None => {
                let end = if buf.ends_with(b"\r") { buf.len() - 1 } else { buf.len() };
                if arg_len(end) > self.max_control_line {
                    return Err(ParseError::MaxControlLine);
                }
                return Ok(None);
            }
        };
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
        if arg_len(line_end) > self.max_control_line {
            return Err(ParseError::MaxControlLine);
        }
        let line = &buf[..line_end];
        // An op with nothing at all after it is not an op to nats-server; with blank
        // arguments it is malformed.
        let no_args = if line_end == name_len { ParseError::UnknownOp } else { ParseError::BadArgs };
        let body_start = nl + 1;
        let mut args: [&'a [u8]; MAX_ARGS] = [&[]; MAX_ARGS];
        let op = match kind {
            Kind::Ping => Op::Ping,
            Kind::Pong => Op::Pong,
            Kind::Ok => Op::Ok,
            Kind::Err => {
                // A client's -ERR ends it; a route's is reported by whoever reads the route.
                if self.role == Role::Server {
                    return Err(ParseError::PeerError);
                }
                Op::Err(rest_after_op(line))
            }
            Kind::Connect => Op::Connect(rest_after_op(line)),
            Kind::Info => Op::Info(rest_after_op(line)),
            Kind::Sub => match split_args(line, &mut args)? {
                0 => return Err(no_args),
                2 => Op::Sub { subject: args[0], queue: None, sid: args[1] },
                3 => Op::Sub { subject: args[0], queue: Some(args[1]), sid: args[2] },
                _ => return Err(ParseError::BadArgs),
            },
            Kind::Unsub => match split_args(line, &mut args)? {
                1 => Op::Unsub { sid: args[0], max: None },
                2 => Op::Unsub { sid: args[0], max: parse_size(args[1]).map(|m| m as u64) },
                0 => return Err(no_args),
                _ => return Err(ParseError::BadArgs),
            },
            // On a leaf connection: `LS+ subject [queue weight]`, `LS- subject [queue]`.
            Kind::LSub if self.role == Role::Leaf => match split_args(line, &mut args)? {
                1 => Op::RouteSub { account: b"", subject: args[0], queue: None, weight: 0 },
                3 => {
                    let weight = parse_size(args[2]).and_then(|w| u32::try_from(w).ok()).ok_or(ParseError::BadArgs)?;
                    Op::RouteSub { account: b"", subject: args[0], queue: Some(args[1]), weight }
                }
                0 => return Err(no_args),
                _ => return Err(ParseError::BadArgs),
            },
            Kind::LUnsub if self.role == Role::Leaf => match split_args(line, &mut args)? {
                1 => Op::RouteUnsub { account: b"", subject: args[0], queue: None },
                2 => Op::RouteUnsub { account: b"", subject: args[0], queue: Some(args[1]) },
                0 => return Err(no_args),
                _ => return Err(ParseError::BadArgs),
            },
            Kind::RSub | Kind::LSub => {
                let n = split_args(line, &mut args)?;
                // LS+ names the origin cluster first.
                let off = usize::from(kind == Kind::LSub);
                match n.checked_sub(off) {
                    Some(2) => Op::RouteSub { account: args[off], subject: args[off + 1], queue: None, weight: 0 },
                    Some(4) => {
                        let weight = parse_size(args[off + 3]).and_then(|w| u32::try_from(w).ok()).ok_or(ParseError::BadArgs)?;
                        Op::RouteSub { account: args[off], subject: args[off + 1], queue: Some(args[off + 2]), weight }
                    }
                    _ if n == 0 => return Err(no_args),
                    _ => return Err(ParseError::BadArgs),
                }
            }
            Kind::RUnsub | Kind::LUnsub => match split_args(line, &mut args)? {
                2 => Op::RouteUnsub { account: args[0], subject: args[1], queue: None },
                3 => Op::RouteUnsub { account: args[0], subject: args[1], queue: Some(args[2]) },
                0 => return Err(no_args),
                _ => return Err(ParseError::BadArgs),
            },
            Kind::RMsg | Kind::LMsg | Kind::HMsg if matches!(self.role, Role::Route | Role::Leaf) => {
                // On a route LMSG names its origin cluster first; on a leaf connection no
                // message names an account, and only HMSG has a header size.
                let leaf = self.role == Role::Leaf;
                let shape = if leaf { (false, false, kind == Kind::HMsg) } else { (kind == Kind::LMsg, true, kind != Kind::RMsg) };
                let a = routed_args(rest_after_op(line), shape).ok_or(if line_end == name_len { no_args } else { ParseError::BadArgs })?;
                if a.total > self.max_payload {
                    return Err(ParseError::MaxPayload);
                }
                let Some(end) = self.payload_end(buf, body_start, a.total)? else { return Ok(None) };
                let msg = &buf[body_start..end];
                let op = Op::Routed(Routed { account: a.account, subject: a.subject, reply: a.reply, queues: a.queues, header_len: a.header_len, msg });
                return Ok(Some((op, end + 2)));
            }
            // Only a route-role parser knows these (see above).
            Kind::RMsg | Kind::LMsg => return Err(ParseError::UnknownOp),
            Kind::Pub | Kind::HPub | Kind::Msg | Kind::HMsg => {
                let n = split_args(line, &mut args)?;
                if n == 0 {
                    return Err(no_args);
                }
                // nats-server cuts off HPUB from a client that did not negotiate headers at
                // the control line.
                if kind == Kind::HPub && !self.headers {
                    return Err(ParseError::BadArgs);
                }
                let (fixed, has_hdr) = match kind {
                    Kind::Pub => (2, false),
                    Kind::HPub => (3, true),
                    Kind::Msg => (3, false),
                    _ => (4, true),
                };
                // One optional argument: the reply subject, just before the size(s).
                let with_reply = match n {
                    x if x == fixed => false,
                    x if x == fixed + 1 => true,
                    _ => return Err(ParseError::BadArgs),
                };
                let total = parse_size(args[n - 1]).ok_or(ParseError::BadArgs)?;
                let header_len = if has_hdr {
                    let h = parse_size(args[n - 2]).ok_or(ParseError::BadArgs)?;
                    if h > total {
                        return Err(ParseError::BadArgs);
                    }
                    Some(h)
                } else {
                    None
                };
                if total > self.max_payload && self.role == Role::Server {
                    return Err(ParseError::MaxPayload);
                }
                let Some(end) = self.payload_end(buf, body_start, total)? else { return Ok(None) };
                let msg = &buf[body_start..end];
                let consumed = end + 2;
                let op = if matches!(kind, Kind::Pub | Kind::HPub) {
                    Op::Pub(Publish {
                        subject: args[0],
                        reply: with_reply.then(|| args[1]),
                        header_len,
                        msg,
                    })
                } else {
                    Op::Msg(Delivery {
                        subject: args[0],
                        sid: args[1],
                        reply: with_reply.then(|| args[2]),
                        header_len,
                        msg,
                    })
                };
                return Ok(Some((op, consumed)));
            }
        };
        Ok(Some((op, body_start)))
    }

    /// Where a payload of `total` bytes starting at `body_start` ends, once it and its CRLF
    /// are in `buf` (None: not yet, and how many bytes are needed is noted). A wrong byte
    /// after the payload fails as soon as it arrives.
    fn payload_end(&mut self, buf: &[u8], body_start: usize, total: usize) -> Result<Option<usize>, ParseError> {
        let end = body_start + total;
        if buf.len() > end && buf[end] != b'\r' {
            return Err(ParseError::UnknownOp);
        }
        if buf.len() < end + 2 {
            self.need = if buf.len() > end { end + 2 } else { end + 1 };
            return Ok(None);
        }
        self.need = 0;
        if buf[end + 1] != b'\n' {
            return Err(ParseError::UnknownOp);
        }
        Ok(Some(end))
    }

    /// The common case in one forward pass: a complete `PUB` (server) or `MSG` (client) in
    /// canonical form: upper case, single spaces, CRLF, payload and its CRLF all in `buf`.
    /// Anything else (another op, other blanks, an error, a partial message) returns None and
    /// takes the general path, which gives the same answer for what this accepts.
    #[inline]
    fn fast_message<'a>(&mut self, buf: &'a [u8]) -> Option<(Op<'a>, usize)> {
        let (name, fixed): (&[u8], usize) = match self.role {
            Role::Server => (b"PUB ", 2),
            Role::Client => (b"MSG ", 3),
            // `RMSG account subject [reply] size`: queue lists take the general path.
            Role::Route => (b"RMSG ", 3),
            // `LMSG subject [reply] size`.
            Role::Leaf => (b"LMSG ", 2),
        };
        let skip = name.len();
        if buf.len() < skip + 4 || buf[..skip] != *name {
            return None;
        }
        // Arguments: non-empty runs separated by single spaces, up to CR.
        let mut args: [&'a [u8]; 4] = [&[]; 4];
        let mut n = 0;
        let mut start = skip;
        // At the blank or CR at `j`: an argument ends. Some(true) when the line does, None
        // when the line is not in canonical form.
        let mut blank_at = |j: usize| -> Option<bool> {
            match buf[j] {
                b' ' | b'\r' if j != start && n < args.len() => {
                    args[n] = &buf[start..j];
                    n += 1;
                    start = j + 1;
                    Some(buf[j] == b'\r')
                }
                _ => None,
            }
        };
        // Eight bytes at a time while they last (a subject is usually longer than that), then
        // byte by byte.
        let mut i = skip;
        let line_end = 'line: loop {
            if let Some(chunk) = buf.get(i..i + 8) {
                let v = u64::from_le_bytes(chunk.try_into().unwrap());
                let mut found = bytes_equal(v, b' ') | bytes_equal(v, b'\r') | bytes_equal(v, b'\t') | bytes_equal(v, b'\n');
                while found != 0 {
                    let j = i + (found.trailing_zeros() / 8) as usize;
                    found &= found - 1;
                    if blank_at(j)? {
                        break 'line j;
                    }
                }
                i += 8;
            } else {
                if matches!(*buf.get(i)?, b' ' | b'\r' | b'\t' | b'\n') && blank_at(i)? {
                    break 'line i;
                }
                i += 1;
            }
        };
        if *buf.get(line_end + 1)? != b'\n' || line_end - skip > self.max_control_line {
            return None;
        }
        let with_reply = match n {
            x if x == fixed => false,
            x if x == fixed + 1 => true,
            _ => return None,
        };
        let total = parse_size(args[n - 1])?;
        if total > self.max_payload && self.role != Role::Client {
            return None;
        }
        let body_start = line_end + 2;
        let end = body_start + total;
        if buf.len() < end + 2 || buf[end] != b'\r' || buf[end + 1] != b'\n' {
            return None;
        }
        self.need = 0;
        let msg = &buf[body_start..end];
        let op = match self.role {
            Role::Server => Op::Pub(Publish { subject: args[0], reply: with_reply.then(|| args[1]), header_len: None, msg }),
            Role::Route => Op::Routed(Routed {
                account: args[0],
                subject: args[1],
                reply: with_reply.then(|| args[2]),
                queues: b"",
                header_len: None,
                msg,
            }),
            Role::Leaf => Op::Routed(Routed { account: b"", subject: args[0], reply: with_reply.then(|| args[1]), queues: b"", header_len: None, msg }),
            Role::Client => Op::Msg(Delivery {
                subject: args[0],
                sid: args[1],
                reply: with_reply.then(|| args[2]),
                header_len: None,
                msg,
            }),
        };
        Some((op, end + 2))
    }

    /// Identify the op at the front of `buf`, failing as soon as the bytes cannot begin any op
    /// this role accepts (nats-server rejects `F` without waiting for a line end).
    fn op_kind(&self, buf: &[u8]) -> Result<Option<(Kind, usize)>, ParseError> {
        let head = &buf[..buf.len().min(9)];
        let word_end = head.iter().position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
        let word = &head[..word_end.unwrap_or(head.len())];
        let role = match self.role {
            Role::Server => SERVER,
            Role::Client => CLIENT,
            Role::Route => ROUTE,
            Role::Leaf => LEAF,
        };
        let mut prefix_of_some = false;
        // Only names that start with the same letter can match: one compare skips the rest.
        let first = head[0].to_ascii_uppercase();
        for &(name, kind, roles) in OPS {
            if name[0] != first || roles & role == 0 {
                continue;
            }
            if word_end.is_some() {
                if word.eq_ignore_ascii_case(name) {
                    return Ok(Some((kind, name.len())));
                }
            } else if word.len() <= name.len() && name[..word.len()].eq_ignore_ascii_case(word) {
                prefix_of_some = true;
            }
        }
        if prefix_of_some {
            Ok(None)
        } else {
            Err(ParseError::UnknownOp)
        }
    }
}

/// The bytes of `v` (eight of a buffer, little-endian) that equal `c`: 0x80 in each of them
/// and 0 elsewhere. Exact: the sum never carries from one byte into the next.
#[inline(always)]
fn bytes_equal(v: u64, c: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = v ^ (u64::from(c) * 0x0101_0101_0101_0101);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Blanks between arguments.
#[inline]
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The text after the op name and its separating blanks (CONNECT/INFO JSON, -ERR text).
fn rest_after_op(line: &[u8]) -> &[u8] {
    let op_end = line.iter().position(|&b| is_blank(b)).unwrap_or(line.len());
    let rest = &line[op_end..];
    let start = rest.iter().position(|&b| !is_blank(b)).unwrap_or(rest.len());
    &rest[start..]
}

/// Split the arguments after the op name on runs of spaces and tabs.
///
/// A plain byte loop: arguments are a few bytes to a few dozen, too short for a vectorised
/// search to pay for its set-up (memchr2 per argument was the parser's largest cost).
fn split_args<'a>(line: &'a [u8], out: &mut [&'a [u8]; MAX_ARGS]) -> Result<usize, ParseError> {
    let rest = rest_after_op(line);
    let mut n = 0;
    let mut i = 0;
    while i < rest.len() {
        let start = i;
        while i < rest.len() && !is_blank(rest[i]) {
            i += 1;
        }
        if n == MAX_ARGS {
            return Err(ParseError::BadArgs);
        }
        out[n] = &rest[start..i];
        n += 1;
        while i < rest.len() && is_blank(rest[i]) {
            i += 1;
        }
    }
    Ok(n)
}

/// The arguments of a routed message, without its payload.
struct RoutedArgs<'a> {
    account: &'a [u8],
    subject: &'a [u8],
    reply: Option<&'a [u8]>,
    queues: &'a [u8],
    header_len: Option<usize>,
    total: usize,
}

/// Parse `[origin] [account] subject [+ reply q… | | q… | reply] [hdr] size` (`origin` for
/// a route's LMSG, `account` on routes, `hdr` for HMSG and a route's LMSG), as nats-server
/// 2.9 reads them. None: malformed.
fn routed_args(rest: &[u8], (origin, with_account, headers): (bool, bool, bool)) -> Option<RoutedArgs<'_>> {
    let tokens = || rest.split(|&b| is_blank(b)).filter(|t| !t.is_empty());
    let off = usize::from(origin);
    let sizes = 1 + usize::from(headers);
    let named = 1 + usize::from(with_account);
    let n = tokens().count().checked_sub(off)?;
    if n < named + sizes {
        return None;
    }
    let mut t = tokens().skip(off);
    let account = if with_account { t.next()? } else { &b""[..] };
    let subject = t.next()?;
    let mut reply = None;
    let mut queues: &[u8] = &[];
    let rest_n = n - named - sizes;
    match rest_n {
        0 => {}
        1 => reply = t.next(),
        _ => {
            let indicator = t.next()?;
            let skip = match indicator {
                b"+" => {
                    reply = t.next();
                    2
                }
                b"|" => 1,
                _ => return None,
            };
            let count = rest_n.checked_sub(skip)?;
            let (mut first, mut last): (Option<&[u8]>, Option<&[u8]>) = (None, None);
            for q in t.by_ref().take(count) {
                first = first.or(Some(q));
                last = Some(q);
            }
            if let (Some(first), Some(last)) = (first, last) {
                // One span from the first name to the last: the names stay space separated.
                let start = first.as_ptr() as usize - rest.as_ptr() as usize;
                let end = last.as_ptr() as usize - rest.as_ptr() as usize + last.len();
                queues = &rest[start..end];
            }
        }
    }
    let header_len = if headers { Some(parse_size(t.next()?)?) } else { None };
    let total = parse_size(t.next()?)?;
    if header_len.is_some_and(|h| h > total) {
        return None;
    }
    Some(RoutedArgs { account, subject, reply, queues, header_len, total })
}

/// A decimal size: ASCII digits only, at most 18 of them (so it cannot overflow).
pub fn parse_size(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    let mut n: usize = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as usize;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MCL: usize = 4096;
    const MP: usize = 1 << 20;

    fn server() -> Parser {
        let mut p = Parser::new(Role::Server, MCL, MP);
        p.set_headers(true);
        p
    }

    /// Parse everything in `input` fed in one piece; returns debug strings of the ops.
    fn parse_all(p: &mut Parser, input: &[u8]) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        let mut off = 0;
        while let Some((op, used)) = p.parse(&input[off..])? {
            out.push(format!("{op:?}"));
            off += used;
        }
        assert_eq!(off, input.len(), "unconsumed input");
        Ok(out)
    }

    /// Feed `input` the way a socket would, growing the buffer by `step` bytes at a time;
    /// after each growth parse as much as possible.
    fn parse_stepwise(p: &mut Parser, input: &[u8], step: usize) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        while fed < input.len() {
            let n = step.min(input.len() - fed);
            buf.extend_from_slice(&input[fed..fed + n]);
            fed += n;
            loop {
                match p.parse(&buf)? {
                    Some((op, used)) => {
                        out.push(format!("{op:?}"));
                        buf.drain(..used);
                    }
                    None => break,
                }
            }
        }
        assert!(buf.is_empty(), "left over: {:?}", String::from_utf8_lossy(&buf));
        Ok(out)
    }

    const ALL_OPS: &[u8] = b"CONNECT {\"verbose\":false}\r\nPUB foo 5\r\nhello\r\nPUB foo bar 0\r\n\r\n\
HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHPUB foo inbox.1 12 12\r\nNATS/1.0\r\n\r\n\r\n\
SUB foo 1\r\nSUB foo.* q 2\r\nUNSUB 1\r\nUNSUB 2 10\r\nPING\r\nPONG\r\nping\r\npub\tfoo\t1\r\nx\r\n\
sub  bar   3 \r\nPING\n+OK\r\nINFO {}\r\n";

    /// The route protocol as nats-server 2.9 writes it, whole and a byte at a time; and what
    /// it refuses.
    #[test]
    fn route_ops() {
        let route = || Parser::new(Role::Route, MCL, MP);
        let input: &[u8] = b"INFO {}\r\nCONNECT {}\r\nRS+ $G foo\r\nRS+ A foo.* q 3\r\nLS+ c1 $G bar\r\nLS+ c1 $G bar q 1\r\n\
RS- $G foo\r\nRS- A foo.* q\r\nLS- $G bar\r\nRMSG $G foo 2\r\nhi\r\nRMSG $G foo _INBOX.1 2\r\nhi\r\n\
RMSG $G foo + _INBOX.1 q1 q2 2\r\nhi\r\nRMSG $G foo | q1 0\r\n\r\nHMSG $G foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n\
HMSG $G foo + r q 12 12\r\nNATS/1.0\r\n\r\n\r\nLMSG c1 $G foo | q 12 12\r\nNATS/1.0\r\n\r\n\r\nPING\r\nPONG\r\n-ERR 'x'\r\n";
        let whole = parse_all(&mut route(), input).unwrap();
        for step in [1, 2, 7] {
            assert_eq!(parse_stepwise(&mut route(), input, step).unwrap(), whole, "step {step}");
        }
        let want = [
            (2, Op::RouteSub { account: b"$G", subject: b"foo", queue: None, weight: 0 }),
            (3, Op::RouteSub { account: b"A", subject: b"foo.*", queue: Some(b"q"), weight: 3 }),
            (4, Op::RouteSub { account: b"$G", subject: b"bar", queue: None, weight: 0 }),
            (7, Op::RouteUnsub { account: b"A", subject: b"foo.*", queue: Some(b"q") }),
            (9, Op::Routed(Routed { account: b"$G", subject: b"foo", reply: None, queues: b"", header_len: None, msg: b"hi" })),
            (10, Op::Routed(Routed { account: b"$G", subject: b"foo", reply: Some(b"_INBOX.1"), queues: b"", header_len: None, msg: b"hi" })),
            (11, Op::Routed(Routed { account: b"$G", subject: b"foo", reply: Some(b"_INBOX.1"), queues: b"q1 q2", header_len: None, msg: b"hi" })),
            (12, Op::Routed(Routed { account: b"$G", subject: b"foo", reply: None, queues: b"q1", header_len: None, msg: b"" })),
            (13, Op::Routed(Routed { account: b"$G", subject: b"foo", reply: None, queues: b"", header_len: Some(12), msg: b"NATS/1.0\r\n\r\nhi" })),
            (14, Op::Routed(Routed { account: b"$G", subject: b"foo", reply: Some(b"r"), queues: b"q", header_len: Some(12), msg: b"NATS/1.0\r\n\r\n" })),
            (15, Op::Routed(Routed { account: b"$G", subject: b"foo", reply: None, queues: b"q", header_len: Some(12), msg: b"NATS/1.0\r\n\r\n" })),
            (18, Op::Err(b"'x'")),
        ];
        assert_eq!(whole.len(), 19);
        for (i, op) in want {
            assert_eq!(whole[i], format!("{op:?}"), "op {i}");
        }
        for bad in [&b"RMSG $G foo x q 2\r\nhi\r\n"[..], b"RMSG $G 2\r\nhi\r\n", b"RS+ $G foo q\r\n", b"RS+ $G foo q x\r\n", b"HMSG $G foo 3 2\r\nhi\r\n"] {
            assert_eq!(parse_all(&mut route(), bad), Err(ParseError::BadArgs), "{}", String::from_utf8_lossy(bad));
        }
        // Client ops are not route ops, and route ops are not client ops.
        assert_eq!(parse_all(&mut route(), b"PUB foo 1\r\nx\r\n"), Err(ParseError::UnknownOp));
        assert_eq!(parse_all(&mut server(), b"RS+ $G foo\r\n"), Err(ParseError::UnknownOp));
    }

    /// The leaf-node protocol as nats-server 2.9 writes it (no account on the wire): whole,
    /// split at every byte boundary, and what it refuses.
    #[test]
    fn leaf_ops() {
        let leaf = || Parser::new(Role::Leaf, MCL, MP);
        let input: &[u8] = b"INFO {}\r\nCONNECT {}\r\nLS+ foo\r\nLS+ foo.* q 3\r\nLS- foo\r\nLS- foo.* q\r\n\
LMSG foo 2\r\nhi\r\nLMSG foo _INBOX.1 2\r\nhi\r\nLMSG foo + _INBOX.1 q1 q2 2\r\nhi\r\nLMSG foo | q1 0\r\n\r\n\
HMSG foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHMSG foo + r q 12 12\r\nNATS/1.0\r\n\r\n\r\nHMSG foo r 12 12\r\nNATS/1.0\r\n\r\n\r\n\
PING\r\nPONG\r\n-ERR 'x'\r\n";
        let whole = parse_all(&mut leaf(), input).unwrap();
        for split in 0..=input.len() {
            let mut p = leaf();
            let mut out = Vec::new();
            let mut buf = input[..split].to_vec();
            for part in [&input[split..], &b""[..]] {
                while let Some((op, used)) = p.parse(&buf).unwrap() {
                    out.push(format!("{op:?}"));
                    buf.drain(..used);
                }
                buf.extend_from_slice(part);
            }
            assert_eq!(out, whole, "split at {split}");
        }
        assert_eq!(parse_stepwise(&mut leaf(), input, 1).unwrap(), whole);
        let want = [
            (2, Op::RouteSub { account: b"", subject: b"foo", queue: None, weight: 0 }),
            (3, Op::RouteSub { account: b"", subject: b"foo.*", queue: Some(b"q"), weight: 3 }),
            (4, Op::RouteUnsub { account: b"", subject: b"foo", queue: None }),
            (5, Op::RouteUnsub { account: b"", subject: b"foo.*", queue: Some(b"q") }),
            (6, Op::Routed(Routed { account: b"", subject: b"foo", reply: None, queues: b"", header_len: None, msg: b"hi" })),
            (7, Op::Routed(Routed { account: b"", subject: b"foo", reply: Some(b"_INBOX.1"), queues: b"", header_len: None, msg: b"hi" })),
            (8, Op::Routed(Routed { account: b"", subject: b"foo", reply: Some(b"_INBOX.1"), queues: b"q1 q2", header_len: None, msg: b"hi" })),
            (9, Op::Routed(Routed { account: b"", subject: b"foo", reply: None, queues: b"q1", header_len: None, msg: b"" })),
            (10, Op::Routed(Routed { account: b"", subject: b"foo", reply: None, queues: b"", header_len: Some(12), msg: b"NATS/1.0\r\n\r\nhi" })),
            (11, Op::Routed(Routed { account: b"", subject: b"foo", reply: Some(b"r"), queues: b"q", header_len: Some(12), msg: b"NATS/1.0\r\n\r\n" })),
            (12, Op::Routed(Routed { account: b"", subject: b"foo", reply: Some(b"r"), queues: b"", header_len: Some(12), msg: b"NATS/1.0\r\n\r\n" })),
            (15, Op::Err(b"'x'")),
        ];
        assert_eq!(whole.len(), 16);
        for (i, op) in want {
            assert_eq!(whole[i], format!("{op:?}"), "op {i}");
        }
        for bad in [&b"LMSG foo x q 2\r\nhi\r\n"[..], b"LMSG 2\r\nhi\r\n", b"LS+ foo q\r\n", b"LS+ foo q x\r\n", b"LS- a b c\r\n", b"HMSG foo 3 2\r\nhi\r\n"] {
            assert_eq!(parse_all(&mut leaf(), bad), Err(ParseError::BadArgs), "{}", String::from_utf8_lossy(bad));
        }
        // Route and client ops are not leaf ops.
        for other in [&b"RS+ $G foo\r\n"[..], b"RMSG $G foo 1\r\nx\r\n", b"PUB foo 1\r\nx\r\n", b"SUB foo 1\r\n"] {
            assert_eq!(parse_all(&mut leaf(), other), Err(ParseError::UnknownOp), "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn every_op_whole() {
        let ops = parse_all(&mut server(), ALL_OPS).unwrap();
        assert_eq!(ops.len(), 17);
        assert_eq!(ops[0], "Connect([123, 34, 118, 101, 114, 98, 111, 115, 101, 34, 58, 102, 97, 108, 115, 101, 125])");
        let mut p = server();
        let (op, _) = p.parse(b"HPUB foo inbox.1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n").unwrap().unwrap();
        assert_eq!(
            op,
            Op::Pub(Publish {
                subject: b"foo",
                reply: Some(b"inbox.1"),
                header_len: Some(12),
                msg: b"NATS/1.0\r\n\r\nhi"
            })
        );
        let (op, _) = p.parse(b"sub  bar  q   3 \r\n").unwrap().unwrap();
        assert_eq!(op, Op::Sub { subject: b"bar", queue: Some(b"q"), sid: b"3" });
        let (op, _) = p.parse(b"UNSUB 1 x\r\n").unwrap().unwrap();
        assert_eq!(op, Op::Unsub { sid: b"1", max: None });
    }

    #[test]
    fn bytes_equal_marks_exactly_the_equal_bytes() {
        for c in [b' ', b'\r', b'\t', b'\n'] {
            for b in 0..=255u8 {
                for pos in 0..8 {
                    // `b` at `pos`, `c` and its neighbours elsewhere (the values a carry or
                    // borrow between bytes would confuse).
                    let mut bytes = [c ^ 1, c, c.wrapping_add(1), c ^ 0x80, 0, 0xff, c, 0x7f];
                    bytes[pos] = b;
                    let got = bytes_equal(u64::from_le_bytes(bytes), c);
                    let want = bytes.iter().enumerate().fold(0u64, |m, (k, &x)| if x == c { m | 0x80 << (8 * k) } else { m });
                    assert_eq!(got, want, "{c:#x} in {bytes:x?}");
                }
            }
        }
    }

    #[test]
    fn fast_path_agrees_with_the_general_path() {
        let cases: &[&[u8]] = &[
            b"PUB foo 5\r\nhello\r\n",
            b"PUB foo.bar _INBOX.x 0\r\n\r\n",
            b"PUB a 1\r\nx\r\nPUB b 1\r\ny\r\n",
            b"PUB a\rb 1\r\nx\r\n",
            b"PUB a  1\r\nx\r\n",
            b"PUB a 1 \r\nx\r\n",
            b"PUB a 1\nx\r\n",
            b"PUB a b c 1\r\nx\r\n",
            b"PUB a 1\r\nxy\r\n",
            b"PUB a 2\r\nx",
            b"PUB a 1x\r\nx\r\n",
            b"PUB a 0000000000000000001\r\nx\r\n",
            b"PUB a 2000000\r\n",
            b"MSG a 1 2\r\nhi\r\n",
            // Blanks and line ends at every offset of the eight-byte scan.
            b"PUB some.longer.subject 5\r\nhello\r\n",
            b"PUB some.longer.subject _INBOX.abcdefgh.ijkl 5\r\nhello\r\n",
            b"PUB some.lon\tger.subject 5\r\nhello\r\n",
            b"PUB some.longer.sub\nject 5\r\nhello\r\n",
            b"PUB some.longer.subject  5\r\nhello\r\n",
            b"PUB some.longer.subject\t5\r\nhello\r\n",
            b"PUB !a !b!c 1\r\nx\r\n",
            b"PUB a\x0c\x0b\x08\x21b 1\r\nx\r\n",
            b"PUB a.\xa0\x8d\x89\x8a.b 1\r\nx\r\n",
            b"MSG natsu.bench 1 16\r\n0123456789abcdef\r\n",
            b"MSG natsu.bench 12345 _INBOX.0123456789abcdef.x 2\r\nhi\r\n",
        ];
        for role in [Role::Server, Role::Client] {
            for &c in cases {
                for cut in 1..=c.len() {
                    let buf = &c[..cut];
                    let mut fast = Parser::new(role, MCL, MP);
                    if let Some((op, used)) = fast.fast_message(buf) {
                        let mut general = Parser::new(role, MCL, MP);
                        let want = general.parse_general(buf);
                        assert_eq!(want, Ok(Some((op, used))), "{role:?} {:?}", String::from_utf8_lossy(buf));
                    }
                }
            }
        }
        // It does take the canonical forms.
        assert!(server().fast_message(b"PUB foo 5\r\nhello\r\n").is_some());
        assert!(Parser::new(Role::Client, MCL, MP).fast_message(b"MSG a 1 r 2\r\nhi\r\n").is_some());
        assert!(server().fast_message(b"PUB some.longer.subject _INBOX.abcdefgh.ijkl 5\r\nhello\r\n").is_some());
        // A '!' (a blank's value plus one) right after a blank is an ordinary byte.
        let (op, _) = server().fast_message(b"PUB !a !b!c 1\r\nx\r\n").unwrap();
        assert_eq!(op, Op::Pub(Publish { subject: b"!a", reply: Some(b"!b!c"), header_len: None, msg: b"x" }));
    }

    #[test]
    fn one_byte_at_a_time_matches_whole() {
        let whole = parse_all(&mut server(), ALL_OPS).unwrap();
        for step in 1..8 {
            assert_eq!(parse_stepwise(&mut server(), ALL_OPS, step).unwrap(), whole, "step {step}");
        }
    }

    #[test]
    fn every_split_point_matches_whole() {
        let whole = parse_all(&mut server(), ALL_OPS).unwrap();
        for split in 0..=ALL_OPS.len() {
            let mut p = server();
            let mut out = Vec::new();
            let mut buf = ALL_OPS[..split].to_vec();
            for part in [&ALL_OPS[split..], &b""[..]] {
                while let Some((op, used)) = p.parse(&buf).unwrap() {
                    out.push(format!("{op:?}"));
                    buf.drain(..used);
                }
                buf.extend_from_slice(part);
            }
            while let Some((op, used)) = p.parse(&buf).unwrap() {
                out.push(format!("{op:?}"));
                buf.drain(..used);
            }
            assert_eq!(out, whole, "split at {split}");
        }
    }

    #[test]
    fn client_role_ops() {
        let input = b"INFO {\"a\":1}\r\nMSG foo 1 5\r\nhello\r\nMSG foo 1 r 0\r\n\r\n\
HMSG foo abc 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHMSG foo abc inbox 16 16\r\nNATS/1.0 503\r\n\r\n\r\n\
PING\r\nPONG\r\n+OK\r\n-ERR 'Authorization Violation'\r\n";
        let mut c = Parser::new(Role::Client, MCL, MP);
        let whole = parse_all(&mut c, input).unwrap();
        assert_eq!(whole.len(), 9);
        assert_eq!(parse_stepwise(&mut Parser::new(Role::Client, MCL, MP), input, 1).unwrap(), whole);
        let (op, _) = c.parse(b"-ERR 'Stale Connection'\r\n").unwrap().unwrap();
        assert_eq!(op, Op::Err(b"'Stale Connection'"));
        let (op, _) = c.parse(b"HMSG a.b 7 r 3 5\r\nabcde\r\n").unwrap().unwrap();
        assert_eq!(
            op,
            Op::Msg(Delivery { subject: b"a.b", sid: b"7", reply: Some(b"r"), header_len: Some(3), msg: b"abcde" })
        );
        // A client never accepts what only a client sends.
        assert_eq!(c.parse(b"PUB foo 1\r\na\r\n"), Err(ParseError::UnknownOp));
    }

    /// Malformed input: the error, and so the -ERR line and whether the connection closes.
    #[test]
    fn malformed_table() {
        let big_line = [&b"PUB foo "[..], &[b'x'; 5000], b" 1\r\n"].concat();
        let no_nl = [&b"PUB "[..], &[b'x'; 5000]].concat();
        let cases: &[(&[u8], ParseError)] = &[
            (b"FOO\r\n", ParseError::UnknownOp),
            (b"F", ParseError::UnknownOp),
            (b"PUBX foo 1\r\n", ParseError::UnknownOp),
            (b" PING\r\n", ParseError::UnknownOp),
            (b"\r\nPING\r\n", ParseError::UnknownOp),
            (b"MSG foo 1 1\r\na\r\n", ParseError::UnknownOp),
            (b"PUB foo 2\r\nabc\r\n", ParseError::UnknownOp),
            (b"PUB foo 2\r\nab\n", ParseError::UnknownOp),
            (b"PUB foo 2\r\nabXY", ParseError::UnknownOp),
            (b"UNSUB\r\n", ParseError::UnknownOp),
            (b"PUB foo\r\n", ParseError::BadArgs),
            (b"PUB foo bar baz 1\r\n", ParseError::BadArgs),
            (b"PUB foo -1\r\n", ParseError::BadArgs),
            (b"PUB foo abc\r\n", ParseError::BadArgs),
            (b"PUB foo 99999999999999999999\r\n", ParseError::BadArgs),
            (b"HPUB foo 20 14\r\n", ParseError::BadArgs),
            (b"HPUB foo 14\r\n", ParseError::BadArgs),
            (b"SUB foo\r\n", ParseError::BadArgs),
            (b"SUB\r\n", ParseError::UnknownOp),
            (b"PUB \r\n", ParseError::BadArgs),
            (b"PUB\r\n", ParseError::UnknownOp),
            (b"SUB foo.* bar 1 2\r\n", ParseError::BadArgs),
            (b"UNSUB 1 2 3\r\n", ParseError::BadArgs),
            (b"PUB foo 2000000\r\n", ParseError::MaxPayload),
            (b"HPUB foo 12 2000000\r\n", ParseError::MaxPayload),
            (&big_line, ParseError::MaxControlLine),
            (&no_nl, ParseError::MaxControlLine),
            (b"-ERR 'x'\r\n", ParseError::PeerError),
        ];
        for (input, want) in cases {
            for step in [1, input.len()] {
                let got = parse_stepwise(&mut server(), input, step).map(|_| ());
                assert_eq!(got, Err(*want), "input {:?} step {step}", String::from_utf8_lossy(input));
            }
        }
        assert_eq!(ParseError::UnknownOp.err_line(), Some(&b"-ERR 'Unknown Protocol Operation'\r\n"[..]));
        assert_eq!(ParseError::MaxPayload.err_line(), Some(&b"-ERR 'Maximum Payload Violation'\r\n"[..]));
        assert_eq!(ParseError::MaxControlLine.err_line(), Some(&b"-ERR 'maximum control line exceeded'\r\n"[..]));
        assert_eq!(ParseError::BadArgs.err_line(), None);
    }

    #[test]
    fn incomplete_is_none_not_error() {
        let mut p = server();
        for input in [&b"P"[..], b"PI", b"PING", b"PING\r", b"PUB foo 5\r\nhel", b"CONNECT {", b"hpu"] {
            assert_eq!(p.parse(input), Ok(None), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn pending_payload_is_not_rescanned_until_complete() {
        let mut p = server();
        let msg = [&b"PUB big 100000\r\n"[..], &[b'z'; 100000], b"\r\n"].concat();
        assert_eq!(p.parse(&msg[..20]), Ok(None));
        assert_eq!(p.needed(), msg.len() - 1);
        assert_eq!(p.parse(&msg[..msg.len() - 1]), Ok(None));
        let (op, used) = p.parse(&msg).unwrap().unwrap();
        assert_eq!(used, msg.len());
        assert!(matches!(op, Op::Pub(Publish { msg, .. }) if msg.len() == 100000));
        assert_eq!(p.needed(), 0);
    }

    #[test]
    fn hpub_needs_negotiated_headers() {
        let mut p = Parser::new(Role::Server, MCL, MP);
        assert_eq!(p.parse(b"HPUB foo 12 12\r\n"), Err(ParseError::BadArgs));
        p.set_headers(true);
        assert_eq!(p.parse(b"HPUB foo 12 12\r\n"), Ok(None));
    }

    #[test]
    fn control_line_limit_counts_the_arguments() {
        let arg = |n: usize| [&b"PUB "[..], &vec![b'a'; n]].concat();
        let mut p = server();
        assert_eq!(p.parse(&[&arg(4096)[..], b"\r\n"].concat()), Err(ParseError::BadArgs));
        assert_eq!(p.parse(&[&arg(4097)[..], b"\r\n"].concat()), Err(ParseError::MaxControlLine));
        assert_eq!(p.parse(&[&arg(4096)[..], b"\r"].concat()), Ok(None));
        assert_eq!(p.parse(&arg(4097)), Err(ParseError::MaxControlLine));
    }

    #[test]
    fn payload_at_limit_is_accepted() {
        let mut p = Parser::new(Role::Server, MCL, 10);
        assert!(p.parse(b"PUB foo 10\r\n0123456789\r\n").unwrap().is_some());
        assert_eq!(p.parse(b"PUB foo 11\r\n"), Err(ParseError::MaxPayload));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"1048576"), Some(1048576));
        for bad in [&b""[..], b"-1", b"+1", b"1a", b" 1", b"1234567890123456789"] {
            assert_eq!(parse_size(bad), None);
        }
    }

    /// A stand-in for the cargo-fuzz target that runs in the ordinary test suite: random
    /// protocol-like byte soup must never panic, and parsing it split at a random point must
    /// give the same result as parsing it whole.
    #[test]
    fn random_input_split_anywhere_parses_the_same() {
        const PIECES: &[&[u8]] = &[
            b"PUB ", b"HPUB ", b"SUB ", b"UNSUB ", b"PING", b"PONG", b"CONNECT ", b"INFO ", b"MSG ", b"HMSG ",
            b"+OK", b"-ERR ", b"foo", b"bar.*", b">", b" ", b"\t", b"\r\n", b"\n", b"\r", b"0", b"1", b"2", b"12",
            b"5", b"99999", b"hello", b"{}", b"x", b"\x00", b"NATS/1.0\r\n\r\n",
        ];
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for _ in 0..3000 {
            let mut input = Vec::new();
            for _ in 0..next(30) {
                input.extend_from_slice(PIECES[next(PIECES.len())]);
            }
            let split = next(input.len() + 1);
            for role in [Role::Server, Role::Client] {
                let run = |split: usize| {
                    let mut p = Parser::new(role, 64, 100);
                    p.set_headers(true);
                    let mut out = Vec::new();
                    let mut buf = input[..split].to_vec();
                    for part in [&input[split..], &b""[..]] {
                        loop {
                            match p.parse(&buf) {
                                Ok(Some((op, used))) => {
                                    assert!(used > 0 && used <= buf.len());
                                    out.push(format!("{op:?}"));
                                    buf.drain(..used);
                                }
                                Ok(None) => break,
                                Err(e) => return (out, Some(e)),
                            }
                        }
                        buf.extend_from_slice(part);
                    }
                    (out, None)
                };
                assert_eq!(run(input.len()), run(split), "input {:?} split {split}", String::from_utf8_lossy(&input));
            }
        }
    }
}
