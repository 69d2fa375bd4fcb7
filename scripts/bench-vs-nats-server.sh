#!/usr/bin/env bash
# natsu measured against the reference nats-server, side by side on this machine.
#
#   scripts/bench-vs-nats-server.sh            # 5 rounds of every workload (about 12 minutes)
#   ROUNDS=7 WORKLOADS="pubsub16 reqrep16" scripts/bench-vs-nats-server.sh
#
# Builds release, installs nats-server if missing, measures loopback TCP bandwidth, then runs
# every workload against natsu and nats-server in alternating rounds (A B, B A, A B ...: these
# machines are noisy, one run means little), each against a freshly started server whose CPU
# seconds natsu-bench reads from /proc. Prints medians and ratios (bench/summarize.py), and
# writes the runs, the table (table.md) and a latency plot (latency.svg) under OUT.
#
# The route workloads (route16, route1k) run on a pair of servers of one kind, A and B, routed
# to each other: publisher on A, subscriber on B, server CPU summed over both. Each pair starts
# fresh; the run waits until both logs show the route, and natsu-bench (--sub-url) probes until
# the subscriber's interest has crossed it. Each server's per-thread CPU goes to threads-*.txt.
#
# Environment: ROUNDS (default 5), WORKLOADS (default all), OUT (default bench/runs/<time>),
# SCALE (multiplies message counts; default 1), NATSU_BASELINE (another natsu binary, e.g. an
# older commit's, measured in the same rounds as "natsu-base": an A/B of a change).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin:$HOME/.cargo/bin"

ROUNDS="${ROUNDS:-5}"
SCALE="${SCALE:-1}"
OUT="${OUT:-bench/runs/$(date +%Y%m%d-%H%M%S)}"
ALL="pub16 pub128 pubsub16 fanout16 queue16 reqrep16 reqrep16spin pubsub1k pubsub64k pubsub1m fanout64k fanout1m tls1k route16 route1k"
WORKLOADS="${WORKLOADS:-$ALL}"

if ! command -v nats-server >/dev/null; then
    echo "installing the reference nats-server (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server
fi
ulimit -l unlimited 2>/dev/null || ulimit -l "$(ulimit -H -l)" 2>/dev/null || true
cargo build --release --bin natsu --bin natsu-bench
BENCH=target/release/natsu-bench
NATSU=target/release/natsu
mkdir -p "$OUT"
# A throwaway CA and server certificate for 127.0.0.1, for the TLS workloads.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$OUT/ca.key" -out "$OUT/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
    -keyout "$OUT/server.key" -out "$OUT/server.csr" 2>/dev/null
openssl x509 -req -in "$OUT/server.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" -CAcreateserial \
    -days 2 -extfile <(echo "subjectAltName=IP:127.0.0.1") -out "$OUT/server.pem" 2>/dev/null

n() { echo $(($1 * SCALE)); }
# name -> natsu-bench arguments
args() {
    case "$1" in
    pub16) echo "--pub 1 --sub 0 --msgs $(n 4000000) --size 16B" ;;
    pub128) echo "--pub 1 --sub 0 --msgs $(n 3000000) --size 128B" ;;
    pubsub16) echo "--pub 1 --sub 1 --msgs $(n 3000000) --size 16B" ;;
    fanout16) echo "--pub 1 --sub 4 --msgs $(n 1000000) --size 16B" ;;
    queue16) echo "--pub 1 --sub 4 --queue --msgs $(n 3000000) --size 16B" ;;
    reqrep16) echo "--pub 1 --sub 1 --request --msgs $(n 20000) --size 16B" ;;
    # The same with the generator's executor polling 200 µs before it sleeps, so that its
    # own wake-ups (tens of µs each on a VM) weigh less in what is measured.
    reqrep16spin) echo "--pub 1 --sub 1 --request --msgs $(n 20000) --size 16B --spin 200us" ;;
    pubsub1k) echo "--pub 1 --sub 1 --msgs $(n 1000000) --size 1KiB" ;;
    pubsub64k) echo "--pub 1 --sub 1 --msgs $(n 40000) --size 64KiB" ;;
    pubsub1m) echo "--pub 1 --sub 1 --msgs $(n 3000) --size 1MiB" ;;
    fanout64k) echo "--pub 1 --sub 4 --msgs $(n 40000) --size 64KiB" ;;
    fanout1m) echo "--pub 1 --sub 4 --msgs $(n 3000) --size 1MiB" ;;
    # Over TLS (the server's certificate made below; the generator trusts its CA).
    tls1k) echo "--pub 1 --sub 1 --msgs $(n 1000000) --size 1KiB --tls-ca $OUT/ca.pem" ;;
    # Publisher on A, subscriber on B (see start_pair).
    route16) echo "--pub 1 --sub 1 --msgs $(n 3000000) --size 16B" ;;
    route1k) echo "--pub 1 --sub 1 --msgs $(n 1000000) --size 1KiB" ;;
    *) echo "unknown workload $1" >&2; exit 2 ;;
    esac
}

# The port a log line names ("Listening for client connections on 127.0.0.1:4222").
logged_port() {
    sed -n "s/.*Listening for $1 connections on .*:\([0-9]*\).*/\1/p" "$2" | head -1
}

# Start a server on a free port, with any further flags given; sets SERVER_PID and PORT, and
# CLUSTER_PORT when it listens for routes. SERVER_PIDS holds every server running.
SERVER_PIDS=""
start_server() {
    local kind="$1" log="$2"
    shift 2
    case "$kind" in
    natsu) "$NATSU" -a 127.0.0.1 -p -1 "$@" 2>"$log" & ;;
    natsu-1core) "$NATSU" -a 127.0.0.1 -p -1 --cores 1 "$@" 2>"$log" & ;;
    nats-server) nats-server -a 127.0.0.1 -p -1 "$@" 2>"$log" & ;;
    natsu-base) "$NATSU_BASELINE" -a 127.0.0.1 -p -1 "$@" 2>"$log" & ;;
    esac
    SERVER_PID=$!
    SERVER_PIDS="$SERVER_PIDS $SERVER_PID"
    PORT="" CLUSTER_PORT=""
    for _ in $(seq 100); do
        PORT=$(logged_port client "$log")
        CLUSTER_PORT=$(logged_port route "$log")
        if [ -n "$PORT" ] && { [ -n "$CLUSTER_PORT" ] || [[ " $* " != *" --cluster "* ]]; }; then
            return
        fi
        sleep 0.05
    done
    echo "$kind did not start; its log:" >&2
    cat "$log" >&2
    exit 1
}

# Start two servers of one kind routed to each other, B dialling A, and wait (10 s at most)
# until both logs show the route; sets PORT_A, PORT_B and PIDS (comma-separated).
start_pair() {
    local kind="$1" dir="$2"
    start_server "$kind" "$dir/server-a.log" --cluster nats://127.0.0.1:-1 --cluster_name bench
    PORT_A=$PORT PIDS=$SERVER_PID
    start_server "$kind" "$dir/server-b.log" --cluster nats://127.0.0.1:-1 --cluster_name bench \
        --routes "nats://127.0.0.1:$CLUSTER_PORT"
    PORT_B=$PORT PIDS="$PIDS,$SERVER_PID"
    for _ in $(seq 200); do
        if grep -q "Route connection created" "$dir/server-a.log" &&
            grep -q "Route connection created" "$dir/server-b.log"; then
            return
        fi
        sleep 0.05
    done
    echo "the $kind pair did not form a route in 10 s; logs in $dir" >&2
    tail -5 "$dir"/server-*.log >&2
    exit 1
}

stop_servers() {
    local pid
    for pid in $SERVER_PIDS; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=""
}
trap stop_servers EXIT

# Each thread's CPU seconds since the server started, busiest first: where a pair's CPU went.
threads_cpu() {
    local hz t
    hz=$(getconf CLK_TCK)
    for t in /proc/"$1"/task/*; do
        # comm may hold spaces: the fields after its closing parenthesis; utime, stime = 14, 15.
        sed -n 's/^[0-9]* (\(.*\)) \(.*\)/\1|\2/p' "$t/stat" |
            awk -F'|' -v hz="$hz" '{ split($2, f, " "); printf "%8.2f s  %s\n", (f[12] + f[13]) / hz, $1 }'
    done | sort -rn
}

echo "== machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== $(nats-server --version); natsu $("$NATSU" --version 2>&1 | head -1)"
"$BENCH" loopback --duration 3s | tee "$OUT/loopback.txt"

for round in $(seq "$ROUNDS"); do
    for w in $WORKLOADS; do
        servers="natsu nats-server"
        # Alternate who goes first, so drift in the machine's speed hits both alike.
        if [ $((round % 2)) -eq 0 ]; then servers="nats-server natsu"; fi
        case "$w" in fanout16 | route*) servers="$servers natsu-1core" ;; esac
        if [ -n "${NATSU_BASELINE:-}" ]; then servers="$servers natsu-base"; fi
        for s in $servers; do
            dir="$OUT/$w/$s-$round"
            mkdir -p "$dir"
            case "$w" in
            route*)
                start_pair "$s" "$dir"
                echo "== round $round/$ROUNDS $w on a $s pair"
                where=(--url "nats://127.0.0.1:$PORT_A" --sub-url "nats://127.0.0.1:$PORT_B" --server-pid "$PIDS")
                ;;
            tls*)
                start_server "$s" "$dir/server.log" --tls --tlscert "$OUT/server.pem" --tlskey "$OUT/server.key"
                echo "== round $round/$ROUNDS $w on $s"
                where=(--url "tls://127.0.0.1:$PORT" --server-pid "$SERVER_PID")
                ;;
            *)
                start_server "$s" "$dir/server.log"
                echo "== round $round/$ROUNDS $w on $s"
                where=(--url "nats://127.0.0.1:$PORT" --server-pid "$SERVER_PID")
                ;;
            esac
            # shellcheck disable=SC2046
            timeout 300 "$BENCH" run "${where[@]}" $(args "$w") --no-progress \
                --name "$s" --out "$dir" >"$dir/out.txt" 2>&1 || {
                echo "   failed: see $dir/out.txt"
                tail -3 "$dir/out.txt"
            }
            grep -E "stats:|Latency|Server CPU|LOST" "$dir/out.txt" | head -4 | sed 's/^/   /'
            if [[ "$w" == route* ]]; then
                for ab in a:"${PIDS%,*}" b:"${PIDS#*,}"; do
                    threads_cpu "${ab#*:}" >"$dir/threads-${ab%%:*}.txt"
                done
            fi
            stop_servers
        done
    done
done

python3 bench/summarize.py "$OUT" | tee "$OUT/table.md"
# The latency plots: the request/reply runs of the last round.
for w in reqrep16 reqrep16spin; do
    if [ -d "$OUT/$w" ]; then
        plot="$OUT/latency.svg"
        [ "$w" = reqrep16 ] || plot="$OUT/latency-$w.svg"
        "$BENCH" compare "$OUT/$w/natsu-$ROUNDS" "$OUT/$w/nats-server-$ROUNDS" --plot "$plot" >"$OUT/compare-$w.txt" || true
        cat "$OUT/compare-$w.txt"
    fi
done
echo "runs, table and plot in $OUT"
