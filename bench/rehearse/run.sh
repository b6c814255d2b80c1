#!/usr/bin/env bash
# The rehearsal benchmark: how much of `capstan rehearse`'s wall time is its own
# overhead, on chirpy 1.0.0 → 2.0.0 → 3.0.0. See bench/rehearse/README.md.
#
# The limit is the work a rehearsal cannot avoid: the migrations it runs, the
# binary start-ups (spawn to ready, or to the gate's refusal) and the smoke
# tests. rehearse measures each of them itself and reports them next to its
# total wall time (`timings` in its JSON). Overhead = (total - work) / total;
# the target is under 15%. Run on SQLite and on a throwaway Postgres cluster,
# BENCH_ROUNDS times each (median reported), in one run.
#
# Environment:
#   BENCH_ROUNDS=5        rounds per backend (at least 5)
#   CAPSTAN_BIN=PATH      use this capstan binary (and CHIRPY_BIN_DIR for chirpy)
#   CHIRPY_BIN_DIR=DIR    directory with chirpy-v1..3 (default target/release)
#   PGENV_KEEP=1          keep the cluster's directory afterwards
#   BENCH_NICE=N          run everything (cluster, rehearse, binaries) under
#                         `nice -n N`; a negative N (root only) lets other
#                         work on a shared machine disturb the figures less
#   TMPDIR=DIR            where the cluster (and rehearse's SQLite files) live
#   BENCH_PAUSE=SECONDS   sleep this long before each round (default 0), so
#                         that each round meets a file system that has
#                         forgotten the previous rounds' deleted files, as a
#                         single rehearsal in CI does (see README.md)
set -euo pipefail

if [[ -n ${BENCH_NICE:-} && -z ${BENCH_NICED:-} ]]; then
    export BENCH_NICED=$BENCH_NICE
    exec nice -n "$BENCH_NICE" "$0" "$@"
fi

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
# shellcheck source=scripts/pg-env.sh
source scripts/pg-env.sh

rounds=${BENCH_ROUNDS:-5}
pause=${BENCH_PAUSE:-0}
out=$root/bench/out/rehearse
if ((rounds < 5)); then
    echo "BENCH_ROUNDS must be at least 5 (the median of five or more runs is reported)" >&2
    exit 2
fi

pgenv_stop_on_exit

mkdir -p "$out"
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
pgenv_find_bin >/dev/null || missing+=(postgresql)
pgenv_install_missing "${missing[@]}"

target=${CARGO_TARGET_DIR:-$root/target}
if [[ -n ${CAPSTAN_BIN:-} ]]; then
    capstan=$CAPSTAN_BIN
    bins=${CHIRPY_BIN_DIR:-$target/release}
else
    cargo build --release -p capstan -p chirpy
    capstan=$target/release/capstan
    bins=$target/release
fi
export PATH="$bins:$PATH"
config=examples/chirpy/rehearse/rehearse.toml

pgenv_start
echo "postgres: $(psql -X -At "$PGENV_URL" -c 'show server_version') on port $PGENV_PORT"
echo "niceness: $(nice); pause before each round: ${pause}s"
# CREATE DATABASE makes ~300 files (DROP deletes them): how fast the file
# system makes them explains most of the scratch databases' time.
file_creation() {
    python3 - "$PGENV_DIR" <<'PY'
import os, sys, time
d = os.path.join(sys.argv[1], "create-probe")
os.mkdir(d)
t = time.perf_counter()
for i in range(300):
    os.close(os.open(os.path.join(d, str(i)), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
took = time.perf_counter() - t
for i in range(300):
    os.unlink(os.path.join(d, str(i)))
os.rmdir(d)
print(f"{took * 1e6 / 300:.0f} us per file")
PY
}
echo "file creation in $PGENV_DIR before: $(file_creation)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

for backend in sqlite postgres; do
    db=sqlite
    [[ $backend == postgres ]] && db=$PGENV_URL
    # One warm-up run (page cache, first exec of each binary).
    "$capstan" rehearse -c "$config" --database "$db" --format json -o "$out/warmup.json" 2>/dev/null
    for ((i = 1; i <= rounds; i++)); do
        sleep "$pause"
        if ! "$capstan" rehearse -c "$config" --database "$db" --format json -o "$out/$backend-$i.json" 2>"$out/$backend-$i.log"; then
            echo "rehearse failed on $backend; see $out/$backend-$i.log" >&2
            exit 1
        fi
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "file creation in $PGENV_DIR after: $(file_creation)"

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
print()
print(f"{'backend':9} {'total':>8} {'migrate':>8} {'start-up':>8} {'smoke':>8} {'work':>8} {'shutdown':>8} {'db':>6} {'overhead':>9}")
worst = 0.0
for backend in ("sqlite", "postgres"):
    runs = [json.load(open(f"{out}/{backend}-{i}.json"))["timings"] for i in range(1, rounds + 1)]
    def med(k):
        return statistics.median(r[k] for r in runs)
    work = statistics.median(r["migrations_ms"] + r["seed_ms"] + r["startup_ms"] + r["smoke_ms"] for r in runs)
    overhead = statistics.median(r["overhead_pct"] for r in runs)
    worst = max(worst, overhead)
    print(f"{backend:9} {med('total_ms'):>6.0f}ms {med('migrations_ms'):>6.0f}ms {med('startup_ms'):>6.0f}ms "
          f"{med('smoke_ms'):>6.0f}ms {work:>6.0f}ms {med('shutdown_ms'):>6.0f}ms {med('database_ms'):>4.0f}ms "
          f"{overhead:>8.1f}%")
    print(f"{'':9} total / work = {med('total_ms') / work:.3f} (median of {rounds}; overhead per run: "
          + ", ".join(f"{r['overhead_pct']:.1f}%" for r in runs) + ")")
    rest = statistics.median(
        (r["total_ms"] - r["migrations_ms"] - r["seed_ms"] - r["startup_ms"] - r["smoke_ms"] - r["database_ms"]) * 100 / r["total_ms"]
        for r in runs)
    print(f"{'':9} of which creating/dropping the scratch databases: {med('database_ms') * 100 / med('total_ms'):.1f}% of total; "
          f"everything else: {rest:.1f}%")
print()
print(f"target: overhead under 15% — {'met' if worst < 15 else 'NOT met'} (worst backend median {worst:.1f}%)")
PY
