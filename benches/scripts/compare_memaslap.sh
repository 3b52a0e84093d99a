#!/usr/bin/env bash
# Throughput of mcstore-bench vs libmemcached's memaslap (memcaslap) against
# one memcached: 32 connections, 2 threads, set-only, 64-byte keys,
# 100-byte values, 4 s per run, RUNS interleaved runs each; prints every run
# and the medians. Needs memcached and memcaslap (apt-get install memcached
# libmemcached-tools) and a release build (cargo build --release -p mcstore-bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/common.sh
RUNS=${RUNS:-3}
BIN=${BIN:-target/release/mcstore-bench}
CFG=benches/scripts/memaslap_set.cfg
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
memcached -u nobody -l 127.0.0.1 -p "$PORT" -U 0 -t 2 &
MEMCACHED=$!
trap 'kill $MEMCACHED 2>/dev/null; wait $MEMCACHED 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
memaslap=()
ours=()
for run in $(seq "$RUNS"); do
    m=$(memcaslap -s "127.0.0.1:$PORT" -T 2 -c 32 -t 4s -F "$CFG" | sed -n 's/.*TPS: \([0-9]*\).*/\1/p' | tail -1)
    o=$("$BIN" --servers "127.0.0.1:$PORT" --connections 32 --threads 2 --workload set \
        --key-size 64 --value-size 100 --duration 4 --json 2>/dev/null | tail -1 |
        python3 -c 'import json, sys; r = json.loads(sys.stdin.read()); print(int(r["ops_per_sec"]), r["errors"], r["p99_us"])')
    echo "run $run: memcaslap ${m} ops/s | mcstore-bench ${o% * *} ops/s (errors, p99 us: ${o#* })"
    memaslap+=("$m")
    ours+=("${o%% *}")
done
echo "median: memcaslap $(median "${memaslap[@]}") ops/s, mcstore-bench $(median "${ours[@]}") ops/s"
