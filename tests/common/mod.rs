//! Shared helpers for the integration tests: start a broker as a child process (natsu, or the
//! reference `nats-server` when `NATSU_TEST_TARGET=reference`), and talk raw protocol to it.
#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod pki;
pub mod probe;
#[cfg(feature = "service")]
pub mod service;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Limits a test may set; natsu takes them as flags, the reference through a config file.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub max_payload: Option<u64>,
    pub max_control_line: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_subscriptions: Option<u64>,
    pub max_pending: Option<u64>,
    /// seconds
    pub ping_interval: Option<u64>,
    pub ping_max: Option<u64>,
    /// seconds
    pub write_deadline: Option<u64>,
}

/// True when the tests are pointed at the reference server instead of natsu.
pub fn reference() -> bool {
    std::env::var("NATSU_TEST_TARGET").map(|v| v == "reference").unwrap_or(false)
}

/// A running broker, killed (by PID) when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    _dir: Option<TempDir>,
    /// What the server logged (the first `LOG_KEPT` lines).
    log: Arc<Mutex<Vec<String>>>,
}

/// Lines of a server's log a test can look through.
const LOG_KEPT: usize = 20_000;

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("natsu-test-{}-{}-{}", tag, std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Server {
    /// natsu (or the reference) on a free loopback port with default limits.
    pub fn start() -> Server {
        Server::with(&Limits::default(), &[])
    }

    /// Start with limits and extra command-line arguments (natsu only; ignored for the
    /// reference unless they are flags it shares, such as `--cores` which it lacks).
    pub fn with(limits: &Limits, extra: &[&str]) -> Server {
        let mut dir = None;
        let mut cmd;
        if reference() {
            cmd = Command::new("nats-server");
            cmd.args(["-a", "127.0.0.1", "-p", "-1"]);
            let mut conf = String::new();
            let mut kv = |k: &str, v: Option<u64>, suffix: &str| {
                if let Some(v) = v {
                    conf.push_str(&format!("{k}: {v}{suffix}\n"));
                }
            };
            kv("max_payload", limits.max_payload, "");
            kv("max_control_line", limits.max_control_line, "");
            kv("max_connections", limits.max_connections, "");
            kv("max_subscriptions", limits.max_subscriptions, "");
            kv("max_pending", limits.max_pending, "");
            kv("ping_max", limits.ping_max, "");
            // Durations are quoted strings; kv's last use is above, so conf is free again.
            if let Some(v) = limits.ping_interval {
                conf.push_str(&format!("ping_interval: \"{v}s\"\n"));
            }
            if let Some(v) = limits.write_deadline {
                conf.push_str(&format!("write_deadline: \"{v}s\"\n"));
            }
            if !conf.is_empty() {
                let d = TempDir::new("conf");
                let f = d.0.join("server.conf");
                std::fs::write(&f, conf).unwrap();
                cmd.args(["-c", f.to_str().unwrap()]);
                dir = Some(d);
            }
        } else {
            cmd = Command::new(natsu_bin());
            cmd.args(["-a", "127.0.0.1", "-p", "-1"]);
            let mut flag = |k: &str, v: Option<u64>, suffix: &str| {
                if let Some(v) = v {
                    cmd.arg(format!("--{k}={v}{suffix}"));
                }
            };
            flag("max_payload", limits.max_payload, "");
            flag("max_control_line", limits.max_control_line, "");
            flag("max_connections", limits.max_connections, "");
            flag("max_subscriptions", limits.max_subscriptions, "");
            flag("max_pending", limits.max_pending, "");
            flag("ping_interval", limits.ping_interval, "s");
            flag("ping_max", limits.ping_max, "");
            flag("write_deadline", limits.write_deadline, "s");
            cmd.args(extra);
        }
        // Both servers pick a free port themselves (`-p -1`) and log it: no race between
        // choosing a port and binding it, even with many test processes at once.
        Server::spawn(cmd, dir)
    }

    /// The reference nats-server, whatever the target, with these arguments (they must
    /// include the port, e.g. `-p -1`): for features natsu does not have yet (TLS, auth,
    /// clusters) and for differential tests.
    pub fn reference_with(args: &[&str]) -> Server {
        let mut cmd = Command::new("nats-server");
        cmd.args(["-a", "127.0.0.1"]).args(args);
        Server::spawn(cmd, None)
    }

    /// The target server (natsu, or the reference with `NATSU_TEST_TARGET=reference`) with
    /// these arguments, which must include the port (e.g. `-p -1`): flags both share.
    pub fn target_with(args: &[&str]) -> Server {
        let mut cmd = Command::new(if reference() { PathBuf::from("nats-server") } else { natsu_bin() });
        cmd.args(["-a", "127.0.0.1"]).args(args);
        Server::spawn(cmd, None)
    }

    /// The target server with a config file made of `conf` (and `-a 127.0.0.1 -p -1` first,
    /// so the file need not say where to listen), plus extra arguments.
    pub fn with_config(conf: &str, extra: &[&str]) -> Server {
        let d = TempDir::new("conf");
        let f = d.0.join("server.conf");
        std::fs::write(&f, conf).unwrap();
        let mut cmd = Command::new(if reference() { PathBuf::from("nats-server") } else { natsu_bin() });
        cmd.args(["-a", "127.0.0.1", "-p", "-1", "-c", f.to_str().unwrap()]).args(extra);
        Server::spawn(cmd, Some(d))
    }

    /// The target server on a given port: to restart a server where clients expect it.
    pub fn start_on(port: u16) -> Server {
        let mut cmd = Command::new(if reference() { PathBuf::from("nats-server") } else { natsu_bin() });
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        Server::spawn(cmd, None)
    }

    /// Stop the server now (the handle stays, for its port).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn(mut cmd: Command, dir: Option<TempDir>) -> Server {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start broker");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let echo = std::env::var("NATSU_TEST_LOG").is_ok();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("{line}");
                }
                if let Ok(mut k) = kept.lock() {
                    if k.len() < LOG_KEPT {
                        k.push(line.clone());
                    }
                }
                if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                    let port = addr.trim().rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                    if let (Some(port), Some(tx)) = (port, tx.take()) {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                let said = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                panic!("broker did not report its port within 10s (exit: {status:?}); it said:\n{said}");
            }
        };
        Server { child, port, _dir: dir, log }
    }

    /// Whether the server has logged a line containing `text` so far.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().map(|l| l.iter().any(|line| line.contains(text))).unwrap_or(false)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the broker in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed test shows what its servers said (the last lines kept).
        if std::thread::panicking() {
            if let Ok(log) = self.log.lock() {
                let from = log.len().saturating_sub(60);
                eprintln!("--- log of the server on port {} (pid {}), last {} lines ---", self.port, self.child.id(), log.len() - from);
                for line in &log[from..] {
                    eprintln!("{line}");
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// For differential tests: the servers every check runs on, all reading one config file made
/// of `conf` (kept in the returned directory): natsu (with `natsu_args` too, e.g. `--cores 2`)
/// and the reference, or the reference alone when it is the target. Names are "natsu" and
/// "nats-server".
pub fn natsu_and_reference(conf: &str, natsu_args: &[&str]) -> (TempDir, Vec<(&'static str, Server)>) {
    let dir = TempDir::new("conf");
    let path = dir.0.join("server.conf");
    std::fs::write(&path, conf).unwrap();
    let file = path.to_str().unwrap();
    let list = if reference() {
        vec![("nats-server", Server::target_with(&["-p", "-1", "-c", file]))]
    } else {
        let args: Vec<&str> = ["-p", "-1", "-c", file].iter().chain(natsu_args).copied().collect();
        vec![("natsu", Server::target_with(&args)), ("nats-server", Server::reference_with(&["-p", "-1", "-c", file]))]
    };
    (dir, list)
}

/// Path of the natsu binary built with the tests, or `NATSU_TEST_BIN` (to run the suite
/// against another build, e.g. an older commit's, to see a test fail where it should).
pub fn natsu_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATSU_TEST_BIN") {
        return PathBuf::from(bin);
    }
    if let Some(bin) = option_env!("CARGO_BIN_EXE_natsu") {
        return PathBuf::from(bin);
    }
    // A client-only build (`--no-default-features --features client`) has no broker binary
    // of its own: take the one a default build left in the same profile directory, which
    // holds this test's `deps/` directory.
    let exe = std::env::current_exe().expect("the test executable's path");
    let bin = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps").join("natsu");
    assert!(bin.exists(), "{} missing: build the broker first (cargo build with the default features)", bin.display());
    bin
}

/// A raw protocol connection with send/expect helpers.
pub struct Raw {
    pub s: TcpStream,
    /// bytes received but not yet consumed by an expect
    pub buf: Vec<u8>,
    pub info: String,
}

impl Raw {
    /// Connect and read the INFO line (not consumed into `buf`).
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = Raw { s, buf: Vec::new(), info: String::new() };
        let line = r.read_line();
        assert!(line.starts_with("INFO "), "expected INFO, got {line:?}");
        r.info = line;
        r
    }

    /// The INFO line's JSON object.
    pub fn info_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let json = self.info.strip_prefix("INFO ").map(str::trim_end).expect("an INFO line");
        match serde_json::from_str(json) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => panic!("INFO is not a JSON object: {json}"),
        }
    }

    /// The nonce of the INFO (NKey users, operator mode).
    pub fn nonce(&self) -> String {
        self.info_map().get("nonce").and_then(serde_json::Value::as_str).unwrap_or_else(|| panic!("no nonce in {}", self.info)).to_string()
    }

    /// Connect, read INFO, send CONNECT with the given JSON and a PING, and wait for PONG.
    pub fn connect_with(port: u16, connect_json: &str) -> Raw {
        let mut r = Raw::connect(port);
        r.send(&format!("CONNECT {connect_json}\r\nPING\r\n"));
        r.expect("PONG\r\n");
        r
    }

    pub fn send(&mut self, data: &str) {
        self.s.write_all(data.as_bytes()).expect("send");
    }

    pub fn send_bytes(&mut self, data: &[u8]) {
        self.s.write_all(data).expect("send");
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.s.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            // A signal to the test process (a child exiting) interrupts the read: not a close.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("timed out waiting for data; have {:?}", String::from_utf8_lossy(&self.buf))
            }
            Err(_) => false,
        }
    }

    /// Read one line (through CRLF).
    pub fn read_line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line).into_owned();
            }
            if !self.fill() {
                panic!("closed while reading a line; have {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
    }

    /// Expect exactly these bytes next.
    pub fn expect(&mut self, want: &str) {
        let want = want.as_bytes();
        while self.buf.len() < want.len() {
            if !self.fill() {
                break;
            }
        }
        let got: Vec<u8> = self.buf.drain(..want.len().min(self.buf.len())).collect();
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want), "unexpected bytes from server");
    }

    /// Read `n` bytes exactly.
    pub fn read_exact_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill() {
                panic!("closed after {} of {} bytes", self.buf.len(), n);
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Round trip a PING and return everything received before the PONG.
    pub fn flush(&mut self) -> String {
        self.send("PING\r\n");
        loop {
            if let Some(i) = find(&self.buf, b"PONG\r\n") {
                let before: Vec<u8> = self.buf.drain(..i + 6).take(i).collect();
                return String::from_utf8_lossy(&before).into_owned();
            }
            if !self.fill() {
                panic!("closed before PONG; have {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
    }

    /// What comes back for a CONNECT and PING: everything through the PONG, or everything
    /// up to the close.
    pub fn expect_closed_or_pong(&mut self) -> String {
        let mut chunk = [0u8; 4096];
        loop {
            if self.buf.ends_with(b"PONG\r\n") {
                return String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            }
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Wait until the server closes the connection; return what it sent before closing.
    pub fn expect_closed(&mut self) -> String {
        self.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        while self.fill() {}
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }

    /// Nothing more arrives within `ms` milliseconds and the connection stays open.
    pub fn expect_quiet(&mut self, ms: u64) {
        self.s.set_read_timeout(Some(Duration::from_millis(ms))).unwrap();
        let mut chunk = [0u8; 4096];
        match self.s.read(&mut chunk) {
            Ok(0) => panic!("connection closed"),
            Ok(n) => panic!("unexpected data: {:?}", String::from_utf8_lossy(&chunk[..n])),
            Err(_) => {}
        }
        self.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Every message `r` receives before a PONG, in order, as `MSG <subject> <sid> [reply]|<payload>`
/// (HMSG as `HMSG <subject> <sid> [reply]|<headers>|<payload>`; sizes are checked, not
/// shown), with any other line as it is when `others`.
pub fn messages(r: &mut Raw, others: bool) -> Vec<String> {
    let got = r.flush();
    let mut out = Vec::new();
    let mut rest = got.as_str();
    while let Some(i) = rest.find("\r\n") {
        let line = &rest[..i];
        rest = &rest[i + 2..];
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "MSG" => {
                let n: usize = f[f.len() - 1].parse().unwrap();
                out.push(format!("{}|{}", f[..f.len() - 1].join(" "), &rest[..n]));
                rest = &rest[n + 2..];
            }
            "HMSG" => {
                let (h, n): (usize, usize) = (f[f.len() - 2].parse().unwrap(), f[f.len() - 1].parse().unwrap());
                out.push(format!("{}|{}|{}", f[..f.len() - 2].join(" "), &rest[..h], &rest[h..n]));
                rest = &rest[n + 2..];
            }
            _ if others => out.push(line.to_string()),
            _ => {}
        }
    }
    out
}

/// A loopback port that was free a moment ago, for a server started on it by number.
///
/// Not the kernel's pick (`bind(0)`): that comes from the ephemeral range, which every
/// outgoing connection of every test running in parallel also draws its local port from, so
/// between this check and the server's bind a client elsewhere could take it (CI saw
/// "Address already in use" so). Ports are taken below the ephemeral range instead, from a
/// start that differs per process and then in turn, so parallel test binaries do not walk
/// the same ports.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<u32>().ok()))
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_low.clamp(12_000, 65_000));
    let span = high - low;
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let port = (low + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {high}")
}

/// Run a test body on a fresh glommio executor in its own thread, bounded by `limit`.
/// Executors get little io_uring memory: locked memory is scarce (8 MiB here) and tests
/// run in parallel.
pub fn run_local<F, Fut, T>(limit: Duration, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(128 << 10)
        .ring_depth(64)
        .spawn(move || async move {
            futures_lite::future::or(f(), async {
                glommio::timer::sleep(limit).await;
                panic!("test did not finish within {limit:?}");
            })
            .await
        })
        .expect("start a glommio executor")
        .join()
        .expect("test executor panicked")
}
