#!/usr/bin/env bash
# Conformance layer: the official socket.io-protocol test suite (unchanged, in socket.io-protocol/) against
# build/refserver --profile conformance. Output is TAP ("# pass N", "# fail N"), as scripts/run-tests.sh counts.
# The suite's URL is hardwired to http://localhost:3000, so refserver must have that port: taken means a clear
# failure, never a run against whatever holds it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${WSH_BUILD:-$repo/build}
port=3000

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "# conformance: skipped: node and npm are needed (make deps installs them)"
    exit 0
fi
[ -x "$build/refserver" ] || { echo "conformance: no $build/refserver (run make first)" >&2; exit 2; }

# A copy outside the repository, so npm writes node_modules there; reinstalled only when the lockfile changed
# (node_modules/.package-lock.json is what npm ci writes last).
work=$build/conformance
mkdir -p "$work"
cp -f "$here"/socket.io-protocol/{test-suite.js,node-imports.js,package.json,package-lock.json} "$work/"
if [ ! -f "$work/node_modules/.package-lock.json" ] ||
    [ "$work/package-lock.json" -nt "$work/node_modules/.package-lock.json" ]; then
    (cd "$work" && npm ci --no-audit --no-fund >&2)
fi

# Listen where the suite's "localhost" connects first (127.0.0.1, or ::1 where that comes first).
addr=$(node -e 'require("dns").lookup("localhost", (e, a, f) => console.log(e ? "127.0.0.1" : f === 6 ? `[${a}]` : a))')
host=${addr//[][]/}
log=$(mktemp)
pid=
stop() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; fi
    rm -f "$log"
}
trap stop EXIT
probe() { # refserver's GET / answers "ok <node-id>": proof that it, not something else, has the port
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "GET / HTTP/1.0\r\n\r\n" >&3 && cat <&3' _ "$host" "$port" \
        2>/dev/null | grep -q "^ok wsh-conformance"
}
if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    echo "conformance: $addr:$port is taken; the suite's URL is fixed to http://localhost:$port: free it and rerun" >&2
    exit 1
fi
"$build/refserver" --listen "$addr:$port" --redis none --node-id wsh-conformance --profile conformance \
    --log-level warn 2>"$log" &
pid=$!
for _ in $(seq 50); do # up to 10 s: refserver binds at once, or exits 2 when it cannot
    probe && break
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" || true
        pid=
        echo "conformance: refserver could not start on $addr:$port: $(cat "$log")" >&2
        exit 1
    fi
    sleep 0.2
done
probe || { echo "conformance: refserver did not answer on $addr:$port" >&2; exit 1; }

cd "$work"
set +e
# Bounded: mocha waits for the client's sockets to end, which a broken server could hold open forever.
timeout -k 5 300 npx --no-install mocha --reporter tap test-suite.js
rc=$?
[ "$rc" -eq 124 ] && echo "conformance: the suite did not finish within 300 s" >&2
set -e
if ! kill -0 "$pid" 2>/dev/null; then
    echo "conformance: refserver died during the suite: $(cat "$log")" >&2
    rc=1
fi
exit "$rc"
