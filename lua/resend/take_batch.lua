-- take_batch (§7.4): take up to batch_size waiting emails enqueued at or before the
-- cutoff, in enqueue order, into a new batch; or decide RESCHEDULE / STOP.
-- ARGV: now, cutoff, reloop ("1"/"0"), batch_size, batch_delay_ms.
-- Reply: {"TAKEN", batch_id, n, endpoint, now} | {"RESCHEDULE", now} | {"STOP", now}
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local cutoff, reloop, size, delay = tonumber(ARGV[2]), ARGV[3] == "1", tonumber(ARGV[4]),
  tonumber(ARGV[5])
local wk = D .. ":waiting"
local ids = redis.call("ZRANGE", wk, 0, size - 1)
local taken, endpoint = {}, "batch"
for _, id in ipairs(ids) do
  local f = redis.call("HMGET", D .. ":e:" .. id, "enqueued_ms", "single")
  if not f[1] then
    redis.call("ZREM", wk, id)
  elseif tonumber(f[1]) > cutoff then
    break
  elseif f[2] == "1" then
    if #taken == 0 then
      taken[1] = id
      endpoint = "single"
    end
    break
  else
    taken[#taken + 1] = id
  end
end
if #taken == 0 or (reloop and #taken < size and endpoint == "batch") then
  if redis.call("ZCARD", wk) == 0 then
    redis.call("DEL", D .. ":sched")
    return {"STOP", rk_fmt(NOW)}
  end
  redis.call("SET", D .. ":sched", rk_fmt(NOW + delay), "PX", math.floor(delay + RS_SCHED_GRACE))
  return {"RESCHEDULE", rk_fmt(NOW)}
end
local bid = taken[1]
for _, id in ipairs(taken) do
  redis.call("ZREM", wk, id)
  rs_set_status(D, id, "waiting", "queued")
  redis.call("HSET", D .. ":e:" .. id, "batch_id", bid)
end
redis.call("HSET", D .. ":b:" .. bid, "ids", cjson.encode(taken), "attempts", 0,
  "state", "pending", "created_ms", rk_fmt(NOW), "endpoint", endpoint)
redis.call("ZADD", D .. ":batches", rk_fmt(NOW), bid)
redis.call("SET", D .. ":sched", rk_fmt(NOW + delay), "PX", math.floor(delay + RS_SCHED_GRACE))
return {"TAKEN", bid, #taken, endpoint, rk_fmt(NOW)}
