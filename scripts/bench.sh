#!/usr/bin/env bash
# Runs the benchmarks of bench/ (see bench/README.md) and prints a summary
# table of their ratios, each next to its target:
#   1. a Release build of the api (BENCH_BUILD_DIR, default build-bench/)
#      and of bench/bench_parse.c against its liboccore.a
#   2. bench_parse: POST /session body parsing vs a bare cJSON parse, and
#      bench_gateway: the provider gateway vs a direct connection (time to
#      first byte, streamed throughput); no stack needed, so they run first
#   3. a private PostgreSQL + RabbitMQ in var/bench-stack (scripts/stack.sh;
#      kept between runs, so only the first run pays for initdb), then
#      bench_api: issue 14's table (job vs bare `opencode run`,
#      GET /job/status vs opencode serve and /health, POST /session vs
#      opencode serve, api RSS under 64/256 connections, CPU per job,
#      janitor rate), first, before other benchmarks' removed folders slow
#      the disk's mkdir; bench_download: GET /download vs a plain
#      file-to-socket copy, bench_idle: /health under 500 idle connections,
#      bench_live: cancel and long-poll latency, /health and RSS per stream
#      under 1000 event streams (targets 2 s, 100 ms, 1 s, 64 KiB), and
#      bench_janitor: purging 10 000 expired sessions (target 10 s); issue
#      14's table is printed last, as markdown for README's Performance
#      section
# The stack is always stopped at the end. Every number is a ratio against a
# baseline measured in the same run, except the targets the issues state as
# times (bench_idle's 1 s, bench_janitor's 10 s, shown as value / target).
#
# Usage: scripts/bench.sh [--no-download]
#   --no-download  run bench_parse only (no stack, so no download, idle or
#                  janitor benchmark)
# Environment:
#   BENCH_BUILD_DIR     build folder (default build-bench)
#   BENCH_STRICT=1      exit 1 when a ratio misses its target (default: 0,
#                       only a benchmark that fails to run fails)
#   BENCH_STACK_DIR     the stack's folder (default var/bench-stack)
#   BENCH_FRESH_STACK=1 wipe the stack's folder first
#   BENCH_ROUNDS        bench_parse rounds (15)
#   BENCH_DOWNLOADS     timed downloads (10); BENCH_DOWNLOAD_MIB file size (20)
#   BENCH_JANITOR_SESSIONS  expired sessions bench_janitor purges (10000)
#   BENCH_JOB_RUNS      jobs (and bare runs) bench_api times (3)
#   BENCH_HTTP_CONNS, BENCH_HTTP_S  bench_api's load: connections (8), seconds (4)
#   BUILD_JOBS          build parallelism (2)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "bench: $*" >&2; }

download=1
for arg in "$@"; do
    case "$arg" in
    --no-download) download=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        log "unknown argument $arg"
        exit 2
        ;;
    esac
done

build_dir="${BENCH_BUILD_DIR:-build-bench}"
case "$build_dir" in
/*) ;;
*) build_dir="$ROOT/$build_dir" ;;
esac
tmp="$(mktemp -d "${TMPDIR:-/tmp}/oc-bench.XXXXXX")"
stack_started=0
export STACK_DIR="${BENCH_STACK_DIR:-$ROOT/var/bench-stack}"
case "$STACK_DIR" in
/*) ;;
*) STACK_DIR="$ROOT/$STACK_DIR" ;;
esac
export STACK_SH="$ROOT/scripts/stack.sh"
unset PG_PORT AMQP_PORT AMQP_DIST_PORT EPMD_PORT

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    if ((stack_started)); then
        log "stopping the bench stack"
        "$STACK_SH" stop || log "warning: stopping the bench stack failed"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build ------------------------------------------------------------------

log "building (Release) in $build_dir"
if ! { cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release &&
    cmake --build "$build_dir" -j "${BUILD_JOBS:-2}" --target occore opencode-api opencode-worker \
        opencode-janitor bench_gateway; } \
    >"$tmp/build.log" 2>&1; then
    cat "$tmp/build.log" >&2
    log "build failed"
    exit 1
fi
# Same warnings as the project, same optimisation as its Release build.
# shellcheck disable=SC2046 # pkg-config prints one flag per word
"${CC:-cc}" -std=c11 -O3 -DNDEBUG -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wformat=2 -Werror \
    -Icommon $(pkg-config --cflags libcjson) bench/bench_parse.c "$build_dir/liboccore.a" \
    $(pkg-config --libs libcjson) -lcrypto -lpthread -lm -o "$build_dir/bench_parse"
"${CC:-cc}" -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror bench/bench_http.c -lpthread \
    -o "$build_dir/bench_http"

# ---- benchmarks ---------------------------------------------------------------

failed=()
log "bench_parse"
if ! "$build_dir/bench_parse" | tee "$tmp/parse.out"; then
    failed+=(bench_parse)
fi

log "bench_gateway"
if ! "$build_dir/tests/bench_gateway" | tee "$tmp/gateway.out"; then
    failed+=(bench_gateway)
fi

if ((download)); then
    [[ "${BENCH_FRESH_STACK:-}" == 1 ]] && rm -rf "$STACK_DIR"
    # A stack left running by a killed run is simply reused.
    stack_started=1
    "$STACK_SH" start
    eval "$("$STACK_SH" env)"
    export DATABASE_URL AMQP_URL
    # bench_api first: every benchmark removes the folders it made, and
    # ext4 without a journal skips inodes freed in the last 60 s (300 s
    # while their table block is dirty), which makes each mkdir slower;
    # POST /session would measure that instead of the service. The
    # janitor's rate joins its table at the end.
    log "bench_api"
    if ! OC_BUILD_DIR="$build_dir" OC_SOURCE_DIR="$ROOT" BENCH_HTTP="$build_dir/bench_http" \
        python3 bench/bench_api.py --figures "$tmp/api.json" >"$tmp/api.out"; then
        failed+=(bench_api)
    fi
    log "bench_download"
    if ! OC_BUILD_DIR="$build_dir" OC_SOURCE_DIR="$ROOT" python3 bench/bench_download.py |
        tee "$tmp/download.out"; then
        failed+=(bench_download)
    fi
    log "bench_idle"
    if ! OC_BUILD_DIR="$build_dir" OC_SOURCE_DIR="$ROOT" python3 bench/bench_idle.py |
        tee "$tmp/idle.out"; then
        failed+=(bench_idle)
    fi
    log "bench_live"
    if ! OC_BUILD_DIR="$build_dir" OC_SOURCE_DIR="$ROOT" python3 bench/bench_live.py |
        tee "$tmp/live.out"; then
        failed+=(bench_live)
    fi
    log "bench_janitor"
    if ! OC_BUILD_DIR="$build_dir" OC_SOURCE_DIR="$ROOT" python3 bench/bench_janitor.py |
        tee "$tmp/janitor.out"; then
        failed+=(bench_janitor)
    fi
    if [[ -s "$tmp/api.json" ]]; then
        echo >>"$tmp/api.out"
        python3 bench/bench_api.py --table "$tmp/api.json" \
            --results "$tmp/live.out" "$tmp/janitor.out" \
            >>"$tmp/api.out" || failed+=(bench_api)
    fi
fi

# ---- summary ------------------------------------------------------------------

echo
echo "Summary (ratios against a baseline measured in this run):"
misses=0
touch "$tmp/parse.out" "$tmp/gateway.out" "$tmp/download.out" "$tmp/idle.out" \
    "$tmp/live.out" "$tmp/janitor.out" "$tmp/api.out"
grep -h '^RESULT ' "$tmp/parse.out" "$tmp/gateway.out" "$tmp/download.out" "$tmp/idle.out" \
    "$tmp/live.out" "$tmp/janitor.out" "$tmp/api.out" \
    >"$tmp/results" || true
printf '  %-38s %10s  %-8s %s\n' metric value target status
while read -r _ name value target; do
    status=info
    if [[ "$target" == "<="* ]]; then
        if awk -v v="$value" -v t="${target#<=}" 'BEGIN { exit !(v <= t) }'; then
            status=ok
        else
            status=MISSED
            misses=$((misses + 1))
        fi
    fi
    if [[ "$target" == ">="* ]]; then
        if awk -v v="$value" -v t="${target#>=}" 'BEGIN { exit !(v >= t) }'; then
            status=ok
        else
            status=MISSED
            misses=$((misses + 1))
        fi
    fi
    printf '  %-38s %10s  %-8s %s\n' "$name" "$value" "$target" "$status"
done <"$tmp/results"

if grep -q '^| figure ' "$tmp/api.out"; then
    echo
    echo "Issue 14's table (paste into README's Performance section):"
    echo
    sed -n '/^| figure /,$p' "$tmp/api.out"
fi

if ((${#failed[@]} > 0)); then
    log "FAILED to run: ${failed[*]}"
    exit 1
fi
if ((misses > 0)); then
    log "$misses target(s) missed"
    [[ "${BENCH_STRICT:-}" == 1 ]] && exit 1
fi
exit 0
