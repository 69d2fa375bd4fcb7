//! The subscription index: a trie of subject tokens with a per-subject result cache.
//!
//! Each core keeps two of these: one for its local subscriptions (`T` is a subscription
//! handle compared by pointer) and one for the interest other cores have announced (`T` is a
//! core id). Both live on one executor, so there are no locks and results are shared with
//! `Rc`.
//!
//! Matching follows NATS: the publish subject is literal; a pattern token `*` matches exactly
//! one token and a last token `>` matches one or more remaining tokens (`foo.>` matches
//! `foo.bar` and `foo.bar.baz`, not `foo`).
//!
//! Storage: a pattern without a wildcard (most of them) is kept in one hash table by its
//! whole subject; a match looks the publish subject up there. Patterns with a wildcard are
//! kept in a trie: every node holds a level of children (a hash map of literal tokens, plus
//! one slot for a `*` child and one for a `>` child) and the subscriptions whose pattern ends
//! at that node; a match walks it only when it holds anything. Either way the subscribers of
//! one pattern are plain ones in a list and queue ones grouped by queue name.
//!
//! The cache: `match_subject` runs once per published message, and publishers tend to
//! reuse a small set of subjects, so results are cached by publish subject (bounded to
//! [`CACHE_MAX`] entries). A change to a literal pattern drops that one cached subject. A
//! change to a wildcard pattern makes every cached result stale at once (a generation
//! number; a stale entry is walked again when next asked for) instead of scanning the cache
//! for the subjects it matches: 20,000 wildcard SUBs against a warm cache were 20 million
//! pattern compares.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::OnceLock;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::protocol::subject;

/// Most cached match results kept at once: the working set of publish subjects of a
/// typical shard.
pub const CACHE_MAX: usize = 1024;

/// How many entries one eviction drops when the cache is full. Dropping a batch rather than
/// one entry keeps the cost of the (full-table) eviction scan amortised over many inserts.
const CACHE_EVICT: usize = CACHE_MAX / 4;

/// Token separator.
const TSEP: u8 = b'.';

/// The hasher of every table in the index: ahash with keys drawn once per process, so
/// subjects chosen by clients cannot be aimed at one bucket (as with per-table keys), while
/// each trie node's table stores no keys of its own (ahash's `RandomState` is 32 bytes, paid
/// by every node: most nodes are leaves of one subscription).
#[derive(Clone, Copy, Default)]
pub struct TokenHasher;

impl BuildHasher for TokenHasher {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> ahash::AHasher {
        static KEYS: OnceLock<ahash::RandomState> = OnceLock::new();
        KEYS.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

/// What [`Sublist::match_subject`] returns: every subscription whose pattern matches one
/// publish subject.
///
/// An item subscribed through two patterns that both match the subject (say `foo.*` and
/// `foo.>`) appears twice, once per pattern, in `psubs` or in its queue group's members. The
/// index does not dedup because it cannot know whether two entries are the same delivery
/// target (for core ids it matters; for subscriptions with different sids it does not):
/// callers that need one delivery per item dedup themselves.
///
/// ```
/// use natsu::server::sublist::Sublist;
/// let mut sl = Sublist::new();
/// sl.insert(b"foo.*", None, 1u32).unwrap();
/// sl.insert(b"foo.bar", Some(b"workers"), 2u32).unwrap();
/// let r = sl.match_subject(b"foo.bar");
/// assert_eq!(r.psubs, vec![1]);
/// assert_eq!(&r.qsubs[0].0[..], b"workers");
/// assert_eq!(r.qsubs[0].1, vec![2]);
/// ```
#[derive(Debug)]
pub struct SublistResult<T> {
    /// Plain subscribers matching: every one of them gets the message.
    pub psubs: Vec<T>,
    /// Queue groups matching, one entry per distinct queue name (members from different
    /// patterns are merged): one member of each group gets the message.
    pub qsubs: Vec<(Bytes, Vec<T>)>,
}

impl<T> SublistResult<T> {
    /// A result with no subscribers.
    ///
    /// ```
    /// use natsu::server::sublist::SublistResult;
    /// assert!(SublistResult::<u32>::empty().is_empty());
    /// ```
    pub fn empty() -> Self {
        SublistResult {
            psubs: Vec::new(),
            qsubs: Vec::new(),
        }
    }

    /// Whether nobody is interested: no plain subscriber and no queue group.
    ///
    /// ```
    /// use natsu::server::sublist::Sublist;
    /// let mut sl: Sublist<u32> = Sublist::new();
    /// assert!(sl.match_subject(b"foo").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.psubs.is_empty() && self.qsubs.is_empty()
    }
}

impl<T> Default for SublistResult<T> {
    /// Same as [`SublistResult::empty`].
    fn default() -> Self {
        Self::empty()
    }
}

/// Why an insert or remove was refused.
///
/// ```
/// use natsu::server::sublist::{Sublist, SublistError};
/// let mut sl = Sublist::new();
/// assert_eq!(sl.insert(b"foo..bar", None, 1u8), Err(SublistError::InvalidSubject));
/// assert_eq!(sl.remove(b"foo", None, &1u8), Err(SublistError::NotFound));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SublistError {
    /// The subject is not a valid subscription subject, or the queue name is not a valid
    /// queue name.
    InvalidSubject,
    /// No entry with that subject, queue and item is stored.
    NotFound,
}

impl fmt::Display for SublistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SublistError::InvalidSubject => f.write_str("invalid subject"),
            SublistError::NotFound => f.write_str("subscription not found"),
        }
    }
}

impl std::error::Error for SublistError {}

/// The subscribers of one pattern: plain ones, and queue ones grouped by queue name.
struct Subs<T> {
    /// Plain subscribers. A list, not a set, because `T` is only `PartialEq`; removal is a
    /// linear scan over subscribers of this one pattern. Room for one inline: most patterns
    /// have one subscriber, and a table of 100,000 of them should not cost 100,000
    /// allocations more.
    psubs: SmallVec<[T; 1]>,
    /// Queue subscribers, grouped by queue name. Few groups per pattern is the norm, so a
    /// list beats a map; boxed, so that a pattern without any costs one word for them.
    qsubs: Option<Box<QueueGroups<T>>>,
}

type QueueGroups<T> = Vec<(Bytes, Vec<T>)>;

impl<T> Subs<T> {
    fn new() -> Self {
        Subs { psubs: SmallVec::new(), qsubs: None }
    }

    fn is_empty(&self) -> bool {
        self.psubs.is_empty() && self.qsubs.is_none()
    }

    fn groups(&self) -> &[(Bytes, Vec<T>)] {
        self.qsubs.as_deref().map_or(&[], |g| &g[..])
    }

    fn push(&mut self, queue: Option<&[u8]>, item: T) {
        match queue {
            None => self.psubs.push(item),
            Some(q) => {
                let groups = self.qsubs.get_or_insert_with(Default::default);
                match groups.iter_mut().find(|(n, _)| n[..] == *q) {
                    Some((_, members)) => members.push(item),
                    None => groups.push((Bytes::copy_from_slice(q), vec![item])),
                }
            }
        }
    }

    /// How many subscribers of `queue` (plain ones for `None`) satisfy `f`.
    fn count(&self, queue: Option<&[u8]>, f: impl Fn(&T) -> bool) -> usize {
        match queue {
            None => self.psubs.iter().filter(|x| f(x)).count(),
            Some(q) => self.groups().iter().find(|(n, _)| n[..] == *q).map_or(0, |(_, m)| m.iter().filter(|x| f(x)).count()),
        }
    }
}

impl<T: PartialEq> Subs<T> {
    /// Removes one `item` of `queue` (plain for `None`).
    fn remove(&mut self, queue: Option<&[u8]>, item: &T) -> Result<(), SublistError> {
        match queue {
            None => {
                let i = self.psubs.iter().position(|s| s == item).ok_or(SublistError::NotFound)?;
                // Order among subscribers of one pattern carries no meaning.
                self.psubs.swap_remove(i);
                if self.psubs.is_empty() {
                    self.psubs.shrink_to_fit();
                }
            }
            Some(q) => {
                let groups = self.qsubs.as_mut().ok_or(SublistError::NotFound)?;
                let g = groups.iter().position(|(n, _)| n[..] == *q).ok_or(SublistError::NotFound)?;
                let members = &mut groups[g].1;
                let i = members.iter().position(|s| s == item).ok_or(SublistError::NotFound)?;
                members.swap_remove(i);
                if members.is_empty() {
                    groups.swap_remove(g);
                    if groups.is_empty() {
                        self.qsubs = None;
                    }
                }
            }
        }
        Ok(())
    }
}

impl<T: Clone> Subs<T> {
    /// Appends these subscribers to `out`, merging queue groups by name.
    fn collect_into(&self, out: &mut SublistResult<T>) {
        out.psubs.extend_from_slice(&self.psubs);
        for (name, members) in self.groups() {
            match out.qsubs.iter_mut().find(|(n, _)| n == name) {
                Some((_, existing)) => existing.extend_from_slice(members),
                None => out.qsubs.push((name.clone(), members.clone())),
            }
        }
    }

    /// Appends one `(subject, queue, item)` per subscriber to `out`.
    fn entries_into(&self, subject: &[u8], out: &mut Vec<(Bytes, Option<Bytes>, T)>) {
        if self.is_empty() {
            return;
        }
        let subject = Bytes::copy_from_slice(subject);
        for s in &self.psubs {
            out.push((subject.clone(), None, s.clone()));
        }
        for (q, members) in self.groups() {
            for s in members {
                out.push((subject.clone(), Some(q.clone()), s.clone()));
            }
        }
    }
}

/// A subject as a key of the literal table (and in the interest mails between cores): up
/// to [`KEY_INLINE`] bytes in the value itself (no allocation, and a compare without a
/// second cache miss: a SUB or UNSUB flood against a big table is bound by misses), longer
/// ones boxed. Hashes and compares as the bytes it holds, so the table is looked up with a
/// plain `&[u8]`.
pub enum Key {
    Inline { len: u8, bytes: [u8; KEY_INLINE] },
    Boxed(Box<[u8]>),
}

const KEY_INLINE: usize = 22;

impl Key {
    /// The key holding `subject`'s bytes.
    ///
    /// ```
    /// use natsu::server::sublist::Key;
    /// assert_eq!(Key::new(b"orders.eu").as_slice(), b"orders.eu");
    /// ```
    pub fn new(subject: &[u8]) -> Key {
        if subject.len() <= KEY_INLINE {
            let mut bytes = [0; KEY_INLINE];
            bytes[..subject.len()].copy_from_slice(subject);
            Key::Inline { len: subject.len() as u8, bytes }
        } else {
            Key::Boxed(subject.into())
        }
    }

    /// The bytes it holds.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Boxed(b) => b,
        }
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_slice().hash(h)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

/// One trie node (patterns with a wildcard only): the subscribers whose pattern ends here,
/// and the next level.
struct Node<T> {
    /// Children for literal tokens. Keyed by boxed bytes so a lookup borrows the publish
    /// subject's token as `&[u8]` with no allocation.
    literal: Children<T>,
    /// Child for a `*` token; a slot of its own so matching never hashes a wildcard.
    pwc: Option<Box<Node<T>>>,
    /// Child for a `>` token; it never has children itself since `>` is last.
    fwc: Option<Box<Node<T>>>,
    subs: Subs<T>,
}

impl<T> Node<T> {
    fn new() -> Self {
        Node { literal: Children::Few(Vec::new()), pwc: None, fwc: None, subs: Subs::new() }
    }

    /// Nothing stored here or below: the node can be pruned.
    fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.literal.is_empty() && self.pwc.is_none() && self.fwc.is_none()
    }
}

/// Most literal children kept in a list: a short scan of few tokens beats hashing, and a
/// list of one child costs one small allocation where a hash table costs four buckets (most
/// nodes have one child: `orders.<id>.created` makes a chain of them per subscription).
const FEW_CHILDREN: usize = 8;

/// The literal children of a node: a list while few, a hash table beyond.
enum Children<T> {
    Few(Vec<(Box<[u8]>, Node<T>)>),
    Many(HashMap<Box<[u8]>, Node<T>, TokenHasher>),
}

impl<T> Children<T> {
    #[inline]
    fn get(&self, tok: &[u8]) -> Option<&Node<T>> {
        match self {
            Children::Few(v) => v.iter().find(|(k, _)| **k == *tok).map(|(_, n)| n),
            Children::Many(m) => m.get(tok),
        }
    }

    fn get_mut(&mut self, tok: &[u8]) -> Option<&mut Node<T>> {
        match self {
            Children::Few(v) => v.iter_mut().find(|(k, _)| **k == *tok).map(|(_, n)| n),
            Children::Many(m) => m.get_mut(tok),
        }
    }

    #[cfg(test)]
    fn contains_key(&self, tok: &[u8]) -> bool {
        self.get(tok).is_some()
    }

    /// The child for `tok`, made if missing (the key is allocated only then).
    fn get_or_insert(&mut self, tok: &[u8]) -> &mut Node<T> {
        if let Children::Few(v) = self {
            if v.len() >= FEW_CHILDREN && !v.iter().any(|(k, _)| **k == *tok) {
                let mut m = HashMap::with_capacity_and_hasher(FEW_CHILDREN * 2, TokenHasher);
                m.extend(v.drain(..));
                *self = Children::Many(m);
            }
        }
        match self {
            Children::Few(v) => {
                let i = match v.iter().position(|(k, _)| **k == *tok) {
                    Some(i) => i,
                    None => {
                        // Grow one at a time: most lists stay at one or two children.
                        v.reserve_exact(1);
                        v.push((tok.into(), Node::new()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            Children::Many(m) => {
                // Look up before inserting so the common "node exists" case does not
                // allocate a key.
                if !m.contains_key(tok) {
                    m.insert(tok.into(), Node::new());
                }
                m.get_mut(tok).expect("present: found or inserted just above")
            }
        }
    }

    fn remove(&mut self, tok: &[u8]) {
        match self {
            Children::Few(v) => {
                if let Some(i) = v.iter().position(|(k, _)| **k == *tok) {
                    v.swap_remove(i);
                    v.shrink_to_fit();
                }
            }
            Children::Many(m) => {
                m.remove(tok);
                // A level that held many tokens keeps its table after they go; give the
                // memory back once it is mostly empty.
                if m.len() <= FEW_CHILDREN / 2 {
                    let v: Vec<_> = m.drain().collect();
                    *self = Children::Few(v);
                } else if m.capacity() > 64 && m.len() * 4 < m.capacity() {
                    m.shrink_to_fit();
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Children::Few(v) => v.is_empty(),
            Children::Many(m) => m.is_empty(),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &Node<T>)> + '_> {
        match self {
            Children::Few(v) => Box::new(v.iter().map(|(k, n)| (&k[..], n))),
            Children::Many(m) => Box::new(m.iter().map(|(k, n)| (&k[..], n))),
        }
    }
}

/// Splits off the first token of `s`: the token and what follows the separator, or `None`
/// when it is the last token.
#[inline]
fn split_first_token(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr_dot(s) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// Position of the first `.`. Tokens are short, so a plain scan is as fast as a SIMD search
/// and keeps this module free of dependencies beyond ahash and bytes.
#[inline]
fn memchr_dot(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == TSEP)
}

/// Whether `pattern` (a valid subscription subject) matches the literal `subject`, with the
/// same rules as the trie walk: used to find the cached subjects that a changed pattern
/// affects.
pub(crate) fn pattern_matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut pats = subject::tokens(pattern);
    let mut subs = subject::tokens(subject);
    loop {
        match (pats.next(), subs.next()) {
            (None, None) => return true,
            // `>` needs at least one token, which this arm has.
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            _ => return false,
        }
    }
}

/// Whether every subject the pattern `inner` matches is matched by `outer` too (both valid
/// subscription subjects): an export `foo.>` covers an import of `foo.bar.*`, not the other
/// way round.
///
/// ```
/// use natsu::server::sublist::pattern_covers;
/// assert!(pattern_covers(b"foo.>", b"foo.bar.*"));
/// assert!(pattern_covers(b"foo.*", b"foo.bar"));
/// assert!(!pattern_covers(b"foo.*", b"foo.>"));
/// assert!(!pattern_covers(b"foo.bar", b"foo.*"));
/// ```
pub fn pattern_covers(outer: &[u8], inner: &[u8]) -> bool {
    let mut outs = subject::tokens(outer);
    let mut ins = subject::tokens(inner);
    loop {
        match (outs.next(), ins.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(t)) if t != b">" => {}
            (Some(o), Some(i)) if o == i => {}
            _ => return false,
        }
    }
}

/// Whether the pattern has a wildcard token, i.e. can match more than one subject.
fn has_wildcard(pattern: &[u8]) -> bool {
    subject::tokens(pattern).any(|t| t == b"*" || t == b">")
}

/// The subscription index of one executor. See the module docs for the matching rules.
///
/// ```
/// use natsu::server::sublist::Sublist;
/// let mut sl = Sublist::new();
/// sl.insert(b"orders.>", None, "audit").unwrap();
/// sl.insert(b"orders.*.created", Some(b"billing"), "billing-1").unwrap();
/// let r = sl.match_subject(b"orders.eu.created");
/// assert_eq!(r.psubs, vec!["audit"]);
/// assert_eq!(r.qsubs[0].1, vec!["billing-1"]);
/// ```
pub struct Sublist<T> {
    /// Patterns without a wildcard, by their whole subject: such a pattern matches only
    /// itself, so one hash lookup finds it, and one table entry stores it where a trie
    /// spends a node per token (a third of the memory, for the common `orders.<id>.created`).
    literals: HashMap<Key, Subs<T>, TokenHasher>,
    /// Trie of the patterns with a wildcard; the root holds no subscribers itself since a
    /// subject is never empty.
    root: Node<T>,
    /// Entries stored in the trie: none means a match is the one literal lookup.
    wild: usize,
    /// Number of stored entries.
    count: usize,
    /// Match results by publish subject, with the wildcard generation they were walked in
    /// (stale when it is not `generation`). Only subjects that pass
    /// `subject::deliverable_subject` are ever inserted, so a hit needs no validation.
    cache: HashMap<Box<[u8]>, (u64, Rc<SublistResult<T>>), TokenHasher>,
    /// Bumped by every change to a wildcard pattern: all cached results older than it are
    /// stale.
    generation: u64,
    /// Cache hits, for monitoring.
    hits: u64,
    /// Cache misses (trie walks), for monitoring.
    misses: u64,
    /// Shared empty result for undeliverable subjects, so garbage subjects neither allocate
    /// nor push useful entries out of the cache.
    empty: Rc<SublistResult<T>>,
    /// The last subject matched and its result, checked before the cache: a publisher
    /// usually sends runs of one subject, and a compare is cheaper than hashing it. Any
    /// change to the index clears it.
    last_subject: Vec<u8>,
    last: Option<Rc<SublistResult<T>>>,
}

impl<T: Clone + PartialEq> Sublist<T> {
    /// An empty index.
    ///
    /// ```
    /// use natsu::server::sublist::Sublist;
    /// let sl: Sublist<u16> = Sublist::new();
    /// assert_eq!(sl.count(), 0);
    /// ```
    pub fn new() -> Self {
        Sublist {
            literals: HashMap::with_hasher(TokenHasher),
            root: Node::new(),
            wild: 0,
            count: 0,
            cache: HashMap::with_capacity_and_hasher(CACHE_MAX, TokenHasher),
            generation: 0,
            hits: 0,
            misses: 0,
            empty: Rc::new(SublistResult::empty()),
            last_subject: Vec::new(),
            last: None,
        }
    }

    /// Stores `item` under `subject` (a pattern, wildcards allowed), in queue group `queue`
    /// if given. The same `(subject, queue, item)` may be stored more than once; each copy
    /// is matched and must be removed separately.
    ///
    /// Fails with [`SublistError::InvalidSubject`] if `subject` fails
    /// [`subject::valid_subject`] or `queue` fails [`subject::valid_queue`].
    ///
    /// ```
    /// use natsu::server::sublist::Sublist;
    /// let mut sl = Sublist::new();
    /// sl.insert(b"foo.>", Some(b"q"), 7u32).unwrap();
    /// assert!(sl.insert(b"foo.>.bar", None, 7u32).is_err());
    /// assert_eq!(sl.count(), 1);
    /// ```
    pub fn insert(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        item: T,
    ) -> Result<(), SublistError> {
        if !subject::valid_subject(subject) {
            return Err(SublistError::InvalidSubject);
        }
        if let Some(q) = queue {
            if !subject::valid_queue(q) {
                return Err(SublistError::InvalidSubject);
            }
        }
        if has_wildcard(subject) {
            let mut node = &mut self.root;
            for tok in subject::tokens(subject) {
                node = match tok {
                    b"*" => node.pwc.get_or_insert_with(|| Box::new(Node::new())),
                    b">" => node.fwc.get_or_insert_with(|| Box::new(Node::new())),
                    _ => node.literal.get_or_insert(tok),
                };
            }
            node.subs.push(queue, item);
            self.wild += 1;
        } else {
            match self.literals.get_mut(subject) {
                Some(subs) => subs.push(queue, item),
                None => {
                    let mut subs = Subs::new();
                    subs.push(queue, item);
                    self.literals.insert(Key::new(subject), subs);
                }
            }
        }
        self.count += 1;
        self.invalidate(subject);
        Ok(())
    }

    /// Removes one stored entry equal to `(subject, queue, item)` (items compared with
    /// `==`), and prunes the trie nodes left empty. Fails with [`SublistError::NotFound`] if
    /// there is none; an invalid subject is simply never found.
    ///
    /// ```
    /// use natsu::server::sublist::{Sublist, SublistError};
    /// let mut sl = Sublist::new();
    /// sl.insert(b"foo.*", None, 1u32).unwrap();
    /// assert_eq!(sl.remove(b"foo.*", Some(b"q"), &1), Err(SublistError::NotFound));
    /// sl.remove(b"foo.*", None, &1).unwrap();
    /// assert_eq!(sl.count(), 0);
    /// ```
    pub fn remove(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        item: &T,
    ) -> Result<(), SublistError> {
        if subject.is_empty() {
            return Err(SublistError::NotFound);
        }
        if has_wildcard(subject) {
            Self::remove_from(&mut self.root, subject, queue, item)?;
            self.wild -= 1;
        } else {
            // Taken out and put back unless it emptied: one lookup for the usual pattern of
            // one subscriber (an UNSUB flood is bound by these lookups).
            let (key, mut subs) = self.literals.remove_entry(subject).ok_or(SublistError::NotFound)?;
            let removed = subs.remove(queue, item);
            if !subs.is_empty() {
                self.literals.insert(key, subs);
            } else if self.literals.capacity() > 64 && self.literals.len() * 4 < self.literals.capacity() {
                // A table that held many patterns keeps its size after they go; give the
                // memory back once it is mostly empty.
                self.literals.shrink_to_fit();
            }
            removed?;
        }
        self.count -= 1;
        self.invalidate(subject);
        Ok(())
    }

    /// Removes the entry below `node` for the rest of the pattern `rest`, pruning on the
    /// way back up. Recursion depth is the number of tokens, which the protocol's control
    /// line limit keeps small.
    fn remove_from(
        node: &mut Node<T>,
        rest: &[u8],
        queue: Option<&[u8]>,
        item: &T,
    ) -> Result<(), SublistError> {
        let (tok, next) = split_first_token(rest);
        let prune = {
            let child: &mut Node<T> = match tok {
                b"*" => node.pwc.as_deref_mut().ok_or(SublistError::NotFound)?,
                b">" => node.fwc.as_deref_mut().ok_or(SublistError::NotFound)?,
                _ => node.literal.get_mut(tok).ok_or(SublistError::NotFound)?,
            };
            match next {
                Some(next) => Self::remove_from(child, next, queue, item)?,
                None => child.subs.remove(queue, item)?,
            }
            child.is_empty()
        };
        if prune {
            match tok {
                b"*" => node.pwc = None,
                b">" => node.fwc = None,
                _ => {
                    node.literal.remove(tok);
                }
            }
        }
        Ok(())
    }

    /// How many items stored under exactly `(subject, queue)` satisfy `f` (a trie walk of
    /// the pattern's tokens, no matching): used to tell when a core's interest in a pattern
    /// starts and stops without keeping a count beside the index.
    ///
    /// ```
    /// use natsu::server::sublist::Sublist;
    /// let mut sl = Sublist::new();
    /// sl.insert(b"foo.*", None, 1u32).unwrap();
    /// sl.insert(b"foo.*", None, 2u32).unwrap();
    /// sl.insert(b"foo.bar", None, 1u32).unwrap();
    /// assert_eq!(sl.count_at(b"foo.*", None, |&x| x == 1), 1);
    /// assert_eq!(sl.count_at(b"foo.*", None, |_| true), 2);
    /// assert_eq!(sl.count_at(b"foo.*", Some(b"q"), |_| true), 0);
    /// ```
    pub fn count_at(&self, subject: &[u8], queue: Option<&[u8]>, f: impl Fn(&T) -> bool) -> usize {
        if !has_wildcard(subject) {
            return self.literals.get(subject).map_or(0, |subs| subs.count(queue, f));
        }
        let mut node = &self.root;
        for tok in subject::tokens(subject) {
            let next = match tok {
                b"*" => node.pwc.as_deref(),
                b">" => node.fwc.as_deref(),
                _ => node.literal.get(tok),
            };
            match next {
                Some(n) => node = n,
                None => return 0,
            }
        }
        node.subs.count(queue, f)
    }

    /// Drops the cached results that a change to `pattern` makes stale. A literal pattern
    /// matches only itself: one hash lookup. A wildcard one ages the whole cache in O(1)
    /// (see the module docs): finding the subjects it matches would be a scan of the cache
    /// per SUB, and a re-walk of each subject still published costs about one scan step.
    fn invalidate(&mut self, pattern: &[u8]) {
        self.last = None;
        if self.cache.is_empty() {
            return;
        }
        if has_wildcard(pattern) {
            self.generation += 1;
        } else {
            self.cache.remove(pattern);
        }
    }

    /// All subscriptions whose pattern matches the literal publish `subject`.
    ///
    /// A subject that fails [`subject::deliverable_subject`] (empty token, whitespace, ...)
    /// matches nothing. Results are cached per subject and shared: a cache hit costs one
    /// hash lookup and an `Rc` clone, with no allocation. The returned result is a snapshot;
    /// later inserts and removes do not change it. See [`SublistResult`] for duplicates.
    ///
    /// ```
    /// use natsu::server::sublist::Sublist;
    /// let mut sl = Sublist::new();
    /// sl.insert(b"foo.>", None, 1u32).unwrap();
    /// assert_eq!(sl.match_subject(b"foo.bar.baz").psubs, vec![1]);
    /// assert!(sl.match_subject(b"foo").is_empty());
    /// assert!(sl.match_subject(b"foo..bar").is_empty());
    /// ```
    pub fn match_subject(&mut self, subject: &[u8]) -> Rc<SublistResult<T>> {
        if let Some(r) = self.last.as_ref().filter(|_| self.last_subject == subject) {
            self.hits += 1;
            return Rc::clone(r);
        }
        let r = self.lookup(subject);
        if !Rc::ptr_eq(&r, &self.empty) {
            self.last_subject.clear();
            self.last_subject.extend_from_slice(subject);
            self.last = Some(Rc::clone(&r));
        }
        r
    }

    /// [`Sublist::match_subject`] without the last-subject shortcut.
    fn lookup(&mut self, subject: &[u8]) -> Rc<SublistResult<T>> {
        if let Some((_, r)) = self.cache.get(subject).filter(|(g, _)| *g == self.generation) {
            self.hits += 1;
            return Rc::clone(r);
        }
        if !subject::deliverable_subject(subject) {
            return Rc::clone(&self.empty);
        }
        self.misses += 1;
        let mut result = SublistResult::empty();
        if let Some(subs) = self.literals.get(subject) {
            subs.collect_into(&mut result);
        }
        if self.wild > 0 {
            Self::collect(&self.root, subject, &mut result);
        }
        let result = Rc::new(result);
        let generation = self.generation;
        if let Some(e) = self.cache.get_mut(subject) {
            // A stale entry: refreshed in place.
            *e = (generation, Rc::clone(&result));
            return result;
        }
        if self.cache.len() >= CACHE_MAX {
            // Full: drop the stale entries, and if that is not a batch, a batch of entries in
            // table order, which the random hasher makes an arbitrary choice; cheaper than
            // tracking recency on every hit.
            self.cache.retain(|_, (g, _)| *g == generation);
            let mut seen = 0;
            if self.cache.len() > CACHE_MAX - CACHE_EVICT {
                self.cache.retain(|_, _| {
                    seen += 1;
                    seen > CACHE_EVICT
                });
            }
        }
        self.cache.insert(subject.into(), (generation, Rc::clone(&result)));
        result
    }

    /// Walks the trie for the literal subject `rest` below `node`. `rest` has no empty
    /// tokens (checked by the caller).
    fn collect(node: &Node<T>, rest: &[u8], out: &mut SublistResult<T>) {
        let (tok, next) = split_first_token(rest);
        // `>` here covers this token and all after it: at least one, as NATS requires.
        if let Some(fwc) = &node.fwc {
            fwc.subs.collect_into(out);
        }
        if let Some(pwc) = &node.pwc {
            match next {
                Some(next) => Self::collect(pwc, next, out),
                None => pwc.subs.collect_into(out),
            }
        }
        if let Some(lit) = node.literal.get(tok) {
            match next {
                Some(next) => Self::collect(lit, next, out),
                None => lit.subs.collect_into(out),
            }
        }
    }

    /// Number of stored entries (each insert counts once, duplicates included).
    ///
    /// ```
    /// use natsu::server::sublist::Sublist;
    /// let mut sl = Sublist::new();
    /// sl.insert(b"a", None, 1u8).unwrap();
    /// sl.insert(b"a", None, 1u8).unwrap();
    /// assert_eq!(sl.count(), 2);
    /// ```
    pub fn count(&self) -> usize {
        self.count
    }

    /// Cache statistics for monitoring (`/subsz`): `(hits, misses, cached subjects)`.
    /// Undeliverable subjects are answered without the cache and counted in neither.
    ///
    /// ```
    /// use natsu::server::sublist::Sublist;
    /// let mut sl: Sublist<u8> = Sublist::new();
    /// sl.match_subject(b"foo");
    /// sl.match_subject(b"foo");
    /// assert_eq!(sl.cache_stats(), (1, 1, 1));
    /// ```
    pub fn cache_stats(&self) -> (u64, u64, usize) {
        (self.hits, self.misses, self.fresh().count())
    }

    /// The cached results that are not stale.
    fn fresh(&self) -> impl Iterator<Item = &Rc<SublistResult<T>>> {
        self.cache.values().filter(|(g, _)| *g == self.generation).map(|(_, r)| r)
    }

    /// Fan-out of the cached results, as nats-server's `/subsz` figures it: `(largest,
    /// sum)` of subscribers plus queue groups per cached subject. A walk of the cache
    /// (bounded by its size), for monitoring only.
    pub fn fanout(&self) -> (u64, u64) {
        self.fresh().fold((0, 0), |(max, sum), r| {
            let n = (r.psubs.len() + r.qsubs.len()) as u64;
            (max.max(n), sum + n)
        })
    }

    /// Every stored `(subject, queue, item)` entry, in no particular order, for monitoring
    /// (`/subsz?subs=1`). Walks the whole trie and copies every subject: not for the hot path.
    ///
    /// ```
    /// use natsu::server::sublist::Sublist;
    /// let mut sl = Sublist::new();
    /// sl.insert(b"foo.*", Some(b"q"), 3u8).unwrap();
    /// let e = sl.entries();
    /// assert_eq!(&e[0].0[..], b"foo.*");
    /// assert_eq!(e[0].1.as_deref(), Some(&b"q"[..]));
    /// assert_eq!(e[0].2, 3);
    /// ```
    pub fn entries(&self) -> Vec<(Bytes, Option<Bytes>, T)> {
        let mut out = Vec::with_capacity(self.count);
        for (subject, subs) in &self.literals {
            subs.entries_into(subject.as_slice(), &mut out);
        }
        let mut path = Vec::new();
        Self::entries_below(&self.root, &mut path, &mut out);
        out
    }

    /// Appends the entries at and below `node`, whose subject so far is `path`.
    fn entries_below(node: &Node<T>, path: &mut Vec<u8>, out: &mut Vec<(Bytes, Option<Bytes>, T)>) {
        node.subs.entries_into(path, out);
        let children = node
            .literal
            .iter()
            .chain(node.pwc.as_deref().map(|n| (&b"*"[..], n)))
            .chain(node.fwc.as_deref().map(|n| (&b">"[..], n)));
        for (tok, child) in children {
            let len = path.len();
            if len > 0 {
                path.push(TSEP);
            }
            path.extend_from_slice(tok);
            Self::entries_below(child, path, out);
            path.truncate(len);
        }
    }
}

impl<T: Clone + PartialEq> Default for Sublist<T> {
    /// Same as [`Sublist::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Sublist<T> {
    /// Summary only: dumping the trie of a busy server would be useless in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sublist")
            .field("count", &self.count)
            .field("cached", &self.cache.len())
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one pattern's entry in the literal table costs beyond its key: a plain
    /// subscriber inline and a word for queue groups (a table of 100,000 patterns pays
    /// this per bucket).
    #[test]
    fn literal_keys_inline_and_boxed() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        let mut sl: Sublist<u32> = Sublist::new();
        let long = b"a.subject.longer.than.twenty.two.bytes";
        for (i, s) in [&b"x"[..], b"exactly.22.bytes.long!", b"exactly.23.bytes.long!!", long].into_iter().enumerate() {
            sl.insert(s, None, i as u32).unwrap();
            assert_eq!(sl.match_subject(s).psubs, vec![i as u32]);
        }
        assert!(matches!(sl.literals.get_key_value(&b"exactly.22.bytes.long!"[..]), Some((Key::Inline { .. }, _))));
        assert!(matches!(sl.literals.get_key_value(&b"exactly.23.bytes.long!!"[..]), Some((Key::Boxed(_), _))));
        sl.remove(long, None, &3).unwrap();
        assert!(sl.match_subject(long).is_empty());
        assert_eq!(sl.count(), 3);
    }

    #[test]
    fn one_patterns_subscribers_fit_in_four_words() {
        assert!(std::mem::size_of::<Subs<crate::server::shard::Target>>() <= 32);
        assert!(std::mem::size_of::<Subs<u32>>() <= 32);
    }

    #[test]
    fn fanout_over_cached_results() {
        let mut sl: Sublist<u8> = Sublist::new();
        assert_eq!(sl.fanout(), (0, 0));
        sl.insert(b"foo.*", None, 1).unwrap();
        sl.insert(b"foo.bar", None, 2).unwrap();
        sl.insert(b"foo.bar", Some(b"q"), 3).unwrap();
        sl.insert(b"foo.bar", Some(b"q"), 4).unwrap();
        sl.match_subject(b"foo.bar"); // 2 plain + 1 queue group
        sl.match_subject(b"foo.baz"); // 1 plain
        sl.match_subject(b"nothing"); // 0
        assert_eq!(sl.fanout(), (3, 4));
    }

    type S = &'static [u8];
    /// A result in comparable form: sorted plain subscribers, sorted `(queue, members)`.
    type Norm = (Vec<u32>, Vec<(Vec<u8>, Vec<u32>)>);
    /// A live entry of the randomized test: pattern tokens, queue, item.
    type Live = (Vec<&'static str>, Option<&'static str>, u32);

    /// Sorted plain subscribers and sorted queue groups (members sorted), for comparing
    /// results independently of trie order.
    fn norm(r: &SublistResult<u32>) -> Norm {
        let mut p = r.psubs.clone();
        p.sort_unstable();
        let mut q: Vec<(Vec<u8>, Vec<u32>)> = r
            .qsubs
            .iter()
            .map(|(n, m)| {
                let mut m = m.clone();
                m.sort_unstable();
                (n.to_vec(), m)
            })
            .collect();
        q.sort();
        (p, q)
    }

    fn build(subs: &[(S, Option<S>, u32)]) -> Sublist<u32> {
        let mut sl = Sublist::new();
        for &(s, q, id) in subs {
            sl.insert(s, q, id)
                .unwrap_or_else(|e| panic!("insert {:?}: {e}", String::from_utf8_lossy(s)));
        }
        sl
    }

    fn psubs(sl: &mut Sublist<u32>, subject: &[u8]) -> Vec<u32> {
        norm(&sl.match_subject(subject)).0
    }

    #[test]
    fn plain_matching() {
        let subs: &[(S, Option<S>, u32)] = &[
            (b"foo", None, 1),
            (b"foo.bar", None, 2),
            (b"foo.*", None, 3),
            (b"foo.>", None, 4),
            (b"*", None, 5),
            (b">", None, 6),
            (b"*.bar", None, 7),
            (b"foo.*.baz", None, 8),
            (b"foo.bar.baz", None, 9),
            (b"*.*.baz", None, 10),
            (b"foo.*.>", None, 11),
            (b"*.>", None, 12),
            (b"a.b.c.d.e.f", None, 13),
            (b"a.*.c.*.e.>", None, 14),
            (b"a.b.c.d.e.>", None, 15),
            (b"foo*", None, 16),
            (b"*.*", None, 17),
        ];
        // (publish subject, expected plain subscribers)
        let table: &[(S, &[u32])] = &[
            (b"foo", &[1, 5, 6]),
            (b"foo.bar", &[2, 3, 4, 6, 7, 12, 17]),
            (b"foo.baz", &[3, 4, 6, 12, 17]),
            (b"bar.bar", &[6, 7, 12, 17]),
            (b"foo.bar.baz", &[4, 6, 8, 9, 10, 11, 12]),
            (b"foo.x.baz", &[4, 6, 8, 10, 11, 12]),
            (b"x.y.baz", &[6, 10, 12]),
            (b"foo.bar.baz.qux", &[4, 6, 11, 12]),
            (b"foo.bar.qux", &[4, 6, 11, 12]),
            (b"bar", &[5, 6]),
            (b"a.b.c.d.e.f", &[6, 12, 13, 14, 15]),
            (b"a.x.c.y.e.f.g", &[6, 12, 14]),
            (b"a.b.c.d.e", &[6, 12]),
            (b"a.b.c.d.e.f.g.h", &[6, 12, 14, 15]),
            // Wildcard chars inside a token are literal.
            (b"foo*", &[5, 6, 16]),
            (b"foox", &[5, 6]),
            // A published `*` token is matched like any literal token.
            (b"foo.*", &[3, 4, 6, 12, 17]),
            (b"foo.>", &[3, 4, 6, 12, 17]),
            (b"*", &[5, 6]),
        ];
        let mut sl = build(subs);
        for &(subject, want) in table {
            // Twice: the first is a cache miss (trie walk), the second a cache hit.
            for pass in 0..2 {
                assert_eq!(
                    psubs(&mut sl, subject),
                    want,
                    "match {:?} pass {pass}",
                    String::from_utf8_lossy(subject)
                );
            }
        }
    }

    #[test]
    fn full_wildcard_needs_a_token() {
        // (pattern, subject, matches)
        let table: &[(S, S, bool)] = &[
            (b"foo.>", b"foo", false),
            (b"foo.>", b"foo.bar", true),
            (b"foo.>", b"foo.bar.baz", true),
            (b">", b"foo", true),
            (b">", b"foo.bar.baz", true),
            (b"foo.*.>", b"foo.bar", false),
            (b"foo.*.>", b"foo.bar.baz", true),
            (b"foo.bar.>", b"foo.bar", false),
            (b"foo.bar.>", b"foo.baz.qux", false),
            (b"*.>", b"foo", false),
            (b"*", b"foo.bar", false),
            (b"foo.*", b"foo", false),
            (b"foo.*", b"foo.bar.baz", false),
        ];
        for &(pat, subject, want) in table {
            let mut sl = build(&[(pat, None, 1)]);
            let got = !sl.match_subject(subject).is_empty();
            assert_eq!(
                got,
                want,
                "{:?} vs {:?}",
                String::from_utf8_lossy(pat),
                String::from_utf8_lossy(subject)
            );
            assert_eq!(
                pattern_matches(pat, subject),
                want,
                "pattern_matches agrees"
            );
        }
    }

    #[test]
    fn queue_groups() {
        let subs: &[(S, Option<S>, u32)] = &[
            (b"foo.bar", Some(b"q1"), 1),
            (b"foo.bar", Some(b"q1"), 2),
            (b"foo.bar", Some(b"q2"), 3),
            (b"foo.*", Some(b"q1"), 4),
            (b"foo.>", Some(b"q2"), 5),
            (b"foo.>", Some(b"q3"), 6),
            (b"foo.bar", None, 7),
            (b"foo.*", None, 8),
            (b"baz", Some(b"q1"), 9),
        ];
        type Groups = &'static [(S, &'static [u32])];
        // (subject, plain, groups)
        let table: &[(S, &[u32], Groups)] = &[
            (
                b"foo.bar",
                &[7, 8],
                &[(b"q1", &[1, 2, 4]), (b"q2", &[3, 5]), (b"q3", &[6])],
            ),
            (
                b"foo.baz",
                &[8],
                &[(b"q1", &[4]), (b"q2", &[5]), (b"q3", &[6])],
            ),
            (b"foo.bar.x", &[], &[(b"q2", &[5]), (b"q3", &[6])]),
            (b"baz", &[], &[(b"q1", &[9])]),
            (b"nothing", &[], &[]),
        ];
        let mut sl = build(subs);
        for &(subject, want_p, want_q) in table {
            let r = sl.match_subject(subject);
            // One entry per distinct name.
            let mut names: Vec<&[u8]> = r.qsubs.iter().map(|(n, _)| &n[..]).collect();
            names.sort();
            names.dedup();
            assert_eq!(
                names.len(),
                r.qsubs.len(),
                "duplicate group names for {subject:?}"
            );
            let want_q: Vec<(Vec<u8>, Vec<u32>)> = want_q
                .iter()
                .map(|(n, m)| (n.to_vec(), m.to_vec()))
                .collect();
            assert_eq!(
                norm(&r),
                (want_p.to_vec(), want_q),
                "match {:?}",
                String::from_utf8_lossy(subject)
            );
        }
    }

    #[test]
    fn same_item_through_two_patterns_appears_twice() {
        let mut sl = build(&[
            (b"foo.*", None, 1),
            (b"foo.>", None, 1),
            (b"foo.*", Some(b"q"), 2),
            (b"foo.bar", Some(b"q"), 2),
        ]);
        let r = sl.match_subject(b"foo.bar");
        assert_eq!(norm(&r), (vec![1, 1], vec![(b"q".to_vec(), vec![2, 2])]));
    }

    #[test]
    fn duplicates_are_counted_and_removed_one_at_a_time() {
        let mut sl = build(&[(b"foo", None, 1), (b"foo", None, 1)]);
        assert_eq!(sl.count(), 2);
        assert_eq!(psubs(&mut sl, b"foo"), vec![1, 1]);
        sl.remove(b"foo", None, &1).unwrap();
        assert_eq!(psubs(&mut sl, b"foo"), vec![1]);
        sl.remove(b"foo", None, &1).unwrap();
        assert_eq!(psubs(&mut sl, b"foo"), Vec::<u32>::new());
        assert_eq!(sl.remove(b"foo", None, &1), Err(SublistError::NotFound));
        assert_eq!(sl.count(), 0);
    }

    #[test]
    fn removal() {
        let subs: &[(S, Option<S>, u32)] = &[
            (b"foo.bar", None, 1),
            (b"foo.bar", None, 2),
            (b"foo.*", None, 3),
            (b"foo.>", Some(b"q"), 4),
            (b"foo.>", Some(b"q"), 5),
            (b"a.b.c", None, 6),
        ];
        // (remove subject, queue, item, expected result)
        type Row = (S, Option<S>, u32, Result<(), SublistError>);
        let table: &[Row] = &[
            (b"foo.bar", None, 9, Err(SublistError::NotFound)),
            (b"foo.baz", None, 1, Err(SublistError::NotFound)),
            (b"foo.bar", Some(b"q"), 1, Err(SublistError::NotFound)),
            (b"foo.>", None, 4, Err(SublistError::NotFound)),
            (b"foo.>", Some(b"other"), 4, Err(SublistError::NotFound)),
            (b"foo.*", Some(b"q"), 4, Err(SublistError::NotFound)),
            (b"foo", None, 1, Err(SublistError::NotFound)),
            (b"foo.bar.baz", None, 1, Err(SublistError::NotFound)),
            (b"a.b", None, 6, Err(SublistError::NotFound)),
            (b"", None, 1, Err(SublistError::NotFound)),
            (b"foo..bar", None, 1, Err(SublistError::NotFound)),
            (b"foo.bar", None, 1, Ok(())),
            (b"foo.bar", None, 1, Err(SublistError::NotFound)),
            (b"foo.>", Some(b"q"), 4, Ok(())),
            (b"foo.*", None, 3, Ok(())),
            (b"a.b.c", None, 6, Ok(())),
        ];
        let mut sl = build(subs);
        for &(s, q, id, want) in table {
            assert_eq!(
                sl.remove(s, q, &id),
                want,
                "remove {:?} {q:?} {id}",
                String::from_utf8_lossy(s)
            );
        }
        assert_eq!(sl.count(), 2);
        let r = sl.match_subject(b"foo.bar");
        assert_eq!(norm(&r), (vec![2], vec![(b"q".to_vec(), vec![5])]));
        assert!(sl.match_subject(b"a.b.c").is_empty());
        // Literal patterns live in the table, gone once their last subscriber goes; the trie
        // keeps `foo.>` and prunes the empty `*` child.
        assert!(!sl.literals.contains_key(&b"a.b.c"[..]));
        assert!(sl.literals.contains_key(&b"foo.bar"[..]));
        assert!(!sl.root.literal.contains_key(&b"a"[..]));
        let foo = sl
            .root
            .literal
            .get(&b"foo"[..])
            .expect("foo.> still has subscribers");
        assert!(foo.pwc.is_none(), "empty `*` child pruned");
        assert_eq!(sl.wild, 1);
    }

    #[test]
    fn pruning_leaves_an_empty_trie() {
        let subs: &[(S, Option<S>, u32)] = &[
            (b"a", None, 1),
            (b"a.b", None, 2),
            (b"a.b.c.d", Some(b"q"), 3),
            (b"a.*.c", None, 4),
            (b"a.>", None, 5),
            (b"*.*.*", Some(b"q2"), 6),
            (b">", None, 7),
        ];
        let mut sl = build(subs);
        // Remove in an order that leaves interior nodes with and without subscribers.
        for &(s, q, id) in subs.iter().rev() {
            sl.remove(s, q, &id).unwrap();
        }
        assert_eq!(sl.count(), 0);
        assert!(sl.root.is_empty(), "every node pruned");
        assert!(sl.literals.is_empty() && sl.wild == 0);
        assert!(sl.entries().is_empty());
        // And the index still works after being emptied.
        sl.insert(b"a.b", None, 8).unwrap();
        assert_eq!(psubs(&mut sl, b"a.b"), vec![8]);
    }

    #[test]
    fn interior_node_with_subscribers_is_kept() {
        let mut sl = build(&[(b"a", None, 1), (b"a.b", None, 2)]);
        sl.remove(b"a.b", None, &2).unwrap();
        assert_eq!(psubs(&mut sl, b"a"), vec![1]);
        assert!(sl.literals.contains_key(&b"a"[..]), "a kept");
        assert!(!sl.literals.contains_key(&b"a.b"[..]));
        sl.insert(b"a.b", None, 2).unwrap();
        sl.remove(b"a", None, &1).unwrap();
        assert_eq!(psubs(&mut sl, b"a.b"), vec![2]);
        assert!(sl.match_subject(b"a").is_empty());
    }

    #[test]
    fn invalid_inserts_are_rejected() {
        let table: &[(S, Option<S>)] = &[
            (b"", None),
            (b"foo..bar", None),
            (b"foo.>.bar", None),
            (b">.foo", None),
            (b".foo", None),
            (b"foo.", None),
            (b".", None),
            (b"fo o", None),
            (b"foo\t", None),
            (b"foo\r\n", None),
            (b"foo\x00", None),
            (b"foo", Some(b"")),
            (b"foo", Some(b"q q")),
            (b"foo", Some(b"q\n")),
        ];
        let mut sl: Sublist<u32> = Sublist::new();
        for &(s, q) in table {
            assert_eq!(
                sl.insert(s, q, 1),
                Err(SublistError::InvalidSubject),
                "insert {:?} {q:?}",
                String::from_utf8_lossy(s)
            );
        }
        assert_eq!(sl.count(), 0);
        assert!(sl.root.is_empty());
    }

    #[test]
    fn undeliverable_subjects_match_nothing() {
        let mut sl = build(&[
            (b">", None, 1),
            (b"*", None, 2),
            (b"foo.>", None, 3),
            (b"*.*", None, 4),
        ]);
        let table: &[S] = &[
            b"",
            b".",
            b"..",
            b".foo",
            b"foo.",
            b"foo..bar",
            b"foo.bar.",
            b"fo o",
            b"foo\r",
            b"a\x7f",
        ];
        for &subject in table {
            assert!(
                sl.match_subject(subject).is_empty(),
                "{:?}",
                String::from_utf8_lossy(subject)
            );
        }
        // Not cached, and not counted as hits or misses.
        assert_eq!(sl.cache_stats(), (0, 0, 0));
    }

    #[test]
    fn cache_hit_returns_the_same_result() {
        let mut sl = build(&[(b"foo.*", None, 1)]);
        let a = sl.match_subject(b"foo.bar");
        let b = sl.match_subject(b"foo.bar");
        assert!(Rc::ptr_eq(&a, &b), "second lookup is served from the cache");
        assert_eq!(sl.cache_stats(), (1, 1, 1));
        // Empty results are cached too: publishes nobody listens to are common.
        let c = sl.match_subject(b"nobody");
        let d = sl.match_subject(b"nobody");
        assert!(Rc::ptr_eq(&c, &d));
        assert_eq!(sl.cache_stats(), (2, 2, 2));
    }

    #[test]
    fn cache_invalidation() {
        let mut sl = build(&[(b"foo.bar", None, 1), (b"other.x", None, 2)]);
        assert_eq!(psubs(&mut sl, b"foo.bar"), vec![1]);
        assert_eq!(psubs(&mut sl, b"other.x"), vec![2]);
        let other_before = sl.match_subject(b"other.x");

        // A matching wildcard insert is seen by the next match.
        sl.insert(b"foo.*", None, 3).unwrap();
        assert_eq!(psubs(&mut sl, b"foo.bar"), vec![1, 3]);
        sl.insert(b">", Some(b"q"), 4).unwrap();
        let r = sl.match_subject(b"foo.bar");
        assert_eq!(norm(&r), (vec![1, 3], vec![(b"q".to_vec(), vec![4])]));
        sl.remove(b">", Some(b"q"), &4).unwrap();

        // A literal insert keeps the other cached entries (same Rc) and they stay right;
        // so does a refused one.
        let foo_before = sl.match_subject(b"foo.bar");
        let (hits, _, _) = sl.cache_stats();
        sl.insert(b"foo.bar.baz", None, 6).unwrap();
        sl.insert(b"foo.>.", None, 7).unwrap_err();
        let foo_after = sl.match_subject(b"foo.bar");
        assert!(Rc::ptr_eq(&foo_before, &foo_after), "unrelated insert kept the entry");
        assert_eq!(sl.cache_stats().0, hits + 1);
        assert_eq!(norm(&foo_after).0, vec![1, 3]);

        // A wildcard insert ages every cached entry at once (no scan): each is walked again
        // when next asked for, with the same answer where the pattern does not match.
        let (_, misses, cached) = sl.cache_stats();
        sl.insert(b"bar.*", None, 5).unwrap();
        assert_eq!(sl.cache_stats().2, 0, "every entry is stale");
        let foo_after = sl.match_subject(b"foo.bar");
        assert!(!Rc::ptr_eq(&foo_before, &foo_after));
        assert_eq!(norm(&foo_after).0, vec![1, 3]);
        assert_eq!(sl.cache_stats().1, misses + 1);
        assert!(sl.cache_stats().2 <= cached);

        // A literal insert invalidates exactly its own subject.
        sl.insert(b"other.x", None, 8).unwrap();
        let other_after = sl.match_subject(b"other.x");
        assert!(!Rc::ptr_eq(&other_before, &other_after));
        assert_eq!(norm(&other_after).0, vec![2, 8]);
        assert!(Rc::ptr_eq(&foo_after, &sl.match_subject(b"foo.bar")));

        // Removal is seen by the next match.
        sl.remove(b"foo.*", None, &3).unwrap();
        assert_eq!(psubs(&mut sl, b"foo.bar"), vec![1]);
        sl.remove(b"foo.bar", None, &1).unwrap();
        assert!(sl.match_subject(b"foo.bar").is_empty());

        // A failed remove changes nothing, cached or not.
        let o = sl.match_subject(b"other.x");
        assert_eq!(sl.remove(b"other.*", None, &2), Err(SublistError::NotFound));
        assert!(Rc::ptr_eq(&o, &sl.match_subject(b"other.x")));

        // A result handed out earlier is a snapshot and does not change.
        assert_eq!(norm(&foo_before).0, vec![1, 3]);
    }

    #[test]
    fn repeated_subject_sees_every_change() {
        // The last-subject shortcut must be dropped by any insert or remove.
        let mut sl = Sublist::new();
        sl.insert(b"a.b", None, 1u32).unwrap();
        assert_eq!(sl.match_subject(b"a.b").psubs, vec![1]);
        assert_eq!(sl.match_subject(b"a.b").psubs, vec![1]);
        sl.insert(b"a.*", None, 2).unwrap();
        assert_eq!(sl.match_subject(b"a.b").psubs.len(), 2);
        sl.remove(b"a.b", None, &1).unwrap();
        assert_eq!(sl.match_subject(b"a.b").psubs, vec![2]);
        // Another subject in between, then back.
        assert!(sl.match_subject(b"c").is_empty());
        sl.remove(b"a.*", None, &2).unwrap();
        assert!(sl.match_subject(b"a.b").is_empty());
        assert!(sl.match_subject(b"a.b").is_empty());
    }

    #[test]
    fn cached_empty_result_sees_later_insert() {
        let mut sl: Sublist<u32> = Sublist::new();
        assert!(sl.match_subject(b"a.b.c").is_empty());
        sl.insert(b"a.>", None, 1).unwrap();
        assert_eq!(psubs(&mut sl, b"a.b.c"), vec![1]);
        sl.insert(b"a.b.c", Some(b"q"), 2).unwrap();
        assert_eq!(
            norm(&sl.match_subject(b"a.b.c")).1,
            vec![(b"q".to_vec(), vec![2])]
        );
    }

    #[test]
    fn cache_is_bounded() {
        let mut sl = build(&[(b"load.*", None, 1)]);
        for i in 0..10_000u32 {
            let subject = format!("load.{i}");
            let r = sl.match_subject(subject.as_bytes());
            assert_eq!(r.psubs, vec![1]);
            assert!(
                sl.cache_stats().2 <= CACHE_MAX,
                "cache grew past its bound at {i}"
            );
        }
        let (hits, misses, len) = sl.cache_stats();
        assert_eq!((hits, misses), (0, 10_000));
        assert!(
            len > CACHE_MAX / 2,
            "eviction keeps most of the cache, kept {len}"
        );
        // Evicted or not, every subject still matches correctly.
        for i in (0..10_000u32).step_by(97) {
            assert_eq!(psubs(&mut sl, format!("load.{i}").as_bytes()), vec![1]);
        }
        // And invalidation still works on a cache that has been through eviction.
        sl.insert(b"load.>", None, 2).unwrap();
        for i in (0..10_000u32).step_by(89) {
            assert_eq!(psubs(&mut sl, format!("load.{i}").as_bytes()), vec![1, 2]);
        }
    }

    #[test]
    fn entries_round_trip() {
        let subs: &[(S, Option<S>, u32)] = &[
            (b"foo", None, 1),
            (b"foo", None, 1),
            (b"foo.bar", None, 2),
            (b"foo.*", Some(b"q"), 3),
            (b"foo.*", Some(b"q"), 4),
            (b"foo.*", Some(b"r"), 5),
            (b"foo.>", None, 6),
            (b">", Some(b"q"), 7),
            (b"*", None, 8),
            (b"*.*.x.>", None, 9),
            (b"a.b.c.d.e", None, 10),
        ];
        let sl = build(subs);
        let mut want: Vec<(Vec<u8>, Option<Vec<u8>>, u32)> = subs
            .iter()
            .map(|&(s, q, id)| (s.to_vec(), q.map(|q| q.to_vec()), id))
            .collect();
        want.sort();
        let mut got: Vec<(Vec<u8>, Option<Vec<u8>>, u32)> = sl
            .entries()
            .into_iter()
            .map(|(s, q, id)| (s.to_vec(), q.map(|q| q.to_vec()), id))
            .collect();
        got.sort();
        assert_eq!(got, want);
        // Re-inserting the entries gives an index that matches the same way.
        let mut copy: Sublist<u32> = Sublist::new();
        for (s, q, id) in sl.entries() {
            copy.insert(&s, q.as_deref(), id).unwrap();
        }
        let mut sl = sl;
        for subject in [&b"foo"[..], b"foo.bar", b"foo.x.x.y", b"z", b"q.r.x.s"] {
            assert_eq!(
                norm(&sl.match_subject(subject)),
                norm(&copy.match_subject(subject))
            );
        }
    }

    #[test]
    fn works_with_pointer_compared_handles() {
        // The local index stores Rc handles compared by pointer; check the generic code does
        // not depend on Copy or on value equality.
        #[derive(Debug)]
        struct Sub(#[allow(dead_code)] u32);
        #[derive(Clone, Debug)]
        struct Handle(Rc<Sub>);
        impl PartialEq for Handle {
            fn eq(&self, other: &Self) -> bool {
                Rc::ptr_eq(&self.0, &other.0)
            }
        }
        let a = Handle(Rc::new(Sub(1)));
        let b = Handle(Rc::new(Sub(1)));
        let mut sl = Sublist::new();
        sl.insert(b"foo", None, a.clone()).unwrap();
        sl.insert(b"foo", None, b.clone()).unwrap();
        sl.remove(b"foo", None, &b).unwrap();
        let r = sl.match_subject(b"foo");
        assert_eq!(r.psubs.len(), 1);
        assert!(
            Rc::ptr_eq(&r.psubs[0].0, &a.0),
            "removed b, kept a, though equal by value"
        );
    }

    /// Tiny xorshift PRNG so the randomized test is reproducible without a rand crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Independent reference matcher over token lists.
    fn brute_matches(pattern: &[&str], subject: &[&str]) -> bool {
        for (i, p) in pattern.iter().enumerate() {
            if *p == ">" {
                return subject.len() > i;
            }
            match subject.get(i) {
                None => return false,
                Some(s) if *p == "*" || p == s => {}
                Some(_) => return false,
            }
        }
        pattern.len() == subject.len()
    }

    fn random_subject(rng: &mut XorShift, wildcards: bool) -> Vec<&'static str> {
        const WORDS: &[&str] = &["a", "b", "c", "foo", "bar"];
        let len = 1 + rng.below(5);
        let mut toks = Vec::with_capacity(len);
        for i in 0..len {
            let r = rng.below(10);
            let tok = if wildcards && r == 0 && i == len - 1 {
                ">"
            } else if wildcards && r <= 2 {
                "*"
            } else {
                WORDS[rng.below(WORDS.len())]
            };
            toks.push(tok);
        }
        toks
    }

    /// What the brute-force matcher expects for `subject` given `live` entries.
    fn brute(live: &[Live], subject: &[&str]) -> Norm {
        let mut p = Vec::new();
        let mut q: Vec<(Vec<u8>, Vec<u32>)> = Vec::new();
        for (pat, queue, id) in live {
            if !brute_matches(pat, subject) {
                continue;
            }
            match queue {
                None => p.push(*id),
                Some(name) => match q.iter_mut().find(|(n, _)| n == name.as_bytes()) {
                    Some((_, m)) => m.push(*id),
                    None => q.push((name.as_bytes().to_vec(), vec![*id])),
                },
            }
        }
        p.sort_unstable();
        for (_, m) in q.iter_mut() {
            m.sort_unstable();
        }
        q.sort();
        (p, q)
    }

    #[test]
    fn randomized_against_brute_force() {
        const QUEUES: &[Option<&str>] = &[None, None, None, Some("q1"), Some("q2")];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut sl: Sublist<u32> = Sublist::new();
        let mut live: Vec<Live> = Vec::new();
        let mut next_id = 0u32;
        for step in 0..4000 {
            match rng.below(10) {
                // Insert (more often than remove so the index grows).
                0..=4 => {
                    let pat = random_subject(&mut rng, true);
                    let queue = QUEUES[rng.below(QUEUES.len())];
                    // Sometimes reuse an id so one item sits under several patterns.
                    let id = if next_id > 0 && rng.below(4) == 0 {
                        rng.below(next_id as usize) as u32
                    } else {
                        next_id += 1;
                        next_id
                    };
                    let s = pat.join(".");
                    sl.insert(s.as_bytes(), queue.map(str::as_bytes), id)
                        .unwrap();
                    live.push((pat, queue, id));
                }
                // Remove a live entry.
                5..=6 if !live.is_empty() => {
                    let i = rng.below(live.len());
                    let (pat, queue, id) = live.swap_remove(i);
                    let s = pat.join(".");
                    sl.remove(s.as_bytes(), queue.map(str::as_bytes), &id)
                        .unwrap();
                }
                // Match, and compare with brute force.
                _ => {
                    let subject = random_subject(&mut rng, false);
                    let s = subject.join(".");
                    let got = norm(&sl.match_subject(s.as_bytes()));
                    assert_eq!(got, brute(&live, &subject), "step {step} subject {s}");
                }
            }
            assert_eq!(sl.count(), live.len());
        }
        // A final sweep over every subject shape, through the cache and after clearing it.
        let mut all = Vec::new();
        for _ in 0..500 {
            all.push(random_subject(&mut rng, false));
        }
        for subject in &all {
            let s = subject.join(".");
            assert_eq!(
                norm(&sl.match_subject(s.as_bytes())),
                brute(&live, subject),
                "sweep {s}"
            );
        }
        let mut fresh: Sublist<u32> = Sublist::new();
        for (pat, queue, id) in &live {
            fresh
                .insert(pat.join(".").as_bytes(), queue.map(str::as_bytes), *id)
                .unwrap();
        }
        for subject in &all {
            let s = subject.join(".");
            assert_eq!(
                norm(&fresh.match_subject(s.as_bytes())),
                brute(&live, subject),
                "fresh {s}"
            );
        }
        // Drain everything: the trie must prune back to an empty root.
        while let Some((pat, queue, id)) = live.pop() {
            sl.remove(pat.join(".").as_bytes(), queue.map(str::as_bytes), &id)
                .unwrap();
        }
        assert_eq!(sl.count(), 0);
        assert!(sl.root.is_empty() && sl.literals.is_empty() && sl.wild == 0);
    }
}
