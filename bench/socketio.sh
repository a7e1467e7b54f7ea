#!/usr/bin/env bash
# make bench-socketio: the same Socket.IO broadcast against two stacks, each 2 nodes on their own Redis behind our lb
# (build/lb --workers 2, the same flags for both), both driven by loadgen --protocol socketio (event 'chat'):
#   refserver   build/refserver --redis ... --node-id nK (Socket.IO v4 over the websocket transport)
#   socketio    node tests/interop/socketio_node_server.mjs (npm socket.io 4.8 + @socket.io/redis-adapter 8.3;
#               'chat' -> socket.broadcast.emit, and a 'hello' on connection that loadgen counts as foreign)
#
#   a. memory: fresh nodes, their RSS (both nodes) before and with 10000 idle clients through the lb
#      (loadgen --rounds 0 --hold), (after - before) / 10000               target refserver <= 0.15x socketio
#   b. fan-out: 100 clients, 30 rounds 100 ms apart (3 runs per stack), and 10000 clients (2 loadgen workers,
#      --max-inflight 500), 10 rounds 1 s apart, deadline 10 s (RUNS_BIG runs per stack, default 2); runs alternate
#      refserver, socketio, ...; medians. Delivery latency p50/p99 (send to arrival, every copy) beside the median of
#      ../shared/bench/fanout-floor.c for the same N (built and run here, 30 rounds; N capped by the descriptor
#      limit: 9995 under 20000). At 10k loadgen gets --close-timeout 10s (a cold Node needs more than 2 s to close)
#                                 targets refserver p99 <= 1.5x floor at 10k, p99 <= 2 ms at 100
#   summary table on stdout and in results/bench/socketio-<UTC time>.txt, loadgen's JSON of every run in
#   results/bench/socketio-<UTC time>/.
#
# Everything runs on loopback on free ports; every process started here is stopped by PID on exit.
# Exit: 0 measured (targets missed are reported, not fatal), 1 a run failed: a loadgen verdict other than pass (for
# either stack: a Socket.IO run that loses or delays messages is reported as such, the others still run), a node,
# Redis or lb that died.
set -euo pipefail

ROOT=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel 2>/dev/null ||
       (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd))
cd "$ROOT"
BUILD=${BUILD:-build}
REFSERVER=$BUILD/refserver
LOADGEN=$BUILD/loadgen
LB=$BUILD/lb
NODE=${NODE:-node}
SIO_SERVER=tests/interop/socketio_node_server.mjs
FLOOR_SRC=$ROOT/../shared/bench/fanout-floor.c
FLOOR_BIN=$BUILD/fanout-floor
SOURCES=127.0.0.2-127.0.0.20
TARGETS=(refserver socketio)
SMALL=100 SMALL_ROUNDS=30 SMALL_INTERVAL=100ms RUNS_SMALL=${RUNS_SMALL:-3}
BIG=${BIG:-10000} BIG_ROUNDS=10 BIG_INTERVAL=1s BIG_DEADLINE=10s BIG_INFLIGHT=500 RUNS_BIG=${RUNS_BIG:-2}
MEM_N=${MEM_N:-10000} MEM_HOLD=6s
FLOOR_ROUNDS=30
# closing 10k clients at once: a freshly started Node server needs more than loadgen's default 2 s
BIG_CLOSE=10s
PAYLOAD=100
# targets
T_BIG_FLOOR=1.5 T_SMALL_MS=2 T_MEM=0.15

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_DIR=results/bench
OUT=$OUT_DIR/socketio-$STAMP.txt
RUN_DIR=$OUT_DIR/socketio-$STAMP
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsh-bench-sio.XXXXXX")
PIDS=()
FAILED=0
FAILURES=()
T0=$SECONDS

log() { printf 'bench-socketio: %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
WAIT_S=15 # Node servers take longer to come up

# A process that has been waited for leaves the list, so its id, if reused, is never signalled.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


for f in "$REFSERVER" "$LOADGEN" "$LB"; do [ -x "$f" ] || die "$f is missing: run make first"; done
command -v redis-server >/dev/null || die "redis-server is not installed (make deps installs it)"
command -v "$NODE" >/dev/null || die "node is not installed (make deps installs it)"
command -v python3 >/dev/null || die "python3 is needed to read loadgen's JSON"
for m in socket.io @socket.io/redis-adapter redis; do
    [ -d "tests/interop/node_modules/$m" ] || die "tests/interop/node_modules lacks $m (cd tests/interop && npm ci)"
done
mkdir -p "$RUN_DIR"





# open Socket.IO sockets of a Node server: "open" in GET /stats (JSON, in a chunked body)
sio_open() { http_get "$1" /stats 1 | grep -o '"open":[0-9]*' | cut -d: -f2 || true; }

# ---------------------------------------------------------------- the two stacks
declare -A RPORT REDIS_PID N1_PID N2_PID P1 P2 LB_PORT LB_PID LB_WORKERS URL DEAD

# start_stack TARGET TAG: Redis, 2 nodes, lb (fresh processes; TAG names the logs)
start_stack() {
    local t=$1 tag=$2 k port pid
    RPORT[$t]=$(free_port)
    redis-server --port "${RPORT[$t]}" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --logfile "$WORK/$t-$tag-redis.log" >/dev/null 2>&1 &
    REDIS_PID[$t]=$!
    PIDS+=("${REDIS_PID[$t]}")
    wait_for "${REDIS_PID[$t]}" "redis-server ($t)" redis_ok "${RPORT[$t]}"
    for k in 1 2; do
        port=$(free_port)
        if [ "$t" = refserver ]; then
            "$REFSERVER" --listen "127.0.0.1:$port" --redis "redis://127.0.0.1:${RPORT[$t]}" --node-id "n$k" \
                --log-level warn >"$WORK/$t-$tag-n$k.log" 2>&1 &
        else
            "$NODE" "$SIO_SERVER" --port "$port" --redis "redis://127.0.0.1:${RPORT[$t]}" --name "n$k" \
                >"$WORK/$t-$tag-n$k.log" 2>&1 &
        fi
        pid=$!
        PIDS+=("$pid")
        wait_for "$pid" "$t node n$k" http_up "$port"
        if [ "$k" = 1 ]; then P1[$t]=$port N1_PID[$t]=$pid; else P2[$t]=$port N2_PID[$t]=$pid; fi
    done
    LB_PORT[$t]=$(free_port)
    "$LB" --listen "127.0.0.1:${LB_PORT[$t]}" --backend "n1=127.0.0.1:${P1[$t]}" --backend "n2=127.0.0.1:${P2[$t]}" \
        --balance roundrobin --sticky cookie --health off --workers 2 \
        --timeout tunnel=1h --timeout client=60s --timeout server=60s --log-level warn >"$WORK/$t-$tag-lb.log" 2>&1 &
    LB_PID[$t]=$!
    PIDS+=("${LB_PID[$t]}")
    wait_for "${LB_PID[$t]}" "lb ($t)" http_up "${LB_PORT[$t]}"
    LB_WORKERS[$t]=$(tree "${LB_PID[$t]}" | tail -n +2 | sort | paste -sd ' ')
    URL[$t]="ws://127.0.0.1:${LB_PORT[$t]}/socket.io/"
    DEAD[$t]=0
    log "$t ($tag): nodes :${P1[$t]} :${P2[$t]} (pids ${N1_PID[$t]} ${N2_PID[$t]}), redis :${RPORT[$t]}, lb ${URL[$t]}"
}

stop_stack() {
    local t=$1 p
    for p in "${LB_PID[$t]}" "${N2_PID[$t]}" "${N1_PID[$t]}" "${REDIS_PID[$t]}"; do stop_pid "$p"; done
}

# clients the nodes of a stack hold now
node_clients() {
    local t=$1 a b
    if [ "$t" = refserver ]; then
        a=$(metric "${P1[$t]}" refserver_websocket_clients)
        b=$(metric "${P2[$t]}" refserver_websocket_clients)
    else
        a=$(sio_open "${P1[$t]}")
        b=$(sio_open "${P2[$t]}")
    fi
    echo $((${a:-0} + ${b:-0}))
}

# everything of the stack still there, the same lb workers?
stack_ok() {
    local t=$1 p now
    [ "${DEAD[$t]}" = 1 ] && return 1
    for p in "${REDIS_PID[$t]}" "${N1_PID[$t]}" "${N2_PID[$t]}" "${LB_PID[$t]}"; do
        kill -0 "$p" 2>/dev/null || { fail "$t: pid $p died (logs in $WORK)"; DEAD[$t]=1; return 1; }
    done
    now=$(tree "${LB_PID[$t]}" | tail -n +2 | sort | paste -sd ' ')
    if [ "$now" != "${LB_WORKERS[$t]}" ]; then
        fail "$t: an lb worker died and was restarted (workers were '${LB_WORKERS[$t]}', now '$now')"
        DEAD[$t]=1
        return 1
    fi
}

# run_loadgen NAME TARGET ARGS...: loadgen in the background (signals are handled at once) through TARGET's lb;
# the report goes to RUN_DIR/NAME.json. Sets LG_OK (1 pass) and JSON.
run_loadgen() {
    local name=$1 t=$2 rc=0 pid
    shift 2
    JSON=$RUN_DIR/$name.json
    LG_OK=0
    local urls
    read -ra urls <<<"${URL[$t]}"
    "$LOADGEN" --quiet --protocol socketio --event chat --out "$JSON" "$@" "${urls[@]}" >"$WORK/$name.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    untrack "$pid"
    if [ "$rc" -ne 0 ] || [ ! -s "$JSON" ]; then
        local why
        why=$(head -c 400 "$WORK/$name.out" | tr '\n' ' ')
        [ -s "$JSON" ] && why="$why verdict $(jget "$JSON" 'd["verdict"]["reasons"]'); clients $(jget "$JSON" 'd["clients"]'); totals $(jget "$JSON" 'd["totals"]')"
        fail "loadgen $name ($t) exit $rc: $why"
        return 0
    fi
    LG_OK=1
}

wait_idle() { # TARGET: until the nodes hold no client (10 s)
    local i
    for i in $(seq 100); do [ "$(node_clients "$1")" = 0 ] && return 0; sleep 0.1; done
    log "$1: nodes still hold $(node_clients "$1") clients 10 s after the run"
}

declare -A VAL NFAIL # VAL[measure.target] = space-separated values of the runs; NFAIL[measure.target] failed runs

# ---------------------------------------------------------------- a. memory per connection, fresh stacks
for t in "${TARGETS[@]}"; do
    start_stack "$t" mem
    sleep 1
    before=$(($(rss_kb "${N1_PID[$t]}") + $(rss_kb "${N2_PID[$t]}")))
    name=mem-$t
    JSON=$RUN_DIR/$name.json
    "$LOADGEN" --quiet --protocol socketio --event chat --out "$JSON" --clients "$MEM_N" --rounds 0 \
        --hold "$MEM_HOLD" --workers 2 --max-inflight "$BIG_INFLIGHT" --close-timeout "$BIG_CLOSE" --source "$SOURCES" \
        --room bench-mem \
        "${URL[$t]}" >"$WORK/$name.out" 2>&1 &
    lgpid=$!
    PIDS+=("$lgpid")
    held=0
    for i in $(seq 600); do
        [ "$(node_clients "$t")" = "$MEM_N" ] && { held=1; break; }
        kill -0 "$lgpid" 2>/dev/null || break
        sleep 0.1
    done
    after=""
    if [ "$held" = 1 ]; then
        sleep 1.5
        after=$(($(rss_kb "${N1_PID[$t]}") + $(rss_kb "${N2_PID[$t]}")))
    fi
    rc=0
    wait "$lgpid" || rc=$?
    untrack "$lgpid"
    stack_ok "$t" || true
    # the sample stands when every client was held; a failure (e.g. at close) is reported and marks it
    if [ "$held" = 1 ] && [ -n "$after" ]; then
        per=$(awk -v a="$after" -v b="$before" -v n="$MEM_N" 'BEGIN { printf "%.2f", (a - b) / n }')
        VAL[mem.$t]=$per VAL[membefore.$t]=$before VAL[memafter.$t]=$after
        log "a. memory $t: nodes' RSS $before KB -> $after KB with $MEM_N clients: $per KB per connection"
    fi
    if [ "$rc" -ne 0 ] || [ "$held" != 1 ] || [ -z "$after" ]; then
        NFAIL[mem.$t]=1
        fail "loadgen $name ($t, $MEM_N idle clients) exit $rc, all held: $held: $(head -c 400 "$WORK/$name.out" | tr '\n' ' ')"
    fi
    stop_stack "$t"
done

# ---------------------------------------------------------------- b. fan-out
FLOOR_NOTE=""
if [ -f "$FLOOR_SRC" ]; then
    cc -O2 -o "$FLOOR_BIN" "$FLOOR_SRC" || die "cannot compile $FLOOR_SRC"
else
    FLOOR_NOTE="floor skipped: $FLOOR_SRC not found (clone with shared/ beside the repo)"
    log "$FLOOR_NOTE"
fi
# fanout-floor keeps both ends of its N connections in one process: 2N + 8 descriptors must fit under ulimit -n.
NOFILE=$(ulimit -n)
declare -A FLOOR_MED FLOOR_MAX FLOOR_N FLOOR_LINE
run_floor() { # N ROUNDS
    local n=$1 pgid i line
    FLOOR_N[$n]=$(floor_n "$n")
    [ -x "$FLOOR_BIN" ] && [ -f "$FLOOR_SRC" ] || return 0
    # its own process group: when it fails half-way its forked reader can outlive it, so the group is killed after
    setsid "$FLOOR_BIN" "${FLOOR_N[$n]}" "$2" >"$WORK/floor-$n.out" 2>&1 &
    pgid=$!
    PIDS+=("$pgid")
    for i in $(seq 1200); do kill -0 "$pgid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pgid" 2>/dev/null || true
    wait "$pgid" 2>/dev/null || true
    untrack "$pgid"
    line=$(tail -1 "$WORK/floor-$n.out")
    FLOOR_MED[$n]=$(field median "$line")
    FLOOR_MAX[$n]=$(field max "$line" | tr -d ';')
    if [ -n "${FLOOR_MED[$n]}" ]; then FLOOR_LINE[$n]=$line; else log "fanout-floor ${FLOOR_N[$n]} failed: $line"; fi
    log "floor N=${FLOOR_N[$n]}: median ${FLOOR_MED[$n]:-?} ms, max ${FLOOR_MAX[$n]:-?} ms"
}

for t in "${TARGETS[@]}"; do start_stack "$t" main; done
# "direct": the refserver stack without the lb (loadgen spreads its clients over both nodes), so the node's own cost
# and the balancer's can be told apart; no Node counterpart (socket.io needs no different treatment, and time).
URL[direct]="ws://127.0.0.1:${P1[refserver]}/socket.io/ ws://127.0.0.1:${P2[refserver]}/socket.io/"
sleep 0.5

# fanout TAG N RUN TARGET ARGS...: one loadgen run, its p50/p99 (delivery) and round p99 into VAL
fanout() {
    local tag=$1 n=$2 r=$3 t=$4 p50 p99 rp99 name stack=$4
    shift 4
    [ "$t" = direct ] && stack=refserver
    [ "${DEAD[$stack]}" = 1 ] && return 0
    name=$tag-$t-$r
    run_loadgen "$name" "$t" --clients "$n" --payload "$PAYLOAD" --room "bench-$tag" --source "$SOURCES" "$@"
    stack_ok "$stack" || true
    if [ -s "$JSON" ] && [ "$(jget "$JSON" 'd["latency"]["count"]')" != 0 ]; then
        read -r p50 p99 rp99 < <(jget "$JSON" '"%s %s %s" % (d["latency"]["p50_ms"], d["latency"]["p99_ms"],
            sorted(x["duration_ms"] for x in d["rounds"])[max(0, -(-99 * len(d["rounds"]) // 100) - 1)])')
        add "$tag.50" "$t" "$p50"
        add "$tag.99" "$t" "$p99"
        add "$tag.r99" "$t" "$rp99"
        log "b. N=$n $t run $r: delivery p50 $p50 ms, p99 $p99 ms (round p99 $rp99 ms)$([ "$LG_OK" = 1 ] || echo ' FAILED')"
    fi
    [ "$LG_OK" = 1 ] || NFAIL[$tag.$t]=$((${NFAIL[$tag.$t]:-0} + 1))
    add "$tag.runs" "$t" "$([ "$LG_OK" = 1 ] && echo pass || echo FAIL)"
    wait_idle "$stack"
}

run_floor "$SMALL" "$FLOOR_ROUNDS"
for r in $(seq "$RUNS_SMALL"); do
    for t in "${TARGETS[@]}" direct; do
        fanout small "$SMALL" "$r" "$t" --rounds "$SMALL_ROUNDS" --interval "$SMALL_INTERVAL"
    done
done
run_floor "$BIG" "$FLOOR_ROUNDS"
for r in $(seq "$RUNS_BIG"); do
    for t in "${TARGETS[@]}" direct; do
        fanout big "$BIG" "$r" "$t" --rounds "$BIG_ROUNDS" --interval "$BIG_INTERVAL" --deadline "$BIG_DEADLINE" \
            --workers 2 --max-inflight "$BIG_INFLIGHT" --close-timeout "$BIG_CLOSE"
    done
done
for t in "${TARGETS[@]}"; do stack_ok "$t" || true; done

# ---------------------------------------------------------------- summary
verdict_max() { [ -z "$1" ] || [ "$1" = "-" ] && { echo "-"; return; }; awk -v v="${1%x}" -v l="$2" 'BEGIN { print (v <= l) ? "ok" : "MISSED" }'; }
# shellcheck disable=SC2059 # the format is the second argument on purpose
num() { if [ -n "$1" ]; then printf "$2" "$1"; else printf -- '-'; fi; }
# a median, with ! when a run behind it failed
mv() { local v; v=$(num "$(med "$1" "$2")" "$3"); [ "${NFAIL[${1%.*}.$2]:-0}" = 0 ] || v="$v!"; printf '%s' "$v"; }
row() { printf '%-38s %12s %12s %11s %14s  %s\n' "$@"; }

R_BIG99=$(ratio "$(med big.99 refserver)" "${FLOOR_MED[$BIG]:-}")
R_MEM=$(ratio "${VAL[mem.refserver]:-}" "${VAL[mem.socketio]:-}")
SMALL99=$(med small.99 refserver)
ELAPSED=$((SECONDS - T0))
FLOOR_BIG_LABEL="floor N=$BIG median / max (ms)"
[ "${FLOOR_N[$BIG]:-$BIG}" = "$BIG" ] || FLOOR_BIG_LABEL="floor N=${FLOOR_N[$BIG]} median / max (ms; fd limit)"
mkdir -p "$OUT_DIR"
{
    printf 'wsharness bench-socketio %s  (%s cores, %s, loopback; node %s)\n' "$STAMP" "$(nproc)" "$(uname -sr)" \
        "$("$NODE" --version)"
    printf 'each stack: 2 nodes on their own Redis behind build/lb --workers 2; loadgen --protocol socketio; %s s in all\n' \
        "$ELAPSED"
    printf 'direct: loadgen straight to the refserver stack'"'"'s 2 nodes (no lb), to tell the node'"'"'s cost from the lb'"'"'s\n'
    printf 'medians: N=%d of %d runs, N=%d of %d runs per stack, alternating; ! = a run behind the value failed\n\n' \
        "$SMALL" "$RUNS_SMALL" "$BIG" "$RUNS_BIG"
    row metric refserver socket.io ref/sio target verdict
    for tag in small big; do
        if [ "$tag" = small ]; then n=$SMALL; else n=$BIG; fi
        fm=${FLOOR_MED[$n]:-}
        row "N=$n delivery p50 (ms)" "$(mv "$tag.50" refserver %.2f)" "$(mv "$tag.50" socketio %.2f)" \
            "$(ratio "$(med "$tag.50" refserver)" "$(med "$tag.50" socketio)")" "" ""
        row "N=$n delivery p99 (ms)" "$(mv "$tag.99" refserver %.2f)" "$(mv "$tag.99" socketio %.2f)" \
            "$(ratio "$(med "$tag.99" refserver)" "$(med "$tag.99" socketio)")" \
            "$([ "$tag" = small ] && echo "<= $T_SMALL_MS ms")" \
            "$([ "$tag" = small ] && verdict_max "$SMALL99" "$T_SMALL_MS")"
        row "  p50 / floor median" "$(ratio "$(med "$tag.50" refserver)" "$fm")" "$(ratio "$(med "$tag.50" socketio)" "$fm")" "" "" ""
        row "  p99 / floor median" "$(ratio "$(med "$tag.99" refserver)" "$fm")" "$(ratio "$(med "$tag.99" socketio)" "$fm")" "" \
            "$([ "$tag" = big ] && echo "<= ${T_BIG_FLOOR}x")" "$([ "$tag" = big ] && verdict_max "$R_BIG99" "$T_BIG_FLOOR")"
        row "  round p99 (ms, send to last copy)" "$(mv "$tag.r99" refserver %.2f)" "$(mv "$tag.r99" socketio %.2f)" "" "" ""
        row "  round p99 / floor median" "$(ratio "$(med "$tag.r99" refserver)" "$fm")" \
            "$(ratio "$(med "$tag.r99" socketio)" "$fm")" "" "" ""
        row "  refserver direct, no lb: p50 / p99" "$(mv "$tag.50" direct %.2f) / $(mv "$tag.99" direct %.2f)" "" "" "" ""
        row "  direct p99 / floor median" "$(ratio "$(med "$tag.99" direct)" "$fm")" "" "" "" ""
        if [ "$tag" = small ]; then
            row "floor N=$SMALL median / max (ms)" "$(num "$fm" %s) / $(num "${FLOOR_MAX[$n]:-}" %s)" "" "" "" ""
        else
            row "$FLOOR_BIG_LABEL" "$(num "$fm" %s) / $(num "${FLOOR_MAX[$n]:-}" %s)" "" "" "" ""
        fi
    done
    row "memory per connection (KB, N=$MEM_N)" "$(num "${VAL[mem.refserver]:-}" %s)$([ -z "${NFAIL[mem.refserver]:-}" ] || echo '!')" \
        "$(num "${VAL[mem.socketio]:-}" %s)$([ -z "${NFAIL[mem.socketio]:-}" ] || echo '!')" \
        "$R_MEM" "<= ${T_MEM}x" "$(verdict_max "$R_MEM" "$T_MEM")"
    row "  nodes' RSS idle / with N (KB)" \
        "$(num "${VAL[membefore.refserver]:-}" %s)/$(num "${VAL[memafter.refserver]:-}" %s)" \
        "$(num "${VAL[membefore.socketio]:-}" %s)/$(num "${VAL[memafter.socketio]:-}" %s)" "" "" ""
    printf '\nruns (in order; p50, p99 in ms):\n'
    for tag in small big; do
        for t in "${TARGETS[@]}" direct; do
            printf '  %-5s %-9s p50 %-30s p99 %-30s %s\n' "$tag" "$t" "${VAL[$tag.50.$t]:--}" "${VAL[$tag.99.$t]:--}" \
                "${VAL[$tag.runs.$t]:--}"
        done
    done
    printf '\nN=%d: %d rounds %s apart, 1 emitter, %d B, deadline 5 s. N=%d: loadgen --workers 2 --max-inflight %d,\n' \
        "$SMALL" "$SMALL_ROUNDS" "$SMALL_INTERVAL" "$PAYLOAD" "$BIG" "$BIG_INFLIGHT"
    printf '  %d rounds %s apart, deadline %s. Delivery latency = arrival minus send time, over every copy of every\n' \
        "$BIG_ROUNDS" "$BIG_INTERVAL" "$BIG_DEADLINE"
    printf '  round; the floor (../shared/bench/fanout-floor.c) is one process write()ing N sockets, another reading\n'
    printf '  them: first write to last byte, median over %d rounds. --close-timeout %s at N=%d (both stacks).\n' \
        "$FLOOR_ROUNDS" "$BIG_CLOSE" "$BIG"
    printf 'Memory: fresh stacks; RSS of both nodes before and 1.5 s into holding %d idle clients through the lb\n' "$MEM_N"
    printf '  (loadgen --hold %s), per connection = delta / N. Node:' "$MEM_HOLD"
    printf ' socket.io with the Redis adapter, GC as it comes (no --expose-gc).\n'
    printf 'Everything (loadgen, 2 nodes, Redis, lb) shares %s cores: compare the ratios of one run.\n' "$(nproc)"
    if [ -n "$FLOOR_NOTE" ]; then printf '%s\n' "$FLOOR_NOTE"; fi
    for n in "$SMALL" "$BIG"; do [ -z "${FLOOR_LINE[$n]:-}" ] || printf 'floor: %s\n' "${FLOOR_LINE[$n]}"; done
    if [ "${#FAILURES[@]}" -gt 0 ]; then
        printf '\nFAILED RUNS:\n'
        for f in "${FAILURES[@]}"; do printf '  %s\n' "$f"; done
    fi
} | tee "$OUT"
log "written to $OUT, loadgen's JSON reports in $RUN_DIR/ ($ELAPSED s)"
[ "$FAILED" -eq 0 ] || { log "FAILED: see FAILED RUNS above"; exit 1; }
