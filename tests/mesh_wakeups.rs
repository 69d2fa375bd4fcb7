//! The cross-executor channel wake-ups natsu changed in its copy of glommio
//! (`vendor/glommio/NATSU-PATCHES.md`): a full fence instead of `membarrier` before an
//! executor sleeps, and a receiver that wakes the sending executor only when its pop may have
//! made room in a full channel. A lost wake-up shows as a channel that stalls, so every
//! exchange here must finish, in order, well within its time limit. The last tests cover the
//! main ring's cooperative completions (IORING_SETUP_COOP_TASKRUN) and the preemption of a
//! busy executor once its main ring has many completions (IORING_OP_MSG_RING).

use std::sync::mpsc;
use std::time::Duration;

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};

/// Run `items` through a channel of `capacity` between two executors; the sender pauses every
/// `send_pause` items, the receiver every `recv_pause` items (0: never), so each side keeps
/// falling asleep while the other is busy. Returns the items received, in order.
fn exchange(items: u32, capacity: usize, send_pause: u32, recv_pause: u32) -> Vec<u32> {
    let (tx, rx) = shared_channel::new_bounded::<u32>(capacity);
    let producer = LocalExecutorBuilder::new(Placement::Unbound)
        .name("mesh-test-send")
        .spawn(move || async move {
            let tx = tx.connect().await;
            for i in 0..items {
                tx.send(i).await.expect("the receiver went away");
                if send_pause != 0 && i % send_pause == 0 {
                    glommio::timer::sleep(Duration::from_micros(200)).await;
                }
            }
        })
        .expect("sender executor");
    let (done_tx, done_rx) = mpsc::channel();
    let consumer = LocalExecutorBuilder::new(Placement::Unbound)
        .name("mesh-test-recv")
        .spawn(move || async move {
            let rx = rx.connect().await;
            let mut got = Vec::with_capacity(items as usize);
            while let Some(i) = rx.recv().await {
                got.push(i);
                if recv_pause != 0 && i % recv_pause == 0 {
                    glommio::timer::sleep(Duration::from_micros(200)).await;
                }
            }
            let _ = done_tx.send(got);
        })
        .expect("receiver executor");
    let got = done_rx.recv_timeout(Duration::from_secs(60)).expect("the exchange stalled: a wake-up was lost");
    producer.join().expect("sender");
    consumer.join().expect("receiver");
    got
}

fn assert_in_order(got: &[u32], items: u32) {
    assert_eq!(got.len(), items as usize, "items were lost");
    assert!(got.iter().enumerate().all(|(n, &i)| n as u32 == i), "items out of order");
}

#[test]
fn a_sender_waiting_for_room_is_woken_by_the_receiver() {
    // A slow receiver and a tiny channel: the sender finds it full again and again and
    // sleeps until a pop makes room.
    let items = 20_000;
    assert_in_order(&exchange(items, 2, 0, 97), items);
}

#[test]
fn a_sleeping_receiver_is_woken_by_each_send() {
    // A slow sender: the receiver empties the channel and sleeps before every burst.
    let items = 20_000;
    assert_in_order(&exchange(items, 64, 89, 0), items);
}

#[test]
fn both_sides_sleeping_in_turn() {
    let items = 100_000;
    assert_in_order(&exchange(items, 4, 1_009, 997), items);
}

#[test]
fn short_timers_always_fire() {
    // An executor with nothing else to do parks until its next timer. A timer due within
    // microseconds can fire while the executor is still getting ready to sleep; it must still
    // wake it (a lost one sleeps until something else happens: here, never).
    let (done_tx, done_rx) = mpsc::channel();
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .name("timer-test")
        .spawn(move || async move {
            for i in 0..20_000u64 {
                glommio::timer::sleep(Duration::from_micros(i % 40)).await;
            }
            let _ = done_tx.send(());
        })
        .expect("timer executor");
    done_rx.recv_timeout(Duration::from_secs(60)).expect("a timer's wake-up was lost");
    ex.join().expect("timer executor");
}

/// A peer that connects to a fresh listener and, after `delay`, writes "hello".
fn delayed_hello(delay: Duration) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = listener.accept().expect("the executor connects");
        std::thread::sleep(delay);
        s.write_all(b"hello").expect("write to the executor");
        std::thread::sleep(Duration::from_millis(100));
    });
    (addr, peer)
}

/// The main ring takes network completions cooperatively (IORING_SETUP_COOP_TASKRUN): the
/// kernel does not interrupt a running executor for them, they are posted at its next system
/// call. An executor kept busy by a task that computes and yields without a system call, or
/// one spinning before it parks, must still see a read complete. A liveness check: glommio's
/// loop enters the kernel often enough that it also passes with the flag on every ring.
#[test]
fn busy_and_spinning_executors_see_network_completions() {
    for spin in [None, Some(Duration::from_secs(5))] {
        let (addr, peer) = delayed_hello(Duration::from_millis(50));
        let (done_tx, done_rx) = mpsc::channel();
        let mut builder = LocalExecutorBuilder::new(Placement::Unbound).name("coop-test");
        if let Some(spin) = spin {
            builder = builder.spin_before_park(spin);
        }
        let ex = builder
            .spawn(move || async move {
                use futures_lite::AsyncReadExt;
                let done = std::rc::Rc::new(std::cell::Cell::new(false));
                // Without a spin, a task that keeps the executor busy: compute, yield, again.
                let busy = spin.is_none().then(|| {
                    let done = done.clone();
                    glommio::spawn_local(async move {
                        while !done.get() {
                            let t = std::time::Instant::now();
                            while t.elapsed() < Duration::from_micros(500) {
                                std::hint::spin_loop();
                            }
                            glommio::executor().yield_now().await;
                        }
                    })
                });
                let mut s = glommio::net::TcpStream::connect(addr).await.expect("connect");
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.expect("read hello");
                done.set(true);
                if let Some(busy) = busy {
                    busy.await;
                }
                let _ = done_tx.send(buf);
            })
            .expect("executor");
        let got = done_rx.recv_timeout(Duration::from_secs(20)).expect("the read never completed");
        assert_eq!(&got, b"hello", "spin {spin:?}");
        ex.join().expect("executor");
        peer.join().expect("peer");
    }
}

/// glommio preempts a busy executor's tasks (to reap its rings) when the time slice ends or
/// each time the main ring has had `ring_depth` more completions. The second goes through a
/// count timeout on the main ring linked with an IORING_OP_MSG_RING that posts a CQE to the
/// latency ring (natsu's change: upstream links a write to an eventfd, which the kernel hands
/// to a worker thread). With a time slice of a minute, only that path can let any of 300
/// readers see their data while a task keeps the executor busy; a message that went astray
/// would leave them all waiting for the minute and fail here.
#[test]
fn many_completions_preempt_a_busy_executor() {
    const READERS: usize = 300;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let addr = listener.local_addr().unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        use std::io::Write;
        let mut conns: Vec<_> = (0..READERS).map(|_| listener.accept().expect("the executor connects").0).collect();
        go_rx.recv_timeout(Duration::from_secs(20)).expect("the executor is ready");
        for c in &mut conns {
            c.write_all(b"hello").expect("write to the executor");
        }
        // Keep the sockets open until the executor has read (it closes its ends).
        let _ = go_rx.recv_timeout(Duration::from_secs(30));
    });
    let (done_tx, done_rx) = mpsc::channel();
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .name("throughput-preempt-test")
        .ring_depth(128)
        .preempt_timer(Duration::from_secs(60))
        .spawn(move || async move {
            use futures_lite::AsyncReadExt;
            let mut streams = Vec::new();
            for _ in 0..READERS {
                streams.push(glommio::net::TcpStream::connect(addr).await.expect("connect"));
            }
            let left = std::rc::Rc::new(std::cell::Cell::new(READERS));
            let readers: Vec<_> = streams
                .into_iter()
                .map(|mut s| {
                    let left = left.clone();
                    glommio::spawn_local(async move {
                        let mut buf = [0u8; 5];
                        s.read_exact(&mut buf).await.expect("read hello");
                        assert_eq!(&buf, b"hello");
                        left.set(left.get() - 1);
                    })
                })
                .collect();
            // Let every reader arm its poll, and the executor hand the polls to the kernel. It
            // does that whenever it runs out of tasks, before it can sleep: waiting on any
            // timer, however short, guarantees it (this is not a wait for time to pass).
            glommio::timer::sleep(Duration::from_millis(1)).await;
            go_tx.send(()).expect("the peer waits");
            // Keep the executor busy until a reader has its data. Each turn makes a system
            // call, which is when the kernel posts the cooperative completions. (Readers
            // past the last multiple of `ring_depth` wait for this task to stop.)
            let busy_until = std::time::Instant::now() + Duration::from_secs(20);
            while left.get() == READERS && std::time::Instant::now() < busy_until {
                // SAFETY: getppid has no preconditions.
                unsafe { libc::getppid() };
                glommio::executor().yield_now().await;
            }
            let seen_while_busy = READERS - left.get();
            for r in readers {
                r.await;
            }
            let _ = go_tx.send(());
            let _ = done_tx.send(seen_while_busy);
        })
        .expect("executor");
    let seen = done_rx.recv_timeout(Duration::from_secs(60)).expect("the executor finished");
    assert!(seen > 0, "no reader saw its data while a task kept the executor busy");
    ex.join().expect("executor");
    peer.join().expect("peer");
}

/// This thread's voluntary context switches: each time it slept.
fn voluntary_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("/proc/thread-self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// An executor's spin before it parks adapts (natsu's change, after Linux's cpuidle-haltpoll):
/// a sleep cut short within four times the configured spin doubles the spin, up to that; a
/// longer sleep halves it back. Bytes that arrive every ~120 µs, against a 50 µs spin, find
/// the executor asleep each time unless the spin grew; with it, the executor hardly sleeps.
#[test]
fn the_spin_grows_while_work_comes_just_after_parking() {
    const MSGS: usize = 3_000;
    let gap = Duration::from_micros(120);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = listener.accept().expect("the executor connects");
        s.set_nodelay(true).unwrap();
        let start = std::time::Instant::now();
        for i in 1..=MSGS as u32 {
            // Busy-wait: a sleeping sender would add its own wake-up to every gap.
            while start.elapsed() < gap * i {
                std::hint::spin_loop();
            }
            s.write_all(b"x").expect("write to the executor");
        }
        // Closing is fine: the executor reads every byte sent before the end of the stream.
    });
    let (done_tx, done_rx) = mpsc::channel();
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .name("adaptive-spin-test")
        .spin_before_park(Duration::from_micros(50))
        .spawn(move || async move {
            use futures_lite::AsyncReadExt;
            let mut s = glommio::net::TcpStream::connect(addr).await.expect("connect");
            let mut buf = [0u8; 64];
            let mut got = s.read(&mut buf).await.expect("read");
            let before = voluntary_switches();
            while got < MSGS {
                let n = s.read(&mut buf).await.expect("read");
                assert!(n > 0, "the peer closed early");
                got += n;
            }
            let _ = done_tx.send(voluntary_switches() - before);
        })
        .expect("executor");
    let sleeps = done_rx.recv_timeout(Duration::from_secs(30)).expect("the executor read everything");
    ex.join().expect("executor");
    peer.join().expect("peer");
    assert!(
        (sleeps as usize) < MSGS / 4,
        "the executor slept {sleeps} times for {MSGS} messages ~120 µs apart: its 50 µs spin did not grow"
    );
}
