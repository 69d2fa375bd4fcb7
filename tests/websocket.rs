//! The broker's WebSocket port (`websocket {}`), frame by frame, against nats-server 2.9's:
//! the same raw frames sent to both must come back as the same protocol, the same close
//! codes and texts, with compression and without. Also what only natsu can be asked:
//! WebSocket and TCP clients together across cores, /connz and /varz, the WebSocket
//! port's own credentials, config errors, a second process on the port, kill -9 and restart.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, natsu_bin, Raw, Server, TempDir};

/// A server (natsu or nats-server) with a WebSocket port, from a config file.
struct WsServer {
    name: &'static str,
    server: Server,
    ws_port: u16,
    http_port: u16,
    _dir: TempDir,
}

/// Start `which` ("natsu" or "nats-server") with `websocket { listen, no_tls: true, <ws> }`
/// and the top-level `extra` settings.
fn start(which: &'static str, ws: &str, extra: &str, args: &[&str]) -> WsServer {
    let dir = TempDir::new("ws");
    let (ws_port, http_port) = (free_port(), free_port());
    let conf = dir.0.join("ws.conf");
    std::fs::write(&conf, format!("http_port: {http_port}\n{extra}\nwebsocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  no_tls: true\n  {ws}\n}}\n")).unwrap();
    let mut all = vec!["-p", "-1", "-c", conf.to_str().unwrap()];
    all.extend_from_slice(args);
    let server = if which == "natsu" { Server::target_with(&all) } else { Server::reference_with(&all) };
    wait_port(ws_port);
    WsServer { name: which, server, ws_port, http_port, _dir: dir }
}

/// natsu (two cores) and the reference, each with the same settings.
fn both(ws: &str, extra: &str) -> Vec<WsServer> {
    let mut list = vec![start("natsu", ws, extra, &["--cores", "2"])];
    if which_reference() {
        list.push(start("nats-server", ws, extra, &[]));
    }
    list
}

/// The reference takes part unless the tests run against it alone.
fn which_reference() -> bool {
    Command::new("nats-server").arg("--version").output().is_ok()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "WebSocket port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One frame as read.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// A raw WebSocket client: frames out (masked unless told otherwise), frames in.
struct Ws {
    s: TcpStream,
    buf: Vec<u8>,
    /// The NATS bytes read so far (data frames' payloads, inflated when compressed).
    data: Vec<u8>,
    /// The close frame's payload, once one came.
    close: Option<Vec<u8>>,
    /// A compressed message being gathered.
    zmsg: Option<Vec<u8>>,
    pongs: Vec<Vec<u8>>,
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

impl Ws {
    /// Upgrade with `headers` added to the request; the answer's head.
    fn connect(port: u16, headers: &str) -> (Ws, String) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1, "connection closed during the upgrade: {:?}", String::from_utf8_lossy(&got));
            got.push(b[0]);
        }
        let head = String::from_utf8(got).unwrap();
        (Ws { s, buf: Vec::new(), data: Vec::new(), close: None, zmsg: None, pongs: Vec::new() }, head)
    }

    /// Upgrade and read INFO; the INFO's JSON.
    fn open(port: u16, headers: &str) -> (Ws, serde_json::Value) {
        let (mut ws, head) = Ws::connect(port, headers);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let info = ws.until("\r\n");
        let line = String::from_utf8(info).unwrap();
        let json = line.strip_prefix("INFO ").unwrap_or_else(|| panic!("no INFO: {line:?}")).trim();
        (ws, serde_json::from_str(json).unwrap())
    }

    fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | (if rsv1 { 0x40 } else { 0 }) | opcode];
        let m = if mask { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if mask {
            f.extend_from_slice(&MASK);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
        } else {
            f.extend_from_slice(payload);
        }
        f
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// One masked binary frame.
    fn send(&mut self, payload: &[u8]) {
        self.send_raw(&Ws::frame(true, false, 2, payload, true));
    }

    /// One compressed message in one masked binary frame.
    fn send_compressed(&mut self, payload: &[u8]) {
        let mut z = deflate(payload);
        assert!(z.ends_with(&[0, 0, 0xff, 0xff]));
        z.truncate(z.len() - 4);
        self.send_raw(&Ws::frame(true, true, 2, &z, true));
    }

    /// Read one frame (None: the connection ended or nothing came in time).
    fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(f);
            }
            let mut b = [0u8; 16384];
            match self.s.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }

    /// Take one frame into `data`/`close`/`pongs`; false when none came.
    fn pump(&mut self) -> bool {
        let Some(f) = self.read_frame() else { return false };
        match f.opcode {
            0 | 1 | 2 => {
                if f.rsv1 {
                    self.zmsg = Some(Vec::new());
                }
                match self.zmsg.as_mut() {
                    Some(z) => {
                        z.extend_from_slice(&f.payload);
                        if f.fin {
                            let mut z = self.zmsg.take().unwrap();
                            z.extend_from_slice(&[0, 0, 0xff, 0xff]);
                            self.data.extend_from_slice(&inflate(&z));
                        }
                    }
                    None => self.data.extend_from_slice(&f.payload),
                }
            }
            8 => self.close = Some(f.payload),
            10 => self.pongs.push(f.payload),
            _ => {}
        }
        true
    }

    /// NATS bytes up to and including `needle` (panics if it does not come).
    fn until(&mut self, needle: &str) -> Vec<u8> {
        loop {
            if let Some(at) = find(&self.data, needle.as_bytes()) {
                return self.data.drain(..at + needle.len()).collect();
            }
            assert!(self.close.is_none() && self.pump(), "{needle:?} never came; got {:?}, close {:?}", String::from_utf8_lossy(&self.data), self.close);
        }
    }

    /// Read until the server's close frame: its status and text.
    fn closed(&mut self) -> (u16, String) {
        while self.close.is_none() {
            assert!(self.pump(), "no close frame; got {:?}", String::from_utf8_lossy(&self.data));
        }
        let p = self.close.clone().unwrap();
        assert!(p.len() >= 2, "close frame without status: {p:?}");
        (u16::from_be_bytes([p[0], p[1]]), String::from_utf8_lossy(&p[2..]).into_owned())
    }
}

fn parse(b: &[u8]) -> Option<(Frame, usize)> {
    if b.len() < 2 {
        return None;
    }
    let (fin, rsv1, opcode) = (b[0] & 0x80 != 0, b[0] & 0x40 != 0, b[0] & 0x0f);
    assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
    let (len, at) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if b.len() < at + len {
        return None;
    }
    Some((Frame { fin, rsv1, opcode, payload: b[at..at + len].to_vec() }, at + len))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, flate2::FlushCompress::Sync).unwrap();
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(data.len() * 8 + 1024);
    loop {
        let before = d.total_in() as usize;
        d.decompress_vec(&data[before..], &mut out, flate2::FlushDecompress::Sync).unwrap();
        if d.total_in() as usize == data.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

fn get_json(port: u16, path: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let at = body.find("\r\n\r\n").unwrap();
    serde_json::from_str(&body[at + 4..]).unwrap()
}

/// The NATS protocol in frames split anywhere, combined, fragmented, as text frames: the
/// same answers from both servers.
#[test]
fn the_protocol_rides_in_frames_split_and_combined() {
    for s in both("", "") {
        let (mut ws, info) = Ws::open(s.ws_port, "");
        assert!(info["client_id"].as_u64().is_some(), "{}: {info}", s.name);
        assert!(info.get("connect_urls").is_none(), "{}: {info}", s.name);
        assert!(!info["tls_required"].as_bool().unwrap_or(false), "{}: {info}", s.name);
        // Several protocol lines in one frame.
        ws.send(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nSUB a 1\r\nSUB b 2\r\nPING\r\n");
        ws.until("PONG\r\n");
        // One line cut over three frames at odd places; then a message in a text frame.
        ws.send(b"PU");
        ws.send(b"B a 5\r\nhel");
        ws.send(b"lo\r\n");
        ws.send_raw(&Ws::frame(true, false, 1, b"PUB b 2\r\nhi\r\nPING\r\n", true));
        let got = ws.until("PONG\r\n");
        assert_eq!(String::from_utf8(got).unwrap(), "MSG a 1 5\r\nhello\r\nMSG b 2 2\r\nhi\r\nPONG\r\n", "{}", s.name);
        // A fragmented message: first frame, a ping between fragments, continuations.
        ws.send_raw(&Ws::frame(false, false, 2, b"PUB a 3\r", true));
        ws.send_raw(&Ws::frame(true, false, 9, b"ping!", true));
        ws.send_raw(&Ws::frame(false, false, 0, b"\nabc", true));
        ws.send_raw(&Ws::frame(true, false, 0, b"\r\nPING\r\n", true));
        let got = ws.until("PONG\r\n");
        assert_eq!(String::from_utf8(got).unwrap(), "MSG a 1 3\r\nabc\r\nPONG\r\n", "{}", s.name);
        assert_eq!(ws.pongs, vec![b"ping!".to_vec()], "{}", s.name);
        // A big payload: frames over 64 KiB each way.
        let big = vec![b'x'; 100_000];
        let mut cmd = format!("PUB a {}\r\n", big.len()).into_bytes();
        cmd.extend_from_slice(&big);
        cmd.extend_from_slice(b"\r\nPING\r\n");
        ws.send(&cmd);
        let got = ws.until("PONG\r\n");
        assert_eq!(got.len(), "MSG a 1 100000\r\n".len() + big.len() + 2 + 6, "{}", s.name);
    }
}

/// How each side ends: the client's close echoed, and the server's close codes and texts
/// for a protocol error, wrong credentials, an auth timeout and an unmasked frame.
#[test]
fn close_codes_and_texts_are_the_references() {
    let mut results: Vec<(&str, Vec<(u16, String)>)> = Vec::new();
    for s in both("authorization { token: s3cr3t, timeout: 1 }", "") {
        let mut got = Vec::new();
        // The client closes: its status and text come back.
        let (mut ws, _) = Ws::open(s.ws_port, "");
        ws.send_raw(&Ws::frame(true, false, 8, b"\x03\xe8bye", true));
        got.push(ws.closed());
        // A protocol error: -ERR, then 1002.
        let (mut ws, _) = Ws::open(s.ws_port, "");
        ws.send(b"CONNECT {\"auth_token\":\"s3cr3t\"}\r\nFOO\r\n");
        ws.until("-ERR 'Unknown Protocol Operation'\r\n");
        got.push(ws.closed());
        // Wrong credentials.
        let (mut ws, _) = Ws::open(s.ws_port, "");
        ws.send(b"CONNECT {\"auth_token\":\"nope\"}\r\n");
        ws.until("-ERR 'Authorization Violation'\r\n");
        got.push(ws.closed());
        // No CONNECT within the WebSocket port's auth timeout.
        let (mut ws, _) = Ws::open(s.ws_port, "");
        ws.until("-ERR 'Authentication Timeout'\r\n");
        got.push(ws.closed());
        // An unmasked frame (natsu only: nats-server sometimes closes the socket without
        // its close frame when the frame follows INFO at once).
        if s.name == "natsu" {
            let (mut ws, _) = Ws::open(s.ws_port, "");
            ws.send_raw(&Ws::frame(true, false, 2, b"PING\r\n", false));
            assert_eq!(ws.closed(), (1002, "mask bit missing".to_string()));
        }
        results.push((s.name, got));
    }
    let natsu = &results[0].1;
    assert_eq!(natsu[0], (1000, "bye".to_string()));
    assert_eq!(natsu[1].0, 1002);
    assert_eq!(natsu[2].0, 1008);
    assert_eq!(natsu[3].0, 1008);
    if let Some((_, reference)) = results.get(1) {
        assert_eq!(natsu, reference, "natsu vs nats-server");
    }
}

/// permessage-deflate: accepted when configured and offered; compressed frames both ways,
/// small writes left uncompressed.
#[test]
fn compression_both_ways() {
    for s in both("compression: true", "") {
        let (mut ws, head) = Ws::connect(s.ws_port, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
        assert!(head.to_ascii_lowercase().contains("sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"), "{}: {head}", s.name);
        let info = ws.until("\r\n");
        assert!(info.starts_with(b"INFO "), "{}", s.name);
        ws.send_compressed(b"CONNECT {\"verbose\":false}\r\nSUB z 9\r\nPING\r\n");
        ws.until("PONG\r\n");
        let payload = "compressible ".repeat(200);
        ws.send_compressed(format!("PUB z {}\r\n{payload}\r\n", payload.len()).as_bytes());
        ws.send(b"PING\r\n");
        let got = String::from_utf8(ws.until("PONG\r\n")).unwrap();
        assert_eq!(got, format!("MSG z 9 {}\r\n{payload}\r\nPONG\r\n", payload.len()), "{}", s.name);
    }
    // Not configured: the offer is declined, and a compressed frame is a protocol error.
    let s = start("natsu", "", "", &[]);
    let (mut ws, head) = Ws::connect(s.ws_port, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    assert!(!head.to_ascii_lowercase().contains("permessage-deflate"), "{head}");
    ws.until("\r\n");
    ws.send_compressed(b"PING\r\n");
    assert_eq!(ws.closed().0, 1002);
}

/// Browsers get frames of at most 4 KiB; other clients one frame per write.
#[test]
fn browsers_get_small_frames() {
    let s = start("natsu", "", "", &[]);
    let (mut ws, _) = Ws::open(s.ws_port, "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/156\r\n");
    let payload = vec![b'y'; 20_000];
    let mut cmd = b"CONNECT {}\r\nSUB y 1\r\nPING\r\n".to_vec();
    ws.send(&cmd);
    ws.until("PONG\r\n");
    cmd = format!("PUB y {}\r\n", payload.len()).into_bytes();
    cmd.extend_from_slice(&payload);
    cmd.extend_from_slice(b"\r\n");
    ws.send(&cmd);
    let mut total = 0;
    while total < payload.len() {
        let f = ws.read_frame().expect("frames");
        assert!(f.payload.len() <= 4096, "a frame of {} bytes", f.payload.len());
        total += f.payload.len();
    }
}

/// WebSocket and TCP clients are clients of one server: messages both ways across cores,
/// queue groups spanning both kinds; /connz says which is which; /varz shows the block;
/// `X-Forwarded-For` is the client's address.
#[test]
fn websocket_and_tcp_clients_together() {
    let s = start("natsu", "", "", &["--cores", "2"]);
    let port = s.server.port;
    let (mut ws, _) = Ws::open(s.ws_port, "X-Forwarded-For: 10.1.2.3\r\n");
    ws.send(b"CONNECT {\"name\":\"browser\",\"verbose\":false}\r\nSUB to.ws 1\r\nSUB q workers 2\r\nPING\r\n");
    ws.until("PONG\r\n");
    let mut tcp = Raw::connect_with(port, "{\"verbose\":false}");
    tcp.send("SUB to.tcp 1\r\nSUB q workers 2\r\nPING\r\n");
    tcp.expect("PONG\r\n");
    // Each way, 200 messages in order.
    for i in 0..200 {
        tcp.send(&format!("PUB to.ws {}\r\n{i}\r\n", i.to_string().len()));
        ws.send(format!("PUB to.tcp {}\r\n{i}\r\n", i.to_string().len()).as_bytes());
    }
    // Two connections are not ordered with each other: the TCP publisher's PONG is what
    // says its messages reached the WebSocket subscriber's connection (the WebSocket
    // client's own PING may be read first, on its core).
    let mut to_tcp = payloads_until_pong(&mut tcp, "to.tcp");
    ws.send(b"PING\r\n");
    let got = String::from_utf8(ws.until("PONG\r\n")).unwrap();
    let want: String = (0..200).map(|i| format!("MSG to.ws 1 {}\r\n{i}\r\n", i.to_string().len())).collect();
    assert_eq!(got, format!("{want}PONG\r\n"));
    // And the WebSocket client's PONG says the same of its messages to the TCP client.
    to_tcp.extend(payloads_until_pong(&mut tcp, "to.tcp"));
    assert_eq!(to_tcp, (0..200).map(|i| i.to_string()).collect::<Vec<_>>());
    // A queue group with one member of each kind: each message once.
    let mut pubber = Raw::connect_with(port, "{\"verbose\":false}");
    for _ in 0..100 {
        pubber.send("PUB q 1\r\nx\r\n");
    }
    pubber.send("PING\r\n");
    pubber.expect("PONG\r\n");
    ws.send(b"PING\r\n");
    let n_ws = find_all(&ws.until("PONG\r\n"), b"MSG q 2 1");
    tcp.send("PING\r\n");
    let mut n_tcp = 0;
    loop {
        let l = tcp.read_line();
        if l.starts_with("MSG q") {
            n_tcp += 1;
        } else if l.trim_end() == "PONG" {
            break;
        }
    }
    assert_eq!(n_ws + n_tcp, 100, "ws {n_ws} + tcp {n_tcp}");
    let connz = get_json(s.http_port, "/connz");
    let conns = connz["connections"].as_array().unwrap();
    let browser = conns.iter().find(|c| c["name"] == "browser").expect("the WebSocket client in /connz");
    assert_eq!((browser["type"].as_str(), browser["kind"].as_str(), browser["ip"].as_str()), (Some("websocket"), Some("Client"), Some("10.1.2.3")));
    assert!(conns.iter().filter(|c| c["name"] != "browser").all(|c| c["type"] == "nats"), "{connz}");
    let varz = get_json(s.http_port, "/varz");
    assert_eq!(varz["websocket"]["port"].as_u64(), Some(s.ws_port as u64), "{}", varz["websocket"]);
    assert_eq!(varz["websocket"]["no_tls"].as_bool(), Some(true));
}

/// Big payloads (handed on as shared bytes, written from there) reach WebSocket clients
/// whole, with and without compression, as on the reference.
#[test]
fn big_payloads_reach_websocket_clients_whole() {
    for s in both("compression: true", "") {
        for compressed in [false, true] {
            let offer = if compressed { "Sec-WebSocket-Extensions: permessage-deflate\r\n" } else { "" };
            let (mut ws, _) = Ws::open(s.ws_port, offer);
            ws.send(b"CONNECT {\"verbose\":false}\r\nSUB big 1\r\nPING\r\n");
            ws.until("PONG\r\n");
            let mut tcp = Raw::connect_with(s.server.port, "{\"verbose\":false}");
            let mut want = Vec::new();
            for (k, n) in [40_000usize, 65_536, 7, 1 << 20].into_iter().enumerate() {
                let body: Vec<u8> = (0..n).map(|j| b'a' + ((j * 7 + j / 101 + k) % 26) as u8).collect();
                let mut cmd = format!("PUB big {n}\r\n").into_bytes();
                cmd.extend_from_slice(&body);
                cmd.extend_from_slice(b"\r\n");
                tcp.send_bytes(&cmd);
                want.extend_from_slice(format!("MSG big 1 {n}\r\n").as_bytes());
                want.extend_from_slice(&body);
                want.extend_from_slice(b"\r\n");
            }
            tcp.send("PING\r\n");
            tcp.expect("PONG\r\n");
            ws.send(b"PING\r\n");
            let got = ws.until("PONG\r\n");
            want.extend_from_slice(b"PONG\r\n");
            assert!(got == want, "{} (compressed: {compressed}): {} bytes, {} expected", s.name, got.len(), want.len());
        }
    }
}

fn find_all(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// The WebSocket port's own credentials replace the top-level ones for its clients only.
#[test]
fn the_websocket_port_has_its_own_credentials() {
    for s in both("authorization { user: web, password: pw }", "authorization { token: tcp-token }") {
        let (mut ws, info) = Ws::open(s.ws_port, "");
        assert_eq!(info["auth_required"].as_bool(), Some(true), "{}", s.name);
        ws.send(b"CONNECT {\"user\":\"web\",\"pass\":\"pw\"}\r\nPING\r\n");
        ws.until("PONG\r\n");
        let (mut ws, _) = Ws::open(s.ws_port, "");
        ws.send(b"CONNECT {\"auth_token\":\"tcp-token\"}\r\nPING\r\n");
        ws.until("-ERR 'Authorization Violation'\r\n");
        let mut tcp = Raw::connect_with(s.server.port, "{\"auth_token\":\"tcp-token\",\"verbose\":false}");
        tcp.send("PING\r\n");
        tcp.expect("PONG\r\n");
    }
}

/// Mistakes in the block are refused with the reference's words where it has some.
#[test]
fn config_errors() {
    let dir = TempDir::new("ws-conf");
    for (conf, want) in [
        ("websocket { port: 8443 }", "websocket requires TLS configuration"),
        ("websocket { port: 8443, no_tls: true, bogus: 1 }", "unknown field \"bogus\""),
        ("websocket { port: 8443, no_tls: true, jwt_cookie: c }", "\"jwt_cookie\" is not supported by natsu yet"),
        ("websocket { port: 8443, no_tls: true, allowed_origins: [\"no-scheme\"] }", "unable to parse allowed origin"),
        ("websocket { port: 8443, no_tls: true, no_auth_user: ghost }", "no_auth_user: \"ghost\" present, but users are not defined"),
        ("authorization { users: [ {user: a, password: b} ] }\nwebsocket { port: 8443, no_tls: true, authorization { token: t } }", "websocket authentication token not compatible with presence of users/nkeys"),
        ("websocket { port: 8443, no_tls: true, handshake_timeout: \"soon\" }", "handshake_timeout"),
        ("websocket { port: 8443, tls { cert_file: c.pem, key_file: k.pem, verify_and_map: true } }", "\"verify_and_map\" is not supported by natsu yet"),
    ] {
        let f = dir.0.join("bad.conf");
        std::fs::write(&f, conf).unwrap();
        let out = Command::new(natsu_bin()).args(["-c", f.to_str().unwrap(), "-t"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{conf} accepted");
        assert!(err.contains(want), "{conf}: {err}");
    }
}

/// A second process cannot take the WebSocket port while the first holds it; after the
/// first is killed with SIGKILL, a new one gets the port and serves at once.
#[test]
fn one_process_per_port_and_restart_after_kill() {
    let mut s = start("natsu", "", "", &[]);
    let conf = s._dir.0.join("ws.conf");
    let second = Command::new(natsu_bin()).args(["-a", "127.0.0.1", "-p", "-1", "-c", conf.to_str().unwrap()]).output().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("ddress already in use"), "{err}");
    s.server.kill();
    let again = Server::target_with(&["-p", "-1", "-c", conf.to_str().unwrap()]);
    wait_port(s.ws_port);
    let (mut ws, _) = Ws::open(s.ws_port, "");
    ws.send(b"CONNECT {}\r\nPING\r\n");
    ws.until("PONG\r\n");
    drop(again);
}

/// Bad upgrades get HTTP errors and the server goes on; a client that never finishes its
/// upgrade is dropped after the handshake timeout.
#[test]
fn bad_upgrades_are_answered_and_slow_ones_dropped() {
    let s = start("natsu", "handshake_timeout: \"500ms\"", "", &[]);
    for req in ["POST / HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", "\x16\x03\x01garbage\r\n\r\n"] {
        let mut c = TcpStream::connect(("127.0.0.1", s.ws_port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let mut got = String::new();
        let _ = c.read_to_string(&mut got);
        assert!(got.starts_with("HTTP/1.1 4"), "{req:?}: {got:?}");
    }
    let mut slow = TcpStream::connect(("127.0.0.1", s.ws_port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let t = Instant::now();
    let mut b = [0u8; 64];
    assert!(matches!(slow.read(&mut b), Ok(0) | Err(_)));
    assert!(t.elapsed() < Duration::from_secs(4), "held for {:?}", t.elapsed());
    let (mut ws, _) = Ws::open(s.ws_port, "");
    ws.send(b"CONNECT {}\r\nPING\r\n");
    ws.until("PONG\r\n");
}

/// In a cluster, a WebSocket client's INFO names every server's WebSocket URL (and no
/// client URL), whichever server it reached: natsu tells its peers its own in route INFO
/// (`ws_connect_urls`) and takes theirs, with nats-server as the peer.
#[test]
fn a_cluster_tells_websocket_clients_its_websocket_urls() {
    if !which_reference() {
        return;
    }
    let dir = TempDir::new("ws-cluster");
    let (ws, route) = ([free_port(), free_port()], [free_port(), free_port()]);
    let routes = format!("[ nats://127.0.0.1:{}, nats://127.0.0.1:{} ]", route[0], route[1]);
    let mut servers = Vec::new();
    for (i, which) in ["natsu", "nats-server"].iter().enumerate() {
        let conf = dir.0.join(format!("n{i}.conf"));
        std::fs::write(&conf, format!("websocket {{ listen: \"127.0.0.1:{}\", no_tls: true }}\ncluster {{ name: c, listen: \"127.0.0.1:{}\", routes: {routes} }}\n", ws[i], route[i])).unwrap();
        let args = ["-p", "-1", "-c", conf.to_str().unwrap()];
        servers.push(if *which == "natsu" { Server::target_with(&args) } else { Server::reference_with(&args) });
        wait_port(ws[i]);
    }
    let mut want: Vec<String> = ws.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    want.sort();
    for port in ws {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_ws, info) = Ws::open(port, "");
            let mut urls: Vec<String> = info["connect_urls"].as_array().map(|a| a.iter().filter_map(|u| u.as_str().map(String::from)).collect()).unwrap_or_default();
            urls.sort();
            if urls == want {
                break;
            }
            assert!(Instant::now() < deadline, "port {port}: connect_urls {urls:?}, want {want:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(servers);
}

/// A PING, then the payloads of the `subject` messages that come before its PONG.
fn payloads_until_pong(c: &mut Raw, subject: &str) -> Vec<String> {
    c.send("PING\r\n");
    let mut got = Vec::new();
    loop {
        let line = c.read_line();
        let line = line.trim_end();
        if line == "PONG" {
            return got;
        }
        let len = line.rsplit(' ').next().unwrap_or("");
        assert_eq!(line, format!("MSG {subject} 1 {len}"), "a message or the PONG");
        let payload = c.read_line().trim_end().to_string();
        assert_eq!(payload.len().to_string(), len, "the payload's length");
        got.push(payload);
    }
}
