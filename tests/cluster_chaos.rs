//! A node of a cluster dies mid-traffic and comes back: three nodes (A natsu, the seed; B
//! natsu; C nats-server), a publisher on A sending numbered messages at a steady rate, raw
//! subscribers on A and C (and one on B). B is killed with SIGKILL; A and C keep delivering; B restarts on
//! the same ports, the routes form again, and a new subscriber on B gets the traffic. No
//! subscription ever sees a number twice or out of order, none skips one, and none gets a
//! message after its UNSUB was answered.
//!
//! Loopback only. Every wait is bounded by [`WAIT`], the publisher by [`MAX_MSGS`]; every
//! process is stopped by PID (the nodes when dropped). With `NATSU_TEST_TARGET=reference`
//! A and B are nats-server too.

mod common;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::cluster::{mesh, read_frame, wait_full_mesh, wait_route_sub, Frame, Kind, Node, Topology, WAIT};
use common::Raw;

const SUBJECT: &str = "chaos.seq";
/// Between two publishes: about a thousand messages a second.
const INTERVAL: Duration = Duration::from_millis(1);
/// The publisher stops here whatever happens (a minute of traffic at most).
const MAX_MSGS: u64 = 60_000;
/// Messages a subscription must get to count as "delivering" at each stage.
const STAGE: u64 = 300;

/// What a subscriber's connection has seen.
#[derive(Default)]
struct Seen {
    /// Numbers received on sid 1 and on sid 2 (both on [`SUBJECT`]), in arrival order.
    sids: [Vec<u64>; 2],
    /// The PONG that answers the PING after `UNSUB 1` has arrived.
    unsub_answered: bool,
    /// Numbers received on sid 1 after that PONG: there must be none.
    after_unsub: Vec<u64>,
    /// Anything else the server sent.
    other: Vec<String>,
}

/// A raw connection with two subscriptions on [`SUBJECT`], read by its own thread.
struct Watch {
    what: String,
    /// For UNSUB and PING from the test thread.
    writer: TcpStream,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    /// Messages on sid 2 when `UNSUB 1` was sent.
    unsub_mark: u64,
}

impl Watch {
    fn start(node: &Node) -> Watch {
        let mut raw = Raw::connect_with(node.ports.client, r#"{"verbose":false}"#);
        raw.send(&format!("SUB {SUBJECT} 1\r\nSUB {SUBJECT} 2\r\n"));
        raw.flush();
        let writer = raw.s.try_clone().expect("clone the subscriber's socket");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        // Traffic never pauses while the watch runs, so the read timeout (5 s, a panic)
        // only fires when delivery has stopped, which is a failure anyway.
        let reader = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let frame = read_frame(&mut raw);
                let mut seen = seen2.lock().unwrap();
                match frame {
                    Frame::Msg { sid, payload, .. } => {
                        let n: u64 = payload.parse().unwrap_or_else(|_| panic!("payload {payload:?} is not a number"));
                        match sid.as_str() {
                            "1" if seen.unsub_answered => seen.after_unsub.push(n),
                            "1" => seen.sids[0].push(n),
                            "2" => seen.sids[1].push(n),
                            _ => seen.other.push(format!("MSG on sid {sid}")),
                        }
                    }
                    Frame::Line(line) if line == "PONG\r\n" => seen.unsub_answered = true,
                    Frame::Line(line) if line == "PING\r\n" => raw.send("PONG\r\n"),
                    Frame::Line(line) => seen.other.push(line),
                }
            }
        });
        Watch { what: format!("the subscriber on {node}"), writer, seen, stop, reader: Some(reader), unsub_mark: 0 }
    }

    /// Panic with the reader's own message if it has died.
    fn check_alive(&mut self) {
        if self.reader.as_ref().is_some_and(JoinHandle::is_finished) && !self.stop.load(Ordering::Relaxed) {
            let why = match self.reader.take().map(JoinHandle::join) {
                Some(Err(e)) => {
                    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                }
                _ => None,
            };
            panic!("{}: reader stopped: {}", self.what, why.unwrap_or_default());
        }
    }

    /// How many messages sid 2 has had, and the highest number it has seen.
    fn progress(&self) -> (u64, u64) {
        let seen = self.seen.lock().unwrap();
        (seen.sids[1].len() as u64, seen.sids[1].last().copied().unwrap_or(0))
    }

    /// UNSUB sid 1, and PING: the PONG says the server has done it.
    fn unsub(&mut self) {
        use std::io::Write;
        self.unsub_mark = self.progress().0;
        self.writer.write_all(b"UNSUB 1\r\nPING\r\n").expect("send UNSUB");
    }

    /// Stop the reader (after its next message) and hand back what it saw.
    fn finish(mut self) -> (String, Seen) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            if let Err(e) = reader.join() {
                std::panic::resume_unwind(e);
            }
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        (self.what.clone(), seen)
    }
}

/// Poll until `done` holds for every watch; [`WAIT`] at most.
fn wait_all(what: &str, watches: &mut [&mut Watch], done: impl Fn(&Watch) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        for w in watches.iter_mut() {
            w.check_alive();
        }
        if watches.iter().all(|w| done(w)) {
            return;
        }
        let progress: Vec<String> = watches.iter().map(|w| format!("{}: {:?}", w.what, w.progress())).collect();
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}; (messages, highest) on sid 2: {progress:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A steady publisher of 1, 2, 3, ... on A, counting what it has sent.
struct Publisher {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    fn start(node: &Node) -> Publisher {
        let mut raw = Raw::connect_with(node.ports.client, r#"{"verbose":false}"#);
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (sent2, stop2) = (sent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for n in 1..=MAX_MSGS {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let payload = n.to_string();
                // Counted before it is sent: a subscriber may see it before this thread goes on.
                sent2.store(n, Ordering::Relaxed);
                raw.send(&format!("PUB {SUBJECT} {}\r\n{payload}\r\n", payload.len()));
                std::thread::sleep(INTERVAL);
            }
        });
        Publisher { sent, stop, thread: Some(thread) }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `numbers` goes up by exactly one each time: no repeat, no reordering, no gap.
fn assert_consecutive(what: &str, numbers: &[u64]) {
    if let Some(i) = numbers.windows(2).position(|w| w[1] != w[0] + 1) {
        let around = &numbers[i.saturating_sub(3)..(i + 5).min(numbers.len())];
        panic!("{what}: {} followed by {} (around: {around:?})", numbers[i], numbers[i + 1]);
    }
}

#[test]
fn kill_and_restart_a_natsu_node_mid_traffic() {
    let mut nodes = mesh(&[Kind::Natsu, Kind::Natsu, Kind::Reference], Topology::Seed);
    let mut on_a = Watch::start(&nodes[0]);
    let mut on_c = Watch::start(&nodes[2]);
    // A subscriber on B that never reads: A is forwarding to B when B dies.
    let mut doomed = Raw::connect_with(nodes[1].ports.client, r#"{"verbose":false}"#);
    doomed.send(&format!("SUB {SUBJECT} 1\r\n"));
    doomed.flush();
    wait_route_sub(&nodes[0], &nodes[2], SUBJECT, true);
    wait_route_sub(&nodes[0], &nodes[1], SUBJECT, true);
    let publisher = Publisher::start(&nodes[0]);
    wait_all("traffic on A and C", &mut [&mut on_a, &mut on_c], |w| w.progress().0 >= STAGE);

    nodes[1].kill();
    drop(doomed);
    let killed_at = publisher.sent();
    wait_all(
        &format!("A and C to deliver past {} after B was killed", killed_at + STAGE),
        &mut [&mut on_a, &mut on_c],
        |w| w.progress().1 >= killed_at + STAGE,
    );

    nodes[1].restart();
    wait_full_mesh(&nodes);
    let mut on_b = Watch::start(&nodes[1]);
    wait_all("traffic on the restarted B", &mut [&mut on_b, &mut on_a, &mut on_c], |w| w.progress().0 >= STAGE);

    for w in [&mut on_a, &mut on_b, &mut on_c] {
        w.unsub();
    }
    wait_all("UNSUB 1 answered, then more traffic on sid 2", &mut [&mut on_a, &mut on_b, &mut on_c], |w| {
        w.seen.lock().unwrap().unsub_answered && w.progress().0 >= w.unsub_mark + STAGE
    });
    // The readers stop on their next message: the publisher must still be running.
    let results: Vec<(String, Seen)> = [on_a, on_b, on_c].into_iter().map(Watch::finish).collect();
    let sent = publisher.sent();
    drop(publisher);

    for (what, seen) in results {
        assert!(seen.other.is_empty(), "{what} got {:?}", seen.other);
        assert!(
            seen.after_unsub.is_empty(),
            "{what} got {} messages on sid 1 after its UNSUB was answered",
            seen.after_unsub.len()
        );
        for (sid, numbers) in seen.sids.iter().enumerate() {
            assert!(!numbers.is_empty(), "{what}: nothing on sid {}", sid + 1);
            assert_consecutive(&format!("{what}, sid {}", sid + 1), numbers);
            assert!(numbers.last().is_some_and(|&n| n <= sent), "{what}: a number above the {sent} sent");
        }
    }
}
