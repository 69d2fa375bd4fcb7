//! Authorization: what a user may publish and subscribe to.
//!
//! As nats-server: allow and deny lists of subjects with wildcards; deny wins. A wildcard
//! subscription that overlaps a denied subject is allowed, and messages on the denied
//! subjects are then filtered out on delivery (so a queue member on `foo.>` with
//! `foo.secret` denied never gets `foo.secret`; another member does).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::protocol::subject;
use crate::server::options::{Permissions, SubjectPermission};

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

impl Clone for ClientPerms {
    /// The same rules, and a fresh cache.
    fn clone(&self) -> ClientPerms {
        ClientPerms {
            publish: self.publish.clone(),
            subscribe: self.subscribe.clone(),
            filter_denied: self.filter_denied.clone(),
            pub_cache: RefCell::new(HashMap::default()),
        }
    }
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
}
