-- wrk script shared by every row of bench/run.
--
-- BENCH_ABS_URL  when set, requests are sent in absolute-form (GET http://host:port/path HTTP/1.1)
--                to the wrk target, which is then a forward proxy; BENCH_HOST is the Host header.
-- BENCH_AUTH     when set, sent as the Authorization header (the "direct" row, where no proxy adds it).
--
-- done() prints one machine-readable line, "BENCHJSON {...}", with latencies in microseconds.

local abs = os.getenv("BENCH_ABS_URL")
if abs and abs ~= "" then
  wrk.path = abs
  wrk.headers["Host"] = os.getenv("BENCH_HOST")
end

local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"err_connect":%.0f,"err_read":%.0f,"err_write":%.0f,"err_status":%.0f,"err_timeout":%.0f,' ..
    '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
