-- wrk script: POST real AdmissionReview bodies (one file each, listed in a manifest) to /mutate, cycling.
-- Usage: wrk ... -s post_reviews.lua URL -- MANIFEST [STOP_AFTER_PER_THREAD]
-- With STOP_AFTER_PER_THREAD > 0 each thread stops after that many responses (a bounded request count)
-- and prints WRKTHREADDONE; the caller sends SIGINT once every thread has, which ends wrk's sleep early.
local requests = {}
local index = 0
local stop_after = 0
local answered = 0
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  for path in io.lines(args[1]) do
    if path ~= "" then
      local file = assert(io.open(path, "rb"))
      local body = file:read("*a")
      file:close()
      requests[#requests + 1] = wrk.format("POST", "/mutate", {["Content-Type"] = "application/json"}, body)
    end
  end
  -- threads start at different points of the cycle so big and small bodies interleave across threads
  index = ((id or 0) * 5) % #requests
  stop_after = tonumber(args[2] or "0") or 0
  if stop_after > 0 then
    response = function(status, headers, body)
      answered = answered + 1
      if answered == stop_after then
        -- wrk's main thread sleeps for the whole -d duration: say we are done so the caller can SIGINT it
        io.write("WRKTHREADDONE\n")
        io.flush()
        wrk.thread:stop()
      end
    end
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us":%d,"requests":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"lat_mean_us":%.1f,"lat_max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
