//! Logging as nats-server does it, checked on natsu and, where the same flags apply, on the
//! reference nats-server with the same assertions: the line shape with and without
//! timestamps, client prefixes, `-l` files and their reopening on SIGUSR1, remote syslog over
//! UDP, TCP and unix sockets, the local syslog, and which destination wins when several are
//! given. Every wait is bounded; only the children started here are killed.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::TempDir;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Natsu,
    Reference,
}

use Target::{Natsu, Reference};

impl Target {
    fn bin(self) -> PathBuf {
        match self {
            Natsu => common::natsu_bin(),
            Reference => PathBuf::from("nats-server"),
        }
    }

    /// The syslog tag: the executable's name.
    fn tag(self) -> &'static str {
        match self {
            Natsu => "natsu",
            Reference => "nats-server",
        }
    }
}

/// A broker child with its stderr lines on a channel; killed when dropped.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    /// Every stderr line received so far.
    seen: Vec<String>,
}

impl Proc {
    fn start(target: Target, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::spawn(target, args, env, None)
    }

    /// Start natsu with a stderr that stops being read after the "Listening for client
    /// connections" line, until the returned sender says go (or is dropped): the pipe fills
    /// and every write to it blocks.
    fn start_unread(args: &[&str]) -> (Proc, std::sync::mpsc::Sender<()>) {
        let (go, resume) = channel();
        (Proc::spawn(Natsu, args, &[], Some(resume)), go)
    }

    fn spawn(target: Target, args: &[&str], env: &[(&str, &str)], mut pause: Option<Receiver<()>>) -> Proc {
        let mut cmd = Command::new(target.bin());
        cmd.args(["-a", "127.0.0.1", "-p", "-1"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
            cmd.env_remove("RUST_LOG");
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start broker");
        let err = child.stderr.take().expect("stderr piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if std::env::var_os("NATSU_TEST_LOG").is_some() {
                    eprintln!("{line}");
                }
                let listening = line.contains("Listening for client connections on ");
                if tx.send(line).is_err() {
                    break;
                }
                if listening {
                    if let Some(resume) = pause.take() {
                        let _ = resume.recv();
                    }
                }
            }
        });
        Proc { child, lines, seen: Vec::new() }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first stderr line (from now on) that `pred` accepts, within [`WAIT`].
    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + WAIT;
        loop {
            match self.lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no stderr line {what} within {WAIT:?}; saw {:#?}", self.seen),
                Err(RecvTimeoutError::Disconnected) => panic!("broker exited before a stderr line {what}; saw {:#?}", self.seen),
            }
        }
    }

    /// The client port from the "Listening for client connections on" stderr line.
    fn port(&mut self) -> u16 {
        let l = self.wait_line("with the port", |l| l.contains("Listening for client connections on "));
        port_in(&l).expect("port in the listening line")
    }

    /// Kill the broker and return every stderr line it wrote (reading to end of file).
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let end = Instant::now() + WAIT;
        loop {
            match self.lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(l) => self.seen.push(l),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("stderr not closed within {WAIT:?} after kill"),
            }
        }
        std::mem::take(&mut self.seen)
    }

    /// Wait for the broker to exit by itself (a refused setting); its code and stderr.
    fn exit(mut self) -> (Option<i32>, String) {
        let end = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < end, "broker still running after {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(WAIT) {
            self.seen.push(l);
        }
        (status.code(), self.seen.join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_in(line: &str) -> Option<u16> {
    let (_, addr) = line.split_once("Listening for client connections on ")?;
    addr.trim().rsplit(':').next()?.parse().ok()
}

/// Connect, CONNECT and round-trip a PING; the connection's local address.
fn client(port: u16) -> (TcpStream, String) {
    let mut r = common::Raw::connect(port);
    r.send("CONNECT {\"verbose\":false}\r\nPING\r\n");
    r.expect("PONG\r\n");
    let local = r.s.local_addr().expect("local addr").to_string();
    (r.s, local)
}

// ---------------------------------------------------------------------------------------
// Line shapes
// ---------------------------------------------------------------------------------------

/// `[pid] ` then, with timestamps, `YYYY/MM/DD hh:mm:ss.uuuuuu `, then `[LVL] `; the rest.
fn parse_line(line: &str, pid: u32, logtime: bool) -> Option<(&str, &str)> {
    let rest = line.strip_prefix(&format!("[{pid}] "))?;
    let rest = if logtime {
        let (stamp, rest) = (rest.get(..27)?, rest.get(27..)?);
        let b = stamp.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let ok = digits(0..4)
            && b[4] == b'/'
            && digits(5..7)
            && b[7] == b'/'
            && digits(8..10)
            && b[10] == b' '
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && b[19] == b'.'
            && digits(20..26)
            && b[26] == b' ';
        if !ok {
            return None;
        }
        rest
    } else {
        rest
    };
    let level = rest.get(..6)?;
    if !(level.starts_with('[') && level.ends_with("] ")) {
        return None;
    }
    Some((&level[1..4], &rest[6..]))
}

#[test]
fn lines_have_nats_servers_shape() {
    for target in [Natsu, Reference] {
        for logtime in [true, false] {
            let args: &[&str] = if logtime { &[] } else { &["-T=false"] };
            let mut p = Proc::start(target, args, &[]);
            let pid = p.pid();
            p.wait_line("Server is ready", |l| l.ends_with("Server is ready"));
            let lines = p.stop();
            for l in &lines {
                let (level, _) = parse_line(l, pid, logtime).unwrap_or_else(|| panic!("{target:?} -T={logtime}: bad line {l:?}"));
                assert!(["INF", "WRN", "ERR"].contains(&level), "{target:?}: {l}");
            }
            let (_, msg) = parse_line(lines.iter().find(|l| l.contains("Listening")).unwrap(), pid, logtime).unwrap();
            assert!(msg.starts_with("Listening for client connections on 127.0.0.1:"), "{target:?}: {msg}");
        }
    }
}

#[test]
fn client_lines_carry_addr_and_cid() {
    for target in [Natsu, Reference] {
        let mut p = Proc::start(target, &["-D"], &[]);
        let pid = p.pid();
        let port = p.port();
        let (_conn, local) = client(port);
        let l = p.wait_line("Client connection created", |l| l.contains("Client connection created"));
        let (level, msg) = parse_line(&l, pid, true).unwrap_or_else(|| panic!("{target:?}: {l}"));
        assert_eq!(level, "DBG");
        let rest = msg.strip_prefix(&format!("{local} - cid:")).unwrap_or_else(|| panic!("{target:?}: {msg:?} for {local}"));
        let (cid, text) = rest.split_once(" - ").unwrap();
        assert!(cid.parse::<u64>().is_ok(), "{target:?}: {msg}");
        assert_eq!(text, "Client connection created");
    }
}

#[test]
fn trace_alone_shows_no_debug_lines() {
    for target in [Natsu, Reference] {
        let mut p = Proc::start(target, &["-V"], &[]);
        let port = p.port();
        let (conn, _) = client(port);
        drop(conn);
        let lines = p.stop();
        assert!(!lines.iter().any(|l| l.contains("[DBG]")), "{target:?}: {lines:#?}");
    }
}

#[test]
fn trace_lines_are_nats_servers() {
    for target in [Reference, Natsu] {
        let mut p = Proc::start(target, &["-V"], &[]);
        let pid = p.pid();
        let port = p.port();
        let mut r = common::Raw::connect(port);
        let local = r.s.local_addr().unwrap().to_string();
        r.send("CONNECT {\"verbose\":false,\"name\":\"me\",\"lang\":\"rust\",\"version\":\"0.1\"}\r\nSUB foo  1\r\nPUB foo 5\r\nhello\r\nPING\r\n");
        r.flush();
        let body = |l: &str| parse_line(l, pid, true).map(|(lvl, m)| (lvl.to_string(), m.to_string()));
        let want = |p: &mut Proc, tail: &str| {
            let l = p.wait_line(tail, |l| l.ends_with(tail));
            let (lvl, m) = body(&l).unwrap_or_else(|| panic!("{target:?}: {l}"));
            assert_eq!(lvl, "TRC", "{target:?}: {l}");
            assert!(m.starts_with(&format!("{local} - cid:")), "{target:?}: {l}");
            m
        };
        let m = want(&mut p, "<<- [CONNECT {\"verbose\":false,\"name\":\"me\",\"lang\":\"rust\",\"version\":\"0.1\"}]");
        assert!(!m.contains("v0.1"), "{target:?}: the label comes after CONNECT: {m}");
        assert!(want(&mut p, " - \"v0.1:rust:me\" - <<- [SUB foo  1]").contains("cid:"));
        want(&mut p, " - \"v0.1:rust:me\" - <<- [PUB foo 5]");
        want(&mut p, " - \"v0.1:rust:me\" - <<- MSG_PAYLOAD: [\"hello\"]");
        want(&mut p, " - \"v0.1:rust:me\" - ->> [MSG foo 1 5]");
        want(&mut p, " - \"v0.1:rust:me\" - <<- [PING]");
        want(&mut p, " - \"v0.1:rust:me\" - ->> [PONG]");
    }
}

#[test]
fn rust_log_still_works() {
    let mut p = Proc::start(Natsu, &[], &[("RUST_LOG", "natsu=debug")]);
    let port = p.port();
    let _c = client(port);
    let l = p.wait_line("a debug line", |l| l.contains("Client connection created"));
    assert!(l.contains("[DBG] "), "{l}");
}

// ---------------------------------------------------------------------------------------
// Log files
// ---------------------------------------------------------------------------------------

/// Poll `path` (every 20 ms, up to [`WAIT`]) until it has a line containing `needle`.
fn wait_file_line(path: &Path, needle: &str) -> String {
    let end = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(needle)) {
            return l.to_string();
        }
        assert!(Instant::now() < end, "no line with {needle:?} in {} within {WAIT:?}; it has {text:?}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn log_file_gets_the_lines() {
    for target in [Natsu, Reference] {
        let dir = TempDir::new("logfile");
        let path = dir.0.join("natsu.log");
        let p = Proc::start(target, &["-l", path.to_str().unwrap(), "-T=false"], &[]);
        let pid = p.pid();
        wait_file_line(&path, "Server is ready");
        let stderr = p.stop();
        assert!(stderr.is_empty(), "{target:?}: stderr has {stderr:#?}");
        let text = std::fs::read_to_string(&path).unwrap();
        for l in text.lines() {
            assert!(parse_line(l, pid, false).is_some(), "{target:?}: {l:?}");
        }
        assert!(text.contains("Listening for client connections on 127.0.0.1:"), "{target:?}: {text}");
    }
}

#[test]
fn sigusr1_reopens_the_log_file() {
    for target in [Reference, Natsu] {
        let dir = TempDir::new("rotate");
        let path = dir.0.join("natsu.log");
        let rotated = dir.0.join("natsu.log.1");
        let p = Proc::start(target, &["-l", path.to_str().unwrap(), "-D"], &[]);
        let port = port_in(&wait_file_line(&path, "Listening for client connections on ")).unwrap();
        wait_file_line(&path, "Server is ready");
        std::fs::rename(&path, &rotated).unwrap();
        // SAFETY: kill(2) on the pid of a child this test started and still holds.
        assert_eq!(unsafe { libc::kill(p.pid() as libc::pid_t, libc::SIGUSR1) }, 0);
        let l = wait_file_line(&path, "File log re-opened");
        assert!(l.contains("[INF] File log re-opened"), "{target:?}: {l}");
        // A line written after the reopen goes to the new file only.
        let (_c, local) = client(port);
        wait_file_line(&path, &format!("{local} - cid:"));
        let old = std::fs::read_to_string(&rotated).unwrap();
        assert!(old.contains("Server is ready") && !old.contains(&local) && !old.contains("re-opened"), "{target:?}: old file {old}");
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(!new.contains("Server is ready"), "{target:?}: new file {new}");
        drop(p);
    }
}

#[test]
fn sigusr1_without_a_file_says_so() {
    for target in [Reference, Natsu] {
        let mut p = Proc::start(target, &[], &[]);
        p.wait_line("Server is ready", |l| l.ends_with("Server is ready"));
        // SAFETY: kill(2) on the pid of a child this test started and still holds.
        assert_eq!(unsafe { libc::kill(p.pid() as libc::pid_t, libc::SIGUSR1) }, 0);
        let l = p.wait_line("about the reopen", |l| l.contains("re-open"));
        assert!(l.ends_with("[INF] File log re-open ignored, not a file logger"), "{target:?}: {l}");
    }
}

// ---------------------------------------------------------------------------------------
// Syslog
// ---------------------------------------------------------------------------------------

/// `<PRI>2006-01-02T15:04:05Z host tag[pid]: msg\n` (network syslog): the priority and
/// message, or why not.
fn parse_network(frame: &str, tag: &str, pid: u32) -> Result<(u8, String), String> {
    let frame = frame.strip_suffix('\n').ok_or("no newline at the end")?;
    let (pri, rest) = frame.strip_prefix('<').and_then(|f| f.split_once('>')).ok_or("no <PRI>")?;
    let pri: u8 = pri.parse().map_err(|_| "bad PRI")?;
    let (stamp, rest) = rest.split_once(' ').ok_or("no timestamp")?;
    let b = stamp.as_bytes();
    let ok = b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':' && (stamp.ends_with('Z') || b[19] == b'+' || b[19] == b'-');
    if !ok {
        return Err(format!("timestamp {stamp:?} is not RFC 3339"));
    }
    let (host, rest) = rest.split_once(' ').ok_or("no host")?;
    if host.is_empty() {
        return Err("empty host".into());
    }
    let msg = rest.strip_prefix(&format!("{tag}[{pid}]: ")).ok_or(format!("no {tag}[{pid}] tag"))?;
    Ok((pri, msg.to_string()))
}

/// `<PRI>Jan _2 15:04:05 tag[pid]: msg\n` (unix socket syslog).
fn parse_local(frame: &str, tag: &str, pid: u32) -> Result<(u8, String), String> {
    let frame = frame.strip_suffix('\n').ok_or("no newline at the end")?;
    let (pri, rest) = frame.strip_prefix('<').and_then(|f| f.split_once('>')).ok_or("no <PRI>")?;
    let pri: u8 = pri.parse().map_err(|_| "bad PRI")?;
    let (stamp, rest) = (rest.get(..15).ok_or("short")?, rest.get(15..).ok_or("short")?);
    let b = stamp.as_bytes();
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let ok = months.contains(&&stamp[..3]) && b[3] == b' ' && (b[4] == b' ' || b[4].is_ascii_digit()) && b[5].is_ascii_digit() && b[6] == b' ' && b[9] == b':' && b[12] == b':';
    if !ok {
        return Err(format!("timestamp {stamp:?} is not Go's time.Stamp"));
    }
    let msg = rest.strip_prefix(&format!(" {tag}[{pid}]: ")).ok_or(format!("no {tag}[{pid}] tag"))?;
    Ok((pri, msg.to_string()))
}

/// Datagrams from `recv` until one contains `until`, within [`WAIT`].
fn datagrams_until(recv: impl Fn(&mut [u8]) -> std::io::Result<usize>, until: &str) -> Vec<String> {
    let end = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        match recv(&mut buf) {
            Ok(n) => {
                let s = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = s.contains(until);
                got.push(s);
                if done {
                    return got;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("receive: {e}"),
        }
    }
    panic!("no datagram with {until:?} within {WAIT:?}; got {got:#?}");
}

#[test]
fn remote_syslog_over_udp() {
    for target in [Natsu, Reference] {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let url = format!("udp://{}", sock.local_addr().unwrap());
        let p = Proc::start(target, &["-r", &url, "-D"], &[]);
        let pid = p.pid();
        let frames = datagrams_until(|b| sock.recv(b), "Server is ready");
        let mut port = None;
        for f in &frames {
            let (pri, msg) = parse_network(f, target.tag(), pid).unwrap_or_else(|e| panic!("{target:?}: {e}: {f:?}"));
            // nats-server's remote logger has facility 0: notices are <5>, debug <7>.
            assert!(pri == 5 || pri == 7, "{target:?}: {f:?}");
            port = port.or_else(|| port_in(&msg));
        }
        assert!(frames.iter().any(|f| f.starts_with("<5>") && f.contains("Listening for client connections on 127.0.0.1:")), "{target:?}");
        let (_c, local) = client(port.expect("the port in a datagram"));
        let frames = datagrams_until(|b| sock.recv(b), "Client connection created");
        let (pri, msg) = parse_network(frames.last().unwrap(), target.tag(), pid).unwrap();
        assert_eq!(pri, 7, "{target:?}");
        assert!(msg.starts_with(&format!("{local} - cid:")) && msg.ends_with(" - Client connection created"), "{target:?}: {msg}");
        // Nothing on stderr: the syslog is the one destination.
        let stderr = p.stop();
        assert!(stderr.is_empty(), "{target:?}: {stderr:#?}");
    }
}

#[test]
fn remote_syslog_over_tcp() {
    for target in [Natsu, Reference] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", l.local_addr().unwrap());
        let p = Proc::start(target, &["-r", &url], &[]);
        let pid = p.pid();
        l.set_nonblocking(false).unwrap();
        let (conn, _) = accept_within(&l);
        conn.set_read_timeout(Some(WAIT)).unwrap();
        let mut r = BufReader::new(conn);
        let mut n = 0;
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "{target:?}: closed");
            let (pri, msg) = parse_network(&line, target.tag(), pid).unwrap_or_else(|e| panic!("{target:?}: {e}: {line:?}"));
            assert_eq!(pri, 5, "{target:?}: {line:?}");
            n += 1;
            if msg == "Server is ready" {
                break;
            }
        }
        assert!(n >= 3, "{target:?}");
        drop(p);
    }
}

/// Accept one connection within [`WAIT`].
fn accept_within(l: &TcpListener) -> (TcpStream, std::net::SocketAddr) {
    l.set_nonblocking(true).unwrap();
    let end = Instant::now() + WAIT;
    loop {
        match l.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false).unwrap();
                return (s, a);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < end, "no connection within {WAIT:?}");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn remote_syslog_over_a_unix_stream_socket() {
    for target in [Natsu, Reference] {
        let dir = TempDir::new("syslog-unix");
        let path = dir.0.join("log.sock");
        let l = UnixListener::bind(&path).unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("unix://{}", path.display());
        let p = Proc::start(target, &["-r", &url], &[]);
        let pid = p.pid();
        let end = Instant::now() + WAIT;
        let mut conn = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("{target:?}: no connection: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while !text.contains("Server is ready\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "{target:?}: closed; got {text:?}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        for line in text.split_inclusive('\n') {
            // A unix socket gets the local format, still with facility 0.
            let (pri, _) = parse_local(line, target.tag(), pid).unwrap_or_else(|e| panic!("{target:?}: {e}: {line:?}"));
            assert_eq!(pri, 5, "{target:?}: {line:?}");
        }
        drop(p);
    }
}

#[test]
fn local_syslog_gets_daemon_datagrams() {
    // Never the machine's own /dev/log: a socket of the test's, named by the variable natsu
    // reads for it (nats-server has no such setting, so this one is natsu only).
    let dir = TempDir::new("syslog-local");
    let path = dir.0.join("log");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let p = Proc::start(Natsu, &["-s"], &[("NATSU_SYSLOG_SOCKET", path.to_str().unwrap())]);
    let pid = p.pid();
    let frames = datagrams_until(|b| sock.recv(b), "Server is ready");
    for f in &frames {
        let (pri, _) = parse_local(f, "natsu", pid).unwrap_or_else(|e| panic!("{e}: {f:?}"));
        // LOG_DAEMON | LOG_NOTICE.
        assert_eq!(pri, 29, "{f:?}");
    }
    assert!(frames[0].contains("]: Starting natsu"), "{frames:#?}");
    assert!(p.stop().is_empty());
}

#[test]
fn local_syslog_missing_is_an_error() {
    let dir = TempDir::new("syslog-none");
    let missing = dir.0.join("no-such-socket");
    let p = Proc::start(Natsu, &["-s"], &[("NATSU_SYSLOG_SOCKET", missing.to_str().unwrap())]);
    let (code, err) = p.exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("error connecting to syslog"), "{err}");
}

#[test]
fn bad_remote_syslog_addresses_are_refused() {
    for target in [Natsu, Reference] {
        let (code, err) = Proc::start(target, &["-r", "http://127.0.0.1:514"], &[]).exit();
        assert_eq!(code, Some(1), "{target:?}: {err}");
        assert!(err.contains("invalid network type"), "{target:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// Precedence: a file, else a remote syslog, else the local syslog, else stderr
// ---------------------------------------------------------------------------------------

#[test]
fn a_log_file_wins_over_syslog() {
    for target in [Natsu, Reference] {
        let dir = TempDir::new("prec-file");
        let path = dir.0.join("natsu.log");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let url = format!("udp://{}", udp.local_addr().unwrap());
        let p = Proc::start(target, &["-l", path.to_str().unwrap(), "-r", &url], &[]);
        wait_file_line(&path, "Server is ready");
        // Every line so far went to the file; a datagram would already be here.
        udp.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = [0u8; 2048];
        if let Ok(n) = udp.recv(&mut buf) {
            panic!("{target:?}: syslog got {:?}", String::from_utf8_lossy(&buf[..n]));
        }
        assert!(p.stop().is_empty(), "{target:?}");
    }
}

#[test]
fn remote_syslog_wins_over_local_syslog() {
    let dir = TempDir::new("prec-remote");
    let path = dir.0.join("log");
    let local = UnixDatagram::bind(&path).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let url = format!("udp://{}", udp.local_addr().unwrap());
    let p = Proc::start(Natsu, &["-s", "-r", &url], &[("NATSU_SYSLOG_SOCKET", path.to_str().unwrap())]);
    datagrams_until(|b| udp.recv(b), "Server is ready");
    local.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    if let Ok(n) = local.recv(&mut buf) {
        panic!("the local syslog got {:?}", String::from_utf8_lossy(&buf[..n]));
    }
    assert!(p.stop().is_empty());
}

/// `reopen` itself, in this test process (the one test here that installs natsu's logger
/// in-process): the file is reopened at its path, and "File log re-opened" starts the new one.
#[test]
fn reopen_reconfigure_and_traces_in_process() {
    let dir = TempDir::new("reopen");
    let path = dir.0.join("natsu.log");
    let rotated = dir.0.join("natsu.log.1");
    let opts = natsu::config::cli::LogOptions { log_file: Some(path.to_str().unwrap().to_string()), logtime: true, ..Default::default() };
    natsu::logging::init(&opts).expect("init");
    // natsu's own targets log at info; other crates only warnings.
    tracing::info!(target: "natsu::test", "before the rotation");
    std::fs::rename(&path, &rotated).unwrap();
    tracing::info!(target: "natsu::test", "still to the renamed file");
    natsu::logging::reopen().expect("reopen");
    tracing::info!(target: "other_crate", "not a warning: dropped");
    tracing::info!(target: "natsu::test", cid = 7u64, addr = %"127.0.0.1:1", "after the rotation");
    // Lines are written by the logging thread: wait for it before reading the files.
    assert!(natsu::logging::flush(WAIT));
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&path).unwrap();
    let pid = std::process::id();
    let msgs = |t: &str| t.lines().map(|l| parse_line(l, pid, true).unwrap_or_else(|| panic!("{l:?}")).1.to_string()).collect::<Vec<_>>();
    assert_eq!(msgs(&old), ["before the rotation", "still to the renamed file"]);
    assert_eq!(msgs(&new), ["File log re-opened", "127.0.0.1:1 - cid:7 - after the rotation"]);

    // reconfigure: another file, no timestamps, -V; then the protocol trace helpers.
    assert!(!natsu::logging::trace_enabled());
    let traced = dir.0.join("trace.log");
    let opts = natsu::config::cli::LogOptions { log_file: Some(traced.to_str().unwrap().to_string()), logtime: false, trace: true, ..Default::default() };
    natsu::logging::reconfigure(&opts).expect("reconfigure");
    assert!(natsu::logging::trace_enabled());
    let addr: std::net::SocketAddr = "127.0.0.1:54321".parse().unwrap();
    let label = natsu::logging::client_label("me", "rust", "0.1");
    natsu::logging::trace_in(5, Some(addr), "", b"CONNECT {\"name\":\"me\"}");
    natsu::logging::trace_in(5, Some(addr), &label, b"SUB foo  1");
    natsu::logging::trace_payload(5, Some(addr), &label, b"he\"llo\r\n");
    natsu::logging::trace_out(5, Some(addr), &label, b"MSG foo 1 5");
    natsu::logging::trace_internal(5, None, "", b"DELSUB 1");
    tracing::debug!(target: "natsu::test", "no debug with -V alone");
    assert!(natsu::logging::flush(WAIT));
    let text = std::fs::read_to_string(&traced).unwrap();
    let want = [
        "[TRC] 127.0.0.1:54321 - cid:5 - <<- [CONNECT {\"name\":\"me\"}]",
        "[TRC] 127.0.0.1:54321 - cid:5 - \"v0.1:rust:me\" - <<- [SUB foo  1]",
        "[TRC] 127.0.0.1:54321 - cid:5 - \"v0.1:rust:me\" - <<- MSG_PAYLOAD: [\"he\\\"llo\\r\\n\"]",
        "[TRC] 127.0.0.1:54321 - cid:5 - \"v0.1:rust:me\" - ->> [MSG foo 1 5]",
        "[TRC] cid:5 - <-> [DELSUB 1]",
    ];
    let got: Vec<&str> = text.lines().map(|l| l.strip_prefix(&format!("[{pid}] ")).unwrap_or(l)).collect();
    assert_eq!(got, want);

    // A path that cannot be opened leaves the current file in place.
    std::fs::remove_dir_all(&dir.0).unwrap();
    assert!(natsu::logging::reopen().is_err());
}

// ---------------------------------------------------------------------------------------
// A destination that stalls
// ---------------------------------------------------------------------------------------

/// Messages through natsu while nobody reads its stderr: with `-V` every message is traced,
/// the pipe fills at 64 KiB and every write to it blocks. All messages must still arrive
/// (logging only queues lines for its writer thread and drops what does not fit). Once the
/// pipe is read again, natsu says how many lines it dropped and goes on logging.
#[test]
fn a_stalled_stderr_does_not_stop_messages() {
    const MSGS: usize = 40_000;
    let (mut p, go) = Proc::start_unread(&["-V"]);
    let pid = p.pid();
    let port = p.port();
    let mut sub = common::Raw::connect_with(port, "{\"verbose\":false}");
    sub.send("SUB foo 1\r\n");
    sub.flush();
    let publisher = std::thread::spawn(move || {
        let mut r = common::Raw::connect_with(port, "{\"verbose\":false}");
        r.send_bytes(&b"PUB foo 5\r\nhello\r\n".repeat(MSGS));
        r.flush();
    });
    // Every message, in order, each read within Raw's 5 s read timeout: a server whose
    // executors wait on the pipe fails here. The traces of these messages are some
    // 120,000 lines, far more than the pipe and the queue hold.
    let start = Instant::now();
    let frame = b"MSG foo 1 5\r\nhello\r\n";
    let got = sub.read_exact_n(MSGS * frame.len());
    for (i, m) in got.chunks(frame.len()).enumerate() {
        assert_eq!(m, frame, "message {i}");
    }
    assert!(start.elapsed() < Duration::from_secs(30), "{MSGS} messages took {:?}", start.elapsed());
    publisher.join().expect("publisher");
    // The pipe is still unread: the broker is still serving.
    sub.flush();

    drop(go);
    let report = p.wait_line("reporting the dropped lines", |l| l.contains("logging fell behind: "));
    let (level, msg) = parse_line(&report, pid, true).unwrap_or_else(|| panic!("bad line {report:?}"));
    assert_eq!(level, "WRN", "{report}");
    let n: u64 = msg
        .strip_prefix("logging fell behind: ")
        .and_then(|m| m.strip_suffix(" lines dropped"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(n > 0, "{report}");
    // Still logging: a new client's PING is traced.
    let (_c, local) = client(port);
    let l = p.wait_line("tracing a new client", |l| l.contains(&format!("{local} - cid:")) && l.ends_with("<<- [PING]"));
    assert_eq!(parse_line(&l, pid, true).map(|(level, _)| level), Some("TRC"), "{l}");
    // Every line the pipe carried is whole.
    for l in &p.seen {
        assert!(parse_line(l, pid, true).is_some(), "torn or malformed line {l:?}");
    }
}

/// The last lines of a graceful stop are written before the process exits, although a
/// thread other than main writes them.
#[test]
fn a_graceful_stop_writes_its_last_lines() {
    let mut p = Proc::start(Natsu, &[], &[]);
    p.wait_line("Server is ready", |l| l.ends_with("Server is ready"));
    // SAFETY: kill(2) on the pid of a child this test started and still holds.
    assert_eq!(unsafe { libc::kill(p.pid() as libc::pid_t, libc::SIGTERM) }, 0);
    let (code, err) = p.exit();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.ends_with("[INF] Server Exiting.."), "{err}");
}
