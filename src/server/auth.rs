//! Authentication (who may connect) and authorization (what they may publish and subscribe).
//!
//! As nats-server: one user and password, or a token, or a list of users each with
//! permissions; passwords and tokens are plain text or bcrypt hashes, told apart by the hash
//! prefix. Permissions are allow and deny lists of subjects with wildcards; deny wins. A
//! wildcard subscription that overlaps a denied subject is allowed, and messages on the
//! denied subjects are then filtered out on delivery (so a queue member on `foo.>` with
//! `foo.secret` denied never gets `foo.secret`; another member does).

use std::cell::RefCell;
use std::collections::HashMap;

use super::options::{Auth, Permissions, SubjectPermission};
use crate::protocol::info::Connect;
use crate::protocol::subject;

/// Whether a configured secret is a bcrypt hash (`$2a$11$…`, also `$2b$`, `$2x$`, `$2y$`).
pub fn is_bcrypt(secret: &str) -> bool {
    let b = secret.as_bytes();
    b.len() > 7
        && b.starts_with(b"$2")
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
}

/// Compare what the client sent with a configured secret. A bcrypt check costs a good part of
/// a second at cost 11, so it runs on glommio's blocking thread, not on the executor.
async fn secret_matches(configured: &str, given: Option<&str>) -> bool {
    let Some(given) = given else { return false };
    if is_bcrypt(configured) {
        let (hash, given) = (configured.to_string(), given.to_string());
        return glommio::executor().spawn_blocking(move || bcrypt::verify(given, &hash).unwrap_or(false)).await;
    }
    constant_time_eq(configured.as_bytes(), given.as_bytes())
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who a client turned out to be.
pub struct Identity {
    /// The user name, for /connz's `authorized_user` and the logs.
    pub user: Option<String>,
    pub perms: Option<ClientPerms>,
}

/// Check a CONNECT against the configuration. `None`: refuse (Authorization Violation).
pub async fn authenticate(auth: &Auth, c: &Connect) -> Option<Identity> {
    if !auth.users.is_empty() {
        // With users configured, a CONNECT without a known user is always refused.
        let name = c.user.as_deref()?;
        let u = auth.users.iter().find(|u| u.user == name)?;
        if !secret_matches(&u.password, c.pass.as_deref()).await {
            return None;
        }
        return Some(Identity { user: Some(u.user.clone()), perms: u.permissions.as_ref().map(ClientPerms::new) });
    }
    if let Some(token) = &auth.token {
        return secret_matches(token, c.auth_token.as_deref()).await.then_some(Identity { user: None, perms: None });
    }
    if let Some(user) = &auth.user {
        if c.user.as_deref() != Some(user.as_str()) {
            return None;
        }
        let pass = auth.password.as_deref().unwrap_or("");
        return secret_matches(pass, c.pass.as_deref()).await.then_some(Identity { user: Some(user.clone()), perms: None });
    }
    Some(Identity { user: None, perms: None })
}

/// A subject pattern split into tokens.
#[derive(Clone, Debug)]
struct Pattern(Vec<Box<[u8]>>);

impl Pattern {
    fn new(s: &str) -> Pattern {
        Pattern(subject::tokens(s.as_bytes()).map(Into::into).collect())
    }

    /// Whether the pattern covers `subj`, whose tokens are taken literally: a subscription's
    /// own `*` or `>` is matched only by a pattern wildcard or the same literal token, so
    /// `foo.*` is allowed by `foo.*` or `foo.>` but not by `foo.bar`.
    fn matches(&self, subj: &[u8]) -> bool {
        let mut toks = subject::tokens(subj);
        for (i, p) in self.0.iter().enumerate() {
            match &p[..] {
                b">" => return toks.next().is_some() && i == self.0.len() - 1,
                // A `*` covers one token, never a subscription's `>` (which spans many).
                b"*" => {
                    if matches!(toks.next(), None | Some(b">")) {
                        return false;
                    }
                }
                lit => {
                    if toks.next() != Some(lit) {
                        return false;
                    }
                }
            }
        }
        toks.next().is_none()
    }

    /// Whether some subject matched by `wide` (a subscription with wildcards) is also matched
    /// by this pattern: then a wildcard subscription reaches into a denied subject.
    fn overlaps(&self, wide: &[u8]) -> bool {
        let w: Vec<&[u8]> = subject::tokens(wide).collect();
        fn go(p: &[Box<[u8]>], w: &[&[u8]]) -> bool {
            match (p.first().map(|t| &t[..]), w.first().copied()) {
                (None, None) => true,
                (Some(b">"), Some(_)) | (Some(_), Some(b">")) => true,
                (Some(a), Some(b)) if a == b"*" || b == b"*" || a == b => go(&p[1..], &w[1..]),
                _ => false,
            }
        }
        go(&self.0, &w)
    }
}

/// One direction's rules, compiled.
#[derive(Clone, Debug)]
struct Rules {
    /// None: everything is allowed unless denied.
    allow: Option<Vec<Pattern>>,
    deny: Vec<Pattern>,
}

impl Rules {
    fn new(p: &SubjectPermission) -> Rules {
        Rules {
            allow: (!p.allow.is_empty()).then(|| p.allow.iter().map(|s| Pattern::new(s)).collect()),
            deny: p.deny.iter().map(|s| Pattern::new(s)).collect(),
        }
    }

    fn allows(&self, subj: &[u8]) -> bool {
        self.allow.as_ref().map_or(true, |a| a.iter().any(|p| p.matches(subj))) && !self.deny.iter().any(|p| p.matches(subj))
    }
}

/// Publish results remembered per connection; cleared when full, as a client rarely uses
/// more distinct subjects than this.
const PUB_CACHE_MAX: usize = 256;

/// One connection's permissions.
pub struct ClientPerms {
    publish: Option<Rules>,
    subscribe: Option<Rules>,
    /// Set once a wildcard subscription overlaps a denied subject: messages on denied
    /// subjects are then not delivered to this connection.
    filter_denied: std::cell::Cell<bool>,
    pub_cache: RefCell<HashMap<Box<[u8]>, bool, ahash::RandomState>>,
}

impl ClientPerms {
    pub fn new(p: &Permissions) -> ClientPerms {
        ClientPerms {
            publish: p.publish.as_ref().map(Rules::new),
            subscribe: p.subscribe.as_ref().map(Rules::new),
            filter_denied: std::cell::Cell::new(false),
            pub_cache: RefCell::new(HashMap::default()),
        }
    }

    /// May this connection publish to `subj`?
    pub fn can_publish(&self, subj: &[u8]) -> bool {
        let Some(rules) = &self.publish else { return true };
        if let Some(&ok) = self.pub_cache.borrow().get(subj) {
            return ok;
        }
        let ok = rules.allows(subj);
        let mut cache = self.pub_cache.borrow_mut();
        if cache.len() >= PUB_CACHE_MAX {
            cache.clear();
        }
        cache.insert(subj.into(), ok);
        ok
    }

    /// May this connection subscribe to `subj`? Also arms the delivery filter when a
    /// wildcard subscription reaches into a denied subject.
    pub fn can_subscribe(&self, subj: &[u8]) -> bool {
        let Some(rules) = &self.subscribe else { return true };
        if !rules.allows(subj) {
            return false;
        }
        let wild = subject::tokens(subj).any(|t| t == b"*" || t == b">");
        if wild && rules.deny.iter().any(|d| d.overlaps(subj)) {
            self.filter_denied.set(true);
        }
        true
    }

    /// Whether a message on `subj` must not be delivered to this connection.
    #[inline]
    pub fn denies_delivery(&self, subj: &[u8]) -> bool {
        self.filter_denied.get() && self.subscribe.as_ref().is_some_and(|r| r.deny.iter().any(|p| p.matches(subj)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::options::User;

    fn perms(pub_allow: &[&str], pub_deny: &[&str], sub_allow: &[&str], sub_deny: &[&str]) -> ClientPerms {
        let sp = |a: &[&str], d: &[&str]| {
            (!a.is_empty() || !d.is_empty()).then(|| SubjectPermission {
                allow: a.iter().map(|s| s.to_string()).collect(),
                deny: d.iter().map(|s| s.to_string()).collect(),
            })
        };
        ClientPerms::new(&Permissions { publish: sp(pub_allow, pub_deny), subscribe: sp(sub_allow, sub_deny) })
    }

    #[test]
    fn pattern_matching_takes_subscription_wildcards_literally() {
        let cases = [
            ("foo", "foo", true),
            ("foo", "bar", false),
            ("foo.*", "foo.bar", true),
            ("foo.*", "foo.bar.baz", false),
            ("foo.>", "foo.bar.baz", true),
            ("foo.>", "foo", false),
            (">", "anything.at.all", true),
            ("foo.*", "foo.*", true),
            ("foo.>", "foo.*", true),
            ("foo.bar", "foo.*", false),
            ("foo.*", "foo.>", false),
            ("*.bar", "x.bar", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(Pattern::new(p).matches(s.as_bytes()), want, "{p} vs {s}");
        }
    }

    #[test]
    fn overlap_of_deny_and_wildcard_subscriptions() {
        let cases = [
            ("foo.secret", "foo.>", true),
            ("foo.secret", "foo.*", true),
            ("foo.secret", "bar.>", false),
            ("foo.*.x", "foo.>", true),
            ("foo.>", "*.bar", true),
            ("a.b", "a.b.c", false),
        ];
        for (p, w, want) in cases {
            assert_eq!(Pattern::new(p).overlaps(w.as_bytes()), want, "{p} vs {w}");
        }
    }

    #[test]
    fn allow_deny_and_deny_wins() {
        let p = perms(&["foo.>", "bar"], &["foo.secret"], &["foo.>"], &["foo.secret"]);
        assert!(p.can_publish(b"foo.x"));
        assert!(p.can_publish(b"bar"));
        assert!(!p.can_publish(b"baz"));
        assert!(!p.can_publish(b"foo.secret"));
        assert!(!p.can_publish(b"foo.secret"), "cached answer is the same");
        assert!(p.can_subscribe(b"foo.public"));
        assert!(!p.can_subscribe(b"foo.secret"));
        assert!(!p.can_subscribe(b"bar"));
        assert!(!p.denies_delivery(b"foo.secret"), "no filter before a wildcard subscription");
        assert!(p.can_subscribe(b"foo.>"));
        assert!(p.denies_delivery(b"foo.secret"));
        assert!(!p.denies_delivery(b"foo.other"));
        // Deny alone allows the rest.
        let p = perms(&[], &["x"], &[], &[]);
        assert!(p.can_publish(b"y") && !p.can_publish(b"x") && p.can_subscribe(b"x"));
    }

    #[test]
    fn bcrypt_prefix() {
        assert!(is_bcrypt("$2a$11$PWIFAL8RsWyGI3jVZtO9Nu8.6jOxzxfZo7c/W0eLk017hjgUKWrhy"));
        assert!(is_bcrypt("$2b$04$abcdefghijklmnopqrstuv"));
        assert!(!is_bcrypt("$2c$11$x"));
        assert!(!is_bcrypt("plain"));
        assert!(!is_bcrypt("$2a$"));
    }

    fn connect(user: Option<&str>, pass: Option<&str>, token: Option<&str>) -> Connect {
        Connect { user: user.map(Into::into), pass: pass.map(Into::into), auth_token: token.map(Into::into), ..Connect::default() }
    }

    #[test]
    fn credentials() {
        let run = |auth: &Auth, c: Connect| {
            glommio::LocalExecutorBuilder::default()
                .io_memory(128 << 10)
                .spawn({
                    let auth = auth.clone();
                    move || async move { authenticate(&auth, &c).await.map(|i| i.user) }
                })
                .unwrap()
                .join()
                .unwrap()
        };
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let single = Auth { user: Some("u".into()), password: Some(hash.clone()), ..Auth::default() };
        assert_eq!(run(&single, connect(Some("u"), Some("s3cret"), None)), Some(Some("u".into())));
        assert_eq!(run(&single, connect(Some("u"), Some("wrong"), None)), None);
        assert_eq!(run(&single, connect(None, None, None)), None);
        let token = Auth { token: Some("tok".into()), ..Auth::default() };
        assert!(run(&token, connect(None, None, Some("tok"))).is_some());
        assert!(run(&token, connect(None, None, Some("tok2"))).is_none());
        let users = Auth {
            users: vec![
                User { user: "a".into(), password: "pa".into(), permissions: None },
                User { user: "b".into(), password: hash, permissions: None },
            ],
            ..Auth::default()
        };
        assert_eq!(run(&users, connect(Some("a"), Some("pa"), None)), Some(Some("a".into())));
        assert_eq!(run(&users, connect(Some("b"), Some("s3cret"), None)), Some(Some("b".into())));
        assert_eq!(run(&users, connect(Some("b"), Some("pa"), None)), None);
        assert_eq!(run(&users, connect(Some("c"), Some("pa"), None)), None);
        assert_eq!(run(&users, connect(None, None, Some("pa"))), None);
        assert!(run(&Auth::default(), connect(None, None, None)).is_some());
    }
}
