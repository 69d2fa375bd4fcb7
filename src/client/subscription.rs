//! Subscriptions: where delivered messages wait, and the three ways they are consumed
//! (a handler task, `next_msg`, or a channel).
//!
//! The connection's reader never waits for a consumer: a message that would take a
//! subscription past its pending limits (or find its channel full) is dropped, counted,
//! and reported once through the error callback as a slow consumer, as nats.go does.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::future::poll_fn;
use glommio::channels::local_channel::LocalSender;

use super::conn::{park, with_deadline};
use super::error::{Error, Result};
use super::msg::Msg;
use super::Connection;

/// Where a subscription's messages go.
pub(crate) enum Sink {
    /// Queued for a handler task or for `next_msg`.
    Queue,
    /// Straight into the user's channel.
    Chan(LocalSender<Msg>),
    /// Responses to requests, handed to the waiting request by token.
    Mux,
    /// A handler run by the reader itself on a borrowed view of the read buffer.
    Inline(RefCell<Box<dyn FnMut(&MsgRef<'_>)>>),
}

/// A delivered message borrowed from the connection's read buffer: what an inline handler
/// ([`Connection::subscribe_inline`]) sees. Nothing is copied or allocated for it.
#[derive(Debug)]
pub struct MsgRef<'a> {
    pub subject: &'a str,
    pub reply: Option<&'a str>,
    /// The raw header block (`NATS/1.0…`), when the message has one.
    pub headers: Option<&'a [u8]>,
    pub data: &'a [u8],
    /// Which socket read on its connection this message came in with (a count of reads):
    /// messages with the same number arrived together, so a handler that timestamps
    /// arrivals can read the clock once per read.
    pub read: u64,
}

/// A subscription's state, shared by the connection's reader and the user's handle.
pub(crate) struct SubState {
    pub(crate) sid: u64,
    pub(crate) subject: String,
    pub(crate) queue: Option<String>,
    pub(crate) sink: Sink,
    /// True for subscriptions consumed with `next_msg`.
    sync: bool,
    pending: RefCell<VecDeque<Msg>>,
    pending_bytes: Cell<usize>,
    limit_msgs: Cell<usize>,
    limit_bytes: Cell<usize>,
    max_pending_msgs: Cell<usize>,
    max_pending_bytes: Cell<usize>,
    /// Messages that arrived from the server (counted for auto-unsubscribe).
    pub(crate) received: Cell<u64>,
    /// Messages handed to the handler, `next_msg` or the channel.
    delivered: Cell<u64>,
    dropped: Cell<u64>,
    /// Auto-unsubscribe after this many received messages.
    pub(crate) max: Cell<Option<u64>>,
    /// No more messages will arrive (unsubscribed, drained, or the connection closed).
    closed: Cell<bool>,
    /// Inside a slow-consumer episode: reported once until a message fits again.
    slow: Cell<bool>,
    /// The handler is running a message (so a drain is not done yet).
    busy: Cell<bool>,
    /// The handler task or a `next_msg` caller waiting for a message.
    waker: Cell<Option<Waker>>,
    /// `drain` callers waiting for the queue to empty.
    drained: RefCell<Vec<Waker>>,
}

fn limit(n: i64) -> usize {
    if n < 0 {
        usize::MAX
    } else {
        n as usize
    }
}

impl SubState {
    pub(crate) fn new(sid: u64, subject: String, queue: Option<String>, sink: Sink, sync: bool, msgs: usize, bytes: usize) -> SubState {
        SubState {
            sid,
            subject,
            queue,
            sink,
            sync,
            pending: RefCell::new(VecDeque::new()),
            pending_bytes: Cell::new(0),
            limit_msgs: Cell::new(msgs),
            limit_bytes: Cell::new(bytes),
            max_pending_msgs: Cell::new(0),
            max_pending_bytes: Cell::new(0),
            received: Cell::new(0),
            delivered: Cell::new(0),
            dropped: Cell::new(0),
            max: Cell::new(None),
            closed: Cell::new(false),
            slow: Cell::new(false),
            busy: Cell::new(false),
            waker: Cell::new(None),
            drained: RefCell::new(Vec::new()),
        }
    }

    /// Run an inline handler on a message still in the read buffer.
    pub(crate) fn deliver_inline(&self, view: &MsgRef<'_>) -> bool {
        let Sink::Inline(h) = &self.sink else { return false };
        self.delivered.set(self.delivered.get() + 1);
        (h.borrow_mut())(view);
        true
    }

    /// Take a message the reader received. Never waits.
    pub(crate) fn deliver(self: &Rc<Self>, conn: &Connection, msg: Msg) {
        match &self.sink {
            Sink::Mux => conn.inner.mux_deliver(msg),
            // The reader calls inline handlers on the read buffer; a Msg comes here only on
            // the rarer paths (auto-unsubscribe, a subject that is not UTF-8), as a view.
            Sink::Inline(h) => {
                let block = msg.headers.as_ref().map(|hs| {
                    let mut b = Vec::with_capacity(hs.encoded_len());
                    hs.encode(&mut b);
                    b
                });
                let view = MsgRef {
                    subject: &msg.subject,
                    reply: msg.reply.as_deref(),
                    headers: block.as_deref(),
                    data: &msg.data,
                    read: conn.inner.reads.get(),
                };
                self.delivered.set(self.delivered.get() + 1);
                (h.borrow_mut())(&view);
            }
            Sink::Chan(tx) => match tx.try_send(msg) {
                Ok(()) => {
                    self.delivered.set(self.delivered.get() + 1);
                    self.slow.set(false);
                }
                Err(_) => self.overflow(conn),
            },
            Sink::Queue => {
                let size = msg.data.len();
                let mut q = self.pending.borrow_mut();
                if q.len() >= self.limit_msgs.get() || self.pending_bytes.get() + size > self.limit_bytes.get() {
                    drop(q);
                    self.overflow(conn);
                    return;
                }
                q.push_back(msg);
                let bytes = self.pending_bytes.get() + size;
                self.pending_bytes.set(bytes);
                self.max_pending_msgs.set(self.max_pending_msgs.get().max(q.len()));
                self.max_pending_bytes.set(self.max_pending_bytes.get().max(bytes));
                drop(q);
                self.slow.set(false);
                if let Some(w) = self.waker.take() {
                    w.wake();
                }
            }
        }
    }

    fn overflow(self: &Rc<Self>, conn: &Connection) {
        self.dropped.set(self.dropped.get() + 1);
        if !self.slow.replace(true) {
            let sub = Subscription { conn: conn.clone(), state: self.clone() };
            conn.inner.report(conn, Some(&sub), Error::SlowConsumer);
        }
    }

    fn pop(&self) -> Option<Msg> {
        let msg = self.pending.borrow_mut().pop_front()?;
        self.pending_bytes.set(self.pending_bytes.get() - msg.data.len());
        self.delivered.set(self.delivered.get() + 1);
        Some(msg)
    }

    fn wake_drained(&self) {
        if self.pending.borrow().is_empty() && !self.busy.get() {
            for w in self.drained.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// No more messages will come. With `discard`, queued ones are dropped too.
    pub(crate) fn close(&self, discard: bool) {
        self.closed.set(true);
        if discard {
            self.pending.borrow_mut().clear();
            self.pending_bytes.set(0);
        }
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        self.wake_drained();
    }

    /// Resolves once everything queued has been consumed.
    pub(crate) async fn drained(&self) {
        poll_fn(|cx| {
            if (self.pending.borrow().is_empty() && !self.busy.get()) || matches!(self.sink, Sink::Chan(_) | Sink::Inline(_)) {
                return Poll::Ready(());
            }
            park(&self.drained, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// The next queued message, waiting for one; `None` once closed and empty.
    async fn next(&self) -> Option<Msg> {
        poll_fn(|cx| {
            if let Some(m) = self.pop() {
                return Poll::Ready(Some(m));
            }
            if self.closed.get() {
                return Poll::Ready(None);
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// Run `handler` on every message until the subscription ends.
    pub(crate) async fn run_handler(self: Rc<Self>, mut handler: Box<dyn FnMut(Msg)>) {
        let mut n = 0u32;
        while let Some(msg) = self.next().await {
            self.busy.set(true);
            handler(msg);
            self.busy.set(false);
            self.wake_drained();
            n = n.wrapping_add(1);
            // Let the reader and other handlers run during a long burst.
            if n % 64 == 0 {
                futures_lite::future::yield_now().await;
            }
        }
        self.wake_drained();
    }
}

/// A subscription handle. Dropping it does not unsubscribe (as in nats.go): call
/// [`unsubscribe`](Subscription::unsubscribe) or [`drain`](Subscription::drain).
///
/// ```no_run
/// use std::time::Duration;
/// # glommio::LocalExecutor::default().run(async {
/// let nc = natsu::client::connect("nats://127.0.0.1:4222").await?;
/// let sub = nc.subscribe_sync("updates")?;
/// nc.publish("updates", "v2").await?;
/// let msg = sub.next_msg(Duration::from_secs(1)).await?;
/// assert_eq!(&msg.data[..], b"v2");
/// sub.unsubscribe()?;
/// # Ok::<(), natsu::client::Error>(()) });
/// ```
#[derive(Clone)]
pub struct Subscription {
    pub(crate) conn: Connection,
    pub(crate) state: Rc<SubState>,
}

impl Subscription {
    /// The subscription id on the wire.
    pub fn sid(&self) -> u64 {
        self.state.sid
    }

    pub fn subject(&self) -> &str {
        &self.state.subject
    }

    pub fn queue(&self) -> Option<&str> {
        self.state.queue.as_deref()
    }

    /// True until unsubscribed, drained, auto-unsubscribed to the end, or the connection closed.
    pub fn is_valid(&self) -> bool {
        !self.state.closed.get()
    }

    /// The next message of a synchronous subscription (from [`Connection::subscribe_sync`]),
    /// waiting at most `timeout`.
    pub async fn next_msg(&self, timeout: Duration) -> Result<Msg> {
        self.next_msg_until(Instant::now() + timeout).await
    }

    /// [`next_msg`](Self::next_msg) with a deadline instead of a timeout.
    pub async fn next_msg_until(&self, deadline: Instant) -> Result<Msg> {
        if !self.state.sync {
            return Err(Error::InvalidArgument("next_msg on a subscription that is not synchronous".into()));
        }
        let state = self.state.clone();
        let r = with_deadline(deadline, async move { state.next().await }).await;
        self.state.wake_drained();
        match r? {
            Some(m) => Ok(m),
            None if self.conn.is_closed() => Err(Error::ConnectionClosed),
            None => Err(Error::BadSubscription),
        }
    }

    /// Stop the subscription now; messages already queued are discarded.
    pub fn unsubscribe(&self) -> Result<()> {
        if self.state.closed.get() {
            return Err(if self.conn.is_closed() { Error::ConnectionClosed } else { Error::BadSubscription });
        }
        self.conn.inner.send_unsub(self.state.sid, None);
        self.conn.inner.forget_sub(self.state.sid);
        self.state.close(true);
        Ok(())
    }

    /// Let the server deliver `max` messages in all (counting those already received), then
    /// end the subscription.
    pub fn auto_unsubscribe(&self, max: u64) -> Result<()> {
        if self.state.closed.get() {
            return Err(Error::BadSubscription);
        }
        if max == 0 {
            return Err(Error::InvalidArgument("auto_unsubscribe max must be at least 1".into()));
        }
        if self.state.received.get() >= max {
            return self.unsubscribe();
        }
        self.state.max.set(Some(max));
        self.conn.inner.send_unsub(self.state.sid, Some(max));
        Ok(())
    }

    /// Unsubscribe, let the messages already sent by the server arrive and be processed,
    /// then end.
    pub async fn drain(&self) -> Result<()> {
        if self.state.closed.get() {
            return Err(Error::BadSubscription);
        }
        self.conn.inner.send_unsub(self.state.sid, None);
        let deadline = Instant::now() + self.conn.inner.opts.drain_timeout;
        // After the PONG the server has stopped sending to this sid.
        let flushed = self.conn.flush_until(deadline).await;
        self.conn.inner.forget_sub(self.state.sid);
        self.state.close(false);
        flushed?;
        let state = self.state.clone();
        with_deadline(deadline, async move { Ok::<_, Error>(state.drained().await) }).await?
    }

    /// Messages and bytes queued, waiting for the handler or `next_msg`.
    pub fn pending(&self) -> (usize, usize) {
        (self.state.pending.borrow().len(), self.state.pending_bytes.get())
    }

    /// The most messages and bytes that were ever queued at once.
    pub fn max_pending(&self) -> (usize, usize) {
        (self.state.max_pending_msgs.get(), self.state.max_pending_bytes.get())
    }

    /// Messages handed to the handler, `next_msg` or the channel.
    pub fn delivered(&self) -> u64 {
        self.state.delivered.get()
    }

    /// Messages dropped because the subscription was over its pending limits.
    pub fn dropped(&self) -> u64 {
        self.state.dropped.get()
    }

    /// Limits on queued messages and bytes; a negative limit means none (nats.go's -1), zero
    /// is refused.
    pub fn set_pending_limits(&self, msgs: i64, bytes: i64) -> Result<()> {
        if msgs == 0 || bytes == 0 {
            return Err(Error::InvalidArgument("pending limits must not be zero".into()));
        }
        if matches!(self.state.sink, Sink::Chan(_) | Sink::Inline(_)) {
            return Err(Error::InvalidArgument("only queued subscriptions have pending limits".into()));
        }
        self.state.limit_msgs.set(limit(msgs));
        self.state.limit_bytes.set(limit(bytes));
        Ok(())
    }

    /// The current pending limits (`usize::MAX` for none).
    pub fn pending_limits(&self) -> (usize, usize) {
        (self.state.limit_msgs.get(), self.state.limit_bytes.get())
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("sid", &self.state.sid)
            .field("subject", &self.state.subject)
            .field("queue", &self.state.queue)
            .finish()
    }
}
