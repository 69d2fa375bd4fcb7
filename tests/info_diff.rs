//! The INFO, the CONNECT rules and the publish-subject checks, side by side with the
//! reference (issue 15).
//!
//! - INFO: natsu and nats-server 2.9 run with the same config file (plain, token,
//!   user/password, users, TLS, TLS with client verification, `allow_non_tls`, ...) and their first INFO lines must hold the same keys, of the same JSON
//!   types, in the same order, and the same values wherever a value is not per process
//!   (server_id, port, client_id). The one key natsu adds is `natsu_version`.
//! - CONNECT naming an account (`account`, `new_account`) is refused with
//!   `-ERR 'Authorization Violation'` and the connection closed.
//! - A pedantic client gets `-ERR 'Invalid Publish Subject'` for every subject that is not a
//!   valid literal one, and the message goes where the reference sends it.
//! - `allow_non_tls`: one port serves plain clients and TLS clients.
//!
//! Every expectation was first observed on nats-server v2.9.10; the tests other than the INFO
//! comparison run against the reference too (`NATSU_TEST_TARGET=reference`), where the INFO
//! comparison compares the reference with itself. Synchronisation is by PING/PONG or a
//! sentinel message, except where staying silent for a while is what is tested.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use common::pki::Pki;
use common::{reference, Raw, Server, TempDir};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

const AUTH_VIOLATION: &str = "-ERR 'Authorization Violation'\r\n";
const INVALID_PUB_SUBJECT: &str = "-ERR 'Invalid Publish Subject'\r\n";

// ---------------------------------------------------------------------------------------
// helpers

/// The reference with a config file made of `conf`, whatever the target.
fn reference_with_config(conf: &str) -> (Server, TempDir) {
    let d = TempDir::new("ref-conf");
    let f = d.0.join("server.conf");
    std::fs::write(&f, conf).unwrap();
    (Server::reference_with(&["-p", "-1", "-c", f.to_str().unwrap()]), d)
}

fn tls_block(pki: &Pki, verify: bool) -> String {
    let mut b = format!("tls {{ cert_file: {:?}, key_file: {:?}", pki.server_cert, pki.server_key);
    if verify {
        b.push_str(&format!(", ca_file: {:?}, verify: true", pki.ca));
    }
    b.push_str(" }\n");
    b
}

/// The JSON of an INFO line, and its keys in the order they were written.
fn parse_info(line: &str) -> (serde_json::Map<String, Value>, Vec<String>) {
    let json = line.strip_prefix("INFO ").and_then(|l| l.strip_suffix(" \r\n")).unwrap_or_else(|| {
        panic!("not an INFO line ending in \" \\r\\n\" as nats-server's: {line:?}");
    });
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) else { panic!("INFO is not a JSON object: {json}") };
    // serde_json's map sorts keys: their order comes from where each one is in the text.
    let mut keys: Vec<String> = map.keys().cloned().collect();
    keys.sort_by_key(|k| json.find(&format!("\"{k}\":")).unwrap_or(usize::MAX));
    (map, keys)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Keys whose values differ from one process or connection to the next (`cluster`: an
/// unnamed cluster's made-up name).
const PER_PROCESS: &[&str] = &["server_id", "server_name", "port", "client_id", "cluster"];

/// The first INFO of the target and of the reference, run with `conf`, agree. `same_values`
/// lists keys whose value depends on the process but must agree here anyway (a configured
/// server or cluster name).
fn assert_same_info(what: &str, conf: &str, same_values: &[&str]) {
    let target = Server::with_config(conf, &[]);
    let (reference_srv, _dir) = reference_with_config(conf);
    let ours = Raw::connect(target.port).info;
    let theirs = Raw::connect(reference_srv.port).info;
    let (mut ours_map, mut ours_keys) = parse_info(&ours);
    let (theirs_map, theirs_keys) = parse_info(&theirs);
    // natsu's one extra key: its own version beside the compatible one.
    if ours_map.remove("natsu_version").is_some() {
        assert!(!reference(), "{what}: the reference sent natsu_version");
        ours_keys.retain(|k| k != "natsu_version");
    }
    assert_eq!(ours_keys, theirs_keys, "{what}: INFO keys (in order)\n natsu:     {ours}reference: {theirs}");
    for (k, theirs_v) in &theirs_map {
        let ours_v = &ours_map[k];
        assert_eq!(json_type(ours_v), json_type(theirs_v), "{what}: type of {k:?}\n natsu:     {ours}reference: {theirs}");
        if !PER_PROCESS.contains(&k.as_str()) || same_values.contains(&k.as_str()) {
            assert_eq!(ours_v, theirs_v, "{what}: value of {k:?}\n natsu:     {ours}reference: {theirs}");
        }
    }
}

/// A TLS client configuration trusting the test CA, with the client certificate if asked.
fn tls_client_config(pki: &Pki, with_cert: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_cert {
        let chain = CertificateDer::pem_file_iter(&pki.client_cert).unwrap().map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_file(&pki.client_key).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connect, read the plain-text INFO (byte by byte, so nothing after it is taken), then run
/// the TLS handshake and send `CONNECT connect_json` and a PING; returns the INFO and the
/// stream once the PONG came.
fn tls_connect(port: u16, config: Arc<rustls::ClientConfig>, connect_json: &str) -> (String, TlsStream) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut info = Vec::new();
    while !info.ends_with(b"\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tcp.read(&mut b).unwrap(), 1, "closed while reading INFO: {:?}", String::from_utf8_lossy(&info));
        info.push(b[0]);
    }
    let conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(format!("CONNECT {connect_json}\r\nPING\r\n").as_bytes()).unwrap();
    assert_eq!(tls_until(&mut tls, "PONG\r\n"), "");
    (String::from_utf8(info).unwrap(), tls)
}

/// Read from a TLS stream through `end`; returns what came before it.
fn tls_until(tls: &mut TlsStream, end: &str) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while common::find(&got, end.as_bytes()).is_none() {
        match tls.read(&mut chunk) {
            Ok(0) => panic!("closed before {end:?}; have {:?}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("{e} before {end:?}; have {:?}", String::from_utf8_lossy(&got)),
        }
    }
    let at = common::find(&got, end.as_bytes()).unwrap_or_default();
    String::from_utf8_lossy(&got[..at]).into_owned()
}

// ---------------------------------------------------------------------------------------
// 1. INFO

#[test]
fn info_has_the_reference_keys_types_and_values_for_each_configuration() {
    let pki = Pki::new();
    let tls = tls_block(&pki, false);
    let tls_verify = tls_block(&pki, true);
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("plain", String::new(), &[]),
        ("token", "authorization { token: s3cr3t }\n".into(), &[]),
        ("user/password", "authorization { user: a, password: b }\n".into(), &[]),
        ("users", "authorization { users: [{user: a, password: b}, {user: c, password: d}] }\n".into(), &[]),
        ("TLS", tls.clone(), &[]),
        // `tls_verify` beside `tls_required`.
        ("TLS+verify", tls_verify.clone(), &[]),
        // `tls_available` instead of `tls_required`.
        ("allow_non_tls", format!("{tls}allow_non_tls: true\n"), &[]),
        ("allow_non_tls+verify", format!("{tls_verify}allow_non_tls: true\n"), &[]),
        // Without a tls block the setting changes nothing.
        ("allow_non_tls alone", "allow_non_tls: true\n".into(), &[]),
        ("TLS+token", format!("{tls}authorization {{ token: t }}\n"), &[]),
        ("server_name", "server_name: here\n".into(), &["server_name"]),
        ("max_payload", "max_payload: 2048\n".into(), &[]),
        // (The reference names the cluster in INFO (`cluster`) as soon as a cluster block
        // exists; natsu refuses the block until it serves routes.)
    ];
    for (what, conf, same_values) in cases {
        assert_same_info(what, &conf, same_values);
    }
}

// ---------------------------------------------------------------------------------------
// 2. CONNECT naming an account

/// What the server does with one CONNECT (followed by a PING).
#[derive(Debug, PartialEq)]
enum Answer {
    /// PONG: accepted.
    Pong,
    /// These bytes, then the connection closed.
    Closed(String),
}

fn answer(port: u16, connect_json: &str) -> Answer {
    let mut r = Raw::connect(port);
    r.send(&format!("CONNECT {connect_json}\r\nPING\r\n"));
    let mut got = std::mem::take(&mut r.buf);
    let mut chunk = [0u8; 4096];
    loop {
        if got == b"PONG\r\n" {
            return Answer::Pong;
        }
        match r.s.read(&mut chunk) {
            Ok(0) => return Answer::Closed(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            // A signal to the test process (a child exiting): not a close.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Answer::Closed(String::from_utf8_lossy(&got).into_owned())
            }
            Err(e) => panic!("{e}; have {:?}", String::from_utf8_lossy(&got)),
        }
    }
}

/// A client never picks its account (CVE-2022-24450 class): `account` or `new_account: true`
/// in CONNECT is an authorization violation, with or without auth configured and whatever
/// the credentials. As nats-server 2.9: an empty or null `account` and `new_account: false`
/// ask for nothing, and a field of the wrong type is a malformed CONNECT, closed without a
/// word.
#[test]
fn connect_naming_an_account_is_refused() {
    let refused = || Answer::Closed(AUTH_VIOLATION.into());
    let open = Server::start();
    let table: &[(&str, Answer)] = &[
        (r#"{"verbose":false}"#, Answer::Pong),
        (r#"{"verbose":false,"account":"A"}"#, refused()),
        (r#"{"verbose":false,"account":"$G"}"#, refused()),
        (r#"{"verbose":false,"new_account":true}"#, refused()),
        (r#"{"verbose":false,"account":"A","new_account":true}"#, refused()),
        (r#"{"verbose":false,"account":""}"#, Answer::Pong),
        (r#"{"verbose":false,"account":null}"#, Answer::Pong),
        (r#"{"verbose":false,"new_account":false}"#, Answer::Pong),
        (r#"{"verbose":false,"account":5}"#, Answer::Closed(String::new())),
    ];
    for (connect, want) in table {
        assert_eq!(&answer(open.port, connect), want, "no auth: CONNECT {connect}");
    }

    let auth = Server::with_config("authorization { user: a, password: b }\n", &[]);
    let table: &[(&str, Answer)] = &[
        (r#"{"verbose":false,"user":"a","pass":"b"}"#, Answer::Pong),
        (r#"{"verbose":false,"user":"a","pass":"b","account":"A"}"#, refused()),
        (r#"{"verbose":false,"user":"a","pass":"b","new_account":true}"#, refused()),
        (r#"{"verbose":false,"user":"a","pass":"b","account":""}"#, Answer::Pong),
        (r#"{"verbose":false,"account":"A"}"#, refused()),
    ];
    for (connect, want) in table {
        assert_eq!(&answer(auth.port, connect), want, "user/password: CONNECT {connect}");
    }
}

// ---------------------------------------------------------------------------------------
// 3. pedantic publish subjects

/// Every publish subject, pedantic or not, and verbose too: the exact bytes back, that the
/// publisher stays open, and where the message goes. Observed on nats-server 2.9.10: a
/// pedantic client gets `-ERR 'Invalid Publish Subject'` for a wildcard token or an empty
/// token (before the `+OK` when verbose); a wildcard subject is delivered all the same,
/// taken literally, and one with an empty token reaches nobody, pedantic or not.
#[test]
fn pedantic_publish_subjects() {
    let srv = Server::start();
    // Sees everything deliverable (`>` matches any subject of one token or more).
    let mut all = Raw::connect_with(srv.port, r#"{"verbose":false,"pedantic":false,"headers":true}"#);
    all.send("SUB > 1\r\n");
    assert_eq!(all.flush(), "");
    // (subject, pedantic -ERR, delivered)
    let mut table: Vec<(&[u8], bool, bool)> = vec![
        (b"foo.bar", false, true),
        (b"foo", false, true),
        // Wildcard characters inside a token are literal.
        (b"foo*", false, true),
        (b"foo.b>r", false, true),
        // Wildcard tokens: told off, delivered anyway.
        (b"foo.*", true, true),
        (b"foo.>", true, true),
        (b"*", true, true),
        (b">", true, true),
        (b"foo.>.bar", true, true),
        (b"*.*", true, true),
        // Empty tokens: told off, delivered nowhere.
        (b"foo.", true, false),
        (b".foo", true, false),
        (b"foo..*", true, false),
        (b"foo..bar", true, false),
        (b".", true, false),
        (b"..", true, false),
        (b"foo.bar.", true, false),
    ];
    // A control byte: the reference takes it as part of a literal subject and delivers it;
    // natsu never delivers such a subject (see `protocol::subject`), so a pedantic client is
    // told. A deliberate difference.
    let control = !reference();
    table.push((b"foo\x01bar", control, !control));
    table.push((b"a.\x7f", control, !control));
    for (subject, err, delivered) in table {
        let shown = String::from_utf8_lossy(subject).into_owned();
        for (connect, verbose, pedantic) in [
            (r#"{"verbose":false,"pedantic":true,"headers":true}"#, false, true),
            (r#"{"verbose":false,"pedantic":false,"headers":true}"#, false, false),
            (r#"{"verbose":true,"pedantic":true,"headers":true}"#, true, true),
        ] {
            for hpub in [false, true] {
                let mut p = Raw::connect(srv.port);
                p.send(&format!("CONNECT {connect}\r\n"));
                assert_eq!(p.flush(), if verbose { "+OK\r\n" } else { "" });
                let mut cmd = if hpub { b"HPUB ".to_vec() } else { b"PUB ".to_vec() };
                cmd.extend_from_slice(subject);
                cmd.extend_from_slice(if hpub { b" 12 14\r\nNATS/1.0\r\n\r\nhi\r\n" } else { b" 2\r\nhi\r\n" });
                // A sentinel after it: one publisher's messages arrive in order.
                cmd.extend_from_slice(b"PUB done 0\r\n\r\n");
                p.send_bytes(&cmd);
                let mut want = String::new();
                if err && pedantic {
                    want.push_str(INVALID_PUB_SUBJECT);
                }
                if verbose {
                    want.push_str("+OK\r\n+OK\r\n");
                }
                let what = format!("{} {shown:?} from {connect}", if hpub { "HPUB" } else { "PUB" });
                assert_eq!(p.flush(), want, "{what}: reply, and the publisher stays open");
                let mut msgs = Vec::new();
                if delivered {
                    let frame: &[u8] = if hpub { b" 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n" } else { b" 1 2\r\nhi\r\n" };
                    msgs.extend_from_slice(if hpub { b"HMSG " } else { b"MSG " });
                    msgs.extend_from_slice(subject);
                    msgs.extend_from_slice(frame);
                }
                msgs.extend_from_slice(SENTINEL);
                assert_eq!(until_sentinel(&mut all), String::from_utf8_lossy(&msgs), "{what}: delivery");
            }
        }
    }
    assert_eq!(all.flush().replace("PING\r\n", ""), "", "nothing more for the subscriber");
}

const SENTINEL: &[u8] = b"MSG done 1 0\r\n\r\n";

/// What the subscriber got through the sentinel message, without the PING the reference
/// sends every client a while after it connects (the table takes longer than that).
fn until_sentinel(r: &mut Raw) -> String {
    let mut got = Vec::new();
    while !got.ends_with(SENTINEL) {
        got.extend(r.read_exact_n(1));
    }
    String::from_utf8_lossy(&got).replace("PING\r\n", "")
}

// ---------------------------------------------------------------------------------------
// 4. allow_non_tls

/// With `allow_non_tls` one port serves both: a client that starts a TLS handshake after the
/// INFO gets TLS, any other is served in plain text, and they talk to each other.
#[test]
fn allow_non_tls_serves_plain_and_tls_clients_on_one_port() {
    let pki = Pki::new();
    for verify in [false, true] {
        let srv = Server::with_config(&format!("{}allow_non_tls: true\n", tls_block(&pki, verify)), &[]);
        let mut plain = Raw::connect_with(srv.port, r#"{"verbose":false,"pedantic":false}"#);
        let (info, _) = parse_info(&plain.info);
        assert_eq!(info.get("tls_available"), Some(&Value::Bool(true)), "{}", plain.info);
        assert_eq!(info.get("tls_required"), None, "{}", plain.info);
        plain.send("SUB from.tls 1\r\n");
        assert_eq!(plain.flush(), "");

        let (tls_info, mut tls) =
            tls_connect(srv.port, tls_client_config(&pki, verify), r#"{"verbose":false,"pedantic":false}"#);
        assert!(tls_info.contains("\"tls_available\":true"), "{tls_info}");
        assert!(tls.conn.protocol_version().is_some(), "the handshake ran");
        tls.write_all(b"SUB from.plain 2\r\nPUB from.tls 5\r\nhello\r\nPING\r\n").unwrap();
        assert_eq!(tls_until(&mut tls, "PONG\r\n"), "");
        plain.expect("MSG from.tls 1 5\r\nhello\r\n");
        plain.send("PUB from.plain 3\r\nhey\r\n");
        assert_eq!(plain.flush(), "");
        assert_eq!(tls_until(&mut tls, "MSG from.plain 2 3\r\nhey\r\n"), "");
    }
}

/// As nats-server: a client that stays silent for longer than the TLS timeout after the INFO
/// is served in plain text (and one that then starts TLS fails); one whose first byte is
/// a TLS record header but no handshake is closed.
#[test]
fn allow_non_tls_decides_on_the_first_byte_within_the_tls_timeout() {
    let pki = Pki::new();
    let conf = format!(
        "tls {{ cert_file: {:?}, key_file: {:?}, timeout: 0.5 }}\nallow_non_tls: true\n",
        pki.server_cert, pki.server_key
    );
    let srv = Server::with_config(&conf, &[]);
    let mut quiet = Raw::connect(srv.port);
    // What is tested is the silence itself, longer than the 0.5 s TLS timeout.
    std::thread::sleep(Duration::from_millis(1200));
    quiet.send("CONNECT {\"verbose\":false}\r\nPING\r\n");
    quiet.expect("PONG\r\n");

    // Closed without a protocol line. rustls first says why in a TLS alert record (type
    // 0x15, here decode_error); the reference's Go TLS just closes.
    let mut garbage = Raw::connect(srv.port);
    garbage.send_bytes(b"\x16garbage\r\n");
    let got = garbage.expect_closed();
    assert!(got.is_empty() || got.starts_with('\x15'), "a broken handshake is closed, got {got:?}");

    // A plain client right away, byte by byte.
    let mut slow = Raw::connect(srv.port);
    for b in b"PING\r\n" {
        slow.send_bytes(&[*b]);
    }
    slow.expect("PONG\r\n");
}
