#!/usr/bin/env python3
"""Medians and ratios of a bench-vs-nats-server run directory, as a Markdown table.

    python3 bench/summarize.py bench/runs/<time>

Reads OUT/<workload>/<server>-<round>/summary.json (written by natsu-bench run) and
OUT/loopback.txt, takes the median of every figure over the rounds, and prints one table
of natsu against nats-server with the ratio and the issue's target for each figure; with
baseline runs (NATSU_BASELINE), a second table of natsu against that build.

The route workloads ran on a pair of servers: their server CPU is both servers' summed
(summary.json's server_cpu_servers), and the table's label says so.
"""
import json
import re
import statistics
import sys
from pathlib import Path


def delivered(s):
    """Messages the server delivered (subscribers) or, with none, took in (publishers)."""
    return s["subscribers"]["msgs"] or s["publishers"]["msgs"]


def figures(s):
    f = {
        "servers": s.get("server_cpu_servers") or 1,
        "pub msgs/s": s["publishers"]["msgs_per_sec"],
        "sub msgs/s": s["subscribers"]["msgs_per_sec"],
        "sub MB/s": s["subscribers"]["mb_per_sec"],
        "lost": s["lost"],
    }
    if s.get("server_cpu_secs") is not None and delivered(s):
        f["server CPU ns/msg"] = s["server_cpu_secs"] * 1e9 / delivered(s)
        f["server CPU s"] = s["server_cpu_secs"]
    lat = s.get("latency")
    if lat:
        f["p50 µs"] = lat["p50_us"]
        f["p90 µs"] = lat["p90_us"]
        f["p99 µs"] = lat["p99_us"]
        f["p99.9 µs"] = lat["p999_us"]
    return f


# (workload, figure) -> (comparison, bound): natsu/nats-server must be <= or >= bound.
TARGETS = {
    ("pub16", "server CPU ns/msg"): ("<=", 0.5),
    ("pubsub16", "server CPU ns/msg"): ("<=", 0.5),
    ("fanout16", "server CPU ns/msg"): ("<=", 0.5),
    ("pub16", "pub msgs/s"): (">=", 1.5),
    ("pubsub16", "sub msgs/s"): (">=", 2.0),
    ("fanout16", "sub msgs/s"): (">=", 2.0),
    ("reqrep16", "p99 µs"): ("<=", 0.5),
    ("reqrep16", "p50 µs"): ("<=", 0.7),
    ("reqrep16spin", "p99 µs"): ("<=", 0.5),
    ("reqrep16spin", "p50 µs"): ("<=", 0.7),
    ("route16", "sub msgs/s"): (">=", 1.5),
    ("route16", "server CPU ns/msg"): ("<=", 0.6),
    ("route1k", "sub msgs/s"): (">=", 1.5),
    ("route1k", "server CPU ns/msg"): ("<=", 0.6),
    # Issue 20: big payloads, TLS, request/reply CPU.
    ("pubsub64k", "sub MB/s"): (">=", 1.5),
    ("pubsub1m", "sub MB/s"): (">=", 1.5),
    ("fanout64k", "sub MB/s"): (">=", 1.5),
    ("fanout1m", "sub MB/s"): (">=", 1.5),
    ("tls1k", "sub msgs/s"): (">=", 1.5),
    ("tls1k", "server CPU ns/msg"): ("<=", 0.6),
    ("reqrep16", "server CPU s"): ("<=", 1.0),
}

# Which figures to show for each workload.
SHOW = {
    "pub16": ["pub msgs/s", "server CPU ns/msg"],
    "pub128": ["pub msgs/s", "server CPU ns/msg"],
    "pubsub16": ["pub msgs/s", "sub msgs/s", "server CPU ns/msg", "p50 µs", "p99 µs", "lost"],
    "fanout16": ["sub msgs/s", "server CPU ns/msg", "lost"],
    "queue16": ["sub msgs/s", "server CPU ns/msg", "lost"],
    "reqrep16": ["p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "server CPU s"],
    "reqrep16spin": ["p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "server CPU s"],
    "pubsub1k": ["sub MB/s", "sub msgs/s", "server CPU ns/msg", "lost"],
    "pubsub64k": ["sub MB/s", "server CPU ns/msg", "lost"],
    "pubsub1m": ["sub MB/s", "server CPU ns/msg", "lost"],
    "fanout64k": ["sub MB/s", "server CPU ns/msg", "lost"],
    "fanout1m": ["sub MB/s", "server CPU ns/msg", "lost"],
    "tls1k": ["sub MB/s", "sub msgs/s", "server CPU ns/msg", "lost"],
    "route16": ["pub msgs/s", "sub msgs/s", "server CPU ns/msg", "p50 µs", "p99 µs", "lost"],
    "route1k": ["sub MB/s", "sub msgs/s", "server CPU ns/msg", "lost"],
}

# natsu on every core against natsu --cores 1 (natsu-1core), where the script runs both:
# (workload, figure, target for the ratio or None).
CORES = [
    ("fanout16", "sub msgs/s", 1.6),
    ("route16", "sub msgs/s", None),
    ("route16", "server CPU ns/msg", None),
    ("route1k", "sub msgs/s", None),
    ("route1k", "server CPU ns/msg", None),
]


def fmt(v):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: summarize.py RUN_DIR")
    out = Path(sys.argv[1])
    runs = {}  # (workload, server) -> [figures]
    for path in sorted(out.glob("*/*/summary.json")):
        workload = path.parent.parent.name
        server = re.sub(r"-\d+$", "", path.parent.name)
        try:
            runs.setdefault((workload, server), []).append(figures(json.loads(path.read_text())))
        except (ValueError, KeyError) as e:
            print(f"skipping {path}: {e}", file=sys.stderr)
    if not runs:
        sys.exit(f"no runs under {out}")

    def median(workload, server, fig):
        vals = [r[fig] for r in runs.get((workload, server), []) if fig in r]
        return statistics.median(vals) if vals else None

    def label(workload, fig):
        """A figure's name, saying when its CPU was summed over a pair of servers."""
        n = max((r["servers"] for r in runs.get((workload, "natsu"), []) + runs.get((workload, "nats-server"), [])), default=1)
        if fig.startswith("server CPU") and n > 1:
            return f"{fig} ({'both' if n == 2 else n} servers)"
        return fig

    rounds = max(len(v) for v in runs.values())
    print(f"Medians of {rounds} rounds per server; ratio = natsu / nats-server.\n")
    print("| workload | figure | natsu | nats-server | ratio | target |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for workload in SHOW:
        if not any(w == workload for w, _ in runs):
            continue
        for fig in SHOW[workload]:
            a, b = median(workload, "natsu", fig), median(workload, "nats-server", fig)
            ratio = a / b if a is not None and b else None
            target = ""
            if (workload, fig) in TARGETS and ratio is not None:
                op, bound = TARGETS[(workload, fig)]
                met = ratio <= bound if op == "<=" else ratio >= bound
                target = f"{op} {bound}×: {'met' if met else 'NOT met'}"
            print(f"| {workload} | {label(workload, fig)} | {fmt(a)} | {fmt(b)} | {fmt(ratio) + '×' if ratio else '–'} | {target} |")
    for workload, fig, bound in CORES:
        one, many = median(workload, "natsu-1core", fig), median(workload, "natsu", fig)
        if one and many:
            met = f">= {bound}×: {'met' if many / one >= bound else 'NOT met'}" if bound else ""
            what = "natsu --cores 2 / --cores 1" if fig == "sub msgs/s" else f"{label(workload, fig)}, natsu --cores 2 / --cores 1"
            print(f"| {workload} | {what} | {fmt(many)} | {fmt(one)} (1 core) | {many / one:.2f}× | {met} |")
    loop = out / "loopback.txt"
    mbps = median("pubsub1k", "natsu", "sub MB/s")
    if loop.exists() and mbps:
        m = re.search(r"loopback TCP: ([\d.]+) MB/s", loop.read_text())
        if m:
            frac = mbps / float(m.group(1))
            met = "met" if frac >= 0.8 else "NOT met"
            print(f"| pubsub1k | natsu MB/s / loopback TCP {float(m.group(1)):,.0f} MB/s | {fmt(mbps)} | | {frac:.0%} | >= 80%: {met} |")
        # The same bytes through a relay that does nothing to them: a broker's two hops.
        m = re.search(r"loopback TCP through a relay: ([\d.]+) MB/s", loop.read_text())
        if m:
            print(f"| pubsub1k | natsu MB/s / loopback TCP through a relay {float(m.group(1)):,.0f} MB/s | {fmt(mbps)} | | {mbps / float(m.group(1)):.0%} | |")
    if loop.exists():
        # The floor under request/reply: a round trip between two threads, no broker.
        for cpus in ("one CPU", "two CPUs"):
            m = re.search(rf"round trip, 16 B, {cpus}: p50 ([\d.]+) µs, p99 ([\d.]+) µs", loop.read_text())
            if m:
                print(f"| machine | loopback TCP round trip, {cpus}, p50 / p99 µs | {m.group(1)} / {m.group(2)} | | | |")

    if any(srv == "natsu-base" for _, srv in runs):
        # NATSU_BASELINE: the change measured against the older build in the same rounds.
        print("\nA/B against the baseline build (natsu-base), same rounds; ratio = natsu / natsu-base.\n")
        print("| workload | figure | natsu | natsu-base | ratio | nats-server |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for workload in SHOW:
            if (workload, "natsu-base") not in runs:
                continue
            for fig in SHOW[workload]:
                if fig == "lost":
                    continue
                a, b, c = (median(workload, srv, fig) for srv in ("natsu", "natsu-base", "nats-server"))
                ratio = a / b if a is not None and b else None
                print(f"| {workload} | {label(workload, fig)} | {fmt(a)} | {fmt(b)} | {fmt(ratio) + '×' if ratio else '–'} | {fmt(c)} |")

if __name__ == "__main__":
    main()
