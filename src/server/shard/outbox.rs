//! Cross-core mail: what one core tells another, and the per-peer outbox that batches it.
//!
//! Every core has an [`Outbox`] per other core. Messages published on this core for
//! subscribers on another core are appended to that peer's open [`Batch`] (copied once into
//! one contiguous buffer: for small messages a copy is cheaper than a reference count bounced
//! between two cores' caches). A sender task per peer moves whole batches into glommio's
//! channel mesh, so everything one parse pass produced for a peer crosses in one mail and one
//! wake-up. Control mails (interest changes and their acknowledgements) travel in the same
//! ordered stream, so a peer never sees a message before the interest change that preceded it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use bytes::Bytes;

use crate::server::client::Kind;

/// What crosses from one core to another through the mesh.
#[derive(Debug)]
pub enum Mail {
    /// Messages for subscribers on the receiving core.
    Batch(Batch),
    /// Interest changes on the sending core, in order (up to `INTEREST_PER_MAIL`: a burst of
    /// SUBs crosses in few mails and is acknowledged once per mail), the last of them
    /// numbered `epoch`.
    Interest { changes: Vec<InterestChange>, epoch: u64 },
    /// Tell the routes what the interest mails before this one changed (to core zero).
    FlushRoutes,
    /// The receiving core has applied the sender's interest changes up to `epoch` (and
    /// handled every mail before the `Barrier` of that epoch).
    Ack { epoch: u64 },
    /// Answer with `Ack { epoch }` once every earlier mail from the sender is handled.
    Barrier { epoch: u64 },
    /// Core zero asks for the receiving core's figures (monitoring); answered at once.
    Stats(crate::server::monitor::StatsRequest),
    /// The receiving core's client `cid` published messages that made a consumer on the
    /// sending core fall behind: its reader should wait (for a bounded time) until `Unstall`.
    Stall { cid: u64 },
    Unstall { cid: u64 },
    /// The sending core has delivered this many message bytes of the receiver's batches:
    /// the outbox's bound counts bytes until the peer has handled them, not mails.
    Credit { bytes: usize },
    /// The answer to a probe message (see [`Meta::probe`]): whether the sending core
    /// delivered it to anyone.
    ProbeAck { token: u32, delivered: bool },
    /// The cluster's client URLs and WebSocket URLs changed (from core zero, where routes
    /// live).
    ConnectUrls(Arc<(Vec<String>, Vec<String>)>),
    /// A client moves to the receiving core (see `colocate`): its state and subscriptions,
    /// to be indexed there while its socket stays with the sender.
    MoveIn(Box<super::colocate::MoveIn>),
    /// The receiving core's client `cid` may leave it: its subscriptions on the sending
    /// core are known to every core.
    MoveReady { cid: u64 },
    /// The move of `cid` ends: with its socket and what the sender knows of it, or (None)
    /// called off.
    MoveDone { cid: u64, done: Option<Box<super::colocate::MoveDone>> },
}

/// The sending core's count for (subject, queue) in `account` went 0→1 (`add`) or 1→0;
/// queue members are announced one by one. `flush`: tell the routes now (core zero); false
/// while a closing client's subscriptions go one by one, until `FlushRoutes`.
/// (The subject inline when short: 100,000 SUBs must not cost 100,000 allocations freed on
/// another core.)
#[derive(Debug)]
pub struct InterestChange {
    pub account: u32,
    pub subject: crate::server::sublist::Key,
    pub queue: Option<Box<[u8]>>,
    pub add: bool,
    pub flush: bool,
}

/// At most this many interest changes travel in one mail: the receiving core handles a mail
/// at a time, and its clients wait meanwhile.
pub const INTEREST_PER_MAIL: usize = 64;

impl Mail {
    /// How much handling this mail is worth, for the mailbox's slices: an interest mail
    /// counts its changes, any other mail one.
    pub fn weight(&self) -> u32 {
        match self {
            Mail::Interest { changes, .. } => changes.len() as u32,
            _ => 1,
        }
    }
}

/// A range into a batch's data.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// What travels with a message between cores besides its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The account the message is in on the receiving core (an index into the server's
    /// account table, the same on every core).
    pub account: u32,
    /// The publishing connection's cid (0: none), for cross-core back-pressure.
    pub origin: u64,
    /// The publishing connection's kind: what it may be sent back to.
    pub kind: Kind,
    /// How many times this message has been forwarded between cores (queue re-routing).
    pub hops: u8,
    /// Not 0: a probe. The publishing core knew of no interest anywhere for a request whose
    /// publisher wants no_responders; the receiver delivers it if it has local interest
    /// (which the publishing core may not have learned yet) and answers `ProbeAck`.
    pub probe: u32,
    /// A reply to a service import's generated `_R_` subject whose mapping lives on the
    /// receiving core: it resolves it there (see `shard::imports`).
    pub response: bool,
    /// Never to a route: it came from one, or an import carried it into this account.
    pub local: bool,
    /// The routing core's sequence number of the message (see `Shard::next_seq`): a client
    /// moving between cores gets each message once (see `colocate`).
    pub seq: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    subject: Span,
    /// `len == u32::MAX` marks "no reply".
    reply: Span,
    /// `u32::MAX` marks PUB (no headers).
    header_len: u32,
    msg: Span,
    /// `msg` is the batch's `big[msg.start]`, not a range of its data.
    big: bool,
    /// Queue groups the receiving core must deliver this message to: a range of `queues`.
    queues: (u32, u32),
    meta: Meta,
}

/// Messages bound for one core, in publish order, in one buffer.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    entries: Vec<Entry>,
    queues: Vec<Span>,
    /// Big payloads, by reference (see `client::BIG_PAYLOAD`), and their bytes.
    big: Vec<Bytes>,
    big_bytes: usize,
}

/// One message read back out of a [`Batch`].
#[derive(Debug)]
pub struct BatchMsg<'a> {
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    pub header_len: Option<usize>,
    pub msg: &'a [u8],
    /// `msg` as shared bytes, when it crossed as such.
    pub big: Option<&'a Bytes>,
    queues: &'a [Span],
    data: &'a [u8],
    pub meta: Meta,
}

impl BatchMsg<'_> {
    /// The queue groups this core was chosen to deliver to.
    pub fn queues(&self) -> impl Iterator<Item = &[u8]> {
        self.queues.iter().map(move |s| &self.data[s.start as usize..(s.start + s.len) as usize])
    }
}

impl Batch {
    fn put(&mut self, bytes: &[u8]) -> Span {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        Span { start, len: bytes.len() as u32 }
    }

    /// Append a message with the queue groups the receiver should deliver it to (`big`:
    /// `msg` as shared bytes, taken by reference instead of copied).
    pub fn push<'q>(&mut self, subject: &[u8], reply: Option<&[u8]>, header_len: Option<usize>, msg: &[u8], big: Option<&Bytes>, queues: impl Iterator<Item = &'q [u8]>, meta: Meta) {
        let subject = self.put(subject);
        let reply = match reply {
            Some(r) => self.put(r),
            None => Span { start: 0, len: u32::MAX },
        };
        let shared = big.and_then(|b| super::routing::share(b, msg));
        let is_big = shared.is_some();
        let msg = match shared {
            Some(b) => {
                self.big_bytes += b.len();
                self.big.push(b);
                Span { start: self.big.len() as u32 - 1, len: msg.len() as u32 }
            }
            None => self.put(msg),
        };
        let q0 = self.queues.len() as u32;
        for q in queues {
            let s = self.put(q);
            self.queues.push(s);
        }
        let q1 = self.queues.len() as u32;
        self.entries.push(Entry {
            subject,
            reply,
            header_len: header_len.map_or(u32::MAX, |h| h as u32),
            msg,
            big: is_big,
            queues: (q0, q1),
            meta,
        });
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No messages.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the batch holds (or holds references to).
    pub fn bytes(&self) -> usize {
        self.data.len() + self.big_bytes
    }

    /// The messages in order.
    pub fn iter(&self) -> impl Iterator<Item = BatchMsg<'_>> {
        let d = &self.data[..];
        let at = move |s: Span| &d[s.start as usize..(s.start + s.len) as usize];
        self.entries.iter().map(move |e| BatchMsg {
            subject: at(e.subject),
            reply: (e.reply.len != u32::MAX).then(|| at(e.reply)),
            header_len: (e.header_len != u32::MAX).then_some(e.header_len as usize),
            msg: if e.big { &self.big[e.msg.start as usize][..] } else { at(e.msg) },
            big: e.big.then(|| &self.big[e.msg.start as usize]),
            queues: &self.queues[e.queues.0 as usize..e.queues.1 as usize],
            data: d,
            meta: e.meta,
        })
    }
}

/// Emptied batches on their way back from the core that delivered them to the core that
/// fills them, one pool per direction. Without it every batch is allocated on one core and
/// freed on the other, and the allocator pays for that in page faults and TLB shoot-downs.
#[derive(Debug, Default)]
pub struct BatchPool(Mutex<Vec<Batch>>);

/// Batches a pool keeps; more are freed.
const POOL_MAX: usize = 8;
/// A batch that grew beyond this is freed rather than kept (a burst must not pin memory).
const POOL_BATCH_MAX: usize = 1 << 20;

impl BatchPool {
    /// An empty batch, reusing a returned one if there is one.
    pub fn take(&self) -> Batch {
        self.0.lock().ok().and_then(|mut v| v.pop()).unwrap_or_default()
    }

    /// Hand back a batch the receiver is done with.
    pub fn give(&self, mut b: Batch) {
        if b.data.capacity() > POOL_BATCH_MAX {
            return;
        }
        b.data.clear();
        b.entries.clear();
        b.queues.clear();
        b.big.clear();
        b.big_bytes = 0;
        if let Ok(mut v) = self.0.lock() {
            if v.len() < POOL_MAX {
                v.push(b);
            }
        }
    }
}

/// Above this many bytes waiting for one peer, publishers on this core pause reading (or
/// less: see [`high_water`]).
pub const OUTBOX_HIGH_WATER: usize = 8 * 1024 * 1024;

/// The bound on bytes waiting for one peer under `max_pending`: at most an eighth of it.
/// A consumer that falls behind stalls its publisher only once it is over half its
/// max_pending, and what is already on its way between the cores then still lands on it:
/// with an 8 MiB max_pending and an 8 MiB bound, a consumer reading steadily a little slower
/// than its publisher was pushed over and cut off (1 MiB messages). The smallest bound is
/// one 64 KiB read's worth.
pub fn high_water(max_pending: usize) -> usize {
    (max_pending / 8).clamp(64 * 1024, OUTBOX_HIGH_WATER)
}

/// Queued mails an outbox keeps room for once drained; a bigger queue is given back.
const MAILS_KEEP: usize = 1024;

/// What this core has to send to one peer, drained by that peer's sender task.
#[derive(Default)]
pub struct Outbox {
    /// Where the peer returns the batches it has delivered.
    pool: Arc<BatchPool>,
    /// Sealed mails in order.
    mails: RefCell<VecDeque<Mail>>,
    /// The batch still being filled; sealed when the sender task takes it or a control mail
    /// must follow it.
    open: RefCell<Batch>,
    /// Bytes in `open`, in sealed batches, and in batches handed to the mesh that the peer
    /// has not reported delivered (`Mail::Credit`): the bound is on bytes, whatever the count
    /// of mails in the mesh's channel.
    pending: Cell<usize>,
    /// Bytes of the peer's batches this core has delivered and not yet told the peer.
    credit: Cell<usize>,
    /// The sender task, parked while there is nothing to send.
    sender: Cell<Option<Waker>>,
    /// Publishers parked until `pending` drops below the high-water mark.
    drained: RefCell<Vec<Waker>>,
    /// The bound on `pending` (the high-water mark).
    high_water: usize,
}

impl Outbox {
    /// An outbox whose batches come from (and go back to) `pool`, holding up to
    /// `high_water` bytes for the peer (the peer's outbox to this core has the same bound).
    pub fn new(pool: Arc<BatchPool>, high_water: usize) -> Outbox {
        Outbox { pool, high_water, ..Default::default() }
    }

    /// Credit is returned to the peer in lumps of at least this many bytes (see
    /// `give_credit`): a quarter of the bound, so that the peer is never left waiting for
    /// credit this core holds back.
    fn credit_batch(&self) -> usize {
        self.high_water / 4
    }

    fn wake_sender(&self) {
        if let Some(w) = self.sender.take() {
            w.wake();
        }
    }

    /// Queue a message for the peer.
    pub fn push_msg<'q>(&self, subject: &[u8], reply: Option<&[u8]>, header_len: Option<usize>, msg: &[u8], big: Option<&Bytes>, queues: impl Iterator<Item = &'q [u8]>, meta: Meta) {
        let mut open = self.open.borrow_mut();
        let before = open.bytes();
        open.push(subject, reply, header_len, msg, big, queues, meta);
        self.pending.set(self.pending.get() + open.bytes() - before);
        drop(open);
        self.wake_sender();
    }

    /// Queue a control mail after everything queued so far.
    pub fn push_control(&self, mail: Mail) {
        self.seal();
        self.mails.borrow_mut().push_back(mail);
        self.wake_sender();
    }

    /// An interest change numbered `epoch`: added to the interest mail at the end of the
    /// queue when there is one with room (the order of everything stays as pushed).
    pub fn push_interest(&self, change: InterestChange, epoch: u64) {
        self.seal();
        let mut mails = self.mails.borrow_mut();
        match mails.back_mut() {
            Some(Mail::Interest { changes, epoch: last }) if changes.len() < INTEREST_PER_MAIL => {
                changes.push(change);
                *last = epoch;
            }
            _ => mails.push_back(Mail::Interest { changes: vec![change], epoch }),
        }
        drop(mails);
        self.wake_sender();
    }

    fn seal(&self) {
        let mut open = self.open.borrow_mut();
        if !open.is_empty() {
            let b = std::mem::replace(&mut *open, self.pool.take());
            self.mails.borrow_mut().push_back(Mail::Batch(b));
        }
    }

    /// This core delivered `bytes` of the peer's batches: tell it with the next mail once a
    /// quarter of the bound has gathered. A mail back per batch cost the publishing core a
    /// wake-up per batch (server CPU per message 1.6x under a pub/sub flood). It cannot
    /// deadlock: a peer at the bound has at least three quarters of it not yet handled here,
    /// and handling them crosses the quarter.
    pub fn give_credit(&self, bytes: usize) {
        let credit = self.credit.get() + bytes;
        self.credit.set(credit);
        if credit >= self.credit_batch() {
            self.wake_sender();
        }
    }

    /// The next mail to hand to the mesh, parking the sender task while there is none.
    pub async fn next(&self) -> Mail {
        futures_lite::future::poll_fn(|cx| {
            if self.credit.get() >= self.credit_batch() {
                return Poll::Ready(Mail::Credit { bytes: self.credit.replace(0) });
            }
            self.seal();
            let mut mails = self.mails.borrow_mut();
            match mails.pop_front() {
                Some(m) => Poll::Ready(m),
                None => {
                    // A burst (100,000 SUBs in one write queue as many interest mails while
                    // the peer takes them) must not pin its queue's memory afterwards.
                    if mails.capacity() > MAILS_KEEP {
                        *mails = VecDeque::new();
                    }
                    self.sender.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The peer delivered `bytes` message bytes of this core's batches.
    pub fn credited(&self, bytes: usize) {
        let left = self.pending.get().saturating_sub(bytes);
        self.pending.set(left);
        if left < self.high_water {
            for w in self.drained.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// Wait until the peer has taken enough that this core may publish more to it.
    pub async fn wait_drained(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.pending.get() < self.high_water {
                Poll::Ready(())
            } else {
                self.drained.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Over the high-water mark.
    pub fn is_full(&self) -> bool {
        self.pending.get() >= self.high_water
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_payloads_cross_by_reference() {
        let whole = Bytes::from(b"PUB big 7\r\npayload\r\n".to_vec());
        let payload = &whole[11..18];
        let mut b = Batch::default();
        b.push(b"small", None, None, b"copied", None, std::iter::empty(), Meta::default());
        b.push(b"big", None, None, payload, Some(&whole), std::iter::empty(), Meta::default());
        // A payload that is not inside the bytes given is copied, not trusted.
        b.push(b"other", None, None, b"elsewhere", Some(&whole), std::iter::empty(), Meta::default());
        let v: Vec<_> = b.iter().collect();
        assert_eq!((v[0].msg, v[0].big.is_none()), (&b"copied"[..], true));
        assert_eq!(v[1].msg, b"payload");
        let big = v[1].big.expect("by reference");
        assert_eq!(big.as_ptr(), payload.as_ptr(), "the same memory, not a copy");
        assert_eq!((v[2].msg, v[2].big.is_none()), (&b"elsewhere"[..], true));
        assert_eq!(b.bytes(), "smallcopiedbigotherelsewhere".len() + 7);
        let pool = BatchPool::default();
        pool.give(b);
        let b = pool.take();
        assert_eq!((b.len(), b.bytes()), (0, 0));
    }

    #[test]
    fn batch_round_trip_keeps_order_and_fields() {
        let mut b = Batch::default();
        b.push(b"a.b", None, None, b"one", None, std::iter::empty(), Meta::default());
        b.push(b"c", Some(b"_INBOX.1"), Some(4), b"hdrsbody", None, [&b"q1"[..], b"q2"].into_iter(), Meta { hops: 1, account: 3, ..Meta::default() });
        b.push(b"d", Some(b""), None, b"", None, std::iter::empty(), Meta::default());
        let v: Vec<_> = b.iter().collect();
        assert_eq!(v.len(), 3);
        assert_eq!((v[0].subject, v[0].reply, v[0].header_len, v[0].msg), (&b"a.b"[..], None, None, &b"one"[..]));
        assert_eq!(v[0].queues().count(), 0);
        assert_eq!((v[1].subject, v[1].reply, v[1].header_len), (&b"c"[..], Some(&b"_INBOX.1"[..]), Some(4)));
        assert_eq!(v[1].queues().collect::<Vec<_>>(), vec![&b"q1"[..], b"q2"]);
        assert_eq!((v[1].meta.hops, v[1].meta.account), (1, 3));
        assert_eq!(v[2].reply, Some(&b""[..]));
    }

    #[test]
    fn sealed_batches_come_from_the_pool_and_big_ones_are_not_kept() {
        let pool = Arc::new(BatchPool::default());
        let mut b = Batch::default();
        b.push(b"x", None, None, &[7; 1000], None, std::iter::empty(), Meta::default());
        let cap = b.data.capacity();
        pool.give(b);
        let o = Outbox::new(pool.clone(), OUTBOX_HIGH_WATER);
        o.push_msg(b"y", None, None, b"1", None, std::iter::empty(), Meta::default());
        // Sealing replaces the open batch with the pooled one: empty, capacity kept.
        o.seal();
        assert!(o.open.borrow().is_empty());
        assert_eq!(o.open.borrow().data.capacity(), cap);
        assert!(pool.0.lock().unwrap().is_empty());
        let mut big = Batch::default();
        big.push(b"z", None, None, &vec![0; POOL_BATCH_MAX + 1], None, std::iter::empty(), Meta::default());
        pool.give(big);
        assert!(pool.0.lock().unwrap().is_empty(), "an oversized batch is freed");
        for _ in 0..POOL_MAX + 3 {
            pool.give(Batch::default());
        }
        assert_eq!(pool.0.lock().unwrap().len(), POOL_MAX);
    }

    #[test]
    fn the_bound_counts_bytes_until_the_peer_credits_them() {
        let o = Outbox::new(Arc::default(), OUTBOX_HIGH_WATER);
        let msg = vec![0u8; OUTBOX_HIGH_WATER / 4];
        let ex = glommio::LocalExecutorBuilder::default().io_memory(64 << 10).make().unwrap();
        ex.run(async {
            for _ in 0..4 {
                o.push_msg(b"x", None, None, &msg, None, std::iter::empty(), Meta::default());
                // Handed to the mesh: still counted, however few mails that is.
                assert!(matches!(o.next().await, Mail::Batch(_)));
            }
            assert!(o.is_full(), "four quarter-size batches in the mesh fill the outbox");
            o.credited(msg.len() + 1);
            assert!(!o.is_full(), "a credited batch frees its bytes");
            // Credit owed to the peer goes out in lumps, before anything else.
            o.give_credit(123);
            o.push_msg(b"y", None, None, b"1", None, std::iter::empty(), Meta::default());
            assert!(matches!(o.next().await, Mail::Batch(_)), "under a lump, credit waits");
            o.give_credit(OUTBOX_HIGH_WATER / 4);
            o.push_msg(b"z", None, None, b"1", None, std::iter::empty(), Meta::default());
            assert!(matches!(o.next().await, Mail::Credit { bytes } if bytes == OUTBOX_HIGH_WATER / 4 + 123));
            assert!(matches!(o.next().await, Mail::Batch(_)));
        });
    }

    #[test]
    fn the_bound_is_an_eighth_of_max_pending_within_limits() {
        assert_eq!(high_water(64 << 20), OUTBOX_HIGH_WATER, "the default max_pending");
        assert_eq!(high_water(8 << 20), 1 << 20);
        assert_eq!(high_water(1 << 30), OUTBOX_HIGH_WATER);
        assert_eq!(high_water(4096), 64 * 1024);
        // A small bound still lets credit come back in lumps the peer waits for.
        let o = Outbox::new(Arc::default(), high_water(8 << 20));
        let ex = glommio::LocalExecutorBuilder::default().io_memory(64 << 10).make().unwrap();
        ex.run(async {
            o.push_msg(b"x", None, None, &vec![0u8; 1 << 20], None, std::iter::empty(), Meta::default());
            assert!(o.is_full());
            o.give_credit(1 << 18);
            assert!(matches!(o.next().await, Mail::Credit { bytes } if bytes == 1 << 18), "a quarter of the bound is a lump");
        });
    }

    #[test]
    fn interest_changes_share_mails_in_order() {
        let o = Outbox::new(Arc::default(), OUTBOX_HIGH_WATER);
        let change = |n: usize| InterestChange { account: 0, subject: crate::server::sublist::Key::new(format!("s.{n}").as_bytes()), queue: None, add: true, flush: true };
        for n in 0..INTEREST_PER_MAIL + 1 {
            o.push_interest(change(n), n as u64 + 1);
        }
        // A message, then more interest: it may not join the mails before the message.
        o.push_msg(b"x", None, None, b"1", None, std::iter::empty(), Meta::default());
        o.push_interest(change(1000), 1000);
        o.push_control(Mail::Barrier { epoch: 1001 });
        o.push_interest(change(2000), 1002);
        let mails: Vec<Mail> = o.mails.borrow_mut().drain(..).collect();
        let shape: Vec<String> = mails
            .iter()
            .map(|m| match m {
                Mail::Interest { changes, epoch } => format!("I{}@{epoch}:{}", changes.len(), String::from_utf8_lossy(changes[0].subject.as_slice())),
                Mail::Batch(b) => format!("B{}", b.len()),
                Mail::Barrier { epoch } => format!("barrier@{epoch}"),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(shape, ["I64@64:s.0", "I1@65:s.64", "B1", "I1@1000:s.1000", "barrier@1001", "I1@1002:s.2000"]);
        assert_eq!(mails[0].weight(), 64);
        assert_eq!(mails[2].weight(), 1);
    }

    #[test]
    fn control_mails_follow_the_messages_queued_before_them() {
        let o = Outbox::new(Arc::default(), OUTBOX_HIGH_WATER);
        o.push_msg(b"x", None, None, b"1", None, std::iter::empty(), Meta::default());
        o.push_control(Mail::Ack { epoch: 7 });
        o.push_msg(b"y", None, None, b"2", None, std::iter::empty(), Meta::default());
        let ex = glommio::LocalExecutorBuilder::default().io_memory(64 << 10).make().unwrap();
        ex.run(async {
            assert!(matches!(o.next().await, Mail::Batch(b) if b.len() == 1));
            assert!(matches!(o.next().await, Mail::Ack { epoch: 7 }));
            assert!(matches!(o.next().await, Mail::Batch(b) if b.iter().next().unwrap().subject == b"y"));
        });
    }
}
