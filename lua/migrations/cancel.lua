-- cancel (spec §4.7, §7.3 mig_cancel, M3): a claimed batch (being executed, or
-- claimed by the previous commit for the next job) finishes and commits but no
-- batch follows, and a new run may start at once; an unclaimed run stops at once.
-- ARGV: 1 now. Reply: "not_found" | "done" | "canceled" | "unchanged"
local S = KEYS[1]
local now = rk_now(ARGV[1])
if redis.call("EXISTS", S) == 0 then return "not_found" end
if redis.call("HGET", S, "done") == "1" then return "done" end
if redis.call("HGET", S, "state") ~= "running" or not mg_live(S, now)
    or redis.call("HGET", S, "cancel") == "1" then
  return "unchanged"
end
if redis.call("HGET", S, "executing") == "1" then
  redis.call("HSET", S, "cancel", "1")
else
  redis.call("HSET", S, "state", "canceled")
  mg_drop_lease(S)
end
return "canceled"
