//! The server pool: the servers a connection may use, in the order it tries them.
//!
//! As nats.go: the given servers are shuffled unless told not to; servers a cluster
//! advertises in INFO join the pool; on reconnect the current server moves to the back and
//! the front one is tried, waiting out `reconnect_wait` since that server's last attempt;
//! a server that used up its attempts leaves the pool.

use std::time::{Duration, Instant};

use super::nuid::random_u64;
use super::url::ServerAddr;

struct Server {
    addr: ServerAddr,
    /// Attempts since this server last accepted us.
    reconnects: u64,
    last_attempt: Option<Instant>,
    /// Learned from INFO `connect_urls`, not given by the user.
    implicit: bool,
}

pub(crate) struct Pool {
    servers: Vec<Server>,
}

fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = (random_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

impl Pool {
    pub(crate) fn new(addrs: Vec<ServerAddr>, randomize: bool) -> Pool {
        let mut servers: Vec<Server> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            if !servers.iter().any(|s| s.addr.host_port() == addr.host_port()) {
                servers.push(Server { addr, reconnects: 0, last_attempt: None, implicit: false });
            }
        }
        if randomize {
            shuffle(&mut servers);
        }
        Pool { servers }
    }

    pub(crate) fn len(&self) -> usize {
        self.servers.len()
    }

    /// Mark a reconnect attempt on server `i` and return its address.
    pub(crate) fn attempt(&mut self, i: usize) -> ServerAddr {
        self.servers[i].reconnects += 1;
        self.first_attempt(i)
    }

    /// Mark a first-connect attempt: as nats.go, it does not use up a reconnect attempt.
    pub(crate) fn first_attempt(&mut self, i: usize) -> ServerAddr {
        let s = &mut self.servers[i];
        s.last_attempt = Some(Instant::now());
        s.addr.clone()
    }

    /// Server `i` accepted us.
    pub(crate) fn connected(&mut self, i: usize) {
        self.servers[i].reconnects = 0;
    }

    /// Rotate `current` to the back (or out, when it used up `max` attempts; negative `max`
    /// is unlimited) and return the server to try next, now at the front.
    pub(crate) fn select_next(&mut self, current: Option<&ServerAddr>, max: i64) -> Option<ServerAddr> {
        if let Some(cur) = current {
            if let Some(i) = self.servers.iter().position(|s| s.addr.host_port() == cur.host_port()) {
                let s = self.servers.remove(i);
                if max < 0 || s.reconnects < max as u64 {
                    self.servers.push(s);
                }
            }
        }
        self.servers.retain(|s| max < 0 || s.reconnects < max as u64);
        self.servers.first().map(|s| s.addr.clone())
    }

    /// How long to wait before trying server `i` again.
    pub(crate) fn wait_before(&self, i: usize, reconnect_wait: Duration) -> Duration {
        match self.servers.get(i).and_then(|s| s.last_attempt) {
            Some(t) => reconnect_wait.saturating_sub(t.elapsed()),
            None => Duration::ZERO,
        }
    }

    /// Add a server a cluster told us about; false if it was known.
    pub(crate) fn add_discovered(&mut self, addr: ServerAddr, randomize: bool) -> bool {
        if self.servers.iter().any(|s| s.addr.host_port() == addr.host_port()) {
            return false;
        }
        self.servers.push(Server { addr, reconnects: 0, last_attempt: None, implicit: true });
        if randomize && self.servers.len() > 2 {
            // Keep the front (the current server) and shuffle the rest, as nats.go does.
            shuffle(&mut self.servers[1..]);
        }
        true
    }

    /// URLs of the pool, or only those learned from INFO.
    pub(crate) fn urls(&self, implicit_only: bool) -> Vec<String> {
        self.servers.iter().filter(|s| !implicit_only || s.implicit).map(|s| s.addr.url()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &str) -> Vec<ServerAddr> {
        super::super::url::parse_list(list).unwrap()
    }

    #[test]
    fn keeps_order_without_randomize_and_rotates() {
        let mut p = Pool::new(addrs("a:1,b:2,c:3,a:1"), false);
        assert_eq!(p.urls(false), vec!["nats://a:1", "nats://b:2", "nats://c:3"]);
        let a = p.attempt(0);
        let next = p.select_next(Some(&a), 60).unwrap();
        assert_eq!(next.url(), "nats://b:2");
        assert_eq!(p.urls(false), vec!["nats://b:2", "nats://c:3", "nats://a:1"]);
    }

    #[test]
    fn servers_leave_after_max_attempts() {
        let mut p = Pool::new(addrs("a:1,b:2"), false);
        let mut cur = p.attempt(0);
        for _ in 0..3 {
            cur = match p.select_next(Some(&cur), 2) {
                Some(next) => {
                    p.attempt(0);
                    next
                }
                None => break,
            };
        }
        assert!(p.select_next(Some(&cur), 2).is_none());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn discovered_servers_are_added_once() {
        let mut p = Pool::new(addrs("a:1"), true);
        assert!(p.add_discovered(ServerAddr::parse("b:2").unwrap(), true));
        assert!(!p.add_discovered(ServerAddr::parse("nats://b:2").unwrap(), true));
        assert_eq!(p.urls(true), vec!["nats://b:2"]);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn wait_counts_from_the_last_attempt() {
        let mut p = Pool::new(addrs("a:1"), false);
        assert_eq!(p.wait_before(0, Duration::from_secs(2)), Duration::ZERO);
        p.attempt(0);
        assert!(p.wait_before(0, Duration::from_secs(2)) > Duration::from_secs(1));
    }
}
