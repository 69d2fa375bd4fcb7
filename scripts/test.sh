#!/usr/bin/env bash
# Run natsu's whole test suite: the one command for a fresh Debian machine (as root) and
# for CI (`.ci/run` calls it).
#
#   1. install what is missing: the reference nats-server (apt), nats-py, nkeys (its NKey
#      login), aiohttp (its WebSocket transport) and pytest (pip)
#   2. raise the locked-memory limit for glommio's io_uring buffers, where allowed
#   3. build everything once: cargo build --release --all-targets
#   4. cargo test --release: unit, doc and integration tests against natsu, all but the
#      cluster tests (tests/cluster*.rs)
#   5. the cluster tests against natsu, in a step of their own with a shorter bound: each
#      test starts two or three servers, and a route that never forms must not eat the
#      whole run's time
#   6. pytest tests/python: nats-py against natsu (TCP, TLS and WebSocket); then
#      tests/browser in headless Chromium (Debian's chromium from apt, playwright-core and
#      nats.ws from npm, installed within the step when missing): natsu-chat-demo through
#      natsu-gateway, and nats.ws straight to natsu's WebSocket port
#   7. the same integration tests, cluster tests and nats-py tests against the reference
#      nats-server (reuses the build, takes seconds; NATSU_TEST_REFERENCE=0 skips it)
#   8. the client library and the service router alone (--no-default-features --features
#      service): their unit tests and the client and service integration tests, against the
#      broker step 3 built; last, so that its second build of the library cannot stand in
#      the way of the steps before
#
# Every step runs even when an earlier test step failed, so one run shows all failures;
# the script exits non-zero if any step failed. A failed install or build stops at once.
#
# Environment: NATSU_TEST_REFERENCE=0 skips step 7; NATSU_TEST_THREADS sets cargo's
# --test-threads (default: nproc); NATSU_STEP_TIMEOUT bounds each test step in seconds
# (default 1800), NATSU_CLUSTER_STEP_TIMEOUT each cluster test step (default 900),
# NATSU_BROWSER_STEP_TIMEOUT the browser step, installs included (default 600); PYTHON
# picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
THREADS="${NATSU_TEST_THREADS:-$(nproc)}"
STEP_TIMEOUT="${NATSU_STEP_TIMEOUT:-1800}"
CLUSTER_STEP_TIMEOUT="${NATSU_CLUSTER_STEP_TIMEOUT:-900}"
BROWSER_STEP_TIMEOUT="${NATSU_BROWSER_STEP_TIMEOUT:-600}"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# Debian installs nats-server in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin:$HOME/.cargo/bin"

section() {
    printf '\n==== %s ====\n' "$*"
}

FAILED=()
# Run one test step under a time limit; record (not abort on) its failure.
step() {
    local name="$1"
    shift
    section "$name"
    local rc=0
    timeout --kill-after=30 "$STEP_TIMEOUT" "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "---- FAILED: $name (exit $rc)"
        FAILED+=("$name")
    fi
}

# A step bounded by CLUSTER_STEP_TIMEOUT instead (step reads STEP_TIMEOUT, shadowed here).
cluster_step() {
    local STEP_TIMEOUT="$CLUSTER_STEP_TIMEOUT"
    step "$@"
}

# The same with BROWSER_STEP_TIMEOUT.
browser_step() {
    local STEP_TIMEOUT="$BROWSER_STEP_TIMEOUT"
    step "$@"
}

# The browser tests with what they need: Debian's chromium and node (apt), playwright-core
# and nats.ws (npm ci from the lock file; it never downloads a browser), each installed only when
# missing. Installing is part of the step, so that a failed install fails this step alone
# and stays within its time bound. `timeout` runs it in a fresh bash, hence exported.
browser_test() {
    set -euo pipefail
    export DEBIAN_FRONTEND=noninteractive
    if [ ! -x /usr/bin/chromium ] || ! command -v npm >/dev/null; then
        echo "installing what is missing of chromium, nodejs and npm (apt)"
        apt-get update
        [ -x /usr/bin/chromium ] || apt-get install -y chromium
        command -v npm >/dev/null || apt-get install -y nodejs npm
    fi
    # Also when an older node_modules lacks a package the lock file now names.
    if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/nats.ws ]; then
        echo "installing playwright-core and nats.ws (npm ci in tests/browser)"
        (cd tests/browser && npm ci --no-audit --no-fund)
    fi
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null), node $(node --version)"
    cd tests/browser
    # Both run even when the first fails; the step fails if either did.
    local rc=0
    CARGO_TARGET_DIR="$TARGET_DIR" node chat.test.mjs || rc=1
    # The broker's websocket listener with the official nats.ws client (NATSU_BIN, exported
    # by the caller, names the broker).
    CARGO_TARGET_DIR="$TARGET_DIR" node natsws.test.mjs || rc=1
    return "$rc"
}
export -f browser_test

section "Dependencies"
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 1
fi
if ! command -v nats-server >/dev/null; then
    echo "installing the reference nats-server (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y nats-server
fi
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "installing pip (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y python3-pip
fi
if ! "$PYTHON" -c 'import nats, nkeys, pytest, aiohttp' >/dev/null 2>&1; then
    # aiohttp is nats-py's WebSocket transport (ws:// and wss:// URLs).
    echo "installing nats-py, nkeys, aiohttp and pytest (pip)"
    # Debian's own python refuses pip installs (PEP 668) unless told otherwise.
    "$PYTHON" -m pip install --quiet nats-py nkeys aiohttp pytest ||
        "$PYTHON" -m pip install --quiet --break-system-packages nats-py nkeys aiohttp pytest
fi
echo "cargo:       $(cargo --version)"
echo "nats-server: $(nats-server --version)"
echo "python:      $("$PYTHON" --version), nats-py $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("nats-py"))'), pytest $("$PYTHON" -c 'import pytest; print(pytest.__version__)')"

section "Locked memory (glommio)"
# glommio registers io_uring buffers in locked memory. Ask for no limit, else for the hard
# limit; if neither is allowed, go on: natsu asks glommio for a small io memory.
ulimit -l unlimited 2>/dev/null || ulimit -l "$(ulimit -H -l)" 2>/dev/null || true
echo "ulimit -l: $(ulimit -l)"

section "Build: cargo build --release --all-targets"
cargo build --release --all-targets

export NATSU_BIN="$TARGET_DIR/release/natsu"

# The integration test targets, one per tests/*.rs: the cluster ones apart, so that the
# main step can name every other target (cargo has no way to leave one out).
main_targets=()
cluster_targets=()
for f in tests/*.rs; do
    t="$(basename "$f" .rs)"
    case "$t" in
    cluster*) cluster_targets+=(--test "$t") ;;
    *) main_targets+=(--test "$t") ;;
    esac
done

step "Rust tests against natsu: cargo test --release (all but the cluster tests)" \
    cargo test --release --no-fail-fast --lib --bins "${main_targets[@]}" -- --test-threads="$THREADS"

# cargo will not mix --doc with other targets.
step "Doc tests: cargo test --release --doc" \
    cargo test --release --no-fail-fast --doc -- --test-threads="$THREADS"

if [ "${#cluster_targets[@]}" -ne 0 ]; then
    cluster_step "Cluster tests against natsu" \
        cargo test --release --no-fail-fast "${cluster_targets[@]}" -- --test-threads="$THREADS"
fi

step "nats-py tests against natsu: pytest tests/python" \
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/python

browser_step "Browser (headless Chromium): tests/browser/chat.test.mjs, tests/browser/natsws.test.mjs" \
    env TARGET_DIR="$TARGET_DIR" bash -c browser_test

if [ "${NATSU_TEST_REFERENCE:-1}" != "0" ]; then
    # The integration tests that compare natsu with the reference, run against the
    # reference itself: this keeps the tests honest. Same binaries, no rebuild.
    targets=()
    for t in protocol clients cores client_api client_encoded client_reconnect bench_cli \
        client_tls_auth server_auth server_signals real_clients_auth_tls restart info_diff \
        auth_storm isolation accounts_auth; do
        if [ -f "tests/$t.rs" ]; then
            targets+=(--test "$t")
        fi
    done
    if [ "${#targets[@]}" -ne 0 ]; then
        step "Rust integration tests against the reference nats-server" \
            env NATSU_TEST_TARGET=reference cargo test --release --no-fail-fast "${targets[@]}" \
            -- --test-threads="$THREADS"
    fi
    if [ "${#cluster_targets[@]}" -ne 0 ]; then
        # Every natsu node of a cluster test runs as nats-server here.
        cluster_step "Cluster tests against the reference nats-server" \
            env NATSU_TEST_TARGET=reference cargo test --release --no-fail-fast "${cluster_targets[@]}" \
            -- --test-threads="$THREADS"
    fi
    step "nats-py tests against the reference nats-server" \
        env NATSU_TEST_TARGET=reference "$PYTHON" -m pytest -q -p no:cacheprovider tests/python
fi

# What a program gets with `natsu = { default-features = false, features = ["service"] }`
# (the client and the router, which is what `client` gets plus prost):
# this builds the library without the broker's crates (cargo keeps it apart from the default
# build by its features), and its tests find the broker binary step 3 built.
client_targets=()
for t in client_api client_encoded client_limits client_reconnect client_tls_auth service; do
    if [ -f "tests/$t.rs" ]; then
        client_targets+=(--test "$t")
    fi
done
step "Client library and service router alone: cargo test --release --no-default-features --features service" \
    cargo test --release --no-fail-fast --no-default-features --features service --lib "${client_targets[@]}" \
    -- --test-threads="$THREADS"

section "Summary"
if [ "${#FAILED[@]}" -ne 0 ]; then
    printf 'FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
echo "all test steps passed"
