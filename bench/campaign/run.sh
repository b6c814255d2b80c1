#!/usr/bin/env bash
# The reliability campaign: N rounds of concurrent runners (Postgres,
# PgBouncer in session mode, SQLite) and N kill -9 rounds (Postgres, SQLite)
# on a set mixing transactional and no-transaction migrations (a CREATE INDEX
# CONCURRENTLY, backfills). Prints runs, the runners' exit codes and every
# violation of capstan's promises; exits 1 when there is one. See README.md.
#
# Environment:
#   CAMPAIGN_RUNNERS=20      runners started at once per round
#   CAMPAIGN_ROUNDS=5        concurrent rounds per backend
#   CAMPAIGN_KILL_ROUNDS=N   kill -9 rounds per backend (default: ROUNDS)
#   CAMPAIGN_SEED=N          kill timings (default fixed, so a run replays)
#   CAMPAIGN_ONLY=a,b        only these of postgres, pgbouncer, sqlite
#   CAPSTAN_BIN=PATH         the capstan binary (default: build target/release/capstan)
#   CAMPAIGN_PG_URL=URL      a superuser URL of a throwaway server to use
#                            (default: start one with scripts/pg-env.sh)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
# shellcheck source=scripts/pg-env.sh
source scripts/pg-env.sh

missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
[[ -x /usr/sbin/pgbouncer ]] || command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
((${#missing[@]} == 0)) || pgenv_install_missing "${missing[@]}"

if [[ -z ${CAPSTAN_BIN:-} ]]; then
    cargo build --release -q -p capstan
    export CAPSTAN_BIN=$root/target/release/capstan
fi

bouncer_pid=
work=$(mktemp -d "${TMPDIR:-/tmp}/capstan-campaign.XXXXXX")
cleanup() {
    local status=$?
    [[ -n $bouncer_pid ]] && kill "$bouncer_pid" 2>/dev/null || true
    [[ -z ${CAMPAIGN_PG_URL_GIVEN:-} ]] && pgenv_stop || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${CAMPAIGN_PG_URL:-} ]]; then
    pgenv_start
    export CAMPAIGN_PG_URL=$PGENV_URL
else
    export CAMPAIGN_PG_URL_GIVEN=1
fi

# PgBouncer in session mode in front of the server, on a free port.
hostport=${CAMPAIGN_PG_URL#*@}
hostport=${hostport%%/*}
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
chmod 755 "$work"
printf '"postgres" ""\n' >"$work/users.txt"
cat >"$work/pgbouncer.ini" <<INI
[databases]
* = host=${hostport%:*} port=${hostport##*:}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $work/users.txt
pool_mode = session
max_client_conn = 500
default_pool_size = 60
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits,options
INI
chmod 644 "$work/users.txt" "$work/pgbouncer.ini"
bouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
as_user=()
[[ $(id -u) == 0 ]] && as_user=(-u postgres)
"$bouncer" "${as_user[@]}" "$work/pgbouncer.ini" 2>"$work/pgbouncer.log" &
bouncer_pid=$!
for _ in $(seq 100); do
    psql "postgres://postgres@127.0.0.1:$port/postgres" -XAtc 'select 1' >/dev/null 2>&1 && break
    sleep 0.1
done
psql "postgres://postgres@127.0.0.1:$port/postgres" -XAtc 'select 1' >/dev/null ||
    { cat "$work/pgbouncer.log" >&2; exit 1; }
export CAMPAIGN_BOUNCER_PORT=$port

python3 bench/campaign/campaign.py
