-- begin: a worker starts the attempt it was dispatched (fenced by token).
-- ARGV: now, opts, id, token, worker. Reply: {"OK", fn, args, timeout_ms, attempts} | {"STALE"}
local id, token = ARGV[3], ARGV[4]
local wk = wkey(id)
local st = redis.call("HMGET", wk, "state", "token", "fn", "args", "timeout_ms", "attempts",
  "worker")
-- the same worker sending the same begin again (its reply was lost) is answered again
local again = st[1] == "running" and st[2] == token and st[7] == ARGV[5]
if (st[1] ~= "dispatched" or st[2] ~= token) and not again then
  return {"STALE", st[1] or ""}
end
local lease = NOW + O.lease_ms
redis.call("HSET", wk, "state", "running", "worker", ARGV[5], "started_at", rk_fmt(NOW),
  "lease_until", rk_fmt(lease))
redis.call("ZADD", K_RUNNING, rk_fmt(lease), id)
return {"OK", st[3], st[4], st[5], st[6]}
