-- delete: remove a cron (its name becomes free). A queued execution of it is
-- skipped by begin; a running one finishes and its report finds nothing to update.
-- KEYS: 1-6, 7 = the cron hash, 8 = its history. ARGV: now, id. Reply: "OK" | "NOT_FOUND"
local jk, id = KEYS[7], ARGV[2]
local name = redis.call("HGET", jk, "name")
if name == false then
  return "NOT_FOUND"
end
if name ~= "" and redis.call("HGET", K_NAMES, name) == id then
  redis.call("HDEL", K_NAMES, name)
end
redis.call("DEL", jk, KEYS[8])
redis.call("ZREM", K_DUE, id)
redis.call("ZREM", K_ORDER, id)
stat("deleted")
event("deleted", {id = id, name = name})
return "OK"
