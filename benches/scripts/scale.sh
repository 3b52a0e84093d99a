#!/usr/bin/env bash
# Scale runs: mcstore with N items of 100 bytes (64-byte keys): set and get
# throughput at that size, resident memory, bytes on disk against the raw
# data, and the time from start to serving after a restart.
#
#   bash benches/scripts/scale.sh 100000 1000000 10000000
#
# Needs a release build: cargo build --release -p mcstore-server -p mcstore-bench
# Extra server flags (e.g. `--engine fjall`): MCSTORE_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/common.sh
bin=${MCSTORE_BIN:-$PWD/target/release/mcstore}
bench=${MCSTORE_BENCH_BIN:-$PWD/target/release/mcstore-bench}
secs=${SCALE_SECONDS:-10}
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT


# Starts mcstore on $work/data-$1 (sync mode $2); sets $pid, $port and
# $start_ms (milliseconds from exec to its "listening on" log event).
start() {
    port=$(free_port)
    # The shell truncates the log in the child, possibly after the loop below
    # first reads it: the last node's "listening on" must not count.
    rm -f "$work/log"
    local t0=$(date +%s%N)
    # shellcheck disable=SC2086
    "$bin" --listen 127.0.0.1:"$port" --data-dir "$work/data-$1" --sync "$2" ${MCSTORE_FLAGS:-} >/dev/null 2>"$work/log" &
    pid=$!
    until grep -q " listening on addr=" "$work/log" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { echo "mcstore died:"; tail "$work/log"; exit 1; }
        sleep 0.01
    done
    start_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop() { # sets $stop_ms (SIGTERM to exit)
    local t0=$(date +%s%N)
    kill -TERM "$pid"; wait "$pid" || true; pid=""
    stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
}
# The last start's engine open and log replay, from the node's log (ms).
open_ms() { { grep -o 'engine open.*took_ms=[0-9]*' "$work/log" || echo '-'; } | tail -1 | sed 's/.*took_ms=//'; }
run() { # $1 = keys, $2 = workload
    "$bench" --servers 127.0.0.1:"$port" --connections 32 --workload "$2" --keys "$1" \
        --key-size 64 --value-size 100 --duration "$secs" --quiet --json | tail -1 |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["ops_per_sec"]), int(d["p99_us"]), d["errors"])'
}
rss_mb() { awk '/VmRSS/ {printf "%d", $2/1024}' /proc/"$pid"/status; }

echo "| items | load time s | set ops/s (p99 us) | get ops/s (p99 us) | RSS MiB | disk MiB | raw MiB | disk/raw | restart to serving ms (engine open) | stop after load ms |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for n in "$@"; do
    # Load with --sync periodic (the load itself is not what is measured).
    start "$n" periodic
    t0=$(date +%s)
    "$bench" --servers 127.0.0.1:"$port" --connections 32 --pipeline 16 --workload get --keys "$n" \
        --key-size 64 --value-size 100 --prefill --duration 0.1 --quiet --json >/dev/null
    load_s=$(( $(date +%s) - t0 ))
    stop
    load_stop_ms=$stop_ms
    # Measure in the default mode, after a restart.
    start "$n" always
    restart_ms=$start_ms
    engine_ms=$(open_ms)
    read -r set_ops set_p99 set_err < <(run "$n" set)
    read -r get_ops get_p99 get_err < <(run "$n" get)
    rss=$(rss_mb)
    stop
    disk=$(du -sm "$work/data-$n" | cut -f1)
    raw=$(( n * (64 + 100) / 1048576 ))
    ratio=$(python3 -c "print(f'{$disk/max($raw,1):.2f}')")
    echo "| $n | $load_s | $set_ops ($set_p99) | $get_ops ($get_p99) | $rss | $disk | $raw | $ratio | $restart_ms ($engine_ms) | $load_stop_ms |"
    [ "$set_err$get_err" = "00" ] || echo "errors during the runs: set $set_err get $get_err" >&2
    rm -rf "$work/data-$n"
done
