//! Clusters for the route tests: [`Node`]s (natsu or nats-server) on ports chosen up front,
//! each with a route listener and a monitoring port; meshes of them in a [`Topology`]; and
//! bounded waits on `/routez` and on interest crossing the routes.
//!
//! With `NATSU_TEST_TARGET=reference` every [`Kind::Natsu`] node is started as nats-server,
//! which is how the cluster tests themselves are checked; a [`Kind::Reference`] node is
//! nats-server always. A node is a [`Server`], so it is killed by PID when dropped.

use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::probe::{barrier, Probe};
use super::{reference, Raw, Server};

/// Longest any single wait lasts. nats-server retries a refused route once a second, so a
/// mesh forms within two or three seconds; ten leaves room for a loaded machine.
pub const WAIT: Duration = Duration::from_secs(10);

/// Between two looks at a monitoring endpoint.
const POLL: Duration = Duration::from_millis(25);

/// Cluster name every node of a mesh shares.
pub const CLUSTER_NAME: &str = "natsu-test";

/// Which server a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// natsu (nats-server under `NATSU_TEST_TARGET=reference`).
    Natsu,
    /// nats-server, whatever the target.
    Reference,
}

/// How the nodes of a mesh name each other in `--routes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// The first node names none; every other names the first only, and learns the rest
    /// from its gossip.
    Seed,
    /// Every node names every node, itself included: each must recognise itself and keep
    /// one route per peer.
    All,
}

/// The ports a node listens on, fixed before it starts so that peers can name it and a
/// restart comes back where clients and routes expect it.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub client: u16,
    pub cluster: u16,
    pub http: u16,
}

impl Ports {
    /// Three loopback ports that were free a moment ago; see [`pick_port`].
    pub fn free() -> Ports {
        Ports { client: pick_port(), cluster: pick_port(), http: pick_port() }
    }

    /// The route URL peers name in `--routes`.
    pub fn cluster_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.cluster)
    }
}

/// How many ports below the kernel's ephemeral range [`pick_port`] takes from.
const PORT_SPAN: u32 = 12_000;

/// The next port [`pick_port`] tries, as an offset into its span.
static NEXT_PORT: AtomicU32 = AtomicU32::new(u32::MAX);

/// A loopback port that was free a moment ago, from just below the kernel's ephemeral range
/// and never the same twice in one test process. [`super::free_port`] hands out ephemeral
/// ports, and so does every outgoing connection: with routes, monitoring polls and clients
/// connecting by the thousand, one of them took a port between its pick and the node's bind
/// (nats-server died with "address already in use"), and a killed node's ports are free for
/// anyone until it restarts. Ports below the range are handed out by nobody but a bind.
pub fn pick_port() -> u16 {
    let low =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok().and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u32>().ok())).unwrap_or(32768).max(PORT_SPAN + 1024);
    // Each process starts at its own place, so two test processes at once rarely meet.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let start = (std::process::id().wrapping_mul(7919) ^ nanos) % PORT_SPAN;
    let _ = NEXT_PORT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..PORT_SPAN {
        let port = (low - PORT_SPAN + NEXT_PORT.fetch_add(1, Ordering::Relaxed) % PORT_SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {low}");
}

/// One server of a cluster.
pub struct Node {
    /// "A", "B", ...: for failure messages.
    pub name: String,
    pub kind: Kind,
    pub ports: Ports,
    /// The command line after `-a 127.0.0.1`, kept for [`Node::restart`].
    args: Vec<String>,
    /// None while killed.
    server: Option<Server>,
}

impl Node {
    /// Start a node of `kind` on `ports` in the cluster `cluster_name`, naming `routes`.
    pub fn start(name: &str, kind: Kind, ports: Ports, cluster_name: &str, routes: &[String]) -> Node {
        Node::start_with(name, kind, ports, cluster_name, routes, &[])
    }

    /// [`Node::start`] with more arguments (a config file: `["-c", path]`), which both
    /// servers take alike.
    pub fn start_with(name: &str, kind: Kind, ports: Ports, cluster_name: &str, routes: &[String], extra: &[&str]) -> Node {
        let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        args.extend(["-p".into(), ports.client.to_string(), "--cluster".into(), ports.cluster_url(), "--cluster_name".into(), cluster_name.into(), "-m".into(), ports.http.to_string()]);
        if !routes.is_empty() {
            args.extend(["--routes".into(), routes.join(",")]);
        }
        let mut node = Node { name: name.into(), kind, ports, args, server: None };
        if node.is_natsu() {
            node.args.extend(["--cores".into(), "2".into()]);
        }
        node.spawn();
        node
    }

    /// True when this node really runs natsu (not the reference standing in for it).
    pub fn is_natsu(&self) -> bool {
        self.kind == Kind::Natsu && !reference()
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.ports.client)
    }

    /// The node's process id, None while killed.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Server::pid)
    }

    /// True when the process has ended by itself (it is a zombie, or gone), e.g. because a
    /// port it wanted was taken: said in failure messages.
    pub fn exited(&self) -> bool {
        self.pid().is_some_and(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses.
            !matches!(stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()), Some(c) if c != 'Z' && c != 'X')
        })
    }

    /// SIGKILL the process (no goodbye to clients or routes) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Start a killed node again with the same command line: same ports, same routes.
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "{self} is still running");
        self.spawn();
    }

    fn spawn(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        // Both return once the client port is listening.
        self.server = Some(match self.kind {
            Kind::Reference => Server::reference_with(&args),
            Kind::Natsu => Server::target_with(&args),
        });
    }

    /// A monitoring endpoint as JSON, or why it could not be had (e.g. not up yet).
    pub fn monitor(&self, target: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.ports.http, target)?;
        if status != 200 {
            return Err(format!("GET {target}: status {status}: {}", String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {target}: not JSON ({e}): {}", String::from_utf8_lossy(&body)))
    }

    /// `/routez` (with `query`, e.g. `?subs=1`), failing the test if it cannot be had.
    pub fn routez(&self, query: &str) -> Value {
        self.monitor(&format!("/routez{query}")).unwrap_or_else(|e| panic!("{self}: {e}"))
    }

    /// The node's server id, as its peers' `/routez` `remote_id` shows it.
    pub fn server_id(&self) -> String {
        let v = self.routez("");
        v["server_id"].as_str().unwrap_or_else(|| panic!("{self}: /routez has no server_id: {v}")).to_string()
    }

    /// Messages this node has received over all its routes (`in_msgs` summed over `/routez`).
    pub fn route_in_msgs(&self) -> u64 {
        let v = self.routez("");
        v["routes"].as_array().map_or(0, |routes| routes.iter().filter_map(|r| r["in_msgs"].as_u64()).sum())
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_natsu() { "natsu" } else { "nats-server" };
        let p = &self.ports;
        let state = match self.server {
            None => ", killed",
            Some(_) if self.exited() => ", exited by itself",
            Some(_) => "",
        };
        write!(f, "node {} ({kind}, client {}, cluster {}, http {}{state})", self.name, p.client, p.cluster, p.http)
    }
}

/// Start one node of each kind, named "A", "B", ..., routed as `topology` says, and wait
/// until each has a route to every other.
pub fn mesh(kinds: &[Kind], topology: Topology) -> Vec<Node> {
    let nodes = start_mesh(kinds, topology);
    wait_full_mesh(&nodes);
    nodes
}

/// [`mesh`] without the wait.
pub fn start_mesh(kinds: &[Kind], topology: Topology) -> Vec<Node> {
    let ports: Vec<Ports> = kinds.iter().map(|_| Ports::free()).collect();
    let all: Vec<String> = ports.iter().map(Ports::cluster_url).collect();
    let mut nodes = Vec::new();
    for (i, (&kind, &p)) in kinds.iter().zip(&ports).enumerate() {
        let name = ((b'A' + i as u8) as char).to_string();
        let routes: &[String] = match (topology, i) {
            (Topology::Seed, 0) => &[],
            (Topology::Seed, _) => &all[..1],
            (Topology::All, _) => &all,
        };
        let node = Node::start(&name, kind, p, CLUSTER_NAME, routes);
        if topology == Topology::Seed && i == 0 {
            // The others dial the seed at once; were it not listening yet, nats-server would
            // wait a second before trying again.
            wait_accepting(&node, node.ports.cluster);
        }
        nodes.push(node);
    }
    nodes
}

/// Poll until `port` of `node` accepts a TCP connection (closed at once).
fn wait_accepting(node: &Node, port: u16) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{node}: port {port} not accepting within {WAIT:?}");
        std::thread::sleep(POLL);
    }
}

/// Poll `/routez` until it says `num_routes` is `n`, for at most `limit`.
pub fn wait_routes(node: &Node, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last: String;
    loop {
        match node.monitor("/routez") {
            Ok(v) if v["num_routes"].as_u64() == Some(n) => return,
            Ok(v) => last = format!("num_routes {}", v["num_routes"]),
            Err(e) => last = e,
        }
        assert!(Instant::now() < deadline, "{node}: waited {limit:?} for /routez num_routes {n}; last: {last}");
        std::thread::sleep(POLL);
    }
}

/// Wait until every node has a route to each of the others.
pub fn wait_full_mesh(nodes: &[Node]) {
    for node in nodes {
        wait_routes(node, nodes.len() as u64 - 1, WAIT);
    }
}

/// Poll `/routez?subs=1` on `at` until the route from `from` lists `subject` in its
/// `subscriptions_list` (`present`), or no longer does (`!present`); at most [`WAIT`].
pub fn wait_route_sub(at: &Node, from: &Node, subject: &str, present: bool) {
    let id = from.server_id();
    let deadline = Instant::now() + WAIT;
    let mut last: String;
    loop {
        match at.monitor("/routez?subs=1") {
            Ok(v) => {
                let route = v["routes"].as_array().and_then(|rs| rs.iter().find(|r| r["remote_id"] == id.as_str()));
                match route {
                    Some(r) => {
                        let listed = r["subscriptions_list"].as_array().is_some_and(|l| l.iter().any(|s| s == subject));
                        if listed == present {
                            return;
                        }
                        last = format!("subscriptions_list {}", r["subscriptions_list"]);
                    }
                    None => last = format!("no route with remote_id {id}"),
                }
            }
            Err(e) => last = e,
        }
        let want = if present { "to list" } else { "to stop listing" };
        assert!(Instant::now() < deadline, "{at}: waited {WAIT:?} for the route from {from} {want} {subject:?}; last: {last}");
        std::thread::sleep(POLL);
    }
}

/// Wait until every subscription made so far on `subscriber` is visible to publishes from
/// each of `publishers` (clients of other nodes): a probe subscribed after them answers a
/// request from each publisher. A route carries one connection's subscriptions in order,
/// so the probe's interest arrives after theirs.
pub async fn wait_interest(subscriber: &async_nats::Client, publishers: &[&async_nats::Client]) {
    let probe = Probe::start(subscriber).await;
    for publisher in publishers {
        barrier(publisher, &probe).await;
    }
}

/// What a server sends a raw client, one frame at a time.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// `MSG <subject> <sid> <size>` and its payload (no reply subject: the tests use none).
    Msg { subject: String, sid: String, payload: String },
    /// Any other line, CRLF included: `PING`, `PONG`, `-ERR ...`.
    Line(String),
}

/// The next frame from `raw` (which panics if nothing comes within its read timeout).
pub fn read_frame(raw: &mut Raw) -> Frame {
    let line = raw.read_line();
    let parts: Vec<&str> = line.trim_end().split(' ').collect();
    match parts[..] {
        ["MSG", subject, sid, size] => {
            let size: usize = size.parse().unwrap_or_else(|_| panic!("bad size in {line:?}"));
            let payload = raw.read_exact_n(size + 2);
            Frame::Msg { subject: subject.into(), sid: sid.into(), payload: String::from_utf8_lossy(&payload[..size]).into_owned() }
        }
        _ => Frame::Line(line),
    }
}

/// One blocking HTTP/1.0 GET on a loopback port: the status and the body. HTTP/1.0 keeps
/// both servers from chunking the body, so it is whatever comes before the close.
pub fn http_get(port: u16, target: &str) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect to port {port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(format!("GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).map_err(|e| format!("GET {target}: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("GET {target}: reading: {e}"))?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Response::new(&mut headers);
    match head.parse(&buf) {
        Ok(httparse::Status::Complete(n)) => Ok((head.code.unwrap_or(0), buf[n..].to_vec())),
        Ok(httparse::Status::Partial) => Err(format!("GET {target}: incomplete response: {:?}", String::from_utf8_lossy(&buf))),
        Err(e) => Err(format!("GET {target}: bad response ({e}): {:?}", String::from_utf8_lossy(&buf))),
    }
}
