//! `natsu-gateway` as users run it: the real binary in front of a real broker, a
//! `natsu::service` router (or a raw NATS responder) behind it, HTTP over real sockets.
//!
//! Covered: nats-proxy's mapping (methods, paths, the root, percent-escapes, path
//! variables), query/form/headers/JSON bodies, every error status and that a path that
//! cannot be a subject is never published, per-prefix timeout/encoding/body limit, hooks,
//! middleware, keep-alive, HTTPS, WebSockets both ways (and both ends closing), two gateways
//! sharing the load, two processes on one port, the upstream block's order and reconnect
//! pace, `/healthz` and `/metrics`, `-t`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::{self, get, request, Reply};
use common::service::Service;
use common::{free_port, run_local, Server, TempDir};
use natsu::client;
use natsu::service::proto::{add, Request, Response};
use natsu::service::{envelope, Context};
use prost::Message;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

fn gateway_bin() -> &'static str {
    env!("CARGO_BIN_EXE_natsu-gateway")
}

/// A running gateway, killed on drop; its log collected for the tests that read it.
struct Gateway {
    child: Child,
    port: u16,
    mport: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Start with `--listen`, `--http_port` on free ports and `args`; wait until it listens.
    fn start(args: &[&str]) -> Gateway {
        let (port, mport) = (free_port(), free_port());
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec!["--listen", &listen, "--cores", "2"];
        let mp = mport.to_string();
        all.extend(["--http_port", &mp]);
        all.extend(args);
        Gateway::spawn(&all, port, mport)
    }

    /// Start with a config file (which must set listen and http_port to these ports).
    fn with_config(dir: &TempDir, text: &str, port: u16, mport: u16) -> Gateway {
        let path = dir.0.join("gateway.conf");
        std::fs::write(&path, text).unwrap();
        Gateway::spawn(&["-c", path.to_str().unwrap()], port, mport)
    }

    fn spawn(args: &[&str], port: u16, mport: u16) -> Gateway {
        let mut child = Command::new(gateway_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start natsu-gateway");
        let log = Arc::new(Mutex::new(Vec::new()));
        for out in [child.stdout.take().map(|o| Box::new(o) as Box<dyn std::io::Read + Send>), child.stderr.take().map(|e| Box::new(e) as _)]
            .into_iter()
            .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() || TcpStream::connect(("127.0.0.1", mport)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("natsu-gateway exited ({status}): {:?}", log.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "natsu-gateway did not listen in time: {:?}", log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
        Gateway { child, port, mport, log }
    }

    /// Wait until every executor's NATS connection is up.
    fn wait_healthy(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            match http::try_request(self.mport, "GET", "/healthz", &[], b"") {
                Ok(r) if r.status == 200 => return,
                other => assert!(Instant::now() < deadline, "gateway never healthy: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_lines(&self, needle: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker, a gateway in front of it (healthy), and a service set up by `setup`.
fn stack(setup: impl FnOnce(&natsu::service::Router) + Send + 'static) -> (Server, Gateway, Service) {
    let broker = Server::start();
    let service = Service::start(&broker.url(), None, setup);
    let gw = Gateway::start(&["--server", &broker.url()]);
    gw.wait_healthy();
    (broker, gw, service)
}

fn echo(ctx: &mut Context) {
    let req = ctx.request().clone();
    let headers: serde_json::Map<String, serde_json::Value> =
        req.header.iter().map(|(k, v)| (k.clone(), json!(v.arr))).collect();
    let form: serde_json::Map<String, serde_json::Value> =
        ctx.form_all().iter().map(|(k, v)| (k.clone(), json!(v.arr))).collect();
    ctx.json(
        200,
        &json!({
            "method": req.method, "url": req.url, "path": ctx.path(), "remote": req.remote_addr,
            "headers": headers, "form": form, "body": String::from_utf8_lossy(&req.body),
            "id": ctx.param("id"), "post": ctx.param("post"),
        }),
    );
}

#[test]
fn methods_paths_and_variables_map_as_nats_proxy() {
    let (_b, gw, _s) = stack(|r| {
        r.get("/users/:id", echo).unwrap();
        r.get("/users/:id/posts/:post", echo).unwrap();
        r.post("/users", echo).unwrap();
        r.put("/users/:id", echo).unwrap();
        r.delete("/users/:id", echo).unwrap();
        r.get("/", |c| c.text(200, "root")).unwrap();
        r.get("/files/report.pdf", |c| c.text(200, "dotted")).unwrap();
        r.handle("PATCH", "/users/:id", echo).unwrap();
    });
    let j = get(gw.port, "/users/42").json();
    assert_eq!((j["method"].as_str(), j["id"].as_str(), j["url"].as_str()), (Some("GET"), Some("42"), Some("/users/42")));
    assert!(j["remote"].as_str().unwrap().starts_with("127.0.0.1:"), "{j}");
    let j = get(gw.port, "/users/j%C3%B6rg/posts/7?x=1").json();
    assert_eq!((j["id"].as_str(), j["post"].as_str(), j["url"].as_str()), (Some("jörg"), Some("7"), Some("/users/j%C3%B6rg/posts/7?x=1")));
    for method in ["PUT", "DELETE", "PATCH"] {
        let r = request(gw.port, method, "/users/9", &[], b"x");
        assert_eq!(r.status, 200, "{method}: {}", r.text());
        assert_eq!(r.json()["method"], method);
    }
    assert_eq!(request(gw.port, "POST", "/users", &[], b"{}").json()["method"], "POST");
    assert_eq!(get(gw.port, "/").text(), "root");
    // A dot in a path is a token separator, as nats-proxy maps it.
    assert_eq!(get(gw.port, "/files/report.pdf").text(), "dotted");
    // A method nobody serves at this path.
    assert_eq!(request(gw.port, "POST", "/users/42", &[], b"").status, 503);
}

#[test]
fn query_form_headers_and_json_bodies_reach_the_service() {
    let (_b, gw, _s) = stack(|r| {
        r.post("/form", echo).unwrap();
        r.get("/form", echo).unwrap();
        r.post("/json", |c| match c.bind_json::<serde_json::Value>() {
            Ok(v) => c.json(201, &json!({"got": v, "ct": c.header("content-type")})),
            Err(e) => c.json(422, &json!({"error": e.to_string()})),
        })
        .unwrap();
    });
    let j = request(gw.port, "POST", "/form?a=query&q=1", &[("Content-Type", "application/x-www-form-urlencoded"), ("X-Trace-Id", "t1")], b"a=body&b=two+words&b=2")
        .json();
    assert_eq!(j["form"]["a"], json!(["body"]), "the body's fields win: {j}");
    assert_eq!(j["form"]["q"], json!(["1"]));
    assert_eq!(j["form"]["b"], json!(["two words", "2"]));
    // Names as Go canonicalises them, so nats-proxy services find them.
    assert_eq!(j["headers"]["X-Trace-Id"], json!(["t1"]), "{j}");
    assert_eq!(j["headers"]["Content-Type"], json!(["application/x-www-form-urlencoded"]));
    assert_eq!(j["body"], "a=body&b=two+words&b=2");
    let j = get(gw.port, "/form?x=1&x=2&y=%C3%A9").json();
    assert_eq!((j["form"]["x"].clone(), j["form"]["y"].clone()), (json!(["1", "2"]), json!(["é"])));

    let r = request(gw.port, "POST", "/json", &[("Content-Type", "application/json")], br#"{"n": 5, "s": "x"}"#);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"got": {"n": 5, "s": "x"}, "ct": "application/json"}));
    assert_eq!(request(gw.port, "POST", "/json", &[], b"{nope").status, 422);
}

/// Count every message published anywhere on the broker: a path refused with 400 must not
/// have been published at all.
fn count_everything(url: &str) -> (Arc<AtomicUsize>, Service) {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let svc = Service::start(url, None, move |r| {
        r.connection()
            .subscribe(">", move |m| {
                if !m.subject.starts_with("_INBOX") {
                    s.fetch_add(1, Ordering::SeqCst);
                }
            })
            .unwrap();
    });
    (seen, svc)
}

#[test]
fn paths_that_cannot_be_subjects_get_400_and_are_never_published() {
    let (broker, gw, _s) = stack(|r| {
        r.get("/ok", |c| c.text(200, "fine")).unwrap();
    });
    let (seen, _spy) = count_everything(&broker.url());
    let long = format!("/{}", "a".repeat(5000));
    for path in ["/a%20b", "/a/*", "/a/%3E", "/a//b", "/a/", "/a%01b", "/x..y", "/a%zz", long.as_str()] {
        let r = get(gw.port, path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.json()["error"].is_string());
    }
    // The gateway's NATS connection is unharmed: the next request works at once.
    assert_eq!(get(gw.port, "/ok").text(), "fine");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(seen.load(Ordering::SeqCst), 1, "only GET /ok was published");
}

#[test]
fn error_statuses_are_short_json() {
    let broker = Server::start();
    // A silent subscriber (never answers), and one that answers junk or bad headers.
    let _raw = Service::start(&broker.url(), None, |r| {
        let nc = r.connection().clone();
        nc.subscribe("GET:.slow", |_| {}).unwrap();
        let n2 = nc.clone();
        nc.subscribe("GET:.junk", move |m| {
            let _ = n2.try_publish(m.reply.as_deref().unwrap(), b"\xff\xfe not protobuf");
        })
        .unwrap();
        let n3 = nc.clone();
        nc.subscribe("GET:.badheader", move |m| {
            let mut resp = Response::with_status(200);
            add(&mut resp.header, "Bad Name", "x");
            let _ = n3.try_publish(m.reply.as_deref().unwrap(), resp.encode_to_vec());
        })
        .unwrap();
        let n4 = nc.clone();
        nc.subscribe("GET:.badstatus", move |m| {
            let _ = n4.try_publish(m.reply.as_deref().unwrap(), Response::with_status(42).encode_to_vec());
        })
        .unwrap();
    });
    let (port, mport) = (free_port(), free_port());
    let dir = TempDir::new("gw-errors");
    let gw = Gateway::with_config(
        &dir,
        &format!(
            "listen: \"127.0.0.1:{port}\"\nhttp_port: {mport}\ncores: 1\nmax_body: 1KB\ntimeout: 20s\n\
             nats {{ server {} }}\npaths [ {{ prefix: \"/slow\", timeout: 300ms }}, {{ prefix: \"/big\", max_body: 10KB }} ]\n",
            broker.url()
        ),
        port,
        mport,
    );
    gw.wait_healthy();
    let check = |r: Reply, status: u16| {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.json()["status"], status);
    };
    check(get(port, "/nobody/home"), 503);
    let started = Instant::now();
    check(get(port, "/slow"), 504);
    assert!(started.elapsed() < Duration::from_secs(10), "the per-prefix timeout applies, not the default");
    check(get(port, "/junk"), 502);
    check(get(port, "/badheader"), 502);
    check(get(port, "/badstatus"), 502);
    check(request(port, "POST", "/anything", &[], &[b'x'; 1025]), 413);
    // Chunked, with no length up front: refused once it passes the limit.
    let mut s = http::connect(port);
    s.write_all(b"POST /anything HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n").unwrap();
    s.write_all(&[b'y'; 0x800]).unwrap();
    s.write_all(b"\r\n0\r\n\r\n").unwrap();
    check(http::read_reply(&mut s, &mut Vec::new()).unwrap(), 413);
    // A body that stops arriving: 408 once the path's timeout has passed.
    let mut s = http::connect(port);
    s.write_all(b"POST /slow/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part").unwrap();
    check(http::read_reply(&mut s, &mut Vec::new()).unwrap(), 408);
    // A prefix with a larger limit lets 2 KiB through (to a 503: nobody serves it).
    check(request(port, "POST", "/big/x", &[], &[b'x'; 2048]), 503);
    // Statuses are counted.
    let metrics = get(mport, "/metrics").text();
    for code in ["408", "413", "502", "503", "504"] {
        assert!(metrics.contains(&format!("natsu_gateway_requests_total{{code=\"{code}\"}}")), "{code}: {metrics}");
    }
}

#[test]
fn no_connection_to_nats_is_503_and_unhealthy() {
    let dead = free_port();
    let gw = Gateway::start(&["--server", &format!("nats://127.0.0.1:{dead}")]);
    let r = get(gw.port, "/x");
    assert_eq!(r.status, 503, "{}", r.text());
    let h = get(gw.mport, "/healthz");
    assert_eq!(h.status, 503);
    assert_eq!(h.json()["status"], "unavailable");
}

#[test]
fn hooks_and_middleware() {
    let broker = Server::start();
    let _s = Service::start(&broker.url(), None, |r| {
        let calls = Arc::new(AtomicUsize::new(0));
        r.use_middleware(|c| {
            if c.path().starts_with("/secure") && c.header("authorization") != Some("Bearer ok") {
                c.abort_with_json(401, &json!({"error": "who are you"}));
            }
        });
        r.use_middleware(|c| c.set_header("X-Seen-By", "mw2"));
        let k = calls.clone();
        r.get("/secure/data", move |c| {
            k.fetch_add(1, Ordering::SeqCst);
            c.set_header("X-Debug", "internal");
            c.text(200, "secret");
        })
        .unwrap();
        r.get("/open", |c| {
            c.set_header("X-Debug", "internal");
            c.text(200, "open");
        })
        .unwrap();
        let k = calls.clone();
        r.get("/calls", move |c| c.text(200, k.load(Ordering::SeqCst).to_string())).unwrap();
    });
    let (port, mport) = (free_port(), free_port());
    let dir = TempDir::new("gw-hooks");
    let gw = Gateway::with_config(
        &dir,
        &format!(
            "listen: \"127.0.0.1:{port}\"\nhttp_port: {mport}\nnats {{ server {} }}\n\
             hooks [ {{ path: \"^/secure/\", set_headers {{ \"Cache-Control\": \"no-store\" }}, remove_headers: [\"x-debug\"] }} ]\n",
            broker.url()
        ),
        port,
        mport,
    );
    gw.wait_healthy();
    let r = get(port, "/secure/data");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"), "hooks run on aborted answers too");
    assert_eq!(get(port, "/calls").text(), "0", "an aborted request never reaches the handler");
    let r = request(port, "GET", "/secure/data", &[("Authorization", "Bearer ok")], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "secret"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-debug"), None, "the hook removed it");
    assert_eq!(r.header("x-seen-by"), Some("mw2"), "middleware runs in order");
    let r = get(port, "/open");
    assert_eq!(r.header("x-debug"), Some("internal"), "the hook's regex does not match /open");
    assert_eq!(r.header("cache-control"), None);
}

#[test]
fn json_envelope_per_prefix_reaches_a_raw_service() {
    let broker = Server::start();
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let g = got.clone();
    let _raw = Service::start(&broker.url(), None, move |r| {
        let nc = r.connection().clone();
        let n = nc.clone();
        nc.subscribe("POST:.py.echo", move |m| {
            g.lock().unwrap().push(String::from_utf8_lossy(&m.data).into_owned());
            let req = envelope::decode_request(&m.data).expect("the gateway sent the JSON envelope");
            let answer = json!({"status": 202, "header": {"X-Lang": "any"}, "body": {"echoed": String::from_utf8_lossy(&req.body)}});
            let _ = n.try_publish(m.reply.as_deref().unwrap(), answer.to_string());
        })
        .unwrap();
    });
    let (port, mport) = (free_port(), free_port());
    let dir = TempDir::new("gw-json");
    let gw = Gateway::with_config(
        &dir,
        &format!("listen: \"127.0.0.1:{port}\"\nhttp_port: {mport}\nnats {{ server: {} }}\npaths [ {{ prefix: \"/py/\", encoding: json }} ]\n", broker.url()),
        port,
        mport,
    );
    gw.wait_healthy();
    let r = request(port, "POST", "/py/echo?k=v", &[], b"hello");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("x-lang"), Some("any"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"echoed": "hello"}));
    let sent: serde_json::Value = serde_json::from_str(&got.lock().unwrap()[0]).unwrap();
    assert_eq!((sent["method"].as_str(), sent["url"].as_str()), (Some("POST"), Some("/py/echo?k=v")));
    assert_eq!(sent["form"]["k"], json!(["v"]));
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let (_b, gw, _s) = stack(|r| {
        r.get("/n/:id", |c| {
            let id = c.param("id").unwrap_or_default().into_owned();
            c.text(200, id)
        })
        .unwrap();
    });
    let mut s = http::connect(gw.port);
    let mut buf = Vec::new();
    // Pipelined: three requests written at once, answered in order.
    let mut batch = Vec::new();
    for i in 0..3 {
        batch.extend(http::encode("GET", &format!("/n/{i}"), &[], b""));
    }
    s.write_all(&batch).unwrap();
    for i in 0..3 {
        assert_eq!(http::read_reply(&mut s, &mut buf).unwrap().text(), i.to_string());
    }
    for i in 3..50 {
        s.write_all(&http::encode("GET", &format!("/n/{i}"), &[], b"")).unwrap();
        assert_eq!(http::read_reply(&mut s, &mut buf).unwrap().text(), i.to_string());
    }
}

#[test]
fn https() {
    let pki = common::pki::Pki::new();
    let broker = Server::start();
    let _s = Service::start(&broker.url(), None, |r| {
        r.get("/tls", |c| c.text(200, "over tls")).unwrap();
    });
    let (port, mport) = (free_port(), free_port());
    let gw = Gateway::with_config(
        &pki.dir,
        &format!(
            "listen: \"127.0.0.1:{port}\"\nhttp_port: {mport}\nnats {{ server {} }}\ntls {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
            broker.url(),
            pki.server_cert.display(),
            pki.server_key.display()
        ),
        port,
        mport,
    );
    gw.wait_healthy();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&pki.ca).unwrap();
    for c in rustls_pemfile_certs(&pem) {
        roots.add(c).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), "127.0.0.1".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, http::connect(port));
    tls.write_all(&http::encode("GET", "/tls", &[], b"")).unwrap();
    let r = http::read_reply(&mut tls, &mut Vec::new()).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "over tls"));
    // Plain HTTP to the HTTPS port gets no answer.
    assert!(http::try_request(port, "GET", "/tls", &[], b"").is_err());
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).map(|c| c.unwrap()).collect()
}

/// A WebSocket client for the gateway, with a read timeout.
fn ws_connect(port: u16, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let s = http::connect(port);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), s).expect("the WebSocket handshake");
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers().get("x-chat").map(|v| v.to_str().unwrap()), Some("on"), "the service's headers reach the browser");
    ws
}

#[test]
fn websockets_both_ways_and_both_ends_closing() {
    let gone = Arc::new(Mutex::new(Vec::<String>::new()));
    let g = gone.clone();
    let (_b, gw, _s) = stack(move |r| {
        let router = r.clone();
        r.get("/ws/:mode", move |c| {
            let Some(id) = c.websocket_id().map(str::to_string) else {
                return c.json(400, &json!({"error": "websocket only"}));
            };
            if c.param("mode").as_deref() == Some("deny") {
                return c.json(403, &json!({"error": "no"}));
            }
            c.set_header("X-Chat", "on");
            c.accept_websocket();
            // Sent while accepting, before the handshake is done: it must not be lost.
            router.ws_send(&id, "welcome").unwrap();
            let (out, sock) = (router.clone(), id.clone());
            router
                .on_ws_message(&id, move |m| {
                    if &m.data[..] == b"close me" {
                        let _ = out.ws_close(&sock);
                    } else {
                        let mut reply = b"echo:".to_vec();
                        reply.extend_from_slice(&m.data);
                        let _ = out.ws_send(&sock, reply);
                    }
                })
                .unwrap();
            let g = g.clone();
            router.on_ws_gone(&id, move |m| g.lock().unwrap().push(String::from_utf8_lossy(&m.data).into_owned())).unwrap();
        })
        .unwrap();
    });
    let mut ws = ws_connect(gw.port, "/ws/echo");
    assert_eq!(ws.read().unwrap(), tungstenite::Message::Text("welcome".into()), "what the service sent while accepting");
    ws.send(tungstenite::Message::Text("hi".into())).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::Text("echo:hi".into()));
    ws.send(tungstenite::Message::Binary(vec![0xff, 0, 1])).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::Binary(b"echo:\xff\x00\x01".to_vec()), "not UTF-8: a binary frame");
    // The browser closes: the service hears of it.
    ws.close(Some(tungstenite::protocol::CloseFrame { code: 1001.into(), reason: "tab closed".into() })).unwrap();
    while ws.read().is_ok() {}
    wait_for(|| gone.lock().unwrap().iter().any(|g| g == "1001 tab closed"), "WS_GONE with the close code");

    // The service closes: the browser gets a close frame, and the service still hears that
    // the socket is gone.
    let mut ws = ws_connect(gw.port, "/ws/echo");
    assert_eq!(ws.read().unwrap(), tungstenite::Message::Text("welcome".into()));
    ws.send(tungstenite::Message::Text("close me".into())).unwrap();
    match ws.read() {
        Ok(tungstenite::Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => {}
        other => panic!("expected a close, got {other:?}"),
    }
    wait_for(|| gone.lock().unwrap().len() == 2, "a second WS_GONE");

    // A socket that just drops (no close frame): still reported.
    let ws = ws_connect(gw.port, "/ws/echo");
    drop(ws);
    wait_for(|| gone.lock().unwrap().iter().any(|g| g.starts_with("1006")), "WS_GONE 1006 for a dropped socket");

    // A service that declines: its answer is the HTTP answer.
    let s = http::connect(gw.port);
    match tungstenite::client(format!("ws://127.0.0.1:{}/ws/deny", gw.port), s) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|(_, r)| r.status())),
    }
    let metrics = get(gw.mport, "/metrics").text();
    assert!(metrics.contains("natsu_gateway_websockets_total 3"), "{metrics}");
    assert!(metrics.contains("natsu_gateway_websockets_open 0"), "{metrics}");
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn two_gateways_share_the_load_of_two_service_instances() {
    let broker = Server::start();
    let counts: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let services: Vec<Service> = counts
        .iter()
        .map(|c| {
            let c = c.clone();
            Service::start(&broker.url(), Some("api"), move |r| {
                r.get("/work", move |ctx| {
                    c.fetch_add(1, Ordering::SeqCst);
                    ctx.text(200, "done")
                })
                .unwrap();
            })
        })
        .collect();
    let gws = [Gateway::start(&["--server", &broker.url()]), Gateway::start(&["--server", &broker.url()])];
    for g in &gws {
        g.wait_healthy();
    }
    for i in 0..200 {
        let r = get(gws[i % 2].port, "/work");
        assert_eq!((r.status, r.text().as_str()), (200, "done"));
    }
    let (a, b) = (counts[0].load(Ordering::SeqCst), counts[1].load(Ordering::SeqCst));
    assert_eq!(a + b, 200, "each request answered exactly once");
    assert!(a > 20 && b > 20, "both instances worked: {a}/{b}");
    drop(services);
}

#[test]
fn a_second_gateway_on_the_same_port_is_refused() {
    let broker = Server::start();
    let first = Gateway::start(&["--server", &broker.url()]);
    let out = Command::new(gateway_bin())
        .args(["--listen", &format!("127.0.0.1:{}", first.port), "--server", &broker.url()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on") && err.contains("in use"), "{err}");
}

/// The upstream block: servers tried in the listed order, the first that works used; when
/// its server goes, the next; nobody there: wait `reconnect` and try again.
#[test]
fn upstream_block_first_working_server_wins_and_fails_over() {
    let (pa, pb) = (free_port(), free_port());
    let answer_with = |name: &'static str, url: String| {
        Service::start(&url, None, move |r| {
            r.get("/who", move |c| c.text(200, name)).unwrap();
        })
    };
    let mut a = Server::start_on(pa);
    let b = Server::start_on(pb);
    let _sa = answer_with("A", a.url());
    let _sb = answer_with("B", b.url());
    let (port, mport) = (free_port(), free_port());
    let dir = TempDir::new("gw-failover");
    let conf = format!(
        "listen: \"127.0.0.1:{port}\"\nhttp_port: {mport}\ncores: 1\nnats {{\n  server 127.0.0.1:{pa};\n  server 127.0.0.1:{pb};\n  reconnect: 200ms\n}}\n"
    );
    let gw = Gateway::with_config(&dir, &conf, port, mport);
    gw.wait_healthy();
    for _ in 0..5 {
        assert_eq!(get(port, "/who").text(), "A", "the first listed server is used");
    }
    a.kill();
    wait_for(|| http::try_request(port, "GET", "/who", &[], b"").is_ok_and(|r| r.text() == "B"), "failover to B");
    drop(gw);

    // The first server down from the start: the second is used.
    let gw = Gateway::with_config(&dir, &conf, port, mport);
    gw.wait_healthy();
    assert_eq!(get(port, "/who").text(), "B");
}

/// A supervisor restarting the gateway right after `kill -9`, under load: the new process
/// gets the port (the dead one's sockets linger until the kernel has dropped its io_uring)
/// and every answer it gives is right.
#[test]
fn restart_after_kill_9_on_the_same_port_under_load() {
    let (broker, mut gw, _s) = stack(|r| {
        r.get("/n/:id", |c| {
            let id = c.param("id").unwrap_or_default().into_owned();
            c.text(200, id)
        })
        .unwrap();
    });
    let port = gw.port;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|t| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) && i < 100_000 {
                    i += 1;
                    let want = format!("{t}-{i}");
                    match http::try_request(port, "GET", &format!("/n/{want}"), &[], b"") {
                        Ok(r) if r.status == 200 => {
                            assert_eq!(r.text(), want, "a wrong answer");
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        // Refused, reset, or 503 while reconnecting to NATS.
                        _ => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
            })
        })
        .collect();
    wait_for(|| ok.load(Ordering::SeqCst) > 200, "load before the kill");
    let _ = Command::new("kill").args(["-9", &gw.child.id().to_string()]).status();
    let _ = gw.child.wait();
    let mport = gw.mport;
    let restarted = Command::new(gateway_bin())
        .args(["--listen", &format!("127.0.0.1:{port}"), "--http_port", &mport.to_string(), "--cores", "2", "--server", &broker.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    gw.child = restarted;
    gw.wait_healthy();
    let before = ok.load(Ordering::SeqCst);
    wait_for(|| ok.load(Ordering::SeqCst) > before + 200, "load served after the restart");
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().expect("no wrong answers");
    }
}

#[test]
fn reconnect_interval_is_honoured_when_no_server_works() {
    let dead = free_port();
    let (port, mport) = (free_port(), free_port());
    let dir = TempDir::new("gw-reconnect");
    let conf = format!("listen: \"127.0.0.1:{port}\"\nhttp_port: {mport}\ncores: 1\nnats {{ server 127.0.0.1:{dead}; reconnect: 1s }}\n");
    let gw = Gateway::with_config(&dir, &conf, port, mport);
    std::thread::sleep(Duration::from_millis(3500));
    let tries = gw.log_lines("cannot connect to NATS");
    assert!((3..=5).contains(&tries), "one round a second over 3.5 s, not {tries}: {:?}", gw.log.lock().unwrap());
    assert!(gw.log_lines("trying again in 1s") >= 3);
    // A server appears: the gateway finds it within a round.
    let broker = Server::start_on(dead);
    let appeared = Instant::now();
    gw.wait_healthy();
    assert!(appeared.elapsed() < Duration::from_secs(3), "took {:?}", appeared.elapsed());
    drop(broker);
}

#[test]
fn config_check_and_bad_settings() {
    let dir = TempDir::new("gw-conf");
    let good = dir.0.join("good.conf");
    std::fs::write(&good, "listen: \"127.0.0.1:0\"\nnats { server 127.0.0.1:4222; reconnect: 1s; ping: 30s; user: u; password: p }\n").unwrap();
    let out = Command::new(gateway_bin()).args(["-t", "-c", good.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("test is successful"));
    let bad = dir.0.join("bad.conf");
    std::fs::write(&bad, "listen: \"127.0.0.1:0\"\nnats {\n  server 127.0.0.1:4222\n  reconect: 1s\n}\nverify: true\n").unwrap();
    let out = Command::new(gateway_bin()).args(["-t", "-c", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.conf:4:3: unknown field \"reconect\" in nats"), "{err}");
    assert!(err.contains("bad.conf:6:1: unknown field \"verify\""), "{err}");
    for args in [&["--bogus"][..], &["--listen", "nowhere"], &["--http_port", "0"], &["-c", "/nonexistent.conf"]] {
        let out = Command::new(gateway_bin()).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: a reason is printed");
    }
}

#[test]
fn service_answers_every_request_with_the_natsu_client_too() {
    // The service side without the gateway: a request made by hand arrives as the gateway
    // makes it (same subject, same message).
    let (broker, _gw, _s) = stack(|r| {
        r.get("/ping", |c| c.text(200, "pong")).unwrap();
    });
    let url = broker.url();
    let text = run_local(WAIT, move || async move {
        let nc = client::connect(&url).await.unwrap();
        let req = Request { url: "/ping".into(), method: "GET".into(), ..Request::default() };
        let m = nc.request("GET:.ping", req.encode_to_vec(), WAIT).await.unwrap();
        String::from_utf8(Response::decode_from(&m.data).unwrap().body).unwrap()
    });
    assert_eq!(text, "pong");
}

/// Bytes that are no HTTP get hyper's 400 and the connection closed; the gateway goes on
/// serving everyone else.
#[test]
fn bad_http_is_refused_without_hurting_others() {
    let (_b, gw, _s) = stack(|r| {
        r.get("/ok", |c| c.text(200, "fine")).unwrap();
    });
    let mut good = http::connect(gw.port);
    let mut buf = Vec::new();
    good.write_all(&http::encode("GET", "/ok", &[], b"")).unwrap();
    assert_eq!(http::read_reply(&mut good, &mut buf).unwrap().text(), "fine");
    let too_many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    for junk in [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n".to_vec(),
        b"GET /ok HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n".to_vec(),
        b"GET /ok HTTP/9.9\r\n\r\n".to_vec(),
        format!("GET /ok HTTP/1.1\r\n{too_many_headers}\r\n").into_bytes(),
        [b"GET /".to_vec(), vec![b'a'; 1 << 20], b" HTTP/1.1\r\n\r\n".to_vec()].concat(),
    ] {
        let mut s = http::connect(gw.port);
        let _ = s.write_all(&junk);
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    }
    // The kept-alive connection and new ones still work.
    good.write_all(&http::encode("GET", "/ok", &[], b"")).unwrap();
    assert_eq!(http::read_reply(&mut good, &mut buf).unwrap().text(), "fine");
    assert_eq!(get(gw.port, "/ok").text(), "fine");
}

/// The library's hooks: any function over the answer, run in the gateway's process. The
/// gateway runs in a thread of this test process for the rest of its life.
#[test]
fn library_hooks_are_functions_over_the_answer() {
    let broker = Server::start();
    let _s = Service::start(&broker.url(), None, |r| {
        r.get("/api/v", |c| c.json(200, &json!({"v": 1}))).unwrap();
        r.get("/other", |c| c.text(200, "plain")).unwrap();
    });
    let (port, mport) = (free_port(), free_port());
    let mut cfg = natsu::gateway::config::Config::default();
    cfg.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.http_port = Some(mport);
    cfg.cores = 1;
    cfg.access_log = false;
    cfg.nats.servers = vec![broker.url()];
    let gw = natsu::gateway::Gateway::new(cfg)
        .hook("^/api/", |resp| {
            resp.status_code = 299;
            add(&mut resp.header, "X-Api-Version", "2");
            resp.body.extend_from_slice(b" ");
        })
        .unwrap();
    assert!(natsu::gateway::Gateway::new(natsu::gateway::config::Config::default()).hook("(", |_| {}).is_err());
    std::thread::spawn(move || gw.run());
    wait_for(|| http::try_request(mport, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200), "the in-process gateway");
    let r = get(port, "/api/v");
    assert_eq!((r.status, r.header("x-api-version"), r.text().as_str()), (299, Some("2"), "{\"v\":1} "));
    let r = get(port, "/other");
    assert_eq!((r.status, r.header("x-api-version")), (200, None));
}
