-- release: hand a running attempt back (no attempt consumed). ARGV: now, opts, id,
-- token, fresh ("1": the attempt gets a new token, for a worker whose own arq job for
-- it is still finishing; else the same token is re-delivered, e.g. on SIGTERM).
-- Reply: {"OK", token to announce} | {"STALE"}
local id, token = ARGV[3], ARGV[4]
local wk = wkey(id)
local st = redis.call("HMGET", wk, "state", "token")
if st[1] ~= "running" or st[2] ~= token then
  return {"STALE"}
end
local lease = NOW + O.dispatch_lease_ms
local announce = token
if ARGV[5] == "1" then
  announce = tostring(redis.call("HINCRBY", wk, "token", 1))
end
redis.call("HSET", wk, "state", "dispatched", "lease_until", rk_fmt(lease))
redis.call("HDEL", wk, "worker")
redis.call("ZADD", K_RUNNING, rk_fmt(lease), id)
return {"OK", announce}
