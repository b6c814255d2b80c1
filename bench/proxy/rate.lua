-- wrk at a bounded rate: each connection waits DELAY_MS between requests, so
-- C connections send at most C * 1000 / DELAY_MS requests per second.
local d = tonumber(os.getenv("DELAY_MS") or "5")
delay = function() return d end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
