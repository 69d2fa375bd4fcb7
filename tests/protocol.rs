//! Client protocol over real sockets: raw bytes in, exact bytes out.
//!
//! Every test starts its own broker (natsu, or the reference `nats-server` with
//! `NATSU_TEST_TARGET=reference`) on a free loopback port, so the tests run in parallel. What
//! they cover, in order: INFO; PING/PONG, case-insensitive ops, TAB separators and LF-only line
//! ends; pub/sub with reply subjects, `*`, `>` and opaque sids; verbose `+OK` and invalid SUB
//! subjects; pedantic publish to a wildcard; queue groups (exactly once per group); UNSUB with
//! and without a max; echo=false; headers (HPUB/HMSG, and how a subscriber without headers
//! sees them); no_responders; a table of malformed input with the exact reply and whether the
//! connection stays open; max_connections, max_subscriptions, stale connections; slow
//! consumer isolation with bounded server memory; commands split one byte per write; a
//! payload of exactly max_payload; 10,000 PUBs in one write.
//!
//! Every expectation was first observed on the reference (nats-server v2.9.10). Where the
//! reference does something surprising the test says so in a comment; natsu follows it on
//! purpose. Synchronisation is by PING/PONG round trips or by a sentinel message published
//! last (one publisher's messages reach each subscriber in order), never by sleeping. Every
//! read has a timeout and every loop a bound.
//!
//! The reference sends every client a first PING about two seconds after it connects; the
//! exact-bytes tests finish well within that, and the long-running ones read through
//! [`Frames`], which answers server PINGs.

mod common;

use common::{find, Limits, Raw, Server};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// CONNECT as real clients send it: no `+OK`, no pedantic checks. The reference keeps
/// verbose and pedantic *on* for any field CONNECT leaves out, so both are spelled out.
const QUIET: &str = r#"{"verbose":false,"pedantic":false}"#;
/// [`QUIET`] plus headers.
const QUIET_HDR: &str = r#"{"verbose":false,"pedantic":false,"headers":true}"#;

const UNKNOWN_OP: &str = "-ERR 'Unknown Protocol Operation'\r\n";
const MAX_PAYLOAD: &str = "-ERR 'Maximum Payload Violation'\r\n";
const MAX_CONTROL_LINE: &str = "-ERR 'maximum control line exceeded'\r\n";
const INVALID_SUBJECT: &str = "-ERR 'Invalid Subject'\r\n";
const INVALID_PUB_SUBJECT: &str = "-ERR 'Invalid Publish Subject'\r\n";

// ---------------------------------------------------------------------------------------
// helpers

/// A client that sent `connect` and then `subs` (SUB lines), with the PONG after them proving
/// the subscriptions are in force before anyone publishes.
fn client(srv: &Server, connect: &str, subs: &str) -> Raw {
    let mut r = Raw::connect_with(srv.port, connect);
    if !subs.is_empty() {
        r.send(subs);
        assert_eq!(r.flush(), "", "reply to {subs:?}");
    }
    r
}

/// A verbose client: its CONNECT is answered with `+OK`.
fn verbose_client(srv: &Server, connect: &str) -> Raw {
    let mut r = Raw::connect(srv.port);
    r.send(&format!("CONNECT {connect}\r\n"));
    assert_eq!(r.flush(), "+OK\r\n");
    r
}

/// Publish `data` from a fresh connection and wait until the broker has taken it all.
fn publish(srv: &Server, connect: &str, data: &str) -> Raw {
    let mut p = client(srv, connect, "");
    p.send(data);
    assert_eq!(p.flush(), "", "reply to {data:?}");
    p
}

/// Exactly `want` arrives next (however long the broker takes to route it), then nothing
/// more before a PONG.
fn expect_exactly(r: &mut Raw, want: &str) {
    r.expect(want);
    assert_eq!(r.flush(), "", "more arrived after {want:?}");
}

/// The MSG frame a subscriber sees.
fn msg(subject: &str, sid: &str, reply: Option<&str>, payload: &str) -> String {
    let reply = reply.map(|r| format!("{r} ")).unwrap_or_default();
    format!(
        "MSG {subject} {sid} {reply}{}\r\n{payload}\r\n",
        payload.len()
    )
}

/// One message as parsed by [`Frames`].
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    subject: String,
    sid: String,
    reply: Option<String>,
    /// `Some` for HMSG: the header block, its trailing blank line included.
    header: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// What the broker sends, one frame at a time.
enum Frame {
    Msg(Msg),
    Pong,
    Other(String),
}

/// A buffered frame reader for tests that move many messages or check a frame's structure
/// rather than its bytes. Answers the broker's PINGs, so it can live past the reference's
/// first PING.
struct Frames {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Frames {
    fn new(raw: Raw) -> Frames {
        assert!(
            raw.buf.is_empty(),
            "unread bytes: {:?}",
            String::from_utf8_lossy(&raw.buf)
        );
        raw.s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let w = raw.s.try_clone().unwrap();
        Frames {
            r: BufReader::with_capacity(256 * 1024, raw.s),
            w,
        }
    }

    fn send(&mut self, data: &[u8]) {
        self.w.write_all(data).expect("send");
    }

    fn line(&mut self) -> String {
        let mut line = Vec::new();
        match self.r.read_until(b'\n', &mut line) {
            Ok(0) => panic!("connection closed"),
            Ok(_) => {}
            Err(e) => panic!(
                "reading a frame: {e}; have {:?}",
                String::from_utf8_lossy(&line)
            ),
        }
        assert!(
            line.ends_with(b"\r\n"),
            "line without CRLF: {:?}",
            String::from_utf8_lossy(&line)
        );
        String::from_utf8(line).expect("control line is UTF-8")
    }

    fn frame(&mut self) -> Frame {
        // Bounded: at most a few server PINGs come between two frames.
        for _ in 0..100 {
            let line = self.line();
            let args: Vec<&str> = line.trim_end().split(' ').collect();
            let (header_size, total) = match (args[0], args.len()) {
                ("PING", 1) => {
                    self.send(b"PONG\r\n");
                    continue;
                }
                ("PONG", 1) => return Frame::Pong,
                ("MSG", 4 | 5) => (None, args[args.len() - 1]),
                ("HMSG", 5 | 6) => (Some(args[args.len() - 2]), args[args.len() - 1]),
                _ => return Frame::Other(line),
            };
            let total: usize = total.parse().expect("size");
            let header_size: Option<usize> = header_size.map(|h| h.parse().expect("header size"));
            let reply_at = if header_size.is_some() { 6 } else { 5 };
            let mut body = vec![0u8; total + 2];
            self.r.read_exact(&mut body).expect("read payload");
            assert!(
                body.ends_with(b"\r\n"),
                "payload not followed by CRLF in {line:?}"
            );
            body.truncate(total);
            let header = header_size.map(|h| {
                assert!(h <= total, "header size over total in {line:?}");
                body.drain(..h).collect::<Vec<u8>>()
            });
            return Frame::Msg(Msg {
                subject: args[1].to_string(),
                sid: args[2].to_string(),
                reply: (args.len() == reply_at).then(|| args[3].to_string()),
                header,
                payload: body,
            });
        }
        panic!("only PINGs from the broker");
    }

    /// The next frame, which must be a message.
    fn msg(&mut self) -> Msg {
        match self.frame() {
            Frame::Msg(m) => m,
            Frame::Pong => panic!("PONG where a message was expected"),
            Frame::Other(l) => panic!("{l:?} where a message was expected"),
        }
    }

    /// Round trip a PING; the messages that came before the PONG.
    fn until_pong(&mut self) -> Vec<Msg> {
        self.send(b"PING\r\n");
        let mut msgs = Vec::new();
        // Bounded by the read timeout of each frame and by this count.
        for _ in 0..1_000_000 {
            match self.frame() {
                Frame::Msg(m) => msgs.push(m),
                Frame::Pong => return msgs,
                Frame::Other(l) => panic!("unexpected {l:?}"),
            }
        }
        panic!("no PONG after a million messages");
    }
}

/// The INFO line's JSON.
fn info_json(r: &Raw) -> serde_json::Value {
    let line = r.info.strip_prefix("INFO ").expect("INFO prefix");
    assert!(line.ends_with("\r\n"), "INFO not CRLF-terminated: {line:?}");
    serde_json::from_str(line.trim()).expect("INFO is JSON")
}

// ---------------------------------------------------------------------------------------
// 1. INFO

#[test]
fn info_on_connect() {
    let srv = Server::start();
    let (a, b) = (Raw::connect(srv.port), Raw::connect(srv.port));
    let info = info_json(&a);
    let nonempty = |k: &str| info[k].as_str().is_some_and(|s| !s.is_empty());
    assert!(nonempty("server_id"), "server_id in {info}");
    assert!(nonempty("server_name"), "server_name in {info}");
    assert!(
        info["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2.")),
        "version in {info}"
    );
    assert_eq!(info["proto"], 1);
    assert_eq!(info["headers"], true);
    assert_eq!(info["max_payload"], 1048576);
    assert!(nonempty("host"), "host in {info}");
    assert_eq!(info["port"], srv.port);
    assert_eq!(info["client_ip"], "127.0.0.1");
    assert!(info["client_id"].is_u64(), "client_id in {info}");
    assert_ne!(
        info["client_id"],
        info_json(&b)["client_id"],
        "two clients, one client_id"
    );
}

// ---------------------------------------------------------------------------------------
// 2. PING/PONG and the lexical details of the protocol

#[test]
fn ping_pong_case_tabs_and_bare_lf() {
    let srv = Server::start();
    let mut r = client(&srv, QUIET, "");
    r.send("ping\r\nPiNg\r\nPING\n");
    r.expect("PONG\r\nPONG\r\nPONG\r\n");
    // Every op in any case; TAB and runs of blanks separate arguments; a trailing blank is
    // fine; control lines may end in a bare LF (but payloads may not, see the error table).
    r.send("sub\tfoo\t1\r\npub\tfoo\t1\r\nx\r\nSuB bar  2 \nPUB  bar\t \t1\nx\r\n");
    r.send("uNsUb 1\r\nPUB foo 1\r\nx\r\npong\r\nconnect {\"verbose\":false}\r\n");
    assert_eq!(
        r.flush(),
        msg("foo", "1", None, "x") + &msg("bar", "2", None, "x")
    );
}

// ---------------------------------------------------------------------------------------
// 3. pub/sub

#[test]
fn pub_sub_wildcards_reply_and_opaque_sids() {
    let srv = Server::start();
    // (pattern, sid, the subjects it gets in publish order). Each subscriber sits on its own
    // connection, so the frames it sees are in publish order. The sentinel `the.end`,
    // published last, proves nothing else came (a stray message would arrive before it): all
    // but the `>` subscriber get it through an extra subscription with sid `e`.
    let table: [(&str, &str, &[&str]); 6] = [
        ("foo", "1", &["foo"]),
        ("foo.*", "abc", &["foo.bar", "foo.baz"]),
        // `>` needs at least one token: `foo.>` does not match `foo`.
        ("foo.>", "Sid9", &["foo.bar", "foo.bar.baz", "foo.baz"]),
        ("*.bar.*", "x", &["foo.bar.baz"]),
        ("*", "one", &["foo", "bar"]),
        (
            ">",
            "all",
            &["foo", "foo.bar", "foo.bar.baz", "bar", "foo.baz", "the.end"],
        ),
    ];
    let sentinel = |pattern: &str| {
        if pattern == ">" {
            ""
        } else {
            "SUB the.end e\r\n"
        }
    };
    let mut subs: Vec<Raw> = table
        .iter()
        .map(|(pattern, sid, _)| {
            client(
                &srv,
                QUIET,
                &format!("SUB {pattern} {sid}\r\n{}", sentinel(pattern)),
            )
        })
        .collect();
    // Two sids for one subject on one connection: two deliveries, in no set order.
    let mut twice = Frames::new(client(&srv, QUIET, "SUB foo.bar A\r\nSUB foo.bar B\r\n"));

    let reply = |s: &str| (s == "foo.baz").then_some("_INBOX.r");
    let published = ["foo", "foo.bar", "foo.bar.baz", "bar", "foo.baz", "the.end"];
    let data: String = published
        .iter()
        .map(|s| match reply(s) {
            Some(r) => format!("PUB {s} {r} {}\r\n{s}\r\n", s.len()),
            None => format!("PUB {s} {}\r\n{s}\r\n", s.len()),
        })
        .collect();
    publish(&srv, QUIET, &data);

    for ((pattern, sid, wanted), sub) in table.iter().zip(&mut subs) {
        let mut want: String = wanted.iter().map(|s| msg(s, sid, reply(s), s)).collect();
        if !sentinel(pattern).is_empty() {
            want += &msg("the.end", "e", None, "the.end");
        }
        expect_exactly(sub, &want);
    }
    let mut two = [twice.msg(), twice.msg()];
    two.sort_by(|a, b| a.sid.cmp(&b.sid));
    let sids: Vec<(&str, &[u8])> = two
        .iter()
        .map(|m| (m.sid.as_str(), &m.payload[..]))
        .collect();
    assert_eq!(sids, [("A", &b"foo.bar"[..]), ("B", &b"foo.bar"[..])]);
    assert!(twice.until_pong().is_empty());
}

// ---------------------------------------------------------------------------------------
// 4. verbose, and SUB subject checks

#[test]
fn verbose_ok_after_each_command_but_not_a_failed_sub() {
    let srv = Server::start();
    let mut r = verbose_client(&srv, r#"{"verbose":true,"pedantic":false}"#);
    r.send("SUB foo 1\r\nPUB foo 1\r\nx\r\nUNSUB 1\r\nUNSUB 99\r\nSUB foo. 2\r\n");
    // UNSUB of a sid that does not exist is no error.
    let want = "+OK\r\n+OK\r\nMSG foo 1 1\r\nx\r\n+OK\r\n+OK\r\n".to_string() + INVALID_SUBJECT;
    assert_eq!(r.flush(), want);
    assert_eq!(r.flush(), "", "stays open");
}

/// The reference starts every client as verbose and pedantic, and CONNECT only changes the
/// fields it names: a client that never sends CONNECT, or sends `CONNECT {}`, gets `+OK`s
/// and pedantic checks.
#[test]
fn verbose_and_pedantic_are_the_defaults() {
    let srv = Server::start();
    let cmds = "SUB foo.* 1\r\nPUB foo.bar 1\r\nx\r\nPUB foo.* 1\r\ny\r\n";
    let after = "+OK\r\n+OK\r\nMSG foo.bar 1 1\r\nx\r\n".to_string() + INVALID_PUB_SUBJECT;
    // The pedantic -ERR does not stop the message: see pedantic_publish_to_wildcard.
    let after = after + "+OK\r\nMSG foo.* 1 1\r\ny\r\n";
    for (connect, reply) in [("", ""), ("CONNECT {}\r\n", "+OK\r\n")] {
        let mut r = Raw::connect(srv.port);
        r.send(&format!("{connect}{cmds}"));
        assert_eq!(r.flush(), format!("{reply}{after}"), "after {connect:?}");
    }
}

#[test]
fn invalid_sub_subjects_are_refused_and_the_connection_stays() {
    let srv = Server::start();
    let mut r = client(&srv, QUIET, "");
    let bad = ["foo.", ".foo", "foo..bar", ">.foo", "foo.>.bar", "foo.>.>"];
    for (i, s) in bad.iter().enumerate() {
        r.send(&format!("SUB {s} {i}\r\n"));
    }
    assert_eq!(r.flush(), INVALID_SUBJECT.repeat(bad.len()));
    // Wildcard characters inside a token are literal characters, not wildcards.
    r.send("SUB foo* 1\r\nSUB f>o 2\r\nPUB foo* 1\r\na\r\nPUB fooX 1\r\nb\r\nPUB f>o 1\r\nc\r\n");
    assert_eq!(
        r.flush(),
        msg("foo*", "1", None, "a") + &msg("f>o", "2", None, "c")
    );
}

// ---------------------------------------------------------------------------------------
// 5. pedantic

/// Surprise: nats-server 2.9 answers a pedantic publish to a wildcard subject with
/// `-ERR 'Invalid Publish Subject'` (plus the `+OK` when verbose), keeps the connection, and
/// then delivers the message anyway, the subject taken literally (`foo.*` reaches `foo.*` and
/// `foo.>` subscribers, not `foo.bar`). natsu does the same on purpose.
#[test]
fn pedantic_publish_to_wildcard() {
    let srv = Server::start();
    let mut wide = client(&srv, QUIET, "SUB foo.> w\r\n");
    let mut bar = client(&srv, QUIET, "SUB foo.bar b\r\n");
    let data = "PUB foo.* 1\r\nx\r\nPUB foo.> 1\r\ny\r\nPUB foo.bar 1\r\nz\r\n";
    let err = INVALID_PUB_SUBJECT;
    for (mut p, reply) in [
        (
            client(&srv, r#"{"verbose":false,"pedantic":true}"#, ""),
            format!("{err}{err}"),
        ),
        // Verbose: the -ERR and then the +OK for the same PUB.
        (
            verbose_client(&srv, r#"{"verbose":true,"pedantic":true}"#),
            format!("{err}+OK\r\n{err}+OK\r\n+OK\r\n"),
        ),
    ] {
        p.send(data);
        assert_eq!(p.flush(), reply, "the publisher stays open");
        let all = msg("foo.*", "w", None, "x")
            + &msg("foo.>", "w", None, "y")
            + &msg("foo.bar", "w", None, "z");
        expect_exactly(&mut wide, &all);
        expect_exactly(&mut bar, &msg("foo.bar", "b", None, "z"));
    }
}

// ---------------------------------------------------------------------------------------
// 6. queue groups

#[test]
fn queue_groups_deliver_exactly_once_per_group() {
    const N: usize = 1000;
    let srv = Server::start();
    // Five connections in group `a` (sid qa); two of them also in group `b` (sid qb); one
    // plain subscriber (sid p). Everyone also subscribes to the sentinel `done`.
    let subs: Vec<String> = (0..6)
        .map(|i| match i {
            0 | 1 => "SUB work a qa\r\nSUB work b qb\r\n",
            2..=4 => "SUB work a qa\r\n",
            _ => "SUB work p\r\n",
        })
        .map(|s| format!("{s}SUB done end\r\n"))
        .collect();
    let mut conns: Vec<Frames> = subs
        .iter()
        .map(|s| Frames::new(client(&srv, QUIET, s)))
        .collect();
    let data: String = (0..N)
        .map(|i| format!("PUB work 4\r\n{i:04}\r\n"))
        .collect::<String>()
        + "PUB done 0\r\n\r\n";
    publish(&srv, QUIET, &data);

    // Per sid, the payloads each connection got before the sentinel.
    let mut got: Vec<HashMap<String, Vec<usize>>> = Vec::new();
    for c in &mut conns {
        let mut per_sid = HashMap::<String, Vec<usize>>::new();
        for _ in 0..=3 * N {
            let m = c.msg();
            if m.subject == "done" {
                break;
            }
            let n = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
            per_sid.entry(m.sid).or_default().push(n);
        }
        assert!(c.until_pong().is_empty(), "messages after the sentinel");
        got.push(per_sid);
    }
    let all: Vec<usize> = (0..N).collect();
    for sid in ["qa", "qb"] {
        let mut seen: Vec<usize> = got
            .iter()
            .flat_map(|g| g.get(sid).cloned().unwrap_or_default())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, all, "group {sid}: every message exactly once");
    }
    // The load is spread (the reference picks a member at random for each message).
    for (i, g) in got.iter().enumerate().take(5) {
        assert!(
            g.get("qa").map_or(0, |v| v.len()) > 0,
            "member {i} of group a got nothing"
        );
    }
    assert_eq!(
        got[5].get("p"),
        Some(&all),
        "the plain subscriber gets every message, in order"
    );
}

// ---------------------------------------------------------------------------------------
// 7. UNSUB

#[test]
fn unsub_and_auto_unsub_after_max() {
    let srv = Server::start();
    let mut r = client(&srv, QUIET, "");
    let pubs = |payloads: &str| {
        payloads
            .chars()
            .map(|c| format!("PUB foo 1\r\n{c}\r\n"))
            .collect::<String>()
    };
    let msgs = |sid: &str, payloads: &str| {
        payloads
            .chars()
            .map(|c| msg("foo", sid, None, &c.to_string()))
            .collect::<String>()
    };
    // (commands, what arrives)
    let steps = [
        (
            format!("SUB foo 1\r\n{}UNSUB 1\r\n{}", pubs("a"), pubs("b")),
            msgs("1", "a"),
        ),
        (
            format!("SUB foo 2\r\nUNSUB 2 2\r\n{}", pubs("abcd")),
            msgs("2", "ab"),
        ),
        // A max already reached removes the subscription at once.
        (
            format!("SUB foo 3\r\n{}UNSUB 3 1\r\n{}", pubs("a"), pubs("b")),
            msgs("3", "a"),
        ),
        // Max 0 means no max: a plain UNSUB.
        (
            format!("SUB foo 4\r\nUNSUB 4 0\r\n{}", pubs("a")),
            String::new(),
        ),
    ];
    for (cmds, want) in steps {
        r.send(&cmds);
        assert_eq!(r.flush(), want, "after {cmds:?}");
    }
    // The auto-unsubscribed sid 2 is gone for good.
    r.send(&pubs("e"));
    assert_eq!(r.flush(), "");
}

// ---------------------------------------------------------------------------------------
// 8. echo

#[test]
fn echo_false_drops_only_own_messages() {
    let srv = Server::start();
    let mut own = client(&srv, QUIET, "SUB foo 1\r\n");
    let mut deaf = client(
        &srv,
        r#"{"verbose":false,"pedantic":false,"echo":false}"#,
        "SUB foo 1\r\n",
    );
    deaf.send("PUB foo 4\r\nself\r\n");
    assert_eq!(deaf.flush(), "", "echo=false: own message came back");
    own.expect(&msg("foo", "1", None, "self"));
    own.send("PUB foo 4\r\nmine\r\n");
    assert_eq!(
        own.flush(),
        msg("foo", "1", None, "mine"),
        "echo is on by default"
    );
    expect_exactly(&mut deaf, &msg("foo", "1", None, "mine"));
}

// ---------------------------------------------------------------------------------------
// 9. headers

/// A subscriber that did not negotiate headers gets the message as a plain MSG with the
/// headers stripped (what the reference does).
#[test]
fn headers_hpub_to_hmsg_and_stripped_for_plain_subscribers() {
    let srv = Server::start();
    let mut with = client(&srv, QUIET_HDR, "SUB foo 1\r\n");
    let mut without = client(&srv, QUIET, "SUB foo 1\r\n");
    let hdr = "NATS/1.0\r\nA: 1\r\nB:2\r\n\r\n";
    publish(
        &srv,
        QUIET_HDR,
        &format!("HPUB foo bar 23 28\r\n{hdr}hello\r\nHPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\nPUB foo 2\r\nhi\r\n"),
    );
    let hmsgs =
        format!("HMSG foo 1 bar 23 28\r\n{hdr}hello\r\nHMSG foo 1 12 12\r\nNATS/1.0\r\n\r\n\r\n");
    expect_exactly(&mut with, &(hmsgs + &msg("foo", "1", None, "hi")));
    let plain = msg("foo", "1", Some("bar"), "hello")
        + &msg("foo", "1", None, "")
        + &msg("foo", "1", None, "hi");
    expect_exactly(&mut without, &plain);
}

// ---------------------------------------------------------------------------------------
// 10. no_responders

/// The reference's reply, byte for byte: `HMSG _INBOX.r 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\n`.
/// The test checks its structure: subject, sid, no reply, a `NATS/1.0 503` status header,
/// sizes that match, no payload.
#[test]
fn no_responders_gets_503_on_the_inbox() {
    let srv = Server::start();
    let requester = |connect: &str| Frames::new(client(&srv, connect, "SUB _INBOX.r 7\r\n"));
    let mut req =
        requester(r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true}"#);
    let is_503 = |m: &Msg| {
        let h = m.header.as_deref().unwrap_or_default();
        m.subject == "_INBOX.r"
            && m.sid == "7"
            && m.reply.is_none()
            && h.starts_with(b"NATS/1.0 503")
            && h.ends_with(b"\r\n\r\n")
            && find(h, b"\r\n") == Some(h.len() - 4)
            && m.payload.is_empty()
    };
    for request in [
        "PUB nobody _INBOX.r 2\r\nhi\r\n",
        "HPUB nobody _INBOX.r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
    ] {
        req.send(request.as_bytes());
        let got = req.until_pong();
        assert!(
            got.len() == 1 && is_503(&got[0]),
            "after {request:?}: {got:?}"
        );
    }
    // No reply subject, or somebody listening: no status.
    let mut responder = Frames::new(client(&srv, QUIET, "SUB somebody r\r\n"));
    req.send(b"PUB nobody 2\r\nhi\r\nPUB somebody _INBOX.r 2\r\nhi\r\n");
    assert_eq!(req.until_pong(), vec![]);
    assert_eq!(responder.msg().reply.as_deref(), Some("_INBOX.r"));
    // A client that did not ask for no_responders gets nothing.
    let mut plain = requester(QUIET_HDR);
    plain.send(b"PUB nobody _INBOX.r 2\r\nhi\r\n");
    assert_eq!(plain.until_pong(), vec![]);
}

// ---------------------------------------------------------------------------------------
// 11. malformed input

#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Open,
    Closed,
}

/// One malformed (or odd) input: sent after INFO, and after `connect` (with its PONG) when
/// given; `want` is everything the broker sends back.
struct Case {
    name: &'static str,
    connect: Option<&'static str>,
    input: Vec<u8>,
    want: &'static str,
    end: End,
}

fn case(
    name: &'static str,
    connect: Option<&'static str>,
    input: impl Into<Vec<u8>>,
    want: &'static str,
    end: End,
) -> Case {
    Case {
        name,
        connect,
        input: input.into(),
        want,
        end,
    }
}

/// What the broker sends after `c.input`, and whether it closed. For cases expected to stay
/// open a PING follows the input and its PONG ends the reading; nothing follows input that
/// should close the connection (bytes left unread at close would turn the close into a reset).
fn run_case(port: u16, c: &Case) -> (String, End) {
    let mut r = match c.connect {
        Some(json) => Raw::connect_with(port, json),
        None => Raw::connect(port),
    };
    r.send_bytes(&c.input);
    if c.end == End::Open {
        r.send("PING\r\n");
    }
    r.s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut got = std::mem::take(&mut r.buf);
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if c.end == End::Open && got.ends_with(b"PONG\r\n") {
            got.truncate(got.len() - 6);
            return (String::from_utf8_lossy(&got).into_owned(), End::Open);
        }
        match r.s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (String::from_utf8_lossy(&got).into_owned(), End::Open);
            }
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), End::Closed)
}

/// Run every case on its own connection to one broker; report all mismatches at once.
fn check_cases(srv: &Server, cases: &[Case]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let got = run_case(srv.port, c);
            let want = (c.want.to_string(), c.end);
            let input = String::from_utf8_lossy(&c.input);
            let input: String = input.chars().take(80).collect();
            (got != want).then(|| format!("{}: sent {input:?}: want {want:?}, got {got:?}", c.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A PUB whose argument (subject and size) is `arg_len` bytes long.
fn pub_with_arg_len(arg_len: usize, payload_too: bool) -> String {
    let line = format!("PUB {} 1\r\n", "a".repeat(arg_len - 2));
    if payload_too {
        line + "x\r\n"
    } else {
        line
    }
}

#[test]
fn malformed_input_table() {
    use End::*;
    let q = Some(QUIET);
    let h = Some(QUIET_HDR);
    #[rustfmt::skip]
    let cases = [
        case("unknown op", q, "FOO\r\n", UNKNOWN_OP, Closed),
        case("MSG from a client", q, "MSG foo 1 1\r\nx\r\n", UNKNOWN_OP, Closed),
        case("leading space", q, " PING\r\n", UNKNOWN_OP, Closed),
        case("leading tab", q, "\tPING\r\n", UNKNOWN_OP, Closed),
        // Surprise: -ERR from a client closes it without a word.
        case("-ERR from a client", q, "-ERR 'x'\r\n", "", Closed),
        case("+OK from a client is ignored", q, "+OK\r\n", "", Open),
        case("PONG without a PING is ignored", q, "PONG\r\n", "", Open),
        case("INFO from a client is ignored", q, "INFO {}\r\n", "", Open),
        case("payload longer than its size", q, "PUB foo 1\r\nxy\r\n", UNKNOWN_OP, Closed),
        case("payload ended by a bare LF", q, "PUB foo 1\r\nx\n", UNKNOWN_OP, Closed),
        // Malformed arguments close the connection with no -ERR at all...
        case("PUB without size", q, "PUB foo\r\n", "", Closed),
        case("PUB with a negative size", q, "PUB foo -1\r\n", "", Closed),
        case("PUB with a non-numeric size", q, "PUB foo abc\r\n", "", Closed),
        case("PUB with too many arguments", q, "PUB foo bar baz 1\r\n", "", Closed),
        case("PUB with a blank argument", q, "PUB \r\n", "", Closed),
        // ...but an op with no argument at all is an unknown op.
        case("PUB without arguments", q, "PUB\r\n", UNKNOWN_OP, Closed),
        case("SUB without sid", q, "SUB foo\r\n", "", Closed),
        case("SUB with too many arguments", q, "SUB foo q 1 x\r\n", "", Closed),
        case("SUB without arguments", q, "SUB\r\n", UNKNOWN_OP, Closed),
        case("UNSUB without sid", q, "UNSUB\r\n", UNKNOWN_OP, Closed),
        case("UNSUB with too many arguments", q, "UNSUB 1 2 3\r\n", "", Closed),
        // Surprise: a non-numeric max is taken as no max.
        case("UNSUB with a non-numeric max", q, "SUB foo 1\r\nUNSUB 1 x\r\nPUB foo 1\r\nx\r\n", "", Open),
        case("HPUB without headers negotiated", q, "HPUB foo 12 12\r\n", "", Closed),
        case("HPUB from a client that never sent CONNECT", None, "HPUB foo 12 12\r\n", "", Closed),
        case("HPUB with header size over total", h, "HPUB foo 10 5\r\n", "", Closed),
        case("HPUB without total size", h, "HPUB foo 12\r\n", "", Closed),
        case("PUB over max_payload", q, "PUB foo 1048577\r\n", MAX_PAYLOAD, Closed),
        case("HPUB over max_payload", h, "HPUB foo 12 1048577\r\n", MAX_PAYLOAD, Closed),
        // The limit applies to the argument (after `PUB `, before CRLF): 4096 bytes pass.
        case("argument of 4096 bytes", q, pub_with_arg_len(4096, true), "", Open),
        case("argument of 4097 bytes", q, pub_with_arg_len(4097, false), MAX_CONTROL_LINE, Closed),
        case("long line not yet ended", q, format!("PUB {}", "a".repeat(5000)), MAX_CONTROL_LINE, Closed),
        case("long CONNECT", None, format!("CONNECT {{\"name\":\"{}\"}}\r\n", "a".repeat(5000)), MAX_CONTROL_LINE, Closed),
        case("CONNECT protocol 2", None, r#"CONNECT {"verbose":false,"protocol":2}"#.to_string() + "\r\n", "-ERR 'invalid client protocol'\r\n", Closed),
        case("CONNECT protocol 1, verbose by default", None, "CONNECT {\"protocol\":1}\r\n", "+OK\r\n", Open),
        case(
            "no_responders without headers",
            None,
            r#"CONNECT {"verbose":false,"no_responders":true}"#.to_string() + "\r\n",
            "-ERR 'no responders requires headers support'\r\n",
            Closed,
        ),
        case(
            "no_responders with headers false",
            None,
            r#"CONNECT {"verbose":false,"headers":false,"no_responders":true}"#.to_string() + "\r\n",
            "-ERR 'no responders requires headers support'\r\n",
            Closed,
        ),
        // Surprise: a CONNECT that does not parse closes the connection without an -ERR.
        case("bad CONNECT JSON", None, "CONNECT {bad\r\n", "", Closed),
        case("CONNECT field of the wrong type", None, "CONNECT {\"verbose\":\"yes\"}\r\n", "", Closed),
        case("CONNECT without JSON", None, "CONNECT\r\n", "", Closed),
    ];
    check_cases(&Server::start(), &cases);
}

#[test]
fn malformed_input_with_small_limits() {
    use End::*;
    let limits = Limits {
        max_payload: Some(100),
        max_control_line: Some(100),
        ..Default::default()
    };
    let q = Some(QUIET);
    #[rustfmt::skip]
    let cases = [
        case("PUB of max_payload", q, format!("PUB foo 100\r\n{}\r\n", "x".repeat(100)), "", Open),
        case("PUB over max_payload", q, "PUB foo 101\r\n", MAX_PAYLOAD, Closed),
        case("HPUB over max_payload", Some(QUIET_HDR), "HPUB foo 12 101\r\n", MAX_PAYLOAD, Closed),
        case("argument of max_control_line", q, pub_with_arg_len(100, true), "", Open),
        case("argument over max_control_line", q, pub_with_arg_len(101, false), MAX_CONTROL_LINE, Closed),
    ];
    let srv = Server::with(&limits, &[]);
    check_cases(&srv, &cases);
    assert_eq!(info_json(&Raw::connect(srv.port))["max_payload"], 100);
}

// ---------------------------------------------------------------------------------------
// 12-14. limits

/// `n` connections the broker accepted. The harness's readiness probe (a connection it
/// dropped at once) may count against max_connections for a moment, so a refusal here is
/// retried, a bounded number of times.
fn accepted_clients(srv: &Server, n: usize) -> Vec<Raw> {
    for _ in 0..100 {
        let mut conns: Vec<Raw> = (0..n).map(|_| Raw::connect(srv.port)).collect();
        conns
            .iter_mut()
            .for_each(|r| r.send(&format!("CONNECT {QUIET}\r\nPING\r\n")));
        if conns.iter_mut().all(|r| r.read_line() == "PONG\r\n") {
            return conns;
        }
    }
    panic!("{n} connections refused a hundred times");
}

#[test]
fn max_connections_refuses_the_next_one_after_info() {
    let srv = Server::with(
        &Limits {
            max_connections: Some(2),
            ..Default::default()
        },
        &[],
    );
    let mut both = accepted_clients(&srv, 2);
    let mut third = Raw::connect(srv.port); // INFO first: Raw::connect asserts it
    assert_eq!(
        third.expect_closed(),
        "-ERR 'maximum connections exceeded'\r\n"
    );
    for r in &mut both {
        assert_eq!(r.flush(), "", "the first connections stay");
    }
}

#[test]
fn max_subscriptions_refuses_each_extra_sub_and_stays_open() {
    let srv = Server::with(
        &Limits {
            max_subscriptions: Some(2),
            ..Default::default()
        },
        &[],
    );
    let mut r = client(&srv, QUIET, "");
    r.send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB d 4\r\n");
    let refused = "-ERR 'maximum subscriptions exceeded'\r\n";
    assert_eq!(r.flush(), refused.repeat(2));
    r.send("PUB a 1\r\nx\r\nPUB b 1\r\ny\r\nPUB c 1\r\nz\r\n");
    assert_eq!(
        r.flush(),
        msg("a", "1", None, "x") + &msg("b", "2", None, "y")
    );
    // Freed room can be used again.
    r.send("UNSUB 1\r\nSUB c 3\r\nPUB c 1\r\nz\r\n");
    assert_eq!(r.flush(), msg("c", "3", None, "z"));
    // Verbose: +OK for the SUBs that pass, only the -ERR for the one that does not.
    let mut v = verbose_client(&srv, r#"{"verbose":true,"pedantic":false}"#);
    v.send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\n");
    assert_eq!(v.flush(), format!("+OK\r\n+OK\r\n{refused}"));
}

#[test]
fn stale_connection_is_closed_after_ping_max_unanswered_pings() {
    let srv = Server::with(
        &Limits {
            ping_interval: Some(1),
            ping_max: Some(2),
            ..Default::default()
        },
        &[],
    );
    let start = Instant::now();
    let mut stale = client(&srv, QUIET, "");
    // A client that answers every PING outlives it.
    let mut live = client(&srv, QUIET, "");
    let answering = std::thread::spawn(move || {
        for _ in 0..3 {
            assert_eq!(live.read_line(), "PING\r\n");
            live.send("PONG\r\n");
        }
        live
    });
    assert_eq!(
        stale.expect_closed(),
        "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n"
    );
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "stale connection closed after {took:?}"
    );
    let mut live = answering.join().expect("the answering client");
    assert_eq!(live.flush(), "", "the answering client stays");
}

// ---------------------------------------------------------------------------------------
// 15. slow consumer

/// A subscriber that never reads is cut off (without an -ERR, like the reference) once its
/// unsent bytes pass max_pending or its socket stays full past write_deadline; the one that
/// reads gets every message in order, the publisher is never disconnected, and the broker's
/// memory stays bounded.
///
/// Expected difference: the reference's publisher connection writes to the slow
/// subscriber's socket itself, so once that socket is full the publisher and everyone
/// behind it stall for write_deadline (10 s by default; 2 s here) until the slow one is
/// closed. natsu never blocks a publisher on another connection's socket and should show no
/// such stall; the test allows the reference's one (MAX_STALL) and no more.
#[test]
fn slow_consumer_is_cut_off_without_hurting_others() {
    const N: usize = 200_000;
    const SIZE: usize = 1024;
    const BATCH: usize = 250;
    // Messages in flight to the good subscriber at most: WINDOW + BATCH KiB stays under
    // max_pending, so the good subscriber is never the slow one.
    const WINDOW: usize = 500;
    const MAX_RSS_KIB: u64 = 200 * 1024;
    const MAX_STALL: Duration = Duration::from_secs(5);
    let limits = Limits {
        max_pending: Some(1 << 20),
        write_deadline: Some(2),
        ..Default::default()
    };
    let srv = Server::with(&limits, &[]);
    let mut slow = client(&srv, QUIET, "SUB data 1\r\n");
    let mut good = Frames::new(client(&srv, QUIET, "SUB data 2\r\n"));
    let (progress, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for i in 0..N {
            let m = good.msg();
            assert_eq!((m.sid.as_str(), m.payload.len()), ("2", SIZE));
            assert_eq!(&m.payload[..8], format!("{i:08}").as_bytes(), "order");
            if (i + 1) % BATCH == 0 {
                // The publisher stops listening once the last batch is near; read on anyway.
                let _ = progress.send(i + 1);
            }
        }
        assert!(good.until_pong().is_empty());
    });

    let mut publisher = Frames::new(client(&srv, QUIET, ""));
    let filler = "x".repeat(SIZE - 8);
    let (mut done, mut max_rss, mut max_stall) = (0, 0, Duration::ZERO);
    let mut batch = String::with_capacity(BATCH * (SIZE + 20));
    for b in 0..N / BATCH {
        let start = Instant::now();
        batch.clear();
        for i in b * BATCH..(b + 1) * BATCH {
            batch += &format!("PUB data {SIZE}\r\n{i:08}{filler}\r\n");
        }
        publisher.send(batch.as_bytes());
        assert!(
            publisher.until_pong().is_empty(),
            "the publisher got messages"
        );
        let sent = (b + 1) * BATCH;
        while done + WINDOW < sent {
            done = received
                .recv_timeout(Duration::from_secs(10))
                .expect("the good subscriber stalled or failed");
        }
        max_stall = max_stall.max(start.elapsed());
        max_rss = max_rss.max(srv.rss_kib());
    }
    drop(received);
    reader
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(max_rss < MAX_RSS_KIB, "broker RSS reached {max_rss} KiB");
    assert!(
        max_stall < MAX_STALL,
        "one batch of {BATCH} took {max_stall:?}"
    );

    // The slow subscriber finds its buffered messages and then the end of the stream.
    slow.s
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut total, mut tail, mut chunk) = (slow.buf.len(), Vec::new(), vec![0u8; 1 << 16]);
    let closed = loop {
        match slow.s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => {
                total += n;
                tail.extend_from_slice(&chunk[..n]);
                assert!(
                    find(&tail, b"-ERR").is_none(),
                    "the slow consumer got an -ERR"
                );
                tail.drain(..tail.len().saturating_sub(4));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true,
        }
        assert!(
            total < N * SIZE,
            "the slow consumer got everything: it was never cut off"
        );
    };
    assert!(
        closed,
        "the slow consumer is still connected after {total} bytes"
    );
}

// ---------------------------------------------------------------------------------------
// 16-18. framing

#[test]
fn commands_split_one_byte_per_write() {
    let srv = Server::start();
    let session = format!(
        "CONNECT {QUIET_HDR}\r\nSUB foo 1\r\nSUB bar q 2\r\nPUB foo reply 5\r\nhello\r\n\
         HPUB bar 12 14\r\nNATS/1.0\r\n\r\nhi\r\nUNSUB 1\r\nPUB foo 1\r\nx\r\nUNSUB 2\r\nPING\r\n"
    );
    let want = msg("foo", "1", Some("reply"), "hello")
        + "HMSG bar 2 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n";
    // The same session in one write and then byte by byte (nodelay is on, so each byte goes
    // out in a segment of its own unless the broker is slower than the sender).
    for one_byte_writes in [false, true] {
        let mut r = Raw::connect(srv.port);
        if one_byte_writes {
            session.bytes().for_each(|b| r.send_bytes(&[b]));
        } else {
            r.send(&session);
        }
        r.expect(&want);
        assert_eq!(r.flush(), "", "one byte per write: {one_byte_writes}");
    }
}

#[test]
fn payload_of_exactly_max_payload_is_delivered_intact() {
    const MAX: usize = 1048576;
    let srv = Server::start();
    let mut sub = client(&srv, QUIET_HDR, "SUB big 1\r\n");
    let payload: Vec<u8> = (0..MAX).map(|i| (i % 251) as u8).collect();
    let hdr = b"NATS/1.0\r\n\r\n";
    let mut p = client(&srv, QUIET_HDR, "");
    // A PUB of max_payload bytes, and an HPUB whose headers and payload add up to it.
    for (line, body) in [
        (format!("PUB big {MAX}\r\n"), payload.clone()),
        (
            format!("HPUB big {} {MAX}\r\n", hdr.len()),
            [&hdr[..], &payload[hdr.len()..]].concat(),
        ),
    ] {
        p.send(&line);
        p.send_bytes(&body);
        p.send("\r\n");
        assert_eq!(p.flush(), "");
        sub.expect(&line.replacen("PUB big", "MSG big 1", 1));
        assert!(sub.read_exact_n(MAX) == body, "payload changed on the way");
        expect_exactly(&mut sub, "\r\n");
    }
}

#[test]
fn ten_thousand_pubs_in_one_write_arrive_in_order() {
    const N: usize = 10_000;
    let srv = Server::start();
    let mut sub = Frames::new(client(&srv, QUIET, "SUB seq 1\r\n"));
    let data: String = (0..N)
        .map(|i| format!("PUB seq {}\r\n{i}\r\n", i.to_string().len()))
        .collect();
    publish(&srv, QUIET, &data);
    for i in 0..N {
        let m = sub.msg();
        assert_eq!(
            (m.subject.as_str(), m.payload.as_slice()),
            ("seq", i.to_string().as_bytes())
        );
    }
    assert!(sub.until_pong().is_empty());
}
