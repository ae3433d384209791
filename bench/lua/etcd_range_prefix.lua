-- wrk: POST /v3/kv/range over a whole prefix (etcd's equivalent of discovery).
-- usage: wrk ... -s etcd_range_prefix.lua URL -- <b64 key> <b64 range_end> <linearizable|stale>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
c.install_setup()
local req = nil
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local serializable = "false"
  if args[3] == "stale" then serializable = "true" end
  local body = '{"key": "' .. args[1] .. '", "range_end": "' .. args[2]
    .. '", "serializable": ' .. serializable .. '}'
  req = wrk.format("POST", "/v3/kv/range", headers, body)
end

function request()
  return req
end

done = c.done
