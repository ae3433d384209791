-- wrk: a fleet of <count> instances that each register with a TTL check and then send a
-- heartbeat every <period_ms>, as an SDK would. A due heartbeat always goes first and
-- registrations fill the rest, so none expires while the rest register, and a server
-- that cannot answer count / period heartbeats never finishes registering: how many got
-- registered is the fleet it sustains. Once all are registered, heartbeats are paced at
-- count / period (each id exactly once per period, in order). A heartbeat answered
-- non-2xx (the instance expired) is counted, not retried.
-- Prints, besides WRKJSON, one line
--   FLEETJSON {"registered": r, "register_errors": e, "beats": b, "beat_errors": f,
--              "lag_ms": l, "registered_after_ms": t}
-- with lag_ms the worst lateness of a due heartbeat once all are registered (how far the
-- pacing fell behind) and t when the last registration was sent, from the first request.
-- usage: wrk -t1 ... -s shoal_fleet.lua URL -- <service> <prefix> <count> <ttl> <period_ms>
local c = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } shoal_fleet_timespec;
int clock_gettime(int clk, shoal_fleet_timespec *ts);
]]
local ts = ffi.new("shoal_fleet_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end

local base, prefix, count, period = "", "", 1, 1000
local headers = { ["Content-Type"] = "application/json" }
local body = ""
-- FIFO of registered ids by due time (due times are pushed in non-decreasing order).
local q_id, q_due, head, tail = {}, {}, 1, 0
local reserved = 0 -- the queue slot the last delay() waited for
local next_new = 0
local started, last_new = nil, 0
registered, register_errors, beats, beat_errors, lag_ms = 0, 0, 0, 0, 0
registered_after_ms = 0

function init(args)
  base = "/api/v1/services/" .. args[1] .. "/instances/"
  prefix, count, period = args[2], tonumber(args[3]), tonumber(args[5])
  body = '{"address": "10.0.0.1", "port": 8080, "tags": ["bench", "v1"], '
    .. '"check": {"type": "ttl", "ttl": "' .. args[4] .. '"}}'
end

function delay()
  if next_new < count then
    return 0
  end
  reserved = math.max(reserved + 1, head)
  if reserved > tail then
    reserved = tail
  end
  local wait = q_due[reserved] - now_ms()
  if wait <= 0 then
    return 0
  end
  return math.floor(wait)
end

local function push(id, due)
  tail = tail + 1
  q_id[tail], q_due[tail] = id, due
end

local verified = false

function request()
  -- wrk calls request() once on the first thread's state to check the script, and
  -- throws the answer away: that call must not use up an id.
  if not verified and tid == 1 then
    verified = true
    return wrk.format("GET", "/healthz")
  end
  local now = now_ms()
  started = started or now
  if head <= tail and (q_due[head] <= now or next_new >= count) then
    local id, due = q_id[head], q_due[head]
    q_id[head], q_due[head] = nil, nil
    head = head + 1
    if now - due > lag_ms and next_new >= count then
      lag_ms = now - due
    end
    push(id, due + period)
    return wrk.format("PUT", base .. prefix .. id .. "/heartbeat")
  end
  local id = next_new
  next_new = next_new + 1
  last_new = now - started
  push(id, now + period)
  return wrk.format("PUT", base .. prefix .. id, headers, body)
end

-- Which kind of request a response answers, told by its body: a heartbeat's answer has
-- a "ttl" and no "address"; only a heartbeat is answered instance_not_found.
function response(status, _, resp)
  registered_after_ms = last_new
  local beat = resp:find('"ttl"', 1, true) ~= nil and resp:find('"address"', 1, true) == nil
  if status >= 200 and status < 300 then
    if beat then beats = beats + 1 else registered = registered + 1 end
  elseif resp:find("instance_not_found", 1, true) then
    beat_errors = beat_errors + 1
  else
    register_errors = register_errors + 1
  end
end

function done(summary, latency, requests)
  c.done(summary, latency, requests)
  local r, re, b, be, lag, after = 0, 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    after = math.max(after, t:get("registered_after_ms"))
    r = r + t:get("registered")
    re = re + t:get("register_errors")
    b = b + t:get("beats")
    be = be + t:get("beat_errors")
    lag = math.max(lag, t:get("lag_ms"))
  end
  io.write(string.format(
    "FLEETJSON {\"registered\": %d, \"register_errors\": %d, \"beats\": %d, "
      .. "\"beat_errors\": %d, \"lag_ms\": %d, \"registered_after_ms\": %d}\n",
    r, re, b, be, lag, after))
end
