# shellcheck shell=bash
# Throwaway Postgres clusters for tests and benchmarks. Source this file; it
# defines functions only and changes nothing by itself.
#
#   pgenv_install_missing PKG...  apt-get install packages (apt-get update once)
#   pgenv_have_libclang           true when bindgen can load a libclang
#   pgenv_ensure_postgres         install `postgresql` unless initdb/pg_ctl exist
#   pgenv_start                   initdb + start a cluster on a free port; sets
#                                 PGENV_DIR, PGENV_PORT, PGENV_URL, PGENV_BIN and
#                                 puts PGENV_BIN first on PATH
#   pgenv_stop                    stop the cluster and remove its directory
#                                 (safe to call twice, or before pgenv_start)
#   pgenv_stop_on_exit            trap EXIT (and INT, TERM, HUP: exit 130, 143,
#                                 129) to run pgenv_stop, keeping the exit status
#
# The cluster: its own temp dir, trust auth, superuser `postgres`, listening on
# 127.0.0.1 only, unix socket inside the temp dir, fsync/full_page_writes/
# synchronous_commit off, max_connections=200. As root, the server runs as the
# `postgres` user (Postgres refuses to run as root).
#
# Knobs: PGENV_PORT_FROM (first port tried, default 55432), PGENV_KEEP=1 (leave
# the directory in place after stopping, to read its log).

PGENV_APT_UPDATED=${PGENV_APT_UPDATED:-0}
PGENV_DIR=${PGENV_DIR:-}
PGENV_PORT=${PGENV_PORT:-}
PGENV_URL=${PGENV_URL:-}
PGENV_BIN=${PGENV_BIN:-}

pgenv_log() {
    printf 'pg-env: %s\n' "$*" >&2
}

pgenv_is_root() {
    [[ $(id -u) -eq 0 ]]
}

# Run a command as root: directly when we are root, else through sudo when
# there is one. Fails with a clear message otherwise.
pgenv_as_root() {
    if pgenv_is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        pgenv_log "need root to run: $*"
        pgenv_log "run as root, install sudo, or install the missing packages by hand"
        return 1
    fi
}

# True when the Debian package is installed.
pgenv_have_pkg() {
    command -v dpkg-query >/dev/null 2>&1 || return 1
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# True when there is a libclang that bindgen (clang-sys) loads: libclang.so,
# libclang.so.N, libclang-N.so or libclang-N.so.M in $LIBCLANG_PATH or the
# directories clang-sys searches. libclang-cpp.so is a different library (the C++
# API) that many images carry without libclang; it does not count.
pgenv_have_libclang() {
    local dir file
    local dirs=(${LIBCLANG_PATH:+"$LIBCLANG_PATH"} /usr/lib/llvm-*/lib /usr/lib/*-linux-gnu
        /usr/lib64 /usr/lib /usr/local/lib)
    for dir in "${dirs[@]}"; do
        [[ -d $dir ]] || continue
        for file in "$dir"/libclang.so "$dir"/libclang.so.* "$dir"/libclang-[0-9]*.so \
            "$dir"/libclang-[0-9]*.so.*; do
            [[ -e $file ]] && return 0
        done
    done
    return 1
}

# Install the given Debian packages, running `apt-get update` at most once.
pgenv_install_missing() {
    (($# > 0)) || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        pgenv_log "missing: $* (and no apt-get here; install them by hand)"
        return 1
    fi
    pgenv_log "installing: $*"
    # Wait for a concurrent apt/dpkg run instead of failing on its lock.
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
    if [[ $PGENV_APT_UPDATED != 1 ]]; then
        pgenv_as_root "${apt[@]}" update -qq || return 1
        PGENV_APT_UPDATED=1
    fi
    pgenv_as_root "${apt[@]}" install -y -qq --no-install-recommends "$@"
}

# The directory holding initdb, pg_ctl and postgres: the one initdb on PATH
# comes from, else the newest /usr/lib/postgresql/*/bin. Fails when none has all.
pgenv_find_bin() {
    local initdb dir candidates=()
    if initdb=$(command -v initdb 2>/dev/null); then
        candidates+=("$(dirname "$(readlink -f "$initdb")")")
    fi
    if compgen -G '/usr/lib/postgresql/*/bin' >/dev/null; then
        mapfile -t -O "${#candidates[@]}" candidates < <(
            printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r
        )
    fi
    for dir in "${candidates[@]}"; do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 1
}

pgenv_ensure_postgres() {
    if ! PGENV_BIN=$(pgenv_find_bin); then
        pgenv_install_missing postgresql
        PGENV_BIN=$(pgenv_find_bin) || {
            pgenv_log "postgresql installed, but no initdb/pg_ctl found"
            return 1
        }
    fi
    # psql and pg_isready normally sit next to initdb; fall back to PATH.
    local tool
    for tool in psql pg_isready; do
        if [[ ! -x $PGENV_BIN/$tool ]] && ! command -v "$tool" >/dev/null 2>&1; then
            pgenv_install_missing postgresql-client
            break
        fi
    done
}

# Run a command as the cluster's owner: `postgres` when we are root.
pgenv_as_owner() {
    if pgenv_is_root; then
        (cd "$PGENV_DIR" && runuser -u postgres -- "$@")
    else
        (cd "$PGENV_DIR" && "$@")
    fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
pgenv_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pgenv_start() {
    if [[ -n $PGENV_DIR ]]; then
        pgenv_log "a cluster is already running in $PGENV_DIR"
        return 1
    fi
    pgenv_ensure_postgres
    export PATH="$PGENV_BIN:$PATH"

    if pgenv_is_root && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi

    # As root, the server runs as `postgres`, which must reach the directory.
    local base=${TMPDIR:-/tmp}
    if pgenv_is_root && ! runuser -u postgres -- test -x "$base"; then
        base=/tmp
    fi
    PGENV_DIR=$(mktemp -d "$base/capstan-pg.XXXXXX")
    if pgenv_is_root; then
        chown postgres: "$PGENV_DIR"
    fi

    pgenv_log "initdb in $PGENV_DIR"
    if ! pgenv_as_owner initdb -D "$PGENV_DIR/data" -U postgres --auth=trust \
        --encoding=UTF8 --no-locale --no-sync >"$PGENV_DIR/initdb.log" 2>&1; then
        cat "$PGENV_DIR/initdb.log" >&2
        pgenv_log "initdb failed"
        return 1
    fi
    cat >>"$PGENV_DIR/data/postgresql.conf" <<EOF

# throwaway cluster for capstan tests and benchmarks
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGENV_DIR'
fsync = off
full_page_writes = off
synchronous_commit = off
max_connections = 200
EOF

    # Another run may take the same port between our check and the server's
    # bind, so a failed start moves on to the next port.
    local port=${PGENV_PORT_FROM:-55432} last=$((${PGENV_PORT_FROM:-55432} + 200))
    while ((port < last)); do
        if ! pgenv_port_busy "$port"; then
            if pgenv_as_owner pg_ctl -D "$PGENV_DIR/data" -l "$PGENV_DIR/postgres.log" \
                -o "-p $port" -w -t 30 start >/dev/null 2>&1; then
                PGENV_PORT=$port
                break
            fi
            # A failed start can leave a half-written pid file behind.
            pgenv_as_owner pg_ctl -D "$PGENV_DIR/data" -m immediate stop >/dev/null 2>&1 || true
        fi
        port=$((port + 1))
    done
    if [[ -z $PGENV_PORT ]]; then
        tail -n 20 "$PGENV_DIR/postgres.log" >&2 2>/dev/null || true
        pgenv_log "could not start Postgres on any port from ${PGENV_PORT_FROM:-55432}"
        return 1
    fi

    local tries=0
    until pg_isready -q -h 127.0.0.1 -p "$PGENV_PORT" -U postgres; do
        tries=$((tries + 1))
        if ((tries >= 60)); then
            tail -n 20 "$PGENV_DIR/postgres.log" >&2 || true
            pgenv_log "Postgres on port $PGENV_PORT does not accept connections"
            return 1
        fi
        sleep 0.5
    done

    PGENV_URL="postgres://postgres@127.0.0.1:$PGENV_PORT/postgres"
    export PGENV_DIR PGENV_PORT PGENV_URL PGENV_BIN
    pgenv_log "Postgres $(pg_ctl --version | awk '{print $3}') ready on 127.0.0.1:$PGENV_PORT ($PGENV_DIR)"
}

pgenv_stop_on_exit() {
    trap _pgenv_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

_pgenv_exit() {
    local status=$?
    trap - EXIT INT TERM HUP
    pgenv_stop || true
    exit "$status"
}

pgenv_stop() {
    [[ -n $PGENV_DIR ]] || return 0
    local dir=$PGENV_DIR
    if [[ -f $dir/data/postmaster.pid ]]; then
        pgenv_as_owner pg_ctl -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
            pgenv_log "pg_ctl stop failed; see $dir/postgres.log"
    fi
    PGENV_DIR=
    PGENV_PORT=
    PGENV_URL=
    if [[ ${PGENV_KEEP:-0} == 1 ]]; then
        pgenv_log "kept $dir"
    else
        rm -rf "$dir"
        pgenv_log "stopped and removed $dir"
    fi
}
