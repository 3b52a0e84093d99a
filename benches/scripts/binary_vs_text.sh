#!/usr/bin/env bash
# Issue-15 throughput figures: libmemcached's memcaslap in its text and its
# binary mode (-B) against memcached, mcstore (--sync always and periodic)
# and one node of a three-node mcstore cluster (RF=2, --sync always: most
# requests forwarded), interleaved in one run, medians of N runs.
#
#   bash benches/scripts/binary_vs_text.sh [runs=3] [seconds=4]
#
# Each measurement: memcaslap -s 127.0.0.1:PORT -T 2 -c 32 -t <seconds>s
# -F <config> [-B], keys of 64 bytes, values of 100 bytes, a set-only and a
# 90% get workload. Needs memcached and libmemcached-tools (apt-get install
# memcached libmemcached-tools) and a release build (cargo build --release
# -p mcstore-server).
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


cfg() { # $1 = set proportion, $2 = get proportion
    printf 'key\n64 64 1\nvalue\n100 100 1\ncmd\n0 %s\n1 %s\n' "$1" "$2" > "$work/cfg-$1"
    echo "$work/cfg-$1"
}
set_only=$(cfg 1 0)
mixed=$(cfg 0.1 0.9)

declare -A ports
ports[memcached]=$(free_port)
memcached -u nobody -l 127.0.0.1 -p "${ports[memcached]}" -U 0 -t 2 -m 1024 & pids+=($!)
wait_port "${ports[memcached]}"
for mode in always periodic; do
    ports[$mode]=$(free_port)
    "$bin" --listen 127.0.0.1:"${ports[$mode]}" --data-dir "$work/data-$mode" --sync "$mode" >/dev/null 2>"$work/log-$mode" & pids+=($!)
    wait_port "${ports[$mode]}"
done

# One node of a three-node cluster (RF=2, the defaults), once every node
# sees the three alive.
cluster_ports=("$(free_port)" "$(free_port)" "$(free_port)")
seeds=$(printf '127.0.0.1:%s,' "${cluster_ports[@]}"); seeds=${seeds%,}
for i in 0 1 2; do
    "$bin" --listen 127.0.0.1:"${cluster_ports[$i]}" --data-dir "$work/cluster-$i" --seeds "$seeds" \
        >/dev/null 2>"$work/log-cluster-$i" & pids+=($!)
done
for i in 0 1 2; do wait_port "${cluster_ports[$i]}"; done
ports[cluster]=${cluster_ports[0]}
for _ in $(seq 300); do
    alive=$(cluster_alive "${ports[cluster]}")
    [ "$alive" -ge 3 ] && break
    sleep 0.1
done
[ "$alive" -ge 3 ] || { echo "the cluster did not converge" >&2; exit 1; }

tps() { # $1 = port, $2 = config, $3 = text|binary
    local flag=()
    [ "$3" = binary ] && flag=(-B)
    memcaslap -s 127.0.0.1:"$1" -T 2 -c 32 -t "${secs}s" -F "$2" "${flag[@]}" 2>&1 | awk '/^Run time:/ {for (i=1;i<=NF;i++) if ($i=="TPS:") print $(i+1)}' | tail -1
}

declare -A results
for workload in set_only mixed; do
    config=${!workload}
    for run in $(seq "$runs"); do
        for target in memcached always periodic cluster; do
            for protocol in text binary; do
                t=$(tps "${ports[$target]}" "$config" "$protocol")
                results[$workload,$target,$protocol]+="$t "
                echo "run $run $workload $target $protocol: $t ops/s" >&2
            done
        done
    done
done

echo "| workload | server | text ops/s | binary ops/s | binary / text | binary / memcached binary |"
echo "| --- | --- | --- | --- | --- | --- |"
for workload in set_only mixed; do
    mc_binary=$(median ${results[$workload,memcached,binary]})
    for target in memcached always periodic cluster; do
        text=$(median ${results[$workload,$target,text]})
        binary=$(median ${results[$workload,$target,binary]})
        case $target in
            memcached) name=memcached ;;
            cluster) name="one node of a 3-node mcstore cluster (RF=2, --sync always)" ;;
            *) name="mcstore --sync $target" ;;
        esac
        printf '| %s | %s | %s | %s | %.2f | %.2f |\n' "$workload" "$name" "$text" "$binary" \
            "$(echo "$binary/$text" | bc -l)" "$(echo "$binary/$mc_binary" | bc -l)"
    done
done
