#!/usr/bin/env bash
# The /readyz benchmark: how fast chirpy answers its readiness probe while a
# shared dependency hangs, against nginx serving the same body from a static file
# (the limit: an HTTP server that does nothing but send bytes). Loopback only.
# See bench/README.md.
#
# chirpy-v3 runs on SQLite (migrated first, so its private dependency, the
# database, is healthy) with CHIRPY_SHARED_DEP pointing at a TCP listener whose
# accept queue is full, so every connect to it hangs and chirpy's background
# check times out on each run. /readyz must keep answering from cached state:
# 200, status "warn". wrk (-t2 -c64 -d10s --latency) loads nginx and chirpy in
# alternating runs; the summary reports the medians, the ratio chirpy/nginx and
# chirpy's peak RSS (VmHWM) under that load.
#
# Environment:
#   BENCH_ROUNDS=5            timed rounds, each one nginx run and one chirpy run
#                             (at least 3; one short warm-up round is not counted)
#   BENCH_DURATION=10s        wrk -d of each timed run
#   BENCH_NGINX_WORKERS=2     nginx worker_processes (2 = one per core here)
#   BENCH_PART=all            all | nginx (nginx alone, e.g. without chirpy built)
#   CHIRPY_BIN=PATH           use this chirpy-v3 binary instead of building
#                             target/release/chirpy-v3 (CARGO_TARGET_DIR is
#                             honoured)
#   BENCH_NICE=N              run nginx, chirpy and wrk at niceness N (all three
#                             alike; unset: as started), so a busy shared machine
#                             sways the figures less; -10 and the like need root
#   BENCH_KEEP=1              keep the temp dir (configs, database, logs)
set -euo pipefail

if [[ -n ${CHIRPY_BIN:-} && $CHIRPY_BIN != /* ]]; then
    CHIRPY_BIN=$PWD/$CHIRPY_BIN
fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
# shellcheck source=scripts/pg-env.sh
source scripts/pg-env.sh # for pgenv_install_missing

rounds=${BENCH_ROUNDS:-5}
duration=${BENCH_DURATION:-10s}
nginx_workers=${BENCH_NGINX_WORKERS:-2}
part=${BENCH_PART:-all}
niceness=${BENCH_NICE:-}
threads=2
connections=64
out=$root/bench/out/readyz
if ! [[ $rounds =~ ^[0-9]+$ ]] || ((rounds < 3)); then
    echo "BENCH_ROUNDS must be a number, at least 3 (the median of three or more runs is reported)" >&2
    exit 2
fi
case $part in all | nginx) ;; *)
    echo "BENCH_PART must be all or nginx" >&2
    exit 2
    ;;
esac
prio=()
if [[ -n $niceness ]]; then
    if ! [[ $niceness =~ ^-?[0-9]+$ ]]; then
        echo "BENCH_NICE must be a number, like -10" >&2
        exit 2
    fi
    prio=(nice -n "$niceness")
fi
if ! [[ $nginx_workers =~ ^[1-9][0-9]*$ ]]; then
    echo "BENCH_NGINX_WORKERS must be a positive number" >&2
    exit 2
fi

section() {
    printf '\n==== %s ====\n' "$*"
}

tmp=$(mktemp -d /tmp/capstan-readyz.XXXXXX)
# nginx's workers run as `nobody` when started by root: let them reach the docroot.
chmod 755 "$tmp"
started_pids=()

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$? pid
    trap - EXIT INT TERM HUP
    for pid in "${started_pids[@]}"; do
        stop_pid "$pid"
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

die() {
    echo "error: $*" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# GET $1 into file $2 (2 s at most); prints the HTTP status, 000 for no answer.
http_get() {
    curl -s -o "$2" -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# Waits up to $3 seconds for GET $1 to answer status $2 (body kept in $4),
# while process $5 lives.
wait_status() {
    local url=$1 want=$2 secs=$3 body=$4 pid=$5 code=000
    for _ in $(seq 1 $((secs * 5))); do
        code=$(http_get "$url" "$body")
        [[ $code == "$want" ]] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "process $pid exited" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "no $want from $url within ${secs}s (last: $code)" >&2
    [[ -s $body ]] && head -c 2000 "$body" >&2 && echo >&2
    return 1
}

# What a health+json body says about the shared dependency: "STATUS CHECK_STATUS
# COMPONENT OUTPUT…" for the first check that is not `pass`, or "STATUS - - -".
shared_state() {
    python3 - "$1" <<'EOF'
import json, sys
try:
    body = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"unparsable - - {e}")
    sys.exit(0)
line = f"{body.get('status', '?')} - - -"
for key, results in (body.get("checks") or {}).items():
    for r in results:
        if r.get("status") != "pass":
            line = (f"{body.get('status', '?')} {r.get('status')} "
                    f"{r.get('componentId', key)} {r.get('output', '')}")
            break
    else:
        continue
    break
print(line)
EOF
}

# Sum of capstan_check_failures_total over the shared checks in a /metrics body.
shared_failures() {
    python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
print(sum(int(float(m)) for m in re.findall(
    r'^\w*check_failures_total\{[^}]*kind="shared"[^}]*\}\s+(\S+)', text, re.M)))
EOF
}

# "yes" when a /metrics body shows every shared check down (capstan_check_up 0).
shared_down() {
    python3 - "$1" <<'EOF'
import re, sys
ups = re.findall(r'^\w*check_up\{[^}]*kind="shared"[^}]*\}\s+(\S+)', open(sys.argv[1]).read(), re.M)
print("yes" if ups and all(float(u) == 0 for u in ups) else "no")
EOF
}

# CPU time (user + system) a process and its children have used so far, in ms.
clk_tck=$(getconf CLK_TCK)
cpu_ms() {
    local pids=("$1") pid stat total=0 f=()
    mapfile -t -O 1 pids < <(pgrep -P "$1" 2>/dev/null || true)
    for pid in "${pids[@]}"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        # Fields after "pid (comm) ": f[0] is field 3, utime and stime are 14 and 15.
        read -r -a f <<<"${stat##*) }"
        total=$((total + f[11] + f[12]))
    done
    echo $((total * 1000 / clk_tck))
}

# Peak and current RSS of a process and its children, in KiB: "hwm rss".
rss_of() {
    local pids=("$1") pid hwm=0 rss=0 h r
    mapfile -t -O 1 pids < <(pgrep -P "$1" 2>/dev/null || true)
    for pid in "${pids[@]}"; do
        [[ -r /proc/$pid/status ]] || continue
        h=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        hwm=$((hwm + ${h:-0}))
        rss=$((rss + ${r:-0}))
    done
    echo "$hwm $rss"
}

section "setup"
mkdir -p "$out"
rm -f "$out"/*.txt "$out/runs.tsv"
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v pgrep >/dev/null 2>&1 || missing+=(procps)
pgenv_install_missing "${missing[@]}"
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

chirpy=
if [[ $part == all ]]; then
    if [[ -n ${CHIRPY_BIN:-} ]]; then
        chirpy=$CHIRPY_BIN
    else
        cargo build --release -p chirpy
        chirpy=${CARGO_TARGET_DIR:-$root/target}/release/chirpy-v3
    fi
    [[ -x $chirpy ]] || die "no chirpy binary at $chirpy"
fi

echo "wrk:    $(wrk --version 2>&1 | head -n 1 || true)"
echo "nginx:  $("$nginx_bin" -v 2>&1)"
[[ -n $chirpy ]] && echo "chirpy: $chirpy"
echo "load:   -t$threads -c$connections -d$duration --latency, $rounds rounds (+1 warm-up)$([[ $part == all ]] && echo ", alternating nginx, chirpy")"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# The body nginx serves: chirpy's own /readyz answer when chirpy runs (so both
# send the same bytes), else a body of the same shape.
mkdir -p "$tmp/www"
cat >"$tmp/www/readyz" <<'EOF'
{"status":"warn","serviceId":"chirpy","version":"3.0.0","output":"shared: timed out after 1s","checks":{"database:responseTime":[{"componentId":"database","componentType":"datastore","observedValue":0.2,"observedUnit":"ms","status":"pass","time":"2026-11-22T03:00:00.000Z"}],"shared:responseTime":[{"componentId":"shared","componentType":"component","observedValue":1000.0,"observedUnit":"ms","status":"warn","time":"2026-11-22T03:00:00.000Z","output":"timed out after 1s"}]}}
EOF

chirpy_pid=
if [[ $part == all ]]; then
    section "the hung dependency"
    # A listener that never accepts, its one-slot accept queue filled by a
    # connection of its own: the kernel then drops every further SYN, so a TCP
    # connect to it hangs until the client gives up. (A listener that accepts
    # and stays silent would let a connect-only check pass at once.) It exits
    # by itself after an hour if this script is killed before its cleanup.
    python3 -u - >"$tmp/hung.port" 2>"$tmp/hung.log" <<'EOF' &
import socket, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(0)
port = listener.getsockname()[1]
fillers = []
for _ in range(3):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    fillers.append(s)
print(port)
time.sleep(3600)
EOF
    started_pids+=($!)
    for _ in $(seq 1 50); do
        [[ -s $tmp/hung.port ]] && break
        sleep 0.1
    done
    hung_port=$(<"$tmp/hung.port")
    [[ -n $hung_port ]] || die "the hung listener did not start: $(<"$tmp/hung.log")"
    verdict=$(python3 - "$hung_port" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(1.5)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    print("connected")
except socket.timeout:
    print("hangs")
except OSError as e:
    print(f"error: {e}")
EOF
    )
    [[ $verdict == hangs ]] || die "a connect to the hung listener did not hang ($verdict)"
    echo "127.0.0.1:$hung_port: a TCP connect hangs (checked with a 1.5 s connect)"

    section "chirpy on SQLite"
    db="sqlite://$tmp/chirpy.db"
    DATABASE_URL=$db "$chirpy" migrate up >"$tmp/migrate.log" 2>&1 ||
        die "chirpy-v3 migrate up failed: $(tail -n 20 "$tmp/migrate.log")"
    tail -n 5 "$tmp/migrate.log"
    chirpy_port=$(free_port)
    chirpy_url=http://127.0.0.1:$chirpy_port
    # The default worker threads; logs to a file, not the terminal.
    DATABASE_URL=$db CHIRPY_ADDR=127.0.0.1:$chirpy_port \
        CHIRPY_SHARED_DEP=127.0.0.1:$hung_port \
        "${prio[@]}" "$chirpy" >"$out/chirpy.log" 2>&1 &
    chirpy_pid=$!
    started_pids+=("$chirpy_pid")
    wait_status "$chirpy_url/startupz" 200 60 "$tmp/startupz.json" "$chirpy_pid" ||
        die "chirpy did not start; its log: $(tail -n 20 "$out/chirpy.log")"
    echo "chirpy (pid $chirpy_pid, $(cat "/proc/$chirpy_pid/comm")) started on $chirpy_url"
    # Wait until the shared check has timed out at least once and counts as
    # down, with /readyz at 200 warn: the state the load runs against.
    state='' down='' failed=0
    for _ in $(seq 1 150); do
        code=$(http_get "$chirpy_url/readyz" "$tmp/readyz.json")
        state=$(shared_state "$tmp/readyz.json")
        http_get "$chirpy_url/metrics" "$tmp/metrics-before.txt" >/dev/null
        down=$(shared_down "$tmp/metrics-before.txt")
        failed=$(shared_failures "$tmp/metrics-before.txt")
        [[ $code == 200 && $state == "warn warn "* && $down == yes && $failed -gt 0 ]] && break
        sleep 0.2
    done
    [[ $code == 200 && $state == "warn warn "* && $down == yes && $failed -gt 0 ]] ||
        die "chirpy's shared check did not time out with /readyz at 200 warn within 30 s (HTTP $code: $state; down: $down, failures: $failed)"
    echo "/readyz: HTTP $code, $state"
    cp "$tmp/readyz.json" "$tmp/www/readyz"
    cp "$tmp/readyz.json" "$out/readyz-before.json"
    failures_before=$(shared_failures "$tmp/metrics-before.txt")
fi

section "nginx (the limit)"
nginx_port=$(free_port)
nginx_url=http://127.0.0.1:$nginx_port
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
# A static file server and nothing else: the most an HTTP server on this
# machine answers for this body, with the same client.
worker_processes $nginx_workers;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events {
    worker_connections 1024;
}
http {
    access_log off;
    # For a half-kilobyte file, sendfile costs nginx about twice the CPU per
    # request of a read and one writev (about 19 against 10 us here).
    sendfile off;
    tcp_nodelay on;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    # wrk keeps its 64 connections open; don't close one every 1,000 requests.
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path $tmp/nginx/client_body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        root $tmp/www;
        location = /readyz {
            types { }
            default_type application/health+json;
        }
    }
}
EOF
"${prio[@]}" "$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' \
    >"$out/nginx.log" 2>&1 &
nginx_pid=$!
started_pids+=("$nginx_pid")
wait_status "$nginx_url/readyz" 200 20 "$tmp/nginx-readyz.json" "$nginx_pid" ||
    die "nginx did not serve /readyz; its log: $(tail -n 20 "$out/nginx.log" "$tmp/nginx/error.log" 2>/dev/null)"
cmp -s "$tmp/nginx-readyz.json" "$tmp/www/readyz" || die "nginx served a different body"
echo "nginx (pid $nginx_pid, worker_processes $nginx_workers) serves $(wc -c <"$tmp/www/readyz") bytes at $nginx_url/readyz"

# One wrk run against server process $4: prints the WRK_RESULT fields plus the
# CPU time wrk and the server used; wrk's own report goes to $out.
wrk_run() {
    local name=$1 url=$2 secs=$3 pid=$4 log=$out/$1.txt before after wrk_cpu
    before=$(cpu_ms "$pid")
    {
        echo "---- $name -d$secs $(date -u +%H:%M:%S)"
        TIMEFORMAT='WRK_CPU %U %S'
        time timeout 120 "${prio[@]}" wrk -t"$threads" -c"$connections" -d"$secs" --latency \
            -s "$root/bench/readyz/report.lua" "$url/readyz"
    } >>"$log" 2>&1 || die "wrk against $name failed; see $log"
    after=$(cpu_ms "$pid")
    wrk_cpu=$(awk '/^WRK_CPU / {ms = ($2 + $3) * 1000} END {printf "%d", ms}' "$log")
    echo "$(grep '^WRK_RESULT ' "$log" | tail -n 1 | cut -d' ' -f2-)" \
        "server_cpu_ms=$((after - before)) wrk_cpu_ms=$wrk_cpu"
}

contenders=(nginx)
[[ $part == all ]] && contenders+=(chirpy)
runs=$out/runs.tsv
: >"$runs"

section "warm-up"
for who in "${contenders[@]}"; do
    url_var=${who}_url pid_var=${who}_pid
    result=$(wrk_run "$who" "${!url_var}" 3s "${!pid_var}")
    echo "$who: $result"
done

section "$rounds rounds, alternating"
for round in $(seq 1 "$rounds"); do
    line="round $round:"
    for who in "${contenders[@]}"; do
        url_var=${who}_url pid_var=${who}_pid
        result=$(wrk_run "$who" "${!url_var}" "$duration" "${!pid_var}")
        mem=$(rss_of "${!pid_var}")
        printf '%s\t%s\t%s\t%s\n' "$round" "$who" "${mem// /$'\t'}" "$result" >>"$runs"
        line+=$(python3 -c '
import sys
f = dict(kv.split("=") for kv in sys.argv[2].split())
rps = int(f["requests"]) / (int(f["duration_us"]) / 1e6)
p99 = int(f["p99_us"]) / 1000
print(f"  {sys.argv[1]} {rps:9.0f} req/s p99 {p99:5.2f} ms", end="")
' "$who" "$result")
    done
    echo "$line"
done

dep_line="not run (BENCH_PART=nginx)"
failures_after=0
if [[ $part == all ]]; then
    section "chirpy after the load"
    kill -0 "$chirpy_pid" 2>/dev/null || die "chirpy exited during the benchmark; see $out/chirpy.log"
    code=$(http_get "$chirpy_url/readyz" "$tmp/readyz.json")
    state=$(shared_state "$tmp/readyz.json")
    cp "$tmp/readyz.json" "$out/readyz-after.json"
    http_get "$chirpy_url/metrics" "$tmp/metrics-after.txt" >/dev/null
    cp "$tmp/metrics-after.txt" "$out/metrics-after.txt"
    failures_after=$(shared_failures "$tmp/metrics-after.txt")
    dep_line="/readyz HTTP $code, $state; shared check failures during the runs: $((failures_after - failures_before))"
    echo "$dep_line"
    [[ $code == 200 && $state == "warn warn "* ]] || echo "warning: the shared check is no longer failing, so the load did not run against a hung dependency throughout" >&2
fi

load_end=$(cut -d' ' -f1-3 /proc/loadavg)

section "summary"
python3 - "$runs" "$rounds" "$duration" "$nginx_workers" "$load_start" "$load_end" \
    "$dep_line" "$(wc -c <"$tmp/www/readyz")" "${niceness:-0}" <<'EOF' | tee "$out/summary.txt"
import os, statistics, sys

runs_file, rounds, duration, workers, load_start, load_end, dep_line, body, niceness = sys.argv[1:]
runs = {}
with open(runs_file) as f:
    for line in f:
        rnd, who, hwm, rss, fields = line.rstrip("\n").split("\t")
        r = {k: int(v) for k, v in (kv.split("=") for kv in fields.split())}
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        r["errors"] = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
        # /proc reports KiB; the targets are in MB (10^6 bytes).
        r["hwm_mb"] = int(hwm) * 1024 / 1e6
        r["rss_mb"] = int(rss) * 1024 / 1e6
        # CPU time per answered request, in microseconds: the server's and wrk's.
        r["server_us"] = r["server_cpu_ms"] * 1000 / max(r["requests"], 1)
        r["wrk_us"] = r["wrk_cpu_ms"] * 1000 / max(r["requests"], 1)
        runs.setdefault(who, []).append(r)

def med(who, key):
    return statistics.median(r[key] for r in runs[who])

def verdict(ok):
    return "ok" if ok else "MISSED"

print(f"capstan /readyz benchmark: wrk -t2 -c64 -d{duration} --latency, loopback, "
      f"median of {rounds} alternating runs; {body}-byte health+json body"
      + (f"; nginx, chirpy and wrk at nice {niceness}" if niceness != "0" else ""))
print(f"load average (1/5/15 min) at start {load_start}, at end {load_end}; {os.cpu_count()} CPUs")
busy = max(float(load_start.split()[0]), float(load_end.split()[0]))
if busy > 0.5 * (os.cpu_count() or 1) and niceness == "0":
    print(f"note: other work shared the CPUs (load {busy:.1f}): absolute figures are pessimistic;"
          " compare the ratio, or rerun on a quiet machine")
print(f"hung shared dependency: {dep_line}")
print()
print(f"  {'':38} {'req/s':>9} {'min':>9} {'max':>9} {'p50':>8} {'p99':>8} {'p99.9':>8}"
      f" {'non-2xx':>8} {'errors':>7} {'peak RSS':>9}")
labels = {"nginx": f"nginx static file, {workers} worker{'s' if workers != '1' else ''} (limit)",
          "chirpy": "chirpy-v3 /readyz (warn)"}
for who in ("nginx", "chirpy"):
    if who not in runs:
        continue
    rs = runs[who]
    print(f"  {labels[who]:38} {med(who, 'rps'):9.0f} {min(r['rps'] for r in rs):9.0f}"
          f" {max(r['rps'] for r in rs):9.0f} {med(who, 'p50_us') / 1000:6.3f}ms"
          f" {med(who, 'p99_us') / 1000:6.3f}ms {med(who, 'p999_us') / 1000:6.3f}ms"
          f" {sum(r['err_status'] for r in rs):8d} {sum(r['errors'] for r in rs):7d}"
          f" {max(r['hwm_mb'] for r in rs):6.1f} MB")

# CPU time per request hardly depends on what else runs: it shows the work
# each server does for an answer even on a busy machine. All CPUs divided by
# the server's and wrk's CPU per request is what the pair could reach if
# nothing else ran (an estimate, not a measurement).
cpus = os.cpu_count() or 1
print()
print(f"  {'CPU time per request':38} {'server':>9} {'wrk':>9}   estimate with {cpus} idle CPUs")
for who in ("nginx", "chirpy"):
    if who in runs:
        server_us, wrk_us = med(who, "server_us"), med(who, "wrk_us")
        print(f"  {labels[who]:38} {server_us:7.1f}us {wrk_us:7.1f}us"
              f"   {cpus * 1e6 / (server_us + wrk_us):9.0f} req/s")
if "chirpy" in runs:
    rps, p99 = med("chirpy", "rps"), med("chirpy", "p99_us") / 1000
    hwm = max(r["hwm_mb"] for r in runs["chirpy"])
    non2xx = sum(r["err_status"] for r in runs["chirpy"])
    ratio = rps / med("nginx", "rps")
    within = statistics.median(c["rps"] / n["rps"] for c, n in zip(runs["chirpy"], runs["nginx"]))
    print()
    print(f"  {'chirpy / nginx, req/s':38} {ratio:9.2f}   (within rounds: {within:.2f})")
    print(f"  {'chirpy / nginx, p99':38} {p99 / (med('nginx', 'p99_us') / 1000):9.2f}")
    print(f"  {'chirpy / nginx, CPU per request':38}"
          f" {med('chirpy', 'server_us') / med('nginx', 'server_us'):9.2f}")
    print()
    print(f"  {'chirpy req/s':38} {rps:9.0f}   target >= 50,000   {verdict(rps >= 50000)}")
    print(f"  {'chirpy p99':38} {p99:7.3f}ms   target < 2 ms      {verdict(p99 < 2)}")
    print(f"  {'chirpy peak RSS (VmHWM)':38} {hwm:7.1f}MB   target < 30 MB     {verdict(hwm < 30)}")
    print(f"  {'chirpy non-2xx answers':38} {non2xx:9d}   target 0           {verdict(non2xx == 0)}")
EOF
