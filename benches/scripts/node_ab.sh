#!/usr/bin/env bash
# A/B of mcstore binaries against memcached, closed loop: throughput, the
# client's p99 latency and the server's CPU time per operation (user and
# system, from /proc/PID/stat), each target in turn, `runs` times, so that
# the ratios compare runs made seconds apart.
#
#   WORKLOAD=get|set|mixed:0.9 bash benches/scripts/node_ab.sh [runs=3] BINARY...
#
# The position in a run can move a target's figures by more than a small
# change does, so each run starts one target further on (run 1: A B M,
# run 2: B M A, ...); with few runs, also list copies of the binaries
# A B B A and compare both pairs. A BINARY may be a script that `exec`s
# mcstore with flags or an environment of its own (`exec mcstore --engine
# fjall "$@"`): exec keeps the PID, so its CPU is still the server's.
#
# For CPU per operation at a fixed open-loop rate, see cpu_per_op.sh.
#
# Every binary gets a fresh data directory (extra flags: MCSTORE_FLAGS) and
# memcached 1.6.18 runs beside them (`-t 2 -m 1024`). The key space (KEYS,
# default 50000, 64-byte keys, 100-byte values) is prefilled on each; a
# measurement is `mcstore-bench --connections 32 --duration 6` with the
# server's CPU sampled over the middle 4 s. Needs a release build of
# mcstore-bench (cargo build --release -p mcstore-bench) and memcached.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/common.sh
runs=${1:-3}
shift || true
[ "$#" -gt 0 ] || { echo "usage: $0 [runs] BINARY..." >&2; exit 2; }
bench=${MCSTORE_BENCH:-$PWD/target/release/mcstore-bench}
workload=${WORKLOAD:-get}
keys=${KEYS:-50000}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ticks=$(getconf CLK_TCK)

cpu() { awk '{print $14, $15}' /proc/"$1"/stat; }

names=(); ports=()
for bin in "$@"; do
    port=$(free_port)
    # shellcheck disable=SC2086
    "$bin" --listen 127.0.0.1:"$port" --data-dir "$work/data-${#ports[@]}" ${MCSTORE_FLAGS:-} \
        >"$work/log-${#ports[@]}" 2>&1 & pids+=($!)
    names+=("$bin"); ports+=("$port")
done
port=$(free_port)
memcached -u nobody -l 127.0.0.1 -p "$port" -U 0 -t 2 -m 1024 & pids+=($!)
names+=(memcached); ports+=("$port")
for port in "${ports[@]}"; do
    wait_port "$port"
    "$bench" --servers 127.0.0.1:"$port" --workload set --keys "$keys" --prefill --duration 0.5 --quiet >/dev/null
done

declare -A ops user sys tail99
for run in $(seq "$runs"); do
    for step in "${!ports[@]}"; do
        i=$(( (step + run - 1) % ${#ports[@]} ))
        "$bench" --servers 127.0.0.1:"${ports[$i]}" --workload "$workload" --keys "$keys" \
            --connections 32 --duration 6 --quiet --json >"$work/run.json" &
        load=$!
        sleep 1
        read -r u1 s1 < <(cpu "${pids[$i]}")
        sleep 4
        read -r u2 s2 < <(cpu "${pids[$i]}")
        wait "$load"
        read -r rate p99 < <(tail -1 "$work/run.json" | python3 -c 'import json,sys; r = json.loads(sys.stdin.read()); print(round(r["ops_per_sec"]), round(r["p99_us"]))')
        u=$(echo "($u2 - $u1) / $ticks / 4 / $rate * 1000000" | bc -l)
        s=$(echo "($s2 - $s1) / $ticks / 4 / $rate * 1000000" | bc -l)
        ops[$i]+="$rate "; user[$i]+="$u "; sys[$i]+="$s "; tail99[$i]+="$p99 "
        printf 'run %s %s: %s ops/s, p99 %s µs, %.1f µs user + %.1f µs system per op\n' "$run" "${names[$i]}" "$rate" "$p99" "$u" "$s" >&2
    done
done

last=$((${#ports[@]} - 1))
reference=$(median ${ops[$last]})
echo "workload $workload, $keys keys, medians of $runs"
echo "| server | ops/s | / memcached | p99 µs | µs CPU per op (user + system) |"
echo "| --- | --- | --- | --- | --- |"
for i in "${!ports[@]}"; do
    rate=$(median ${ops[$i]}); u=$(median ${user[$i]}); s=$(median ${sys[$i]})
    printf '| %s | %s | %.2f | %s | %.1f + %.1f = %.1f |\n' "${names[$i]}" "$rate" \
        "$(echo "$rate / $reference" | bc -l)" "$(median ${tail99[$i]})" "$u" "$s" "$(echo "$u + $s" | bc -l)"
done
