#!/usr/bin/env bash
# Growing a cluster and anti-entropy, measured: the cost of keeping the
# anti-entropy digests (write throughput with and without), a fourth node
# joining a 3-node RF=2 cluster that holds `keys` keys (time to join,
# transfer MB/s and keys/s, unpaced and at the default --transfer-rate),
# and the foreground p99 of an open-loop 90/10 load through the first three
# nodes during that join against the same load without one.
#
#   bash benches/scripts/rebalance_bench.sh [runs=3] [seconds=5] [keys=200000]
#
# MCSTORE_FLAGS: more flags for every node; ONLY=digests|join|foreground runs
# one section; JOIN_RATE: the --transfer-rate of the foreground section's
# join (default 32m).
#
# Needs release builds of mcstore and mcstore-bench
# (cargo build --release -p mcstore-server -p mcstore-bench). All nodes and
# the load generator share the machine's cores: compare the ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/common.sh
runs=${1:-3}
secs=${2:-5}
keys=${3:-200000}
bin=${MCSTORE_BIN:-$PWD/target/release/mcstore}
bench=${MCSTORE_BENCH:-$PWD/target/release/mcstore-bench}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
servers() { printf '127.0.0.1:%s,' "$@" | sed 's/,$//'; }

# start_node index seeds [flags...]: starts node <index> on ports[index]
start_node() {
    local i=$1 seeds=$2; shift 2
    "$bin" --listen "127.0.0.1:${ports[$i]}" --data-dir "$work/node$i" --seeds "$seeds" \
        --replication-factor 2 ${MCSTORE_FLAGS:-} "$@" >"$work/node$i.log" 2>&1 &
    node_pids[$i]=$!; pids+=($!)
}
# start_cluster N [flags...]: N nodes seeded with each other, waits until all are alive
start_cluster() {
    local n=$1; shift
    ports=(); node_pids=()
    for i in $(seq "$n"); do ports+=("$(free_port)"); done
    local seeds; seeds=$(servers "${ports[@]}")
    for i in $(seq 0 $((n - 1))); do rm -rf "$work/node$i"; start_node "$i" "$seeds" "$@"; done
    for _ in $(seq 300); do
        [ "$(stat_of "${ports[0]}" cluster ring_nodes 2>/dev/null || echo 0)" -ge "$n" ] && return 0
        sleep 0.1
    done
    echo "cluster did not converge" >&2; exit 1
}
stop_cluster() { for p in "${node_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
# state_of port member: the member's state as the node sees it
state_of() { stat_of "$1" cluster "node:127.0.0.1:$2"; }

only=${ONLY:-all}
if [ "$only" = all ] || [ "$only" = digests ]; then
echo "== digests: 3 nodes, RF=2, sets through ketama to the owners, 32 connections, --repair-interval 10m (digests kept) vs 0 (none)"
declare -a with_ops without_ops
for run in $(seq "$runs"); do
    for interval in 10m 0; do
        start_cluster 3 --repair-interval "$interval"
        out=$("$bench" --servers "$(servers "${ports[@]}")" --workload set --keys 100000 --duration "$secs" --json --quiet)
        ops=$(echo "$out" | json_field ops_per_sec)
        if [ "$interval" = 0 ]; then without_ops+=("$ops"); else with_ops+=("$ops"); fi
        stop_cluster
        echo "run $run --repair-interval $interval: $ops sets/s" >&2
    done
done
w=$(median "${with_ops[@]}"); wo=$(median "${without_ops[@]}")
echo "| anti-entropy | sets/s (median of $runs) |"
echo "| --- | --- |"
echo "| digests kept (default) | $w |"
echo "| off (--repair-interval 0) | $wo |"
echo "with / without: $(awk -v a="$w" -v b="$wo" 'BEGIN {printf "%.2f", a / b}')"
fi

# join_run transfer_rate load(yes|no): prefills, starts a fourth node, prints
# "join_ms keys bytes p99_us errors misses"
join_run() {
    local rate=$1 with_load=$2
    start_cluster 3 --transfer-rate "$rate"
    "$bench" --servers "$(servers "${ports[@]}")" --workload set --keys "$keys" --prefill --duration 0.1 --quiet >/dev/null
    # Every replica has everything before the join starts.
    for _ in $(seq 600); do
        local total=0
        for port in "${ports[@]}"; do total=$((total + $(stat_of "$port" "" curr_items))); done
        [ "$total" -ge $((keys * 2)) ] && break
        sleep 0.1
    done
    local load_pid="" load_out="$work/load.json"
    if [ "$with_load" = yes ]; then
        "$bench" --servers "$(servers "${ports[@]}")" --workload "${FOREGROUND_WORKLOAD:-mixed:0.9}" --keys "$keys" --rate 5000 \
            --duration "$secs" --json --quiet >"$load_out" &
        load_pid=$!
        sleep 1
    fi
    ports[3]=$(free_port)
    local start_ns; start_ns=$(date +%s%N)
    rm -rf "$work/node3"
    start_node 3 "$(servers "${ports[@]}")" --transfer-rate "$rate"
    local joined=0
    for _ in $(seq 12000); do
        if [ "$(state_of "${ports[0]}" "${ports[3]}" 2>/dev/null || echo none)" = alive ]; then joined=1; break; fi
        sleep 0.02
    done
    local took=$(( ($(date +%s%N) - start_ns) / 1000000 ))
    [ "$joined" = 1 ] || { echo "the fourth node did not join" >&2; exit 1; }
    local got bytes
    got=$(stat_of "${ports[3]}" cluster transfer_keys_done)
    bytes=$(stat_of "${ports[3]}" cluster transfer_bytes_done)
    local p99=- errors=- misses=-
    if [ -n "$load_pid" ]; then
        wait "$load_pid"
        p99=$(json_field p99_us <"$load_out"); errors=$(json_field errors <"$load_out"); misses=$(json_field misses <"$load_out")
    fi
    stop_cluster
    echo "$took $got $bytes $p99 $errors $misses"
}

if [ "$only" = all ] || [ "$only" = join ]; then
echo
echo "== join: a fourth node joins 3 nodes (RF=2) holding $keys keys of 100 bytes"
for rate in 0 32m; do
    declare -a took_ms kps mbps
    took_ms=(); kps=(); mbps=()
    for run in $(seq "$runs"); do
        read -r took got bytes _ _ _ < <(join_run "$rate" no)
        took_ms+=("$took")
        kps+=("$(awk -v k="$got" -v t="$took" 'BEGIN {printf "%d", k / (t / 1000)}')")
        mbps+=("$(awk -v b="$bytes" -v t="$took" 'BEGIN {printf "%.1f", b / 1e6 / (t / 1000)}')")
        echo "run $run --transfer-rate $rate: joined in $took ms, received $got keys, $bytes bytes" >&2
    done
    echo "--transfer-rate $rate: join $(median "${took_ms[@]}") ms, $(median "${kps[@]}") keys/s, $(median "${mbps[@]}") MB/s received (medians of $runs; start to alive, process start included)"
done
fi

if [ "$only" = all ] || [ "$only" = foreground ]; then
echo
echo "== foreground: 90% get / 10% set at 5000 ops/s open loop through the first three nodes, during a join (--transfer-rate ${JOIN_RATE:-32m}) vs a run without one"
declare -a quiet_p99 join_p99 join_errors join_misses
for run in $(seq "$runs"); do
    start_cluster 3
    "$bench" --servers "$(servers "${ports[@]}")" --workload set --keys "$keys" --prefill --duration 0.1 --quiet >/dev/null
    out=$("$bench" --servers "$(servers "${ports[@]}")" --workload "${FOREGROUND_WORKLOAD:-mixed:0.9}" --keys "$keys" --rate 5000 --duration "$secs" --json --quiet)
    quiet_p99+=("$(echo "$out" | json_field p99_us)")
    stop_cluster
    read -r _ _ _ p99 errors misses < <(join_run "${JOIN_RATE:-32m}" yes)
    join_p99+=("$p99"); join_errors+=("$errors"); join_misses+=("$misses")
    echo "run $run: p99 without a join ${quiet_p99[-1]} us, during one $p99 us ($errors errors, $misses misses)" >&2
done
echo "| load | p99 µs (median of $runs) | errors | misses |"
echo "| --- | --- | --- | --- |"
echo "| no join | $(median "${quiet_p99[@]}") | | |"
echo "| during a join | $(median "${join_p99[@]}") | $(median "${join_errors[@]}") | $(median "${join_misses[@]}") |"
fi
