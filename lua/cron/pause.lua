-- pause: no further ticks until resume (a running execution is not interrupted).
-- KEYS: 1-6, 7 = the cron hash. ARGV: now, id. Reply: "OK" | "NOOP" | "NOT_FOUND"
local jk, id = KEYS[7], ARGV[2]
local paused = redis.call("HGET", jk, "paused")
if paused == false then
  return "NOT_FOUND"
end
if paused == "1" then
  return "NOOP"
end
redis.call("HSET", jk, "paused", "1")
redis.call("ZREM", K_DUE, id)
event("paused", {id = id})
return "OK"
