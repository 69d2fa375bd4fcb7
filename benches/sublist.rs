//! Micro-benchmark of the subscription index: [`Sublist::match_subject`] with the result
//! cache hit and missed, at 1, 1,000 and 100,000 subscriptions, queue groups, and the cost of
//! SUB and UNSUB (insert, remove).
//!
//! ```text
//! cargo bench --bench sublist                # full size
//! cargo bench --bench sublist -- --quick     # 10x fewer iterations (or NATSU_BENCH_QUICK=1)
//! cargo bench --bench sublist -- miss        # only cases whose name contains "miss"
//! ```
//!
//! Each case runs a fixed number of iterations after a warm-up, 5 times; the table shows the
//! median and the spread (max - min over median). The `hits` column is the share of lookups
//! the cache answered during the timed runs, which shows that a "hit" case hits and a "miss"
//! case misses; `deliveries` is plain subscribers plus queue groups per lookup, what a publish
//! then fans out to. The miss cases cycle through 100,000 distinct subjects; the cache drops
//! entries in arbitrary batches, so a few survive a whole cycle and show as hits (under 1%).
//!
//! Items are `Rc` handles compared by pointer, like the shard's subscription references, so
//! building a result costs what it costs in the server (a reference-count bump per entry).
//!
//! A program, not a timed test (see STYLE.md). Run without `--bench` (as `cargo test
//! --benches` does) each case runs briefly and checks its results, and no table is printed.

mod harness;
use harness::{fmt_count, Mode};

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use natsu::server::sublist::{Sublist, SublistResult, CACHE_MAX};

/// Timed runs per case; the median is reported.
const SAMPLES: usize = 5;
/// Subscriptions in the biggest index, and distinct publish subjects for the miss cases.
const BIG: usize = 100_000;

/// A subscription handle compared by identity, as the shard's `SubRef` is.
#[derive(Clone, Debug)]
struct Handle(Rc<u32>);

impl PartialEq for Handle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

/// One SUB: pattern, queue group, subscriber.
struct Sub {
    subject: Vec<u8>,
    queue: Option<Vec<u8>>,
    item: Handle,
}

/// `n` subscriptions under `bench.`: 80% literal (`bench.s<x>.t<y>`, all distinct), 10%
/// `bench.s<x>.*` and 10% `bench.s<x>.>`. Every literal publish subject `bench.s<x>.t<y>`
/// thus meets a literal level of up to 1,000 tokens and both wildcard kinds, and the number
/// of patterns matching it grows with `n` (1 at n = 1, 3 at 1,000, 21 at 100,000).
fn population(n: usize) -> Vec<Sub> {
    (0..n)
        .map(|i| {
            let subject = match i % 10 {
                8 => format!("bench.s{}.*", (i / 10) % 1000),
                9 => format!("bench.s{}.>", (i / 10) % 1000),
                _ => format!("bench.s{}.t{}", i % 1000, i / 1000),
            };
            Sub {
                subject: subject.into_bytes(),
                queue: None,
                item: Handle(Rc::new(i as u32)),
            }
        })
        .collect()
}

fn build(subs: &[Sub]) -> Sublist<Handle> {
    let mut sl = Sublist::new();
    for s in subs {
        sl.insert(&s.subject, s.queue.as_deref(), s.item.clone())
            .expect("valid bench subject");
    }
    sl
}

/// `n` distinct publish subjects of the population's shape.
fn subjects(n: usize) -> Vec<Box<[u8]>> {
    (0..n)
        .map(|k| {
            format!("bench.s{}.t{}", k % 1000, (k / 1000) % 1000)
                .into_bytes()
                .into()
        })
        .collect()
}

/// Messages a publish turns into: one per plain subscriber, one per queue group.
fn deliveries<T>(r: &SublistResult<T>) -> usize {
    r.psubs.len() + r.qsubs.len()
}

/// What the timed lookups saw, for the table's last columns.
#[derive(Default)]
struct Seen {
    lookups: u64,
    hits: u64,
    deliveries: u64,
}

impl Seen {
    fn note(&self) -> (String, String) {
        if self.lookups == 0 {
            return ("-".into(), "-".into());
        }
        (
            format!("{:.1}%", 100.0 * self.hits as f64 / self.lookups as f64),
            format!("{:.1}", self.deliveries as f64 / self.lookups as f64),
        )
    }
}

/// Look up `n` subjects taken in turn from `pool` starting at `*next`; counts into `seen`.
fn lookups(
    sl: &mut Sublist<Handle>,
    pool: &[Box<[u8]>],
    next: &mut usize,
    n: u64,
    seen: &mut Seen,
) -> Duration {
    let (hits0, misses0, _) = sl.cache_stats();
    let mut delivered = 0usize;
    let start = Instant::now();
    for _ in 0..n {
        let r = sl.match_subject(black_box(&pool[*next]));
        // The shard walks the result next; reading its lengths keeps the lookup honest.
        delivered += deliveries(&r);
        *next += 1;
        if *next == pool.len() {
            *next = 0;
        }
    }
    let elapsed = start.elapsed();
    let (hits1, misses1, _) = sl.cache_stats();
    seen.lookups += (hits1 - hits0) + (misses1 - misses0);
    seen.hits += hits1 - hits0;
    seen.deliveries += delivered as u64;
    elapsed
}

fn main() {
    let mode = Mode::from_env();
    let t = Table::new(mode);
    let big = population(BIG);
    let distinct = subjects(BIG);

    // Lookups of one literal subject that matches at every size, and of all-distinct ones.
    for (n, expect) in [(1usize, 1usize), (1_000, 3), (BIG, 21)] {
        let mut sl = build(&big[..n]);
        let one: Vec<Box<[u8]>> = vec![b"bench.s0.t0".to_vec().into()];
        assert_eq!(
            deliveries(&sl.match_subject(&one[0])),
            expect,
            "matches with {n} subs"
        );
        let label = short(n);

        let (mut seen, mut next) = (Seen::default(), 0);
        let subs = if n == 1 { "sub" } else { "subs" };
        let name = format!("match, {label} {subs}, 1 subject (hit)");
        if let Some(s) = t.measure(&name, 2_000_000, 1, |i| {
            lookups(&mut sl, &one, &mut next, i, &mut seen)
        }) {
            t.row(&name, s, seen.note());
        }
        let (mut seen, mut next) = (Seen::default(), 0);
        let name = format!("match, {label} {subs}, distinct (miss)");
        if let Some(s) = t.measure(&name, 200_000, 1, |i| {
            lookups(&mut sl, &distinct, &mut next, i, &mut seen)
        }) {
            t.row(&name, s, seen.note());
        }
    }

    // A working set that fits the cache: the steady state of a publisher with a few hundred
    // subjects.
    {
        let mut sl = build(&big[..1_000]);
        let set = subjects(CACHE_MAX / 2);
        let (mut seen, mut next) = (Seen::default(), 0);
        let name = format!("match, 1k subs, {} subjects cycling (hit)", CACHE_MAX / 2);
        if let Some(s) = t.measure(&name, 2_000_000, 1, |i| {
            lookups(&mut sl, &set, &mut next, i, &mut seen)
        }) {
            t.row(&name, s, seen.note());
        }
    }

    // Queue groups: 10 groups of 10 on `jobs.*`, 5 of them with 2 more members through
    // `jobs.>` (so the result merges groups across patterns), one plain `jobs.*`, next to
    // the 1,000-subscription population.
    {
        let mut subs = population(1_000);
        for g in 0..10 {
            for m in 0..10 {
                let queue = Some(format!("q{g}").into_bytes());
                subs.push(Sub {
                    subject: b"jobs.*".to_vec(),
                    queue,
                    item: Handle(Rc::new(m)),
                });
            }
        }
        for g in 0..5 {
            for m in 0..2 {
                let queue = Some(format!("q{g}").into_bytes());
                subs.push(Sub {
                    subject: b"jobs.>".to_vec(),
                    queue,
                    item: Handle(Rc::new(m)),
                });
            }
        }
        subs.push(Sub {
            subject: b"jobs.*".to_vec(),
            queue: None,
            item: Handle(Rc::new(0)),
        });
        let mut sl = build(&subs);
        let one: Vec<Box<[u8]>> = vec![b"jobs.7".to_vec().into()];
        let r = sl.match_subject(&one[0]);
        assert_eq!(
            (r.psubs.len(), r.qsubs.len()),
            (1, 10),
            "queue result shape"
        );
        assert_eq!(
            r.qsubs.iter().map(|(_, m)| m.len()).sum::<usize>(),
            110,
            "queue members"
        );
        drop(r);
        let jobs: Vec<Box<[u8]>> = (0..BIG)
            .map(|k| format!("jobs.{k}").into_bytes().into())
            .collect();

        let (mut seen, mut next) = (Seen::default(), 0);
        let name = "match queue: 10 groups/110 members (hit)";
        if let Some(s) = t.measure(name, 2_000_000, 1, |i| {
            lookups(&mut sl, &one, &mut next, i, &mut seen)
        }) {
            t.row(name, s, seen.note());
        }
        let (mut seen, mut next) = (Seen::default(), 0);
        let name = "match queue: 10 groups/110 members (miss)";
        if let Some(s) = t.measure(name, 200_000, 1, |i| {
            lookups(&mut sl, &jobs, &mut next, i, &mut seen)
        }) {
            t.row(name, s, seen.note());
        }
    }

    // SUB and UNSUB of the whole 100k population: each pass builds (or empties) a fresh
    // index; building the input and dropping the index are outside the clock.
    {
        let name = format!("insert {} subs into empty", short(BIG));
        let timed = t.measure(&name, 10, BIG as u64, |passes| {
            let mut total = Duration::ZERO;
            for _ in 0..passes {
                let mut sl = Sublist::new();
                let start = Instant::now();
                for s in &big {
                    sl.insert(&s.subject, s.queue.as_deref(), s.item.clone())
                        .expect("valid bench subject");
                }
                total += start.elapsed();
                assert_eq!(sl.count(), BIG);
                drop(black_box(sl));
            }
            total
        });
        if let Some(s) = timed {
            t.row(&name, s, Seen::default().note());
        }

        let name = format!("remove {} subs until empty", short(BIG));
        let timed = t.measure(&name, 10, BIG as u64, |passes| {
            let mut total = Duration::ZERO;
            for _ in 0..passes {
                let mut sl = build(&big);
                let start = Instant::now();
                for s in &big {
                    sl.remove(&s.subject, s.queue.as_deref(), &s.item)
                        .expect("stored above");
                }
                total += start.elapsed();
                assert_eq!(sl.count(), 0);
            }
            total
        });
        if let Some(s) = timed {
            t.row(&name, s, Seen::default().note());
        }
    }

    // A SUB+UNSUB pair on a busy index with a full cache, as request/reply clients do with
    // their reply subscriptions. The patterns match none of the cached subjects, so the cache
    // stays full: a wildcard pattern pays a scan of the whole cache twice, a literal one a
    // hash lookup.
    {
        let mut sl = build(&big);
        for s in &distinct[..CACHE_MAX] {
            sl.match_subject(s);
        }
        assert_eq!(sl.cache_stats().2, CACHE_MAX, "cache full");
        let item = Handle(Rc::new(0));
        // The wildcard pair is some 50x dearer; fewer iterations keep the run under a minute.
        for (kind, pattern, iters) in [
            ("literal", &b"churn.lit.x"[..], 200_000),
            ("`*`", &b"churn.*.x"[..], 20_000),
        ] {
            let name = format!("SUB+UNSUB {kind}, 100k subs, cache full");
            let timed = t.measure(&name, iters, 1, |n| {
                let start = Instant::now();
                for _ in 0..n {
                    sl.insert(black_box(pattern), None, item.clone())
                        .expect("valid bench subject");
                    sl.remove(black_box(pattern), None, &item)
                        .expect("stored above");
                }
                start.elapsed()
            });
            assert_eq!(sl.cache_stats().2, CACHE_MAX, "churn left the cache alone");
            if let Some(s) = timed {
                t.row(&name, s, Seen::default().note());
            }
        }
    }

    t.finish();
}

/// Runs the cases and prints one row per case as soon as it is done.
struct Table {
    mode: Mode,
    /// Substrings from the command line: only cases whose name contains one of them run.
    filters: Vec<String>,
}

/// A measured case: iterations per sample and the per-op time over the samples.
struct Timed {
    iters: u64,
    median_ns: f64,
    spread: f64,
}

impl Table {
    fn new(mode: Mode) -> Table {
        let filters = harness::filters();
        if let Mode::Bench { quick } = mode {
            println!(
                "natsu sublist: {SAMPLES} samples per case, median shown{}",
                if quick {
                    " (quick: 10x fewer iterations)"
                } else {
                    ""
                }
            );
            println!();
            println!(
                "{:<42} {:>9} {:>10} {:>11} {:>7} {:>7} {:>11}",
                "case", "iters", "ns/op", "ops/s", "spread", "hits", "deliveries"
            );
            println!("{}", "-".repeat(42 + 9 + 10 + 11 + 7 + 7 + 11 + 6));
        }
        Table { mode, filters }
    }

    /// Time `f(iters)` (which does `iters * ops_per_iter` operations and returns the time they
    /// took) after a warm-up of a fifth as many; `None` when the case is filtered out or only
    /// checked.
    fn measure(
        &self,
        name: &str,
        iters: u64,
        ops_per_iter: u64,
        mut f: impl FnMut(u64) -> Duration,
    ) -> Option<Timed> {
        if !self.filters.is_empty() && !self.filters.iter().any(|x| name.contains(x.as_str())) {
            return None;
        }
        let quick = match self.mode {
            Mode::Check => {
                f((iters / 1000).max(1));
                println!("{name}: ok");
                return None;
            }
            Mode::Bench { quick } => quick,
        };
        let iters = if quick { (iters / 10).max(1) } else { iters };
        f((iters / 5).max(1));
        let ops = (iters * ops_per_iter) as f64;
        let mut ns: Vec<f64> = (0..SAMPLES)
            .map(|_| f(iters).as_nanos() as f64 / ops)
            .collect();
        ns.sort_by(f64::total_cmp);
        let median_ns = ns[SAMPLES / 2];
        Some(Timed {
            iters,
            median_ns,
            spread: (ns[SAMPLES - 1] - ns[0]) / median_ns,
        })
    }

    fn row(&self, name: &str, t: Timed, (hits, deliveries): (String, String)) {
        println!(
            "{:<42} {:>9} {:>10.1} {:>11} {:>6.1}% {:>7} {:>11}",
            name,
            t.iters,
            t.median_ns,
            fmt_count(1e9 / t.median_ns),
            t.spread * 100.0,
            hits,
            deliveries
        );
    }

    fn finish(self) {
        if let Mode::Bench { .. } = self.mode {
            println!();
            println!("op = one lookup, one insert, one remove, or one SUB+UNSUB pair; iters are per sample");
            println!(
                "(insert/remove: passes of {} subs); spread = (max - min) / median",
                short(BIG)
            );
        }
    }
}

/// 1 -> "1", 1000 -> "1k", 100000 -> "100k": sizes in case names.
fn short(n: usize) -> String {
    if n >= 1000 && n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

