# shellcheck shell=bash
# Helpers shared by the benchmark scripts (bench/run.sh, bench/lb.sh, bench/socketio.sh), sourced after each has
# defined log() (its own prefix) and its globals: PIDS (every process it started, oldest first), WORK (its log
# directory), FAILED and FAILURES, NOFILE (ulimit -n), and VAL (measure.target -> the runs' values) where used.
# WAIT_S bounds wait_for (default 10 s).

# Stop one process we started: SIGTERM, up to 5 s, then SIGKILL; it leaves PIDS.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; untrack "$pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && { log "pid $pid ignored SIGTERM; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
    wait "$pid" 2>/dev/null || true
    untrack "$pid"
}

untrack() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# The EXIT trap: stop everything, newest first; keep the logs when something failed.
cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    if [ "$rc" -eq 0 ] && [ "$FAILED" -eq 0 ]; then rm -rf "$WORK"; else log "logs kept in $WORK"; fi
    exit "$rc"
}

die() { log "$*"; FAILED=1; exit 1; }
fail() { log "FAILED: $*"; FAILURES+=("$*"); FAILED=1; }

# A loopback TCP port nobody listens on, below the ephemeral range (clients use that one by the thousand).
# Each server is up before the next port is picked, so two picks cannot collide.
free_port() {
    local p i
    for i in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    log "no free port found"
    return 1
}

# First line of the answer to GET PATH (empty when nothing answers); with all=1 the whole answer.
http_get() {
    local port=$1 path=$2 all=${3:-0}
    ( exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
      printf 'GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' "$path" >&3
      if [ "$all" = 1 ]; then timeout 5 cat <&3; else IFS= read -r -t 2 line <&3 && printf '%s\n' "$line"; fi
    ) 2>/dev/null || true
}
http_up() { [[ $(http_get "$1" /) == "HTTP/1.1 200"* ]]; }
metric() { http_get "$1" /metrics 1 | awk -v m="$2" '$1 == m { print $2 }' | tr -d '\r'; }

redis_ok() {
    local line
    line=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
             printf 'PING\r\n' >&3; IFS= read -r -t 2 l <&3 && printf '%s' "$l") 2>/dev/null) || return 1
    [[ $line == "+PONG"* ]]
}

wait_for() { # PID WHAT CMD...: until CMD succeeds (WAIT_S seconds), as long as PID lives
    local pid=$1 what=$2 i limit=${WAIT_S:-10}
    shift 2
    for i in $(seq $((limit * 10))); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || die "$what exited during startup (log: $WORK)"
        sleep 0.1
    done
    die "$what did not come up within $limit s"
}

# jget FILE EXPR: a value from a loadgen JSON report (EXPR is Python over d, the parsed document)
jget() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# field VALUE-AFTER LINE: the number after a word in a line (fanout-floor's summary)
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) { print $(i + 1); exit } }' <<<"$2"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# A process and its children (lb: the master and its workers).
tree() { local p=$1; echo "$p"; cat /proc/"$p"/task/*/children 2>/dev/null | tr ' ' '\n' | sed '/^$/d' || true; }

# fanout-floor keeps both ends of its N connections in one process: 2N + 8 descriptors must fit under ulimit -n.
floor_n() { local n=$1 max; [ "$NOFILE" = unlimited ] && { echo "$n"; return; }; max=$(((NOFILE - 10) / 2)); echo $((n < max ? n : max)); }

ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }' || echo "-"; }
add() { VAL[$1.$2]="${VAL[$1.$2]:-}${VAL[$1.$2]:+ }$3"; }
median() { # "v1 v2 v3" -> the median (empty when none)
    [ -n "${1:-}" ] || { echo ""; return; }
    tr ' ' '\n' <<<"$1" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
med() { median "${VAL[$1.$2]:-}"; }
