//! A small HTTP/1.1 server for the monitoring endpoints, on core zero.
//!
//! Requests are parsed with httparse; responses are written here with a Content-Length.
//! Everything a client controls is bounded: the request head (16 KiB, the target 8 KiB),
//! the time to send it, the time to take a response, and the number of connections at once.
//! A malformed or oversized request gets a 400 and the connection closes; a request with a
//! body is answered and then closed rather than read further. Keep-alive and pipelining work
//! for requests without bodies.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::connz::{self, ConnzQuery};
use super::fmt::{http_date, now_ns};
use super::gather::{gather, sum_accounts, CoreQuery, SubsQuery};
use super::params::Query;
use super::leafz::{self, LeafzQuery};
use super::routez::{self, RoutezQuery};
use super::subsz::{self, SublistStats, SubszQuery};
use super::{accountz, metrics, varz, MonitorState};
use crate::server::shard::Shard;

/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest request target (path and query).
pub const MAX_TARGET: usize = 8 * 1024;
/// Most headers in a request.
const MAX_HEADERS: usize = 64;
/// Time to send a whole request head once the connection is waiting for one; also how long
/// an idle keep-alive connection stays open.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take a response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP connections served at once; more are closed as soon as accepted.
pub const MAX_CONNS: usize = 128;

/// The endpoints and what the index page calls them.
const ENDPOINTS: [(&str, &str); 9] = [
    ("varz", "General"),
    ("connz", "Connections"),
    ("accountz", "Accounts"),
    ("accstatz", "Account Stats"),
    ("subsz", "Subscriptions"),
    ("routez", "Routes"),
    ("leafz", "Leaf Nodes"),
    ("healthz", "Health Probe"),
    ("metrics", "Prometheus Metrics"),
];

/// What the server needs per connection.
struct Ctx {
    shard: Rc<Shard>,
    state: Rc<MonitorState>,
    open: std::cell::Cell<usize>,
}

/// Accept HTTP (or HTTPS, with `tls`) connections until the process ends, with blocking
/// accepts as the client port does (see `server::listener`): no io_uring request holds the
/// socket, so a server killed with SIGKILL leaves the port free for the next one at once.
pub async fn accept_loop(
    listener: Arc<std::net::TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shard: Rc<Shard>,
    state: Rc<MonitorState>,
) {
    let ctx = Rc::new(Ctx { shard, state, open: std::cell::Cell::new(0) });
    crate::server::listener::accept_loop(listener, || true, move |stream| {
        if ctx.open.get() >= MAX_CONNS {
            // Dropping the stream closes it: the broker's own work comes first.
            return;
        }
        let _ = stream.set_nodelay(true);
        ctx.open.set(ctx.open.get() + 1);
        let (ctx2, tls) = (ctx.clone(), tls.clone());
        glommio::spawn_local(async move {
            match tls {
                None => serve(&ctx2, stream).await,
                Some(config) => {
                    let timeout = ctx2.shard.opts().tls.as_ref().map_or(HEAD_TIMEOUT, |t| t.timeout);
                    match crate::server::tls::accept(config, stream, timeout).await {
                        Ok(t) => serve(&ctx2, t).await,
                        Err(e) => tracing::debug!("monitoring: TLS handshake failed: {e}"),
                    }
                }
            }
            ctx2.open.set(ctx2.open.get() - 1);
        })
        .detach();
    })
    .await;
}

/// A parsed request: what routing needs.
struct Request {
    head_only: bool,
    target: String,
    /// Close after answering (HTTP/1.0, `Connection: close`, or a body we do not read).
    close: bool,
}

/// What reading a request head gave.
enum Head {
    Request(Request),
    /// A request we refuse with a 400, and why.
    Bad(&'static str),
    /// The client went away or took too long: close without a word.
    Gone,
}

/// Read until `buf` holds a whole request head; consume it.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Head {
    let deadline = std::time::Instant::now() + HEAD_TIMEOUT;
    let mut chunk = [0u8; 4096];
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let target = req.path.unwrap_or("");
                    if target.len() > MAX_TARGET {
                        return Head::Bad("request target too long");
                    }
                    let method = req.method.unwrap_or("");
                    let version = req.version.unwrap_or(0);
                    let header = |name: &str| {
                        req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
                    };
                    let has_body = header("transfer-encoding").is_some()
                        || header("content-length").is_some_and(|v| std::str::from_utf8(v).map(str::trim) != Ok("0"));
                    let close = version == 0
                        || has_body
                        || header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
                    let r = Request { head_only: method == "HEAD", target: target.to_string(), close };
                    buf.drain(..n);
                    return Head::Request(r);
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() >= MAX_HEAD {
                        return Head::Bad("request head too large");
                    }
                }
                Err(httparse::Error::TooManyHeaders) => return Head::Bad("too many headers"),
                Err(_) => return Head::Bad("malformed request"),
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let room = (MAX_HEAD + 1 - buf.len().min(MAX_HEAD)).min(chunk.len());
        let read = futures_lite::future::or(async { Some(stream.read(&mut chunk[..room]).await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        match read {
            Some(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return Head::Gone,
        }
    }
}

/// A response before it is written.
pub struct Response {
    pub status: u16,
    content_type: &'static str,
    pub body: Vec<u8>,
    /// JSON and JSONP replies carry `Access-Control-Allow-Origin: *`.
    cors: bool,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into().into_bytes(), cors: false }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "",
    }
}

/// Write a response; false if the client did not take it in time.
async fn write<S: AsyncWrite + Unpin>(stream: &mut S, r: &Response, head_only: bool, close: bool) -> bool {
    let mut out = format!("HTTP/1.1 {} {}\r\nContent-Type: {}\r\n", r.status, reason_phrase(r.status), r.content_type);
    if r.cors {
        out.push_str("Access-Control-Allow-Origin: *\r\n");
    }
    if r.status == 404 || r.status == 400 {
        out.push_str("X-Content-Type-Options: nosniff\r\n");
    }
    out.push_str(&format!("Date: {}\r\nContent-Length: {}\r\n", http_date(now_ns()), r.body.len()));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&r.body);
    }
    futures_lite::future::or(
        async {
            stream.write_all(&bytes).await.is_ok() && stream.flush().await.is_ok()
        },
        async {
            glommio::timer::sleep(WRITE_TIMEOUT).await;
            false
        },
    )
    .await
}

/// Serve requests on one connection until it closes, misbehaves or idles out.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(ctx: &Ctx, mut stream: S) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let req = match read_head(&mut stream, &mut buf).await {
            Head::Request(r) => r,
            Head::Bad(why) => {
                if write(&mut stream, &Response::text(400, format!("400 Bad Request: {why}")), false, true).await {
                    linger(&mut stream).await;
                }
                break;
            }
            Head::Gone => break,
        };
        let resp = route(&ctx.shard, &ctx.state, &req.target).await;
        if !write(&mut stream, &resp, req.head_only, req.close).await || req.close {
            break;
        }
    }
    let _ = stream.close().await;
}

/// Before closing on a refused request, read and drop what the client is still sending
/// (bounded in bytes and time): closing with unread data would reset the connection and
/// could destroy the 400 before the client reads it.
async fn linger<S: AsyncRead + Unpin>(stream: &mut S) {
    const LINGER_BYTES: usize = 1 << 20;
    const LINGER_TIME: Duration = Duration::from_secs(1);
    let mut chunk = [0u8; 4096];
    let mut seen = 0;
    let deadline = std::time::Instant::now() + LINGER_TIME;
    while seen < LINGER_BYTES {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let read = futures_lite::future::or(async { stream.read(&mut chunk).await.ok() }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        match read {
            Some(n) if n > 0 => seen += n,
            _ => return,
        }
    }
}

/// A JSONP callback name: letters, digits, `_`, `$` and `.` only, so a page cannot be made
/// to run what a query string says (nats-server takes any text).
fn valid_callback(cb: &str) -> bool {
    cb.len() <= 128 && cb.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.')
}

/// A JSON reply, or JSONP when the query has `callback=` (as nats-server: `cb(json)` as
/// `application/javascript`).
fn json(q: &Query, body: Result<Vec<u8>, serde_json::Error>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return Response::text(500, format!("Error marshaling response: {e}")),
    };
    match q.get("callback") {
        None => Response { status: 200, content_type: "application/json", body, cors: true },
        Some(cb) if valid_callback(cb) => {
            let mut wrapped = Vec::with_capacity(body.len() + cb.len() + 2);
            wrapped.extend_from_slice(cb.as_bytes());
            wrapped.push(b'(');
            wrapped.extend_from_slice(&body);
            wrapped.push(b')');
            Response { status: 200, content_type: "application/javascript", body: wrapped, cors: true }
        }
        Some(_) => Response::text(400, "invalid callback: letters, digits, '_', '$' and '.' only"),
    }
}

/// Answer one request target (also the system account's `$SYS.REQ.SERVER` requests, which
/// ask the same endpoints).
pub async fn route(shard: &Rc<Shard>, st: &MonitorState, target: &str) -> Response {
    let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let q = Query::parse(raw_query);
    let server_id = shard.shared.info.server_id.as_str();
    let accounts = &shard.shared.accounts;
    match path {
        "/" => {
            st.count("/");
            index()
        }
        "/varz" => {
            st.count("/varz");
            let with_cores = match q.boolean("cores") {
                Ok(b) => b,
                Err(e) => return Response::text(400, e),
            };
            let snaps = gather(shard, CoreQuery::default()).await;
            let v = varz::build(shard, st, &snaps, with_cores, now_ns());
            json(&q, serde_json::to_vec_pretty(&v))
        }
        "/connz" => {
            st.count("/connz");
            let cq = match ConnzQuery::from_query(&q) {
                Ok(c) => c,
                Err(e) => return Response::text(400, e),
            };
            if cq.account.as_deref().is_some_and(|a| accounts.id(a).is_none()) {
                return json(&q, serde_json::to_vec_pretty(&connz::unknown_account(&cq, now_ns())));
            }
            let snaps = gather(shard, CoreQuery { conns: Some(cq.clone()), ..Default::default() }).await;
            let total = snaps.iter().map(|s| s.conns_total).sum();
            let recs = snaps.into_iter().flat_map(|s| s.conns).collect();
            let page = connz::page(server_id, &cq, recs, total, now_ns(), &accounts.names);
            json(&q, serde_json::to_vec_pretty(&page))
        }
        "/routez" => {
            st.count("/routez");
            match RoutezQuery::from_query(&q) {
                Ok(rq) => json(&q, serde_json::to_vec_pretty(&routez::build(shard, &rq, now_ns()))),
                Err(e) => Response::text(400, e),
            }
        }
        "/leafz" => {
            st.count("/leafz");
            match LeafzQuery::from_query(&q) {
                Ok(lq) => json(&q, serde_json::to_vec_pretty(&leafz::build(shard, &lq, now_ns()))),
                Err(e) => Response::text(400, e),
            }
        }
        "/subsz" | "/subscriptionsz" => {
            st.count(if path == "/subsz" { "/subsz" } else { "/subscriptionsz" });
            let sq = match SubszQuery::from_query(&q) {
                Ok(s) => s,
                Err(e) => return Response::text(400, e),
            };
            // `acc=`: one account's figures and subscriptions; an unknown one has none.
            let account = sq.account.as_deref().map(|a| accounts.id(a));
            let subs = (sq.subs && account != Some(None))
                .then(|| SubsQuery { test: sq.test.clone(), account: account.flatten() });
            let query = CoreQuery { subs, accounts: account.is_some(), ..Default::default() };
            let snaps = gather(shard, query).await;
            let stats = match account {
                None => SublistStats::sum(&snaps),
                Some(id) => SublistStats::account(&snaps, id),
            };
            json(&q, subsz::reply(server_id, &sq, stats, snaps, now_ns()))
        }
        "/accountz" => {
            st.count("/accountz");
            let Some(name) = q.get("acc") else {
                return json(&q, serde_json::to_vec_pretty(&accountz::list(server_id, accounts, now_ns())));
            };
            let Some(id) = accounts.id(name) else {
                return Response::text(400, format!("Account {name} does not exist"));
            };
            let snaps = gather(shard, CoreQuery { accounts: true, ..Default::default() }).await;
            let figures = sum_accounts(&snaps).get(id as usize).copied().unwrap_or_default();
            let configured = &shard.shared.opts.accounts;
            let d = accountz::detail(server_id, accounts, configured, shard.shared.opts.auth.trust.as_deref(), id, &figures, st.start, now_ns());
            json(&q, serde_json::to_vec_pretty(&d))
        }
        "/accstatz" => {
            st.count("/accstatz");
            let unused = match q.boolean("unused") {
                Ok(b) => b,
                Err(e) => return Response::text(400, e),
            };
            let snaps = gather(shard, CoreQuery { accounts: true, ..Default::default() }).await;
            let figures = sum_accounts(&snaps);
            json(&q, serde_json::to_vec_pretty(&accountz::statz(server_id, accounts, &figures, unused, now_ns())))
        }
        "/healthz" => {
            st.count("/healthz");
            json(&q, Ok(br#"{"status":"ok"}"#.to_vec()))
        }
        "/metrics" => {
            st.count("/metrics");
            let snaps = gather(shard, CoreQuery { totals: true, accounts: true, ..Default::default() }).await;
            let now = now_ns();
            let mut e = metrics::Exposition::new(server_id);
            if let Ok(v) = serde_json::to_value(varz::build(shard, st, &snaps, false, now)) {
                metrics::json_gauges(&mut e, "varz", &v, &["server_id", "server_name", "version"]);
            }
            metrics::connz(&mut e, &snaps);
            if let Ok(v) = serde_json::to_value(subsz::SublistStats::sum(&snaps)) {
                metrics::json_gauges(&mut e, "subsz", &v, &[]);
            }
            metrics::routez(&mut e, &routez::build(shard, &RoutezQuery::default(), now));
            metrics::cores(&mut e, &snaps);
            metrics::accounts(&mut e, &accounts.names, &sum_accounts(&snaps));
            Response { status: 200, content_type: metrics::CONTENT_TYPE, body: e.finish().into_bytes(), cors: false }
        }
        _ => Response::text(404, "404 page not found\n"),
    }
}

/// The index page: a link per endpoint, as nats-server's.
fn index() -> Response {
    let mut html = String::from(
        "<html lang=\"en\">\n<head><title>natsu monitoring</title></head>\n<body>\n<h1>natsu</h1>\n",
    );
    html.push_str(&format!(
        "<p>v{} (compatible with nats-server {})</p>\n",
        env!("CARGO_PKG_VERSION"),
        crate::protocol::info::COMPAT_VERSION
    ));
    for (path, title) in ENDPOINTS {
        html.push_str(&format!("<a href=./{path}>{title}</a><br/>\n"));
    }
    html.push_str("</body>\n</html>\n");
    Response { status: 200, content_type: "text/html; charset=utf-8", body: html.into_bytes(), cors: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_are_names_only() {
        assert!(valid_callback("cb"));
        assert!(valid_callback("jQuery_123.x$"));
        assert!(!valid_callback("alert(1)//"));
        assert!(!valid_callback("a b"));
    }

    #[test]
    fn jsonp_wraps_and_json_allows_any_origin() {
        let r = json(&Query::parse("callback=cb"), Ok(b"{}".to_vec()));
        assert_eq!((r.content_type, &r.body[..], r.cors), ("application/javascript", &b"cb({})"[..], true));
        let r = json(&Query::parse(""), Ok(b"{}".to_vec()));
        assert_eq!((r.content_type, r.cors), ("application/json", true));
    }
}
