-- wrk: GET /api/v1/kv/<prefix><i>?consistency=<c> over <count> pre-written keys.
-- usage: wrk ... -s shoal_get.lua URL -- <prefix> <count> <linearizable|stale>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
c.install_setup()
local paths, n = {}, 0

function init(args)
  local prefix, count, consistency = args[1], tonumber(args[2]), args[3]
  for i = 0, count - 1 do
    paths[#paths + 1] = wrk.format(
      "GET", "/api/v1/kv/" .. prefix .. i .. "?consistency=" .. consistency)
  end
  n = tid * 7
end

function request()
  n = n + 1
  return paths[(n % #paths) + 1]
end

done = c.done
