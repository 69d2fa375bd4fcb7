//! The logging writer thread: the only place that writes log lines.
//!
//! A file, a syslog or a stderr pipe can stall (a full disk, a hung collector, a supervisor
//! that stopped reading). Executors must not stall with it, so they only queue their
//! events ([`enqueue`] never blocks) and one thread does the blocking writes. The queue is
//! bounded in bytes: when it is full, a line is dropped and counted ([`dropped_lines`]); the
//! writer says how many were lost as soon as it catches up again (`[WRN] logging fell
//! behind: N lines dropped`), and at most every [`REPORT_EVERY`] while it never does.
//!
//! Changes of destination ([`set_output`], [`reopen_file`]) and [`flush`]es travel through
//! the same queue, so lines logged before a log rotation go to the old file and lines logged
//! after it to the new one. They are never dropped, and the caller never waits for the
//! writer, except in [`flush`], which waits a bounded time.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tracing::Level;

use super::syslog::{syslog_frame, Syslog};
use super::{label, line_stamp, local};

/// Most bytes of lines (with [`LINE_OVERHEAD`] each) waiting for the writer: some 20,000
/// trace lines, a few seconds of a busy `-V` server, in memory that stays small.
const QUEUE_BYTES: usize = 4 << 20;
/// What a queued line costs beside its text (its allocation, its slot in the channel), so
/// that the bound holds for many short lines too.
const LINE_OVERHEAD: usize = 64;
/// File and stderr lines are written in batches of about this size: one syscall for many
/// lines when the writer is behind.
const BATCH: usize = 64 << 10;
/// While lines have come within [`BUSY_FOR`], the writer checks the queue this often
/// instead of sleeping on it; idle longer, it sleeps on the queue (no wake-ups of its own).
const BUSY_NAP: Duration = Duration::from_millis(5);
const BUSY_FOR: Duration = Duration::from_millis(200);
/// How often a writer that never catches up still reports what it dropped.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How long the process waits at exit for queued lines to be written: a destination that
/// stalls must not stop the process from exiting.
const EXIT_FLUSH: Duration = Duration::from_secs(2);

/// The queue's sending end; set once, by the first [`start`].
static QUEUE: OnceLock<Sender<Item>> = OnceLock::new();
/// Bytes (with overhead) of the lines in the queue and in the writer's unwritten batch.
static QUEUED: AtomicUsize = AtomicUsize::new(0);
/// Lines dropped because the queue was full, since the start.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// The last [`flush`] ticket handed out, and the last one the writer has done: a flush
/// waits on a condition variable rather than a channel so it also works at exit, after
/// the main thread's thread-locals are gone.
static FLUSH_TICKET: AtomicU64 = AtomicU64::new(0);
static FLUSHED: Mutex<u64> = Mutex::new(0);
static FLUSHED_CV: Condvar = Condvar::new();

/// The destination and the line settings that go with it; owned by the writer thread.
pub(super) struct Output {
    pub(super) dest: Dest,
    /// Timestamps on file and stderr lines (`-T`); syslog lines always carry the syslog one.
    pub(super) logtime: bool,
    pub(super) pid: u32,
}

pub(super) enum Dest {
    Stderr,
    File(std::fs::File),
    Syslog(Syslog),
}

enum Item {
    /// An event's text; the time is taken when it happened, not when it is written.
    Line { level: Level, time: SystemTime, body: String },
    /// A new destination or new settings (init, a config reload).
    Output(Output),
    /// The log file opened again at its path (SIGUSR1); ignored unless logging to a file.
    Reopen(std::fs::File),
    /// Write everything queued before this, then mark the ticket done.
    Flush(u64),
}

/// Start the writer thread with `output`, or hand `output` to the one already running.
pub(super) fn start(output: Output) -> Result<(), String> {
    if let Some(q) = QUEUE.get() {
        let _ = q.send(Item::Output(output));
        return Ok(());
    }
    let (tx, rx) = mpsc::channel();
    let _ = tx.send(Item::Output(output));
    std::thread::Builder::new()
        .name("natsu-log".into())
        .spawn(move || run(rx))
        .map_err(|e| format!("cannot start the logging thread: {e}"))?;
    if QUEUE.set(tx).is_ok() {
        // Lines logged just before the process exits (the last lines of a graceful stop, an
        // error that ends start-up) are still in the queue then: every way out of main
        // goes through exit(3), which runs this.
        // SAFETY: registers a function that takes no arguments and does not unwind.
        unsafe { libc::atexit(flush_at_exit) };
    }
    // Else a racing start won; dropping our sender lets our thread write its one item and end.
    Ok(())
}

extern "C" fn flush_at_exit() {
    // A panic must not unwind into libc.
    let _ = std::panic::catch_unwind(|| flush(EXIT_FLUSH));
}

/// Queue an event's line; never blocks. A line that does not fit is dropped and counted.
pub(super) fn enqueue(level: Level, body: String) {
    let Some(q) = QUEUE.get() else { return };
    let cost = body.len() + LINE_OVERHEAD;
    let before = QUEUED.fetch_add(cost, Ordering::Relaxed);
    // A line longer than the whole bound (a huge traced payload) still goes into an empty
    // queue: the bound is on memory held for a stalled destination, not on one line.
    if before > 0 && before + cost > QUEUE_BYTES {
        QUEUED.fetch_sub(cost, Ordering::Relaxed);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if q.send(Item::Line { level, time: SystemTime::now(), body }).is_err() {
        QUEUED.fetch_sub(cost, Ordering::Relaxed);
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Hand a new destination to the writer, after the lines already queued.
pub(super) fn set_output(output: Output) {
    if let Some(q) = QUEUE.get() {
        let _ = q.send(Item::Output(output));
    }
}

/// Hand a reopened log file to the writer, after the lines already queued.
pub(super) fn reopen_file(file: std::fs::File) {
    if let Some(q) = QUEUE.get() {
        let _ = q.send(Item::Reopen(file));
    }
}

/// Wait until every line logged before this call is written (or dropped), at most `wait`.
/// True if it was; false on a timeout (the destination is stalled). Without
/// [`init`](super::init) there is nothing to wait for.
///
/// ```
/// assert!(natsu::logging::flush(std::time::Duration::from_secs(1)));
/// ```
pub fn flush(wait: Duration) -> bool {
    let Some(q) = QUEUE.get() else { return true };
    let ticket = FLUSH_TICKET.fetch_add(1, Ordering::Relaxed) + 1;
    if q.send(Item::Flush(ticket)).is_err() {
        return false;
    }
    let done = FLUSHED.lock().unwrap_or_else(|e| e.into_inner());
    let (_done, res) = FLUSHED_CV.wait_timeout_while(done, wait, |d| *d < ticket).unwrap_or_else(|e| e.into_inner());
    !res.timed_out()
}

/// Log lines dropped since the start because the writer had fallen behind (the queue was
/// full): a count for monitoring.
///
/// ```
/// let before = natsu::logging::dropped_lines();
/// assert!(natsu::logging::dropped_lines() >= before);
/// ```
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

struct Writer {
    /// `None` only until the first item, which is always an output.
    out: Option<Output>,
    /// Formatted file or stderr lines not yet written, and their cost in [`QUEUED`].
    batch: Vec<u8>,
    batch_cost: usize,
    /// [`DROPPED`] as last reported.
    reported: u64,
    last_report: Instant,
}

fn run(rx: Receiver<Item>) {
    let mut w = Writer { out: None, batch: Vec::new(), batch_cost: 0, reported: 0, last_report: Instant::now() };
    let mut last_line = Instant::now() - BUSY_FOR;
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(TryRecvError::Empty) => {
                // Caught up: write the batch and say what was lost while behind.
                w.report_drops();
                w.write_batch();
                // While lines keep coming, nap instead of waiting on the queue: a thread
                // that queues a line then never has to wake this one (a futex call per
                // line, and a write per line, at a gateway's access log rate).
                if last_line.elapsed() < BUSY_FOR {
                    std::thread::sleep(BUSY_NAP);
                    continue;
                }
                match rx.recv() {
                    Ok(item) => item,
                    Err(_) => return,
                }
            }
            Err(TryRecvError::Disconnected) => {
                w.write_batch();
                return;
            }
        };
        if matches!(item, Item::Line { .. }) {
            last_line = Instant::now();
        }
        w.take(item);
        if w.batch.len() >= BATCH {
            w.write_batch();
        }
        if DROPPED.load(Ordering::Relaxed) > w.reported && w.last_report.elapsed() >= REPORT_EVERY {
            w.report_drops();
        }
    }
}

impl Writer {
    fn take(&mut self, item: Item) {
        match item {
            Item::Line { level, time, body } => {
                self.line(level, time, &body);
                let cost = body.len() + LINE_OVERHEAD;
                if matches!(self.out.as_ref().map(|o| &o.dest), Some(Dest::File(_) | Dest::Stderr)) {
                    self.batch_cost += cost;
                } else {
                    QUEUED.fetch_sub(cost, Ordering::Relaxed);
                }
            }
            Item::Output(o) => {
                self.write_batch();
                self.out = Some(o);
            }
            Item::Reopen(new) => {
                self.write_batch();
                if let Some(Output { dest: Dest::File(file), .. }) = &mut self.out {
                    *file = new;
                }
            }
            Item::Flush(ticket) => {
                self.report_drops();
                self.write_batch();
                let mut done = FLUSHED.lock().unwrap_or_else(|e| e.into_inner());
                *done = (*done).max(ticket);
                FLUSHED_CV.notify_all();
            }
        }
    }

    /// Format one line: a syslog frame is sent at once, a file or stderr line is batched.
    fn line(&mut self, level: Level, time: SystemTime, body: &str) {
        let Some(o) = &mut self.out else { return };
        match &mut o.dest {
            Dest::Syslog(s) => {
                let frame = syslog_frame(s, level, local(time), o.pid, body);
                s.send(frame.as_bytes());
            }
            Dest::File(_) | Dest::Stderr => {
                let mut line = String::with_capacity(body.len() + 48);
                let _ = write!(line, "[{}] ", o.pid);
                if o.logtime {
                    line.push_str(&line_stamp(local(time)));
                    line.push(' ');
                }
                let _ = writeln!(line, "[{}] {body}", label(level));
                self.batch.extend_from_slice(line.as_bytes());
            }
        }
    }

    fn write_batch(&mut self) {
        if !self.batch.is_empty() {
            // A closed stderr (a supervisor that went away) or a full disk must never take
            // the broker down: what cannot be written is lost.
            let _ = match self.out.as_mut().map(|o| &mut o.dest) {
                Some(Dest::File(file)) => file.write_all(&self.batch),
                Some(Dest::Stderr) => std::io::stderr().lock().write_all(&self.batch),
                _ => Ok(()),
            };
            self.batch.clear();
            if self.batch.capacity() > 4 * BATCH {
                self.batch.shrink_to(BATCH);
            }
        }
        QUEUED.fetch_sub(std::mem::take(&mut self.batch_cost), Ordering::Relaxed);
    }

    /// Log how many lines were dropped since the last report, if any.
    fn report_drops(&mut self) {
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped > self.reported {
            let n = dropped - self.reported;
            self.reported = dropped;
            self.last_report = Instant::now();
            self.line(Level::WARN, SystemTime::now(), &format!("logging fell behind: {n} lines dropped"));
        }
    }
}
