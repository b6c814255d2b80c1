#!/usr/bin/env python3
"""The peer: SciPy on the same kind of comparison as examples/judge_bench.rs.

N lognormal latencies a side (median 51 vs 50 ms, sigma 0.5), Mann-Whitney U
(asymptotic, one-sided, tie-corrected) and Fisher's exact test on 1 % errors
a side. SciPy has no two-sample Hodges-Lehmann, so the peer does less than the
judge. Prints one JSON line per round: {"samples":N,"peer_ms":..}.

usage: peer.py N ROUNDS
"""
import json
import sys
import time

import numpy as np
from scipy import stats

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
rng = np.random.default_rng(42)
canary = rng.lognormal(np.log(51.0), 0.5, n)
baseline = rng.lognormal(np.log(50.0), 0.5, n)
for _ in range(rounds):
    start = time.perf_counter()
    mw = stats.mannwhitneyu(canary, baseline, alternative="greater", method="asymptotic")
    fisher = stats.fisher_exact([[n // 100, n - n // 100], [n // 100, n - n // 100]], alternative="greater")
    p99 = (np.percentile(canary, 99), np.percentile(baseline, 99))
    ms = (time.perf_counter() - start) * 1e3
    print(json.dumps({"samples": n, "peer_ms": round(ms, 1), "p": float(mw.pvalue)}))
