//! Passwords and tokens: plain text or bcrypt hashes, told apart by the hash prefix, as
//! nats-server does. bcrypt checks run on a pool of worker threads of their own, and
//! verified credentials are remembered for a while (see [`Checks`] and [`Verified`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use crate::server::options::Options;


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
/// for the verified-credentials memory (see [`Checks`]). A client that sent none gives the
/// empty string, as nats-server compares it: a user configured without a password (one
/// mapped from a certificate, say) passes with none, and no bcrypt hash matches it.
pub(super) async fn secret_matches(configured: &str, user: &str, given: &str, scope: Option<&Arc<Options>>, gone: &dyn Fn() -> bool) -> Match {
    if !is_bcrypt(configured) {
        return if constant_time_eq(configured.as_bytes(), given.as_bytes()) { Match::Yes } else { Match::No };
    }
    checks().verify(configured, user, given, scope, gone).await
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a secret matched; `Gone` when the check was given up.
pub(super) enum Match {
    Yes,
    No,
    Gone,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_prefix() {
        assert!(is_bcrypt("$2a$11$PWIFAL8RsWyGI3jVZtO9Nu8.6jOxzxfZo7c/W0eLk017hjgUKWrhy"));
        assert!(is_bcrypt("$2b$04$abcdefghijklmnopqrstuv"));
        assert!(!is_bcrypt("$2c$11$x"));
        assert!(!is_bcrypt("plain"));
        assert!(!is_bcrypt("$2a$"));
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
