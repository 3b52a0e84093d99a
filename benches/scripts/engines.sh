#!/usr/bin/env bash
# sled against fjall: mcstore-bench (32 connections, 64-byte keys, 100-byte
# values, 100,000 keys prefilled) against memcached and mcstore on each
# engine, in each of --sync always and periodic, interleaved, medians of N
# runs, ops/s and p99 with the ratio to memcached measured in the same run.
#
#   bash benches/scripts/engines.sh [runs=3] [seconds=5]
#
# Needs memcached and a release build
# (cargo build --release -p mcstore-server -p mcstore-bench).
# Extra server flags for every mcstore: MCSTORE_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/common.sh
runs=${1:-3}
secs=${2:-5}
bin=${MCSTORE_BIN:-$PWD/target/release/mcstore}
bench=${MCSTORE_BENCH_BIN:-$PWD/target/release/mcstore-bench}
keys=100000
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

load() { # $1 = port, then mcstore-bench flags; prints "ops/s p99_us errors"
    local port=$1; shift
    "$bench" --servers 127.0.0.1:"$port" --connections 32 --keys "$keys" --key-size 64 \
        --value-size 100 --quiet --json "$@" | tail -1 |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["ops_per_sec"]), int(d["p99_us"]), d["errors"])'
}

targets=(memcached sled-always fjall-always sled-periodic fjall-periodic)
declare -A ports
for target in "${targets[@]}"; do
    ports[$target]=$(free_port)
    if [ "$target" = memcached ]; then
        memcached -u nobody -l 127.0.0.1 -p "${ports[$target]}" -U 0 -t 2 -m 1024 & pids+=($!)
    else
        # shellcheck disable=SC2086
        "$bin" --listen 127.0.0.1:"${ports[$target]}" --data-dir "$work/data-$target" \
            --engine "${target%-*}" --sync "${target#*-}" ${MCSTORE_FLAGS:-} \
            >/dev/null 2>"$work/log-$target" & pids+=($!)
    fi
    wait_port "${ports[$target]}"
    load "${ports[$target]}" --workload get --prefill --duration 0.1 >/dev/null
done

declare -A ops p99
for run in $(seq "$runs"); do
    for workload in set get mixed:0.9; do
        for target in "${targets[@]}"; do
            read -r o p e < <(load "${ports[$target]}" --workload "$workload" --duration "$secs")
            ops[$workload,$target]+="$o "
            p99[$workload,$target]+="$p "
            echo "run $run $workload $target: $o ops/s p99 $p us errors $e (load $(cut -d' ' -f1 /proc/loadavg))" >&2
        done
    done
done

printf '| workload |'
for target in "${targets[@]}"; do printf ' %s ops/s (p99 µs) |' "$target"; done
printf '\n| --- |'
for _ in "${targets[@]}"; do printf ' --- |'; done
printf '\n'
for workload in set get mixed:0.9; do
    mc=$(median ${ops[$workload,memcached]})
    printf '| %s |' "$workload"
    for target in "${targets[@]}"; do
        o=$(median ${ops[$workload,$target]})
        printf ' %s (%s) %.2f |' "$o" "$(median ${p99[$workload,$target]})" "$(echo "$o/$mc" | bc -l)"
    done
    printf '\n'
done
