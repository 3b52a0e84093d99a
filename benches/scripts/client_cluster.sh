#!/usr/bin/env bash
# mcstore-bench through mcstore-client against a 3-node cluster, compared
# with direct ketama (no topology) against the same nodes and with three
# memcached processes driven through the same client code; medians of
# RUNS runs, interleaved.
#
#   bash benches/scripts/client_cluster.sh [RUNS=3] [SECONDS=5]
#
# Needs release builds (cargo build --release -p mcstore-server -p
# mcstore-bench) and /usr/bin/memcached. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/common.sh
runs=${1:-3}; seconds=${2:-5}
bench=$PWD/target/release/mcstore-bench
export MCSTORE_CLUSTER_DIR=$(mktemp -d)
base=22211
nodes="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
mbase=23211
mnodes="127.0.0.1:$mbase,127.0.0.1:$((mbase + 1)),127.0.0.1:$((mbase + 2))"
pids=()
cleanup() {
    bash benches/scripts/local-cluster.sh stop >/dev/null 2>&1 || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$MCSTORE_CLUSTER_DIR"
}
trap cleanup EXIT
bash benches/scripts/local-cluster.sh start 3 "$base" >/dev/null
for i in 0 1 2; do
    memcached -u nobody -l 127.0.0.1 -p $((mbase + i)) -U 0 -t 1 -m 256 &
    pids+=($!)
done
sleep 0.5
common=(--workload mixed:0.9 --keys 20000 --key-size 32 --value-size 100
        --connections 6 --pipeline 4 --json --quiet)
declare -A results
run() { # name args...
    local name=$1; shift
    local line
    line=$("$bench" "$@" "${common[@]}" --duration "$seconds" | tail -1)
    results[$name]+="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(round(r["ops_per_sec"]), r["p50_us"], r["p99_us"], r["errors"], json.dumps(r.get("per_node_ops_per_sec", {})))' "$line")"$'\n'
}
# Prefill once per target so every run reads hits.
"$bench" --seeds "$nodes" --prefill "${common[@]}" --duration 0.1 >/dev/null
"$bench" --servers "$mnodes" --via-client --prefill "${common[@]}" --duration 0.1 >/dev/null
for _ in $(seq "$runs"); do
    run "mcstore cluster, --seeds (client, topology)" --seeds "$nodes"
    run "mcstore cluster, --servers (direct ketama, no topology)" --servers "$nodes"
    run "mcstore cluster, --servers --via-client (client, static ketama)" --servers "$nodes" --via-client
    run "3 memcached, --servers --via-client (client, static ketama)" --servers "$mnodes" --via-client
done
forwarded=$(for p in $base $((base + 1)) $((base + 2)); do
    stat_of "$p" cluster forwarded
done | paste -sd, -)
echo "| target | ops/s (median of $runs) | p50 µs | p99 µs | errors | per node ops/s (median run) |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
for name in "mcstore cluster, --seeds (client, topology)" \
            "mcstore cluster, --servers (direct ketama, no topology)" \
            "mcstore cluster, --servers --via-client (client, static ketama)" \
            "3 memcached, --servers --via-client (client, static ketama)"; do
    printf '%s' "${results[$name]}" | python3 -c '
import sys, json
rows = [l.split(" ", 4) for l in sys.stdin.read().strip().splitlines()]
rows.sort(key=lambda r: int(r[0]))
m = rows[len(rows) // 2]
per = json.loads(m[4])
per = ", ".join("%s %d" % (k.rsplit(":", 1)[1], v) for k, v in sorted(per.items())) or "-"
print("| %s | %s | %s | %s | %s | %s |" % (sys.argv[1], m[0], m[1], m[2], m[3], per))
' "$name"
done
echo
echo "forwarded on the nodes after every run: $forwarded"
