-- wrk: POST /v3/kv/put of the JSON instance shoal_register.lua sends, under a prefix,
-- every key new. usage: wrk ... -s etcd_put_instance.lua URL -- <prefix>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
c.install_setup()
local prefix, n = "", 0
local headers = { ["Content-Type"] = "application/json" }
local value = c.b64('{"address": "10.0.0.1", "port": 8080, "tags": ["bench", "v1"]}')

function init(args)
  prefix = args[1] .. tostring(tid) .. "-"
end

function request()
  n = n + 1
  local body = '{"key": "' .. c.b64(prefix .. n) .. '", "value": "' .. value .. '"}'
  return wrk.format("POST", "/v3/kv/put", headers, body)
end

done = c.done
