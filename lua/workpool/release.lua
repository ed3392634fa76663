-- release: graceful shutdown hands a running attempt back (no attempt consumed);
-- the same token is re-delivered. ARGV: now, opts, id, token. Reply "OK" | "STALE"
local id, token = ARGV[3], ARGV[4]
local wk = wkey(id)
local st = redis.call("HMGET", wk, "state", "token")
if st[1] ~= "running" or st[2] ~= token then
  return "STALE"
end
local lease = NOW + O.dispatch_lease_ms
redis.call("HSET", wk, "state", "dispatched", "lease_until", rk_fmt(lease))
redis.call("HDEL", wk, "worker")
redis.call("ZADD", K_RUNNING, rk_fmt(lease), id)
return "OK"
