#!/usr/bin/env bash
# Smoke test of a running deployment: the seed's flow, step by step.
#
#   BASE=http://127.0.0.1:8000 API_KEY=... scripts/smoke.sh
#
# 1 health  2 create a session  3 queue a job  4 poll it to its end
# 5 list the results  6 download a file  7 delete the session (and check
# it is gone). Each step prints one line; the first failure prints what the
# server answered and exits 1 (2 for a usage error).
#
# Environment: BASE, API_KEY (both required); MODEL (default: the
# service's DEFAULT_MODEL); SMOKE_TIMEOUT (seconds the job may take, 600);
# SMOKE_POLL (seconds between polls, 2).
set -euo pipefail

: "${BASE:?BASE is not set (e.g. http://127.0.0.1:8000)}"
: "${API_KEY:?API_KEY is not set}"
TIMEOUT="${SMOKE_TIMEOUT:-600}"
POLL="${SMOKE_POLL:-2}"
BASE="${BASE%/}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step() { printf 'smoke: %-10s %s\n' "$1" "$2"; }
fail() {
    printf 'smoke: FAILED at %s: %s\n' "$1" "$2" >&2
    [[ -s "$tmp/body" ]] && { head -c 2000 "$tmp/body" >&2; echo >&2; }
    exit 1
}

# call METHOD PATH [BODY]: the status goes to stdout, the body to $tmp/body.
# The key goes through a header file, never the command line.
printf 'X-API-Key: %s\n' "$API_KEY" >"$tmp/key"
call() {
    local args=(-sS -o "$tmp/body" -w '%{http_code}' -X "$1" -H @"$tmp/key")
    [[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
    curl "${args[@]}" "$BASE$2" || echo 000
}

# field NAME: a top-level field of the last JSON body.
field() {
    python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' \
        "$tmp/body" "$1"
}

code="$(call GET /health)"
[[ "$code" == 200 ]] || fail health "status $code"
step health ok

code="$(call POST /session '{"files": [
  {"path": "README.md", "content": "# My Project\n"},
  {"path": "src/math_utils.py", "content": "def add(a,b):\n    return a+b\n"}],
  "ttl_seconds": 3600}')"
[[ "$code" == 200 ]] || fail session "status $code"
sid="$(field session_id)"
step session "$sid"

job='{"prompt": "Add a subtract function to src/math_utils.py"'
[[ -n "${MODEL:-}" ]] && job+=", \"model\": \"$MODEL\""
code="$(call POST "/job?session_id=$sid" "$job}")"
[[ "$code" == 200 ]] || fail job "status $code"
jid="$(field job_id)"
step job "$jid queued"

deadline=$((SECONDS + TIMEOUT))
while :; do
    code="$(call GET "/job/status?job_id=$jid")"
    [[ "$code" == 200 ]] || fail status "status $code"
    status="$(field status)"
    [[ "$status" == queued || "$status" == running ]] || break
    ((SECONDS < deadline)) || fail status "job still $status after ${TIMEOUT}s"
    sleep "$POLL"
done
[[ "$status" == succeeded ]] || fail status "job ended $status: $(field error)"
step status "$status"

code="$(call GET "/session/results?session_id=$sid")"
[[ "$code" == 200 && "$(field latest_job_id)" == "$jid" ]] || fail results "status $code"
step results "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["output_files"]))' "$tmp/body") file(s)"

code="$(call GET "/download?session_id=$sid&file_path=src/math_utils.py")"
[[ "$code" == 200 ]] || fail download "status $code"
step download "src/math_utils.py, $(wc -c <"$tmp/body") bytes"

code="$(call DELETE "/session?session_id=$sid")"
[[ "$code" == 204 ]] || fail delete "status $code"
code="$(call GET "/session/results?session_id=$sid")"
[[ "$code" == 404 ]] || fail delete "the deleted session answers $code"
step delete ok
echo "smoke: all steps passed"
