-- info: one consistent snapshot of a pool's counters. ARGV: now, opts.
-- Reply {now, max_parallelism, log_level, pending, due, running, outbox, dlq, live,
--        oldest_due, stats...}
local oldest = redis.call("ZRANGE", K_PENDING, 0, 0, "WITHSCORES")
return {rk_fmt(NOW), tostring(max_parallelism()),
  redis.call("HGET", K_CFG, "log_level") or O.default_log_level,
  redis.call("ZCARD", K_PENDING), redis.call("ZCOUNT", K_PENDING, "-inf", rk_fmt(NOW)),
  redis.call("ZCARD", K_RUNNING), redis.call("ZCARD", K_OUTBOX), redis.call("ZCARD", K_DLQ),
  redis.call("ZCARD", K_LIVE), oldest[2] or "", redis.call("HGETALL", K_STATS)}
