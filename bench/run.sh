#!/usr/bin/env bash
# make bench: what one refserver node costs per idle connection, and how long one 100-byte message takes to reach
# 10k (and 100) clients over two nodes, beside the kernel's own floor for the same fan-out on this machine.
#
#   a. memory: 1 node, RSS before and after 10000 idle clients (loadgen --hold)    target <= 2 KB per connection
#   b. fan-out: 2 nodes on one Redis, loadgen 30 rounds at N=10000 and N=100        target p99 <= 2x floor median
#      floor: ../shared/bench/fanout-floor.c (one process writes N sockets, another reads them; no framing)
#   c. loadgen's own cost: connects/s, CPU per connect, RSS per client, CPU per received message, and its CPU
#      against the nodes' CPU in the N=10000 run      targets >= 10000/s, <= 60 us, <= 2 KB, <= 2 us, < nodes
#   d. summary table on stdout and in results/bench/refserver-<UTC time>.txt
#
# Everything runs on loopback on free ports; every process started here is stopped by PID on exit.
# Exit: 0 measured (targets missed are reported, not fatal), 1 a run failed (delivery errors, a process died).
set -euo pipefail

ROOT=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel 2>/dev/null ||
       (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd))
cd "$ROOT"
BUILD=${BUILD:-build}
REFSERVER=$BUILD/refserver
LOADGEN=$BUILD/loadgen
FLOOR_SRC=$ROOT/../shared/bench/fanout-floor.c
FLOOR_BIN=$BUILD/fanout-floor
MEM_CLIENTS=10000
BIG=10000
SMALL=100
ROUNDS=30
PAYLOAD=100
SOURCES=127.0.0.2-127.0.0.20

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_DIR=results/bench
OUT=$OUT_DIR/refserver-$STAMP.txt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsh-bench.XXXXXX")
PIDS=()
FAILED=0

log() { printf 'bench: %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


for f in "$REFSERVER" "$LOADGEN"; do [ -x "$f" ] || die "$f is missing: run make first"; done
command -v redis-server >/dev/null || die "redis-server is not installed (make deps installs it)"





start_redis() {
    RPORT=$(free_port)
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --logfile "$WORK/redis.log" >/dev/null 2>&1 &
    PIDS+=($!)
    REDIS_PID=$!
    wait_for "$REDIS_PID" redis-server redis_ok "$RPORT"
}

node_up() { [[ $(http_get "$1" /) == "HTTP/1.1 200"* ]]; }

# start_node ID -> sets NODE_PORT and NODE_PID
start_node() {
    NODE_PORT=$(free_port)
    "$REFSERVER" --listen "127.0.0.1:$NODE_PORT" --redis "redis://127.0.0.1:$RPORT" --node-id "$1" \
        --log-level warn >"$WORK/$1.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    wait_for "$NODE_PID" "refserver $1" node_up "$NODE_PORT"
}

slab_kb() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }
# CPU seconds a process has used so far (utime + stime from /proc/PID/stat)

# ---------------------------------------------------------------- a. memory per idle connection
start_redis
start_node m1
MEM_PORT=$NODE_PORT
MEM_PID=$NODE_PID
sleep 0.5
RSS_BEFORE=$(rss_kb "$MEM_PID")
SLAB_BEFORE=$(slab_kb)
log "memory: refserver RSS ${RSS_BEFORE} KB idle; connecting $MEM_CLIENTS clients"
"$LOADGEN" --quiet --clients "$MEM_CLIENTS" --rounds 0 --hold 600s --source "$SOURCES" --room bench-mem \
    --out "$WORK/hold.json" "ws://127.0.0.1:$MEM_PORT/ws" >"$WORK/hold.out" 2>&1 &
HOLD_PID=$!
PIDS+=("$HOLD_PID")
for i in $(seq 1200); do
    [ "$(metric "$MEM_PORT" refserver_websocket_clients)" = "$MEM_CLIENTS" ] && break
    kill -0 "$HOLD_PID" 2>/dev/null || { cat "$WORK/hold.out" >&2; die "loadgen --hold exited before all connected"; }
    sleep 0.1
done
[ "$(metric "$MEM_PORT" refserver_websocket_clients)" = "$MEM_CLIENTS" ] || die "not all $MEM_CLIENTS held after 120 s"
sleep 1
RSS_AFTER=$(rss_kb "$MEM_PID")
SLAB_AFTER=$(slab_kb)
WS_CLIENTS=$(metric "$MEM_PORT" refserver_websocket_clients)
KB_PER_CONN=$(awk -v a="$RSS_AFTER" -v b="$RSS_BEFORE" -v n="$MEM_CLIENTS" 'BEGIN { printf "%.2f", (a - b) / n }')
SLAB_PER_CONN=$(awk -v a="$SLAB_AFTER" -v b="$SLAB_BEFORE" -v n="$MEM_CLIENTS" 'BEGIN { printf "%.2f", (a - b) / n }')
log "memory: RSS ${RSS_AFTER} KB with ${WS_CLIENTS:-?} clients -> $KB_PER_CONN KB per connection"
stop_pid "$HOLD_PID" # interrupted on purpose: loadgen closes every client and reports
HOLD_RSS=$(jget "$WORK/hold.json" 'max(w["rss_kb"] for w in d["self"]["workers"])')
[ "$(jget "$WORK/hold.json" 'd["clients"]["closed_clean"]')" = "$MEM_CLIENTS" ] ||
    { cat "$WORK/hold.out" >&2; log "loadgen --hold did not close every client cleanly"; FAILED=1; }
stop_pid "$MEM_PID"

# ---------------------------------------------------------------- b. fan-out against the floor
FLOOR_NOTE=""
if [ -f "$FLOOR_SRC" ]; then
    cc -O2 -o "$FLOOR_BIN" "$FLOOR_SRC" || die "cannot compile $FLOOR_SRC"
else
    FLOOR_NOTE="floor skipped: $FLOOR_SRC not found (clone with shared/ beside the repo)"
    log "$FLOOR_NOTE"
fi
# fanout-floor keeps both ends of its N connections in one process: 2N + 8 descriptors must fit under ulimit -n.
NOFILE=$(ulimit -n)

run_floor() { # N -> FLOOR_LINE, FLOOR_MEDIAN, FLOOR_MAX, FLOOR_N
    FLOOR_N=$(floor_n "$1")
    FLOOR_LINE=""
    FLOOR_MEDIAN=""
    FLOOR_MAX=""
    [ -x "$FLOOR_BIN" ] && [ -f "$FLOOR_SRC" ] || return 0
    # In its own process group: when fanout-floor fails half-way, its forked reader can outlive it (spinning on
    # closed sockets), so the whole group is killed afterwards, by its id.
    setsid "$FLOOR_BIN" "$FLOOR_N" "$ROUNDS" >"$WORK/floor-$1.out" 2>&1 &
    local pgid=$! i
    PIDS+=("$pgid")
    for i in $(seq 1200); do
        kill -0 "$pgid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
    wait "$pgid" 2>/dev/null || true
    FLOOR_LINE=$(tail -1 "$WORK/floor-$1.out")
    FLOOR_MEDIAN=$(field median "$FLOOR_LINE")
    FLOOR_MAX=$(field max "$FLOOR_LINE" | tr -d ';')
    [ -n "$FLOOR_MEDIAN" ] || { log "fanout-floor $FLOOR_N failed: $FLOOR_LINE"; FLOOR_LINE=""; }
    log "floor N=$FLOOR_N: median ${FLOOR_MEDIAN:-?} ms"
}

run_fanout() { # N TAG -> FAN_JSON (loadgen's report), FAN_P50, FAN_P99 (round times), FAN_CPU, NODES_CPU
    local n=$1 tag=$2 rc=0 before
    FAN_JSON=$WORK/fanout-$tag.json
    before=$(awk -v a="$(cpu_s "$N1_PID")" -v b="$(cpu_s "$N2_PID")" 'BEGIN { print a + b }')
    # In the background, so a signal to this script is handled at once (bash runs traps only between commands).
    "$LOADGEN" --quiet --clients "$n" --rounds "$ROUNDS" --interval 200ms --payload "$PAYLOAD" --source "$SOURCES" \
        --room "bench-$tag" --out "$FAN_JSON" "ws://127.0.0.1:$P1/ws" "ws://127.0.0.1:$P2/ws" \
        >"$WORK/fanout-$tag.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    NODES_CPU=$(awk -v a="$(cpu_s "$N1_PID")" -v b="$(cpu_s "$N2_PID")" -v s="$before" 'BEGIN { printf "%.2f", a + b - s }')
    if [ "$rc" -ne 0 ] || [ ! -s "$FAN_JSON" ]; then
        cat "$WORK/fanout-$tag.out" >&2
        log "loadgen at N=$n failed (exit $rc)"
        FAILED=1
        FAN_P50="" FAN_P99="" FAN_CPU=""
        return 0
    fi
    # Round time: from the send to the last receiver's copy (what fanout-floor measures for its own rounds).
    FAN_P50=$(jget "$FAN_JSON" 'sorted(r["duration_ms"] for r in d["rounds"])[len(d["rounds"]) // 2]')
    FAN_P99=$(jget "$FAN_JSON" 'sorted(r["duration_ms"] for r in d["rounds"])[max(0, -(-99 * len(d["rounds"]) // 100) - 1)]')
    FAN_CPU=$(jget "$FAN_JSON" '"%.2f" % (d["self"]["coordinator_cpu_s"] + sum(w["cpu_user_s"] + w["cpu_sys_s"] for w in d["self"]["workers"]))')
    log "loadgen N=$n: round p50 ${FAN_P50:-?} ms p99 ${FAN_P99:-?} ms; CPU loadgen ${FAN_CPU}s, nodes ${NODES_CPU}s"
}

# loadgen's own cost: N clients, connect and close only -> CONN_RATE, CONN_CPU_US, RSS_KB
run_connect_only() {
    local n=$1 json=$WORK/connect-$1.json rc=0
    "$LOADGEN" --quiet --clients "$n" --rounds 0 --source "$SOURCES" --room bench-conn --out "$json" \
        "ws://127.0.0.1:$P1/ws" "ws://127.0.0.1:$P2/ws" >"$WORK/connect-$n.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$WORK/connect-$n.out" >&2; die "loadgen connect-only N=$n failed (exit $rc)"; }
    CONN_RATE=$(jget "$json" '"%.0f" % (d["clients"]["connected"] / (d["phases"]["connect_ms"] / 1e3))')
    CONN_CPU=$(jget "$json" 'd["self"]["coordinator_cpu_s"] + sum(w["cpu_user_s"] + w["cpu_sys_s"] for w in d["self"]["workers"])')
    RSS_KB=$(jget "$json" 'max(w["rss_kb"] for w in d["self"]["workers"])')
}

start_node n1
P1=$NODE_PORT N1_PID=$NODE_PID
start_node n2
P2=$NODE_PORT N2_PID=$NODE_PID
sleep 0.3

run_floor "$BIG"
FLOOR_BIG_LINE=$FLOOR_LINE FLOOR_BIG=$FLOOR_MEDIAN FLOOR_BIG_MAX=$FLOOR_MAX FLOOR_BIG_N=$FLOOR_N
run_fanout "$BIG" big
FAN_BIG_JSON=$FAN_JSON BIG_P50=$FAN_P50 BIG_P99=$FAN_P99 BIG_LG_CPU=$FAN_CPU BIG_NODES_CPU=$NODES_CPU
run_floor "$SMALL"
FLOOR_SMALL_LINE=$FLOOR_LINE FLOOR_SMALL=$FLOOR_MEDIAN FLOOR_SMALL_MAX=$FLOOR_MAX
run_fanout "$SMALL" small
SMALL_P50=$FAN_P50 SMALL_P99=$FAN_P99

# ---------------------------------------------------------------- c. loadgen's own cost
run_connect_only 1
RSS_ONE=$RSS_KB
run_connect_only "$BIG"
LG_RATE=$CONN_RATE
LG_CONN_US=$(awk -v c="$CONN_CPU" -v n="$BIG" 'BEGIN { printf "%.1f", c * 1e6 / n }')
LG_KB=$(awk -v a="$RSS_KB" -v b="$RSS_ONE" -v n="$BIG" 'BEGIN { printf "%.2f", (a - b) / (n - 1) }')
LG_MSG_US="-"
if [ -n "$BIG_LG_CPU" ]; then
    RECEIVED=$(jget "$FAN_BIG_JSON" 'd["totals"]["received"]')
    LG_MSG_US=$(awk -v f="$BIG_LG_CPU" -v c="$CONN_CPU" -v n="$RECEIVED" 'BEGIN { printf "%.2f", (f - c) * 1e6 / n }')
    BIG_CONNECT_MS=$(jget "$FAN_BIG_JSON" 'd["phases"]["connect_ms"]')
    BIG_LAT=$(jget "$FAN_BIG_JSON" '"%.1f / %.1f" % (d["latency"]["p50_ms"], d["latency"]["p99_ms"])')
fi
log "loadgen: $LG_RATE connects/s, $LG_CONN_US us CPU per connect, $LG_KB KB per client, $LG_MSG_US us per message"

# ---------------------------------------------------------------- c. summary
verdict_min() { # VALUE FLOOR -> ok / UNDER / -
    if [ -z "$1" ] || [ "$1" = "-" ]; then echo "-"; return; fi
    awk -v v="$1" -v l="$2" 'BEGIN { print (v >= l) ? "ok" : "UNDER" }'
}
verdict() { # VALUE LIMIT -> ok / OVER / -
    if [ -z "$1" ] || [ "$1" = "-" ]; then echo "-"; return; fi
    awk -v v="${1%x}" -v l="$2" 'BEGIN { print (v <= l) ? "ok" : "OVER" }'
}
RATIO_BIG=$(ratio "$BIG_P99" "$FLOOR_BIG")
RATIO_SMALL=$(ratio "$SMALL_P99" "$FLOOR_SMALL")
FLOOR_BIG_LABEL="floor N=$BIG median / max"
if [ "${FLOOR_BIG_N:-$BIG}" != "$BIG" ]; then FLOOR_BIG_LABEL="floor N=$FLOOR_BIG_N median / max (fd limit)"; fi
mkdir -p "$OUT_DIR"
ms() { [ -n "$1" ] && printf '%.1f' "$1" || printf '?'; }
row() { printf '%-46s %-20s %-9s %s\n' "$@"; }
{
    printf 'wsharness bench %s  (%s cores, %s, loopback; %d rounds of %d B)\n\n' "$STAMP" "$(nproc)" "$(uname -sr)" \
        "$ROUNDS" "$PAYLOAD"
    row metric value target verdict
    row "refserver RSS per idle connection (10k)" "$KB_PER_CONN KB" "<= 2 KB" "$(verdict "$KB_PER_CONN" 2)"
    row "  kernel slab per connection, both ends" "$SLAB_PER_CONN KB" "(not RSS)" ""
    row "fan-out N=$BIG, 2 nodes: round p50 / p99" "$(ms "$BIG_P50") / $(ms "$BIG_P99") ms" "" ""
    row "$FLOOR_BIG_LABEL" "$(ms "$FLOOR_BIG") / $(ms "$FLOOR_BIG_MAX") ms" "" ""
    row "  p99 / floor median, N=$BIG" "$RATIO_BIG" "<= 2x" "$(verdict "$RATIO_BIG" 2)"
    row "fan-out N=$SMALL, 2 nodes: round p50 / p99" "$(ms "$SMALL_P50") / $(ms "$SMALL_P99") ms" "" ""
    row "floor N=$SMALL median / max" "$(ms "$FLOOR_SMALL") / $(ms "$FLOOR_SMALL_MAX") ms" "" ""
    row "  p99 / floor median, N=$SMALL" "$RATIO_SMALL" "<= 2x" "$(verdict "$RATIO_SMALL" 2)"
    row "loadgen N=$BIG: time to connect all" "$(ms "${BIG_CONNECT_MS:-}") ms" "" ""
    row "loadgen N=$BIG: delivery p50 / p99" "${BIG_LAT:-?} ms" "" ""
    row "loadgen connects per second (N=$BIG)" "$LG_RATE /s" ">= 10000" "$(verdict_min "$LG_RATE" 10000)"
    row "loadgen CPU per connect (and close)" "$LG_CONN_US us" "<= 60 us" "$(verdict "$LG_CONN_US" 60)"
    row "loadgen RSS per client" "$LG_KB KB" "<= 2 KB" "$(verdict "$LG_KB" 2)"
    row "loadgen CPU per received message" "$LG_MSG_US us" "<= 2 us" "$(verdict "$LG_MSG_US" 2)"
    row "CPU in the N=$BIG run: loadgen / nodes" "${BIG_LG_CPU:-?} s / ${BIG_NODES_CPU:-?} s" "loadgen <" \
        "$(awk -v a="${BIG_LG_CPU:-0}" -v b="${BIG_NODES_CPU:-0}" 'BEGIN { print (a > 0 && a < b) ? "ok" : "OVER" }')"
    if [ -n "$FLOOR_NOTE" ]; then printf '%s\n' "$FLOOR_NOTE"; fi
    if [ "${FLOOR_BIG_N:-$BIG}" != "$BIG" ]; then
        printf 'fanout-floor holds both ends of its connections in one process: N=%s is the most ulimit -n %s allows.\n' \
            "$FLOOR_BIG_N" "$NOFILE"
    fi
    printf '\nmemory: refserver VmRSS %s KB idle, %s KB with %s websocket clients (/metrics); loadgen itself %s KB.\n' \
        "$RSS_BEFORE" "$RSS_AFTER" "${WS_CLIENTS:-?}" "$HOLD_RSS"
    printf 'Socket buffers and struct sock live in the kernel, not in VmRSS; the slab line is /proc/meminfo Slab,\n'
    printf 'machine-wide, for both ends of each loopback connection.\n'
    printf 'Both runs share this machine with whatever else runs on it: compare ratios from one run, not absolute times.\n'
    printf 'With %d rounds, p99 is the slowest round: set it beside the floor'"'"'s max as well as its median.\n' "$ROUNDS"
    printf 'loadgen CPU per connect: all CPU of a connect-and-close run (workers + coordinator) / N; per client RSS:\n'
    printf '(worker peak RSS at N=%s - at N=1) / N; per message: (CPU of the N=%s fan-out run - CPU of the\n' "$BIG" "$BIG"
    printf 'connect-only run) / messages received.\n'
    if [ -n "$FLOOR_BIG_LINE$FLOOR_SMALL_LINE" ]; then printf '\n%s\n%s\n' "$FLOOR_BIG_LINE" "$FLOOR_SMALL_LINE"; fi
} | tee "$OUT"
for f in "$WORK"/fanout-*.json "$WORK/connect-$BIG.json"; do [ -f "$f" ] && cp "$f" "$OUT_DIR/refserver-$STAMP-$(basename "$f")"; done
log "written to $OUT (loadgen's JSON reports beside it)"
[ "$FAILED" -eq 0 ] || exit 1
