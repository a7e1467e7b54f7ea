#!/usr/bin/env bash
# Interop layer: build/refserver against npm peers (ws), installed from the committed package-lock.json.
# Run from anywhere (scripts/run-tests.sh runs it from the repo root with WSH_BUILD=<abs build dir>).
# Output is TAP, so it carries the "# pass N" and "# fail N" lines the runner counts.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export WSH_BUILD=${WSH_BUILD:-$repo/build}

# node_modules/.package-lock.json is what npm ci writes last: missing or older than the lockfile means reinstall.
if [ ! -f "$here/node_modules/.package-lock.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
    (cd "$here" && npm ci --no-audit --no-fund)
fi

cd "$repo"
exec node --test --test-reporter=tap tests/interop/
