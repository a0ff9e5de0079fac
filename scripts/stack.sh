#!/usr/bin/env bash
# Private PostgreSQL and RabbitMQ instances for development and tests.
#
# Everything (data, sockets, logs, passwords, chosen ports) lives in one
# folder, STACK_DIR (default: var/stack in the project). Nothing touches the
# system services or their default ports, so several stacks can run side by
# side and a test run can wipe its own stack without harming anything else.
#
# Usage: scripts/stack.sh start|stop|status|env|pg-start|pg-stop|mq-start|mq-stop
#
#   start     start both servers (a running server is left alone)
#   stop      stop both servers, including RabbitMQ's epmd
#   status    show what runs where; exit 0 only if both servers run
#   env       print `export DATABASE_URL=...` and `export AMQP_URL=...`
#   pg-start, pg-stop, mq-start, mq-stop
#             start or stop one server; ports, data and credentials stay the
#             same, so fault-injection tests can restart a server under a
#             running service
#
# Environment:
#   STACK_DIR        folder of the stack (relative paths are taken from the
#                    project root)
#   PG_PORT, AMQP_PORT, AMQP_DIST_PORT, EPMD_PORT
#                    ports to use; unset ones are picked once (free ports
#                    below the kernel's ephemeral range) and remembered in
#                    STACK_DIR/ports
#   STACK_TIMEOUT    seconds to wait for a server to become ready (120)
#   STACK_LISTEN_ADDR
#                    IPv4 address PostgreSQL and RabbitMQ listen on
#                    (127.0.0.1). Another address is meant for a network
#                    namespace of a test (tests/e2e/test_multihost.py runs
#                    the stack inside one): PostgreSQL then also accepts
#                    password logins from the subnets of that address
#                    ("samenet"). epmd and Erlang distribution stay on
#                    loopback.
#
# Security: the agent the service runs is untrusted and shares the host
# network, so both servers listen on 127.0.0.1 only and every TCP login
# needs a password (scram-sha-256 for PostgreSQL; RabbitMQ's guest account
# is never left in place). Passwords are random, generated once, and kept
# in files readable by the invoking user only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

STACK_DIR="${STACK_DIR:-var/stack}"
case "$STACK_DIR" in
/*) ;;
*) STACK_DIR="$ROOT/$STACK_DIR" ;;
esac
TIMEOUT="${STACK_TIMEOUT:-120}"
LISTEN="${STACK_LISTEN_ADDR:-127.0.0.1}"
[[ "$LISTEN" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
    echo "stack: error: STACK_LISTEN_ADDR=$LISTEN is not an IPv4 address" >&2
    exit 1
}

PG_DIR="$STACK_DIR/pg"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
PG_LOG="$PG_DIR/postgres.log"
MQ_DIR="$STACK_DIR/mq"
MQ_PIDFILE="$MQ_DIR/rabbitmq.pid"
MQ_STARTUP_LOG="$MQ_DIR/log/startup.log"
PORTS_FILE="$STACK_DIR/ports"
PG_PASSWORD_FILE="$STACK_DIR/pg_password"
MQ_PASSWORD_FILE="$STACK_DIR/mq_password"

DB_NAME=opencode
DB_USER=opencode
MQ_USER=opencode

# Ports of system services (and RabbitMQ's CLI distribution range) that a
# private stack must never take, even when asked to.
RESERVED_PORTS="4369 5432 5433 5671 5672 15672 25672 $(seq -s ' ' 35672 35682)"

die() {
    echo "stack: error: $*" >&2
    exit 1
}
note() { echo "stack: $*" >&2; }

# PostgreSQL and RabbitMQ refuse to run as root: as root, run them as their
# Debian system users; as anyone else, run them as yourself.
if [[ $EUID -eq 0 ]]; then
    PG_OS_USER=postgres
    MQ_OS_USER=rabbitmq
else
    PG_OS_USER="$(id -un)"
    MQ_OS_USER="$(id -un)"
fi

# Sets the array CMD to run "$@" as USER (for setsid/timeout wrappers).
user_cmd() {
    local user="$1"
    shift
    if [[ $EUID -eq 0 && "$user" != root ]]; then
        CMD=(runuser -u "$user" -- "$@")
    else
        CMD=("$@")
    fi
}

as_user() {
    local CMD
    user_cmd "$@"
    "${CMD[@]}"
}

pg_bindir() {
    local d
    # PostgreSQL's server programs are not on PATH on Debian; prefer 15 (the
    # version the project targets), else the newest installed.
    if [[ -x /usr/lib/postgresql/15/bin/pg_ctl ]]; then
        echo /usr/lib/postgresql/15/bin
        return
    fi
    d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "$d" && -x "$d/pg_ctl" ]] || die "PostgreSQL server is not installed (run scripts/deps.sh)"
    echo "$d"
}

random_hex() {
    # 24 random bytes as hex: URL-safe, so it can go into DATABASE_URL and
    # AMQP_URL without escaping.
    od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
}

# Creates FILE with a new random secret unless it exists. Prints "new" when
# it made one, so callers can push the new secret into an existing server.
ensure_secret() {
    local file="$1"
    if [[ -s "$file" ]]; then
        return 0
    fi
    (
        umask 077
        random_hex >"$file.tmp"
        mv "$file.tmp" "$file"
    )
    echo new
}

port_is_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# As the servers do: connections of the previous run left in TIME_WAIT must
# not count as "taken"; a listener still does.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

# Prints COUNT distinct free ports, none in EXCLUDE. They are taken below the
# kernel's ephemeral range, so an outgoing connection cannot grab one while a
# test has a server stopped for a restart.
pick_ports() {
    local count="$1" exclude="$2"
    python3 - "$count" "$exclude" <<'EOF'
import random, socket, sys
count = int(sys.argv[1])
exclude = {int(p) for p in sys.argv[2].split()}
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        eph_lo = int(f.read().split()[0])
except OSError:
    eph_lo = 32768
lo, hi = 20000, min(eph_lo, 32768) - 1
if hi - lo < 1000:
    lo, hi = 20000, 32767
candidates = [p for p in range(lo, hi + 1) if p not in exclude]
random.shuffle(candidates)
held, chosen = [], []
for p in candidates:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("0.0.0.0", p))
    except OSError:
        s.close()
        continue
    # Keep it bound until all are chosen so the ports are distinct.
    held.append(s)
    chosen.append(p)
    if len(chosen) == count:
        break
for s in held:
    s.close()
if len(chosen) < count:
    sys.exit("no free ports found")
print(" ".join(map(str, chosen)))
EOF
}

valid_port() {
    [[ "$1" =~ ^[0-9]+$ ]] && ((10#$1 >= 1024 && 10#$1 <= 65535))
}

# Sets PG_PORT, AMQP_PORT, AMQP_DIST_PORT, EPMD_PORT and MQ_NODE: from the
# environment, else from STACK_DIR/ports, else newly chosen; then saves them
# so every later subcommand (and a restarted server) uses the same ones.
load_ports() {
    local create="${1:-}"
    local -A saved=()
    local key val
    if [[ -f "$PORTS_FILE" ]]; then
        while IFS='=' read -r key val; do
            [[ "$key" =~ ^[A-Z_]+$ ]] && saved[$key]="$val"
        done <"$PORTS_FILE"
    elif [[ "$create" != create ]]; then
        die "no stack in $STACK_DIR yet (run: scripts/stack.sh start)"
    fi

    local names=(PG_PORT AMQP_PORT AMQP_DIST_PORT EPMD_PORT) missing=() used="$RESERVED_PORTS"
    for key in "${names[@]}"; do
        val="${!key:-}"
        [[ -n "$val" ]] || val="${saved[$key]:-}"
        if [[ -n "$val" ]]; then
            valid_port "$val" || die "$key=$val is not a usable port"
            for p in $used; do
                [[ "$p" != "$val" ]] || die "$key=$val is reserved or already used by this stack"
            done
            used="$used $val"
            printf -v "$key" '%s' "$val"
        else
            missing+=("$key")
        fi
    done
    if ((${#missing[@]} > 0)); then
        local picked i=0
        picked="$(pick_ports "${#missing[@]}" "$used")" || die "could not find free ports"
        for val in $picked; do
            printf -v "${missing[$i]}" '%s' "$val"
            i=$((i + 1))
        done
    fi
    # The node name is fixed for the life of the stack: RabbitMQ keeps its
    # users and queues in a folder named after the node.
    MQ_NODE="${saved[MQ_NODE]:-opencode-$(random_hex | cut -c1-8)@localhost}"

    local content
    content="$(printf 'PG_PORT=%s\nAMQP_PORT=%s\nAMQP_DIST_PORT=%s\nEPMD_PORT=%s\nMQ_NODE=%s\n' \
        "$PG_PORT" "$AMQP_PORT" "$AMQP_DIST_PORT" "$EPMD_PORT" "$MQ_NODE")"
    if [[ ! -f "$PORTS_FILE" || "$(cat "$PORTS_FILE")" != "$content" ]]; then
        printf '%s\n' "$content" >"$PORTS_FILE.tmp"
        mv "$PORTS_FILE.tmp" "$PORTS_FILE"
    fi
}

# The server users must reach STACK_DIR. As root, add the search (x) bit on
# any parent folder that lacks it; listing (r) is not granted.
make_traversable() {
    [[ $EUID -eq 0 ]] || return 0
    local user d
    for user in "$PG_OS_USER" "$MQ_OS_USER"; do
        if ! runuser -u "$user" -- test -x "$STACK_DIR"; then
            d="$STACK_DIR"
            while [[ "$d" != / ]]; do
                d="$(dirname "$d")"
                if ! runuser -u "$user" -- test -x "$d"; then
                    note "adding o+x to $d so the database users can reach $STACK_DIR"
                    chmod o+x "$d"
                fi
            done
        fi
    done
}

prepare_stack_dir() {
    mkdir -p "$STACK_DIR"
    # Others may pass through (the server users need to), not list.
    chmod 0711 "$STACK_DIR"
    make_traversable
    load_ports create
}

tcp_open() {
    # Bash's /dev/tcp: true when something accepts connections on the port.
    (exec 3<>"/dev/tcp/$LISTEN/$1") 2>/dev/null
}

show_log() {
    local f
    for f in "$@"; do
        if [[ -f "$f" ]]; then
            echo "----- last lines of $f -----" >&2
            tail -n 40 "$f" >&2
        fi
    done
}

# ---------------------------------------------------------------- PostgreSQL

pg_ctl_() { as_user "$PG_OS_USER" "$(pg_bindir)/pg_ctl" -D "$PG_DATA" "$@"; }

pg_running() {
    [[ -f "$PG_DATA/PG_VERSION" ]] && pg_ctl_ status >/dev/null 2>&1
}

pg_psql_admin() {
    # The superuser logs in over the unix socket with peer authentication:
    # only the OS user that owns the cluster can do that.
    as_user "$PG_OS_USER" "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 \
        -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_OS_USER" -d postgres
}

pg_init() {
    [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
    note "creating PostgreSQL cluster in $PG_DATA"
    mkdir -p "$PG_DIR" "$PG_SOCK"
    rm -rf "$PG_DATA"
    chown "$PG_OS_USER:" "$PG_DIR" "$PG_SOCK"
    chmod 0700 "$PG_DIR" "$PG_SOCK"
    # No superuser password: the superuser can only log in through the unix
    # socket as the OS user that owns the cluster (peer). Every other login,
    # and every TCP login, needs a password.
    (cd "$PG_DIR" && as_user "$PG_OS_USER" "$(pg_bindir)/initdb" -D "$PG_DATA" \
        -U "$PG_OS_USER" --no-locale -E UTF8 \
        --auth-local=peer --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1) ||
        {
            show_log "$PG_DIR/initdb.log"
            die "initdb failed"
        }
    as_user "$PG_OS_USER" tee "$PG_DATA/pg_hba.conf" >/dev/null <<EOF
# Written by scripts/stack.sh. Never "trust": the agent shares this network.
# TYPE  DATABASE USER              ADDRESS       METHOD
local   all      $PG_OS_USER       peer
local   all      all               scram-sha-256
host    all      all               127.0.0.1/32  scram-sha-256
EOF
    if [[ "$LISTEN" != 127.0.0.1 ]]; then
        echo "host    all      all               samenet       scram-sha-256" |
            as_user "$PG_OS_USER" tee -a "$PG_DATA/pg_hba.conf" >/dev/null
    fi
    as_user "$PG_OS_USER" tee -a "$PG_DATA/postgresql.conf" >/dev/null <<'EOF'

# Settings of the private stack (port, addresses) are rewritten on each start.
include_if_exists 'stack.conf'
EOF
}

pg_write_conf() {
    # fsync off: this is a disposable dev/test cluster; a crash of the server
    # process (which fault tests cause) still loses nothing, only a crash of
    # the whole machine could.
    as_user "$PG_OS_USER" tee "$PG_DATA/stack.conf" >/dev/null <<EOF
# Written by scripts/stack.sh on every start.
port = $PG_PORT
listen_addresses = '$LISTEN'
unix_socket_directories = '$PG_SOCK'
password_encryption = 'scram-sha-256'
max_connections = 200
fsync = off
full_page_writes = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

pg_bootstrap() {
    local pw
    pw="$(cat "$PG_PASSWORD_FILE")"
    # The password goes in on stdin, never on a command line that `ps` shows.
    pg_psql_admin >/dev/null <<EOF
\\set pw '$pw'
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER') THEN
        CREATE ROLE $DB_USER LOGIN;
    END IF;
END
\$\$;
ALTER ROLE $DB_USER WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER'
    WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_NAME')
\\gexec
ALTER DATABASE $DB_NAME OWNER TO $DB_USER;
EOF
}

pg_start() {
    prepare_stack_dir
    ensure_secret "$PG_PASSWORD_FILE" >/dev/null
    pg_init
    if pg_running; then
        note "PostgreSQL already running on $LISTEN:$PG_PORT"
    else
        if tcp_open "$PG_PORT"; then
            die "port $PG_PORT is taken by another program; set PG_PORT or edit $PORTS_FILE"
        fi
        pg_write_conf
        if ! (cd "$PG_DIR" && pg_ctl_ start -w -t "$TIMEOUT" -s -l "$PG_LOG" >/dev/null 2>&1); then
            show_log "$PG_LOG"
            die "PostgreSQL did not start within ${TIMEOUT}s"
        fi
        note "PostgreSQL running on $LISTEN:$PG_PORT"
    fi
    # Idempotent; also repairs a stack whose first start was interrupted.
    pg_bootstrap || {
        show_log "$PG_LOG"
        die "could not create the $DB_USER role and database"
    }
}

pg_stop() {
    [[ -f "$PORTS_FILE" ]] || return 0
    load_ports
    if pg_running; then
        (cd "$PG_DIR" && pg_ctl_ stop -m fast -w -t 60 -s) ||
            (cd "$PG_DIR" && pg_ctl_ stop -m immediate -w -t 30 -s) ||
            die "could not stop PostgreSQL"
        note "PostgreSQL stopped"
    fi
}

# ------------------------------------------------------------------ RabbitMQ

MQ_LIB=/usr/lib/rabbitmq/bin

# Sets the array MQ_ENV: a clean environment holding only the variables
# that place the node in STACK_DIR, so nothing from the system broker's
# config leaks in. The distribution port and epmd listen on loopback only.
mq_env() {
    MQ_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 LC_ALL=C.UTF-8 \
        HOME="$MQ_DIR/home" \
        RABBITMQ_NODENAME="$MQ_NODE" \
        RABBITMQ_NODE_IP_ADDRESS="$LISTEN" \
        RABBITMQ_NODE_PORT="$AMQP_PORT" \
        RABBITMQ_DIST_PORT="$AMQP_DIST_PORT" \
        ERL_EPMD_PORT="$EPMD_PORT" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_MNESIA_BASE="$MQ_DIR/mnesia" \
        RABBITMQ_LOG_BASE="$MQ_DIR/log" \
        RABBITMQ_CONFIG_FILE="$MQ_DIR/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$MQ_DIR/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$MQ_DIR/enabled_plugins" \
        RABBITMQ_CONF_ENV_FILE="$MQ_DIR/rabbitmq-env.conf" \
        RABBITMQ_PID_FILE="$MQ_PIDFILE" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}")
}

# rabbitmqctl, run as the broker's user with the broker's HOME (for the
# Erlang cookie) and epmd port. The Debian wrapper in /usr/sbin would reset
# HOME and cd to /var/lib/rabbitmq, so the real script is called directly.
mq_ctl() {
    local CMD
    user_cmd "$MQ_OS_USER" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 LC_ALL=C.UTF-8 HOME="$MQ_DIR/home" \
        ERL_EPMD_PORT="$EPMD_PORT" RABBITMQ_CONF_ENV_FILE="$MQ_DIR/rabbitmq-env.conf" \
        "$MQ_LIB/rabbitmqctl" -n "$MQ_NODE" "$@"
    # Bounded: a CLI call that hangs must not hang the caller forever.
    (cd "$MQ_DIR" && timeout "${MQ_CTL_TIMEOUT:-120}" "${CMD[@]}")
}

mq_pid() {
    local pid
    [[ -f "$MQ_PIDFILE" ]] || return 1
    pid="$(tr -dc '0-9' <"$MQ_PIDFILE")"
    [[ -n "$pid" ]] || return 1
    # A stale pid file may name a recycled pid: check it is an Erlang VM.
    local comm
    read -r comm 2>/dev/null <"/proc/$pid/comm" || return 1
    [[ "$comm" == beam.smp ]] || return 1
    echo "$pid"
}

mq_running() { mq_pid >/dev/null; }

# Pids of epmd daemons serving this stack's port, whether we started them
# (-port N) or Erlang did (ERL_EPMD_PORT=N in its environment).
epmd_pids() {
    local p comm stat args
    # Builtins only (no process per entry): this scans every process.
    for p in /proc/[0-9]*; do
        read -r comm 2>/dev/null <"$p/comm" || continue
        [[ "$comm" == epmd ]] || continue
        # Skip zombies: a killed daemon stays listed until init reaps it.
        read -r stat 2>/dev/null <"$p/stat" || continue
        stat="${stat##*) }"
        [[ "${stat:0:1}" != Z ]] || continue
        args=""
        while IFS= read -r -d '' comm; do args+=" $comm"; done 2>/dev/null <"$p/cmdline" || true
        if [[ "$args " == *" -port $EPMD_PORT "* ]] ||
            { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qx "ERL_EPMD_PORT=$EPMD_PORT"; then
            echo "${p#/proc/}"
        fi
    done
}

mq_prepare() {
    local fresh
    mkdir -p "$MQ_DIR/home" "$MQ_DIR/mnesia" "$MQ_DIR/log"
    chown -R "$MQ_OS_USER:" "$MQ_DIR"
    chmod 0700 "$MQ_DIR" "$MQ_DIR/home"
    fresh="$(ensure_secret "$MQ_PASSWORD_FILE")"
    if [[ "$fresh" == new && -n "$(ls -A "$MQ_DIR/mnesia")" ]]; then
        # The broker's database exists but the password file was lost: the
        # new password is pushed to the broker after it starts.
        MQ_PASSWORD_CHANGED=1
    fi
    local pw
    pw="$(cat "$MQ_PASSWORD_FILE")"
    # default_user: on its very first boot the broker creates our user
    # instead of guest/guest, so there is never a moment when anyone on this
    # host can log in as guest. The listener is loopback only.
    as_user "$MQ_OS_USER" tee "$MQ_DIR/rabbitmq.conf" >/dev/null <<EOF
# Written by scripts/stack.sh on every start.
listeners.tcp.default = $LISTEN:$AMQP_PORT
default_vhost = /
default_user = $MQ_USER
default_pass = $pw
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
log.console = false
log.file.level = info
EOF
    chmod 0600 "$MQ_DIR/rabbitmq.conf"
    # No plugins: no management UI or other listeners.
    echo '[].' | as_user "$MQ_OS_USER" tee "$MQ_DIR/enabled_plugins" >/dev/null
    as_user "$MQ_OS_USER" touch "$MQ_DIR/rabbitmq-env.conf"
}

mq_wait_ready() {
    local launcher="${1:-}" deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        if mq_running && tcp_open "$AMQP_PORT"; then
            return 0
        fi
        if [[ -n "$launcher" ]] && ! kill -0 "$launcher" 2>/dev/null; then
            show_log "$MQ_STARTUP_LOG" "$MQ_DIR/log/$MQ_NODE.log"
            die "RabbitMQ exited during startup"
        fi
        sleep 0.5
    done
    show_log "$MQ_STARTUP_LOG" "$MQ_DIR/log/$MQ_NODE.log"
    die "RabbitMQ did not accept connections on $LISTEN:$AMQP_PORT within ${TIMEOUT}s"
}

mq_setup_users() {
    local users pw
    pw="$(cat "$MQ_PASSWORD_FILE")"
    users="$(mq_ctl list_users --quiet --silent 2>&1)" || {
        echo "$users" >&2
        die "rabbitmqctl list_users failed"
    }
    if ! grep -q "^${MQ_USER}[[:space:]]" <<<"$users"; then
        mq_ctl add_user "$MQ_USER" "$pw" >/dev/null
        MQ_PASSWORD_CHANGED=0
    fi
    if [[ "${MQ_PASSWORD_CHANGED:-0}" == 1 ]]; then
        mq_ctl change_password "$MQ_USER" "$pw" >/dev/null
    fi
    mq_ctl set_permissions -p / "$MQ_USER" '.*' '.*' '.*' >/dev/null
    if grep -q "^guest[[:space:]]" <<<"$users"; then
        mq_ctl delete_user guest >/dev/null
    fi
}

mq_start() {
    prepare_stack_dir
    if mq_running; then
        mq_wait_ready
        note "RabbitMQ already running on $LISTEN:$AMQP_PORT"
        mq_setup_users
        return 0
    fi
    if tcp_open "$AMQP_PORT"; then
        die "port $AMQP_PORT is taken by another program; set AMQP_PORT or edit $PORTS_FILE"
    fi
    port_is_free "$AMQP_DIST_PORT" ||
        die "port $AMQP_DIST_PORT is taken by another program; set AMQP_DIST_PORT or edit $PORTS_FILE"
    mq_prepare
    # epmd outlives the broker; start it ourselves so it listens on loopback
    # only and can be found by its -port argument when stopping.
    if [[ -z "$(epmd_pids)" ]]; then
        (cd "$MQ_DIR" && as_user "$MQ_OS_USER" env -i PATH=/usr/bin:/bin HOME="$MQ_DIR/home" \
            epmd -daemon -port "$EPMD_PORT" -address 127.0.0.1)
    fi
    rm -f "$MQ_PIDFILE"
    note "starting RabbitMQ node $MQ_NODE on $LISTEN:$AMQP_PORT"
    local MQ_ENV CMD
    mq_env
    user_cmd "$MQ_OS_USER" "${MQ_ENV[@]}" "$MQ_LIB/rabbitmq-server"
    # setsid: its own session, so a Ctrl-C in the caller's terminal does not
    # reach the broker; it is stopped in an orderly way by mq-stop instead.
    (cd "$MQ_DIR" && exec setsid "${CMD[@]}" >>"$MQ_STARTUP_LOG" 2>&1 </dev/null) &
    local launcher=$!
    mq_wait_ready "$launcher"
    mq_setup_users
    note "RabbitMQ running on $LISTEN:$AMQP_PORT"
}

mq_stop() {
    [[ -f "$PORTS_FILE" ]] || return 0
    load_ports
    local pid
    if pid="$(mq_pid)"; then
        # `stop PIDFILE` returns once the VM process is gone.
        if ! MQ_CTL_TIMEOUT=90 mq_ctl stop "$MQ_PIDFILE" >/dev/null 2>&1; then
            note "rabbitmqctl stop failed; terminating the broker (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 60); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
        note "RabbitMQ stopped"
    fi
    # epmd outlives the broker; nothing else of this stack uses it.
    local epmd i
    for i in $(seq 1 25); do
        epmd="$(epmd_pids)"
        [[ -n "$epmd" ]] || return 0
        # shellcheck disable=SC2086 # one pid per word
        if ((i < 20)); then kill -TERM $epmd 2>/dev/null || true; else kill -KILL $epmd 2>/dev/null || true; fi
        sleep 0.2
    done
    die "epmd on port $EPMD_PORT did not exit"
}

# ------------------------------------------------------------------ commands

print_env() {
    load_ports
    [[ -s "$PG_PASSWORD_FILE" && -s "$MQ_PASSWORD_FILE" ]] ||
        die "no credentials in $STACK_DIR yet (run: scripts/stack.sh start)"
    echo "export DATABASE_URL=postgresql://$DB_USER:$(cat "$PG_PASSWORD_FILE")@$LISTEN:$PG_PORT/$DB_NAME"
    echo "export AMQP_URL=amqp://$MQ_USER:$(cat "$MQ_PASSWORD_FILE")@$LISTEN:$AMQP_PORT/%2f"
}

status() {
    if [[ ! -f "$PORTS_FILE" ]]; then
        echo "no stack in $STACK_DIR"
        return 3
    fi
    load_ports
    local rc=0
    if pg_running; then
        echo "postgresql: running on $LISTEN:$PG_PORT (data $PG_DATA, log $PG_LOG)"
    else
        echo "postgresql: stopped (port $PG_PORT)"
        rc=3
    fi
    if mq_running; then
        echo "rabbitmq:   running on $LISTEN:$AMQP_PORT, node $MQ_NODE, pid $(mq_pid) (logs $MQ_DIR/log)"
    else
        echo "rabbitmq:   stopped (port $AMQP_PORT, node $MQ_NODE)"
        rc=3
    fi
    return "$rc"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

cmd="${1:-}"
case "$cmd" in
start)
    pg_start
    mq_start
    ;;
stop)
    mq_stop
    pg_stop
    ;;
status) status ;;
env) print_env ;;
pg-start) pg_start ;;
pg-stop) pg_stop ;;
mq-start) mq_start ;;
mq-stop) mq_stop ;;
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
