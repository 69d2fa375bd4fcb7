//! Authentication (who may connect) and authorization (what they may publish and subscribe).
//!
//! One credential check, [`check`], decides who a client is from what it presented
//! ([`Presented`]), in nats-server 2.9's order:
//!
//! 1. in operator mode, a user JWT and the nonce's signature, and nothing else
//!    ([`user_jwt`]);
//! 2. an NKey: the client's `nkey` is a configured NKey user and `sig` is its signature of
//!    this connection's INFO `nonce` ([`nkey`]);
//! 3. a user of the users list: with `tls { verify_and_map }` the one the client
//!    certificate names ([`cert`]), else the CONNECT's `user` — or, for a CONNECT with no
//!    credentials at all, the `no_auth_user` — and its password;
//! 4. the token, or the single `user`/`password` pair.
//!
//! Passwords and tokens are plain text or bcrypt hashes ([`bcrypt`]); what a user may do is
//! in [`perms`].

mod bcrypt;
pub mod cert;
pub mod jwt;
mod nkey;
mod perms;
mod times;
mod user_jwt;

use std::os::unix::io::RawFd;
use std::sync::Arc;

pub use bcrypt::is_bcrypt;
use bcrypt::{secret_matches, Match};
pub use cert::CertNames;
pub use nkey::new_nonce;
pub use perms::ClientPerms;

use super::options::{Auth, Options, User};
use crate::protocol::info::Connect;

/// Who a client turned out to be.
pub struct Identity {
    /// The user name (an NKey user's public key), for /connz's `authorized_user` and the
    /// logs.
    pub user: Option<String>,
    pub perms: Option<ClientPerms>,
    /// The user's account; None: `$G`.
    pub account: Option<String>,
    /// What a user JWT and its account limit (none for configured users).
    pub limits: ClientLimits,
}

impl Identity {
    fn anonymous() -> Identity {
        Identity { user: None, perms: None, account: None, limits: ClientLimits::default() }
    }

    /// A configured user; `name` is what it is known by (its name, or its NKey).
    fn of(u: &User, name: &str) -> Identity {
        Identity { user: Some(name.to_string()), perms: u.permissions.as_ref().map(ClientPerms::new), account: u.account.clone(), limits: ClientLimits::default() }
    }
}

/// Limits a user JWT and its account's JWT put on one connection (on top of the server's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientLimits {
    /// Subscriptions; None: only the server's `max_subscriptions`.
    pub subs: Option<usize>,
    /// Payload bytes; None: only the server's `max_payload`.
    pub payload: Option<usize>,
    /// When the user's JWT expires (Unix seconds): the connection is closed then.
    pub expires: Option<i64>,
    /// Connections the account may have server-wide.
    pub account_conns: Option<usize>,
}

/// What kind of connection logs in (a user JWT may allow only some).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnType {
    Standard,
    WebSocket,
    Leaf,
}

/// What checking a CONNECT came to.
pub enum Verdict {
    Pass(Identity),
    /// Refuse (Authorization Violation).
    Refuse,
    /// The connection went away while its check waited: nobody to answer.
    Gone,
}

/// What a client presented to prove who it is.
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    /// Its CONNECT (user, pass, auth_token, nkey, sig).
    pub connect: &'a Connect,
    /// The nonce its INFO carried, if any (NKey users sign it).
    pub nonce: Option<&'a str>,
    /// The names of its certificate, read when `verify_and_map` is on.
    pub cert: Option<&'a CertNames>,
    /// What kind of connection it is, and where it comes from (user JWTs may restrict both).
    pub kind: ConnType,
    pub ip: Option<std::net::IpAddr>,
}

/// Check a new client's CONNECT under `opts` (the current options; a different `Arc` than
/// last time means a reload, which forgets remembered credentials). `gone` says whether the
/// connection has ended (hung up, timed out): a bcrypt check still queued is then dropped.
pub async fn authenticate_client(opts: &Arc<Options>, p: &Presented<'_>, gone: impl Fn() -> bool) -> Verdict {
    check(opts, p, Some(opts), &gone).await
}

/// Check a connected client again (after a reload), where nobody waits on the answer.
/// `None`: its credentials no longer pass.
pub async fn authenticate(opts: &Options, p: &Presented<'_>) -> Option<Identity> {
    match check(opts, p, None, &|| false).await {
        Verdict::Pass(id) => Some(id),
        Verdict::Refuse | Verdict::Gone => None,
    }
}

/// The credential check. `scope` is for the verified-credentials memory (see
/// [`authenticate_client`]).
async fn check(opts: &Options, p: &Presented<'_>, scope: Option<&Arc<Options>>, gone: &dyn Fn() -> bool) -> Verdict {
    let auth = &opts.auth;
    if !auth.required() {
        return Verdict::Pass(Identity::anonymous());
    }
    let c = p.connect;
    let verdict = |m: Match, id: Identity| match m {
        Match::Yes => Verdict::Pass(id),
        Match::No => Verdict::Refuse,
        Match::Gone => Verdict::Gone,
    };
    // Operator mode: a user JWT or nothing.
    if let Some(trust) = &auth.trust {
        return match user_jwt::check(trust, p) {
            Ok(id) => Verdict::Pass(id),
            Err(why) => {
                tracing::debug!("{why}");
                Verdict::Refuse
            }
        };
    }

    // An NKey, when NKey users are configured and the client sent one; a user name or
    // password beside it is not looked at (as nats-server).
    if let Some(key) = c.nkey.as_deref().filter(|k| !k.is_empty() && auth.users.iter().any(|u| u.nkey.is_some())) {
        let Some(u) = auth.users.iter().find(|u| u.nkey.as_deref() == Some(key)) else { return Verdict::Refuse };
        let (Some(nonce), Some(sig)) = (p.nonce, c.sig.as_deref()) else { return Verdict::Refuse };
        return if nkey::verify(key, nonce, sig) { Verdict::Pass(Identity::of(u, key)) } else { Verdict::Refuse };
    }
    if auth.users.iter().any(|u| u.nkey.is_none()) {
        if opts.tls.as_ref().is_some_and(|t| t.verify_and_map) {
            // The certificate names the user; a `user` in the CONNECT is ignored, a password
            // is still compared with the user's (none configured: none may be sent).
            let Some(names) = p.cert else { return Verdict::Refuse };
            let named = password_users(auth).map(|u| (u.user.as_str(), u));
            let Some(u) = names.map(named, |name| user_named(auth, name)) else {
                tracing::debug!("no user for certificate subject {:?}", names.subject());
                return Verdict::Refuse;
            };
            let m = secret_matches(&u.password, &u.user, c.pass.as_deref().unwrap_or(""), scope, gone).await;
            return verdict(m, Identity::of(u, &u.user));
        }
        if let Some(u) = no_auth_user(auth).filter(|_| presents_nothing(c)) {
            // The client is that user. nats-server 2.9 compares the user's own configured
            // password with itself here, which refuses a no_auth_user whose password is a
            // bcrypt hash (while letting a client that skips CONNECT in as that user):
            // natsu lets both in.
            return Verdict::Pass(Identity::of(u, &u.user));
        }
        if let Some(name) = c.user.as_deref().filter(|n| !n.is_empty()) {
            let Some(u) = user_named(auth, name) else { return Verdict::Refuse };
            let m = secret_matches(&u.password, &u.user, c.pass.as_deref().unwrap_or(""), scope, gone).await;
            return verdict(m, Identity::of(u, &u.user));
        }
    }
    if let Some(token) = &auth.token {
        // The empty user cannot clash with a user's entry: keys also carry the configured
        // secret, and a token's is never a user's.
        let m = secret_matches(token, "", c.auth_token.as_deref().unwrap_or(""), scope, gone).await;
        return verdict(m, Identity::anonymous());
    }
    if let Some(user) = &auth.user {
        if c.user.as_deref() != Some(user.as_str()) {
            return Verdict::Refuse;
        }
        let m = secret_matches(auth.password.as_deref().unwrap_or(""), user, c.pass.as_deref().unwrap_or(""), scope, gone).await;
        return verdict(m, Identity { user: Some(user.clone()), perms: None, account: None, limits: ClientLimits::default() });
    }
    Verdict::Refuse
}

/// Users with a name and password (NKey users have neither).
fn password_users(auth: &Auth) -> impl Iterator<Item = &User> + Clone {
    auth.users.iter().filter(|u| u.nkey.is_none())
}

fn user_named<'a>(auth: &'a Auth, name: &str) -> Option<&'a User> {
    password_users(auth).find(|u| u.user == name)
}

/// The configured `no_auth_user`, when it names a user.
fn no_auth_user(auth: &Auth) -> Option<&User> {
    user_named(auth, auth.no_auth_user.as_deref()?)
}

/// A CONNECT without user, password or token (an NKey was looked at before).
fn presents_nothing(c: &Connect) -> bool {
    [&c.user, &c.pass, &c.auth_token].iter().all(|f| f.as_deref().map_or(true, str::is_empty))
}

/// Who a client that skipped CONNECT is: the `no_auth_user`, as nats-server 2.9 takes a
/// first line other than CONNECT when one is configured (its `telnet` demos); None: such a
/// client is refused.
/// A route's CONNECT credentials against the cluster's `authorization` (the password plain
/// or bcrypt, as for clients).
pub async fn route_credentials_match(user: &str, password: &str, given_user: &str, given_pass: &str) -> bool {
    user == given_user && matches!(secret_matches(password, given_user, given_pass, None, &|| false).await, Match::Yes)
}

pub fn skipped_connect(opts: &Options) -> Option<Identity> {
    no_auth_user(&opts.auth).map(|u| Identity::of(u, &u.user))
}

/// Whether every client's INFO carries a nonce: NKey users are configured, or operator mode
/// (nats-server 2.9 sends one then, to every client).
pub fn nonce_required(auth: &Auth) -> bool {
    auth.trust.is_some() || auth.users.iter().any(|u| u.nkey.is_some())
}

/// INFO's `auth_required` for clients: credentials are required and there is no
/// `no_auth_user` to fall back on (with one, nats-server 2.9 says false to clients while
/// /varz still says true).
pub fn info_auth_required(auth: &Auth) -> bool {
    auth.required() && no_auth_user(auth).is_none()
}

/// Whether the peer of a connection waiting for its check has hung up (FIN or RST), without
/// reading from it: the reader is parked in the check, so it would not notice by itself.
/// A client that closes its sending side mid-handshake is taken as gone, as no NATS client
/// half-closes and still waits for an answer.
pub fn peer_hung_up(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLRDHUP, revents: 0 };
    // SAFETY: `p` is one valid pollfd for the duration of the call; a timeout of 0 never
    // blocks. A closed or reused fd cannot harm: poll only reports on it.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

#[cfg(test)]
mod tests;
