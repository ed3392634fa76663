-- take_batch (§7.4): take waiting emails enqueued at or before the cutoff, in enqueue
-- order, into up to `max_batches` batches of at most batch_size (an email with
-- attachments or tags is a batch of its own: endpoint "single"); or decide
-- RESCHEDULE / STOP. Batches after the first are taken only when full (as the
-- reference's reloop would), so one call does the work of several batcher rounds.
-- ARGV: now, cutoff, reloop ("1"/"0"), batch_size, batch_delay_ms, max_batches.
-- Reply: {"TAKEN", now, {batch_id, n, endpoint}...} | {"RESCHEDULE", now} | {"STOP", now}
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local cutoff, reloop, size, delay = tonumber(ARGV[2]), ARGV[3] == "1", tonumber(ARGV[4]),
  tonumber(ARGV[5])
local max_batches = tonumber(ARGV[6])
local wk = D .. ":waiting"

-- scheduled emails that are due join the queue (in due order, after those waiting)
local due = redis.call("ZRANGEBYSCORE", D .. ":scheduled", "-inf", rk_fmt(NOW), "LIMIT", 0, 1000)
if #due > 0 then
  local seq = redis.call("INCRBY", D .. ":seq", #due) - #due
  for k, id in ipairs(due) do
    redis.call("ZREM", D .. ":scheduled", id)
    redis.call("ZADD", wk, seq + k, id)
  end
end

local function take_one(full_only)
  local ids = redis.call("ZRANGE", wk, 0, size - 1)
  local taken, created, endpoint = {}, {}, "batch"
  for _, id in ipairs(ids) do
    local f = redis.call("HMGET", D .. ":e:" .. id, "created_ms", "single")
    if not f[1] then
      redis.call("ZREM", wk, id)
    elseif tonumber(f[1]) > cutoff then
      break
    elseif f[2] == "1" then
      if #taken == 0 then
        taken[1] = id
        created[1] = f[1]
        endpoint = "single"
      end
      break
    else
      taken[#taken + 1] = id
      created[#created + 1] = f[1]
    end
  end
  if #taken == 0 or (full_only and #taken < size and endpoint == "batch") then
    return nil
  end
  local bid = taken[1]
  local scored = {}
  for k, id in ipairs(taken) do
    redis.call("HSET", D .. ":e:" .. id, "status", "queued", "batch_id", bid)
    scored[#scored + 1] = created[k]
    scored[#scored + 1] = id
  end
  redis.call("ZREM", wk, unpack(taken))
  redis.call("ZREM", D .. ":st:waiting", unpack(taken))
  redis.call("ZADD", D .. ":st:queued", unpack(scored))
  redis.call("HSET", D .. ":b:" .. bid, "ids", cjson.encode(taken), "attempts", 0,
    "state", "pending", "created_ms", rk_fmt(NOW), "endpoint", endpoint)
  redis.call("ZADD", D .. ":batches", rk_fmt(NOW), bid)
  return {bid, #taken, endpoint}
end

local out = {}
for k = 1, max_batches do
  local b = take_one(reloop or k > 1)
  if not b then
    break
  end
  out[#out + 1] = b
end
if #out == 0 then
  if redis.call("ZCARD", wk) == 0 then
    redis.call("DEL", D .. ":sched")
    return {"STOP", rk_fmt(NOW)}
  end
  redis.call("SET", D .. ":sched", rk_fmt(NOW + delay), "PX", math.floor(delay + RS_SCHED_GRACE))
  return {"RESCHEDULE", rk_fmt(NOW)}
end
redis.call("SET", D .. ":sched", rk_fmt(NOW + delay), "PX", math.floor(delay + RS_SCHED_GRACE))
return {"TAKEN", rk_fmt(NOW), out}
