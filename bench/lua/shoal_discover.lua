-- wrk: the same GET over and over (discovery of one service).
-- usage: wrk ... -s shoal_discover.lua URL -- <path with query>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
c.install_setup()
local req = nil

function init(args)
  req = wrk.format("GET", args[1])
end

function request()
  return req
end

done = c.done
