-- wrk: GET <path> on every request (the gateway benchmark, bench/gateway.py).
-- usage: wrk ... -s gateway_get.lua URL -- <path>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local req

function init(args)
  req = wrk.format("GET", args[1] or "/")
end

function request()
  return req
end

done = c.done
