-- wrk: PUT /api/v1/kv/<prefix><thread>/<n> {"value": <64 bytes>}, every key new.
-- usage: wrk ... -s shoal_put.lua URL -- <prefix>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
c.install_setup()
local prefix, n = "bench/", 0
local headers = { ["Content-Type"] = "application/json" }
local body = '{"value": "' .. c.value .. '"}'

function init(args)
  prefix = (args[1] or "bench/") .. tostring(tid) .. "/"
end

function request()
  n = n + 1
  return wrk.format("PUT", "/api/v1/kv/" .. prefix .. n, headers, body)
end

done = c.done
