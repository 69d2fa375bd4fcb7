//! One request's [`Context`]: what a handler reads (method, path variables, form, headers,
//! body) and the answer it builds. It is nats-proxy's `Context` in Rust's shape: the
//! request is read through accessors, the response is written through `json`, `text`,
//! `bytes`, `status` and `set_header`, and middleware stops a request with `abort`.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::proto::{self, Request, Response, Values, Variables};
use super::subject::{decode_path, path_segment, route_pattern, BadPath};

/// A route's `:name` variables and the index of each among the path's `/`-separated
/// segments, as [`route_pattern`] finds them; shared by every request of the route.
pub(crate) type Params = Rc<[(String, usize)]>;

/// The request a handler serves and the response it builds.
///
/// A fresh context answers 200 with no body and no headers. Handlers are plain functions
/// of it, so they can be tested without a broker:
///
/// ```
/// use natsu::service::{proto::Request, Context};
/// let req = Request { url: "/users/42?full=1".into(), method: "GET".into(), ..Request::default() };
/// let mut ctx = Context::for_route("/users/:id", req).unwrap();
/// assert_eq!(ctx.param("id").as_deref(), Some("42"));
/// assert_eq!(ctx.form("full"), Some("1"));
/// ctx.json(200, &serde_json::json!({"id": 42}));
/// let res = ctx.into_response();
/// assert_eq!(res.body, br#"{"id":42}"#);
/// ```
pub struct Context {
    request: Request,
    response: Response,
    /// Where the route's variables sit in the path.
    params: Params,
    /// The form parsed from the query and body, on first use: nats-proxy's Go gateway
    /// leaves `Request.form` empty, so a service must be able to parse it itself.
    parsed_form: OnceCell<Variables>,
    /// Set by [`abort`](Context::abort): the middleware after and the handler are skipped.
    aborted: bool,
}

impl Context {
    /// A context for a request on a route without variables.
    pub fn new(request: Request) -> Context {
        Context::with_params(request, Rc::from(Vec::new()))
    }

    /// A context for a request on the route `template` (`/users/:id`), so that
    /// [`param`](Context::param) finds its variables: for testing handlers.
    pub fn for_route(template: &str, request: Request) -> Result<Context, BadPath> {
        let pattern = route_pattern("GET", template)?;
        Ok(Context::with_params(request, Rc::from(pattern.params)))
    }

    pub(crate) fn with_params(request: Request, params: Params) -> Context {
        Context { request, response: Response::with_status(200), params, parsed_form: OnceCell::new(), aborted: false }
    }

    /// The request as the gateway sent it.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The response built so far.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// The response, to change what the helpers do not cover.
    pub fn response_mut(&mut self) -> &mut Response {
        &mut self.response
    }

    /// The answer to send.
    pub fn into_response(self) -> Response {
        self.response
    }

    /// The HTTP method (`GET`).
    pub fn method(&self) -> &str {
        &self.request.method
    }

    /// The request path without the query, as received (still percent-encoded).
    pub fn path(&self) -> &str {
        self.request.path()
    }

    /// The value of the route's variable `name` (`:name` in the template), percent-decoded;
    /// `None` when the route has no such variable.
    ///
    /// Segments are counted in the decoded path, the one the request's subject was made
    /// of, so a variable holds what the subject's token held.
    pub fn param(&self, name: &str) -> Option<Cow<'_, str>> {
        let index = self.params.iter().find(|(n, _)| n == name)?.1;
        let path = self.path();
        Some(match decode_path(path) {
            Ok(Cow::Borrowed(p)) => Cow::Borrowed(p.split('/').nth(index).unwrap_or("")),
            Ok(Cow::Owned(p)) => Cow::Owned(p.split('/').nth(index).unwrap_or("").to_string()),
            // A gateway that does not check paths (nats-proxy's) may send a bad escape.
            Err(_) => path_segment(path, index),
        })
    }

    /// The first value of form field `name`: from the body when it has one, else from
    /// the query.
    pub fn form(&self, name: &str) -> Option<&str> {
        self.form_all().get(name).and_then(|v| v.arr.first()).map(String::as_str)
    }

    /// Every form field: `Request.form` when the gateway filled it (natsu's does),
    /// otherwise the query and an `application/x-www-form-urlencoded` body of a POST, PUT
    /// or PATCH, parsed here with the body's values first, as Go's `ParseForm` orders them.
    pub fn form_all(&self) -> &Variables {
        if !self.request.form.is_empty() {
            return &self.request.form;
        }
        self.parsed_form.get_or_init(|| parse_form(&self.request))
    }

    /// The first value of header `name`, whatever its case.
    pub fn header(&self, name: &str) -> Option<&str> {
        proto::header(&self.request.header, name)
    }

    /// The request body.
    pub fn body(&self) -> &[u8] {
        &self.request.body
    }

    /// The body parsed as JSON into `T`.
    pub fn bind_json<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.request.body)
    }

    /// Set the status code.
    pub fn status(&mut self, code: u16) {
        self.response.status_code = i32::from(code);
    }

    /// Set header `name` to `value`, replacing what was set before under any case of the
    /// name (HTTP header names are case-insensitive; the map's keys are not).
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.response.header.retain(|k, _| !k.eq_ignore_ascii_case(name));
        self.response.header.insert(name.to_string(), Values { arr: vec![value.into()] });
    }

    /// Add `value` to header `name` (a second `Set-Cookie`, say).
    pub fn add_header(&mut self, name: &str, value: impl Into<String>) {
        proto::add(&mut self.response.header, name, value);
    }

    /// Answer `status` with `body` of type `content_type`.
    pub fn bytes(&mut self, status: u16, content_type: &str, body: impl Into<Vec<u8>>) {
        self.status(status);
        self.set_header("Content-Type", content_type);
        self.response.body = body.into();
    }

    /// Answer `status` with plain text.
    pub fn text(&mut self, status: u16, text: impl Into<String>) {
        self.bytes(status, "text/plain; charset=utf-8", text.into());
    }

    /// Answer `status` with `value` as JSON; a value that cannot be serialised (a map
    /// with non-string keys) answers 500 instead, as nats-proxy's `JSON` does.
    pub fn json(&mut self, status: u16, value: &impl Serialize) {
        match serde_json::to_vec(value) {
            Ok(body) => self.bytes(status, "application/json", body),
            Err(e) => self.json(500, &serde_json::json!({ "error": format!("cannot encode the answer: {e}") })),
        }
    }

    /// The WebSocket's id when the browser asked for one (the `<id>` of `WS_IN<id>`).
    pub fn websocket_id(&self) -> Option<&str> {
        Some(self.request.web_socket_id.as_str()).filter(|id| !id.is_empty())
    }

    /// Accept the WebSocket the request asks for: the gateway upgrades the connection and
    /// relays its frames on the id's subjects. Meaningless without a [`websocket_id`].
    ///
    /// [`websocket_id`]: Context::websocket_id
    pub fn accept_websocket(&mut self) {
        self.response.do_upgrade = true;
    }

    /// Stop the request with `status`: the rest of the middleware and the handler do not
    /// run. The body is left as it is.
    pub fn abort(&mut self, status: u16) {
        self.status(status);
        self.aborted = true;
    }

    /// [`abort`](Context::abort) with a JSON body.
    pub fn abort_with_json(&mut self, status: u16, value: &impl Serialize) {
        self.json(status, value);
        self.aborted = true;
    }

    /// Whether middleware stopped the request.
    pub fn is_aborted(&self) -> bool {
        self.aborted
    }
}

/// The form of a request whose gateway did not parse it: body fields first, then query.
fn parse_form(request: &Request) -> Variables {
    let mut vars = Variables::new();
    if has_form_body(request) {
        add_fields(&mut vars, &request.body);
    }
    add_fields(&mut vars, request.query().as_bytes());
    vars
}

fn add_fields(vars: &mut Variables, encoded: &[u8]) {
    for (name, value) in form_urlencoded::parse(encoded) {
        proto::add(vars, &name, value);
    }
}

/// Whether the body is a form, by Go's rule: a POST, PUT or PATCH with the form content
/// type (a missing one does not count).
fn has_form_body(request: &Request) -> bool {
    let content_type = proto::header(&request.header, "content-type").unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    matches!(request.method.as_str(), "POST" | "PUT" | "PATCH") && media.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::proto::add;

    fn request(method: &str, url: &str) -> Request {
        Request { url: url.into(), method: method.into(), ..Request::default() }
    }

    fn form_post(method: &str, url: &str, body: &str, content_type: &str) -> Context {
        let mut r = request(method, url);
        r.body = body.as_bytes().to_vec();
        add(&mut r.header, "content-type", content_type);
        Context::new(r)
    }

    #[test]
    fn form_from_query_and_body() {
        let ctx = form_post("POST", "/f?a=q&b=q%20b&c=1&c=2", "a=body&d=x+y", "application/x-www-form-urlencoded; charset=utf-8");
        assert_eq!(ctx.form("a"), Some("body"), "the body wins");
        assert_eq!(ctx.form_all()["a"].arr, ["body", "q"]);
        assert_eq!(ctx.form("b"), Some("q b"));
        assert_eq!(ctx.form_all()["c"].arr, ["1", "2"]);
        assert_eq!(ctx.form("d"), Some("x y"));
        assert_eq!(ctx.form("missing"), None);
        for (method, ct) in
            [("GET", "application/x-www-form-urlencoded"), ("POST", "application/json"), ("DELETE", "application/x-www-form-urlencoded")]
        {
            let ctx = form_post(method, "/f?a=q", "a=body", ct);
            assert_eq!(ctx.form("a"), Some("q"), "{method} {ct}: the body is not a form");
        }
        let ctx = form_post("PATCH", "/f", "a=1", "Application/X-WWW-Form-Urlencoded");
        assert_eq!(ctx.form("a"), Some("1"));
    }

    #[test]
    fn form_filled_by_the_gateway_is_used_as_is() {
        let mut r = request("GET", "/f?a=query");
        add(&mut r.form, "a", "gateway");
        assert_eq!(Context::new(r).form("a"), Some("gateway"));
    }

    #[test]
    fn params() {
        let ctx = Context::for_route("/users/:id/posts/:post", request("GET", "/users/42/posts/j%C3%B6rg?x=1")).unwrap();
        assert_eq!(ctx.param("id").as_deref(), Some("42"));
        assert_eq!(ctx.param("post").as_deref(), Some("jörg"));
        assert_eq!(ctx.param("nope"), None);
        // %2F is a separator in the subject, and so here.
        let ctx = Context::for_route("/:a/:b", request("GET", "/x%2Fy")).unwrap();
        assert_eq!((ctx.param("a").as_deref(), ctx.param("b").as_deref()), (Some("x"), Some("y")));
        let ctx = Context::for_route("/:a", request("GET", "/bad%zz")).unwrap();
        assert_eq!(ctx.param("a").as_deref(), Some("bad%zz"));
        let ctx = Context::for_route("/a/:b", request("GET", "/a")).unwrap();
        assert_eq!(ctx.param("b").as_deref(), Some(""));
        assert!(Context::for_route("a/:b", request("GET", "/a")).is_err());
    }

    #[test]
    fn answers() {
        let mut r = request("POST", "/j");
        add(&mut r.header, "X-Token", "t");
        r.body = br#"{"n": 3}"#.to_vec();
        let mut ctx = Context::new(r);
        assert_eq!(ctx.response().status_code, 200);
        assert_eq!(ctx.header("x-token"), Some("t"));
        #[derive(serde::Deserialize)]
        struct N {
            n: u32,
        }
        assert_eq!(ctx.bind_json::<N>().unwrap().n, 3);
        assert!(ctx.bind_json::<Vec<u8>>().is_err());
        ctx.json(201, &serde_json::json!({"ok": true}));
        assert_eq!(ctx.response().status_code, 201);
        assert_eq!(proto::header(&ctx.response().header, "content-type"), Some("application/json"));
        ctx.add_header("content-type", "text/html");
        ctx.text(202, "hi");
        ctx.add_header("Set-Cookie", "a=1");
        ctx.add_header("Set-Cookie", "b=2");
        let res = ctx.into_response();
        assert_eq!((res.status_code, res.body.as_slice()), (202, &b"hi"[..]));
        assert_eq!(res.header["Content-Type"].arr, ["text/plain; charset=utf-8"]);
        assert!(!res.header.contains_key("content-type"), "one Content-Type, whatever the case");
        assert_eq!(res.header["Set-Cookie"].arr, ["a=1", "b=2"]);

        let mut ctx = Context::new(request("GET", "/"));
        let unkeyable: std::collections::HashMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        ctx.json(200, &unkeyable);
        assert_eq!(ctx.response().status_code, 500);
    }

    #[test]
    fn websocket_and_abort() {
        let mut r = request("GET", "/ws");
        assert_eq!(Context::new(r.clone()).websocket_id(), None);
        r.web_socket_id = "abc".into();
        let mut ctx = Context::new(r);
        assert_eq!(ctx.websocket_id(), Some("abc"));
        ctx.accept_websocket();
        assert!(ctx.response().do_upgrade);
        assert!(!ctx.is_aborted());
        ctx.abort_with_json(403, &serde_json::json!({"error": "no"}));
        assert!(ctx.is_aborted());
        assert_eq!(ctx.response().status_code, 403);
    }
}
