-- wrk script for scripts/bench_api.py. With BENCH_API_BODIES naming a file, each request POSTs
-- the next line of it as JSON (cycling); without, plain GETs. With BENCH_API_DELAY_MS, each
-- connection waits about that long after an answer before its next request (a client polling
-- on a timer; wrk's latency does not include the wait). At the end it prints one line,
-- "BENCH_API {json}", with the counts and latency percentiles in microseconds.

local bodies = {}
local path = os.getenv("BENCH_API_BODIES")
if path and #path > 0 then
  for line in io.lines(path) do
    if #line > 0 then
      bodies[#bodies + 1] = line
    end
  end
end

local pause = tonumber(os.getenv("BENCH_API_DELAY_MS") or "")
if pause and pause > 0 then
  -- Each wait is drawn from 0.5x..1.5x the interval: independent clients drift apart, where a
  -- fixed wait would keep every connection asking in the same instant (a burst of them all
  -- every interval, each queueing behind the others).
  math.randomseed(os.time())
  function delay()
    return math.random(math.floor(pause / 2), math.floor(pause * 3 / 2))
  end
end

local headers = { ["Content-Type"] = "application/json" }
local next_body = 0

function request()
  if #bodies == 0 then
    return wrk.format("GET")
  end
  next_body = next_body % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[next_body])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_API {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"mean_us":%.1f,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
