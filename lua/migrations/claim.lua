-- claim (spec §7.3 mig_claim): a batch may touch items only after this succeeds:
-- the token holds the lease (a live one, or an expired one nobody took over) and no
-- cancel was requested. The batch starts at the stored cursor (a retried job after
-- a crash re-runs the uncommitted batch). ARGV: 1 now, 2 token, 3 lease ms.
-- Reply: {"ok", cursor flag, cursor, batch size, next, reset} | {"canceled"} | {"stale"}
local S = KEYS[1]
local now = rk_now(ARGV[1])
local tok = redis.call("HGET", S, "token")
if tok ~= ARGV[2] then
  if redis.call("HGET", S, "state") == "canceled" then return {"canceled"} end
  return {"stale"}
end
if redis.call("HGET", S, "cancel") == "1" then
  redis.call("HSET", S, "state", "canceled")
  mg_drop_lease(S)
  return {"canceled"}
end
redis.call("HSET", S, "executing", "1", "lease", rk_fmt(now + tonumber(ARGV[3])))
local flag, cur = mg_cursor(S)
local h = redis.call("HMGET", S, "batch", "next", "reset")
return {"ok", flag, cur, h[1] or "", h[2] or "", h[3] or "0"}
