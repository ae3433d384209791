-- wrk: PUT /api/v1/services/<service>/instances/<prefix><i>/heartbeat, cycling i over
-- 0..count-1 (each connection starts at a different offset). Unpaced: wrk has no rate.
-- usage: wrk ... -s shoal_heartbeat.lua URL -- <service> <prefix> <count>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
c.install_setup()
local base, prefix, count, n = "", "", 1, 0

function init(args)
  base = "/api/v1/services/" .. args[1] .. "/instances/"
  prefix, count = args[2], tonumber(args[3])
  n = (tid - 1) * 7919
end

function request()
  n = n + 1
  return wrk.format("PUT", base .. prefix .. (n % count) .. "/heartbeat")
end

done = c.done
