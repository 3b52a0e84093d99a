#!/usr/bin/env bash
# Cluster figures: the cost of forwarding, of replication (RF=2 against
# RF=1 on the same machine), replication lag under a steady load, and how
# long a restarted node takes to catch up.
#
#   bash benches/scripts/cluster_bench.sh [runs=3] [seconds=5] [catch_up_keys=100000]
#
# Needs release builds of mcstore and mcstore-bench
# (cargo build --release -p mcstore-server -p mcstore-bench). All nodes and
# the load generator share the machine's cores: compare the ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/common.sh
runs=${1:-3}
secs=${2:-5}
catch_up_keys=${3:-100000}
bin=${MCSTORE_BIN:-$PWD/target/release/mcstore}
bench=${MCSTORE_BENCH:-$PWD/target/release/mcstore-bench}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ticks=$(getconf CLK_TCK)

# stat_sum PORT GROUP NAME: the sum of the statistics named NAME in
# `stats GROUP`, or of those ending in SUFFIX when NAME is `*SUFFIX`.
stat_sum() {
    ask "$1" "stats${2:+ $2}" | awk -v name="$3" '
        $1 == "STAT" && ($2 == name || (name ~ /^\*/ && substr($2, length($2) - length(name) + 2) == substr(name, 2))) {total += $3}
        END {print total + 0}'
}
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }

# start_cluster N RF [flags...]: sets ports[] and node_pids[]
start_cluster() {
    local n=$1 rf=$2; shift 2
    ports=(); node_pids=()
    for i in $(seq "$n"); do ports+=("$(free_port)"); done
    local seeds; seeds=$(printf '127.0.0.1:%s,' "${ports[@]}"); seeds=${seeds%,}
    for i in $(seq 0 $((n - 1))); do
        rm -rf "$work/node$i"
        "$bin" --listen "127.0.0.1:${ports[$i]}" --data-dir "$work/node$i" --seeds "$seeds" \
            --replication-factor "$rf" "$@" >"$work/node$i.log" 2>&1 &
        node_pids+=($!); pids+=($!)
    done
    for _ in $(seq 200); do
        local alive; alive=$(cluster_alive "${ports[0]}")
        [ "$alive" -ge "$n" ] && return 0
        sleep 0.1
    done
    echo "cluster did not converge" >&2; exit 1
}
stop_cluster() { for p in "${node_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
servers() { printf '127.0.0.1:%s,' "$@" | sed 's/,$//'; }
json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

echo "== forwarding: one node alone vs one node of a 3-node RF=1 cluster (2/3 of requests forwarded), 90% get / 10% set, 32 connections"
declare -a alone_ops alone_p99 fwd_ops fwd_p99
for run in $(seq "$runs"); do
    port=$(free_port); rm -rf "$work/alone"
    "$bin" --listen "127.0.0.1:$port" --data-dir "$work/alone" >"$work/alone.log" 2>&1 & p=$!; pids+=($p)
    sleep 0.3
    out=$("$bench" --servers "127.0.0.1:$port" --workload mixed:0.9 --keys 50000 --prefill --duration "$secs" --json --quiet)
    alone_ops+=("$(echo "$out" | json_field ops_per_sec)"); alone_p99+=("$(echo "$out" | json_field p99_us)")
    kill -9 $p; wait $p 2>/dev/null || true
    start_cluster 3 1
    out=$("$bench" --servers "127.0.0.1:${ports[0]}" --workload mixed:0.9 --keys 50000 --prefill --duration "$secs" --json --quiet)
    fwd_ops+=("$(echo "$out" | json_field ops_per_sec)"); fwd_p99+=("$(echo "$out" | json_field p99_us)")
    forwarded=$(stat_sum "${ports[0]}" cluster forwarded)
    stop_cluster
    echo "run $run: alone ${alone_ops[-1]} ops/s p99 ${alone_p99[-1]} us; cluster node ${fwd_ops[-1]} ops/s p99 ${fwd_p99[-1]} us ($forwarded forwarded)" >&2
done
echo "| target | ops/s | p99 µs |"
echo "| --- | --- | --- |"
echo "| one node alone | $(median "${alone_ops[@]}") | $(median "${alone_p99[@]}") |"
echo "| one node of 3, RF=1 (2/3 forwarded) | $(median "${fwd_ops[@]}") | $(median "${fwd_p99[@]}") |"

echo
echo "== replication: 3 nodes, sets through ketama to the owners (--servers all three), RF=1 vs RF=2, 32 connections"
declare -a rf1_ops rf2_ops rf1_cpu rf2_cpu
for run in $(seq "$runs"); do
    for rf in 1 2; do
        start_cluster 3 "$rf"
        before=0; for p in "${node_pids[@]}"; do before=$((before + $(cpu_ticks "$p"))); done
        out=$("$bench" --servers "$(servers "${ports[@]}")" --workload set --keys 100000 --duration "$secs" --json --quiet)
        after=0; for p in "${node_pids[@]}"; do after=$((after + $(cpu_ticks "$p"))); done
        ops=$(echo "$out" | json_field ops)
        cpu=$(awk -v t=$((after - before)) -v hz="$ticks" -v ops="$ops" 'BEGIN {printf "%.1f", t / hz * 1e6 / ops}')
        if [ "$rf" = 1 ]; then rf1_ops+=("$(echo "$out" | json_field ops_per_sec)"); rf1_cpu+=("$cpu")
        else rf2_ops+=("$(echo "$out" | json_field ops_per_sec)"); rf2_cpu+=("$cpu"); fi
        stop_cluster
        echo "run $run RF=$rf: $(echo "$out" | json_field ops_per_sec) sets/s, $cpu µs CPU per write (all nodes)" >&2
    done
done
r1=$(median "${rf1_ops[@]}"); r2=$(median "${rf2_ops[@]}")
echo "| RF | sets/s | µs CPU per write (3 nodes) |"
echo "| --- | --- | --- |"
echo "| 1 | $r1 | $(median "${rf1_cpu[@]}") |"
echo "| 2 | $r2 | $(median "${rf2_cpu[@]}") |"
echo "RF=2 / RF=1 throughput: $(awk -v a="$r2" -v b="$r1" 'BEGIN {printf "%.2f", a / b}')"

echo
echo "== replication lag: RF=2, sets at half the RF=2 rate (open loop), peer lag_ms sampled every 100 ms"
half=$(awk -v r="$r2" 'BEGIN {printf "%d", r / 2}')
start_cluster 3 2
"$bench" --servers "$(servers "${ports[@]}")" --workload set --keys 100000 --rate "$half" --duration $((secs * 2)) --quiet >/dev/null &
load=$!
samples=()
end=$((SECONDS + secs * 2))
while [ $SECONDS -lt $end ]; do
    for port in "${ports[@]}"; do
        samples+=($(ask "$port" "stats cluster" | awk '$2 ~ /:lag_ms$/ {print $3}'))
    done
    sleep 0.1
done
wait $load || true
stop_cluster
python3 - "$half" "${samples[@]}" <<'PY'
import sys
rate = sys.argv[1]
v = sorted(int(x) for x in sys.argv[2:])
if not v:
    print("no lag samples")
    sys.exit()
pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print("| rate | samples | lag p50 ms | lag p99 ms | max ms |\n| --- | --- | --- | --- | --- |")
print(f"| {rate} sets/s | {len(v)} | {pick(0.5)} | {pick(0.99)} | {v[-1]} |")
PY

echo
echo "== catch-up: RF=2, node 3 killed, $catch_up_keys keys written through the others, node 3 restarted"
start_cluster 3 2
kill -9 "${node_pids[2]}"; wait "${node_pids[2]}" 2>/dev/null || true
sleep 4
"$bench" --servers "127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}" --workload set --keys "$catch_up_keys" --prefill --duration 0.1 --quiet >/dev/null
seeds=$(printf '127.0.0.1:%s,' "${ports[@]}"); seeds=${seeds%,}
start_ns=$(date +%s%N)
"$bin" --listen "127.0.0.1:${ports[2]}" --data-dir "$work/node2" --seeds "$seeds" --replication-factor 2 >>"$work/node2.log" 2>&1 &
node_pids[2]=$!; pids+=($!)
for _ in $(seq 6000); do
    pending=0
    for port in "${ports[0]}" "${ports[1]}"; do
        pending=$((pending + $(stat_sum "$port" cluster "*127.0.0.1:${ports[2]}:pending")))
    done
    [ "$pending" -eq 0 ] && [ "$(stat_sum "${ports[2]}" "" curr_items)" -gt 0 ] && break
    sleep 0.05
done
took=$(( ($(date +%s%N) - start_ns) / 1000000 ))
items=$(stat_sum "${ports[2]}" "" curr_items)
echo "| keys written while down | restarted node holds | caught up after |"
echo "| --- | --- | --- |"
echo "| $catch_up_keys | $items items | $took ms |"
stop_cluster
