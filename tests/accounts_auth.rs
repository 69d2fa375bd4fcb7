//! NKey users, `no_auth_user` and `tls { verify_and_map }`, the same way against natsu and
//! against the reference nats-server 2.9 (`NATSU_TEST_TARGET=reference`), with the same
//! config files. Keys and certificates are made afresh by each test (nkeys, rcgen).
//!
//! What the reference does, and these tests expect of both:
//!
//! - NKey users: every INFO carries a fresh `nonce`, 15 characters of URL-safe base64. A
//!   CONNECT with `nkey` and `sig` (the nonce signed by the seed, URL-safe base64 without
//!   padding, or standard base64 with) logs in; a wrong signature, an unknown key, a missing
//!   signature, a signature of another connection's nonce get `-ERR 'Authorization
//!   Violation'` and the connection is closed. async-nats and natsu's own client log in
//!   with a seed.
//! - `no_auth_user`: INFO leaves `auth_required` out; a CONNECT without credentials is that
//!   user, with its permissions; a client may skip CONNECT altogether and is that user
//!   (verbose, as a client is until its CONNECT says otherwise); a later CONNECT with wrong
//!   credentials is still refused; wrong or partial credentials are refused; a client
//!   that sends nothing at all still times out.
//! - verify_and_map: the user is the one named by the client certificate's email SAN, DNS
//!   SAN, URI SAN or subject DN (in order or not); each mapped user gets its own
//!   permissions; a certificate that names no user, or a password the mapped user does
//!   not have, gets `-ERR 'Authorization Violation'` and the connection is closed.
//!
//! Ordering comes from PING/PONG round trips; the one wait for time is the auth timeout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use futures::StreamExt;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;

use common::pki::{new_ca, new_leaf};
use common::{Raw, Server, TempDir};

const AUTH_VIOLATION: &str = "-ERR 'Authorization Violation'\r\n";
/// Upper bound on one wait of a real client.
const WAIT: Duration = Duration::from_secs(5);

/// `CONNECT` JSON for an NKey login with this key and signature.
fn nkey_connect(key: &str, sig: &str) -> String {
    serde_json::json!({ "verbose": false, "nkey": key, "sig": sig }).to_string()
}

fn sign(kp: &nkeys::KeyPair, nonce: &str) -> Vec<u8> {
    kp.sign(nonce.as_bytes()).expect("a seed signs")
}

/// Send `CONNECT json` and a PING: true if the PONG comes, false if the server answers
/// `-ERR 'Authorization Violation'` and closes (anything else fails the test).
fn logs_in(port: u16, make: impl FnOnce(&Raw) -> String) -> bool {
    let mut r = Raw::connect(port);
    let json = make(&r);
    r.send(&format!("CONNECT {json}\r\nPING\r\n"));
    let got = r.expect_closed_or_pong();
    match got.as_str() {
        "PONG\r\n" => true,
        AUTH_VIOLATION => false,
        other => panic!("CONNECT {json}: unexpected answer {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// NKey users

fn nkey_conf(user: &nkeys::KeyPair) -> String {
    format!("authorization {{\n  users = [\n    {{ nkey: {} }}\n    {{ user: bob, password: bob-pw }}\n  ]\n}}\n", user.public_key())
}

#[test]
fn nkey_info_carries_a_fresh_nonce() {
    let user = nkeys::KeyPair::new_user();
    let server = Server::with_config(&nkey_conf(&user), &[]);
    let (a, b) = (Raw::connect(server.port), Raw::connect(server.port));
    let (na, nb) = (a.nonce(), b.nonce());
    for n in [&na, &nb] {
        assert_eq!(n.len(), 15, "{n}");
        assert!(n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "URL-safe base64: {n}");
        assert_eq!(URL_SAFE_NO_PAD.decode(n).expect("base64").len(), 11);
    }
    assert_ne!(na, nb, "one nonce per connection");
    let info = a.info_map();
    assert_eq!(info.get("auth_required"), Some(&Value::Bool(true)));
    // Where the reference writes it: after client_ip.
    assert!(a.info.find("\"client_ip\"").unwrap() < a.info.find("\"nonce\"").unwrap(), "{}", a.info);
    // Without NKey users there is no nonce.
    let plain = Server::with_config("authorization { users = [ { user: bob, password: bob-pw } ] }\n", &[]);
    let r = Raw::connect(plain.port);
    assert!(!r.info_map().contains_key("nonce"), "{}", r.info);
}

#[test]
fn nkey_login_good_and_bad_signatures() {
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let server = Server::with_config(&nkey_conf(&user), &[]);
    let port = server.port;
    let pk = user.public_key();
    // Good: URL-safe base64 without padding (what clients send), standard with padding.
    assert!(logs_in(port, |r| nkey_connect(&pk, &URL_SAFE_NO_PAD.encode(sign(&user, &r.nonce())))));
    assert!(logs_in(port, |r| nkey_connect(&pk, &STANDARD.encode(sign(&user, &r.nonce())))));
    // An NKey wins over a user and password beside it.
    assert!(logs_in(port, |r| {
        let sig = URL_SAFE_NO_PAD.encode(sign(&user, &r.nonce()));
        serde_json::json!({ "verbose": false, "nkey": pk, "sig": sig, "user": "bob", "pass": "wrong" }).to_string()
    }));
    // The password user beside the NKey user.
    assert!(logs_in(port, |_| r#"{"verbose":false,"user":"bob","pass":"bob-pw"}"#.into()));
    // Refused: another key's signature, an unknown key, no signature, a signature of
    // another nonce, a garbage signature, a seed given as the key, nothing at all.
    let refused: Vec<(&str, Box<dyn Fn(&Raw) -> String>)> = vec![
        ("wrong signature", Box::new(|r| nkey_connect(&pk, &URL_SAFE_NO_PAD.encode(sign(&stranger, &r.nonce()))))),
        ("unknown key", Box::new(|r| nkey_connect(&stranger.public_key(), &URL_SAFE_NO_PAD.encode(sign(&stranger, &r.nonce()))))),
        ("missing signature", Box::new(|_| serde_json::json!({ "verbose": false, "nkey": pk }).to_string())),
        ("another nonce", Box::new(|_| nkey_connect(&pk, &URL_SAFE_NO_PAD.encode(sign(&user, "AAAAAAAAAAAAAAA"))))),
        ("garbage signature", Box::new(|_| nkey_connect(&pk, "!!!"))),
        ("seed as key", Box::new(|r| nkey_connect(&user.seed().unwrap(), &URL_SAFE_NO_PAD.encode(sign(&user, &r.nonce()))))),
        ("no credentials", Box::new(|_| r#"{"verbose":false}"#.into())),
    ];
    for (what, make) in refused {
        assert!(!logs_in(port, make), "{what}: logged in");
    }
}

#[test]
fn async_nats_logs_in_with_an_nkey() {
    let user = nkeys::KeyPair::new_user();
    let server = Server::with_config(&nkey_conf(&user), &[]);
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let opts = async_nats::ConnectOptions::with_nkey(user.seed().unwrap()).connection_timeout(WAIT);
        let nc = tokio::time::timeout(WAIT, opts.connect(&url)).await.expect("in time").expect("an NKey login");
        let mut sub = nc.subscribe("nkey.check").await.unwrap();
        nc.publish("nkey.check", "hi".into()).await.unwrap();
        nc.flush().await.unwrap();
        let m = tokio::time::timeout(WAIT, sub.next()).await.expect("in time").expect("a message");
        assert_eq!(&m.payload[..], b"hi");
        let stranger = async_nats::ConnectOptions::with_nkey(nkeys::KeyPair::new_user().seed().unwrap()).connection_timeout(WAIT);
        let e = tokio::time::timeout(WAIT, stranger.connect(&url)).await.expect("in time").err().expect("refused");
        assert_eq!(e.kind(), async_nats::ConnectErrorKind::AuthorizationViolation, "{e:?}");
    });
}

#[test]
fn natsu_client_logs_in_with_an_nkey() {
    let user = nkeys::KeyPair::new_user();
    let server = Server::with_config(&nkey_conf(&user), &[]);
    let (url, seed) = (server.url(), user.seed().unwrap());
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    common::run_local(Duration::from_secs(20), move || async move {
        use natsu::client::{Error, Options};
        let nc = Options::new().allow_reconnect(false).nkey_seed(seed).unwrap().connect(&url).await.expect("an NKey login");
        let sub = nc.subscribe_sync("nkey.check").unwrap();
        nc.publish("nkey.check", "hi").await.unwrap();
        let m = sub.next_msg(WAIT).await.expect("the message back");
        assert_eq!(&m.data[..], b"hi");
        nc.close().await;
        let e = Options::new().allow_reconnect(false).nkey_seed(stranger).unwrap().connect(&url).await.err().expect("refused");
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");
    });
}

// ---------------------------------------------------------------------------------------
// no_auth_user

const NO_AUTH_CONF: &str = r#"
authorization {
  users = [
    { user: anon, password: anon-pw, permissions: { publish: { deny: ["secret"] } } }
    { user: bob, password: bob-pw }
  ]
  timeout: 1
}
no_auth_user: anon
"#;

const DENIED_SECRET: &str = "-ERR 'Permissions Violation for Publish to \"secret\"'\r\n";

#[test]
fn no_auth_user_info_says_no_auth_required() {
    let server = Server::with_config(NO_AUTH_CONF, &[]);
    let r = Raw::connect(server.port);
    assert!(!r.info_map().contains_key("auth_required"), "{}", r.info);
}

#[test]
fn no_auth_user_is_who_presents_nothing() {
    let server = Server::with_config(NO_AUTH_CONF, &[]);
    let port = server.port;
    // A CONNECT without credentials is the no_auth_user, with its permissions.
    let mut r = Raw::connect_with(port, r#"{"verbose":false}"#);
    r.send("PUB secret 1\r\nx\r\nPUB fine 1\r\nx\r\n");
    assert_eq!(r.flush(), DENIED_SECRET);
    // Named users log in as themselves.
    let mut bob = Raw::connect_with(port, r#"{"verbose":false,"user":"bob","pass":"bob-pw"}"#);
    bob.send("PUB secret 1\r\nx\r\n");
    assert_eq!(bob.flush(), "");
    // Any credential given is checked: wrong, partial, or naming the user without its
    // password.
    for json in [
        r#"{"verbose":false,"user":"bob","pass":"wrong"}"#,
        r#"{"verbose":false,"pass":"bob-pw"}"#,
        r#"{"verbose":false,"auth_token":"bob-pw"}"#,
        r#"{"verbose":false,"user":"bob"}"#,
        r#"{"verbose":false,"user":"anon"}"#,
    ] {
        assert!(!logs_in(port, |_| json.to_string()), "{json}: logged in");
    }
}

#[test]
fn no_auth_user_may_skip_connect() {
    let server = Server::with_config(NO_AUTH_CONF, &[]);
    let port = server.port;
    // Straight to SUB and PUB: verbose (the default until a CONNECT), with delivery.
    let mut r = Raw::connect(port);
    r.send("SUB foo 1\r\nPUB foo 2\r\nhi\r\n");
    assert_eq!(r.flush(), "+OK\r\n+OK\r\nMSG foo 1 2\r\nhi\r\n");
    // With the user's permissions.
    let mut r = Raw::connect(port);
    r.send("PUB secret 1\r\nx\r\n");
    assert_eq!(r.flush(), DENIED_SECRET);
    // A later CONNECT is checked all the same.
    let mut r = Raw::connect(port);
    assert_eq!(r.flush(), "");
    r.send("CONNECT {\"verbose\":false,\"user\":\"bob\",\"pass\":\"wrong\"}\r\nPING\r\n");
    assert_eq!(r.expect_closed(), AUTH_VIOLATION);
    // A client that sends nothing at all still runs out of time.
    let mut r = Raw::connect(port);
    assert_eq!(r.expect_closed(), "-ERR 'Authentication Timeout'\r\n");
}

#[test]
fn no_auth_user_with_async_nats() {
    let server = Server::with_config(NO_AUTH_CONF, &[]);
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let nc = tokio::time::timeout(WAIT, async_nats::connect(&url)).await.expect("in time").expect("no credentials needed");
        let mut sub = nc.subscribe("anon.check").await.unwrap();
        nc.publish("anon.check", "hi".into()).await.unwrap();
        nc.flush().await.unwrap();
        let m = tokio::time::timeout(WAIT, sub.next()).await.expect("in time").expect("a message");
        assert_eq!(&m.payload[..], b"hi");
    });
}

// ---------------------------------------------------------------------------------------
// verify_and_map

/// A CA, a server certificate, and client certificates that map (or not) to users.
struct MapPki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl MapPki {
    fn new() -> MapPki {
        let (ca, ca_key) = new_ca("natsu map CA");
        MapPki { dir: TempDir::new("map-pki"), ca, ca_key }
    }

    fn write(&self, name: &str, pem: &str) -> String {
        let p = self.dir.0.join(name);
        std::fs::write(&p, pem).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// The server's `tls` block: its certificate, the CA, verify_and_map.
    fn tls_block(&self) -> String {
        let (server, key) = new_leaf(&["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, &self.ca, &self.ca_key);
        let (cert, key) = (self.write("server.pem", &server.pem()), self.write("server-key.pem", &key.serialize_pem()));
        let ca = self.write("ca.pem", &self.ca.pem());
        format!("tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n  ca_file: {ca:?}\n  verify_and_map: true\n}}\n")
    }

    /// A client configuration with a certificate of this subject (attributes in
    /// certificate order) and these SANs.
    fn client(&self, dn: &[(DnType, &str)], sans: Vec<SanType>) -> Arc<rustls::ClientConfig> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        Arc::new(config)
    }
}

/// Connect over TLS with `config`, send `CONNECT connect_json`, then `then` and a PING:
/// what came back before the PONG, or `Err` with everything up to the close.
fn tls_session(port: u16, config: Arc<rustls::ClientConfig>, connect_json: &str, then: &str) -> Result<String, String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    // The INFO, byte by byte so that nothing after it is taken.
    let mut info = Vec::new();
    while !info.ends_with(b"\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tcp.read(&mut b).unwrap(), 1, "closed while reading INFO");
        info.push(b[0]);
    }
    let conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(format!("CONNECT {connect_json}\r\n{then}PING\r\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = common::find(&got, b"PONG\r\n") {
            return Ok(String::from_utf8_lossy(&got[..at]).into_owned());
        }
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A user that may publish to `<subject>.>` only: a publish tells who the server took the
/// client for.
fn mapped_user(name: &str, subject: &str) -> String {
    format!("    {{ user: {name:?}, permissions: {{ publish: [\"{subject}.>\"] }} }}\n")
}

#[test]
fn verify_and_map_by_san_and_subject() {
    let pki = MapPki::new();
    let mut conf = pki.tls_block();
    conf.push_str("authorization {\n  users = [\n");
    for (name, subject) in [
        ("alice@example.com", "alice"),
        ("bob.example.com", "bob"),
        ("spiffe://example.org/carol", "carol"),
        ("CN=dave,OU=Eng,O=Acme,C=US", "dave"),
        // Written in another order than the certificate's: matched all the same.
        ("CN=erin,O=Acme", "erin"),
        ("CN=frank,DC=example", "frank"),
    ] {
        conf.push_str(&mapped_user(name, subject));
    }
    conf.push_str("    { user: \"CN=grace\", password: grace-pw }\n  ]\n}\n");
    let server = Server::with_config(&conf, &[]);
    let cn = |v: &'static str| (DnType::CommonName, v);
    let email = |v: &str| SanType::Rfc822Name(v.try_into().unwrap());
    let dns = |v: &str| SanType::DnsName(v.try_into().unwrap());
    let cases: Vec<(&str, Arc<rustls::ClientConfig>)> = vec![
        // An email SAN, before the DNS SAN and the subject.
        ("alice", pki.client(&[cn("someone")], vec![dns("bob.example.com"), email("alice@example.com")])),
        ("bob", pki.client(&[cn("someone")], vec![dns("bob.example.com")])),
        ("carol", pki.client(&[cn("someone")], vec![SanType::URI("spiffe://example.org/carol".try_into().unwrap())])),
        (
            "dave",
            pki.client(
                &[(DnType::CountryName, "US"), (DnType::OrganizationName, "Acme"), (DnType::OrganizationalUnitName, "Eng"), cn("dave")],
                vec![dns("unknown.example.com")],
            ),
        ),
        ("erin", pki.client(&[(DnType::OrganizationName, "Acme"), cn("erin")], vec![])),
        ("frank", pki.client(&[(DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]), "example"), cn("frank")], vec![])),
    ];
    for (who, config) in cases {
        let other = if who == "alice" { "bob" } else { "alice" };
        let got = tls_session(server.port, config, r#"{"verbose":false}"#, &format!("PUB {who}.x 1\r\nx\r\nPUB {other}.x 1\r\nx\r\n"));
        assert_eq!(got, Ok(format!("-ERR 'Permissions Violation for Publish to \"{other}.x\"'\r\n")), "{who}");
    }
    // The user in a CONNECT does not matter; a password does: the mapped user's, or none.
    let grace = || pki.client(&[cn("grace")], vec![]);
    assert_eq!(tls_session(server.port, grace(), r#"{"verbose":false,"user":"bob.example.com","pass":"grace-pw"}"#, ""), Ok(String::new()));
    assert_eq!(tls_session(server.port, grace(), r#"{"verbose":false}"#, ""), Err(AUTH_VIOLATION.into()));
    let alice = pki.client(&[cn("someone")], vec![email("alice@example.com")]);
    assert_eq!(tls_session(server.port, alice, r#"{"verbose":false,"pass":"any"}"#, ""), Err(AUTH_VIOLATION.into()));
}

#[test]
fn verify_and_map_refuses_an_unmapped_certificate() {
    let pki = MapPki::new();
    let conf = format!("{}no_auth_user: anyone\nauthorization {{\n  users = [\n{}{}  ]\n}}\n", pki.tls_block(), mapped_user("alice@example.com", "alice"), mapped_user("anyone", "anyone"));
    let server = Server::with_config(&conf, &[]);
    let nobody = pki.client(
        &[(DnType::CommonName, "nobody")],
        vec![SanType::DnsName("nobody.example.com".try_into().unwrap()), SanType::Rfc822Name("nobody@example.com".try_into().unwrap())],
    );
    // Refused, no_auth_user or not: with verify_and_map the certificate alone decides.
    assert_eq!(tls_session(server.port, nobody, r#"{"verbose":false}"#, ""), Err(AUTH_VIOLATION.into()));
}

/// `allow_responses`: a responder without publish rules may publish only to the reply
/// subjects of the requests it received, each `max` times (default once) within
/// `expires`; publish rules it has still allow what they allow, uncounted.
#[test]
fn allow_responses_lets_a_responder_answer_each_request() {
    let server = Server::with_config(
        r#"
authorization {
  users = [
    { user: svc, password: s, permissions: { subscribe: "svc", allow_responses: true } }
    { user: svc2, password: s, permissions: { subscribe: "svc2", publish: "status", allow_responses: { max: 2, expires: "300ms" } } }
    { user: client, password: c }
  ]
}
"#,
        &[],
    );
    let port = server.port;
    let denied = |s: &str| format!("-ERR 'Permissions Violation for Publish to \"{s}\"'\r\n");
    let mut c = Raw::connect_with(port, r#"{"verbose":false,"user":"client","pass":"c"}"#);
    c.send("SUB _INBOX.> 1\r\n");
    assert_eq!(c.flush(), "");
    // Once each, by default; nothing else.
    let mut s = Raw::connect_with(port, r#"{"verbose":false,"user":"svc","pass":"s"}"#);
    s.send("SUB svc 1\r\n");
    assert_eq!(s.flush(), "");
    s.send("PUB _INBOX.early 1\r\nx\r\n");
    assert_eq!(s.flush(), denied("_INBOX.early"), "before any request");
    c.send("PUB svc _INBOX.a 1\r\nq\r\nPUB svc _INBOX.b 1\r\nq\r\n");
    assert_eq!(c.flush(), "");
    s.send("PUB _INBOX.b 2\r\nb1\r\nPUB _INBOX.a 2\r\na1\r\nPUB _INBOX.a 2\r\na2\r\nPUB other 1\r\nx\r\n");
    let want = format!("MSG svc 1 _INBOX.a 1\r\nq\r\nMSG svc 1 _INBOX.b 1\r\nq\r\n{}{}", denied("_INBOX.a"), denied("other"));
    assert_eq!(s.flush(), want);
    assert_eq!(c.flush(), "MSG _INBOX.b 1 2\r\nb1\r\nMSG _INBOX.a 1 2\r\na1\r\n");
    // Twice within 300ms, and its own publish rule besides.
    let mut s2 = Raw::connect_with(port, r#"{"verbose":false,"user":"svc2","pass":"s"}"#);
    s2.send("SUB svc2 1\r\n");
    assert_eq!(s2.flush(), "");
    c.send("PUB svc2 _INBOX.c 1\r\nq\r\nPUB svc2 _INBOX.late 1\r\nq\r\n");
    assert_eq!(c.flush(), "");
    s2.send("PUB _INBOX.c 2\r\nc1\r\nPUB _INBOX.c 2\r\nc2\r\nPUB _INBOX.c 2\r\nc3\r\nPUB status 2\r\nup\r\nPUB status 2\r\nup\r\n");
    let want = format!("MSG svc2 1 _INBOX.c 1\r\nq\r\nMSG svc2 1 _INBOX.late 1\r\nq\r\n{}", denied("_INBOX.c"));
    assert_eq!(s2.flush(), want);
    assert_eq!(c.flush(), "MSG _INBOX.c 1 2\r\nc1\r\nMSG _INBOX.c 1 2\r\nc2\r\n");
    std::thread::sleep(Duration::from_millis(500));
    s2.send("PUB _INBOX.late 2\r\nl1\r\n");
    assert_eq!(s2.flush(), denied("_INBOX.late"), "after it expired");
    // A bad allow_responses is an error at start, in nats-server's words.
    let bad = common::TempDir::new("conf");
    let f = bad.0.join("bad.conf");
    std::fs::write(&f, "authorization { users: [{user: a, password: b, permissions: {allow_responses: 5}}] }\n").unwrap();
    let out = std::process::Command::new(if common::reference() { std::path::PathBuf::from("nats-server") } else { common::natsu_bin() })
        .args(["-c", f.to_str().unwrap(), "-t"])
        .output()
        .expect("run the server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("error parsing response permissions, expected a boolean or a map"), "{err}");
}
