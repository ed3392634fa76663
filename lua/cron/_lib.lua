-- cron shared Lua (prepended to every cron script). Lua 5.1 + cjson only.
-- KEYS[1..6] are always the namespace's cron keys below. Cron hashes
-- "<base>:cr:j:<id>", history lists "<base>:cr:h:<id>" and the execution work items
-- of the namespace's workpool "<base>:w:<id>:<tick>" share the hash tag <base>, so
-- every key lives in one Cluster slot. ARGV[1] = now ("" = Redis TIME).
local K_NAMES, K_DUE, K_ORDER, K_SEQ, K_STATS, K_EVENTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5], KEYS[6]
local BASE = string.sub(K_NAMES, 1, -10)
local NOW = rk_now(ARGV[1])
-- a fired tick whose work item is missing this long after the fire was lost
local LOST_GRACE_MS = 60000

local function jkey(id)
  return BASE .. ":cr:j:" .. id
end

local function hkey(id)
  return BASE .. ":cr:h:" .. id
end

local function wkey(id, tick)
  return BASE .. ":w:" .. id .. ":" .. rk_fmt(tick)
end

local function num(x)
  if x == nil or x == false or x == "" then
    return nil
  end
  return tonumber(x)
end

local function stat(name, n)
  redis.call("HINCRBY", K_STATS, name, n or 1)
end

-- an event in the capped stream (about 10,000 entries)
local function event(kind, fields)
  fields.event = kind
  fields.at = rk_fmt(NOW)
  redis.call("XADD", K_EVENTS, "MAXLEN", "~", 10000, "*", "e", cjson.encode(fields))
end

-- one entry of the cron's bounded run history (newest first)
local function push_history(id, entry, max)
  local hk = hkey(id)
  redis.call("LPUSH", hk, cjson.encode(entry))
  redis.call("LTRIM", hk, 0, max - 1)
end

-- whether the outcome of `tick` is in the cron's history
local function in_history(id, tick)
  local needle = '"tick":"' .. rk_fmt(tick) .. '"'
  for _, raw in ipairs(redis.call("LRANGE", hkey(id), 0, -1)) do
    if string.find(raw, needle, 1, true) then
      return true
    end
  end
  return false
end

-- true while the last fired execution is still pending or running (overlap "skip").
-- A fired tick whose work item is gone without a report (never enqueued, or the data
-- was lost) is recorded as "lost" once the grace has passed, and is not busy.
local function busy_check(id, jk)
  local f = redis.call("HMGET", jk, "last_fired", "last_finished", "overlap", "fired_at",
    "history_len")
  local lf, lfin = num(f[1]), num(f[2]) or -1
  if lf == nil or lf <= lfin or f[3] == "allow" then
    return false
  end
  local state = redis.call("HGET", wkey(id, lf), "state")
  if state == false then
    if NOW - (num(f[4]) or 0) < LOST_GRACE_MS then
      return true -- a trigger marks its tick before it enqueues it
    end
    redis.call("HSET", jk, "last_finished", rk_fmt(lf), "last_status", "lost")
    redis.call("HDEL", jk, "last_error")
    push_history(id, {tick = rk_fmt(lf), status = "lost", finished_at = rk_fmt(NOW)},
      tonumber(f[5]) or 20)
    stat("lost")
    event("finished", {id = id, tick = rk_fmt(lf), status = "lost"})
    return false
  end
  return state ~= "finished"
end
