#!/usr/bin/env bash
# Install (or, with --check, only verify) the Debian packages wsharness builds, tests and runs with.
# Used by `make deps` and, when something is missing, by every other make target.
set -euo pipefail

# build: compiler, libev, hiredis (RESP reader/formatter), OpenSSL, zlib, cmocka; fuzz: clang + its runtimes;
# jansson: loadgen's JSON report. run/test: redis-server, haproxy and nginx (the balancers scenarios compare with),
# python3 (integration tests, the scenario runner), node + npm (interop tests against npm peers), gnuplot (the
# comparison's latency plot), docker-compose (validates docker-compose.yml; there may be no engine to run it),
# chromium (headless: the browser test, tests/integration/test_browser.py, and the HTML reports read as a browser
# does), python3-junitparser (the tests read loadgen's --junit XML back with a JUnit reader).
PACKAGES=(build-essential pkg-config libev-dev libhiredis-dev libssl-dev zlib1g-dev libcmocka-dev libjansson-dev
          clang libclang-rt-14-dev redis-server haproxy nginx-light python3 nodejs npm openssl procps gnuplot-nox
          docker-compose chromium python3-junitparser)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# node and npm may come from outside Debian (e.g. nodesource or nvm): a working binary is enough.
filtered=()
for p in "${missing[@]}"; do
    case "$p" in
        nodejs) command -v node >/dev/null || filtered+=("$p") ;;
        npm) command -v npm >/dev/null || filtered+=("$p") ;;
        *) filtered+=("$p") ;;
    esac
done
missing=("${filtered[@]}")

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "${1:-}" = "--check" ]; then
    echo "deps: missing Debian packages: ${missing[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "deps: no apt-get here; install these packages (or their equivalents) by hand: ${missing[*]}" >&2
    exit 1
fi
SUDO=
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo
    else
        echo "deps: not root; run: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi
echo "deps: installing ${missing[*]}"
# Packaged servers (redis-server, haproxy, nginx) would start as system services on install; we only want their
# binaries, started by the tests and scenarios on free ports. policy-rc.d "101" tells invoke-rc.d not to start them.
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && made_policy=1
fi
cleanup_policy() { [ -n "$made_policy" ] && $SUDO rm -f "$policy"; true; }
trap cleanup_policy EXIT
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
