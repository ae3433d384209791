-- wrk: POST /v3/kv/range {"key": b64(<prefix><i>), "serializable": <stale?>}.
-- usage: wrk ... -s etcd_range.lua URL -- <prefix> <count> <linearizable|stale>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
c.install_setup()
local reqs, n = {}, 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local prefix, count, consistency = args[1], tonumber(args[2]), args[3]
  local serializable = "false"
  if consistency == "stale" then serializable = "true" end
  for i = 0, count - 1 do
    local body = '{"key": "' .. c.b64(prefix .. i) .. '", "serializable": ' .. serializable .. '}'
    reqs[#reqs + 1] = wrk.format("POST", "/v3/kv/range", headers, body)
  end
  n = tid * 7
end

function request()
  n = n + 1
  return reqs[(n % #reqs) + 1]
end

done = c.done
