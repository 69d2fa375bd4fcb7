//! An idle broker sleeps: after traffic has crossed both cores, with clients still connected
//! and silent, natsu's threads neither burn CPU nor wake up more than the control plane's
//! four looks a second per core (no busy polling, no timer that fires while there is nothing
//! to do). natsu's copy of glommio keeps preemption
//! timers armed between turns of the executor loop and must still cancel them before sleeping
//! (`vendor/glommio/NATSU-PATCHES.md`); a timer left armed would wake each executor several
//! times a second.
//!
//! natsu only: the reference's Go runtime has its own periodic wake-ups.

mod common;

use std::time::Duration;

use common::{Limits, Raw, Server};

/// CPU ticks (utime + stime) of a process, and the times any of its threads went to sleep
/// (voluntary context switches: wake-ups; a thread that yields its CPU to another program's
/// thread, as a spinning executor does, is switched involuntarily, and that depends on what
/// else runs on the machine).
fn cpu_and_switches(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the broker's /proc stat");
    // The fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th of them.
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the broker's threads") {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        switches += status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    (ticks, switches)
}

#[test]
fn an_idle_broker_neither_spins_nor_wakes() {
    if common::reference() {
        return;
    }
    let server = Server::with(&Limits::default(), &["--cores", "2"]);
    // Enough connections that both cores hold some, each subscribed, and traffic that every
    // subscriber receives (so cross-core mail has flowed both ways).
    let connect = || Raw::connect_with(server.port, r#"{"verbose":false,"pedantic":false}"#);
    let mut subs: Vec<Raw> = (0..8).map(|_| connect()).collect();
    for s in subs.iter_mut() {
        s.send("SUB idle.test 1\r\nPING\r\n");
        s.expect("PONG\r\n");
    }
    let mut pubs: Vec<Raw> = (0..4).map(|_| connect()).collect();
    for p in pubs.iter_mut() {
        for _ in 0..50 {
            p.send("PUB idle.test 5\r\nhello\r\n");
        }
        p.send("PING\r\n");
        p.expect("PONG\r\n");
    }
    for s in subs.iter_mut() {
        for _ in 0..200 {
            s.expect("MSG idle.test 1 5\r\nhello\r\n");
        }
    }
    // Let the last writes and cross-core acknowledgements settle, then watch.
    std::thread::sleep(Duration::from_millis(300));
    let (ticks0, switches0) = cpu_and_switches(server.pid());
    std::thread::sleep(Duration::from_secs(3));
    let (ticks1, switches1) = cpu_and_switches(server.pid());
    let (ticks, switches) = (ticks1 - ticks0, switches1 - switches0);
    // A spinning executor would use ~300 ticks in 3 s. Each executor looks at the control
    // plane four times a second (CONTROL_TICK), 24 wake-ups for two executors in 3 s, each
    // followed by the default 50 µs `--spin` (~1 ms in all); a preemption timer left armed
    // while asleep would add ~30 wake-ups per executor.
    assert!(ticks <= 3, "an idle broker used {ticks} CPU ticks in 3 s");
    assert!(switches <= 32, "an idle broker's threads slept and woke {switches} times in 3 s");
    // Still serving afterwards.
    pubs[0].send("PUB idle.test 3\r\nbye\r\n");
    subs[0].expect("MSG idle.test 1 3\r\nbye\r\n");
}

/// `--spin`: an executor that runs out of work keeps polling for that long before it sleeps,
/// and no longer. With 10 ms after each of 40 PINGs 25 ms apart, the broker uses about 400 ms
/// of CPU (each spin yields to other ready threads, so on a loaded machine it gets less; the
/// bound is a quarter of that); left alone afterwards, it spins only after its control-plane
/// look four times a second, ~40 ms a second, not a whole core.
#[test]
fn a_spinning_executor_polls_after_work_then_sleeps() {
    if common::reference() {
        return;
    }
    let server = Server::with(&Limits::default(), &["--cores", "1", "--spin", "10ms"]);
    let mut c = Raw::connect_with(server.port, r#"{"verbose":false,"pedantic":false}"#);
    c.send("PING\r\n");
    c.expect("PONG\r\n");
    let (ticks0, _) = cpu_and_switches(server.pid());
    for _ in 0..40 {
        c.send("PING\r\n");
        c.expect("PONG\r\n");
        std::thread::sleep(Duration::from_millis(25));
    }
    let (ticks1, _) = cpu_and_switches(server.pid());
    assert!(ticks1 - ticks0 >= 10, "40 spins of 10 ms used only {} CPU ticks", ticks1 - ticks0);
    std::thread::sleep(Duration::from_millis(300));
    let (ticks2, _) = cpu_and_switches(server.pid());
    std::thread::sleep(Duration::from_secs(2));
    let (ticks3, _) = cpu_and_switches(server.pid());
    assert!(ticks3 - ticks2 <= 16, "an idle broker with --spin 10ms used {} CPU ticks in 2 s", ticks3 - ticks2);
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the broker's /proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A subscriber that stops reading makes the broker queue its messages (here ~40 MB, under
/// max_pending). The write buffers that grew for that backlog are kept while it lasts and
/// given back once it has drained and the connection has been quiet for a second.
#[test]
fn a_drained_backlogs_buffers_are_given_back() {
    use std::io::{Read, Write};
    if common::reference() {
        return;
    }
    let server = Server::with(&Limits::default(), &["--cores", "1"]);
    let connect = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n").unwrap();
        // This PONG is taken here, so that each PONG awaited below answers the test's own
        // later PING (a publisher's first PONG is not "every PUB handled").
        read_until(&mut s, |t| t.ends_with(b"PONG\r\n"));
        s
    };
    // Read until what has arrived satisfies `done` (given at least the last 64 bytes).
    fn read_until(s: &mut std::net::TcpStream, mut done: impl FnMut(&[u8]) -> bool) {
        let mut buf = vec![0u8; 1 << 16];
        let mut tail = Vec::new();
        loop {
            let n = s.read(&mut buf).expect("read from the broker");
            assert!(n > 0, "the broker closed the connection");
            tail.extend_from_slice(&buf[..n]);
            if done(&tail) {
                return;
            }
            // Keep only what a marker split across reads needs.
            if tail.len() > 64 {
                tail.drain(..tail.len() - 64);
            }
        }
    }
    let mut sub = connect();
    sub.write_all(b"SUB big 1\r\nPING\r\n").unwrap();
    read_until(&mut sub, |t| t.ends_with(b"PONG\r\n"));
    let before = rss(server.pid());
    let mut publ = connect();
    let payload = vec![b'x'; 1024];
    let mut frame = b"PUB big 1024\r\n".to_vec();
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(b"\r\n");
    for _ in 0..40_000 {
        publ.write_all(&frame).unwrap();
    }
    publ.write_all(b"PING\r\n").unwrap();
    read_until(&mut publ, |t| t.ends_with(b"PONG\r\n"));
    let queued = rss(server.pid());
    assert!(queued > before + (20 << 20), "the backlog did not show: {before} -> {queued} bytes resident");
    // Drain: every message, then the PONG queued after them (payloads are all 'x').
    sub.write_all(b"PING\r\n").unwrap();
    read_until(&mut sub, |t| t.ends_with(b"PONG\r\n"));
    // Given back a second after the last big pass: watch for it, for up to ten.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut after = rss(server.pid());
    while after >= before + (8 << 20) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = rss(server.pid());
    }
    assert!(after < before + (8 << 20), "resident memory {before} before the backlog, {queued} with it, {after} after it drained");
}
