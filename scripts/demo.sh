#!/usr/bin/env bash
# The README's first command: build capstan and apply the example migrations to
# the embedded default, ./capstan.db (SQLite), then show their status.
#
# Installs the one build dependency a fresh Debian machine lacks: libclang-dev,
# which the linter's Postgres parser (pg_query) needs at build time.
#
# Environment:
#   CAPSTAN_DEMO_PROFILE  cargo profile to build with (default: release);
#                         scripts/test.sh uses `dev` to reuse its build
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/pg-env.sh
source scripts/pg-env.sh

missing=()
if ! pgenv_have_pkg libclang-dev && ! pgenv_have_libclang; then
    missing+=(libclang-dev)
fi
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
pgenv_install_missing "${missing[@]}"

dir=examples/embedded-migrations/migrations
profile=${CAPSTAN_DEMO_PROFILE:-release}
cargo run -q --profile "$profile" -p capstan -- migrate up --dir "$dir" "$@"
cargo run -q --profile "$profile" -p capstan -- migrate status --dir "$dir" "$@"
