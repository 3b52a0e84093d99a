#!/usr/bin/env bash
# Why memcached 1.6.18's pipelined gets are slow: for each memcached binary
# given, the throughput of set, get and mixed:0.9 at 32 connections x
# pipeline 16 (the comparison report's settings: 16-byte keys, 100-byte
# values, 10,000 keys, prefill, 0.5 s warmup), RUNS interleaved rounds of
# DURATION seconds, medians; then, if strace is installed, the `sendmsg`
# calls memcached makes per reply at 1 connection x pipeline 16.
#
#   bash benches/scripts/memcached_pipelined_gets.sh /usr/bin/memcached /path/to/memcached-1.6.45
#
# Needs a release build (cargo build --release -p mcstore-bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/common.sh
RUNS=${RUNS:-3}
DURATION=${DURATION:-3}
BIN=${BIN:-target/release/mcstore-bench}
[ $# -gt 0 ] || { echo "usage: $0 MEMCACHED_BIN [MEMCACHED_BIN...]" >&2; exit 2; }

SERVER=
stop_server() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
        SERVER=
    fi
}
trap stop_server EXIT

# start_server BIN: starts memcached on a free loopback port, sets PORT.
start_server() {
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$1" -u nobody -l 127.0.0.1 -p "$PORT" -U 0 -t 2 -m 1024 &
    SERVER=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return
        sleep 0.1
    done
    echo "memcached $1 did not start" >&2
    exit 1
}

# bench WORKLOAD CONNECTIONS DURATION: prints "ops/s p99_us".
bench() {
    "$BIN" --servers "127.0.0.1:$PORT" --workload "$1" --connections "$2" --pipeline 16 \
        --keys 10000 --key-size 16 --value-size 100 --prefill --warmup 0.5 \
        --duration "$3" --quiet --json | tail -1 |
        python3 -c 'import json, sys; r = json.loads(sys.stdin.read()); print(int(r["ops_per_sec"]), int(r["p99_us"]))'
}


declare -A results
for run in $(seq "$RUNS"); do
    for binary in "$@"; do
        start_server "$binary"
        for workload in set get mixed:0.9; do
            result=$(bench "$workload" 32 "$DURATION")
            echo "run $run: $("$binary" -V) $workload: ${result% *} ops/s, p99 ${result#* } us"
            results["$binary $workload"]+="${result% *} "
        done
        stop_server
    done
done
echo
echo "medians of $RUNS runs (ops/s, 32 connections x pipeline 16):"
for binary in "$@"; do
    line="$("$binary" -V):"
    for workload in set get mixed:0.9; do
        # shellcheck disable=SC2086
        line+=" $workload $(median ${results["$binary $workload"]})"
    done
    echo "$line"
done

if command -v strace >/dev/null; then
    echo
    echo "sendmsg calls per reply (1 connection x pipeline 16, 2 s under strace):"
    for binary in "$@"; do
        start_server "$binary"
        for workload in set get; do
            strace -f -c -e trace=sendmsg,read -o "/tmp/memcached-strace.$$" -p "$SERVER" 2>/dev/null &
            tracer=$!
            sleep 0.5
            ops=$("$BIN" --servers "127.0.0.1:$PORT" --workload "$workload" --connections 1 \
                --pipeline 16 --keys 10000 --key-size 16 --value-size 100 --duration 2 \
                --quiet --json | tail -1 | python3 -c 'import json, sys; print(json.loads(sys.stdin.read())["ops"])')
            kill -INT "$tracer"
            wait "$tracer" 2>/dev/null || true
            sends=$(awk '$NF == "sendmsg" {print $4}' "/tmp/memcached-strace.$$")
            rm -f "/tmp/memcached-strace.$$"
            echo "$("$binary" -V) $workload: $ops replies, ${sends:-0} sendmsg calls"
        done
        stop_server
    done
fi
