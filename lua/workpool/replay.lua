-- replay: move a dead-lettered callback back to the outbox with a fresh budget (its
-- work item stops expiring while the callback is pending again).
-- ARGV: now, opts, id. Reply 1 | 0
local id = ARGV[3]
local wk = wkey(id)
if redis.call("ZREM", K_DLQ, id) == 0 or redis.call("EXISTS", wk) == 0 then
  return 0
end
redis.call("PERSIST", wk)
redis.call("HDEL", wk, "expires_at")
redis.call("ZREM", K_DONE, id)
redis.call("HSET", wk, "oc_attempts", 0)
redis.call("ZADD", K_OUTBOX, rk_fmt(NOW), id)
return 1
