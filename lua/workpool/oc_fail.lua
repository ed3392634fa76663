-- oc_fail: the callback raised; retry it with backoff or dead-letter it (the
-- dead-letter list is bounded: the oldest entries beyond dlq_max_len are dropped).
-- ARGV: now, opts, id, error, rand. Reply {"RETRY"|"DEAD"|"NOOP", events}
local id = ARGV[3]
local wk = wkey(id)
if redis.call("ZSCORE", K_OUTBOX, id) == false or redis.call("EXISTS", wk) == 0 then
  return {"NOOP", EV}
end
local n = tonumber(redis.call("HGET", wk, "oc_attempts") or "1")
redis.call("HSET", wk, "oc_error", ARGV[4])
local r = O.oc_retry
if n >= r.max_attempts then
  local dropped = dead_letter(id, wk)
  redis.call("HINCRBY", K_STATS, "oc_dead", 1)
  emit("ERROR", "dead_lettered", {work_id = id, error = ARGV[4], oc_attempts = n})
  for _, old in ipairs(dropped) do
    emit("WARN", "dead_letter_dropped", {work_id = old, reason = "dlq_max_len"})
    drop_dead(old)
    redis.call("HINCRBY", K_STATS, "dlq_dropped", 1)
  end
  return {"DEAD", EV}
end
redis.call("HINCRBY", K_STATS, "oc_failed", 1)
local delay = r.initial_backoff_ms * r.base ^ (n - 1) * (0.5 + tonumber(ARGV[5]))
redis.call("ZADD", K_OUTBOX, rk_fmt(NOW + delay), id)
return {"RETRY", EV}
