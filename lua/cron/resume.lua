-- resume: schedule a paused cron again from its next tick after now (computed by
-- Python from the schedule; missed ticks while paused never fire).
-- KEYS: 1-6, 7 = the cron hash. ARGV: now, id, next_run. Reply: "OK" | "NOOP" | "NOT_FOUND"
local jk, id = KEYS[7], ARGV[2]
local paused = redis.call("HGET", jk, "paused")
if paused == false then
  return "NOT_FOUND"
end
if paused ~= "1" then
  return "NOOP"
end
redis.call("HSET", jk, "paused", "0", "next_run", ARGV[3])
redis.call("HDEL", jk, "claim_token", "claim_until")
redis.call("ZADD", K_DUE, ARGV[3], id)
event("resumed", {id = id, next_run = ARGV[3]})
return "OK"
