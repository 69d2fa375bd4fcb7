//! Micro-benchmark of the protocol parser: how fast [`Parser::parse`] turns a read buffer
//! into operations, one at a time, the way a connection's reader calls it.
//!
//! ```text
//! cargo bench --bench parser                 # full size
//! cargo bench --bench parser -- --quick      # 10x fewer iterations (or NATSU_BENCH_QUICK=1)
//! cargo bench --bench parser -- HPUB         # only cases whose name contains "HPUB"
//! ```
//!
//! Each case parses a prepared stream of 10,000 operations from start to end, a fixed number
//! of times after a warm-up, and that is repeated 5 times; the table shows the median of the
//! five, and the spread (max - min over median) says how far to trust it on a shared machine.
//! MB/s counts the wire bytes consumed, payloads included (the parser skips over a payload
//! without reading it, so big payloads show high MB/s at a near-constant ns/op).
//!
//! A program, not a timed test (see STYLE.md). Run without `--bench` (as `cargo test
//! --benches` does) it only checks that every case parses its stream, once, and prints no
//! table: the same convention as criterion, so a test run stays fast.

mod harness;
use harness::{fmt_count, Mode};

use std::hint::black_box;
use std::time::{Duration, Instant};

use natsu::protocol::parser::{Op, Parser, Role};

/// Operations in each prepared stream.
const OPS_PER_STREAM: usize = 10_000;
/// nats-server's defaults, which the broker uses unless configured otherwise.
const MAX_CONTROL_LINE: usize = 4096;
const MAX_PAYLOAD: usize = 1 << 20;
/// Timed runs per case; the median is reported.
const SAMPLES: usize = 5;
/// Socket read size for the incremental case: what a reader gets from a busy socket.
const READ_SIZE: usize = 4096;

fn main() {
    let mode = Mode::from_env();
    let mut table = Table::new(mode);

    let pub16 = pub_stream(16);
    table.case("PUB 16 B", 1000, &pub16, parse_all, server());
    let pub128 = pub_stream(128);
    table.case("PUB 128 B", 1000, &pub128, parse_all, server());
    let pub1k = pub_stream(1024);
    table.case("PUB 1 KiB", 1000, &pub1k, parse_all, server());
    let hpub = hpub_stream(16);
    table.case("HPUB 16 B + 32 B headers", 1000, &hpub, parse_all, server());
    let msg = msg_stream(16);
    table.case(
        "MSG 16 B (Role::Client)",
        1000,
        &msg,
        parse_all,
        Parser::new(Role::Client, MAX_CONTROL_LINE, MAX_PAYLOAD),
    );
    let subs = sub_unsub_stream();
    table.case("SUB/UNSUB lines", 1000, &subs, parse_all, server());
    let pings = ping_pong_stream();
    table.case("PING/PONG", 1000, &pings, parse_all, server());
    // 4096 is not a multiple of the 34-byte frame, so successive reads end at 17 different
    // offsets in a frame: in the control line, in the payload, and just before its CRLF.
    let mut rbuf = Vec::with_capacity(2 * READ_SIZE);
    table.case(
        "PUB 16 B in 4 KiB reads (incremental)",
        1000,
        &pub16,
        |p, s| parse_in_reads(p, s, READ_SIZE, &mut rbuf),
        server(),
    );

    table.finish();
}

/// A server-side parser of a client that negotiated headers.
fn server() -> Parser {
    let mut p = Parser::new(Role::Server, MAX_CONTROL_LINE, MAX_PAYLOAD);
    p.set_headers(true);
    p
}

/// Parse a whole stream held in one buffer, op by op, as the reader does after a big read.
/// Returns the number of operations.
fn parse_all(parser: &mut Parser, stream: &[u8]) -> usize {
    let mut at = 0;
    let mut ops = 0;
    while let Some((op, used)) = parser
        .parse(&stream[at..])
        .expect("bench streams are valid")
    {
        consume(op);
        at += used;
        ops += 1;
    }
    assert_eq!(at, stream.len(), "unparsed bytes left");
    ops
}

/// Feed the stream `read` bytes at a time into a buffer, parse what is complete after each
/// read, and move the unparsed tail to the front: the reader's loop, minus the socket. The
/// copy of each read into the buffer stands in for the kernel's copy and is part of the cost.
fn parse_in_reads(parser: &mut Parser, stream: &[u8], read: usize, buf: &mut Vec<u8>) -> usize {
    buf.clear();
    let mut ops = 0;
    for chunk in stream.chunks(read) {
        buf.extend_from_slice(chunk);
        let mut at = 0;
        while let Some((op, used)) = parser.parse(&buf[at..]).expect("bench streams are valid") {
            consume(op);
            at += used;
            ops += 1;
        }
        buf.drain(..at);
    }
    assert!(buf.is_empty(), "unparsed bytes left");
    ops
}

/// Keep the operation alive so the optimiser cannot skip building it; the server reads
/// these same fields next.
#[inline(always)]
fn consume(op: Op<'_>) {
    black_box(&op);
}

/// Payload bytes without CR or LF (their content does not matter to the parser).
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn pub_stream(size: usize) -> Vec<u8> {
    let body = payload(size);
    let mut s = Vec::new();
    for _ in 0..OPS_PER_STREAM {
        s.extend_from_slice(format!("PUB foo.bar {size}\r\n").as_bytes());
        s.extend_from_slice(&body);
        s.extend_from_slice(b"\r\n");
    }
    s
}

fn hpub_stream(size: usize) -> Vec<u8> {
    // A header block as nats.go writes it for a message id (32 bytes).
    let headers = b"NATS/1.0\r\nNats-Msg-Id: 12345\r\n\r\n";
    let body = payload(size);
    let total = headers.len() + size;
    let mut s = Vec::new();
    for _ in 0..OPS_PER_STREAM {
        s.extend_from_slice(format!("HPUB foo.bar {} {total}\r\n", headers.len()).as_bytes());
        s.extend_from_slice(headers);
        s.extend_from_slice(&body);
        s.extend_from_slice(b"\r\n");
    }
    s
}

fn msg_stream(size: usize) -> Vec<u8> {
    let body = payload(size);
    let mut s = Vec::new();
    for _ in 0..OPS_PER_STREAM {
        s.extend_from_slice(format!("MSG foo.bar 1 {size}\r\n").as_bytes());
        s.extend_from_slice(&body);
        s.extend_from_slice(b"\r\n");
    }
    s
}

/// Every form of SUB and UNSUB in turn: plain, queue, and UNSUB with and without a max.
fn sub_unsub_stream() -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..OPS_PER_STREAM / 4 {
        s.extend_from_slice(format!("SUB foo.bar.{i} {i}\r\n").as_bytes());
        s.extend_from_slice(format!("SUB foo.*.baz workers {i}\r\n").as_bytes());
        s.extend_from_slice(format!("UNSUB {i}\r\n").as_bytes());
        s.extend_from_slice(format!("UNSUB {i} 10\r\n").as_bytes());
    }
    s
}

fn ping_pong_stream() -> Vec<u8> {
    b"PING\r\nPONG\r\n".repeat(OPS_PER_STREAM / 2)
}

/// Runs the cases and prints one row per case as soon as it is done.
struct Table {
    mode: Mode,
    /// Substrings from the command line: only cases whose name contains one of them run.
    filters: Vec<String>,
}

impl Table {
    fn new(mode: Mode) -> Table {
        let filters = harness::filters();
        if let Mode::Bench { quick } = mode {
            println!(
                "natsu parser: {OPS_PER_STREAM} ops per pass, {SAMPLES} samples per case, median shown{}",
                if quick { " (quick: 10x fewer passes)" } else { "" }
            );
            println!();
            println!(
                "{:<40} {:>7} {:>10} {:>12} {:>10} {:>7}",
                "case", "passes", "ns/op", "ops/s", "MB/s", "spread"
            );
            println!("{}", "-".repeat(40 + 7 + 10 + 12 + 10 + 7 + 5));
        }
        Table { mode, filters }
    }

    /// Parse `stream` `passes` times per sample with `pass`, one `parser` for all passes (a
    /// pass ends on an op boundary, where the parser holds no state about a pending op).
    fn case(
        &mut self,
        name: &str,
        passes: u64,
        stream: &[u8],
        mut pass: impl FnMut(&mut Parser, &[u8]) -> usize,
        mut parser: Parser,
    ) {
        if !self.filters.is_empty() && !self.filters.iter().any(|f| name.contains(f.as_str())) {
            return;
        }
        let ops = pass(&mut parser, stream);
        assert_eq!(ops, OPS_PER_STREAM, "{name}: wrong number of operations");
        let quick = match self.mode {
            Mode::Check => {
                println!("{name}: ok ({ops} ops)");
                return;
            }
            Mode::Bench { quick } => quick,
        };
        let passes = if quick { (passes / 10).max(1) } else { passes };
        let mut run = |n: u64| {
            let start = Instant::now();
            for _ in 0..n {
                black_box(pass(&mut parser, black_box(stream)));
            }
            start.elapsed()
        };
        run((passes / 5).max(1));
        let samples: Vec<Duration> = (0..SAMPLES).map(|_| run(passes)).collect();
        let ops_per_sample = passes as f64 * OPS_PER_STREAM as f64;
        let stats = Stats::new(&samples, ops_per_sample);
        let bytes_per_op = stream.len() as f64 / OPS_PER_STREAM as f64;
        println!(
            "{:<40} {:>7} {:>10.1} {:>12} {:>10.0} {:>6.1}%",
            name,
            passes,
            stats.median_ns,
            fmt_count(1e9 / stats.median_ns),
            bytes_per_op * 1e3 / stats.median_ns,
            stats.spread * 100.0
        );
    }

    fn finish(self) {
        if let Mode::Bench { .. } = self.mode {
            println!();
            println!("MB/s = 10^6 wire bytes per second; spread = (max - min) / median of the {SAMPLES} samples");
        }
    }
}

/// Median and spread of per-op times over the samples.
struct Stats {
    median_ns: f64,
    spread: f64,
}

impl Stats {
    fn new(samples: &[Duration], ops_per_sample: f64) -> Stats {
        let mut ns: Vec<f64> = samples
            .iter()
            .map(|d| d.as_nanos() as f64 / ops_per_sample)
            .collect();
        ns.sort_by(f64::total_cmp);
        let median_ns = ns[ns.len() / 2];
        Stats {
            median_ns,
            spread: (ns[ns.len() - 1] - ns[0]) / median_ns,
        }
    }
}

