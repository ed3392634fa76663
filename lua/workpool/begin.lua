-- begin: a worker starts the attempt it was dispatched (fenced by token).
-- ARGV: now, opts, id, token, worker, begin id (unique per delivery the worker runs).
-- Reply: {"OK", fn, args, timeout_ms, attempts} | {"STALE"}
local id, token, begin_id = ARGV[3], ARGV[4], ARGV[6] or ""
local wk = wkey(id)
local st = redis.call("HMGET", wk, "state", "token", "fn", "args", "timeout_ms", "attempts",
  "worker", "begin_id")
-- the same begin sent again (its reply was lost) is answered again; another delivery
-- of the same attempt, even to the same worker, is stale: a body never runs twice
local again = st[1] == "running" and st[2] == token and st[7] == ARGV[5]
  and begin_id ~= "" and st[8] == begin_id
if (st[1] ~= "dispatched" or st[2] ~= token) and not again then
  return {"STALE", st[1] or ""}
end
local lease = NOW + O.lease_ms
redis.call("HSET", wk, "state", "running", "worker", ARGV[5], "started_at", rk_fmt(NOW),
  "lease_until", rk_fmt(lease), "begin_id", begin_id)
redis.call("ZADD", K_RUNNING, rk_fmt(lease), id)
return {"OK", st[3], st[4], st[5], st[6]}
