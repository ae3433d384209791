-- wrk: PUT /api/v1/services/<service>/instances/<prefix><thread>-<n> with a small
-- instance body (address, port, tags); every request registers a new instance.
-- usage: wrk ... -s shoal_register.lua URL -- <service> <prefix>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
c.install_setup()
local base, prefix, n = "", "", 0
local headers = { ["Content-Type"] = "application/json" }
local body = '{"address": "10.0.0.1", "port": 8080, "tags": ["bench", "v1"]}'

function init(args)
  base = "/api/v1/services/" .. args[1] .. "/instances/"
  prefix = args[2] .. tostring(tid) .. "-"
end

function request()
  n = n + 1
  return wrk.format("PUT", base .. prefix .. n, headers, body)
end

done = c.done
