#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, -DFUZZ=ON) in a build
# folder of their own and runs each one for a bounded time, starting from a
# copy of its seed corpus (tests/fuzz/corpus/<name>) in a temporary folder,
# so the repository is never modified. The fuzzers run side by side.
#
# A crash, leak, UB report, timeout or broken invariant fails the run; the
# input that caused it is kept in BUILD_DIR/fuzz-artifacts/<fuzzer>/ with
# the fuzzer's log. Reproduce with: BUILD_DIR/tests/fuzz/<fuzzer> <file>
# Ends with the line "N passed, M failed" (one per fuzzer); exits non-zero
# if any failed.
#
# Usage: tests/fuzz/run.sh [FUZZER...]     (default: fuzz_body fuzz_path fuzz_archive)
# Environment:
#   FUZZ_SECONDS    fuzzing time per fuzzer (default 20)
#   FUZZ_BUILD_DIR  build folder (default build-fuzz, relative to the root)
#   FUZZ_CC         compiler (default clang)
#   BUILD_JOBS      build parallelism (default 2)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

log() { echo "fuzz: $*" >&2; }

case "${1:-}" in
-h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
esac

fuzz_seconds="${FUZZ_SECONDS:-20}"
[[ "$fuzz_seconds" =~ ^[0-9]+$ && "$fuzz_seconds" -ge 1 ]] || {
    log "FUZZ_SECONDS must be a whole number of seconds >= 1"
    exit 2
}
build_dir="${FUZZ_BUILD_DIR:-build-fuzz}"
case "$build_dir" in
/*) ;;
*) build_dir="$ROOT/$build_dir" ;;
esac
fuzzers=("$@")
((${#fuzzers[@]} > 0)) || fuzzers=(fuzz_body fuzz_path fuzz_archive)

tmp="$(mktemp -d "${TMPDIR:-/tmp}/oc-fuzz.XXXXXX")"
pids=()
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build ------------------------------------------------------------------

if ! grep -Eq 'add_subdirectory\(tests/fuzz\)' CMakeLists.txt; then
    log "CMakeLists.txt does not add tests/fuzz; add: if(FUZZ) add_subdirectory(tests/fuzz) endif()"
    exit 2
fi
cc="${FUZZ_CC:-clang}"
command -v "$cc" >/dev/null || {
    log "$cc not found (Debian: apt-get install clang libclang-rt-14-dev)"
    exit 2
}
log "building ${fuzzers[*]} in $build_dir"
# Only the fuzzer targets: nothing else of the project is built here.
if ! CC="$cc" cmake -S . -B "$build_dir" -DFUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    >"$tmp/configure.log" 2>&1; then
    cat "$tmp/configure.log" >&2
    log "configure failed"
    exit 2
fi
if ! cmake --build "$build_dir" -j "${BUILD_JOBS:-2}" --target "${fuzzers[@]}" \
    >"$tmp/build.log" 2>&1; then
    cat "$tmp/build.log" >&2
    log "build failed"
    exit 2
fi

# ---- run --------------------------------------------------------------------

# Tokens libFuzzer splices into inputs: JSON syntax and the names the
# session route looks for, and the bytes the path rules care about.
cat >"$tmp/fuzz_body.dict" <<'EOF'
"{"
"}"
"["
"]"
":"
","
"\""
"\\"
"\\u0000"
"\\u00e9"
"\\ud83d\\ude00"
"\\ud800"
"true"
"false"
"null"
"-0"
"1e400"
"1.5"
"\"files\""
"\"path\""
"\"content\""
"\"ttl_seconds\""
"\"env\""
"\"LD_PRELOAD\""
"../"
"/./"
"//"
EOF
cat >"$tmp/fuzz_path.dict" <<'EOF'
"/"
"."
".."
"\\"
"\x0a"
"\x00"
"\x7f"
"\xc0\xaf"
"\xed\xa0\x80"
"\xf4\x90\x80\x80"
"\xf0\x9f\x98\x80"
"-"
"9223372036854775807"
EOF

max_len() {
    case "$1" in
    fuzz_body) echo 65536 ;;   # a body a fuzzer can explore; limits are scaled down
    *) echo 4096 ;;            # a path is at most 1024 bytes; a list a few
    esac
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

for f in "${fuzzers[@]}"; do
    bin="$build_dir/tests/fuzz/$f"
    [[ -x "$bin" ]] || {
        log "no fuzzer $bin"
        exit 2
    }
    name="${f#fuzz_}"
    mkdir -p "$tmp/corpus-$f" "$build_dir/fuzz-artifacts/$f"
    if [[ -d "tests/fuzz/corpus/$name" ]]; then
        cp -r "tests/fuzz/corpus/$name/." "$tmp/corpus-$f/"
    fi
    dict=()
    [[ -f "$tmp/$f.dict" ]] && dict=("-dict=$tmp/$f.dict")
    # -timeout: one input taking over 10 s is a bug (or a hang) too.
    "$bin" "$tmp/corpus-$f" "${dict[@]}" \
        -max_total_time="$fuzz_seconds" -max_len="$(max_len "$f")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build_dir/fuzz-artifacts/$f/" >"$tmp/$f.log" 2>&1 &
    pids+=("$!")
done
log "running ${fuzzers[*]} for ${fuzz_seconds}s each"

passed=0
failed=0
for i in "${!fuzzers[@]}"; do
    f="${fuzzers[$i]}"
    rc=0
    wait "${pids[$i]}" || rc=$?
    # "#123456 DONE cov: 789 ft: 1234 corp: 56/7890b ..." ends a clean run.
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$tmp/$f.log" | tail -n 1 || true)"
    if [[ $rc -eq 0 && -n "$done_line" ]]; then
        passed=$((passed + 1))
        echo "fuzz: $f ok: $(sed -E 's/^#([0-9]+)[[:space:]]+DONE[[:space:]]+/\1 runs, /' <<<"$done_line")"
    else
        failed=$((failed + 1))
        cp "$tmp/$f.log" "$build_dir/fuzz-artifacts/$f/last.log"
        echo "fuzz: $f FAILED (exit $rc); last lines of its log:"
        tail -n 60 "$tmp/$f.log"
        echo "fuzz: log and crashing input in $build_dir/fuzz-artifacts/$f/"
    fi
done
pids=()
echo "$passed passed, $failed failed"
((failed == 0))
