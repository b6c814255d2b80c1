#!/usr/bin/env bash
# The migration benchmark: capstan against its peer (dbmate) and the limit (one
# psql session), on one throwaway Postgres server, in one run. See bench/README.md.
#
# Part 1 applies 500 generated migrations to a fresh database, alternating
# dbmate, capstan, psql for BENCH_ROUNDS rounds (after one warm-up round), and
# reports the median wall time, the ratios and peak RSS.
# Part 2 times `capstan migrate status` (and `dbmate status`) with hyperfine on
# a database holding 5,000 applied migrations.
#
# Environment:
#   BENCH_ROUNDS=7          timed rounds of part 1 (at least 5)
#   BENCH_MIGRATIONS=500    migrations in part 1
#   BENCH_STATUS_MIGRATIONS=5000
#   BENCH_PART=all          all | apply | status
#   CAPSTAN_BIN=PATH        use this capstan binary instead of building
#                           target/release/capstan
#   BENCH_NICE=-10          run the server and every contender at this niceness
#                           (all alike), so a busy shared machine sways the
#                           figures less; negative values need root
#   PGENV_KEEP=1            keep the cluster's directory (and log) afterwards
set -euo pipefail

if [[ -n ${CAPSTAN_BIN:-} && $CAPSTAN_BIN != /* ]]; then
    CAPSTAN_BIN=$PWD/$CAPSTAN_BIN
fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
# shellcheck source=scripts/pg-env.sh
source scripts/pg-env.sh

rounds=${BENCH_ROUNDS:-7}
count=${BENCH_MIGRATIONS:-500}
status_count=${BENCH_STATUS_MIGRATIONS:-5000}
part=${BENCH_PART:-all}
out=$root/bench/out/migrate
if ((rounds < 5)); then
    echo "BENCH_ROUNDS must be at least 5 (the median of five or more runs is reported)" >&2
    exit 2
fi
niceness=${BENCH_NICE:-}
if [[ -n $niceness ]] && ! [[ $niceness =~ ^-?[0-9]+$ ]]; then
    echo "BENCH_NICE must be a number, like -10" >&2
    exit 2
fi
case $part in all | apply | status) ;; *)
    echo "BENCH_PART must be all, apply or status" >&2
    exit 2
    ;;
esac

section() {
    printf '\n==== %s ====\n' "$*"
}

pgenv_stop_on_exit

section "setup"
mkdir -p "$out"
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v hyperfine >/dev/null 2>&1 || missing+=(hyperfine)
command -v npm >/dev/null 2>&1 || command -v dbmate >/dev/null 2>&1 || missing+=(npm)
pgenv_find_bin >/dev/null || missing+=(postgresql)
pgenv_install_missing "${missing[@]}"

if command -v dbmate >/dev/null 2>&1; then
    dbmate=$(command -v dbmate)
else
    dbmate=$root/bench/out/npm/node_modules/.bin/dbmate
    if [[ ! -x $dbmate ]]; then
        npm install --silent --no-audit --no-fund --prefix "$root/bench/out/npm" dbmate
    fi
fi

if [[ -n ${CAPSTAN_BIN:-} ]]; then
    capstan=$CAPSTAN_BIN
else
    cargo build --release -p capstan
    capstan=$root/target/release/capstan
fi

echo "dbmate:    $("$dbmate" --version)"
echo "capstan:   $("$capstan" --version 2>/dev/null || echo "$capstan")"
echo "hyperfine: $(hyperfine --version)"

load_start=$(cut -d' ' -f1-3 /proc/loadavg)

section "generate"
python3 bench/migrate/gen.py --count "$count" --out "$out/apply"
"$capstan" migrate hash --dir "$out/apply/capstan" >/dev/null
if [[ $part != apply ]]; then
    python3 bench/migrate/gen.py --count "$status_count" --small --out "$out/status"
    "$capstan" migrate hash --dir "$out/status/capstan" >/dev/null
fi

section "Postgres"
if [[ -n $niceness ]]; then
    # Everything started from here on (the server, the contenders) inherits it.
    renice -n "$niceness" -p $$ >/dev/null
    echo "running at nice $niceness"
fi
pgenv_start
base="postgres://postgres@127.0.0.1:$PGENV_PORT"
server_version=$(psql -X -At "$PGENV_URL" -c 'show server_version')
echo "server $server_version on port $PGENV_PORT (fsync, full_page_writes, synchronous_commit off)"

sql() {
    PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 "$PGENV_URL" "$@"
}
fresh_db() {
    sql -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
}
drop_db() {
    sql -c "DROP DATABASE IF EXISTS $1"
}

# Sets `cmd` to the command line of a contender, for database $2 and migration set $3.
contender() {
    local tool=$1 db=$2 set=$3
    case $tool in
    dbmate)
        cmd=("$dbmate" --no-dump-schema --url "$base/$db?sslmode=disable"
            --migrations-dir "$set/dbmate" up)
        ;;
    capstan)
        cmd=("$capstan" migrate up --database "$base/$db" --dir "$set/capstan")
        ;;
    psql)
        cmd=(psql -X -q -v ON_ERROR_STOP=1 -d "$base/$db" -f "$set/psql/all.sql")
        ;;
    esac
}

# One timed run on a fresh database: prints "micros rss_kb".
run_once() {
    local tool=$1 db=$2 set=$3 log=$out/$1.log cmd=() start end
    contender "$tool" "$db" "$set"
    fresh_db "$db"
    start=${EPOCHREALTIME/[.,]/}
    if ! /usr/bin/time -v -o "$out/$tool.time" "${cmd[@]}" >"$log" 2>&1; then
        echo "$tool failed on $db; its output ($log):" >&2
        tail -n 30 "$log" >&2
        return 1
    fi
    end=${EPOCHREALTIME/[.,]/}
    local got want
    got=$(psql -X -At -d "$base/$db" -f "$set/check.sql")
    want=$(<"$set/expected")
    if [[ $got != "$want" ]]; then
        echo "$tool left a different database on $db: tables/columns/indexes/rows $got, expected $want" >&2
        return 1
    fi
    drop_db "$db"
    echo "$((end - start)) $(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/$tool.time")"
}

results=$out/apply.tsv
status_json=$out/status.json
: >"$results"
rm -f "$status_json" "$out/status-rss"

if [[ $part != status ]]; then
    section "part 1: apply $count migrations, $rounds rounds (+1 warm-up), alternating"
    for round in $(seq 0 "$rounds"); do
        line="round $round:"
        [[ $round == 0 ]] && line="warm-up:"
        for tool in dbmate capstan psql; do
            read -r micros rss < <(run_once "$tool" "bench_$tool" "$out/apply") || exit 1
            [[ -n $micros ]] || exit 1
            ((round == 0)) || printf '%s\t%s\t%s\n' "$tool" "$micros" "$rss" >>"$results"
            line+=$(printf '  %s %.3f s' "$tool" "$(awk -v u="$micros" 'BEGIN {print u / 1e6}')")
        done
        echo "$line"
    done
fi

if [[ $part != apply ]]; then
    section "part 2: status on a database with $status_count applied migrations"
    fresh_db bench_status_capstan
    fresh_db bench_status_dbmate
    start=${EPOCHREALTIME/[.,]/}
    "$capstan" migrate up --database "$base/bench_status_capstan" --dir "$out/status/capstan" \
        >"$out/status-up.log" 2>&1 || {
        tail -n 30 "$out/status-up.log" >&2
        exit 1
    }
    end=${EPOCHREALTIME/[.,]/}
    echo "capstan applied $status_count migrations in $(awk -v u="$((end - start))" 'BEGIN {printf "%.1f", u / 1e6}') s"
    start=${EPOCHREALTIME/[.,]/}
    "$dbmate" --no-dump-schema --url "$base/bench_status_dbmate?sslmode=disable" \
        --migrations-dir "$out/status/dbmate" up >"$out/status-dbmate-up.log" 2>&1 || {
        tail -n 30 "$out/status-dbmate-up.log" >&2
        exit 1
    }
    end=${EPOCHREALTIME/[.,]/}
    echo "dbmate applied $status_count migrations in $(awk -v u="$((end - start))" 'BEGIN {printf "%.1f", u / 1e6}') s"

    capstan_status="$capstan migrate status --database $base/bench_status_capstan --dir $out/status/capstan"
    dbmate_status="$dbmate --url $base/bench_status_dbmate?sslmode=disable --migrations-dir $out/status/dbmate status"
    hyperfine -N --style basic --warmup 3 --runs 20 --export-json "$status_json" \
        -n "dbmate status" "$dbmate_status" \
        -n "capstan migrate status" "$capstan_status"
    /usr/bin/time -v -o "$out/status.time" "$capstan" migrate status \
        --database "$base/bench_status_capstan" --dir "$out/status/capstan" >/dev/null 2>&1
    awk -F': ' '/Maximum resident set size/ {print $2}' "$out/status.time" >"$out/status-rss"
fi

load_end=$(cut -d' ' -f1-3 /proc/loadavg)

section "summary"
python3 - "$results" "$status_json" "$out/status-rss" "$count" "$status_count" "$rounds" \
    "$server_version" "$load_start" "$load_end" "${niceness:-0}" <<'EOF' | tee "$out/summary.txt"
import json, os, statistics, sys

(results, status_json, status_rss, count, status_count, rounds, server,
 load_start, load_end, niceness) = sys.argv[1:]
runs = {}
with open(results) as f:
    for line in f:
        tool, micros, rss = line.split()
        # time -v reports KiB; the target is in MB
        runs.setdefault(tool, []).append((int(micros) / 1e6, int(rss) * 1024 / 1e6))

def verdict(ok):
    return "ok" if ok else "MISSED"

print(f"capstan migration benchmark: Postgres {server}, fsync off, same server for all")
print(f"load average (1/5/15 min) at start {load_start}, at end {load_end};"
      f" {os.cpu_count()} CPUs" + (f"; all at nice {niceness}" if niceness != "0" else ""))
if runs:
    med = {t: statistics.median(s for s, _ in r) for t, r in runs.items()}
    peak = {t: max(m for _, m in r) for t, r in runs.items()}
    print(f"\napply {count} migrations to a fresh database, median of {rounds} alternating runs")
    print(f"  {'':26} {'median':>8} {'min':>8} {'max':>8} {'peak RSS':>12}")
    for tool, label in [("dbmate", "dbmate (peer)"), ("capstan", "capstan migrate up"),
                        ("psql", "psql session (limit)")]:
        secs = [s for s, _ in runs[tool]]
        print(f"  {label:26} {med[tool]:7.3f}s {min(secs):7.3f}s {max(secs):7.3f}s"
              f" {peak[tool]:9.1f} MB")
    r_peer = med["capstan"] / med["dbmate"]
    r_limit = med["capstan"] / med["psql"]
    rss = peak["capstan"]
    # The same ratio taken within each round, then the median: less swayed by
    # load that comes and goes between rounds.
    def paired(other):
        return statistics.median(c / o for (c, _), (o, _) in zip(runs["capstan"], runs[other]))
    print(f"  {'capstan / dbmate':26} {r_peer:7.2f}   target <= 0.80    {verdict(r_peer <= 0.8)}"
          f"   (within rounds: {paired('dbmate'):.2f})")
    print(f"  {'capstan / psql limit':26} {r_limit:7.2f}   target <= 1.30    {verdict(r_limit <= 1.3)}"
          f"   (within rounds: {paired('psql'):.2f})")
    print(f"  {'capstan up peak RSS':26} {rss:7.1f}   target < 50 MB    {verdict(rss < 50)}")
if os.path.exists(status_json):
    with open(status_json) as f:
        res = {r["command"]: r for r in json.load(f)["results"]}
    cap = res["capstan migrate status"]["median"] * 1000
    peer = res["dbmate status"]["median"] * 1000
    print(f"\nstatus on a database with {status_count} applied migrations (hyperfine, median)")
    print(f"  {'dbmate status (peer)':26} {peer:7.1f} ms")
    print(f"  {'capstan migrate status':26} {cap:7.1f} ms   target < 200 ms   {verdict(cap < 200)}")
    print(f"  {'capstan / dbmate':26} {cap / peer:7.2f}")
    if os.path.exists(status_rss):
        with open(status_rss) as f:
            print(f"  {'capstan status peak RSS':26} {int(f.read()) * 1024 / 1e6:7.1f} MB")
EOF
