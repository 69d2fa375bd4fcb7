#!/usr/bin/env bash
# The HTTP gateway measured with wrk: the same service reached directly, through
# natsu-gateway and natsu, and through nats-proxy's Go gateway and nats-server.
#
#   bench/gateway.sh
#   NATS_PROXY_GATEWAY=/path/to/nats-proxy-gateway ROUNDS=3 bench/gateway.sh
#
# Rows (each started fresh for each round; the service is natsu-bench-service, which
# answers GET /hello with {"hello":"world"} and POST /echo with its 4 KiB body):
#   direct     natsu-bench-service --direct (hyper on glommio, no NATS)
#   natsu      natsu-gateway -> natsu -> natsu-bench-service --nats
#   nats-proxy nats-proxy's Go gateway -> nats-server -> natsu-bench-service --nats
#              (only when NATS_PROXY_GATEWAY names its binary: a Go program that calls
#              natsproxy.NewNatsProxy on a nats.Connect to --server and serves it with
#              http.ListenAndServe on --listen. This script does not build it.)
# Each row runs `wrk -t2 -c16 -d10s --latency` on GET /hello, then on POST /echo
# (bench/wrk/post4k.lua), and the script prints requests/s, p50 and p99 per row, medians
# over the rounds, and the ratios the gateway issue sets as targets.
#
# Cores, on the 2-core machines this runs on: wrk's two threads need the cores as much as
# the servers do, so every natsu process runs one executor (--cores 1). A second executor
# per process would only add cross-core hops between processes that already share two
# cores (bench/RESULTS.md shows the same for the broker). The direct row's service gets
# the same one executor as the service behind the gateways, so the rows differ only in the
# path a request takes. nats-server and the Go gateway keep Go's default (GOMAXPROCS =
# every core), as they would be deployed. The counts can be changed with DIRECT_CORES,
# GATEWAY_CORES, BROKER_CORES and SERVICE_CORES.
#
# Needs the release binaries (cargo build --release --bin natsu --bin natsu-gateway
# --bin natsu-bench-service), wrk, curl and nats-server (/usr/sbin). Environment: ROUNDS
# (default 1), DURATION (wrk's -d, default 10s), OUT (default bench/runs/gateway-<time>:
# logs and wrk's output), BIN (the directory of the three binaries, default target/release;
# a copy keeps a build started meanwhile from changing them between rows). Every wait is
# bounded; the processes the script starts are stopped by PID when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

ROUNDS="${ROUNDS:-1}"
DURATION="${DURATION:-10s}"
OUT="${OUT:-bench/runs/gateway-$(date +%Y%m%d-%H%M%S)}"
DIRECT_CORES="${DIRECT_CORES:-1}"
GATEWAY_CORES="${GATEWAY_CORES:-1}"
BROKER_CORES="${BROKER_CORES:-1}"
SERVICE_CORES="${SERVICE_CORES:-1}"
BIN="${BIN:-target/release}"
NATSU="$BIN/natsu"
GATEWAY="$BIN/natsu-gateway"
SERVICE="$BIN/natsu-bench-service"
NATS_SERVER="${NATS_SERVER:-$(command -v nats-server || true)}"
POST_LUA=bench/wrk/post4k.lua

for bin in "$NATSU" "$GATEWAY" "$SERVICE"; do
    if [ ! -x "$bin" ]; then
        echo "$bin is missing: cargo build --release --bin natsu --bin natsu-gateway --bin natsu-bench-service" >&2
        exit 1
    fi
done
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
ROWS="direct natsu"
if [ -n "${NATS_PROXY_GATEWAY:-}" ]; then
    [ -x "$NATS_PROXY_GATEWAY" ] || { echo "NATS_PROXY_GATEWAY=$NATS_PROXY_GATEWAY is not executable" >&2; exit 1; }
    [ -x "$NATS_SERVER" ] || { echo "nats-server is missing (NATS_SERVER)" >&2; exit 1; }
    ROWS="$ROWS nats-proxy"
else
    echo "NATS_PROXY_GATEWAY is not set: the nats-proxy row is skipped"
fi
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: >"$RESULTS"

# Every process this script started, stopped on exit whatever happens.
PIDS=""
stop_all() {
    local pid
    for pid in $PIDS; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $PIDS; do
        # Bounded: a process that ignores TERM for 5 s gets KILL.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=""
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# A port nobody listens on now (the kernel's pick, released at once).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait (10 s at most) until file $2 has $3 lines matching pattern $1.
wait_log() {
    local pattern="$1" log="$2" count="${3:-1}"
    for _ in $(seq 200); do
        local seen
        seen=$(grep -c -- "$pattern" "$log" 2>/dev/null || true)
        if [ "${seen:-0}" -ge "$count" ]; then
            return
        fi
        sleep 0.05
    done
    echo "no '$pattern' ($count times) in $log within 10 s; its tail:" >&2
    tail -20 "$log" >&2
    exit 1
}

# The port a broker's log names ("Listening for client connections on 127.0.0.1:4222").
logged_port() {
    sed -n 's/.*Listening for client connections on .*:\([0-9]*\).*/\1/p' "$1" | head -1
}

# Start a broker (natsu or nats-server) on a free port of its choosing; sets BROKER_PORT.
start_broker() {
    local kind="$1" log="$2"
    case "$kind" in
    natsu) "$NATSU" -a 127.0.0.1 -p -1 --cores "$BROKER_CORES" 2>"$log" & ;;
    nats-server) "$NATS_SERVER" -a 127.0.0.1 -p -1 2>"$log" & ;;
    esac
    PIDS="$PIDS $!"
    wait_log "Listening for client connections" "$log"
    BROKER_PORT=$(logged_port "$log")
}

# The service behind a gateway: one "Serving" line per executor once its routes are
# subscribed on the broker.
start_nats_service() {
    "$SERVICE" --nats "nats://127.0.0.1:$BROKER_PORT" --cores "$SERVICE_CORES" 2>"$1" &
    PIDS="$PIDS $!"
    wait_log "Serving GET /hello" "$1" "$SERVICE_CORES"
}

# Wait (10 s at most) until both endpoints answer right through $1 (http://host:port):
# the gateways connect to NATS after they listen, and a row must not start on errors.
check_endpoints() {
    local base="$1" hello echo_size
    for _ in $(seq 100); do
        hello=$(curl -s --max-time 2 "$base/hello" || true)
        if [ "$hello" = '{"hello":"world"}' ]; then
            break
        fi
        sleep 0.1
    done
    if [ "$hello" != '{"hello":"world"}' ]; then
        echo "GET $base/hello answered '$hello'" >&2
        exit 1
    fi
    echo_size=$(head -c 4096 /dev/zero | curl -s --max-time 2 -o /dev/null -w '%{http_code} %{size_download}' \
        -H 'Content-Type: application/octet-stream' --data-binary @- "$base/echo" || true)
    if [ "$echo_size" != "200 4096" ]; then
        echo "POST $base/echo with 4096 bytes answered (status, size) '$echo_size'" >&2
        exit 1
    fi
}

# Start row $1's processes for round $2; sets BASE (the URL wrk loads).
start_row() {
    local row="$1" dir="$2" port
    port=$(free_port)
    case "$row" in
    direct)
        "$SERVICE" --direct "127.0.0.1:$port" --cores "$DIRECT_CORES" 2>"$dir/service.log" &
        PIDS="$PIDS $!"
        wait_log "Listening for HTTP" "$dir/service.log"
        ;;
    natsu)
        start_broker natsu "$dir/broker.log"
        start_nats_service "$dir/service.log"
        "$GATEWAY" --listen "127.0.0.1:$port" --server "nats://127.0.0.1:$BROKER_PORT" --cores "$GATEWAY_CORES" \
            2>"$dir/gateway.log" &
        PIDS="$PIDS $!"
        wait_log "Listening for HTTP" "$dir/gateway.log"
        ;;
    nats-proxy)
        start_broker nats-server "$dir/broker.log"
        start_nats_service "$dir/service.log"
        "$NATS_PROXY_GATEWAY" --listen "127.0.0.1:$port" --server "nats://127.0.0.1:$BROKER_PORT" \
            >"$dir/gateway.log" 2>&1 &
        PIDS="$PIDS $!"
        ;;
    esac
    BASE="http://127.0.0.1:$port"
    check_endpoints "$BASE"
}

# wrk's latency in µs ("215.09us", "1.20ms", "1.01s").
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /m$/) print n * 60e6;
        else if (v ~ /s$/) print n * 1e6; else print n }'
}

# Run wrk for row $1, request $2 (hello|echo), round $3; append a line to RESULTS.
measure() {
    local row="$1" req="$2" round="$3" log="$4" rps p50 p99 errors non2xx
    local args=(-t2 -c16 -d"$DURATION" --latency --timeout 5s)
    if [ "$req" = echo ]; then
        args+=(-s "$POST_LUA")
    fi
    # wrk stops itself after DURATION; the bound is for a wrk that hangs.
    timeout 60 wrk "${args[@]}" "$BASE/$req" >"$log" 2>&1 || { echo "wrk failed, see $log" >&2; cat "$log" >&2; exit 1; }
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$log")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$log")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$log")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$log")
    errors=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$log")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$req" "$round" "$rps" "$p50" "$p99" "$((${non2xx:-0} + ${errors:-0}))" >>"$RESULTS"
    printf '  %-10s %-5s round %s: %10.0f req/s  p50 %8.0f µs  p99 %8.0f µs  errors %s\n' \
        "$row" "$req" "$round" "$rps" "$p50" "$p99" "$((${non2xx:-0} + ${errors:-0}))"
}

echo "machine: $(nproc) cores, $(uname -r), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
echo "rows: $ROWS; $ROUNDS round(s) of wrk -t2 -c16 -d$DURATION --latency; output in $OUT"
echo "cores: direct $DIRECT_CORES, natsu-gateway $GATEWAY_CORES, natsu $BROKER_CORES, service $SERVICE_CORES"
for round in $(seq "$ROUNDS"); do
    for row in $ROWS; do
        dir="$OUT/round$round-$row"
        mkdir -p "$dir"
        start_row "$row" "$dir"
        measure "$row" hello "$round" "$dir/wrk-hello.txt"
        measure "$row" echo "$round" "$dir/wrk-echo.txt"
        stop_all
    done
done

# Medians over the rounds and the issue's targets.
python3 - "$RESULTS" <<'EOF'
import statistics, sys

runs = {}
for line in open(sys.argv[1]):
    row, req, _round, rps, p50, p99, errors = line.split("\t")
    runs.setdefault((row, req), []).append((float(rps), float(p50), float(p99), int(errors)))

def med(row, req, i):
    return statistics.median(r[i] for r in runs[(row, req)]) if (row, req) in runs else None

names = {"hello": "GET /hello", "echo": "POST /echo 4 KiB"}
print()
print("| row | request | requests/s | p50 µs | p99 µs | errors |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for row in ("direct", "natsu", "nats-proxy"):
    for req in ("hello", "echo"):
        if (row, req) in runs:
            errors = sum(r[3] for r in runs[(row, req)])
            print(f"| {row} | {names[req]} | {med(row, req, 0):,.0f} | {med(row, req, 1):,.0f} | {med(row, req, 2):,.0f} | {errors} |")

def target(ratio, op, goal):
    met = ratio <= goal if op == "<=" else ratio >= goal
    return f"{op} {goal:g}×: {'met' if met else 'NOT met'}"

print()
print("| request | figure | natsu-gateway | other | ratio | target |")
print("| --- | --- | ---: | ---: | ---: | --- |")
for req in ("hello", "echo"):
    if ("natsu", req) not in runs:
        continue
    rps, p99 = med("natsu", req, 0), med("natsu", req, 2)
    d_rps, d_p99 = med("direct", req, 0), med("direct", req, 2)
    print(f"| {names[req]} | requests/s vs direct | {rps:,.0f} | {d_rps:,.0f} | {rps / d_rps:.2f}× | {target(rps / d_rps, '>=', 0.5)} |")
    print(f"| {names[req]} | p99 vs direct | {p99:,.0f} | {d_p99:,.0f} | {p99 / d_p99:.2f}× | {target(p99 / d_p99, '<=', 2)} |")
    if ("nats-proxy", req) in runs:
        n_rps, n_p99 = med("nats-proxy", req, 0), med("nats-proxy", req, 2)
        print(f"| {names[req]} | requests/s vs nats-proxy | {rps:,.0f} | {n_rps:,.0f} | {rps / n_rps:.2f}× | {target(rps / n_rps, '>=', 2)} |")
        print(f"| {names[req]} | p99 vs nats-proxy | {p99:,.0f} | {n_p99:,.0f} | {p99 / n_p99:.2f}× | {target(p99 / n_p99, '<=', 0.5)} |")
EOF
