#!/usr/bin/env bash
# Runs the whole service locally with one command, in the foreground:
# installs what is missing, builds, starts a private PostgreSQL and RabbitMQ
# (scripts/stack.sh), applies migrations, then runs the API, WORKERS workers
# and the janitor. Output goes to the terminal with a [name] prefix and, as
# is, to var/log/NAME.log. Ctrl-C (or SIGTERM, or `scripts/run.sh stop` from
# another terminal) stops everything this script started, the stack included.
#
# Usage:
#   scripts/run.sh [--offline] [--no-build]
#   scripts/run.sh stop
#
#   --offline   use the scripted model server (tests/fakemodel) instead of a
#               real provider; also the default when no provider key
#               (ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY,
#               OPENROUTER_API_KEY) and no AGENT_CONFIG_FILE is set
#   --no-build  skip scripts/deps.sh and scripts/build.sh
#
# Configuration: the programs read .env (or the file named by ENV_FILE) in
# the project root themselves, with the environment taking precedence. This
# script never exports a variable that is set in either; it only fills in
# defaults for the rest:
#   DATABASE_URL, AMQP_URL   the private stack (scripts/stack.sh); when one
#                            is set, that server is not started
#   API_LISTEN=127.0.0.1:8000  DATA_DIR=var/data
#   OPENCODE_BIN=node_modules/.bin/opencode  AGENT_UID_LOCK_DIR=var/agent-uids
#   API_KEY                  generated once into var/api_key (mode 0600)
#   AGENT_CONFIG_FILE        var/agent-config.json in offline mode
#   AGENT_MODELS_FILE        tests/fakemodel/models.json in offline mode, unless set
# Variables of this script: WORKERS (2), BUILD_DIR (build), STACK_DIR
# (var/stack), STOP_TIMEOUT (seconds to wait for the programs to exit; by
# default WORKER_GRACE_S + 15).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUN_DIR="$ROOT/var/run"
LOG_DIR="$ROOT/var/log"
MAIN_PIDFILE="$RUN_DIR/run.pid"
STACK_OWNED="$RUN_DIR/stack.owned"
STACK_SH="$ROOT/scripts/stack.sh"

log() { echo "run: $*" >&2; }
die() {
    echo "run: error: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# True if pid $1 is alive and its command line contains $2: a pid file left
# from an earlier run must not make us signal an unrelated process.
alive_as() {
    alive "$1" || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# ------------------------------------------------------------------ .env

# Reads the env file the way the programs do (common/config.c): NAME=value
# lines, optional "export ", "#" comments, one pair of matching quotes
# stripped, the first definition wins. Empty values count as unset, as they
# do for the programs.
declare -A DOTENV=()
load_dotenv() {
    local file="${ENV_FILE:-.env}" line name val n=0
    [[ -f "$file" ]] || return 0
    while IFS= read -r line || [[ -n "$line" ]]; do
        n=$((n + 1))
        line="${line%$'\r'}"
        line="${line#"${line%%[![:space:]]*}"}"
        [[ -z "$line" || "$line" == \#* ]] && continue
        line="${line#export }"
        [[ "$line" == *=* ]] || die "$file:$n: expected NAME=value"
        name="${line%%=*}"
        val="${line#*=}"
        [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "$file:$n: expected NAME=value"
        if ((${#val} >= 2)) && [[ ( "${val:0:1}" == '"' || "${val:0:1}" == "'" ) && "${val: -1}" == "${val:0:1}" ]]; then
            val="${val:1:${#val}-2}"
        fi
        [[ -v "DOTENV[$name]" ]] || DOTENV[$name]="$val"
    done <"$file"
}

# The value the programs will see: environment first, then .env.
setting() {
    local name="$1"
    if [[ -n "${!name:-}" ]]; then
        printf '%s' "${!name}"
    else
        printf '%s' "${DOTENV[$name]:-}"
    fi
}

is_set() { [[ -n "$(setting "$1")" ]]; }

# Exports NAME=VALUE only when NAME is set neither in the environment nor in
# .env, so a value the user chose is never overridden.
default_env() {
    is_set "$1" || export "$1=$2"
}

# ------------------------------------------------------------- processes

declare -a PIDS=()
declare -A NAME_OF=()

# Runs "$@" in the background as component NAME. setsid gives it its own
# session: a Ctrl-C in the terminal reaches only this script, which then
# stops the components in order (a program should not get INT and TERM).
# The log pipeline ignores INT/TERM so it keeps draining the program's
# output until the program exits.
start_component() {
    local name="$1"
    shift
    local logf="$LOG_DIR/$name.log"
    printf '===== %s starting: %s\n' "$(date '+%F %T')" "$*" >>"$logf"
    setsid "$@" </dev/null > >(
        trap '' INT TERM
        tee -a "$logf" | sed -u "s/^/[$name] /"
    ) 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    NAME_OF[$pid]="$name"
    echo "$pid" >"$RUN_DIR/$name.pid"
}

# Sends TERM to the given pids, waits up to STOP_TIMEOUT seconds (less if a
# second Ctrl-C arrives), then KILLs whatever is left.
FORCE=0
terminate() {
    local timeout="$1"
    shift
    local pid left deadline=$((SECONDS + timeout))
    for pid in "$@"; do
        if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    while :; do
        left=()
        for pid in "$@"; do
            alive "$pid" && left+=("$pid")
        done
        ((${#left[@]} == 0)) && return 0
        if ((SECONDS >= deadline || FORCE)); then
            log "killing ${left[*]} (did not exit in time)"
            kill -KILL "${left[@]}" 2>/dev/null || true
            return 0
        fi
        sleep 0.2
    done
}

# shellcheck disable=SC2317 # called from cleanup (EXIT trap)
stop_timeout() {
    local grace
    grace="$(setting WORKER_GRACE_S)"
    [[ "$grace" =~ ^[0-9]+$ ]] || grace=30
    echo "${STOP_TIMEOUT:-$((grace + 15))}"
}

stop_owned_stack() {
    [[ -f "$STACK_OWNED" ]] || return 0
    local dir parts p
    dir="$(sed -n 's/^STACK_DIR=//p' "$STACK_OWNED")"
    parts="$(sed -n 's/^PARTS=//p' "$STACK_OWNED")"
    for p in $parts; do
        STACK_DIR="$dir" "$STACK_SH" "$p-stop" || log "warning: stack.sh $p-stop failed"
    done
    rm -f "$STACK_OWNED"
}

CLEANED=0
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    ((CLEANED)) && return 0
    CLEANED=1
    # A second Ctrl-C while stopping: stop waiting and kill.
    trap 'FORCE=1' INT TERM
    local running=() pid
    for pid in "${PIDS[@]}"; do
        alive "$pid" && running+=("$pid")
    done
    if ((${#running[@]} > 0)); then
        log "stopping ${#running[@]} program(s)..."
        terminate "$(stop_timeout)" "${running[@]}"
    fi
    if [[ -n "${FAKE_PID:-}" ]]; then
        terminate 5 "$FAKE_PID"
    fi
    # Give the log pipelines a moment to flush the last lines.
    sleep 0.3
    stop_owned_stack
    rm -f "$RUN_DIR"/*.pid "$RUN_DIR/fake-model.port"
    log "stopped"
}

# `scripts/run.sh stop`: signal the running instance and wait for it; if it
# died without cleaning up, clean up after it.
cmd_stop() {
    local pid f name want
    pid="$(cat "$MAIN_PIDFILE" 2>/dev/null || true)"
    if alive_as "$pid" run.sh; then
        log "stopping the instance with pid $pid"
        kill -TERM "$pid"
        local deadline=$((SECONDS + 180))
        while alive "$pid"; do
            ((SECONDS < deadline)) || die "pid $pid did not exit within 180s"
            sleep 0.3
        done
        log "stopped"
        return 0
    fi
    local stale=0 leftovers=()
    for f in "$RUN_DIR"/*.pid; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .pid)"
        [[ "$name" == run ]] && continue
        pid="$(cat "$f" 2>/dev/null || true)"
        case "$name" in
        api) want=opencode-api ;;
        worker-*) want=opencode-worker ;;
        janitor) want=opencode-janitor ;;
        fake-model) want=fake_model.py ;;
        *) want="$name" ;;
        esac
        if alive_as "$pid" "$want"; then
            log "stopping leftover $name (pid $pid)"
            leftovers+=("$pid")
            stale=1
        fi
    done
    ((${#leftovers[@]} == 0)) || terminate 45 "${leftovers[@]}"
    if [[ -f "$STACK_OWNED" ]]; then
        stop_owned_stack
        stale=1
    fi
    rm -f "$RUN_DIR"/*.pid
    if ((stale)); then
        log "cleaned up after an instance that had exited"
    else
        log "nothing is running"
    fi
}

# ------------------------------------------------------------------ main

offline=0
build=1
case "${1:-}" in
stop)
    cmd_stop
    exit 0
    ;;
-h | --help | help)
    usage
    exit 0
    ;;
esac
for arg in "$@"; do
    case "$arg" in
    --offline) offline=1 ;;
    --no-build) build=0 ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
done

mkdir -p "$RUN_DIR" "$LOG_DIR"
old="$(cat "$MAIN_PIDFILE" 2>/dev/null || true)"
if alive_as "$old" run.sh; then
    die "already running (pid $old); stop it with: scripts/run.sh stop"
fi
# Leftovers of an instance that was killed without cleaning up.
if [[ -f "$STACK_OWNED" ]] || compgen -G "$RUN_DIR/*.pid" >/dev/null; then
    cmd_stop
fi
echo $$ >"$MAIN_PIDFILE"

trap cleanup EXIT
trap 'log "interrupted"; exit 0' INT TERM

load_dotenv

BUILD_DIR="${BUILD_DIR:-build}"
if ((build)); then
    "$ROOT/scripts/deps.sh"
    "$ROOT/scripts/build.sh" "$BUILD_DIR"
fi
case "$BUILD_DIR" in
/*) BIN="$BUILD_DIR" ;;
*) BIN="$ROOT/$BUILD_DIR" ;;
esac
for p in opencode-api opencode-worker opencode-janitor; do
    [[ -x "$BIN/$p" ]] || die "$BIN/$p is missing (run without --no-build)"
done

# --- Database and broker: the private stack, unless configured elsewhere.
export STACK_DIR="${STACK_DIR:-var/stack}"
parts=()
is_set DATABASE_URL || parts+=(pg)
is_set AMQP_URL || parts+=(mq)
if ((${#parts[@]} > 0)); then
    status="$("$STACK_SH" status 2>/dev/null || true)"
    owned=()
    for p in "${parts[@]}"; do
        case "$p" in
        pg) pat='^postgresql: *running' ;;
        mq) pat='^rabbitmq: *running' ;;
        esac
        if grep -q "$pat" <<<"$status"; then
            log "using the already running $p of $STACK_DIR (it is left running on exit)"
        else
            owned+=("$p")
        fi
    done
    # Recorded before starting, so a failed start is still cleaned up.
    printf 'STACK_DIR=%s\nPARTS=%s\n' "$STACK_DIR" "${owned[*]}" >"$STACK_OWNED"
    for p in "${parts[@]}"; do
        "$STACK_SH" "$p-start"
    done
    stack_env="$("$STACK_SH" env)"
    if ! is_set DATABASE_URL; then
        DATABASE_URL="$(sed -n 's/^export DATABASE_URL=//p' <<<"$stack_env")"
        export DATABASE_URL
    fi
    if ! is_set AMQP_URL; then
        AMQP_URL="$(sed -n 's/^export AMQP_URL=//p' <<<"$stack_env")"
        export AMQP_URL
    fi
fi

# --- Defaults for everything else. Absolute paths: the programs may change
# directory (the worker runs the agent inside a job's workspace).
default_env API_LISTEN 127.0.0.1:8000
default_env DATA_DIR "$ROOT/var/data"
default_env OPENCODE_BIN "$ROOT/node_modules/.bin/opencode"
default_env AGENT_UID_LOCK_DIR "$ROOT/var/agent-uids"
is_set DATA_DIR && mkdir -p "$(setting DATA_DIR)"

generated_key=0
if ! is_set API_KEY; then
    if [[ ! -s "$ROOT/var/api_key" ]]; then
        (
            umask 077
            random_hex 32 >"$ROOT/var/api_key"
        )
        generated_key=1
    fi
    API_KEY="$(cat "$ROOT/var/api_key")"
    export API_KEY
fi

# --- Offline mode: the scripted model server stands in for the providers.
if ((!offline)); then
    has_provider=0
    for k in ANTHROPIC_API_KEY OPENAI_API_KEY GEMINI_API_KEY OPENROUTER_API_KEY; do
        is_set "$k" && has_provider=1
    done
    if ((!has_provider)) && ! is_set AGENT_CONFIG_FILE; then
        log "no provider key and no AGENT_CONFIG_FILE: running offline with the scripted model server"
        offline=1
    fi
fi
FAKE_PID=""
if ((offline)); then
    port_file="$RUN_DIR/fake-model.port"
    rm -f "$port_file"
    logf="$LOG_DIR/fake-model.log"
    setsid python3 "$ROOT/tests/fakemodel/fake_model.py" --port 0 --port-file "$port_file" \
        --log "$LOG_DIR/fake-model.requests.log" </dev/null > >(
        trap '' INT TERM
        tee -a "$logf" | sed -u "s/^/[fake-model] /"
    ) 2>&1 &
    FAKE_PID=$!
    echo "$FAKE_PID" >"$RUN_DIR/fake-model.pid"
    deadline=$((SECONDS + 20))
    until [[ -s "$port_file" ]]; do
        alive "$FAKE_PID" || die "the scripted model server exited (see $logf)"
        ((SECONDS < deadline)) || die "the scripted model server did not start (see $logf)"
        sleep 0.1
    done
    fake_port="$(tr -dc '0-9' <"$port_file")"
    base="http://127.0.0.1:$fake_port/v1"
    # anthropic/..., openai/gpt-4 and scripted/scripted-model all go to
    # the scripted model server (see the script for why it looks so).
    "$ROOT/scripts/offline-agent-config.sh" "$base" >"$ROOT/var/agent-config.json.tmp"
    mv "$ROOT/var/agent-config.json.tmp" "$ROOT/var/agent-config.json"
    # Exported even if .env names another file: --offline is explicit, and
    # the environment takes precedence over .env.
    export AGENT_CONFIG_FILE="$ROOT/var/agent-config.json"
    # Only the providers that configuration names: opencode then skips
    # building its built-in catalogue of every provider on each start.
    is_set AGENT_MODELS_FILE || export AGENT_MODELS_FILE="$ROOT/tests/fakemodel/models.json"
    log "scripted model server on $base"
fi

# --- Migrations, then the programs.
log "applying migrations"
if ! "$BIN/opencode-api" migrate > >(tee -a "$LOG_DIR/migrate.log" | sed -u 's/^/[migrate] /') 2>&1; then
    die "migrations failed (see $LOG_DIR/migrate.log)"
fi

workers="${WORKERS:-$(setting WORKERS)}"
workers="${workers:-2}"
[[ "$workers" =~ ^[0-9]+$ ]] || die "WORKERS must be a number (got $workers)"

start_component api "$BIN/opencode-api"
for i in $(seq 1 "$workers"); do
    start_component "worker-$i" "$BIN/opencode-worker"
done
start_component janitor "$BIN/opencode-janitor"

# Wait until the API answers HTTP (any status) before saying it is up.
listen="$(setting API_LISTEN)"
host="${listen%:*}"
port="${listen##*:}"
case "$host" in
"" | 0.0.0.0 | "*") host=127.0.0.1 ;;
"[::]") host="[::1]" ;;
esac
BASE="http://$host:$port"
deadline=$((SECONDS + 60))
api_pid="${PIDS[0]}"
until code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/health")" && [[ "$code" != 000 ]]; do
    alive "$api_pid" || die "the API exited during startup (see $LOG_DIR/api.log)"
    ((SECONDS < deadline)) || die "the API did not answer on $BASE within 60s (see $LOG_DIR/api.log)"
    sleep 0.3
done

{
    echo
    echo "run: the service is up: api, $workers worker(s), janitor$( ((offline)) && echo ", scripted model server")"
    ((generated_key)) && echo "run: generated API key, stored in var/api_key"
    echo "run: to use it from another terminal:"
    echo "    export BASE=$BASE API_KEY=$(setting API_KEY)"
    echo "    curl -sS -H \"X-API-Key: \$API_KEY\" \"\$BASE/health\""
    echo "run: logs in var/log/; stop with Ctrl-C or scripts/run.sh stop"
    echo
} >&2

# Run until a program exits on its own (then stop everything: a partial
# service would only mislead) or a signal arrives (the trap above).
set +e
wait -n -p done_pid "${PIDS[@]}"
rc=$?
set -e
log "${NAME_OF[${done_pid:-}]:-a program} exited with status $rc; stopping everything"
exit 1
