//! The system account: what the server itself publishes and answers there, as nats-server
//! 2.9 does.
//!
//! - `$SYS.ACCOUNT.<account>.CONNECT` and `.DISCONNECT`: an advisory per client that comes
//!   and goes (`io.nats.server.advisory.v1.client_connect` / `client_disconnect`), published
//!   by the client's core.
//! - `$SYS.REQ.SERVER.PING` (and `.STATSZ`) answer with the server's statsz;
//!   `$SYS.REQ.SERVER.PING.<E>` and `$SYS.REQ.SERVER.<id>.<E>` for `E` in VARZ, CONNZ, SUBSZ,
//!   HEALTHZ, ACCOUNTZ answer `{"server": ..., "data": <the HTTP endpoint's JSON>}`; the
//!   request's payload may hold the endpoint's options as JSON.
//! - `$SYS.REQ.ACCOUNT.<name>.<E>` for `E` in CONNZ, SUBSZ, LEAFZ, INFO, STATZ: the same,
//!   about the account named (INFO: its `/accountz` detail), and
//!   `$SYS.REQ.ACCOUNT.PING.STATZ`: every account with connections. Other accounts get
//!   their own CONNZ and STATZ (`$SYS.REQ.SERVER.PING.CONNZ`, `$SYS.REQ.ACCOUNT.PING.*`).
//! - `$SYS.REQ.USER.INFO` in every account (nats-server 2.10's): answered by the core of
//!   the client that asks (`user_info`).
//!
//! Core zero answers the others (where the monitoring code lives): the other cores hold
//! `Target::Core(0)` on these subjects, so a request published anywhere reaches it through
//! the usual mail.

use std::rc::Rc;

use serde_json::Map;

use serde_json::{json, Value};

use super::index::Target;
use super::routing::{Message, Origin};
use super::Shard;
use crate::server::client::{Client, Kind};
use crate::server::monitor::fmt::{now_ns, rfc3339_nano};
use crate::server::monitor::gather::reason_text;
use crate::server::monitor::MonitorState;

/// nats-server 2.10's "who am I" request subject, in every account.
const USER_INFO: &str = "$SYS.REQ.USER.INFO";

/// What a system request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Statsz,
    Varz,
    Connz,
    Subsz,
    Healthz,
    Accountz,
    /// Asked from another account (`$SYS.REQ.SERVER.PING.CONNZ`, `$SYS.REQ.ACCOUNT.PING.CONNZ`
    /// there): that account's connections only, as nats-server's imports into every account
    /// answer.
    AccountConnz,
    /// `$SYS.REQ.ACCOUNT.PING.STATZ` from another account: its own `/accstatz` entry.
    AccountStatz,
    /// In the system account, `$SYS.REQ.ACCOUNT.<name>.<E>`: about the account the subject
    /// names (CONNZ, SUBSZ with its subscriptions, LEAFZ, INFO: its `/accountz` detail,
    /// STATZ: its `/accstatz` entry, no answer when it has no connections).
    AccConnz,
    AccSubsz,
    AccLeafz,
    AccInfo,
    AccStatz,
    /// `$SYS.REQ.ACCOUNT.PING.STATZ` in the system account: every account's entry (those
    /// with connections unless `include_unused`), no answer when there is none.
    AllStatz,
    /// `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` (or the older `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE`)
    /// in the system account: a new JWT for an account (see `claims_update`).
    ClaimsUpdate,
    /// `$SYS.REQ.USER.INFO` in any account (nats-server 2.10's request): who the requester
    /// is, answered by the requester's own core (see `user_info`).
    UserInfo,
}

impl Request {
    const ALL: [(Request, &'static str); 6] = [
        (Request::Statsz, "STATSZ"),
        (Request::Varz, "VARZ"),
        (Request::Connz, "CONNZ"),
        (Request::Subsz, "SUBSZ"),
        (Request::Healthz, "HEALTHZ"),
        (Request::Accountz, "ACCOUNTZ"),
    ];
}

impl Shard {
    /// Put the system request subjects into the system account's index: the handlers on core
    /// zero, a pointer to core zero on the others.
    pub(super) fn install_system(&self) {
        let table = &self.shared.accounts;
        let id = &self.shared.info.server_id;
        let mut sublist = self.account(table.system).sublist.borrow_mut();
        let mut add = |subject: String, req: Request| {
            let t = if self.id == 0 { Target::System(req) } else { Target::Core(0) };
            let _ = sublist.insert(subject.as_bytes(), None, t);
        };
        add("$SYS.REQ.SERVER.PING".into(), Request::Statsz);
        for (req, name) in Request::ALL {
            add(format!("$SYS.REQ.SERVER.PING.{name}"), req);
            add(format!("$SYS.REQ.SERVER.{id}.{name}"), req);
        }
        for (req, name) in [(Request::AccConnz, "CONNZ"), (Request::AccSubsz, "SUBSZ"), (Request::AccLeafz, "LEAFZ"), (Request::AccInfo, "INFO"), (Request::AccStatz, "STATZ")] {
            add(format!("$SYS.REQ.ACCOUNT.*.{name}"), req);
        }
        add("$SYS.REQ.ACCOUNT.PING.STATZ".into(), Request::AllStatz);
        add("$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE".into(), Request::ClaimsUpdate);
        add("$SYS.ACCOUNT.*.CLAIMS.UPDATE".into(), Request::ClaimsUpdate);
        drop(sublist);
        for (acc, index) in self.accounts.iter().enumerate() {
            let mut sublist = index.sublist.borrow_mut();
            // Every core answers its own clients.
            let _ = sublist.insert(USER_INFO.as_bytes(), None, Target::System(Request::UserInfo));
            // What nats-server imports into every other account: its own connections and figures.
            if acc as u32 == table.system {
                continue;
            }
            for (subject, req) in [
                ("$SYS.REQ.SERVER.PING.CONNZ", Request::AccountConnz),
                ("$SYS.REQ.ACCOUNT.PING.CONNZ", Request::AccountConnz),
                ("$SYS.REQ.ACCOUNT.PING.STATZ", Request::AccountStatz),
            ] {
                let t = if self.id == 0 { Target::System(req) } else { Target::Core(0) };
                let _ = sublist.insert(subject.as_bytes(), None, t);
            }
        }
    }

    /// The `server` object of every system message; each one takes the next sequence number.
    fn server_info(&self) -> Value {
        let info = &self.shared.info;
        let seq = self.shared.sys_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        json!({
            "name": info.server_name,
            "host": info.host,
            "id": info.server_id,
            "ver": info.version,
            "seq": seq,
            "jetstream": false,
            "time": rfc3339_nano(now_ns()),
        })
    }

    /// Publish a message in the system account from the server itself.
    fn publish_system(&self, subject: &str, body: &Value) {
        let payload = body.to_string();
        let origin = Origin { client: None, cid: 0, kind: Kind::Client, queues: None, to_routes: true };
        let m = Message { subject: subject.as_bytes(), reply: None, header_len: None, msg: payload.as_bytes(), big: None };
        self.route(origin, self.shared.accounts.system, m, 0);
    }

    /// The `client` object of a connect or disconnect advisory.
    fn client_info(&self, c: &Client, closed: bool) -> Value {
        let opts = c.opts.borrow();
        let mut v = json!({
            "start": rfc3339_nano(c.start_ns),
            "host": c.addr.map(|a| a.ip().to_string()).unwrap_or_default(),
            "id": c.cid,
            "acc": self.account_name(c),
        });
        let o = v.as_object_mut().expect("an object");
        if let Some(u) = c.user.borrow().as_deref() {
            o.insert("user".into(), u.into());
        }
        for (k, val) in [("name", opts.name.as_deref().unwrap_or("")), ("lang", &opts.lang), ("ver", &opts.version)] {
            if !val.is_empty() {
                o.insert(k.into(), val.into());
            }
        }
        if closed {
            if c.rtt.get() > 0 {
                o.insert("rtt".into(), c.rtt.get().into());
            }
            o.insert("stop".into(), rfc3339_nano(now_ns()).into());
        }
        o.insert("kind".into(), "Client".into());
        o.insert("client_type".into(), "nats".into());
        v
    }

    /// A client finished its CONNECT: `$SYS.ACCOUNT.<account>.CONNECT`.
    pub fn client_connected(&self, c: &Rc<Client>) {
        c.announced.set(true);
        let body = json!({
            "type": "io.nats.server.advisory.v1.client_connect",
            "id": event_id(),
            "timestamp": rfc3339_nano(now_ns()),
            "server": self.server_info(),
            "client": self.client_info(c, false),
        });
        self.publish_system(&format!("$SYS.ACCOUNT.{}.CONNECT", self.account_name(c)), &body);
    }

    /// A client that was announced went away: `$SYS.ACCOUNT.<account>.DISCONNECT`.
    pub(super) fn client_disconnected(&self, c: &Client) {
        if !c.announced.replace(false) {
            return;
        }
        let s = &c.stats;
        let body = json!({
            "type": "io.nats.server.advisory.v1.client_disconnect",
            "id": event_id(),
            "timestamp": rfc3339_nano(now_ns()),
            "server": self.server_info(),
            "client": self.client_info(c, true),
            "sent": {"msgs": s.out_msgs.get(), "bytes": s.out_bytes.get()},
            "received": {"msgs": s.in_msgs.get(), "bytes": s.in_bytes.get()},
            "reason": reason_text(c.close_reason.get()),
        });
        self.publish_system(&format!("$SYS.ACCOUNT.{}.DISCONNECT", self.account_name(c)), &body);
    }
}

/// A fresh event id, as nats-server's (a NUID).
fn event_id() -> String {
    crate::client::nuid::next()
}

impl Shard {
    /// A system request matched here (core zero): answer it from a task, since the figures
    /// come from every core. A request without a reply subject is ignored, as there.
    /// `acc` is the account the request was published in (the answer goes back there).
    pub(super) fn system_request(&self, req: Request, acc: u32, m: Message<'_>) {
        match req {
            Request::ClaimsUpdate => return self.claims_update(acc, m),
            // Answered where the requester is (`user_info`), not for a message from elsewhere.
            Request::UserInfo => return,
            _ => {}
        }
        let Some(reply) = m.reply else { return };
        let Some(me) = self.me.get().and_then(std::rc::Weak::upgrade) else { return };
        let reply = reply.to_vec();
        // The account asked about: the one named in the subject, or the asker's own.
        let about = match req {
            Request::AccConnz | Request::AccSubsz | Request::AccLeafz | Request::AccInfo | Request::AccStatz => {
                let Some(name) = std::str::from_utf8(m.subject).ok().and_then(|s| s.split('.').nth(3)) else { return };
                name.to_string()
            }
            _ => self.account(acc).name.to_string(),
        };
        let body = m.msg[m.header_len.unwrap_or(0).min(m.msg.len())..].to_vec();
        glommio::spawn_local(async move { me.answer_system(req, acc, about, reply, body).await }).detach();
    }

    async fn answer_system(self: Rc<Self>, req: Request, acc: u32, about: String, reply: Vec<u8>, body: Vec<u8>) {
        let state = self.monitor_state.get_or_init(|| Rc::new(MonitorState::new(self.started_ns, 0, 0))).clone();
        let ask = |target: String| {
            let (shard, state) = (self.clone(), state.clone());
            async move { crate::server::monitor::http::route(&shard, &state, &target).await }
        };
        let mut out = Map::new();
        let answer = match endpoint(req, &body, &about) {
            Err(e) => Err((400, e)),
            Ok(None) => statsz(&ask("/varz".into()).await, &ask("/accstatz".into()).await).map_err(|e| (500, e)),
            Ok(Some(target)) => {
                let r = ask(target).await;
                if r.status == 200 {
                    let v = serde_json::from_slice::<Value>(&r.body).map_err(|e| (500, e.to_string()));
                    match req {
                        Request::AccountStatz | Request::AccStatz => v.map(|v| own_statz(v, &about)),
                        Request::AccInfo => v.map(|mut v| v["account_detail"].take()),
                        _ => v,
                    }
                } else if matches!(req, Request::AccConnz | Request::AccSubsz | Request::AccLeafz | Request::AccInfo | Request::AccStatz) {
                    // nats-server answers these with its "internal" code, whatever the cause.
                    Err((500, String::from_utf8_lossy(&r.body).trim().to_string()))
                } else {
                    Err((r.status, String::from_utf8_lossy(&r.body).trim().to_string()))
                }
            }
        };
        // As nats-server: an account figure with nothing in it goes unanswered (other
        // servers of a cluster may have the account's connections), unless asked for.
        if matches!(req, Request::AccStatz | Request::AllStatz) {
            let empty = answer.as_ref().is_ok_and(|v| v["account_statz"].as_array().is_none_or(Vec::is_empty));
            if empty && !include_unused(&body) {
                return;
            }
        }
        out.insert("server".into(), self.server_info());
        match answer {
            Ok(v) if req == Request::Statsz => out.insert("statsz".into(), v),
            Ok(v) => out.insert("data".into(), v),
            Err((code, description)) => {
                // nats-server: a request that failed after its options were read still
                // carries its (empty) data.
                if code == 500 && matches!(req, Request::AccConnz | Request::AccSubsz | Request::AccLeafz | Request::AccInfo | Request::AccStatz) {
                    out.insert("data".into(), Value::Null);
                }
                out.insert("error".into(), json!({"code": code, "description": description}))
            }
        };
        self.send_answer(acc, &reply, &Value::Object(out));
    }

    /// `$SYS.REQ.USER.INFO` from a client of this core, in account `acc`: as nats-server 2.10
    /// answers it, `{"server": …, "data": {"user", "account", "permissions", "expires"}}`:
    /// the user as nats-server names it (the nkey, the user name, the user JWT's key, else the
    /// token), the account's name, the permissions in force (left out when unrestricted) and
    /// the time left until the user JWT expires, in nanoseconds whole to the second (left out
    /// when it never does).
    pub(super) fn user_info(&self, c: &Client, acc: u32, m: Message<'_>) {
        let Some(reply) = m.reply else { return };
        let user = {
            let o = c.opts.borrow();
            let jwt_user = o.jwt.as_ref().and(c.user.borrow().clone());
            o.nkey.clone().or(o.user.clone()).or(jwt_user).or(o.auth_token.clone()).unwrap_or_default()
        };
        let mut data = Map::new();
        data.insert("user".into(), user.into());
        data.insert("account".into(), self.account(acc).name.to_string().into());
        if let Some(p) = c.public_permissions() {
            data.insert("permissions".into(), p);
        }
        if let Some(at) = c.limits.get().expires {
            let left = (at - (now_ns() / 1_000_000_000) as i64).max(0);
            if left > 0 {
                data.insert("expires".into(), (left * 1_000_000_000).into());
            }
        }
        let out = json!({"server": self.server_info(), "data": data});
        self.send_answer(acc, reply, &out);
    }

    /// An answer to a system request, published on its reply subject in account `acc`.
    fn send_answer(&self, acc: u32, reply: &[u8], body: &Value) {
        let payload = body.to_string();
        let origin = Origin { client: None, cid: 0, kind: Kind::Client, queues: None, to_routes: true };
        let m = Message { subject: reply, reply: None, header_len: None, msg: payload.as_bytes(), big: None };
        self.route(origin, acc, m, 0);
    }

    /// A new JWT for an account, as nats-server 2.9 with a memory resolver takes it and in
    /// its envelope (`data` with code 200 and a message, or `error` with code 500 and a
    /// description): an empty body, a JWT that does not decode or is another account's is
    /// an error; an account the server has not loaded is skipped; the JWT the account has
    /// is "updated" (nothing changes). natsu does not apply a changed JWT at run time yet:
    /// it answers with an error that says so (restart with the new JWT preloaded), and
    /// logs it, rather than leave the sender believing the account changed.
    fn claims_update(&self, acc: u32, m: Message<'_>) {
        let subject = String::from_utf8_lossy(m.subject);
        let tokens: Vec<&str> = subject.split('.').collect();
        let key = match tokens.len() {
            6 => tokens[3],
            5 => tokens[2],
            _ => return,
        };
        let body = String::from_utf8_lossy(&m.msg[m.header_len.unwrap_or(0).min(m.msg.len())..]).trim().to_string();
        let trust = self.shared.opts.auth.trust.as_deref();
        const FAILED: &str = "jwt update resulted in error";
        // Ok(message), or Err((message, error)).
        let outcome: Result<&str, (&str, String)> = if body.is_empty() {
            Err(("jwt update error", "request body is empty".into()))
        } else {
            match crate::server::auth::jwt::decode::<crate::server::auth::jwt::AccountNats>(&body) {
                Err(e) => Err((FAILED, e)),
                Ok(c) if c.sub != key => Err((FAILED, "subject does not match jwt content".into())),
                Ok(_) => match trust.and_then(|t| t.accounts.get(key)) {
                    None => Ok("jwt update skipped"),
                    Some(a) if a.jwt == body => Ok("jwt updated"),
                    Some(_) => Err((FAILED, "natsu does not apply account JWT updates at run time yet (restart it with the new JWT in resolver_preload)".into())),
                },
            }
        };
        // nats-server's log lines and words.
        match &outcome {
            Ok(message) => tracing::debug!("{message} - {key}"),
            Err((message, e)) => tracing::error!("{message} - {key} - {e}"),
        }
        let Some(reply) = m.reply else { return };
        // nats-server writes this answer from a Go map: its keys sorted.
        let mut out = Map::new();
        match outcome {
            Ok(message) => out.insert("data".into(), json!({"account": key, "code": 200, "message": message})),
            Err((message, e)) => out.insert("error".into(), json!({"account": key, "code": 500, "description": format!("{message} - {e}")})),
        };
        out.insert("server".into(), self.server_info());
        self.send_answer(acc, reply, &Value::Object(out));
    }
}

/// An `/accstatz` answer cut down to one account's entry.
fn own_statz(mut v: Value, account: &str) -> Value {
    if let Some(list) = v.get_mut("account_statz").and_then(Value::as_array_mut) {
        list.retain(|e| e["acc"] == account);
    }
    v
}

/// Whether a STATZ request's options ask for accounts without connections too.
fn include_unused(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| v["include_unused"] == true)
}

/// The monitoring request a system request stands for (`None`: statsz), with the options a
/// request's JSON payload may carry turned into the endpoint's query parameters. `account`
/// is the account asked about (requests that are about one account).
fn endpoint(req: Request, body: &[u8], account: &str) -> Result<Option<String>, String> {
    let opts: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())?
    };
    let path = match req {
        Request::Statsz | Request::ClaimsUpdate | Request::UserInfo => return Ok(None),
        Request::Varz => "/varz",
        Request::Connz => "/connz",
        Request::Subsz => "/subsz",
        Request::Healthz => "/healthz",
        Request::Accountz => "/accountz",
        // Another account sees only itself, whatever its options say.
        Request::AccountConnz | Request::AccConnz => "/connz",
        Request::AccountStatz => return Ok(Some("/accstatz?unused=1".into())),
        Request::AccStatz | Request::AllStatz => return Ok(Some(if include_unused(body) { "/accstatz?unused=1" } else { "/accstatz" }.into())),
        Request::AccSubsz => "/subsz",
        Request::AccLeafz => "/leafz",
        Request::AccInfo => return Ok(Some(format!("/accountz?acc={}", url_escape(account)))),
    };
    let mut query = Vec::new();
    match req {
        Request::AccountConnz | Request::AccConnz | Request::AccLeafz => query.push(format!("acc={}", url_escape(account))),
        Request::AccSubsz => query.extend([format!("acc={}", url_escape(account)), "subs=1".to_string()]),
        _ => {}
    }
    for (k, v) in &opts {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            _ => continue,
        };
        // Field names of nats-server's event options, to the HTTP parameters they mirror.
        let param = match (req, k.as_str()) {
            (Request::Connz | Request::AccountConnz | Request::AccConnz, "subscriptions") | (Request::Subsz | Request::AccLeafz, "subscriptions") => "subs",
            (Request::Connz | Request::AccountConnz | Request::AccConnz, "subscriptions_detail") if text == "true" => {
                query.push("subs=detail".to_string());
                continue;
            }
            (Request::Connz | Request::AccountConnz | Request::AccConnz, "state") => {
                let state = match text.as_str() {
                    "0" => "open",
                    "1" => "closed",
                    _ => "all",
                };
                query.push(format!("state={state}"));
                continue;
            }
            (Request::Connz, "sort" | "auth" | "offset" | "limit" | "cid" | "user" | "acc") => k.as_str(),
            (Request::AccountConnz | Request::AccConnz, "sort" | "auth" | "offset" | "limit" | "cid" | "user") => k.as_str(),
            (Request::Subsz | Request::AccSubsz, "offset" | "limit" | "test") => k.as_str(),
            (Request::Subsz | Request::Accountz, "account") => "acc",
            _ => continue,
        };
        query.push(format!("{param}={}", url_escape(&text)));
    }
    Ok(Some(if query.is_empty() { path.to_string() } else { format!("{path}?{}", query.join("&")) }))
}

/// Escape a query value (subjects and names hold few characters that need it).
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' | b'$' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// nats-server's statsz, from the same figures `/varz` and `/accstatz` show.
fn statsz(varz: &crate::server::monitor::http::Response, accstatz: &crate::server::monitor::http::Response) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(&varz.body).map_err(|e| e.to_string())?;
    let a: Value = serde_json::from_slice(&accstatz.body).map_err(|e| e.to_string())?;
    let active = a.get("account_statz").and_then(Value::as_array).map_or(0, Vec::len);
    Ok(json!({
        "start": v["start"],
        "mem": v["mem"],
        "cores": v["cores"],
        "cpu": v["cpu"],
        "connections": v["connections"],
        "total_connections": v["total_connections"],
        "active_accounts": active,
        "subscriptions": v["subscriptions"],
        "sent": {"msgs": v["out_msgs"], "bytes": v["out_bytes"]},
        "received": {"msgs": v["in_msgs"], "bytes": v["in_bytes"]},
        "slow_consumers": v["slow_consumers"],
        "active_servers": 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_options_become_query_parameters() {
        assert_eq!(endpoint(Request::Statsz, b"", "$SYS"), Ok(None));
        assert_eq!(endpoint(Request::Varz, b" ", "$SYS"), Ok(Some("/varz".into())));
        assert_eq!(endpoint(Request::Connz, br#"{"acc":"A","subscriptions":true,"state":1}"#, "$SYS"), Ok(Some("/connz?acc=A&subs=true&state=closed".into())));
        assert_eq!(endpoint(Request::Accountz, br#"{"account":"B"}"#, "$SYS"), Ok(Some("/accountz?acc=B".into())));
        assert!(endpoint(Request::Connz, b"{bad", "$SYS").is_err());
        // Another account cannot widen its view.
        assert_eq!(endpoint(Request::AccountConnz, br#"{"acc":"B","limit":5}"#, "A"), Ok(Some("/connz?acc=A&limit=5".into())));
        assert_eq!(own_statz(json!({"account_statz": [{"acc": "A"}, {"acc": "B"}]}), "B"), json!({"account_statz": [{"acc": "B"}]}));
        // About the account a system request names.
        assert_eq!(endpoint(Request::AccConnz, br#"{"acc":"C"}"#, "B"), Ok(Some("/connz?acc=B".into())));
        assert_eq!(endpoint(Request::AccSubsz, br#"{"limit":3}"#, "B"), Ok(Some("/subsz?acc=B&subs=1&limit=3".into())));
        assert_eq!(endpoint(Request::AccInfo, b"", "B"), Ok(Some("/accountz?acc=B".into())));
        assert_eq!(endpoint(Request::AllStatz, br#"{"include_unused":true}"#, "$SYS"), Ok(Some("/accstatz?unused=1".into())));
        assert!(include_unused(br#"{"include_unused":true}"#) && !include_unused(b""));
    }
}
