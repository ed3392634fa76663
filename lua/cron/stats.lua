-- stats: the namespace's counters, how many crons exist and how many are scheduled.
-- ARGV: now. Reply: {now, crons, scheduled, flat stats}
return {rk_fmt(NOW), redis.call("ZCARD", K_ORDER), redis.call("ZCARD", K_DUE),
  redis.call("HGETALL", K_STATS)}
