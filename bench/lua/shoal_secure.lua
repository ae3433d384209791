-- wrk: shoal's single-key PUT (every key new) or GET (over pre-written keys), the same
-- requests as shoal_put.lua / shoal_get.lua, plus a bearer token when one is given, for
-- bench/security.py (plain, TLS and ACL members under the same load).
-- usage: wrk ... -s shoal_secure.lua URL -- put <prefix> <token|->
--        wrk ... -s shoal_secure.lua URL -- get <prefix> <count> <consistency> <token|->
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
c.install_setup()
local mode, prefix, n, paths = "put", "bench/", 0, {}
local put_headers = { ["Content-Type"] = "application/json" }
local get_headers = {}
local body = '{"value": "' .. c.value .. '"}'

function init(args)
  mode = args[1]
  local token = (mode == "put") and args[3] or args[5]
  if token and token ~= "-" then
    put_headers["Authorization"] = "Bearer " .. token
    get_headers["Authorization"] = "Bearer " .. token
  end
  if mode == "put" then
    prefix = args[2] .. tostring(tid) .. "/"
    return
  end
  for i = 0, tonumber(args[3]) - 1 do
    paths[#paths + 1] = wrk.format(
      "GET", "/api/v1/kv/" .. args[2] .. i .. "?consistency=" .. args[4], get_headers)
  end
  n = tid * 7
end

function request()
  n = n + 1
  if mode == "put" then
    return wrk.format("PUT", "/api/v1/kv/" .. prefix .. n, put_headers, body)
  end
  return paths[(n % #paths) + 1]
end

done = c.done
