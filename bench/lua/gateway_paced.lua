-- wrk: GET <path>, each connection waiting <ms> before every request, so that N
-- connections send about N * 1000 / (ms + latency) requests per second: a fixed, modest
-- rate at which latency is the proxy's, not a queue's.
-- usage: wrk ... -s gateway_paced.lua URL -- <path> <ms>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local req, pause

function init(args)
  req = wrk.format("GET", args[1] or "/")
  pause = tonumber(args[2] or "10")
end

function delay()
  return pause
end

function request()
  return req
end

done = c.done
