#!/usr/bin/env bash
# Installs everything the project needs to build, run and test, and nothing
# that is already there: a second run only checks and returns within a
# second or two.
#
#   - Debian packages (compilers, libraries, PostgreSQL, RabbitMQ, bubblewrap,
#     Node.js); `apt-get update` runs only if something is missing.
#   - The pinned opencode agent from package-lock.json (`npm ci`), when
#     node_modules lacks it or holds another version.
#
# Usage: scripts/deps.sh        (works from any folder)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "deps: $*" >&2; }
die() {
    echo "deps: error: $*" >&2
    exit 1
}

REQUIRED=(
    build-essential cmake pkg-config
    libcivetweb-dev libcjson-dev librabbitmq-dev libpq-dev libssl-dev libseccomp-dev
    # Webhook delivery (janitor/webhook.c).
    libcurl4-openssl-dev
    # .tar.gz uploads and GET /download/archive (api/archive.c).
    libarchive-dev
    postgresql postgresql-contrib rabbitmq-server
    bubblewrap python3 curl ca-certificates
    # The bridge from the sandbox's loopback to its job's gateway socket
    # (worker/gateway.h).
    socat
    # Browser tests (tests/e2e/test_cors_browser.py) run headless Chromium
    # inside a network namespace (iproute2: ip netns).
    chromium iproute2
    # tests/e2e/test_openapi.py validates api/openapi.json against the
    # vendored OpenAPI 3.1 JSON Schema (tests/openapi/), and live responses
    # against the document (Debian has no OpenAPI validator package).
    python3-jsonschema
    # tests/e2e/test_metrics.py parses /metrics with the Prometheus text parser.
    python3-prometheus-client
    # The fuzzer target is built with clang's libFuzzer and sanitizer runtimes.
    clang libclang-rt-14-dev
)
# Only used to validate compose.yaml: its absence must not stop anything.
OPTIONAL=(docker-compose)

# Where a package is unavailable, remember it so later runs do not retry
# (and run `apt-get update`) every time. Delete the file to retry.
OPTIONAL_MARKER_DIR="$ROOT/var/deps"

SUDO=()
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi

# Prints the packages among "$@" that dpkg does not list as installed.
missing_packages() {
    local status
    # One dpkg-query call for all: unknown packages only print to stderr.
    status="$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null || true)"
    local p
    for p in "$@"; do
        grep -qx "$p installed" <<<"$status" || echo "$p"
    done
}

APT_UPDATED=0
apt_install() {
    if [[ $EUID -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        die "missing packages ($*) and no root or sudo to install them"
    fi
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "installing: $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "$@"
}

mapfile -t missing < <(missing_packages "${REQUIRED[@]}")

# Node.js and npm are checked by command, not by package: a machine may
# carry another build of Node.js (for example NodeSource's, which bundles npm
# and conflicts with Debian's npm package), and installing Debian's would
# fail or replace it.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if ((${#missing[@]} > 0)); then
    apt_install "${missing[@]}"
    mapfile -t still < <(missing_packages "${REQUIRED[@]}")
    ((${#still[@]} == 0)) || die "still missing after install: ${still[*]}"
fi

for p in "${OPTIONAL[@]}"; do
    [[ -z "$(missing_packages "$p")" ]] && continue
    [[ -e "$OPTIONAL_MARKER_DIR/$p.unavailable" ]] && continue
    if ! (apt_install "$p"); then
        log "warning: optional package $p could not be installed; continuing without it"
        mkdir -p "$OPTIONAL_MARKER_DIR"
        date >"$OPTIONAL_MARKER_DIR/$p.unavailable"
    fi
done

# --- The pinned opencode agent -------------------------------------------

command -v node >/dev/null 2>&1 || die "node is not installed"
command -v npm >/dev/null 2>&1 || die "npm is not installed"

want="$(node -e '
const lock = require("./package-lock.json");
const p = (lock.packages || {})["node_modules/opencode-ai"] ||
          (lock.dependencies || {})["opencode-ai"] || {};
process.stdout.write(p.version || "");
')"
[[ -n "$want" ]] || die "package-lock.json does not pin opencode-ai"
have="$(node -e '
try { process.stdout.write(require("./node_modules/opencode-ai/package.json").version); }
catch (e) { }
')"

# opencode-ai's install script puts the platform binary in place; a missing
# binary means an interrupted or --ignore-scripts install.
if [[ "$have" != "$want" || ! -x node_modules/.bin/opencode ]]; then
    log "installing opencode-ai $want (found: ${have:-none})"
    npm_log="$(mktemp)"
    trap 'rm -f "$npm_log"' EXIT
    if ! npm ci --no-audit --no-fund >"$npm_log" 2>&1; then
        # `npm ci` insists that the lock file lists every platform's optional
        # binary package. A registry that serves only some of them (so the
        # lock could only be written with those) makes it refuse; `npm
        # install --no-save` still installs the pinned versions from the
        # same lock file and leaves package.json and the lock untouched.
        grep -m 5 -E 'error (Missing|code)' "$npm_log" >&2 || true
        log "npm ci refused the lock file; installing with npm install --no-save"
        if ! npm install --no-audit --no-fund --no-save >"$npm_log" 2>&1; then
            cat "$npm_log" >&2
            die "npm could not install opencode-ai"
        fi
    fi
    [[ -x node_modules/.bin/opencode ]] || die "npm did not install node_modules/.bin/opencode"
    have="$(node -p 'require("./node_modules/opencode-ai/package.json").version')"
    [[ "$have" == "$want" ]] || die "npm installed opencode-ai $have, expected $want"
fi
