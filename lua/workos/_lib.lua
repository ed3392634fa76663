-- WorkOS AuthKit helpers (spec workos-authkit.md §7). Every key of an instance shares
-- the hash tag of P = ARGV[2] (rkit:{ns:workos:E(instance)}:ak); keys built here from
-- P are in the same Cluster slot as the declared ones.
--   P:u:<E(uid)>      HASH {json, upd, rank, ext}   P:tomb:<E(uid)>  STRING upd ms
--   P:ix:ext:<E(ext)> ZSET uid -> rank              P:seq            STRING INCR
--   P:all             ZSET uid -> rank (every stored user, in insertion order)
--   P:evt:<E(eid)>    HASH {state, lease_until, token, changed, type}

local function wo_insert(P, ukey, seqkey, uid, json, upd, ext)
  local rank = redis.call("INCR", seqkey)
  redis.call("HSET", ukey, "json", json, "upd", rk_fmt(upd), "rank", rank, "ext", ext)
  redis.call("ZADD", P .. ":all", rank, uid)
  if ext ~= "" then
    redis.call("ZADD", P .. ":ix:ext:" .. ext, rank, uid)
  end
  return rank
end

-- The tombstone keeps the larger of its old value and ``upd``.
local function wo_tomb(tkey, upd, ttl)
  local old = tonumber(redis.call("GET", tkey) or "")
  if old ~= nil and old > upd then upd = old end
  redis.call("SET", tkey, rk_fmt(upd), "PX", ttl)
end

-- Apply an event's user change (spec §7.3); returns changed (0/1). ``kind`` is
-- created|updated|deleted|other; keys: the user HASH, its tombstone, the rank counter.
local function wo_apply(P, ukey, tkey, seqkey, kind, uid, json, upd, ext, ttl)
  if kind == "other" then return 1 end
  local stored = redis.call("HMGET", ukey, "upd", "ext")
  local supd = tonumber(stored[1] or "")
  local tomb = tonumber(redis.call("GET", tkey) or "")
  if kind == "deleted" then
    local changed = 0
    if supd ~= nil then
      if stored[2] and stored[2] ~= "" then
        redis.call("ZREM", P .. ":ix:ext:" .. stored[2], uid)
      end
      redis.call("DEL", ukey)
      redis.call("ZREM", P .. ":all", uid)
      if supd > upd then upd = supd end
      changed = 1
    end
    wo_tomb(tkey, upd, ttl)
    return changed
  end
  if tomb ~= nil and upd <= tomb then return 0 end
  if supd == nil then
    wo_insert(P, ukey, seqkey, uid, json, upd, ext)
    return 1
  end
  if kind == "updated" and upd > supd then
    local old = stored[2] or ""
    redis.call("HSET", ukey, "json", json, "upd", rk_fmt(upd), "ext", ext)
    if old ~= ext then
      if old ~= "" then redis.call("ZREM", P .. ":ix:ext:" .. old, uid) end
      if ext ~= "" then
        redis.call("ZADD", P .. ":ix:ext:" .. ext, redis.call("HGET", ukey, "rank"), uid)
      end
    end
    return 1
  end
  return 0
end

