-- wrk script for bench/run.sh: when done, one parseable LBP_RESULT line (rate, latency, errors).
-- Only done() is defined, so wrk keeps its fast path (no per-request Lua).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "LBP_RESULT requests=%d duration_us=%d bytes=%d rps=%.1f " ..
    "p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d " ..
    "connect_err=%d read_err=%d write_err=%d timeout_err=%d status_err=%d\n",
    summary.requests, summary.duration, summary.bytes,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end
