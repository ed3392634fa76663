-- WorkOS AuthKit helpers (spec workos-authkit.md §7). Every key of an instance shares
-- the hash tag of P = ARGV[2] (rkit:{ns:workos:E(instance)}:ak); keys built here from
-- P are in the same Cluster slot as the declared ones.
--   P:u:<E(uid)>      HASH {json, upd, rank, ext}   P:tomb:<E(uid)>  STRING upd ms
--   P:ix:ext:<E(ext)> ZSET uid -> rank              P:seq            STRING INCR
--   P:evt:<E(eid)>    HASH {state, lease_until, token, changed, type}

local function wo_insert(P, ukey, seqkey, uid, json, upd, ext)
  local rank = redis.call("INCR", seqkey)
  redis.call("HSET", ukey, "json", json, "upd", rk_fmt(upd), "rank", rank, "ext", ext)
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
