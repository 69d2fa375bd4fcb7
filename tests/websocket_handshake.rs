//! natsu's WebSocket opening handshake (`natsu::server::websocket::handshake`) against the
//! reference: the same raw requests sent to nats-server 2.9's WebSocket port must get the
//! same status from both (101 with the same accept key and extensions, or the same refusal),
//! with each of the block's origin and compression settings.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{free_port, Server, TempDir};
use natsu::server::websocket::handshake::{check, Handshake, Settings};

/// A nats-server with `websocket { port, no_tls: true, <extra> }`, and its WebSocket port.
fn reference(extra: &str) -> (TempDir, Server, u16) {
    let dir = TempDir::new("ws-ref");
    let port = free_port();
    let conf = dir.0.join("ws.conf");
    std::fs::write(&conf, format!("websocket {{\n  host: 127.0.0.1\n  port: {port}\n  no_tls: true\n  {extra}\n}}\n")).unwrap();
    let server = Server::reference_with(&["-p", "-1", "-c", conf.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server's WebSocket port never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
    (dir, server, port)
}

/// The reference's answer's head (status line and headers) to `req`.
fn ask(port: u16, req: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn status(head: &str) -> u16 {
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// Every request, to natsu's check and to the reference: same status, and for a 101 the
/// same accept key and the same extensions answer.
fn compare(port: u16, settings: &Settings, requests: &[String]) {
    for req in requests {
        let theirs = ask(port, req);
        let (ours, ours_head) = match check(req.as_bytes(), settings, false) {
            Handshake::Accepted(a) => (101, String::from_utf8(a.response).unwrap()),
            Handshake::Refused(r) => (r.status, String::from_utf8(r.response()).unwrap()),
            Handshake::Partial => panic!("{req:?} is a whole request"),
        };
        assert_eq!(ours, status(&theirs), "{req:?}\nnats-server: {theirs}\nnatsu: {ours_head}");
        for header in ["Sec-WebSocket-Accept", "Sec-WebSocket-Extensions", "Nats-No-Masking", "Sec-Websocket-Version"] {
            let pick = |head: &str| head.lines().find(|l| l.to_ascii_lowercase().starts_with(&header.to_ascii_lowercase())).map(str::to_string);
            assert_eq!(pick(&ours_head).map(|l| l.to_ascii_lowercase()), pick(&theirs).map(|l| l.to_ascii_lowercase()), "{header} for {req:?}");
        }
    }
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn request(host: &str, extra: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\n{extra}\r\n")
}

#[test]
fn the_checks_answer_as_nats_server() {
    let (_d, _s, port) = reference("");
    let host = format!("127.0.0.1:{port}");
    let reqs = vec![
        request(&host, ""),
        request(&host, "Nats-No-Masking: true\r\n"),
        request(&host, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        request(&host, "Origin: http://anywhere.example\r\n"),
        format!("POST / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: close\r\n{KEY}Sec-WebSocket-Version: 13\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 8\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\n\r\n"),
    ];
    compare(port, &Settings::default(), &reqs);
}

#[test]
fn origins_and_compression_answer_as_nats_server() {
    let (_d, _s, port) = reference("same_origin: true\n  compression: true");
    let host = format!("127.0.0.1:{port}");
    let same = Settings { same_origin: true, compression: true, ..Settings::default() };
    compare(
        port,
        &same,
        &[
            request(&host, &format!("Origin: http://{host}\r\n")),
            request(&host, "Origin: http://127.0.0.1:1\r\n"),
            request(&host, "Origin: https://elsewhere.example\r\n"),
            request(&host, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
            request(&host, ""),
        ],
    );
    let (_d2, _s2, port2) = reference("allowed_origins: [\"https://app.example.com\", \"http://localhost:3000\"]");
    let host2 = format!("127.0.0.1:{port2}");
    let listed = Settings { allowed_origins: vec!["https://app.example.com".into(), "http://localhost:3000".into()], ..Settings::default() };
    compare(
        port2,
        &listed,
        &[
            request(&host2, "Origin: https://app.example.com\r\n"),
            request(&host2, "Origin: http://localhost:3000\r\n"),
            request(&host2, "Origin: http://app.example.com\r\n"),
            request(&host2, "Origin: https://app.example.com:8443\r\n"),
            request(&host2, "Origin: https://evil.example\r\n"),
            request(&host2, ""),
        ],
    );
}
