-- info: queue depth and emails per status. ARGV: now, then status names.
-- Reply: {waiting, batches, inflight, next run ("" = none), scheduled, count per status...}
local D = KEYS[1]
local inflight = 0
for _, bid in ipairs(redis.call("ZRANGE", D .. ":batches", 0, 999)) do
  if redis.call("HGET", D .. ":b:" .. bid, "state") == "inflight" then
    inflight = inflight + 1
  end
end
local out = {redis.call("ZCARD", D .. ":waiting"), redis.call("ZCARD", D .. ":batches"),
  inflight, redis.call("GET", D .. ":sched") or "", redis.call("ZCARD", D .. ":scheduled")}
for i = 2, #ARGV do
  out[#out + 1] = redis.call("ZCARD", D .. ":st:" .. ARGV[i])
end
return out
