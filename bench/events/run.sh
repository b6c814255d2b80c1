#!/usr/bin/env bash
# The event recorder benchmark: events per second from Recorder::record into the
# SQLite store (raw rows plus per-minute rollups, one transaction per batch),
# against the limit: the same rows inserted with plain rusqlite into the same
# table, one transaction per 4,096 rows, no rollups. Alternating runs, medians.
# Also the cost of one Recorder::record call (the part on the request path).
#
# Environment:
#   BENCH_EVENTS=300000   events per run
#   BENCH_ROUNDS=5        alternating limit/capstan runs (medians reported)
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo bench -p capstan-events --bench recorder
