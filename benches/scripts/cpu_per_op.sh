#!/usr/bin/env bash
# CPU time per operation of mcstore binaries at a fixed open-loop rate: an
# A/B measure that the noise of other processes barely moves (the server
# does the same work per request however busy the machine is).
#
#   bash benches/scripts/cpu_per_op.sh [runs=3] BINARY...
#
# For each binary and workload (set, get), interleaved, `runs` times: a fresh
# data directory, a prefill of the key space, then
# `mcstore-bench --connections 32 --rate 6000 --duration 8` while the
# server's utime+stime (/proc/PID/stat) is sampled; prints the median µs of
# CPU per operation. Needs a release build of mcstore-bench
# (`cargo build --release -p mcstore-bench`). Extra server flags: MCSTORE_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/common.sh
runs=${1:-3}
shift || true
[ "$#" -gt 0 ] || { echo "usage: $0 [runs] BINARY..." >&2; exit 2; }
bench=${MCSTORE_BENCH:-$PWD/target/release/mcstore-bench}
rate=6000
secs=8
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ticks=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }

declare -A results
for run in $(seq "$runs"); do
    n=0
    for binary in "$@"; do
        n=$((n + 1))
        for workload in set get; do
            port=$(free_port)
            rm -rf "$work/data"
            # shellcheck disable=SC2086
            "$binary" --listen 127.0.0.1:"$port" --data-dir "$work/data" ${MCSTORE_FLAGS:-} >/dev/null 2>&1 &
            pid=$!
            wait_port "$port"
            "$bench" --servers 127.0.0.1:"$port" --connections 32 --workload set --keys 50000 --prefill --duration 1 --quiet >/dev/null
            before=$(cpu_ticks "$pid")
            "$bench" --servers 127.0.0.1:"$port" --connections 32 --workload "$workload" --keys 50000 --rate "$rate" --duration "$secs" --quiet >/dev/null
            after=$(cpu_ticks "$pid")
            kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
            us=$(awk -v t=$((after - before)) -v hz="$ticks" -v ops=$((rate * secs)) 'BEGIN {printf "%.1f", t / hz * 1e6 / ops}')
            results[$n,$workload]+="$us "
            echo "run $run binary $n ($binary) $workload: $us µs CPU/op" >&2
        done
    done
done

echo "| binary | set µs CPU/op | get µs CPU/op |"
echo "| --- | --- | --- |"
n=0
for binary in "$@"; do
    n=$((n + 1))
    echo "| $binary | $(median ${results[$n,set]}) | $(median ${results[$n,get]}) |"
done
