#!/usr/bin/env bash
# Build natsgo-bench (bench/natsgo/src/natsgo-bench) offline, in GOPATH mode, against
# Debian's packaged nats.go: nothing is downloaded.
#
#   bench/natsgo/build.sh                  # -> target/natsgo/natsgo-bench
#   bench/natsgo/build.sh /tmp/natsgo-bench
#
# Needs Go (Debian: golang-go, or any go >= 1.17 on PATH) and the Debian packages of
# nats.go and its imports under /usr/share/gocode (golang-github-nats-io-go-nats-dev, which
# pulls golang-github-nats-io-nkeys-dev, golang-github-nats-io-nuid-dev and
# golang-golang-x-crypto-dev). GOCODE overrides /usr/share/gocode. Exits 3 with a plain
# message naming what is missing.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$REPO/target/natsgo/natsgo-bench}"
GOCODE="${GOCODE:-/usr/share/gocode}"

missing() {
    echo "natsgo-bench cannot be built: $*" >&2
    exit 3
}

command -v go >/dev/null ||
    missing "no \`go\` on PATH (Debian: apt-get install golang-go)"
for pkg in github.com/nats-io/nats.go github.com/nats-io/nkeys github.com/nats-io/nuid golang.org/x/crypto/ed25519; do
    [ -d "$GOCODE/src/$pkg" ] ||
        missing "$GOCODE/src/$pkg is missing (Debian: apt-get install golang-github-nats-io-go-nats-dev, which brings nkeys, nuid and golang.org/x/crypto)"
done

cache="$(mktemp -d)"
trap 'rm -rf "$cache"' EXIT
mkdir -p "$(dirname "$OUT")"
# GOPATH mode: our source is the first GOPATH entry, Debian's packages the second. No module
# proxy, no checksum database, no network.
env GO111MODULE=off GOPATH="$HERE:$GOCODE" GOCACHE="$cache" GOFLAGS= GOPROXY=off GONOSUMDB= \
    GOTOOLCHAIN=local CGO_ENABLED=0 \
    go build -trimpath -o "$OUT" natsgo-bench
echo "built $OUT ($(go version | cut -d' ' -f3), nats.go $(sed -n 's/^\s*Version\s*=\s*"\(.*\)"/\1/p' "$GOCODE/src/github.com/nats-io/nats.go/nats.go"))"
