//! The [`Router`]: routes of a service subscribed on nats-proxy's subjects, middleware run
//! before every handler, and the answer published to the request's reply subject in the
//! encoding the request came in.
//!
//! One request's trip: the subscription hands the message over; its payload is decoded
//! (protobuf, or the JSON envelope when it starts with `{`) into a [`Context`]; the
//! middleware run in the order they were added until one aborts; the handler runs unless
//! one did; the response is encoded and published to the reply subject. A payload that is
//! not a request is answered 400, a panic anywhere 500, and the service goes on serving.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;

use futures_lite::FutureExt;
use prost::Message;

use super::context::{Context, Params};
use super::envelope;
use super::proto::{Request, Response};
use super::subject::{route_pattern, BadPath};
use super::{WS_CLOSE, WS_GONE, WS_IN, WS_OUT};
use crate::client::{self, Connection, Msg, Subscription};

/// Why a route could not be added.
#[derive(Clone, Debug)]
pub enum Error {
    /// A method that cannot open a subject: empty, or with a byte other than a letter, a
    /// digit, `-` or `_`.
    BadMethod(String),
    /// A route template that cannot be a subject (`route` is `METHOD /path`).
    BadRoute { route: String, reason: BadPath },
    /// The connection refused the subscription (closed, draining, a bad queue name).
    Client(client::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadMethod(m) => write!(f, "bad method {m:?}: only letters, digits, - and _"),
            Error::BadRoute { route, reason } => write!(f, "bad route {route:?}: {reason}"),
            Error::Client(e) => write!(f, "cannot subscribe the route: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// A function run before every handler of the router, in the order added.
type Middleware = Rc<dyn Fn(&mut Context)>;
/// Shared with each request's task.
type AsyncHandler = Rc<dyn Fn(Context) -> Pin<Box<dyn Future<Output = Context>>>>;

/// What serves a route's requests.
enum Handler {
    /// Runs inside the subscription's handler: requests are served one after another,
    /// with no task spawned.
    Sync(Box<dyn Fn(&mut Context)>),
    /// Runs as a task of its own per request, so that it may `.await` (a database, another
    /// request); answers go out in the order handlers finish.
    Async(AsyncHandler),
}

struct Route {
    params: Params,
    handler: Handler,
}

struct Inner {
    conn: Connection,
    /// The queue group every route subscribes in, so that instances share the requests.
    queue: Option<String>,
    /// Replaced, never changed in place: a request takes the list as it is when it
    /// arrives, so middleware added meanwhile does not disturb it.
    middleware: RefCell<Rc<[Middleware]>>,
}

/// A service's routes on one connection: nats-proxy's `NatsClient`. Clones share the
/// routes' middleware and connection.
///
/// Handlers are plain functions of a [`Context`] (`get`, `post`, `handle`…), or functions
/// returning a future of it (`get_async`, `handle_async`…) when they need to `.await`.
/// Both run on the executor that owns the connection: no `Send` needed.
///
/// ```no_run
/// use natsu::service::Router;
/// # glommio::LocalExecutor::default().run(async {
/// let nc = natsu::client::connect("nats://127.0.0.1:4222").await?;
/// let router = Router::with_queue(&nc, "users");
/// router.use_middleware(|ctx| {
///     if ctx.header("Authorization").is_none() {
///         ctx.abort_with_json(401, &serde_json::json!({"error": "who are you?"}));
///     }
/// });
/// router.get("/users/:id", |ctx| {
///     let id = ctx.param("id").unwrap_or_default().into_owned();
///     ctx.json(200, &serde_json::json!({ "id": id }));
/// })?;
/// router.post_async("/users", |mut ctx| async move {
///     glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
///     ctx.status(201);
///     ctx
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(()) });
/// ```
#[derive(Clone)]
pub struct Router {
    inner: Rc<Inner>,
}

impl Router {
    /// A router whose routes each get every request of their subject.
    pub fn new(conn: &Connection) -> Router {
        Router::build(conn, None)
    }

    /// A router whose routes subscribe in queue group `queue`: each request goes to one of
    /// the service instances in the group.
    pub fn with_queue(conn: &Connection, queue: &str) -> Router {
        Router::build(conn, Some(queue.to_string()))
    }

    fn build(conn: &Connection, queue: Option<String>) -> Router {
        let inner = Inner { conn: conn.clone(), queue, middleware: RefCell::new(Rc::from(Vec::new())) };
        Router { inner: Rc::new(inner) }
    }

    /// The connection the router answers on.
    pub fn connection(&self) -> &Connection {
        &self.inner.conn
    }

    /// Run `middleware` before the handler of every request, after the middleware added
    /// before it; it stops a request with [`Context::abort`].
    pub fn use_middleware(&self, middleware: impl Fn(&mut Context) + 'static) {
        let mut list = self.inner.middleware.borrow_mut();
        let mut next = list.to_vec();
        next.push(Rc::new(middleware));
        *list = Rc::from(next);
    }

    /// Serve `method` requests for the route `template` (`/users/:id`, where `:id` matches
    /// one path segment) with `handler`: nats-proxy's `Subscribe`. `method` is matched as
    /// written (HTTP methods are case-sensitive). The subscription is returned so that the
    /// route can be removed.
    pub fn handle(&self, method: &str, template: &str, handler: impl Fn(&mut Context) + 'static) -> Result<Subscription, Error> {
        self.route(method, template, Handler::Sync(Box::new(handler)))
    }

    /// [`handle`](Router::handle) with a handler that may `.await`: it takes the context
    /// and gives it back when done. Each request runs as a task of its own, after the
    /// middleware (which stay synchronous).
    pub fn handle_async<F, Fut>(&self, method: &str, template: &str, handler: F) -> Result<Subscription, Error>
    where
        F: Fn(Context) -> Fut + 'static,
        Fut: Future<Output = Context> + 'static,
    {
        let boxed: AsyncHandler = Rc::new(move |ctx| Box::pin(handler(ctx)));
        self.route(method, template, Handler::Async(boxed))
    }

    fn route(&self, method: &str, template: &str, handler: Handler) -> Result<Subscription, Error> {
        check_method(method)?;
        let pattern =
            route_pattern(method, template).map_err(|reason| Error::BadRoute { route: format!("{method} {template}"), reason })?;
        let route = Route { params: Rc::from(pattern.params), handler };
        let inner = self.inner.clone();
        let on_msg = move |msg: Msg| inner.serve(&route, msg);
        let conn = &self.inner.conn;
        match &self.inner.queue {
            Some(queue) => conn.queue_subscribe(&pattern.subject, queue, on_msg),
            None => conn.subscribe(&pattern.subject, on_msg),
        }
        .map_err(Error::Client)
    }

    /// Send `data` to the browser on WebSocket `id` (publish on `WS_OUT<id>`). It never
    /// waits, so handlers may call it.
    pub fn ws_send(&self, id: &str, data: impl AsRef<[u8]>) -> client::Result<()> {
        self.inner.conn.try_publish(&format!("{WS_OUT}{id}"), data)
    }

    /// Ask the gateway to close WebSocket `id` (an empty message on `WS_CLOSE<id>`); the
    /// browser gets close code 1005, no status.
    pub fn ws_close(&self, id: &str) -> client::Result<()> {
        self.inner.conn.try_publish(&format!("{WS_CLOSE}{id}"), b"")
    }

    /// [`ws_close`](Router::ws_close) with the close code and reason the browser gets
    /// (`"<code> <reason>"` on `WS_CLOSE<id>`).
    pub fn ws_close_with(&self, id: &str, code: u16, reason: &str) -> client::Result<()> {
        self.inner.conn.try_publish(&format!("{WS_CLOSE}{id}"), format!("{code} {reason}"))
    }

    /// Receive the browser's frames on WebSocket `id` (`WS_IN<id>`). Not in the queue
    /// group: a socket's frames belong to the instance that accepted it.
    pub fn on_ws_message(&self, id: &str, handler: impl FnMut(Msg) + 'static) -> client::Result<Subscription> {
        self.inner.conn.subscribe(&format!("{WS_IN}{id}"), handler)
    }

    /// Learn that the browser left WebSocket `id`: the gateway publishes `"<code> <reason>"`
    /// on `WS_GONE<id>`.
    pub fn on_ws_gone(&self, id: &str, handler: impl FnMut(Msg) + 'static) -> client::Result<Subscription> {
        self.inner.conn.subscribe(&format!("{WS_GONE}{id}"), handler)
    }
}

/// For each method, `get` (say) for a synchronous handler and `get_async` for an async
/// one: shorthands of [`Router::handle`] and [`Router::handle_async`], as nats-proxy's
/// `GET`, `POST`, `PUT` and `DELETE`.
macro_rules! method_routes {
    ($($method:literal => $sync:ident, $async_:ident;)*) => {$(
        #[doc = concat!("Serve ", $method, " requests for `template`.")]
        pub fn $sync(&self, template: &str, handler: impl Fn(&mut Context) + 'static) -> Result<Subscription, Error> {
            self.handle($method, template, handler)
        }

        #[doc = concat!("Serve ", $method, " requests for `template` with an async handler.")]
        pub fn $async_<F, Fut>(&self, template: &str, handler: F) -> Result<Subscription, Error>
        where
            F: Fn(Context) -> Fut + 'static,
            Fut: Future<Output = Context> + 'static,
        {
            self.handle_async($method, template, handler)
        }
    )*};
}

impl Router {
    method_routes! {
        "GET" => get, get_async;
        "POST" => post, post_async;
        "PUT" => put, put_async;
        "DELETE" => delete, delete_async;
    }
}

impl Inner {
    /// Serve one request message: synchronously here, or in a task for an async handler.
    fn serve(self: &Rc<Self>, route: &Route, msg: Msg) {
        let (encoding, opened) = open(&msg.data, &route.params);
        let ctx = match opened {
            Ok(ctx) => ctx,
            Err(bad_request) => return self.answer(msg.reply.as_deref(), encoding, &bad_request),
        };
        let middleware = self.middleware.borrow().clone();
        match &route.handler {
            Handler::Sync(handler) => {
                let response = run_sync(&middleware, ctx, handler);
                self.answer(msg.reply.as_deref(), encoding, &response);
            }
            Handler::Async(handler) => {
                let (inner, handler) = (self.clone(), handler.clone());
                glommio::spawn_local(async move {
                    let response = run_async(&middleware, ctx, &handler).await;
                    inner.answer(msg.reply.as_deref(), encoding, &response);
                })
                .detach();
            }
        }
    }

    /// Publish `response` to the request's reply subject, if it has one (a plain publish
    /// runs the handler for its effects only, as in nats-proxy). An answer larger than the
    /// broker takes is replaced by a 500, so that the gateway does not wait in vain.
    fn answer(&self, reply: Option<&str>, encoding: Encoding, response: &Response) {
        let Some(reply) = reply else { return };
        let result = match self.conn.try_publish(reply, encoding.encode(response)) {
            Err(client::Error::MaxPayload) => {
                let too_big = error_response(500, "the answer is larger than the broker's max_payload");
                self.conn.try_publish(reply, encoding.encode(&too_big))
            }
            other => other,
        };
        if let Err(e) = result {
            tracing::warn!(reply, error = %e, "cannot send a service's answer");
        }
    }
}

/// How a request was encoded, and so how its answer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn of(payload: &[u8]) -> Encoding {
        if envelope::is_json(payload) {
            Encoding::Json
        } else {
            Encoding::Protobuf
        }
    }

    fn decode(self, payload: &[u8]) -> Result<Request, String> {
        match self {
            Encoding::Protobuf => Request::decode_from(payload).map_err(|e| e.to_string()),
            Encoding::Json => envelope::decode_request(payload),
        }
    }

    fn encode(self, response: &Response) -> Vec<u8> {
        match self {
            Encoding::Protobuf => response.encode_to_vec(),
            Encoding::Json => envelope::encode_response(response),
        }
    }
}

/// The context of a request payload, or the 400 answer to a payload that is none.
fn open(payload: &[u8], params: &Params) -> (Encoding, Result<Context, Response>) {
    let encoding = Encoding::of(payload);
    let opened = match encoding.decode(payload) {
        Ok(request) => Ok(Context::with_params(request, params.clone())),
        Err(e) => Err(error_response(400, &format!("not a gateway request: {e}"))),
    };
    (encoding, opened)
}

fn check_method(method: &str) -> Result<(), Error> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if method.is_empty() || !method.bytes().all(token) {
        return Err(Error::BadMethod(method.to_string()));
    }
    Ok(())
}

/// Middleware in order, stopping at the first that aborts.
fn run_middleware(middleware: &[Middleware], ctx: &mut Context) {
    for m in middleware {
        if ctx.is_aborted() {
            return;
        }
        m(ctx);
    }
}

/// Middleware and a synchronous handler; a panic in either is a 500.
fn run_sync(middleware: &[Middleware], mut ctx: Context, handler: &dyn Fn(&mut Context)) -> Response {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        run_middleware(middleware, &mut ctx);
        if !ctx.is_aborted() {
            handler(&mut ctx);
        }
    }));
    match outcome {
        Ok(()) => ctx.into_response(),
        Err(panic) => panicked(panic),
    }
}

/// Middleware and an async handler; a panic in either, or while the handler's future
/// runs, is a 500.
async fn run_async(middleware: &[Middleware], ctx: Context, handler: &AsyncHandler) -> Response {
    let serve = async move {
        let mut ctx = ctx;
        run_middleware(middleware, &mut ctx);
        if ctx.is_aborted() {
            ctx
        } else {
            handler(ctx).await
        }
    };
    match AssertUnwindSafe(serve).catch_unwind().await {
        Ok(ctx) => ctx.into_response(),
        Err(panic) => panicked(panic),
    }
}

/// The 500 for a handler that panicked; the panic's text goes to the log, not to the
/// HTTP client.
fn panicked(panic: Box<dyn Any + Send>) -> Response {
    let text = match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (_, Some(s)) => s.as_str(),
        _ => "a panic without a message",
    };
    tracing::error!(panic = text, "a service handler panicked");
    error_response(500, "internal error")
}

/// An answer the router makes itself: `{"error": "<message>"}`.
fn error_response(status: u16, message: &str) -> Response {
    let mut ctx = Context::new(Request::default());
    ctx.json(status, &serde_json::json!({ "error": message }));
    ctx.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::proto::add;

    fn payload(method: &str, url: &str) -> Vec<u8> {
        Request { url: url.into(), method: method.into(), ..Request::default() }.encode_to_vec()
    }

    fn params(template: &str) -> Params {
        Rc::from(route_pattern("GET", template).unwrap().params)
    }

    /// Middleware that notes its name in the `Trace` header and aborts when told to.
    fn tracer(name: &'static str, abort: bool) -> Middleware {
        Rc::new(move |ctx: &mut Context| {
            ctx.add_header("Trace", name);
            if abort {
                ctx.abort(403);
            }
        })
    }

    fn trace(r: &Response) -> Vec<String> {
        r.header.get("Trace").map(|v| v.arr.clone()).unwrap_or_default()
    }

    #[test]
    fn middleware_in_order_and_abort_skips_the_rest() {
        let ctx = || open(&payload("GET", "/x"), &params("/x")).1.unwrap();
        let handler = |ctx: &mut Context| ctx.add_header("Trace", "handler");
        let all = [tracer("a", false), tracer("b", false)];
        let r = run_sync(&all, ctx(), &handler);
        assert_eq!((r.status_code, trace(&r)), (200, vec!["a".into(), "b".into(), "handler".into()]));
        let stop = [tracer("a", false), tracer("b", true), tracer("c", false)];
        let r = run_sync(&stop, ctx(), &handler);
        assert_eq!((r.status_code, trace(&r)), (403, vec!["a".into(), "b".into()]));
    }

    #[test]
    fn a_panic_is_a_500() {
        let ctx = open(&payload("GET", "/p"), &params("/p")).1.unwrap();
        let r = run_sync(&[], ctx, &|_: &mut Context| panic!("boom"));
        assert_eq!(r.status_code, 500);
        assert_eq!(r.body, br#"{"error":"internal error"}"#);
        let ctx = open(&payload("GET", "/p"), &params("/p")).1.unwrap();
        let handler: AsyncHandler = Rc::new(|_ctx| Box::pin(async { panic!("async boom") }));
        let r = futures_lite::future::block_on(run_async(&[], ctx, &handler));
        assert_eq!(r.status_code, 500);
    }

    #[test]
    fn async_handlers_after_middleware() {
        let run = |middleware: &[Middleware]| {
            let ctx = open(&payload("GET", "/a"), &params("/a")).1.unwrap();
            let handler: AsyncHandler = Rc::new(|mut ctx| {
                Box::pin(async move {
                    ctx.add_header("Trace", "handler");
                    ctx
                })
            });
            futures_lite::future::block_on(run_async(middleware, ctx, &handler))
        };
        assert_eq!(trace(&run(&[tracer("a", false)])), ["a", "handler"]);
        let r = run(&[tracer("a", true), tracer("b", false)]);
        assert_eq!((r.status_code, trace(&r)), (403, vec!["a".to_string()]));
    }

    #[test]
    fn payloads_and_encodings() {
        let (enc, opened) = open(&payload("GET", "/u/7"), &params("/u/:id"));
        assert_eq!(enc, Encoding::Protobuf);
        assert_eq!(opened.unwrap().param("id").as_deref(), Some("7"));

        let mut req = Request { url: "/u/8".into(), method: "GET".into(), ..Request::default() };
        add(&mut req.header, "Accept", "*/*");
        let (enc, opened) = open(&envelope::encode_request(&req), &params("/u/:id"));
        assert_eq!(enc, Encoding::Json);
        let mut ctx = opened.unwrap();
        assert_eq!((ctx.param("id").as_deref(), ctx.header("accept")), (Some("8"), Some("*/*")));
        ctx.text(200, "ok");
        let back = envelope::decode_response(&enc.encode(&ctx.into_response())).unwrap();
        assert_eq!(back.body, b"ok");

        for bad in [&b"\xff\xff\xff"[..], b"{not json", br#"{"url": 7}"#] {
            let (enc, opened) = open(bad, &params("/"));
            let Err(r) = opened else { panic!("{bad:?} opened") };
            assert_eq!(r.status_code, 400, "{bad:?}");
            let answer = enc.encode(&r);
            assert_eq!(enc == Encoding::Json, envelope::is_json(&answer), "answered in the request's encoding");
        }
    }

    #[test]
    fn bad_methods() {
        for m in ["", "G ET", "GET.X", "*", "GE>"] {
            assert!(matches!(check_method(m), Err(Error::BadMethod(_))), "{m:?}");
        }
        for m in ["GET", "M-SEARCH", "x_1"] {
            assert!(check_method(m).is_ok(), "{m:?}");
        }
    }
}
