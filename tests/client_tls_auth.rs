//! The client library's TLS and credentials against the broker (natsu, or the reference
//! nats-server with `NATSU_TEST_TARGET=reference`), configured by the same flags and files.
//!
//! Certificates are made afresh by each test with rcgen (a CA, a server certificate for
//! `127.0.0.1` and `localhost`, a client certificate, and a second CA nobody trusts) and
//! written to a scratch directory that is removed afterwards: no key is checked in.
//!
//! Ordering comes from `flush()` round trips and bounded `next_msg`, never from sleeping.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use natsu::client::{Connection, Error, Options};
use common::pki::Pki;
use common::{run_local, Server, TempDir};

const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(5);

/// Credentials distinctive enough that finding them in a string means they leaked.
const USER: &str = "alice";
const PASS: &str = "s3cr3t-pw";
const TOKEN: &str = "t0k3n-s3cret";
/// bcrypt of `PASS`, cost 11. nats-server 2.9 ships no `mkpasswd`; this came from
/// `python3 -c "import crypt; print(crypt.crypt('s3cr3t-pw', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2**11)))"`
/// with the `$2b$` prefix written as `$2a$` (the same hash for passwords under 72 bytes).
/// A hash of a test password, not a key.
const PASS_BCRYPT: &str = "$2a$11$lU/bYFsv6eDQmf2fFwgJY.m8uU1oNRddChZitYgIOXoY98/PWXrue";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A nats-server that requires TLS (no client verification), configured by flags.
fn tls_server(pki: &Pki) -> Server {
    Server::target_with(&["-p", "-1", "--tls", "--tlscert", s(&pki.server_cert), "--tlskey", s(&pki.server_key)])
}

/// Publish/subscribe and request/reply over `nc`, with a second connection `other` as the
/// responder so that messages cross the server.
async fn exchange(nc: &Connection, other: &Connection) {
    let sub = other.subscribe_sync("tls.hello").unwrap();
    let replier = other.clone();
    let _svc = other
        .subscribe("tls.echo", move |m| {
            if let Some(reply) = m.reply {
                replier.try_publish(&reply, m.data.to_vec()).unwrap();
            }
        })
        .unwrap();
    other.flush().await.unwrap();
    nc.publish("tls.hello", "over tls").await.unwrap();
    let m = sub.next_msg(WAIT).await.unwrap();
    assert_eq!(m.text(), Some("over tls"));
    let answer = nc.request("tls.echo", "ping?", WAIT).await.unwrap();
    assert_eq!(answer.text(), Some("ping?"));
    nc.flush().await.unwrap();
}

/// The error `connect` returned, or a panic naming what connected although it should not.
fn refused(r: Result<Connection, Error>, what: &str) -> Error {
    match r {
        Ok(nc) => panic!("{what}: connected to {:?} although it should have been refused", nc.connected_url()),
        Err(e) => e,
    }
}

#[test]
fn tls_required_by_the_server_upgrades_a_plain_url() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    let port = server.port;
    let ca = pki.ca.clone();
    run_local(LIMIT, move || async move {
        // nats:// URL: the server's INFO says tls_required and the client upgrades.
        let nc = Options::new().tls_root_ca(&ca).connect(&format!("nats://127.0.0.1:{port}")).await.unwrap();
        assert!(nc.tls_required());
        assert!(!nc.auth_required());
        assert_eq!(nc.connected_url().as_deref(), Some(format!("nats://127.0.0.1:{port}").as_str()));
        // tls:// URL, by host name this time (the certificate names both).
        let other = Options::new().tls_root_ca(&ca).connect(&format!("tls://localhost:{port}")).await.unwrap();
        assert!(other.tls_required());
        assert_eq!(other.connected_url().as_deref(), Some(format!("tls://localhost:{port}").as_str()));
        exchange(&nc, &other).await;
        exchange(&other, &nc).await;
        nc.close().await;
        other.close().await;
    });
}

#[test]
fn tls_block_in_a_config_file_with_credentials_over_it() {
    let pki = Pki::new();
    let conf = pki.file(
        "tls.conf",
        &format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 2\n}}\nauthorization {{\n  user: {USER}\n  password: \"{PASS}\"\n}}\n",
            s(&pki.server_cert),
            s(&pki.server_key)
        ),
    );
    let server = Server::target_with(&["-p", "-1", "-c", s(&conf)]);
    let port = server.port;
    let ca = pki.ca.clone();
    run_local(LIMIT, move || async move {
        let nc = Options::new()
            .tls_root_ca(&ca)
            .user_and_password(USER, PASS)
            .connect(&format!("nats://127.0.0.1:{port}"))
            .await
            .unwrap();
        assert!(nc.tls_required() && nc.auth_required());
        let other =
            Options::new().tls_root_ca(&ca).connect(&format!("tls://{USER}:{PASS}@localhost:{port}")).await.unwrap();
        exchange(&nc, &other).await;
        // Over TLS, wrong credentials are still an authorization error, not a TLS one.
        let e = refused(
            Options::new()
                .tls_root_ca(&ca)
                .user_and_password(USER, "wrong")
                .connect(&format!("nats://127.0.0.1:{port}"))
                .await,
            "wrong password over TLS",
        );
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");
        nc.close().await;
        other.close().await;
    });
}

#[test]
fn reconnecting_keeps_tls_and_credentials() {
    let pki = Pki::new();
    let port = common::free_port().to_string();
    let args = [
        "-p",
        port.as_str(),
        "--tls",
        "--tlscert",
        s(&pki.server_cert),
        "--tlskey",
        s(&pki.server_key),
        "--user",
        USER,
        "--pass",
        PASS,
    ]
    .map(String::from);
    let start = move || Server::target_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let server = start();
    let ca = pki.ca.clone();
    run_local(LIMIT, move || async move {
        let mut server = server;
        let nc = Options::new()
            .tls_root_ca(&ca)
            .user_and_password(USER, PASS)
            .reconnect_wait(Duration::from_millis(50))
            .max_reconnects(-1)
            .connect(&format!("nats://127.0.0.1:{}", server.port))
            .await
            .unwrap();
        let sub = nc.subscribe_sync("after.restart").unwrap();
        nc.flush().await.unwrap();
        server.kill();
        // Same port, same certificate and credentials: the client must redo both.
        let _again = start();
        nc.flush_timeout(Duration::from_secs(20)).await.unwrap();
        assert!(nc.is_connected() && nc.tls_required() && nc.auth_required());
        assert_eq!(nc.stats().reconnects, 1);
        nc.publish("after.restart", "still here").await.unwrap();
        assert_eq!(sub.next_msg(WAIT).await.unwrap().text(), Some("still here"));
        nc.close().await;
    });
}

#[test]
fn an_untrusted_server_certificate_is_a_tls_error() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    let port = server.port;
    let misnamed = Server::target_with(&[
        "-p",
        "-1",
        "--tls",
        "--tlscert",
        s(&pki.misnamed_cert),
        "--tlskey",
        s(&pki.misnamed_key),
    ]);
    let misnamed_port = misnamed.port;
    let (ca, other_ca) = (pki.ca.clone(), pki.other_ca.clone());
    run_local(LIMIT, move || async move {
        let url = format!("nats://127.0.0.1:{port}");
        // System roots only: the test CA is not among them.
        let e = refused(Options::new().connect(&url).await, "system roots");
        match &e {
            Error::Tls(text) => assert!(text.contains("certificate"), "{text}"),
            e => panic!("expected a TLS error, got {e:?} ({e})"),
        }
        // A CA, but not the one that signed the server's certificate.
        let e = refused(Options::new().tls_root_ca(&other_ca).connect(&url).await, "other CA");
        assert!(matches!(&e, Error::Tls(t) if t.contains("certificate")), "{e:?}");
        // Trusted CA, but the certificate names neither 127.0.0.1 nor localhost.
        let e = refused(
            Options::new().tls_root_ca(&ca).connect(&format!("nats://127.0.0.1:{misnamed_port}")).await,
            "certificate for another name",
        );
        assert!(matches!(&e, Error::Tls(t) if t.contains("certificate")), "{e:?}");
        let e = refused(
            Options::new().tls_root_ca(&ca).connect(&format!("tls://localhost:{misnamed_port}")).await,
            "certificate for another name",
        );
        assert!(matches!(&e, Error::Tls(t) if t.contains("certificate")), "{e:?}");
        // A CA file that does not exist is a TLS set-up error naming the file.
        let e = refused(Options::new().tls_root_ca("/nonexistent/ca.pem").connect(&url).await, "missing CA file");
        assert!(matches!(&e, Error::Tls(t) if t.contains("/nonexistent/ca.pem")), "{e:?}");
    });
}

#[test]
fn client_certificates_when_the_server_verifies_them() {
    let pki = Pki::new();
    let server = Server::target_with(&[
        "-p",
        "-1",
        "--tlsverify",
        "--tlscert",
        s(&pki.server_cert),
        "--tlskey",
        s(&pki.server_key),
        "--tlscacert",
        s(&pki.ca),
    ]);
    let port = server.port;
    let (ca, cert, key) = (pki.ca.clone(), pki.client_cert.clone(), pki.client_key.clone());
    let (rogue_cert, rogue_key) = (pki.rogue_cert.clone(), pki.rogue_key.clone());
    run_local(LIMIT, move || async move {
        let url = format!("nats://127.0.0.1:{port}");
        let nc = Options::new().tls_root_ca(&ca).tls_client_cert(&cert, &key).connect(&url).await.unwrap();
        assert!(nc.tls_required());
        let other = Options::new()
            .tls_root_ca(&ca)
            .tls_client_cert(&cert, &key)
            .connect(&format!("tls://localhost:{port}"))
            .await
            .unwrap();
        exchange(&nc, &other).await;
        nc.close().await;
        other.close().await;

        // No certificate: the server refuses the handshake. This must say TLS, not
        // "no servers" (the server is there and answered).
        let e = refused(Options::new().tls_root_ca(&ca).connect(&url).await, "no client certificate");
        assert!(matches!(e, Error::Tls(_)), "expected a TLS error, got {e:?} ({e})");
        // A certificate from a CA the server does not trust.
        let e = refused(
            Options::new().tls_root_ca(&ca).tls_client_cert(&rogue_cert, &rogue_key).connect(&url).await,
            "rogue client certificate",
        );
        assert!(matches!(e, Error::Tls(_)), "expected a TLS error, got {e:?} ({e})");
    });
}

#[test]
fn require_tls_against_a_plain_server_fails_clearly() {
    let server = Server::target_with(&["-p", "-1", "--user", USER, "--pass", PASS]);
    let port = server.port;
    run_local(LIMIT, move || async move {
        let by_option = Options::new()
            .require_tls(true)
            .user_and_password(USER, PASS)
            .connect(&format!("nats://127.0.0.1:{port}"))
            .await;
        let by_url = Options::new().connect(&format!("tls://{USER}:{PASS}@127.0.0.1:{port}")).await;
        for (how, r) in [("require_tls(true)", by_option), ("tls:// URL", by_url)] {
            let e = refused(r, how);
            assert!(matches!(e, Error::Tls(_)), "{how}: expected a TLS error, got {e:?} ({e})");
            // As nats.go's ErrSecureConnWanted: the INFO offers neither tls_required nor
            // tls_available, so the client says so before sending anything.
            let text = e.to_string();
            assert!(
                text.contains("not available") || text.contains("does not support") || text.contains("not offer"),
                "{how}: the error should say the server offers no TLS: {text}"
            );
        }
    });
}

/// A fake server that sends a plain INFO asking for credentials but offering no TLS, and
/// records every byte the client sends until the client gives up or 5 s pass.
fn fake_plain_server() -> (u16, std::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut sock, _)) = listener.accept() else { return };
        let info = format!(
            "INFO {{\"server_id\":\"FAKE\",\"version\":\"2.9.10\",\"proto\":1,\"host\":\"127.0.0.1\",\"port\":{port},\"headers\":true,\"max_payload\":1048576,\"auth_required\":true}}\r\n"
        );
        let _ = sock.write_all(info.as_bytes());
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        // A TLS record header is 5 bytes, the length in the last two: read one whole
        // record (the ClientHello), or whatever a plain client sends, then hang up.
        loop {
            match sock.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
            if got.len() >= 5 && got[0] == 0x16 && got.len() >= 5 + u16::from_be_bytes([got[3], got[4]]) as usize {
                break;
            }
            if got.windows(2).any(|w| w == b"\r\n") && got[0] != 0x16 {
                break;
            }
        }
        let _ = tx.send(got);
    });
    (port, rx)
}

#[test]
fn require_tls_never_sends_credentials_in_clear() {
    for how in ["require_tls", "tls_url"] {
        let (port, rx) = fake_plain_server();
        let e = run_local(LIMIT, move || async move {
            let r = if how == "require_tls" {
                Options::new()
                    .require_tls(true)
                    .user_and_password(USER, PASS)
                    .connect(&format!("nats://127.0.0.1:{port}"))
                    .await
            } else {
                Options::new().token(TOKEN).connect(&format!("tls://127.0.0.1:{port}")).await
            };
            refused(r, how).to_string()
        });
        let got = rx.recv_timeout(Duration::from_secs(10)).expect("the fake server saw the client");
        let text = String::from_utf8_lossy(&got);
        assert!(
            !text.contains("CONNECT") && !text.contains(PASS) && !text.contains(TOKEN),
            "{how}: sent in clear: {text:?}"
        );
        // What went out was a TLS ClientHello (or nothing at all), never protocol text.
        assert!(got.is_empty() || got[0] == 0x16, "{how}: not a TLS record: {text:?}");
        assert!(!e.contains(PASS) && !e.contains(TOKEN), "{how}: {e}");
    }
}

#[test]
fn user_and_password() {
    let server = Server::target_with(&["-p", "-1", "--user", USER, "--pass", PASS]);
    let port = server.port;
    run_local(LIMIT, move || async move {
        let plain = format!("nats://127.0.0.1:{port}");
        let nc = Options::new().user_and_password(USER, PASS).connect(&plain).await.unwrap();
        assert!(nc.auth_required() && !nc.tls_required());
        let other = natsu::client::connect(&format!("nats://{USER}:{PASS}@127.0.0.1:{port}")).await.unwrap();
        exchange(&nc, &other).await;
        // A URL's credentials win over the options' (as nats.go).
        let third = Options::new()
            .user_and_password(USER, "wrong")
            .connect(&format!("nats://{USER}:{PASS}@127.0.0.1:{port}"))
            .await
            .unwrap();
        third.flush().await.unwrap();
        let e = refused(
            Options::new()
                .user_and_password(USER, PASS)
                .connect(&format!("nats://{USER}:wrong@127.0.0.1:{port}"))
                .await,
            "wrong password in the URL, right one in the options",
        );
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");

        let e = refused(Options::new().user_and_password(USER, "wrong").connect(&plain).await, "wrong password");
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");
        let e = refused(Options::new().user_and_password("mallory", PASS).connect(&plain).await, "wrong user");
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");
        let e = refused(natsu::client::connect(&plain).await, "no credentials");
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");
        let e = refused(Options::new().token(PASS).connect(&plain).await, "a token where a user is wanted");
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");
        for c in [nc, other, third] {
            c.close().await;
        }
    });
}

#[test]
fn percent_encoded_credentials_in_the_url() {
    let pass = "p@ss/w:rd%";
    let server = Server::target_with(&["-p", "-1", "--user", USER, "--pass", pass]);
    let port = server.port;
    run_local(LIMIT, move || async move {
        let nc = natsu::client::connect(&format!("nats://{USER}:p%40ss%2Fw%3Ard%25@127.0.0.1:{port}")).await.unwrap();
        nc.flush().await.unwrap();
        assert!(nc.auth_required());
        nc.close().await;
    });
}

#[test]
fn token() {
    let server = Server::target_with(&["-p", "-1", "--auth", TOKEN]);
    let port = server.port;
    run_local(LIMIT, move || async move {
        let plain = format!("nats://127.0.0.1:{port}");
        let nc = Options::new().token(TOKEN).connect(&plain).await.unwrap();
        assert!(nc.auth_required());
        let other = natsu::client::connect(&format!("nats://{TOKEN}@127.0.0.1:{port}")).await.unwrap();
        exchange(&nc, &other).await;
        let e = refused(Options::new().token("wrong").connect(&plain).await, "wrong token");
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");
        let e = refused(natsu::client::connect(&format!("nats://wrong@127.0.0.1:{port}")).await, "wrong token in URL");
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");
        let e = refused(natsu::client::connect(&plain).await, "no token");
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");
        nc.close().await;
        other.close().await;
    });
}

#[test]
fn bcrypt_password_in_a_config_file() {
    let dir = TempDir::new("bcrypt");
    let conf = dir.0.join("auth.conf");
    std::fs::write(&conf, format!("authorization {{\n  user: {USER}\n  password: \"{PASS_BCRYPT}\"\n}}\n")).unwrap();
    let server = Server::target_with(&["-p", "-1", "-c", s(&conf)]);
    let port = server.port;
    run_local(LIMIT, move || async move {
        let plain = format!("nats://127.0.0.1:{port}");
        let nc = Options::new().user_and_password(USER, PASS).connect(&plain).await.unwrap();
        assert!(nc.auth_required());
        nc.flush().await.unwrap();
        // The hash itself is not a password.
        let e =
            refused(Options::new().user_and_password(USER, PASS_BCRYPT).connect(&plain).await, "the hash as password");
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");
        nc.close().await;
    });
}

#[test]
fn credentials_never_appear_in_urls_or_errors() {
    let server = Server::target_with(&["-p", "-1", "--user", USER, "--pass", PASS]);
    let port = server.port;
    let clean = |what: &str, text: &str| {
        assert!(
            !text.contains(PASS) && !text.contains(TOKEN) && !text.contains(&format!("{USER}:")),
            "{what} leaks credentials: {text}"
        );
    };
    run_local(LIMIT, move || async move {
        let url = format!("nats://{USER}:{PASS}@127.0.0.1:{port}, nats://{TOKEN}@127.0.0.1:1");
        let nc = Options::new().no_randomize(true).connect(&url).await.unwrap();
        let connected = nc.connected_url().unwrap();
        assert_eq!(connected, format!("nats://127.0.0.1:{port}"));
        clean("connected_url", &connected);
        let servers = nc.servers();
        assert_eq!(servers.len(), 2, "{servers:?}");
        clean("servers", &servers.join(" "));
        nc.close().await;

        // Refused credentials: the error says so without repeating them.
        let e =
            refused(natsu::client::connect(&format!("nats://{USER}:{PASS}x@127.0.0.1:{port}")).await, "wrong password");
        assert!(matches!(e, Error::Authorization(_)), "{e:?}");
        clean("authorization error", &format!("{e} {e:?}"));
        let e = refused(
            Options::new()
                .user_and_password(USER, format!("{PASS}x"))
                .connect(&format!("nats://127.0.0.1:{port}"))
                .await,
            "wrong password",
        );
        clean("authorization error", &format!("{e} {e:?}"));
        // A URL the parser rejects is quoted with its userinfo masked.
        let e = refused(natsu::client::connect(&format!("nats://{USER}:{PASS}@127.0.0.1:99999")).await, "bad port");
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        clean("URL error", &format!("{e} {e:?}"));
        let e = refused(natsu::client::connect(&format!("ws://{TOKEN}@127.0.0.1:{port}")).await, "ws URL");
        clean("URL error", &format!("{e} {e:?}"));
        // Nobody listening: no servers, and nothing of the URL's userinfo either.
        let e = refused(natsu::client::connect(&format!("nats://{TOKEN}@127.0.0.1:1")).await, "nobody there");
        clean("connect error", &format!("{e} {e:?}"));
    });
}
