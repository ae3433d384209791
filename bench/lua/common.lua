-- Shared by the bench/lua/*.lua wrk scripts (loaded with dofile; the path comes from
-- the BENCH_LUA_DIR environment variable). Base64 for etcd's JSON gateway, per-thread
-- ids, and a done() that prints one machine-readable line for bench/control_plane.py.
local M = {}

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function M.b64(s)
  local out = {}
  local n = #s
  for i = 1, n, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(v / 262144) % 64
    local c2 = math.floor(v / 4096) % 64
    local c3 = math.floor(v / 64) % 64
    local c4 = v % 64
    out[#out + 1] = alphabet:sub(c1 + 1, c1 + 1) .. alphabet:sub(c2 + 1, c2 + 1)
    if b then out[#out + 1] = alphabet:sub(c3 + 1, c3 + 1) else out[#out + 1] = "=" end
    if c then out[#out + 1] = alphabet:sub(c4 + 1, c4 + 1) else out[#out + 1] = "=" end
  end
  return table.concat(out)
end

-- 64 bytes of value, the same for every write.
M.value = string.rep("v", 64)

function M.install_setup()
  local threads = 0
  _G.setup = function(thread)
    threads = threads + 1
    thread:set("tid", threads)
  end
end

function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\": %d, \"duration_us\": %d, \"status_errors\": %d, "
      .. "\"connect_errors\": %d, \"read_errors\": %d, \"write_errors\": %d, "
      .. "\"timeouts\": %d, \"p50_us\": %d, \"p99_us\": %d, \"max_us\": %d}\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end

return M
