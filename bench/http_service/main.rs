//! `natsu-bench-service`: the service the gateway benchmark (`bench/gateway.sh`) calls, in
//! the two shapes it compares.
//!
//! ```text
//! natsu-bench-service --direct 127.0.0.1:8090 --cores 1         # plain HTTP/1.1 (hyper)
//! natsu-bench-service --nats nats://127.0.0.1:4222 --cores 1    # behind a gateway
//! ```
//!
//! Both serve the same two endpoints through one function, [`answer`], so that the only
//! difference between the rows of the benchmark is the path a request takes:
//!
//! - `GET /hello`: 200, `{"hello":"world"}` as JSON;
//! - `POST /echo`: 200, the request's body back (the benchmark sends 4 KiB).
//!
//! `--direct` is hyper 1.x on glommio (the gateway's I/O adapter): one executor per core,
//! each with its own `SO_REUSEPORT` listener on the address. `--nats` is a
//! [`natsu::service::Router`] per executor, each on its own connection and in one queue
//! group, so that the executors share the requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::{Arg, ArgGroup, Command};
use glommio::net::TcpListener;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use natsu::config::cli::LogOptions;
use natsu::gateway::io::{GlommioTimer, HyperIo};
use natsu::service::{Context, Router};

/// The queue group of `--nats` mode: every executor (and every process) started with it
/// shares the requests instead of each answering all of them.
const QUEUE: &str = "natsu-bench-service";
/// The largest request body `--direct` reads; the gateways' default limit is larger than
/// anything the benchmark sends, so this only keeps a stray client from filling memory.
const MAX_BODY: usize = 1 << 20;
/// How long a client may take to send a request's headers (`--direct`).
const HEADER_READ: Duration = Duration::from_secs(30);

const HELLO: &[u8] = br#"{"hello":"world"}"#;
const NOT_FOUND: &[u8] = br#"{"error":"not found"}"#;

/// What [`answer`] says to a request.
struct Answer<B> {
    status: u16,
    content_type: &'static str,
    body: B,
}

/// The answer to `method path` whose body is `body`, in both modes. Generic over the
/// body's type so that each mode keeps its own without a copy: hyper's `Bytes` in
/// `--direct` (the echo hands back the very buffer it read), the service context's
/// `Vec<u8>` in `--nats`.
fn answer<B: From<&'static [u8]>>(method: &str, path: &str, body: B) -> Answer<B> {
    match (method, path) {
        ("GET", "/hello") => Answer { status: 200, content_type: "application/json", body: B::from(HELLO) },
        ("POST", "/echo") => Answer { status: 200, content_type: "application/octet-stream", body },
        _ => Answer { status: 404, content_type: "application/json", body: B::from(NOT_FOUND) },
    }
}

/// `--nats`: the router's handler for both routes.
fn serve_nats(ctx: &mut Context) {
    // The context lends its request only, so the echo's body is copied once here; the
    // response owns its body either way.
    let a = answer(ctx.method(), ctx.path(), ctx.body().to_vec());
    ctx.bytes(a.status, a.content_type, a.body);
}

/// `--direct`: one HTTP request.
async fn serve_direct(req: hyper::Request<Incoming>) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let status = if e.downcast_ref::<LengthLimitError>().is_some() { 413 } else { 400 };
            return Ok(reply(Answer { status, content_type: "application/json", body: Bytes::new() }));
        }
    };
    Ok(reply(answer(parts.method.as_str(), parts.uri.path(), body)))
}

fn reply(a: Answer<Bytes>) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(a.body));
    *r.status_mut() = hyper::StatusCode::from_u16(a.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    r
}

/// Accept on this executor's listener for good, one task per connection (keep-alive).
async fn accept(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(async move {
                    let _ = stream.set_nodelay(true);
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(GlommioTimer)
                        .header_read_timeout(HEADER_READ)
                        .serve_connection(HyperIo::new(stream), service_fn(serve_direct));
                    if let Err(e) = conn.await {
                        tracing::debug!("connection: {e}");
                    }
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// `--direct ADDR`: an HTTP server on every executor.
fn run_direct(addr: SocketAddr, cores: usize) -> Result<(), String> {
    // SO_REUSEPORT would share the port with another process's listener without a word:
    // check that nobody is listening there first (the gateway does the same).
    if addr.port() != 0 {
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    }
    // The first executor binds (port 0: any free port); the others join its address.
    let bound = Arc::new(Mutex::new(None::<SocketAddr>));
    let handles = pool(cores)
        .on_all_shards(move || {
            let bound = bound.clone();
            async move {
                let listener = {
                    let mut b = bound.lock().unwrap_or_else(|p| p.into_inner());
                    let at = b.unwrap_or(addr);
                    match TcpListener::bind(at) {
                        Ok(l) => {
                            if b.is_none() {
                                *b = l.local_addr().ok();
                                if let Some(a) = *b {
                                    tracing::info!("Listening for HTTP on {a}");
                                }
                            }
                            l
                        }
                        Err(e) => {
                            tracing::error!("cannot listen on {at}: {e}");
                            std::process::exit(1);
                        }
                    }
                };
                accept(listener).await;
            }
        })
        .map_err(|e| format!("cannot start executors: {e}"))?;
    join(handles)
}

/// `--nats URL`: a router on every executor, each on its own connection.
fn run_nats(url: String, cores: usize) -> Result<(), String> {
    let handles = pool(cores)
        .on_all_shards(move || {
            let url = url.clone();
            async move {
                let nc = match natsu::client::Options::new().name(QUEUE).max_reconnects(-1).connect(&url).await {
                    Ok(nc) => nc,
                    Err(e) => {
                        tracing::error!("cannot connect to {url}: {e}");
                        std::process::exit(1);
                    }
                };
                let router = Router::with_queue(&nc, QUEUE);
                let routes = router.get("/hello", serve_nats).and_then(|_| router.post("/echo", serve_nats));
                if let Err(e) = routes {
                    tracing::error!("{e}");
                    std::process::exit(1);
                }
                // The subscriptions are on the server once it has answered a PING after them:
                // only then is this executor ready for the benchmark's first request.
                if let Err(e) = nc.flush().await {
                    tracing::error!("cannot subscribe at {url}: {e}");
                    std::process::exit(1);
                }
                tracing::info!("Serving GET /hello and POST /echo on {url} (queue {QUEUE})");
                nc.closed().await;
            }
        })
        .map_err(|e| format!("cannot start executors: {e}"))?;
    join(handles)
}

fn pool(cores: usize) -> LocalExecutorPoolBuilder {
    LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(cores)).name("natsu-bench-service").io_memory(256 << 10).ring_depth(256)
}

fn join(handles: glommio::PoolThreadHandles<()>) -> Result<(), String> {
    for r in handles.join_all() {
        r.map_err(|e| format!("executor failed: {e:?}"))?;
    }
    Ok(())
}

fn command() -> Command {
    Command::new("natsu-bench-service")
        .about("GET /hello and POST /echo, as a plain HTTP server or as a NATS service behind a gateway (bench/gateway.sh)")
        .arg(
            Arg::new("direct")
                .long("direct")
                .value_name("ADDR")
                .value_parser(clap::value_parser!(SocketAddr))
                .help("Serve HTTP/1.1 on host:port"),
        )
        .arg(Arg::new("nats").long("nats").value_name("URL").help("Serve nats-proxy requests from the NATS server at URL"))
        .group(ArgGroup::new("mode").args(["direct", "nats"]).required(true))
        .arg(
            Arg::new("cores")
                .long("cores")
                .value_name("N")
                .value_parser(clap::value_parser!(u16).range(1..=1024))
                .help("Executors (default: every core)"),
        )
        .arg(Arg::new("debug").short('D').long("debug").action(clap::ArgAction::SetTrue).help("Debug logging"))
}

fn main() -> ExitCode {
    let m = match command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let log = LogOptions { debug: m.get_flag("debug"), logtime: true, ..LogOptions::default() };
    if let Err(e) = natsu::logging::init(&log) {
        eprintln!("natsu-bench-service: {e}");
        return ExitCode::from(1);
    }
    let cores = match m.get_one::<u16>("cores") {
        Some(n) => *n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let run = match (m.get_one::<SocketAddr>("direct"), m.get_one::<String>("nats")) {
        (Some(addr), _) => run_direct(*addr, cores),
        (None, Some(url)) => run_nats(url.clone(), cores),
        (None, None) => unreachable!("clap requires one mode"),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natsu-bench-service: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_answer_for_both_modes() {
        let a = answer("GET", "/hello", Vec::new());
        assert_eq!((a.status, a.content_type, a.body.as_slice()), (200, "application/json", HELLO));
        let body = vec![7u8; 4096];
        let a = answer("POST", "/echo", Bytes::from(body.clone()));
        assert_eq!((a.status, &a.body[..]), (200, &body[..]));
        for (method, path) in [("POST", "/hello"), ("GET", "/echo"), ("GET", "/")] {
            assert_eq!(answer(method, path, Vec::new()).status, 404, "{method} {path}");
        }
    }

    #[test]
    fn flags() {
        assert!(command().try_get_matches_from(["s"]).is_err(), "a mode is required");
        assert!(command().try_get_matches_from(["s", "--direct", "127.0.0.1:1", "--nats", "nats://x"]).is_err());
        let m = command().try_get_matches_from(["s", "--nats", "nats://127.0.0.1:4222", "--cores", "1"]).unwrap();
        assert_eq!(m.get_one::<u16>("cores"), Some(&1));
    }
}
