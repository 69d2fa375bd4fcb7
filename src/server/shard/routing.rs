//! Routing a publish to its targets: one match against the publisher's account index, then
//! local subscribers get the message at once, other cores with interest get it through
//! their outboxes, queue groups get it once server-wide (decided here, by the publishing
//! core), and imports carry it into other accounts.

use std::borrow::Cow;
use std::rc::Rc;

use bytes::Bytes;

use super::imports::{parse_reply, reply_subject, MAX_IMPORT_DEPTH};
use super::index::{bump, Subscription, Target};
use super::outbox::Meta;
use super::system::Request;
use super::{Probe, Shard};
use crate::protocol::{encode, subject, Publish};
use crate::server::client::{Client, Kind, Pending, State};
use crate::server::route::Route;

/// Where a queue message goes.
pub(super) enum Pick<'a> {
    Local(&'a Rc<Subscription>),
    Core(u16),
    Route(&'a Rc<Route>),
    Nobody,
}

/// Who published a message being routed: a client on this core, or (for a message another
/// core handed over) a connection elsewhere, known by cid and kind only.
#[derive(Clone, Copy)]
pub(super) struct Origin<'a> {
    pub client: Option<&'a Rc<Client>>,
    pub cid: u64,
    pub kind: Kind,
    /// The queue groups this message is for, space separated, when a route picked them
    /// (None: every group, as for a client's message).
    pub queues: Option<&'a [u8]>,
    /// Whether the message may go to routes: not when it came from one (one hop), nor once
    /// a stream import carried it into another account (the peer does its own imports).
    pub to_routes: bool,
}

impl<'a> Origin<'a> {
    pub fn of(client: &'a Rc<Client>) -> Origin<'a> {
        Origin { client: Some(client), cid: client.cid, kind: client.kind, queues: None, to_routes: true }
    }

    /// A message handed over by another core.
    pub fn from_core(meta: &Meta) -> Origin<'static> {
        Origin { client: None, cid: meta.origin, kind: meta.kind, queues: None, to_routes: !meta.local }
    }

    /// Whether queue group `name` is one this message is for.
    fn wants_queue(&self, name: &[u8]) -> bool {
        self.queues.map_or(true, |qs| qs.split(|&b| b == b' ').any(|q| q == name))
    }

    /// A publisher with echo off, whose own subscriptions do not get its messages.
    fn skip(&self) -> Option<&'a Rc<Client>> {
        self.client.filter(|c| !c.echo.get())
    }

    /// Whether the message goes to route or leaf connection `to` (see `leaf::forwards`).
    pub fn forwards_to(&self, to: &Route) -> bool {
        crate::server::leaf::forwards(self.kind, self.cid, self.to_routes, to)
    }

    /// The message went to another core: a PONG to the publisher waits for it.
    fn crossed(&self) {
        if let Some(c) = self.client {
            c.published_across.set(true);
        }
    }

    fn meta(&self, account: u32) -> Meta {
        Meta { account, origin: self.cid, kind: self.kind, local: !self.to_routes, ..Meta::default() }
    }
}

/// A message on its way: what every target needs to see of it.
#[derive(Clone, Copy)]
pub(super) struct Message<'a> {
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    pub header_len: Option<usize>,
    pub msg: &'a [u8],
    /// `msg` as shared bytes when it is big (see `client::BIG_PAYLOAD`): handed to other
    /// cores and queued for subscribers without a copy.
    pub big: Option<&'a Bytes>,
}

impl Shard {
    /// A client published a message (`big`: its payload as shared bytes, when big).
    pub fn publish(&self, client: &Rc<Client>, p: &Publish<'_>, big: Option<&Bytes>) {
        bump(&client.stats.in_msgs, 1);
        bump(&client.stats.in_bytes, p.msg.len() as u64);
        bump(&self.stats.in_msgs, 1);
        bump(&self.stats.in_bytes, p.msg.len() as u64);
        let acc = client.account.get();
        // Permissions are checked on the subject the message goes out on (as nats-server).
        let subject = self.mapped(acc, p.subject);
        if !client.can_publish(&subject) {
            let subj = String::from_utf8_lossy(&subject);
            tracing::error!(cid = client.cid, "Publish Violation - Subject \"{subj}\"");
            client.send_err(&format!("Permissions Violation for Publish to \"{subj}\""));
            return;
        }
        // Like nats-server, a pedantic client is told off for any subject that is not a valid
        // literal one (a wildcard token, or an empty token as in `foo.`, `.foo`, `foo..bar`),
        // and the connection stays open. What happens to the message does not change: a
        // wildcard subject is still delivered (taken literally), one with an empty token
        // reaches nobody, as there. Unlike nats-server, a control byte in the subject is
        // refused here too: natsu never delivers such a subject (see `subject`), and a
        // pedantic client is told rather than left to guess.
        if client.pedantic.get() && !subject::valid_literal_subject(p.subject) {
            client.send_err("Invalid Publish Subject");
        }
        // The +OK goes before any MSG the publisher itself receives, as nats-server orders it.
        if client.verbose.get() {
            client.send(b"+OK\r\n");
        }
        // Unlike nats-server, subjects with spaces or control bytes are never delivered: the
        // index matches nothing for them, and nobody is told there are no responders.
        let m = Message { subject: &subject, reply: p.reply, header_len: p.header_len, msg: p.msg, big };
        let routed = self.route(Origin::of(client), acc, m, 0);
        if let Some(reply) = p.reply.filter(|_| !routed && client.no_responders.get()) {
            if subject::deliverable_subject(&subject) {
                if self.outboxes.len() > 1 {
                    self.probe(client, acc, m, reply);
                } else {
                    self.no_responders(client, reply);
                }
            }
        }
    }

    /// The subject a message published in account `acc` on `subject` goes out on: the
    /// destination of the account's first mapping that matches (empty: dropped), else the
    /// subject itself.
    pub(super) fn mapped<'s>(&'s self, acc: u32, subject: &'s [u8]) -> Cow<'s, [u8]> {
        match self.shared.accounts.mappings.get(acc as usize).filter(|m| !m.is_empty()) {
            Some(m) => m.map(subject, || fastrand::u8(..100)).unwrap_or(Cow::Borrowed(subject)),
            None => Cow::Borrowed(subject),
        }
    }

    /// A request found no interest this core knows of. Another core may have gained a
    /// subscriber whose interest is still on its way here, so the request goes to every
    /// other core as a probe: a core with local interest delivers it, and each answers. Only
    /// when none delivered is the requester told there are no responders. The extra hop
    /// costs only requests that really have no responder.
    fn probe(&self, client: &Rc<Client>, acc: u32, m: Message<'_>, reply: &[u8]) {
        let token = self.next_probe.get().wrapping_add(1).max(1);
        self.next_probe.set(token);
        let probe = Probe { client: client.clone(), reply: reply.into(), waiting: self.outboxes.len() - 1, delivered: false };
        self.probes.borrow_mut().insert(token, probe);
        // A PONG after this must wait until the other cores have handled it, like any
        // message that crossed.
        client.published_across.set(true);
        let meta = Meta { probe: token, seq: self.next_seq(), ..Origin::of(client).meta(acc) };
        for ob in self.outboxes.iter().flatten() {
            ob.push_msg(m.subject, m.reply, m.header_len, m.msg, m.big, std::iter::empty(), meta);
        }
    }

    /// A core answered a probe.
    pub(super) fn probe_answered(&self, token: u32, delivered: bool) {
        let mut probes = self.probes.borrow_mut();
        let Some(p) = probes.get_mut(&token) else { return };
        p.delivered |= delivered;
        p.waiting -= 1;
        if p.waiting == 0 {
            if let Some(p) = probes.remove(&token) {
                drop(probes);
                if !p.delivered && p.client.state.get() == State::Open {
                    self.no_responders(&p.client, &p.reply);
                }
            }
        }
    }

    /// Tell a requester nobody listens: a 503 status message on its reply subject, delivered
    /// only to the requester's own subscriptions.
    fn no_responders(&self, client: &Rc<Client>, reply: &[u8]) {
        self.next_seq();
        let r = self.account(client.account.get()).sublist.borrow_mut().match_subject(reply);
        for t in &r.psubs {
            if let Target::Sub(s) = t {
                if Rc::ptr_eq(&s.client, client) {
                    self.deliver(s, reply, None, Some(encode::NO_RESPONDERS_HDR.len()), encode::NO_RESPONDERS_HDR, None);
                }
            }
        }
    }

    /// Deliver a message published on this core in account `acc` (by `origin`, or carried
    /// into `acc` by an import `depth` times); true if anyone (here or on another core) will
    /// get it.
    pub(super) fn route(&self, origin: Origin<'_>, acc: u32, m: Message<'_>, depth: u8) -> bool {
        let index = self.account(acc);
        // Nobody subscribed anywhere (a publish-only load): no lookup at all.
        if index.sublist.borrow().count() == 0 {
            return false;
        }
        let r = index.sublist.borrow_mut().match_subject(m.subject);
        let seq = self.next_seq();
        let skip = origin.skip();
        let mut any = false;
        let mut local = false;
        let mut mask: u64 = 0;
        let mut imports = false;
        for t in &r.psubs {
            match t {
                Target::Sub(s) => {
                    if !skip.is_some_and(|o| Rc::ptr_eq(&s.client, o)) {
                        local |= self.deliver(s, m.subject, m.reply, m.header_len, m.msg, m.big);
                    }
                }
                Target::Core(c) => mask |= 1 << c,
                Target::Route(rt) => {
                    if origin.forwards_to(rt) {
                        self.add_route_target(rt, None);
                    }
                }
                Target::Stream(_) | Target::Service(_) | Target::Responses => imports = true,
                Target::System(Request::UserInfo) => {
                    if let Some(c) = origin.client.filter(|_| origin.kind == Kind::Client && depth == 0) {
                        self.user_info(c, acc, m);
                        any = true;
                    }
                }
                Target::System(req) => {
                    self.system_request(*req, acc, m);
                    any = true;
                }
            }
        }
        {
            let mut picks = self.picks.borrow_mut();
            picks.clear();
            for (name, members) in r.qsubs.iter().filter(|(n, _)| origin.wants_queue(n)) {
                match self.pick(m.subject, skip, members, true, Some(origin)) {
                    Pick::Local(s) => local |= self.deliver(s, m.subject, m.reply, m.header_len, m.msg, m.big),
                    Pick::Core(c) => {
                        picks.push((c, name.clone()));
                        mask |= 1 << c;
                    }
                    Pick::Route(rt) => self.add_route_target(rt, Some(name)),
                    Pick::Nobody => {}
                }
            }
        }
        any |= local;
        if let Some(c) = origin.client.filter(|_| depth == 0) {
            c.note_sent(mask, local);
        }
        any |= self.send_to_routes(acc, m);
        if mask != 0 {
            any = true;
            origin.crossed();
            let meta = Meta { seq, ..origin.meta(acc) };
            let picks = self.picks.borrow();
            for (core, ob) in self.outboxes.iter().enumerate() {
                if let Some(ob) = ob.as_ref().filter(|_| mask & (1 << core) != 0) {
                    let qs = picks.iter().filter(|(c, _)| *c as usize == core).map(|(_, n)| &n[..]);
                    ob.push_msg(m.subject, m.reply, m.header_len, m.msg, m.big, qs, meta);
                    bump(&self.stats.cross_sent, 1);
                }
            }
        }
        if imports && depth < MAX_IMPORT_DEPTH {
            for t in &r.psubs {
                any |= self.cross_accounts(origin, acc, t, m, depth);
            }
        }
        any
    }

    /// Carry a message matched by an import target into the other account.
    fn cross_accounts(&self, origin: Origin<'_>, acc: u32, t: &Target, m: Message<'_>, depth: u8) -> bool {
        match t {
            Target::Stream(i) => {
                let subject = i.rename.apply(m.subject);
                // Local subscribers only: a peer server imports the stream itself.
                self.route(Origin { to_routes: false, ..origin }, i.into, Message { subject: &subject, ..m }, depth + 1)
            }
            Target::Service(i) => {
                // The exporting account's mappings apply to the request (as nats-server).
                let subject = i.rename.apply(m.subject);
                let subject = self.mapped(i.to, &subject);
                let token = m.reply.map(|r| self.responses.open(acc, r, i.response));
                let reply = token.map(|t| reply_subject(&self.shared.accounts.reply_prefix, self.id, t));
                let rtt = origin.client.map_or(0, |c| c.rtt.get());
                let (header_len, msg) = with_request_info(m.header_len, m.msg, &self.account(acc).name, rtt);
                let reached = self.route(origin, i.to, Message { subject: &subject, reply: reply.as_deref(), header_len: Some(header_len), msg: &msg, big: None }, depth + 1);
                if let Some(t) = token.filter(|_| !reached) {
                    // Nobody will answer: the mapping would only wait out the threshold.
                    self.responses.close(t);
                }
                // As nats-server 2.9: a request that reached a service import is never
                // answered "no responders", responder or not.
                true
            }
            Target::Responses => self.answer(origin, acc, m, depth),
            Target::Sub(_) | Target::Core(_) | Target::Route(_) | Target::System(_) => false,
        }
    }

    /// A message on a generated reply subject in account `acc`: deliver it to the requester
    /// it maps to, on the core that holds the mapping.
    pub(super) fn answer(&self, origin: Origin<'_>, acc: u32, m: Message<'_>, depth: u8) -> bool {
        let Some((core, token)) = parse_reply(&self.shared.accounts.reply_prefix, m.subject) else { return false };
        if core != self.id {
            let Some(ob) = self.outbox(core) else { return false };
            let meta = Meta { response: true, ..origin.meta(acc) };
            ob.push_msg(m.subject, m.reply, m.header_len, m.msg, m.big, std::iter::empty(), meta);
            origin.crossed();
            return true;
        }
        let Some((into, reply)) = self.responses.answer(token) else { return false };
        // The answer's own reply subject is the exporter's: the requester gets none. The
        // requester is on this server (its mapping is), so the answer stays here.
        self.route(Origin { to_routes: false, ..origin }, into, Message { subject: &reply, reply: None, ..m }, depth + 1)
    }

    /// Choose the one member of a queue group that gets a message: a live local member, or
    /// with `cores` a core that has members (listed once per member it has, so each member
    /// server-wide is about equally likely), with `from` a route the message may go to
    /// (listed once per member its server announced), and only when none of those is left
    /// a leaf connection (nats-server prefers members on this side of a leaf link). `skip`
    /// is a publisher with echo off, whose own members are not eligible.
    pub(super) fn pick<'a>(&self, subj: &[u8], skip: Option<&Rc<Client>>, members: &'a [Target], cores: bool, from: Option<Origin<'_>>) -> Pick<'a> {
        for leafs in [false, true] {
            let eligible = |t: &&Target| match t {
                Target::Sub(s) => {
                    !leafs && !s.closed.get() && s.client.state.get() == State::Open && !s.client.denies_delivery(subj) && !skip.is_some_and(|o| Rc::ptr_eq(&s.client, o))
                }
                Target::Core(c) => !leafs && cores && *c as usize != self.id,
                Target::Route(r) => r.leaf.is_some() == leafs && from.is_some_and(|o| o.forwards_to(r)),
                _ => false,
            };
            let n = members.iter().filter(eligible).count();
            if n == 0 {
                continue;
            }
            return match members.iter().filter(eligible).nth(self.random(n)) {
                Some(Target::Sub(s)) => Pick::Local(s),
                Some(Target::Core(c)) => Pick::Core(*c),
                Some(Target::Route(r)) => Pick::Route(r),
                _ => Pick::Nobody,
            };
        }
        Pick::Nobody
    }

    /// Append a message for one subscription to its connection's outbound buffer, framed as
    /// the connection's kind wants it.
    #[inline]
    ///
    /// `big`: `msg` as shared bytes (a big payload): queued by reference, not copied, unless
    /// a move of the connection is under way (whose bookkeeping counts bytes in `out`).
    pub(super) fn deliver(&self, sub: &Rc<Subscription>, subj: &[u8], reply: Option<&[u8]>, header_len: Option<usize>, msg: &[u8], big: Option<&Bytes>) -> bool {
        let c = &sub.client;
        if sub.closed.get() || c.state.get() != State::Open || c.denies_delivery(subj) {
            return false;
        }
        // A client that did not ask for headers gets the payload alone, as nats-server does.
        let (h, body) = match header_len {
            Some(h) if !c.headers.get() => (None, &msg[h.min(msg.len())..]),
            h => (h, msg),
        };
        let (was_empty, queued) = {
            let mut out = c.out.borrow_mut();
            let was_empty = out.is_empty();
            let start = out.len();
            match big.filter(|_| !c.tracking.get()).and_then(|b| share(b, body)) {
                Some(b) => {
                    encode::msg_head(&mut out, subj, sub.sid(), reply, h, b.len());
                    c.big_bytes.set(c.big_bytes.get() + b.len());
                    c.big.borrow_mut().push((out.len(), b));
                    out.extend_from_slice(b"\r\n");
                }
                // (Routes hold no subscriptions, their interest is `Target::Route`; leaf
                // connections get MSG as clients do.)
                None => encode::msg(&mut out, subj, sub.sid(), reply, h, body),
            }
            if crate::logging::trace_enabled() {
                let line = &out[start..];
                let end = memchr::memchr(b'\r', line).unwrap_or(line.len());
                c.trace_out(&line[..end]);
            }
            (was_empty, out.len())
        };
        if let Some(r) = reply.filter(|r| !r.is_empty()) {
            c.note_reply(r);
        }
        let (core, seq) = self.cur.get();
        c.note_received(core, self.id as u16);
        if c.tracking.get() {
            self.track_delivery(c, core, seq, body.len());
        }
        bump(&c.stats.out_msgs, 1);
        bump(&c.stats.out_bytes, body.len() as u64);
        bump(&self.stats.out_msgs, 1);
        bump(&self.stats.out_bytes, body.len() as u64);
        if c.queued(was_empty, queued) == Pending::High {
            // As nats-server: the producer waits for a consumer falling behind, instead of
            // filling its buffer until it has to be cut off.
            self.falling_behind(c);
        }
        let d = sub.delivered.get() + 1;
        sub.delivered.set(d);
        if sub.max.get() != 0 && d >= sub.max.get() {
            self.remove_sub(sub);
        }
        true
    }
}

/// `part` of `whole` as bytes sharing its memory; None if it is not inside (never, when
/// the caller keeps `Message::big` and `Message::msg` together: checked, not assumed).
pub(super) fn share(whole: &Bytes, part: &[u8]) -> Option<Bytes> {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    (p >= w && p + part.len() <= w + whole.len()).then(|| whole.slice(p - w..p - w + part.len()))
}

/// The request as the exporter's responder gets it: with a `Nats-Request-Info` header naming
/// the requesting account and the requester's round trip in nanoseconds, as nats-server adds
/// it (a responder without headers gets the payload alone, as always). Returns the new
/// header length and message.
fn with_request_info(header_len: Option<usize>, msg: &[u8], account: &str, rtt: u64) -> (usize, Vec<u8>) {
    let info = serde_json::json!({ "acc": account, "rtt": rtt });
    let line = format!("Nats-Request-Info: {info}\r\n");
    let mut out = Vec::with_capacity(msg.len() + line.len() + 12);
    match header_len {
        // Before the blank line that ends the existing headers.
        Some(h) if h >= 4 && h <= msg.len() && msg[..h].ends_with(b"\r\n\r\n") => {
            let (head, body) = msg.split_at(h);
            out.extend_from_slice(&head[..h - 2]);
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            let h = out.len();
            out.extend_from_slice(body);
            (h, out)
        }
        _ => {
            let body = &msg[header_len.unwrap_or(0).min(msg.len())..];
            out.extend_from_slice(b"NATS/1.0\r\n");
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            let h = out.len();
            out.extend_from_slice(body);
            (h, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_request_info;

    #[test]
    fn request_info_header_is_added_to_plain_and_header_messages() {
        let (h, m) = with_request_info(None, b"req", "B", 42);
        assert_eq!(&m[..], &b"NATS/1.0\r\nNats-Request-Info: {\"acc\":\"B\",\"rtt\":42}\r\n\r\nreq"[..]);
        assert_eq!(&m[h..], b"req");
        let orig = b"NATS/1.0\r\nX: 1\r\n\r\nbody";
        let (h, m) = with_request_info(Some(orig.len() - 4), orig, "B", 7);
        assert_eq!(&m[..h], &b"NATS/1.0\r\nX: 1\r\nNats-Request-Info: {\"acc\":\"B\",\"rtt\":7}\r\n\r\n"[..]);
        assert_eq!(&m[h..], b"body");
    }
}
