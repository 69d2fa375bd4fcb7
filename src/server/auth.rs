//! Authentication (who may connect) and authorization (what they may publish and subscribe).
//!
//! As nats-server: one user and password, or a token, or a list of users each with
//! permissions; passwords and tokens are plain text or bcrypt hashes, told apart by the hash
//! prefix. Permissions are allow and deny lists of subjects with wildcards; deny wins. A
//! wildcard subscription that overlaps a denied subject is allowed, and messages on the
//! denied subjects are then filtered out on delivery (so a queue member on `foo.>` with
//! `foo.secret` denied never gets `foo.secret`; another member does).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::options::{Auth, Options, Permissions, SubjectPermission};
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

/// Compare what the client sent with a configured secret. `user` names whose secret it is,
/// for the verified-credentials memory (see [`Checks`]).
async fn secret_matches(configured: &str, user: &str, given: Option<&str>, scope: Option<&Arc<Options>>, gone: &dyn Fn() -> bool) -> Match {
    let Some(given) = given else { return Match::No };
    if !is_bcrypt(configured) {
        return if constant_time_eq(configured.as_bytes(), given.as_bytes()) { Match::Yes } else { Match::No };
    }
    checks().verify(configured, user, given, scope, gone).await
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
    /// The user's account; None: `$G`.
    pub account: Option<String>,
}

/// What checking a CONNECT came to.
pub enum Verdict {
    Pass(Identity),
    /// Refuse (Authorization Violation).
    Refuse,
    /// The connection went away while its check waited: nobody to answer.
    Gone,
}

/// Whether a secret matched; `Gone` when the check was given up.
enum Match {
    Yes,
    No,
    Gone,
}

/// Check a CONNECT against the configuration. `None`: refuse (Authorization Violation).
/// For re-checks of connected clients (a reload), where nobody waits on the answer.
pub async fn authenticate(auth: &Auth, c: &Connect) -> Option<Identity> {
    match check(auth, c, None, &|| false).await {
        Verdict::Pass(id) => Some(id),
        Verdict::Refuse | Verdict::Gone => None,
    }
}

/// Check a new client's CONNECT under `opts` (the current options; a different `Arc` than
/// last time means a reload, which forgets remembered credentials). `gone` says whether the
/// connection has ended (hung up, timed out): a bcrypt check still queued is then dropped.
pub async fn authenticate_client(opts: &Arc<Options>, c: &Connect, gone: impl Fn() -> bool) -> Verdict {
    check(&opts.auth, c, Some(opts), &gone).await
}

async fn check(auth: &Auth, c: &Connect, scope: Option<&Arc<Options>>, gone: &dyn Fn() -> bool) -> Verdict {
    let verdict = |m: Match, id: Identity| match m {
        Match::Yes => Verdict::Pass(id),
        Match::No => Verdict::Refuse,
        Match::Gone => Verdict::Gone,
    };
    if !auth.users.is_empty() {
        // With users configured, a CONNECT without a known user is always refused.
        let Some(name) = c.user.as_deref() else { return Verdict::Refuse };
        let Some(u) = auth.users.iter().find(|u| u.user == name) else { return Verdict::Refuse };
        let m = secret_matches(&u.password, &u.user, c.pass.as_deref(), scope, gone).await;
        return verdict(m, Identity { user: Some(u.user.clone()), perms: u.permissions.as_ref().map(ClientPerms::new), account: u.account.clone() });
    }
    if let Some(token) = &auth.token {
        // The empty user cannot clash with a user's entry: keys also carry the configured
        // secret, and a token's is never a user's.
        let m = secret_matches(token, "", c.auth_token.as_deref(), scope, gone).await;
        return verdict(m, Identity { user: None, perms: None, account: None });
    }
    if let Some(user) = &auth.user {
        if c.user.as_deref() != Some(user.as_str()) {
            return Verdict::Refuse;
        }
        let pass = auth.password.as_deref().unwrap_or("");
        let m = secret_matches(pass, user, c.pass.as_deref(), scope, gone).await;
        return verdict(m, Identity { user: Some(user.clone()), perms: None, account: None });
    }
    Verdict::Pass(Identity { user: None, perms: None, account: None })
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

/// How often a waiting check looks whether its connection is gone: small next to a bcrypt
/// check (~185 ms at cost 11), so a dropped connection's check rarely starts.
const GONE_POLL: Duration = Duration::from_millis(10);

/// The bcrypt workers' time slice (ns): an executor woken by a client preempts a running
/// check sooner than with the default slice (Linux 6.12+; older kernels ignore it).
const WORKER_SLICE_NS: u64 = 100_000;

/// Linux's `struct sched_attr` (first version, 48 bytes).
#[repr(C)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

/// The CPUs the process may run on: the main thread's (glommio pins only executors).
fn process_cpus() -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; sched_getaffinity writes at most
    // the size given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(libc::getpid(), std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0).then_some(set)
    }
}

/// Set up a worker thread: free to run on every CPU of the process, with a short slice. Its
/// priority stays that of the executors: nice 10 or 19 did not shorten plain clients' round
/// trips during a storm here, and would starve checks while executors are busy.
fn worker_scheduling(cpus: Option<&libc::cpu_set_t>) {
    if let Some(set) = cpus {
        // SAFETY: `set` is a valid cpu_set_t of the size given; pid 0 is this thread.
        if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) } != 0 {
            tracing::debug!("sched_setaffinity for a bcrypt worker: {}", std::io::Error::last_os_error());
        }
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: WORKER_SLICE_NS,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a valid sched_attr of the size it states, read by the kernel during
    // the call; pid 0 is this thread. A failure only leaves the thread as it was.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        tracing::debug!("sched_setattr for a bcrypt worker: {}", std::io::Error::last_os_error());
    }
}

/// How many verified credentials are remembered; the oldest go first. Each entry is ~50
/// bytes; more distinct (user, password) pairs than this reconnecting at once is unusual.
const VERIFIED_MAX: usize = 4096;

/// How long a verified credential is remembered (from its bcrypt check, not refreshed by
/// use): at most one bcrypt per credential per this time, and a password not used for this
/// long leaves no trace (see [`Verified`]).
const VERIFIED_TTL: Duration = Duration::from_secs(600);

/// A keyed hash of (configured secret, user, password given).
type Key = [u8; 32];

/// Verified credentials, remembered so that a reconnect storm costs one bcrypt per
/// credential, not one per connection.
///
/// Only the keyed hash (HMAC-SHA256 under a random per-process key) of (configured hash,
/// user, password) is kept, never the password: someone who can read the entries but not the
/// key learns nothing. Someone who can read the whole process could test password guesses at
/// SHA-256 speed instead of bcrypt's, but only for passwords used in the last
/// [`VERIFIED_TTL`] — and could read those passwords off incoming CONNECTs anyway.
///
/// Failures are not remembered (nats-server remembers nothing): a guesser sends a different
/// password each time, so remembering wrong ones would only spare a misconfigured client's
/// repeats (identical checks at the same moment share one run anyway). Under a flood of
/// wrong passwords the workers stay busy, and remembered successes are what lets known
/// clients in without waiting behind it.
///
/// The configured hash is part of the key, so a changed password misses; a removed user is
/// refused before the cache is asked. The set is still emptied after a reload, as keeping
/// credentials of an older configuration serves no one.
struct Verified {
    /// None when the system could not give random bytes for a key: nothing is remembered.
    key: Option<ring::hmac::Key>,
    set: Mutex<VerifiedSet>,
}

#[derive(Default)]
struct VerifiedSet {
    /// Until when each entry holds.
    until: HashMap<Key, Instant, ahash::RandomState>,
    /// Keys by insertion, which is also expiry order (one TTL for all): the front is both the
    /// oldest and the first to expire.
    order: VecDeque<Key>,
    /// The options the entries were verified under. Weak, so the allocation stays and its
    /// address cannot be reused by a later `Options`: pointer equality is exact.
    scope: Weak<Options>,
}

impl Verified {
    fn new() -> Verified {
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).ok();
        if key.is_none() {
            tracing::warn!("no random key for remembering verified credentials: every bcrypt check runs in full");
        }
        Verified { key, set: Mutex::new(VerifiedSet::default()) }
    }

    /// The key of a credential; None when nothing can be remembered. Fields are length
    /// prefixed, so no two different triples hash the same input.
    fn key(&self, configured: &str, user: &str, given: &str) -> Option<Key> {
        let mut ctx = ring::hmac::Context::with_key(self.key.as_ref()?);
        for field in [configured, user, given] {
            ctx.update(&(field.len() as u64).to_le_bytes());
            ctx.update(field.as_bytes());
        }
        let mut k = [0u8; 32];
        k.copy_from_slice(ctx.sign().as_ref());
        Some(k)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VerifiedSet> {
        // The set is only a shortcut: after a panic elsewhere, whatever it holds is still
        // right (entries are only ever added whole).
        self.set.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` was verified and has not expired. A new `scope` (a reload) empties the
    /// set first; None (a re-check, nothing new) leaves it as it is.
    fn contains(&self, key: &Key, scope: Option<&Arc<Options>>, now: Instant) -> bool {
        let mut set = self.lock();
        if let Some(scope) = scope {
            if !Weak::ptr_eq(&set.scope, &Arc::downgrade(scope)) {
                set.until.clear();
                set.order.clear();
                set.scope = Arc::downgrade(scope);
            }
        }
        set.until.get(key).is_some_and(|&until| now < until)
    }

    /// Remember a key that bcrypt just verified.
    fn insert(&self, key: Key, now: Instant) {
        let mut set = self.lock();
        // Expired entries are all at the front; after this, every entry left is live (and
        // `key`, if present, is live too).
        while let Some(front) = set.order.front().copied() {
            if set.until.get(&front).is_some_and(|&until| now < until) {
                break;
            }
            set.order.pop_front();
            set.until.remove(&front);
        }
        if set.until.contains_key(&key) {
            return;
        }
        if set.order.len() >= VERIFIED_MAX {
            if let Some(oldest) = set.order.pop_front() {
                set.until.remove(&oldest);
            }
        }
        set.until.insert(key, now + VERIFIED_TTL);
        set.order.push_back(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().order.len()
    }
}

/// A bcrypt check waiting for (or running on) a worker.
struct Pending {
    configured: String,
    given: String,
    /// Everyone waiting on this key: identical checks share one bcrypt run. A sender whose
    /// receiver was dropped belongs to a connection that is gone.
    waiters: Vec<oneshot::Sender<bool>>,
}

#[derive(Default)]
struct Queue {
    /// Keys waiting for a worker, first come first served.
    order: VecDeque<Key>,
    /// Checks queued or running, by key.
    pending: HashMap<Key, Pending, ahash::RandomState>,
}

/// The bcrypt checks of the whole process, on worker threads of their own: a check costs
/// ~185 ms of CPU at cost 11 and must hold no executor. One worker per CPU, so checks use
/// every core however the connections are spread over executors (glommio's blocking pool
/// is one thread per executor, and a connection's executor was chosen by accept, not by
/// load). The kernel shares the CPUs between workers and executors (see
/// [`worker_scheduling`]).
struct Checks {
    verified: Verified,
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Checks run, and checks dropped because every connection waiting on them was gone.
    ran: AtomicU64,
    dropped: AtomicU64,
}

/// The process's checks; workers start with the first bcrypt check.
fn checks() -> &'static Arc<Checks> {
    static CHECKS: OnceLock<Arc<Checks>> = OnceLock::new();
    CHECKS.get_or_init(|| {
        let checks = Checks::new();
        // The process's CPUs, not this thread's: the first check comes from an executor,
        // pinned to one CPU, and threads it starts would inherit that.
        let cpus = process_cpus();
        // SAFETY: CPU_COUNT only reads the set.
        let workers = cpus.as_ref().map_or(1, |set| unsafe { libc::CPU_COUNT(set) } as usize).max(1);
        checks.start(workers, cpus);
        checks
    })
}

impl Checks {
    fn new() -> Arc<Checks> {
        Arc::new(Checks {
            verified: Verified::new(),
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            ran: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// Start `workers` threads, free to run on `cpus`; they live as long as the process.
    fn start(self: &Arc<Self>, workers: usize, cpus: Option<libc::cpu_set_t>) {
        for i in 0..workers {
            let c = self.clone();
            let spawned = std::thread::Builder::new().name(format!("natsu-bcrypt-{i}")).spawn(move || {
                worker_scheduling(cpus.as_ref());
                c.work()
            });
            if let Err(e) = spawned {
                // With no worker at all, a check waits until the auth timeout closes its
                // connection: refused rather than hung.
                tracing::error!("could not start bcrypt worker {i}: {e}");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A worker never panics while holding the lock (bcrypt runs outside it).
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Verify `given` against the bcrypt hash `configured`: remembered, shared with an
    /// identical check under way, or queued for a worker. `Gone` once `gone()` says so.
    async fn verify(&self, configured: &str, user: &str, given: &str, scope: Option<&Arc<Options>>, gone: &dyn Fn() -> bool) -> Match {
        let key = self.verified.key(configured, user, given);
        if let Some(k) = &key {
            if self.verified.contains(k, scope, Instant::now()) {
                return Match::Yes;
            }
        }
        // Without a key (no randomness) checks are neither shared nor remembered: a key of
        // zeros would merge different passwords. A counter keeps them apart.
        let key = key.unwrap_or_else(|| {
            static N: AtomicU64 = AtomicU64::new(0);
            let mut k = [0xffu8; 32];
            k[..8].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
            k
        });
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.lock();
            match q.pending.get_mut(&key) {
                Some(p) => p.waiters.push(tx),
                None => {
                    q.pending.insert(key, Pending { configured: configured.to_string(), given: given.to_string(), waiters: vec![tx] });
                    q.order.push_back(key);
                    self.ready.notify_one();
                }
            }
        }
        let watch = async {
            loop {
                glommio::timer::sleep(GONE_POLL).await;
                if gone() {
                    return Match::Gone;
                }
            }
        };
        // Dropping `rx` (gone) is what tells the worker that nobody waits any more.
        let answer = async {
            match rx.await {
                Ok(true) => Match::Yes,
                // Sender dropped: cannot happen while a worker lives; refuse rather than hang.
                Ok(false) | Err(_) => Match::No,
            }
        };
        futures_lite::future::or(answer, watch).await
    }

    /// A worker: take the oldest check, run it unless nobody waits for it, answer everyone.
    fn work(&self) {
        let mut q = self.lock();
        loop {
            let Some(key) = q.order.pop_front() else {
                q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let Some(p) = q.pending.get_mut(&key) else { continue };
            p.waiters.retain(|w| !w.is_canceled());
            if p.waiters.is_empty() {
                q.pending.remove(&key);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("bcrypt check dropped: its connections are gone");
                continue;
            }
            // The password leaves the queue now; the entry stays so that identical checks
            // arriving meanwhile join this run.
            let (configured, given) = (std::mem::take(&mut p.configured), std::mem::take(&mut p.given));
            drop(q);
            let ok = bcrypt::verify(given, &configured).unwrap_or(false);
            self.ran.fetch_add(1, Ordering::Relaxed);
            if ok {
                self.verified.insert(key, Instant::now());
            }
            q = self.lock();
            for w in q.pending.remove(&key).map(|p| p.waiters).unwrap_or_default() {
                let _ = w.send(ok);
            }
        }
    }
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
                User { user: "a".into(), password: "pa".into(), permissions: None, ..Default::default() },
                User { user: "b".into(), password: hash, permissions: None, ..Default::default() },
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

    #[test]
    fn verified_credentials_hit_miss_expire() {
        let v = Verified::new();
        let h = "$2a$04$abcdefghijklmnopqrstuu";
        let now = Instant::now();
        let k = v.key(h, "u", "pw").expect("random key");
        assert_eq!(v.key(h, "u", "pw"), Some(k), "same credential, same key");
        assert!(!v.contains(&k, None, now), "nothing verified yet");
        v.insert(k, now);
        assert!(v.contains(&k, None, now));
        for (configured, user, given) in [(h, "u", "pw2"), (h, "v", "pw"), ("$2a$04$other", "u", "pw"), (h, "upw", ""), (h, "", "upw")] {
            let other = v.key(configured, user, given).expect("random key");
            assert!(!v.contains(&other, None, now), "{configured} {user} {given} must miss");
        }
        assert!(v.contains(&k, None, now + VERIFIED_TTL - Duration::from_secs(1)));
        assert!(!v.contains(&k, None, now + VERIFIED_TTL), "expired");
        // A new verification after expiry counts again.
        v.insert(k, now + VERIFIED_TTL);
        assert!(v.contains(&k, None, now + VERIFIED_TTL));
        assert_eq!(v.len(), 1, "the expired entry went when the new one came");
    }

    #[test]
    fn verified_credentials_are_bounded_oldest_first() {
        let v = Verified::new();
        let now = Instant::now();
        let keys: Vec<Key> = (0..VERIFIED_MAX + 10).map(|i| v.key("$2a$04$x", "u", &i.to_string()).expect("random key")).collect();
        for k in &keys {
            v.insert(*k, now);
        }
        assert_eq!(v.len(), VERIFIED_MAX);
        assert!(keys[..10].iter().all(|k| !v.contains(k, None, now)), "the oldest went");
        assert!(keys[10..].iter().all(|k| v.contains(k, None, now)));
    }

    #[test]
    fn verified_credentials_are_forgotten_on_reload() {
        let v = Verified::new();
        let now = Instant::now();
        let (before, after) = (Arc::new(Options::default()), Arc::new(Options::default()));
        let k = v.key("$2a$04$x", "u", "pw").expect("random key");
        assert!(!v.contains(&k, Some(&before), now));
        v.insert(k, now);
        assert!(v.contains(&k, Some(&before), now));
        assert!(v.contains(&k, None, now), "a re-check does not change the scope");
        assert!(!v.contains(&k, Some(&after), now), "new options: forgotten");
        assert_eq!(v.len(), 0);
    }

    /// Run `f` on a fresh executor (the checks wait with glommio timers).
    fn on_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(f: impl FnOnce() -> F + Send + 'static) -> T {
        glommio::LocalExecutorBuilder::default().io_memory(128 << 10).spawn(f).unwrap().join().unwrap()
    }

    #[test]
    fn checks_share_runs_drop_the_gone_and_remember_successes() {
        let checks = Checks::new();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let c = checks.clone();
        let answers = on_executor(move || async move {
            // No worker yet: a check whose connection is gone gives up, and stays queued
            // (with a waiter that no longer listens).
            let gone = c.verify(&hash, "u", "hung-up", None, &|| true).await;
            assert!(matches!(gone, Match::Gone));
            // Two identical checks and a wrong password queue behind it.
            let one = glommio::spawn_local({
                let (c, hash) = (c.clone(), hash.clone());
                async move { c.verify(&hash, "u", "s3cret", None, &|| false).await }
            });
            let two = glommio::spawn_local({
                let (c, hash) = (c.clone(), hash.clone());
                async move { c.verify(&hash, "u", "s3cret", None, &|| false).await }
            });
            let wrong = glommio::spawn_local({
                let (c, hash) = (c.clone(), hash.clone());
                async move { c.verify(&hash, "u", "nope", None, &|| false).await }
            });
            while c.lock().pending.values().map(|p| p.waiters.len()).sum::<usize>() < 4 {
                futures_lite::future::yield_now().await;
            }
            c.start(1, None);
            let answers = (one.await, two.await, wrong.await);
            // Remembered: answered with no worker run.
            let ran = c.ran.load(Ordering::Relaxed);
            let again = c.verify(&hash, "u", "s3cret", None, &|| true).await;
            assert_eq!(c.ran.load(Ordering::Relaxed), ran);
            (answers, again)
        });
        let ((one, two, wrong), again) = answers;
        assert!(matches!((one, two, wrong, again), (Match::Yes, Match::Yes, Match::No, Match::Yes)));
        // The gone check was the first in line and was dropped; the two identical ones
        // shared one run; the failure was not remembered but ran.
        assert_eq!(checks.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(checks.ran.load(Ordering::Relaxed), 2);
    }
}
