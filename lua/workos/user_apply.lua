-- Apply a claimed event's user change (spec §7.3) and mark the event applied in the
-- same call, so the sync happens exactly once.
-- KEYS: 1 evt, 2 user, 3 tomb, 4 seq
-- ARGV: 1 now, 2 P, 3 kind (created|updated|deleted|other), 4 uid, 5 user JSON,
--       6 upd ms, 7 E(external id) or "", 8 tombstone ttl ms, 9 token
-- Returns changed (0/1), or -1 when the event is not claimed by ``token``.
local P = ARGV[2]
local h = redis.call("HMGET", KEYS[1], "state", "changed", "token")
if h[1] ~= "processing" then
  if h[1] == "applied" or h[1] == "done" then return tonumber(h[2]) or 0 end
  return -1
end
if h[3] ~= ARGV[9] then return -1 end
local kind, uid, json, upd, ext = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local ttl = ARGV[8]
local changed = 0
if kind == "other" then
  changed = 1
else
  local stored = redis.call("HMGET", KEYS[2], "upd", "ext")
  local supd = tonumber(stored[1] or "")
  local tomb = tonumber(redis.call("GET", KEYS[3]) or "")
  if kind == "deleted" then
    if supd ~= nil then
      if stored[2] and stored[2] ~= "" then
        redis.call("ZREM", P .. ":ix:ext:" .. stored[2], uid)
      end
      redis.call("DEL", KEYS[2])
      if supd > upd then upd = supd end
      changed = 1
    end
    wo_tomb(KEYS[3], upd, ttl)
  elseif tomb ~= nil and upd <= tomb then
    changed = 0
  elseif supd == nil then
    wo_insert(P, KEYS[2], KEYS[4], uid, json, upd, ext)
    changed = 1
  elseif kind == "updated" and upd > supd then
    local old = stored[2] or ""
    redis.call("HSET", KEYS[2], "json", json, "upd", rk_fmt(upd), "ext", ext)
    if old ~= ext then
      if old ~= "" then redis.call("ZREM", P .. ":ix:ext:" .. old, uid) end
      if ext ~= "" then
        local rank = redis.call("HGET", KEYS[2], "rank")
        redis.call("ZADD", P .. ":ix:ext:" .. ext, rank, uid)
      end
    end
    changed = 1
  end
end
redis.call("HSET", KEYS[1], "state", "applied", "changed", changed)
return changed
