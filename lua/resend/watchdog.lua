-- watchdog (§7.4): claim a batcher run when emails wait but none is scheduled, and
-- list batches unchanged for `grace_ms` (their send job may be lost).
-- ARGV: now, batch_delay_ms, grace_ms, limit.
-- Reply: {must_schedule, now, {batch_id, state, attempts}...}
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local delay = tonumber(ARGV[2])
local must = 0
local overdue = redis.call("ZRANGEBYSCORE", D .. ":scheduled", "-inf",
  "(" .. rk_fmt(NOW - tonumber(ARGV[3])), "LIMIT", 0, 1)
if (redis.call("ZCARD", D .. ":waiting") > 0 or #overdue > 0) and rs_claim_sched(D, NOW, delay) then
  must = 1
end
local stale = {}
local ids = redis.call("ZRANGEBYSCORE", D .. ":batches", "-inf",
  "(" .. rk_fmt(NOW - tonumber(ARGV[3])), "LIMIT", 0, tonumber(ARGV[4]))
for _, bid in ipairs(ids) do
  local b = redis.call("HMGET", D .. ":b:" .. bid, "state", "attempts")
  if b[1] then
    stale[#stale + 1] = {bid, b[1], b[2]}
  else
    redis.call("ZREM", D .. ":batches", bid)
  end
end
return {must, rk_fmt(NOW), stale}
