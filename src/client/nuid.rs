//! Unique ids for inbox subjects, in the shape of nats.go's NUID.
//!
//! An id is 22 base62 characters: a 12-character random prefix and a 10-character
//! sequence. The sequence starts at a random value and advances by a random step, so ids
//! are cheap (no syscall per id) and still hard to guess; the prefix comes from the kernel
//! and is drawn again whenever the sequence runs out. Generators are per thread, matching
//! the shared-nothing executors: no locks, no atomics on the request path.

use std::cell::RefCell;

/// The nats.go alphabet, digits first, so ids sort the same way theirs do.
const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BASE: u64 = 62;
const PREFIX_LEN: usize = 12;
const SEQ_LEN: usize = 10;
/// 62^10: the first sequence value that no longer fits in ten characters.
const MAX_SEQ: u64 = 839_299_365_868_340_224;
/// Bounds of the step between ids (`MIN_INC..MAX_INC`). A random step stops an observer
/// of one id from predicting the next by adding one.
const MIN_INC: u64 = 33;
const MAX_INC: u64 = 333;

/// Total length of an id.
const ID_LEN: usize = PREFIX_LEN + SEQ_LEN;

/// A generator of unique ids. Not `Clone`: two copies would hand out the same ids.
///
/// ```
/// use natsu::client::nuid::Nuid;
///
/// let mut nuid = Nuid::new();
/// let (a, b) = (nuid.next(), nuid.next());
/// assert_eq!(a.len(), 22);
/// assert_ne!(a, b);
/// assert_eq!(a[..12], b[..12]); // same prefix, different sequence
/// ```
#[derive(Debug)]
pub struct Nuid {
    /// Random base62 characters shared by every id until the sequence wraps.
    prefix: [u8; PREFIX_LEN],
    /// The current sequence value, always below `MAX_SEQ`.
    seq: u64,
    /// This generator's step, fixed until the prefix is redrawn.
    inc: u64,
}

impl Nuid {
    /// A generator with a fresh random prefix, start and step.
    ///
    /// ```
    /// use natsu::client::nuid::Nuid;
    ///
    /// let (mut a, mut b) = (Nuid::new(), Nuid::new());
    /// assert_ne!(a.next()[..12], b.next()[..12]);
    /// ```
    pub fn new() -> Nuid {
        let mut nuid = Nuid { prefix: [b'0'; PREFIX_LEN], seq: 0, inc: MIN_INC };
        nuid.randomize_prefix();
        nuid.reset_sequence();
        nuid
    }

    /// The next id: 22 characters from `[0-9A-Za-z]`.
    ///
    /// ```
    /// use natsu::client::nuid::Nuid;
    ///
    /// let id = Nuid::new().next();
    /// assert!(id.len() == 22 && id.bytes().all(|b| b.is_ascii_alphanumeric()));
    /// ```
    // An id generator is not an iterator (it never ends, and callers want a String, not an
    // Option), but `next` is the name nats.go users know.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> String {
        self.seq += self.inc;
        if self.seq >= MAX_SEQ {
            self.randomize_prefix();
            self.reset_sequence();
        }
        let mut id = [0u8; ID_LEN];
        id[..PREFIX_LEN].copy_from_slice(&self.prefix);
        let mut n = self.seq;
        for slot in id[PREFIX_LEN..].iter_mut().rev() {
            *slot = DIGITS[(n % BASE) as usize];
            n /= BASE;
        }
        id.iter().map(|&b| char::from(b)).collect()
    }

    /// Draw a new prefix from the kernel. 128 random bits cover 12 base62 characters
    /// (about 71.5 bits) with a modulo bias far below anything observable.
    fn randomize_prefix(&mut self) {
        let mut bits = (u128::from(random_u64()) << 64) | u128::from(random_u64());
        for slot in self.prefix.iter_mut() {
            *slot = DIGITS[(bits % u128::from(BASE)) as usize];
            bits /= u128::from(BASE);
        }
    }

    /// Pick a new random start and step for the sequence.
    fn reset_sequence(&mut self) {
        self.seq = random_u64() % MAX_SEQ;
        self.inc = MIN_INC + random_u64() % (MAX_INC - MIN_INC);
    }
}

impl Default for Nuid {
    /// Same as [`Nuid::new`].
    ///
    /// ```
    /// use natsu::client::nuid::Nuid;
    ///
    /// assert_eq!(Nuid::default().next().len(), 22);
    /// ```
    fn default() -> Nuid {
        Nuid::new()
    }
}

thread_local! {
    /// One generator per executor thread, so ids need no synchronisation.
    static THREAD_NUID: RefCell<Nuid> = RefCell::new(Nuid::new());
}

/// The next id from this thread's generator (each executor thread has its own).
///
/// ```
/// let inbox = format!("_INBOX.{}", natsu::client::nuid::next());
/// assert_eq!(inbox.len(), 7 + 22);
/// ```
pub fn next() -> String {
    THREAD_NUID.with(|nuid| nuid.borrow_mut().next())
}

/// 64 random bits from the kernel.
///
/// If the kernel cannot supply them (a seccomp filter, a pre-3.17 kernel) this mixes the
/// clock, a stack address, the thread and a counter instead: weaker, but ids stay unique
/// within the process and a client never panics for want of entropy.
///
/// ```
/// use natsu::client::nuid::random_u64;
///
/// assert_ne!(random_u64(), random_u64());
/// ```
pub fn random_u64() -> u64 {
    kernel_random().unwrap_or_else(fallback_random)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn kernel_random() -> Option<u64> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        let want = buf.len() - filled;
        // SAFETY: the pointer and length describe the unfilled tail of `buf`, which lives
        // for the whole call; getrandom writes at most `want` bytes there.
        let got = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), want, 0) };
        if got < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        if got == 0 {
            return None;
        }
        // got is in 1..=want here, so the cast cannot wrap.
        filled += got as usize;
    }
    Some(u64::from_ne_bytes(buf))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn kernel_random() -> Option<u64> {
    None
}

/// Entropy that needs no syscall that can fail: time, addresses, thread, and a counter so
/// two calls in the same nanosecond still differ. Each input goes through splitmix64 so
/// the low-entropy parts spread across all bits.
fn fallback_random() -> u64 {
    use std::cell::Cell;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static COUNTER: Cell<u64> = const { Cell::new(0) };
    }
    let count = COUNTER.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    let nanos =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let stack = &count as *const u64 as u64;
    let code = fallback_random as *const () as usize as u64;
    // DefaultHasher::new uses fixed keys, so this only folds the thread id into 64 bits.
    let mut hasher = DefaultHasher::new();
    std::thread::current().id().hash(&mut hasher);
    let thread = hasher.finish();

    let mut x = splitmix64(nanos);
    for input in [stack, code, thread, u64::from(std::process::id()), count] {
        x = splitmix64(x ^ input);
    }
    x
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn assert_well_formed(id: &str) {
        assert_eq!(id.len(), ID_LEN, "{id}");
        assert!(id.bytes().all(|b| DIGITS.contains(&b)), "{id}");
    }

    #[test]
    fn max_seq_is_62_pow_10() {
        assert_eq!(BASE.pow(SEQ_LEN as u32), MAX_SEQ);
    }

    #[test]
    fn length_and_alphabet() {
        let mut nuid = Nuid::new();
        for _ in 0..1000 {
            assert_well_formed(&nuid.next());
        }
        assert_well_formed(&next());
    }

    #[test]
    fn hundred_thousand_unique() {
        let mut nuid = Nuid::new();
        let ids: HashSet<String> = (0..100_000).map(|_| nuid.next()).collect();
        assert_eq!(ids.len(), 100_000);
    }

    #[test]
    fn thread_local_ids_unique() {
        let ids: HashSet<String> = (0..10_000).map(|_| next()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn generators_have_different_prefixes() {
        let a = Nuid::new().next();
        let b = Nuid::new().next();
        assert_ne!(a[..PREFIX_LEN], b[..PREFIX_LEN]);
    }

    #[test]
    fn threads_have_different_prefixes() {
        let here = next();
        let there = std::thread::spawn(next).join().expect("thread panicked");
        assert_ne!(here[..PREFIX_LEN], there[..PREFIX_LEN]);
    }

    #[test]
    fn sequence_encoding_and_step() {
        let mut nuid = Nuid::new();
        nuid.prefix = *b"ABCDEFGHIJKL";
        nuid.seq = 0;
        nuid.inc = 61;
        assert_eq!(nuid.next(), "ABCDEFGHIJKL000000000z");
        assert_eq!(nuid.next(), "ABCDEFGHIJKL000000001y");
        assert!((MIN_INC..MAX_INC).contains(&Nuid::new().inc));
    }

    #[test]
    fn prefix_redrawn_when_sequence_wraps() {
        let mut nuid = Nuid::new();
        nuid.prefix = *b"ABCDEFGHIJKL";
        nuid.seq = MAX_SEQ - 1;
        nuid.inc = 1;
        let id = nuid.next();
        assert_well_formed(&id);
        assert_ne!(&id[..PREFIX_LEN], "ABCDEFGHIJKL");
        assert!(nuid.seq < MAX_SEQ);
        // Just below the limit the sequence prints as ten 'z's and the prefix stays.
        nuid.prefix = *b"ABCDEFGHIJKL";
        nuid.seq = MAX_SEQ - 2;
        nuid.inc = 1;
        assert_eq!(nuid.next(), "ABCDEFGHIJKLzzzzzzzzzz");
    }

    #[test]
    fn fallback_differs_between_calls() {
        let draws: HashSet<u64> = (0..1000).map(|_| fallback_random()).collect();
        assert_eq!(draws.len(), 1000);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn kernel_random_works_here() {
        assert!(kernel_random().is_some());
    }
}
