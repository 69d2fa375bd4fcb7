//! Driving a server: publishers and subscribers spread over one glommio executor per core.
//!
//! Every client has its own connection (as `nats bench`). Subscribers consume with inline
//! handlers (no copy, no queue), publishers with `publish().await`, which batches frames into
//! one write per pass. All clients connect and subscribe first; publishing starts when every
//! one is ready, so no message is published to a subscription the server does not have yet.
//!
//! With `--sub-url` the subscribers are on another server than the publishers, and their
//! interest crosses the route some time after their flush returned: the first publisher then
//! publishes probes (marked by their reply subject, which subscribers skip) until the
//! subscribers have seen one, before anyone counts or times anything.
//!
//! Latency: a publisher writes its send time (CLOCK_MONOTONIC, nanoseconds; at a fixed
//! `--rate`, the time the message was *due*, so a stalled publisher does not hide the stall)
//! into the first 8 payload bytes, and subscribers record now − then. Both ends are in this
//! process, so no clock needs synchronising. Requests record their round trip.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use natsu::client::{Connection, Options};

use super::summary::Workload;

/// Highest latency a histogram records (60 s); anything above counts as this.
const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// How long subscribers wait for stragglers once no message has arrived and publishers are done.
const IDLE_GIVE_UP: Duration = Duration::from_secs(3);
/// The reply subject that marks a probe: subscribers count it apart and responders do not answer.
const PROBE_REPLY: &str = "natsu-bench.probe";
/// How long probes may take to reach the subscribers of `--sub-url` before the run gives up.
const PROBE_GIVE_UP: Duration = Duration::from_secs(10);
/// Time between probes.
const PROBE_EVERY: Duration = Duration::from_millis(5);

/// What to run: the workload, and where and how.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where publishers (requesters) connect, and subscribers too without `sub_url`.
    pub url: String,
    /// Where subscribers (responders) connect: another server, across a route.
    pub sub_url: Option<String>,
    pub w: Workload,
    pub progress: bool,
    /// Servers whose CPU seconds the run reports, summed (both servers of a route pair).
    pub server_pids: Vec<u32>,
    /// PEM file of the CA that signed the server's certificate (`tls://` URLs).
    pub tls_ca: Option<std::path::PathBuf>,
}

impl Config {
    fn duration(&self) -> Option<Duration> {
        self.w.duration_secs.map(Duration::from_secs_f64)
    }

    fn subscriber_url(&self) -> &str {
        self.sub_url.as_deref().unwrap_or(&self.url)
    }
}

/// One client's outcome.
pub struct ClientResult {
    pub publisher: bool,
    pub msgs: u64,
    pub bytes: u64,
    pub secs: f64,
    pub start: Instant,
    pub end: Instant,
    pub latency: Option<Histogram<u64>>,
    pub errors: u64,
}

/// Everything a run produced.
pub struct Outcome {
    pub clients: Vec<ClientResult>,
    /// Messages subscribers expected in all.
    pub expected: u64,
    pub server_cpu_secs: Option<f64>,
    pub server_name: String,
    pub server_version: String,
}

/// State shared by every executor of a run.
#[derive(Default)]
struct Shared {
    ready: AtomicUsize,
    /// Subscribers subscribed and flushed (the first publisher probes only after them).
    subs_ready: AtomicUsize,
    /// Per subscriber: probes seen before the start.
    probed: Vec<AtomicU64>,
    go: AtomicBool,
    failed: AtomicBool,
    published: AtomicU64,
    pubs_done: AtomicUsize,
    /// Messages actually published (known once publishers are done; for `--duration`).
    sent: AtomicU64,
    /// Per subscriber: messages received so far (updated every few ms, not per message).
    received: Vec<AtomicU64>,
    executors_done: AtomicUsize,
    server: std::sync::Mutex<(String, String)>,
    tls_ca: Option<std::path::PathBuf>,
}

use super::clock::now_ns;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// Server CPU seconds (utime + stime) from /proc.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / hz)
}

/// The CPU seconds of every server, summed (None without servers or when one cannot be read).
fn servers_cpu_secs(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_secs(pid)).sum()
}

/// Run the workload and gather every client's figures.
pub fn run(cfg: &Config) -> Result<Outcome, String> {
    // Calibrate the timestamp clock before any client runs.
    super::clock::init();
    let total = cfg.w.pubs + cfg.w.subs;
    if total == 0 {
        return Err("nothing to run: give --pub and/or --sub".into());
    }
    if cfg.w.request && (cfg.w.pubs == 0 || cfg.w.subs == 0) {
        return Err("--request needs publishers (requesters) and subscribers (responders)".into());
    }
    let per_sub = || (0..cfg.w.subs).map(|_| AtomicU64::new(0)).collect();
    let shared = Arc::new(Shared { received: per_sub(), probed: per_sub(), tls_ca: cfg.tls_ca.clone(), ..Default::default() });
    let cores = cfg.w.cores.clamp(1, total);
    let mut handles = Vec::new();
    for core in 0..cores {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        let h = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("bench-{core}"))
            .io_memory(256 << 10)
            .ring_depth(256)
            .spin_before_park(std::time::Duration::from_micros(cfg.w.spin_us))
            .spawn(move || async move {
                let mut tasks = Vec::new();
                // Clients round-robin over executors: subscribers 0.., then publishers.
                for client in (core..total).step_by(cores) {
                    let (cfg, shared) = (cfg.clone(), shared.clone());
                    tasks.push(glommio::spawn_local(async move {
                        let r = if client < cfg.w.subs {
                            subscriber(&cfg, &shared, client).await
                        } else {
                            publisher(&cfg, &shared, client - cfg.w.subs).await
                        };
                        if let Err(e) = &r {
                            eprintln!("client {client}: {e}");
                            shared.failed.store(true, Ordering::SeqCst);
                        }
                        r
                    }));
                }
                let mut out = Vec::new();
                for t in tasks {
                    if let Ok(r) = t.await {
                        out.push(r);
                    }
                }
                shared.executors_done.fetch_add(1, Ordering::SeqCst);
                out
            })
            .map_err(|e| format!("cannot start a client executor: {e}"))?;
        handles.push(h);
    }

    // Wait for every client to connect (and subscribe), then start the clock.
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.ready.load(Ordering::SeqCst) < total {
        if shared.failed.load(Ordering::SeqCst) || Instant::now() > deadline {
            shared.failed.store(true, Ordering::SeqCst);
            shared.go.store(true, Ordering::SeqCst);
            for h in handles {
                let _ = h.join();
            }
            return Err("clients could not connect and subscribe (see above)".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let cpu_before = servers_cpu_secs(&cfg.server_pids);
    shared.go.store(true, Ordering::SeqCst);

    let bar = progress_bar(cfg);
    while shared.executors_done.load(Ordering::SeqCst) < cores {
        if let Some(bar) = &bar {
            let done = if cfg.w.pubs > 0 {
                shared.published.load(Ordering::Relaxed)
            } else {
                shared.received.iter().map(|r| r.load(Ordering::Relaxed)).sum()
            };
            bar.set_position(done);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let cpu_after = servers_cpu_secs(&cfg.server_pids);
    let mut clients = Vec::new();
    for h in handles {
        clients.extend(h.join().map_err(|e| format!("a client executor failed: {e}"))?);
    }
    if shared.failed.load(Ordering::SeqCst) {
        return Err("a client failed (see above)".into());
    }
    let sent = shared.sent.load(Ordering::SeqCst);
    let expected = match (cfg.w.request, cfg.w.queue) {
        (true, _) | (false, true) => sent,
        (false, false) => sent * cfg.w.subs as u64,
    };
    let (server_name, server_version) = shared.server.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(Outcome {
        clients,
        expected: if cfg.w.subs == 0 { 0 } else { expected },
        server_cpu_secs: cpu_before.zip(cpu_after).map(|(a, b)| b - a),
        server_name,
        server_version,
    })
}

fn progress_bar(cfg: &Config) -> Option<indicatif::ProgressBar> {
    if !cfg.progress || cfg.duration().is_some() {
        return None;
    }
    let total = if cfg.w.pubs > 0 { cfg.w.msgs } else { cfg.w.msgs * cfg.w.subs as u64 };
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} msgs ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    Some(bar)
}

async fn connect(url: &str, shared: &Shared, name: &str) -> Result<Connection, String> {
    let mut opts = Options::new()
        .name(name)
        // A benchmark must not stall on a publisher waiting for a reconnect.
        .allow_reconnect(false);
    if let Some(ca) = &shared.tls_ca {
        opts = opts.tls_root_ca(ca);
    }
    let nc = opts
        .connect(url)
        .await
        .map_err(|e| format!("connect to {url}: {e}"))?;
    if let Ok(mut s) = shared.server.lock() {
        if s.0.is_empty() {
            *s = (nc.connected_server_name(), nc.connected_server_version());
        }
    }
    Ok(nc)
}

/// Count this client ready and wait for the start, calling `tick` at every look.
async fn wait_for_go(shared: &Shared, tick: impl Fn()) -> Result<(), String> {
    shared.ready.fetch_add(1, Ordering::SeqCst);
    while !shared.go.load(Ordering::SeqCst) {
        tick();
        glommio::timer::sleep(Duration::from_micros(500)).await;
    }
    if shared.failed.load(Ordering::SeqCst) {
        return Err("run aborted".into());
    }
    Ok(())
}

/// What a subscriber counts, shared with its inline handler.
struct Counts {
    msgs: Cell<u64>,
    bytes: Cell<u64>,
    /// First and last message received, as [`now_ns`] read them (0: none yet).
    first: Cell<u64>,
    last: Cell<u64>,
    /// The socket read the last message came in with ([`MsgRef::read`]): messages of one
    /// read arrived together and share the clock reading of the first of them.
    ///
    /// [`MsgRef::read`]: natsu::client::MsgRef::read
    read: Cell<u64>,
    latency: RefCell<Histogram<u64>>,
    /// Probes seen (`--sub-url`): not messages of the run.
    probes: Cell<u64>,
}

async fn subscriber(cfg: &Config, shared: &Shared, index: usize) -> Result<ClientResult, String> {
    let nc = connect(cfg.subscriber_url(), shared, "natsu-bench-sub").await?;
    let counts = Rc::new(Counts {
        msgs: Cell::new(0),
        bytes: Cell::new(0),
        first: Cell::new(0),
        last: Cell::new(0),
        read: Cell::new(u64::MAX),
        latency: RefCell::new(histogram()),
        probes: Cell::new(0),
    });
    let c = counts.clone();
    let timed = !cfg.w.request && cfg.w.size >= 8;
    let replier = nc.clone();
    let request = cfg.w.request;
    let handler = move |m: &natsu::client::MsgRef<'_>| {
        if m.reply == Some(PROBE_REPLY) {
            c.probes.set(c.probes.get() + 1);
            return;
        }
        // One clock read per socket read: the messages of one read arrived together, and
        // under a flood a read holds hundreds (see clock.rs for why the clock matters).
        let now = if m.read == c.read.get() {
            c.last.get()
        } else {
            c.read.set(m.read);
            now_ns()
        };
        if c.first.get() == 0 {
            c.first.set(now);
        }
        c.last.set(now);
        c.msgs.set(c.msgs.get() + 1);
        c.bytes.set(c.bytes.get() + m.data.len() as u64);
        if request {
            if let Some(reply) = m.reply {
                // Echo the request back: the requester reads its own timestamp.
                let _ = replier.try_publish(reply, m.data);
            }
        } else if timed {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&m.data[..8]);
            let sent = u64::from_le_bytes(ts);
            let _ = c.latency.borrow_mut().record(now.saturating_sub(sent).clamp(1, MAX_LATENCY_NS));
        }
    };
    let sub = if cfg.w.queue || cfg.w.request {
        nc.queue_subscribe_inline(&cfg.w.subject, "natsu-bench", handler)
    } else {
        nc.subscribe_inline(&cfg.w.subject, handler)
    }
    .map_err(|e| e.to_string())?;
    nc.flush().await.map_err(|e| format!("subscribe: {e}"))?;
    shared.subs_ready.fetch_add(1, Ordering::SeqCst);
    wait_for_go(shared, || shared.probed[index].store(counts.probes.get(), Ordering::Relaxed)).await?;
    let start = Instant::now();
    let mut seen = 0;
    let mut last_change = Instant::now();
    loop {
        glommio::timer::sleep(Duration::from_millis(5)).await;
        let n = counts.msgs.get();
        shared.received[index].store(n, Ordering::Relaxed);
        if n != seen {
            seen = n;
            last_change = Instant::now();
        }
        if shared.pubs_done.load(Ordering::SeqCst) == cfg.w.pubs {
            let sent = shared.sent.load(Ordering::SeqCst);
            let got = if cfg.w.queue || cfg.w.request { shared.received.iter().map(|r| r.load(Ordering::Relaxed)).sum() } else { n };
            if got >= sent || last_change.elapsed() > IDLE_GIVE_UP {
                break;
            }
        }
        if !nc.is_connected() {
            return Err(format!("lost the server: {:?}", nc.last_error()));
        }
    }
    let _ = sub.unsubscribe();
    nc.close().await;
    // Back from now_ns() readings to Instants, through one pair read together.
    let (base, base_ns) = (Instant::now(), now_ns());
    let at = |ns: u64| base.checked_sub(Duration::from_nanos(base_ns.saturating_sub(ns))).unwrap_or(base);
    let first = if counts.first.get() == 0 { start } else { at(counts.first.get()) };
    let end = if counts.last.get() == 0 { first } else { at(counts.last.get()) };
    Ok(ClientResult {
        publisher: false,
        msgs: counts.msgs.get(),
        bytes: counts.bytes.get(),
        secs: end.duration_since(first).as_secs_f64(),
        start: first,
        end,
        latency: if timed { Some(counts.latency.replace(histogram())) } else { None },
        errors: 0,
    })
}

async fn publisher(cfg: &Config, shared: &Shared, index: usize) -> Result<ClientResult, String> {
    let nc = connect(&cfg.url, shared, "natsu-bench-pub").await?;
    if index == 0 && cfg.sub_url.is_some() && cfg.w.subs > 0 {
        probe_interest(cfg, shared, &nc).await?;
    }
    let mut share = cfg.w.msgs / cfg.w.pubs as u64;
    if (index as u64) < cfg.w.msgs % cfg.w.pubs as u64 {
        share += 1;
    }
    let limit = if cfg.duration().is_some() { u64::MAX } else { share };
    let per_pub_rate = cfg.w.rate as f64 / cfg.w.pubs as f64;
    let mut payload = vec![0u8; cfg.w.size];
    let mut latency = histogram();
    let timed = cfg.w.size >= 8 || cfg.w.request;
    wait_for_go(shared, || ()).await?;
    let start = Instant::now();
    let start_ns = now_ns();
    let stop = cfg.duration().map(|d| start + d);
    let (mut sent, mut errors) = (0u64, 0u64);
    while sent < limit {
        if stop.is_some_and(|s| sent % 256 == 0 && Instant::now() >= s) {
            break;
        }
        // At a fixed rate, the message is due at start + sent/rate; its timestamp is that due
        // time, so time lost waiting on the server counts as latency (no coordinated omission).
        let due_ns = if per_pub_rate > 0.0 {
            let due = start_ns + (sent as f64 * 1e9 / per_pub_rate) as u64;
            let now = now_ns();
            if due > now + 50_000 {
                glommio::timer::sleep(Duration::from_nanos(due - now)).await;
            }
            due
        } else {
            now_ns()
        };
        if cfg.w.size >= 8 {
            payload[..8].copy_from_slice(&due_ns.to_le_bytes());
        }
        if cfg.w.request {
            match nc.request(&cfg.w.subject, &payload, Duration::from_secs(5)).await {
                Ok(_) => {
                    let _ = latency.record(now_ns().saturating_sub(due_ns).clamp(1, MAX_LATENCY_NS));
                }
                Err(_) => errors += 1,
            }
        } else {
            nc.publish(&cfg.w.subject, &payload).await.map_err(|e| format!("publish: {e}"))?;
        }
        sent += 1;
        if sent % 1024 == 0 {
            shared.published.fetch_add(1024, Ordering::Relaxed);
        }
    }
    // The server has everything once the PONG is back.
    nc.flush_timeout(Duration::from_secs(60)).await.map_err(|e| format!("flush: {e}"))?;
    let end = Instant::now();
    shared.published.fetch_add(sent % 1024, Ordering::Relaxed);
    shared.sent.fetch_add(sent - errors, Ordering::SeqCst);
    shared.pubs_done.fetch_add(1, Ordering::SeqCst);
    nc.close().await;
    Ok(ClientResult {
        publisher: true,
        msgs: sent,
        bytes: sent * cfg.w.size as u64,
        secs: end.duration_since(start).as_secs_f64(),
        start,
        end,
        latency: if cfg.w.request && timed { Some(latency) } else { None },
        errors,
    })
}

/// Publish probes on the subject until the subscribers of `--sub-url` have seen one: their
/// interest has then crossed the route to `--url`'s server. Every subscriber must see one,
/// as each may be on another core of its server; a queue group (or responders) needs one.
async fn probe_interest(cfg: &Config, shared: &Shared, nc: &Connection) -> Result<(), String> {
    let deadline = Instant::now() + PROBE_GIVE_UP;
    while shared.subs_ready.load(Ordering::SeqCst) < cfg.w.subs {
        if shared.failed.load(Ordering::SeqCst) || Instant::now() > deadline {
            return Err("probe: the subscribers did not subscribe".into());
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let needed = if cfg.w.queue || cfg.w.request { 1 } else { cfg.w.subs };
    loop {
        let seen = shared.probed.iter().filter(|p| p.load(Ordering::Relaxed) > 0).count();
        if seen >= needed {
            return Ok(());
        }
        if shared.failed.load(Ordering::SeqCst) || Instant::now() > deadline {
            return Err(format!(
                "probe: after {PROBE_GIVE_UP:?}, {seen} of {needed} subscribers on {} had seen a message published on {} (no interest across the route?)",
                cfg.subscriber_url(),
                cfg.url
            ));
        }
        nc.publish_request(&cfg.w.subject, PROBE_REPLY, b"").await.map_err(|e| format!("probe: {e}"))?;
        nc.flush().await.map_err(|e| format!("probe: {e}"))?;
        glommio::timer::sleep(PROBE_EVERY).await;
    }
}
