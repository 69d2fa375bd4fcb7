//! `natsu::service` against a real broker: a service's [`Router`] runs on a glommio
//! executor of its own thread, and the test plays the gateway with natsu's client, sending
//! nats-proxy requests (protobuf, or the JSON envelope) on the subjects the gateway uses and
//! decoding the answers.
//!
//! Ordering comes from request/reply and `flush()` (a PING/PONG round trip): a service is
//! ready once its SUBs are flushed, and a socket's subscriptions made in a handler reach the
//! broker before that handler's answer does.
#![cfg(feature = "service")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use natsu::client::{self, Connection, Error};
use natsu::service::proto::{self, add, Request, Response};
use natsu::service::subject::request_subject;
use natsu::service::{envelope, Context, Router, WS_CLOSE, WS_GONE, WS_IN, WS_OUT};
use prost::Message;
use serde_json::{json, Value};

use common::service::Service;
use common::{run_local, Limits, Server};

const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(5);

fn request(method: &str, url: &str) -> Request {
    Request { url: url.into(), method: method.into(), remote_addr: "127.0.0.1:50000".into(), ..Request::default() }
}

fn subject_of(req: &Request) -> String {
    request_subject(&req.method, req.path()).expect("a path that can be a subject")
}

/// Send `req` as the gateway does (protobuf) and decode the answer.
async fn call(nc: &Connection, req: &Request) -> Response {
    let msg = nc.request(&subject_of(req), req.encode_to_vec(), WAIT).await.expect("an answer");
    assert!(!envelope::is_json(&msg.data), "a protobuf request gets a protobuf answer");
    Response::decode_from(&msg.data).expect("a protobuf Response")
}

/// Send `req` as the JSON envelope and decode the answer, which must be JSON too.
async fn call_json(nc: &Connection, req: &Request) -> Response {
    let msg = nc.request(&subject_of(req), envelope::encode_request(req), WAIT).await.expect("an answer");
    assert!(envelope::is_json(&msg.data), "a JSON request gets a JSON answer: {:?}", msg.data);
    envelope::decode_response(&msg.data).expect("a JSON envelope Response")
}

fn body_json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("a JSON body ({e}): {:?}", String::from_utf8_lossy(&r.body)))
}

fn trace(r: &Response) -> Vec<String> {
    r.header.get("Trace").map(|v| v.arr.clone()).unwrap_or_default()
}

/// Count calls in a counter the test thread reads.
fn counter() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let c = Arc::new(AtomicUsize::new(0));
    (c.clone(), c)
}

fn item_routes(router: &Router) {
    router.get("/items/:id", |ctx| ctx.json(200, &json!({ "id": ctx.param("id") }))).unwrap();
    router.get("/users/:user/posts/:post", |ctx| ctx.json(200, &json!({ "user": ctx.param("user"), "post": ctx.param("post") }))).unwrap();
    router
        .post("/items", |ctx| match ctx.bind_json::<Value>() {
            Ok(item) => ctx.json(201, &json!({ "created": item["name"] })),
            Err(e) => ctx.json(400, &json!({ "error": e.to_string() })),
        })
        .unwrap();
    router
        .put("/items/:id", |ctx| {
            let tags = ctx.form_all().get("tag").map(|v| v.arr.clone()).unwrap_or_default();
            ctx.json(200, &json!({ "id": ctx.param("id"), "name": ctx.form("name"), "tags": tags }))
        })
        .unwrap();
    router.delete("/items/:id", |ctx| ctx.status(204)).unwrap();
    router.get("/headers", |ctx| ctx.text(200, ctx.header("x-token").unwrap_or("none").to_string())).unwrap();
    router.get("/search", |ctx| ctx.json(200, &json!({ "q": ctx.form("q"), "method": ctx.method(), "path": ctx.path() }))).unwrap();
    router
        .get_async("/slow/:n", |mut ctx: Context| async move {
            glommio::timer::sleep(Duration::from_millis(5)).await;
            let n = ctx.param("n").unwrap_or_default().into_owned();
            ctx.text(200, format!("slow {n}"));
            ctx
        })
        .unwrap();
}

#[test]
fn routes_params_forms_headers_and_json() {
    let server = Server::start();
    let url = server.url();
    let _service = Service::start(&url, None, item_routes);
    run_local(LIMIT, move || async move {
        let nc = client::connect(&url).await.unwrap();

        let r = call(&nc, &request("GET", "/items/42")).await;
        assert_eq!(r.status_code, 200);
        assert_eq!(proto::header(&r.header, "content-type"), Some("application/json"));
        assert_eq!(body_json(&r), json!({"id": "42"}));

        let r = call(&nc, &request("GET", "/users/j%C3%B6rg/posts/7")).await;
        assert_eq!(body_json(&r), json!({"user": "jörg", "post": "7"}));

        let mut post = request("POST", "/items");
        add(&mut post.header, "Content-Type", "application/json");
        post.body = br#"{"name": "lamp"}"#.to_vec();
        let r = call(&nc, &post).await;
        assert_eq!((r.status_code, body_json(&r)), (201, json!({"created": "lamp"})));
        post.body = b"{lamp".to_vec();
        assert_eq!(call(&nc, &post).await.status_code, 400);

        // nats-proxy's Go gateway leaves Form empty: the service parses query and body.
        let mut put = request("PUT", "/items/7?name=query&tag=a");
        add(&mut put.header, "Content-Type", "application/x-www-form-urlencoded");
        put.body = b"name=body+name&tag=b".to_vec();
        let r = call(&nc, &put).await;
        assert_eq!(body_json(&r), json!({"id": "7", "name": "body name", "tags": ["b", "a"]}));
        // natsu's gateway fills it: the service takes it as it is.
        add(&mut put.form, "name", "gateway");
        assert_eq!(body_json(&call(&nc, &put).await)["name"], "gateway");

        let r = call(&nc, &request("DELETE", "/items/7")).await;
        assert_eq!((r.status_code, r.body.len()), (204, 0));

        let mut h = request("GET", "/headers");
        add(&mut h.header, "X-Token", "secret");
        assert_eq!(call(&nc, &h).await.body, b"secret");
        assert_eq!(call(&nc, &request("GET", "/headers")).await.body, b"none");

        let r = call(&nc, &request("GET", "/search?q=a%26b&x=1")).await;
        assert_eq!(body_json(&r), json!({"q": "a&b", "method": "GET", "path": "/search"}));

        let (slow1, slow2) = (request("GET", "/slow/1"), request("GET", "/slow/2"));
        let (a, b) = futures::join!(call(&nc, &slow1), call(&nc, &slow2));
        assert_eq!((a.body.as_slice(), b.body.as_slice()), (&b"slow 1"[..], &b"slow 2"[..]));

        // A method without a route has no responders: routing is by method too.
        let no = nc.request("PATCH:.items.7", request("PATCH", "/items/7").encode_to_vec(), WAIT).await;
        assert!(matches!(no, Err(Error::NoResponders)), "{no:?}");

        let r = call_json(&nc, &request("GET", "/items/9")).await;
        assert_eq!((r.status_code, body_json(&r)), (200, json!({"id": "9"})));
        let r = call_json(&nc, &request("DELETE", "/items/9")).await;
        assert_eq!(r.status_code, 204);
        nc.close().await;
    });
}

#[test]
fn middleware_in_order_and_abort() {
    let server = Server::start();
    let url = server.url();
    let (handled, seen) = counter();
    let _service = Service::start(&url, None, move |router| {
        router.use_middleware(|ctx| ctx.add_header("Trace", "first"));
        router.use_middleware(|ctx| {
            ctx.add_header("Trace", "second");
            if ctx.header("x-deny").is_some() {
                ctx.abort_with_json(403, &json!({"error": "denied"}));
            }
        });
        router.use_middleware(|ctx| ctx.add_header("Trace", "third"));
        let sync_count = handled.clone();
        router
            .get("/guarded", move |ctx| {
                sync_count.fetch_add(1, Ordering::SeqCst);
                ctx.add_header("Trace", "handler");
            })
            .unwrap();
        router
            .get_async("/guarded-async", move |mut ctx: Context| {
                let handled = handled.clone();
                async move {
                    handled.fetch_add(1, Ordering::SeqCst);
                    ctx.add_header("Trace", "async handler");
                    ctx
                }
            })
            .unwrap();
    });
    run_local(LIMIT, move || async move {
        let nc = client::connect(&url).await.unwrap();
        let r = call(&nc, &request("GET", "/guarded")).await;
        assert_eq!((r.status_code, trace(&r)), (200, vec!["first".to_string(), "second".into(), "third".into(), "handler".into()]));
        let r = call(&nc, &request("GET", "/guarded-async")).await;
        assert_eq!(trace(&r), ["first", "second", "third", "async handler"]);
        assert_eq!(seen.load(Ordering::SeqCst), 2);

        for path in ["/guarded", "/guarded-async"] {
            let mut denied = request("GET", path);
            add(&mut denied.header, "X-Deny", "1");
            let r = call(&nc, &denied).await;
            assert_eq!((r.status_code, trace(&r)), (403, vec!["first".to_string(), "second".into()]), "{path}");
            assert_eq!(body_json(&r), json!({"error": "denied"}));
        }
        assert_eq!(seen.load(Ordering::SeqCst), 2, "an aborted request never reaches its handler");
        nc.close().await;
    });
}

#[test]
fn panics_and_bad_payloads_do_not_stop_the_service() {
    let server = Server::start();
    let url = server.url();
    let _service = Service::start(&url, None, |router| {
        router.get("/panic", |_| panic!("a handler's bug")).unwrap();
        router.get_async("/panic-async", |_ctx: Context| async move { panic!("an async handler's bug") }).unwrap();
        router.get("/ok", |ctx| ctx.text(200, "ok")).unwrap();
    });
    run_local(LIMIT, move || async move {
        let nc = client::connect(&url).await.unwrap();
        for path in ["/panic", "/panic-async"] {
            let r = call(&nc, &request("GET", path)).await;
            assert_eq!((r.status_code, body_json(&r)), (500, json!({"error": "internal error"})), "{path}");
            assert_eq!(call(&nc, &request("GET", "/ok")).await.body, b"ok", "still serving after {path}");
        }
        let r = call_json(&nc, &request("GET", "/panic")).await;
        assert_eq!(r.status_code, 500);

        // Not a request: a 400 in the encoding the payload looks like.
        let msg = nc.request("GET:.ok", b"\xff\xff\xff".as_slice(), WAIT).await.unwrap();
        let r = Response::decode_from(&msg.data).expect("a protobuf 400");
        assert_eq!(r.status_code, 400);
        assert!(body_json(&r)["error"].as_str().is_some_and(|e| e.starts_with("not a gateway request")), "{r:?}");
        let msg = nc.request("GET:.ok", b"{oops".as_slice(), WAIT).await.unwrap();
        assert_eq!(envelope::decode_response(&msg.data).expect("a JSON 400").status_code, 400);

        // Without a reply subject there is nobody to tell; the service carries on.
        nc.publish("GET:.ok", b"\xff\xff").await.unwrap();
        nc.publish("GET:.panic", request("GET", "/panic").encode_to_vec()).await.unwrap();
        assert_eq!(call(&nc, &request("GET", "/ok")).await.body, b"ok");
        nc.close().await;
    });
}

#[test]
fn an_answer_larger_than_max_payload_is_a_500() {
    let server = Server::with(&Limits { max_payload: Some(1024), ..Limits::default() }, &[]);
    let url = server.url();
    let _service = Service::start(&url, None, |router| {
        router.get("/big", |ctx| ctx.bytes(200, "application/octet-stream", vec![7u8; 2048])).unwrap();
    });
    run_local(LIMIT, move || async move {
        let nc = client::connect(&url).await.unwrap();
        let r = call(&nc, &request("GET", "/big")).await;
        assert_eq!(r.status_code, 500, "the gateway hears of it instead of timing out");
        assert_eq!(body_json(&r), json!({"error": "the answer is larger than the broker's max_payload"}));
        nc.close().await;
    });
}

#[test]
fn a_queue_group_shares_the_requests() {
    const N: usize = 40;
    let server = Server::start();
    let url = server.url();
    let counts: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let _services: Vec<Service> = counts
        .iter()
        .enumerate()
        .map(|(i, count)| {
            let count = count.clone();
            Service::start(&url, Some("items"), move |router| {
                router
                    .get("/who", move |ctx| {
                        count.fetch_add(1, Ordering::SeqCst);
                        ctx.text(200, format!("instance {i}"));
                    })
                    .unwrap();
            })
        })
        .collect();
    let totals = counts.clone();
    run_local(LIMIT, move || async move {
        let nc = client::connect(&url).await.unwrap();
        let inbox = nc.new_inbox();
        let answers = nc.subscribe_sync(&inbox).unwrap();
        nc.flush().await.unwrap();
        let req = request("GET", "/who").encode_to_vec();
        for _ in 0..N {
            nc.publish_request("GET:.who", &inbox, &req).await.unwrap();
        }
        let mut by_instance = [0usize; 2];
        for _ in 0..N {
            let m = answers.next_msg(WAIT).await.expect("every request is answered");
            let r = Response::decode_from(&m.data).unwrap();
            match r.body.as_slice() {
                b"instance 0" => by_instance[0] += 1,
                b"instance 1" => by_instance[1] += 1,
                other => panic!("unexpected answer {other:?}"),
            }
        }
        // One more round trip through both services: any second answer would be here by now.
        assert_eq!(call(&nc, &request("GET", "/who")).await.status_code, 200);
        assert!(matches!(answers.next_msg(Duration::from_millis(100)).await, Err(Error::Timeout)), "a request answered twice");
        assert!(by_instance.iter().all(|&n| n > 0), "both instances served: {by_instance:?}");
        let served: Vec<usize> = totals.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        assert_eq!(served.iter().sum::<usize>(), N + 1, "each request handled once: {served:?}");
        nc.close().await;
    });
}

#[test]
fn websocket_helpers() {
    let server = Server::start();
    let url = server.url();
    let _service = Service::start(&url, None, |router| {
        let ws = router.clone();
        router
            .get("/ws", move |ctx| {
                let Some(id) = ctx.websocket_id().map(str::to_string) else {
                    return ctx.text(400, "not a WebSocket");
                };
                let (echo, id_in) = (ws.clone(), id.clone());
                ws.on_ws_message(&id, move |m| {
                    if m.data.as_ref() == b"close" {
                        echo.ws_close(&id_in).unwrap();
                    } else if m.data.as_ref() == b"leave" {
                        echo.ws_close_with(&id_in, 4000, "bye now").unwrap();
                    } else {
                        let mut out = b"echo: ".to_vec();
                        out.extend_from_slice(&m.data);
                        echo.ws_send(&id_in, out).unwrap();
                    }
                })
                .unwrap();
                let (conn, id_gone) = (ws.connection().clone(), id.clone());
                ws.on_ws_gone(&id, move |m| conn.try_publish(&format!("gone.{id_gone}"), &m.data).unwrap()).unwrap();
                ctx.accept_websocket();
            })
            .unwrap();
    });
    run_local(LIMIT, move || async move {
        let nc = client::connect(&url).await.unwrap();
        let id = "abc123";
        let out = nc.subscribe_sync(&format!("{WS_OUT}{id}")).unwrap();
        let close = nc.subscribe_sync(&format!("{WS_CLOSE}{id}")).unwrap();
        let gone = nc.subscribe_sync(&format!("gone.{id}")).unwrap();
        nc.flush().await.unwrap();

        assert!(!call(&nc, &request("GET", "/ws")).await.do_upgrade);
        let mut upgrade = request("GET", "/ws");
        upgrade.web_socket_id = id.into();
        let r = call(&nc, &upgrade).await;
        assert!(r.do_upgrade, "the handler accepted the socket");

        nc.publish(&format!("{WS_IN}{id}"), "hi").await.unwrap();
        assert_eq!(out.next_msg(WAIT).await.unwrap().text(), Some("echo: hi"));
        nc.publish(&format!("{WS_IN}{id}"), "close").await.unwrap();
        assert_eq!(close.next_msg(WAIT).await.unwrap().data.len(), 0);
        nc.publish(&format!("{WS_IN}{id}"), "leave").await.unwrap();
        assert_eq!(close.next_msg(WAIT).await.unwrap().text(), Some("4000 bye now"));
        nc.publish(&format!("{WS_GONE}{id}"), "1001 going away").await.unwrap();
        assert_eq!(gone.next_msg(WAIT).await.unwrap().text(), Some("1001 going away"));
        nc.close().await;
    });
}

#[test]
fn bad_routes_are_refused() {
    let server = Server::start();
    let url = server.url();
    run_local(LIMIT, move || async move {
        let nc = client::connect(&url).await.unwrap();
        let router = Router::new(&nc);
        let e = router.get("/a//b", |_| {}).unwrap_err();
        assert_eq!(e.to_string(), r#"bad route "GET /a//b": path cannot contain an empty segment"#);
        assert!(router.get("items", |_| {}).is_err());
        assert!(router.handle("GET ME", "/a", |_| {}).is_err());
        let queued = Router::with_queue(&nc, "bad queue");
        assert!(matches!(queued.get("/a", |_| {}), Err(natsu::service::Error::Client(_))));
        nc.close().await;
        assert!(matches!(router.get("/a", |_| {}), Err(natsu::service::Error::Client(Error::ConnectionClosed))));
    });
}
