//! The control plane: what all cores share (read-mostly settings, server-wide counters) and
//! how the process tells the cores about reloads, lame duck mode and shutdown. Nothing here
//! is touched per message.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::imports::AccountTable;
use super::outbox::BatchPool;
use crate::protocol::info::Info;
use crate::server::Options;

/// What all cores share: read-mostly configuration and server-wide counters touched only when
/// connections come and go (never per message).
pub struct Shared {
    /// The options the server started with (see [`Shared::control`] for reloaded ones).
    pub opts: Options,
    pub info: Info,
    pub connections: AtomicUsize,
    pub total_connections: AtomicU64,
    pub next_cid: AtomicU64,
    /// How the process tells the cores about reloads, lame duck mode and shutdown.
    pub control: Control,
    /// Batch pools between cores: `batch_pools[from * cores + to]`.
    pub batch_pools: Vec<Arc<BatchPool>>,
    /// The sequence number of the server's system-account messages (`server.seq`).
    pub sys_seq: AtomicU64,
    /// The accounts, their ids and their imports: the same on every core, fixed at start.
    pub accounts: AccountTable,
    /// Co-location (see `colocate`): clients on each core (as each last counted), a move
    /// under way, and moves done.
    pub core_clients: Vec<AtomicUsize>,
    pub moving: std::sync::atomic::AtomicBool,
    pub moves: AtomicU64,
}

/// Settings that a reload (SIGHUP) may change, handed to every core.
pub struct Live {
    pub opts: Arc<Options>,
    /// The TLS configuration built from `opts.tls`, once, where it is checked.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The WebSocket port's settings, when it is on.
    pub ws: Option<Arc<crate::server::websocket::Live>>,
}

impl Live {
    /// Build what the cores serve from `opts`: the TLS configurations are loaded here, so a
    /// bad certificate refuses the start or the reload.
    pub fn new(opts: Options) -> Result<Live, String> {
        let tls = opts.tls.as_ref().map(crate::server::tls::server_config).transpose()?;
        let ws = crate::server::websocket::Live::new(&opts)?.map(Arc::new);
        Ok(Live { opts: Arc::new(opts), tls, ws })
    }
}

/// What the server is doing as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Running = 0,
    /// Not accepting; clients are told (INFO `ldm`) and then closed over a while.
    LameDuck = 1,
    /// Closing every client after sending what is queued, then stopping.
    Stopping = 2,
}

/// The control plane between the process (signals) and the cores. The main thread is not an
/// executor, so it cannot use the mailboxes: it publishes here and every core looks a few
/// times a second (see `server::control_task`).
pub struct Control {
    pub generation: AtomicU64,
    pub live: Mutex<Arc<Live>>,
    pub mode: AtomicU8,
    /// Cores that finished stopping or lame duck mode.
    pub cores_done: AtomicUsize,
}

impl Control {
    pub fn new(live: Live) -> Control {
        Control { generation: AtomicU64::new(0), live: Mutex::new(Arc::new(live)), mode: AtomicU8::new(0), cores_done: AtomicUsize::new(0) }
    }

    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            0 => Mode::Running,
            1 => Mode::LameDuck,
            _ => Mode::Stopping,
        }
    }

    /// The latest settings (a cheap Arc clone).
    pub fn live(&self) -> Arc<Live> {
        self.live.lock().map(|l| l.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }
}
