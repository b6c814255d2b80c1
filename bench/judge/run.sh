#!/usr/bin/env bash
# The judge benchmark: one verdict (an error ratio and a latency metric, both
# critical) on 1,000,000 lognormal latency samples a side, from the raw values
# to the report, against the limit (sorting both sides with the same radix
# sort: any rank test has to) and the peer (SciPy's Mann-Whitney U and Fisher's
# exact test on the same kind of data). Target: under 200 ms. See README.md.
#
# Environment:
#   BENCH_ROUNDS=5        timed rounds of each (at least 3)
#   BENCH_SAMPLES=1000000 samples a side
#   BENCH_PEER=1          0 skips the SciPy peer (no Python venv)
#   BENCH_NICE=N          run both contenders at niceness N (unset: as started),
#                         so a busy shared machine sways the figures less; -10
#                         and the like need root
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
rounds=${BENCH_ROUNDS:-5}
samples=${BENCH_SAMPLES:-1000000}
out=$root/bench/out/judge
mkdir -p "$out"

echo "building examples/judge_bench (release)..." >&2
cargo build --release --quiet -p capstan-rollout --example judge_bench
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release/examples/judge_bench

peer=${BENCH_PEER:-1}
if [[ $peer == 1 ]]; then
    if [[ ! -x $out/venv/bin/python ]]; then
        echo "installing the peer (scipy, numpy) into $out/venv..." >&2
        python3 -m venv "$out/venv"
        "$out/venv/bin/pip" install --quiet scipy numpy
    fi
fi

nice_cmd=()
if [[ -n ${BENCH_NICE:-} ]]; then
    nice_cmd=(nice -n "$BENCH_NICE")
fi

: >"$out/capstan.jsonl"
: >"$out/peer.jsonl"
# Alternate peer and capstan, one round each, so load on a shared machine hits both.
for ((i = 0; i < rounds; i++)); do
    if [[ $peer == 1 ]]; then
        "${nice_cmd[@]}" "$out/venv/bin/python" bench/judge/peer.py "$samples" 1 >>"$out/peer.jsonl"
    fi
    "${nice_cmd[@]}" "$bin" "$samples" 1 >>"$out/capstan.jsonl"
done

python3 - "$out" "$peer" <<'PY'
import json, statistics, sys, os
out, peer = sys.argv[1], sys.argv[2] == "1"
rows = [json.loads(l) for l in open(os.path.join(out, "capstan.jsonl"))]
verdict = statistics.median(r["verdict_ms"] for r in rows)
sort = statistics.median(r["sort_ms"] for r in rows)
n = rows[0]["samples"]
print(f"samples a side      {n}")
print(f"verdict (median)    {verdict:.1f} ms   ({verdict / 200:.2f} of the 200 ms target)")
print(f"limit: sort (median){sort:8.1f} ms   verdict/limit {verdict / sort:.2f}")
print(f"hodges-lehmann      {rows[0]['hl_method']}")
if peer:
    p = [json.loads(l) for l in open(os.path.join(out, "peer.jsonl"))]
    pm = statistics.median(r["peer_ms"] for r in p)
    print(f"peer: scipy (median){pm:8.1f} ms   verdict/peer {verdict / pm:.2f}")
print(f"load average        {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
PY
