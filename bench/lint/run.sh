#!/usr/bin/env bash
# Lint benchmark: capstan lint vs squawk-cli (the peer, see shared BENCHMARKS.md) on
#   1. a real corpus: the diesel migrations of a checkout given as CORPUS_DIR
#      (e.g. LemmyNet/lemmy: 342 up.sql/down.sql pairs), converted for capstan with
#      `capstan migrate import --from diesel`; squawk lints the same up.sql and
#      down.sql files. capstan cold (no parse cache) and warm (cache filled);
#   2. a generated 300-file migration directory, and
#   3. one generated 50,000-statement file,
# all with JSON output to /dev/null. Reports the best and the median wall time of
# >= 5 alternating runs (peer, capstan, peer, ...) measured with hyperfine, the
# ratio, and peak RSS (/usr/bin/time -v). capstan is schema-aware here (it replays
# the directory).
#
# Usage: CORPUS_DIR=/path/to/lemmy bench/lint/run.sh [RUNS]
#        (from the repository root; default 5 runs; without CORPUS_DIR the real
#        corpus is left out, and the script says so)
set -euo pipefail

RUNS="${1:-5}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

command -v squawk >/dev/null || pip install --quiet squawk-cli
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }

cargo build --quiet --release -p capstan --manifest-path "$ROOT/Cargo.toml"
CAPSTAN_BIN="$ROOT/target/release/capstan"
CAPSTAN="$CAPSTAN_BIN lint"
# Cold: no parse cache. Warm: a cache filled by one run beforehand.
export CAPSTAN_LINT_CACHE=off
WARM="$WORK/cache"

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
ps = [float(x) for x in open(pf)]
os_ = [float(x) for x in open(of)]
p, o = statistics.median(ps), statistics.median(os_)
print(f"{name}: squawk {p*1000:.1f} ms (best {min(ps)*1000:.1f}), capstan {o*1000:.1f} ms (best {min(os_)*1000:.1f}), "
      f"ratio capstan/squawk {o/p:.2f}x median, {min(os_)/min(ps):.2f}x best "
      f"({runs} alternating runs); peak RSS squawk {int(prss)/1024:.1f} MiB, capstan {int(orss)/1024:.1f} MiB")
PY
}

echo "squawk $(squawk --version | awk '{print $2}') vs capstan lint (release), $(nproc) cores"
if [ -n "${CORPUS_DIR:-}" ]; then
    [ -d "$CORPUS_DIR/migrations" ] || { echo "CORPUS_DIR=$CORPUS_DIR has no migrations/ directory" >&2; exit 2; }
    cp -r "$CORPUS_DIR/migrations" "$WORK/corpus"
    "$CAPSTAN_BIN" migrate import --from diesel "$WORK/corpus" --dir "$WORK/corpus-capstan" >/dev/null
    n=$(find "$WORK/corpus-capstan" -name '*.sql' | wc -l)
    echo "real corpus: $CORPUS_DIR ($n migrations, up and down sections)"
    bench "real corpus, capstan cold (no cache)" \
        "squawk --reporter json $WORK/corpus/*/up.sql $WORK/corpus/*/down.sql > /dev/null" \
        "$CAPSTAN --format json $WORK/corpus-capstan > /dev/null"
    CAPSTAN_LINT_CACHE="$WARM" $CAPSTAN --format json "$WORK/corpus-capstan" >/dev/null || true
    bench "real corpus, capstan warm (parse cache)" \
        "squawk --reporter json $WORK/corpus/*/up.sql $WORK/corpus/*/down.sql > /dev/null" \
        "CAPSTAN_LINT_CACHE=$WARM $CAPSTAN --format json $WORK/corpus-capstan > /dev/null"
else
    echo "real corpus: left out (set CORPUS_DIR to a checkout with diesel migrations/, e.g. LemmyNet/lemmy)"
fi
bench "300-file directory" \
    "squawk --reporter json $WORK/migrations/*.sql > /dev/null" \
    "$CAPSTAN --format json $WORK/migrations > /dev/null"
bench "50,000-statement file" \
    "squawk --reporter json $WORK/big.sql > /dev/null" \
    "$CAPSTAN --format json $WORK/big.sql > /dev/null"
