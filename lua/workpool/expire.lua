-- expire: the retention sweep (batch): delete finished work past its retention and
-- drop dead letters older than dlq_retention_ms. ARGV: now, opts, limit.
-- Reply: {entries of the done index processed, dead letters dropped, items deleted}
local limit = tonumber(ARGV[3])
local deleted = 0
local ids = redis.call("ZRANGEBYSCORE", K_DONE, "-inf", rk_fmt(NOW), "LIMIT", 0, limit)
for _, id in ipairs(ids) do
  local wk = wkey(id)
  if redis.call("HGET", wk, "state") == "finished" then
    redis.call("DEL", wk)
  end
  deleted = deleted + 1
  redis.call("ZREM", K_DONE, id)
  redis.call("ZREM", K_DLQ, id)
end
local old = redis.call("ZRANGEBYSCORE", K_DLQ, "-inf", rk_fmt(NOW - O.dlq_retention_ms), "LIMIT",
  0, limit)
for _, id in ipairs(old) do
  deleted = deleted + drop_dead(id)
end
if #old > 0 then
  redis.call("HINCRBY", K_STATS, "dlq_dropped", #old)
end
return {#ids, #old, deleted}
