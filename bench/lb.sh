#!/usr/bin/env bash
# make bench-lb: our balancer (build/lb) beside HAProxy, in front of the same two refserver nodes on one Redis, with
# loadgen straight to the nodes ("direct") as the baseline. Runs alternate direct, lb, haproxy, direct, lb, haproxy...
# (3 of each per measure, medians reported), so that whatever else this machine does hits all three alike.
#
#   a. latency: 100 clients, 1 emitter, 60 rounds 50 ms apart, 100 B: delivery p50/p99, lb and haproxy minus direct,
#      lb / haproxy; the p99s beside fanout-floor's median for N=100 (../shared/bench/fanout-floor.c, built here)
#                                                                                  target lb <= 1.0x haproxy
#   b. throughput: 200 clients in 100 rooms of 2, every client emits 1 KB per round, rounds back to back:
#      messages delivered / rounds phase                                           target lb >= 1.0x haproxy
#   c. session rate: 5000 clients connect (upgrade) and close, no rounds: clients / connect phase
#                                                                                  target lb >= 1.0x haproxy
#   d. memory: a fresh balancer, its RSS (every process of it) before and with 9000 idle tunnels (loadgen --hold);
#      (after - before) / 9000                                                     target lb <= 0.5x haproxy
#   summary table on stdout and in results/bench/lb-<UTC time>.txt, loadgen's JSON of every run in
#   results/bench/lb-<UTC time>/.
#
# Both balancers: one process (lb --workers 1, HAProxy nbthread 1), roundrobin, cookie SRVID inserted, no health
# checks, no logging, tunnel timeout 1h. Every process started here is stopped by PID on exit.
# Exit: 0 measured (targets missed are reported, not fatal), 1 a run failed (a loadgen verdict other than pass, a
# balancer or node that died, a worker lb had to restart).
set -euo pipefail

ROOT=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel 2>/dev/null ||
       (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd))
cd "$ROOT"
BUILD=${BUILD:-build}
REFSERVER=$BUILD/refserver
LOADGEN=$BUILD/loadgen
LB=$BUILD/lb
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
FLOOR_SRC=$ROOT/../shared/bench/fanout-floor.c
RUNS=${RUNS:-3}
SOURCES=127.0.0.2-127.0.0.20
TARGETS=(direct lb haproxy)
# a.
LAT_CLIENTS=100 LAT_ROUNDS=60 LAT_INTERVAL=50ms LAT_PAYLOAD=100
# b.
TP_CLIENTS=200 TP_ROOMS=100 TP_ROUNDS=500 TP_PAYLOAD=1024
# c.
SESS_CLIENTS=5000 SESS_INFLIGHT=1000
# d.
IDLE_N=${IDLE_N:-9000} IDLE_HOLD=6s
HAP_MAXCONN_WANTED=20000

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_DIR=results/bench
OUT=$OUT_DIR/lb-$STAMP.txt
RUN_DIR=$OUT_DIR/lb-$STAMP
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsh-bench-lb.XXXXXX")
PIDS=()
FAILED=0
FAILURES=()
T0=$SECONDS

log() { printf 'bench-lb: %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# A process that has been waited for leaves the list, so its id, if reused, is never signalled.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


for f in "$REFSERVER" "$LOADGEN" "$LB"; do [ -x "$f" ] || die "$f is missing: run make first"; done
[ -x "$HAPROXY" ] || die "$HAPROXY is missing (apt-get install haproxy)"
command -v redis-server >/dev/null || die "redis-server is not installed (make deps installs it)"
command -v python3 >/dev/null || die "python3 is needed to read loadgen's JSON"
mkdir -p "$RUN_DIR"





rss_sum() { local t=0 p; for p in $(tree "$1"); do t=$((t + $(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status"))); done; echo "$t"; }
cpu_sum() { local p; for p in $(tree "$1"); do cpu_s "$p"; done | awk '{ s += $1 } END { printf "%.3f", s }'; }

# ---------------------------------------------------------------- the nodes
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --logfile "$WORK/redis.log" >/dev/null 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_for "$REDIS_PID" redis-server redis_ok "$RPORT"

start_node() { # ID -> NODE_PORT NODE_PID
    NODE_PORT=$(free_port)
    "$REFSERVER" --listen "127.0.0.1:$NODE_PORT" --redis "redis://127.0.0.1:$RPORT" --node-id "$1" \
        --log-level warn >"$WORK/$1.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    wait_for "$NODE_PID" "refserver $1" http_up "$NODE_PORT"
}
start_node n1
P1=$NODE_PORT N1_PID=$NODE_PID
start_node n2
P2=$NODE_PORT N2_PID=$NODE_PID
node_clients() {
    local a b
    a=$(metric "$P1" refserver_websocket_clients)
    b=$(metric "$P2" refserver_websocket_clients)
    echo $((${a:-0} + ${b:-0}))
}

# ---------------------------------------------------------------- the balancers
# start_lb TAG -> BAL_PORT BAL_PID (the master; its workers are its children)
start_lb() {
    BAL_PORT=$(free_port)
    "$LB" --listen "127.0.0.1:$BAL_PORT" --backend "n1=127.0.0.1:$P1" --backend "n2=127.0.0.1:$P2" \
        --balance roundrobin --sticky cookie --health off --workers 1 \
        --timeout tunnel=1h --timeout client=30s --timeout server=30s --log-level warn >"$WORK/lb-$1.log" 2>&1 &
    BAL_PID=$!
    PIDS+=("$BAL_PID")
    wait_for "$BAL_PID" "lb ($1)" http_up "$BAL_PORT"
    # a worker that dies is restarted by the master: remember who the workers were, to notice
    BAL_WORKERS=$(tree "$BAL_PID" | tail -n +2 | sort | paste -sd ' ')
}

hap_cfg() { # PORT MAXCONN FILE
    cat >"$3" <<EOF
global
    maxconn $2
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
frontend fe
    bind 127.0.0.1:$1
    default_backend nodes
backend nodes
    balance roundrobin
    cookie SRVID insert indirect nocache
    server n1 127.0.0.1:$P1 cookie n1
    server n2 127.0.0.1:$P2 cookie n2
EOF
    "$HAPROXY" -c -q -f "$3" >"$3.check" 2>&1 || { cat "$3.check" >&2; die "haproxy -c rejects $3"; }
}

# HAProxy sizes its descriptor limit from maxconn (2 per connection plus a few) and, with strict-limits (the default
# since 2.3), refuses to start when it cannot raise the limit that far. Ask for HAP_MAXCONN_WANTED first; when refused,
# take the largest maxconn whose limit fits under ours.
HAP_MAXCONN=$HAP_MAXCONN_WANTED
HAP_NOTE=""
start_haproxy() { # TAG -> BAL_PORT BAL_PID
    local i line want have
    BAL_PORT=$(free_port)
    hap_cfg "$BAL_PORT" "$HAP_MAXCONN" "$WORK/haproxy-$1.cfg"
    "$HAPROXY" -db -f "$WORK/haproxy-$1.cfg" >"$WORK/haproxy-$1.log" 2>&1 &
    BAL_PID=$!
    PIDS+=("$BAL_PID")
    for i in $(seq 100); do
        http_up "$BAL_PORT" && break
        if ! kill -0 "$BAL_PID" 2>/dev/null; then
            wait "$BAL_PID" 2>/dev/null || true
            untrack "$BAL_PID"
            line=$(grep -o 'Cannot raise FD limit to [0-9]*, limit is [0-9]*' "$WORK/haproxy-$1.log" || true)
            if [ -z "$line" ] || [ -n "$HAP_NOTE" ]; then
                cat "$WORK/haproxy-$1.log" >&2
                die "haproxy ($1) exited during startup"
            fi
            want=$(awk '{ print $6 }' <<<"${line//,/}")
            have=$(awk '{ print $NF }' <<<"$line")
            HAP_MAXCONN=$(((have - (want - 2 * HAP_MAXCONN)) / 2))
            HAP_NOTE="HAProxy with maxconn $HAP_MAXCONN_WANTED computes ulimit-n $want > $have (the hard limit) and refuses to start; maxconn $HAP_MAXCONN used (ulimit-n $((HAP_MAXCONN * 2 + want - 2 * HAP_MAXCONN_WANTED)))"
            log "$HAP_NOTE"
            start_haproxy "$1"
            return
        fi
        sleep 0.1
    done
    http_up "$BAL_PORT" || die "haproxy ($1) did not come up within 10 s"
    BAL_WORKERS=""
}

start_balancer() { # TARGET TAG
    case $1 in
        lb) start_lb "$2" ;;
        haproxy) start_haproxy "$2" ;;
    esac
}

# Did the balancer survive? (lb: the master and the same workers; a restart means a worker died.)
balancer_ok() { # TARGET PID WORKERS LOG
    local now
    kill -0 "$2" 2>/dev/null || { fail "$1 (pid $2) died; log $4 ends: $(tail -5 "$4" | paste -sd ' ')"; return 1; }
    if [ "$1" = lb ]; then
        now=$(tree "$2" | tail -n +2 | sort | paste -sd ' ')
        if [ "$now" != "$3" ] || grep -q 'died' "$4"; then
            fail "lb: a worker died and was restarted (workers were '$3', now '$now'); log $4 ends: $(tail -5 "$4" | paste -sd ' ')"
            return 1
        fi
    fi
}

declare -A URLS PIDOF WORKERSOF LOGOF DEAD
URLS[direct]="ws://127.0.0.1:$P1/ws ws://127.0.0.1:$P2/ws"
for t in lb haproxy; do
    start_balancer "$t" main
    URLS[$t]="ws://127.0.0.1:$BAL_PORT/ws"
    PIDOF[$t]=$BAL_PID
    WORKERSOF[$t]=$BAL_WORKERS
    LOGOF[$t]=$WORK/$t-main.log
    DEAD[$t]=0
done
DEAD[direct]=0
LB_MAIN_PID=${PIDOF[lb]}
HAP_MAIN_PID=${PIDOF[haproxy]}
log "nodes :$P1 :$P2 (redis :$RPORT); lb ${URLS[lb]} (pid $LB_MAIN_PID); haproxy ${URLS[haproxy]} (pid $HAP_MAIN_PID)"

# run_loadgen NAME TARGET ARGS... : loadgen in the background (signals are handled at once), against TARGET's URLs;
# the report goes to RUN_DIR/NAME.json. Sets LG_OK (1 pass) and JSON.
run_loadgen() {
    local name=$1 target=$2 rc=0 pid
    shift 2
    JSON=$RUN_DIR/$name.json
    LG_OK=0
    # shellcheck disable=SC2086 # the URL list splits on purpose
    "$LOADGEN" --quiet --out "$JSON" "$@" ${URLS[$target]} >"$WORK/$name.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    untrack "$pid"
    if [ "$rc" -ne 0 ] || [ ! -s "$JSON" ]; then
        fail "loadgen $name ($target) exit $rc: $(head -c 600 "$WORK/$name.out" | tr '\n' ' ')"
        [ -s "$JSON" ] && log "  verdict: $(jget "$JSON" 'd["verdict"]["reasons"]') clients: $(jget "$JSON" 'd["clients"]')"
        return 0
    fi
    LG_OK=1
}

after_run() { # TARGET: the balancer still there?
    [ "$1" = direct ] && return 0
    [ "${DEAD[$1]}" = 1 ] && return 0
    balancer_ok "$1" "${PIDOF[$1]}" "${WORKERSOF[$1]}" "${LOGOF[$1]}" || DEAD[$1]=1
    for p in "$N1_PID" "$N2_PID" "$REDIS_PID"; do kill -0 "$p" 2>/dev/null || die "a node or redis (pid $p) died; logs in $WORK"; done
}

declare -A VAL # VAL[measure.target] = space-separated values of the runs


# ---------------------------------------------------------------- a. latency through a tunnel
FLOOR_NOTE="" FLOOR_LINE="" FLOOR_MEDIAN="" FLOOR_MAX=""
if [ -f "$FLOOR_SRC" ]; then
    cc -O2 -o "$WORK/fanout-floor" "$FLOOR_SRC" || die "cannot compile $FLOOR_SRC"
    # its own process group: when it fails half-way its forked reader can outlive it, so the group is killed after
    setsid "$WORK/fanout-floor" "$LAT_CLIENTS" "$LAT_ROUNDS" >"$WORK/floor.out" 2>&1 &
    FLOOR_PID=$!
    PIDS+=("$FLOOR_PID")
    for i in $(seq 600); do kill -0 "$FLOOR_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$FLOOR_PID" 2>/dev/null || true
    wait "$FLOOR_PID" 2>/dev/null || true
    FLOOR_LINE=$(tail -1 "$WORK/floor.out")
    FLOOR_MEDIAN=$(field median "$FLOOR_LINE")
    FLOOR_MAX=$(field max "$FLOOR_LINE" | tr -d ';')
    [ -n "$FLOOR_MEDIAN" ] || { log "fanout-floor failed: $FLOOR_LINE"; FLOOR_LINE=""; }
    log "floor N=$LAT_CLIENTS: median ${FLOOR_MEDIAN:-?} ms, max ${FLOOR_MAX:-?} ms"
else
    FLOOR_NOTE="floor skipped: $FLOOR_SRC not found (clone with shared/ beside the repo)"
    log "$FLOOR_NOTE"
fi

for r in $(seq "$RUNS"); do
    for t in "${TARGETS[@]}"; do
        [ "${DEAD[$t]}" = 1 ] && continue
        run_loadgen "a-$t-$r" "$t" --clients "$LAT_CLIENTS" --emitters 1 --rounds "$LAT_ROUNDS" \
            --interval "$LAT_INTERVAL" --payload "$LAT_PAYLOAD" --room "lat-$t-$r" --source "$SOURCES"
        after_run "$t"
        [ "$LG_OK" = 1 ] || continue
        read -r p50 p99 rp99 < <(jget "$JSON" '"%s %s %s" % (d["latency"]["p50_ms"], d["latency"]["p99_ms"],
            sorted(x["duration_ms"] for x in d["rounds"])[max(0, -(-99 * len(d["rounds"]) // 100) - 1)])')
        add a50 "$t" "$p50"
        add a99 "$t" "$p99"
        add around99 "$t" "$rp99"
        log "a. latency $t run $r: p50 $p50 ms, p99 $p99 ms (round p99 $rp99 ms)"
    done
done

# ---------------------------------------------------------------- b. throughput, 1 KB messages
for r in $(seq "$RUNS"); do
    for t in "${TARGETS[@]}"; do
        [ "${DEAD[$t]}" = 1 ] && continue
        [ "$t" = direct ] || cpu0=$(cpu_sum "${PIDOF[$t]}")
        run_loadgen "b-$t-$r" "$t" --clients "$TP_CLIENTS" --rooms "$TP_ROOMS" --room "tp-$t-$r" \
            --emitters "$TP_CLIENTS" --rounds "$TP_ROUNDS" --interval 0 --payload "$TP_PAYLOAD" --source "$SOURCES"
        [ "$t" = direct ] || cpu1=$(cpu_sum "${PIDOF[$t]}")
        after_run "$t"
        [ "$LG_OK" = 1 ] || continue
        read -r rate n < <(jget "$JSON" '"%.0f %d" % (d["totals"]["received"] / (d["phases"]["rounds_ms"] / 1e3), d["totals"]["received"])')
        add b "$t" "$rate"
        if [ "$t" != direct ]; then
            add bcpu "$t" "$(awk -v a="$cpu0" -v b="$cpu1" -v n="$n" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }')"
        fi
        log "b. throughput $t run $r: $rate msgs/s ($n messages)"
    done
done

# ---------------------------------------------------------------- c. new sessions per second
for r in $(seq "$RUNS"); do
    for t in "${TARGETS[@]}"; do
        [ "${DEAD[$t]}" = 1 ] && continue
        [ "$t" = direct ] || cpu0=$(cpu_sum "${PIDOF[$t]}")
        run_loadgen "c-$t-$r" "$t" --clients "$SESS_CLIENTS" --rounds 0 --max-inflight "$SESS_INFLIGHT" \
            --room "sess-$t-$r" --source "$SOURCES"
        [ "$t" = direct ] || cpu1=$(cpu_sum "${PIDOF[$t]}")
        after_run "$t"
        [ "$LG_OK" = 1 ] || continue
        rate=$(jget "$JSON" '"%.0f" % (d["clients"]["connected"] / (d["phases"]["connect_ms"] / 1e3))')
        add c "$t" "$rate"
        if [ "$t" != direct ]; then # connect, upgrade and close: all of the session's CPU
            add ccpu "$t" "$(awk -v a="$cpu0" -v b="$cpu1" -v n="$SESS_CLIENTS" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')"
        fi
        log "c. sessions $t run $r: $rate /s"
    done
done

# ---------------------------------------------------------------- d. RSS per idle tunnel, a fresh balancer each run
for r in $(seq "$RUNS"); do
    for t in lb haproxy; do
        [ "${DEAD[$t]}" = 1 ] && continue
        for i in $(seq 100); do [ "$(node_clients)" = 0 ] && break; sleep 0.1; done
        start_balancer "$t" "idle-$r"
        sleep 0.5
        before=$(rss_sum "$BAL_PID")
        name=d-$t-$r
        JSON=$RUN_DIR/$name.json
        "$LOADGEN" --quiet --out "$JSON" --clients "$IDLE_N" --rounds 0 --hold "$IDLE_HOLD" --workers 2 \
            --max-inflight "$SESS_INFLIGHT" --room "idle-$t-$r" --source "$SOURCES" "ws://127.0.0.1:$BAL_PORT/ws" \
            >"$WORK/$name.out" 2>&1 &
        lgpid=$!
        PIDS+=("$lgpid")
        held=0
        for i in $(seq 300); do
            [ "$(node_clients)" = "$IDLE_N" ] && { held=1; break; }
            kill -0 "$lgpid" 2>/dev/null || break
            sleep 0.1
        done
        after=""
        if [ "$held" = 1 ]; then
            sleep 0.5
            after=$(rss_sum "$BAL_PID")
        fi
        rc=0
        wait "$lgpid" || rc=$?
        untrack "$lgpid"
        dead_before=${DEAD[$t]}
        balancer_ok "$t" "$BAL_PID" "$BAL_WORKERS" "$WORK/$t-idle-$r.log" || DEAD[$t]=1
        stop_pid "$BAL_PID"
        if [ "$rc" -ne 0 ] || [ "$held" != 1 ]; then
            fail "loadgen $name ($t, $IDLE_N idle tunnels) exit $rc, all held: $held: $(head -c 600 "$WORK/$name.out" | tr '\n' ' ')"
            continue
        fi
        [ "${DEAD[$t]}" = "$dead_before" ] || continue
        per=$(awk -v a="$after" -v b="$before" -v n="$IDLE_N" 'BEGIN { printf "%.2f", (a - b) / n }')
        add d "$t" "$per"
        add dbefore "$t" "$before"
        add dafter "$t" "$after"
        log "d. idle tunnels $t run $r: RSS $before KB -> $after KB with $IDLE_N: $per KB per tunnel"
    done
done

# the long-running balancers still fine at the end?
for t in lb haproxy; do after_run "$t"; done

# ---------------------------------------------------------------- summary
diffv() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", a - b }' || echo "-"; }
verdict_max() { [ "$1" = "-" ] && { echo "-"; return; }; awk -v v="${1%x}" -v l="$2" 'BEGIN { print (v <= l) ? "ok" : "MISSED" }'; }
verdict_min() { [ "$1" = "-" ] && { echo "-"; return; }; awk -v v="${1%x}" -v l="$2" 'BEGIN { print (v >= l) ? "ok" : "MISSED" }'; }
# shellcheck disable=SC2059 # the format is the second argument on purpose
num() { if [ -n "$1" ]; then printf "$2" "$1"; else printf '-'; fi; }
row() { printf '%-40s %11s %12s %12s %11s  %-9s %s\n' "$@"; }

declare -A M # medians
for m in a50 a99 around99 b bcpu c ccpu d dbefore dafter; do
    for t in direct lb haproxy; do M[$m.$t]=$(med "$m" "$t"); done
done
R_A50=$(ratio "${M[a50.lb]}" "${M[a50.haproxy]}")
R_A99=$(ratio "${M[a99.lb]}" "${M[a99.haproxy]}")
R_B=$(ratio "${M[b.lb]}" "${M[b.haproxy]}")
R_C=$(ratio "${M[c.lb]}" "${M[c.haproxy]}")
R_D=$(ratio "${M[d.lb]}" "${M[d.haproxy]}")
ELAPSED=$((SECONDS - T0))
{
    printf 'wsharness bench-lb %s  (%s cores, %s, loopback; HAProxy %s)\n' "$STAMP" "$(nproc)" "$(uname -sr)" \
        "$("$HAPROXY" -v | awk 'NR == 1 { print $3 }')"
    printf 'medians of %s runs each, run in turn direct, lb, haproxy; lb --workers 1, HAProxy nbthread 1; %s s in all\n\n' \
        "$RUNS" "$ELAPSED"
    row metric direct lb haproxy lb/haproxy target verdict
    row "a. delivery p50 (ms)" "$(num "${M[a50.direct]}" %.3f)" "$(num "${M[a50.lb]}" %.3f)" "$(num "${M[a50.haproxy]}" %.3f)" \
        "$R_A50" "<= 1.0x" "$(verdict_max "$R_A50" 1.0)"
    row "a. delivery p99 (ms)" "$(num "${M[a99.direct]}" %.3f)" "$(num "${M[a99.lb]}" %.3f)" "$(num "${M[a99.haproxy]}" %.3f)" \
        "$R_A99" "<= 1.0x" "$(verdict_max "$R_A99" 1.0)"
    row "a.   added p50 over direct (ms)" "" "$(diffv "${M[a50.lb]}" "${M[a50.direct]}")" \
        "$(diffv "${M[a50.haproxy]}" "${M[a50.direct]}")" "" "" ""
    row "a.   added p99 over direct (ms)" "" "$(diffv "${M[a99.lb]}" "${M[a99.direct]}")" \
        "$(diffv "${M[a99.haproxy]}" "${M[a99.direct]}")" "" "" ""
    row "a.   delivery p99 / floor median" "$(ratio "${M[a99.direct]}" "$FLOOR_MEDIAN")" "$(ratio "${M[a99.lb]}" "$FLOOR_MEDIAN")" \
        "$(ratio "${M[a99.haproxy]}" "$FLOOR_MEDIAN")" "" "" ""
    row "a.   round p99 (ms, send to last copy)" "$(num "${M[around99.direct]}" %.3f)" "$(num "${M[around99.lb]}" %.3f)" \
        "$(num "${M[around99.haproxy]}" %.3f)" "" "" ""
    row "a.   round p99 / floor median" "$(ratio "${M[around99.direct]}" "$FLOOR_MEDIAN")" \
        "$(ratio "${M[around99.lb]}" "$FLOOR_MEDIAN")" "$(ratio "${M[around99.haproxy]}" "$FLOOR_MEDIAN")" "" "" ""
    row "a.   floor N=$LAT_CLIENTS median / max (ms)" "$(num "$FLOOR_MEDIAN" %s) / $(num "$FLOOR_MAX" %s)" "" "" "" "" ""
    row "b. 1 KB messages delivered per s" "$(num "${M[b.direct]}" %.0f)" "$(num "${M[b.lb]}" %.0f)" "$(num "${M[b.haproxy]}" %.0f)" \
        "$R_B" ">= 1.0x" "$(verdict_min "$R_B" 1.0)"
    row "b.   against direct" "" "$(ratio "${M[b.lb]}" "${M[b.direct]}")" "$(ratio "${M[b.haproxy]}" "${M[b.direct]}")" "" "" ""
    row "b.   balancer CPU per message (us)" "" "$(num "${M[bcpu.lb]}" %s)" "$(num "${M[bcpu.haproxy]}" %s)" \
        "$(ratio "${M[bcpu.lb]}" "${M[bcpu.haproxy]}")" "" ""
    row "c. new WebSocket sessions per s" "$(num "${M[c.direct]}" %.0f)" "$(num "${M[c.lb]}" %.0f)" "$(num "${M[c.haproxy]}" %.0f)" \
        "$R_C" ">= 1.0x" "$(verdict_min "$R_C" 1.0)"
    row "c.   against direct" "" "$(ratio "${M[c.lb]}" "${M[c.direct]}")" "$(ratio "${M[c.haproxy]}" "${M[c.direct]}")" "" "" ""
    row "c.   balancer CPU per session (us)" "" "$(num "${M[ccpu.lb]}" %s)" "$(num "${M[ccpu.haproxy]}" %s)" \
        "$(ratio "${M[ccpu.lb]}" "${M[ccpu.haproxy]}")" "" ""
    row "d. RSS per idle tunnel (KB, N=$IDLE_N)" "" "$(num "${M[d.lb]}" %s)" "$(num "${M[d.haproxy]}" %s)" \
        "$R_D" "<= 0.5x" "$(verdict_max "$R_D" 0.5)"
    row "d.   RSS idle / with N tunnels (KB)" "" "$(num "${M[dbefore.lb]}" %s)/$(num "${M[dafter.lb]}" %s)" \
        "$(num "${M[dbefore.haproxy]}" %s)/$(num "${M[dafter.haproxy]}" %s)" "" "" ""
    printf '\nruns (in order):\n'
    for m in a50 a99 b c d; do
        printf '  %-9s' "$m"
        for t in direct lb haproxy; do printf ' %s: %-28s' "$t" "${VAL[$m.$t]:--}"; done
        printf '\n'
    done
    printf '\na: %d clients on one room, 1 emitter, %d rounds %s apart, %d B; latency = arrival minus send time.\n' \
        "$LAT_CLIENTS" "$LAT_ROUNDS" "$LAT_INTERVAL" "$LAT_PAYLOAD"
    printf 'b: %d clients in %d rooms of 2, all emit each round, %d rounds back to back (--interval 0), %d B:\n' \
        "$TP_CLIENTS" "$TP_ROOMS" "$TP_ROUNDS" "$TP_PAYLOAD"
    printf '   delivered / rounds phase; a round waits for its last delivery, so this is latency-bound, not bandwidth.\n'
    printf 'c: %d clients, --max-inflight %d, no rounds: connected / connect phase (TCP, upgrade, cookie).\n' \
        "$SESS_CLIENTS" "$SESS_INFLIGHT"
    printf 'd: a fresh balancer per run; RSS of all its processes (lb: master + worker) before and with %d idle\n' "$IDLE_N"
    printf '   tunnels (loadgen --hold %s, 2 workers), per tunnel = delta / N. lb: max-connections derived from its descriptors.\n' "$IDLE_HOLD"
    printf 'HAProxy: maxconn %s. %s\n' "$HAP_MAXCONN" "$HAP_NOTE"
    printf 'Balancer CPU: utime+stime of its processes over the run / messages or sessions.\n'
    printf 'Everything (loadgen, 2 nodes, Redis, the balancer) shares %s cores with whatever else runs here:\n' "$(nproc)"
    printf 'compare the ratios of one run, not absolute numbers across runs.\n'
    if [ -n "$FLOOR_NOTE" ]; then printf '%s\n' "$FLOOR_NOTE"; fi
    if [ -n "$FLOOR_LINE" ]; then printf '%s\n' "$FLOOR_LINE"; fi
    if [ "${#FAILURES[@]}" -gt 0 ]; then
        printf '\nFAILED RUNS:\n'
        for f in "${FAILURES[@]}"; do printf '  %s\n' "$f"; done
    fi
} | tee "$OUT"
log "written to $OUT, loadgen's JSON reports in $RUN_DIR/ ($ELAPSED s)"
[ "$FAILED" -eq 0 ] || exit 1
