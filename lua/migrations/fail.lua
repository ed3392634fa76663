-- fail (spec §7.3 mig_fail): the lease holder's batch failed: keep the cursor at the
-- batch start, record the error, drop the lease. ARGV: 1 now, 2 token, 3 error.
-- Reply: "ok" | "stale"
local S = KEYS[1]
if redis.call("HGET", S, "token") ~= ARGV[2] then return "stale" end
redis.call("HSET", S, "error", ARGV[3], "state", "failed")
mg_drop_lease(S)
return "ok"
