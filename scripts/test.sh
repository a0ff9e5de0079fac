#!/usr/bin/env bash
# Runs every test with one command:
#   1. scripts/deps.sh, then a normal build (build/) and an ASan+UBSan build
#      (build-asan/)
#   2. a private PostgreSQL + RabbitMQ in a fresh var/test-stack on free
#      ports; DATABASE_URL, AMQP_URL, STACK_DIR and STACK_SH (this repo's
#      scripts/stack.sh, so test_faults can run a stack of its own) are
#      exported to the tests
#   3. ctest in build/ (all but the tests labelled "agent", which run the
#      real opencode), then everything in build-asan/ with leak detection on
#   4. unless --quick: tests/fuzz/run.sh (clang + libFuzzer, in build-fuzz/)
#   5. every response the e2e tests received (recorded by the harness in
#      OC_RECORD_RESPONSES) checked against api/openapi.json
# The stack is always stopped at the end. Exits non-zero if any pass failed.
#
# Usage: scripts/test.sh [--quick] [CTEST_ARGS...]
#   --quick      skip the sanitizer build, pass and fuzzing; run every
#                test in build/
#   CTEST_ARGS   passed to both ctest runs, e.g. -R e2e -V
# Environment: TEST_TIMEOUT (default per-test timeout, 600 s, for tests that
# set none), TEST_JOBS (tests run at once, default 3: most e2e time is spent
# waiting for the agent; tests/CMakeLists.txt says which run alone),
# SKIP_DEPS=1 (do not run scripts/deps.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "test: $*" >&2; }

quick=0
ctest_args=()
for arg in "$@"; do
    case "$arg" in
    --quick) quick=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *) ctest_args+=("$arg") ;;
    esac
done

if [[ "${SKIP_DEPS:-}" != 1 ]]; then
    scripts/deps.sh
fi
scripts/build.sh build
((quick)) || scripts/build.sh --sanitize build-asan

# A stack of its own, never the one scripts/run.sh uses, and never ports
# from the caller's environment: free ones are picked.
export STACK_DIR="$ROOT/var/test-stack"
export STACK_SH="$ROOT/scripts/stack.sh"
unset PG_PORT AMQP_PORT AMQP_DIST_PORT EPMD_PORT

# shellcheck disable=SC2317 # called from the EXIT trap
stop_stack() {
    log "stopping the test stack"
    "$STACK_SH" stop || log "warning: stopping the test stack failed"
}
# A previous run that was killed may have left its stack running.
"$STACK_SH" stop >/dev/null 2>&1 || true
rm -rf "$STACK_DIR"
trap stop_stack EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$STACK_SH" start
eval "$("$STACK_SH" env)"
export DATABASE_URL AMQP_URL

failed=()
run_ctest() {
    local dir="$1"
    shift
    # Make sure nothing left a server of this stack down for the next pass.
    "$STACK_SH" start >/dev/null
    log "ctest in $dir"
    # --no-tests=error: a filter that matches nothing, or a build that
    # registered no tests, is a failure rather than a silent pass.
    if ! ctest --test-dir "$dir" --output-on-failure --no-tests=error \
        -j "${TEST_JOBS:-3}" --timeout "${TEST_TIMEOUT:-600}" "$@" "${ctest_args[@]}"; then
        failed+=("$dir")
    fi
}

# Every response the e2e tests get through the harness is recorded, and
# checked against api/openapi.json once every pass ran (below), so the
# document cannot drift from what the api answers.
export OC_RECORD_RESPONSES="$STACK_DIR/responses.jsonl"
rm -f "$OC_RECORD_RESPONSES"

# The tests that run the real agent take most of the time; they run once,
# in the sanitizer build (the same code, instrumented), unless --quick
# skips that build: then they run here.
if ((quick)); then
    run_ctest build
else
    # (a -R that picks only agent tests leaves this pass empty: fine)
    run_ctest build -LE agent --no-tests=ignore
fi
if ((!quick)); then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    run_ctest build-asan
    log "fuzzing (tests/fuzz/run.sh, ${FUZZ_SECONDS:-20}s per fuzzer)"
    tests/fuzz/run.sh || failed+=("tests/fuzz/run.sh")
fi
if [[ -s "$OC_RECORD_RESPONSES" ]]; then
    log "checking $(wc -l <"$OC_RECORD_RESPONSES") recorded responses against api/openapi.json"
    "$STACK_SH" start >/dev/null
    OC_BUILD_DIR="$ROOT/build" OC_SOURCE_DIR="$ROOT" \
        python3 tests/e2e/test_openapi.py Live.test_6_recorded_responses ||
        failed+=("recorded responses")
fi

if ((${#failed[@]} > 0)); then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all tests passed"
