-- redispatch: attempts whose arq job is held by a worker that never began them (it
-- died between taking the job and begin) get a new token, so the old job, if it ever
-- runs, is stale. ARGV: now, opts, then id, token pairs (the tokens the pump saw).
-- Reply: {id, new token} per attempt still dispatched under that token.
local out = {}
local lease = NOW + O.dispatch_lease_ms
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local wk = wkey(id)
  local st = redis.call("HMGET", wk, "state", "token")
  if st[1] == "dispatched" and st[2] == token then
    local fresh = redis.call("HINCRBY", wk, "token", 1)
    redis.call("HSET", wk, "lease_until", rk_fmt(lease))
    redis.call("ZADD", K_RUNNING, rk_fmt(lease), id)
    redis.call("HINCRBY", K_STATS, "redispatched", 1)
    emit("WARN", "redispatched", {work_id = id, token = tonumber(fresh)})
    out[#out + 1] = {id, tostring(fresh)}
  end
end
return {out, EV}
