#!/usr/bin/env bash
# The rollout benchmark, chirpy 1.0.0 and 2.0.0 behind capstan proxy, driven
# by `capstan rollout start`:
#
#  1. time to roll back: 2.0.0 runs with a fault (CHIRPY_FAULT, default
#     error:3) under steady wrk load; from the moment the proxy's table first
#     gives it traffic to the moment it shows weight 0 again, polled every 10 ms
#     on the admin API. Target: at most two analysis intervals.
#  2. added latency while a rollout runs: a healthy 2.0.0 held at weight 50
#     (min_duration 1h), wrk -t2 -c16 --latency against the proxy with the
#     controller running (an analysis every interval over the step's events)
#     and with it stopped (the same table, the proxy alone), and against
#     chirpy 1.0.0 directly (the limit), in alternating order. Target: the
#     latency the proxy adds while a rollout runs within 10 % of the proxy
#     alone.
#
# Public tools only: bash, python3, curl, wrk (installed from apt if missing).
# See bench/rollout/README.md.
#
# Environment:
#   BENCH_PROFILE=release   cargo profile of capstan and chirpy (debug: no
#                           release build; the ratios still hold)
#   BENCH_INTERVAL=2s       the plan's analysis interval
#   BENCH_FAULT=error:3     CHIRPY_FAULT of the faulty 2.0.0
#   BENCH_FAULT_ROUNDS=3    rollbacks timed
#   BENCH_ROUNDS=5          latency rounds (at least 3)
#   BENCH_DURATION=5s       wrk -d of each latency run
#   BENCH_BIN_DIR=DIR       use capstan and chirpy-v1/-v2 from DIR instead of
#                           building them
#   BENCH_KEEP=1            keep the temp dir (plans, logs, event store)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
here=$root/bench/rollout

profile=${BENCH_PROFILE:-release}
interval=${BENCH_INTERVAL:-2s}
fault=${BENCH_FAULT:-error:3}
fault_rounds=${BENCH_FAULT_ROUNDS:-3}
rounds=${BENCH_ROUNDS:-5}
duration=${BENCH_DURATION:-5s}
if ! [[ $rounds =~ ^[0-9]+$ ]] || ((rounds < 3)); then
    echo "BENCH_ROUNDS must be a number, at least 3" >&2
    exit 2
fi
command -v wrk >/dev/null || {
    echo "installing wrk" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null
}

if [[ -n ${BENCH_BIN_DIR:-} ]]; then
    bin=$(cd "$BENCH_BIN_DIR" && pwd)
    profile="binaries from $bin"
else
    echo "building capstan and chirpy ($profile)" >&2
    if [[ $profile == release ]]; then
        cargo build --release --quiet -p capstan --bin capstan -p chirpy --bins
    else
        cargo build --quiet -p capstan --bin capstan -p chirpy --bins
    fi
    bin=${CARGO_TARGET_DIR:-$root/target}/$profile
fi

tmp=$(mktemp -d /tmp/capstan-rollout-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$tmp"; else echo "kept $tmp" >&2; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_ready() { # port: /readyz answers 200 within 20 s
    for _ in $(seq 400); do
        if curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$1/readyz"; then return 0; fi
        sleep 0.05
    done
    echo "nothing ready on port $1" >&2
    exit 1
}
wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

export DATABASE_URL=sqlite://$tmp/chirpy.db
"$bin/chirpy-v2" migrate up >"$tmp/migrate.log" 2>&1

chirpy() { # version port fault: starts an instance in the background, sets $last_pid
    CHIRPY_ADDR=127.0.0.1:$2 CHIRPY_DRAIN=0s CHIRPY_LOG=warn CHIRPY_FAULT=$3 \
        "$bin/chirpy-v$1" >>"$tmp/chirpy-v$1.log" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
    wait_ready "$2"
}

v1_port=$(free_port)
v2_port=$(free_port)
px_port=$(free_port)
adm_port=$(free_port)
chirpy 1 "$v1_port" ""
chirpy 2 "$v2_port" "$fault"
v2_pid=$last_pid

cat >"$tmp/proxy.toml" <<CONF
listen = "127.0.0.1:$px_port"
admin_listen = "127.0.0.1:$adm_port"
admin_token = "bench"
service = "chirpy"

[[release]]
name = "1.0.0"
upstreams = ["127.0.0.1:$v1_port"]

[[release]]
name = "2.0.0"
upstreams = ["127.0.0.1:$v2_port"]

[routing]
weights = { "1.0.0" = 100, "2.0.0" = 0 }

[events]
store = "$tmp/events.db"

[health]
path = "/readyz"
interval = "200ms"
CONF
"$bin/capstan" proxy --config "$tmp/proxy.toml" 2>"$tmp/proxy.log" &
pids+=($!)
wait_port "$px_port"
wait_port "$adm_port"
export CAPSTAN_PROXY_ADMIN_TOKEN=bench

# Error faults are judged on errors: latency tolerances wide (loopback
# latency is noise). A latency fault is judged with the defaults.
case $fault in
latency:*) tolerances="" ;;
*) tolerances=$'shift_tolerance = 5.0\np99_tolerance = 50.0' ;;
esac
plan() { # file first-weight min-duration
    cat >"$1" <<PLAN
service = "chirpy"
canary = "2.0.0"
baseline = "1.0.0"
events = "$tmp/events.db"
state = "$tmp/rollout.db"
hold_limit = 100000

[proxy]
admin_url = "http://127.0.0.1:$adm_port"

[defaults]
interval = "$interval"
min_duration = "$3"
min_requests = 100

[[step]]
weight = $2
[[step]]
weight = 100

[analysis]
$tolerances
PLAN
}

uptime_start=$(uptime)

# 1. Time to roll back.
plan "$tmp/fault.toml" 10 1h
wrk -t1 -c8 -d600s "http://127.0.0.1:$px_port/version" >/dev/null 2>&1 &
wrk_pid=$!
pids+=("$wrk_pid")
sleep 2
: >"$tmp/rollback.txt"
for r in $(seq "$fault_rounds"); do
    rm -f "$tmp/rollout.db"
    python3 "$here/watch.py" "http://127.0.0.1:$adm_port" bench 120 >"$tmp/watch.out" &
    watch_pid=$!
    pids+=("$watch_pid")
    sleep 0.2
    "$bin/capstan" rollout start --plan "$tmp/fault.toml" 2>>"$tmp/controller.log" && code=0 || code=$?
    wait "$watch_pid"
    echo "rollback round $r: exit $code, $(cat "$tmp/watch.out")" >&2
    if [[ $code != 10 ]]; then
        echo "the faulty release was not rolled back (exit $code); see $tmp/controller.log" >&2
        BENCH_KEEP=1
        exit 1
    fi
    cat "$tmp/watch.out" >>"$tmp/rollback.txt"
done
kill -KILL "$wrk_pid" 2>/dev/null || true

# 2. Latency with and without the controller, the same table.
kill -KILL "$v2_pid"
wait "$v2_pid" 2>/dev/null || true
chirpy 2 "$v2_port" ""
rm -f "$tmp/rollout.db"
plan "$tmp/hold.toml" 50 1h
controller=""
start_controller() {
    "$bin/capstan" rollout start --plan "$tmp/hold.toml" 2>>"$tmp/hold.log" &
    controller=$!
    pids+=("$controller")
    # At weight 50 (resumed there after the first time).
    for _ in $(seq 200); do
        if curl -sf -H 'authorization: Bearer bench' "http://127.0.0.1:$adm_port/routing" |
            python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["weights"].get("2.0.0") == 50 else 1)'; then
            return 0
        fi
        sleep 0.05
    done
    echo "the controller never set weight 50; see $tmp/hold.log" >&2
    exit 1
}
stop_controller() {
    if [[ -n $controller ]]; then
        if ! kill -0 "$controller" 2>/dev/null; then
            echo "the controller ended during the run; see $tmp/hold.log" >&2
            exit 1
        fi
        kill -KILL "$controller"
        wait "$controller" 2>/dev/null || true
        controller=""
    fi
}
run_wrk() { # name port
    wrk -t2 -c16 -d"$duration" --latency -s "$root/bench/proxy/report.lua" "http://127.0.0.1:$2/version" |
        awk -v n="$1" '/^WRK_RESULT/ { print n, $0 }'
}
start_controller
stop_controller
: >"$tmp/hold.log"
echo "warm-up" >&2
run_wrk direct "$v1_port" >/dev/null
run_wrk alone "$px_port" >/dev/null
names=(direct alone rollout)
: >"$tmp/latency.txt"
for r in $(seq "$rounds"); do
    for i in 0 1 2; do
        n=${names[$(((i + r) % 3))]}
        case $n in
        direct) line=$(run_wrk direct "$v1_port") ;;
        alone) line=$(run_wrk alone "$px_port") ;;
        rollout)
            start_controller
            line=$(run_wrk rollout "$px_port")
            stop_controller
            ;;
        esac
        echo "round $r: $line" >&2
        echo "$line" >>"$tmp/latency.txt"
    done
done
analyses=$(grep -c "step 1: " "$tmp/hold.log" || true)

python3 - "$tmp/rollback.txt" "$tmp/latency.txt" "$interval" "$fault" "$analyses" "$uptime_start" "$(uptime)" "$profile" <<'PY'
import json, statistics, sys, re
rollback, latency, interval, fault, analyses, up0, up1, profile = sys.argv[1:9]
m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", interval)
interval_ms = float(m.group(1)) * (1 if m.group(2) == "ms" else 1000)
rows = [json.loads(l) for l in open(rollback) if l.strip()]
took = [r["rollback_ms"] for r in rows]
print(f"build: {profile}; analysis interval {interval_ms:.0f} ms; fault CHIRPY_FAULT={fault}")
print(f"fault start to weight 0, {len(took)} rollbacks: " + ", ".join(f"{t:.0f}" for t in took) + " ms")
med, worst = statistics.median(took), max(took)
print(f"  median {med:.0f} ms = {med / interval_ms:.2f} intervals; worst {worst:.0f} ms = {worst / interval_ms:.2f} intervals (target <= 2.00)")
runs = {}
for line in open(latency):
    parts = line.split()
    kv = dict(p.split("=") for p in parts[2:])
    rps = int(kv["requests"]) / (int(kv["duration_us"]) / 1e6)
    runs.setdefault(parts[0], []).append((rps, int(kv["p50_us"]), int(kv["p99_us"]), int(kv["errors"]) + int(kv["non2xx"])))
med = {n: tuple(statistics.median(x[i] for x in v) for i in range(4)) for n, v in runs.items()}
d = med["direct"]
print(f"\n{'':8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} {'errors':>6}")
for n in ["direct", "alone", "rollout"]:
    rps, p50, p99, err = med[n]
    add = "" if n == "direct" else f"{(p50 - d[1]) / 1000:8.3f} {(p99 - d[2]) / 1000:8.3f}"
    print(f"{n:8} {rps:8.0f} {p50 / 1000:8.3f} {p99 / 1000:8.3f} {add:>17} {err:6.0f}")
a, r = med["alone"], med["rollout"]
print(f"\nmedians of {len(runs['direct'])} alternating rounds; {analyses} analyses ran during the rollout runs")
for label, i in [("p50", 1), ("p99", 2)]:
    ra, rr = a[i] - d[i], r[i] - d[i]
    ratio = rr / ra if ra > 0 else float("nan")
    print(f"added {label}: rollout {rr / 1000:.3f} ms, proxy alone {ra / 1000:.3f} ms, ratio {ratio:.2f} (target <= 1.10)")
print(f"throughput rollout / proxy alone: {r[0] / a[0]:.2f}")
print(f"load at the start: {up0.strip()}")
print(f"load at the end:   {up1.strip()}")
PY
