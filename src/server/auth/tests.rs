//! The credential check, with options built by hand.

use super::*;
use crate::server::options::{Permissions, SubjectPermission, Tls};

fn connect(user: Option<&str>, pass: Option<&str>, token: Option<&str>) -> Connect {
    Connect { user: user.map(Into::into), pass: pass.map(Into::into), auth_token: token.map(Into::into), ..Connect::default() }
}

fn opts(auth: Auth) -> Options {
    Options { auth, ..Options::default() }
}

/// Run the check on a fresh executor (bcrypt checks wait with glommio timers); the answer
/// is the user name and account, None when refused.
fn run(opts: &Options, c: Connect, nonce: Option<&str>, cert: Option<CertNames>) -> Option<(Option<String>, Option<String>)> {
    let (opts, nonce) = (opts.clone(), nonce.map(String::from));
    glommio::LocalExecutorBuilder::default()
        .io_memory(128 << 10)
        .spawn(move || async move {
            let p = Presented { connect: &c, nonce: nonce.as_deref(), cert: cert.as_ref(), kind: super::ConnType::Standard, ip: None };
            authenticate(&opts, &p).await.map(|i| (i.user, i.account))
        })
        .unwrap()
        .join()
        .unwrap()
}

fn user_of(opts: &Options, c: Connect) -> Option<Option<String>> {
    run(opts, c, None, None).map(|(u, _)| u)
}

fn user(name: &str, password: &str) -> User {
    User { user: name.into(), password: password.into(), ..Default::default() }
}

#[test]
fn credentials() {
    let hash = ::bcrypt::hash("s3cret", 4).unwrap();
    let single = opts(Auth { user: Some("u".into()), password: Some(hash.clone()), ..Auth::default() });
    assert_eq!(user_of(&single, connect(Some("u"), Some("s3cret"), None)), Some(Some("u".into())));
    assert_eq!(user_of(&single, connect(Some("u"), Some("wrong"), None)), None);
    assert_eq!(user_of(&single, connect(None, None, None)), None);
    let token = opts(Auth { token: Some("tok".into()), ..Auth::default() });
    assert!(user_of(&token, connect(None, None, Some("tok"))).is_some());
    assert!(user_of(&token, connect(None, None, Some("tok2"))).is_none());
    assert!(user_of(&token, connect(None, None, None)).is_none());
    let users = opts(Auth { users: vec![user("a", "pa"), user("b", &hash), user("nopw", "")], ..Auth::default() });
    assert_eq!(user_of(&users, connect(Some("a"), Some("pa"), None)), Some(Some("a".into())));
    assert_eq!(user_of(&users, connect(Some("b"), Some("s3cret"), None)), Some(Some("b".into())));
    assert_eq!(user_of(&users, connect(Some("b"), Some("pa"), None)), None);
    assert_eq!(user_of(&users, connect(Some("c"), Some("pa"), None)), None);
    assert_eq!(user_of(&users, connect(None, None, Some("pa"))), None);
    assert_eq!(user_of(&users, connect(Some("a"), None, None)), None, "no password is the empty one");
    assert_eq!(user_of(&users, connect(Some("nopw"), None, None)), Some(Some("nopw".into())), "as nats-server compares it");
    assert!(user_of(&Options::default(), connect(None, None, None)).is_some());
}

/// An NKey user's keys and a CONNECT signing `nonce` with `signer`.
fn nkey_connect(key: &str, signer: &nkeys::KeyPair, nonce: &str) -> Connect {
    use base64::Engine;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signer.sign(nonce.as_bytes()).unwrap());
    Connect { nkey: Some(key.into()), sig: Some(sig), ..Connect::default() }
}

#[test]
fn nkey_users() {
    let kp = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let pk = kp.public_key();
    let o = opts(Auth {
        users: vec![
            User { nkey: Some(pk.clone()), account: Some("A".into()), ..Default::default() },
            user("bob", "pw"),
        ],
        ..Auth::default()
    });
    assert!(nonce_required(&o.auth));
    let nonce = new_nonce().unwrap();
    let good = nkey_connect(&pk, &kp, &nonce);
    assert_eq!(run(&o, good.clone(), Some(&nonce), None), Some((Some(pk.clone()), Some("A".into()))), "named by its key, in its account");
    assert_eq!(run(&o, good.clone(), Some("another-nonce!!"), None), None, "signed another connection's nonce");
    assert_eq!(run(&o, good.clone(), None, None), None);
    assert_eq!(run(&o, nkey_connect(&pk, &stranger, &nonce), Some(&nonce), None), None, "wrong signature");
    assert_eq!(run(&o, nkey_connect(&stranger.public_key(), &stranger, &nonce), Some(&nonce), None), None, "unknown key");
    assert_eq!(run(&o, Connect { sig: None, ..good.clone() }, Some(&nonce), None), None, "no signature");
    // With an NKey, user and password are not looked at (as nats-server).
    let with_user = Connect { user: Some("bob".into()), pass: Some("wrong".into()), ..good };
    assert_eq!(run(&o, with_user, Some(&nonce), None).map(|(u, _)| u), Some(Some(pk.clone())));
    // An empty nkey is none: the user list decides.
    let empty = Connect { nkey: Some(String::new()), ..connect(Some("bob"), Some("pw"), None) };
    assert_eq!(run(&o, empty, Some(&nonce), None).map(|(u, _)| u), Some(Some("bob".into())));
    assert_eq!(run(&o, connect(None, None, None), Some(&nonce), None), None);
    // Without NKey users, an nkey in CONNECT is ignored.
    let plain = opts(Auth { users: vec![user("bob", "pw")], ..Auth::default() });
    assert!(!nonce_required(&plain.auth));
    let c = Connect { nkey: Some(pk), ..connect(Some("bob"), Some("pw"), None) };
    assert_eq!(user_of(&plain, c), Some(Some("bob".into())));
}

#[test]
fn no_auth_user() {
    let perms = Permissions { publish: Some(SubjectPermission { allow: vec![], deny: vec!["secret".into()] }), subscribe: None, responses: None };
    let hash = ::bcrypt::hash("pw", 4).unwrap();
    let o = opts(Auth {
        users: vec![User { permissions: Some(perms), account: Some("A".into()), ..user("anon", "x") }, user("bob", &hash)],
        no_auth_user: Some("anon".into()),
        ..Auth::default()
    });
    assert!(!info_auth_required(&o.auth) && o.auth.required());
    assert_eq!(run(&o, connect(None, None, None), None, None), Some((Some("anon".into()), Some("A".into()))));
    let id = skipped_connect(&o).expect("a client that skips CONNECT is the no_auth_user");
    assert_eq!((id.user.as_deref(), id.account.as_deref()), (Some("anon"), Some("A")));
    assert!(!id.perms.expect("its permissions").can_publish(b"secret"));
    // Empty strings are no credentials either.
    assert!(run(&o, connect(Some(""), Some(""), Some("")), None, None).is_some());
    // Any credential, right or wrong, is checked as such.
    assert_eq!(user_of(&o, connect(Some("bob"), Some("pw"), None)), Some(Some("bob".into())));
    assert_eq!(user_of(&o, connect(Some("bob"), Some("no"), None)), None);
    assert_eq!(user_of(&o, connect(None, Some("pw"), None)), None);
    assert_eq!(user_of(&o, connect(None, None, Some("pw"))), None);
    assert_eq!(user_of(&o, connect(Some("anon"), None, None)), None, "naming the user means giving its password");
    // A no_auth_user whose password is a bcrypt hash is let in too (nats-server 2.9 refuses
    // its CONNECT; see `check`).
    let o = opts(Auth { users: vec![user("bob", &hash)], no_auth_user: Some("bob".into()), ..Auth::default() });
    assert_eq!(user_of(&o, connect(None, None, None)), Some(Some("bob".into())));
    // No no_auth_user: refused, and so is skipping CONNECT.
    let o = opts(Auth { users: vec![user("bob", "pw")], ..Auth::default() });
    assert!(info_auth_required(&o.auth));
    assert!(skipped_connect(&o).is_none());
    assert_eq!(user_of(&o, connect(None, None, None)), None);
}

#[test]
fn verify_and_map() {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "dave");
    params.subject_alt_names = vec![SanType::Rfc822Name("dave@example.com".try_into().unwrap())];
    let der = params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec();
    let names = CertNames::from_der(&der).unwrap();
    let tls = Tls { verify: true, verify_and_map: true, ..Tls::default() };
    let mapped = |users: Vec<User>, no_auth: Option<&str>, c: Connect, cert: Option<CertNames>| {
        let o = Options { auth: Auth { users, no_auth_user: no_auth.map(Into::into), ..Auth::default() }, tls: Some(tls.clone()), ..Options::default() };
        run(&o, c, None, cert).map(|(u, _)| u)
    };
    let none = || connect(None, None, None);
    assert_eq!(mapped(vec![user("dave@example.com", "")], None, none(), Some(names.clone())), Some(Some("dave@example.com".into())));
    assert_eq!(mapped(vec![user("CN=dave", "")], None, none(), Some(names.clone())), Some(Some("CN=dave".into())));
    // The CONNECT's user is ignored; a password must be the mapped user's.
    assert_eq!(mapped(vec![user("CN=dave", ""), user("bob", "pw")], None, connect(Some("bob"), Some("pw"), None), Some(names.clone())), None);
    assert_eq!(mapped(vec![user("CN=dave", "pw")], None, connect(Some("x"), Some("pw"), None), Some(names.clone())), Some(Some("CN=dave".into())));
    assert_eq!(mapped(vec![user("CN=dave", "pw")], None, none(), Some(names.clone())), None);
    // No matching user, or no certificate: refused, no_auth_user or not (nats-server 2.9
    // does not fall back on it when mapping certificates).
    assert_eq!(mapped(vec![user("dave", ""), user("anon", "")], Some("anon"), none(), Some(names.clone())), None);
    assert_eq!(mapped(vec![user("CN=dave", "")], None, none(), None), None);
    // NKey users log in with their key, certificate or not.
    let kp = nkeys::KeyPair::new_user();
    let nonce = new_nonce().unwrap();
    let o = Options {
        auth: Auth { users: vec![user("CN=someone", ""), User { nkey: Some(kp.public_key()), ..Default::default() }], ..Auth::default() },
        tls: Some(tls),
        ..Options::default()
    };
    assert!(run(&o, nkey_connect(&kp.public_key(), &kp, &nonce), Some(&nonce), Some(names)).is_some());
}
