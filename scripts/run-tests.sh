#!/usr/bin/env bash
# Run test layers and print one closing line "N passed, N failed" over all of them.
# usage: scripts/run-tests.sh BUILD_DIR LAYER...   (layers: unit integration interop conformance)
# Each layer's runner prints its own detail; we count from its summary lines.
set -uo pipefail
build=$1; shift
export WSH_BUILD="$PWD/$build"
passed=0 failed=0
log=$(mktemp) failures=$(mktemp); trap 'rm -f "$log" "$failures"' EXIT

count() { # add the counts found in $log by the patterns for runner $1
    local p f
    case $1 in
    cmocka)
        p=$(grep -oE '^\[  PASSED  \] [0-9]+' "$log" | awk '{s+=$NF} END {print s+0}')
        f=$(grep -oE '^\[  FAILED  \] [0-9]+' "$log" | awk '{s+=$NF} END {print s+0}') ;;
    unittest)
        local ran; ran=$(grep -oE '^Ran [0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
        f=$(grep -oE '^FAILED \(.*\)' "$log" | grep -oE '(failures|errors)=[0-9]+' | cut -d= -f2 | awk '{s+=$1} END {print s+0}')
        p=$((ran - f)) ;;
    node)
        p=$(grep -oE '^# pass [0-9]+' "$log" | awk '{s+=$3} END {print s+0}')
        f=$(grep -oE '^# fail [0-9]+' "$log" | awk '{s+=$3} END {print s+0}') ;;
    esac
    passed=$((passed + p)); failed=$((failed + f))
}

run_layer() { # name runner command...
    local name=$1 runner=$2; shift 2
    echo "== $name"
    : >"$log"
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    count "$runner"
    # the failing tests' own lines, so the closing summary (all a CI log's tail may show) names them
    grep -E '^\[  FAILED  \] [a-z_]|^(FAIL|ERROR): |^ *not ok ' "$log" | sed "s|^|  $name: |" >>"$failures"
    if [ "$rc" -ne 0 ] && ! grep -qE '^\[  FAILED  \]|^FAILED \(|^# fail [1-9]' "$log"; then
        echo "== $name: runner exited $rc without a test verdict" | tee -a "$failures"; failed=$((failed + 1))
    fi
}

for layer in "$@"; do
    case $layer in
    unit)
        for t in "$build"/tests/test_*; do
            [ -x "$t" ] && run_layer "unit $(basename "$t")" cmocka "$t"
        done ;;
    integration)
        run_layer integration unittest python3 -m unittest discover -s tests/integration -p 'test_*.py' -v ;;
    interop)
        run_layer interop node tests/interop/run.sh ;;
    conformance) # the official socket.io-protocol suite; its mocha prints TAP like node --test
        run_layer conformance node tests/conformance/run.sh ;;
    esac
done
echo
[ -s "$failures" ] && { echo "failed:"; cat "$failures"; }
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
