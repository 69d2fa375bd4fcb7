//! Operator mode (issue 21): an operator JWT, `resolver: MEMORY` and `resolver_preload`,
//! and users who log in with user JWTs and the nonce's signature — the same way against
//! natsu and against the reference nats-server 2.9, with the same config files and the same
//! keys and JWTs, made afresh by each test (nkeys, and natsu's JWT encoder, which the
//! reference checks independently).
//!
//! What the reference does, and these tests expect of both:
//!
//! - INFO carries `auth_required` and a fresh `nonce`; a CONNECT with `jwt` and `sig` (the
//!   nonce signed by the user's seed) logs in. A wrong signature, a missing signature or
//!   JWT, an expired user, a revoked user, a user of an account not preloaded, a user signed
//!   by a key the account does not list, a bearer token the account refuses: each gets
//!   `-ERR 'Authorization Violation'` and the connection is closed. A user signed by one of
//!   the account's signing keys logs in, a bearer token without a signature too.
//! - The user's permissions come from its JWT (`Permissions Violation for Publish to ...`),
//!   its subscription limit (`maximum subscriptions exceeded`) and payload limit (a new
//!   INFO with the lower `max_payload`; a bigger PUB is a `Maximum Payload Violation`), the
//!   account's connection limit (`maximum account active connections exceeded`), and a
//!   user whose JWT expires while connected gets `User Authentication Expired` and is
//!   closed. Connect-time ranges (`times` in UTC, the server's local zone or an IANA zone)
//!   let a user in only inside one of them, and close it when it ends, with the same error.
//! - Two accounts' users are isolated unless one exports and the other imports; a public
//!   stream export and a service export work across them as their JWTs say. A private
//!   export reaches an importer holding the exporter's activation token; an import without
//!   one gets nothing, and an account whose import carries another account's token does
//!   not validate: its users are refused.
//! - Real clients log in with `.creds` files: async-nats and natsu's own client here,
//!   nats-py in tests/python/test_operator.py.
//!
//! Ordering comes from PING/PONG round trips; the one wait for time is the user whose JWT
//! expires (two seconds).

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use natsu::server::auth::jwt::{self, AccountNats, ActivationNats, Claims, ExportType, JwtExport, JwtImport, OperatorNats, Scope, ResponsePermission, SigningKey, TimeRange, UserNats, UserPermissionLimits};
use nkeys::KeyPair;
use serde_json::Value;

use common::{natsu_and_reference, Raw, Server, TempDir};

const AUTH_VIOLATION: &str = "-ERR 'Authorization Violation'\r\n";

/// An operator, its system account and two accounts, A and B, with their JWTs.
struct Org {
    op: KeyPair,
    sys: KeyPair,
    a: KeyPair,
    b: KeyPair,
    a_signer: KeyPair,
    a_scoped: KeyPair,
    /// Account JWTs by public key, as preloaded.
    accounts: Vec<(String, String)>,
}

impl Org {
    /// A and B with no limits; A has a plain and a scoped signing key and exports the
    /// stream `events.>` and the service `svc.time`; B imports both. `edit` may change any
    /// account's claims before they are signed.
    fn new(edit: impl Fn(&str, &mut Claims<AccountNats>)) -> Org {
        let (op, sys, a, b) = (KeyPair::new_operator(), KeyPair::new_account(), KeyPair::new_account(), KeyPair::new_account());
        let (a_signer, a_scoped) = (KeyPair::new_account(), KeyPair::new_account());
        let account = |name: &str, kp: &KeyPair, nats: AccountNats| {
            let mut c = Claims::new(&kp.public_key(), nats);
            c.name = name.into();
            edit(name, &mut c);
            (kp.public_key(), jwt::encode(&c, &op).unwrap())
        };
        let mut a_nats = AccountNats::unlimited();
        a_nats.signing_keys = vec![
            SigningKey::Key(a_signer.public_key()),
            SigningKey::Scoped(Scope {
                kind: "user_scope".into(),
                key: a_scoped.public_key(),
                role: "readers".into(),
                template: UserPermissionLimits { subscribe: jwt::Permission { allow: vec!["events.>".into()], deny: vec![] }, publish: jwt::Permission { allow: vec![], deny: vec![">".into()] }, ..UserPermissionLimits::unlimited() },
            }),
        ];
        a_nats.exports = vec![
            JwtExport { subject: "events.>".into(), kind: ExportType::Stream, ..Default::default() },
            JwtExport { subject: "svc.time".into(), kind: ExportType::Service, ..Default::default() },
        ];
        let mut b_nats = AccountNats::unlimited();
        b_nats.imports = vec![
            JwtImport { subject: "events.>".into(), account: a.public_key(), kind: ExportType::Stream, ..Default::default() },
            JwtImport { subject: "svc.time".into(), account: a.public_key(), kind: ExportType::Service, ..Default::default() },
        ];
        let accounts = vec![account("SYS", &sys, AccountNats::unlimited()), account("A", &a, a_nats), account("B", &b, b_nats)];
        Org { op, sys, a, b, a_signer, a_scoped, accounts }
    }

    /// The operator's JWT, naming the system account.
    fn operator_jwt(&self) -> String {
        self.operator_jwt_asserting("")
    }

    /// The same, asking for at least server `version` (`assert_server_version`).
    fn operator_jwt_asserting(&self, version: &str) -> String {
        let mut c = Claims::new(&self.op.public_key(), OperatorNats { system_account: self.sys.public_key(), assert_server_version: version.into(), ..Default::default() });
        c.name = "OP".into();
        jwt::encode(&c, &self.op).unwrap()
    }

    /// A config file: the operator JWT in a file of its own, the accounts preloaded.
    fn conf(&self, dir: &TempDir) -> String {
        let path = dir.0.join("op.jwt");
        std::fs::write(&path, self.operator_jwt()).unwrap();
        let preload: String = self.accounts.iter().map(|(k, j)| format!("  {k}: \"{j}\"\n")).collect();
        format!("operator: \"{}\"\nresolver: MEMORY\nresolver_preload: {{\n{preload}}}\n", path.display())
    }
}

/// A user JWT for `user`, signed by `signer`, with `edit` applied to its claims.
fn user_jwt(user: &KeyPair, signer: &KeyPair, edit: impl FnOnce(&mut Claims<UserNats>)) -> String {
    let mut c = Claims::new(&user.public_key(), UserNats::unlimited());
    c.name = "u".into();
    edit(&mut c);
    jwt::encode(&c, signer).unwrap()
}

/// The CONNECT of `user` presenting `token`, signing the nonce (None: no signature).
fn connect_json(r: &Raw, token: &str, signer: Option<&KeyPair>) -> String {
    let mut v = serde_json::json!({ "verbose": false, "pedantic": false, "protocol": 1, "jwt": token });
    if let Some(kp) = signer {
        v["sig"] = Value::String(URL_SAFE_NO_PAD.encode(kp.sign(r.nonce().as_bytes()).unwrap()));
    }
    v.to_string()
}

/// Log in on `port` with `token` (signed by `signer`'s seed): the connection and what the
/// CONNECT and PING got back.
fn login(port: u16, token: &str, signer: Option<&KeyPair>) -> (Raw, String) {
    let mut r = Raw::connect(port);
    let json = connect_json(&r, token, signer);
    r.send(&format!("CONNECT {json}\r\nPING\r\n"));
    let got = r.expect_closed_or_pong();
    (r, got)
}

fn logs_in(port: u16, token: &str, signer: Option<&KeyPair>) -> bool {
    let (_, got) = login(port, token, signer);
    match got.as_str() {
        "PONG\r\n" => true,
        AUTH_VIOLATION => false,
        other => panic!("unexpected answer {other:?}"),
    }
}

fn port_of(s: &Server) -> u16 {
    s.url().rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn users_log_in_with_jwts_and_bad_ones_are_refused() {
    let org = Org::new(|name, c| {
        if name == "B" {
            // Revoked: one user by key at a time after it was issued; bearer tokens refused.
            c.nats.limits.disallow_bearer = true;
        }
    });
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &[]);
    for (name, server) in &servers {
        let port = port_of(server);
        let user = KeyPair::new_user();
        let good = user_jwt(&user, &org.a, |_| {});
        let r = Raw::connect(port);
        let info = r.info_map();
        assert_eq!(info.get("auth_required"), Some(&Value::Bool(true)), "{name}: {}", r.info);
        assert_eq!(r.nonce().len(), 15, "{name}");
        assert!(logs_in(port, &good, Some(&user)), "{name}: a good user");
        // A signature by another key, none at all, no JWT at all, a JWT that is not one.
        assert!(!logs_in(port, &good, Some(&KeyPair::new_user())), "{name}: wrong signature");
        assert!(!logs_in(port, &good, None), "{name}: no signature");
        let (_, got) = {
            let mut r = Raw::connect(port);
            r.send("CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n");
            let got = r.expect_closed_or_pong();
            (r, got)
        };
        assert_eq!(got, AUTH_VIOLATION, "{name}: no JWT");
        assert!(!logs_in(port, "eyJhbGciOiJub25lIn0.e30.", Some(&user)), "{name}: not a JWT");
        let mut tampered = good.clone();
        tampered.insert(good.len() - 3, 'A');
        tampered.truncate(good.len());
        assert!(!logs_in(port, &tampered, Some(&user)), "{name}: a tampered JWT");
        // Expired, and not yet valid.
        let expired = user_jwt(&user, &org.a, |c| c.exp = jwt::now() - 10);
        assert!(!logs_in(port, &expired, Some(&user)), "{name}: expired");
        let early = user_jwt(&user, &org.a, |c| c.nbf = jwt::now() + 3600);
        assert!(!logs_in(port, &early, Some(&user)), "{name}: not yet valid");
        // An account nobody preloaded, a signer the account does not list.
        let stranger = KeyPair::new_account();
        assert!(!logs_in(port, &user_jwt(&user, &stranger, |_| {}), Some(&user)), "{name}: unknown account");
        let rogue = KeyPair::new_account();
        let forged = user_jwt(&user, &rogue, |c| c.nats.issuer_account = org.a.public_key());
        assert!(!logs_in(port, &forged, Some(&user)), "{name}: a signer A does not list");
        // A's signing key, with issuer_account.
        let signed = user_jwt(&user, &org.a_signer, |c| c.nats.issuer_account = org.a.public_key());
        assert!(logs_in(port, &signed, Some(&user)), "{name}: signed by A's signing key");
        // A bearer token needs no signature in A; B refuses bearer tokens.
        let bearer = user_jwt(&user, &org.a, |c| c.nats.limits.bearer_token = true);
        assert!(logs_in(port, &bearer, None), "{name}: bearer token");
        let bearer_b = user_jwt(&user, &org.b, |c| c.nats.limits.bearer_token = true);
        assert!(!logs_in(port, &bearer_b, None), "{name}: bearer token B refuses");
        // The system account's users log in too.
        assert!(logs_in(port, &user_jwt(&user, &org.sys, |_| {}), Some(&user)), "{name}: system account user");
    }
}

/// `resolver_pinned_accounts`: only the pinned accounts' users (and the system account's)
/// log in; a key that is no account key stops the start.
#[test]
fn only_pinned_accounts_log_in() {
    let org = Org::new(|_, _| {});
    let dir = TempDir::new("operator");
    let conf = format!("{}resolver_pinned_accounts: [\"{}\"]\n", org.conf(&dir), org.a.public_key());
    let (_d, servers) = natsu_and_reference(&conf, &[]);
    for (name, server) in &servers {
        let port = port_of(server);
        let (ua, ub, us) = (KeyPair::new_user(), KeyPair::new_user(), KeyPair::new_user());
        assert!(logs_in(port, &user_jwt(&ua, &org.a, |_| {}), Some(&ua)), "{name}: pinned A");
        assert!(!logs_in(port, &user_jwt(&ub, &org.b, |_| {}), Some(&ub)), "{name}: B is not pinned");
        assert!(logs_in(port, &user_jwt(&us, &org.sys, |_| {}), Some(&us)), "{name}: the system account");
    }
    let bad = dir.0.join("bad.conf");
    std::fs::write(&bad, format!("{}resolver_pinned_accounts: [\"{}\"]\n", org.conf(&dir), org.op.public_key())).unwrap();
    let out = std::process::Command::new(common::natsu_bin()).args(["-c", bad.to_str().unwrap(), "-p", "-1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("pinned account key {:?} is not a valid public account nkey", org.op.public_key())), "{err}");
}

#[test]
fn revoked_users_are_refused() {
    let user = KeyPair::new_user();
    let issued = jwt::now() - 100;
    let org = Org::new(|name, c| {
        if name == "A" {
            c.nats.revocations.insert(user.public_key(), issued);
        }
    });
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &[]);
    for (name, server) in &servers {
        let port = port_of(server);
        let old = user_jwt(&user, &org.a, |c| c.iat = issued);
        assert!(!logs_in(port, &old, Some(&user)), "{name}: revoked when issued at the revocation time");
        let older = user_jwt(&user, &org.a, |c| c.iat = issued - 1);
        assert!(!logs_in(port, &older, Some(&user)), "{name}: revoked when issued before");
        let newer = user_jwt(&user, &org.a, |c| c.iat = issued + 1);
        assert!(logs_in(port, &newer, Some(&user)), "{name}: a JWT issued after the revocation");
        let other = KeyPair::new_user();
        assert!(logs_in(port, &user_jwt(&other, &org.a, |c| c.iat = issued - 1), Some(&other)), "{name}: another user");
    }
}

#[test]
fn permissions_and_limits_come_from_the_jwts() {
    let org = Org::new(|name, c| {
        if name == "B" {
            c.nats.limits.conn = 2;
        }
    });
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &[]);
    for (name, server) in &servers {
        let port = port_of(server);
        let user = KeyPair::new_user();
        // Publish only to foo.>, subscribe to anything but secret.
        let perms = user_jwt(&user, &org.a, |c| {
            c.nats.limits.publish.allow = vec!["foo.>".into()];
            c.nats.limits.subscribe.deny = vec!["secret".into()];
        });
        let (mut r, got) = login(port, &perms, Some(&user));
        assert_eq!(got, "PONG\r\n", "{name}");
        r.send("SUB foo.1 1\r\nSUB secret 2\r\nPUB foo.1 2\r\nhi\r\nPUB bar 2\r\nhi\r\n");
        let got = r.flush();
        assert_eq!(
            got,
            "-ERR 'Permissions Violation for Subscription to \"secret\"'\r\nMSG foo.1 1 2\r\nhi\r\n-ERR 'Permissions Violation for Publish to \"bar\"'\r\n",
            "{name}"
        );
        // A scoped signing key: the scope's permissions, whatever the user says.
        let scoped = user_jwt(&user, &org.a_scoped, |c| {
            c.nats.issuer_account = org.a.public_key();
            c.nats.limits = UserPermissionLimits::default();
        });
        let (mut r, got) = login(port, &scoped, Some(&user));
        assert_eq!(got, "PONG\r\n", "{name}: scoped user");
        r.send("SUB events.x 1\r\nSUB other 2\r\nPUB events.x 2\r\nhi\r\n");
        let got = r.flush();
        assert_eq!(got, "-ERR 'Permissions Violation for Subscription to \"other\"'\r\n-ERR 'Permissions Violation for Publish to \"events.x\"'\r\n", "{name}: scoped user");
        // A scoped key's user may not carry permissions of its own.
        let greedy = user_jwt(&user, &org.a_scoped, |c| c.nats.issuer_account = org.a.public_key());
        assert!(!logs_in(port, &greedy, Some(&user)), "{name}: scoped user with limits of its own");
        // At most two subscriptions.
        let few = user_jwt(&user, &org.a, |c| c.nats.limits.subs = 2);
        let (mut r, _) = login(port, &few, Some(&user));
        r.send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\n");
        assert_eq!(r.flush(), "-ERR 'maximum subscriptions exceeded'\r\n", "{name}");
        // Payloads of at most 10 bytes: a new INFO says so, a bigger PUB closes.
        let small = user_jwt(&user, &org.a, |c| c.nats.limits.payload = 10);
        let (mut r, got) = login(port, &small, Some(&user));
        let info = got.lines().find(|l| l.starts_with("INFO ")).unwrap_or_else(|| panic!("{name}: no INFO after CONNECT in {got:?}"));
        let info: Value = serde_json::from_str(&info[5..]).unwrap();
        assert_eq!(info["max_payload"], 10, "{name}");
        r.send("PUB foo 10\r\n0123456789\r\nPUB foo 11\r\n0123456789x\r\n");
        assert_eq!(r.expect_closed(), "-ERR 'Maximum Payload Violation'\r\n", "{name}");
        // B: two connections at most.
        let bu = user_jwt(&user, &org.b, |_| {});
        let (_b1, g1) = login(port, &bu, Some(&user));
        let (_b2, g2) = login(port, &bu, Some(&user));
        assert_eq!((g1.as_str(), g2.as_str()), ("PONG\r\n", "PONG\r\n"), "{name}");
        let (mut b3, g3) = login(port, &bu, Some(&user));
        assert_eq!(g3, "-ERR 'maximum account active connections exceeded'\r\n", "{name}");
        assert_eq!(b3.expect_closed(), "", "{name}");
        drop(_b1);
        // The count goes down as connections go (the server may take a moment to see it).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (_b, g) = login(port, &bu, Some(&user));
            if g == "PONG\r\n" {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: B's count never went down: {g:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A user JWT with response permissions (`resp`): no publish rules then means nothing but
/// the reply subjects of the requests it received, each answered `max` times.
#[test]
fn response_permissions_from_the_jwt() {
    let org = Org::new(|_, _| {});
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &[]);
    for (name, server) in &servers {
        let port = port_of(server);
        let (svc_key, client_key) = (KeyPair::new_user(), KeyPair::new_user());
        let svc = user_jwt(&svc_key, &org.a, |c| c.nats.limits.resp = Some(ResponsePermission { max: 2, ttl: 0 }));
        let (mut s, got) = login(port, &svc, Some(&svc_key));
        assert_eq!(got, "PONG\r\n", "{name}");
        s.send("SUB svc 1\r\nPING\r\n");
        s.expect("PONG\r\n");
        let (mut c, _) = login(port, &user_jwt(&client_key, &org.a, |_| {}), Some(&client_key));
        c.send("SUB _INBOX.r1 1\r\nPUB svc _INBOX.r1 1\r\nq\r\n");
        assert_eq!(c.flush(), "", "{name}");
        s.send("PUB _INBOX.r1 2\r\na1\r\nPUB _INBOX.r1 2\r\na2\r\nPUB _INBOX.r1 2\r\na3\r\nPUB other 1\r\nx\r\n");
        assert_eq!(
            s.flush(),
            "MSG svc 1 _INBOX.r1 1\r\nq\r\n-ERR 'Permissions Violation for Publish to \"_INBOX.r1\"'\r\n-ERR 'Permissions Violation for Publish to \"other\"'\r\n",
            "{name}"
        );
        assert_eq!(c.flush(), "MSG _INBOX.r1 1 2\r\na1\r\nMSG _INBOX.r1 1 2\r\na2\r\n", "{name}");
    }
}

#[test]
fn an_expiring_user_is_closed_when_its_jwt_expires() {
    let org = Org::new(|_, _| {});
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &[]);
    for (name, server) in &servers {
        let port = port_of(server);
        let user = KeyPair::new_user();
        let short = user_jwt(&user, &org.a, |c| c.exp = jwt::now() + 2);
        let (mut r, got) = login(port, &short, Some(&user));
        assert_eq!(got, "PONG\r\n", "{name}");
        let t0 = Instant::now();
        assert_eq!(r.expect_closed(), "-ERR 'User Authentication Expired'\r\n", "{name}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{name}: closed after {:?}", t0.elapsed());
    }
}

/// Seconds east of UTC of the machine's local zone (`date +%z`: the servers' `TZ` and
/// `/etc/localtime` are the test's).
fn local_offset() -> i64 {
    let out = std::process::Command::new("date").arg("+%z").output().unwrap();
    let z = String::from_utf8(out.stdout).unwrap();
    let (sign, hhmm) = z.trim().split_at(1);
    let v = hhmm[..2].parse::<i64>().unwrap() * 3600 + hhmm[2..].parse::<i64>().unwrap() * 60;
    if sign == "-" { -v } else { v }
}

#[test]
fn connect_time_ranges_from_the_jwt() {
    let org = Org::new(|_, _| {});
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &[]);
    // Zones with their offsets now: UTC, the servers' local one (an empty times_location),
    // and India (+05:30 all year) when the system has a time-zone database.
    let mut zones = vec![("UTC", 0), ("", local_offset())];
    let kolkata = std::path::Path::new("/usr/share/zoneinfo/Asia/Kolkata").exists();
    if kolkata {
        zones.push(("Asia/Kolkata", 5 * 3600 + 1800));
    }
    for (name, server) in &servers {
        // Both servers count only ranges that start today: keep clear of midnight.
        while zones.iter().any(|(_, off)| (jwt::now() + off).rem_euclid(86_400) < 120) {
            std::thread::sleep(Duration::from_secs(5));
        }
        let port = port_of(server);
        let hms = |offset: i64, delta: i64| {
            let t = (jwt::now() + offset + delta).rem_euclid(86_400);
            format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
        };
        let with_times = |ranges: Vec<(String, String)>, zone: &str| {
            let user = KeyPair::new_user();
            let token = user_jwt(&user, &org.a, |c| {
                c.nats.limits.times = ranges.into_iter().map(|(start, end)| TimeRange { start, end }).collect();
                c.nats.limits.times_location = zone.into();
            });
            (user, token)
        };
        let may_log_in = |ranges: Vec<(String, String)>, zone: &str| {
            let (user, token) = with_times(ranges, zone);
            logs_in(port, &token, Some(&user))
        };
        for (zone, off) in &zones {
            assert!(may_log_in(vec![(hms(*off, -60), hms(*off, 3600))], zone), "{name}: inside a range in {zone:?}");
            assert!(!may_log_in(vec![(hms(*off, 3600), hms(*off, 7200))], zone), "{name}: before a range in {zone:?}");
            assert!(may_log_in(vec![(hms(*off, 3600), hms(*off, 7200)), (hms(*off, -60), hms(*off, 60))], zone), "{name}: the second range in {zone:?}");
        }
        if kolkata {
            // A range that holds now in UTC does not in India.
            assert!(!may_log_in(vec![(hms(0, -60), hms(0, 3600))], "Asia/Kolkata"), "{name}");
        }
        let whole_day = || vec![("00:00:00".to_string(), "23:59:59".to_string())];
        assert!(!may_log_in(whole_day(), "Nowhere/Land"), "{name}: an unknown zone");
        assert!(!may_log_in(vec![("25:00:00".into(), "26:00:00".into())], "UTC"), "{name}: a bad time");
        // Closed when its range ends, in the words of an expired JWT.
        let (user, token) = with_times(vec![(hms(0, -60), hms(0, 3))], "UTC");
        let (mut r, got) = login(port, &token, Some(&user));
        assert_eq!(got, "PONG\r\n", "{name}");
        let t0 = Instant::now();
        // (nats-server PINGs a new client after a second: it may come first.)
        assert_eq!(r.expect_closed().replace("PING\r\n", ""), "-ERR 'User Authentication Expired'\r\n", "{name}");
        assert!(t0.elapsed() < Duration::from_secs(6), "{name}: closed after {:?}", t0.elapsed());
    }
}

/// An account JWT's `mappings` rename what its users publish, as a config file's do; a
/// destination without a weight takes them all.
#[test]
fn subject_mappings_from_the_account_jwt() {
    let org = Org::new(|name, c| {
        if name == "A" {
            let dest = |s: &str, w: Option<u8>| jwt::WeightedMapping { subject: s.into(), weight: w, cluster: String::new() };
            c.nats.mappings.insert("orders.*.*".into(), vec![dest("orders.$2.$1", None)]);
            c.nats.mappings.insert("cut".into(), vec![dest("cut.all", Some(100))]);
        }
    });
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &[]);
    for (name, server) in &servers {
        let port = port_of(server);
        let (a1, a2, b1) = (KeyPair::new_user(), KeyPair::new_user(), KeyPair::new_user());
        let (mut sub, _) = login(port, &user_jwt(&a1, &org.a, |_| {}), Some(&a1));
        sub.send("SUB > 1\r\n");
        assert_eq!(sub.flush(), "", "{name}");
        let (mut b_sub, _) = login(port, &user_jwt(&b1, &org.b, |_| {}), Some(&b1));
        b_sub.send("SUB > 1\r\n");
        assert_eq!(b_sub.flush(), "", "{name}");
        let (mut publ, got) = login(port, &user_jwt(&a2, &org.a, |_| {}), Some(&a2));
        assert_eq!(got, "PONG\r\n", "{name}");
        publ.send("PUB orders.eu.7 r 1\r\nx\r\nPUB cut 1\r\ny\r\nPUB other 1\r\nz\r\n");
        assert_eq!(publ.flush(), "", "{name}");
        assert_eq!(sub.flush(), "MSG orders.7.eu 1 r 1\r\nx\r\nMSG cut.all 1 1\r\ny\r\nMSG other 1 1\r\nz\r\n", "{name}");
        // Account B's own subjects are not A's mappings' business.
        let b2 = KeyPair::new_user();
        let (mut b_pub, _) = login(port, &user_jwt(&b2, &org.b, |_| {}), Some(&b2));
        b_pub.send("PUB cut 1\r\nb\r\n");
        assert_eq!(b_pub.flush(), "", "{name}");
        assert_eq!(b_sub.flush(), "MSG cut 1 1\r\nb\r\n", "{name}");
    }
}

#[test]
fn accounts_are_isolated_but_for_their_exports_and_imports() {
    let org = Org::new(|_, _| {});
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &["--cores", "2"]);
    for (name, server) in &servers {
        let port = port_of(server);
        let (ua, ub) = (KeyPair::new_user(), KeyPair::new_user());
        let (mut a, _) = login(port, &user_jwt(&ua, &org.a, |_| {}), Some(&ua));
        let (mut b, _) = login(port, &user_jwt(&ub, &org.b, |_| {}), Some(&ub));
        // B sees A's events (imported), not A's other subjects; A never sees B's.
        b.send("SUB events.> 1\r\nSUB private 2\r\n");
        b.flush();
        a.send("SUB private 1\r\nSUB svc.time 2\r\n");
        a.flush();
        a.send("PUB events.one 1\r\nx\r\nPUB private 1\r\ny\r\n");
        assert_eq!(a.flush(), "MSG private 1 1\r\ny\r\n", "{name}");
        assert_eq!(b.flush(), "MSG events.one 1 1\r\nx\r\n", "{name}");
        // B requests A's service; A answers on the reply it got.
        b.send("SUB _INBOX.b 3\r\nPUB svc.time _INBOX.b 3\r\nnow\r\n");
        b.flush();
        let got = a.flush();
        let line = got.lines().next().unwrap_or_else(|| panic!("{name}: A got no request"));
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!((parts[0], parts[1], parts.len()), ("MSG", "svc.time", 5), "{name}: {got:?}");
        a.send(&format!("PUB {} 4\r\n12:00\r\n", parts[3]).replace("4\r\n12:00", "5\r\n12:00"));
        a.flush();
        assert_eq!(b.flush(), "MSG _INBOX.b 3 5\r\n12:00\r\n", "{name}");
    }
}

#[test]
fn private_exports_need_an_activation_token() {
    let ua = KeyPair::new_user();
    let a = KeyPair::new_account();
    let b = KeyPair::new_account();
    let c = KeyPair::new_account();
    let d = KeyPair::new_account();
    let op = KeyPair::new_operator();
    let grant = |to: &KeyPair| {
        let claims = Claims::new(&to.public_key(), ActivationNats { subject: "private.>".into(), kind: ExportType::Stream, ..Default::default() });
        jwt::encode(&claims, &a).unwrap()
    };
    let mut an = AccountNats::unlimited();
    an.exports = vec![JwtExport { subject: "private.>".into(), kind: ExportType::Stream, token_req: true, ..Default::default() }];
    let import = |token: String| JwtImport { subject: "private.>".into(), account: a.public_key(), kind: ExportType::Stream, token, ..Default::default() };
    let mut bn = AccountNats::unlimited();
    bn.imports = vec![import(grant(&b))];
    // C presents B's activation, not one of its own: C's JWT does not validate, and its
    // users are refused. D imports without a token: it logs in, and gets nothing.
    let mut cn = AccountNats::unlimited();
    cn.imports = vec![import(grant(&b))];
    let mut dn = AccountNats::unlimited();
    dn.imports = vec![import(String::new())];
    let sign = |kp: &KeyPair, n: AccountNats| (kp.public_key(), jwt::encode(&Claims::new(&kp.public_key(), n), &op).unwrap());
    let accounts = [sign(&a, an), sign(&b, bn), sign(&c, cn), sign(&d, dn)];
    let dir = TempDir::new("operator");
    let opjwt = jwt::encode(&Claims::new(&op.public_key(), OperatorNats::default()), &op).unwrap();
    // As `nsc generate config --mem-resolver` writes it: JWTs inline and unquoted, comments.
    let preload: String = accounts.iter().map(|(k, j)| format!("  # an account\n  {k}: {j}\n")).collect();
    let conf = format!("# Operator\noperator: {opjwt}\nresolver: MEMORY\nresolver_preload: {{\n{preload}}}\n");
    drop(dir);
    let (_d, servers) = natsu_and_reference(&conf, &[]);
    for (name, server) in &servers {
        let port = port_of(server);
        let (ub, uc, ud) = (KeyPair::new_user(), KeyPair::new_user(), KeyPair::new_user());
        let (mut pa, ga) = login(port, &user_jwt(&ua, &a, |_| {}), Some(&ua));
        let (mut sb, gb) = login(port, &user_jwt(&ub, &b, |_| {}), Some(&ub));
        let (_, gc) = login(port, &user_jwt(&uc, &c, |_| {}), Some(&uc));
        let (mut sd, gd) = login(port, &user_jwt(&ud, &d, |_| {}), Some(&ud));
        assert_eq!((ga.as_str(), gb.as_str(), gc.as_str(), gd.as_str()), ("PONG\r\n", "PONG\r\n", AUTH_VIOLATION, "PONG\r\n"), "{name}");
        sb.send("SUB private.> 1\r\n");
        sb.flush();
        sd.send("SUB private.> 1\r\n");
        sd.flush();
        pa.send("PUB private.x 1\r\nz\r\n");
        pa.flush();
        assert_eq!(sb.flush(), "MSG private.x 1 1\r\nz\r\n", "{name}: B holds an activation");
        assert_eq!(sd.flush(), "", "{name}: D's import is not authorized");
    }
}

#[test]
fn bad_operator_configs_are_refused() {
    let org = Org::new(|_, _| {});
    let dir = TempDir::new("operator");
    let good = org.conf(&dir);
    let op_file = dir.0.join("op.jwt").display().to_string();
    assert!(good.contains(&op_file));
    let bad = [
        // No resolver.
        format!("operator: \"{}\"\n", org.operator_jwt()),
        // Accounts beside an operator.
        format!("{good}accounts {{ X {{ }} }}\n"),
        // Users beside an operator.
        format!("{good}authorization {{ users: [{{user: a, password: b}}] }}\n"),
        // A system account other than the operator's.
        format!("{good}system_account: {}\n", org.a.public_key()),
        // An operator file that is not one.
        "operator: \"/nonexistent/op.jwt\"\nresolver: MEMORY\n".to_string(),
        // A preload that is not an account JWT.
        format!("operator: \"{}\"\nresolver: MEMORY\nresolver_preload: {{ {}: \"eyJhbGciOiJub25lIn0.e30.\" }}\n", org.operator_jwt(), org.a.public_key()),
        // An operator that asks for a newer server (2.9.10 is what both are).
        good.replace(&op_file, &org.operator_jwt_asserting("2.9.11")),
        good.replace(&op_file, &org.operator_jwt_asserting("3.0.0")),
        good.replace(&op_file, &org.operator_jwt_asserting("2.x.0")),
    ];
    for conf in &bad {
        let path = dir.0.join("bad.conf");
        std::fs::write(&path, conf).unwrap();
        let bins = if common::reference() { vec![std::path::PathBuf::from("nats-server")] } else { vec![common::natsu_bin(), "nats-server".into()] };
        for bin in bins {
            // (nats-server's `-t` reads the file but checks operator mode only when it
            // starts: start it, and expect it to exit at once.)
            let mut child = std::process::Command::new(&bin)
                .args(["-a", "127.0.0.1", "-p", "-1", "-c", path.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run");
            let deadline = Instant::now() + Duration::from_secs(5);
            let status = loop {
                if let Some(st) = child.try_wait().unwrap() {
                    break Some(st);
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(status.is_some_and(|s| !s.success()), "{} started with {conf:?}", bin.display());
        }
    }
    // natsu's own refusals of what it does not serve yet, and the good config.
    let natsu = common::natsu_bin();
    for (conf, words) in [
        ("resolver: { type: full, dir: /tmp/x }\n".to_string(), "not supported by natsu yet"),
        ("resolver: URL(http://localhost:9090/jwt/v1/accounts/)\n".to_string(), "not supported by natsu yet"),
    ] {
        let path = dir.0.join("unserved.conf");
        std::fs::write(&path, format!("operator: \"{}\"\n{conf}", org.operator_jwt())).unwrap();
        let out = std::process::Command::new(&natsu).args(["-t", "-c", path.to_str().unwrap()]).output().expect("run");
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success() && text.contains(words), "{conf}: {text}");
    }
    // An operator asking for this version or an older one is fine; a newer one is refused
    // in nats-server's words.
    for (version, ok) in [("", true), ("2.9.10", true), ("2.8.4", true), ("1.99.99", true), ("2.10.0", false)] {
        let path = dir.0.join("good.conf");
        std::fs::write(&path, good.replace(&op_file, &org.operator_jwt_asserting(version))).unwrap();
        let out = std::process::Command::new(&natsu).args(["-t", "-c", path.to_str().unwrap()]).output().expect("run");
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.success(), ok, "{version}: {text}");
        if !ok {
            assert!(text.contains("expected minor version 10 > server minor version 9"), "{text}");
        }
    }
}

#[test]
fn real_clients_log_in_with_creds_files() {
    let org = Org::new(|_, _| {});
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &[]);
    let user = KeyPair::new_user();
    let creds = dir.0.join("user.creds");
    std::fs::write(&creds, jwt::creds(&user_jwt(&user, &org.a, |_| {}), &user.seed().unwrap())).unwrap();
    let other = KeyPair::new_user();
    let wrong = dir.0.join("wrong.creds");
    // Another user's seed beside the JWT: the signature does not match.
    std::fs::write(&wrong, jwt::creds(&user_jwt(&user, &org.a, |_| {}), &other.seed().unwrap())).unwrap();
    for (name, server) in &servers {
        let url = server.url();
        // async-nats.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let opts = async_nats::ConnectOptions::with_credentials_file(creds.clone()).await.expect("creds");
            let nc = opts.connect(url.as_str()).await.unwrap_or_else(|e| panic!("{name}: async-nats: {e}"));
            let mut sub = nc.subscribe("creds.test").await.unwrap();
            nc.publish("creds.test", "hello".into()).await.unwrap();
            let msg = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut sub)).await.expect("a message").expect("open");
            assert_eq!(&msg.payload[..], b"hello", "{name}");
            let bad = async_nats::ConnectOptions::with_credentials_file(wrong.clone()).await.expect("creds").max_reconnects(Some(1)).connect(url.as_str()).await;
            assert!(bad.is_err(), "{name}: async-nats logged in with the wrong seed");
        });
        // natsu's own client.
        let (url2, creds2, wrong2) = (url.clone(), creds.clone(), wrong.clone());
        let name2 = name.to_string();
        common::run_local(Duration::from_secs(20), move || async move {
            let opts = natsu::client::Options::new().credentials_file(&creds2).expect("creds");
            let nc = opts.connect(&url2).await.unwrap_or_else(|e| panic!("{name2}: natsu client: {e}"));
            let sub = nc.subscribe_sync("creds.own").unwrap();
            nc.publish("creds.own", b"hi").await.unwrap();
            let m = sub.next_msg(Duration::from_secs(5)).await.expect("a message");
            assert_eq!(&m.data[..], b"hi");
            let bad = natsu::client::Options::new().credentials_file(&wrong2).expect("creds").max_reconnects(0).connect(&url2).await;
            assert!(bad.is_err(), "{name2}: natsu client logged in with the wrong seed");
        });
    }
}

/// A request on `subject` from the system account user `sys`, and its answer (within 5 s).
fn sys_request(sys: &mut Raw, subject: &str, body: &str, name: &str) -> Value {
    sys.send("SUB _INBOX.i 1\r\n");
    sys.flush();
    sys.send(&format!("PUB {subject} _INBOX.i {}\r\n{body}\r\n", body.len()));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = sys.flush();
    while !got.contains("MSG _INBOX.i") {
        assert!(Instant::now() < deadline, "{name}: no answer to {subject}");
        std::thread::sleep(Duration::from_millis(20));
        got += &sys.flush();
    }
    sys.send("UNSUB 1\r\n");
    let at = got.find("MSG _INBOX.i").unwrap();
    let body = got[at..].split("\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{name}: {e}: {body}"))
}

/// Claim updates (`$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` and the older
/// `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE`) answered as nats-server answers them with a memory
/// resolver. One difference, on purpose: a changed JWT is applied by nats-server and
/// refused by natsu, which cannot change an account at run time yet and says so.
#[test]
fn claim_updates_are_answered() {
    let org = Org::new(|_, _| {});
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &[]);
    let jwt_of = |k: &KeyPair| org.accounts.iter().find(|(key, _)| *key == k.public_key()).unwrap().1.clone();
    for (name, server) in &servers {
        let port = port_of(server);
        let (su, ua) = (KeyPair::new_user(), KeyPair::new_user());
        let (mut sys, _) = login(port, &user_jwt(&su, &org.sys, |_| {}), Some(&su));
        // (nats-server loads a preloaded account when it is first used.)
        let (_a, got) = login(port, &user_jwt(&ua, &org.a, |_| {}), Some(&ua));
        assert_eq!(got, "PONG\r\n", "{name}");
        let a = org.a.public_key();
        let mut ask = |subject: String, body: &str| {
            let v = sys_request(&mut sys, &subject, body, name);
            let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            assert_eq!(keys.last().map(|k| k.as_str()), Some("server"), "{name}: {v}");
            v
        };
        let v = ask(format!("$SYS.REQ.ACCOUNT.{a}.CLAIMS.UPDATE"), &jwt_of(&org.a));
        assert_eq!(v["data"], serde_json::json!({"account": a, "code": 200, "message": "jwt updated"}), "{name}");
        let v = ask(format!("$SYS.ACCOUNT.{a}.CLAIMS.UPDATE"), &jwt_of(&org.a));
        assert_eq!(v["data"]["message"], "jwt updated", "{name}");
        let v = ask(format!("$SYS.REQ.ACCOUNT.{a}.CLAIMS.UPDATE"), "");
        assert_eq!(v["error"], serde_json::json!({"account": a, "code": 500, "description": "jwt update error - request body is empty"}), "{name}");
        let v = ask(format!("$SYS.REQ.ACCOUNT.{a}.CLAIMS.UPDATE"), &jwt_of(&org.b));
        assert_eq!(v["error"]["description"], "jwt update resulted in error - subject does not match jwt content", "{name}");
        let v = ask(format!("$SYS.REQ.ACCOUNT.{a}.CLAIMS.UPDATE"), "not a jwt");
        assert!(v["error"]["description"].as_str().is_some_and(|d| d.starts_with("jwt update resulted in error - ")), "{name}: {v}");
        let other = KeyPair::new_account();
        let other_jwt = jwt::encode(&Claims::new(&other.public_key(), AccountNats::unlimited()), &org.op).unwrap();
        let v = ask(format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", other.public_key()), &other_jwt);
        assert_eq!(v["data"], serde_json::json!({"account": other.public_key(), "code": 200, "message": "jwt update skipped"}), "{name}");
        let mut changed = Claims::new(&a, AccountNats::unlimited());
        changed.name = "A2".into();
        let v = ask(format!("$SYS.REQ.ACCOUNT.{a}.CLAIMS.UPDATE"), &jwt::encode(&changed, &org.op).unwrap());
        if *name == "natsu" {
            assert!(v["error"]["description"].as_str().is_some_and(|d| d.contains("does not apply account JWT updates")), "{name}: {v}");
        } else {
            assert_eq!(v["data"]["message"], "jwt updated", "{name}: {v}");
        }
    }
}

/// `$SYS.REQ.ACCOUNT.<key>.INFO` about a JWT account, asked by a user of the system
/// account: the account's JWT, its issuer, name, decoded claims and revoked users, as the
/// reference shows them (same keys in the same order; the same values but for times).
#[test]
fn account_info_of_a_jwt_account() {
    let revoked = KeyPair::new_user();
    let org = Org::new(|name, c| {
        if name == "A" {
            c.nats.revocations.insert(revoked.public_key(), 1_700_000_000);
        }
    });
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &[]);
    let mut seen: Vec<(&str, Value)> = Vec::new();
    for (name, server) in &servers {
        let port = port_of(server);
        let (su, ua) = (KeyPair::new_user(), KeyPair::new_user());
        let (mut sys, got) = login(port, &user_jwt(&su, &org.sys, |_| {}), Some(&su));
        assert_eq!(got, "PONG\r\n", "{name}");
        // (nats-server loads a preloaded account when it is first used.)
        let (_a, got) = login(port, &user_jwt(&ua, &org.a, |_| {}), Some(&ua));
        assert_eq!(got, "PONG\r\n", "{name}");
        let v = sys_request(&mut sys, &format!("$SYS.REQ.ACCOUNT.{}.INFO", org.a.public_key()), "", name);
        let d = &v["data"];
        let a_jwt = &org.accounts.iter().find(|(k, _)| *k == org.a.public_key()).unwrap().1;
        assert_eq!(d["account_name"], org.a.public_key().as_str(), "{name}: {d}");
        assert_eq!(d["jwt"], a_jwt.as_str(), "{name}");
        assert_eq!(d["issuer_key"], org.op.public_key().as_str(), "{name}");
        assert_eq!(d["name_tag"], "A", "{name}");
        assert_eq!(d["decoded_jwt"]["sub"], org.a.public_key().as_str(), "{name}");
        assert_eq!(d["decoded_jwt"]["nats"]["exports"][0]["subject"], "events.>", "{name}");
        assert!(d["revoked_user"][revoked.public_key()].as_str().is_some_and(|t| t.starts_with("2023-11-14T")), "{name}: {d}");
        seen.push((name, v));
    }
    if let [(_, ours), (_, theirs)] = &seen[..] {
        let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        let mut t = theirs["data"].clone();
        // (nats-server lists the system services it imports into every account.)
        if t["imports"].as_array().is_some_and(|l| l.iter().all(|i| i["account"] == org.sys.public_key().as_str())) {
            t.as_object_mut().unwrap().shift_remove("imports");
        }
        assert_eq!(keys(&ours["data"]), keys(&t), "keys of the account detail");
        // (nats-server's signing keys are a Go map: listed in a random order.)
        let decoded = |v: &Value| {
            let mut d = v["data"]["decoded_jwt"].clone();
            if let Some(keys) = d["nats"]["signing_keys"].as_array_mut() {
                keys.sort_by_key(|k| k.as_str().or(k["key"].as_str()).unwrap_or_default().to_owned());
            }
            d
        };
        assert_eq!(decoded(ours), decoded(theirs), "the decoded JWT");
        assert_eq!(ours["data"]["exports"], t["exports"], "exports");
    }
}

/// `$SYS.REQ.USER.INFO` (nats-server 2.10's "who am I"; 2.9, the reference here, has no
/// responder for it): a client learns its user key, account, permissions and the time
/// left on its JWT, in any account.
#[test]
fn user_info_tells_a_client_who_it_is() {
    let org = Org::new(|_, _| {});
    let dir = TempDir::new("operator");
    let (_d, servers) = natsu_and_reference(&org.conf(&dir), &["--cores", "2"]);
    for (name, server) in &servers {
        let port = port_of(server);
        let (plain, limited) = (KeyPair::new_user(), KeyPair::new_user());
        let (mut p, got) = login(port, &user_jwt(&plain, &org.a, |_| {}), Some(&plain));
        assert_eq!(got, "PONG\r\n", "{name}");
        let token = user_jwt(&limited, &org.a_signer, |c| {
            c.exp = jwt::now() + 3600;
            c.nats.issuer_account = org.a.public_key();
            c.nats.limits.publish = jwt::Permission { allow: vec!["$SYS.REQ.USER.INFO".into(), "svc.>".into()], deny: vec!["svc.secret".into()] };
            c.nats.limits.subscribe = jwt::Permission { allow: vec!["_INBOX.>".into()], deny: vec![] };
            c.nats.limits.resp = Some(ResponsePermission { max: 3, ttl: 0 });
        });
        let (mut l, got) = login(port, &token, Some(&limited));
        assert_eq!(got, "PONG\r\n", "{name}");
        if *name == "nats-server" {
            // No responder in 2.9: a request with headers gets the 503 status.
            let mut r = Raw::connect(port);
            let json = connect_json(&r, &user_jwt(&plain, &org.a, |_| {}), Some(&plain)).replace("\"jwt\"", "\"headers\":true,\"no_responders\":true,\"jwt\"");
            r.send(&format!("CONNECT {json}\r\nSUB _INBOX.n 1\r\nPUB $SYS.REQ.USER.INFO _INBOX.n 0\r\n\r\nPING\r\n"));
            assert!(r.expect_closed_or_pong().contains("503"), "nats-server 2.9 has no USER.INFO responder");
            continue;
        }
        let v = sys_request(&mut p, "$SYS.REQ.USER.INFO", "", name);
        assert_eq!(v["server"]["id"].as_str().map(str::len), Some(56), "{v}");
        assert_eq!(v["data"], serde_json::json!({"user": plain.public_key(), "account": org.a.public_key()}), "{v}");
        let v = sys_request(&mut l, "$SYS.REQ.USER.INFO", "", name);
        let d = &v["data"];
        assert_eq!(d["user"], limited.public_key().as_str(), "{v}");
        assert_eq!(d["account"], org.a.public_key().as_str(), "{v}");
        assert_eq!(
            d["permissions"],
            serde_json::json!({
                "publish": {"allow": ["$SYS.REQ.USER.INFO", "svc.>"], "deny": ["svc.secret"]},
                "subscribe": {"allow": ["_INBOX.>"]},
                "responses": {"max": 3, "ttl": 120_000_000_000u64},
            }),
            "{v}"
        );
        let left = d["expires"].as_u64().unwrap_or(0);
        assert!((3590_000_000_000..=3600_000_000_000).contains(&left) && left % 1_000_000_000 == 0, "{v}");
        // The system account's own users ask too.
        let su = KeyPair::new_user();
        let (mut s, got) = login(port, &user_jwt(&su, &org.sys, |_| {}), Some(&su));
        assert_eq!(got, "PONG\r\n", "{name}");
        let v = sys_request(&mut s, "$SYS.REQ.USER.INFO", "", name);
        assert_eq!(v["data"]["account"], org.sys.public_key().as_str(), "{v}");
    }
}

/// Leaf connections into an operator-mode hub log in with a `.creds` file (`credentials`
/// in the remote), as leafs into hosted NATS services do: the leaf's `$G` is bound to the
/// user's account on the hub, both ways; a leaf whose seed does not match its JWT is
/// refused. Every pair of natsu and nats-server as hub and leaf.
#[test]
fn leafs_log_in_to_an_operator_hub_with_creds() {
    use common::cluster::pick_port;
    let org = Org::new(|_, _| {});
    let dir = TempDir::new("operator");
    let user = KeyPair::new_user();
    let creds = dir.0.join("leaf.creds");
    std::fs::write(&creds, jwt::creds(&user_jwt(&user, &org.a, |_| {}), &user.seed().unwrap())).unwrap();
    let wrong = dir.0.join("wrong.creds");
    std::fs::write(&wrong, jwt::creds(&user_jwt(&user, &org.a, |_| {}), &KeyPair::new_user().seed().unwrap())).unwrap();
    let hub_user = dir.0.join("hub.creds");
    let hu = KeyPair::new_user();
    std::fs::write(&hub_user, jwt::creds(&user_jwt(&hu, &org.a, |_| {}), &hu.seed().unwrap())).unwrap();
    let start = |natsu: bool, conf: &str, file: &str| {
        let path = dir.0.join(file);
        std::fs::write(&path, conf).unwrap();
        let args = ["-p", "-1", "-c", path.to_str().unwrap()];
        if natsu {
            Server::target_with(&args)
        } else {
            Server::reference_with(&args)
        }
    };
    let leaf_conf = |lp: u16, creds: &std::path::Path| {
        format!("leafnodes {{\n  reconnect: 1\n  remotes: [ {{ url: \"nats-leaf://127.0.0.1:{lp}\", credentials: \"{}\" }} ]\n}}\n", creds.display())
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for hub_natsu in [true, false] {
        let lp = pick_port();
        let hub = start(hub_natsu, &format!("{}leafnodes {{ listen: \"127.0.0.1:{lp}\" }}\n", org.conf(&dir)), &format!("hub{hub_natsu}.conf"));
        for leaf_natsu in [true, false] {
            let what = format!("hub {} / leaf {}", if hub_natsu { "natsu" } else { "nats-server" }, if leaf_natsu { "natsu" } else { "nats-server" });
            let leaf = start(leaf_natsu, &leaf_conf(lp, &creds), &format!("leaf{hub_natsu}{leaf_natsu}.conf"));
            let rogue = start(leaf_natsu, &leaf_conf(lp, &wrong), &format!("rogue{hub_natsu}{leaf_natsu}.conf"));
            rt.block_on(async {
                let at_hub = async_nats::ConnectOptions::with_credentials_file(hub_user.clone()).await.unwrap().connect(hub.url().as_str()).await.unwrap();
                let at_leaf = async_nats::connect(leaf.url().as_str()).await.unwrap();
                let at_rogue = async_nats::connect(rogue.url().as_str()).await.unwrap();
                let mut up = at_hub.subscribe("up.>").await.unwrap();
                let mut down = at_leaf.subscribe("down").await.unwrap();
                at_hub.flush().await.unwrap();
                // Until the link is up (the leaf dials every second), then once more each way.
                let deadline = Instant::now() + Duration::from_secs(15);
                let mut got = None;
                while got.is_none() && Instant::now() < deadline {
                    at_leaf.publish("up.probe", "p".into()).await.unwrap();
                    at_leaf.flush().await.unwrap();
                    got = tokio::time::timeout(Duration::from_millis(200), futures::StreamExt::next(&mut up)).await.ok().flatten();
                }
                assert!(got.is_some(), "{what}: the leaf's message never reached the hub");
                let mut down_got = None;
                while down_got.is_none() && Instant::now() < deadline {
                    at_hub.publish("down", "d".into()).await.unwrap();
                    at_hub.flush().await.unwrap();
                    down_got = tokio::time::timeout(Duration::from_millis(200), futures::StreamExt::next(&mut down)).await.ok().flatten();
                }
                assert_eq!(down_got.map(|m| m.payload), Some("d".into()), "{what}: hub to leaf");
                // The rogue leaf had as long to dial (and kept dialling): nothing of it arrives.
                while tokio::time::timeout(Duration::from_millis(100), futures::StreamExt::next(&mut up)).await.is_ok() {}
                for _ in 0..5 {
                    at_rogue.publish("up.rogue", "r".into()).await.unwrap();
                    at_rogue.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), futures::StreamExt::next(&mut up)).await {
                    assert_ne!(m.subject.as_str(), "up.rogue", "{what}: a leaf with the wrong seed got in");
                }
            });
        }
    }
}
