-- wrk script: absolute-form requests, as a client sends them to a forward proxy.
--   TARGET    the request target: "http://127.0.0.1:18080/small" through a proxy, "/small" direct
--   AUTH_B64  optional base64(user:pass), sent as Proxy-Authorization: Basic
--   BODY_FILE optional: POST this file's bytes as the body (CONTENT_TYPE, default application/octet-stream)
-- done() prints one JSON line for bench/run.mjs (latencies in microseconds).
wrk.path = os.getenv("TARGET") or "http://127.0.0.1:18080/small"
-- Host names the target, as real clients send it (wrk would name the proxy; RFC 9112 says a
-- proxy ignores Host for absolute-form, but sluice refuses a Host that disagrees with the target)
local authority = wrk.path:match("^%a[%w+.-]*://([^/]+)")
if authority then wrk.headers["Host"] = authority end
local auth = os.getenv("AUTH_B64")
if auth and auth ~= "" then wrk.headers["Proxy-Authorization"] = "Basic " .. auth end
local body_file = os.getenv("BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/octet-stream"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
