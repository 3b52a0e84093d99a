#!/usr/bin/env bash
# Starts an N-node mcstore cluster on loopback, each node with its own data
# directory, and stops it again.
#
#   bash benches/scripts/local-cluster.sh start [N=3] [BASE_PORT=21211] [-- EXTRA FLAGS...]
#   bash benches/scripts/local-cluster.sh status
#   bash benches/scripts/local-cluster.sh stop
#
# Node i listens on 127.0.0.1:(BASE_PORT + i - 1) and is seeded with every
# node's address. Data directories, logs and pids live in
# ${MCSTORE_CLUSTER_DIR:-./local-cluster}; `stop` sends SIGTERM (each node
# announces that it leaves, makes its data durable and exits) and keeps the
# data for the next `start`. The binary is $MCSTORE_BIN or
# target/release/mcstore (`cargo build --release -p mcstore-server`).
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/common.sh
dir=${MCSTORE_CLUSTER_DIR:-$PWD/local-cluster}
bin=${MCSTORE_BIN:-$PWD/target/release/mcstore}
command=${1:-}
shift || true


case "$command" in
start)
    n=${1:-3}; base=${2:-21211}
    shift $(( $# >= 2 ? 2 : $# )) || true
    [ "${1:-}" = "--" ] && shift
    [ -x "$bin" ] || { echo "no mcstore binary at $bin (cargo build --release -p mcstore-server)" >&2; exit 1; }
    mkdir -p "$dir"
    seeds=$(for i in $(seq "$n"); do printf '127.0.0.1:%d,' $((base + i - 1)); done)
    seeds=${seeds%,}
    for i in $(seq "$n"); do
        port=$((base + i - 1))
        if [ -f "$dir/node$i.pid" ] && kill -0 "$(cat "$dir/node$i.pid")" 2>/dev/null; then
            echo "node $i is already running (pid $(cat "$dir/node$i.pid"))"; continue
        fi
        "$bin" --listen "127.0.0.1:$port" --data-dir "$dir/node$i" --seeds "$seeds" "$@" \
            >>"$dir/node$i.log" 2>&1 &
        echo $! > "$dir/node$i.pid"
        echo "node $i: 127.0.0.1:$port (pid $!, data $dir/node$i, log $dir/node$i.log)"
    done
    echo "$n" > "$dir/nodes"
    # Wait until the first node sees every node alive.
    for _ in $(seq 100); do
        alive=$(ask "$base" "stats cluster" 2>/dev/null | grep -c ' alive' || true)
        [ "$alive" -ge "$n" ] && { echo "cluster of $n is up"; exit 0; }
        sleep 0.2
    done
    echo "the cluster did not converge; see $dir/node*.log" >&2; exit 1
    ;;
status)
    for pidfile in "$dir"/node*.pid; do
        [ -e "$pidfile" ] || { echo "no cluster in $dir"; exit 0; }
        node=$(basename "$pidfile" .pid)
        state=stopped; kill -0 "$(cat "$pidfile")" 2>/dev/null && state="running (pid $(cat "$pidfile"))"
        echo "$node: $state"
    done
    port=$(grep -o 'listening on addr=127.0.0.1:[0-9]*' "$dir/node1.log" 2>/dev/null | tail -1 | cut -d: -f2 || true)
    [ -n "$port" ] && ask "$port" "stats cluster" || true
    ;;
stop)
    for pidfile in "$dir"/node*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill -TERM "$pid" 2>/dev/null && echo "stopping $(basename "$pidfile" .pid) (pid $pid)" || true
    done
    for pidfile in "$dir"/node*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$pidfile"
    done
    echo "stopped (data kept in $dir)"
    ;;
*)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
