-- update: replace a cron's schedule and/or arguments in place (same id and name).
-- A new schedule restarts from its first tick after now (ARGV next_run); a claim in
-- flight is dropped (its commit is then STALE, its execution skipped by begin).
-- KEYS: 1-6, 7 = the cron hash. ARGV: now, id, fields (JSON object of strings),
-- next_run ("" = unchanged). Reply: "OK" | "NOT_FOUND"
local jk, id = KEYS[7], ARGV[2]
local paused = redis.call("HGET", jk, "paused")
if paused == false then
  return "NOT_FOUND"
end
local flat = {}
for k, v in pairs(cjson.decode(ARGV[3])) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
if #flat > 0 then
  redis.call("HSET", jk, unpack(flat))
end
if ARGV[4] ~= "" then
  redis.call("HSET", jk, "next_run", ARGV[4])
  redis.call("HDEL", jk, "claim_token", "claim_until")
  if paused ~= "1" then
    redis.call("ZADD", K_DUE, ARGV[4], id)
  end
end
event("updated", {id = id})
return "OK"
