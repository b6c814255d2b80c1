#!/usr/bin/env bash
# The rehearsal benchmark: how much of `capstan rehearse`'s wall time is its own
# overhead, on chirpy 1.0.0 → 2.0.0 → 3.0.0. See bench/rehearse/README.md.
#
# The limit is the work a rehearsal cannot avoid: the migrations it runs, the
# binary start-ups (spawn to ready, or to the gate's refusal) and the smoke
# tests. rehearse measures each of them itself and reports them next to its
# total wall time (`timings` in its JSON). Overhead = (total - work) / total;
# the target is under 15%. Run on SQLite and on a throwaway Postgres cluster
# per directory of BENCH_PG_DIRS, BENCH_ROUNDS times each (median reported),
# in one run.
#
# Environment:
#   BENCH_ROUNDS=5        rounds per backend (at least 5)
#   CAPSTAN_BIN=PATH      use this capstan binary (and CHIRPY_BIN_DIR for chirpy)
#   CHIRPY_BIN_DIR=DIR    directory with chirpy-v1..3 (default target/release)
#   PGENV_KEEP=1          keep the cluster's directory afterwards
#   BENCH_NICE=N          run everything (cluster, rehearse, binaries) under
#                         `nice -n N`; a negative N (root only) lets other
#                         work on a shared machine disturb the figures less
#   TMPDIR=DIR            where rehearse's SQLite files (and by default the
#                         first Postgres cluster) live
#   BENCH_PG_DIRS="D1 D2" one Postgres cluster in each of these directories
#                         (separated by spaces, so none may contain one), one
#                         after the other (default: $TMPDIR or /tmp, and
#                         /dev/shm when it is a tmpfs with 1 GiB free); the
#                         script prints each
#                         one's file system, how fast it creates files, and
#                         what one CREATE DATABASE costs in psql there
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

echo "niceness: $(nice); pause before each round: ${pause}s"
# CREATE DATABASE makes ~300 files (DROP deletes them): how fast the file
# system makes them, in us per file, explains most of the scratch
# databases' time.
file_creation() {
    python3 - "$1" <<'PY'
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
print(f"{took * 1e6 / 300:.0f}")
PY
}
# The file system under DIR: its type and device, and for ext4 whether it
# has a journal (without one, ext4 passes over recently deleted inodes when
# it allocates one, so creating files gets slow after many deletions).
fs_of() {
    local src type majmin dev
    read -r type src majmin < <({ findmnt -no FSTYPE,SOURCE,MAJ:MIN --target "$1" 2>/dev/null || echo "? ? ?"; } | head -n 1)
    if [[ $type == ext4 ]]; then
        # jbd2 names a journal after the kernel's name of the device
        # (vda, dm-0, loop0), which /sys/dev/block has by number.
        dev=$(basename "$(readlink -f "/sys/dev/block/$majmin" 2>/dev/null)")
        if [[ -z $dev || $dev == "$majmin" ]]; then
            type="ext4 (journal unknown)"
        elif compgen -G "/proc/fs/jbd2/$dev-*" >/dev/null; then
            type="ext4 with journal"
        else
            type="ext4 without journal"
        fi
    fi
    echo "$type on $src"
}
# The server's own cost of one scratch database: a CREATE DATABASE as
# rehearse issues it (FILE_COPY from Postgres 15 on), timed by psql, in ms.
create_database_ms() {
    local with=""
    if (($(psql -X -At "$PGENV_URL" -c 'show server_version_num') >= 150000)); then
        with=" STRATEGY FILE_COPY"
    fi
    psql -X -q -v ON_ERROR_STOP=1 "$PGENV_URL" <<SQL | awk '/^Time:/ { print $2; exit }'
\\timing on
CREATE DATABASE bench_create_probe$with;
\\timing off
DROP DATABASE bench_create_probe;
SQL
}
# run_rounds LABEL DATABASE: one warm-up run (page cache, first exec of each
# binary), then the measured rounds into $out/LABEL-N.json.
run_rounds() {
    "$capstan" rehearse -c "$config" --database "$2" --format json -o "$out/warmup.json" 2>/dev/null
    local i
    for ((i = 1; i <= rounds; i++)); do
        sleep "$pause"
        if ! "$capstan" rehearse -c "$config" --database "$2" --format json -o "$out/$1-$i.json" 2>"$out/$1-$i.log"; then
            echo "rehearse failed on $1; see $out/$1-$i.log" >&2
            exit 1
        fi
    done
}

# Postgres runs on one cluster per directory in BENCH_PG_DIRS: by default
# the temp directory and, where /dev/shm is a tmpfs with 1 GiB free, one
# there too.
pg_dirs=${BENCH_PG_DIRS:-}
if [[ -z $pg_dirs ]]; then
    pg_dirs=${TMPDIR:-/tmp}
    if [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]] &&
        (($(df -Pk /dev/shm | awk 'NR == 2 { print $4 }') >= 1048576)); then
        pg_dirs+=" /dev/shm"
    fi
fi
rm -f "$out"/*.json "$out"/*.log "$out/runs.tsv"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
sqlite_dir=${TMPDIR:-/tmp}
before=$(file_creation "$sqlite_dir")
run_rounds sqlite sqlite
printf 'sqlite\tSQLite\t%s: %s; file creation %s -> %s us\t0\n' "$sqlite_dir" "$(fs_of "$sqlite_dir")" \
    "$before" "$(file_creation "$sqlite_dir")" >>"$out/runs.tsv"
k=0
for dir in $pg_dirs; do
    k=$((k + 1))
    TMPDIR=$dir pgenv_start
    echo "postgres $(psql -X -At "$PGENV_URL" -c 'show server_version') in $PGENV_DIR ($(fs_of "$PGENV_DIR"))"
    before=$(file_creation "$PGENV_DIR")
    create_before=$(create_database_ms)
    run_rounds "postgres-$k" "$PGENV_URL"
    after=$(file_creation "$PGENV_DIR")
    create_after=$(create_database_ms)
    printf 'postgres-%s\tPostgres\t%s: %s; file creation %s -> %s us; psql CREATE DATABASE %s -> %s ms\t%s\n' \
        "$k" "$PGENV_DIR" "$(fs_of "$PGENV_DIR")" "$before" "$after" "$create_before" "$create_after" \
        "$(awk -v a="$create_before" -v b="$create_after" 'BEGIN { print (a + b) / 2 }')" >>"$out/runs.tsv"
    pgenv_stop
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
runs_of = [line.rstrip("\n").split("\t") for line in open(f"{out}/runs.tsv")]
def work_of(r):
    """What a rehearsal cannot avoid: migrations, seeds, start-ups, smoke tests."""
    return r["migrations_ms"] + r["seed_ms"] + r["startup_ms"] + r["smoke_ms"]
print()
for label, name, where, _ in runs_of:
    print(f"{label:11} {name} in {where}")
print()
print(f"{'run':11} {'total':>8} {'migrate':>8} {'start-up':>8} {'smoke':>8} {'work':>8} {'shutdown':>8} {'db':>6} {'overhead':>9}")
verdicts = []
for label, name, where, create in runs_of:
    runs = [json.load(open(f"{out}/{label}-{i}.json"))["timings"] for i in range(1, rounds + 1)]
    def med(k):
        return statistics.median(r[k] for r in runs)
    work = statistics.median(work_of(r) for r in runs)
    overhead = statistics.median(r["overhead_pct"] for r in runs)
    verdicts.append((label, overhead))
    print(f"{label:11} {med('total_ms'):>6.0f}ms {med('migrations_ms'):>6.0f}ms {med('startup_ms'):>6.0f}ms "
          f"{med('smoke_ms'):>6.0f}ms {work:>6.0f}ms {med('shutdown_ms'):>6.0f}ms {med('database_ms'):>4.0f}ms "
          f"{overhead:>8.1f}%")
    print(f"{'':11} total / work = {med('total_ms') / work:.3f} (median of {rounds}; overhead per run: "
          + ", ".join(f"{r['overhead_pct']:.1f}%" for r in runs) + ")")
    rest = statistics.median(
        (r["total_ms"] - work_of(r) - r["database_ms"] - r["shutdown_ms"]) * 100 / r["total_ms"]
        for r in runs)
    print(f"{'':11} of which creating/dropping the scratch databases: {med('database_ms') * 100 / med('total_ms'):.1f}% of total; "
          f"shutdowns: {med('shutdown_ms') * 100 / med('total_ms'):.1f}%; everything else: {rest:.1f}%")
    if float(create) > 0:
        # A fresh database per step means the server creates at least one
        # before the first cell; how long one takes here, from psql.
        floor = work + float(create)
        print(f"{'':11} work + one CREATE DATABASE in psql ({float(create):.0f} ms) = {floor:.0f} ms; "
              f"rehearse's time beyond that: {(med('total_ms') - floor) * 100 / med('total_ms'):.1f}% of total")
print()
for label, overhead in verdicts:
    print(f"target (overhead under 15%) on {label}: {'met' if overhead < 15 else 'NOT met'} ({overhead:.1f}%)")
PY
