-- oc_fail: the callback raised; retry it with backoff or dead-letter it (the
-- dead-letter list is bounded: the oldest entries beyond dlq_max_len are dropped).
-- ARGV: now, opts, id, error, rand. Reply {"RETRY"|"DEAD"|"NOOP", events}
local id = ARGV[3]
local wk = wkey(id)
if redis.call("ZSCORE", K_OUTBOX, id) == false or redis.call("EXISTS", wk) == 0 then
  return {"NOOP", EV}
end
local n = tonumber(redis.call("HGET", wk, "oc_attempts") or "1")
local r = O.oc_retry
if n >= r.max_attempts then
  dead_letter_callback(id, wk, ARGV[4], n)
  return {"DEAD", EV}
end
redis.call("HSET", wk, "oc_error", ARGV[4])
redis.call("HINCRBY", K_STATS, "oc_failed", 1)
local delay = r.initial_backoff_ms * r.base ^ (n - 1) * (0.5 + tonumber(ARGV[5]))
redis.call("ZADD", K_OUTBOX, rk_fmt(NOW + delay), id)
return {"RETRY", EV}
