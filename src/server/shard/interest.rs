//! Interest between cores: each core tells the others when its subscriptions to a pattern in
//! an account start and stop, and the others keep that as `Target::Core` entries in the
//! account's index. Changes carry an epoch; a PONG waits until every other core has applied
//! the changes its client caused (see [`Shard::wait_interest_acked`]).

use std::task::Poll;

use super::index::Target;
use super::outbox::{InterestChange, Mail};
use super::Shard;

impl Shard {
    /// A subscription to `(subj, queue)` in account `acc` came or went on this core: tell
    /// the other cores when the pattern's count here goes 0→1 or 1→0. The count is read off
    /// the index itself (the subscriptions stored under exactly that pattern), so no table
    /// beside it costs memory per subscription.
    pub(super) fn interest_changed(&self, acc: u32, subj: &[u8], queue: Option<&[u8]>, add: bool) {
        if self.outboxes.len() < 2 {
            return;
        }
        // Queue members are announced one by one (other cores hold one entry per member), so
        // a publishing core can weigh each core by its member count and every member is
        // about equally likely, as on nats-server. Plain interest needs only the 0↔1 edges.
        if queue.is_none() {
            // Routes' interest is this core's too (on core zero, where they live).
            let here = self.account(acc).sublist.borrow().count_at(subj, None, |t| matches!(t, Target::Sub(_) | Target::Route(_)));
            let edge = if add { here == 1 } else { here == 0 };
            if !edge {
                return;
            }
        }
        let epoch = self.epoch.get() + 1;
        self.epoch.set(epoch);
        let flush = !self.deferring.get();
        for o in self.outboxes.iter().flatten() {
            let change = InterestChange { account: acc, subject: crate::server::sublist::Key::new(subj), queue: queue.map(Into::into), add, flush };
            o.push_interest(change, epoch);
        }
    }

    /// Another core's interest changed: keep it in the account's index.
    pub(super) fn apply_interest(&self, from: usize, account: u32, subject: &[u8], queue: Option<&[u8]>, add: bool, flush: bool) {
        let mut sublist = self.account(account).sublist.borrow_mut();
        let core = Target::Core(from as u16);
        let _ = if add { sublist.insert(subject, queue, core) } else { sublist.remove(subject, queue, &core) };
        drop(sublist);
        self.tell_routes(account, subject, queue, flush);
    }

    /// Ask every other core to acknowledge once it has handled everything this core sent it
    /// so far (mails to a core are handled in order); returns the epoch to wait for.
    pub fn barrier(&self) -> u64 {
        let epoch = self.epoch.get() + 1;
        self.epoch.set(epoch);
        for o in self.outboxes.iter().flatten() {
            o.push_control(Mail::Barrier { epoch });
        }
        epoch
    }

    /// Wait until every other core has applied this core's interest changes up to `epoch`.
    pub async fn wait_interest_acked(&self, epoch: u64) {
        futures_lite::future::poll_fn(|cx| {
            let done = self.acked.borrow().iter().enumerate().all(|(c, &a)| c == self.id || a >= epoch);
            if done {
                Poll::Ready(())
            } else {
                self.epoch_waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// A peer acknowledged this core's changes up to `epoch`.
    pub(super) fn acknowledged(&self, from: usize, epoch: u64) {
        let mut acked = self.acked.borrow_mut();
        if acked[from] < epoch {
            acked[from] = epoch;
        }
        drop(acked);
        for w in self.epoch_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}
