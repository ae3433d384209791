-- wrk: register instances <prefix>0..<count-1> with a TTL check, cycling: ids past the
-- end wrap around, which re-registers (and so renews) the first ones. (wrk.thread:stop()
-- stops the requests but wrk still waits out -d, so the run is sized by duration.)
-- usage: wrk ... -s shoal_register_ttl.lua URL -- <service> <prefix> <count> <ttl>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
c.install_setup()
local base, prefix, count, n = "", "", 1, -1
local headers = { ["Content-Type"] = "application/json" }
local body = ""

function init(args)
  base = "/api/v1/services/" .. args[1] .. "/instances/"
  prefix, count = args[2], tonumber(args[3])
  body = '{"address": "10.0.0.1", "port": 8080, "tags": ["bench", "v1"], '
    .. '"check": {"type": "ttl", "ttl": "' .. args[4] .. '"}}'
end

function request()
  n = n + 1
  return wrk.format("PUT", base .. prefix .. (n % count), headers, body)
end

done = c.done
