#!/usr/bin/env bash
# The SLO benchmark: `capstan slo status` for BENCH_SERVICES (20) SLOs over 30
# days of traffic at about 200 requests/s in all (the event store's per-minute
# rollups, written directly: services × 43,380 minutes), against the peer:
# Prometheus evaluating the equivalent 30-day query for every SLO on the same
# traffic, backfilled with `promtool tsdb create-blocks-from openmetrics`.
# See bench/slo/README.md.
#
# Timed, alternating, after one untimed warm-up of each:
#   (P) the peer: one curl process sending the 20 instant queries
#       sum(increase(good[30d])) / sum(increase(total[30d])) to /api/v1/query
#   (C) capstan slo status --json over the event store (20 SLOs: SLI, budget,
#       7 burn rates, alerts, forecast)
#   (Q) capstan slo status --json over the same SLOs read from Prometheus
#       (9 windows × 2 queries per SLO)
# Reported: the median of each, C / P, Q / P, and capstan's peak RSS.
#
# Environment:
#   BENCH_ROUNDS=5        timed rounds (at least 5)
#   BENCH_SERVICES=20     services, one SLO each
#   CAPSTAN_BIN=PATH      use this capstan binary instead of building target/release/capstan
#   BENCH_NO_BUILD=1      use target/release/examples/slo_bench_data as built before
set -euo pipefail

if [[ -n ${CAPSTAN_BIN:-} && $CAPSTAN_BIN != /* ]]; then
    CAPSTAN_BIN=$PWD/$CAPSTAN_BIN
fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
rounds=${BENCH_ROUNDS:-5}
services=${BENCH_SERVICES:-20}
if ! [[ $rounds =~ ^[0-9]+$ ]] || ((rounds < 5)); then
    echo "BENCH_ROUNDS must be at least 5 (the median of five or more runs is reported)" >&2
    exit 2
fi
out=$root/bench/out/slo
data=$out/data
mkdir -p "$out"

missing=()
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]} > 0)); then
    echo "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ -z ${CAPSTAN_BIN:-} ]]; then
    cargo build --release -q -p capstan
    CAPSTAN_BIN=${CARGO_TARGET_DIR:-$root/target}/release/capstan
fi
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    cargo build --release -q -p capstan-slo --example slo_bench_data
fi
gen=${CARGO_TARGET_DIR:-$root/target}/release/examples/slo_bench_data

# 2026-11-30T12:00:00Z: the data ends here and every run evaluates at it.
now_ms=1796040000000
at=2026-11-30T12:00:00Z
marker="$services $now_ms v1"
if [[ ! -f $data/done || $(cat "$data/done") != "$marker" ]]; then
    rm -rf "$data"
    mkdir -p "$data"
    echo "generating $services services × 30 days …"
    "$gen" "$data" "$now_ms" "$services"
    echo "backfilling Prometheus with promtool (one block per 2 hours; slow, not timed) …"
    t0=$(date +%s)
    promtool tsdb create-blocks-from openmetrics --quiet "$data/traffic.om" "$data/tsdb" >/dev/null
    echo "  promtool took $(($(date +%s) - t0)) s"
    rm -f "$data/traffic.om"
    echo "$marker" >"$data/done"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prom_url=http://127.0.0.1:$port
cat >"$out/prometheus.yml" <<'YML'
global:
  scrape_interval: 1m
scrape_configs: []
YML
prometheus --config.file="$out/prometheus.yml" --storage.tsdb.path="$data/tsdb" \
    --storage.tsdb.retention.time=3650d --web.listen-address="127.0.0.1:$port" \
    >"$out/prometheus.log" 2>&1 &
prom_pid=$!
cleanup() { kill "$prom_pid" 2>/dev/null || true; wait "$prom_pid" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 600); do
    curl -sf "$prom_url/-/ready" >/dev/null 2>&1 && break
    kill -0 "$prom_pid" 2>/dev/null || { cat "$out/prometheus.log"; exit 1; }
    sleep 0.1
done
curl -sf "$prom_url/-/ready" >/dev/null || { echo "prometheus not ready after 60 s" >&2; exit 1; }

# The peer's queries: one curl process, one connection, 20 queries.
curl_args=()
for ((s = 0; s < services; s++)); do
    svc=$(printf 'svc%02d' "$s")
    q="sum(increase(http_requests_total{service=\"$svc\",code!~\"5..\"}[30d])) / sum(increase(http_requests_total{service=\"$svc\"}[30d]))"
    curl_args+=(--data-urlencode "query=$q" --data-urlencode "time=$((now_ms / 1000))" -o /dev/null "$prom_url/api/v1/query" --next)
done
unset 'curl_args[${#curl_args[@]}-1]'

peer() { curl -sf "${curl_args[@]}"; }
store_status() { "$CAPSTAN_BIN" slo status --json --slos "$data/slos-store" --store "$data/capstan-events.db" --at "$at" >"$out/status-store.json"; }
prom_status() { "$CAPSTAN_BIN" slo status --json --slos "$data/slos-prom" --store "$data/capstan-events.db" --prometheus "$prom_url" --at "$at" >"$out/status-prom.json"; }

ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

peer
store_status
prom_status
: >"$out/p.txt"
: >"$out/c.txt"
: >"$out/q.txt"
for ((r = 0; r < rounds; r++)); do
    for part in p c q; do
        t=$(date +%s%N)
        case $part in
            p) peer ;;
            c) store_status ;;
            q) prom_status ;;
        esac
        ms "$t" >>"$out/$part.txt"
    done
done
/usr/bin/time -v "$CAPSTAN_BIN" slo status --json --slos "$data/slos-store" --store "$data/capstan-events.db" --at "$at" 2>"$out/time.txt" >/dev/null
rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$out/time.txt")

p=$(median <"$out/p.txt")
c=$(median <"$out/c.txt")
q=$(median <"$out/q.txt")
rows=$(python3 -c "import sqlite3; print(sqlite3.connect('$data/capstan-events.db').execute('select count(*) from rollups').fetchone()[0])")
slos=$(python3 -c "import json; print(len(json.load(open('$out/status-store.json'))['slos']))")
agree=$(python3 - "$out/status-store.json" "$out/status-prom.json" <<'PY'
import json, sys
a = {s["slo"]: s for s in json.load(open(sys.argv[1]))["slos"]}
b = {s["slo"]: s for s in json.load(open(sys.argv[2]))["slos"]}
print(max(abs(a[k]["sli"] - b[k]["sli"]) for k in a))
PY
)
echo
echo "data: $services SLOs, $rows rollup rows (30 days + 3 h at about 200 requests/s in all)"
echo "runs: median of $rounds, alternating peer / capstan (store) / capstan (Prometheus)"
printf '  (P) Prometheus, %d equivalent 30-day queries:   %6s ms\n' "$services" "$p"
printf '  (C) capstan slo status, event store:          %6s ms   C/P = %s\n' "$c" "$(python3 -c "print(round($c / max($p, 1), 2))")"
printf '  (Q) capstan slo status, Prometheus source:    %6s ms   Q/P = %s\n' "$q" "$(python3 -c "print(round($q / max($p, 1), 2))")"
echo "  capstan peak RSS (store): $((rss / 1024)) MiB"
echo "  largest SLI difference, store vs Prometheus: $agree"
if ((c < 500)); then echo "target (C < 500 ms): met"; else echo "target (C < 500 ms): MISSED"; fi
