//! `natsu-chat-demo`: a chat room served over NATS through `natsu-gateway`'s WebSocket
//! bridge, as a worked example of [`natsu::service::Router`] with WebSockets.
//!
//! ```text
//! natsu -p 4222 &
//! natsu-gateway -c configs/gateway/chat.conf &     # HTTP on 127.0.0.1:8080
//! natsu-chat-demo --server nats://127.0.0.1:4222
//! # open http://127.0.0.1:8080/ in two browser windows
//! ```
//!
//! `GET /` answers the page (`index.html`, built in). `GET /chat/:name` accepts the
//! browser's WebSocket; from then on every frame it sends (`WS_IN<id>`) is sent to every
//! socket in the room as `name: text` (`WS_OUT<id>`), and when the gateway says the browser
//! left (`WS_GONE<id>`) the room hears `* name left` and forgets the socket. Tested in a
//! real browser by `tests/browser/chat.test.mjs`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};
use natsu::client::Subscription;
use natsu::service::{Context, Router};

const PAGE: &str = include_str!("index.html");
const DEFAULT_SERVER: &str = "nats://127.0.0.1:4222";
/// Names longer than this are refused: they are repeated in every line a member sends.
const MAX_NAME: usize = 32;

const USAGE: &str = "\
natsu-chat-demo: a chat room behind natsu-gateway (GET / is the page, GET /chat/:name its WebSocket)

Usage: natsu-chat-demo [--server URL]

Options:
      --server URL  NATS server (default nats://127.0.0.1:4222)
  -h, --help        Print help";

/// A browser in the room.
struct Member {
    name: String,
    /// Its `WS_IN` and `WS_GONE` subscriptions, ended when it leaves.
    subs: Vec<Subscription>,
}

/// Everyone in the room, by WebSocket id. Clones share the room; all of it lives on the one
/// executor that owns the connection.
#[derive(Clone)]
struct Room {
    router: Router,
    members: Rc<RefCell<BTreeMap<String, Member>>>,
}

impl Room {
    /// Send `line` to every member.
    fn broadcast(&self, line: &str) {
        for id in self.members.borrow().keys() {
            if let Err(e) = self.router.ws_send(id, line) {
                eprintln!("natsu-chat-demo: cannot send to socket {id}: {e}");
            }
        }
    }

    /// `GET /chat/:name`: take the browser's WebSocket into the room.
    fn join(&self, ctx: &mut Context) {
        let Some(id) = ctx.websocket_id().map(str::to_string) else {
            return ctx.json(400, &serde_json::json!({ "error": "a WebSocket request is expected: connect to ws://<host>/chat/<name>" }));
        };
        let name = ctx.param("name").unwrap_or_default().into_owned();
        if !valid_name(&name) {
            let error = format!("a name is 1 to {MAX_NAME} letters, digits, - or _");
            return ctx.json(400, &serde_json::json!({ "error": error }));
        }
        // Subscribed before the answer goes out (same connection, so the broker sees these
        // SUBs first): the browser's first frame cannot come before we listen.
        let said = {
            let (room, name) = (self.clone(), name.clone());
            self.router.on_ws_message(&id, move |msg| room.broadcast(&format!("{name}: {}", String::from_utf8_lossy(&msg.data))))
        };
        let gone = {
            let (room, gone_id) = (self.clone(), id.clone());
            self.router.on_ws_gone(&id, move |msg| room.leave(&gone_id, &String::from_utf8_lossy(&msg.data)))
        };
        let subs = match (said, gone) {
            (Ok(a), Ok(b)) => vec![a, b],
            (a, b) => {
                let mut error = String::new();
                for sub in [a, b] {
                    match sub {
                        Ok(sub) => drop(sub.unsubscribe()),
                        Err(e) => error = e.to_string(),
                    }
                }
                eprintln!("natsu-chat-demo: cannot take {name}'s socket {id}: {error}");
                return ctx.json(503, &serde_json::json!({ "error": "the chat cannot take the socket now" }));
            }
        };
        // The newcomer is told too: the gateway subscribed the socket's WS_OUT before it
        // asked us, and holds what we send until its handshake with the browser is done.
        self.members.borrow_mut().insert(id.clone(), Member { name: name.clone(), subs });
        ctx.accept_websocket();
        self.broadcast(&format!("* {name} joined"));
        eprintln!("natsu-chat-demo: {name} joined (socket {id}, {} in the room)", self.members.borrow().len());
    }

    /// The gateway said socket `id` is gone (`why` is the close code and reason).
    fn leave(&self, id: &str, why: &str) {
        let Some(member) = self.members.borrow_mut().remove(id) else { return };
        for sub in &member.subs {
            let _ = sub.unsubscribe();
        }
        self.broadcast(&format!("* {} left", member.name));
        eprintln!("natsu-chat-demo: {} left (socket {id}, {why}, {} in the room)", member.name, self.members.borrow().len());
    }
}

/// Letters, digits, `-` and `_`: a name stays one path segment and one subject token.
fn valid_name(name: &str) -> bool {
    let chars = name.chars().count();
    (1..=MAX_NAME).contains(&chars) && name.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

/// Connect, add the routes, serve until the connection closes for good.
async fn serve(server: String) -> Result<(), String> {
    let nc = natsu::client::connect(&server).await.map_err(|e| format!("cannot connect to {server}: {e}"))?;
    let router = Router::new(&nc);
    router.get("/", |ctx| ctx.bytes(200, "text/html; charset=utf-8", PAGE)).map_err(|e| e.to_string())?;
    let room = Room { router: router.clone(), members: Rc::default() };
    router.get("/chat/:name", move |ctx| room.join(ctx)).map_err(|e| e.to_string())?;
    // The routes' SUBs are in the broker once this answers: ready for the gateway.
    nc.flush().await.map_err(|e| format!("cannot subscribe: {e}"))?;
    eprintln!("natsu-chat-demo: serving GET / and GET /chat/:name on {server}");
    nc.closed().await;
    Err("the NATS connection closed".to_string())
}

/// `--server URL` (or `--server=URL`); `Ok(None)` for `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<String>, String> {
    let mut server = DEFAULT_SERVER.to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--server" => server = args.next().ok_or("--server needs a URL")?,
            _ => match arg.strip_prefix("--server=") {
                Some(url) => server = url.to_string(),
                None => return Err(format!("unexpected argument {arg:?}")),
            },
        }
    }
    Ok(Some(server))
}

fn main() -> ExitCode {
    let server = match parse_args(std::env::args().skip(1)) {
        Ok(Some(server)) => server,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("natsu-chat-demo: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // A small io_uring buffer, as the gateway's executors: the locked-memory limit may be low.
    let run = LocalExecutorBuilder::new(Placement::Unbound)
        .name("natsu-chat-demo")
        .io_memory(256 << 10)
        .spawn(move || serve(server))
        .map_err(|e| format!("cannot start the executor: {e}"))
        .and_then(|h| h.join().map_err(|e| format!("executor failed: {e:?}")));
    match run.and_then(|served| served) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natsu-chat-demo: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["alice", "Bob-2", "j_ö_rg", &"x".repeat(MAX_NAME)] {
            assert!(valid_name(ok), "{ok:?}");
        }
        for bad in ["", "a b", "a.b", "a*", "a>", "a/b", &"x".repeat(MAX_NAME + 1)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn args() {
        let parse = |a: &[&str]| parse_args(a.iter().map(|s| s.to_string()));
        assert_eq!(parse(&[]).unwrap().as_deref(), Some(DEFAULT_SERVER));
        assert_eq!(parse(&["--server", "nats://h:1"]).unwrap().as_deref(), Some("nats://h:1"));
        assert_eq!(parse(&["--server=nats://h:2"]).unwrap().as_deref(), Some("nats://h:2"));
        assert_eq!(parse(&["--help"]).unwrap(), None);
        assert!(parse(&["--server"]).is_err());
        assert!(parse(&["-x"]).is_err());
    }
}
