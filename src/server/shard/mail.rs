//! Mail from the other cores, and the back-pressure between cores: messages for subscribers
//! here, interest changes, acknowledgements, probes, stalls and credit.

use std::rc::Rc;

use super::index::{bump, Target};
use super::outbox::{Batch, BatchMsg, Mail};
use super::routing::{Message, Origin, Pick};
use super::{Shard, STALL_MAX};
use crate::server::client::{Client, State};
use crate::server::sublist::SublistResult;

impl Shard {
    /// A mail from another core.
    pub fn handle_mail(&self, from: usize, mail: Mail) {
        match mail {
            Mail::Batch(b) => {
                self.deliver_batch(from, &b);
                if let Some(o) = self.outbox(from) {
                    o.give_credit(b.bytes());
                }
                self.shared.batch_pools[from * self.outboxes.len() + self.id].give(b);
            }
            Mail::Credit { bytes } => {
                if let Some(o) = self.outbox(from) {
                    o.credited(bytes);
                }
            }
            Mail::Stall { cid } => {
                if let Some(c) = self.clients.borrow().get(&cid) {
                    c.remote_stalls.set(c.remote_stalls.get() + 1);
                }
            }
            Mail::Unstall { cid } => {
                if let Some(c) = self.clients.borrow().get(&cid) {
                    c.remote_stalls.set(c.remote_stalls.get().saturating_sub(1));
                    c.wake_stalled();
                }
            }
            Mail::ProbeAck { token, delivered } => self.probe_answered(token, delivered),
            Mail::Interest { changes, epoch } => {
                for c in &changes {
                    self.apply_interest(from, c.account, c.subject.as_slice(), c.queue.as_deref(), c.add, c.flush);
                }
                if let Some(o) = self.outbox(from) {
                    o.push_control(Mail::Ack { epoch });
                }
            }
            Mail::Barrier { epoch } => {
                if let Some(o) = self.outbox(from) {
                    o.push_control(Mail::Ack { epoch });
                }
            }
            Mail::Ack { epoch } => self.acknowledged(from, epoch),
            Mail::Stats(req) => crate::server::monitor::answer(self, req),
            Mail::ConnectUrls(urls) => self.set_connect_urls(&urls),
            Mail::FlushRoutes => self.flush_route_interest(),
            Mail::MoveIn(m) => self.move_in(from, m),
            Mail::MoveReady { cid } => self.move_ready(cid),
            Mail::MoveDone { cid, done } => self.move_done(cid, done),
        }
    }

    /// Deliver messages another core published for subscribers here.
    fn deliver_batch(&self, from: usize, batch: &Batch) {
        bump(&self.stats.cross_received, batch.len() as u64);
        bump(&self.stats.cross_batches, 1);
        // Consecutive messages usually share an account and subject: skip even the cache
        // lookup then.
        let mut last: Option<(u32, &[u8], Rc<SublistResult<Target>>)> = None;
        for m in batch.iter() {
            let meta = m.meta;
            self.cur.set((from as u16, meta.seq));
            if meta.response {
                self.answer_from(from, &m);
                continue;
            }
            let r = match &last {
                Some((a, s, r)) if *a == meta.account && *s == m.subject => r.clone(),
                _ => {
                    let r = self.account(meta.account).sublist.borrow_mut().match_subject(m.subject);
                    last = Some((meta.account, m.subject, r.clone()));
                    r
                }
            };
            if meta.probe != 0 {
                // Deliver as the publishing core would have, had it known of the interest.
                let mut delivered = false;
                for t in &r.psubs {
                    if let Target::Sub(s) = t {
                        delivered |= self.deliver(s, m.subject, m.reply, m.header_len, m.msg, m.big);
                    }
                }
                for (_, members) in &r.qsubs {
                    if let Pick::Local(s) = self.pick(m.subject, None, members, false, None) {
                        delivered |= self.deliver(s, m.subject, m.reply, m.header_len, m.msg, m.big);
                    }
                }
                if let Some(o) = self.outbox(from) {
                    o.push_control(Mail::ProbeAck { token: meta.probe, delivered });
                }
                self.stall_origin(from, meta.origin);
                continue;
            }
            let msg = Message { subject: m.subject, reply: m.reply, header_len: m.header_len, msg: m.msg, big: m.big };
            // Routes and leafs (on core zero) get what a client on another core published, as
            // `leaf::forwards` says.
            // A forwarded message (hops > 0) is only for its queue groups.
            if meta.hops == 0 {
                for t in &r.psubs {
                    match t {
                        Target::Sub(s) => {
                            self.deliver(s, m.subject, m.reply, m.header_len, m.msg, m.big);
                        }
                        Target::System(req) => self.system_request(*req, meta.account, msg),
                        Target::Route(rt) if Origin::from_core(&meta).forwards_to(rt) => self.add_route_target(rt, None),
                        _ => {}
                    }
                }
            }
            for q in m.queues() {
                let (name, members) = match r.qsubs.iter().find(|(n, _)| &n[..] == q) {
                    Some((n, v)) => (Some(n), &v[..]),
                    None => (None, &[][..]),
                };
                match self.pick(m.subject, None, members, false, Some(Origin::from_core(&meta))) {
                    Pick::Local(s) => {
                        self.deliver(s, m.subject, m.reply, m.header_len, m.msg, m.big);
                        continue;
                    }
                    Pick::Route(rt) => {
                        self.add_route_target(rt, name);
                        continue;
                    }
                    _ => {}
                }
                // The group left this core while the message was in flight: hand it to
                // another core that still has members, if any. The sender too: its members
                // may be the only ones allowed this subject (a member here can be filtered by
                // a deny permission). Hops bound the trips.
                let cores: Vec<u16> = members.iter().filter_map(|t| if let Target::Core(c) = t { Some(*c) } else { None }).collect();
                if cores.is_empty() || meta.hops as usize >= self.outboxes.len() {
                    tracing::debug!(core = self.id, from, hops = meta.hops, "queue message found no member");
                    bump(&self.stats.queue_dropped, 1);
                    continue;
                }
                let c = cores[self.random(cores.len())] as usize;
                if let Some(ob) = self.outbox(c) {
                    ob.push_msg(m.subject, m.reply, m.header_len, m.msg, m.big, std::iter::once(q), super::outbox::Meta { hops: meta.hops + 1, ..meta });
                }
            }
            self.send_to_routes(meta.account, msg);
            self.stall_origin(from, meta.origin);
        }
    }

    /// An answer to a generated reply subject whose mapping is on this core.
    fn answer_from(&self, from: usize, m: &BatchMsg<'_>) {
        let origin = Origin::from_core(&m.meta);
        let msg = Message { subject: m.subject, reply: m.reply, header_len: m.header_len, msg: m.msg, big: m.big };
        self.answer(origin, m.meta.account, msg, 1);
        self.stall_origin(from, m.meta.origin);
    }

    /// A message from core `from`, published by its client `origin`, made a consumer here
    /// fall behind. The mailbox never waits (everything else that core sends would wait
    /// behind it); instead the publisher alone is told to stall until the consumer catches
    /// up, which its own core bounds in time (see [`Shard::end_of_pass`]).
    fn stall_origin(&self, from: usize, origin: u64) {
        let Some(c) = self.stall.borrow_mut().take() else { return };
        if origin == 0 || c.state.get() != State::Open {
            return;
        }
        let producer = (from as u16, origin);
        let mut producers = c.remote_producers.borrow_mut();
        if !producers.contains(&producer) {
            producers.push(producer);
            if let Some(o) = self.outbox(from) {
                o.push_control(Mail::Stall { cid: origin });
            }
        }
    }

    /// A consumer caught up (or closed): release the publishers on other cores it stalled.
    pub fn release_producers(&self, consumer: &Client) {
        if consumer.remote_producers.borrow().is_empty() {
            return;
        }
        for (core, cid) in consumer.remote_producers.borrow_mut().drain(..) {
            if let Some(o) = self.outbox(core as usize) {
                o.push_control(Mail::Unstall { cid });
            }
        }
    }

    /// After a reader's parse pass: if another core is not keeping up, wait for it rather than
    /// queue without bound.
    pub async fn end_of_pass(&self, client: &Client) {
        for ob in self.outboxes.iter().flatten() {
            if ob.is_full() {
                ob.wait_drained().await;
            }
        }
        self.wait_for_slow_consumer().await;
        if client.remote_stalls.get() > 0 {
            // Bounded per pass: after STALL_MAX the reader goes on for one pass and waits
            // again at its end, for as long as the consumer stays over half its max_pending
            // (nats-server stalls a producer again at every flush). Forgetting the stall
            // after one wait let the publisher run free while the consumer worked through
            // what was in flight, and cut a steadily reading consumer off (nats.go fan-out).
            // A consumer that never reads is cut off by write_deadline, which releases it.
            futures_lite::future::or(client.wait_unstalled(), glommio::timer::sleep(STALL_MAX)).await;
        }
    }

    /// `c` went over half its max_pending while this core delivered to it: the producer is
    /// to wait for it. One consumer is remembered per delivery; one whose stall budget is
    /// spent (it does not read, and is being cut off) does not take the place of one that
    /// still has budget: a stuck subscriber delivered to after a reading one left the
    /// publisher free to push the reading one over its max_pending.
    pub(super) fn falling_behind(&self, c: &Rc<Client>) {
        let spent = |c: &Client| c.stalled_for.get() >= STALL_MAX;
        let mut stall = self.stall.borrow_mut();
        if !(spent(c) && stall.as_deref().is_some_and(|o| !spent(o))) {
            *stall = Some(c.clone());
        }
    }

    /// If a local consumer went over half its max_pending while this producer (a client's
    /// reader) delivered to it, wait until it is back under. Producers wait on one consumer
    /// for STALL_MAX in all while it stays over half (the budget comes back once it gets under):
    /// a consumer that does not read then fills to max_pending or its write deadline and is
    /// cut off, instead of holding its producers a second per read pass for as long as it
    /// lasts.
    async fn wait_for_slow_consumer(&self) {
        let Some(c) = self.stall.borrow_mut().take() else { return };
        let left = STALL_MAX.saturating_sub(c.stalled_for.get());
        if left.is_zero() {
            return;
        }
        let below = c.max_pending() / 2;
        let start = std::time::Instant::now();
        let _ = futures_lite::future::or(async { Some(c.wait_pending_below(below).await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        if c.pending() > below {
            c.stalled_for.set(c.stalled_for.get() + start.elapsed());
        }
    }
}
