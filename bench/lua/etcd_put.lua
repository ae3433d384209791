-- wrk: POST /v3/kv/put {"key": b64(<prefix><thread>/<n>), "value": b64(<64 bytes>)}.
-- usage: wrk ... -s etcd_put.lua URL -- <prefix>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
c.install_setup()
local prefix, n = "bench/", 0
local headers = { ["Content-Type"] = "application/json" }
local value = c.b64(c.value)

function init(args)
  prefix = (args[1] or "bench/") .. tostring(tid) .. "/"
end

function request()
  n = n + 1
  local body = '{"key": "' .. c.b64(prefix .. n) .. '", "value": "' .. value .. '"}'
  return wrk.format("POST", "/v3/kv/put", headers, body)
end

done = c.done
