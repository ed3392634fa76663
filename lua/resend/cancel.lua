-- cancel (§7.5): a waiting email, a manual queued one, or a queued one whose batch has
-- not had its first attempt becomes cancelled. ARGV: now, id.
-- Reply: "OK" | "NOT_FOUND" | "ALREADY_SENT"
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local id = ARGV[2]
local ek = D .. ":e:" .. id
local f = redis.call("HMGET", ek, "status", "manual", "batch_id")
local st = f[1]
if not st then
  return "NOT_FOUND"
end
if st == "waiting" then
  redis.call("ZREM", D .. ":waiting", id)
  redis.call("ZREM", D .. ":scheduled", id)
elseif st == "queued" and f[2] ~= "1" then
  local b = redis.call("HMGET", D .. ":b:" .. (f[3] or ""), "state", "attempts")
  if b[1] ~= "pending" or tonumber(b[2]) ~= 0 then
    return "ALREADY_SENT"
  end
elseif st ~= "queued" then
  return "ALREADY_SENT"
end
rs_set_status(D, id, st, "cancelled")
rs_finalize(D, id, NOW)
return "OK"
