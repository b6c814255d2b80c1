#!/usr/bin/env bash
# The proxy benchmark: one tiny static upstream (nginx serving a 12-byte file)
# reached directly (the limit), through capstan proxy (release build, events
# on), through nginx proxy_pass with keepalive upstreams, and through haproxy
# (the peers), and through capstan with events off (the request path alone,
# to tell its cost from recording's). wrk -t2 -c64 --latency loads each in alternating order, round
# after round; the summary prints medians, throughput ratios and the latency
# each proxy adds over direct at p50 and p99, and capstan's peak RSS; the same
# again with browser-shaped requests (browser.lua: ~900 bytes of headers, a
# 4 KiB answer). Then h2load
# offers each a fixed 20,000 requests/s (open loop, so a slow answer does not
# slow the load), in alternating rounds too: the latency each adds at that
# rate (medians), and the events capstan recorded and dropped meanwhile.
# Loopback only.
# See bench/proxy/README.md.
#
# Environment:
#   BENCH_ROUNDS=5          timed rounds (at least 3; a short warm-up is not counted)
#   BENCH_DURATION=5s       wrk -d of each timed run
#   BENCH_RATE_SECONDS=10   length of each fixed-rate run
#   CAPSTAN_BIN=PATH        use this capstan binary instead of building
#                           target/release/capstan
#   BENCH_KEEP=1            keep the temp dir (configs, logs, event store)
set -euo pipefail

if [[ -n ${CAPSTAN_BIN:-} && $CAPSTAN_BIN != /* ]]; then
    CAPSTAN_BIN=$PWD/$CAPSTAN_BIN
fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
here=$root/bench/proxy

rounds=${BENCH_ROUNDS:-5}
duration=${BENCH_DURATION:-5s}
rate_seconds=${BENCH_RATE_SECONDS:-10}
if ! [[ $rounds =~ ^[0-9]+$ ]] || ((rounds < 3)); then
    echo "BENCH_ROUNDS must be a number, at least 3" >&2
    exit 2
fi

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null
fi

if [[ -z ${CAPSTAN_BIN:-} ]]; then
    echo "building target/release/capstan" >&2
    cargo build --release --quiet -p capstan --bin capstan
    CAPSTAN_BIN=${CARGO_TARGET_DIR:-$root/target}/release/capstan
fi

tmp=$(mktemp -d /tmp/capstan-proxy-bench.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$tmp"; else echo "kept $tmp" >&2; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

up_port=$(free_port)
ngx_port=$(free_port)
hap_port=$(free_port)
cap_port=$(free_port)
adm_port=$(free_port)
off_port=$(free_port)
mkdir -p "$tmp/www" "$tmp/up" "$tmp/ngx"
printf 'hello world\n' >"$tmp/www/index.html"
# A JSON API's answer of 4 KiB, for the browser-shaped rounds.
python3 -c '
import json
rows = [{"id": i, "version": f"2.{i}.0", "state": "healthy", "started_at": "2026-12-05T01:00:00Z",
         "address": f"10.0.{i}.17:8080", "requests": 1000 + i} for i in range(40)]
doc = lambda n, pad: json.dumps({"instances": rows[:n], "note": " " * pad})
n = max(k for k in range(41) if len(doc(k, 0)) < 4095)
print(doc(n, 4095 - len(doc(n, 0))))' >"$tmp/www/api.json"
export BENCH_REPORT_LUA=$here/report.lua

nginx_conf() { # dir port body
    cat >"$1/nginx.conf" <<CONF
worker_processes $4;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $1;
    proxy_temp_path $1;
    fastcgi_temp_path $1;
    uwsgi_temp_path $1;
    scgi_temp_path $1;
    keepalive_requests 1000000;
    $3
    server {
        listen 127.0.0.1:$2 reuseport;
        $5
    }
}
CONF
}
nginx_conf "$tmp/up" "$up_port" "" 1 "root $tmp/www; location / { index index.html; }"
nginx_conf "$tmp/ngx" "$ngx_port" "upstream up { server 127.0.0.1:$up_port; keepalive 64; }" 2 \
    "location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
cat >"$tmp/haproxy.cfg" <<CONF
global
    nbthread 2
    maxconn 4000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend f
    bind 127.0.0.1:$hap_port
    default_backend b
backend b
    server s1 127.0.0.1:$up_port
CONF
cat >"$tmp/proxy.toml" <<CONF
listen = "127.0.0.1:$cap_port"
admin_listen = "127.0.0.1:$adm_port"
admin_token = "bench"
service = "bench"

[[release]]
name = "1.0.0"
upstreams = ["127.0.0.1:$up_port"]

[events]
store = "$tmp/events.db"

[health]
path = "/index.html"
CONF
# The same proxy with events off: the request path alone, so the summary
# can tell what recording every request costs from what proxying costs.
sed -e "s/^listen = .*/listen = \"127.0.0.1:$off_port\"/" -e '/^admin_/d' \
    -e 's/^store = .*/enabled = false/' "$tmp/proxy.toml" >"$tmp/proxy-off.toml"

nginx -c "$tmp/up/nginx.conf" & up_pid=$!
pids+=($up_pid)
nginx -c "$tmp/ngx/nginx.conf" & ngx_pid=$!
pids+=($ngx_pid)
haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1 & hap_pid=$!
pids+=($hap_pid)
"$CAPSTAN_BIN" proxy --config "$tmp/proxy.toml" 2>"$tmp/capstan.log" & cap_pid=$!
pids+=($cap_pid)
"$CAPSTAN_BIN" proxy --config "$tmp/proxy-off.toml" 2>"$tmp/capstan-off.log" & off_pid=$!
pids+=($off_pid)
for p in $up_port $ngx_port $hap_port $cap_port $adm_port $off_port; do wait_port "$p"; done

declare -A port=([direct]=$up_port [capstan]=$cap_port [nginx]=$ngx_port [haproxy]=$hap_port
    [capstan-noev]=$off_port)
names=(direct capstan nginx haproxy capstan-noev)
count=${#names[@]}
results=$tmp/results
: >"$results"

# CPU time (user + system, clock ticks) of the processes that serve each
# contender: nginx's workers (a master's own figures leave its children
# out), haproxy's and capstan's every thread.
workers_of() { # master count: its worker pids, once it has started them all
    for _ in $(seq 200); do
        if (($(pgrep -c -P "$1") >= $2)); then
            pgrep -P "$1" | tr '\n' ' '
            return
        fi
        sleep 0.05
    done
    echo "nginx $1 did not start its $2 workers" >&2
    exit 1
}
up_workers=$(workers_of "$up_pid" 1)
ngx_workers=$(workers_of "$ngx_pid" 2)
declare -A serving=([direct]=$up_workers [capstan]=$cap_pid [nginx]=$ngx_workers [haproxy]=$hap_pid
    [capstan-noev]=$off_pid)
# capstan's event writer thread, to tell what recording costs.
# (A thread that ends between the glob and the read makes grep fail; what
# it found still counts.)
writer_comm=$(grep -l '^capstan-events$' /proc/"$cap_pid"/task/*/comm 2>/dev/null | head -1 || true)
if [[ -z $writer_comm ]]; then
    echo "capstan's event writer thread (capstan-events) is not running" >&2
    exit 1
fi
writer_stat=${writer_comm%comm}stat
ticks() { # stat files...: utime + stime summed; fails if one is gone
    local f t=0 stat fields
    for f in "$@"; do
        stat=$(<"$f") || { echo "cannot read $f: has a contender died?" >&2; return 1; }
        stat=${stat##*) }
        read -r -a fields <<<"$stat"
        ((${#fields[@]} >= 13)) || { echo "short read of $f" >&2; return 1; }
        t=$((t + fields[11] + fields[12]))
    done
    echo "$t"
}
stats_of() { for p in $1; do echo "/proc/$p/stat"; done; }

run_wrk() { # name duration [path script]; fails when wrk or a contender does
    local files before writer_before out after writer_after
    files=$(stats_of "${serving[$1]}")
    # shellcheck disable=SC2086 # one stat file per word
    before=$(ticks $files) || return 1
    writer_before=$(ticks "$writer_stat") || return 1
    out=$(wrk -t2 -c64 -d"$2" --latency -s "$here/${4:-report.lua}" "http://127.0.0.1:${port[$1]}/${3:-index.html}" |
        awk -v n="$1" '/^WRK_RESULT/ { print n, $0 }') || return 1
    [[ -n $out ]] || { echo "wrk gave no result for $1" >&2; return 1; }
    # shellcheck disable=SC2086
    after=$(ticks $files) || return 1
    writer_after=$(ticks "$writer_stat") || return 1
    echo "$out cpu_ticks=$((after - before)) writer_ticks=$((writer_after - writer_before))"
}

echo "warm-up" >&2
for n in "${names[@]}"; do run_wrk "$n" 1s >/dev/null; done
for r in $(seq "$rounds"); do
    # Rotate the order each round so no contender always runs first.
    for ((i = 0; i < count; i++)); do
        n=${names[$(((i + r) % count))]}
        line=$(run_wrk "$n" "$duration")
        echo "round $r: $line" >&2
        echo "$line" >>"$results"
    done
done

# Real requests are not wrk's bare GET: the same rounds with a browser's
# headers (about 900 bytes, cookies, a traceparent) and a 4 KiB JSON answer.
browser=$tmp/results-browser
: >"$browser"
echo "browser-shaped requests" >&2
for n in "${names[@]}"; do run_wrk "$n" 1s api.json browser.lua >/dev/null; done
for r in $(seq "$rounds"); do
    for ((i = 0; i < count; i++)); do
        n=${names[$(((i + r) % count))]}
        line=$(run_wrk "$n" "$duration" api.json browser.lua)
        echo "browser round $r: $line" >&2
        echo "$line" >>"$browser"
    done
done

rss_kb=$(awk '/VmHWM/ { print $2 }' "/proc/$cap_pid/status")

metric() {
    curl -s -H 'authorization: Bearer bench' "http://127.0.0.1:$adm_port/metrics" |
        awk -v m="$1" '$1 == m { print $2 }'
}
run_rate() { # name round: h2load at a fixed 20,000 requests/s (100 connections x 200/s)
    local log=$tmp/rate.$1.$2
    rm -f "$log"
    h2load --h1 -t2 -c100 --rps 200 -D "$rate_seconds" --warm-up-time=1 \
        --log-file="$log" "http://127.0.0.1:${port[$1]}/index.html" >"$tmp/h2load.$1.$2" 2>&1
    echo "$1 $2 $(awk '/^finished in/ { print $4 }' "$tmp/h2load.$1.$2" | tr -d ,)" >>"$tmp/rates"
}
: >"$tmp/rates"
echo "fixed rate: 20,000 requests/s for ${rate_seconds}s each, $rounds alternating rounds" >&2
dropped_before=$(metric capstan_proxy_events_dropped_total)
recorded_before=$(metric capstan_proxy_events_recorded_total)
for r in $(seq "$rounds"); do
    for ((i = 0; i < count; i++)); do
        run_rate "${names[$(((i + r) % count))]}" "$r"
    done
done
dropped_after=$(metric capstan_proxy_events_dropped_total)
recorded_after=$(metric capstan_proxy_events_recorded_total)

python3 - "$results" "$rss_kb" "$tmp" "$((dropped_after - dropped_before))" \
    "$((recorded_after - recorded_before))" "$dropped_before" "$recorded_before" \
    "$(getconf CLK_TCK)" "$browser" <<'PY'
import statistics, sys
results, rss_kb, tmp, dropped, recorded, sat_dropped, sat_recorded, clk_tck, browser = sys.argv[1:10]
tick_us = 1e6 / int(clk_tck)
NAMES = ["direct", "capstan", "nginx", "haproxy", "capstan-noev"]
def load(path):
    """wrk rounds -> rounds per name; medians of (req/s, p50 us, p99 us,
    errors); medians of CPU µs per request; capstan's writer's share."""
    runs, cpu = {}, {}
    for line in open(path):
        parts = line.split()
        kv = dict(p.split("=") for p in parts[2:])
        rps = int(kv["requests"]) / (int(kv["duration_us"]) / 1e6)
        runs.setdefault(parts[0], []).append((rps, int(kv["p50_us"]), int(kv["p99_us"]), int(kv["errors"]) + int(kv["non2xx"])))
        # CPU microseconds per request of the serving processes, and of capstan's writer.
        per = lambda ticks: int(kv[ticks]) * tick_us / max(1, int(kv["requests"]))
        cpu.setdefault(parts[0], []).append((per("cpu_ticks"), per("writer_ticks")))
    med = {n: tuple(statistics.median(x[i] for x in v) for i in range(4)) for n, v in runs.items()}
    cpu_med = {n: statistics.median(x[0] for x in v) for n, v in cpu.items()}
    writer_med = statistics.median(x[1] for x in cpu["capstan"])
    return runs, med, cpu_med, writer_med
def cpu_lines(cpu_med, writer_med):
    print("CPU per request of the serving processes (user + system, µs, medians): " + ", ".join(
        f"{n} {cpu_med[n]:.1f}" for n in NAMES))
    print(f"of capstan's, its event writer thread: {writer_med:.1f} µs")
runs, med, cpu_med, writer_med = load(results)
def table(rows, errors):
    """rows: name -> (req/s, p50 us, p99 us, errors); adds over direct."""
    d = rows["direct"]
    print(f"{'':12} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} {errors:>7}")
    for n in NAMES:
        rps, p50, p99, err = rows[n]
        add = "" if n == "direct" else f"{(p50 - d[1]) / 1000:8.3f} {(p99 - d[2]) / 1000:8.3f}"
        print(f"{n:12} {rps:10.0f} {p50 / 1000:8.3f} {p99 / 1000:8.3f} {add:>17} {err:7.0f}")

print()
table(med, "errors")
d = med["direct"]
c, g = med["capstan"], med["nginx"]
print(f"\nmedians of {len(runs['direct'])} alternating rounds")
print(f"throughput capstan / nginx: {c[0] / g[0]:.2f} (target >= 1.00)")
print(f"throughput capstan / haproxy: {c[0] / med['haproxy'][0]:.2f}")
print(f"throughput capstan / direct: {c[0] / d[0]:.2f}")
print(f"throughput capstan-noev (events off) / nginx: {med['capstan-noev'][0] / g[0]:.2f}")
ac, an = c[2] - d[2], g[2] - d[2]
print(f"added p99 capstan: {ac / 1000:.3f} ms, nginx: {an / 1000:.3f} ms (target: capstan <= nginx)")
print(f"capstan peak RSS: {int(rss_kb) / 1024:.1f} MB (target < 50 MB)")
print(f"events during the saturating rounds: recorded {sat_recorded}, dropped {sat_dropped}")
# On a shared machine throughput is the CPU each request costs every process
# on it: the serving processes' share is the part a proxy controls.
cpu_lines(cpu_med, writer_med)

_, bmed, bcpu, bwriter = load(browser)
print("\nbrowser-shaped requests (about 900 bytes of headers with cookies and a")
print(f"traceparent, a 4 KiB JSON answer), medians of {len(runs['direct'])} alternating rounds:")
table(bmed, "errors")
print(f"throughput capstan / nginx: {bmed['capstan'][0] / bmed['nginx'][0]:.2f}, "
      f"capstan / haproxy: {bmed['capstan'][0] / bmed['haproxy'][0]:.2f}, "
      f"capstan-noev / nginx: {bmed['capstan-noev'][0] / bmed['nginx'][0]:.2f}")
print(f"added p99 capstan: {(bmed['capstan'][2] - bmed['direct'][2]) / 1000:.3f} ms, "
      f"nginx: {(bmed['nginx'][2] - bmed['direct'][2]) / 1000:.3f} ms")
cpu_lines(bcpu, bwriter)

# h2load's log: one line per request, "start_us status duration_us". Each
# round's percentiles, then their medians; non-2xx answers summed.
per_round = {}
for line in open(f"{tmp}/rates"):
    n, r, rps = line.split()
    lines = [x.split() for x in open(f"{tmp}/rate.{n}.{r}")]
    durations = sorted(int(x[2]) for x in lines)
    bad = sum(1 for x in lines if not x[1].startswith("2"))
    pct = lambda q: durations[min(len(durations) - 1, int(len(durations) * q))]
    per_round.setdefault(n, []).append((float(rps), pct(0.50), pct(0.99), bad))
fixed = {
    n: tuple(statistics.median(x[i] for x in v) for i in range(3)) + (sum(x[3] for x in v),)
    for n, v in per_round.items()
}
print(f"\nfixed rate, 20,000 requests/s offered (h2load, 100 connections, open loop),")
print(f"medians of {len(runs['direct'])} alternating rounds:")
table(fixed, "non-2xx")
fd = fixed["direct"]
fc, fg = fixed["capstan"], fixed["nginx"]
print(f"added p99 at 20,000 req/s capstan: {(fc[2] - fd[2]) / 1000:.3f} ms, nginx: {(fg[2] - fd[2]) / 1000:.3f} ms (target: capstan <= nginx)")
print(f"added p99 at 20,000 req/s capstan-noev (events off): {(fixed['capstan-noev'][2] - fd[2]) / 1000:.3f} ms")
print(f"capstan at 20,000 req/s: {fc[0]:.0f} req/s reached (median), events recorded {recorded}, dropped {dropped} over all rounds (target 0)")
PY
