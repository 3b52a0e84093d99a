#!/usr/bin/env bash
# The project's test command: installs what the tests need, builds the
# release binary the end-to-end tests start, and runs every test.
#
#   bash tests/run.sh
#
# Needs: cargo (stable), python3 with pip, and apt-get (Debian) for memcached,
# redis-server (the comparison test also uses redis-benchmark) and nutcracker
# (twemproxy, in front of a cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

step "installing test dependencies (memcached, redis-server and nutcracker from Debian, pymemcache from PyPI)"
if ! command -v memcached >/dev/null 2>&1 || ! command -v redis-server >/dev/null 2>&1 \
    || [ ! -x /usr/sbin/nutcracker ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq memcached redis-server nutcracker >/dev/null
fi
memcached -V
redis-server --version
if ! python3 -c 'import pymemcache' >/dev/null 2>&1; then
    python3 -m pip install --quiet pymemcache
fi
python3 -c 'import pymemcache; print("pymemcache", pymemcache.__version__)'

step "building the release binary the end-to-end tests start"
cargo build --release --locked -p mcstore-server
export MCSTORE_BIN="$PWD/target/release/mcstore"

step "unit, model, and end-to-end tests"
cargo test --workspace --locked --no-fail-fast

step "loom model of the connection/commit-pipeline hand-off"
cargo test --locked -p mcstore-storage --features loom-model --lib handoff
