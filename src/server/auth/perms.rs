//! Authorization: what a user may publish and subscribe to.
//!
//! As nats-server: allow and deny lists of subjects with wildcards; deny wins. A wildcard
//! subscription that overlaps a denied subject is allowed, and messages on the denied
//! subjects are then filtered out on delivery (so a queue member on `foo.>` with
//! `foo.secret` denied never gets `foo.secret`; another member does).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::protocol::subject;
use crate::server::options::{Permissions, ResponsePermission, SubjectPermission};

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
    /// The subject pattern as written.
    fn text(&self) -> String {
        let toks: Vec<&str> = self.0.iter().map(|t| std::str::from_utf8(t).unwrap_or("")).collect();
        toks.join(".")
    }

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

/// Reply subjects added since the last prune that make the next one come early, and the
/// longest time between prunes (nats-server's figures).
const REPLIES_PRUNE_EVERY: u32 = 4096;
const REPLIES_PRUNE_AFTER: Duration = Duration::from_secs(1);

/// Response permissions at work: the reply subjects of messages delivered to the
/// connection that its publish rules do not allow, each with when it came and how many
/// times it was answered.
#[derive(Clone)]
struct Replies {
    perm: ResponsePermission,
    open: RefCell<HashMap<Box<[u8]>, (Instant, u64), ahash::RandomState>>,
    added: Cell<u32>,
    pruned: Cell<Instant>,
}

impl Replies {
    fn spent(&self, (at, n): (Instant, u64), now: Instant) -> bool {
        self.perm.max.is_some_and(|m| n >= m) || self.perm.expires.is_some_and(|t| now.duration_since(at) > t)
    }

    /// One more answer to `subj`, if it is an open reply subject with answers left.
    fn answer(&self, subj: &[u8]) -> bool {
        let mut open = self.open.borrow_mut();
        let Some(e) = open.get_mut(subj) else { return false };
        let ok = !self.spent(*e, Instant::now());
        e.1 += 1;
        if !ok || self.spent(*e, Instant::now()) {
            open.remove(subj);
        }
        ok
    }

    fn add(&self, reply: &[u8]) {
        let now = Instant::now();
        self.open.borrow_mut().insert(reply.into(), (now, 0));
        self.added.set(self.added.get() + 1);
        if self.added.get() > REPLIES_PRUNE_EVERY || now.duration_since(self.pruned.get()) > REPLIES_PRUNE_AFTER {
            self.open.borrow_mut().retain(|_, e| !self.spent(*e, now));
            self.added.set(0);
            self.pruned.set(now);
        }
    }
}

/// One connection's permissions.
pub struct ClientPerms {
    publish: Option<Rules>,
    subscribe: Option<Rules>,
    /// Set once a wildcard subscription overlaps a denied subject: messages on denied
    /// subjects are then not delivered to this connection.
    filter_denied: std::cell::Cell<bool>,
    pub_cache: RefCell<HashMap<Box<[u8]>, bool, ahash::RandomState>>,
    responses: Option<Replies>,
}

impl Clone for ClientPerms {
    /// The same rules and open replies, and a fresh cache.
    fn clone(&self) -> ClientPerms {
        ClientPerms {
            publish: self.publish.clone(),
            subscribe: self.subscribe.clone(),
            filter_denied: self.filter_denied.clone(),
            pub_cache: RefCell::new(HashMap::default()),
            responses: self.responses.clone(),
        }
    }
}

impl ClientPerms {
    pub fn new(p: &Permissions) -> ClientPerms {
        let mut publish = p.publish.as_ref().map(Rules::new);
        if p.responses.is_some() {
            // nats-server's rule: with response permissions, no allow list allows nothing.
            let rules = publish.get_or_insert(Rules { allow: None, deny: Vec::new() });
            rules.allow.get_or_insert_with(Vec::new);
        }
        ClientPerms {
            publish,
            subscribe: p.subscribe.as_ref().map(Rules::new),
            filter_denied: std::cell::Cell::new(false),
            pub_cache: RefCell::new(HashMap::default()),
            responses: p.responses.map(|perm| Replies { perm, open: RefCell::default(), added: Cell::new(0), pruned: Cell::new(Instant::now()) }),
        }
    }

    /// May this connection publish to `subj`? With response permissions, a reply subject
    /// of a message it received counts once more as answered.
    pub fn can_publish(&self, subj: &[u8]) -> bool {
        let Some(rules) = &self.publish else { return true };
        let cached = self.pub_cache.borrow().get(subj).copied();
        let ok = cached.unwrap_or_else(|| {
            let ok = rules.allows(subj);
            let mut cache = self.pub_cache.borrow_mut();
            if cache.len() >= PUB_CACHE_MAX {
                cache.clear();
            }
            cache.insert(subj.into(), ok);
            ok
        });
        ok || self.responses.as_ref().is_some_and(|r| r.answer(subj))
    }

    /// A message with reply subject `reply` is delivered to this connection: with response
    /// permissions, it may publish there (unless its rules allow that anyway).
    pub fn note_reply(&self, reply: &[u8]) {
        let (Some(r), Some(rules)) = (&self.responses, &self.publish) else { return };
        if !rules.allows(reply) {
            r.add(reply);
        }
    }

    /// Whether this connection has response permissions.
    pub fn tracks_replies(&self) -> bool {
        self.responses.is_some()
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
    /// These permissions as nats-server 2.10 shows them to their user (`$SYS.REQ.USER.INFO`):
    /// `publish` and `subscribe` with their `allow`/`deny` lists (empty lists left out),
    /// `responses` with `max` and `ttl` (nanoseconds; -1: no limit) when set.
    pub fn public(&self) -> serde_json::Value {
        let list = |l: &[Pattern]| l.iter().map(Pattern::text).collect::<Vec<_>>();
        let side = |r: &Option<Rules>| {
            let mut o = serde_json::Map::new();
            if let Some(r) = r {
                if let Some(a) = r.allow.as_ref().filter(|a| !a.is_empty()) {
                    o.insert("allow".into(), list(a).into());
                }
                if !r.deny.is_empty() {
                    o.insert("deny".into(), list(&r.deny).into());
                }
            }
            serde_json::Value::Object(o)
        };
        let mut out = serde_json::json!({"publish": side(&self.publish), "subscribe": side(&self.subscribe)});
        if let Some(r) = &self.responses {
            let max = r.perm.max.map_or(-1, |m| m as i64);
            let ttl = r.perm.expires.map_or(-1, |t| t.as_nanos() as i64);
            out["responses"] = serde_json::json!({"max": max, "ttl": ttl});
        }
        out
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
        ClientPerms::new(&Permissions { publish: sp(pub_allow, pub_deny), subscribe: sp(sub_allow, sub_deny), responses: None })
    }

    #[test]
    fn response_permissions_open_each_reply_subject_for_max_answers_within_expiry() {
        let with = |publish: Option<SubjectPermission>, max, expires| {
            ClientPerms::new(&Permissions { publish, subscribe: None, responses: Some(ResponsePermission { max, expires }) })
        };
        // No publish rules: nothing but replies.
        let p = with(None, Some(2), None);
        assert!(!p.can_publish(b"anything"));
        p.note_reply(b"_INBOX.a");
        assert!(!p.can_publish(b"_INBOX.b"), "only the reply subject delivered");
        assert!(p.can_publish(b"_INBOX.a") && p.can_publish(b"_INBOX.a"), "two answers");
        assert!(!p.can_publish(b"_INBOX.a"), "not a third");
        p.note_reply(b"_INBOX.a");
        assert!(p.can_publish(b"_INBOX.a"), "a new request opens it again");
        // A deny list alone still allows nothing else; an allow list keeps what it allows,
        // and a reply it allows is not counted.
        let p = with(Some(SubjectPermission { allow: vec![], deny: vec!["x".into()] }), Some(1), None);
        assert!(!p.can_publish(b"y"));
        let p = with(Some(SubjectPermission { allow: vec!["ok.>".into()], deny: vec![] }), Some(1), None);
        p.note_reply(b"ok.reply");
        assert!(p.can_publish(b"ok.reply") && p.can_publish(b"ok.reply") && p.can_publish(b"ok.other"));
        // Expired.
        let p = with(None, None, Some(Duration::from_millis(20)));
        p.note_reply(b"r");
        assert!(p.can_publish(b"r") && p.can_publish(b"r"), "unlimited answers");
        std::thread::sleep(Duration::from_millis(40));
        assert!(!p.can_publish(b"r"), "after its expiry");
        // A moved connection keeps its open replies.
        let p = with(None, Some(1), None);
        p.note_reply(b"r");
        assert!(p.clone().can_publish(b"r"));
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
