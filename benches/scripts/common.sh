# Helpers the benchmark scripts share. Each script, once in the repository
# root, sources it: `. benches/scripts/common.sh`.

# A free loopback TCP port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (10 s at most) until something listens on loopback port $1.
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ask PORT COMMAND: sends one command that ends with END (stats, stats
# GROUP) to the node on loopback PORT and prints its reply, without the
# carriage returns.
ask() {
    python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.argv[2].encode() + b"\r\n")
data = b""
while not data.endswith(b"END\r\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode().replace("\r", ""), end="")
PY
}

# stat_of PORT GROUP NAME: one statistic of `stats GROUP` (plain `stats`
# when GROUP is empty), 0 if it is not there.
stat_of() {
    ask "$1" "stats${2:+ $2}" | awk -v name="$3" '$1 == "STAT" && $2 == name {value = $3} END {print (value == "" ? 0 : value)}'
}

# cluster_alive PORT: how many members `stats cluster` on PORT reports alive.
cluster_alive() { { ask "$1" "stats cluster" 2>/dev/null || true; } | grep -c ' alive$' || true; }
