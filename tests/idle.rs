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
