//! The JSON envelope: the same [`Request`] and [`Response`] as JSON, for services written in
//! a language without protobuf at hand. The gateway sends it on paths configured with
//! `encoding: json`; `natsu::service` answers in whichever encoding a request came in (a JSON
//! object starts with `{`, which no nats-proxy protobuf message can).
//!
//! ```json
//! {"url": "/users/42?full=1", "method": "GET", "remote_addr": "127.0.0.1:50312",
//!  "header": {"Accept": ["*/*"]}, "form": {"full": ["1"]}, "body": "text",
//!  "web_socket_id": ""}
//! {"status": 200, "header": {"Content-Type": "application/json"}, "body": {"id": 42}}
//! ```
//!
//! A body that is not UTF-8 travels as `body_base64` instead of `body`. In a response,
//! `body` may be any JSON value: a string is sent as it is, anything else as its JSON text
//! (with `Content-Type: application/json` unless the service set one); a header's value may
//! be a string or an array of strings; `status` defaults to 200; `"upgrade": true` accepts a
//! WebSocket.

use base64::Engine;
use serde_json::{Map, Value};

use super::proto::{Request, Response, Values, Variables};

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn vars_to_json(vars: &Variables) -> Value {
    Value::Object(vars.iter().map(|(k, v)| (k.clone(), Value::from(v.arr.clone()))).collect())
}

fn vars_from_json(v: Option<&Value>, what: &str) -> Result<Variables, String> {
    let mut out = Variables::new();
    let Some(v) = v else { return Ok(out) };
    let obj = v.as_object().ok_or_else(|| format!("{what} must be an object"))?;
    for (k, v) in obj {
        let arr = match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(|| format!("{what} {k:?} must hold strings")))
                .collect::<Result<_, _>>()?,
            _ => return Err(format!("{what} {k:?} must be a string or an array of strings")),
        };
        out.insert(k.clone(), Values { arr });
    }
    Ok(out)
}

fn put_body(obj: &mut Map<String, Value>, body: &[u8]) {
    match std::str::from_utf8(body) {
        Ok(s) => obj.insert("body".into(), Value::from(s)),
        Err(_) => obj.insert("body_base64".into(), Value::from(b64().encode(body))),
    };
}

fn str_field(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn object(data: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice(data) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn base64_body(obj: &Map<String, Value>) -> Result<Option<Vec<u8>>, String> {
    match obj.get("body_base64") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => b64().decode(s).map(Some).map_err(|e| format!("body_base64: {e}")),
        Some(_) => Err("body_base64 must be a string".into()),
    }
}

/// A request as the JSON envelope.
pub fn encode_request(r: &Request) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert("url".into(), Value::from(r.url.as_str()));
    obj.insert("method".into(), Value::from(r.method.as_str()));
    obj.insert("remote_addr".into(), Value::from(r.remote_addr.as_str()));
    obj.insert("header".into(), vars_to_json(&r.header));
    obj.insert("form".into(), vars_to_json(&r.form));
    put_body(&mut obj, &r.body);
    if !r.web_socket_id.is_empty() {
        obj.insert("web_socket_id".into(), Value::from(r.web_socket_id.as_str()));
    }
    serde_json::to_vec(&Value::Object(obj)).expect("a JSON value serialises")
}

/// A request from the JSON envelope.
pub fn decode_request(data: &[u8]) -> Result<Request, String> {
    let obj = object(data)?;
    let body = match base64_body(&obj)? {
        Some(b) => b,
        None => str_field(&obj, "body")?.into_bytes(),
    };
    Ok(Request {
        url: str_field(&obj, "url")?,
        method: str_field(&obj, "method")?,
        remote_addr: str_field(&obj, "remote_addr")?,
        body,
        form: vars_from_json(obj.get("form"), "form")?,
        header: vars_from_json(obj.get("header"), "header")?,
        web_socket_id: str_field(&obj, "web_socket_id")?,
    })
}

/// A response as the JSON envelope.
pub fn encode_response(r: &Response) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert("status".into(), Value::from(r.status_code));
    obj.insert("header".into(), vars_to_json(&r.header));
    put_body(&mut obj, &r.body);
    if r.do_upgrade {
        obj.insert("upgrade".into(), Value::from(true));
    }
    serde_json::to_vec(&Value::Object(obj)).expect("a JSON value serialises")
}

/// A response from the JSON envelope.
pub fn decode_response(data: &[u8]) -> Result<Response, String> {
    let obj = object(data)?;
    let status_code = match obj.get("status") {
        None | Some(Value::Null) => 200,
        Some(v) => match v.as_i64() {
            Some(s) if (100..=999).contains(&s) => s as i32,
            _ => return Err("status must be an integer from 100 to 999".into()),
        },
    };
    let mut header = vars_from_json(obj.get("header"), "header")?;
    let body = match (base64_body(&obj)?, obj.get("body")) {
        (Some(b), _) => b,
        (None, None | Some(Value::Null)) => Vec::new(),
        (None, Some(Value::String(s))) => s.clone().into_bytes(),
        (None, Some(v)) => {
            if !header.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
                header.insert("Content-Type".into(), Values { arr: vec!["application/json".into()] });
            }
            serde_json::to_vec(v).expect("a JSON value serialises")
        }
    };
    let do_upgrade = match obj.get("upgrade") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("upgrade must be true or false".into()),
    };
    Ok(Response { status_code, header, body, do_upgrade })
}

/// Whether a payload is a JSON envelope rather than protobuf.
pub fn is_json(data: &[u8]) -> bool {
    data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::proto::add;

    #[test]
    fn request_round_trip() {
        let mut r = Request { url: "/a?x=1".into(), method: "POST".into(), remote_addr: "1.2.3.4:5".into(), ..Request::default() };
        add(&mut r.header, "Accept", "a");
        add(&mut r.header, "Accept", "b");
        add(&mut r.form, "x", "1");
        r.body = b"hello".to_vec();
        let j = encode_request(&r);
        assert!(is_json(&j));
        assert_eq!(decode_request(&j).unwrap(), r);
        r.body = vec![0xff, 0, 1];
        let j = encode_request(&r);
        assert!(String::from_utf8_lossy(&j).contains("body_base64"));
        assert_eq!(decode_request(&j).unwrap(), r);
    }

    #[test]
    fn responses() {
        let r = decode_response(br#"{"status": 201, "header": {"X": "1", "Y": ["2","3"]}, "body": {"id": 42}}"#).unwrap();
        assert_eq!(r.status_code, 201);
        assert_eq!(r.header["X"].arr, ["1"]);
        assert_eq!(r.header["Y"].arr, ["2", "3"]);
        assert_eq!(r.header["Content-Type"].arr, ["application/json"]);
        assert_eq!(r.body, br#"{"id":42}"#);
        let r = decode_response(br#"{"body": "plain"}"#).unwrap();
        assert_eq!((r.status_code, r.body.as_slice()), (200, &b"plain"[..]));
        assert!(r.header.is_empty());
        let mut back = Response::with_status(404);
        back.body = vec![0xfe];
        back.do_upgrade = true;
        assert_eq!(decode_response(&encode_response(&back)).unwrap(), back);
        for bad in [&b"[]"[..], b"{", br#"{"status": "200"}"#, br#"{"status": 7}"#, br#"{"header": {"X": 1}}"#, br#"{"body_base64": "!!"}"#, br#"{"upgrade": 1}"#] {
            assert!(decode_response(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(!is_json(b"\x08\xc8\x01"));
    }
}
