//! async-nats (the official Rust client) against the broker's authentication, authorization
//! and TLS, the same way against natsu and against the reference nats-server
//! (`NATSU_TEST_TARGET=reference`), expecting the same outcome from both:
//!
//! - credentials: user/password and token, plain or bcrypt, from flags or a config file, and
//!   a users list; good ones connect and carry messages, bad or missing ones are refused with
//!   `ConnectErrorKind::AuthorizationViolation`;
//! - permissions: a denied publish or subscription comes back as an asynchronous
//!   `Event::ServerError` with the server's text, the connection stays usable, and nothing
//!   leaks through;
//! - TLS (certificates from `common::pki`, made afresh by rcgen): pub/sub over TLS; a client
//!   that does not trust the server's CA refuses it; with client verification, a client
//!   without a certificate or with one from another CA is refused by the server's alert.
//!
//! async-nats reports a failed handshake, and an alert read after it, as an `Io` connect
//! error whose source is the io::Error carrying the `rustls::Error`: the tests look the
//! rustls error up ([`tls_error`]). It does not retry the first connect (no
//! `retry_on_initial_connect`), so a refusal comes back at once.
//!
//! Each test runs on its own current-thread tokio runtime, bounded by [`LIMIT`]; every await
//! is bounded by [`WAIT`]. Ordering between connections comes from a [`Probe`] round trip,
//! never from sleeping (async-nats 0.38's `flush` only writes the socket).

mod common;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use async_nats::rustls::{AlertDescription, CertificateError};
use async_nats::{Client, ConnectError, ConnectErrorKind, ConnectOptions, Event, ServerError};
use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};

use common::pki::Pki;
use common::probe::{barrier, Probe};
use common::Server;

/// Upper bound on one wait.
const WAIT: Duration = Duration::from_secs(5);
/// Upper bound on a whole test.
const LIMIT: Duration = Duration::from_secs(60);

/// Credentials distinctive enough to spot in a log.
const USER: &str = "alice";
const PASS: &str = "s3cr3t-pw";
const TOKEN: &str = "t0k3n-s3cret";

/// Run a test body on a fresh current-thread runtime, failing after [`LIMIT`].
fn run<F: Future>(body: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async {
        tokio::time::timeout(LIMIT, body).await.unwrap_or_else(|_| panic!("test did not finish within {LIMIT:?}"))
    })
}

/// Await `f`, failing the test after [`WAIT`].
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

/// A `$2a$` bcrypt hash (cost 4: fast) of `secret`; the bcrypt crate writes `$2b$`, the
/// same hash, and `$2a$` is the prefix every nats-server release takes for bcrypt.
fn bcrypt_hash(secret: &str) -> String {
    bcrypt::hash(secret, 4).expect("bcrypt").replacen("$2b$", "$2a$", 1)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// What a client presents.
#[derive(Clone, Copy, Debug)]
enum Creds<'a> {
    None,
    UserPass(&'a str, &'a str),
    Token(&'a str),
}

/// Connect options with `creds`, no retries and a bounded connect.
fn options(creds: Creds) -> ConnectOptions {
    let opts = ConnectOptions::new().connection_timeout(WAIT);
    match creds {
        Creds::None => opts,
        Creds::UserPass(u, p) => opts.user_and_password(u.into(), p.into()),
        Creds::Token(t) => opts.token(t.into()),
    }
}

async fn connect(url: &str, opts: ConnectOptions) -> Result<Client, ConnectError> {
    within("connect", opts.connect(url)).await
}

/// Connect, expecting to be refused; the error.
async fn refused(url: &str, opts: ConnectOptions, what: &str) -> ConnectError {
    match connect(url, opts).await {
        Ok(_) => panic!("{what}: connected although the server should refuse"),
        Err(e) => e,
    }
}

/// Subscribe and publish on `client` and get the message back: the connection carries
/// messages (the server handles one connection's SUB before its later PUB).
async fn round_trip(client: &Client, subject: &str) {
    let mut sub = within("subscribe", client.subscribe(subject.to_string())).await.expect("subscribe");
    within("publish", client.publish(subject.to_string(), "hello".into())).await.expect("publish");
    within("flush", client.flush()).await.expect("flush");
    let m = within("the message back", sub.next()).await.expect("subscription ended");
    assert_eq!((m.subject.as_str(), &m.payload[..]), (subject, &b"hello"[..]));
    within("unsubscribe", sub.unsubscribe()).await.expect("unsubscribe");
}

/// Good credentials connect and carry messages; every bad one is refused as an
/// authorization violation.
async fn check_credentials(server: &Server, good: Creds<'_>, bad: &[Creds<'_>]) {
    let url = server.url();
    let client = connect(&url, options(good)).await.unwrap_or_else(|e| panic!("{good:?}: {e:?}"));
    round_trip(&client, "auth.check").await;
    for &creds in bad {
        let e = refused(&url, options(creds), &format!("{creds:?}")).await;
        assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation, "{creds:?}: {e:?}");
    }
    // (Credentials in the URL are not checked here: async-nats 0.38 ignores a URL's user
    // info; tests/python/test_auth_tls.py checks them with nats-py.)
}

const USER_GOOD: Creds = Creds::UserPass(USER, PASS);
const USER_BAD: &[Creds] =
    &[Creds::UserPass(USER, "wrong"), Creds::UserPass("mallory", PASS), Creds::Token(PASS), Creds::None];
const TOKEN_GOOD: Creds = Creds::Token(TOKEN);
const TOKEN_BAD: &[Creds] = &[Creds::Token("wrong"), Creds::UserPass(USER, TOKEN), Creds::None];

#[test]
fn user_and_password_from_flags() {
    let server = Server::target_with(&["-p", "-1", "--user", USER, "--pass", PASS]);
    run(check_credentials(&server, USER_GOOD, USER_BAD));
}

#[test]
fn bcrypt_password_from_flags() {
    let hash = bcrypt_hash(PASS);
    let server = Server::target_with(&["-p", "-1", "--user", USER, "--pass", &hash]);
    run(check_credentials(&server, USER_GOOD, USER_BAD));
}

#[test]
fn user_and_password_in_a_config_file() {
    let server = Server::with_config(&format!("authorization {{ user: {USER}, password: \"{PASS}\" }}"), &[]);
    run(check_credentials(&server, USER_GOOD, USER_BAD));
}

#[test]
fn bcrypt_password_in_a_config_file() {
    let conf = format!("authorization {{ user: {USER}, password: \"{}\" }}", bcrypt_hash(PASS));
    let server = Server::with_config(&conf, &[]);
    run(check_credentials(&server, USER_GOOD, USER_BAD));
}

#[test]
fn token_from_a_flag() {
    let server = Server::target_with(&["-p", "-1", "--auth", TOKEN]);
    run(check_credentials(&server, TOKEN_GOOD, TOKEN_BAD));
}

#[test]
fn token_in_a_config_file() {
    let server = Server::with_config(&format!("authorization {{ token: \"{TOKEN}\" }}"), &[]);
    run(check_credentials(&server, TOKEN_GOOD, TOKEN_BAD));
}

#[test]
fn bcrypt_token_in_a_config_file() {
    let server = Server::with_config(&format!("authorization {{ token: \"{}\" }}", bcrypt_hash(TOKEN)), &[]);
    run(check_credentials(&server, TOKEN_GOOD, TOKEN_BAD));
}

#[test]
fn users_list_in_a_config_file() {
    let conf = format!(
        "authorization {{\n  users = [\n    {{ user: bob, password: \"other-pw\" }}\n    {{ user: {USER}, password: \"{}\" }}\n  ]\n}}\n",
        bcrypt_hash(PASS)
    );
    let server = Server::with_config(&conf, &[]);
    let mut bad = USER_BAD.to_vec();
    bad.push(Creds::UserPass("bob", PASS));
    run(check_credentials(&server, USER_GOOD, &bad));
}

// --- permissions ---------------------------------------------------------------------------

const PERMISSIONS_CONF: &str = r#"
authorization {
    users = [
        { user: admin, password: "admin-pw" }
        { user: limited, password: "limited-pw", permissions: {
            publish: ["public.>", "_INBOX.>"]
            subscribe: { allow: ["public.>", "_INBOX.>"], deny: ["public.hidden"] }
        } }
    ]
}
"#;

/// Connect as `user`, with the server's asynchronous errors sent to the returned channel.
async fn connect_with_errors(server: &Server, user: &str, pass: &str) -> (Client, mpsc::UnboundedReceiver<ServerError>) {
    let (tx, rx) = mpsc::unbounded();
    let opts = options(Creds::UserPass(user, pass)).event_callback(move |event| {
        let tx = tx.clone();
        async move {
            if let Event::ServerError(e) = event {
                let _ = tx.unbounded_send(e);
            }
        }
    });
    (connect(&server.url(), opts).await.expect("connect"), rx)
}

async fn next_error(errors: &mut mpsc::UnboundedReceiver<ServerError>) -> ServerError {
    within("an asynchronous error", errors.next()).await.expect("event channel closed")
}

/// The server's -ERR text, as async-nats hands it over (quotes trimmed, case kept).
fn permissions_error(text: &str) -> ServerError {
    ServerError::Other(text.to_string())
}

#[test]
fn denied_publish_is_an_async_error_and_goes_nowhere() {
    let server = Server::with_config(PERMISSIONS_CONF, &[]);
    run(async {
        let (admin, _) = connect_with_errors(&server, "admin", "admin-pw").await;
        let (limited, mut errors) = connect_with_errors(&server, "limited", "limited-pw").await;
        // "*.x" takes both the denied and the allowed subject, not the probe's inbox.
        let mut seen = within("subscribe", admin.subscribe("*.x")).await.expect("subscribe");
        let probe = Probe::start(&admin).await;
        barrier(&limited, &probe).await;

        within("publish", limited.publish("secret.x", "denied".into())).await.expect("publish");
        within("publish", limited.publish("public.x", "allowed".into())).await.expect("publish");
        within("flush", limited.flush()).await.expect("flush");
        assert_eq!(next_error(&mut errors).await, permissions_error(r#"Permissions Violation for Publish to "secret.x""#));
        // The denied message went first: had it been delivered, it would be first here.
        let m = within("a message", seen.next()).await.expect("subscription ended");
        assert_eq!((m.subject.as_str(), &m.payload[..]), ("public.x", &b"allowed"[..]));

        // Still connected and still working.
        round_trip(&limited, "public.again").await;
        within("publish", limited.publish("secret.y", "denied again".into())).await.expect("publish");
        within("flush", limited.flush()).await.expect("flush");
        assert_eq!(next_error(&mut errors).await, permissions_error(r#"Permissions Violation for Publish to "secret.y""#));
        barrier(&limited, &probe).await;
        assert_eq!(limited.connection_state(), async_nats::connection::State::Connected);
        assert!(errors.next().now_or_never().is_none(), "an unexpected error");
    });
}

#[test]
fn denied_subscription_is_an_async_error_and_gets_nothing() {
    let server = Server::with_config(PERMISSIONS_CONF, &[]);
    run(async {
        let (admin, _) = connect_with_errors(&server, "admin", "admin-pw").await;
        let (limited, mut errors) = connect_with_errors(&server, "limited", "limited-pw").await;

        let mut allowed = within("subscribe", limited.subscribe("public.>")).await.expect("subscribe");
        let mut denied = within("subscribe", limited.subscribe("secret.>")).await.expect("subscribe");
        within("flush", limited.flush()).await.expect("flush");
        // The server handles SUBs in order: this error means both SUBs were taken.
        assert_eq!(
            next_error(&mut errors).await,
            permissions_error(r#"Permissions Violation for Subscription to "secret.>""#)
        );
        let mut hidden = within("subscribe", limited.subscribe("public.hidden")).await.expect("subscribe");
        within("flush", limited.flush()).await.expect("flush");
        assert_eq!(
            next_error(&mut errors).await,
            permissions_error(r#"Permissions Violation for Subscription to "public.hidden""#)
        );

        // The errors came after the server took the allowed SUB, but say nothing of other
        // connections seeing it yet (natsu on several cores tells other cores
        // asynchronously): a probe round trip from the admin's side does.
        let probe = Probe::start(&limited).await;
        barrier(&admin, &probe).await;

        // A message the denied subscriptions would take, then one the allowed one takes:
        // messages to one connection arrive in order, so by the time "public.y" is in,
        // anything for the denied subscriptions would be queued already. "public.hidden"
        // matches the allowed "public.>" too, but the deny clause keeps it from this user.
        within("publish", admin.publish("secret.y", "nope".into())).await.expect("publish");
        within("publish", admin.publish("public.hidden", "nope".into())).await.expect("publish");
        within("publish", admin.publish("public.y", "yes".into())).await.expect("publish");
        within("flush", admin.flush()).await.expect("flush");
        let m = within("a message", allowed.next()).await.expect("subscription ended");
        assert_eq!((m.subject.as_str(), &m.payload[..]), ("public.y", &b"yes"[..]));
        assert!(denied.next().now_or_never().is_none(), "a message on a denied subscription");
        assert!(hidden.next().now_or_never().is_none(), "a message on a denied subscription");

        round_trip(&limited, "public.again").await;
        assert_eq!(limited.connection_state(), async_nats::connection::State::Connected);
        assert!(errors.next().now_or_never().is_none(), "an unexpected error");
    });
}

// --- TLS -----------------------------------------------------------------------------------

/// The rustls error behind a connect error, if any: async-nats wraps it in an io::Error
/// (whose `source()` skips the wrapped error itself, hence `get_ref`).
fn tls_error(e: &ConnectError) -> Option<&async_nats::rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<async_nats::rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<async_nats::rustls::Error>())
        {
            return Some(r);
        }
        next = err.source();
    }
    None
}

/// The server's TLS refused the client: async-nats's handshake finished (TLS 1.3 checks
/// the client's certificate after the client's side of it) and the server's alert came
/// back on the first read. The alert.
fn refused_by_server_alert(e: &ConnectError, what: &str) -> AlertDescription {
    assert_eq!(e.kind(), ConnectErrorKind::Io, "{what}: {e:?}");
    match tls_error(e) {
        Some(async_nats::rustls::Error::AlertReceived(alert)) => *alert,
        other => panic!("{what}: expected a TLS alert from the server, got {other:?} in {e:?}"),
    }
}

/// Options trusting only `ca`, requiring TLS.
fn tls_options(ca: &Path) -> ConnectOptions {
    options(Creds::None).add_root_certificates(ca.to_path_buf()).require_tls(true)
}

fn tls_flags(pki: &Pki, verify: bool) -> Vec<String> {
    let mut flags = vec!["-p", "-1", "--tls", "--tlscert", s(&pki.server_cert), "--tlskey", s(&pki.server_key)];
    if verify {
        flags.extend(["--tlsverify", "--tlscacert", s(&pki.ca)]);
    }
    flags.into_iter().map(String::from).collect()
}

fn tls_conf(pki: &Pki, verify: bool) -> String {
    let extra = if verify { format!("ca_file: \"{}\"\n    verify: true", s(&pki.ca)) } else { String::new() };
    format!(
        "tls {{\n    cert_file: \"{}\"\n    key_file: \"{}\"\n    {extra}\n    timeout: 2\n}}\n",
        s(&pki.server_cert),
        s(&pki.server_key)
    )
}

fn tls_server(pki: &Pki, verify: bool, from_config: bool) -> Server {
    if from_config {
        Server::with_config(&tls_conf(pki, verify), &[])
    } else {
        let flags = tls_flags(pki, verify);
        Server::target_with(&flags.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

async fn check_tls_pub_sub(server: &Server, pki: &Pki) {
    // A tls:// URL, and a nats:// one: async-nats upgrades because INFO requires TLS.
    for url in [
        format!("tls://127.0.0.1:{}", server.port),
        format!("nats://127.0.0.1:{}", server.port),
        format!("tls://localhost:{}", server.port),
    ] {
        let client = connect(&url, tls_options(&pki.ca)).await.unwrap_or_else(|e| panic!("{url}: {e:?}"));
        round_trip(&client, "tls.check").await;
    }
    // Without require_tls too: the server's INFO is enough.
    let url = format!("nats://127.0.0.1:{}", server.port);
    let client = connect(&url, options(Creds::None).add_root_certificates(pki.ca.clone())).await.expect("connect");
    round_trip(&client, "tls.check").await;
}

#[test]
fn tls_pub_sub_from_flags() {
    let pki = Pki::new();
    let server = tls_server(&pki, false, false);
    run(check_tls_pub_sub(&server, &pki));
}

/// Big payloads reach a TLS subscriber whole (the broker hands them on as shared bytes and
/// writes them from there), whichever cores publisher and subscriber are on.
#[test]
fn big_payloads_over_tls() {
    let pki = Pki::new();
    let server = tls_server(&pki, false, false);
    run(async {
        let url = format!("tls://127.0.0.1:{}", server.port);
        let bodies: Vec<Vec<u8>> = [40_000usize, 16, 65_536, 300_001, 1 << 20].iter().enumerate().map(|(k, n)| (0..*n).map(|j| (j * 13 + j / 509 + k) as u8).collect()).collect();
        // Several pairs: with two cores some are split, some are not.
        for pair in 0..4 {
            let subscriber = connect(&url, tls_options(&pki.ca)).await.expect("connect");
            let publisher = connect(&url, tls_options(&pki.ca)).await.expect("connect");
            let mut sub = subscriber.subscribe("big.tls").await.unwrap();
            let probe = Probe::start(&subscriber).await;
            barrier(&publisher, &probe).await;
            for b in &bodies {
                publisher.publish("big.tls", b.clone().into()).await.unwrap();
            }
            publisher.flush().await.unwrap();
            for (k, b) in bodies.iter().enumerate() {
                let m = within("a big message over TLS", sub.next()).await.expect("subscription open");
                assert_eq!(m.payload.len(), b.len(), "pair {pair} message {k}: size");
                assert!(m.payload[..] == b[..], "pair {pair} message {k}: bytes differ");
            }
        }
    });
}

#[test]
fn tls_pub_sub_from_a_config_file() {
    let pki = Pki::new();
    let server = tls_server(&pki, false, true);
    run(check_tls_pub_sub(&server, &pki));
}

#[test]
fn a_client_that_does_not_trust_the_ca_refuses_the_server() {
    let pki = Pki::new();
    let server = tls_server(&pki, false, false);
    run(async {
        let url = format!("tls://127.0.0.1:{}", server.port);
        let e = refused(&url, tls_options(&pki.other_ca), "trusting another CA").await;
        assert_eq!(e.kind(), ConnectErrorKind::Io, "{e:?}");
        assert!(
            matches!(tls_error(&e), Some(async_nats::rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))),
            "{e:?}"
        );
        // The server is still there for a client that trusts it.
        let client = connect(&url, tls_options(&pki.ca)).await.expect("connect");
        round_trip(&client, "tls.check").await;
    });
}

/// With client verification: no certificate and one from another CA are refused by the
/// server's alert; the CA's client certificate works. The alerts, for a separate check.
async fn check_tls_verify(server: &Server, pki: &Pki) -> (AlertDescription, AlertDescription) {
    let url = format!("tls://127.0.0.1:{}", server.port);
    let e = refused(&url, tls_options(&pki.ca), "no client certificate").await;
    let no_cert = refused_by_server_alert(&e, "no client certificate");
    let opts = tls_options(&pki.ca).add_client_certificate(pki.rogue_cert.clone(), pki.rogue_key.clone());
    let e = refused(&url, opts, "a client certificate from another CA").await;
    let rogue = refused_by_server_alert(&e, "a client certificate from another CA");
    let opts = tls_options(&pki.ca).add_client_certificate(pki.client_cert.clone(), pki.client_key.clone());
    let client = connect(&url, opts).await.expect("connect with the CA's client certificate");
    round_trip(&client, "tls.check").await;
    (no_cert, rogue)
}

#[test]
fn tls_verify_from_flags_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let server = tls_server(&pki, true, false);
    run(check_tls_verify(&server, &pki));
}

#[test]
fn tls_verify_from_a_config_file_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let server = tls_server(&pki, true, true);
    run(check_tls_verify(&server, &pki));
}

/// The alert a refused client reads. nats-server 2.9 (Go's TLS) sends bad_certificate both
/// for a missing certificate and for one from an unknown CA; natsu (rustls) sends the alerts
/// RFC 8446 names for each case, certificate_required and unknown_ca. Either way the client
/// is refused before any NATS byte; this pins down each server's choice.
#[test]
fn tls_verify_refusal_alerts() {
    let pki = Pki::new();
    let server = tls_server(&pki, true, false);
    let (no_cert, rogue) = run(check_tls_verify(&server, &pki));
    let want = if common::reference() {
        (AlertDescription::BadCertificate, AlertDescription::BadCertificate)
    } else {
        (AlertDescription::CertificateRequired, AlertDescription::UnknownCA)
    };
    assert_eq!((no_cert, rogue), want, "alerts for (no client certificate, a certificate from another CA)");
}

#[test]
fn tls_and_credentials_from_one_config_file() {
    let pki = Pki::new();
    let conf = tls_conf(&pki, false) + &format!("authorization {{ user: {USER}, password: \"{}\" }}\n", bcrypt_hash(PASS));
    let server = Server::with_config(&conf, &[]);
    run(async {
        let url = format!("tls://127.0.0.1:{}", server.port);
        let client = connect(&url, tls_options(&pki.ca).user_and_password(USER.into(), PASS.into()))
            .await
            .expect("connect");
        round_trip(&client, "tls.check").await;
        for (opts, what) in [
            (tls_options(&pki.ca).user_and_password(USER.into(), "wrong".into()), "a wrong password"),
            (tls_options(&pki.ca), "no credentials"),
        ] {
            let e = refused(&url, opts, what).await;
            assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation, "{what}: {e:?}");
        }
    });
}
