#!/usr/bin/env bash
# The dashboard benchmark: `capstan dashboard` over BENCH_SERVICES (20) SLOs
# with 30 days of traffic (the data of bench/slo: per-minute rollups written
# directly, about 200 requests/s in all). Measured in one run:
#   server time of the overview and of a service page (curl's time_total over
#   loopback, BENCH_REQUESTS each), p50 and p95, against the 100 ms target;
#   first paint in headless Chromium (the Paint Timing API, through
#   chromedriver's WebDriver API), BENCH_PAINTS loads each, against 500 ms;
#   and, as the work a page would cost without the snapshot, one
#   `capstan slo status --json` over the same SLOs.
# See bench/dashboard/README.md.
#
# Environment:
#   BENCH_SERVICES=20  BENCH_REQUESTS=200  BENCH_PAINTS=20
#   CAPSTAN_BIN=PATH   use this capstan binary instead of target/release/capstan
set -euo pipefail
if [[ -n ${CAPSTAN_BIN:-} && $CAPSTAN_BIN != /* ]]; then CAPSTAN_BIN=$PWD/$CAPSTAN_BIN; fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
services=${BENCH_SERVICES:-20}
requests=${BENCH_REQUESTS:-200}
paints=${BENCH_PAINTS:-20}
out=$root/bench/out/dashboard
data=$out/data
mkdir -p "$out"

missing=()
command -v curl >/dev/null || missing+=(curl)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]} > 0)); then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

if [[ -z ${CAPSTAN_BIN:-} ]]; then
    cargo build --release -q -p capstan
    CAPSTAN_BIN=$root/target/release/capstan
fi
cargo build --release -q -p capstan-slo --example slo_bench_data
now_ms=$(( $(date +%s) * 1000 ))
echo "generating $services services × 30 days of rollups in $data"
"$root/target/release/examples/slo_bench_data" "$data" "$now_ms" "$services" >/dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dport=$(port)
cport=$(port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

( cd "$data" && exec "$CAPSTAN_BIN" dashboard --listen "127.0.0.1:$dport" --slos slos-store \
    --store capstan-events.db --rollout-state "$out/none.db" --refresh 1h -c /nonexistent.toml ) \
    2>"$out/dashboard.log" &
pids+=($!)
chromedriver --port="$cport" >/dev/null 2>&1 &
pids+=($!)

base=http://127.0.0.1:$dport
t0=$(date +%s%N)
for _ in $(seq 1 600); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$base/api/status") == 200 ]] && break
    sleep 0.1
done
[[ $(curl -s -o /dev/null -w '%{http_code}' "$base/api/status") == 200 ]] || { echo "no snapshot within 60 s" >&2; cat "$out/dashboard.log" >&2; exit 1; }
echo "first snapshot after $(( ($(date +%s%N) - t0) / 1000000 )) ms (includes start-up)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
stats() { sort -n | awk '{a[NR]=$1} END {i50=int(NR*0.5+0.5); i95=int(NR*0.95+0.5); if(i95<1)i95=1; printf "%.1f %.1f\n", a[i50]*1000, a[i95]*1000}'; }

declare -A p50 p95
for page in / /service/svc00; do
    curl -s -o /dev/null "$base$page"   # warm-up
    read -r a b < <(for _ in $(seq 1 "$requests"); do curl -s -o /dev/null -w '%{time_total}\n' "$base$page"; done | stats)
    p50[$page]=$a; p95[$page]=$b
done
bytes_o=$(curl -s "$base/" | wc -c)
bytes_s=$(curl -s "$base/service/svc00" | wc -c)

# First paint: one Chromium session, each page loaded BENCH_PAINTS times.
wd=http://127.0.0.1:$cport
for _ in $(seq 1 100); do curl -s "$wd/status" >/dev/null && break; sleep 0.1; done
sid=$(curl -s -X POST "$wd/session" -H 'content-type: application/json' -d '{"capabilities":{"alwaysMatch":{"goog:chromeOptions":{"binary":"/usr/bin/chromium","args":["--headless=new","--no-sandbox","--disable-gpu","--disable-dev-shm-usage","--window-size=1280,1000"]}}}}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"]["sessionId"])')
declare -A f50 f95
for page in / /service/svc00; do
    # One untimed load first, as for the server time.
    curl -s -X POST "$wd/session/$sid/url" -H 'content-type: application/json' -d "{\"url\":\"$base$page\"}" >/dev/null
    read -r a b < <(for _ in $(seq 1 "$paints"); do
        curl -s -X POST "$wd/session/$sid/url" -H 'content-type: application/json' -d "{\"url\":\"$base$page\"}" >/dev/null
        curl -s -X POST "$wd/session/$sid/execute/sync" -H 'content-type: application/json' \
            -d '{"script":"const e = performance.getEntriesByName(\"first-contentful-paint\")[0] || performance.getEntriesByName(\"first-paint\")[0]; return e ? e.startTime / 1000 : -1;","args":[]}' \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])'
    done | stats)
    f50[$page]=$a; f95[$page]=$b
done
curl -s -X DELETE "$wd/session/$sid" >/dev/null

# The work behind the numbers, done once per snapshot instead of per request.
s0=$(date +%s%N)
( cd "$data" && "$CAPSTAN_BIN" slo status --json --slos slos-store --store capstan-events.db -c /nonexistent.toml >/dev/null )
slo_ms=$(( ($(date +%s%N) - s0) / 1000000 ))

echo
echo "dashboard, $services SLOs over 30 days; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| page | bytes | server p50 | server p95 | p95 / 100 ms target | first paint p50 | first paint p95 | p95 / 500 ms target |\n|---|---|---|---|---|---|---|---|\n'
for page in / /service/svc00; do
    b=$bytes_o; [[ $page == / ]] || b=$bytes_s
    printf '| %s | %s | %s ms | %s ms | %s | %s ms | %s ms | %s |\n' "$page" "$b" "${p50[$page]}" "${p95[$page]}" \
        "$(ratio "${p95[$page]}" 100)" "${f50[$page]}" "${f95[$page]}" "$(ratio "${f95[$page]}" 500)"
done
echo
echo "capstan slo status --json over the same SLOs (what each page would cost without the snapshot): $slo_ms ms; overview p95 / that: $(ratio "${p95[/]}" "$slo_ms")"
