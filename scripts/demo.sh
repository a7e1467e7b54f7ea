#!/usr/bin/env bash
# make demo: the first thing to run. Starts Redis and two refserver nodes (n1, n2) on free loopback ports, connects
# 100 WebSocket clients across both nodes with build/loadgen, broadcasts 5 messages from client 0, says in a few
# lines what happened, and tears everything down. Exits with loadgen's status (0: every message reached every
# other client exactly once). Needs redis-server and the built binaries (make builds them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
CLIENTS=100
ROUNDS=5
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsh-demo.XXXXXX")
PIDS=()
KEEP_LOGS=0

say() { printf 'demo: %s\n' "$*"; }

stop_pid() { # SIGTERM, up to 5 s, then SIGKILL
    local pid=$1 i
    if kill -TERM "$pid" 2>/dev/null; then
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    if [ "$KEEP_LOGS" = 1 ] || [ "$rc" -ne 0 ]; then say "logs kept in $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

for f in "$BUILD/refserver" "$BUILD/loadgen"; do [ -x "$f" ] || fail "$f is missing: run make first"; done
command -v redis-server >/dev/null || fail "redis-server is not installed: run make deps"

free_port() { # a loopback port nobody listens on, below the ephemeral range
    local p i
    for i in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    return 1
}
first_line() { # PORT REQUEST: the first line of the answer, or nothing
    ( exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
      printf '%b' "$2" >&3
      IFS= read -r -t 2 line <&3 && printf '%s' "$line" ) 2>/dev/null || true
}
redis_ok() { [[ $(first_line "$1" 'PING\r\n') == "+PONG"* ]]; }
node_ok() { [[ $(first_line "$1" 'GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n') == "HTTP/1.1 200"* ]]; }
wait_for() { # PID WHAT LOG CHECK PORT
    local i
    for i in $(seq 100); do
        "$4" "$5" && return 0
        kill -0 "$1" 2>/dev/null || { tail -5 "$3" >&2; fail "$2 exited during startup"; }
        sleep 0.1
    done
    fail "$2 did not answer on port $5 within 10 s"
}

RPORT=$(free_port) || fail "no free port"
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --logfile "$WORK/redis.log" >/dev/null 2>&1 &
PIDS+=($!)
wait_for $! redis-server "$WORK/redis.log" redis_ok "$RPORT"

declare -A PORT
for id in n1 n2; do
    PORT[$id]=$(free_port) || fail "no free port"
    "$BUILD/refserver" --listen "127.0.0.1:${PORT[$id]}" --redis "redis://127.0.0.1:$RPORT" --node-id "$id" \
        --log-level warn >"$WORK/$id.log" 2>&1 &
    PIDS+=($!)
    wait_for $! "refserver $id" "$WORK/$id.log" node_ok "${PORT[$id]}"
done
say "Redis on 127.0.0.1:$RPORT; refserver n1 on 127.0.0.1:${PORT[n1]} and n2 on 127.0.0.1:${PORT[n2]}, synced through it"

rc=0
# In the background, so Ctrl-C or a TERM to this script is handled at once (bash runs traps only between commands).
"$BUILD/loadgen" --quiet --clients "$CLIENTS" --rounds "$ROUNDS" --interval 100ms --room demo --out "$WORK/run.json" \
    "ws://127.0.0.1:${PORT[n1]}/ws" "ws://127.0.0.1:${PORT[n2]}/ws" 2>"$WORK/loadgen.err" &
PIDS+=($!)
wait $! || rc=$?
[ -s "$WORK/run.json" ] || { cat "$WORK/loadgen.err" >&2; fail "loadgen wrote no report (exit $rc)"; }
# One line per fact, from loadgen's JSON report (docs/loadgen-json.md).
facts=$(python3 - "$WORK/run.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t, n = d["totals"], d["nodes"]
print(n.get("n1", 0), n.get("n2", 0), d["clients"]["connected"], t["expected"], t["received"], t["missing"],
      t["duplicate"], t["reordered"], d["echoed"], d["latency"]["p50_ms"], d["latency"]["max_ms"])
PY
)
read -r ON_N1 ON_N2 CONNECTED EXPECTED RECEIVED MISSING DUP REORDERED ECHOED P50 MAX <<<"$facts"

if [ "$rc" -eq 3 ]; then
    cat "$WORK/loadgen.err" >&2
    fail "the clients could not connect (see above; node logs in $WORK)"
fi
say "$CONNECTED WebSocket clients connected: $ON_N1 landed on n1, $ON_N2 on n2 (each 101 names its node in X-Node-Id)"
say "client 0 (on n1) sent $ROUNDS messages to room 'demo'; n1 delivered each to its own clients and published it"
say "once to Redis, and n2 delivered it to the $ON_N2 clients it holds"
TALLY="$MISSING missing, $DUP duplicated, $REORDERED out of order, $ECHOED back to the sender"
if [ "$rc" -eq 0 ]; then
    say "all $RECEIVED of $EXPECTED deliveries arrived, each exactly once and in order ($TALLY)"
else
    KEEP_LOGS=1
    say "NOT every message reached every other client exactly once: $RECEIVED of $EXPECTED ($TALLY)"
    sed 's/^/  loadgen| /' "$WORK/loadgen.err"
fi
say "delivery latency p50 $P50 ms, max $MAX ms (loadgen --help for more; the whole report is loadgen --out FILE)"
say "stopping Redis and both nodes (loadgen exit status $rc)"
exit "$rc"
