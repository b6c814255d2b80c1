#!/usr/bin/env bash
# Lint benchmark: capstan lint vs squawk-cli (the peer, see shared BENCHMARKS.md) on
#   1. a 300-file migration directory, and
#   2. one 50,000-statement file,
# both with JSON output to /dev/null. Reports the median wall time of >= 5 alternating
# runs (peer, capstan, peer, ...) measured with hyperfine, the ratio, and peak RSS
# (/usr/bin/time -v). capstan is schema-aware here (it replays the directory).
#
# Usage: bench/lint/run.sh [RUNS]   (from the repository root; default 5 runs)
set -euo pipefail

RUNS="${1:-5}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

command -v squawk >/dev/null || pip install --quiet squawk-cli
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }

# After the merge this becomes `capstan lint`; until then the crate's example binary
# is the same cli::run behind the same arguments.
cargo build --quiet --release -p capstan-lint --example lint --manifest-path "$ROOT/Cargo.toml"
CAPSTAN="$ROOT/target/release/examples/lint"

python3 "$ROOT/bench/lint/gen.py" dir "$WORK/migrations" 300
python3 "$ROOT/bench/lint/gen.py" big "$WORK/big.sql" 50000

bench() { # name, peer command, capstan command
    local name="$1" peer="$2" ours="$3"
    : >"$WORK/peer.times"; : >"$WORK/ours.times"
    for _ in $(seq "$RUNS"); do
        hyperfine --runs 1 --ignore-failure --style none --export-json "$WORK/h.json" "$peer" >/dev/null 2>&1
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"])' "$WORK/h.json" >>"$WORK/peer.times"
        hyperfine --runs 1 --ignore-failure --style none --export-json "$WORK/h.json" "$ours" >/dev/null 2>&1
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"])' "$WORK/h.json" >>"$WORK/ours.times"
    done
    # Both tools exit non-zero when they find something: that is not a failure here.
    rss() { { /usr/bin/time -v bash -c "$1" 2>&1 >/dev/null || true; } | awk -F': ' '/Maximum resident set size/ {print $2}'; }
    local peer_rss ours_rss
    peer_rss="$(rss "$peer")"; ours_rss="$(rss "$ours")"
    python3 - "$name" "$WORK/peer.times" "$WORK/ours.times" "$peer_rss" "$ours_rss" "$RUNS" <<'PY'
import statistics, sys
name, pf, of, prss, orss, runs = sys.argv[1:]
p = statistics.median(float(x) for x in open(pf))
o = statistics.median(float(x) for x in open(of))
print(f"{name}: squawk {p*1000:.1f} ms, capstan {o*1000:.1f} ms, ratio capstan/squawk {o/p:.2f}x "
      f"(median of {runs} alternating runs); peak RSS squawk {int(prss)/1024:.1f} MiB, capstan {int(orss)/1024:.1f} MiB")
PY
}

echo "squawk $(squawk --version | awk '{print $2}') vs capstan-lint (release), $(nproc) cores"
bench "300-file directory" \
    "squawk --reporter json $WORK/migrations/*.sql > /dev/null" \
    "$CAPSTAN --format json $WORK/migrations > /dev/null"
bench "50,000-statement file" \
    "squawk --reporter json $WORK/big.sql > /dev/null" \
    "$CAPSTAN --format json $WORK/big.sql > /dev/null"
