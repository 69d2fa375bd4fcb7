//! One HTTP request's trip: path to subject, request to nats-proxy's message, NATS request,
//! answer to HTTP response (or a WebSocket upgrade), with the error statuses a web client
//! can act on.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use prost::Message;

use super::config::Encoding;
use super::Shard;
use crate::client;
use crate::service::proto::{self, Request, Response};
use crate::service::{envelope, subject};

pub type HttpResponse = hyper::Response<Full<Bytes>>;

/// What a connection does once hyper has written a `101 Switching Protocols`: bridge this
/// socket.
pub type UpgradeSlot = Rc<RefCell<Option<super::ws::Pending>>>;

/// A short JSON error answer.
pub fn error(status: StatusCode, reason: &str) -> HttpResponse {
    let body = serde_json::json!({"error": reason, "status": status.as_u16()}).to_string();
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Go's canonical header name (`content-type` → `Content-Type`), as nats-proxy's Go gateway
/// hands names to services that look them up exactly.
pub fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
        upper = c == '-';
    }
    out
}

/// Whether the request asks for a WebSocket (`Connection: upgrade`, `Upgrade: websocket`).
fn wants_websocket(req: &hyper::Request<Incoming>) -> bool {
    let has = |name: HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| v.to_str().unwrap_or("").split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// Answer one request.
pub async fn handle(shard: Rc<Shard>, req: hyper::Request<Incoming>, remote: SocketAddr, upgrade: UpgradeSlot) -> HttpResponse {
    let started = Instant::now();
    let method = req.method().clone();
    let target = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let resp = answer(&shard, req, remote, &upgrade).await;
    let took = started.elapsed();
    shard.metrics.record(resp.status().as_u16(), took);
    if shard.cfg.access_log {
        tracing::info!(target: "natsu::gateway::access", "{remote} \"{method} {target}\" {} {} {:.3}ms", resp.status().as_u16(), body_len(&resp), took.as_secs_f64() * 1e3);
    }
    resp
}

fn body_len(r: &HttpResponse) -> u64 {
    hyper::body::Body::size_hint(r.body()).exact().unwrap_or(0)
}

async fn answer(shard: &Shard, req: hyper::Request<Incoming>, remote: SocketAddr, upgrade: &UpgradeSlot) -> HttpResponse {
    let path = req.uri().path().to_string();
    let subject = match subject::request_subject(req.method().as_str(), &path) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let (timeout, encoding, max_body) = shard.cfg.for_path(&path);
    let websocket_key = if wants_websocket(&req) {
        match req.headers().get(header::SEC_WEBSOCKET_KEY) {
            Some(k) if req.method() == Method::GET && req.headers().get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13") => Some(k.clone()),
            _ => return error(StatusCode::BAD_REQUEST, "bad WebSocket handshake"),
        }
    } else {
        None
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let Some(nc) = shard.connection() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no connection to NATS");
    };
    let (parts, body) = req.into_parts();
    // A body that trickles in gets as long as the answer would (the path's timeout).
    let read = glommio::timer::timeout(timeout, async { Ok(Limited::new(body, max_body).collect().await) }).await;
    let body = match read {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        Ok(Err(_)) => return error(StatusCode::BAD_REQUEST, "could not read the request body"),
        Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time"),
    };
    let mut request = Request {
        url: parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default(),
        method: parts.method.as_str().to_string(),
        remote_addr: remote.to_string(),
        body: body.to_vec(),
        ..Request::default()
    };
    for (name, value) in &parts.headers {
        proto::add(&mut request.header, &canonical_name(name.as_str()), String::from_utf8_lossy(value.as_bytes()));
    }
    fill_form(&mut request, &parts);
    let pending = match websocket_key {
        Some(_) => match super::ws::Pending::subscribe(&nc, client::nuid::next()) {
            Ok(p) => {
                request.web_socket_id = p.id.clone();
                Some(p)
            }
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &format!("NATS: {e}")),
        },
        None => None,
    };
    let payload = match encoding {
        Encoding::Protobuf => request.encode_to_vec(),
        Encoding::Json => envelope::encode_request(&request),
    };
    let msg = match nc.request(&subject, &payload, timeout).await {
        Ok(m) => m,
        Err(client::Error::NoResponders) => return error(StatusCode::SERVICE_UNAVAILABLE, "no service answers this path"),
        Err(client::Error::Timeout) => return error(StatusCode::GATEWAY_TIMEOUT, "the service did not answer in time"),
        Err(client::Error::MaxPayload) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request too large for NATS"),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &format!("NATS: {e}")),
    };
    let decoded = if envelope::is_json(&msg.data) {
        envelope::decode_response(&msg.data)
    } else {
        Response::decode_from(&msg.data).map_err(|e| e.to_string())
    };
    let mut response = match decoded {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("{subject}: undecodable answer: {e}");
            return error(StatusCode::BAD_GATEWAY, "the service's answer could not be decoded");
        }
    };
    shard.apply_hooks(&path, &mut response);
    match (websocket_key, pending) {
        (Some(key), Some(pending)) if response.do_upgrade => {
            let accept = crate::server::websocket::handshake::accept_key(key.as_bytes());
            let mut r = match to_http(response, StatusCode::SWITCHING_PROTOCOLS) {
                Ok(r) => r,
                Err(e) => return e,
            };
            let h = r.headers_mut();
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header value"));
            *upgrade.borrow_mut() = Some(pending);
            r
        }
        _ => {
            let status = match response.status_code {
                0 => StatusCode::OK,
                s => match u16::try_from(s).ok().and_then(|s| StatusCode::from_u16(s).ok()) {
                    Some(s) if s.as_u16() >= 200 => s,
                    _ => return error(StatusCode::BAD_GATEWAY, "the service answered with an invalid status"),
                },
            };
            to_http(response, status).unwrap_or_else(|e| e)
        }
    }
}

/// Headers a service may not set: hyper frames the body itself, and the connection's own
/// headers are the gateway's business.
fn hop_by_hop(name: &HeaderName) -> bool {
    [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONNECTION, header::UPGRADE].contains(name) || name.as_str() == "keep-alive"
}

fn to_http(response: Response, status: StatusCode) -> Result<HttpResponse, HttpResponse> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *r.status_mut() = status;
    let bad = || error(StatusCode::BAD_GATEWAY, "the service answered with an invalid header");
    for (name, values) in response.header {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        if hop_by_hop(&name) {
            continue;
        }
        for v in values.arr {
            r.headers_mut().append(&name, HeaderValue::from_str(&v).map_err(|_| bad())?);
        }
    }
    Ok(r)
}

/// The query's fields, then an urlencoded body's for POST, PUT and PATCH (the body's win),
/// as nats-proxy's `ParseForm` merges them.
fn fill_form(request: &mut Request, parts: &hyper::http::request::Parts) {
    for (k, v) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
        proto::add(&mut request.form, &k, v);
    }
    let urlencoded = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if urlencoded && matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        let mut body_form = proto::Variables::new();
        for (k, v) in form_urlencoded::parse(&request.body) {
            proto::add(&mut body_form, &k, v);
        }
        request.form.extend(body_form);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_name("content-type"), "Content-Type");
        assert_eq!(canonical_name("x-request-id"), "X-Request-Id");
        assert_eq!(canonical_name("accept"), "Accept");
        assert_eq!(canonical_name("WWW-AUTHENTICATE"), "Www-Authenticate");
    }

    #[test]
    fn errors_are_short_json() {
        let r = error(StatusCode::GATEWAY_TIMEOUT, "late");
        assert_eq!(r.status(), 504);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(body_len(&r), br#"{"error":"late","status":504}"#.len() as u64);
    }
}
