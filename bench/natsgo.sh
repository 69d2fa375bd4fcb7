#!/usr/bin/env bash
# natsu against nats-server as an independent client sees them: the load comes from
# natsgo-bench (bench/natsgo/, the official Go client nats.go), over plain TCP, TLS or
# WebSocket.
#
#   bench/natsgo.sh                                      # 3 rounds of pubsub16 and pubsub1k, nats://
#   ROUNDS=5 WORKLOADS="reqrep16 pubsub64k fanout1m" bench/natsgo.sh
#   TRANSPORT=ws WORKLOADS="pubsub16 pubsub1k reqrep16" bench/natsgo.sh   # WebSocket (bench/websocket.sh)
#   TRANSPORT=tls WORKLOADS=pubsub1k bench/natsgo.sh     # TLS 1.3, a certificate made here
#   MSGS_16=2000 MSGS_1K=1000 MSGS_REQ=200 ROUNDS=1 bench/natsgo.sh   # a smoke test
#
# natsgo-bench is built here when missing. Both servers read the same config file (client
# port, and per TRANSPORT a `tls {}` block or a `websocket { listen, no_tls: true }` block),
# on ports picked free on 127.0.0.1. Each round starts each server fresh, in alternating
# order (A B, B A, ...: these machines are noisy), runs the workload with the publisher and
# each subscriber on a connection of its own, and reads the server's CPU time (utime+stime
# from /proc/PID/stat, via natsgo-bench --server-pid) over the measured phase. Prints medians
# and ratios as a markdown table for bench/RESULTS.md; writes each run's JSON line, stderr
# and server log under OUT, and the table to OUT/table.md.
#
# Workloads: pubsub16, pubsub1k, pubsub64k, pubsub1m (1 publisher, 1 subscriber); fanout16,
# fanout64k, fanout1m (4 subscribers, each gets every message); reqrep16 (sequential
# request/reply, 16 B, latency percentiles).
#
# Environment: TRANSPORT (nats, tls or ws; default nats), ROUNDS (default 3), WORKLOADS
# (default "pubsub16 pubsub1k"), OUT (default bench/runs/natsgo-<transport>-<time>),
# MSGS_16 (default 4000000), MSGS_1K (default 1000000), MSGS_64K (default 40000), MSGS_1M
# (default 3000), MSGS_REQ (default 20000), NATSU (default target/release/natsu; not built here),
# NATSU_ARGS (extra natsu flags, e.g. "--cores 1"), NATSU_BASELINE (another natsu binary, e.g.
# an older commit's, measured in the same rounds as "natsu-base": an A/B of a change), NATS_SERVER (default nats-server),
# NATSGO_BENCH (a natsgo-bench binary; default target/natsgo/natsgo-bench, built when
# missing or older than its source), SERVERS (default "natsu nats-server"), RUN_TIMEOUT
# (seconds one run may take, default 180). Only loopback is used; every process started here is stopped by its PID on
# exit. The figures mean something only on a quiet machine: the load average is printed
# before and after, with a warning above 1.5.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

ROUNDS="${ROUNDS:-3}"
WORKLOADS="${WORKLOADS:-pubsub16 pubsub1k}"
TRANSPORT="${TRANSPORT:-nats}"
OUT="${OUT:-bench/runs/natsgo-$TRANSPORT-$(date +%Y%m%d-%H%M%S)}"
MSGS_16="${MSGS_16:-4000000}"
MSGS_1K="${MSGS_1K:-1000000}"
MSGS_64K="${MSGS_64K:-40000}"
MSGS_1M="${MSGS_1M:-3000}"
MSGS_REQ="${MSGS_REQ:-20000}"
NATSU="${NATSU:-target/release/natsu}"
NATSU_ARGS="${NATSU_ARGS:-}"
NATS_SERVER="${NATS_SERVER:-nats-server}"
NATSGO_BENCH="${NATSGO_BENCH:-target/natsgo/natsgo-bench}"
NATSU_BASELINE="${NATSU_BASELINE:-}"
SERVERS="${SERVERS:-natsu ${NATSU_BASELINE:+natsu-base }nats-server}"
RUN_TIMEOUT="${RUN_TIMEOUT:-180}"

# name -> natsgo-bench arguments
args() {
    case "$1" in
    pubsub16) echo "pubsub --msgs $MSGS_16 --size 16" ;;
    pubsub1k) echo "pubsub --msgs $MSGS_1K --size 1KiB" ;;
    pubsub64k) echo "pubsub --msgs $MSGS_64K --size 64KiB" ;;
    pubsub1m) echo "pubsub --msgs $MSGS_1M --size 1MiB" ;;
    fanout16) echo "fanout --subs 4 --msgs $MSGS_16 --size 16" ;;
    fanout64k) echo "fanout --subs 4 --msgs $MSGS_64K --size 64KiB" ;;
    fanout1m) echo "fanout --subs 4 --msgs $MSGS_1M --size 1MiB" ;;
    reqrep16) echo "reqrep --msgs $MSGS_REQ --size 16" ;;
    *)
        echo "unknown workload $1" >&2
        exit 2
        ;;
    esac
}
for w in $WORKLOADS; do args "$w" >/dev/null; done
case "$TRANSPORT" in
nats | tls | ws) ;;
*) echo "unknown TRANSPORT $TRANSPORT (nats, tls, ws)" >&2; exit 2 ;;
esac

for s in $SERVERS; do
    case "$s" in
    natsu) [ -x "$NATSU" ] || { echo "$NATSU is missing: cargo build --release --bin natsu" >&2; exit 1; } ;;
    natsu-base) [ -x "$NATSU_BASELINE" ] || { echo "NATSU_BASELINE=$NATSU_BASELINE is not an executable" >&2; exit 1; } ;;
    nats-server) command -v "$NATS_SERVER" >/dev/null || { echo "$NATS_SERVER is missing (Debian: apt-get install nats-server)" >&2; exit 1; } ;;
    *) echo "unknown server $s (natsu, natsu-base, nats-server)" >&2; exit 2 ;;
    esac
done
if [ ! -x "$NATSGO_BENCH" ] || [ bench/natsgo/src/natsgo-bench/main.go -nt "$NATSGO_BENCH" ]; then
    bench/natsgo/build.sh "$NATSGO_BENCH"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
TLS_ARGS=()
if [ "$TRANSPORT" = tls ]; then
    # A throwaway CA and a server certificate for 127.0.0.1 (ECDSA P-256, as a site would use).
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=bench-ca -keyout "$OUT/ca.key" -out "$OUT/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
        -keyout "$OUT/server.key" -out "$OUT/server.csr" 2>/dev/null
    openssl x509 -req -in "$OUT/server.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" \
        -CAcreateserial -days 2 -extfile <(echo "subjectAltName=IP:127.0.0.1") \
        -out "$OUT/server.pem" 2>/dev/null
    TLS_ARGS=(--tls-ca "$OUT/ca.pem")
fi

# Two ports free on 127.0.0.1 now (held together, so they differ). They are let go before
# they are printed: a server started as soon as the line is read must find them free.
free_ports() {
    python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in socks]
for s in socks:
    s.close()
print(*ports, flush=True)'
}

SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# Start server $1 with a config of its own in $2; sets SERVER_PID and URL once the port the
# load goes to accepts connections (10 s at most).
start_server() {
    local kind="$1" dir="$2" client_port ws_port port
    read -r client_port ws_port < <(free_ports)
    echo "listen: 127.0.0.1:$client_port" >"$dir/server.conf"
    case "$TRANSPORT" in
    nats) port=$client_port URL="nats://127.0.0.1:$port" ;;
    tls)
        port=$client_port URL="tls://127.0.0.1:$port"
        printf 'tls {\n  cert_file: "%s"\n  key_file: "%s"\n}\n' \
            "$OUT/server.pem" "$OUT/server.key" >>"$dir/server.conf"
        ;;
    ws)
        port=$ws_port URL="ws://127.0.0.1:$port"
        printf 'websocket {\n  listen: "127.0.0.1:%s"\n  no_tls: true\n}\n' "$port" >>"$dir/server.conf"
        ;;
    esac
    case "$kind" in
    # shellcheck disable=SC2086
    natsu) "$NATSU" -c "$dir/server.conf" $NATSU_ARGS 2>"$dir/server.log" & ;;
    # shellcheck disable=SC2086
    natsu-base) "$NATSU_BASELINE" -c "$dir/server.conf" $NATSU_ARGS 2>"$dir/server.log" & ;;
    nats-server) "$NATS_SERVER" -c "$dir/server.conf" 2>"$dir/server.log" & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            break
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "$kind did not listen on 127.0.0.1:$port; its log:" >&2
    tail -5 "$dir/server.log" >&2
    stop_server
    return 1
}

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "== machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== $("$NATS_SERVER" --version 2>&1 | head -1); $("$NATSU" --version 2>&1 | head -1); natsgo-bench on nats.go $(sed -n 's/^\s*Version\s*=\s*"\(.*\)"/\1/p' /usr/share/gocode/src/github.com/nats-io/nats.go/nats.go 2>/dev/null)"
echo "== load average before: $(load)"
if awk -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN { exit !(l > 1.5) }'; then
    echo "== WARNING: load average above 1.5: something else is running, the figures will be noise"
fi
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "transport: $TRANSPORT; rounds: $ROUNDS; workloads: $WORKLOADS; MSGS_16=$MSGS_16 MSGS_1K=$MSGS_1K MSGS_64K=$MSGS_64K MSGS_1M=$MSGS_1M MSGS_REQ=$MSGS_REQ; NATSU_ARGS=$NATSU_ARGS"
    echo "load before: $(load)"
} >"$OUT/meta.txt"

for round in $(seq "$ROUNDS"); do
    for w in $WORKLOADS; do
        servers="$SERVERS"
        # Alternate who goes first, so drift in the machine's speed hits both alike.
        if [ $((round % 2)) -eq 0 ]; then servers="$(echo "$servers" | tr ' ' '\n' | tac | tr '\n' ' ')"; fi
        for s in $servers; do
            dir="$OUT/$w/$s-$round"
            mkdir -p "$dir"
            if ! start_server "$s" "$dir"; then
                echo "== round $round/$ROUNDS $w on $s: the server did not start (see $dir/server.log)"
                continue
            fi
            rc=0
            # shellcheck disable=SC2046
            timeout --kill-after=5 "$RUN_TIMEOUT" "$NATSGO_BENCH" $(args "$w") --url "$URL" "${TLS_ARGS[@]}" \
                --server-pid "$SERVER_PID" --timeout "$((RUN_TIMEOUT - 20))s" \
                >"$dir/result.json" 2>"$dir/stderr.txt" || rc=$?
            stop_server
            python3 - "$w" "$s" "$round" "$ROUNDS" "$rc" "$dir/result.json" <<'EOF'
import json, sys
w, s, rnd, rounds, rc, path = sys.argv[1:]
try:
    r = json.loads(open(path).read().strip().splitlines()[-1])
except Exception:
    print(f"== round {rnd}/{rounds} {w} on {s}: no result (exit {rc}); see {path[:-11]}stderr.txt")
    sys.exit(0)
cpu = r.get("server_cpu_us_per_msg")
cpu = f", server CPU {cpu:.2f} µs/msg" if cpu is not None else ""
if r["workload"] == "reqrep":
    fig = f"{r.get('req_per_s', 0):,.0f} req/s, p50 {r.get('p50_us', 0):.0f} µs, p99 {r.get('p99_us', 0):.0f} µs"
else:
    fig = f"{r.get('msgs_per_s', 0):,.0f} msgs/s, {r.get('mb_per_s', 0):.1f} MB/s"
bad = "" if r.get("complete") else f"  INCOMPLETE (lost {r.get('lost')}, timed out {r.get('timed_out')}, errors {r.get('errors')})"
print(f"== round {rnd}/{rounds} {w} on {s}: {fig}{cpu}{bad}")
EOF
        done
    done
done

echo "load after: $(load)" >>"$OUT/meta.txt"
echo "== load average after: $(load)"

counts=""
for w in $WORKLOADS; do counts="${counts:+$counts, }$w: $(args "$w" | sed 's/ --/ /g')"; done
COUNTS="$counts" \
    python3 - "$OUT" "$WORKLOADS" "$SERVERS" "$TRANSPORT" <<'EOF' | tee "$OUT/table.md"
import json, os, statistics, sys
out, workloads, servers, transport = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
titles = {"pubsub16": "pub/sub 16 B", "pubsub1k": "pub/sub 1 KiB", "pubsub64k": "pub/sub 64 KiB",
          "pubsub1m": "pub/sub 1 MiB", "fanout16": "fan-out ×4 16 B", "fanout64k": "fan-out ×4 64 KiB",
          "fanout1m": "fan-out ×4 1 MiB", "reqrep16": "request/reply 16 B"}
over = {"nats": "plain TCP (nats://)", "tls": "TLS (tls://)", "ws": "WebSocket (ws://, no TLS)"}[transport]

def runs(w, s):
    d = os.path.join(out, w)
    found = []
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if not name.startswith(s + "-") or not name[len(s) + 1:].isdigit():
            continue
        try:
            with open(os.path.join(d, name, "result.json")) as f:
                found.append((int(name[len(s) + 1:]), json.loads(f.read().strip().splitlines()[-1])))
        except Exception:
            found.append((int(name[len(s) + 1:]), None))
    return [r for _, r in sorted(found, key=lambda x: x[0])]

def med(rs, key):
    vals = [r[key] for r in rs if r and r.get("complete") and r.get(key) is not None]
    return statistics.median(vals) if vals else None

def rate(v):
    return f"{v / 1e3:,.0f} k" if v >= 100_000 else f"{v:,.0f}"

def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"

rows, ratio_rows, base_rows, per_round = [], [], [], []
med_of = {}
for w in workloads:
    for s in servers:
        rs = runs(w, s)
        ok = sum(1 for r in rs if r and r.get("complete"))
        if w.startswith("reqrep"):
            m = {k: med(rs, k) for k in ("req_per_s", "p50_us", "p99_us", "p99_9_us", "server_cpu_us_per_msg")}
            rows.append(f"| {titles[w]} | {s} | {fmt(m['req_per_s'])} req/s | p50 {fmt(m['p50_us'])} / p99 {fmt(m['p99_us'])} / p99.9 {fmt(m['p99_9_us'])} µs | {fmt(m['server_cpu_us_per_msg'], 2)} | {ok}/{len(rs)} |")
            med_of[(w, s)] = (m["req_per_s"], m["server_cpu_us_per_msg"])
            per_round.append(f"{titles[w]}, {s}: " + ", ".join(
                f"{r['req_per_s']:,.0f} (p99 {r.get('p99_us', 0):,.0f})" if r and r.get("complete") else "failed" for r in rs))
        else:
            m = {k: med(rs, k) for k in ("msgs_per_s", "mb_per_s", "server_cpu_us_per_msg")}
            rows.append(f"| {titles[w]} | {s} | {fmt(m['msgs_per_s'])} msgs/s | {fmt(m['mb_per_s'], 1)} MB/s | {fmt(m['server_cpu_us_per_msg'], 2)} | {ok}/{len(rs)} |")
            med_of[(w, s)] = (m["msgs_per_s"], m["server_cpu_us_per_msg"])
            per_round.append(f"{titles[w]}, {s}: " + ", ".join(
                rate(r['msgs_per_s']) if r and r.get("complete") else "failed" for r in rs))
    if "natsu" in servers and "nats-server" in servers:
        (a_rate, a_cpu), (b_rate, b_cpu) = med_of[(w, "natsu")], med_of[(w, "nats-server")]
        r_rate = f"{a_rate / b_rate:.2f}×" if a_rate and b_rate else "–"
        r_cpu = f"{a_cpu / b_cpu:.2f}×" if a_cpu and b_cpu else "–"
        ratio_rows.append(f"| {titles[w]} | {r_rate} | {r_cpu} |")
    if "natsu" in servers and "natsu-base" in servers:
        (a_rate, a_cpu), (b_rate, b_cpu) = med_of[(w, "natsu")], med_of[(w, "natsu-base")]
        r_rate = f"{a_rate / b_rate:.2f}×" if a_rate and b_rate else "–"
        r_cpu = f"{a_cpu / b_cpu:.2f}×" if a_cpu and b_cpu else "–"
        base_rows.append(f"| {titles[w]} | {r_rate} | {r_cpu} |")

n = max((len(runs(w, s)) for w in workloads for s in servers), default=0)
counts = os.environ.get("COUNTS", "")
print(f"\nMedians of {n} round(s) over {over}, load from natsgo-bench (nats.go) with the"
      f" publisher and each subscriber on a connection of its own ({counts}). Fan-out's rate"
      " counts every delivery; server CPU is utime+stime over the measured phase, per published message"
      " (per request for request/reply):\n")
print("| workload | server | rate | throughput / latency | server CPU µs/msg | complete runs |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
print("\n".join(rows))
if ratio_rows:
    print("\n| workload | natsu ÷ nats-server: rate | natsu ÷ nats-server: CPU per message |")
    print("| --- | ---: | ---: |")
    print("\n".join(ratio_rows))
if base_rows:
    print("\n| workload | natsu ÷ natsu-base (NATSU_BASELINE): rate | CPU per message |")
    print("| --- | ---: | ---: |")
    print("\n".join(base_rows))
print("\nEach round (rate): " + "; ".join(per_round) + ".")
# Exit 1 when any run failed or lost something, so that a smoke test can be scripted.
if any(not (r and r.get("complete")) for w in workloads for s in servers for r in runs(w, s)):
    sys.exit(1)
EOF
echo "runs and table in $OUT"
