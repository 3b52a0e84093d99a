#!/usr/bin/env bash
# Issue-2 throughput figures: libmemcached's memcaslap against memcached and
# against mcstore (each --sync mode), interleaved, medians of N runs.
#
#   bash benches/scripts/memcached_vs_mcstore.sh [runs=3] [seconds=4]
#
# Needs memcached and libmemcached-tools (apt-get install memcached
# libmemcached-tools) and a release build (cargo build --release -p mcstore-server).
# Extra server flags for both mcstores (e.g. `--engine fjall`): MCSTORE_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/common.sh
runs=${1:-3}
secs=${2:-4}
bin=${MCSTORE_BIN:-$PWD/target/release/mcstore}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# mcstore is ready once it logs its `listening on addr=...` event on stderr.
wait_logged() { for _ in $(seq 200); do grep -q ' listening on addr=' "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "mcstore never listened:" >&2; cat "$1" >&2; return 1; }

cfg() { # $1 = set proportion, $2 = get proportion
    printf 'key\n64 64 1\nvalue\n100 100 1\ncmd\n0 %s\n1 %s\n' "$1" "$2" > "$work/cfg-$1"
    echo "$work/cfg-$1"
}
set_only=$(cfg 1 0)
mixed=$(cfg 0.1 0.9)

mc_port=$(free_port)
memcached -u nobody -l 127.0.0.1 -p "$mc_port" -U 0 -t 2 -m 1024 & pids+=($!)
wait_port "$mc_port"
declare -A ports
for mode in always periodic; do
    ports[$mode]=$(free_port)
    # shellcheck disable=SC2086
    "$bin" --listen 127.0.0.1:"${ports[$mode]}" --data-dir "$work/data-$mode" --sync "$mode" ${MCSTORE_FLAGS:-} >/dev/null 2>"$work/log-$mode" & pids+=($!)
    wait_logged "$work/log-$mode"
done

tps() { # $1 = port, $2 = config
    memcaslap -s 127.0.0.1:"$1" -T 2 -c 32 -t "${secs}s" -F "$2" 2>&1 | awk '/^Run time:/ {for (i=1;i<=NF;i++) if ($i=="TPS:") print $(i+1)}' | tail -1
}

declare -A results
for workload in set_only mixed; do
    config=${!workload}
    for run in $(seq "$runs"); do
        for target in memcached always periodic; do
            port=$mc_port; [ "$target" != memcached ] && port=${ports[$target]}
            t=$(tps "$port" "$config")
            results[$workload,$target]+="$t "
            echo "run $run $workload $target: $t ops/s (load $(cut -d' ' -f1 /proc/loadavg))" >&2
        done
    done
done

echo "| workload | memcached ops/s | mcstore --sync always | ratio | mcstore --sync periodic | ratio |"
echo "| --- | --- | --- | --- | --- | --- |"
for workload in set_only mixed; do
    mc=$(median ${results[$workload,memcached]})
    al=$(median ${results[$workload,always]})
    pe=$(median ${results[$workload,periodic]})
    printf '| %s | %s | %s | %.2f | %s | %.2f |\n' "$workload" "$mc" "$al" "$(echo "$al/$mc" | bc -l)" "$pe" "$(echo "$pe/$mc" | bc -l)"
done
echo
echo "mcstore --sync always, stats store after the runs:"
ask "${ports[always]}" "stats store"
